"""Seeded, deterministic market simulator for Binance USDⓈ-M perpetuals.

Everything is a *function of time*: the state of a symbol at simulated time ``t`` (ms) is computed
from multi-scale value noise keyed on ``(seed, symbol, series, level, knot index)`` plus the regime
episodes active or fading at ``t``.  No state is simulated forward, so any instant in the 30 days
before ``now`` (``openInterestHist`` backfill) costs the same as ``now``, and the same seed, start
time and simulated time always give the same numbers.

Model (per symbol):

* price (= index price) — log random walk built from value noise at 5 min · 4^k (k = 0..7, i.e.
  5 min … ~57 days) with per-level amplitude ∝ sqrt(scale), so increments have roughly the
  symbol's daily volatility at every horizon, plus the price moves of episodes.
* mark = index · (1 + basis); resting basis within ±0.03 %.
* open interest in base units: slow noise (~2.5 %/day) plus episode OI moves.
* funding: per the symbol's interval (most 8h, ~25 % 4h, two 1h).  At rest it sits exactly at the
  interest baseline (0.0001 per 8h, pro-rated: 0.00005 per 4h, 0.0000125 per 1h) most of the time,
  with a tiny dead-zoned noise.  Episodes add to it.  Internally funding is an 8h-equivalent rate.

Regime episodes (see :class:`Episode`):

* ``long_crowding`` (side ``long``): OI +5..25 %, price up, funding +0.05..+0.3 %/8h, basis +0.2..+1 %.
* ``short_ramp`` (side ``short``): OI +5..25 %, price down, funding −0.03..−0.5 %/8h, basis −0.2..−1 %.
* ``squeeze``: side ``short`` = short squeeze (funding −0.1..−0.5 %/8h while OI builds and price
  rises); side ``long`` = long squeeze (funding strongly positive, OI building, price falling).
* ``unwind``: always follows a crowding/short-ramp episode on the same symbol (``chained``); OI falls
  5..20 % quickly, price moves against the crowded side, funding/basis revert to rest.

Scheduling: time is cut into days counted from ``start_ms`` (the market's own frame: noise and episode
draws use time since the start, never the wall clock, so the same seed gives the same path whenever it
is started); for each (symbol, day) a seeded draw decides whether one episode group (an episode,
optionally followed by an unwind) happens inside that day.  That makes
~6–7 % of symbols be in an episode at any instant.  On top of this, "kickoff" episodes are anchored
to ``start_ms`` so a fast-forwarded demo shows activity at once: several symbols start episodes
between 90 min before and 30 min after ``start_ms`` (the first one a fast short squeeze starting 5 min
after ``start_ms``, so a watcher from the start sees it enter); all of them are ramping within the first two simulated hours.  Episode OI and
price moves persist after the episode and fade out over the following 72 simulated hours.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

__all__ = ["Episode", "MarketSimulator", "SymbolState", "EPISODE_KINDS"]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
HISTORY_MS = 30 * DAY_MS  # openInterestHist only serves the last 30 days

EPISODE_KINDS = ("long_crowding", "short_ramp", "squeeze", "unwind")

_M64 = (1 << 64) - 1
_INV64 = 1.0 / float(1 << 64)

# ---------------------------------------------------------------------------------------------
# hashing / noise helpers


def _mix(x: int) -> int:
    """splitmix64 finaliser."""
    x &= _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _u01(x: int) -> float:
    return _mix(x) * _INV64


def _knot(x: int) -> float:
    """A noise knot in [-1, 1): ``_u01(x) * 2.0 - 1.0``, with the mixing inlined (the noise's innermost call)."""
    x &= _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return (x ^ (x >> 31)) * _INV64 * 2.0 - 1.0


def _key64(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _smoothstep(x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    return x * x * (3.0 - 2.0 * x)


_K_SERIES = 0x632BE59BD9B4E019
_K_LEVEL = 0x8CB92BA72F3D8DD7
_K_KNOT = 0x9E3779B97F4A7C15
_NO_KNOT = -(1 << 80)     # a knot index no time reaches (an empty knot-cache slot)

# series ids
_S_PRICE, _S_OI, _S_BASIS, _S_FUND, _S_VOL = 0, 1, 2, 3, 4

_BASE_L = 5 * MINUTE_MS
# (scale_ms, amplitude) per level; brownian-like levels have amplitude sqrt(scale/day)
_PRICE_LEVELS = tuple((_BASE_L * 4**k, math.sqrt(_BASE_L * 4**k / DAY_MS)) for k in range(8))
_OI_LEVELS = tuple((_BASE_L * 4**k, math.sqrt(_BASE_L * 4**k / DAY_MS)) for k in range(7))
_BASIS_LEVELS = ((5 * MINUTE_MS, 0.35), (20 * MINUTE_MS, 0.35), (80 * MINUTE_MS, 0.3), (320 * MINUTE_MS, 0.3))
_FUND_LEVELS = ((20 * MINUTE_MS, 0.3), (80 * MINUTE_MS, 0.4), (320 * MINUTE_MS, 0.5), (1280 * MINUTE_MS, 0.6))
_VOL_LEVELS = ((80 * MINUTE_MS, 0.3), (320 * MINUTE_MS, 0.4), (1280 * MINUTE_MS, 0.5), (5120 * MINUTE_MS, 0.5))

_OI_DAILY_VOL = 0.025
_REST_BASIS_AMP = 0.0003
_REST_BASIS_MAX = 0.0003
_REST_FUND_AMP = 0.00004
_REST_FUND_DEADZONE = 0.00002
_BASE_FUNDING_8H = 0.0001

_WINDOW_MS = DAY_MS          # one possible episode group per (symbol, simulated day since the start)
_START_GRID_MS = 5 * MINUTE_MS   # a default start falls on an openInterestHist 5m boundary, so the
                                 # samples the bot sees are the same instants of the path every run
_P_GROUP = 0.31              # probability of a group in a window -> ~6-7 % of symbols active
_FADE_MS = 72 * HOUR_MS      # OI / price moves of an episode fade out over this after its end
_LOOKBACK_WINDOWS = 4        # windows that can still influence "now" (group <= 16h + 72h fade)
# minute_path keeps at most this many hour blocks (60 marks, OIs, episodes: ~4.5 kB each, so ~5.4 MB): 12 symbols'
# 100 hours, more than the 73 hours a fresh force-order tape reads per symbol
_MINUTE_BLOCKS_MAX = 1200

# ---------------------------------------------------------------------------------------------
# static universe

# (symbol, baseAsset, price, daily vol, OI notional USD, 24h quote volume USD, funding interval h)
_MAJORS = (
    ("BTCUSDT", "BTC", 95_000.0, 0.025, 9.0e9, 12.0e9, 8),
    ("ETHUSDT", "ETH", 3_400.0, 0.035, 6.0e9, 8.0e9, 8),
    ("SOLUSDT", "SOL", 180.0, 0.045, 2.5e9, 3.0e9, 8),
    ("1000PEPEUSDT", "1000PEPE", 0.0115, 0.06, 5.0e8, 7.0e8, 8),
    ("BNBUSDT", "BNB", 650.0, 0.025, 7.0e8, 5.0e8, 8),
    ("XRPUSDT", "XRP", 2.3, 0.04, 3.0e9, 2.5e9, 8),
    ("DOGEUSDT", "DOGE", 0.23, 0.05, 2.0e9, 1.8e9, 8),
    ("ADAUSDT", "ADA", 0.75, 0.045, 8.0e8, 6.0e8, 8),
    ("LINKUSDT", "LINK", 18.0, 0.045, 6.0e8, 4.0e8, 8),
    ("AVAXUSDT", "AVAX", 28.0, 0.05, 4.0e8, 3.0e8, 8),
    ("SUIUSDT", "SUI", 3.6, 0.06, 9.0e8, 9.0e8, 8),
    ("1000BONKUSDT", "1000BONK", 0.025, 0.07, 2.0e8, 2.5e8, 4),
    ("TRXUSDT", "TRX", 0.26, 0.025, 3.0e8, 2.5e8, 8),
    ("LTCUSDT", "LTC", 96.0, 0.04, 4.5e8, 4.0e8, 8),
    ("BCHUSDT", "BCH", 460.0, 0.04, 3.5e8, 3.0e8, 8),
    ("DOTUSDT", "DOT", 6.4, 0.05, 2.5e8, 2.0e8, 8),
    ("NEARUSDT", "NEAR", 5.1, 0.055, 3.0e8, 3.0e8, 8),
    ("APTUSDT", "APT", 8.7, 0.055, 2.2e8, 2.0e8, 4),
    ("ARBUSDT", "ARB", 0.74, 0.06, 2.4e8, 2.6e8, 8),
    ("OPUSDT", "OP", 1.75, 0.06, 1.8e8, 2.0e8, 8),
    ("TONUSDT", "TON", 5.4, 0.045, 2.0e8, 1.6e8, 8),
    ("ATOMUSDT", "ATOM", 6.6, 0.05, 1.6e8, 1.4e8, 8),
    ("UNIUSDT", "UNI", 10.5, 0.055, 2.6e8, 2.4e8, 8),
    ("AAVEUSDT", "AAVE", 285.0, 0.055, 3.2e8, 3.5e8, 8),
    ("INJUSDT", "INJ", 22.0, 0.06, 1.5e8, 1.8e8, 4),
    ("TIAUSDT", "TIA", 6.1, 0.065, 1.4e8, 1.7e8, 4),
    ("WIFUSDT", "WIF", 2.1, 0.08, 3.5e8, 5.0e8, 4),
    ("ENAUSDT", "ENA", 0.88, 0.07, 3.0e8, 4.0e8, 4),
    ("HBARUSDT", "HBAR", 0.24, 0.05, 1.7e8, 1.5e8, 8),
    ("XLMUSDT", "XLM", 0.41, 0.045, 1.6e8, 1.4e8, 8),
    ("FILUSDT", "FIL", 4.6, 0.055, 1.5e8, 1.3e8, 8),
    ("RENDERUSDT", "RENDER", 6.8, 0.065, 1.3e8, 1.5e8, 4),
)
_RESERVED_BASES = {m[1] for m in _MAJORS} | {"OLD", "USD", "USDC", "USDT", "BUSD", "FDUSD"}

_PERP_DELIVERY = 4133404800000  # 2100-12-25, Binance's "never" for perpetuals
_QUARTERLY = "BTCUSDT_261225"
_QUARTERLY_DELIVERY = int(datetime(2026, 12, 25, 8, tzinfo=timezone.utc).timestamp() * 1000)
_EXTRA_SYMBOLS = (_QUARTERLY, "OLDUSDT", "BTCUSDC")


def _generated_bases(count: int) -> list[str]:
    """Deterministic pseudo-random 3-5 letter base assets (independent of the seed)."""
    out: list[str] = []
    seen = set(_RESERVED_BASES)
    j = 0
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    while len(out) < count:
        h = _mix(0xC0FFEE + j * _K_KNOT)
        j += 1
        r = h % 10
        length = 3 if r < 4 else (4 if r < 8 else 5)
        h //= 10
        name = ""
        for _ in range(length):
            name += letters[h % 26]
            h //= 26
        if name in seen or "USD" in name:
            continue
        seen.add(name)
        out.append(name)
    return out


@dataclass(slots=True)
class _Spec:
    idx: int
    symbol: str
    base: str
    quote: str
    price0: float
    vol: float            # daily log-price volatility
    oi0: float            # base-asset open interest at rest
    qv0: float            # 24h quote volume at rest
    interval_h: int
    price_digits: int
    qty_digits: int
    skey: int             # noise key for OI / basis / funding / volume
    pkey: int             # noise key for the price path (shared by BTCUSDT / BTCUSDC / quarterly)
    trade_usd: float      # average trade size (for ticker count / ids)
    id_offset: int
    supply: float         # CMC circulating supply
    onboard_ms: int
    kind: str = "perp"    # perp | quarterly | settling | usdc
    price_mult: float = 1.0
    cap: float = 0.02
    phase_ms: int = 0     # per-symbol offset of the episode windows (avoids a global daily rhythm)


@dataclass(frozen=True, slots=True)
class Episode:
    """A regime episode on one symbol.

    ``side`` is the crowded side (for ``squeeze`` the side being squeezed: ``short`` = shorts trapped,
    funding negative, price rising).  ``oi_change`` / ``price_change`` are the total fractional moves
    reached at ~70 % of the episode (unwind: ~35-50 %); ``funding_8h`` / ``basis`` the peak
    *additions* to the resting funding (8h-equivalent) and basis.  An ``unwind`` starts from
    ``funding_from`` / ``basis_from`` (its parent's peak) and reverts them to rest.  ``chained``
    means the episode is immediately followed by an unwind (so it does not ramp funding out itself).
    """

    symbol: str
    kind: str
    start_ms: int
    end_ms: int
    side: str = "long"
    oi_change: float = 0.0
    price_change: float = 0.0
    funding_8h: float = 0.0
    basis: float = 0.0
    funding_from: float = 0.0
    basis_from: float = 0.0
    chained: bool = False
    kickoff: bool = False

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms

    def active(self, t_ms: int) -> bool:
        return self.start_ms <= t_ms < self.end_ms

    def progress(self, t_ms: int) -> float:
        """0..1 position inside the episode (clamped)."""
        return min(1.0, max(0.0, (t_ms - self.start_ms) / (self.end_ms - self.start_ms)))

    def intensity(self, t_ms: int) -> float:
        """0..1 envelope of the funding/basis signal at ``t_ms`` (0 outside the episode)."""
        if not (self.start_ms <= t_ms < self.end_ms):
            return 0.0
        u = (t_ms - self.start_ms) / (self.end_ms - self.start_ms)
        if self.kind == "unwind":
            return 1.0 - _smoothstep(u / 0.6)
        up = _smoothstep(u / 0.35)
        if self.chained:
            return up
        return up * (1.0 - _smoothstep((u - 0.75) / 0.25))

    # contributions -------------------------------------------------------------------------
    def _level(self, t_ms: int, ramp_frac: float) -> float:
        """Cumulative move 0..1: ramps in over ``ramp_frac`` of the episode, fades after end."""
        if t_ms <= self.start_ms:
            return 0.0
        if t_ms < self.end_ms:
            return _smoothstep((t_ms - self.start_ms) / ((self.end_ms - self.start_ms) * ramp_frac))
        return 1.0 - _smoothstep((t_ms - self.end_ms) / _FADE_MS)

    def log_oi(self, t_ms: int) -> float:
        return math.log1p(self.oi_change) * self._level(t_ms, 0.35 if self.kind == "unwind" else 0.7)

    def log_price(self, t_ms: int) -> float:
        return math.log1p(self.price_change) * self._level(t_ms, 0.5 if self.kind == "unwind" else 0.7)

    def funding_add(self, t_ms: int) -> float:
        if not (self.start_ms <= t_ms < self.end_ms):
            return 0.0
        if self.kind == "unwind":
            return self.funding_from * self.intensity(t_ms)
        return self.funding_8h * self.intensity(t_ms)

    def basis_add(self, t_ms: int) -> float:
        if not (self.start_ms <= t_ms < self.end_ms):
            return 0.0
        if self.kind == "unwind":
            u = (t_ms - self.start_ms) / (self.end_ms - self.start_ms)
            return self.basis_from * (1.0 - _smoothstep(u / 0.4))
        return self.basis * self.intensity(t_ms)


@dataclass(slots=True)
class SymbolState:
    """Instantaneous state of one symbol (floats; funding per the symbol's interval)."""

    symbol: str
    t_ms: int
    index_price: float
    mark_price: float
    basis: float
    funding_rate: float      # per funding interval (what Binance calls lastFundingRate)
    funding_8h: float        # 8h-equivalent
    interval_h: int
    open_interest: float     # base units
    episode: Episode | None  # episode active at t (None = resting)


def _fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


class MarketSimulator:
    """Deterministic Binance-USDⓈ-M-shaped market (see module docstring)."""

    def __init__(
        self,
        n_symbols: int = 300,
        seed: int = 7,
        speed: float = 1.0,
        start_ms: int | None = None,
        clock: Callable[[], float] = time.time,
        held: bool = False,
    ) -> None:
        if n_symbols < 1:
            raise ValueError("n_symbols must be >= 1")
        self.n_symbols = n_symbols
        self.seed = seed
        self.speed = float(speed)
        self.clock = clock
        self._t0 = clock()
        self._held = held
        if start_ms is None:
            start_ms = int(self._t0 * 1000) // _START_GRID_MS * _START_GRID_MS
        self.start_ms = int(start_ms)

        self._specs: list[_Spec] = []
        self._by_symbol: dict[str, _Spec] = {}
        self._build_universe()
        self._eligible = [s for s in self._specs if s.kind == "perp"]
        self._symbols = [s.symbol for s in self._eligible]

        self._knots: dict[int, list] = {}
        self._window_cache: dict[tuple[int, int], tuple[Episode, ...]] = {}
        self._relevant_cache: dict[tuple[int, int], tuple[Episode, ...]] = {}
        self._grid_cache: dict[tuple, object] = {}
        self._minute_blocks: dict[tuple[int, int], tuple] = {}    # (symbol idx, hour) -> minute_path's block
        self._kickoff: dict[str, tuple[Episode, ...]] = {}
        self._kick_span: dict[str, tuple[int, int]] = {}
        self._build_kickoff()
        self._exchange_symbols: list[dict] | None = None

    # -----------------------------------------------------------------------------------------
    # universe

    def _new_spec(self, idx, symbol, base, quote, price, vol, oi_usd, qv, interval, kind="perp",
                  pkey=None, price_mult=1.0) -> _Spec:
        rng = random.Random(f"{self.seed}:spec:{symbol}")
        lg = math.floor(math.log10(price))
        price_digits = max(2, min(8, 5 - lg))
        qty_digits = max(0, min(3, lg - 1))
        skey = _key64(f"{self.seed}:{symbol}")
        trade_usd = max(150.0, min(4000.0, qv / 3.0e6))
        return _Spec(
            idx=idx, symbol=symbol, base=base, quote=quote, price0=price, vol=vol,
            oi0=oi_usd / price, qv0=qv, interval_h=interval, price_digits=price_digits,
            qty_digits=qty_digits, skey=skey, pkey=pkey if pkey is not None else skey,
            trade_usd=trade_usd, id_offset=rng.randrange(10**6, 10**9),
            supply=oi_usd / price * rng.uniform(20, 400),
            onboard_ms=1569398400000 + rng.randrange(0, 5 * 365) * DAY_MS,
            kind=kind, price_mult=price_mult, phase_ms=skey % (_WINDOW_MS // MINUTE_MS) * MINUTE_MS,
            cap=0.003 if base == "BTC" else (0.02 if interval == 8 else 0.03 if interval == 4 else 0.005),
        )

    def _build_universe(self) -> None:
        n = self.n_symbols
        majors = _MAJORS[: min(n, len(_MAJORS))]
        for m in majors:
            sym, base, price, vol, oi_usd, qv, interval = m
            self._add(self._new_spec(len(self._specs), sym, base, "USDT", price, vol, oi_usd, qv, interval))
        n_gen = n - len(majors)
        bases = _generated_bases(n_gen)
        one_hour = set(random.Random(f"{self.seed}:1h").sample(range(n_gen), min(2, n_gen))) if n_gen else set()
        for i, base in enumerate(bases):
            rng = random.Random(f"{self.seed}:gen:{base}")
            price = 10 ** rng.uniform(-4.0, 2.5)
            vol = rng.uniform(0.04, 0.10)
            r = rng.random()
            if r < 0.035:
                qv = rng.uniform(1.5e5, 9.5e5)           # illiquid: dropped by a min-volume filter
            elif r < 0.80:
                qv = 10 ** rng.uniform(6.0, math.log10(5.0e7))
            else:
                qv = 10 ** rng.uniform(math.log10(5.0e7), math.log10(3.0e8))
            oi_usd = qv * rng.uniform(0.3, 1.5)
            interval = 1 if i in one_hour else (4 if rng.random() < 0.25 else 8)
            self._add(self._new_spec(len(self._specs), base + "USDT", base, "USDT", price, vol, oi_usd,
                                     qv, interval))
        btc = self._by_symbol.get("BTCUSDT")
        btc_key = btc.pkey if btc else _key64(f"{self.seed}:BTCUSDT")
        self._add(self._new_spec(len(self._specs), _QUARTERLY, "BTC", "USDT", 95_000.0, 0.025, 3.0e8,
                                 4.0e8, 8, kind="quarterly", pkey=btc_key, price_mult=1.008))
        self._add(self._new_spec(len(self._specs), "OLDUSDT", "OLD", "USDT", 0.042, 0.0, 1.0e5, 5.0e4, 8,
                                 kind="settling"))
        self._add(self._new_spec(len(self._specs), "BTCUSDC", "BTC", "USDC", 95_000.0, 0.025, 6.0e8,
                                 9.0e8, 8, kind="usdc", pkey=btc_key, price_mult=1.0001))

    def _add(self, spec: _Spec) -> None:
        self._specs.append(spec)
        self._by_symbol[spec.symbol] = spec

    # -----------------------------------------------------------------------------------------
    # clock

    def now_ms(self) -> int:
        if self._held:
            return self.start_ms
        return int(self.start_ms + (self.clock() - self._t0) * self.speed * 1000.0)

    def release(self) -> None:
        """Start simulated time now (a market made with ``held=True`` stands still at ``start_ms`` until
        then): the demo releases it once the bot's cold start is done, so however long the backfill
        takes on a loaded machine, the bot first sees the market at its start."""
        if self._held:
            self._t0, self._held = self.clock(), False

    def _t(self, at_ms: int | None) -> int:
        return self.now_ms() if at_ms is None else int(at_ms)

    # -----------------------------------------------------------------------------------------
    # symbols

    def symbols(self) -> list[str]:
        """Tradable USDT-margined perpetuals (status TRADING), majors first."""
        return list(self._symbols)

    def all_symbols(self) -> list[str]:
        """Every symbol the exchange knows, including the non-eligible extras."""
        return [s.symbol for s in self._specs]

    def unknown(self, symbol: str | None) -> bool:
        return symbol not in self._by_symbol

    def funding_interval_hours(self, symbol: str) -> int:
        return self._by_symbol[symbol].interval_h

    # -----------------------------------------------------------------------------------------
    # noise

    def _noise(self, key: int, cache_id: int, series: int, levels, t: int, lane: int = 0) -> float:
        """Multi-scale value noise: a pure function of (key, series, level, t - start_ms).  The knot pairs
        are cached per (symbol, lane, series) — one list of per-level [q, knot q, knot q+1] — only to
        save recomputing them; use separate lanes for evaluations at distant times so they don't evict
        each other's knots.  Bounded: at most 4 lanes x 5 series per symbol of the universe."""
        t -= self.start_ms        # the market's own frame: the same path whatever the wall clock
        ck = (cache_id * 4 + lane) * 8 + series
        cs = self._knots.get(ck)
        if cs is None:
            cs = self._knots[ck] = [[_NO_KNOT, 0.0, 0.0] for _ in range(8)]
        total = 0.0
        base = key + series * _K_SERIES
        lv = 0
        for scale, amp in levels:
            q, r = divmod(t, scale)
            c = cs[lv]
            if c[0] != q:
                lb = base + lv * _K_LEVEL
                c[1] = c[2] if q == c[0] + 1 else _knot(lb + q * _K_KNOT)
                c[2] = _knot(lb + (q + 1) * _K_KNOT)
                c[0] = q
            v0 = c[1]
            total += amp * (v0 + (c[2] - v0) * (r / scale))
            lv += 1
        return total

    def _noise_many(self, key: int, series: int, levels, ts: list[int]) -> list[float]:
        """:meth:`_noise` at each of ``ts`` (ascending): the same sums in the same order, level by level,
        with the knots kept in locals while the times walk through them (no cache)."""
        rel = [t - self.start_ms for t in ts]
        totals = [0.0] * len(rel)
        base = key + series * _K_SERIES
        for lv, (scale, amp) in enumerate(levels):
            lb = base + lv * _K_LEVEL
            cq = _NO_KNOT
            v0 = v1 = 0.0
            for i, t in enumerate(rel):
                q, r = divmod(t, scale)
                if q != cq:
                    v0 = v1 if q == cq + 1 else _knot(lb + q * _K_KNOT)
                    v1 = _knot(lb + (q + 1) * _K_KNOT)
                    cq = q
                totals[i] += amp * (v0 + (v1 - v0) * (r / scale))
        return totals

    # -----------------------------------------------------------------------------------------
    # episodes

    def _window_index(self, spec: _Spec, t: int) -> int:
        """Episode windows are days counted from ``start_ms`` (not UTC days), so the episodes around
        the start are the same whenever the simulator is started."""
        return (t - self.start_ms - spec.phase_ms) // _WINDOW_MS

    def _window_groups(self, spec: _Spec, k: int) -> tuple[Episode, ...]:
        ck = (spec.idx, k)
        got = self._window_cache.get(ck)
        if got is not None:
            return got
        if len(self._window_cache) > 400_000:
            self._window_cache.clear()
        base = (spec.skey ^ 0x5EED5EED5EED5EED) + k * _K_KNOT

        def u(i: int) -> float:
            return _u01(base + i * _K_LEVEL)

        eps: tuple[Episode, ...] = ()
        if u(0) < _P_GROUP:
            r = u(1)
            if r < 0.37:
                kind, side = "long_crowding", "long"
            elif r < 0.70:
                kind, side = "short_ramp", "short"
            else:
                kind, side = "squeeze", ("short" if u(2) < 0.6 else "long")
            dur = (60 + int(u(3) * 420)) * MINUTE_MS
            chained = kind != "squeeze" and u(4) < 0.4
            udur = (60 + int(u(5) * 120)) * MINUTE_MS if chained else 0
            total = dur + udur
            w0 = self.start_ms + k * _WINDOW_MS + spec.phase_ms
            start = w0 + int(u(6) * ((_WINDOW_MS - total) // MINUTE_MS)) * MINUTE_MS
            eps = self._make_group(spec, kind, side, start, dur, chained, udur,
                                   [u(7 + i) for i in range(8)], kickoff=False)
            span = self._kick_span.get(spec.symbol)
            if span is not None and start < span[1] + 3 * HOUR_MS and start + total > span[0] - 3 * HOUR_MS:
                eps = ()
        self._window_cache[ck] = eps
        return eps

    def _make_group(self, spec: _Spec, kind: str, side: str, start: int, dur: int, chained: bool,
                    udur: int, r: list[float], kickoff: bool) -> tuple[Episode, ...]:
        vol = spec.vol

        def lerp(a: float, b: float, x: float) -> float:
            return a + (b - a) * x

        if kind == "long_crowding":
            oi = lerp(0.05, 0.25, r[0])
            px = lerp(0.4, 1.6, r[1]) * vol
            f_total = lerp(0.0005, 0.003, r[2])
            basis = lerp(0.002, 0.01, r[3])
        elif kind == "short_ramp":
            oi = lerp(0.05, 0.25, r[0])
            px = -lerp(0.4, 1.6, r[1]) * vol
            f_total = -lerp(0.0003, 0.005, r[2])
            basis = -lerp(0.002, 0.01, r[3])
        else:  # squeeze
            oi = lerp(0.05, 0.20, r[0])
            mag = lerp(0.6, 2.0, r[1]) * vol
            if side == "short":
                px, f_total, basis = mag, -lerp(0.001, 0.005, r[2]), -lerp(0.002, 0.008, r[3])
            else:
                px, f_total, basis = -mag, lerp(0.001, 0.004, r[2]), lerp(0.002, 0.008, r[3])
        fund_add = f_total - _BASE_FUNDING_8H
        ep = Episode(spec.symbol, kind, start, start + dur, side, oi, px, fund_add, basis,
                     chained=chained, kickoff=kickoff)
        if not chained:
            return (ep,)
        un_oi = -lerp(0.05, 0.20, r[4])
        un_px = lerp(0.4, 1.5, r[5]) * vol * (-1.0 if side == "long" else 1.0)
        unwind = Episode(spec.symbol, "unwind", start + dur, start + dur + udur, side, un_oi, un_px,
                         0.0, 0.0, funding_from=fund_add, basis_from=basis, kickoff=kickoff)
        return (ep, unwind)

    def _build_kickoff(self) -> None:
        elig = self._eligible
        n = len(elig)
        count = max(1, min(max(5, round(0.02 * n)), n // 5)) if n >= 2 else 1
        pool = [s for s in elig[len(_MAJORS):] if s.qv0 >= 5.0e6]
        if len(pool) < count:
            pool = [s for s in elig if s.qv0 >= 1.0e6] or list(elig)
        rng = random.Random(f"{self.seed}:kickoff")
        chosen = rng.sample(pool, min(count, len(pool)))
        plan = (("squeeze", "short", False), ("long_crowding", "long", True), ("short_ramp", "short", False),
                ("squeeze", "long", False), ("long_crowding", "long", False), ("short_ramp", "short", True))
        # The showcase squeeze (i = 0) starts with the run: resting at the bot's first sight, so its
        # squeeze regime is *entered* (first sight never alerts) within the demo's first minute.
        offsets = (5, -30, -80, -10, -45, 15, -70, 5, -20, -90, 30, -55)
        for i, spec in enumerate(chosen):
            kind, side, chained = plan[i % len(plan)]
            off = offsets[i % len(offsets)] * MINUTE_MS
            start = self.start_ms + off
            dur = (90 if i == 0 else 180 + rng.randrange(0, 150)) * MINUTE_MS   # the showcase ramps fast
            udur = (60 + rng.randrange(0, 90)) * MINUTE_MS if chained else 0
            r = [rng.random() for _ in range(8)]
            if i == 0:
                r[0] = max(r[0], 0.7)  # make the showcase squeeze clearly visible: OI, price, funding
                r[1] = max(r[1], 0.5)
                r[2] = max(r[2], 0.7)
                r[3] = max(r[3], 0.6)
            group = self._make_group(spec, kind, side, start, dur, chained, udur, r, kickoff=True)
            self._kickoff[spec.symbol] = group
            self._kick_span[spec.symbol] = (start, start + dur + udur)

    def _relevant(self, spec: _Spec, t: int) -> tuple[Episode, ...]:
        """Episodes that can influence ``spec`` at ``t`` (active or fading)."""
        k = self._window_index(spec, t)
        ck = (spec.idx, k)
        got = self._relevant_cache.get(ck)
        if got is None:
            if len(self._relevant_cache) > 200_000:
                self._relevant_cache.clear()
            eps: list[Episode] = []
            if spec.kind == "perp":
                for kk in range(k - _LOOKBACK_WINDOWS, k + 1):
                    eps.extend(self._window_groups(spec, kk))
                eps.extend(self._kickoff.get(spec.symbol, ()))
            got = tuple(eps)
            self._relevant_cache[ck] = got
        return got

    def episodes(self, start_ms: int | None = None, end_ms: int | None = None) -> list[Episode]:
        """Episodes overlapping ``[start_ms, end_ms)``, sorted by start.

        Defaults: from ``self.start_ms - 30 days`` to ``max(now, start_ms) + 48 h``.
        """
        lo = self.start_ms - HISTORY_MS if start_ms is None else int(start_ms)
        hi = max(self.now_ms(), self.start_ms) + 48 * HOUR_MS if end_ms is None else int(end_ms)
        out: list[Episode] = []
        for spec in self._eligible:
            k0, k1 = self._window_index(spec, lo) - 1, self._window_index(spec, hi)
            for k in range(k0, k1 + 1):
                out.extend(e for e in self._window_groups(spec, k) if e.end_ms > lo and e.start_ms < hi)
            out.extend(e for e in self._kickoff.get(spec.symbol, ()) if e.end_ms > lo and e.start_ms < hi)
        out.sort(key=lambda e: (e.start_ms, e.symbol, e.kind))
        return out

    def active_episodes(self, at_ms: int | None = None) -> list[Episode]:
        t = self._t(at_ms)
        out = []
        for spec in self._eligible:
            for e in self._relevant(spec, t):
                if e.start_ms <= t < e.end_ms:
                    out.append(e)
        return out

    def kickoff_episodes(self) -> list[Episode]:
        """Episodes anchored to ``start_ms`` (ramping in the first 2 simulated hours)."""
        return sorted((e for g in self._kickoff.values() for e in g), key=lambda e: e.start_ms)

    # -----------------------------------------------------------------------------------------
    # state

    def _index_price(self, spec: _Spec, t: int, eps: tuple[Episode, ...], lane: int = 0) -> float:
        return self._index_at(spec, t, eps, self._noise(spec.pkey, spec.idx, _S_PRICE, _PRICE_LEVELS, t, lane))

    @staticmethod
    def _index_at(spec: _Spec, t: int, eps: tuple[Episode, ...], noise: float) -> float:
        lp = spec.vol * noise
        for e in eps:
            if e.start_ms < t:
                lp += e.log_price(t)
        return spec.price0 * spec.price_mult * math.exp(lp)

    def _basis(self, spec: _Spec, t: int, eps: tuple[Episode, ...], lane: int = 0) -> float:
        return self._basis_at(spec, t, eps, self._noise(spec.skey, spec.idx, _S_BASIS, _BASIS_LEVELS, t, lane))

    @staticmethod
    def _basis_at(spec: _Spec, t: int, eps: tuple[Episode, ...], noise: float) -> float:
        b = _REST_BASIS_AMP * noise
        if b > _REST_BASIS_MAX:
            b = _REST_BASIS_MAX
        elif b < -_REST_BASIS_MAX:
            b = -_REST_BASIS_MAX
        if spec.kind == "quarterly":
            return b + 0.008 * (_QUARTERLY_DELIVERY - t) / (90 * DAY_MS)
        for e in eps:
            if e.start_ms <= t < e.end_ms:
                b += e.basis_add(t)
        return b

    def _open_interest(self, spec: _Spec, t: int, eps: tuple[Episode, ...], lane: int = 0) -> float:
        return self._oi_at(spec, t, eps, self._noise(spec.skey, spec.idx, _S_OI, _OI_LEVELS, t, lane))

    @staticmethod
    def _oi_at(spec: _Spec, t: int, eps: tuple[Episode, ...], noise: float) -> float:
        lo = _OI_DAILY_VOL * noise
        for e in eps:
            if e.start_ms < t:
                lo += e.log_oi(t)
        return spec.oi0 * math.exp(lo)

    def _marks(self, spec: _Spec, ts: list[int]) -> list[float]:
        """Mark prices at ``ts`` (ascending): the values of ``_index_price * (1 + _basis)`` at each, batched."""
        pn = self._noise_many(spec.pkey, _S_PRICE, _PRICE_LEVELS, ts)
        bn = self._noise_many(spec.skey, _S_BASIS, _BASIS_LEVELS, ts)
        out = []
        for t, p, b in zip(ts, pn, bn):
            eps = self._relevant(spec, t)
            out.append(self._index_at(spec, t, eps, p) * (1.0 + self._basis_at(spec, t, eps, b)))
        return out

    def _funding_8h(self, spec: _Spec, t: int, eps: tuple[Episode, ...]) -> float:
        n = _REST_FUND_AMP * self._noise(spec.skey, spec.idx, _S_FUND, _FUND_LEVELS, t)
        if n > _REST_FUND_DEADZONE:
            n -= _REST_FUND_DEADZONE
        elif n < -_REST_FUND_DEADZONE:
            n += _REST_FUND_DEADZONE
        else:
            n = 0.0
        f = _BASE_FUNDING_8H + n
        for e in eps:
            if e.start_ms <= t < e.end_ms:
                f += e.funding_add(t)
        return f

    def _funding_rate(self, spec: _Spec, f8: float) -> float:
        r = round(f8 * spec.interval_h / 8.0, 8)
        return max(-spec.cap, min(spec.cap, r))

    def _active(self, eps: tuple[Episode, ...], t: int) -> Episode | None:
        for e in eps:
            if e.start_ms <= t < e.end_ms:
                return e
        return None

    def _spec(self, symbol: str) -> _Spec:
        try:
            return self._by_symbol[symbol]
        except KeyError:
            raise KeyError(f"unknown symbol {symbol!r}") from None

    def state(self, symbol: str, at_ms: int | None = None) -> SymbolState:
        """Float state of ``symbol`` at ``at_ms`` (default: now)."""
        spec = self._spec(symbol)
        t = self._t(at_ms)
        eps = self._relevant(spec, t)
        index = self._index_price(spec, t, eps)
        basis = self._basis(spec, t, eps)
        f8 = self._funding_8h(spec, t, eps)
        return SymbolState(symbol, t, index, index * (1.0 + basis), basis,
                           self._funding_rate(spec, f8), f8, spec.interval_h,
                           self._open_interest(spec, t, eps), self._active(eps, t))

    def minute_path(self, symbol: str, first_minute: int, end_minute: int
                    ) -> tuple[list[float], list[float], list[Episode | None]]:
        """Mark price, open interest and active episode at every whole minute m in [first_minute, end_minute)
        (minutes since the epoch): the values of ``state(symbol, m * MINUTE_MS)``, from hour blocks cached per
        symbol (a force-order tape reads 3 days of minutes when it starts; several read the same minutes)."""
        spec = self._spec(symbol)
        marks: list[float] = []
        ois: list[float] = []
        eps: list[Episode | None] = []
        for hour in range(first_minute // 60, (end_minute - 1) // 60 + 1):
            bm, bo, be = self._minute_block(spec, hour)
            a, b = max(0, first_minute - hour * 60), min(60, end_minute - hour * 60)
            marks += bm[a:b]
            ois += bo[a:b]
            eps += be[a:b]
        return marks, ois, eps

    def _minute_block(self, spec: _Spec, hour: int) -> tuple[list[float], list[float], list[Episode | None]]:
        key = (spec.idx, hour)
        got = self._minute_blocks.get(key)
        if got is None:
            if len(self._minute_blocks) >= _MINUTE_BLOCKS_MAX:
                del self._minute_blocks[next(iter(self._minute_blocks))]     # the oldest computed
            ts = [(hour * 60 + i) * MINUTE_MS for i in range(60)]
            noise = self._noise_many(spec.skey, _S_OI, _OI_LEVELS, ts)
            ois, eps = [], []
            for t, n in zip(ts, noise):
                relevant = self._relevant(spec, t)
                ois.append(self._oi_at(spec, t, relevant, n))
                eps.append(self._active(relevant, t))
            got = self._minute_blocks[key] = (self._marks(spec, ts), ois, eps)
        return got

    # -----------------------------------------------------------------------------------------
    # Binance-shaped payloads

    def _symbol_info(self, spec: _Spec) -> dict:
        tick = _fmt(10.0 ** -spec.price_digits, spec.price_digits) if spec.price_digits else "1"
        step = _fmt(10.0 ** -spec.qty_digits, spec.qty_digits) if spec.qty_digits else "1"
        contract = "CURRENT_QUARTER" if spec.kind == "quarterly" else "PERPETUAL"
        status = "SETTLING" if spec.kind == "settling" else "TRADING"
        return {
            "symbol": spec.symbol,
            "pair": spec.symbol.split("_")[0],
            "contractType": contract,
            "deliveryDate": _QUARTERLY_DELIVERY if spec.kind == "quarterly" else _PERP_DELIVERY,
            "onboardDate": spec.onboard_ms,
            "status": status,
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": spec.base,
            "quoteAsset": spec.quote,
            "marginAsset": spec.quote,
            "pricePrecision": spec.price_digits,
            "quantityPrecision": spec.qty_digits,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": [],
            "settlePlan": 0,
            "triggerProtect": "0.0500",
            "liquidationFee": "0.012500",
            "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {"filterType": "PRICE_FILTER", "maxPrice": _fmt(spec.price0 * 100, spec.price_digits),
                 "minPrice": tick, "tickSize": tick},
                {"filterType": "LOT_SIZE", "maxQty": "10000000", "minQty": step, "stepSize": step},
                {"filterType": "MARKET_LOT_SIZE", "maxQty": "1000000", "minQty": step, "stepSize": step},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": "5"},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                 "multiplierDecimal": "4"},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                           "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        }

    def exchange_info(self) -> dict:
        if self._exchange_symbols is None:
            self._exchange_symbols = [self._symbol_info(s) for s in self._specs]
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
            ],
            "exchangeFilters": [],
            "assets": [
                {"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"},
                {"asset": "USDC", "marginAvailable": True, "autoAssetExchange": "-10000"},
            ],
            "symbols": [dict(s) for s in self._exchange_symbols],
        }

    def _premium(self, spec: _Spec, t: int) -> dict:
        eps = self._relevant(spec, t)
        index = self._index_price(spec, t, eps)
        basis = self._basis(spec, t, eps)
        mark = index * (1.0 + basis)
        est = index * (1.0 + 0.5 * _REST_BASIS_AMP * self._noise(spec.skey, spec.idx, _S_VOL, _VOL_LEVELS[:1], t))
        if spec.kind == "quarterly":
            return {"symbol": spec.symbol, "markPrice": _fmt(mark, 8), "indexPrice": _fmt(index, 8),
                    "estimatedSettlePrice": _fmt(est, 8), "lastFundingRate": "", "interestRate": "",
                    "nextFundingTime": 0, "time": t}
        f8 = self._funding_8h(spec, t, eps)
        step = spec.interval_h * HOUR_MS
        return {
            "symbol": spec.symbol,
            "markPrice": _fmt(mark, 8),
            "indexPrice": _fmt(index, 8),
            "estimatedSettlePrice": _fmt(est, 8),
            "lastFundingRate": _fmt(self._funding_rate(spec, f8), 8),
            "interestRate": _fmt(_BASE_FUNDING_8H * spec.interval_h / 8.0, 8),
            "nextFundingTime": (t // step + 1) * step,
            "time": t,
        }

    def premium_index(self, symbol: str | None = None, *, at_ms: int | None = None) -> dict | list:
        t = self._t(at_ms)
        if symbol is not None:
            return self._premium(self._spec(symbol), t)
        return [self._premium(s, t) for s in self._specs]

    def _grid_range(self, spec: _Spec, hour: int) -> tuple[float, float]:
        """(max, min) of the hourly grid prices (marks on the hour) in the 24 hours ending at ``hour``; the missing
        grid prices are computed in one batch (bounded: the cache is cleared past 80,000 entries, ~10 MB)."""
        ck = (spec.idx, hour, "range")
        got = self._grid_cache.get(ck)
        if got is None:
            if len(self._grid_cache) > 80_000:
                self._grid_cache.clear()
            hours = range(hour - 23, hour + 1)
            missing = [h for h in hours if (spec.idx, h) not in self._grid_cache]
            for h, p in zip(missing, self._marks(spec, [self.start_ms + h * HOUR_MS for h in missing])):
                self._grid_cache[(spec.idx, h)] = p
            ps = [self._grid_cache[(spec.idx, h)] for h in hours]
            got = (max(ps), min(ps))
            self._grid_cache[ck] = got
        return got

    def _ticker(self, spec: _Spec, t: int) -> dict:
        eps = self._relevant(spec, t)
        last = self._index_price(spec, t, eps) * (1.0 + self._basis(spec, t, eps))
        t_open = t - DAY_MS
        eps_o = self._relevant(spec, t_open)
        open_ = self._index_price(spec, t_open, eps_o, 1) * (1.0 + self._basis(spec, t_open, eps_o, 1))
        hi = max(last, open_)
        lo = min(last, open_)
        ghi, glo = self._grid_range(spec, (t - self.start_ms) // HOUR_MS)
        hi = max(hi, ghi)
        lo = min(lo, glo)
        wn = self._noise(spec.skey, spec.idx, _S_VOL, _VOL_LEVELS, t)
        wick = spec.vol * (0.06 + 0.03 * (wn + 1.0))
        hi *= 1.0 + wick
        lo *= 1.0 - wick
        boost = 0.0
        for e in eps:
            if e.start_ms <= t < e.end_ms:
                boost = max(boost, e.intensity(t))
        qv = spec.qv0 * math.exp(0.3 * wn) * (1.0 + 1.5 * boost)
        if spec.kind == "settling":
            qv *= 0.01
        d = spec.price_digits
        # round to the tick first so lastPrice - openPrice == priceChange exactly
        last_r = round(last, d)
        open_r = round(open_, d)
        hi_r = max(round(hi, d), last_r, open_r)
        lo_r = min(round(lo, d), last_r, open_r)
        wavg = (open_r + last_r + hi_r + lo_r) / 4.0
        count = max(1, int(qv / spec.trade_usd))
        rate = spec.qv0 / spec.trade_usd / 86_400.0
        last_id = spec.id_offset + int(t / 1000.0 * rate)
        first_id = max(spec.id_offset, last_id - count + 1)
        lq = spec.trade_usd / last * (0.2 + 1.6 * _u01(spec.skey + t - self.start_ms))
        return {
            "symbol": spec.symbol,
            "priceChange": _fmt(last_r - open_r, d),
            "priceChangePercent": _fmt((last_r - open_r) / open_r * 100.0 if open_r else 0.0, 3),
            "weightedAvgPrice": _fmt(wavg, d),
            "lastPrice": _fmt(last_r, d),
            "lastQty": _fmt(max(lq, 10.0 ** -spec.qty_digits), spec.qty_digits),
            "openPrice": _fmt(open_r, d),
            "highPrice": _fmt(hi_r, d),
            "lowPrice": _fmt(lo_r, d),
            "volume": _fmt(qv / wavg, spec.qty_digits),
            "quoteVolume": _fmt(qv, 2),
            "openTime": t_open // MINUTE_MS * MINUTE_MS,
            "closeTime": t,
            "firstId": first_id,
            "lastId": last_id,
            "count": last_id - first_id + 1,
        }

    def ticker_24hr(self, symbol: str | None = None, *, at_ms: int | None = None) -> dict | list:
        t = self._t(at_ms)
        if symbol is not None:
            return self._ticker(self._spec(symbol), t)
        return [self._ticker(s, t) for s in self._specs]

    def open_interest(self, symbol: str, *, at_ms: int | None = None) -> dict:
        spec = self._spec(symbol)
        t = self._t(at_ms)
        oi = self._open_interest(spec, t, self._relevant(spec, t))
        return {"symbol": spec.symbol, "openInterest": _fmt(oi, spec.qty_digits), "time": t}

    PERIODS_MS = {
        "5m": 5 * MINUTE_MS, "15m": 15 * MINUTE_MS, "30m": 30 * MINUTE_MS, "1h": HOUR_MS,
        "2h": 2 * HOUR_MS, "4h": 4 * HOUR_MS, "6h": 6 * HOUR_MS, "12h": 12 * HOUR_MS, "1d": DAY_MS,
    }

    def open_interest_hist(self, symbol: str, period: str = "5m", limit: int = 30,
                           start_time: int | None = None, end_time: int | None = None,
                           *, at_ms: int | None = None) -> list:
        """Open interest statistics, ascending.  Timestamps are period boundaries <= now within the
        last 30 days.  With ``start_time`` the first ``limit`` points from it are returned, otherwise
        the last ``limit`` points up to ``end_time`` (or now).  Raises ValueError on a bad period or
        limit (the server maps these to -1120 / -1130)."""
        spec = self._spec(symbol)
        if period not in self.PERIODS_MS:
            raise ValueError("period")
        limit = int(limit)
        if not 1 <= limit <= 500:
            raise ValueError("limit")
        step = self.PERIODS_MS[period]
        now = self._t(at_ms)
        first_ok = -(-(now - HISTORY_MS) // step) * step    # earliest boundary inside the 30 days
        last_ok = now // step * step
        hi = last_ok if end_time is None else min(last_ok, int(end_time) // step * step)
        if start_time is not None:
            lo = max(first_ok, -(-int(start_time) // step) * step)
            hi = min(hi, lo + (limit - 1) * step)
        else:
            lo = max(first_ok, hi - (limit - 1) * step)
        out = []
        digits = max(spec.qty_digits, 8)
        stamps = list(range(lo, hi + 1, step))
        ois = self._noise_many(spec.skey, _S_OI, _OI_LEVELS, stamps)
        marks = self._marks(spec, stamps)
        for ts, noise, mark in zip(stamps, ois, marks):
            oi = round(self._oi_at(spec, ts, self._relevant(spec, ts), noise), spec.qty_digits)
            out.append({
                "symbol": spec.symbol,
                "sumOpenInterest": _fmt(oi, digits),
                "sumOpenInterestValue": _fmt(oi * mark, 8),
                "CMCCirculatingSupply": _fmt(spec.supply, 8),
                "timestamp": ts,
            })
        return out

    KLINE_INTERVALS_MS = {
        "1m": MINUTE_MS, "3m": 3 * MINUTE_MS, "5m": 5 * MINUTE_MS, "15m": 15 * MINUTE_MS,
        "30m": 30 * MINUTE_MS, "1h": HOUR_MS, "2h": 2 * HOUR_MS, "4h": 4 * HOUR_MS,
        "6h": 6 * HOUR_MS, "8h": 8 * HOUR_MS, "12h": 12 * HOUR_MS, "1d": DAY_MS,
        "3d": 3 * DAY_MS, "1w": 7 * DAY_MS,
    }
    _KLINE_SAMPLES = 12  # price points sampled inside each candle (open, 11 inner points, close)

    def klines(self, symbol: str, interval: str = "1h", limit: int = 500,
               start_time: int | None = None, end_time: int | None = None,
               *, at_ms: int | None = None) -> list:
        """Binance kline rows (12-element arrays, ascending) of the mark-price path.  The last row is
        the candle still open at ``now`` (closing at the current price), as on Binance.  With
        ``start_time`` the first ``limit`` candles opening at or after it, otherwise the last ``limit``
        up to ``end_time`` (or now); nothing before the symbol's onboard date.  Raises ValueError on a
        bad interval or limit (the server maps these to -1120 / -1130)."""
        spec = self._spec(symbol)
        if interval not in self.KLINE_INTERVALS_MS:
            raise ValueError("interval")
        limit = int(limit)
        if not 1 <= limit <= 1500:
            raise ValueError("limit")
        step = self.KLINE_INTERVALS_MS[interval]
        now = self._t(at_ms)
        first_ok = -(-spec.onboard_ms // step) * step
        hi = now // step * step if end_time is None else min(now, int(end_time)) // step * step
        if start_time is not None:
            lo = max(first_ok, -(-int(start_time) // step) * step)
            hi = min(hi, lo + (limit - 1) * step)
        else:
            lo = max(first_ok, hi - (limit - 1) * step)
        opens = range(lo, hi + 1, step)
        n = self._KLINE_SAMPLES
        samples = [ts + (min(ts + step, now) - ts) * k // n for ts in opens for k in range(n + 1)]
        marks = self._marks(spec, samples)       # ascending: each candle's close <= the next one's open
        return [self._kline(spec, ts, step, now, marks[i * (n + 1):(i + 1) * (n + 1)]) for i, ts in enumerate(opens)]

    def _kline(self, spec: _Spec, open_ms: int, step: int, now: int, prices: list[float]) -> list:
        """One candle from the mark prices at its _KLINE_SAMPLES + 1 sample times (open .. close)."""
        end = min(open_ms + step, now)
        o, c = prices[0], prices[-1]
        ret = math.log(c / o) if o > 0 else 0.0
        span = (end - open_ms) / DAY_MS
        # Activity rises with the size of the move; takers lean the way price went.
        quote_vol = spec.qv0 * span * (1.0 + 25.0 * abs(ret)) * (0.8 + 0.4 * _u01(spec.skey ^ open_ms))
        buy_share = 0.5 + 0.3 * math.tanh(ret / max(spec.vol * math.sqrt(max(span, 1e-6)), 1e-9))
        vwap = sum(prices) / len(prices)
        base_vol = quote_vol / vwap if vwap > 0 else 0.0
        trades = max(1, int(quote_vol / spec.trade_usd))
        d = spec.price_digits
        q = spec.qty_digits
        return [open_ms, _fmt(o, d), _fmt(max(prices), d), _fmt(min(prices), d), _fmt(c, d),
                _fmt(base_vol, q), open_ms + step - 1, _fmt(quote_vol, 4), trades,
                _fmt(base_vol * buy_share, q), _fmt(quote_vol * buy_share, 4), "0"]

    def funding_info(self) -> list:
        """Like Binance: only symbols whose funding settings were adjusted (here: non-8h intervals)."""
        out = []
        for spec in self._specs:
            if spec.kind != "quarterly" and spec.interval_h != 8:
                out.append({
                    "symbol": spec.symbol,
                    "adjustedFundingRateCap": _fmt(spec.cap, 8),
                    "adjustedFundingRateFloor": _fmt(-spec.cap, 8),
                    "fundingIntervalHours": spec.interval_h,
                    "disclaimer": False,
                    "updateTime": spec.onboard_ms + 30 * DAY_MS,
                })
        return out
