"""What the pages and the JSON API show, from a `Snapshot` and a few stored signals: plain dicts and lists the
templates render (no I/O, no aiohttp). The wording of the page follows the reference page."""
from __future__ import annotations

from datetime import datetime, timezone

from ...config import ScoreConfig
from ...report import pct, utc, what_fired
from ...score import CONTRIBUTIONS, api_item

SIDES = {"all": None, "long": "LONG", "short": "SHORT"}
SIDE_TITLES = {"all": "All", "long": "Long bias", "short": "Short bias"}
WINDOWS_DAYS = (30, 90, 180)
DAY_MS = 86_400_000

# contribution name -> (label, input field, digits shown)
CONTRIBUTION_ROWS = (("oi_1h", "Open interest change 1h", "oi_change_1h", 2),
                     ("oi_4h", "Open interest change 4h", "oi_change_4h", 2),
                     ("oi_24h", "Open interest change 24h", "oi_change_24h", 2),
                     ("funding", "Funding rate per interval", "funding_rate", 4),
                     ("basis", "Perp-index basis", "basis", 3))


def iso(ts_ms: int | None) -> str | None:
    """Epoch ms as the reference API writes times: 2026-08-09T21:04:31Z."""
    if ts_ms is None:
        return None
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def strip(results: tuple[dict, ...] | list[dict]) -> dict:
    """The summary strip, always market-wide: average stress and the count of each bias."""
    n = len(results)
    count = {b: 0 for b in ("LONG", "SHORT", "NEUTRAL")}
    total = 0
    for r in results:
        total += r["score"]
        count[r["bias"]] = count.get(r["bias"], 0) + 1
    return {"n": n, "avg": round(total / n) if n else 0, "long": count["LONG"], "short": count["SHORT"],
            "neutral": count["NEUTRAL"]}


def _num(x: float | None) -> str:
    """A sort key for a table cell (empty: unknown, sorted last by the page's script)."""
    return "" if x is None else f"{x:.10g}"


def table(results: tuple[dict, ...] | list[dict], side: str) -> list[dict]:
    """The rows of the page's table for a filter, ranked 1..n within it (the snapshot is ranked already)."""
    bias = SIDES[side]
    rows = []
    for r in results:
        if bias is not None and r["bias"] != bias:
            continue
        rows.append({
            "rank": len(rows) + 1, "symbol": r["symbol"], "score": r["score"], "band": r["band"],
            "bias": r["bias"], "regime": r["regime"], "reason": r.get("reason", ""),
            "cells": [(pct(r.get(f), d), _num(r.get(f)))
                      for f, d in (("oi_change_1h", 2), ("oi_change_4h", 2), ("oi_change_24h", 2),
                                   ("funding_rate", 3), ("basis", 2))],
        })
    return rows


def bands(cfg: ScoreConfig) -> list[dict]:
    """'How to read it': the bands with their ranges, from the configuration."""
    b = cfg.bands
    return [
        {"band": "neutral", "range": f"0–{b.lean - 1}", "text": "Balanced: no particular stress."},
        {"band": "lean", "range": f"{b.lean}–{b.stretched - 1}",
         "text": "One side is building positions; unlikely to squeeze."},
        {"band": "stretched", "range": f"{b.stretched}–{b.stressed - 1}",
         "text": "Meaningful imbalance; watch for volatility."},
        {"band": "stressed", "range": f"{b.stressed}–100", "text": "Crowded positioning: squeeze or unwind risk."},
    ]


def contributions(r: dict, cfg: ScoreConfig) -> list[dict]:
    """One symbol's five signed contributions in points, with the input, weight and full scale."""
    pts = r.get("contributions", {})
    out = []
    for name, label, field, digits in CONTRIBUTION_ROWS:
        term = cfg.contributions[name]
        value = r.get(field)
        shown = "unknown" if value is None else pct(value, digits)
        if name == "funding" and value is not None:
            shown += f" per {r.get('funding_interval_hours') or 8:g}h"
        points = float(pts.get(name, 0.0))
        out.append({"label": label, "input": shown, "points": points, "weight": term.weight,
                    "full_scale": pct(term.full_scale, 3 if name in ("funding", "basis") else 1).lstrip("+"),
                    "share": min(100.0, abs(points) / term.weight * 100) if term.weight else 0.0,
                    "api_key": CONTRIBUTIONS[name][1]})
    return out


def signal_row(sig: dict) -> dict:
    """A stored signal as the page and the API show it: its receipt hash when it has one, else its id."""
    rec = sig.get("receipt") or {}
    receipt_hash = sig.get("record_hash")               # set when the signal's cycle was sealed
    what = what_fired(sig)
    return {"id": sig["id"], "receiptHash": receipt_hash, "ref": receipt_hash or sig["id"], "ts": sig["ts"],
            "time": iso(sig["ts"]), "when": utc(sig["ts"]), "symbol": sig["symbol"], "rule": sig["rule"],
            "kind": sig["kind"], "what": what, "score": sig["score"], "band": rec.get("band"),
            "direction": sig["bias"], "regime": sig["regime"], "quadrant": rec.get("quadrant"),
            "warning": rec.get("warning"), "outcome": sig.get("outcome"),
            "status": (sig.get("outcome") or {}).get("status", "OPEN"),
            "followBps": ((sig.get("outcome") or {}).get("follow") or {}).get("net_bps")}


def pressure_payload(ts: int | None, results: tuple[dict, ...], cfg: ScoreConfig) -> dict:
    """`/api/public/pressure`: the reference API's items (with our additions), ranked."""
    items = [dict(api_item(r, cfg), rank=i) for i, r in enumerate(results, start=1)]
    return {"generatedAt": iso(ts), "count": len(items),
            "weights": {api: cfg.contributions[name].weight for name, (_, api) in CONTRIBUTIONS.items()},
            "items": items}
