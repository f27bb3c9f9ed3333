"""The web adapter: the reference page (server-rendered HTML) and its JSON API over the `Queries` port.

`bot.app` builds and registers it (`python -m bot run --web HOST:PORT` or `PORT`, and `python -m bot demo`).
"""
from .server import Budget, Problem, WebQueries, WebServer

__all__ = ["Budget", "Problem", "WebQueries", "WebServer"]
