"""The derivatives-pressure score: pure code, inputs in, a result out (no I/O, no clock).

The reference's published recipe (docs/methodology.md): five signed contributions,

    contribution = weight × clip(input / full_scale, −1, +1)     for OI change 1h, 4h, 24h, funding, basis
    score        = round(|sum|)  (0–100, halves up),  direction = sign of the sum (NEUTRAL under 12)

with weights 12/16/28/28/16 and full scales 2.5 %/6 %/15 % (OI), 0.05 % (funding per the symbol's own
interval, as the exchange reports it) and 0.25 % (basis). Rising OI adds to LONG, falling OI to SHORT; the
inputs net against each other. A missing input contributes 0, and the result says so.

What we add without changing the number: the regime's written conditions, the OI/price quadrant (price is
not an input) with a warning when it contradicts the direction, and explainer lines.
"""
from __future__ import annotations

import functools
import math
import operator
from dataclasses import asdict, dataclass, field

from .config import ScoreConfig
from .vocabulary import (BALANCED, LEAN, LONG, LONG_CROWDED, LONG_SQUEEZE_RISK, LONG_UNWIND, NET_LONG, NET_SHORT,
                         NEUTRAL, NEUTRAL_BAND, REGIME_CODES, REGIMES, SHORT, SHORT_COVERING, SHORT_RAMP,
                         SHORT_SQUEEZE_RISK, STRESSED, STRETCHED, Bias, ScoreBand)

# The names the score produces (bands, regimes, bias) are defined in bot.vocabulary; LONG, SHORT, NEUTRAL,
# and REGIMES stay importable from here.

INPUT_FIELDS = (
    "oi_change_1h", "oi_change_4h", "oi_change_24h", "funding_rate",
    "funding_interval_hours", "basis", "price_change_1h", "price_change_24h",
)
# contribution name -> the input it reads, and the reference API's key for it
CONTRIBUTIONS = {
    "oi_1h": ("oi_change_1h", "oi1hPct"),
    "oi_4h": ("oi_change_4h", "oi4hPct"),
    "oi_24h": ("oi_change_24h", "oi24hPct"),
    "funding": ("funding_rate", "fundingRatePct"),
    "basis": ("basis", "basisPct"),
}


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
    bias: Bias                      # the direction: LONG / SHORT, NEUTRAL under bias_min_score
    regime_key: str                 # key into REGIMES
    regime_label: str               # REGIMES[regime_key]
    reason: str                     # which regime rule matched, in words
    contributions: dict[str, float]  # signed points per CONTRIBUTIONS name; they sum to `signed`
    signed: float                   # the unrounded signed sum (+ LONG, − SHORT); ties rank by |signed|
    missing: tuple[str, ...]
    assumptions: tuple[str, ...]
    quadrant: str | None            # the OI/price quadrant, when price change is known
    warning: str | None             # the quadrant contradicts the direction
    inputs: ScoreInputs = field(repr=False)

    def as_dict(self) -> dict:
        d = {k: (round(v, 10) if isinstance(v, float) else v) for k, v in self.inputs.as_dict().items()}
        d.update(score=self.score, band=self.band, bias=self.bias, regime=self.regime_label,
                 regime_key=self.regime_key, reason=self.reason,
                 contributions={k: round(v, 2) for k, v in self.contributions.items()},
                 signed=round(self.signed, 4), missing=list(self.missing), assumptions=list(self.assumptions),
                 quadrant=self.quadrant, warning=self.warning)
        return d


@dataclass(frozen=True, slots=True)
class _Compiled:
    """The score config as plain numbers and tuples, built once per config object: scoring 10 000
    symbols must not walk the pydantic model 10 000 times."""
    terms: tuple              # (name, weight, full scale), in CONTRIBUTIONS order
    values: operator.attrgetter   # the five inputs of `terms`, in one call
    bias_min: int
    lean: int
    stretched: int
    stressed: int
    crowded: float
    rising_24h: float
    rising_4h: float
    falling_4h: float
    falling_1h: float
    move: float


_compiled: dict[int, tuple[ScoreConfig, _Compiled]] = {}


def _compile(cfg: ScoreConfig) -> _Compiled:
    hit = _compiled.get(id(cfg))
    if hit is not None and hit[0] is cfg:
        return hit[1]
    r, b = cfg.regimes, cfg.bands
    names = tuple(cfg.contributions)
    c = _Compiled(
        terms=tuple((n, t.weight, t.full_scale) for n, t in cfg.contributions.items()),
        values=operator.attrgetter(*(CONTRIBUTIONS[n][0] for n in names)),
        bias_min=cfg.bias_min_score, lean=b.lean, stretched=b.stretched, stressed=b.stressed,
        crowded=r.crowded_funding, rising_24h=r.oi_rising_24h, rising_4h=r.oi_rising_4h,
        falling_4h=r.oi_falling_4h, falling_1h=r.oi_falling_1h, move=r.min_move)
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


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


