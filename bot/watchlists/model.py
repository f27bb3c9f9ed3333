"""The watchlist schema: the `Watchlist` model, one file's validation with file:line errors, and the
commented TEMPLATE new files start from.

`Watchlist` is the one definition of the schema: every key, its type, default and bounds (its field
descriptions say what each key means; docs/watchlists.md is the user-facing reference and TEMPLATE the
commented file, both checked against the model by tests). Band and regime names are bot.vocabulary's;
symbols are normalised by bot.symbols.clean.

Reading uses PyYAML's SafeLoader only: its node tree gives file:line for every error (bot.yamlerrors formats
them), e.g. `config/watchlists/alice.yaml:7: symbols[2]: expected a symbol such as BTCUSDT, got 12`.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Iterable
from zoneinfo import ZoneInfoNotFoundError

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr,
                      ValidationError, ValidationInfo, field_validator)

from ..symbols import SYMBOL_RE, clean, suggest
from ..vocabulary import ALERT_REGIMES, DEFAULT_BANDS, Band, RegimeKey
from ..yamlerrors import Problem, invalid, line_of, redact, show
from ..yamlerrors import problems as validation_problems
from .quiet import UTC, aware, in_window, parse_window, window_end_after, zone, zone_names

IDENTITY_FIELDS = ("telegram_chat_id", "discord_user_id")   # where alerts go: never taken from an /import
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


def as_utc(v: Any) -> datetime:
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


def _number(v: Any) -> Any:
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise invalid(f"expected a number such as 0.5, got {show(v)}")
    return v


WatchedSymbol = Annotated[str, BeforeValidator(_watched_symbol)]
MutedSymbol = Annotated[str, BeforeValidator(_symbol_shape)]
UtcDatetime = Annotated[datetime, BeforeValidator(as_utc)]
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
    squeeze_anywhere: StrictBool = Field(
        False, description="Squeeze-risk regimes of ANY symbol, whatever its score (its inputs net out).")
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
    liqmap_within_pct: Annotated[Annotated[float, Field(ge=0.01, le=10)] | None, BeforeValidator(_number)] = Field(
        None, description="Opt-in: alert when price comes within this % of a large (top-quartile) estimated "
                          "liquidation cluster of a LiqMap symbol you watch; null = off.")

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
            zone(v)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            close = difflib.get_close_matches(v, zone_names(), n=1, cutoff=0.6)
            hint = f" — did you mean {close[0]}?" if close else " (use an IANA name such as Europe/Berlin)"
            raise invalid(f"unknown time zone {show(v)}{hint}") from None
        return v

    @field_validator("quiet_hours", mode="before")
    @classmethod
    def _valid_quiet(cls, v: Any) -> str | None:
        if v is None:
            return None
        try:
            start, end = parse_window(v) if isinstance(v, str) else parse_window("")
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
    def _window(self):
        if not self.quiet_hours:
            return None
        start, end = parse_window(self.quiet_hours)
        return zone(self.timezone), start, end

    def in_quiet_hours(self, now_utc: datetime) -> bool:
        """True when the user's local wall-clock time is inside quiet_hours ([start, end), wrapping midnight)."""
        w = self._window()
        return w is not None and in_window(now_utc, *w)

    def quiet_end_after(self, now_utc: datetime) -> datetime:
        """The UTC instant the current quiet period ends: the first instant after `now_utc` that is not quiet.

        Computed on the user's local clock with zoneinfo, so DST changes are right: an end time skipped by a
        spring-forward jump ends the period at the jump; a fall-back jump that sets the clock back before the
        start ends it at the jump; an end time that occurs twice ends it at its first occurrence.
        Returns `now_utc` itself when not in quiet hours. (bot.watchlists.quiet.window_end_after does the work.)
        """
        w = self._window()
        return aware(now_utc).astimezone(UTC) if w is None else window_end_after(now_utc, *w)

    def is_muted(self, symbol: str, now_utc: datetime) -> bool:
        until = self.muted.get(clean(symbol))
        return until is not None and aware(now_utc) < until


# ---------------------------------------------------------------------------------------------------- parsing

