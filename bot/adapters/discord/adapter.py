"""Discord: channel alerts and slash commands (bot mode), channel alerts by webhook (webhook mode).

Either mode, both, or neither may be configured (`DiscordAdapter.from_env`):

* **Bot mode** (`DISCORD_BOT_TOKEN`): a discord.py `Client` + `app_commands.CommandTree` in the bot's one
  asyncio loop. Slash commands are generated from `bot.commands.REGISTRY` (choices for choice params,
  autocomplete for symbol params) and synced only when the command set changed. Alerts go to the channels in
  `discord.channels` (each with its own filter) and, with `discord.dm_users`, by DM to users whose watchlist
  names their `discord_user_id`.
* **Webhook mode** (`DISCORD_WEBHOOK_URL`, or any `url_env` of `discord.webhooks`; one variable may hold several
  comma-separated URLs): alerts POSTed as embeds with httpx (`bot/adapters/discord/webhook.py`).

The adapter only translates: Interaction -> `commands.Context`, `commands.Reply` / outbox `Digest` -> embeds
coloured by bias, within Discord's limits. Delivery (exactly once, retries, rate limits) is the outbox's job;
a deleted channel or revoked webhook is reported once and disabled (persisted in the store's meta table).
Tokens and webhook URLs come from the environment only and never reach a log line. docs/discord.md is the
user-facing guide.
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
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable, Optional

import discord
import discord.gateway
import discord.http
import yarl
from discord import app_commands

from ... import commands as registry
from ... import report
from ...config import AlertFilter, DiscordConfig
from ...engine import Recipient, Route
from ...logsetup import REDACTOR, install_redaction
from ...outbox import DeliveryError, Digest
from ...rules import FilterSubscriber, band_thresholds

if TYPE_CHECKING:
    from ...app import Services
    from .webhook import WebhookSender

log = logging.getLogger(__name__)

# ---- Discord limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits) ------
MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_TITLE = 256
MAX_DESCRIPTION = 4096
MAX_FIELDS = 25
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 1024
MAX_FOOTER = 2048
MAX_CHOICES = 25
MAX_COMMAND_DESCRIPTION = 100

COLOURS = {"LONG": 0x2ECC71, "SHORT": 0xE74C3C, "NEUTRAL": 0x95A5A6}
INFO_COLOUR = 0x5865F2          # answers without a bias (tables, help)
ERROR_COLOUR = 0xE67E22
FULL_ALERT_EMBEDS = 10          # a digest shows this many alerts in full, the rest as one line each

CHANNEL = "discord-channel"
DM = "discord-dm"
WEBHOOK = "webhook"
META_DISABLED = "discord.disabled_routes"
META_SYNC = "discord.commands_sync"

# slow commands (Command.slow) are answered after a defer ("thinking…"), within Discord's 3 s acknowledgement
# deadline; others are answered directly if ready within this budget, else deferred
ACK_BUDGET_S = 1.5


# ============================================================================================ formatting
def colour(bias: str | None) -> int:
    return COLOURS.get((bias or "").upper(), INFO_COLOUR)


_MD = re.compile(r"([\\*_~`|])")


def escape(text: str) -> str:
    """Discord markdown escaped (symbols like 1000PEPE_USDT, regime keys with underscores)."""
    text = _MD.sub(r"\\\1", text)
    return re.sub(r"(?m)^([#>])", r"\\\1", text)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def split_lines(text: str, limit: int) -> list[str]:
    """Chunks of at most `limit` characters, split at line boundaries (a longer line is cut)."""
    chunks, cur = [], ""
    for line in text.split("\n"):
        while len(line) > limit:
            if cur:
                chunks.append(cur)
                cur = ""
            chunks.append(line[:limit])
            line = line[limit:]
        if cur and len(cur) + 1 + len(line) > limit:
            chunks.append(cur)
            cur = line
        else:
            cur = f"{cur}\n{line}" if cur else line
    if cur or not chunks:
        chunks.append(cur)
    return chunks


def code_blocks(text: str, limit: int = MAX_DESCRIPTION, header: str | None = None) -> list[str]:
    """Text in ``` code blocks of at most `limit` characters; `header` (a table's) repeats in each."""
    text = text.replace("```", "ʼʼʼ")
    overhead = len("```\n\n```") + (len(header) + 1 if header else 0)
    out = []
    for chunk in split_lines(text, limit - overhead):
        body = f"{header}\n{chunk}" if header else chunk
        out.append(f"```\n{body}\n```")
    return out


