"""Properties of the pure score (hypothesis) and its labels on the reference rows."""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from bot.config import Config, load_config
from bot.score import LONG, NEUTRAL, SHORT, ScoreInputs, funding_excess_8h, score

DATA = Path(__file__).parent / "data"
CFG = load_config(Path(__file__).parent.parent / "config" / "bot.yaml").score
BASE = CFG.funding_baseline_8h

maybe = lambda s: st.one_of(st.none(), s)  # noqa: E731
oi_change = st.floats(-0.6, 1.5, allow_nan=False)
interval = st.sampled_from([1.0, 2.0, 4.0, 8.0])


@st.composite
def inputs(draw):
    return ScoreInputs(
        symbol="XUSDT",
        funding_rate=draw(st.floats(-0.03, 0.03, allow_nan=False)),
        funding_interval_hours=draw(maybe(interval)),
        oi_change_1h=draw(maybe(oi_change)), oi_change_4h=draw(maybe(oi_change)),
        oi_change_24h=draw(maybe(oi_change)),
        basis=draw(maybe(st.floats(-0.05, 0.05, allow_nan=False))),
        price_change_1h=draw(maybe(st.floats(-0.3, 0.3, allow_nan=False))),
        price_change_24h=draw(maybe(st.floats(-0.6, 1.0, allow_nan=False))),
    )


def mirror(i: ScoreInputs) -> ScoreInputs:
    """Negate funding excess over the baseline, basis and price changes; OI as it is."""
    hours = i.funding_interval_hours or 8.0
    excess = funding_excess_8h(i, CFG)
    neg = lambda x: None if x is None else -x  # noqa: E731
    return dataclasses.replace(
        i, funding_rate=(BASE - excess) * hours / 8.0, basis=neg(i.basis),
        price_change_1h=neg(i.price_change_1h), price_change_24h=neg(i.price_change_24h))


OPPOSITE = {LONG: SHORT, SHORT: LONG, NEUTRAL: NEUTRAL}


@given(inputs())
def test_score_is_bounded_integer_with_a_known_band(i):
    r = score(i, CFG)
    assert isinstance(r.score, int) and 0 <= r.score <= 100
    assert r.band in {"neutral", "lean", "stretched", "stressed"}
    assert abs(sum(r.components.values()) - r.score) <= 0.5 + 1e-9   # points add up to the score


@given(inputs())
def test_mirror_inputs_give_same_score_and_opposite_bias(i):
    a, b = score(i, CFG), score(mirror(i), CFG)
    assert a.score == b.score
    assert b.bias == OPPOSITE[a.bias]


@given(inputs(), st.sampled_from(["funding", "basis", "price_1h", "price_24h", "oi_1h", "oi_4h", "oi_24h"]),
       st.floats(0.0001, 0.5))
def test_more_one_sided_pressure_never_lowers_the_score(i, which, step):
    r = score(i, CFG)
    if r.bias == NEUTRAL:
        return
    sign = 1 if r.bias == LONG else -1
    hours = i.funding_interval_hours or 8.0
    if which == "funding":
        j = dataclasses.replace(i, funding_rate=i.funding_rate + sign * step * 0.01 * hours / 8)
    elif which.startswith("oi_"):   # more open interest building
        field = f"oi_change_{which[3:]}"
        if getattr(i, field) is None:
            return
        j = dataclasses.replace(i, **{field: getattr(i, field) + step})
    else:
        field = {"basis": "basis", "price_1h": "price_change_1h", "price_24h": "price_change_24h"}[which]
        if getattr(i, field) is None:
            return
        j = dataclasses.replace(i, **{field: getattr(i, field) + sign * step * 0.1})
    assert score(j, CFG).score >= r.score


