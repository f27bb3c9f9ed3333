"""Cadence: the alert rules count time, not cycles, so one-minute cycles are no noisier than five-minute ones;
and a cycle longer than its interval never overlaps the next and is reported once."""
from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime, timezone

from bot import app as app_mod
from bot.config import Config, RulesConfig, ScoreConfig
from bot.cycle import CycleOutcome
from bot.market import CycleData
from bot.rules import FilterSubscriber, detect, route
from bot.score import ScoreInputs, score_all
from conftest import until

MIN = 60_000
T0 = 1_795_046_400_000          # 2026-11-18T00:00Z
SCORE = ScoreConfig()


def market(minute: int) -> list[dict]:
    """One simulated path (minute by minute) with what a trader calls news and what is noise. Real changes last
    far longer than `confirm_minutes`/`rearm_minutes` plus one 5-minute cycle; flickers last under 5 minutes
    (some fall on a 5-minute sample, some between samples)."""
    t = minute
    # A: crosses 35 at 35; a 2-minute dip to 28 at 61; long_crowded from 75 to 120 (a 3-minute squeeze flicker at 54,
    # seen by the 5-minute sample at 55); a SHORT flicker at 88-90 (seen at 90); back to 20 from 100 (a real re-arm);
    # crosses again at 150; a real flip to SHORT from 160.
    score_a = 20 if t < 35 else 28 if 61 <= t < 63 else 45 if t < 100 else 20 if t < 150 else 50
    regime_a = ("short_squeeze_risk" if 54 <= t < 57 else "long_crowded" if 75 <= t < 120 else "net_long")
    bias_a = "SHORT" if (88 <= t < 91 or t >= 160) else "LONG"
    # B: hovers at the threshold (36/31 every other minute: never 5 below), dips to 29 for 3 minutes at 100.
    score_b = 20 if t < 10 else 29 if 100 <= t < 103 else 36 if t % 2 == 0 else 31
    return [
        {"symbol": "AUSDT", "score": score_a, "bias": bias_a, "regime_key": regime_a, "regime": regime_a},
        {"symbol": "BUSDT", "score": score_b, "bias": "LONG", "regime_key": "net_long", "regime": "net_long"},
    ]


def alerts(every_minutes: int, rules: RulesConfig, minutes: int = 200) -> tuple[list[tuple], list[tuple]]:
    """Feed the path at one cadence through detect and route (cooldown 0: every event a delivery);
    returns the (symbol, rule) sequence of events and the (recipient, symbol, rule) sequence delivered."""
    console = {"console": FilterSubscriber.from_filter(Config().console.model_copy(update={"cooldown_minutes": 0}))}
    state: dict = {}
    events, delivered = [], []
    for minute in range(0, minutes, every_minutes):
        now_ms = T0 + minute * MIN
        ev, state = detect(state, market(minute), {35, 60}, rules, now_ms)
        events += [(e.symbol, e.rule) for e in ev]
        deliveries, _ = route(ev, console, {}, datetime.fromtimestamp(now_ms / 1000, timezone.utc), SCORE)
        delivered += [(d.recipient, e.symbol, e.rule) for d in deliveries for e in d.events]
    return events, delivered


def test_one_minute_and_five_minute_cadence_give_the_same_alerts_on_the_same_path():
    rules = RulesConfig()          # the defaults: confirm_minutes 5, rearm_minutes 5, hysteresis 5
    one, one_sent = alerts(1, rules)
    five, five_sent = alerts(5, rules)
    assert one == five == [("BUSDT", "cross:35"), ("AUSDT", "cross:35"), ("AUSDT", "regime:long_crowded"),
                           ("AUSDT", "cross:35"), ("AUSDT", "flip:SHORT")]
    assert one_sent == five_sent and len(one_sent) == 5


def test_counting_cycles_instead_of_time_would_make_one_minute_cycles_noisier():
    """The control: with nothing held in time (what one cycle of confirmation amounts to), the 1-minute cadence
    alerts on every flicker it sees, and so does the 5-minute one on those it happens to sample."""
    at_once = RulesConfig(confirm_minutes=0, rearm_minutes=0)
    one, _ = alerts(1, at_once)
    five, _ = alerts(5, at_once)
    assert len(one) > len(five) > 5
    assert ("AUSDT", "regime:short_squeeze_risk") in one and ("AUSDT", "flip:LONG") in one


