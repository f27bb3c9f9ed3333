"""Discord: channel alerts and slash commands (bot mode), channel alerts by webhook (webhook mode)."""
from .adapter import *  # noqa: F401,F403
from .adapter import DiscordAdapter  # noqa: F401
