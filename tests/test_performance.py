"""Performance statistics (bot.performance): win rate without timeouts, profit factor edge cases, drawdown,
ranking, and the score-vs-move rank correlation with its t-statistic and the bands' lift."""
import math

import pytest

from bot.performance import (band_lift, max_drawdown, ranks, report, score_move_pairs, score_vs_move, spearman,
                             stats, trades)

H = 3_600_000


def closed(sid, symbol, status, follow, fade=None, rule="cross:60", closed_at=0):
    flip = {"TP1": "SL", "SL": "TP1", "TIMEOUT": "TIMEOUT"}[status]
    return {"id": sid, "ts": closed_at - 1, "symbol": symbol, "rule": rule, "bias": "LONG", "record_hash": "ab" * 32,
            "outcome": {"status": status, "closed": closed_at,
                        "follow": {"status": status, "net_bps": follow},
                        "fade": {"status": flip, "net_bps": fade if fade is not None or follow is None else -follow - 28}}}


def test_no_signals_gives_no_figures():
    s = stats([])
    assert s["signals"] == 0 and s["win_rate"] is None and s["profit_factor"] is None and s["avg_bps"] is None
    assert s["max_drawdown_bps"] is None


def test_win_rate_excludes_timeouts_and_profit_factor_needs_a_loss():
    sigs = [closed("A", "X", "TP1", 100, closed_at=1), closed("B", "X", "TIMEOUT", -10, closed_at=2),
            closed("C", "X", "TP1", 50, closed_at=3)]
    s = stats(trades(sigs, "follow"))
    assert s["wins"] == 2 and s["losses"] == 0 and s["timeouts"] == 1 and s["win_rate"] == 1.0
    assert s["profit_factor"] == pytest.approx(15)                          # a timeout's loss counts here
    only_wins = stats(trades(sigs[:1], "follow"))
    assert only_wins["profit_factor"] is None and only_wins["win_rate"] == 1.0    # no loss: no misleading ∞
    only_timeouts = stats(trades(sigs[1:2], "follow"))
    assert only_timeouts["win_rate"] is None


def test_averages_best_worst_and_drawdown():
    sigs = [closed(str(i), "X", st, n, closed_at=i) for i, (st, n) in
            enumerate([("TP1", 100), ("SL", -60), ("SL", -70), ("TP1", 40), ("TIMEOUT", None)])]
    s = stats(trades(sigs[:4], "follow"))
    assert s["win_rate"] == 0.5 and s["profit_factor"] == pytest.approx(140 / 130)
    assert s["total_bps"] == 10 and s["avg_bps"] == 2.5 and s["best_bps"] == 100 and s["worst_bps"] == -70
    assert s["max_drawdown_bps"] == 130
    assert max_drawdown([-5, 10, -3]) == 5
    no_return = {"id": "N", "ts": 0, "symbol": "X", "rule": "r", "bias": "LONG",
                 "outcome": {"status": "TIMEOUT", "closed": 9, "follow": {"status": "TIMEOUT", "net_bps": None}}}
    s = stats(trades(sigs[:4] + [no_return], "follow"))
    assert s["signals"] == 5 and s["timeouts"] == 1 and s["total_bps"] == 10


def test_report_ranks_symbols_by_score_and_shows_both_lenses():
    sigs = [closed("A", "LOW", "TP1", 100, closed_at=1), closed("B", "HIGH", "SL", -80, closed_at=2, rule="flip:LONG"),
            closed("C", "OLD", "SL", -80, closed_at=3)]
    r = report(sigs, {"HIGH": 80, "LOW": 20})
    assert [row["symbol"] for row in r["follow"]["per_symbol"]] == ["HIGH", "LOW", "OLD"]
    assert {row["rule"] for row in r["fade"]["per_rule"]} == {"cross:60", "flip:LONG"}
    assert r["fade"]["overall"]["wins"] == 2 and r["follow"]["overall"]["wins"] == 1
    assert [x["id"] for x in r["recent"]] == ["C", "B", "A"]
    neutral = {"id": "N", "ts": 0, "symbol": "X", "rule": "r", "bias": "NEUTRAL",
               "outcome": {"status": "TIMEOUT", "closed": 9, "follow": None, "fade": None}}
    assert report([neutral], {})["follow"]["overall"]["signals"] == 0


