"""The derivatives-pressure score: pure code, inputs in, a result out (no I/O, no clock).

score = 100 * |direction| * oi_factor, where
  direction  = weighted mean of tanh(x / scale) over funding excess, basis and price changes (signed),
  oi_factor  = how hard open interest is building (OI changes are unsigned: every contract has a long
               and a short side, so OI alone says "more positions", never "which side").
The sign of `direction` gives the bias. docs/methodology.md explains the choices and worked examples.
"""
from __future__ import annotations

import functools
import math
import operator
from dataclasses import asdict, dataclass, field

from .config import ScoreConfig
from .vocabulary import (BALANCED, LEAN, LONG, LONG_CROWDED, LONG_SQUEEZE_RISK, LONG_UNWIND, NET_LONG, NET_SHORT,
                         NEUTRAL, NEUTRAL_BAND, REGIMES, SHORT, SHORT_COVERING, SHORT_RAMP, SHORT_SQUEEZE_RISK,
                         STRESSED, STRETCHED, Bias, ScoreBand)

# The names the score produces (bands, regimes, bias) are defined in bot.vocabulary; LONG, SHORT, NEUTRAL,
# and REGIMES stay importable from here.

INPUT_FIELDS = (
    "oi_change_1h", "oi_change_4h", "oi_change_24h", "funding_rate",
    "funding_interval_hours", "basis", "price_change_1h", "price_change_24h",
)


@dataclass(frozen=True, slots=True)
class ScoreInputs:
    """All changes, funding and basis are fractions (0.0079 = +0.79 %).

    funding_rate is per the symbol's own settlement interval, as the exchange reports it.
    """
    symbol: str
    funding_rate: float
    funding_interval_hours: float | None = None
    oi_change_1h: float | None = None
    oi_change_4h: float | None = None
    oi_change_24h: float | None = None
    basis: float | None = None
    price_change_1h: float | None = None
    price_change_24h: float | None = None

    # `scan --input` validates rows straight into this class (pydantic TypeAdapter): unknown keys are errors.
    __pydantic_config__ = {"extra": "forbid"}

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(slots=True)
class ScoreResult:
    symbol: str
    score: int
    band: ScoreBand
    bias: Bias
    regime_key: str      # key into REGIMES
    regime_label: str    # REGIMES[regime_key]
    reason: str          # which regime rule matched, in words
    components: dict[str, float]   # contribution in points; they sum to the score (before rounding)
    missing: tuple[str, ...]
    assumptions: tuple[str, ...]
    quadrant: str | None            # OI/price quadrant when price change is known
    inputs: ScoreInputs = field(repr=False)

    def as_dict(self) -> dict:
        d = {k: (round(v, 10) if isinstance(v, float) else v) for k, v in self.inputs.as_dict().items()}
        d.update(score=self.score, band=self.band, bias=self.bias, regime=self.regime_label,
                 regime_key=self.regime_key, reason=self.reason,
                 components={k: round(v, 2) for k, v in self.components.items()},
                 missing=list(self.missing), assumptions=list(self.assumptions), quadrant=self.quadrant)
        return d


@dataclass(frozen=True, slots=True)
class _Compiled:
    """The score config as plain numbers and tuples, built once per config object: scoring 10 000
    symbols must not walk the pydantic model 10 000 times."""
    direction: tuple          # (name, input attribute or None for funding, weight, scale)
    oi: tuple                 # (name, input attribute, weight, scale)
    baseline: float
    g0: float
    unwind: float
    bias_min: int
    lean: int
    stretched: int
    stressed: int
    crowded: float
    rising_4h: float
    rising_24h: float
    falling_4h: float
    falling_1h: float
    quadrant_eps: float


_DIRECTION_INPUTS = {"funding": None, "basis": "basis", "price_1h": "price_change_1h",
                     "price_24h": "price_change_24h"}
_OI_INPUTS = {"1h": "oi_change_1h", "4h": "oi_change_4h", "24h": "oi_change_24h"}
_compiled: dict[int, tuple[ScoreConfig, _Compiled]] = {}