def _aligned(text: str) -> bool:
    """Column-aligned text (explain, receipts) keeps its layout only in a code block."""
    return any(line.startswith("  ") for line in text.split("\n"))


def text_blocks(text: str) -> list[str]:
    if not text:
        return []
    if _aligned(text):
        return code_blocks(text)
    return split_lines(escape(text), MAX_DESCRIPTION)


def embed_size(e: dict) -> int:
    """Characters Discord counts toward the 6000 per message."""
    n = len(e.get("title", "")) + len(e.get("description", ""))
    n += sum(len(f["name"]) + len(f["value"]) for f in e.get("fields", []))
    n += len((e.get("footer") or {}).get("text", "")) + len((e.get("author") or {}).get("name", ""))
    return n


def pack_description(blocks: Iterable[str], limit: int = MAX_DESCRIPTION) -> list[str]:
    """Blocks (each within `limit`) joined by blank lines into as few descriptions as fit."""
    out, cur = [], ""
    for b in blocks:
        if cur and len(cur) + 2 + len(b) > limit:
            out.append(cur)
            cur = b
        else:
            cur = f"{cur}\n\n{b}" if cur else b
    if cur:
        out.append(cur)
    return out


def pack_messages(embeds: list[dict], content: str | None = None) -> list[dict]:
    """Embeds grouped into messages of at most 10 embeds and 6000 characters; `content` on the first."""
    messages: list[dict] = []
    cur: list[dict] = []
    size = 0
    for e in embeds:
        n = embed_size(e)
        if cur and (len(cur) >= MAX_EMBEDS or size + n > MAX_EMBED_TOTAL):
            messages.append({"embeds": cur})
            cur, size = [], 0
        cur.append(e)
        size += n
    if cur or not messages:
        messages.append({"embeds": cur})
    if content:
        messages[0]["content"] = truncate(content, MAX_CONTENT)
    return messages


def reply_messages(reply: registry.Reply) -> list[dict]:
    """A command's Reply as Discord messages: {"content"?, "embeds": [dict], "files": [(name, bytes)]}.

    Text goes to embed descriptions (aligned text and tables in code blocks), coloured by the reply's bias;
    an image becomes an attachment shown in the first embed, a document an attachment."""
    blocks = text_blocks(reply.text)
    if reply.table is not None:
        t = reply.table
        if t.caption:
            blocks += split_lines(escape(t.caption), MAX_DESCRIPTION)
        if t.rows:
            lines = report.format_table(t.header, t.rows).split("\n")
            blocks += code_blocks("\n".join(lines[1:]), header=lines[0])
    descriptions = pack_description(blocks) or [""]
    col = ERROR_COLOUR if reply.error else colour(reply.bias)
    embeds = []
    for i, d in enumerate(descriptions):
        e: dict[str, Any] = {"type": "rich", "color": col}
        if d:
            e["description"] = d
        if i == 0 and reply.title:
            e["title"] = truncate(reply.title, MAX_TITLE)
        elif i > 0 and reply.title:
            e["title"] = truncate(f"{reply.title} (continued)", MAX_TITLE)
        embeds.append(e)
    files: list[tuple[str, bytes]] = []
    if reply.image is not None:
        files.append(("chart.png", reply.image))
        embeds[0]["image"] = {"url": "attachment://chart.png"}
    if reply.document is not None:
        files.append(reply.document)
    if not any(e.get("description") or e.get("title") or e.get("image") for e in embeds):
        embeds[0]["description"] = "Done."
    messages = pack_messages(embeds)
    messages[0]["files"] = files
    return messages


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, timezone.utc).isoformat()


