"""Performance of closed signals, and whether the score foretells large moves (pure: no I/O).

Trade statistics (per symbol, per rule, overall; for the follow and the fade trade alike):
- win rate = wins / (wins + losses): a win is a close at TP1, a loss a close at SL; TIMEOUTs count in the
  signals, the net bps and the drawdown, never in the win rate (None when there is no win or loss);
- profit factor = the sum of positive net bps / |the sum of negative net bps| (None, shown as "—", when no
  closed trade lost: "infinite" would mislead);
- average, total, best and worst net bps; max drawdown = the largest fall of the cumulated net bps from a
  previous peak, in closing order. A closing without a return (no candles at all) counts as a signal only.

Score vs move (the stress lens, market-wide): time is cut into non-overlapping periods of `period_ms`; each
symbol's first stored score in a period is paired with its absolute mark-price move to the first stored price in
the next period. The Spearman rank correlation of the pairs (average ranks for ties) and its t-statistic,
t = ρ·√((n−2)/(1−ρ²)), are reported; a band's lift is the share of its pairs whose move is "large" (in the top
quartile of all pairs' moves) divided by that share over all pairs (the base rate).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

WIN, LOSS = "TP1", "SL"
LENSES = ("follow", "fade")


@dataclass(frozen=True)
class Trade:
    """One closed trade of a signal (its follow or its fade)."""
    signal: str
    symbol: str
    rule: str
    closed: int
    status: str
    net_bps: float | None


def trades(closed_signals: Iterable[dict], lens: str) -> list[Trade]:
    """The `lens` ("follow" or "fade") trade of each closed directional signal, in closing order."""
    out = []
    for sig in closed_signals:
        o = sig.get("outcome") or {}
        t = o.get(lens)
        if t:
            out.append(Trade(sig["id"], sig["symbol"], sig["rule"], o.get("closed", sig["ts"]), t["status"],
                             t.get("net_bps")))
    return sorted(out, key=lambda t: (t.closed, t.signal))


def stats(ts: Sequence[Trade]) -> dict:
    """signals, wins, losses, timeouts, win_rate, profit_factor, avg/total/best/worst net bps, max drawdown."""
    nets = [t.net_bps for t in ts if t.net_bps is not None]
    wins = sum(t.status == WIN for t in ts)
    losses = sum(t.status == LOSS for t in ts)
    gain, loss = sum(n for n in nets if n > 0), -sum(n for n in nets if n < 0)
    return {"signals": len(ts), "wins": wins, "losses": losses, "timeouts": len(ts) - wins - losses,
            "win_rate": wins / (wins + losses) if wins + losses else None,
            "profit_factor": gain / loss if loss > 0 else None,
            "avg_bps": sum(nets) / len(nets) if nets else None, "total_bps": sum(nets) if nets else None,
            "best_bps": max(nets) if nets else None, "worst_bps": min(nets) if nets else None,
            "max_drawdown_bps": max_drawdown(nets) if nets else None}


def max_drawdown(nets: Sequence[float]) -> float:
    """The largest fall of the running sum from its previous peak (the start counts as a peak of 0)."""
    peak = total = worst = 0.0
    for n in nets:
        total += n
        peak = max(peak, total)
        worst = max(worst, peak - total)
    return worst


def grouped(ts: Sequence[Trade], key: Callable[[Trade], str]) -> dict[str, dict]:
    groups: dict[str, list[Trade]] = {}
    for t in ts:
        groups.setdefault(key(t), []).append(t)
    return {k: stats(v) for k, v in groups.items()}


def report(closed_signals: Sequence[dict], ranking: dict[str, int], recent: int = 10) -> dict:
    """The performance report of these closed signals: overall, per symbol (ranked by the current composite score
    `ranking`, symbols not in it last), per rule, for the follow and the fade trade; the `recent` latest closings."""
    out: dict = {"closed": len(closed_signals)}
    for lens in LENSES:
        ts = trades(closed_signals, lens)
        per_symbol = grouped(ts, lambda t: t.symbol)
        order = sorted(per_symbol, key=lambda s: (-ranking.get(s, -1), s))
        out[lens] = {"overall": stats(ts), "per_symbol": [{"symbol": s, "score": ranking.get(s), **per_symbol[s]}
                                                          for s in order],
                     "per_rule": [{"rule": r, **v} for r, v in sorted(grouped(ts, lambda t: t.rule).items())]}
    latest = sorted(closed_signals, key=lambda g: (g["outcome"].get("closed", g["ts"]), g["id"]))[-recent:][::-1]
    out["recent"] = [{"id": g["id"], "symbol": g["symbol"], "rule": g["rule"], "bias": g["bias"],
                      "status": g["outcome"]["status"], "closed": g["outcome"].get("closed"),
                      "follow_bps": (g["outcome"].get("follow") or {}).get("net_bps"),
                      "fade_bps": (g["outcome"].get("fade") or {}).get("net_bps"),
                      "record_hash": g.get("record_hash")} for g in latest]
    return out


# ------------------------------------------------------------------------------------------- score vs move
def score_move_pairs(rows: Iterable[tuple[int, str, int, float | None]], period_ms: int) -> list[tuple[int, float]]:
    """(score, |next period's move|) pairs from (ts, symbol, score, price) rows: per symbol, the first row of
    each period against the first row of the next period (non-overlapping; a period without a row breaks the
    pair)."""
    first: dict[tuple[str, int], tuple[int, float | None]] = {}
    for ts, symbol, score, price in sorted(rows, key=lambda r: r[0]):
        first.setdefault((symbol, ts // period_ms), (score, price))
    pairs = []
    for (symbol, k), (score, price) in first.items():
        nxt = first.get((symbol, k + 1))
        if nxt and price and nxt[1]:
            pairs.append((score, abs(nxt[1] / price - 1)))
    return pairs


def ranks(xs: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(pairs: Sequence[tuple[float, float]]) -> tuple[float | None, float | None]:
    """(ρ, t) of the pairs; (None, None) with under 3 pairs or a constant side; t None when |ρ| = 1."""
    n = len(pairs)
    if n < 3:
        return None, None
    a, b = ranks([p[0] for p in pairs]), ranks([p[1] for p in pairs])
    ma, mb = sum(a) / n, sum(b) / n
    sa = math.sqrt(sum((x - ma) ** 2 for x in a))
    sb = math.sqrt(sum((y - mb) ** 2 for y in b))
    if sa == 0 or sb == 0:
        return None, None
    rho = sum((x - ma) * (y - mb) for x, y in zip(a, b)) / (sa * sb)
    if abs(rho) > 1 - 1e-12:        # perfect rank agreement: t is unbounded, reported as None (not ∞)
        return (1.0 if rho > 0 else -1.0), None
    return rho, rho * math.sqrt((n - 2) / (1 - rho * rho))


def band_lift(pairs: Sequence[tuple[int, float]], band_of: Callable[[int], str], bands: Sequence[str]) -> dict:
    """Per band: pairs, the share with a large move (top quartile of all moves) and its lift over the base rate."""
    if not pairs:
        return {"base_rate": None, "large_move": None, "bands": {}}
    moves = sorted(m for _, m in pairs)
    cut = moves[int(0.75 * (len(moves) - 1))]                 # the top quartile's lower edge
    large = [m >= cut and m > 0 for _, m in pairs]
    base = sum(large) / len(pairs)
    out = {}
    for band in bands:
        idx = [i for i, (s, _) in enumerate(pairs) if band_of(s) == band]
        rate = sum(large[i] for i in idx) / len(idx) if idx else None
        out[band] = {"pairs": len(idx), "large_rate": rate,
                     "lift": rate / base if rate is not None and base > 0 else None}
    return {"base_rate": base, "large_move": cut, "bands": out}


def score_vs_move(rows: Iterable[tuple[int, str, int, float | None]], period_ms: int,
                  band_of: Callable[[int], str], bands: Sequence[str]) -> dict:
    pairs = score_move_pairs(rows, period_ms)
    rho, t = spearman(pairs)
    return {"period_hours": period_ms / 3_600_000, "pairs": len(pairs), "spearman": rho, "t_stat": t,
            **band_lift(pairs, band_of, bands)}
