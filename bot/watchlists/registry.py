"""Per-user watchlists: one YAML file per user, validated, hot-reloaded, and safely editable from chat.

Files live in one directory (default `config/watchlists/`); the user id is the file stem:
`tg-123456789.yaml` (a Telegram user), `tg-g1001234.yaml` (a Telegram group), `dc-987654321.yaml` (a Discord
user) or any hand-made name such as `alice.yaml`. Files named `example-*.yaml` are documentation: the registry
skips them (they are still checked by `check_watchlists`). docs/watchlists.md is the user-facing reference.

Schema (every key is optional; unknown keys are errors):

    name              str | null        display name (at most 100 characters)
    telegram_chat_id  int | null        where Telegram alerts go (private chat id, or a negative group id)
    discord_user_id   int | null        where Discord DMs go
    alerts            bool   (true)     master switch (/alerts on|off)
    symbols           [str]  ([])       watched symbols, upper case (lower case is read as upper case), duplicates
                                        dropped, at most Limits.max_symbols (50); checked against the exchange
                                        universe when one is known
    any_symbol_above  int 0-100 | null  also alert on ANY symbol whose score crosses this
    min_score         int 0-100 | null  personal crossing threshold; regime and bias-flip alerts below it are
                                        suppressed
    bands             [str]  ([stretched, stressed])   band crossings that alert: lean, stretched, stressed
    regimes           [str]  (the six stress regimes)  regime entries that alert: keys of bot.score.REGIMES
    bias_flips        bool   (true)     alert when the bias flips LONG <-> SHORT at a high score
    cooldown_minutes  int 0-1440 (60)   per symbol and rule
    timezone          str    (UTC)      IANA zone name (zoneinfo), used for quiet hours
    quiet_hours       "HH:MM-HH:MM" | null   local wall-clock window, may wrap midnight ("23:00-07:00")
    quiet_mode        digest | drop (digest)  digest: hold alerts, send one digest when quiet hours end
    muted             {SYMBOL: datetime} ({})   ISO-8601 (UTC if no offset) instant until which SYMBOL is muted
    active            bool   (true)     set false by the bot when the user blocked it

Reading uses PyYAML's SafeLoader only (the node tree gives file:line for every error). Editing uses ruamel.yaml
round-trip mode so comments, key order and formatting survive; every edit is validated by re-reading the
*resulting text* with the same SafeLoader + model before it replaces the file atomically.

Errors read like `config/watchlists/alice.yaml:7: symbols[2]: expected a symbol such as BTCUSDT, got 12`.
"""
from __future__ import annotations

import asyncio
import difflib
import functools
import io
import math
import os
import re
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from datetime import datetime, time as dtime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr,
                      ValidationError, ValidationInfo, field_validator)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from ..symbols import SYMBOL_RE, clean, normalize, suggest, with_quote
from ..vocabulary import ALERT_REGIMES, BANDS, DEFAULT_BANDS, Band, RegimeKey
from ..yamlerrors import Problem, invalid, line_of, show
from ..yamlerrors import problems as validation_problems

__all__ = [
    "DEFAULT_DIRECTORY", "BANDS", "DEFAULT_REGIMES", "IDENTITY_FIELDS", "TEMPLATE",
    "Limits", "Watchlist", "Problem", "WatchlistError", "EditError", "EditResult",
    "WatchlistRegistry", "parse_watchlist", "check_watchlists",
]

DEFAULT_DIRECTORY = Path("config/watchlists")
UTC = timezone.utc
DEFAULT_REGIMES = ALERT_REGIMES      # the regime entries a watchlist alerts on unless it says otherwise
IDENTITY_FIELDS = ("telegram_chat_id", "discord_user_id")
EXAMPLE_PREFIX = "example-"

_QUIET_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_USER_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+=-]{0,99}$")
_MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Limits:
    """Bounds on what one watchlist may hold (all enforced on load and on every edit)."""
    max_file_bytes: int = 64 * 1024
    max_symbols: int = 50
    max_muted: int = 200


# --------------------------------------------------------------------------------------------------- validation

def _ctx(info: ValidationInfo | None) -> dict:
    return (info.context if info is not None and isinstance(info.context, dict) else None) or {}


def _limits(info: ValidationInfo | None) -> Limits:
    return _ctx(info).get("limits") or Limits()


def _symbol_shape(v: Any) -> str:
    if not isinstance(v, str) or not SYMBOL_RE.match(clean(v)):
        raise invalid(f"expected a symbol such as BTCUSDT, got {show(v)}")
    return clean(v)


def _watched_symbol(v: Any, info: ValidationInfo) -> str:
    s = _symbol_shape(v)
    ctx = _ctx(info)
    universe = ctx.get("universe")
    if universe and s not in universe and s not in ctx.get("grandfathered", ()):
        hint = suggest(s, universe)
        raise invalid(f'unknown symbol "{s}" — did you mean {hint}?' if hint
                    else f'unknown symbol "{s}" (not listed on the exchange)')
    return s


@functools.lru_cache(maxsize=1)
def _zone_names() -> tuple[str, ...]:
    try:
        return tuple(sorted(available_timezones()))
    except Exception:  # pragma: no cover - no tz database at all
        return ()


def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _parse_quiet(v: str) -> tuple[dtime, dtime]:
    m = _QUIET_RE.match(v)
    if not m:
        raise ValueError(v)
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError(v)
    return dtime(h1, m1), dtime(h2, m2)