def signal_embed(sig: dict) -> dict:
    """One alert: title, colour by bias, score/band/regime, key inputs, and the signal id."""
    rec = sig["receipt"]
    i = rec.get("inputs") or {}
    fields = [
        {"name": "Score", "value": f"{sig['score']} ({rec.get('band', '?')})"
                                   + (f" · was {rec['prev_score']}" if rec.get("prev_score") is not None else ""),
         "inline": True},
        {"name": "Bias", "value": str(rec.get("bias", sig.get("bias"))), "inline": True},
        {"name": "Rule", "value": escape(str(rec.get("rule", sig.get("rule")))), "inline": True},
        {"name": "Regime", "value": escape(str(rec.get("regime", sig.get("regime")))), "inline": False},
        {"name": "Open interest", "value": f"1h {report.pct(i.get('oi_change_1h'))} · 4h "
                                           f"{report.pct(i.get('oi_change_4h'))} · 24h {report.pct(i.get('oi_change_24h'))}",
         "inline": False},
        {"name": "Funding", "value": f"{report.pct(i.get('funding_rate'), 4)} / {i.get('funding_interval_hours') or 8:g}h",
         "inline": True},
        {"name": "Basis", "value": report.pct(i.get("basis"), 3), "inline": True},
        {"name": "Price", "value": f"1h {report.pct(i.get('price_change_1h'))} · 24h "
                                   f"{report.pct(i.get('price_change_24h'))}", "inline": True},
    ]
    for f in fields:
        f["name"], f["value"] = truncate(f["name"], MAX_FIELD_NAME), truncate(f["value"] or "—", MAX_FIELD_VALUE)
    e = {"type": "rich", "title": truncate(report.alert_title(sig), MAX_TITLE), "color": colour(sig.get("bias")),
         "fields": fields[:MAX_FIELDS], "footer": {"text": f"signal {sig['id']} · /signal {sig['id']} for the receipt"}}
    if rec.get("reason"):
        e["description"] = truncate(escape(str(rec["reason"])), MAX_DESCRIPTION)
    if sig.get("ts"):
        e["timestamp"] = _iso(sig["ts"])
    return e


def delivery_ref(key: str) -> str:
    """A short marker of an outbox key, shown in the footer so a restart can tell whether it was posted."""
    return hashlib.sha1(key.encode()).hexdigest()[:10]


def digest_messages(digest: Digest) -> list[dict]:
    """An outbox digest as messages: the top alerts as full embeds, the rest one line each."""
    sigs = digest.signals
    n = len(sigs)
    content = f"🔔 {n} alert{'s' if n != 1 else ''}" + (" (held during quiet hours)" if digest.held else "")
    embeds = [signal_embed(s) for s in sigs[:FULL_ALERT_EMBEDS]]
    rest = sigs[FULL_ALERT_EMBEDS:]
    if rest:
        lines = [f"• {escape(report.alert_title(s))} — signal {s['id']}" for s in rest]
        for j, d in enumerate(split_lines("\n".join(lines), MAX_DESCRIPTION)):
            embeds.append({"type": "rich", "color": INFO_COLOUR, "description": d,
                           "title": f"… and {len(rest)} more" + (" (continued)" if j else "")})
    if not embeds:
        embeds.append({"type": "rich", "color": INFO_COLOUR, "description": "No alert details (signals pruned)."})
    refs = " ".join(delivery_ref(k) for k in digest.keys)
    last = embeds[-1]
    footer = (last.get("footer") or {}).get("text", "")
    last["footer"] = {"text": truncate(f"{footer} · ref {refs}" if footer else f"ref {refs}", MAX_FOOTER)}
    return pack_messages(embeds, content)


# ============================================================================================ filters
def filter_problems(f: AlertFilter, score_cfg, where: str) -> list[str]:
    from ...score import REGIMES
    problems = [f"{where}: unknown band {b!r} (lean, stretched, stressed)" for b in f.bands
                if b not in ("lean", "stretched", "stressed")]
    problems += [f"{where}: unknown regime {r!r}" for r in f.regimes if r not in REGIMES]
    below = [b for b in f.bands if b in ("lean", "stretched", "stressed")
             and band_thresholds([b], score_cfg) and min(band_thresholds([b], score_cfg)) < f.min_score]
    if "bands" in f.model_fields_set:   # the default bands under a raised min_score are no surprise
        problems += [f"{where}: band {b!r} is below min_score {f.min_score} and is ignored" for b in below]
    return problems


