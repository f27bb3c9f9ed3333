"""Plain-text presentation of scores: the ranked table, the summary line, one symbol explained.

Used by the CLI, the console output and the chat command handlers (which wrap it in their replies).
Works on result dicts (ScoreResult.as_dict(), as stored), so stored and fresh results render alike.
"""
from __future__ import annotations

from datetime import datetime, timezone

TABLE_COLUMNS = ("#", "Symbol", "Score", "Bias", "Regime", "OI 1h", "OI 4h", "OI 24h", "Funding", "Basis")


def pct(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x * 100:+.{digits}f}%"


def utc(ts_ms: int | None) -> str:
    if not ts_ms:
        return "never"
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def filter_bias(results: list[dict], bias: str | None) -> list[dict]:
    if not bias or bias.lower() == "all":
        return results
    return [r for r in results if r["bias"] == bias.upper()]


def summary(results: list[dict], ts_ms: int | None) -> str:
    n = len(results)
    avg = round(sum(r["score"] for r in results) / n) if n else 0
    count = {b: sum(1 for r in results if r["bias"] == b) for b in ("LONG", "SHORT", "NEUTRAL")}
    return (f"Updated {utc(ts_ms)} · {n} symbols ranked · Avg stress {avg} · "
            f"Long bias {count['LONG']} · Short bias {count['SHORT']} · Neutral {count['NEUTRAL']}")


def table_rows(results: list[dict], limit: int | None = None) -> list[tuple[str, ...]]:
    """Rows in rank order; rank is the position in the full ranking given."""
    rows = []
    for rank, r in enumerate(results[:limit] if limit else results, start=1):
        rows.append((str(r.get("rank", rank)), r["symbol"], str(r["score"]), r["bias"], r["regime"],
                     pct(r.get("oi_change_1h")), pct(r.get("oi_change_4h")), pct(r.get("oi_change_24h")),
                     pct(r.get("funding_rate"), 3), pct(r.get("basis"))))
    return rows


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]], max_width: dict[int, int] | None = None) -> str:
    max_width = max_width or {}
    cut = [tuple(c if len(c) <= max_width.get(i, 999) else c[:max_width[i] - 1] + "…" for i, c in enumerate(row))
           for row in rows]
    widths = [max(len(header[i]), *(len(r[i]) for r in cut)) if cut else len(header[i]) for i in range(len(header))]
    numeric = {0, 2, 5, 6, 7, 8, 9}

    def line(cells):
        return "  ".join(c.rjust(widths[i]) if i in numeric else c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

    return "\n".join([line(header), *(line(r) for r in cut)])


def ranked(results: list[dict]) -> list[dict]:
    """Attach the rank in the full ranking (so a filtered view keeps the overall rank)."""
    return [dict(r, rank=i) for i, r in enumerate(results, start=1)]


def explain(r: dict) -> str:
    """One symbol: inputs, each component in points, band, bias, regime and why, what was missing."""
    comp = r.get("components", {})
    lines = [
        f"{r['symbol']}: score {r['score']} ({r['band']}) · bias {r['bias']}",
        f"Regime: {r['regime']}",
        f"Why: {r['reason']}",
        "",
        "Inputs:",
        f"  OI change   1h {pct(r.get('oi_change_1h'))}   4h {pct(r.get('oi_change_4h'))}   24h {pct(r.get('oi_change_24h'))}",
        f"  Funding     {pct(r.get('funding_rate'), 4)} per {r.get('funding_interval_hours') or 8:g}h",
        f"  Basis       {pct(r.get('basis'), 3)} (mark vs index)",
        f"  Price       1h {pct(r.get('price_change_1h'))}   24h {pct(r.get('price_change_24h'))}",
    ]
    if r.get("quadrant"):
        lines.append(f"  OI/price    {r['quadrant']}")
    lines += ["", "Components (points toward the bias; OI scales the rest):"]
    for name, label in (("funding", "funding excess"), ("basis", "basis"), ("price_1h", "price 1h"),
                        ("price_24h", "price 24h"), ("oi", "OI build")):
        if name in comp:
            lines.append(f"  {label:<15}{comp[name]:+6.1f}")
    if r.get("missing"):
        lines.append(f"\nMissing inputs: {', '.join(r['missing'])}")
    for a in r.get("assumptions", []):
        lines.append(f"Assumed: {a}")
    return "\n".join(lines)
