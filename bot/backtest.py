"""Backtest: the stored cycles replayed through the CURRENT score, rules and evaluation, reported like `perf`.

Each stored score row keeps its inputs and the exchange's raw values, so a cycle is re-scored with today's
`score:` settings, `rules.detect` turns the new scores into events with today's `rules:` (every event is a
signal, as in the engine; routing, cooldowns and mutes do not change which signals exist), and each signal is
evaluated (bot.evaluation) with today's `evaluation:` settings. Thresholds crossed: `rules.thresholds`, the console
filter's, and every threshold a stored signal of the window crossed (the watchlists' of the time).

One difference from live, stated in every report: a backtest is offline, so its candles are built from the stored
cycles' mark prices (a candle from one cycle's mark to the next; hourly candles aggregated from them), not fetched
from the exchange: moves inside a cycle interval are not seen, and the ATR needs two stored hours before a signal.
"""
from __future__ import annotations

import json
from itertools import groupby

from . import performance
from .config import Config
from .engine import signal_id
from .evaluation import HOUR_MS, Candle, evaluate
from .outcomes import DAY_MS, costs_of, funding_samples, plan_for, signal_input
from .records import scored_row
from .rules import FilterSubscriber, detect, thresholds_in_use
from .score import ScoreInputs, band_of, score
from .store import Store
from .vocabulary import SCORE_BANDS

INPUT_FIELDS = ("symbol", "funding_rate", "funding_interval_hours", "oi_change_1h", "oi_change_4h", "oi_change_24h",
                "basis", "price_change_1h", "price_change_24h")
NOTE = ("BACKTEST: stored cycles replayed through the current score, rules and evaluation; candles built from the "
        "stored mark prices (one per cycle), not the exchange's")


def path_candles(marks: list[tuple[int, float]]) -> list[Candle]:
    """Candles from consecutive stored marks: each opens at one cycle's mark and closes at the next's."""
    return [Candle(t0, p0, max(p0, p1), min(p0, p1), p1, t1) for (t0, p0), (t1, p1) in zip(marks, marks[1:])]


def hourly_candles(marks: list[tuple[int, float]]) -> list[Candle]:
    """Hourly candles (UTC hours) aggregated from the stored marks; an hour needs two marks."""
    out = []
    for hour, points in groupby(marks, key=lambda m: m[0] // HOUR_MS):
        prices = [p for _, p in points]
        if len(prices) >= 2:
            out.append(Candle(hour * HOUR_MS, prices[0], max(prices), min(prices), prices[-1], (hour + 1) * HOUR_MS))
    return out


def replay(store: Store, cfg: Config, since_ms: int) -> dict:
    """The performance report of the stored cycles since `since_ms`, re-scored, re-detected and re-evaluated."""
    last = store.last_cycle()
    until = last["ts"] if last else since_ms
    rows = store.score_rows_between(since_ms, until)
    thresholds = thresholds_in_use([FilterSubscriber.from_filter(cfg.console)], cfg.rules, cfg.score)
    thresholds |= {int(g["rule"].split(":")[1]) for g in store.signals_since(since_ms)
                   if g["kind"] == "threshold" and g["rule"].split(":")[-1].isdigit()}   # the watchlists' at the time
    state: dict = {}
    signals: list[dict] = []
    marks: dict[str, list[tuple[int, float]]] = {}
    payloads: dict[str, list[tuple[int, dict]]] = {}
    latest: dict[str, int] = {}
    sampled = []
    for ts, cycle in groupby(rows, key=lambda r: r[0]):
        results = []
        for _, symbol, _, text in cycle:
            p = scored_row(json.loads(text), ts)
            r = score(ScoreInputs(**{k: p.get(k) for k in INPUT_FIELDS}), cfg.score).as_dict()
            r["raw"] = p.get("raw")
            results.append(r)
            mark = (p.get("raw") or {}).get("mark_price")
            if mark:
                marks.setdefault(symbol, []).append((ts, float(mark)))
            payloads.setdefault(symbol, []).append((ts, p))
            sampled.append((ts, symbol, r["score"], mark))
            latest[symbol] = r["score"]
        events, state = detect(state, results, thresholds, cfg.rules, ts)
        signals += [dict(id=signal_id(ts, e.symbol, e.rule), ts=ts, symbol=e.symbol, rule=e.rule, kind=e.kind,
                         score=e.score, bias=e.result["bias"], regime=e.result["regime"],
                         receipt={"raw": e.result.get("raw")}, record_hash=None) for e in events]
    closed = []
    for sig in signals:
        path = marks.get(sig["symbol"], [])
        step = _step(path)
        out = evaluate(signal_input(sig), plan_for(cfg.evaluation, sig["kind"]), costs_of(cfg.evaluation),
                       hourly_candles(path), path_candles(path), step, funding_samples(payloads.get(sig["symbol"], [])),
                       until)
        if out is not None:
            closed.append(dict(sig, outcome=out))
    rep = performance.report(closed, latest)
    period = int(cfg.evaluation.move_period_hours * HOUR_MS)
    rep["score_vs_move"] = performance.score_vs_move(sampled, period, lambda s: band_of(s, cfg.score), SCORE_BANDS)
    rep.update(window_days=round((until - since_ms) / DAY_MS, 2), since=since_ms, until=until, symbol=None,
               open=len(signals) - len(closed), cycles=len({r[0] for r in rows}), thresholds=sorted(thresholds),
               note=NOTE)
    return rep


def _step(path: list[tuple[int, float]]) -> int:
    """The usual spacing of the stored cycles (the median gap; 5 minutes when there is no gap)."""
    gaps = sorted(b[0] - a[0] for a, b in zip(path, path[1:]))
    return gaps[len(gaps) // 2] if gaps else 300_000
