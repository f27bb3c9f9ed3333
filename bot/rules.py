"""From scores to alerts: pure code, no I/O, no clock (time comes in as an argument).

Two steps:
1. `detect` turns a cycle's results into symbol events, against the per-symbol state of the previous
   cycle: threshold crossings with hysteresis, regime entries, bias flips. Arming is a property of the
   score path, so it is kept once per (symbol, threshold), whatever the number of recipients.
   Every duration is time, never a count of cycles (the cycle's exchange time comes in as `now_ms`), so a
   shorter cadence sees the same alerts, not more: a regime or a new bias counts once it has held
   `confirm_minutes`, a fired threshold re-arms once the score has stayed `hysteresis` points below it for
   `rearm_minutes`, and cooldowns are minutes (`route`).
2. `route` fans events out to recipients by their own settings: symbols, thresholds, bands, regimes,
   mutes, a cooldown per (recipient, symbol, rule), quiet hours (hold for a digest, or drop).
All of a recipient's alerts from one cycle form one digest, ordered by score.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable, Protocol

from .config import AlertFilter, RulesConfig, ScoreConfig
from .symbols import resolve_all
from .vocabulary import ALERT_REGIMES, BANDS, DIRECTIONAL, SQUEEZE_REGIMES   # (ALERT_REGIMES stays importable from here)


@dataclass(frozen=True)
class Held:
    """A value that changes only once a new one has held for a while: `value` is in force; `pending` has been
    seen in every cycle since `since` (exchange ms). A flicker shorter than the hold never changes `value`."""
    value: str
    pending: str | None = None
    since: int = 0

    def step(self, raw: str, now_ms: int, hold_ms: float) -> "Held":
        if raw == self.value:
            return Held(raw)
        since = self.since if raw == self.pending else now_ms
        return Held(raw) if now_ms - since >= hold_ms else Held(self.value, raw, since)

    def as_json(self) -> list:
        return [self.value, self.pending, self.since]


@dataclass(frozen=True)
class SymbolState:
    score: int
    bias: str                                               # as observed in the last cycle
    regime_key: str                                         # as observed in the last cycle
    armed: dict[int, bool] = field(default_factory=dict)   # threshold -> may fire again
    regime_cycles: int = 1                                  # consecutive cycles in `regime_key` (information only)
    regime: Held | None = None        # the confirmed regime (None: the observed one, e.g. state stored before)
    bias_held: Held | None = None     # the confirmed bias
    below_since: dict[int, int] = field(default_factory=dict)   # disarmed threshold -> ms since the score is
                                                                # `hysteresis` below it (re-arms after rearm_minutes)

    def timing(self) -> dict:
        """The time-keeping part as JSON (stored beside the rest: records.SymbolStateRow.timing)."""
        return {"regime": self.regime.as_json() if self.regime else None,
                "bias": self.bias_held.as_json() if self.bias_held else None,
                "below": {str(t): ms for t, ms in self.below_since.items()}}

    @classmethod
    def from_row(cls, score: int, bias: str, regime_key: str, armed: dict[int, bool], regime_cycles: int,
                 timing: dict | None) -> "SymbolState":
        t = timing or {}
        return cls(score, bias, regime_key, armed, regime_cycles,
                   Held(*t["regime"]) if t.get("regime") else None, Held(*t["bias"]) if t.get("bias") else None,
                   {int(k): int(v) for k, v in (t.get("below") or {}).items()})


@dataclass(frozen=True)
class Event:
    symbol: str
    rule: str              # "cross:35", "regime:short_squeeze_risk", "flip:SHORT"
    kind: str              # threshold | regime | bias_flip
    score: int
    prev_score: int | None
    result: dict           # the result dict this fired on (inputs, components, receipt)
    threshold: int | None = None

    @property
    def regime_key(self) -> str:
        return self.result.get("regime_key", "")


def _thresholds_state(prev: SymbolState | None, score: int, thresholds: Iterable[int], hysteresis: int,
                      now_ms: int, rearm_ms: float) -> tuple[dict[int, bool], dict[int, int], list[int]]:
    armed, below, crossed = {}, {}, []
    for t in thresholds:
        was = prev.armed.get(t) if prev else None
        if was is None:                      # first sight of this symbol/threshold: no alert, just arm
            armed[t] = score < t
        elif was and score >= t:
            armed[t] = False
            crossed.append(t)
        elif not was and score <= t - hysteresis:
            since = prev.below_since.get(t, now_ms) if prev else now_ms
            armed[t] = now_ms - since >= rearm_ms      # below for long enough: a dip is not a new episode
            if not armed[t]:
                below[t] = since
        else:
            armed[t] = was
    return armed, below, crossed


def detect(prev: dict[str, SymbolState], results: list[dict], thresholds: set[int], cfg: RulesConfig,
           now_ms: int) -> tuple[list[Event], dict[str, SymbolState]]:
    """Events of this cycle (at exchange time `now_ms`) and the new per-symbol state (symbols absent this
    cycle keep theirs)."""
    events: list[Event] = []
    state = dict(prev)
    hold_ms, rearm_ms = cfg.confirm_minutes * 60_000, cfg.rearm_minutes * 60_000
    for r in results:
        sym, score, bias, regime_key = r["symbol"], r["score"], r["bias"], r["regime_key"]
        before = prev.get(sym)
        armed, below, crossed = _thresholds_state(before, score, sorted(thresholds), cfg.hysteresis, now_ms,
                                                  rearm_ms)
        if before is None:      # first sight: whatever regime and bias it is in is not news
            state[sym] = SymbolState(score, bias, regime_key, armed, 1, Held(regime_key), Held(bias), below)
            continue
        streak = before.regime_cycles + 1 if before.regime_key == regime_key else 1
        regime_was = before.regime or Held(before.regime_key)
        bias_was = before.bias_held or Held(before.bias)
        regime, held_bias = regime_was.step(regime_key, now_ms, hold_ms), bias_was.step(bias, now_ms, hold_ms)
        state[sym] = SymbolState(score, bias, regime_key, armed, streak, regime, held_bias, below)
        for t in crossed:
            events.append(Event(sym, f"cross:{t}", "threshold", score, before.score, r, threshold=t))
        # A regime alerts once it has held `confirm_minutes`: flapping between two never does.
        if regime.value != regime_was.value and regime.value in ALERT_REGIMES:
            events.append(Event(sym, f"regime:{regime.value}", "regime", score, before.score, r))
        if (held_bias.value != bias_was.value and bias_was.value in DIRECTIONAL and held_bias.value in DIRECTIONAL
                and score >= cfg.bias_flip_min_score):
            events.append(Event(sym, f"flip:{held_bias.value}", "bias_flip", score, before.score, r))
    return events, state


class Subscriber(Protocol):
    """What routing needs of a recipient (a user's watchlist, or a configured channel)."""
    alerts: bool
    active: bool
    symbols: list[str]
    any_symbol_above: int | None
    min_score: int | None
    bands: list[str]
    regimes: list[str]
    squeeze_anywhere: bool
    bias_flips: bool
    cooldown_minutes: float

    def is_muted(self, symbol: str, now: datetime) -> bool: ...
    def in_quiet_hours(self, now: datetime) -> bool: ...
    def quiet_end_after(self, now: datetime) -> datetime: ...
    @property
    def quiet_mode(self) -> str: ...


class _EverySymbol:
    """`symbol in EVERY_SYMBOL` is always true: a filter with no symbol list watches the whole market."""

    def __contains__(self, symbol: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "EVERY_SYMBOL"


EVERY_SYMBOL = _EverySymbol()


@dataclass(frozen=True)
class FilterSubscriber:
    """A channel with no person behind it (console, Discord channel, webhook), from an AlertFilter:
    band crossings at or above min_score, regimes and flips at or above min_score, its symbols or all."""
    symbols: frozenset[str] | _EverySymbol
    min_score: int | None
    bands: list[str]
    regimes: list[str]
    bias_flips: bool
    cooldown_minutes: float
    alerts: bool = True
    active: bool = True
    any_symbol_above: int | None = None
    squeeze_anywhere: bool = False
    quiet_mode: str = "digest"

    @classmethod
    def from_filter(cls, f: AlertFilter, universe: Iterable[str] = ()) -> "FilterSubscriber":
        symbols = resolve_all(f.symbols, universe) if f.symbols else EVERY_SYMBOL
        return cls(symbols, f.min_score, list(f.bands), list(f.regimes), f.bias_flips, f.cooldown_minutes)

    def is_muted(self, symbol: str, now: datetime) -> bool:
        return False

    def in_quiet_hours(self, now: datetime) -> bool:
        return False

    def quiet_end_after(self, now: datetime) -> datetime:
        return now


def band_thresholds(bands: Iterable[str], score_cfg: ScoreConfig) -> set[int]:
    b = score_cfg.bands
    return {getattr(b, x) for x in bands if x in BANDS}


def thresholds_in_use(subscribers: Iterable[Subscriber], rules: RulesConfig, score_cfg: ScoreConfig) -> set[int]:
    out = set(rules.thresholds)
    for s in subscribers:
        out |= band_thresholds(s.bands, score_cfg)
        out |= {t for t in (s.min_score, s.any_symbol_above) if t}
    return out


def own_thresholds(sub: Subscriber, score_cfg: ScoreConfig) -> set[int]:
    """The crossing thresholds a subscriber gets for its watched symbols: its bands and min_score, none
    below min_score."""
    floor = sub.min_score or 0
    mine = band_thresholds(sub.bands, score_cfg) | ({sub.min_score} if sub.min_score else set())
    return {t for t in mine if t >= floor}


def wants(sub: Subscriber, ev: Event, score_cfg: ScoreConfig, mine: set[int] | None = None) -> bool:
    """Does this subscriber want this event? (`mine`: own_thresholds, when the caller has it already.)"""
    if ev.kind == "threshold":
        if ev.threshold == sub.any_symbol_above:
            return True
        return ev.symbol in sub.symbols and ev.threshold in (mine if mine is not None else own_thresholds(sub, score_cfg))
    anywhere = ((sub.any_symbol_above is not None and ev.score >= sub.any_symbol_above)
                or (sub.squeeze_anywhere and ev.kind == "regime" and ev.regime_key in SQUEEZE_REGIMES))
    if not (anywhere or ev.symbol in sub.symbols) or ev.score < (sub.min_score or 0):
        return False
    if ev.kind == "regime":
        return ev.regime_key in sub.regimes
    return sub.bias_flips


@dataclass(frozen=True)
class Delivery:
    recipient: str
    events: list[Event]          # ordered by score, highest first
    hold_until: datetime | None  # quiet hours: send (as part of one digest) at this instant


def _candidates(events: list[Event], subscribers: dict[str, Subscriber]) -> list[str]:
    """Recipients that may want any of these events: watchers of an event's symbol, plus those that
    watch the whole market. Keeps routing proportional to the watchers, not to every user x event."""
    symbols = {e.symbol for e in events}
    out = []
    for rid, sub in subscribers.items():
        if not (sub.alerts and sub.active):
            continue
        if sub.any_symbol_above is not None or sub.squeeze_anywhere or isinstance(sub.symbols, _EverySymbol):
            out.append(rid)
        elif not symbols.isdisjoint(sub.symbols):
            out.append(rid)
    return out


def route(events: list[Event], subscribers: dict[str, Subscriber], last_fired: dict[tuple[str, str, str], datetime],
          now: datetime, score_cfg: ScoreConfig) -> tuple[list[Delivery], list[tuple[str, str, str]]]:
    """Deliveries per recipient, and the (recipient, symbol, rule) keys that fired (for cooldowns)."""
    deliveries, fired = [], []
    if not events:
        return deliveries, fired
    for rid in _candidates(events, subscribers):
        sub = subscribers[rid]
        mine = own_thresholds(sub, score_cfg)
        cooldown = timedelta(minutes=sub.cooldown_minutes)
        chosen = []
        for ev in events:
            if not wants(sub, ev, score_cfg, mine) or sub.is_muted(ev.symbol, now):
                continue
            last = last_fired.get((rid, ev.symbol, ev.rule))
            if last is not None and now - last < cooldown:
                continue
            chosen.append(ev)
        if not chosen:
            continue
        hold = None
        if sub.in_quiet_hours(now):
            if sub.quiet_mode == "drop":
                continue
            hold = sub.quiet_end_after(now)
        deliveries.append(Delivery(rid, sorted(chosen, key=lambda e: (-e.score, e.symbol, e.rule)), hold))
        fired += [(rid, e.symbol, e.rule) for e in chosen]
    return deliveries, fired
