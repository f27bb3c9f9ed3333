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


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]], max_width: dict[int, int] | None = None,
                 numeric: set[int] | None = None) -> str:
    """`numeric`: the columns aligned right (default: the ranked table's)."""
    max_width = max_width or {}
    cut = [tuple(c if len(c) <= max_width.get(i, 999) else c[:max_width[i] - 1] + "…" for i, c in enumerate(row))
           for row in rows]
    widths = [max(len(header[i]), *(len(r[i]) for r in cut)) if cut else len(header[i]) for i in range(len(header))]
    numeric = {0, 2, 5, 6, 7, 8, 9} if numeric is None else numeric

    def line(cells):
        return "  ".join(c.rjust(widths[i]) if i in numeric else c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

    return "\n".join([line(header), *(line(r) for r in cut)])


def ranked(results: list[dict]) -> list[dict]:
    """Attach the rank in the full ranking (so a filtered view keeps the overall rank)."""
    return [dict(r, rank=i) for i, r in enumerate(results, start=1)]


_CONTRIBUTION_LABELS = (("oi_1h", "OI change 1h", "oi_change_1h", 2), ("oi_4h", "OI change 4h", "oi_change_4h", 2),
                        ("oi_24h", "OI change 24h", "oi_change_24h", 2), ("funding", "funding", "funding_rate", 4),
                        ("basis", "basis", "basis", 3))


def explain(r: dict) -> str:
    """One symbol: the five signed contributions in points that add up to the score, band, direction, regime
    and why, the OI/price quadrant (and a warning when it contradicts the direction), what was missing."""
    pts = r.get("contributions", {})
    signed = r.get("signed", sum(pts.values()))
    lines = [
        f"{r['symbol']}: score {r['score']} ({r['band']}) · direction {r['bias']}",
        f"Regime: {r['regime']}",
        f"Why: {r['reason']}",
        "",
        "Contributions (weight x clip(input / full scale, -1, +1); + long, - short):",
    ]
    for name, label, attr, digits in _CONTRIBUTION_LABELS:
        if name in pts:
            value = r.get(attr)
            shown = "unknown" if value is None else pct(value, digits)
            if name == "funding" and value is not None:
                shown += f" per {r.get('funding_interval_hours') or 8:g}h"
            lines.append(f"  {label:<14} {shown:>18}  {pts[name]:+7.2f}")
    lines.append(f"  {'sum':<14} {'':>18}  {signed:+7.2f}  -> score {r['score']}, {r['bias']}")
    lines += ["", f"  Price         1h {pct(r.get('price_change_1h'))}   24h {pct(r.get('price_change_24h'))}"]
    if r.get("quadrant"):
        lines.append(f"  {r['quadrant']}")
    if r.get("warning"):
        lines.append(f"  Warning: {r['warning']}")
    if r.get("missing"):
        lines.append(f"\nMissing inputs: {', '.join(r['missing'])}")
    for a in r.get("assumptions", []):
        lines.append(f"Assumed: {a}")
    return "\n".join(lines)


RULE_TITLES = {"threshold": "Threshold", "regime": "Regime", "bias_flip": "Bias flip"}


def what_fired(sig: dict) -> str:
    """e.g. 'crossed 60 (from 56)', 'entered: Short squeeze risk · ...', 'bias flipped to SHORT'."""
    rec = sig.get("receipt") or {}
    if sig["kind"] == "threshold":
        return f"crossed {rec.get('threshold')} (from {rec.get('prev_score')})"
    if sig["kind"] == "regime":
        return f"entered: {sig.get('regime') or rec.get('regime')}"
    return f"bias flipped to {sig.get('bias') or rec.get('bias')}"


def alert_title(sig: dict) -> str:
    """e.g. 'BTCUSDT 64 stressed · crossed 60' / 'SOLUSDT 48 · Short squeeze risk'."""
    rec = sig["receipt"]
    return f"{sig['symbol']} {sig['score']} {rec['band']} {rec['bias']} · {what_fired(sig)}"


def alert_details(sig: dict) -> str:
    i = sig["receipt"]["inputs"]
    return (f"OI 1h {pct(i.get('oi_change_1h'))} · 4h {pct(i.get('oi_change_4h'))} · 24h {pct(i.get('oi_change_24h'))}"
            f" · funding {pct(i.get('funding_rate'), 4)}/{i.get('funding_interval_hours') or 8:g}h"
            f" · basis {pct(i.get('basis'), 3)} · signal {sig['id']}"
            + (f" · receipt {sig['record_hash'][:12]}" if sig.get("record_hash") else ""))


def alert_context(sig: dict) -> str | None:
    """What price says beside the score: the OI/price quadrant, or the warning when it contradicts the direction."""
    rec = sig["receipt"]
    warning = rec.get("warning")
    return f"⚠ {warning}" if warning else rec.get("quadrant")


def digest_text(signals: list[dict], held: bool = False) -> str:
    head = f"{len(signals)} alert{'s' if len(signals) != 1 else ''}" + (" (held during quiet hours)" if held else "")
    lines = [head]
    for sig in signals:
        lines += [f"• {alert_title(sig)}", f"  {alert_details(sig)}"]
        context = alert_context(sig)
        if context:
            lines.append(f"  {context}")
    return "\n".join(lines)


def notice_text(notice: dict) -> str:
    """An outbox notice (not a signal) as plain text: its title, then its lines."""
    return f"{notice['title']}\n{notice['text']}"


def receipt_text(sig: dict) -> str:
    """`python -m bot signal ID` and /signal ID: everything that fired this signal."""
    rec = sig["receipt"]
    raw = rec.get("raw") or {}
    oi = raw.get("oi") or {}
    lines = [f"Signal {sig['id']} · {utc(sig['ts'])}", alert_title(sig), f"Rule: {rec['rule']}"
             + (f" (threshold {rec['threshold']}, previous score {rec['prev_score']})" if rec.get("threshold") else ""),
             f"Regime: {rec['regime']} — {rec['reason']}", "", "Raw inputs:"]
    for name in ("now", "1h", "4h", "24h"):
        point = oi.get(name)
        lines.append(f"  OI {name:>3}: " + (f"{point[1]:,.3f} contracts at {utc(point[0])}" if point else "none in tolerance"))
    if raw:
        lines += [f"  mark {raw.get('mark_price')} · index {raw.get('index_price')}",
                  f"  funding {raw.get('funding_rate')} per {raw.get('funding_interval_hours'):g}h ({raw.get('funding_interval_source')})",
                  f"  price change 24h {raw.get('price_change_24h_pct')} %"]
    lines += ["", "Score inputs: " + ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                                               for k, v in rec["inputs"].items()),
              "Contributions (points): " + ", ".join(
                  f"{k} {v:+.2f}" for k, v in (rec.get("contributions") or rec.get("components") or {}).items())]
    lines += ["", *outcome_text(sig.get("outcome"))]
    lines += ["", f"Receipt hash: {sig['record_hash']}" if sig.get("record_hash") else
              "Receipt hash: none — not sealed (its cycle was committed before sealing began)"]
    if sig.get("record_hash"):
        lines.append(f"Sealed in its cycle's signed manifest: /verify {sig['id']} checks it "
                     f"(python -m bot verify --signal {sig['id']})")
    return "\n".join(lines)