# ------------------------------------------------------------------------------------------- regimes
def _oi_rising(inp: ScoreInputs, c: _Compiled) -> bool:
    """OI building: 24h change at or above +5 % (the reference's crowded rows), or, 24h unknown, the 4h."""
    if inp.oi_change_24h is not None:
        return inp.oi_change_24h >= c.rising_24h
    return inp.oi_change_4h is not None and inp.oi_change_4h >= c.rising_4h


def _oi_falling(inp: ScoreInputs, c: _Compiled) -> bool:
    """OI leaving now: the 4h change (or, unknown, the 1h) at or below its threshold."""
    if inp.oi_change_4h is not None:
        return inp.oi_change_4h <= c.falling_4h
    return inp.oi_change_1h is not None and inp.oi_change_1h <= c.falling_1h


def _price_move(inp: ScoreInputs, c: _Compiled) -> float | None:
    """The recent price move beyond noise: the 1h change, or, unknown, the 24h; None when unknown or flat."""
    for move in (inp.price_change_1h, inp.price_change_24h):
        if move is not None:
            return move if abs(move) >= c.move else None
    return None


def _classify(inp: ScoreInputs, bias: str, c: _Compiled) -> tuple[str, str]:
    """The regime key and why, by the first rule that matches, in this priority order:
    squeeze risk (any score) > long crowded / short ramp > long unwind / short covering > net bias (12+)
    > balanced."""
    f = inp.funding_rate
    side = 1 if f >= c.crowded else -1 if f <= -c.crowded else 0
    if side:
        high = f"funding {f * 100:+.3f} % per interval is beyond ±{c.crowded * 100:.3f} %"
        if _oi_rising(inp, c):
            move = _price_move(inp, c)
            if move is not None and move * side < 0:
                return (SHORT_SQUEEZE_RISK if side < 0 else LONG_SQUEEZE_RISK,
                        f"{high} while OI builds and price moves {move * 100:+.2f} % against that side")
            if bias != NEUTRAL:
                return LONG_CROWDED if side > 0 else SHORT_RAMP, f"{high} and OI is rising"
        elif _oi_falling(inp, c) and bias != NEUTRAL:
            return LONG_UNWIND if side > 0 else SHORT_COVERING, f"{high} and OI is falling"
    return _NET_REASONS[bias](c.bias_min)


@functools.lru_cache(maxsize=8)
def _net_long(bias_min: int) -> tuple[str, str]:
    return NET_LONG, f"score {bias_min}+ with the signed contributions net long"


@functools.lru_cache(maxsize=8)
def _net_short(bias_min: int) -> tuple[str, str]:
    return NET_SHORT, f"score {bias_min}+ with the signed contributions net short"


@functools.lru_cache(maxsize=8)
def _balanced(bias_min: int) -> tuple[str, str]:
    return BALANCED, f"score below {bias_min}: no side dominates"


_NET_REASONS = {LONG: _net_long, SHORT: _net_short, NEUTRAL: _balanced}


def classify(inp: ScoreInputs, bias: str, cfg: ScoreConfig) -> tuple[str, str]:
    """The regime key and the reason (see `_classify` for the priority order)."""
    return _classify(inp, bias, _compile(cfg))


# ------------------------------------------------------------------------------------------- price context
def _quadrant(inp: ScoreInputs, bias: str, c: _Compiled) -> tuple[str | None, str | None]:
    """What OI and price did together over the longest window where both are known and moved, and a
    warning when that contradicts the direction (which reads rising OI as LONG and falling OI as SHORT)."""
    for window, oi, price in (("24h", inp.oi_change_24h, inp.price_change_24h),
                              ("1h", inp.oi_change_1h, inp.price_change_1h)):
        if oi is None or price is None or abs(oi) < c.move or abs(price) < c.move:
            continue
        building = oi > 0
        side = ("longs" if price > 0 else "shorts") if building else ("shorts" if price > 0 else "longs")
        what = f"{side} building" if building else ("shorts covering" if side == "shorts" else "longs unwinding")
        line = f"OI {oi * 100:+.1f} % while price {price * 100:+.1f} % over {window}: {what}"
        # The direction names a side as stacked: a contradiction is the other side building, or that side leaving.
        named = {LONG: "longs", SHORT: "shorts"}.get(bias)
        warning = None
        if named and (building != (side == named)):
            fact = f"the new positions are {side}" if building else f"it is the {side} leaving"
            warning = (f"{line} under a {bias} reading: the score counts rising OI as long and falling OI as "
                       f"short; price says {fact}")
        return line, warning
    return None, None


