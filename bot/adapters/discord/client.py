"""Bot mode: the discord.py client and the slash commands, in the app's one asyncio loop.

`CommandBridge` turns `bot.commands.REGISTRY` into app commands (choices for choice params, autocomplete for
symbol params) and runs them: Interaction -> `commands.Context` -> `commands.dispatch` -> messages. What it
needs to know about a command is on the `Command`: `slow` ones are deferred first, `personal` ones answered
ephemerally in servers. `DiscordBot` logs in (retrying network failures, giving up on a rejected token),
syncs the commands only when they changed, and re-checks channels disabled earlier.
"""
from __future__ import annotations

import asyncio
import hashlib
import inspect
import io
import json
import logging
import os
import re
import time
from typing import Any, Awaitable, Callable, Optional

import discord
import discord.gateway
import discord.http
import yarl
from discord import app_commands

from ... import commands as registry
from ...config import DiscordConfig
from ...logsetup import REDACTOR
from ...queries import Queries
from ...symbols import clean
from .format import reply_messages, truncate
from .routes import CHANNEL, MetaStore, RouteBook

log = logging.getLogger(__name__)

PLATFORM = "discord"
MAX_CHOICES = 25
MAX_COMMAND_DESCRIPTION = 100
META_SYNC = "discord.commands_sync"
# slow commands (Command.slow) are answered after a defer ("thinking…"), within Discord's 3 s acknowledgement
# deadline; others are answered directly if ready within this budget, else deferred
ACK_BUDGET_S = 1.5


# ============================================================================================ slash commands
def _annotation(p: registry.Param):
    base = int if p.kind == "int" else str
    return base if p.required else Optional[base]


def _split_arg(p: registry.Param, value: Any) -> list[str]:
    """Options -> Telegram-style args: every text option split on spaces (symbol lists also on commas)."""
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, str):
        return [str(value)]
    sep = r"[\s,]+" if p.kind == "symbol" else r"\s+"
    return [t for t in re.split(sep, value.strip()) if t]


def discord_commands(cfg: DiscordConfig) -> list[registry.Command]:
    """The registry's Discord commands (admin ones only when a guild is configured: they are limited to that
    guild's administrators)."""
    return [c for c in registry.REGISTRY.values() if c.offered_on(PLATFORM) and (not c.admin or cfg.guild_id)]


