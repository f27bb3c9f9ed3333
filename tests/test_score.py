"""The score is the reference's published recipe: its three API items to the point, its rows' labels, and the
properties a trader relies on (hypothesis); the regimes at the boundaries of their written conditions."""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from bot.config import Config, load_config
from bot.score import CONTRIBUTIONS, LONG, NEUTRAL, SHORT, ScoreInputs, api_item, score, score_all

DATA = Path(__file__).parent / "data"
CFG = load_config(Path(__file__).parent.parent / "config" / "bot.yaml").score

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
    """Every signed input negated, open interest included."""
    neg = lambda x: None if x is None else -x  # noqa: E731
    return dataclasses.replace(
        i, funding_rate=-i.funding_rate, basis=neg(i.basis), oi_change_1h=neg(i.oi_change_1h),
        oi_change_4h=neg(i.oi_change_4h), oi_change_24h=neg(i.oi_change_24h),
        price_change_1h=neg(i.price_change_1h), price_change_24h=neg(i.price_change_24h))


OPPOSITE = {LONG: SHORT, SHORT: LONG, NEUTRAL: NEUTRAL}
API_KEYS = {api: name for name, (_, api) in CONTRIBUTIONS.items()}


# ------------------------------------------------------------------------------------------- the reference
def test_the_three_published_api_items_reproduce_to_the_point():
    ref = json.loads((DATA / "reference-api-examples.json").read_text())
    for item in ref["items"]:
        c = item["components"]                              # percent, as published
        inp = ScoreInputs(item["symbol"], funding_rate=c["fundingRatePct"] / 100, oi_change_1h=c["oi1hPct"] / 100,
                          oi_change_4h=c["oi4hPct"] / 100, oi_change_24h=c["oi24hPct"] / 100,
                          basis=c["basisPct"] / 100)
        r = score(inp, CFG)
        for api, points in item["contributions"].items():
            assert r.contributions[API_KEYS[api]] == pytest.approx(points, abs=0.01), (item["symbol"], api)
        assert r.score == item["score"] and r.bias == item["direction"], item["symbol"]
        out = api_item(r.as_dict(), CFG)
        assert (out["regime"], out["regimeLabel"]) == (item["regime"], item["regimeLabel"]), item["symbol"]
        assert out["weights"] == ref["weights"]
        assert out["components"] == pytest.approx(c)
        assert out["contributions"] == pytest.approx(item["contributions"], abs=0.01)


def test_api_item_explainer_names_the_big_contributors_in_the_reference_wording():
    dexe = ScoreInputs("DEXEUSDT", funding_rate=-0.002792, oi_change_1h=0.00534, oi_change_4h=0.01335,
                       oi_change_24h=-0.06082, basis=-0.00738)
    assert api_item(score(dexe, CFG).as_dict(), CFG)["explainer"] == [
        "Open interest down 6.1% over 24h", "Funding rate -0.279% per interval", "Perp-index basis -0.74%"]


def test_the_reference_rows_agree_in_direction_and_label():
    """The 11 shared rows (the page hides the 4h change: it counts 0 here): every direction and label agrees;
    points and rank are reported in docs/methodology.md (bench/calibration.py), not fitted row by row."""
    ref = {r["symbol"]: r for r in csv.DictReader(open(DATA / "seed-examples.csv"))}
    rows = json.loads((DATA / "seed_rows.json").read_text())
    for r in score_all([ScoreInputs(**row) for row in rows], CFG):
        assert (r.bias, r.regime_label) == (ref[r.symbol]["bias"], ref[r.symbol]["regime"]), r.symbol
        assert any("OI change 4h unknown: its contribution counted as 0" in a for a in r.assumptions)
        assert r.contributions["oi_4h"] == 0


# ------------------------------------------------------------------------------------------- properties
@given(inputs())
def test_bounded_and_the_points_add_up(i):
    r = score(i, CFG)
    assert isinstance(r.score, int) and 0 <= r.score <= 100
    assert r.band in {"neutral", "lean", "stretched", "stressed"}
    assert sum(r.contributions.values()) == pytest.approx(r.signed)
    assert r.score == int(abs(r.signed) + 0.5)                            # rounded half up
    assert r.bias == (NEUTRAL if r.score < 12 else LONG if r.signed > 0 else SHORT)


