"""Discord: channel alerts and slash commands (bot mode), channel alerts by webhook (webhook mode).

Either mode, both, or neither may be configured (`DiscordAdapter.from_env`):

* **Bot mode** (`DISCORD_BOT_TOKEN`): a discord.py `Client` + `app_commands.CommandTree` in the bot's one
  asyncio loop (`client.py`). Slash commands are generated from `bot.commands.REGISTRY` (choices for choice
  params, autocomplete for symbol params) and synced only when the command set changed. Alerts go to the
  channels in `discord.channels` (each with its own filter) and, with `discord.dm_users`, by DM to users whose
  watchlist names their `discord_user_id` (`senders.py`).
* **Webhook mode** (`DISCORD_WEBHOOK_URL`, or any `url_env` of `discord.webhooks`; one variable may hold several
  comma-separated URLs): alerts POSTed as embeds with httpx (`webhook.py`).

The adapter only translates: Interaction -> `commands.Context`, `commands.Reply` / outbox `Digest` -> embeds
coloured by bias, within Discord's limits (`format.py`). It implements `bot.adapters.base.ChatAdapter`: the app
registers the senders and recipients it returns and tells it about dead routes. Delivery (exactly once,
retries, rate limits) is the outbox's job; a deleted channel or revoked webhook is reported once and disabled
(`routes.RouteBook`, persisted in the store's meta table). Tokens and webhook URLs come from the environment
only and never reach a log line. docs/discord.md is the user-facing guide.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import discord

from ...config import Config
from ...engine import Recipient, Route
from ...logsetup import REDACTOR, install_redaction
from ...outbox import Sender
from ...publication import RECIPIENT as PUBLISH_RECIPIENT
from ...publication import WEBHOOK_ADDRESS
from ...queries import Queries
from ...rules import FilterSubscriber
from .client import DiscordBot
from .routes import (CHANNEL, DM, WEBHOOK, MetaStore, RouteBook, WebhookGroup, WebhookTarget, filter_problems,
                     webhook_groups)
from .senders import BotSender
from .webhook import WebhookSender

log = logging.getLogger(__name__)


class DiscordAdapter:
    """Bot mode and/or webhook mode; see the module docstring. Started and stopped by `bot.app.run_bot`."""

    def __init__(self, cfg: Config, queries: Queries, meta: MetaStore, *, token: str | None = None,
                 webhooks: list[WebhookGroup] | None = None, api_base_url: str | None = None,
                 gateway_url: str | None = None, ready_timeout: float = 20.0, client_options: dict | None = None,
                 publish_target: WebhookTarget | None = None):
        install_redaction()
        self.cfg = cfg.discord
        self.queries = queries
        self.webhooks = webhooks or []

        secrets = [token] if token else []
        published = [publish_target] if publish_target else []   # the daily root's webhook: no alerts (bot.publication)
        for t in [*(t for g in self.webhooks for t in g.targets), *published]:
            # the whole URL and its token part (custom url_env names too)
            secrets += [t.url, t.url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]]
        REDACTOR.extra.extend(s for s in secrets if len(s) >= 6 and s not in REDACTOR.extra)
        for where, f in ([(f"discord.channels[{c.id}]", c) for c in self.cfg.channels]
                         + [(f"discord.webhooks[{g.filter.name}]", g.filter) for g in self.webhooks]):
            for problem in filter_problems(f, cfg.score, where):
                log.warning("%s", problem)
        if not token and self.cfg.channels:
            log.warning("discord.channels are configured but DISCORD_BOT_TOKEN is not set: channel alerts are off "
                        "(webhooks need no bot)")

        targets = {t.name: t for g in self.webhooks for t in g.targets}
        if publish_target is not None:
            if publish_target.name in targets:
                log.error("discord.webhooks: a webhook named %r hides the daily root's webhook; rename it",
                          publish_target.name)
            targets.setdefault(publish_target.name, publish_target)
        self.routes = RouteBook(meta, targets, [str(c.id) for c in self.cfg.channels])
        self.bot = DiscordBot(self.cfg, queries, meta, self.routes, token, api_base_url=api_base_url,
                              gateway_url=gateway_url, ready_timeout=ready_timeout,
                              client_options=client_options) if token else None
        self._bot_senders: dict[str, Sender] = {}
        if self.bot is not None:
            self._bot_senders[CHANNEL] = BotSender(CHANNEL, self.bot.current_client, self.routes)
            if self.cfg.dm_users:
                self._bot_senders[DM] = BotSender(DM, self.bot.current_client, self.routes)
        self.webhook_sender = WebhookSender(targets, self.routes) if targets else None

    @classmethod
    def from_env(cls, cfg: Config, queries: Queries, meta: MetaStore, **options: Any) -> "DiscordAdapter":
        """Token, webhook URLs and API roots from the environment (never from files, never logged)."""
        dc = cfg.discord
        token = os.environ.get("DISCORD_BOT_TOKEN", "").strip() or None
        groups = webhook_groups(dc)
        publish_env = cfg.receipts.publish.discord_webhook_url_env          # the daily signed root (bot.publication)
        publish_url = os.environ.get(publish_env, "").strip() if publish_env else ""
        if publish_url:
            options["publish_target"] = WebhookTarget(WEBHOOK_ADDRESS, publish_url, PUBLISH_RECIPIENT)
        if os.environ.get("DISCORD_WEBHOOK_URL") and not any(w.url_env == "DISCORD_WEBHOOK_URL" for w in dc.webhooks):
            log.warning("DISCORD_WEBHOOK_URL is set but no discord.webhooks entry uses it (url_env): ignored")
        base = os.environ.get("DISCORD_API_BASE_URL") or dc.api_base_url
        gateway = os.environ.get("DISCORD_GATEWAY_URL") or dc.gateway_url
        adapter = cls(cfg, queries, meta, token=token, webhooks=groups, api_base_url=base, gateway_url=gateway,
                      **options)
        log.info("discord: bot mode %s, %d channel(s), DMs %s, webhook routes %d", "on" if token else "off",
                 len(dc.channels) if token else 0, "on" if token and dc.dm_users else "off",
                 sum(len(g.targets) for g in groups))
        return adapter

    def __repr__(self) -> str:                 # never show a token or a webhook URL
        return f"DiscordAdapter(bot={'on' if self.bot else 'off'}, webhooks={len(self.webhooks)})"

    @property
    def client(self) -> discord.Client | None:
        return self.bot.client if self.bot is not None else None

    @property
    def bot_failed(self) -> str | None:
        return self.bot.failed if self.bot is not None else None

    # -- ChatAdapter -----------------------------------------------------------------------------------
    def senders(self) -> dict[str, Sender]:
        """Channel alerts and DMs while bot mode works (a rejected token withdraws them); webhooks always."""
        out: dict[str, Sender] = {}
        if self.bot is not None and not self.bot.failed:
            out.update(self._bot_senders)
        if self.webhook_sender is not None:
            out[WEBHOOK] = self.webhook_sender
        return out

    def recipients(self) -> list[Recipient]:
        """Configured channels and webhooks, each with its filter (called every cycle, in a worker thread)."""
        universe = set(self.queries.snapshot().universe)
        out = []
        if self.bot is not None and not self.bot.failed:
            for ch in self.cfg.channels:
                if self.is_disabled(CHANNEL, str(ch.id)):
                    continue
                sub = FilterSubscriber.from_filter(ch, universe)
                out.append(Recipient(f"dc-channel-{ch.id}", sub, [Route(CHANNEL, str(ch.id))]))
        for g in self.webhooks:
            routes = [Route(WEBHOOK, t.name) for t in g.targets if not self.is_disabled(WEBHOOK, t.name)]
            if routes:
                out.append(Recipient(g.recipient, FilterSubscriber.from_filter(g.filter, universe), routes))
        return out

    def disable_route(self, channel: str, address: str, error: str) -> None:
        """A permanent delivery failure: disable a dead channel or webhook and report it once (the error the
        sender recorded is the one reported; other channels and dropped messages are ignored)."""
        self.routes.disable(channel, address)

    def unavailable(self) -> set[str]:
        """Bot channels while the bot is still logging in or connecting (the app leaves their alerts pending until
        it is ready; webhooks need no connection). A rejected token is not "unavailable": `senders` drops them."""
        if self.bot is None or self.bot.failed:
            return set()
        client = self.bot.client
        return set() if client is not None and client.is_ready() else set(self._bot_senders)

    async def start(self) -> None:
        """Webhook client; in bot mode log in and connect in this loop, waiting (bounded) until ready. Never raises
        for an unreachable Discord: the login is retried with back-off (`DiscordBot`), and until the bot is ready
        its channels are `unavailable()`."""
        if self.webhook_sender is not None:
            await self.webhook_sender.start()
        if self.bot is not None:
            await self.bot.start()

    async def stop(self) -> None:
        try:
            if self.bot is not None:
                await self.bot.stop()
        finally:
            if self.webhook_sender is not None:
                await self.webhook_sender.close()

    # -- state, for operators and tests ----------------------------------------------------------------
    def is_disabled(self, channel: str, address: str) -> bool:
        return self.routes.is_disabled(channel, address)

    def disabled_routes(self) -> dict[str, dict]:
        return self.routes.disabled()
