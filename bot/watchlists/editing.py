"""Editing watchlists safely: comment-preserving round-trip edits, atomic writes, per-user locks.

Reading is PyYAML's job (model.py). Editing uses ruamel.yaml's round-trip mode, so comments, blank lines, key
order, quoting and the file's own indentation survive and only the changed values are rewritten. Every edit
1. is serialized per user (`UserLocks`: an asyncio.Lock per user and event loop, plus a threading.Lock per user)
   and across processes (`documents.lock`: files: an flock on the folder; database: an advisory lock; held
   around read-modify-write),
2. re-reads the document (files: `files.read_file`, which refuses symlinks leaving the folder), so hand edits
   and other processes' edits made meanwhile are respected,
3. validates the *resulting text* with the same parser and model as loading (`parse_watchlist`); a refused edit
   raises EditError and leaves the file untouched,
4. replaces the document atomically (files: `atomic_write`; database: one UPDATE).

`Editing` is the edit API (create, ensure, add_symbols, remove_symbols, set_fields, mute, unmute, export_yaml,
import_yaml). WatchlistRegistry mixes it in and provides what it uses: `path(user_id)`, `limits`, `quote`,
`_universe()`, `_locks` (a UserLocks), `get(user_id)`, `_remember(user_id, watchlist)` and `documents`.
"""
from __future__ import annotations

import asyncio
import io
import os
import re
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from ..symbols import SYMBOL_RE, clean, normalize, suggest, with_quote
from ..yamlerrors import Problem
from .documents import Documents
from .model import IDENTITY_FIELDS, TEMPLATE, Limits, Watchlist, WatchlistError, as_utc, parse_watchlist
from .quiet import UTC, aware


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


class UserLocks:
    """One threading.Lock per user (loading and edits run in threads) and one asyncio.Lock per user and event
    loop (edits queue up without blocking the loop)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._threads: dict[str, threading.Lock] = {}
        self._loops: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def thread(self, user_id: str) -> threading.Lock:
        with self._guard:
            return self._threads.setdefault(user_id, threading.Lock())

    def task(self, user_id: str) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._guard:
            per_loop = self._loops.get(loop)
            if per_loop is None:
                per_loop = self._loops[loop] = {}
            return per_loop.setdefault(user_id, asyncio.Lock())


# ------------------------------------------------------------------------------------------- round-trip editing

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
        value = aware(value).astimezone(UTC)
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
        return as_utc(v)
    except Exception:
        return None


def atomic_write(path: Path, text: str) -> None:
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


# ------------------------------------------------------------------------------------------------- the edit API

class Editing:
    """The edit API of WatchlistRegistry (mixed in). Besides these attributes the host provides the methods
    path(user_id) (checks the id), _universe(), get(user_id) and _remember(user_id, watchlist); `documents` is
    where the text lives (files, or the database: bot.watchlists.documents)."""
    directory: Path
    limits: Limits
    quote: str
    documents: Documents
    _locks: UserLocks

    async def _run(self, user_id: str, fn: Callable[[], Any]) -> Any:
        self.path(user_id)                                   # fail fast on a bad id

        def locked():
            with self._locks.thread(user_id), self.documents.lock(user_id):   # this process, then all of them
                return fn()

        async with self._locks.task(user_id):
            return await asyncio.to_thread(locked)

    def _read_raw(self, user_id: str) -> bytes:
        """The document's bytes (files: `files.read_file`, symlinks leaving the folder refused; size bounded)."""
        try:
            return self.documents.read(user_id)
        except FileNotFoundError:
            raise EditError(f"no watchlist for {user_id} yet") from None
        except WatchlistError as e:
            hint = "; fix it or import a corrected one" if "too large" in str(e) else ""
            raise EditError(f"{e}{hint}", e.problems) from None

    def _read_current(self, user_id: str) -> tuple[str, Watchlist]:
        """The file's text and its structural validation (universe not applied: delisted symbols stay editable)."""
        raw = self._read_raw(user_id)
        try:
            current = parse_watchlist(raw, self.documents.name(user_id), limits=self.limits)
        except WatchlistError as e:
            raise EditError(f"{user_id}'s watchlist has problems; fix the file or import a corrected one first:\n{e}",
                            e.problems) from None
        return raw.decode("utf-8-sig"), current

    def _commit(self, user_id: str, old_text: str | None, new_text: str, grandfathered: Iterable[str]) -> Watchlist:
        """Validate the resulting text like a load would, then write it atomically and update memory."""
        try:
            wl = parse_watchlist(new_text, self.documents.name(user_id), universe=self._universe(),
                                 limits=self.limits, grandfathered=grandfathered)
        except WatchlistError as e:
            raise EditError("; ".join(p.short() for p in e.problems), e.problems) from None
        if new_text != old_text:
            self.documents.write(user_id, new_text)
        self._remember(user_id, wl)
        return wl

    def _edit(self, user_id: str, mutate: Callable[[CommentedMap, Watchlist], Any]) -> tuple[Watchlist, Any]:
        self.path(user_id)
        text, current = self._read_current(user_id)
        try:
            rt = _rt_load(text)
        except EditError:
            raise
        except Exception as e:
            raise EditError(f"{self.documents.name(user_id)}: cannot be edited automatically ({e}); fix it by hand") \
                from None
        extra = mutate(rt.doc, current)
        new_text = rt.dump()
        return self._commit(user_id, text, new_text, current.symbols), extra

    def _create(self, user_id: str, fields: dict[str, Any]) -> Watchlist:
        self.path(user_id)
        if self.documents.exists(user_id):
            raise EditError(f"a watchlist for {user_id} already exists")
        rt = _rt_load(TEMPLATE)
        self._apply_fields(rt.doc, fields)
        return self._commit(user_id, None, rt.dump(), ())

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
            self.path(user_id)
            if self.documents.exists(user_id):
                text, current = self._read_current(user_id)
                return self._commit(user_id, text, text, current.symbols), False
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
        until = aware(until).astimezone(UTC)
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
        self.path(user_id)
        with self._locks.thread(user_id):
            return self._read_raw(user_id).decode("utf-8-sig", errors="replace")

    async def import_yaml(self, user_id: str, text: str, *, source: str = "import") -> Watchlist:
        """Replace the user's file with `text`, validated fully first (errors name `source`:line).

        Identity fields (telegram_chat_id, discord_user_id) are kept from the existing file, never taken from
        the import; the user must already have a watchlist. Bad input raises EditError; the file is unchanged."""
        def run():
            self.path(user_id)
            universe = self._universe()
            try:
                parse_watchlist(text, source, universe=universe, limits=self.limits)
            except WatchlistError as e:
                raise EditError(str(e), e.problems) from None
            old_text = self._read_raw(user_id).decode("utf-8-sig", errors="replace")
            identity = self._identity(user_id)
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
            return self._commit(user_id, old_text, rt.dump(), ())
        return await self._run(user_id, run)

    def _identity(self, user_id: str) -> dict[str, int | None]:
        raw = self._read_raw(user_id)
        try:
            wl = parse_watchlist(raw, self.documents.name(user_id), limits=self.limits)
        except WatchlistError:
            wl = self.get(user_id)
            if wl is None:
                try:
                    data = yaml.safe_load(raw)
                except Exception:
                    data = None
                data = data if isinstance(data, dict) else {}
                return {k: v if isinstance(v, int) and not isinstance(v, bool) else None
                        for k, v in ((k, data.get(k)) for k in IDENTITY_FIELDS)}
        return {k: getattr(wl, k) for k in IDENTITY_FIELDS}