def _as_utc(v: Any) -> datetime:
    if isinstance(v, str):
        try:
            v = datetime.fromisoformat(v.strip())
        except ValueError:
            pass
    if not isinstance(v, datetime):
        raise invalid(f"expected an ISO-8601 UTC date-time such as 2026-03-29T12:00:00Z, got {show(v)}")
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


def _null_is_empty(factory):
    return lambda v: factory() if v is None else v


WatchedSymbol = Annotated[str, BeforeValidator(_watched_symbol)]
MutedSymbol = Annotated[str, BeforeValidator(_symbol_shape)]
UtcDatetime = Annotated[datetime, BeforeValidator(_as_utc)]
Score = Annotated[StrictInt, Field(ge=0, le=100)]


class Watchlist(BaseModel):
    """One user's alert preferences. Immutable; edits go through `WatchlistRegistry`."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[StrictStr, Field(max_length=100)] | None = Field(
        None, description="Display name.")
    telegram_chat_id: StrictInt | None = Field(
        None, description="Telegram chat that receives alerts: a private chat id, or a negative group id.")
    discord_user_id: StrictInt | None = Field(
        None, description="Discord user that receives alerts by DM.")
    alerts: StrictBool = Field(True, description="Master switch (/alerts on|off).")
    symbols: Annotated[list[WatchedSymbol], BeforeValidator(_null_is_empty(list))] = Field(
        default_factory=list, description="Watched symbols, upper case, at most Limits.max_symbols.")
    any_symbol_above: Score | None = Field(
        None, description="0-100: also alert on ANY symbol whose score crosses this; null = off.")
    min_score: Score | None = Field(
        None, description="0-100: personal crossing threshold; regime and bias-flip alerts below it are suppressed.")
    bands: Annotated[list[Band], BeforeValidator(_null_is_empty(list))] = Field(
        default_factory=lambda: list(DEFAULT_BANDS),
        description="Band entries that alert: a subset of bot.vocabulary.BANDS.")
    regimes: Annotated[list[RegimeKey], BeforeValidator(_null_is_empty(list))] = Field(
        default_factory=lambda: list(ALERT_REGIMES),
        description="Regime entries that alert: keys of bot.vocabulary.REGIMES (only ALERT_REGIMES ever fire).")
    bias_flips: StrictBool = Field(True, description="Alert when the bias flips LONG <-> SHORT at a high score.")
    cooldown_minutes: Annotated[StrictInt, Field(ge=0, le=1440)] = Field(
        60, description="Minimum minutes between two alerts of the same rule for the same symbol.")
    timezone: str = Field("UTC", description="IANA time zone name used for quiet hours.")
    quiet_hours: str | None = Field(
        None, description='Local "HH:MM-HH:MM" window without alerts (may wrap midnight); null = never quiet.')
    quiet_mode: str = Field("digest", description="digest: hold and send one digest when quiet hours end; drop.")
    muted: Annotated[dict[MutedSymbol, UtcDatetime], BeforeValidator(_null_is_empty(dict))] = Field(
        default_factory=dict, description="SYMBOL: UTC instant until which that symbol is muted.")
    active: StrictBool = Field(True, description="Set false by the bot when the user blocked it.")

    # -- field checks that need custom messages or limits
    @field_validator("symbols")
    @classmethod
    def _symbols_bounded(cls, v: list[str], info: ValidationInfo) -> list[str]:
        v = list(dict.fromkeys(v))
        limit = _limits(info).max_symbols
        if len(v) > limit:
            raise invalid(f"too many symbols: {len(v)} (at most {limit})")
        return v

    @field_validator("bands", "regimes")
    @classmethod
    def _dedupe(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    @field_validator("muted")
    @classmethod
    def _muted_bounded(cls, v: dict, info: ValidationInfo) -> dict:
        limit = _limits(info).max_muted
        if len(v) > limit:
            raise invalid(f"too many muted symbols: {len(v)} (at most {limit})")
        return v

    @field_validator("timezone", mode="before")
    @classmethod
    def _valid_zone(cls, v: Any) -> str:
        if not isinstance(v, str) or not v.strip():
            raise invalid(f"expected an IANA time zone such as Europe/Berlin, got {show(v)}")
        v = v.strip()
        try:
            _zone(v)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            close = difflib.get_close_matches(v, _zone_names(), n=1, cutoff=0.6)
            hint = f" — did you mean {close[0]}?" if close else " (use an IANA name such as Europe/Berlin)"
            raise invalid(f"unknown time zone {show(v)}{hint}") from None
        return v

    @field_validator("quiet_hours", mode="before")
    @classmethod
    def _valid_quiet(cls, v: Any) -> str | None:
        if v is None:
            return None
        try:
            start, end = _parse_quiet(v) if isinstance(v, str) else _parse_quiet("")
        except ValueError:
            raise invalid(f'expected "HH:MM-HH:MM" (e.g. "23:00-07:00") or null, got {show(v)}') from None
        if start == end:
            raise invalid(f'start and end are the same ({show(v)}); use null for no quiet hours')
        return f"{start:%H:%M}-{end:%H:%M}"

    @field_validator("quiet_mode", mode="before")
    @classmethod
    def _valid_mode(cls, v: Any) -> str:
        if v not in ("digest", "drop"):
            raise invalid(f"expected digest or drop, got {show(v)}")
        return v

    # -- behaviour
    def _window(self) -> tuple[ZoneInfo, dtime, dtime] | None:
        if not self.quiet_hours:
            return None
        start, end = _parse_quiet(self.quiet_hours)
        return _zone(self.timezone), start, end

    def in_quiet_hours(self, now_utc: datetime) -> bool:
        """True when the user's local wall-clock time is inside quiet_hours ([start, end), wrapping midnight)."""
        w = self._window()
        if w is None:
            return False
        zone, start, end = w
        t = _aware(now_utc).astimezone(zone).time().replace(tzinfo=None)
        return start <= t < end if start < end else (t >= start or t < end)

    def quiet_end_after(self, now_utc: datetime) -> datetime:
        """The UTC instant the current quiet period ends: the first instant after `now_utc` that is not quiet.

        Computed on the user's local clock with zoneinfo, so DST changes are right: an end time skipped by a
        spring-forward jump ends the period at the jump; a fall-back jump that sets the clock back before the
        start ends it at the jump; an end time that occurs twice ends it at its first occurrence.
        Returns `now_utc` itself when not in quiet hours.
        """
        now = _aware(now_utc).astimezone(UTC)
        if not self.in_quiet_hours(now):
            return now
        zone, _, end = self._window()
        day = now.astimezone(zone).date()
        candidates = _transitions(zone, now, now + timedelta(hours=27))
        for d in range(-1, 3):
            candidates += _wall_instants(datetime.combine(day + timedelta(days=d), end), zone)
        return min((c for c in candidates if c > now and not self.in_quiet_hours(c)),
                   default=now + timedelta(hours=24))

    def is_muted(self, symbol: str, now_utc: datetime) -> bool:
        until = self.muted.get(clean(symbol))
        return until is not None and _aware(now_utc) < until


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _wall_instants(wall: datetime, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants at which the clock in `zone` reads `wall` (naive): none in a gap, two when it repeats."""
    out = []
    for fold in (0, 1):
        u = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if u.astimezone(zone).replace(tzinfo=None) == wall and u not in out:
            out.append(u)
    return out


def _transitions(zone: ZoneInfo, start: datetime, stop: datetime) -> list[datetime]:
    """UTC instants in (start, stop] at which `zone` changes its UTC offset (to the second)."""
    def offset(ts: int):
        return datetime.fromtimestamp(ts, zone).utcoffset()

    out = []
    t, stop_ts = math.floor(start.timestamp()), math.ceil(stop.timestamp())
    current = offset(t)
    while t < stop_ts:
        nxt = min(t + 3600, stop_ts)
        if offset(nxt) != current:
            lo, hi = t, nxt
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if offset(mid) == current:
                    lo = mid
                else:
                    hi = mid
            out.append(datetime.fromtimestamp(hi, UTC))
            current = offset(nxt)
        t = nxt
    return out


# ------------------------------------------------------------------------------------------------------ errors

class WatchlistError(Exception):
    """A watchlist file (or text) that cannot be used; str() is one `path:line: field: message` per line."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    @property
    def messages(self) -> list[str]:
        return [str(p) for p in self.problems]


class EditError(Exception):
    """An edit that was refused; the file is untouched. str() is meant to be shown to the user."""

    def __init__(self, message: str, problems: list[Problem] | None = None):
        self.problems = problems or []
        super().__init__(message)


@dataclass(frozen=True)
class EditResult:
    watchlist: Watchlist
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)       # add: already watched; remove: already not watched
    unknown: dict[str, str | None] = field(default_factory=dict)   # text -> suggestion (or None)