class WatchlistError(Exception):
    """A watchlist file (or text) that cannot be used; str() is one `path:line: field: message` per line."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    @property
    def messages(self) -> list[str]:
        return [str(p) for p in self.problems]


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
                        problems.append(Problem(path, k.start_mark.line + 1, redact(k.value),
                                                f"duplicate key (first on line {keys[k.value]})"))
                    keys.setdefault(k.value, k.start_mark.line + 1)
                stack += [k, v]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value
        if len(problems) >= _MAX_PROBLEMS:
            break
    return sorted(problems, key=lambda p: p.line or 0)


_CONTROL_NAMES = {0x00: "NUL", 0x07: "bell", 0x08: "backspace", 0x0B: "vertical tab", 0x0C: "form feed",
                  0x1B: "ESC", 0x7F: "DEL", 0xFFFE: "not a character", 0xFFFF: "not a character"}


def _control_character(e: yaml.reader.ReaderError, text: str, path: str) -> Problem:
    """PyYAML refuses control characters (form feed, ESC, NUL, ...) anywhere in the text: say where and which."""
    pos = e.position if isinstance(e.position, int) and 0 <= e.position <= len(text) else None
    if pos is None:
        return Problem(path, None, None, "not valid YAML: the text holds a character YAML does not allow")
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    code = e.character if isinstance(e.character, int) else ord(text[pos]) if pos < len(text) else 0
    name = _CONTROL_NAMES.get(code)
    return Problem(path, line, None, f"not valid YAML: control character U+{code:04X}{f' ({name})' if name else ''} "
                                     f"is not allowed (line {line}, column {column}); delete it")


def _load_yaml(text: str, path: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree and data, PyYAML SafeLoader. Never raises anything but WatchlistError: whatever
    the parser raises becomes a Problem of this file, so one broken file is never anyone else's problem."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)        # the reader checks every character up front
        root = loader.get_single_node()
        if root is not None:
            problems = _structure_problems(root, path)
            if problems:
                raise WatchlistError(problems)
        data = loader.construct_document(root) if root is not None else None
        return root, data
    except WatchlistError:
        raise
    except yaml.reader.ReaderError as e:
        raise WatchlistError([_control_character(e, text, path)]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        context = e.context
        if context and e.context_mark and mark and e.context_mark.line != mark.line:
            context += f" (started on line {e.context_mark.line + 1})"
        desc = redact(", ".join(x for x in (context, e.problem) if x) or "syntax error")
        where = f" (line {line}, column {mark.column + 1})" if mark else ""
        raise WatchlistError([Problem(path, line, None, f"not valid YAML: {desc}{where}")]) from None
    except RecursionError:
        raise WatchlistError([Problem(path, None, None, "not valid YAML: nested too deeply")]) from None
    except Exception as e:   # e.g. a timestamp-shaped value that is not a real date; anything else the parser raises
        detail = redact(str(e).splitlines()[0][:120]) if str(e) else type(e).__name__
        raise WatchlistError([Problem(path, None, None, f"not valid YAML: {detail}")]) from None
    finally:
        if loader is not None:
            loader.dispose()


def parse_watchlist(text: str | bytes, path: str | Path = "<text>", *, universe: Iterable[str] | None = None,
                    limits: Limits = Limits(), grandfathered: Iterable[str] = ()) -> Watchlist:
    """Validate one watchlist text (PyYAML SafeLoader + `Watchlist`); raise WatchlistError naming path:line.

    `universe`: known symbols (None or empty: symbols are only checked for shape). `grandfathered`: symbols
    accepted even if not in the universe (the edit API passes the ones the file already had).

    Total: it raises WatchlistError and nothing else, whatever the text holds (control characters, invalid
    UTF-8, anything the parser or a validator raises), so a broken file is only ever its own problem.
    """
    path = str(path)
    try:
        return _parse(text, path, universe, limits, grandfathered)
    except WatchlistError:
        raise
    except RecursionError:
        raise WatchlistError([Problem(path, None, None, "nested too deeply")]) from None
    except Exception as e:       # a last resort: never a traceback, never another file's problem
        raise WatchlistError([Problem(path, None, None, f"cannot be read as a watchlist ({type(e).__name__})")]) \
            from None


def _parse(text: str | bytes, path: str, universe: Iterable[str] | None, limits: Limits,
           grandfathered: Iterable[str]) -> Watchlist:
    raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    if len(raw) > limits.max_file_bytes:
        raise WatchlistError([Problem(path, None, None,
                                      f"file is too large ({len(raw)} bytes, at most {limits.max_file_bytes})")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise WatchlistError([Problem(path, line, None, f"not valid UTF-8 text: {e.reason} 0x{raw[e.start]:02X} "
                                                        f"(line {line}, column {column}); save the file as UTF-8")]) \
            from None
    root, data = _load_yaml(text, path)
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
        problems = validation_problems(e, path, root, known_fields=Watchlist.model_fields)
        problems.sort(key=lambda p: p.line or 0)
        raise WatchlistError(problems[:_MAX_PROBLEMS]) from None


# ---------------------------------------------------------------------------------------------------- template

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
squeeze_anywhere: false    # also squeeze-risk regimes of ANY symbol, whatever its score
bias_flips: true           # alert when the bias flips LONG <-> SHORT at a high score
cooldown_minutes: 60       # at most one alert per symbol and rule in this many minutes (0-1440)

timezone: UTC              # IANA time zone for quiet hours, e.g. Europe/Berlin, America/New_York
quiet_hours: null          # e.g. "23:00-07:00" (may wrap midnight); null = never quiet
quiet_mode: digest         # during quiet hours: digest (one summary when they end) or drop
muted: {}                  # SYMBOL: UTC time until which alerts for it are muted (/mute)
active: true               # set to false by the bot when it cannot reach you (e.g. you blocked it)
liqmap_within_pct: null    # e.g. 0.5: alert when price comes within 0.5 % of a large estimated liquidation cluster
                           # (LiqMap symbols you watch, all of them when symbols is empty); null = off
"""
