"""Alerts through the bot account: `discord-channel` (address = channel id) and `discord-dm` (user id).

A sender holds what it needs and nothing more: a handle to the current discord.py client (it is replaced on
a login retry) and the adapter's `RouteBook` of dead routes.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

import discord

from ...outbox import DeliveryError, Digest
from .format import delivery_ref, digest_messages
from .routes import CHANNEL, RouteBook

log = logging.getLogger(__name__)

ClientHandle = Callable[[], "discord.Client | None"]


class BotSender:
    """Alerts through the bot account: `discord-channel` (address = channel id) or `discord-dm` (user id).

    discord.py honours per-route 429s itself; a wait longer than `max_ratelimit_timeout` raises RateLimited,
    which goes back to the outbox with its retry_after. Unknown/forbidden channel -> permanent (the route is
    disabled and reported once). A digest is one or more messages (`render`); the outbox sends them one at a
    time (`send_part`) and records which went out, so a retry never posts a part twice. The last message
    carries the `ref` marker that `was_delivered` looks for."""

    def __init__(self, channel: str, client: ClientHandle, routes: RouteBook):
        self.channel, self._client, self._routes = channel, client, routes
        self._dm_channels: dict[int, int] = {}

    async def _target(self, address: str) -> discord.abc.Messageable:
        client = self._client()
        if client is None or not client.is_ready():
            raise DeliveryError("discord bot not connected yet")
        if self.channel == CHANNEL:
            return client.get_partial_messageable(int(address))
        uid = int(address)
        cid = self._dm_channels.get(uid)
        if cid is None:
            data = await client.http.start_private_message(uid)
            cid = self._dm_channels[uid] = int(data["id"])
        return client.get_partial_messageable(cid, type=discord.ChannelType.private)

    def render(self, digest: Digest) -> list[dict]:
        return digest_messages(digest)

    async def send_part(self, address: str, part: dict, digest: Digest) -> None:
        self._routes.check_route(self.channel, address)
        try:
            target = await self._target(address)
            await target.send(content=part.get("content"), embeds=[discord.Embed.from_dict(e) for e in part["embeds"]],
                              allowed_mentions=discord.AllowedMentions.none())
        except discord.RateLimited as e:
            raise DeliveryError(f"rate limited for {e.retry_after:.1f}s", retry_after=e.retry_after) from None
        except (discord.NotFound, discord.Forbidden) as e:
            error = f"{e.status} {e.code}: {e.text}"
            raise self._routes.route_failed(self.channel, address, error) from None
        except discord.HTTPException as e:
            if 400 <= e.status < 500 and e.status != 429:   # our payload was refused: retrying cannot help
                raise DeliveryError(f"rejected {e.status} {e.code}: {e.text}", permanent=True) from None
            raise DeliveryError(f"discord {e.status}: {e.text}") from None
        except (OSError, asyncio.TimeoutError, discord.ConnectionClosed) as e:
            raise DeliveryError(f"network: {type(e).__name__}") from None

    async def was_delivered(self, key: str) -> bool | None:
        """After a crash mid-send: look for the key's marker in the channel's recent messages."""
        client = self._client()
        if client is None or not client.is_ready():
            return None
        parts = key.split(":")
        if len(parts) < 4 or parts[2] != self.channel:
            return None
        try:
            target = await self._target(parts[3])
            ref = delivery_ref(key)
            async for m in target.history(limit=30):
                if m.author.id == client.user.id and any(ref in (e.footer.text or "") for e in m.embeds):
                    return True
            return False
        except Exception as e:   # cannot tell: the worker sends again
            log.info("discord was_delivered check failed: %s", type(e).__name__)
            return None