class CommandBridge:
    """Builds the app commands from REGISTRY and runs them: Interaction -> Context -> dispatch -> messages."""

    def __init__(self, cfg: DiscordConfig, queries: Queries):
        self.cfg, self.queries = cfg, queries

    # -- building
    def build(self, tree: app_commands.CommandTree, guild: discord.abc.Snowflake | None) -> list[app_commands.Command]:
        built = [self._make(c) for c in discord_commands(self.cfg)]
        for cmd in built:
            tree.add_command(cmd, guild=guild, override=True)
        return built

    def _make(self, cmd: registry.Command) -> app_commands.Command:
        bridge = self

        async def callback(interaction: discord.Interaction, **options: Any) -> None:
            await bridge.run(cmd, interaction, options)

        params = [inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    annotation=discord.Interaction)]
        for p in cmd.params:
            params.append(inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, annotation=_annotation(p),
                                            default=inspect.Parameter.empty if p.required else None))
        callback.__signature__ = inspect.Signature(params)   # discord.py reads the options from it
        callback.__qualname__ = callback.__name__ = f"slash_{cmd.name}"
        fn: Any = callback
        if cmd.params:
            fn = app_commands.describe(**{p.name: truncate(p.description, 100) for p in cmd.params})(fn)
        choices = {p.name: [app_commands.Choice(name=c, value=c) for c in p.choices] for p in cmd.params if p.choices}
        if choices:
            fn = app_commands.choices(**choices)(fn)
        ac = {p.name: self.autocomplete for p in cmd.params if p.kind == "symbol" and not p.choices}
        if ac:
            fn = app_commands.autocomplete(**ac)(fn)
        if cmd.admin:
            fn = app_commands.default_permissions(administrator=True)(fn)
            fn = app_commands.guild_only()(fn)
        return app_commands.Command(name=cmd.name, description=truncate(cmd.summary, MAX_COMMAND_DESCRIPTION),
                                    callback=fn)

    # -- autocomplete
    def _symbols(self) -> list[tuple[str, dict | None]]:
        """The snapshot's symbols (in memory): ranked ones first, the most stressed first, then the rest."""
        snap = self.queries.snapshot()
        ordered: list[tuple[str, dict | None]] = [(r["symbol"], r) for r in snap.results]
        ordered += [(s, None) for s in sorted(snap.universe) if snap.result(s) is None]
        return ordered

    async def autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        """Symbols from the universe / latest scores; for a list option the last word is completed."""
        tokens = [t for t in re.split(r"[\s,]+", current or "") if t]
        partial = "" if (not current or current[-1:] in (" ", ",")) else (tokens.pop() if tokens else "")
        prefix = " ".join(tokens)
        q = clean(partial)
        try:
            symbols = self._symbols()
        except Exception:
            log.exception("autocomplete: no symbols")
            return []
        starts = [(s, r) for s, r in symbols if s.startswith(q)]
        inside = [(s, r) for s, r in symbols if q and q in s and not s.startswith(q)]
        out = []
        for s, r in (starts + inside)[:MAX_CHOICES]:
            value = f"{prefix} {s}".strip() if prefix else s
            label = f"{s} · {r['score']} {r['bias']}" if r else s
            if prefix:
                label = f"{prefix} {label}"
            out.append(app_commands.Choice(name=truncate(label, 100), value=truncate(value, 100)))
        return out

    # -- running
    def context(self, cmd: registry.Command, interaction: discord.Interaction, options: dict) -> registry.Context:
        user = interaction.user
        hit = self.queries.watchlists.by_discord_user(user.id)
        user_id = hit[0] if hit else f"dc-{user.id}"
        args: list[str] = []
        for p in cmd.params:
            args += _split_arg(p, options.get(p.name))
        name = getattr(user, "display_name", None) or user.name
        guild_id = self.cfg.guild_id
        perms = interaction.permissions
        is_admin = bool(guild_id and interaction.guild_id == guild_id and perms and perms.administrator)
        return registry.Context(queries=self.queries, user_id=user_id, platform=PLATFORM, args=args,
                                display_name=name, identity={"discord_user_id": user.id, "name": truncate(name, 100)},
                                is_admin=is_admin, can_edit=True)

    async def _dispatch(self, cmd: registry.Command, ctx: registry.Context) -> registry.Reply:
        try:
            return await registry.dispatch(cmd.name, ctx)
        except Exception:
            log.exception("discord /%s failed", cmd.name)
            return registry.Reply(text="Something went wrong on our side; it was logged. Please try again later.",
                                  error=True)

    async def run(self, cmd: registry.Command, interaction: discord.Interaction, options: dict) -> None:
        private = cmd.personal and interaction.guild_id is not None     # ephemeral in servers
        deferred = False
        try:
            ctx = self.context(cmd, interaction, options)
            task = asyncio.create_task(self._dispatch(cmd, ctx))
            if cmd.slow:
                await interaction.response.defer(thinking=True, ephemeral=private)
                deferred = True
            else:
                done, _ = await asyncio.wait({task}, timeout=ACK_BUDGET_S)
                if not done:
                    await interaction.response.defer(thinking=True, ephemeral=private)
                    deferred = True
            reply = await task
            messages = reply_messages(reply)
            for i, m in enumerate(messages):
                kwargs: dict[str, Any] = {"embeds": [discord.Embed.from_dict(e) for e in m["embeds"]],
                                          "allowed_mentions": discord.AllowedMentions.none()}
                if m.get("content"):
                    kwargs["content"] = m["content"]
                files = [discord.File(io.BytesIO(data), filename=name) for name, data in m.get("files", [])]
                if files:
                    kwargs["files"] = files
                ephemeral = private or (reply.error and not deferred and i == 0)
                if i == 0 and not deferred:
                    await interaction.response.send_message(ephemeral=ephemeral, **kwargs)
                else:
                    await interaction.followup.send(ephemeral=ephemeral, wait=True, **kwargs)
        except discord.NotFound as e:
            log.warning("discord /%s: interaction expired before we answered (%s %s)", cmd.name, e.status, e.code)
        except discord.HTTPException as e:
            log.warning("discord /%s: answer refused: %s %s %s", cmd.name, e.status, e.code, e.text)


class _Client(discord.Client):
    def __init__(self, on_setup: Callable[[], Awaitable[None]], **options: Any):
        super().__init__(**options)
        self._on_setup = on_setup

    async def setup_hook(self) -> None:   # after login, before the gateway: sync commands if they changed
        try:
            await self._on_setup()
        except Exception:
            log.exception("discord setup failed (commands may be stale)")


