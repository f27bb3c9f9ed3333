"""Where the watchlist documents live: files in a folder (the default) or rows of a database (hosted: a worker's
disk does not last). Either way a document is the user's YAML text, byte for byte, comments included; the
registry and the edit API see only this interface.

    scan()        user id -> version signature of every document (what hot reload compares)
    sig(uid)      one document's signature, None when there is none
    read(uid)     its bytes; FileNotFoundError when there is none, WatchlistError when it cannot be read
    name(uid)     what errors call it: the file's path, or "watchlist <uid>" in the database
    exists(uid)   is there one
    write(uid, t) replace it (atomically)
    lock(uid)     serialises edits of one user's document across processes
"""
from __future__ import annotations

import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Hashable, Protocol

from ..yamlerrors import Problem
from .files import folder_lock, read_file
from .model import Limits, WatchlistError

EXAMPLE_PREFIX = "example-"


class Documents(Protocol):
    def scan(self) -> dict[str, Hashable]: ...
    def sig(self, uid: str) -> Hashable | None: ...
    def read(self, uid: str) -> bytes: ...
    def name(self, uid: str) -> str: ...
    def exists(self, uid: str) -> bool: ...
    def write(self, uid: str, text: str) -> None: ...
    def lock(self, uid: str) -> AbstractContextManager: ...


def _file_sig(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError:            # e.g. a symlink loop: still read (and reported) by read_file, once
        return -1, -1, -1
    return st.st_mtime_ns, st.st_size, st.st_ino


class FileDocuments:
    """`<directory>/<user id>.yaml`; `example-*.yaml` are documentation, skipped unless `include_examples`."""

    def __init__(self, directory: Path, limits: Limits, include_examples: bool = False):
        self.directory, self.limits, self.include_examples = Path(directory), limits, include_examples

    def path(self, uid: str) -> Path:
        return self.directory / f"{uid}.yaml"

    def scan(self) -> dict[str, Hashable]:
        try:
            entries = list(self.directory.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return {}
        out: dict[str, Hashable] = {}
        for p in entries:
            if p.suffix != ".yaml" or p.name.startswith("."):
                continue
            if p.stem.startswith(EXAMPLE_PREFIX) and not self.include_examples:
                continue
            if p.is_symlink() or p.is_file():    # a symlink is read (and refused if it leaves the folder)
                sig = _file_sig(p)
                if sig is not None:
                    out[p.stem] = sig
        return out

    def sig(self, uid: str) -> Hashable | None:
        return _file_sig(self.path(uid))

    def read(self, uid: str) -> bytes:
        return read_file(self.path(uid), self.directory, self.limits)

    def name(self, uid: str) -> str:
        return str(self.path(uid))

    def exists(self, uid: str) -> bool:
        return self.path(uid).exists()

    def write(self, uid: str, text: str) -> None:
        from .editing import atomic_write
        atomic_write(self.path(uid), text)

    def lock(self, uid: str) -> AbstractContextManager:
        return folder_lock(self.directory)


class DatabaseDocuments:
    """Rows of the `watchlists` table through the store (`watchlist_versions`, `watchlist_text`, `put_watchlist`,
    `watchlist_lock`); the signature is the row's version, which every write increments."""

    def __init__(self, store, limits: Limits):
        self.store, self.limits = store, limits

    def scan(self) -> dict[str, Hashable]:
        return dict(self.store.watchlist_versions())

    def sig(self, uid: str) -> Hashable | None:
        got = self.store.watchlist_text(uid)
        return None if got is None else got[1]

    def read(self, uid: str) -> bytes:
        got = self.store.watchlist_text(uid)
        if got is None:
            raise FileNotFoundError(uid)
        raw = got[0].encode("utf-8", "surrogateescape")
        if len(raw) > self.limits.max_file_bytes:
            raise WatchlistError([Problem(self.name(uid), None, None, f"file is too large ({len(raw)} bytes, at "
                                                                      f"most {self.limits.max_file_bytes})")])
        return raw

    def name(self, uid: str) -> str:
        return f"watchlist {uid}"

    def exists(self, uid: str) -> bool:
        return self.store.watchlist_text(uid) is not None

    def write(self, uid: str, text: str) -> None:
        self.store.put_watchlist(uid, text, int(time.time() * 1000))

    def lock(self, uid: str) -> AbstractContextManager:
        return self.store.watchlist_lock(uid)


def copy_documents(source: Documents, target: Documents, limits: Limits) -> tuple[list[str], list[str]]:
    """Copy every document of `source` into `target` as it is, byte for byte (comments included), after checking
    it is a valid watchlist (shape only: the market's symbols are not known here). Returns (user ids copied,
    problems): an invalid document is reported with the source's file:line and not copied; the others are."""
    from .model import parse_watchlist
    from .registry import valid_user_id
    copied, problems = [], []
    for uid in sorted(source.scan()):
        if not valid_user_id(uid):
            problems.append(f"{source.name(uid)}: not a valid user id for a watchlist; skipped")
            continue
        try:
            raw = source.read(uid)
            parse_watchlist(raw, source.name(uid), limits=limits)
        except FileNotFoundError:
            continue
        except WatchlistError as e:
            problems += e.messages
            continue
        text = raw.decode("utf-8-sig", errors="surrogateescape")
        if target.exists(uid) and target.read(uid).decode("utf-8-sig", errors="surrogateescape") == text:
            continue               # already there, unchanged: no new version
        with target.lock(uid):
            target.write(uid, text)
        copied.append(uid)
    return copied, problems