@pytest.mark.parametrize("hours", [1, 2, 4, 8])
def test_resting_market_is_neutral_and_under_5(hours):
    rest = ScoreInputs("XUSDT", funding_rate=BASE * hours / 8, funding_interval_hours=hours,
                       oi_change_1h=0, oi_change_4h=0, oi_change_24h=0, basis=0,
                       price_change_1h=0, price_change_24h=0)
    r = score(rest, CFG)
    assert r.score < 5 and r.bias == NEUTRAL and r.regime_key == "balanced"


@given(st.floats(-0.01, 0.01, allow_nan=False), interval, maybe(oi_change), maybe(st.floats(-0.05, 0.05)))
def test_funding_is_normalised_to_8h_against_the_baseline(rate_8h, hours, oi, basis):
    as_8h = ScoreInputs("XUSDT", funding_rate=rate_8h, funding_interval_hours=8, oi_change_1h=oi, basis=basis)
    native = dataclasses.replace(as_8h, funding_rate=rate_8h * hours / 8, funding_interval_hours=hours)
    assert score(native, CFG).score == score(as_8h, CFG).score
    assert funding_excess_8h(native, CFG) == pytest.approx(rate_8h - BASE)


@settings(max_examples=50)
@given(inputs())
def test_deterministic(i):
    assert score(i, CFG) == score(i, CFG)


def test_missing_inputs_are_reported_with_assumptions():
    r = score(ScoreInputs("XUSDT", funding_rate=0.002), CFG)
    assert set(r.missing) >= {"oi_change_1h", "oi_change_4h", "oi_change_24h", "basis", "funding_interval_hours"}
    assert any("assumed 8h" in a for a in r.assumptions)
    assert any("treated as flat" in a for a in r.assumptions)
    assert r.bias == LONG and r.score > 0


def test_extreme_single_input_does_not_make_a_top_score():
    """Funding alone, with OI flat, cannot reach stressed: crowding needs positions building."""
    r = score(ScoreInputs("XUSDT", funding_rate=0.03, funding_interval_hours=8, oi_change_1h=0,
                          oi_change_4h=0, oi_change_24h=0), CFG)
    assert r.score < CFG.bands.stressed


def test_oi_price_quadrants_and_regimes():
    long_build = ScoreInputs("XUSDT", funding_rate=0.0012, funding_interval_hours=8, oi_change_1h=0.03,
                             oi_change_4h=0.08, oi_change_24h=0.2, basis=0.004, price_change_1h=0.02,
                             price_change_24h=0.1)
    r = score(long_build, CFG)
    assert (r.quadrant, r.regime_key, r.bias, r.band) == ("longs building", "long_crowded", LONG, "stressed")
    squeeze = dataclasses.replace(long_build, funding_rate=-0.002, basis=0.001)   # shorts pay, price rises
    assert score(squeeze, CFG).regime_key == "short_squeeze_risk"
    unwind = dataclasses.replace(long_build, oi_change_1h=-0.04, oi_change_4h=-0.1, price_change_1h=-0.03)
    u = score(unwind, CFG)
    assert u.regime_key == "long_unwind" and u.quadrant == "long unwind"
    covering = mirror(unwind)
    assert score(covering, CFG).regime_key == "short_covering"


def test_reference_rows_labels_and_ordering():
    """Sanity check against the reference page (not a fit): labels of the rows whose inputs we share."""
    ref = {r["symbol"]: r for r in csv.DictReader(open(DATA / "seed-examples.csv"))}
    got = {row["symbol"]: score(ScoreInputs(**row), CFG) for row in json.loads((DATA / "seed_rows.json").read_text())}
    for sym in ("LABUSDT", "BARDUSDT", "TAKEUSDT", "BBUSDT", "SPKUSDT", "EGLDUSDT"):
        assert got[sym].bias == ref[sym]["bias"], sym
        assert got[sym].regime_label == ref[sym]["regime"], sym
    assert got["LABUSDT"].score > got["BBUSDT"].score > got["EGLDUSDT"].score
    assert got["EGLDUSDT"].band == "neutral"


def test_defaults_match_the_documented_config_file():
    assert Config().score == CFG
