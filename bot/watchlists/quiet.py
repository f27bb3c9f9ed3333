"""Quiet hours on the user's own clock: a local "HH:MM-HH:MM" window (may wrap midnight) in an IANA time zone.

Pure functions of time (no I/O); `Watchlist.in_quiet_hours` / `quiet_end_after` call them. zoneinfo does the
daylight-saving arithmetic, so the window follows the local wall clock through the changes; see
`window_end_after` for the edge cases.
"""
from __future__ import annotations

import functools
import math
import re
from datetime import datetime, time as dtime, timedelta, timezone
from zoneinfo import ZoneInfo, available_timezones

UTC = timezone.utc
_WINDOW_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@functools.lru_cache(maxsize=1)
def zone_names() -> tuple[str, ...]:
    """Every IANA zone name known here (for "did you mean" hints)."""
    try:
        return tuple(sorted(available_timezones()))
    except Exception:  # pragma: no cover - no tz database at all
        return ()


def zone(name: str) -> ZoneInfo:
    """The zone called `name`; ZoneInfoNotFoundError, ValueError or OSError when there is none."""
    return ZoneInfo(name)


def parse_window(text: str) -> tuple[dtime, dtime]:
    """ "23:00-07:00" -> (start, end) as wall-clock times; ValueError when it is not a valid window."""
    m = _WINDOW_RE.match(text)
    if not m:
        raise ValueError(text)
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError(text)
    return dtime(h1, m1), dtime(h2, m2)


def aware(dt: datetime) -> datetime:
    """`dt` with a time zone: a naive datetime is UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def in_window(now_utc: datetime, tz: ZoneInfo, start: dtime, end: dtime) -> bool:
    """Is the wall-clock time in `tz` inside [start, end) (wrapping midnight when start > end)?"""
    t = aware(now_utc).astimezone(tz).time().replace(tzinfo=None)
    return start <= t < end if start < end else (t >= start or t < end)


def window_end_after(now_utc: datetime, tz: ZoneInfo, start: dtime, end: dtime) -> datetime:
    """The UTC instant the current quiet period ends: the first instant after `now_utc` that is not quiet.

    Computed on the local clock, so DST changes are right: an end time skipped by a spring-forward jump ends
    the period at the jump; a fall-back jump that sets the clock back before the start ends it at the jump;
    an end time that occurs twice ends it at its first occurrence. Returns `now_utc` itself when not quiet.
    """
    now = aware(now_utc).astimezone(UTC)
    if not in_window(now, tz, start, end):
        return now
    day = now.astimezone(tz).date()
    candidates = _transitions(tz, now, now + timedelta(hours=27))
    for d in range(-1, 3):
        candidates += _wall_instants(datetime.combine(day + timedelta(days=d), end), tz)
    return min((c for c in candidates if c > now and not in_window(c, tz, start, end)),
               default=now + timedelta(hours=24))


def _wall_instants(wall: datetime, tz: ZoneInfo) -> list[datetime]:
    """The UTC instants at which the clock in `tz` reads `wall` (naive): none in a gap, two when it repeats."""
    out = []
    for fold in (0, 1):
        u = wall.replace(tzinfo=tz, fold=fold).astimezone(UTC)
        if u.astimezone(tz).replace(tzinfo=None) == wall and u not in out:
            out.append(u)
    return out


def _transitions(tz: ZoneInfo, start: datetime, stop: datetime) -> list[datetime]:
    """UTC instants in (start, stop] at which `tz` changes its UTC offset (to the second)."""
    def offset(ts: int):
        return datetime.fromtimestamp(ts, tz).utcoffset()

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
