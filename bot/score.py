"""The derivatives-pressure score: pure code, inputs in, a result out (no I/O, no clock).

score = 100 * |direction| * oi_factor, where
  direction  = weighted mean of tanh(x / scale) over funding excess, basis and price changes (signed),
  oi_factor  = how hard open interest is building (OI changes are unsigned: every contract has a long
               and a short side, so OI alone says "more positions", never "which side").
The sign of `direction` gives the bias. docs/methodology.md explains the choices and worked examples.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .config import ScoreConfig

LONG, SHORT, NEUTRAL = "LONG", "SHORT", "NEUTRAL"

# Regime keys -> labels. Keys are stable (rules and stored state use them); labels follow the reference page.
REGIMES: dict[str, str] = {
    "short_squeeze_risk": "Short squeeze risk · OI building into negative funding as price rises",
    "long_squeeze_risk": "Long squeeze risk · OI building into positive funding as price falls",
    "long_crowded": "Long crowded · high funding + rising OI",
    "short_ramp": "Short ramp · rising OI + negative funding",
    "long_unwind": "Long unwind · OI falling out of crowded longs",
    "short_covering": "Short covering · OI falling out of crowded shorts",
    "net_long": "Net long bias building",
    "net_short": "Net short bias building",
    "balanced": "Balanced · low derivatives stress",
}
SQUEEZE_REGIMES = frozenset({"short_squeeze_risk", "long_squeeze_risk"})

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

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ScoreResult:
    symbol: str
    score: int
    band: str
    bias: str
    regime: str          # key into REGIMES
    regime_label: str
    reason: str          # which regime rule matched, in words
    components: dict[str, float]   # contribution in points; they sum to the score (before rounding)
    missing: tuple[str, ...]
    assumptions: tuple[str, ...]
    quadrant: str | None            # OI/price quadrant when price change is known
    inputs: ScoreInputs = field(repr=False)

    def as_dict(self) -> dict:
        d = {k: (round(v, 10) if isinstance(v, float) else v) for k, v in self.inputs.as_dict().items()}
        d.update(score=self.score, band=self.band, bias=self.bias, regime=self.regime_label,
                 regime_key=self.regime, reason=self.reason,
                 components={k: round(v, 2) for k, v in self.components.items()},
                 missing=list(self.missing), assumptions=list(self.assumptions), quadrant=self.quadrant)
        return d


def band_of(score: int, cfg: ScoreConfig) -> str:
    b = cfg.bands
    if score >= b.stressed:
        return "stressed"
    if score >= b.stretched:
        return "stretched"
    if score >= b.lean:
        return "lean"
    return "neutral"


def funding_excess_8h(inp: ScoreInputs, cfg: ScoreConfig) -> float:
    """Funding normalised to its 8h equivalent, minus the interest baseline (0.01 %/8h)."""
    interval = inp.funding_interval_hours or 8.0
    return inp.funding_rate * (8.0 / interval) - cfg.funding_baseline_8h


def _direction_values(inp: ScoreInputs, cfg: ScoreConfig) -> dict[str, float | None]:
    return {
        "funding": funding_excess_8h(inp, cfg),
        "basis": inp.basis,
        "price_1h": inp.price_change_1h,
        "price_24h": inp.price_change_24h,
    }


def _oi_values(inp: ScoreInputs) -> dict[str, float | None]:
    return {"1h": inp.oi_change_1h, "4h": inp.oi_change_4h, "24h": inp.oi_change_24h}


def _weighted_tanh(values: dict[str, float | None], terms) -> tuple[dict[str, float], float]:
    """Per-term weighted tanh for the present values, and the total weight present."""
    parts, total_w = {}, 0.0
    for name, term in terms.items():
        x = values.get(name)
        if x is None or term.weight == 0:
            continue
        parts[name] = term.weight * math.tanh(x / term.scale)
        total_w += term.weight
    return parts, total_w


def oi_factor(oi_trend: float, cfg: ScoreConfig) -> float:
    """Map the OI trend (-1..1) to a multiplier: flat -> neutral factor, building -> up to 1."""
    g0 = cfg.oi_neutral_factor
    if oi_trend >= 0:
        return g0 + (1 - g0) * oi_trend
    return g0 * (1 + cfg.oi_unwind_sensitivity * oi_trend)


def _quadrant(inp: ScoreInputs, cfg: ScoreConfig) -> str | None:
    pairs = ((inp.oi_change_1h, inp.price_change_1h), (inp.oi_change_24h, inp.price_change_24h))
    eps = cfg.regimes.quadrant_min_move
    for oi, price in pairs:
        if oi is None or price is None or abs(oi) < eps or abs(price) < eps:
            continue
        if oi > 0:
            return "longs building" if price > 0 else "shorts building"
        return "short covering" if price > 0 else "long unwind"
    return None


def _oi_rising(inp: ScoreInputs, cfg: ScoreConfig) -> bool:
    r = cfg.regimes
    if inp.oi_change_4h is not None:
        return inp.oi_change_4h >= r.oi_rising_4h
    return inp.oi_change_24h is not None and inp.oi_change_24h >= r.oi_rising_24h


def _oi_falling(inp: ScoreInputs, cfg: ScoreConfig) -> bool:
    r = cfg.regimes
    if inp.oi_change_4h is not None:
        return inp.oi_change_4h <= r.oi_falling_4h
    return inp.oi_change_1h is not None and inp.oi_change_1h <= r.oi_falling_1h


def _price_against(inp: ScoreInputs, side: int) -> bool | None:
    """Is the price (or, unknown, the basis) moving against `side` (+1 long crowded, -1 short crowded)?"""
    for move in (inp.price_change_1h, inp.price_change_24h, inp.basis):
        if move is not None and move != 0:
            return move * side < 0
    return None


def classify(inp: ScoreInputs, bias: str, cfg: ScoreConfig) -> tuple[str, str]:
    """The regime key and the reason, by the first rule that matches (priority order as listed)."""
    r = cfg.regimes
    fx = funding_excess_8h(inp, cfg)
    rising, falling = _oi_rising(inp, cfg), _oi_falling(inp, cfg)
    crowded_side = 1 if fx >= r.crowded_funding_8h else -1 if fx <= -r.crowded_funding_8h else 0
    fpct = f"{fx * 100:+.3f} %/8h"
    if crowded_side and rising and _price_against(inp, crowded_side):
        key = "short_squeeze_risk" if crowded_side < 0 else "long_squeeze_risk"
        return key, (f"funding excess {fpct} is beyond ±{r.crowded_funding_8h * 100:.3f} % (crowded), OI is rising, "
                     "and price (or basis) moves against the crowded side")
    if crowded_side and rising:
        key = "long_crowded" if crowded_side > 0 else "short_ramp"
        return key, f"funding excess {fpct} is beyond ±{r.crowded_funding_8h * 100:.3f} % and OI is rising"
    if crowded_side and falling:
        key = "long_unwind" if crowded_side > 0 else "short_covering"
        return key, f"funding excess {fpct} is beyond ±{r.crowded_funding_8h * 100:.3f} % and OI is falling"
    if bias == LONG:
        return "net_long", "score above the bias threshold with long-leaning funding/basis/price"
    if bias == SHORT:
        return "net_short", "score above the bias threshold with short-leaning funding/basis/price"
    return "balanced", f"score below {cfg.bias_min_score}: no side dominates"


def _missing_and_assumptions(inp: ScoreInputs) -> tuple[tuple[str, ...], tuple[str, ...]]:
    missing = tuple(f for f in INPUT_FIELDS if f != "funding_rate" and getattr(inp, f) is None)
    notes = []
    if inp.funding_interval_hours is None:
        notes.append("funding interval unknown: assumed 8h")
    if inp.basis is None:
        notes.append("basis unknown: direction from the other inputs")
    if inp.price_change_1h is None and inp.price_change_24h is None:
        notes.append("price change unknown: direction from funding and basis, no OI/price quadrant")
    oi_missing = [h for h in ("1h", "4h", "24h") if getattr(inp, f"oi_change_{h}") is None]
    if len(oi_missing) == 3:
        notes.append("open interest change unknown: treated as flat")
    elif oi_missing:
        notes.append(f"OI change over {', '.join(oi_missing)} unknown: OI trend from the other windows")
    return missing, tuple(notes)


def score(inp: ScoreInputs, cfg: ScoreConfig) -> ScoreResult:
    dir_parts, dir_w = _weighted_tanh(_direction_values(inp, cfg), cfg.direction)
    oi_parts, oi_w = _weighted_tanh(_oi_values(inp), cfg.oi)
    direction = sum(dir_parts.values()) / dir_w if dir_w else 0.0
    trend = sum(oi_parts.values()) / oi_w if oi_w else 0.0
    factor = oi_factor(trend, cfg)
    value = max(0, min(100, round(100 * abs(direction) * factor)))

    sign = 1 if direction >= 0 else -1
    g0 = cfg.oi_neutral_factor
    # Points: each directional input at flat OI (positive = pushes toward the bias), plus what OI adds.
    components = {k: 100 * g0 * sign * v / dir_w for k, v in dir_parts.items()}
    components["oi"] = 100 * abs(direction) * (factor - g0)

    bias = NEUTRAL if value < cfg.bias_min_score else (LONG if direction > 0 else SHORT)
    regime, reason = classify(inp, bias, cfg)
    missing, assumptions = _missing_and_assumptions(inp)
    return ScoreResult(
        symbol=inp.symbol, score=value, band=band_of(value, cfg), bias=bias, regime=regime,
        regime_label=REGIMES[regime], reason=reason, components=components, missing=missing,
        assumptions=assumptions, quadrant=_quadrant(inp, cfg), inputs=inp,
    )


def score_all(inputs: list[ScoreInputs], cfg: ScoreConfig) -> list[ScoreResult]:
    """Score and rank: highest score first, ties by symbol for a stable order."""
    return sorted((score(i, cfg) for i in inputs), key=lambda r: (-r.score, r.symbol))