def test_ranks_average_ties():
    assert ranks([10, 20, 20, 5]) == [2, 3.5, 3.5, 1]


def test_spearman_and_t_statistic():
    assert spearman([(1, 1), (2, 2)]) == (None, None)                          # under three pairs
    assert spearman([(1, 5), (1, 6), (1, 7)]) == (None, None)                  # a constant side
    rho, t = spearman([(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)])
    assert rho == 1 and t is None                                              # perfect: t unbounded, no ∞
    pairs = [(1, 0.2), (2, 0.1), (3, 0.4), (4, 0.3), (5, 0.5)]
    rho, t = spearman(pairs)
    assert rho == pytest.approx(0.8) and t == pytest.approx(0.8 * math.sqrt(3 / (1 - 0.64)))


def test_pairs_are_non_overlapping_periods_per_symbol():
    rows = [(0, "X", 10, 100.0), (H // 2, "X", 90, 150.0),        # period 0: the first row counts
            (H, "X", 20, 110.0), (3 * H, "X", 30, 121.0),        # period 2 is empty: no pair from period 1
            (0, "Y", 50, 10.0), (H + 5, "Y", 60, 9.0)]
    assert sorted(score_move_pairs(rows, H)) == sorted([(10, pytest.approx(0.1)), (50, pytest.approx(0.1))])


def test_band_lift():
    band = lambda s: "high" if s >= 50 else "low"                      # noqa: E731
    pairs = [(80, 0.10), (70, 0.09), (20, 0.01), (10, 0.02), (30, 0.015), (60, 0.005), (15, 0.0), (25, 0.003)]
    out = band_lift(pairs, band, ["low", "high"])
    assert out["large_move"] == 0.02 and out["base_rate"] == 3 / 8
    assert out["bands"]["high"]["lift"] == pytest.approx((2 / 3) / (3 / 8))
    assert out["bands"]["low"]["lift"] == pytest.approx((1 / 5) / (3 / 8))
    assert band_lift([], band, ["low"])["base_rate"] is None
    assert score_vs_move([], H, band, ["low"])["spearman"] is None


def test_cli_signals_and_perf(tmp_path, capsys):
    import json

    from conftest import closing_of

    from bot import cli
    from bot.config import Config
    from bot.store import Store

    t = 1_790_000_000_000
    store = Store(tmp_path / "p.db")
    sigs = [dict(id=f"SIG{i:05d}", ts=t, symbol=sym, rule="cross:60", kind="threshold", score=61, bias="LONG",
                 regime="x", receipt={"raw": {"mark_price": 100.0}}) for i, sym in enumerate(("BTCUSDT", "ETHUSDT"))]
    cycle = dict(ts=t, duration_s=0, requests=0, weight=0, failed={})
    store.commit_alert_cycle(cycle, [], {}, sigs, [], [])
    store.commit_alert_cycle(dict(cycle, ts=t + H), [], {}, [], [], [],
                             closings=[closing_of(Config(), sigs[0], 0.05, t + H)])
    store.close()
    db = str(tmp_path / "p.db")
    assert cli.main(["signals", "--closed", "--db", db]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 of 1 closed signals") and "SIG00000" in out and "TP1" in out and "SIG00001" not in out
    assert cli.main(["signals", "--db", db, "--json"]) == 0
    feed = {g["id"]: g for g in json.loads(capsys.readouterr().out)}
    assert feed["SIG00001"]["status"] == "OPEN" and feed["SIG00000"]["follow_net_bps"] > 0
    assert cli.main(["perf", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "1 closed, 1 open" in out and "Follow the bias: 1 trades · win rate 100%" in out
    assert "profit factor — (no losing trade)" in out
    assert cli.main(["perf", "eth", "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["follow"]["overall"]["signals"] == 0
    assert cli.main(["perf", "nope", "--db", db]) == 1
    assert "unknown symbol 'nope'" in capsys.readouterr().err