class DiscordBot:
    """The bot account: one discord.py client (replaced on a login retry), its command tree and gateway task."""

    def __init__(self, cfg: DiscordConfig, queries: Queries, meta: MetaStore, routes: RouteBook, token: str, *,
                 api_base_url: str | None = None, gateway_url: str | None = None, ready_timeout: float = 20.0,
                 client_options: dict | None = None):
        self.cfg, self._meta, self._routes = cfg, meta, routes
        self._token = token
        self.api_base_url = api_base_url
        self.gateway_url = gateway_url
        self.ready_timeout = ready_timeout
        self.client_options = dict(client_options or {})
        self.client: discord.Client | None = None
        self.tree: app_commands.CommandTree | None = None
        self.bridge = CommandBridge(cfg, queries)
        self.synced = False
        self.failed: str | None = None            # why bot mode is off (a rejected token), else None
        self._task: asyncio.Task | None = None
        self._logging_in = False                  # in the login retry loop (stop() need not wait for it)
        self._saved_endpoints: tuple[str, Any] | None = None

    def __repr__(self) -> str:                 # never show the token
        return f"DiscordBot(api_base_url={self.api_base_url!r})"

    def current_client(self) -> discord.Client | None:
        """The handle senders get: the client of the moment (a login retry replaces it)."""
        return self.client

    def _patch_endpoints(self) -> None:
        self._saved_endpoints = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
        if self.api_base_url:
            discord.http.Route.BASE = self.api_base_url.rstrip("/")
        if self.gateway_url:
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)

    def _restore_endpoints(self) -> None:
        if self._saved_endpoints is not None:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self._saved_endpoints
            self._saved_endpoints = None

    def _new_client(self) -> discord.Client:
        # GUILDS only (not privileged): slash commands arrive as interactions, alerts use channel ids
        options = {"intents": discord.Intents(guilds=True), "allowed_mentions": discord.AllowedMentions.none(),
                   "max_ratelimit_timeout": 30.0, **self.client_options}
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False   # no voice here: no warnings
        client = _Client(self._setup, **options)
        tree = app_commands.CommandTree(client)

        @tree.error
        async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
            log.error("discord command error: %s", error, exc_info=error)

        self.tree = tree
        guild = discord.Object(self.cfg.guild_id) if self.cfg.guild_id else None
        self.bridge.build(tree, guild)
        return client

    def commands_hash(self) -> str:
        assert self.tree is not None and self.client is not None
        guild = discord.Object(self.cfg.guild_id) if self.cfg.guild_id else None
        payload = sorted((c.to_dict(self.tree) for c in self.tree.get_commands(guild=guild)), key=lambda d: d["name"])
        blob = json.dumps({"app": self.client.application_id, "guild": self.cfg.guild_id, "commands": payload},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    async def _setup(self) -> None:
        """After login: sync the slash commands only if they changed since the last sync (discord.py's advice:
        syncing on every start risks rate limits), and re-check channels disabled earlier."""
        h = self.commands_hash()
        last = await asyncio.to_thread(self._meta.get_meta, META_SYNC)
        if (last or {}).get("hash") == h and not os.environ.get("DISCORD_FORCE_SYNC"):
            log.info("discord commands unchanged since the last sync: not syncing")
        else:
            guild = discord.Object(self.cfg.guild_id) if self.cfg.guild_id else None
            synced = await self.tree.sync(guild=guild)
            await asyncio.to_thread(self._meta.set_meta, META_SYNC, {"hash": h, "at": int(time.time())})
            self.synced = True
            log.info("discord commands synced (%s): %s", f"guild {self.cfg.guild_id}" if guild else "global",
                     ", ".join(sorted(c.name for c in synced)))
        for key in [k for k in self._routes.disabled() if k.startswith(CHANNEL + ":")]:
            cid = int(key.partition(":")[2])
            try:
                await self.client.fetch_channel(cid)
            except (discord.NotFound, discord.Forbidden):
                continue
            except discord.HTTPException:
                continue
            self._routes.enable(CHANNEL, str(cid))
            log.info("discord channel %s is reachable again: alerts enabled", cid)
            await asyncio.to_thread(self._routes.save)

    async def start(self) -> None:
        """Log in and connect in this loop, waiting (bounded) until ready."""
        self._patch_endpoints()
        self.client = self._new_client()
        self._task = asyncio.create_task(self._run(), name="discord-gateway")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        while loop.time() < deadline and not self._task.done() and not self.client.is_ready():
            await asyncio.sleep(0.02)
        if self.client.is_ready():
            log.info("discord bot connected as %s (application %s)", self.client.user, self.client.application_id)
        elif self._task.done():
            log.error("discord bot mode is off: the gateway connection ended (see above)")
        else:
            log.warning("discord gateway not ready after %.0fs; continuing (it keeps trying; alerts wait in the "
                        "outbox)", self.ready_timeout)

    async def _run(self) -> None:
        delay = 1.0
        self._logging_in = True
        while True:
            try:
                await self.client.login(self._token)
                break
            except discord.LoginFailure:
                log.error("discord rejected the bot token (401): check DISCORD_BOT_TOKEN; bot mode is off")
                self.failed = "bot token rejected"   # the adapter stops offering the bot's channels
                await self.client.close()
                return
            except (OSError, asyncio.TimeoutError, discord.HTTPException) as e:
                log.warning("discord login failed (%s); retrying in %.0fs", type(e).__name__, delay)
                await self.client.close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)
                self.client = self._new_client()
        self._logging_in = False
        try:
            await self.client.connect(reconnect=True)
        except asyncio.CancelledError:
            raise
        except Exception as e:   # e.g. 4004 bad token, 4014 disallowed intents: discord.py gives up
            log.error("discord gateway stopped: %s: %s", type(e).__name__, REDACTOR.redact(str(e)))

    async def stop(self) -> None:
        try:
            if self.client is not None:
                await self.client.close()
            if self._task is not None and self._logging_in:   # between login retries: nothing to wind down
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            elif self._task is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._task), timeout=5)
                except (asyncio.TimeoutError, Exception):
                    self._task.cancel()
        finally:
            self._restore_endpoints()
