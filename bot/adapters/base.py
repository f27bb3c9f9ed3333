"""The one protocol every chat adapter implements (Telegram, Discord; the console needs none).

An adapter translates between a chat platform and the core: updates become `commands.Context` +
`commands.dispatch`, `commands.Reply` and outbox `Digest`s become platform messages. It is built from what it
needs (its config section, the `bot.queries.Queries` port, a small store handle) and never reaches into the
composition root: `bot.app` registers what the adapter returns here and calls it back.

Start-up and reachability are the app's to retry (`bot.app.AdapterSupervisor`): `start()` raises when the
platform cannot be reached, and is called again later with a growing delay; it raises `AdapterRefused` for what
no retry can fix (a rejected token). Two optional methods, outside the protocol: `async probe()` (raise when the
platform is unreachable; asked after a failed delivery, until it passes) and `unavailable() -> set[str]` (channels
that cannot deliver right now but will, e.g. a bot still connecting). While an adapter is down, the delivery
worker leaves the rows of its channels pending.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..engine import Recipient
from ..outbox import Sender


class AdapterRefused(Exception):
    """`start()` failed in a way a retry cannot fix (the platform rejected the token): str() says what to do."""


@runtime_checkable
class ChatAdapter(Protocol):
    async def start(self) -> None:
        """Connect (in the app's loop) and start taking updates. Raise when the platform cannot be reached (the
        app retries later; leave nothing half-started) or `AdapterRefused` when retrying cannot help."""

    async def stop(self) -> None:
        """Undo `start` within a few seconds; safe to call when not started."""

    def senders(self) -> dict[str, Sender]:
        """Outbox channel -> sender, for the channels this adapter can deliver on now. Asked again for every
        delivery, so a channel it can no longer serve (e.g. a rejected bot token) simply disappears. The same
        channel always maps to the same sender object."""

    def recipients(self) -> list[Recipient]:
        """Recipients of its own besides the watchlists (e.g. Discord channels and webhooks, each with its
        filter). Called by the engine every cycle, in a worker thread."""

    def disable_route(self, channel: str, address: str, error: str) -> None:
        """The outbox gave up on (channel, address) for good (blocked, deleted): stop sending there.
        Called for every permanent failure on any channel; an adapter ignores channels that are not its own."""