def _structure_problems(root: yaml.Node, path: str) -> list[Problem]:
    """Aliases/anchors and duplicate keys (PyYAML would silently keep the last one)."""
    problems, seen, stack = [], set(), [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            problems.append(Problem(path, node.start_mark.line + 1, None,
                                    "anchors and aliases (&name / *name) are not supported in watchlists"))
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: dict[str, int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode):
                    if k.value in keys:
                        problems.append(Problem(path, k.start_mark.line + 1, k.value,
                                                f"duplicate key (first on line {keys[k.value]})"))
                    keys.setdefault(k.value, k.start_mark.line + 1)
                stack += [k, v]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value
        if len(problems) >= _MAX_PROBLEMS:
            break
    return sorted(problems, key=lambda p: p.line or 0)


def parse_watchlist(text: str | bytes, path: str | Path = "<text>", *, universe: Iterable[str] | None = None,
                    limits: Limits = Limits(), grandfathered: Iterable[str] = ()) -> Watchlist:
    """Validate one watchlist text (PyYAML SafeLoader + `Watchlist`); raise WatchlistError naming path:line.

    `universe`: known symbols (None or empty: symbols are only checked for shape). `grandfathered`: symbols
    accepted even if not in the universe (the edit API passes the ones the file already had).
    """
    path = str(path)
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if len(raw) > limits.max_file_bytes:
        raise WatchlistError([Problem(path, None, None,
                                      f"file is too large ({len(raw)} bytes, at most {limits.max_file_bytes})")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise WatchlistError([Problem(path, None, None, f"not valid UTF-8 text ({e.reason} at byte {e.start})")])
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is not None:
            problems = _structure_problems(root, path)
            if problems:
                raise WatchlistError(problems)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        context = e.context
        if context and e.context_mark and mark and e.context_mark.line != mark.line:
            context += f" (started on line {e.context_mark.line + 1})"
        desc = ", ".join(x for x in (context, e.problem) if x) or "syntax error"
        where = f" (line {line}, column {mark.column + 1})" if mark else ""
        raise WatchlistError([Problem(path, line, None, f"not valid YAML: {desc}{where}")]) from None
    except RecursionError:
        raise WatchlistError([Problem(path, None, None, "not valid YAML: nested too deeply")]) from None
    except WatchlistError:
        raise
    except Exception as e:   # e.g. a timestamp-shaped value that is not a real date
        raise WatchlistError([Problem(path, None, None, f"not valid YAML: {e}")]) from None
    finally:
        loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise WatchlistError([Problem(path, line_of(root, ()), None,
                                      f"expected a mapping of fields (name: value) at the top level, "
                                      f"got {show(data)}")])
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise WatchlistError([Problem(path, line_of(root, (k,)), None, f"expected a field name, got {show(k)}")
                              for k in bad_keys][:_MAX_PROBLEMS])
    context = {"universe": set(universe) if universe else None, "limits": limits,
               "grandfathered": frozenset(grandfathered)}
    try:
        return Watchlist.model_validate(data, context=context)
    except ValidationError as e:
        problems = sorted(validation_problems(e, path, root, known_fields=Watchlist.model_fields), key=lambda p: p.line or 0)
        raise WatchlistError(problems[:_MAX_PROBLEMS]) from None


def check_watchlists(directory: str | Path = DEFAULT_DIRECTORY,
                     universe: Iterable[str] | Callable[[], Iterable[str]] | None = None,
                     limits: Limits = Limits()) -> list[str]:
    """Validate every *.yaml in `directory` (example files included); messages, empty when all are valid.

    A missing directory holds no watchlists (as for the registry), so it is not a problem."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    known = universe() if callable(universe) else universe
    out = []
    for p in sorted(directory.glob("*.yaml")):
        if p.name.startswith(".") or not p.is_file():
            continue
        try:
            size = p.stat().st_size
            if size > limits.max_file_bytes:
                out.append(str(Problem(str(p), None, None,
                                       f"file is too large ({size} bytes, at most {limits.max_file_bytes})")))
                continue
            parse_watchlist(p.read_bytes(), p, universe=known, limits=limits)
        except WatchlistError as e:
            out += e.messages
        except OSError as e:
            out.append(f"{p}: cannot read: {e}")
    return out


# ------------------------------------------------------------------------------------------- round-trip editing

TEMPLATE = """\
# Watchlist: which derivatives-pressure alerts you get, and when.
# Edit it by hand or with chat commands (/watch, /unwatch, /alerts, /quiet, /mute, ...): the bot reloads it
# within seconds and keeps your comments. Every key is optional. Reference: docs/watchlists.md

name: null                 # display name
telegram_chat_id: null     # Telegram chat that receives alerts (set by the bot; group ids are negative)
discord_user_id: null      # Discord user that receives alerts by DM (set by the bot)
alerts: true               # master switch: false pauses every alert (/alerts off)

symbols: []                # watched symbols, e.g. [BTCUSDT, ETHUSDT] (at most 50)
any_symbol_above: null     # 0-100: also alert on ANY symbol whose score crosses this; null = off
min_score: null            # 0-100: your crossing threshold; regime and bias-flip alerts below it are suppressed

bands: [stretched, stressed]   # band crossings that alert: lean, stretched, stressed
# regime entries that alert (also possible: net_long, net_short, balanced)
regimes: [short_squeeze_risk, long_squeeze_risk, long_crowded, short_ramp, long_unwind, short_covering]
bias_flips: true           # alert when the bias flips LONG <-> SHORT at a high score
cooldown_minutes: 60       # at most one alert per symbol and rule in this many minutes (0-1440)

timezone: UTC              # IANA time zone for quiet hours, e.g. Europe/Berlin, America/New_York
quiet_hours: null          # e.g. "23:00-07:00" (may wrap midnight); null = never quiet
quiet_mode: digest         # during quiet hours: digest (one summary when they end) or drop
muted: {}                  # SYMBOL: UTC time until which alerts for it are muted (/mute)
active: true               # set to false by the bot when it cannot reach you (e.g. you blocked it)
"""


class _Stamp(str):
    """An ISO-8601 UTC instant written as a plain YAML timestamp (2026-03-29T12:00:00Z)."""


class _Representer(RoundTripRepresenter):
    pass


_Representer.add_representer(type(None), lambda r, d: r.represent_scalar("tag:yaml.org,2002:null", "null"))
_Representer.add_representer(_Stamp, lambda r, d: r.represent_scalar("tag:yaml.org,2002:timestamp", str(d)))

_KEY_ONLY_RE = re.compile(r"^[^\s#\-][^#]*:\s*(#.*)?$")


def _guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping, sequence, offset) indentation as the file already uses it, so untouched parts stay as they are."""
    mapping = offset = sequence = None
    lines = [(len(s) - len(s.lstrip(" ")), s.strip()) for s in text.splitlines()
             if s.strip() and not s.lstrip().startswith("#")]
    for (ind, s), (nind, ns) in zip(lines, lines[1:]):
        if not _KEY_ONLY_RE.match(s) or nind < ind:
            continue
        if ns == "-" or ns.startswith("- "):
            if offset is None:
                offset = nind - ind
                rest = ns[1:]
                sequence = offset + 1 + max(1, len(rest) - len(rest.lstrip(" ")))
        elif nind > ind and mapping is None:
            mapping = nind - ind
    mapping = mapping or 2
    if offset is None:
        offset, sequence = mapping, mapping + 2
    return mapping, max(sequence, offset + 2), offset


_HEADER_END_RE = re.compile(r"^---[ \t]*(#.*)?$")


@dataclass
class _RoundTrip:
    """A ruamel round-trip session for one text: comments/directives before a `---` line are kept verbatim
    (ruamel drops comments that precede the document start marker)."""
    yaml: YAML
    header: str
    doc: CommentedMap

    def dump(self) -> str:
        buf = io.StringIO()
        self.yaml.dump(self.doc, buf)
        return self.header + buf.getvalue()


def _split_header(text: str) -> tuple[str, str]:
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        s = line.strip()
        if not s or s.startswith("#") or s.startswith("%"):
            continue
        if _HEADER_END_RE.match(line.rstrip("\r\n")):
            return "".join(lines[:i + 1]), "".join(lines[i + 1:])
        break
    return "", text


def _rt_load(text: str) -> _RoundTrip:
    header, body = _split_header(text)
    y = YAML(typ="rt")
    y.Representer = _Representer
    y.preserve_quotes = True
    y.width = 4096
    mapping, sequence, offset = _guess_indent(body)
    y.indent(mapping=mapping, sequence=sequence, offset=offset)
    doc = y.load(body) if body.strip() else None
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, CommentedMap):
        raise EditError("the file's top level is not a mapping of fields; fix it or import a corrected file")
    return _RoundTrip(y, header, doc)


def _plain_safe(s: str) -> bool:
    try:
        return yaml.safe_load(s) == s
    except yaml.YAMLError:
        return False


def _to_rt(value: Any) -> Any:
    """A Python value as a ruamel node value that PyYAML reads back as the same value."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, datetime):
        value = _aware(value).astimezone(UTC)
        if value.microsecond:                       # whole seconds, never earlier than asked
            value = value.replace(microsecond=0) + timedelta(seconds=1)
        return _Stamp(value.strftime("%Y-%m-%dT%H:%M:%SZ"))
    if isinstance(value, str):
        return value if _plain_safe(value) else DoubleQuotedScalarString(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = CommentedSeq(_to_rt(v) for v in value)
        seq.fa.set_flow_style()
        return seq
    if isinstance(value, dict):
        m = CommentedMap()
        for k, v in value.items():
            m[_to_rt(k)] = _to_rt(v)
        if not m:
            m.fa.set_flow_style()
        return m
    raise EditError(f"cannot store a value of type {type(value).__name__}")


def _set(doc: CommentedMap, key: str, value: Any) -> None:
    """Set a top-level key; an existing key keeps its position and its comment (collections are updated in place,
    since ruamel attaches a flow collection's end-of-line comment to the collection itself)."""
    old, new = doc.get(key), _to_rt(value)
    if isinstance(old, CommentedSeq) and isinstance(new, CommentedSeq):
        if not old:
            old.fa.set_flow_style()         # ruamel forgets the style of an empty `[]`
        for i in reversed(range(len(old))):
            del old[i]
        old.extend(new)
    elif isinstance(old, CommentedMap) and isinstance(new, CommentedMap):
        for k in list(old):
            del old[k]
        old.update(new)
    else:
        doc[key] = new


def _rt_datetime(v: Any) -> datetime | None:
    try:
        return _as_utc(v)
    except Exception:
        return None


def _atomic_write(path: Path, text: str) -> None:
    """Temp file in the same directory, flush + fsync, os.replace, fsync the directory."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if hasattr(os, "O_DIRECTORY"):
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


# -------------------------------------------------------------------------------------------------- registry

_Sig = tuple[int, int, int]


def _sig(path: Path) -> _Sig | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class WatchlistRegistry:
    """All users' watchlists: loaded from a directory, hot-reloaded, edited safely.

    Thread- and task-safe. Reads (`get`, `all`, `items`, lookups) never touch the disk. Every edit re-reads the
    file from disk (so hand edits are respected), is serialized per user (an asyncio.Lock per user and event loop,
    plus a threading lock per user), validates the resulting text with the same parser used for loading and
    replaces the file atomically; a refused edit raises EditError and leaves the file untouched.
    """

    def __init__(self, directory: str | Path = DEFAULT_DIRECTORY, universe: Callable[[], set[str]] | None = None,
                 limits: Limits = Limits(), *, quote: str = "USDT", include_examples: bool = False):
        self.directory = Path(directory)
        self.limits = limits
        self.quote = quote
        self.include_examples = include_examples
        self._universe_fn = universe
        self._state = threading.RLock()
        self._lists: dict[str, Watchlist] = {}
        self._errors: dict[str, str] = {}
        self._sigs: dict[str, _Sig] = {}
        self._thread_locks: dict[str, threading.Lock] = {}
        self._async_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # ----------------------------------------------------------------------------------------- reading
    @property
    def errors(self) -> dict[str, str]:
        """Current problem per file, keyed by user id (a copy). The last good version stays active meanwhile."""
        with self._state:
            return dict(self._errors)

    def all(self) -> list[Watchlist]:
        return [wl for _, wl in self.items()]

    def items(self) -> list[tuple[str, Watchlist]]:
        with self._state:
            return sorted(self._lists.items())

    def get(self, user_id: str) -> Watchlist | None:
        with self._state:
            return self._lists.get(user_id)

    def by_telegram_chat(self, chat_id: int) -> tuple[str, Watchlist] | None:
        """The watchlist routed to this Telegram chat; `tg-<id>` / `tg-g<id>` wins over other files naming it."""
        own = f"tg-{chat_id}" if chat_id >= 0 else f"tg-g{-chat_id}"
        return self._lookup("telegram_chat_id", chat_id, own)

    def by_discord_user(self, user_id: int) -> tuple[str, Watchlist] | None:
        return self._lookup("discord_user_id", user_id, f"dc-{user_id}")

    def _lookup(self, attr: str, value: int, own: str) -> tuple[str, Watchlist] | None:
        hits = [(uid, wl) for uid, wl in self.items() if getattr(wl, attr) == value]
        hits.sort(key=lambda h: h[0] != own)
        return hits[0] if hits else None

    def path(self, user_id: str) -> Path:
        """The file of `user_id`; raises EditError for ids that are not safe file names."""
        if not isinstance(user_id, str) or not _USER_ID_RE.match(user_id) or ".." in user_id:
            raise EditError(f"invalid user id {show(user_id)}")
        if user_id.startswith(EXAMPLE_PREFIX) and not self.include_examples:
            raise EditError(f"user ids starting with {EXAMPLE_PREFIX!r} are reserved for example files")
        return self.directory / f"{user_id}.yaml"

    # ------------------------------------------------------------------------------------------ loading
    def _universe(self) -> set[str] | None:
        if self._universe_fn is None:
            return None
        try:
            u = self._universe_fn()
        except Exception:
            return None
        return set(u) if u else None

    def _scan(self) -> dict[str, Path]:
        try:
            entries = list(self.directory.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return {}
        out = {}
        for p in entries:
            if p.suffix != ".yaml" or p.name.startswith("."):
                continue
            if p.stem.startswith(EXAMPLE_PREFIX) and not self.include_examples:
                continue
            if p.is_file():
                out[p.stem] = p
        return out

    def _thread_lock(self, user_id: str) -> threading.Lock:
        with self._state:
            return self._thread_locks.setdefault(user_id, threading.Lock())

    def _load_one(self, uid: str, path: Path, universe: set[str] | None) -> tuple[bool, list[str]]:
        """(Re)load one file under its user lock; (active version changed, problems)."""
        with self._thread_lock(uid):
            sig = _sig(path)
            if sig is None:
                return self._forget(uid), []
            try:
                if sig[1] > self.limits.max_file_bytes:
                    raise WatchlistError([Problem(str(path), None, None,
                                                  f"file is too large ({sig[1]} bytes, at most "
                                                  f"{self.limits.max_file_bytes})")])
                with open(path, "rb") as f:
                    raw = f.read(self.limits.max_file_bytes + 1)
                wl = parse_watchlist(raw, path, universe=universe, limits=self.limits)
            except WatchlistError as e:
                with self._state:
                    self._sigs[uid] = sig
                    self._errors[uid] = str(e)
                return False, e.messages
            except OSError as e:
                if not path.exists():
                    return self._forget(uid), []
                msg = f"{path}: cannot read: {e}"
                with self._state:
                    self._errors[uid] = msg
                return False, [msg]
            with self._state:
                self._sigs[uid] = sig
                self._errors.pop(uid, None)
                changed = self._lists.get(uid) != wl
                self._lists[uid] = wl
            return changed, []

    def _forget(self, uid: str) -> bool:
        with self._state:
            self._sigs.pop(uid, None)
            self._errors.pop(uid, None)
            return self._lists.pop(uid, None) is not None

    def load_all(self) -> list[str]:
        """(Re)load every *.yaml; returns problem messages. A bad file keeps its last good version (never raises)."""
        found = self._scan()
        universe = self._universe()
        problems: list[str] = []
        for uid in sorted(found):
            problems += self._load_one(uid, found[uid], universe)[1]
        with self._state:
            gone = [uid for uid in set(self._lists) | set(self._sigs) | set(self._errors) if uid not in found]
        for uid in gone:
            with self._thread_lock(uid):
                if _sig(self.directory / f"{uid}.yaml") is None:
                    self._forget(uid)
        return problems

    def reload_if_changed(self) -> tuple[list[str], list[str]]:
        """Reload new or changed files (by mtime, size, inode) and drop deleted ones.

        Returns (user ids whose active watchlist changed, problems found in this pass). A file that stays
        broken is reported once, not on every call; `errors` holds the current state.
        """
        found = self._scan()
        universe = None
        changed: list[str] = []
        problems: list[str] = []
        with self._state:
            known = dict(self._sigs)
        for uid in sorted(found):
            if known.get(uid) == _sig(found[uid]):
                continue
            if universe is None:
                universe = self._universe() or set()
            did, errs = self._load_one(uid, found[uid], universe or None)
            if did:
                changed.append(uid)
            problems += errs
        with self._state:
            gone = [uid for uid in set(self._lists) | set(self._sigs) if uid not in found]
        for uid in sorted(gone):
            with self._thread_lock(uid):
                if _sig(self.directory / f"{uid}.yaml") is None and self._forget(uid):
                    changed.append(uid)
        return changed, problems

    # ------------------------------------------------------------------------------------------ editing
    def _async_lock(self, user_id: str) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._state:
            per_loop = self._async_locks.get(loop)
            if per_loop is None:
                per_loop = self._async_locks[loop] = {}
            return per_loop.setdefault(user_id, asyncio.Lock())

    async def _run(self, user_id: str, fn: Callable[[], Any]) -> Any:
        self.path(user_id)                                   # fail fast on a bad id

        def locked():
            with self._thread_lock(user_id):
                return fn()

        async with self._async_lock(user_id):
            return await asyncio.to_thread(locked)

    def _read_current(self, user_id: str, path: Path) -> tuple[str, Watchlist]:
        """The file's text and its structural validation (universe not applied: delisted symbols stay editable)."""
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise EditError(f"no watchlist for {user_id} yet") from None
        if size > self.limits.max_file_bytes:
            raise EditError(f"{path}: file is too large ({size} bytes, at most {self.limits.max_file_bytes}); "
                            "fix it or import a corrected one")
        raw = path.read_bytes()
        try:
            current = parse_watchlist(raw, path, limits=self.limits)
        except WatchlistError as e:
            raise EditError(f"{user_id}'s watchlist has problems; fix the file or import a corrected one first:\n{e}",
                            e.problems) from None
        return raw.decode("utf-8-sig"), current

    def _commit(self, user_id: str, path: Path, old_text: str | None, new_text: str,
                grandfathered: Iterable[str]) -> Watchlist:
        """Validate the resulting text like a load would, then write it atomically and update memory."""
        try:
            wl = parse_watchlist(new_text, path, universe=self._universe(), limits=self.limits,
                                 grandfathered=grandfathered)
        except WatchlistError as e:
            raise EditError("; ".join(p.short() for p in e.problems), e.problems) from None
        if new_text != old_text:
            _atomic_write(path, new_text)
        with self._state:
            self._lists[user_id] = wl
            self._errors.pop(user_id, None)
            sig = _sig(path)
            if sig is not None:
                self._sigs[user_id] = sig
        return wl

    def _edit(self, user_id: str, mutate: Callable[[CommentedMap, Watchlist], Any]) -> tuple[Watchlist, Any]:
        path = self.path(user_id)
        text, current = self._read_current(user_id, path)
        try:
            rt = _rt_load(text)
        except EditError:
            raise
        except Exception as e:
            raise EditError(f"{path}: cannot be edited automatically ({e}); fix it by hand") from None
        extra = mutate(rt.doc, current)
        new_text = rt.dump()
        return self._commit(user_id, path, text, new_text, current.symbols), extra

    def _create(self, user_id: str, fields: dict[str, Any]) -> Watchlist:
        path = self.path(user_id)
        if path.exists():
            raise EditError(f"a watchlist for {user_id} already exists")
        rt = _rt_load(TEMPLATE)
        self._apply_fields(rt.doc, fields)
        return self._commit(user_id, path, None, rt.dump(), ())

    @staticmethod
    def _apply_fields(doc: CommentedMap, fields: dict[str, Any]) -> None:
        unknown = [k for k in fields if k not in Watchlist.model_fields]
        if unknown:
            raise EditError(f"unknown field {', '.join(unknown)} (known: {', '.join(Watchlist.model_fields)})")
        for k, v in fields.items():
            _set(doc, k, v)

    async def create(self, user_id: str, **fields: Any) -> Watchlist:
        """Write a new file from the commented TEMPLATE with `fields` set; EditError if it already exists."""
        return await self._run(user_id, lambda: self._create(user_id, fields))

    async def ensure(self, user_id: str, **fields: Any) -> tuple[Watchlist, bool]:
        """The user's watchlist, creating it (with `fields`) if missing: (watchlist, created).

        `fields` are used only when creating. An existing file that is invalid raises EditError."""
        def run():
            path = self.path(user_id)
            if path.exists():
                text, current = self._read_current(user_id, path)
                return self._commit(user_id, path, text, text, current.symbols), False
            return self._create(user_id, fields), True
        return await self._run(user_id, run)

    # -- symbols
    def _resolve(self, text: str, pool: Iterable[str] = ()) -> tuple[str | None, str | None]:
        """(symbol, None) or (None, suggestion-or-None). `pool` (e.g. the user's symbols) is tried first."""
        if not isinstance(text, str) or not text.strip() or len(text) > 40:
            return None, None
        pool = set(pool)
        if pool:
            s = normalize(text, pool, self.quote)
            if s:
                return s, None
        universe = self._universe()
        if universe:
            s = normalize(text, universe, self.quote)
            return (s, None) if s else (None, suggest(text, universe | pool, self.quote))
        s = with_quote(text, self.quote)
        if SYMBOL_RE.match(s):
            return s, None
        return None, (suggest(text, pool, self.quote) if pool else None)

    async def add_symbols(self, user_id: str, texts: list[str]) -> EditResult:
        """Add symbols as users type them ("btc" -> BTCUSDT). Unknown ones are reported (with a suggestion) and
        the known ones still added; duplicates are ignored; going over Limits.max_symbols raises EditError."""
        def mutate(doc: CommentedMap, cur: Watchlist):
            added, already, unknown = [], [], {}
            for t in texts:
                s, hint = self._resolve(t)
                if s is None:
                    unknown[t] = hint
                elif s in cur.symbols:
                    if s not in already:
                        already.append(s)
                elif s not in added:
                    added.append(s)
            total = len(cur.symbols) + len(added)
            if added and total > self.limits.max_symbols:
                raise EditError(f"too many symbols: you watch {len(cur.symbols)}, adding {len(added)} would make "
                                f"{total} (at most {self.limits.max_symbols})")
            if added:
                seq = doc.get("symbols")
                if not isinstance(seq, CommentedSeq):
                    _set(doc, "symbols", [*cur.symbols, *added])
                else:
                    if not seq:
                        seq.fa.set_flow_style()     # ruamel forgets the style of an empty `[]`
                    seq.extend(added)
            return added, already, unknown

        wl, (added, already, unknown) = await self._run(user_id, lambda: self._edit(user_id, mutate))
        return EditResult(wl, added=added, already=already, unknown=unknown)

    async def remove_symbols(self, user_id: str, texts: list[str]) -> EditResult:
        """Remove symbols. `already`: known symbols that were not watched; `unknown`: unrecognised texts."""
        def mutate(doc: CommentedMap, cur: Watchlist):
            removed, already, unknown = [], [], {}
            for t in texts:
                s, hint = self._resolve(t, cur.symbols)
                if s is None:
                    unknown[t] = hint
                elif s in cur.symbols:
                    if s not in removed:
                        removed.append(s)
                elif s not in already:
                    already.append(s)
            seq = doc.get("symbols")
            if removed and isinstance(seq, CommentedSeq):
                for i in reversed(range(len(seq))):
                    if isinstance(seq[i], str) and clean(seq[i]) in removed:
                        del seq[i]
            elif removed:
                _set(doc, "symbols", [s for s in cur.symbols if s not in removed])
            return removed, already, unknown

        wl, (removed, already, unknown) = await self._run(user_id, lambda: self._edit(user_id, mutate))
        return EditResult(wl, removed=removed, already=already, unknown=unknown)

    # -- other fields
    async def set_fields(self, user_id: str, **fields: Any) -> Watchlist:
        """Set top-level fields (e.g. min_score=50, alerts=False, quiet_hours="23:00-07:00", timezone=...,
        active=False); an existing key keeps its place and comment, a missing one is appended."""
        def mutate(doc: CommentedMap, cur: Watchlist):
            self._apply_fields(doc, fields)
        return (await self._run(user_id, lambda: self._edit(user_id, mutate)))[0]

    async def mute(self, user_id: str, symbol_text: str, until: datetime) -> Watchlist:
        """Mute one symbol until `until` (naive = UTC). Expired mutes are pruned on the way."""
        until = _aware(until).astimezone(UTC)
        now = datetime.now(UTC)
        if until <= now:
            raise EditError("the mute must end in the future")

        def mutate(doc: CommentedMap, cur: Watchlist):
            s, hint = self._resolve(symbol_text, [*cur.symbols, *cur.muted])
            if s is None:
                raise EditError(f'unknown symbol "{symbol_text}"' + (f" — did you mean {hint}?" if hint else ""))
            m = doc.get("muted")
            if not isinstance(m, CommentedMap):
                _set(doc, "muted", {})
                m = doc["muted"]
            m.fa.set_block_style()
            for k in [k for k, v in m.items() if (d := _rt_datetime(v)) is not None and d <= now]:
                del m[k]
            m[s] = _to_rt(until)
        return (await self._run(user_id, lambda: self._edit(user_id, mutate)))[0]

    async def unmute(self, user_id: str, symbol_text: str | None = None) -> Watchlist:
        """Unmute one symbol (None: all). Not muted -> nothing changes."""
        now = datetime.now(UTC)

        def mutate(doc: CommentedMap, cur: Watchlist):
            m = doc.get("muted")
            if not isinstance(m, CommentedMap):
                return
            if symbol_text is None:
                target = set(map(str, m))
            else:
                s, _ = self._resolve(symbol_text, cur.muted)
                target = {k for k in m if isinstance(k, str) and clean(k) == s}
            target |= {k for k, v in m.items() if (d := _rt_datetime(v)) is not None and d <= now}
            for k in list(m):
                if k in target:
                    del m[k]
            if not m:
                m.fa.set_flow_style()
        return (await self._run(user_id, lambda: self._edit(user_id, mutate)))[0]

    # -- whole file
    def export_yaml(self, user_id: str) -> str:
        """The file's text, comments included."""
        path = self.path(user_id)
        with self._thread_lock(user_id):
            try:
                return path.read_bytes().decode("utf-8-sig")
            except FileNotFoundError:
                raise EditError(f"no watchlist for {user_id} yet") from None

    async def import_yaml(self, user_id: str, text: str, *, source: str = "import") -> Watchlist:
        """Replace the user's file with `text`, validated fully first (errors name `source`:line).

        Identity fields (telegram_chat_id, discord_user_id) are kept from the existing file, never taken from
        the import; the user must already have a watchlist. Bad input raises EditError; the file is unchanged."""
        def run():
            path = self.path(user_id)
            universe = self._universe()
            try:
                parse_watchlist(text, source, universe=universe, limits=self.limits)
            except WatchlistError as e:
                raise EditError(str(e), e.problems) from None
            identity = self._identity(user_id, path)
            old_text = path.read_bytes().decode("utf-8-sig")
            try:
                rt = _rt_load(text)
            except EditError:
                raise
            except Exception as e:
                raise EditError(f"{source}: cannot be read for editing ({e})") from None
            for k in IDENTITY_FIELDS:
                if identity.get(k) is not None:
                    _set(rt.doc, k, identity[k])
                elif k in rt.doc:
                    del rt.doc[k]
            return self._commit(user_id, path, old_text, rt.dump(), ())
        return await self._run(user_id, run)

    def _identity(self, user_id: str, path: Path) -> dict[str, int | None]:
        if not path.exists():
            raise EditError(f"no watchlist for {user_id} yet")
        try:
            wl = parse_watchlist(path.read_bytes(), path, limits=self.limits)
        except WatchlistError:
            wl = self.get(user_id)
            if wl is None:
                try:
                    data = yaml.safe_load(path.read_bytes())
                except Exception:
                    data = None
                data = data if isinstance(data, dict) else {}
                return {k: v if isinstance(v, int) and not isinstance(v, bool) else None
                        for k, v in ((k, data.get(k)) for k in IDENTITY_FIELDS)}
        return {k: getattr(wl, k) for k in IDENTITY_FIELDS}