def _compile(cfg: ScoreConfig) -> _Compiled:
    hit = _compiled.get(id(cfg))
    if hit is not None and hit[0] is cfg:
        return hit[1]
    r, b = cfg.regimes, cfg.bands
    c = _Compiled(
        direction=tuple((n, _DIRECTION_INPUTS[n], t.weight, t.scale) for n, t in cfg.direction.items() if t.weight),
        oi=tuple((n, _OI_INPUTS[n], t.weight, t.scale) for n, t in cfg.oi.items() if t.weight),
        baseline=cfg.funding_baseline_8h, g0=cfg.oi_neutral_factor, unwind=cfg.oi_unwind_sensitivity,
        bias_min=cfg.bias_min_score, lean=b.lean, stretched=b.stretched, stressed=b.stressed,
        crowded=r.crowded_funding_8h, rising_4h=r.oi_rising_4h, rising_24h=r.oi_rising_24h,
        falling_4h=r.oi_falling_4h, falling_1h=r.oi_falling_1h, quadrant_eps=r.quadrant_min_move)
    _compiled[id(cfg)] = (cfg, c)
    return c


def band_of(score: int, cfg: ScoreConfig) -> ScoreBand:
    return _band(score, _compile(cfg))


def _band(score: int, c: _Compiled) -> ScoreBand:
    if score >= c.stressed:
        return STRESSED
    if score >= c.stretched:
        return STRETCHED
    if score >= c.lean:
        return LEAN
    return NEUTRAL_BAND


def funding_excess_8h(inp: ScoreInputs, cfg: ScoreConfig) -> float:
    """Funding normalised to its 8h equivalent, minus the interest baseline (0.01 %/8h)."""
    return _funding_excess(inp, cfg.funding_baseline_8h)


def _funding_excess(inp: ScoreInputs, baseline: float) -> float:
    return inp.funding_rate * (8.0 / (inp.funding_interval_hours or 8.0)) - baseline


def _weighted_tanh(inp: ScoreInputs, terms: tuple, funding_excess: float) -> tuple[dict[str, float], float]:
    """Per-term weighted tanh for the present inputs, and the total weight present."""
    parts, total_w, tanh = {}, 0.0, math.tanh
    for name, attr, weight, scale in terms:
        x = funding_excess if attr is None else getattr(inp, attr)
        if x is not None:
            parts[name] = weight * tanh(x / scale)
            total_w += weight
    return parts, total_w


def _oi_trend(inp: ScoreInputs, terms: tuple) -> float:
    """Weighted mean of tanh(OI change / scale) over the windows present (0 when none is)."""
    total = weights = 0.0
    tanh = math.tanh
    for _, attr, weight, scale in terms:
        x = getattr(inp, attr)
        if x is not None:
            total += weight * tanh(x / scale)
            weights += weight
    return total / weights if weights else 0.0


def oi_factor(oi_trend: float, cfg: ScoreConfig) -> float:
    """Map the OI trend (-1..1) to a multiplier: flat -> neutral factor, building -> up to 1."""
    return _oi_factor(oi_trend, _compile(cfg))


def _oi_factor(oi_trend: float, c: _Compiled) -> float:
    if oi_trend >= 0:
        return c.g0 + (1 - c.g0) * oi_trend
    return c.g0 * (1 + c.unwind * oi_trend)


def _quadrant(inp: ScoreInputs, eps: float) -> str | None:
    if inp.price_change_1h is None and inp.price_change_24h is None:
        return None
    for oi, price in ((inp.oi_change_1h, inp.price_change_1h), (inp.oi_change_24h, inp.price_change_24h)):
        if oi is None or price is None or abs(oi) < eps or abs(price) < eps:
            continue
        if oi > 0:
            return "longs building" if price > 0 else "shorts building"
        return "short covering" if price > 0 else "long unwind"
    return None


def _oi_rising(inp: ScoreInputs, c: _Compiled) -> bool:
    if inp.oi_change_4h is not None:
        return inp.oi_change_4h >= c.rising_4h
    return inp.oi_change_24h is not None and inp.oi_change_24h >= c.rising_24h


def _oi_falling(inp: ScoreInputs, c: _Compiled) -> bool:
    if inp.oi_change_4h is not None:
        return inp.oi_change_4h <= c.falling_4h
    return inp.oi_change_1h is not None and inp.oi_change_1h <= c.falling_1h


def _price_against(inp: ScoreInputs, side: int) -> bool | None:
    """Is the price (or, unknown, the basis) moving against `side` (+1 long crowded, -1 short crowded)?"""
    for move in (inp.price_change_1h, inp.price_change_24h, inp.basis):
        if move is not None and move != 0:
            return move * side < 0
    return None


def _net(bias: str, bias_min: int) -> tuple[str, str]:
    if bias == LONG:
        return NET_LONG, "score above the bias threshold with long-leaning funding/basis/price"
    if bias == SHORT:
        return NET_SHORT, "score above the bias threshold with short-leaning funding/basis/price"
    return BALANCED, f"score below {bias_min}: no side dominates"


