"""Errors shared across layers. Imports nothing from the bot, so every layer may use it."""
from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; its message is meant for them as it is: a chat command replies with it,
    the CLI prints it as `error: ...` and exits 1."""