def seal_text(public_key: str, last: dict | None) -> str:
    """/verify: the key receipts are signed with, and the last sealed cycle."""
    lines = [f"Receipts are signed with Ed25519 public key:\n{public_key}", ""]
    if last is None:
        lines.append("No cycle is sealed yet.")
    else:
        m = last["manifest"]
        lines += [f"Last sealed cycle: {utc(m['cycle_ts'])} (ts {m['cycle_ts']}) · {m['count']} records",
                  f"  root {m['root']}", f"  manifest {last['hash']}"]
    lines += ["", "Every alert carries its receipt hash; /verify ID shows its proof and checks it. "
                  "Anyone can check it offline: python -m bot verify --signal ID --json (docs/receipts.md)."]
    return "\n".join(lines)


def proof_text(bundle: dict, checks: list) -> str:
    """/verify ID and `python -m bot verify --signal ID`: the receipt hash, the proof, the signed manifest and
    whether each check passes (`checks`: objects with name, ok, detail)."""
    rec = bundle["record"]
    lines = [f"Signal {bundle['signal']} · {utc(rec['cycle_ts'])} · {rec['symbol']} {rec['rule']}"]
    if bundle.get("manifest") is not None:
        m = bundle["manifest"]
        lines += [f"Receipt hash: {bundle['record_hash']}",
                  f"Leaf {bundle['leaf_index']} of {bundle['tree_size']}; proof:",
                  *(f"  {h}" for h in bundle["proof"]),
                  f"Manifest: cycle_ts {m['cycle_ts']} · count {m['count']} · root {m['root']} · prev {m['prev']}",
                  f"Signature: {bundle['signature']}", f"Public key: {bundle['public_key']}", ""]
    lines += [f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in checks]
    ok = all(c.ok for c in checks)
    lines.append("Verifies: yes" if ok else "Verifies: NO")
    return "\n".join(lines)