# ============================================================================================ routes
@dataclass
class WebhookTarget:
    name: str              # route address, e.g. "alerts", "alerts-2" (never the URL)
    url: str               # secret
    recipient: str         # e.g. "dc-webhook-alerts"

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]


@dataclass
class _WebhookGroup:
    recipient: str
    filter: AlertFilter
    targets: list[WebhookTarget] = field(default_factory=list)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "webhook"


def webhook_groups(cfg: DiscordConfig, environ: dict | None = None) -> list[_WebhookGroup]:
    """Configured webhooks with URLs from their environment variables (several comma-separated URLs in one
    variable: one route each, same filter). Webhooks whose variable is unset are skipped."""
    env = os.environ if environ is None else environ
    groups = []
    seen: set[str] = set()
    for w in cfg.webhooks:
        urls = [u.strip() for u in env.get(w.url_env, "").split(",") if u.strip()]
        if not urls:
            continue
        base = _slug(w.name)
        rid = f"dc-webhook-{base}"
        n = 2
        while rid in seen:
            rid = f"dc-webhook-{base}-{n}"
            n += 1
        seen.add(rid)
        g = _WebhookGroup(rid, w)
        for i, url in enumerate(urls, start=1):
            if not url.startswith(("https://", "http://")):
                log.warning("discord webhook %s: URL #%d in $%s is not an http(s) URL; skipped", w.name, i, w.url_env)
                continue
            name = rid[len("dc-webhook-"):] if i == 1 else f"{rid[len('dc-webhook-'):]}-{i}"
            g.targets.append(WebhookTarget(name, url, rid))
        if g.targets:
            groups.append(g)
    return groups


# ============================================================================================ bot senders
class BotSender:
    """Alerts through the bot account: `discord-channel` (address = channel id) or `discord-dm` (user id).

    discord.py honours per-route 429s itself; a wait longer than `max_ratelimit_timeout` raises RateLimited,
    which goes back to the outbox with its retry_after. Unknown/forbidden channel -> permanent (the route is
    disabled and reported once)."""

    def __init__(self, adapter: "DiscordAdapter", channel: str):
        self.adapter, self.channel = adapter, channel
        self._progress: dict[tuple, int] = {}
        self._dm_channels: dict[int, int] = {}

    async def _target(self, address: str) -> discord.abc.Messageable:
        client = self.adapter.client
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

    async def send(self, address: str, digest: Digest) -> None:
        self.adapter.check_route(self.channel, address)
        messages = digest_messages(digest)
        key = (address, tuple(digest.keys))
        done = self._progress.get(key, 0)
        try:
            target = await self._target(address)
            for i, m in enumerate(messages):
                if i < done:
                    continue   # sent before a retryable failure: never post a part twice
                await target.send(content=m.get("content"), embeds=[discord.Embed.from_dict(e) for e in m["embeds"]],
                                  allowed_mentions=discord.AllowedMentions.none())
                self._progress[key] = i + 1
        except discord.RateLimited as e:
            raise DeliveryError(f"rate limited for {e.retry_after:.1f}s", retry_after=e.retry_after) from None
        except (discord.NotFound, discord.Forbidden) as e:
            self._progress.pop(key, None)
            error = f"{e.status} {e.code}: {e.text}"
            raise self.adapter.route_failed(self.channel, address, error) from None
        except discord.HTTPException as e:
            if 400 <= e.status < 500 and e.status != 429:   # our payload was refused: retrying cannot help
                self._progress.pop(key, None)
                raise DeliveryError(f"rejected {e.status} {e.code}: {e.text}", permanent=True) from None
            raise DeliveryError(f"discord {e.status}: {e.text}") from None
        except (OSError, asyncio.TimeoutError, discord.ConnectionClosed) as e:
            raise DeliveryError(f"network: {type(e).__name__}") from None
        self._progress.pop(key, None)

    async def was_delivered(self, key: str) -> bool | None:
        """After a crash mid-send: look for the key's marker in the channel's recent messages."""
        client = self.adapter.client
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
    return [c for c in registry.REGISTRY.values() if c.discord and (not c.admin or cfg.guild_id)]


