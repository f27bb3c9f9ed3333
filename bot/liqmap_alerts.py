"""The opt-in LiqMap proximity rule (issue #11): a watchlist with `liqmap_within_pct: X` is told when a LiqMap
symbol's price comes within X % of a large (top-quartile) estimated liquidation cluster.

Checked after each LiqMap refresh (`LiqMapFeed.proximity`): the map of each watched LiqMap symbol is run over the
stored steps and prints (`current_map`), `bot.liqmap.clusters_within` finds the large clusters near the last
close, and `due` picks, per recipient, symbol and side (longs below, shorts above), the nearest one unless that
side fired within the recipient's `cooldown_minutes`. The alert is an outbox notice (never a signal); it and its
cooldown (`last_fired`, rule `liqmap:long` / `liqmap:short`, at the map's step time, i.e. exchange time) are
committed in one transaction, so a restart neither repeats nor loses it. `alerts`, `active`, `muted` and quiet
hours apply on the local clock; nothing is held (an alert due in quiet hours is dropped: the next refresh after
them checks again).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable

from .clock import SYSTEM_CLOCK, Clock
from .config import Config
from .engine import Recipient
from .liqmap import Cluster, LiqMap, Params, clusters_within, run
from .liqmap.read import money, price_text
from .outbox import notice_entries
from .records import FiredRow, Notice
from .store import Store

log = logging.getLogger(__name__)

RULE = "liqmap:{side}"         # last_fired rule of one side's proximity alert


@dataclass(frozen=True)
class Proximity:
    """One alert to send: `cluster` is near `price` on `symbol`'s map as of its step `ts`."""
    recipient: str
    symbol: str
    price: float
    ts: int                    # the map's last step (exchange time, ms)
    cluster: Cluster


def current_map(cfg: Config, store: Store, symbol: str) -> LiqMap | None:
    """The model run over every stored step and print of `symbol` (None: no steps yet)."""
    lc = cfg.liqmap
    last = store.last_liq_step(symbol)
    if last is None:
        return None
    since = last - int(lc.history_days * 86_400_000)
    return run(store.liq_steps(symbol, since), Params.from_config(lc), store.liq_prints(symbol, since),
               top_fraction=lc.top_fraction)


def watched(recipient: Recipient, symbols: Iterable[str]) -> list[str]:
    """The LiqMap symbols `recipient` has the rule on for: those among its `symbols`, all when that is empty."""
    sub = recipient.subscriber
    if getattr(sub, "liqmap_within_pct", None) is None or not (sub.alerts and sub.active):
        return []
    mine = set(getattr(sub, "symbols", ()) or ())
    return [s for s in symbols if not mine or s in mine]


def due(maps: dict[str, LiqMap], recipients: list[Recipient], last_fired: dict[tuple[str, str, str], int],
        now: datetime) -> list[Proximity]:
    """The alerts to send now (pure): per recipient, symbol and side, the nearest large cluster within the
    recipient's distance, unless muted, in quiet hours or that side fired within its cooldown."""
    out = []
    for r in recipients:
        sub = r.subscriber
        for symbol in watched(r, maps):
            m = maps[symbol]
            if m.last_price is None or m.last_ts is None or sub.is_muted(symbol, now):
                continue
            quiet = getattr(sub, "in_quiet_hours", None)
            if quiet is not None and quiet(now):
                continue
            nearest: dict[str, Cluster] = {}
            for c in clusters_within(m, m.last_price, sub.liqmap_within_pct / 100):   # nearest first
                nearest.setdefault(c.side, c)
            for side, c in sorted(nearest.items()):
                fired = last_fired.get((r.id, symbol, RULE.format(side=side)))
                if fired is not None and m.last_ts - fired < sub.cooldown_minutes * 60_000:
                    continue
                out.append(Proximity(r.id, symbol, m.last_price, m.last_ts, c))
    return out


def proximity_notice(p: Proximity) -> Notice:
    base = p.symbol.removesuffix("USDT")
    c = p.cluster
    where, who = ("below", "longs") if c.side == "long" else ("above", "shorts")
    return {"kind": "liqmap",
            "title": f"{base} is {c.distance * 100:.2f}% from a large {c.side} liquidation cluster",
            "text": f"With {base} at {price_text(p.price)}, an estimated {money(c.notional)} of {who} would be "
                    f"liquidated at {price_text(c.price)} ({c.distance * 100:.2f}% {where} price; a top-quartile "
                    f"band of the LiqMap).\n/liqmap {base} for the map. Estimates, not prints: docs/methodology.md "
                    f"\"LiqMap\". (liqmap_within_pct in your watchlist)"}


class ProximityAlerts:
    """Runs the rule after a LiqMap refresh: `check()` (blocking: call it in a worker thread)."""

    def __init__(self, cfg: Config, store: Store, recipients: Callable[[], list[Recipient]],
                 clock: Clock = SYSTEM_CLOCK):
        self.cfg, self.store, self.recipients, self.clock = cfg, store, recipients, clock

    def check(self) -> int:
        """Queue the due alerts with their cooldowns; returns the outbox rows added."""
        recipients = [r for r in self.recipients() if watched(r, self.cfg.liqmap.symbols)]
        symbols = sorted({s for r in recipients for s in watched(r, self.cfg.liqmap.symbols)})
        if not symbols:
            return 0
        maps = {s: m for s in symbols if (m := current_map(self.cfg, self.store, s)) is not None}
        longest = max(r.subscriber.cooldown_minutes for r in recipients) * 60_000
        oldest = min((m.last_ts for m in maps.values() if m.last_ts is not None), default=0) - longest
        last = {k: v for k, v in self.store.load_last_fired(oldest).items() if k[2].startswith("liqmap:")}
        now_ms = int(self.clock.time() * 1000)
        routes = {r.id: r.routes for r in recipients}
        added = 0
        for p in due(maps, recipients, last, datetime.fromtimestamp(now_ms / 1000, timezone.utc)):
            stamp = f"liqmap-{p.symbol}-{p.cluster.side}-{p.ts}"
            entries = notice_entries(proximity_notice(p), stamp,
                                     [(p.recipient, rt.channel, rt.address) for rt in routes[p.recipient]], now_ms)
            added += self.store.enqueue_notices(
                entries, fired=[FiredRow(p.recipient, p.symbol, RULE.format(side=p.cluster.side), p.ts)])
            log.info("liqmap proximity: %s %s %s cluster at %.6g (%.2f%% away) queued", p.recipient, p.symbol,
                     p.cluster.side, p.cluster.price, p.cluster.distance * 100)
        return added
