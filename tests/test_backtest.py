"""Backtest: stored cycles re-scored, re-detected and re-evaluated with the current settings (bot.backtest)."""
from __future__ import annotations

from bot import cli
from bot.backtest import hourly_candles, path_candles, replay
from bot.config import Config
from bot.score import ScoreInputs, score_all
from bot.store import Store

H, M5 = 3_600_000, 300_000
T0 = 1_790_000_000_000 // H * H
CALM = ScoreInputs("BTCUSDT", 0.0001, 8, 0.001, 0.002, 0.005, 0.0001, 0.001, 0.002)
HOT = ScoreInputs("BTCUSDT", 0.0012, 8, 0.03, -0.03375, 0.15, 0.004, 0.015, 0.05)      # 75 LONG


def store_cycles(path) -> Store:
    """3 h calm around 100 (a ±0.5 zigzag: an hourly range of 1), then hot (score 75 LONG) while the price climbs
    to 110 over the next hour."""
    store = Store(path)
    cfg = Config()
    for i in range(4 * 12 + 1):
        ts = T0 + i * M5
        hot = i >= 36
        price = 100 + (0.5 if i % 2 else -0.5) if not hot else 100 + (i - 36) * 10 / 12
        [row] = [dict(r.as_dict(), raw={"mark_price": price}) for r in score_all([HOT if hot else CALM], cfg.score)]
        store.commit_alert_cycle(dict(ts=ts, duration_s=0, requests=0, weight=0, failed={}), [row], {}, [], [], [])
    return store


def test_candles_from_stored_marks():
    marks = [(T0, 100.0), (T0 + M5, 102.0), (T0 + 2 * M5, 101.0), (T0 + H, 99.0)]
    c = path_candles(marks)
    assert (c[0].open, c[0].high, c[0].low, c[0].close) == (100, 102, 100, 102) and c[0].close_time == T0 + M5
    [h] = hourly_candles(marks)                     # the second hour has one mark: no candle
    assert (h.open, h.high, h.low, h.close, h.close_time) == (100, 102, 100, 101, T0 + H)


def test_replay_rescore_detects_and_closes(tmp_path):
    store = store_cycles(tmp_path / "b.db")
    rep = replay(store, Config.model_validate({"evaluation": {"timeout_hours": 2}}), T0)
    assert rep["cycles"] == 49 and rep["note"].startswith("BACKTEST")
    follow = rep["follow"]["overall"]
    assert follow["signals"] >= 1 and follow["wins"] == follow["signals"]            # the climb takes TP1
    assert all(r["status"] == "TP1" for r in rep["recent"])
    assert rep["fade"]["overall"]["losses"] == follow["signals"]
    # the same cycles judged with stricter settings: no threshold crossed, only the regime entry is left
    strict = replay(store, Config.model_validate({"rules": {"thresholds": [90]},
                                                  "console": {"min_score": 90, "bands": []}}), T0)
    assert strict["closed"] + strict["open"] < rep["closed"] + rep["open"]
    assert not any(r["rule"].startswith("cross:") for r in strict["recent"])


def test_backtest_cli_prints_the_report_labelled(tmp_path, capsys):
    store_cycles(tmp_path / "c.db").close()
    cfg = tmp_path / "bt.yaml"
    cfg.write_text("evaluation:\n  timeout_hours: 2\n")
    assert cli.main(["backtest", "--db", str(tmp_path / "c.db"), "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("BACKTEST: stored cycles replayed") and "\nBACKTEST · Performance · last" in out
    assert "Follow the bias:" in out and "win rate 100%" in out