@given(inputs())
def test_each_contribution_is_bounded_by_its_weight(i):
    r = score(i, CFG)
    for name, points in r.contributions.items():
        assert abs(points) <= CFG.contributions[name].weight + 1e-12


@given(inputs())
def test_mirrored_inputs_give_the_same_score_and_the_opposite_bias(i):
    a, b = score(i, CFG), score(mirror(i), CFG)
    assert a.score == b.score and b.bias == OPPOSITE[a.bias]


@given(inputs(), st.sampled_from(["funding_rate", "basis", "oi_change_1h", "oi_change_4h", "oi_change_24h"]),
       st.floats(0.00001, 0.5))
def test_more_one_sided_input_along_the_bias_never_lowers_the_score(i, field, step):
    r = score(i, CFG)
    if r.bias == NEUTRAL or getattr(i, field) is None:
        return
    sign = 1 if r.bias == LONG else -1
    j = dataclasses.replace(i, **{field: getattr(i, field) + sign * step})
    assert score(j, CFG).score >= r.score


@pytest.mark.parametrize("hours", [4, 8])
def test_a_resting_market_is_neutral(hours):
    """Funding at rest (0.01 % per 8h, 0.005 % per 4h), flat OI, zero basis."""
    rest = ScoreInputs("XUSDT", funding_rate=0.0001 * hours / 8, funding_interval_hours=hours,
                       oi_change_1h=0, oi_change_4h=0, oi_change_24h=0, basis=0, price_change_1h=0,
                       price_change_24h=0)
    r = score(rest, CFG)
    assert r.bias == NEUTRAL and r.regime_key == "balanced" and r.band == "neutral"


@settings(max_examples=50)
@given(inputs())
def test_deterministic(i):
    assert score(i, CFG) == score(i, CFG)


def test_ties_rank_by_the_unrounded_score():
    a = ScoreInputs("AUSDT", funding_rate=0.000420)     # 23.52 points -> 24
    b = ScoreInputs("BUSDT", funding_rate=0.000425)     # 23.80 points -> 24
    assert [r.symbol for r in score_all([a, b], CFG)] == ["BUSDT", "AUSDT"]


def test_missing_inputs_count_zero_and_are_said():
    r = score(ScoreInputs("XUSDT", funding_rate=0.002), CFG)
    assert set(r.missing) >= {"oi_change_1h", "oi_change_4h", "oi_change_24h", "basis"}
    assert r.contributions == {"oi_1h": 0, "oi_4h": 0, "oi_24h": 0, "funding": 28, "basis": 0}
    assert (r.score, r.bias) == (28, LONG)
    assert any("price change unknown" in a for a in r.assumptions)


# ------------------------------------------------------------------------------------------- regimes
def case(funding=0.0, oi_24h=0.0, oi_4h=0.0, oi_1h=0.0, basis=0.0, price_1h=None, price_24h=None):
    return score(ScoreInputs("XUSDT", funding_rate=funding, oi_change_1h=oi_1h, oi_change_4h=oi_4h,
                             oi_change_24h=oi_24h, basis=basis, price_change_1h=price_1h,
                             price_change_24h=price_24h), CFG)


def test_long_crowded_needs_high_funding_and_rising_24h_oi():
    assert case(0.0005, 0.05, basis=0.002).regime_key == "long_crowded"            # both at the threshold
    assert case(0.000499, 0.05, basis=0.003).regime_key == "net_long"              # funding just under
    assert case(0.0005, 0.0499, basis=0.002).regime_key == "net_long"              # OI just under
    # the reference's rows: GUAUSDT (+0.114 %, OI 24h -0.8 %), LABUSDT (+0.067 %, +2.5 %) are not crowded
    assert case(0.00114, -0.008).regime_key == "net_long"
    assert case(0.00067, 0.025).regime_key == "net_long"