# ------------------------------------------------------------------------------------------- the score
# (the funding interval only labels the funding shown: the score takes funding per interval as reported)
_OPTIONAL_FIELDS = tuple(f for f in INPUT_FIELDS if f not in ("funding_rate", "funding_interval_hours"))
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
    notes = [f"{label} unknown: its contribution counted as 0"
             for name, (attr, _) in CONTRIBUTIONS.items() if attr in gone
             for label in [{"oi_1h": "OI change 1h", "oi_4h": "OI change 4h", "oi_24h": "OI change 24h",
                            "basis": "basis"}[name]]]
    if {"price_change_1h", "price_change_24h"} <= gone:
        notes.append("price change unknown: no OI/price quadrant and no squeeze-risk reading")
    return tuple(f for f in _OPTIONAL_FIELDS if f in gone), tuple(notes)


def score(inp: ScoreInputs, cfg: ScoreConfig) -> ScoreResult:
    return _score(inp, _compile(cfg))


def _score(inp: ScoreInputs, c: _Compiled) -> ScoreResult:
    parts = {}
    signed = 0.0
    for (name, weight, full_scale), x in zip(c.terms, c.values(inp)):
        if x is None:
            points = 0.0
        else:                     # weight x clip(x / full_scale, -1, +1), without call overhead (hot loop)
            ratio = x / full_scale
            points = weight if ratio >= 1.0 else -weight if ratio <= -1.0 else weight * ratio
        parts[name] = points
        signed += points
    value = min(100, _round_half_up(abs(signed)))
    bias = NEUTRAL if value < c.bias_min else (LONG if signed > 0 else SHORT)
    regime_key, reason = _classify(inp, bias, c)
    quadrant, warning = _quadrant(inp, bias, c)
    missing, assumptions = _missing_and_assumptions(inp)
    return ScoreResult(inp.symbol, value, _band(value, c), bias, regime_key, REGIMES[regime_key], reason, parts,
                       signed, missing, assumptions, quadrant, warning, inp)


def rank_key(r: dict) -> tuple:
    """The ranking, for stored result dicts: highest score first, ties by the unrounded score (as the
    reference page orders them), then symbol."""
    return -r["score"], -abs(r.get("signed") or 0.0), r["symbol"]


def score_all(inputs: list[ScoreInputs], cfg: ScoreConfig) -> list[ScoreResult]:
    """Score and rank (the order of `rank_key`)."""
    c = _compile(cfg)
    results = [_score(i, c) for i in inputs]
    results.sort(key=lambda r: (-r.score, -abs(r.signed), r.symbol))
    return results


# ------------------------------------------------------------------------------------------- the reference API's shape
def _explainer(r: dict) -> list[str]:
    """Lines naming the big contributors (|points| >= 5), in the reference's wording."""
    lines = []
    pts = r["contributions"]
    for window in ("1h", "4h", "24h"):
        x = r.get(f"oi_change_{window}")
        if x is not None and abs(pts.get(f"oi_{window}", 0)) >= 5:
            lines.append(f"Open interest {'up' if x >= 0 else 'down'} {abs(x) * 100:.1f}% over {window}")
    if abs(pts.get("funding", 0)) >= 5:
        lines.append(f"Funding rate {r['funding_rate'] * 100:.3f}% per interval")
    if r.get("basis") is not None and abs(pts.get("basis", 0)) >= 5:
        lines.append(f"Perp-index basis {r['basis'] * 100:.2f}%")
    return lines


def api_item(r: dict, cfg: ScoreConfig) -> dict:
    """A result dict in the reference API's vocabulary (its `/api/public/pressure` items: components in
    percent, signed contributions in points, weights, direction, regime code and label, explainer lines), so
    its clients can switch; then what we add, in snake case: band, regime_key, signed, reason, quadrant,
    warning, missing, assumptions, and the inputs as fractions."""
    keys = {name: api for name, (_, api) in CONTRIBUTIONS.items()}
    return {
        "symbol": r["symbol"], "score": r["score"], "direction": r["bias"],
        "regime": REGIME_CODES[r["regime_key"]], "regimeLabel": r["regime"],
        "components": {api: (None if r.get(attr) is None else round(r[attr] * 100, 4))
                       for attr, api in CONTRIBUTIONS.values()},
        "contributions": {keys[n]: round(v, 2) for n, v in r["contributions"].items()},
        "weights": {keys[n]: t.weight for n, t in cfg.contributions.items()},
        "explainer": _explainer(r),
        "band": r["band"], "regime_key": r["regime_key"], "signed": r.get("signed"), "reason": r["reason"],
        "quadrant": r.get("quadrant"), "warning": r.get("warning"),
        "missing": r.get("missing", []), "assumptions": r.get("assumptions", []),
        "inputs": {f: r.get(f) for f in INPUT_FIELDS},
    }
