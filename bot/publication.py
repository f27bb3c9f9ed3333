"""Publication of each day's signed root (issue #10): once it has left our hands, no later edit of our
database can go unnoticed.

`receipts.publish` in config names a Telegram channel and/or the environment variable holding a Discord webhook
URL. After the first cycle of a UTC day (by the cycle's own time, the time its manifest is keyed on), the last
manifest sealed before that day began is queued as an outbox notice to each of them: its day, cycle time, Merkle
root, manifest hash, record count, signature and public key, and how to verify. The idempotency key is the
manifest's day, so a restart, a second cycle or a day the bot was down never publishes a day twice.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from typing import Mapping

from .clock import SYSTEM_CLOCK, Clock
from .config import PublishConfig
from .outbox import notice_entries
from .records import Notice, StoredManifest
from .store import Store

log = logging.getLogger(__name__)

RECIPIENT = "receipts"          # the outbox recipient of published roots
WEBHOOK_ADDRESS = "receipts"    # the Discord webhook route's name (never its URL)
DAY_MS = 86_400_000
VERIFY_HINT = ("Verify: python -m bot verify --db PATH --key PUBLIC_KEY recomputes every leaf, root, chain link "
               "and signature (this manifest hash must be in its chain); by hand: docs/receipts.md")

Route = tuple[str, str, str]    # (recipient, channel, address)


def publish_routes(cfg: PublishConfig, environ: Mapping[str, str] | None = None) -> list[Route]:
    """The outbox routes of the published root: the Telegram chat, and the webhook when its variable is set."""
    env = os.environ if environ is None else environ
    routes: list[Route] = []
    if cfg.telegram_chat is not None:
        routes.append((RECIPIENT, "telegram", str(cfg.telegram_chat)))
    if cfg.discord_webhook_url_env:
        if env.get(cfg.discord_webhook_url_env, "").strip():
            routes.append((RECIPIENT, "webhook", WEBHOOK_ADDRESS))
        else:
            log.warning("receipts.publish.discord_webhook_url_env: $%s is not set; the daily root is not published "
                        "to Discord", cfg.discord_webhook_url_env)
    return routes


def utc_day(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, timezone.utc).strftime("%Y-%m-%d")


def root_notice(m: StoredManifest) -> Notice:
    """A day's last sealed manifest as a notice: everything a reader needs to hold us to it."""
    body = m["manifest"]
    cycle = datetime.fromtimestamp(m["cycle_ts"] / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [f"Day: {utc_day(m['cycle_ts'])} (last sealed cycle {cycle}, cycle_ts {m['cycle_ts']})",
             f"Merkle root: {body['root']}",
             f"Manifest hash: {m['hash']}",
             f"Records: {body['count']}",
             f"Signature (Ed25519): {m['signature']}",
             f"Public key: {m['public_key']}",
             VERIFY_HINT]
    return {"kind": "root", "title": f"Signed root for {utc_day(m['cycle_ts'])}", "text": "\n".join(lines)}


class RootPublisher:
    """Queues the previous day's root after the first cycle of each UTC day (call `after_cycle` after each)."""

    def __init__(self, store: Store, routes: list[Route], clock: Clock = SYSTEM_CLOCK):
        self.store, self.routes, self.clock = store, routes, clock
        self._done_for: int | None = None      # the day start (ms) already handled by this process

    def after_cycle(self, cycle_ts: int) -> int:
        """Enqueue the last root sealed before the day of `cycle_ts` began (once per day; a key already queued
        is left alone). Returns the rows added."""
        day_start = cycle_ts - cycle_ts % DAY_MS
        if not self.routes or self._done_for == day_start:
            return 0
        m = self.store.last_manifest_before(day_start)
        added = 0
        if m is not None:
            day = utc_day(m["cycle_ts"])
            added = self.store.enqueue_notices(notice_entries(root_notice(m), f"root-{day}", self.routes,
                                                              int(self.clock.time() * 1000)))
            if added:
                log.info("receipts: the signed root of %s queued for publication (%d route(s))", day, added)
        self._done_for = day_start             # only once queued: a failed write is tried again next cycle
        return added