def verification_text(v: dict) -> str:
    """`python -m bot verify`: what was checked, and the first problem (`v`: bot.sealing.Verification.as_dict())."""
    lines = [f"Public key: {v['public_key'] or 'none (nothing sealed)'} (trusted: {v['key_source']})"]
    p = v["problem"]
    if p is not None:
        where = f"cycle {utc(p['cycle_ts'])} (ts {p['cycle_ts']})" if p["cycle_ts"] is not None else "store"
        lines.append(f"FAIL {where} · {p['record'] or 'manifest'} · {p['what']}: {p['detail']}")
        lines.append(f"(checked before it: {v['cycles']} cycles, {v['records']} records)")
        return "\n".join(lines)
    lines.append(f"{v['cycles']} sealed cycles checked: {v['records']} records recomputed "
                 f"({v['scores']} scores, {v['signals']} signals"
                 + (f", {v['closings']} closings" if v.get("closings") else "") + "), every root, chain link and signature")
    if v["pruned_cycles"]:
        lines.append(f"{v['pruned_cycles']} of them had their scores pruned: manifest, chain and their signals' "
                     "proofs checked")
    if v.get("thinned_cycles"):
        lines.append(f"{v['thinned_cycles']} of them had their score rows thinned (older than the fine window, not on a "
                     "coarse step): manifest, chain and their signals' and closings' proofs checked")
    if v["unsealed_cycles"]:
        lines.append(f"{v['unsealed_cycles']} cycles stored without a seal (from `scan`, or before sealing began)")
    lines.append("OK")
    return "\n".join(lines)


# ---- closed signals and performance (bot.outcomes, bot.performance) -----------------------------------------
FEED_COLUMNS = ("Id", "Opened", "Symbol", "Rule", "Bias", "Outcome", "Follow", "Fade", "Receipt")


def bps(x: float | None, digits: int = 0) -> str:
    return "—" if x is None else f"{x:+.{digits}f}"


def feed_rows(signals: list[dict]) -> list[tuple[str, ...]]:
    """/signals and `python -m bot signals`: one row per signal, open or closed, with its net bps and receipt."""
    rows = []
    for g in signals:
        o = g.get("outcome") or {}
        rows.append((g["id"], utc(g["ts"])[5:16], g["symbol"], g["rule"], g["bias"], o.get("status", "OPEN"),
                     bps((o.get("follow") or {}).get("net_bps")), bps((o.get("fade") or {}).get("net_bps")),
                     (g.get("record_hash") or "—")[:12]))
    return rows


def outcome_text(o: dict | None) -> list[str]:
    """A signal's closing record as lines (the receipt's "Outcome" part)."""
    if not o:
        return ["Outcome: open (closes at TP1, SL or TIMEOUT)"]
    if "status" not in o:             # a coarse 1h/4h/24h outcome of an older version
        return ["Outcome (older format): " + ", ".join(f"{k} {v}" for k, v in o.items())]
    lines = [f"Outcome: {o['status']} at {utc(o.get('closed'))} · entry {o.get('entry')} · exit {o.get('exit')}"
             + (f" · ATR(1h) {o['atr_1h']}" if o.get("atr_1h") else "")]
    if o.get("reason"):
        lines.append(f"  why: {o['reason']}")
    for lens in ("follow", "fade"):
        t = o.get(lens)
        if t:
            lines.append(f"  {lens:<6} {t['direction']:<5} TP1 {t['tp1']} · SL {t['sl']} → {t['status']} at {t['exit']}"
                         f" · net {bps(t['net_bps'], 1)} bps (funding {bps(t['funding_bps'], 2)} bps)"
                         + (f" · {t['reason']}" if t.get("reason") else ""))
    m = o.get("move") or {}
    if m:
        vols = " · ".join(f"{k} {v['ratio']:.2f}×" for k, v in (m.get("realised_vol") or {}).items()
                          if v.get("ratio") is not None)
        lines.append(f"  move: max up {bps(m.get('max_up_bps'))} bps, max down {bps(m.get('max_down_bps'))} bps"
                     + (f" · realised vol vs trailing 24h: {vols}" if vols else ""))
    if o.get("missing_candles"):
        lines.append(f"  {o['missing_candles']} candle(s) missing from the exchange's series")
    return lines


def _stat_cells(s: dict) -> tuple[str, ...]:
    return (str(s["signals"]), "—" if s["win_rate"] is None else f"{s['win_rate'] * 100:.0f}%",
            "—" if s["profit_factor"] is None else f"{s['profit_factor']:.2f}", bps(s["avg_bps"], 1),
            bps(s["total_bps"]), bps(s["best_bps"]), bps(s["worst_bps"]),
            "—" if s["max_drawdown_bps"] is None else f"{s['max_drawdown_bps']:.0f}")


