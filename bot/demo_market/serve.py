"""Serve until signalled: the one standalone runner of the loopback servers.

``python -m bot.demo_market.binance_server``, ``bench/_simserver.py`` and the test fakes
(``python -m fakes.telegram_server``, ``python -m fakes.discord_server``) all run this way: start the
server, print what it announces (its URL first) on stdout, serve until SIGINT or SIGTERM, stop it.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

__all__ = ["serve_until_signalled", "run_until_signalled"]


async def serve_until_signalled(start: Callable[[], Awaitable[str]], stop: Callable[[], Awaitable[None]]) -> None:
    """Await ``start()`` and print the text it returns, wait for SIGINT/SIGTERM, then await ``stop()``."""
    announcement = await start()
    try:
        print(announcement, flush=True)
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stopped.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - non-unix
                pass
        await stopped.wait()
    finally:
        await stop()


def run_until_signalled(start: Callable[[], Awaitable[str]], stop: Callable[[], Awaitable[None]]) -> int:
    """:func:`serve_until_signalled` in a fresh event loop; returns the exit status (0)."""
    try:
        asyncio.run(serve_until_signalled(start, stop))
    except KeyboardInterrupt:  # pragma: no cover - a Ctrl-C before the handlers are in place
        pass
    return 0
