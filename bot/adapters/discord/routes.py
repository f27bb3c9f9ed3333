"""Where Discord alerts go and which of those routes are dead.

Channel names of the outbox (`discord-channel`, `discord-dm`, `webhook`), the configured webhooks with
their secret URLs from the environment, the check of channel/webhook filters, and `RouteBook`: the routes
a sender found gone (deleted channel, revoked webhook), disabled once the outbox confirms the failure is
permanent, reported once, and persisted in the store's meta table so a restart keeps them off.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable, Protocol

from ...config import AlertFilter, DiscordConfig
from ...logsetup import REDACTOR
from ...outbox import DeliveryError
from ...rules import band_thresholds

log = logging.getLogger(__name__)

CHANNEL = "discord-channel"
DM = "discord-dm"
WEBHOOK = "webhook"
META_DISABLED = "discord.disabled_routes"


# ============================================================================================ filters
def filter_problems(f: AlertFilter, score_cfg, where: str) -> list[str]:
    # (an unknown band or regime never gets here: loading the config rejects it, naming file and line)
    problems = []
    below = [b for b in f.bands if min(band_thresholds([b], score_cfg)) < f.min_score]
    if "bands" in f.model_fields_set:   # the default bands under a raised min_score are no surprise
        problems += [f"{where}: band {b!r} is below min_score {f.min_score} and is ignored" for b in below]
    return problems


# ============================================================================================ webhooks
@dataclass
class WebhookTarget:
    name: str              # route address, e.g. "alerts", "alerts-2" (never the URL)
    url: str               # secret
    recipient: str         # e.g. "dc-webhook-alerts"

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]


@dataclass
class WebhookGroup:
    recipient: str
    filter: AlertFilter
    targets: list[WebhookTarget] = field(default_factory=list)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "webhook"


def webhook_groups(cfg: DiscordConfig, environ: dict | None = None) -> list[WebhookGroup]:
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
        g = WebhookGroup(rid, w)
        for i, url in enumerate(urls, start=1):
            if not url.startswith(("https://", "http://")):
                log.warning("discord webhook %s: URL #%d in $%s is not an http(s) URL; skipped", w.name, i, w.url_env)
                continue
            name = rid[len("dc-webhook-"):] if i == 1 else f"{rid[len('dc-webhook-'):]}-{i}"
            g.targets.append(WebhookTarget(name, url, rid))
        if g.targets:
            groups.append(g)
    return groups



# ============================================================================================ dead routes
class MetaStore(Protocol):
    """Small persistent key/value state (the store's meta table)."""

    def get_meta(self, key: str) -> object | None: ...

    def set_meta(self, key: str, value: object) -> None: ...


class RouteBook:
    """Disabled routes, shared by the adapter and its senders (thread-safe: `recipients` runs in a worker thread).

    A sender that meets a route-level failure calls `route_failed` (and raises what it returns); when the
    outbox then reports the failure as permanent, the app calls the adapter's `disable_route`, which lands in
    `disable`: the route is disabled, reported once, and saved. Senders call `check_route` first, so a message
    queued before the disable fails at once without a request."""

    def __init__(self, meta: MetaStore, webhooks: dict[str, WebhookTarget], channel_ids: Iterable[str]):
        self._meta = meta
        self._webhooks = webhooks                          # route address -> target (for URL fingerprints)
        self._channel_ids = set(channel_ids)               # configured discord.channels
        self._lock = threading.Lock()
        self._fatal: dict[tuple[str, str], str] = {}       # route-level failures seen by the senders
        self._disabled: dict[str, dict] = {}               # "channel:address" -> {"error", "fingerprint"?}
        self._load()

    def _fingerprint(self, channel: str, address: str) -> str | None:
        if channel == WEBHOOK:
            t = self._webhooks.get(address)
            return t.fingerprint if t else None
        return None

    def _load(self) -> None:
        try:
            saved = self._meta.get_meta(META_DISABLED) or {}
        except Exception:
            saved = {}
        for key, info in saved.items():
            channel, _, address = key.partition(":")
            if channel == WEBHOOK:
                fp = self._fingerprint(channel, address)
                if fp is None or fp != info.get("fingerprint"):
                    log.info("discord webhook %s has a new URL (or is gone): enabled again", address)
                    continue
            if channel == CHANNEL and address not in self._channel_ids:
                continue
            self._disabled[key] = info
            log.info("discord %s %s stays disabled (%s); fix it and restart (channels) or set a new URL (webhooks)",
                     channel, address, info.get("error"))
        if saved != self._disabled:
            self.save()

    def save(self) -> None:
        with self._lock:
            data = dict(self._disabled)
        try:
            self._meta.set_meta(META_DISABLED, data)
        except Exception as e:
            log.warning("could not persist disabled discord routes: %s", e)

    def is_disabled(self, channel: str, address: str) -> bool:
        with self._lock:
            return f"{channel}:{address}" in self._disabled

    def disabled(self) -> dict[str, dict]:
        with self._lock:
            return dict(self._disabled)

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

    def disable(self, channel: str, address: str) -> None:
        """The outbox gave up on a route for good: disable it if a sender saw it gone, and report that once."""
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
        self.save()

    def enable(self, channel: str, address: str) -> None:
        """A disabled route works again (e.g. the channel is reachable after a restart); call `save` after."""
        with self._lock:
            self._disabled.pop(f"{channel}:{address}", None)