STAT_COLUMNS = ("N", "Win", "PF", "Avg", "Total", "Best", "Worst", "MaxDD")


def overall_line(name: str, s: dict) -> str:
    if not s["signals"]:
        return f"{name}: no closed trade in the window"
    pf = "— (no losing trade)" if s["profit_factor"] is None else f"{s['profit_factor']:.2f}"
    win = "— (no TP1 or SL yet)" if s["win_rate"] is None else f"{s['win_rate'] * 100:.0f}%"
    dd = "—" if s["max_drawdown_bps"] is None else f"{s['max_drawdown_bps']:.0f}"
    return (f"{name}: {s['signals']} trades · win rate {win} ({s['wins']} TP1 / {s['losses']} SL, "
            f"{s['timeouts']} timeouts) · profit factor {pf} · avg {bps(s['avg_bps'], 1)} bps · total "
            f"{bps(s['total_bps'])} bps · best {bps(s['best_bps'])} · worst {bps(s['worst_bps'])} · max drawdown "
            f"{dd} bps")


def score_move_line(sm: dict) -> str:
    if sm["spearman"] is None:
        return (f"Score vs next {sm['period_hours']:g}h |move|: not enough non-overlapping periods yet "
                f"({sm['pairs']} pairs)")
    t = "unbounded" if sm["t_stat"] is None else f"{sm['t_stat']:.2f}"
    lifts = " · ".join(f"{b} {v['lift']:.2f}× (n {v['pairs']})" for b, v in sm["bands"].items() if v["lift"] is not None)
    return (f"Score vs next {sm['period_hours']:g}h |move|: Spearman ρ {sm['spearman']:+.3f}, t {t}, "
            f"{sm['pairs']} non-overlapping pairs · large move ≥ {sm['large_move'] * 100:.2f}% "
            f"(base rate {sm['base_rate'] * 100:.0f}%) · lift {lifts}")


def perf_text(rep: dict, label: str = "", top: int = 20) -> str:
    """`python -m bot perf`, /perf and the backtest: overall (follow and fade), per symbol ranked by the current
    score, per rule, recent closed signals, the score-vs-move lens."""
    head = (f"{label + ' · ' if label else ''}Performance{' of ' + rep['symbol'] if rep.get('symbol') else ''} · "
            f"last {rep['window_days']:g} days (to {utc(rep['until'])}) · {rep['closed']} closed, {rep['open']} open "
            "signals · net of fees, slippage and funding")
    lines = [head, overall_line("Follow the bias", rep["follow"]["overall"]),
             overall_line("Fade the bias  ", rep["fade"]["overall"])]
    if rep["follow"]["per_symbol"]:
        rows = [(p["symbol"], "—" if p["score"] is None else str(p["score"]), *_stat_cells(p), *_stat_cells(f)[1:4])
                for p, f in zip(rep["follow"]["per_symbol"], _align(rep["fade"]["per_symbol"], rep["follow"]["per_symbol"],
                                                                     "symbol"))][:top]
        lines += ["", "Per symbol (ranked by composite score now; follow, then fade win/PF/avg):",
                  format_table(("Symbol", "Score", *STAT_COLUMNS, "FadeWin", "FadePF", "FadeAvg"), rows,
                               numeric=set(range(1, 13)))]
        shown = len(rep["follow"]["per_symbol"])
        if shown > top:
            lines.append(f"… and {shown - top} more symbols (--json for all)")
        rows = [(p["rule"], *_stat_cells(p), *_stat_cells(f)[1:4])
                for p, f in zip(rep["follow"]["per_rule"], _align(rep["fade"]["per_rule"], rep["follow"]["per_rule"], "rule"))]
        lines += ["", "Per rule (follow, then fade win/PF/avg):",
                  format_table(("Rule", *STAT_COLUMNS, "FadeWin", "FadePF", "FadeAvg"), rows, numeric=set(range(1, 12)))]
    if rep["recent"]:
        lines += ["", "Recent closed:", format_table(("Id", "Closed", "Symbol", "Rule", "Outcome", "Follow", "Fade",
                                                      "Receipt"),
                                                     [(r["id"], utc(r["closed"])[5:16], r["symbol"], r["rule"], r["status"],
                                                       bps(r["follow_bps"]), bps(r["fade_bps"]),
                                                       (r["record_hash"] or "—")[:12]) for r in rep["recent"]],
                                                     numeric={5, 6})]
    lines += ["", score_move_line(rep["score_vs_move"])]
    return "\n".join(lines)


def _align(rows: list[dict], like: list[dict], key: str) -> list[dict]:
    by = {r[key]: r for r in rows}
    return [by[r[key]] for r in like]