# ------------------------------------------------------------------ a cycle longer than its interval
INPUTS = [ScoreInputs("BTCUSDT", 0.0001, 8, 0.001, 0.002, 0.005, 0.0001, 0.001, 0.002)]


class SlowSource:
    """A market source whose cycle `slow_call` takes `slow_s` (on the loop's real clock: the scheduler's is real);
    records how many cycles are ever in flight at once."""

    def __init__(self, cfg: Config, slow_call: int, slow_s: float):
        self.cfg, self.slow_call, self.slow_s = cfg, slow_call, slow_s
        self.calls = self.in_flight = self.max_in_flight = 0
        self.ts = T0

    async def next_cycle(self) -> CycleOutcome:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.calls == self.slow_call:
                await asyncio.sleep(self.slow_s)
            self.ts += MIN
            return CycleOutcome(self.ts, score_all(INPUTS, self.cfg.score), CycleData(self.ts, INPUTS, {}),
                                0.01, 0, 0, 0)
        finally:
            self.in_flight -= 1


async def _run_with(make_services, caplog, slow_s: float, want_calls: int, limit_s: float = 5) -> SlowSource:
    caplog.set_level(logging.INFO)
    cfg = Config.model_validate({"engine": {"interval_minutes": 0.05 / 60,        # a tick every 0.05 s,
                                            "cycle_time_limit_min_s": limit_s}})   # a cycle cut off after limit_s
    svc = make_services(cfg, universe=["BTCUSDT"])
    source = SlowSource(cfg, slow_call=2, slow_s=slow_s)
    stop = asyncio.Event()
    task = asyncio.create_task(app_mod.run_bot(svc, stop, show_table=False, source=source))
    try:
        await until(lambda: source.calls >= want_calls, 30, f"{want_calls} cycles")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    return source


def _lines(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def _overruns(caplog, at_least_s: float) -> list[tuple[float, int]]:
    """(duration, ticks skipped) of each "cycle took ..." line for a cycle of at least `at_least_s`. (On a loaded
    machine an ordinary cycle may outlast the 0.05 s tick too: that one is reported as well, and rightly.)"""
    found = [re.match(r"cycle took ([0-9.]+)s, longer than its .*: (\d+) tick\(s\) skipped \(never two cycles at "
                      r"once\)$", line) for line in _lines(caplog, "longer than its")]
    assert all(found), _lines(caplog, "longer than its")
    return [(float(m[1]), int(m[2])) for m in found if float(m[1]) >= at_least_s]


async def test_a_cycle_longer_than_its_interval_never_overlaps_the_next_and_is_reported_once(make_services, caplog):
    source = await _run_with(make_services, caplog, slow_s=0.5, want_calls=5)     # ~10 ticks fall inside it
    assert source.max_in_flight == 1
    [(_, ticks)] = _overruns(caplog, 0.5)                  # one line for the slow cycle, not one per tick
    assert ticks >= 2                                         # the ticks it cost are in that one line
    assert _lines(caplog, "maximum number of running instances") == []


async def test_a_cycle_cut_off_by_its_time_limit_is_reported_once_and_the_next_one_runs(make_services, caplog):
    source = await _run_with(make_services, caplog, slow_s=60, want_calls=4, limit_s=0.5)   # cut off at 0.5 s
    assert source.max_in_flight == 1
    timed_out = _lines(caplog, "cycle timed out after")
    assert len(timed_out) == 1 and "tick(s) skipped" in timed_out[0], timed_out
    assert _overruns(caplog, 0.5) == [] and _lines(caplog, "maximum number of running instances") == []


def test_the_old_cycle_count_key_is_a_clear_error_naming_its_replacement(tmp_path):
    import pytest

    from bot.config import ConfigError, load_config
    cfg = tmp_path / "bot.yaml"
    cfg.write_text("rules:\n  hysteresis: 5\n  regime_confirm_cycles: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    text = str(e.value)
    assert f"{cfg}:1: rules: " in text and "regime_confirm_cycles (3) is replaced by confirm_minutes" in text, text
    assert "`confirm_minutes: 10`" in text
