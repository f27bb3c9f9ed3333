"""A Discord-shaped server on loopback: REST API + gateway websocket + webhook execute.

One aiohttp application serves everything on a single port:

* REST under ``{root}/api/v10`` (also ``/api/v9`` and the unversioned ``/api``),
* the gateway websocket at ``ws://127.0.0.1:PORT/gateway``,
* channel webhooks at ``{root}/api/webhooks/{id}/{token}`` (what an httpx sender
  posts to, mirroring ``https://discord.com/api/webhooks/...``),
* a small JSON control surface under ``{root}/_sim/...`` for driving the
  simulator from another process (manual trials), see :meth:`DiscordSimServer._control_routes`.

It is meant to drive the REAL discord.py client (tested with 2.7.1) in tests and
in manual trials.  It serves what the bot uses (login, gateway, command sync,
interactions and their follow-ups, channel and DM messages, ``GET /channels/{id}``,
webhooks); other routes answer 404 like an unknown Discord route.

Pointing discord.py at it
=========================

discord.py has two hard-coded endpoints and neither is a constructor option::

    import discord, discord.http, discord.gateway, yarl

    server = DiscordSimServer()
    await server.start()                                  # -> "http://127.0.0.1:PORT"

    old_base, old_gw = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = server.api_base             # "http://127.0.0.1:PORT/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(server.gateway_url)
    try:
        client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.1)
        tree = discord.app_commands.CommandTree(client)
        await client.login("any-token")                  # GET /users/@me, GET /oauth2/applications/@me
        task = asyncio.create_task(client.connect())
        await server.wait_ready()
        await client.wait_until_ready()
        ...
        await client.close(); await task
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gw

:func:`patch_discord` is a context manager doing exactly that.

Quirks found in discord.py 2.7.1 (read from its source):

* ``Route.BASE`` is a ClassVar read when each ``Route`` is built, so it must be
  set before the client makes any request (``discord.http._set_api_version``
  would reset it to discord.com: don't call it).  Interaction callbacks,
  follow-ups and ``Webhook.partial(...)`` also go through ``Route.BASE``.
* The plain ``discord.Client`` NEVER calls ``GET /gateway/bot``: it connects
  to ``DiscordWebSocket.DEFAULT_GATEWAY`` (``wss://gateway.discord.gg/``), so
  that class attribute must be patched.  Only ``AutoShardedClient`` (without an
  explicit ``shard_count``) asks ``GET /gateway/bot`` for the URL; the bot does
  not use it and this server does not serve it.  After READY the
  client reconnects/RESUMEs to ``resume_gateway_url`` from READY, which is this
  server too; after an INVALID_SESSION it goes back to ``DEFAULT_GATEWAY``.
* Compression: discord.py always asks for transport compression
  (``?v=10&encoding=json&compress=zlib-stream``; there is no public switch to
  turn it off - ``Client.connect`` never passes ``compress=False``).  It asks
  for ``zstd-stream`` instead when ``zstandard`` (or Python 3.14's
  ``compression.zstd``) is importable.  This server honours ``zlib-stream``
  (one shared ``zlib.compressobj`` per connection, every message flushed with
  ``Z_SYNC_FLUSH`` and sent as a binary frame) and answers anything else with
  plain TEXT frames, which discord.py accepts whatever it asked for (only
  binary frames go through its decompressor).  ``encoding=etf`` is refused
  with close code 4002.
* READY is not the client's ``on_ready``: discord.py waits
  ``guild_ready_timeout`` (default 2 s) after the last GUILD_CREATE before
  dispatching ``on_ready``; pass ``guild_ready_timeout=0.1`` in tests.
  GUILD_CREATE is only sent when the IDENTIFY intents include GUILDS (as on
  Discord); with ``Intents.none()`` ``client.get_channel()`` returns ``None``,
  use ``client.get_partial_messageable(id)`` then.
* discord.py only parses a response body as JSON when ``Content-Type`` is
  exactly ``application/json`` (no ``; charset=...``), so this server sends that.
* A 429 is only retried by discord.py when the response carries a ``Via``
  header and a JSON body with ``retry_after`` (else it assumes a Cloudflare ban
  and raises ``HTTPException``); :meth:`DiscordSimServer.fail_next` adds
  ``Via: 1.1 google``, ``Retry-After``, ``X-RateLimit-*`` automatically for 429s.
  ``RateLimited`` is raised instead of sleeping only if ``retry_after`` exceeds
  the client's ``max_ratelimit_timeout``.
* Interaction callbacks are sent as ``POST /interactions/{id}/{token}/callback?with_response=1``
  and discord.py parses the body as an InteractionCallbackResponse
  (``{"interaction": {...}, "resource": {...}}``); without ``with_response``
  the server answers 204 like Discord.  Interaction payloads must carry
  ``attachment_size_limit`` (discord.py indexes it), which :meth:`send_interaction` does.
  For guild-synced commands ``data.guild_id`` is set, else the CommandTree
  would not find them.
* ``discord.Webhook.from_url`` only accepts ``discord(app).com/api/webhooks/<17-20 digit id>/<60+ char token>``
  and ``Webhook.url`` always renders a discord.com URL.  With discord.py use
  ``discord.Webhook.partial(id, token, session=aiohttp_session)`` after
  patching ``Route.BASE`` (it posts to ``{api_base}/webhooks/{id}/{token}``,
  also served here).  Our own httpx sender can use :meth:`webhook_url` as is.
* The server enforces a 3 s interaction acknowledgement deadline
  (``interaction_ack_timeout``) like Discord: a late callback gets
  ``404 {"code": 10062, "message": "Unknown interaction"}``.
  After a deferred (type 5) response the first follow-up replaces the
  "thinking" original message (same message id), like Discord does.

* GUILD_CREATE carries all members only with both GUILD_MEMBERS and
  GUILD_PRESENCES (Discord's small-guild behaviour).  Member chunk requests
  (op 8, sent by discord.py with GUILD_MEMBERS alone) are not served: the bot
  asks for the GUILDS intent only.
* A client closing the socket with 1000/1001 (``client.close()``) ends its
  session, as on Discord; op 7 RECONNECT (:meth:`DiscordSimServer.request_reconnect`)
  makes discord.py RESUME (op 6 → missed events replayed, then RESUMED).
  Close 4004 (bad token when ``bot_token`` is set) makes it give up.

World: application/bot user ``1111`` ("PressureBot"), guild ``2222`` with
text channels ``3333`` (``#alerts``) and ``3334``, member/user ``4444``
("trader", the default interaction user; :meth:`DiscordSimServer.add_user`
adds more), webhook ``5555``/``"hooktoken"`` on channel 3333 pre-registered
(:meth:`DiscordSimServer.webhook_url` registers others).  Any bot token is
accepted unless ``bot_token=`` is given (REST then answers 401, login raises
``LoginFailure``).  Ids are generated as real snowflakes.  Every REST response
carries ``X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket``; each
(route, major parameter) bucket allows ``rate_limit`` requests per
``rate_limit_window`` seconds (default 50/1 s so tests never wait; Discord's
channel-message bucket is about 5/5 s) and answers a real 429 beyond that.

Observing: :attr:`calls` (``(method, path incl. /api/v10, JSON body or
payload_json)``), :meth:`interaction_responses`, :meth:`channel_messages`
(includes webhook posts and non-ephemeral interaction responses in that
channel, as Discord shows them), :meth:`webhook_messages`, :meth:`dm_messages`,
:attr:`synced_commands`, :attr:`identifies`, :attr:`resumes`,
:attr:`gateway_connections`, :attr:`attachment_data`; await
:meth:`wait_interaction_responses` / :meth:`wait_channel_messages` /
:meth:`wait_webhook_messages` / :meth:`wait_for` instead of sleeping (command
handlers run in tasks of the client).  Faults: :meth:`fail_next`,
:meth:`delete_webhook`, :meth:`request_reconnect`, ``interaction_ack_timeout``.

Standalone: ``python -m fakes.discord_server --port 8083``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import datetime as _dt
import hashlib
import json
import logging
import mimetypes
import os
import re
import secrets
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator, Sequence

from aiohttp import WSMsgType, web

from bot.demo_market.serve import run_until_signalled

__all__ = ["DiscordSimServer", "patch_discord", "DISCORD_EPOCH"]

log = logging.getLogger("fakes.discord_server")

DISCORD_EPOCH = 1420070400000

# limits (https://discord.com/developers/docs/resources/message, .../channel#embed-limits)
MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_EMBED_TITLE = 256
MAX_EMBED_DESCRIPTION = 4096
MAX_EMBED_FIELDS = 25
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 1024
MAX_FOOTER_TEXT = 2048
MAX_AUTHOR_NAME = 256
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
MAX_AUTOCOMPLETE_CHOICES = 25

# gateway intents we look at
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15

PERMS_ALL = "2251799813685247"
PERMS_MEMBER = "2248473465835073"
PERMS_EVERYONE = "1071698660929"

MSG_FLAG_EPHEMERAL = 1 << 6
MSG_FLAG_LOADING = 1 << 7


class SimApiError(Exception):
    """Raised by route handlers; becomes a Discord-shaped JSON error response."""

    def __init__(self, status: int, body: dict, headers: dict | None = None) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def _form_error(errors: dict) -> SimApiError:
    return SimApiError(400, {"code": 50035, "errors": errors, "message": "Invalid Form Body"})


def _max_len_err(limit: int) -> dict:
    return {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": f"Must be {limit} or fewer in length."}]}


def _now_iso(ts: float | None = None) -> str:
    t = _dt.datetime.fromtimestamp(ts if ts is not None else time.time(), _dt.timezone.utc)
    return t.isoformat(timespec="microseconds")


def _bucket_hash(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


@dataclass
class _Req:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    files: list[dict]
    headers: Any


@dataclass
class _Fault:
    path_contains: str
    status: int
    body: dict
    times: int
    headers: dict | None
    method: str | None


@dataclass
class _Interaction:
    id: int
    token: str
    type: int
    name: str
    channel_id: int
    guild_id: int | None
    user_id: int
    created: float
    acked_type: int | None = None
    original_message_id: int | None = None
    responses: list[dict] = field(default_factory=list)


class _GatewayConn:
    """One websocket connection; serialises sends so the zlib stream stays ordered."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.compress = compress
        self.lock = asyncio.Lock()
        self.session: _Session | None = None
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self.effective_compression = "zlib-stream" if self._zlib else None
        self.server_closed = False

    async def close(self, code: int, message: str = "") -> None:
        self.server_closed = True
        await self.ws.close(code=code, message=message.encode())

    async def send(self, payload: dict) -> None:
        data = json.dumps(payload, separators=(",", ":"))
        async with self.lock:
            if self.ws.closed:
                return
            try:
                if self._zlib is not None:
                    raw = data.encode()
                    await self.ws.send_bytes(self._zlib.compress(raw) + self._zlib.flush(zlib.Z_SYNC_FLUSH))
                else:
                    await self.ws.send_str(data)
            except (ConnectionError, RuntimeError) as exc:  # peer went away
                log.debug("gateway send failed: %s", exc)