def classify(inp: ScoreInputs, bias: str, cfg: ScoreConfig) -> tuple[str, str]:
    """The regime key and the reason, by the first rule that matches (priority order as listed)."""
    c = _compile(cfg)
    return _classify(inp, bias, c, _funding_excess(inp, c.baseline))


def _classify(inp: ScoreInputs, bias: str, c: _Compiled, fx: float) -> tuple[str, str]:
    side = 1 if fx >= c.crowded else -1 if fx <= -c.crowded else 0
    if not side:                  # the common case: no funding-driven regime
        return _net(bias, c.bias_min)
    crowded = f"funding excess {fx * 100:+.3f} %/8h is beyond ±{c.crowded * 100:.3f} %"
    if _oi_rising(inp, c):
        if _price_against(inp, side):
            return (SHORT_SQUEEZE_RISK if side < 0 else LONG_SQUEEZE_RISK,
                    f"{crowded} (crowded), OI is rising, and price (or basis) moves against the crowded side")
        return LONG_CROWDED if side > 0 else SHORT_RAMP, f"{crowded} and OI is rising"
    if _oi_falling(inp, c):
        return LONG_UNWIND if side > 0 else SHORT_COVERING, f"{crowded} and OI is falling"
    return _net(bias, c.bias_min)


_OPTIONAL_FIELDS = tuple(f for f in INPUT_FIELDS if f != "funding_rate")
_optional_values = operator.attrgetter(*_OPTIONAL_FIELDS)


def _missing_and_assumptions(inp: ScoreInputs) -> tuple[tuple[str, ...], tuple[str, ...]]:
    values = _optional_values(inp)
    if None not in values:        # the usual case with live data
        return (), ()
    return _explain_missing(tuple([v is None for v in values]))


@functools.lru_cache(maxsize=512)
def _explain_missing(absent: tuple[bool, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What is missing and what was assumed, by the pattern of absent inputs (few patterns: cached)."""
    gone = {f for f, a in zip(_OPTIONAL_FIELDS, absent) if a}
    notes = []
    if "funding_interval_hours" in gone:
        notes.append("funding interval unknown: assumed 8h")
    if "basis" in gone:
        notes.append("basis unknown: direction from the other inputs")
    if {"price_change_1h", "price_change_24h"} <= gone:
        notes.append("price change unknown: direction from funding and basis, no OI/price quadrant")
    oi_missing = [h for h in ("1h", "4h", "24h") if f"oi_change_{h}" in gone]
    if len(oi_missing) == 3:
        notes.append("open interest change unknown: treated as flat")
    elif oi_missing:
        notes.append(f"OI change over {', '.join(oi_missing)} unknown: OI trend from the other windows")
    return tuple(f for f in _OPTIONAL_FIELDS if f in gone), tuple(notes)


def score(inp: ScoreInputs, cfg: ScoreConfig) -> ScoreResult:
    return _score(inp, _compile(cfg))


def _score(inp: ScoreInputs, c: _Compiled) -> ScoreResult:
    fx = _funding_excess(inp, c.baseline)
    dir_parts, dir_w = _weighted_tanh(inp, c.direction, fx)
    direction = sum(dir_parts.values()) / dir_w if dir_w else 0.0
    factor = _oi_factor(_oi_trend(inp, c.oi), c)
    strength = abs(direction)
    value = max(0, min(100, round(100 * strength * factor)))

    # Points: each directional input at flat OI (positive = pushes toward the bias), plus what OI adds.
    scale = (100 * c.g0 / dir_w) * (1 if direction >= 0 else -1) if dir_w else 0.0
    components = {k: scale * v for k, v in dir_parts.items()}
    components["oi"] = 100 * strength * (factor - c.g0)

    bias = NEUTRAL if value < c.bias_min else (LONG if direction > 0 else SHORT)
    regime_key, reason = _classify(inp, bias, c, fx)
    missing, assumptions = _missing_and_assumptions(inp)
    return ScoreResult(inp.symbol, value, _band(value, c), bias, regime_key, REGIMES[regime_key], reason, components,
                       missing, assumptions, _quadrant(inp, c.quadrant_eps), inp)


def score_all(inputs: list[ScoreInputs], cfg: ScoreConfig) -> list[ScoreResult]:
    """Score and rank: highest score first, ties by symbol. Two stable sorts (cheaper than tuple keys);
    the collector already hands symbols over in order, so the first is usually skipped."""
    c = _compile(cfg)
    results = [_score(i, c) for i in inputs]
    if any(a.symbol > b.symbol for a, b in zip(results, results[1:])):
        results.sort(key=operator.attrgetter("symbol"))
    results.sort(key=operator.attrgetter("score"), reverse=True)
    return results