class CommandBridge:
    """Builds the app commands from REGISTRY and runs them: Interaction -> Context -> dispatch -> messages."""

    def __init__(self, adapter: "DiscordAdapter"):
        self.adapter = adapter

    @property
    def svc(self) -> "Services":
        return self.adapter.svc

    # -- building
    def build(self, tree: app_commands.CommandTree, guild: discord.abc.Snowflake | None) -> list[app_commands.Command]:
        built = [self._make(c) for c in discord_commands(self.adapter.cfg)]
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
        snap = self.svc.queries.snapshot()
        ordered: list[tuple[str, dict | None]] = [(r["symbol"], r) for r in snap.results]
        ordered += [(s, None) for s in sorted(snap.universe) if snap.result(s) is None]
        return ordered

    async def autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        """Symbols from the universe / latest scores; for a list option the last word is completed."""
        tokens = [t for t in re.split(r"[\s,]+", current or "") if t]
        partial = "" if (not current or current[-1:] in (" ", ",")) else (tokens.pop() if tokens else "")
        prefix = " ".join(tokens)
        q = partial.strip().upper().replace("/", "").replace("-", "")
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
        hit = self.svc.watchlists.by_discord_user(user.id)
        user_id = hit[0] if hit else f"dc-{user.id}"
        args: list[str] = []
        for p in cmd.params:
            args += _split_arg(p, options.get(p.name))
        name = getattr(user, "display_name", None) or user.name
        guild_id = self.adapter.cfg.guild_id
        perms = interaction.permissions
        is_admin = bool(guild_id and interaction.guild_id == guild_id and perms and perms.administrator)
        return registry.Context(queries=self.svc.queries, user_id=user_id, platform="discord", args=args, display_name=name,
                                identity={"discord_user_id": user.id, "name": truncate(name, 100)},
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


# ============================================================================================ adapter
class _Client(discord.Client):
    def __init__(self, adapter: "DiscordAdapter", **options: Any):
        super().__init__(**options)
        self.adapter = adapter

    async def setup_hook(self) -> None:   # after login, before the gateway: sync commands if they changed
        try:
            await self.adapter._setup()
        except Exception:
            log.exception("discord setup failed (commands may be stale)")


class DiscordAdapter:
    """Bot mode and/or webhook mode; see the module docstring. Started and stopped by `bot.app.run_bot`."""

    def __init__(self, svc: "Services", *, token: str | None = None, webhooks: list[_WebhookGroup] | None = None,
                 api_base_url: str | None = None, gateway_url: str | None = None, ready_timeout: float = 20.0,
                 client_options: dict | None = None):
        install_redaction()
        self.svc = svc
        self.cfg: DiscordConfig = svc.cfg.discord
        self.token = token
        self.webhooks = webhooks or []
        self.api_base_url = api_base_url
        self.gateway_url = gateway_url
        self.ready_timeout = ready_timeout
        self.client_options = dict(client_options or {})
        self.client: discord.Client | None = None
        self.tree: app_commands.CommandTree | None = None
        self.bridge = CommandBridge(self)
        self.synced = False
        self.bot_failed: str | None = None
        self._task: asyncio.Task | None = None
        self._saved_endpoints: tuple[str, Any] | None = None
        self._lock = threading.Lock()
        self._fatal: dict[tuple[str, str], str] = {}       # route-level failures seen by the senders
        self._disabled: dict[str, dict] = {}               # "channel:address" -> {"error", "fingerprint"?}
        self.webhook_sender: WebhookSender | None = None

        secrets = [token] if token else []
        for g in self.webhooks:
            for t in g.targets:   # the whole URL and its token part (custom url_env names too)
                secrets += [t.url, t.url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]]
        REDACTOR.extra.extend(s for s in secrets if len(s) >= 6 and s not in REDACTOR.extra)
        for where, f in ([(f"discord.channels[{c.id}]", c) for c in self.cfg.channels]
                         + [(f"discord.webhooks[{g.filter.name}]", g.filter) for g in self.webhooks]):
            for problem in filter_problems(f, svc.cfg.score, where):
                log.warning("%s", problem)
        if not token and self.cfg.channels:
            log.warning("discord.channels are configured but DISCORD_BOT_TOKEN is not set: channel alerts are off "
                        "(webhooks need no bot)")
        if token:
            svc.senders[CHANNEL] = BotSender(self, CHANNEL)
            if self.cfg.dm_users:
                svc.senders[DM] = BotSender(self, DM)
        if self.webhooks:
            from .webhook import WebhookSender
            self.webhook_sender = WebhookSender(self, {t.name: t for g in self.webhooks for t in g.targets})
            svc.senders[WEBHOOK] = self.webhook_sender
        self._load_disabled()
        svc.extra_recipients.append(self.recipients)

    @classmethod
    def from_env(cls, svc: "Services", **options: Any) -> "DiscordAdapter":
        """Token, webhook URLs and API roots from the environment (never from files, never logged)."""
        cfg = svc.cfg.discord
        token = os.environ.get("DISCORD_BOT_TOKEN", "").strip() or None
        groups = webhook_groups(cfg)
        if os.environ.get("DISCORD_WEBHOOK_URL") and not any(w.url_env == "DISCORD_WEBHOOK_URL" for w in cfg.webhooks):
            log.warning("DISCORD_WEBHOOK_URL is set but no discord.webhooks entry uses it (url_env): ignored")
        base = os.environ.get("DISCORD_API_BASE_URL") or cfg.api_base_url
        gateway = os.environ.get("DISCORD_GATEWAY_URL") or cfg.gateway_url
        adapter = cls(svc, token=token, webhooks=groups, api_base_url=base, gateway_url=gateway, **options)
        log.info("discord: bot mode %s, %d channel(s), DMs %s, webhook routes %d", "on" if token else "off",
                 len(cfg.channels) if token else 0, "on" if token and cfg.dm_users else "off",
                 sum(len(g.targets) for g in groups))
        return adapter

    # -- recipients (called by the engine every cycle, in a worker thread) ----------------------------
    def recipients(self) -> list[Recipient]:
        universe = set(self.svc.queries.snapshot().universe)
        out = []
        if self.token and not self.bot_failed:
            for ch in self.cfg.channels:
                if self.is_disabled(CHANNEL, str(ch.id)):
                    continue
                sub = FilterSubscriber.from_filter(ch, universe)
                out.append(Recipient(f"dc-channel-{ch.id}", sub, [Route(CHANNEL, str(ch.id))]))
        for g in self.webhooks:
            routes = [Route(WEBHOOK, t.name) for t in g.targets if not self.is_disabled(WEBHOOK, t.name)]
            if routes:
                out.append(Recipient(g.recipient, FilterSubscriber.from_filter(g.filter, universe),
                                     routes))
        return out

    # -- disabled routes -------------------------------------------------------------------------------
    def _fingerprint(self, channel: str, address: str) -> str | None:
        if channel == WEBHOOK and self.webhook_sender is not None:
            t = self.webhook_sender.targets.get(address)
            return t.fingerprint if t else None
        return None

    def _load_disabled(self) -> None:
        try:
            saved = self.svc.store.get_meta(META_DISABLED) or {}
        except Exception:
            saved = {}
        for key, info in saved.items():
            channel, _, address = key.partition(":")
            if channel == WEBHOOK:
                fp = self._fingerprint(channel, address)
                if fp is None or fp != info.get("fingerprint"):
                    log.info("discord webhook %s has a new URL (or is gone): enabled again", address)
                    continue
            if channel == CHANNEL and not any(str(c.id) == address for c in self.cfg.channels):
                continue
            self._disabled[key] = info
            log.info("discord %s %s stays disabled (%s); fix it and restart (channels) or set a new URL (webhooks)",
                     channel, address, info.get("error"))
        if saved != self._disabled:
            self._save_disabled()

    def _save_disabled(self) -> None:
        with self._lock:
            data = dict(self._disabled)
        try:
            self.svc.store.set_meta(META_DISABLED, data)
        except Exception as e:
            log.warning("could not persist disabled discord routes: %s", e)

    def is_disabled(self, channel: str, address: str) -> bool:
        with self._lock:
            return f"{channel}:{address}" in self._disabled

    def check_route(self, channel: str, address: str) -> None:
        """Senders call this first: a disabled route fails for good (without a new report)."""
        with self._lock:
            info = self._disabled.get(f"{channel}:{address}")
        if info is not None:
            raise DeliveryError(f"route disabled: {info.get('error')}", permanent=True)

    def route_failed(self, channel: str, address: str, error: str) -> DeliveryError:
        """A sender met a route-level failure (deleted channel, revoked webhook): the error to raise."""
        error = REDACTOR.redact(error)
        with self._lock:
            self._fatal[(channel, address)] = error
        return DeliveryError(error, permanent=True)

    def disable_route(self, channel: str, address: str, error: str) -> None:
        """Called by the app on a permanent delivery failure: disable a dead route and report it once."""
        if channel not in (CHANNEL, WEBHOOK, DM):
            return
        key = f"{channel}:{address}"
        with self._lock:
            fatal = self._fatal.pop((channel, address), None)
            if fatal is None or key in self._disabled:
                return              # a dropped message (or already reported): nothing to disable
            if channel == DM:       # the app marks that user's watchlist inactive
                return
            self._disabled[key] = {"error": fatal, "since": int(time.time())}
            fp = self._fingerprint(channel, address)
            if fp:
                self._disabled[key]["fingerprint"] = fp
        what = f"channel {address}" if channel == CHANNEL else f"webhook {address}"
        log.warning("discord %s disabled: %s. No more alerts go there; %s", what, fatal,
                    "fix the channel/permissions and restart" if channel == CHANNEL
                    else "create a new webhook and set its URL")
        self._save_disabled()

    def disabled_routes(self) -> dict[str, dict]:
        with self._lock:
            return dict(self._disabled)

    # -- lifecycle -------------------------------------------------------------------------------------
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
        client = _Client(self, **options)
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
        last = await asyncio.to_thread(self.svc.store.get_meta, META_SYNC)
        if (last or {}).get("hash") == h and not os.environ.get("DISCORD_FORCE_SYNC"):
            log.info("discord commands unchanged since the last sync: not syncing")
        else:
            guild = discord.Object(self.cfg.guild_id) if self.cfg.guild_id else None
            synced = await self.tree.sync(guild=guild)
            await asyncio.to_thread(self.svc.store.set_meta, META_SYNC, {"hash": h, "at": int(time.time())})
            self.synced = True
            log.info("discord commands synced (%s): %s", f"guild {self.cfg.guild_id}" if guild else "global",
                     ", ".join(sorted(c.name for c in synced)))
        for key in [k for k in self.disabled_routes() if k.startswith(CHANNEL + ":")]:
            cid = int(key.partition(":")[2])
            try:
                await self.client.fetch_channel(cid)
            except (discord.NotFound, discord.Forbidden):
                continue
            except discord.HTTPException:
                continue
            with self._lock:
                self._disabled.pop(key, None)
            log.info("discord channel %s is reachable again: alerts enabled", cid)
            await asyncio.to_thread(self._save_disabled)

    async def start(self) -> None:
        """Webhook client; in bot mode log in and connect in this loop, waiting (bounded) until ready."""
        if self.webhook_sender is not None:
            await self.webhook_sender.start()
        if not self.token:
            return
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

    def _bot_off(self, reason: str) -> None:
        """A rejected token: stop queueing alerts for the bot's routes (webhooks are unaffected)."""
        self.bot_failed = reason
        for channel in (CHANNEL, DM):
            if isinstance(self.svc.senders.get(channel), BotSender):
                del self.svc.senders[channel]

    async def _run(self) -> None:
        delay = 1.0
        while True:
            try:
                await self.client.login(self.token)
                break
            except discord.LoginFailure:
                log.error("discord rejected the bot token (401): check DISCORD_BOT_TOKEN; bot mode is off")
                self._bot_off("bot token rejected")
                await self.client.close()
                return
            except (OSError, asyncio.TimeoutError, discord.HTTPException) as e:
                log.warning("discord login failed (%s); retrying in %.0fs", type(e).__name__, delay)
                await self.client.close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)
                self.client = self._new_client()
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
            if self._task is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._task), timeout=5)
                except (asyncio.TimeoutError, Exception):
                    self._task.cancel()
        finally:
            if self.webhook_sender is not None:
                await self.webhook_sender.close()
            self._restore_endpoints()