@dataclass
class _Session:
    id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    events: deque = field(default_factory=lambda: deque(maxlen=2000))
    conn: _GatewayConn | None = None


class DiscordSimServer:
    """Loopback Discord: REST + gateway + webhooks.  See the module docstring."""

    def __init__(
        self,
        application_id: int = 1111,
        bot_user_id: int = 1111,
        guild_id: int = 2222,
        channel_ids: Sequence[int] | None = None,
        *,
        bot_token: str | None = None,
        bot_username: str = "PressureBot",
        guild_name: str = "Pressure Lab",
        heartbeat_interval: int = 41250,
        rate_limit: int = 50,
        rate_limit_window: float = 1.0,
        interaction_ack_timeout: float | None = 3.0,
    ) -> None:
        self.application_id = int(application_id)
        self.bot_user_id = int(bot_user_id)
        self.guild_id = int(guild_id)
        self.channel_ids = [int(c) for c in (channel_ids if channel_ids is not None else [3333, 3334])]
        self.bot_token = bot_token
        self.bot_username = bot_username
        self.guild_name = guild_name
        self.heartbeat_interval = int(heartbeat_interval)
        self.rate_limit = int(rate_limit)
        self.rate_limit_window = float(rate_limit_window)
        self.interaction_ack_timeout = interaction_ack_timeout

        self.root: str = ""
        self.api_base: str = ""
        self.gateway_url: str = ""
        self.port: int = 0

        # observation
        # (method, request path incl. /api/v10 prefix, parsed JSON body or payload_json; a list for bulk command PUTs)
        self.calls: list[tuple[str, str, Any]] = []
        self.identifies: list[dict] = []  # IDENTIFY payloads (token removed)
        self.resumes: list[dict] = []  # RESUME payloads (token removed)
        self.gateway_connections: list[dict] = []  # query params + compression actually used, per websocket
        self.presences: list[dict] = []
        self.attachment_data: dict[int, bytes] = {}

        # state
        self._inc = 0
        self._last_id = 0
        self._faults: list[_Fault] = []
        self._buckets: dict[tuple[str, str], list[float]] = {}
        self._users: dict[int, dict] = {}
        self._members: dict[int, dict] = {}
        self._channels: dict[int, dict] = {}
        self._dm_by_user: dict[int, int] = {}
        self._messages: dict[int, list[dict]] = {}
        self._message_index: dict[int, dict] = {}
        self._webhooks: dict[int, dict] = {}
        self._webhook_messages: dict[int, list[dict]] = {}
        self._global_commands: list[dict] = []
        self._guild_commands: dict[int, list[dict]] = {}
        self._command_ids: dict[tuple[int | None, str, int], int] = {}
        self._interactions_by_token: dict[str, _Interaction] = {}
        self._sessions: dict[str, _Session] = {}
        self._conns: list[_GatewayConn] = []
        self._ready_event: asyncio.Event | None = None
        self._changed: asyncio.Condition | None = None
        self._runner: web.AppRunner | None = None
        self._started_at = time.time()

        self._users[self.bot_user_id] = {
            "id": str(self.bot_user_id),
            "username": bot_username,
            "discriminator": "4242",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "system": False,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
        }
        self._everyone_role_id = self.guild_id
        self._bot_role_id = self._next_id()
        self._members[self.bot_user_id] = self._member_obj(self.bot_user_id)
        self.add_user(4444, "trader")
        for cid in self.channel_ids:
            self._channels[cid] = self._guild_text_channel(cid, position=len(self._channels))
            self._messages[cid] = []
        self.add_webhook(5555, "hooktoken")

    # ------------------------------------------------------------------ ids & objects
    def _next_id(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH
        self._inc = (self._inc + 1) & 0xFFF
        sid = (ms << 22) | (1 << 17) | (os.getpid() & 0x1F) << 12 | self._inc
        if sid <= self._last_id:
            sid = self._last_id + 1
        self._last_id = sid
        return sid

    def add_user(self, user_id: int, username: str | None = None) -> dict:
        """Register a (human) guild member the server knows by id."""
        uid = int(user_id)
        user = {
            "id": str(uid),
            "username": username or f"user{uid}",
            "discriminator": "0",
            "global_name": (username or f"user{uid}").title(),
            "avatar": None,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
            "clan": None,
            "primary_guild": None,
        }
        self._users[uid] = user
        self._members[uid] = self._member_obj(uid)
        return user

    def _user_obj(self, uid: int) -> dict:
        if uid not in self._users:
            self.add_user(uid)
        return self._users[uid]

    def _member_obj(self, uid: int, *, with_user: bool = True) -> dict:
        is_bot = uid == self.bot_user_id
        m = {
            "avatar": None,
            "banner": None,
            "communication_disabled_until": None,
            "deaf": False,
            "flags": 0,
            "joined_at": _now_iso(self._started_at - 86400 * 30),
            "mute": False,
            "nick": None,
            "pending": False,
            "premium_since": None,
            "roles": [str(self._bot_role_id)] if is_bot else [],
            "unusual_dm_activity_until": None,
        }
        if with_user:
            m["user"] = self._users[uid]
        return m

    def _guild_text_channel(self, cid: int, position: int) -> dict:
        return {
            "id": str(cid),
            "type": 0,
            "guild_id": str(self.guild_id),
            "name": f"alerts-{position + 1}" if position else "alerts",
            "position": position,
            "permission_overwrites": [],
            "parent_id": None,
            "topic": "Derivatives pressure alerts",
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
            "icon_emoji": None,
            "theme_color": None,
        }

    def _roles(self) -> list[dict]:
        base = {
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "managed": False,
            "mentionable": False,
            "flags": 0,
            "description": None,
        }
        return [
            {**base, "id": str(self._everyone_role_id), "name": "@everyone", "position": 0, "permissions": PERMS_EVERYONE},
            {
                **base,
                "id": str(self._bot_role_id),
                "name": self.bot_username,
                "position": 1,
                "permissions": "8",
                "managed": True,
                "tags": {"bot_id": str(self.bot_user_id)},
            },
        ]

    def _guild_obj(self, *, full: bool, intents: int = 0) -> dict:
        g: dict[str, Any] = {
            "id": str(self.guild_id),
            "name": self.guild_name,
            "icon": None,
            "icon_hash": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(4444),
            "region": "deprecated",
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 1,
            "default_message_notifications": 1,
            "explicit_content_filter": 2,
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": str(self.channel_ids[0]) if self.channel_ids else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "max_presences": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "roles": self._roles(),
            "emojis": [],
            "stickers": [],
            "incidents_data": None,
            "latest_onboarding_question_id": None,
            "home_header": None,
            "hub_type": None,
            "inventory_settings": None,
        }
        if full:
            g.update(
                {
                    "joined_at": _now_iso(self._started_at - 86400 * 30),
                    "large": False,
                    "unavailable": False,
                    "lazy": True,
                    "member_count": len(self._members),
                    "voice_states": [],
                    # like Discord: all members of a small guild only with GUILD_MEMBERS + GUILD_PRESENCES,
                    # else just the bot
                    "members": (
                        [self._member_obj(uid) for uid in self._members]
                        if intents & INTENT_GUILD_MEMBERS and intents & INTENT_GUILD_PRESENCES
                        else [self._member_obj(self.bot_user_id)]
                    ),
                    "channels": [
                        {k: v for k, v in c.items() if k != "guild_id"}
                        for c in self._channels.values()
                        if c["type"] != 1
                    ],
                    "threads": [],
                    "presences": [],
                    "stage_instances": [],
                    "guild_scheduled_events": [],
                    "soundboard_sounds": [],
                    "embedded_activities": [],
                    "activity_instances": [],
                    "application_command_counts": {},
                    "version": int(self._started_at * 1000),
                }
            )
        return g

    def _app_info(self) -> dict:
        return {
            "id": str(self.application_id),
            "name": self.bot_username,
            "icon": None,
            "description": "Derivatives pressure bot (simulated application)",
            "summary": "",
            "type": None,
            "hook": True,
            "bot_public": False,
            "bot_require_code_grant": False,
            "verify_key": secrets.token_hex(32),
            "flags": (1 << 19) | (1 << 23),
            "owner": self._user_obj(4444),
            "team": None,
            "bot": self._users[self.bot_user_id],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "tags": [],
            "install_params": None,
            "integration_types_config": {"0": {}},
            "approximate_guild_count": 1,
            "approximate_user_install_count": 0,
        }

    # ------------------------------------------------------------------ lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._ready_event = asyncio.Event()
        self._changed = asyncio.Condition()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway_handler)
        app.router.add_get("/gateway/", self._gateway_handler)
        for method, path, handler in self._control_routes():
            app.router.add_route(method, path, handler)
        app.router.add_route("*", "/{tail:.*}", self._http_handler)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1]
        self.root = f"http://{host}:{self.port}"
        self.api_base = f"{self.root}/api/v10"
        self.gateway_url = f"ws://{host}:{self.port}/gateway"
        log.info("Discord sim listening on %s (gateway %s)", self.root, self.gateway_url)
        return self.root

    async def stop(self) -> None:
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                await conn.close(1001, "server shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "DiscordSimServer":
        if not self.root:
            await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def webhook_url(self, webhook_id: int = 5555, token: str = "hooktoken", *, channel_id: int | None = None) -> str:
        """URL of a channel webhook (registering it if new), like ``https://discord.com/api/webhooks/{id}/{token}``."""
        wid = int(webhook_id)
        if wid not in self._webhooks or self._webhooks[wid]["deleted"]:
            self.add_webhook(wid, token, channel_id=channel_id)
        return f"{self.root}/api/webhooks/{wid}/{token}"

    def add_webhook(self, webhook_id: int, token: str, *, channel_id: int | None = None, name: str = "Pressure Alerts") -> dict:
        wid = int(webhook_id)
        ch = int(channel_id) if channel_id is not None else (self.channel_ids[0] if self.channel_ids else 0)
        hook = {
            "id": str(wid),
            "type": 1,
            "token": token,
            "name": name,
            "avatar": None,
            "channel_id": str(ch),
            "guild_id": str(self.guild_id),
            "application_id": None,
            "user": self._users[self.bot_user_id],
            "deleted": False,
        }
        self._webhooks[wid] = hook
        self._webhook_messages.setdefault(wid, [])
        return hook

    def delete_webhook(self, webhook_id: int) -> None:
        """Afterwards executes/fetches of this webhook answer ``404 {"code": 10015, "message": "Unknown Webhook"}``."""
        hook = self._webhooks.get(int(webhook_id))
        if hook is not None:
            hook["deleted"] = True
        else:
            self._webhooks[int(webhook_id)] = {"id": str(webhook_id), "token": "", "deleted": True, "channel_id": "0"}

    # ------------------------------------------------------------------ observing
    def interaction_responses(self, token: str) -> list[dict]:
        """Bodies the bot sent for this interaction, in order.

        Each entry is the JSON body as sent plus ``_kind`` (``callback``,
        ``edit_original``, ``followup``, ``edit_message``) and, where a message
        was created/edited, ``_message_id``.  Callback entries look like ``{"type": 4, "data": {...}}``
        or ``{"type": 5}``; follow-ups like ``{"embeds": [...], ...}``.
        """
        inter = self._interactions_by_token.get(token)
        return copy.deepcopy(inter.responses) if inter else []

    def channel_messages(self, channel_id: int) -> list[dict]:
        """Messages currently in the channel (oldest first), as Discord Message objects."""
        return copy.deepcopy(self._messages.get(int(channel_id), []))

    def webhook_messages(self, webhook_id: int) -> list[dict]:
        return copy.deepcopy(self._webhook_messages.get(int(webhook_id), []))

    def dm_channel_id(self, user_id: int) -> int | None:
        return self._dm_by_user.get(int(user_id))

    def dm_messages(self, user_id: int) -> list[dict]:
        cid = self._dm_by_user.get(int(user_id))
        return self.channel_messages(cid) if cid else []

    @property
    def synced_commands(self) -> list[dict]:
        """Global commands followed by every guild's commands (guild ones carry ``guild_id``)."""
        out = copy.deepcopy(self._global_commands)
        for cmds in self._guild_commands.values():
            out.extend(copy.deepcopy(cmds))
        return out

    def global_commands(self) -> list[dict]:
        return copy.deepcopy(self._global_commands)

    def guild_commands(self, guild_id: int | None = None) -> list[dict]:
        return copy.deepcopy(self._guild_commands.get(int(guild_id or self.guild_id), []))

    @property
    def connected(self) -> bool:
        return any(c.session is not None and not c.ws.closed for c in self._conns)

    async def _notify(self) -> None:
        if self._changed is None:
            return
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Wait until ``predicate()`` is truthy; returns its value.

        Re-checked on every server state change and at least every 20 ms (so
        predicates on client-side state work too).  Raises ``TimeoutError``.
        """
        assert self._changed is not None, "server not started"
        cond = self._changed

        async def _loop() -> Any:
            async with cond:
                while True:
                    value = predicate()
                    if value:
                        return value
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(cond.wait(), 0.02)

        return await asyncio.wait_for(_loop(), timeout)

    async def wait_interaction_responses(self, token: str, count: int = 1, timeout: float = 5.0) -> list[dict]:
        await self.wait_for(lambda: len(self.interaction_responses(token)) >= count, timeout)
        return self.interaction_responses(token)

    async def wait_channel_messages(self, channel_id: int, count: int = 1, timeout: float = 5.0) -> list[dict]:
        await self.wait_for(lambda: len(self._messages.get(int(channel_id), [])) >= count, timeout)
        return self.channel_messages(channel_id)

    async def wait_webhook_messages(self, webhook_id: int, count: int = 1, timeout: float = 5.0) -> list[dict]:
        await self.wait_for(lambda: len(self._webhook_messages.get(int(webhook_id), [])) >= count, timeout)
        return self.webhook_messages(webhook_id)

    async def wait_ready(self, timeout: float = 10) -> None:
        """Until a client IDENTIFYed and got READY (+ GUILD_CREATE when its intents include GUILDS)."""
        assert self._ready_event is not None, "server not started"
        await asyncio.wait_for(self._ready_event.wait(), timeout)

    # ------------------------------------------------------------------ faults
    def fail_next(
        self,
        path_contains: str,
        status: int,
        body: dict,
        times: int = 1,
        headers: dict | None = None,
        *,
        method: str | None = None,
    ) -> None:
        """Answer the next ``times`` REST requests whose path (+query) contains ``path_contains`` with ``status``/``body``.

        For 429 the Discord rate-limit headers are added automatically
        (``Retry-After``, ``X-RateLimit-Limit/Remaining=0/Reset/Reset-After/Bucket/Scope``,
        ``X-RateLimit-Global`` when ``body["global"]``, and ``Via: 1.1 google`` so
        discord.py treats it as a real rate limit and retries).  ``headers``
        override/extend them; pass ``{"Via": ""}`` to simulate a Cloudflare ban.
        """
        self._faults.append(_Fault(path_contains, int(status), body, int(times), headers, method.upper() if method else None))

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT; discord.py closes and RESUMEs on resume_gateway_url."""
        for conn in self._live_conns():
            await conn.send({"op": 7, "d": None, "s": None, "t": None})

    def _live_conns(self) -> list[_GatewayConn]:
        return [c for c in self._conns if not c.ws.closed]

    # ------------------------------------------------------------------ driving
    def _find_command(self, name: str, type_: int = 1) -> dict | None:
        for cmd in self._guild_commands.get(self.guild_id, []):
            if cmd["name"] == name and cmd.get("type", 1) == type_:
                return cmd
        for cmd in self._global_commands:
            if cmd["name"] == name and cmd.get("type", 1) == type_:
                return cmd
        return None

    @staticmethod
    def _normalise_options(options: list[dict], spec: list[dict] | None) -> list[dict]:
        out = []
        spec_by_name = {o["name"]: o for o in (spec or [])}
        for opt in options:
            o = dict(opt)
            s = spec_by_name.get(o.get("name"))
            if "type" not in o:
                if s is not None:
                    o["type"] = s["type"]
                else:
                    v = o.get("value")
                    o["type"] = 5 if isinstance(v, bool) else 4 if isinstance(v, int) else 10 if isinstance(v, float) else 3
            if o["type"] in (1, 2):
                o["options"] = DiscordSimServer._normalise_options(o.get("options", []), (s or {}).get("options"))
            out.append(o)
        return out

    async def send_interaction(
        self,
        name: str,
        options: list[dict] | None = None,
        user_id: int = 4444,
        channel_id: int = 3333,
        type: int = 2,
        *,
        command_type: int = 1,
    ) -> str:
        """Dispatch INTERACTION_CREATE (type 2 APPLICATION_COMMAND or 4 AUTOCOMPLETE) to the connected client.

        ``options`` are Discord interaction options (``{"name": "symbol", "value": "BTC"}``;
        ``type`` is filled from the synced command when missing; autocomplete
        needs ``"focused": True`` on one option).  A ``channel_id`` of a DM
        channel (see :meth:`dm_channel_id`) produces a DM interaction.  Returns
        the interaction token for :meth:`interaction_responses`.
        """
        session = self._current_session()
        if session is None:
            raise RuntimeError("no gateway client is connected/identified")
        cmd = self._find_command(name, command_type)
        cmd_id = int(cmd["id"]) if cmd else self._command_id(None, name, command_type)
        uid = int(user_id)
        user = self._user_obj(uid)
        cid = int(channel_id)
        channel = self._channels.get(cid)
        is_dm = channel is not None and channel["type"] == 1
        iid = self._next_id()
        raw = f"interaction:{iid}:{secrets.token_urlsafe(96)}".encode()
        token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        data: dict[str, Any] = {"id": str(cmd_id), "name": name, "type": command_type}
        if options:
            data["options"] = self._normalise_options(options, cmd.get("options") if cmd else None)
        if cmd and cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.application_id),
            "type": int(type),
            "token": token,
            "version": 1,
            "data": data,
            "channel_id": str(cid),
            "app_permissions": PERMS_ALL,
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": MAX_ATTACHMENT_BYTES,
        }
        if is_dm:
            payload["channel"] = {k: v for k, v in channel.items()}
            payload["user"] = user
            payload["context"] = 1
            payload["authorizing_integration_owners"] = {"0": str(self.guild_id)}
        else:
            ch = channel or self._guild_text_channel(cid, position=0)
            payload["channel"] = {**ch, "permissions": PERMS_MEMBER}
            payload["guild_id"] = str(self.guild_id)
            payload["guild"] = {"id": str(self.guild_id), "locale": "en-US", "features": []}
            payload["guild_locale"] = "en-US"
            payload["member"] = {**self._member_obj(uid), "user": user, "permissions": PERMS_MEMBER}
            payload["context"] = 0
            payload["authorizing_integration_owners"] = {"0": str(self.guild_id)}
        inter = _Interaction(
            id=iid,
            token=token,
            type=int(type),
            name=name,
            channel_id=cid,
            guild_id=None if is_dm else self.guild_id,
            user_id=uid,
            created=time.monotonic(),
        )
        self._interactions_by_token[token] = inter
        await self._dispatch(session, "INTERACTION_CREATE", payload)
        return token

    # ------------------------------------------------------------------ gateway
    def _current_session(self) -> _Session | None:
        for conn in reversed(self._conns):
            if conn.session is not None and not conn.ws.closed:
                return conn.session
        # a session between connections (e.g. during RESUME) still buffers events
        return next(reversed(self._sessions.values()), None) if self._sessions else None

    async def _dispatch(self, session: _Session, event: str, data: dict) -> None:
        session.seq += 1
        payload = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.events.append(payload)
        if session.conn is not None and not session.conn.ws.closed:
            await session.conn.send(payload)

    async def _gateway_handler(self, request: web.Request) -> web.StreamResponse:
        encoding = request.query.get("encoding", "json")
        compress = request.query.get("compress")
        ws = web.WebSocketResponse(timeout=3.0, compress=False, max_msg_size=16 * 1024 * 1024, autoping=True)
        await ws.prepare(request)
        conn = _GatewayConn(ws, compress if compress in ("zlib-stream", "zstd-stream") else None)
        self._conns.append(conn)
        self.gateway_connections.append(
            {
                "v": request.query.get("v"),
                "encoding": encoding,
                "compress": compress,
                "effective_compression": conn.effective_compression,
            }
        )
        log.debug("gateway connect v=%s encoding=%s compress=%s", request.query.get("v"), encoding, compress)
        try:
            if encoding != "json":
                await conn.close(4002, "Error while decoding payload.")
                return ws
            trace = ['["gateway-sim",{"micros":0}]']
            await conn.send({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval, "_trace": trace}, "s": None, "t": None})
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    text = msg.data
                elif msg.type == WSMsgType.BINARY:
                    text = msg.data.decode()
                else:
                    break
                try:
                    frame = json.loads(text)
                    op = frame["op"]
                except (ValueError, KeyError, TypeError):
                    await conn.close(4002, "Error while decoding payload.")
                    break
                await self._gateway_op(conn, op, frame.get("d"))
        finally:
            session = conn.session
            if session is not None and session.conn is conn:
                session.conn = None
                # like Discord: a client closing with 1000/1001 ends its session (no RESUME possible)
                if not conn.server_closed and ws.close_code in (1000, 1001):
                    self._sessions.pop(session.id, None)
            if conn in self._conns:
                self._conns.remove(conn)
        return ws

    async def _gateway_op(self, conn: _GatewayConn, op: int, d: Any) -> None:
        if op == 1:  # heartbeat
            await conn.send({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:  # identify
            await self._identify(conn, d or {})
        elif op == 6:  # resume
            await self._resume(conn, d or {})
        elif op == 3:  # presence update
            self.presences.append(d)
        elif op == 4:  # voice state: nothing to do
            pass
        else:
            await conn.close(4001, "Unknown opcode.")

    def _token_ok(self, token: str | None) -> bool:
        if not token:
            return False
        token = token[4:] if token.startswith("Bot ") else token
        return self.bot_token is None or token == self.bot_token

    async def _identify(self, conn: _GatewayConn, d: dict) -> None:
        if conn.session is not None:
            await conn.close(4005, "Already authenticated.")
            return
        if not self._token_ok(d.get("token")):
            await conn.close(4004, "Authentication failed.")
            return
        if "intents" not in d:
            await conn.close(4013, "Invalid intent(s).")
            return
        self.identifies.append({k: v for k, v in d.items() if k != "token"})
        session = _Session(id=secrets.token_hex(16), intents=int(d["intents"]), shard=d.get("shard"))
        session.conn = conn
        conn.session = session
        self._sessions[session.id] = session
        ready = {
            "v": 10,
            "user_settings": {},
            "user": {**self._users[self.bot_user_id], "verified": True, "mfa_enabled": False, "email": None},
            "guilds": [{"id": str(self.guild_id), "unavailable": True}],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "shard": session.shard or [0, 1],
            "application": {"id": str(self.application_id), "flags": (1 << 19) | (1 << 23)},
            "private_channels": [],
            "presences": [],
            "relationships": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["rotterdam", "frankfurt", "london", "milan", "madrid"],
            "auth": {},
            "_trace": ['["gateway-sim",{"micros":0}]'],
        }
        await self._dispatch(session, "READY", ready)
        if session.intents & INTENT_GUILDS:
            await self._dispatch(session, "GUILD_CREATE", self._guild_obj(full=True, intents=session.intents))
        if self._ready_event is not None:
            self._ready_event.set()
        await self._notify()

    async def _resume(self, conn: _GatewayConn, d: dict) -> None:
        self.resumes.append({k: v for k, v in d.items() if k != "token"})
        session = self._sessions.get(d.get("session_id") or "")
        if session is None or not self._token_ok(d.get("token")):
            await conn.send({"op": 9, "d": False, "s": None, "t": None})
            return
        old = session.conn
        session.conn = conn
        conn.session = session
        if old is not None and old is not conn and not old.ws.closed:
            old.session = None
            with contextlib.suppress(Exception):
                await old.close(4000, "Session resumed elsewhere.")
        last = int(d.get("seq") or 0)
        for ev in list(session.events):
            if ev["s"] > last:
                await conn.send(ev)
        session.seq += 1
        resumed = {"op": 0, "t": "RESUMED", "s": session.seq, "d": {"_trace": ['["gateway-sim",{"micros":0}]']}}
        session.events.append(resumed)
        await conn.send(resumed)
        await self._notify()

    # ------------------------------------------------------------------ HTTP plumbing
    _API_RE = re.compile(r"^/api(?:/v(?P<version>\d+))?(?P<rest>/.*)$")

    # (method, regex, handler name, needs bot auth, major params)
    _ROUTES: list[tuple[str, str, str, bool, tuple[str, ...]]] = [
        ("GET", r"/users/@me", "_r_me", True, ()),
        ("POST", r"/users/@me/channels", "_r_create_dm", True, ()),
        ("GET", r"/users/(?P<user_id>\d+)", "_r_get_user", True, ()),
        ("GET", r"/(?:oauth2/)?applications/@me", "_r_app_info", True, ()),
        ("PUT", r"/applications/(?P<app_id>\d+)(?:/guilds/(?P<guild_id>\d+))?/commands", "_r_put_commands", True, ("guild_id",)),
        ("POST", r"/interactions/(?P<interaction_id>\d+)/(?P<token>[^/]+)/callback", "_r_callback", False, ("interaction_id", "token")),
        ("GET", r"/webhooks/(?P<webhook_id>\d+)/(?P<token>[^/]+)/messages/(?P<message_id>@original|\d+)", "_r_wh_get_message", False, ("webhook_id", "token")),
        ("PATCH", r"/webhooks/(?P<webhook_id>\d+)/(?P<token>[^/]+)/messages/(?P<message_id>@original|\d+)", "_r_wh_edit_message", False, ("webhook_id", "token")),
        ("POST", r"/webhooks/(?P<webhook_id>\d+)/(?P<token>[^/]+)", "_r_wh_execute", False, ("webhook_id", "token")),
        ("GET", r"/channels/(?P<channel_id>\d+)", "_r_get_channel", True, ("channel_id",)),
        ("GET", r"/channels/(?P<channel_id>\d+)/messages", "_r_list_messages", True, ("channel_id",)),
        ("POST", r"/channels/(?P<channel_id>\d+)/messages", "_r_create_message", True, ("channel_id",)),
    ]
    _COMPILED = [(m, re.compile(f"^{p}/?$"), h, a, mp, p) for (m, p, h, a, mp) in _ROUTES]

    async def _read_body(self, request: web.Request) -> tuple[Any, list[dict]]:
        if request.method in ("GET", "HEAD") or not request.can_read_body:
            return None, []
        ctype = request.content_type
        files: list[dict] = []
        if ctype.startswith("multipart/"):
            body: dict[str, Any] | None = None
            fields: dict[str, Any] = {}
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                name = part.name or ""
                data = await part.read(decode=False)  # type: ignore[union-attr]
                if part.filename:  # type: ignore[union-attr]
                    files.append(
                        {
                            "field": name,
                            "filename": part.filename,  # type: ignore[union-attr]
                            "content_type": part.headers.get("Content-Type", "application/octet-stream"),
                            "data": bytes(data),
                        }
                    )
                elif name == "payload_json":
                    try:
                        body = json.loads(bytes(data).decode())
                    except ValueError:
                        raise _form_error({"payload_json": {"_errors": [{"code": "JSON_INVALID", "message": "Invalid JSON"}]}})
                else:
                    fields[name] = bytes(data).decode(errors="replace")
            return (body if body is not None else fields), files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            raise SimApiError(400, {"code": 50109, "message": "The request body contains invalid JSON."})

    def _ratelimit_headers(self, bucket_key: tuple[str, str], count: int, reset_at: float) -> dict[str, str]:
        now = time.time()
        return {
            "X-RateLimit-Bucket": bucket_key[0],
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(self.rate_limit - count, 0)),
            "X-RateLimit-Reset": f"{reset_at:.3f}",
            "X-RateLimit-Reset-After": f"{max(reset_at - now, 0.0):.3f}",
        }

    def _take_fault(self, method: str, path_qs: str) -> _Fault | None:
        for f in self._faults:
            if f.path_contains in path_qs and (f.method is None or f.method == method):
                f.times -= 1
                if f.times <= 0:
                    self._faults.remove(f)
                return f
        return None

    @staticmethod
    def _json_response(status: int, body: Any, headers: dict[str, str]) -> web.Response:
        if status == 204 or body is None:
            return web.Response(status=204 if status < 300 else status, headers=headers)
        # exactly "application/json" (no charset): discord.py's json_or_text compares the header verbatim
        return web.Response(status=status, body=json.dumps(body).encode(), headers={**headers, "Content-Type": "application/json"})

    async def _http_handler(self, request: web.Request) -> web.StreamResponse:
        m = self._API_RE.match(request.path)
        base_headers = {"Via": "1.1 google", "Server": "cloudflare"}
        try:
            body, files = await self._read_body(request)
        except SimApiError as e:
            self.calls.append((request.method, request.path, None))
            return self._json_response(e.status, e.body, base_headers)
        self.calls.append((request.method, request.path, body))
        if files:
            log.debug("%s %s with %d file(s)", request.method, request.path, len(files))
        if m is None:
            return self._json_response(404, {"message": "404: Not Found", "code": 0}, base_headers)
        rest = m.group("rest")
        route = None
        path_matched = False
        for method, rx, handler, needs_auth, majors, template in self._COMPILED:
            mm = rx.match(rest)
            if mm is None:
                continue
            path_matched = True
            if method == request.method:
                route = (handler, needs_auth, majors, template, {k: v for k, v in mm.groupdict().items() if v is not None})
                break
        if route is None:
            if path_matched:
                return self._json_response(405, {"message": "405: Method Not Allowed", "code": 0}, base_headers)
            return self._json_response(404, {"message": "404: Not Found", "code": 0}, base_headers)
        handler, needs_auth, majors, template, params = route
        bucket = _bucket_hash(f"{request.method} {template}")
        major = ":".join(params.get(k, "") for k in majors)
        key = (bucket, major)

        # injected faults first
        fault = self._take_fault(request.method, request.path_qs)
        if fault is not None:
            headers = dict(base_headers)
            if fault.status == 429:
                retry = float(fault.body.get("retry_after", 1.0)) if isinstance(fault.body, dict) else 1.0
                is_global = bool(fault.body.get("global")) if isinstance(fault.body, dict) else False
                headers.update(
                    {
                        "Retry-After": str(max(1, int(retry + 0.999))),
                        "X-RateLimit-Limit": str(self.rate_limit),
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": f"{time.time() + retry:.3f}",
                        "X-RateLimit-Reset-After": f"{retry:.3f}",
                        "X-RateLimit-Bucket": bucket,
                        "X-RateLimit-Scope": "global" if is_global else "user",
                    }
                )
                if is_global:
                    headers["X-RateLimit-Global"] = "true"
            headers.update({k: v for k, v in (fault.headers or {}).items() if v is not None})
            headers = {k: v for k, v in headers.items() if v != ""}
            await self._notify()
            return self._json_response(fault.status, fault.body, headers)

        # rate-limit bucket accounting (sliding window reset)
        now = time.time()
        state = self._buckets.get(key)
        if state is None or now >= state[1]:
            state = [0, now + self.rate_limit_window]
            self._buckets[key] = state
        state[0] += 1
        if state[0] > self.rate_limit:
            retry = max(state[1] - now, 0.001)
            headers = {
                **base_headers,
                **self._ratelimit_headers(key, int(state[0]), state[1]),
                "Retry-After": str(max(1, int(retry + 0.999))),
                "X-RateLimit-Scope": "user",
            }
            return self._json_response(
                429, {"message": "You are being rate limited.", "retry_after": round(retry, 3), "global": False}, headers
            )
        headers = {**base_headers, **self._ratelimit_headers(key, int(state[0]), state[1])}

        if needs_auth and not self._token_ok(request.headers.get("Authorization")):
            return self._json_response(401, {"message": "401: Unauthorized", "code": 0}, headers)

        req = _Req(request.method, request.path, params, dict(request.query), body, files, request.headers)
        try:
            status, out = await getattr(self, handler)(req)
        except SimApiError as e:
            headers.update(e.headers)
            return self._json_response(e.status, e.body, headers)
        finally:
            await self._notify()
        return self._json_response(status, out, headers)

    # ------------------------------------------------------------------ message helpers
    def _validate_message(self, body: dict, files: list[dict], *, require_content: bool = True) -> None:
        errors: dict[str, Any] = {}
        content = body.get("content")
        if content is not None and not isinstance(content, str):
            content = str(content)
        if content and len(content) > MAX_CONTENT:
            errors["content"] = _max_len_err(MAX_CONTENT)
        embeds = body.get("embeds") or []
        if body.get("embed"):
            embeds = [body["embed"], *embeds]
        if len(embeds) > MAX_EMBEDS:
            errors["embeds"] = _max_len_err(MAX_EMBEDS)
        else:
            embed_errors: dict[str, Any] = {}
            total = 0
            for i, e in enumerate(embeds):
                ee: dict[str, Any] = {}
                title = e.get("title") or ""
                desc = e.get("description") or ""
                fields = e.get("fields") or []
                footer = (e.get("footer") or {}).get("text") or ""
                author = (e.get("author") or {}).get("name") or ""
                if len(title) > MAX_EMBED_TITLE:
                    ee["title"] = _max_len_err(MAX_EMBED_TITLE)
                if len(desc) > MAX_EMBED_DESCRIPTION:
                    ee["description"] = _max_len_err(MAX_EMBED_DESCRIPTION)
                if len(footer) > MAX_FOOTER_TEXT:
                    ee["footer"] = {"text": _max_len_err(MAX_FOOTER_TEXT)}
                if len(author) > MAX_AUTHOR_NAME:
                    ee["author"] = {"name": _max_len_err(MAX_AUTHOR_NAME)}
                if len(fields) > MAX_EMBED_FIELDS:
                    ee["fields"] = _max_len_err(MAX_EMBED_FIELDS)
                else:
                    fe: dict[str, Any] = {}
                    for j, f in enumerate(fields):
                        one: dict[str, Any] = {}
                        name = str(f.get("name") or "")
                        value = str(f.get("value") or "")
                        if not name:
                            one["name"] = {"_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}]}
                        elif len(name) > MAX_FIELD_NAME:
                            one["name"] = _max_len_err(MAX_FIELD_NAME)
                        if not value:
                            one["value"] = {"_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}]}
                        elif len(value) > MAX_FIELD_VALUE:
                            one["value"] = _max_len_err(MAX_FIELD_VALUE)
                        if one:
                            fe[str(j)] = one
                        total += len(name) + len(value)
                    if fe:
                        ee["fields"] = fe
                total += len(title) + len(desc) + len(footer) + len(author)
                if ee:
                    embed_errors[str(i)] = ee
            if embed_errors:
                errors["embeds"] = embed_errors
            elif total > MAX_EMBED_TOTAL:
                errors["embeds"] = {
                    "_errors": [{"code": "MAX_EMBED_SIZE_EXCEEDED", "message": f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL}"}]
                }
        if errors:
            raise _form_error(errors)
        for f in files:
            if len(f["data"]) > MAX_ATTACHMENT_BYTES:
                raise SimApiError(413, {"message": "Request entity too large", "code": 40005})
        if require_content and not (
            content
            or embeds
            or files
            or body.get("components")
            or body.get("sticker_ids")
            or body.get("poll")
        ):
            raise SimApiError(400, {"message": "Cannot send an empty message", "code": 50006})

    def _attachments(self, body: dict, files: list[dict], channel_id: int) -> list[dict]:
        meta = {}
        for a in body.get("attachments") or []:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                meta[str(a["id"])] = a
        out = []
        for idx, f in enumerate(files):
            m = re.match(r"files\[(\d+)\]", f["field"])
            index = m.group(1) if m else str(idx)
            info = meta.get(index, {})
            aid = self._next_id()
            filename = info.get("filename") or f["filename"]
            ctype = f["content_type"]
            if ctype in ("application/octet-stream", "", None):
                ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
            url = f"{self.root}/attachments/{channel_id}/{aid}/{filename}"
            att: dict[str, Any] = {
                "id": str(aid),
                "filename": filename,
                "size": len(f["data"]),
                "url": url,
                "proxy_url": url,
                "content_type": ctype,
            }
            if info.get("description"):
                att["description"] = info["description"]
            dims = _png_size(f["data"])
            if dims:
                att["width"], att["height"] = dims
            self.attachment_data[aid] = f["data"]
            out.append(att)
        return out

    @staticmethod
    def _embeds(body: dict) -> list[dict]:
        embeds = list(body.get("embeds") or [])
        if body.get("embed"):
            embeds.insert(0, body["embed"])
        out = []
        for e in embeds:
            e = dict(e)
            e.setdefault("type", "rich")
            if "fields" in e:
                e["fields"] = [{**f, "inline": bool(f.get("inline", False))} for f in e["fields"]]
            out.append(e)
        return out

    def _make_message(
        self,
        channel_id: int,
        body: dict,
        files: list[dict],
        *,
        author: dict,
        msg_type: int = 0,
        flags: int = 0,
        webhook_id: int | None = None,
        interaction: _Interaction | None = None,
    ) -> dict:
        mid = self._next_id()
        msg: dict[str, Any] = {
            "type": msg_type,
            "channel_id": str(channel_id),
            "content": body.get("content") or "",
            "attachments": self._attachments(body, files, channel_id),
            "embeds": self._embeds(body),
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "flags": flags | int(body.get("flags") or 0),
            "components": body.get("components") or [],
            "id": str(mid),
            "author": author,
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
            "mention_everyone": False,
            "tts": bool(body.get("tts", False)),
        }
        if body.get("nonce") is not None:
            msg["nonce"] = body["nonce"]
        if body.get("message_reference"):
            msg["message_reference"] = {**body["message_reference"], "channel_id": str(channel_id), "type": 0}
        if body.get("poll"):
            msg["poll"] = body["poll"]
        if webhook_id is not None:
            msg["webhook_id"] = str(webhook_id)
        if interaction is not None:
            msg["application_id"] = str(self.application_id)
            msg["webhook_id"] = str(self.application_id)
            user = self._user_obj(interaction.user_id)
            msg["interaction_metadata"] = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": user,
                "authorizing_integration_owners": {"0": str(interaction.guild_id or self.guild_id)},
                "name": interaction.name,
                "command_type": 1,
            }
            msg["interaction"] = {"id": str(interaction.id), "type": interaction.type, "name": interaction.name, "user": user}
        return msg

    async def _store_message(self, msg: dict, *, webhook_id: int | None = None) -> None:
        cid = int(msg["channel_id"])
        mid = int(msg["id"])
        self._message_index[mid] = msg
        if not msg["flags"] & MSG_FLAG_EPHEMERAL:
            self._messages.setdefault(cid, []).append(msg)
            ch = self._channels.get(cid)
            if ch is not None:
                ch["last_message_id"] = msg["id"]
            await self._gateway_message_event("MESSAGE_CREATE", msg)
        if webhook_id is not None:
            self._webhook_messages.setdefault(webhook_id, []).append(msg)

    async def _gateway_message_event(self, event: str, msg: dict) -> None:
        cid = int(msg["channel_id"])
        ch = self._channels.get(cid)
        is_dm = ch is not None and ch["type"] == 1
        for session in list(self._sessions.values()):
            intent = INTENT_DIRECT_MESSAGES if is_dm else INTENT_GUILD_MESSAGES
            if not session.intents & intent or session.conn is None or session.conn.ws.closed:
                continue
            data = copy.deepcopy(msg)
            own = msg["author"]["id"] == str(self.bot_user_id)
            if not own and not session.intents & INTENT_MESSAGE_CONTENT and not is_dm:
                data.update(content="", embeds=[], attachments=[], components=[])
            if not is_dm:
                data["guild_id"] = str(self.guild_id)
                if "webhook_id" not in msg:
                    data["member"] = self._member_obj(int(msg["author"]["id"]), with_user=False)
            await self._dispatch(session, event, data)

    def _apply_edit(self, msg: dict, body: dict, files: list[dict]) -> None:
        if "content" in body:
            msg["content"] = body["content"] or ""
        if "embeds" in body or "embed" in body:
            msg["embeds"] = self._embeds(body)
        if "components" in body:
            msg["components"] = body["components"] or []
        if "flags" in body and body["flags"] is not None:
            msg["flags"] = (msg["flags"] & (MSG_FLAG_EPHEMERAL | MSG_FLAG_LOADING)) | int(body["flags"])
        if "attachments" in body or files:
            keep_ids = {str(a.get("id")) for a in (body.get("attachments") or []) if isinstance(a, dict)}
            kept = [a for a in msg["attachments"] if a["id"] in keep_ids]
            msg["attachments"] = kept + self._attachments(body, files, int(msg["channel_id"]))
        msg["edited_timestamp"] = _now_iso()

    # ------------------------------------------------------------------ routes: misc
    async def _r_me(self, req: _Req) -> tuple[int, Any]:
        return 200, {**self._users[self.bot_user_id], "verified": True, "mfa_enabled": False, "locale": "en-US", "email": None}

    async def _r_get_user(self, req: _Req) -> tuple[int, Any]:
        uid = int(req.params["user_id"])
        if uid not in self._users:
            raise SimApiError(404, {"message": "Unknown User", "code": 10013})
        return 200, self._users[uid]

    async def _r_app_info(self, req: _Req) -> tuple[int, Any]:
        return 200, self._app_info()

    async def _r_create_dm(self, req: _Req) -> tuple[int, Any]:
        body = req.body or {}
        try:
            uid = int(body["recipient_id"])
        except (KeyError, TypeError, ValueError):
            raise _form_error({"recipient_id": {"_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}]}})
        if uid not in self._users:
            raise SimApiError(400, {"message": "Invalid Recipient(s)", "code": 50033})
        cid = self._dm_by_user.get(uid)
        if cid is None:
            cid = self._next_id()
            self._dm_by_user[uid] = cid
            self._channels[cid] = {
                "id": str(cid),
                "type": 1,
                "last_message_id": None,
                "flags": 0,
                "recipients": [self._users[uid]],
            }
            self._messages[cid] = []
        return 200, self._channels[cid]

    # ------------------------------------------------------------------ routes: commands
    def _command_id(self, guild_id: int | None, name: str, type_: int) -> int:
        key = (guild_id, name, type_)
        if key not in self._command_ids:
            self._command_ids[key] = self._next_id()
        return self._command_ids[key]

    def _check_app(self, req: _Req) -> int | None:
        if int(req.params["app_id"]) != self.application_id:
            raise SimApiError(403, {"message": "Missing Access", "code": 50001})
        gid = req.params.get("guild_id")
        if gid is not None and int(gid) != self.guild_id:
            raise SimApiError(403, {"message": "Missing Access", "code": 50001})
        return int(gid) if gid is not None else None

    _NAME_RE = re.compile(r"^[-_'\w]{1,32}$", re.UNICODE)

    def _command_obj(self, raw: dict, guild_id: int | None, index: int, errors: dict) -> dict:
        err: dict[str, Any] = {}
        name = raw.get("name") or ""
        type_ = int(raw.get("type", 1))
        if not isinstance(name, str) or not self._NAME_RE.match(name) or (type_ == 1 and name != name.lower()):
            err["name"] = {"_errors": [{"code": "APPLICATION_COMMAND_INVALID_NAME", "message": "Command name is invalid"}]}
        desc = raw.get("description", "")
        if type_ == 1 and not (1 <= len(desc or "") <= 100):
            err["description"] = {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH", "message": "Must be between 1 and 100 in length."}]}
        if len(raw.get("options") or []) > 25:
            err["options"] = _max_len_err(25)
        if err:
            errors[str(index)] = err
        cmd_id = self._command_id(guild_id, name, type_)
        cmd = {
            "id": str(cmd_id),
            "application_id": str(self.application_id),
            "version": str(self._next_id()),
            "default_member_permissions": raw.get("default_member_permissions"),
            "type": type_,
            "name": name,
            "name_localizations": raw.get("name_localizations"),
            "description": desc or "",
            "description_localizations": raw.get("description_localizations"),
            "dm_permission": raw.get("dm_permission", True),
            "contexts": raw.get("contexts"),
            "integration_types": raw.get("integration_types") or [0],
            "nsfw": bool(raw.get("nsfw", False)),
        }
        if raw.get("options"):
            cmd["options"] = raw["options"]
        if guild_id is not None:
            cmd["guild_id"] = str(guild_id)
        return cmd

    def _cmd_list(self, guild_id: int | None) -> list[dict]:
        if guild_id is None:
            return self._global_commands
        return self._guild_commands.setdefault(guild_id, [])

    async def _r_put_commands(self, req: _Req) -> tuple[int, Any]:
        gid = self._check_app(req)
        body = req.body
        if not isinstance(body, list):
            raise _form_error({"_errors": [{"code": "BASE_TYPE_ARRAY", "message": "Must be an array."}]})
        if len(body) > 100:
            raise SimApiError(400, {"message": "Maximum number of application commands reached (100)", "code": 30032})
        errors: dict[str, Any] = {}
        cmds = [self._command_obj(raw, gid, i, errors) for i, raw in enumerate(body)]
        if errors:
            raise _form_error(errors)
        lst = self._cmd_list(gid)
        lst[:] = cmds
        return 200, cmds

    # ------------------------------------------------------------------ routes: interactions
    def _interaction(self, req: _Req) -> _Interaction:
        inter = self._interactions_by_token.get(req.params["token"])
        if inter is None or str(inter.id) != req.params["interaction_id"]:
            raise SimApiError(404, {"message": "Unknown interaction", "code": 10062})
        return inter

    async def _r_callback(self, req: _Req) -> tuple[int, Any]:
        inter = self._interaction(req)
        body = req.body if isinstance(req.body, dict) else {}
        if inter.acked_type is not None:
            raise SimApiError(400, {"message": "Interaction has already been acknowledged.", "code": 40060})
        if self.interaction_ack_timeout is not None and time.monotonic() - inter.created > self.interaction_ack_timeout:
            raise SimApiError(404, {"message": "Unknown interaction", "code": 10062})
        rtype = body.get("type")
        allowed = {8} if inter.type == 4 else {4, 5, 9, 12}
        if inter.type == 3:
            allowed = {4, 5, 6, 7, 9}
        if rtype not in allowed:
            raise _form_error({"type": {"_errors": [{"code": "INTERACTION_RESPONSE_TYPE_INVALID", "message": "Value must be one of %s." % sorted(allowed)}]}})
        data = body.get("data") or {}
        entry = {**copy.deepcopy(body), "_kind": "callback"}
        message = None
        if rtype == 4:
            self._validate_message(data, req.files)
            message = self._make_message(
                inter.channel_id, data, req.files, author=self._users[self.bot_user_id], msg_type=20, interaction=inter
            )
        elif rtype == 5:
            message = self._make_message(
                inter.channel_id,
                {"flags": data.get("flags") or 0},
                [],
                author=self._users[self.bot_user_id],
                msg_type=20,
                flags=MSG_FLAG_LOADING,
                interaction=inter,
            )
        elif rtype == 8:
            choices = data.get("choices") or []
            if len(choices) > MAX_AUTOCOMPLETE_CHOICES:
                raise _form_error({"data": {"choices": _max_len_err(MAX_AUTOCOMPLETE_CHOICES)}})
        elif rtype == 9:
            if not data.get("custom_id") or not data.get("title"):
                raise _form_error({"data": {"_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}]}})
        inter.acked_type = rtype
        if message is not None:
            inter.original_message_id = int(message["id"])
            entry["_message_id"] = message["id"]
            await self._store_message(message)
        inter.responses.append(entry)
        if req.query.get("with_response", "").lower() not in ("1", "true"):
            return 204, None
        info: dict[str, Any] = {"id": str(inter.id), "type": inter.type}
        resource: dict[str, Any] = {"type": rtype}
        if message is not None:
            info["response_message_id"] = message["id"]
            info["response_message_loading"] = rtype == 5
            info["response_message_ephemeral"] = bool(message["flags"] & MSG_FLAG_EPHEMERAL)
            if rtype == 4:
                resource["message"] = message
        return 200, {"interaction": info, "resource": resource}

    # ------------------------------------------------------------------ routes: webhooks (channel + interaction)
    def _channel_webhook(self, req: _Req) -> dict:
        hook = self._webhooks.get(int(req.params["webhook_id"]))
        if hook is None or hook["deleted"]:
            raise SimApiError(404, {"message": "Unknown Webhook", "code": 10015})
        if hook["token"] != req.params["token"]:
            raise SimApiError(401, {"message": "Invalid Webhook Token", "code": 50027})
        return hook

    def _interaction_for_webhook(self, req: _Req) -> _Interaction | None:
        if int(req.params["webhook_id"]) != self.application_id:
            return None
        return self._interactions_by_token.get(req.params["token"])

    @staticmethod
    def _wants_wait(req: _Req) -> bool:
        return req.query.get("wait", "").lower() in ("1", "true")

    async def _r_wh_execute(self, req: _Req) -> tuple[int, Any]:
        body = req.body if isinstance(req.body, dict) else {}
        inter = self._interaction_for_webhook(req)
        if inter is not None:
            return await self._followup(inter, req, body)
        hook = self._channel_webhook(req)
        self._validate_message(body, req.files)
        wid = int(hook["id"])
        author = {
            "id": hook["id"],
            "username": body.get("username") or hook["name"],
            "avatar": None,
            "discriminator": "0000",
            "public_flags": 0,
            "flags": 0,
            "bot": True,
            "global_name": None,
        }
        msg = self._make_message(int(hook["channel_id"]), body, req.files, author=author, webhook_id=wid)
        if body.get("avatar_url"):
            msg["author"]["avatar_url"] = body["avatar_url"]
        await self._store_message(msg, webhook_id=wid)
        return (200, msg) if self._wants_wait(req) else (204, None)

    async def _followup(self, inter: _Interaction, req: _Req, body: dict) -> tuple[int, Any]:
        if inter.acked_type is None:
            raise SimApiError(404, {"message": "Unknown Webhook", "code": 10015})
        self._validate_message(body, req.files)
        entry = {**copy.deepcopy(body), "_kind": "followup"}
        original = self._message_index.get(inter.original_message_id or 0)
        if original is not None and original["flags"] & MSG_FLAG_LOADING:
            # Discord: the first follow-up after a deferred response replaces the "thinking" message
            original["flags"] &= ~MSG_FLAG_LOADING
            self._apply_edit(original, {**body, "flags": body.get("flags") or 0}, req.files)
            original["edited_timestamp"] = None
            msg = original
            if not msg["flags"] & MSG_FLAG_EPHEMERAL:
                await self._gateway_message_event("MESSAGE_UPDATE", msg)
        else:
            msg = self._make_message(
                inter.channel_id, body, req.files, author=self._users[self.bot_user_id], msg_type=20, interaction=inter
            )
            await self._store_message(msg)
        entry["_message_id"] = msg["id"]
        inter.responses.append(entry)
        return (200, msg) if self._wants_wait(req) else (204, None)

    def _webhook_message(self, req: _Req) -> tuple[_Interaction | None, dict]:
        inter = self._interaction_for_webhook(req)
        mid_raw = req.params["message_id"]
        if inter is not None:
            mid = inter.original_message_id if mid_raw == "@original" else int(mid_raw)
            msg = self._message_index.get(mid or 0)
            if msg is None or msg.get("interaction_metadata", {}).get("id") != str(inter.id):
                raise SimApiError(404, {"message": "Unknown Message", "code": 10008})
            return inter, msg
        hook = self._channel_webhook(req)
        if mid_raw == "@original":
            raise SimApiError(404, {"message": "Unknown Message", "code": 10008})
        msg = self._message_index.get(int(mid_raw))
        if msg is None or msg.get("webhook_id") != hook["id"]:
            raise SimApiError(404, {"message": "Unknown Message", "code": 10008})
        return None, msg

    async def _r_wh_get_message(self, req: _Req) -> tuple[int, Any]:
        return 200, self._webhook_message(req)[1]

    async def _r_wh_edit_message(self, req: _Req) -> tuple[int, Any]:
        inter, msg = self._webhook_message(req)
        body = req.body if isinstance(req.body, dict) else {}
        merged = {"content": msg["content"], "embeds": msg["embeds"], **body}
        self._validate_message(merged, req.files, require_content=False)
        was_loading = bool(msg["flags"] & MSG_FLAG_LOADING)
        msg["flags"] &= ~MSG_FLAG_LOADING
        self._apply_edit(msg, body, req.files)
        if was_loading:
            msg["edited_timestamp"] = None
        if inter is not None:
            kind = "edit_original" if req.params["message_id"] == "@original" else "edit_message"
            inter.responses.append({**copy.deepcopy(body), "_kind": kind, "_message_id": msg["id"]})
        if not msg["flags"] & MSG_FLAG_EPHEMERAL:
            await self._gateway_message_event("MESSAGE_UPDATE", msg)
        return 200, msg

    # ------------------------------------------------------------------ routes: channels
    def _channel(self, req: _Req) -> dict:
        ch = self._channels.get(int(req.params["channel_id"]))
        if ch is None:
            raise SimApiError(404, {"message": "Unknown Channel", "code": 10003})
        return ch

    async def _r_get_channel(self, req: _Req) -> tuple[int, Any]:
        return 200, self._channel(req)

    async def _r_list_messages(self, req: _Req) -> tuple[int, Any]:
        ch = self._channel(req)
        limit = max(1, min(100, int(req.query.get("limit", 50))))
        msgs = list(reversed(self._messages.get(int(ch["id"]), [])))
        return 200, msgs[:limit]

    async def _r_create_message(self, req: _Req) -> tuple[int, Any]:
        ch = self._channel(req)
        body = req.body if isinstance(req.body, dict) else {}
        self._validate_message(body, req.files)
        msg = self._make_message(int(ch["id"]), body, req.files, author=self._users[self.bot_user_id])
        await self._store_message(msg)
        return 200, msg

    # ------------------------------------------------------------------ control surface (/_sim)
    def _control_routes(self) -> list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]]:
        """JSON endpoints to drive/observe the simulator from another process (never recorded in ``calls``).

        * ``GET  /_sim/state`` - summary: connected, calls count, synced commands, channel/webhook message counts
        * ``GET  /_sim/calls`` - every REST call ``[[method, path, body], ...]``
        * ``POST /_sim/interactions`` ``{"name", "options", "user_id", "channel_id", "type"}`` → ``{"token"}``
        * ``GET  /_sim/interactions/{token}`` - :meth:`interaction_responses`
        * ``GET  /_sim/channels/{id}/messages``, ``GET /_sim/webhooks/{id}/messages``
        * ``POST /_sim/fail`` ``{"path_contains", "status", "body", "times", "headers", "method"}``
        * ``POST /_sim/webhooks/{id}/delete``
        * ``GET  /attachments/{channel}/{attachment}/{filename}`` - uploaded bytes
        """

        async def state(request: web.Request) -> web.Response:
            return web.json_response(
                {
                    "root": self.root,
                    "api_base": self.api_base,
                    "gateway_url": self.gateway_url,
                    "connected": self.connected,
                    "calls": len(self.calls),
                    "synced_commands": self.synced_commands,
                    "channels": {str(k): len(v) for k, v in self._messages.items()},
                    "webhooks": {str(k): len(v) for k, v in self._webhook_messages.items()},
                }
            )

        async def calls(request: web.Request) -> web.Response:
            return web.json_response([list(c) for c in self.calls])

        async def interaction(request: web.Request) -> web.Response:
            d = await request.json()
            try:
                token = await self.send_interaction(
                    d["name"],
                    d.get("options"),
                    user_id=int(d.get("user_id", 4444)),
                    channel_id=int(d.get("channel_id", self.channel_ids[0] if self.channel_ids else 0)),
                    type=int(d.get("type", 2)),
                )
            except RuntimeError as exc:
                return web.json_response({"error": str(exc)}, status=409)
            return web.json_response({"token": token})

        async def responses(request: web.Request) -> web.Response:
            return web.json_response(self.interaction_responses(request.match_info["token"]))

        async def ch_messages(request: web.Request) -> web.Response:
            return web.json_response(self.channel_messages(int(request.match_info["cid"])))

        async def wh_messages(request: web.Request) -> web.Response:
            return web.json_response(self.webhook_messages(int(request.match_info["wid"])))

        async def fail(request: web.Request) -> web.Response:
            d = await request.json()
            self.fail_next(d["path_contains"], int(d["status"]), d.get("body") or {}, int(d.get("times", 1)), d.get("headers"), method=d.get("method"))
            return web.json_response({"ok": True})

        async def wh_delete(request: web.Request) -> web.Response:
            self.delete_webhook(int(request.match_info["wid"]))
            return web.json_response({"ok": True})

        async def attachment(request: web.Request) -> web.Response:
            data = self.attachment_data.get(int(request.match_info["aid"]))
            if data is None:
                return web.Response(status=404)
            ctype = mimetypes.guess_type(request.match_info["filename"])[0] or "application/octet-stream"
            return web.Response(body=data, content_type=ctype)

        return [
            ("GET", "/_sim/state", state),
            ("GET", "/_sim/calls", calls),
            ("POST", "/_sim/interactions", interaction),
            ("GET", "/_sim/interactions/{token}", responses),
            ("GET", "/_sim/channels/{cid}/messages", ch_messages),
            ("GET", "/_sim/webhooks/{wid}/messages", wh_messages),
            ("POST", "/_sim/fail", fail),
            ("POST", "/_sim/webhooks/{wid}/delete", wh_delete),
            ("GET", "/attachments/{cid}/{aid}/{filename}", attachment),
        ]


@contextlib.contextmanager
def patch_discord(server: DiscordSimServer) -> Iterator[None]:
    """Point discord.py's ``Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY`` at ``server``; restore on exit."""
    import discord.gateway
    import discord.http
    import yarl

    old_base = discord.http.Route.BASE
    old_gw = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = server.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(server.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gw


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Discord-shaped REST + gateway + webhook server on loopback")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8083)
    p.add_argument("--application-id", type=int, default=1111)
    p.add_argument("--bot-user-id", type=int, default=1111)
    p.add_argument("--guild-id", type=int, default=2222)
    p.add_argument("--channel-ids", default="3333,3334")
    p.add_argument("--token", default=None, help="bot token to require (default: accept any)")
    p.add_argument("--heartbeat-interval", type=int, default=41250)
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = DiscordSimServer(
        application_id=args.application_id,
        bot_user_id=args.bot_user_id,
        guild_id=args.guild_id,
        channel_ids=[int(c) for c in args.channel_ids.split(",") if c.strip()],
        bot_token=args.token,
        heartbeat_interval=args.heartbeat_interval,
    )

    async def start() -> str:
        root = await server.start(args.host, args.port)
        return (f"Discord sim: root={root} api_base={server.api_base} gateway={server.gateway_url}\n"
                f"  webhook: {server.webhook_url()}\n"
                "  discord.py: Route.BASE = api_base; DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)")

    run_until_signalled(start, server.stop)


if __name__ == "__main__":
    main()