def test_short_ramp_mirrors_it():
    assert case(-0.00565, 0.476, oi_1h=-0.0211, basis=-0.013).regime_key == "short_ramp"      # SPKUSDT
    assert case(-0.00063, 0.02).regime_key == "net_short"                            # TRXUSDT: OI under 5 %
    assert case(-0.00027, 0.143, oi_1h=-0.0237, basis=-0.0028).regime_key == "net_short"      # BBUSDT


def test_squeeze_risk_comes_first_and_needs_price_against_the_crowded_side():
    shorts_trapped = dict(funding=-0.002, oi_24h=0.08, basis=-0.003)
    assert case(**shorts_trapped, price_1h=0.02).regime_key == "short_squeeze_risk"
    assert case(**shorts_trapped, price_1h=0.0019).regime_key == "short_ramp"           # under the 0.2 % move
    assert case(**shorts_trapped, price_1h=-0.02).regime_key == "short_ramp"            # price with the shorts
    assert case(**shorts_trapped).regime_key == "short_ramp"                            # price unknown
    assert case(funding=0.002, oi_24h=0.08, price_24h=-0.03).regime_key == "long_squeeze_risk"
    # a squeeze nets out: it is named at any score, even NEUTRAL
    low = case(funding=-0.0005, oi_24h=0.10, oi_4h=0.03, price_1h=0.01)      # -28 + 18.7 + 8 = -1.3 points
    assert (low.score, low.bias, low.regime_key) == (1, NEUTRAL, "short_squeeze_risk")


def test_unwinds_need_oi_leaving_now():
    assert case(0.001, oi_24h=0.0, oi_4h=-0.03, basis=0.002).regime_key == "long_unwind"
    assert case(0.001, oi_24h=0.0, oi_4h=-0.0299, basis=0.002).regime_key == "net_long"
    assert case(-0.001, oi_24h=0.0, oi_4h=-0.03).regime_key == "short_covering"
    # DEXEUSDT: OI 24h -6.1 % but 4h +1.3 %: not unwinding now, "Net short bias building" as published
    assert case(-0.002792, -0.06082, 0.01335, 0.00534, -0.00738).regime_key == "net_short"


def test_balanced_under_12():
    assert case(0.0001, 0.02).regime_key == "balanced"          # 5.6 + 3.7 = 9.3 points


# ------------------------------------------------------------------------------------------- price context
def test_the_quadrant_says_what_price_says_and_warns_when_it_contradicts_the_direction():
    shorts_in = case(funding=0.0001, oi_24h=0.08, oi_4h=0.03, price_24h=-0.03)
    assert shorts_in.bias == LONG
    assert shorts_in.quadrant == "OI +8.0 % while price -3.0 % over 24h: shorts building"
    assert shorts_in.warning and "under a LONG reading" in shorts_in.warning and "new positions are shorts" in shorts_in.warning
    longs_in = case(funding=0.0001, oi_24h=0.08, oi_4h=0.03, price_24h=0.03)
    assert longs_in.quadrant.endswith("longs building") and longs_in.warning is None
    covering = case(funding=-0.001, oi_24h=-0.08, oi_4h=0.0, price_24h=0.03)
    assert covering.bias == SHORT and covering.warning and "shorts leaving" in covering.warning
    assert case(funding=0.001, oi_24h=0.08).quadrant is None                         # no price, no quadrant


def test_defaults_match_the_documented_config_file():
    assert Config().score == CFG


def test_stored_results_rank_as_scored_ties_by_the_unrounded_score(tmp_path):
    from bot.store import Store
    rows = [ScoreInputs("AUSDT", funding_rate=0.000420), ScoreInputs("BUSDT", funding_rate=0.000425),
            ScoreInputs("CUSDT", funding_rate=0.0009)]
    ranked = [r.as_dict() for r in score_all(rows, CFG)]
    store = Store(tmp_path / "r.db")
    store.save_cycle(1_800_000_000_000, 0.1, 1, 1, list(reversed(ranked)), {})
    assert [r["symbol"] for r in store.latest_scores()[1]] == ["CUSDT", "BUSDT", "AUSDT"] == [r["symbol"] for r in ranked]
