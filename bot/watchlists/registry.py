"""The registry of all users' watchlists: loaded from one directory, hot-reloaded, edited through `Editing`.

Files live in one directory (default `config/watchlists/`); the user id is the file stem:
`tg-123456789.yaml` (a Telegram user), `tg-g1001234.yaml` (a Telegram group), `dc-987654321.yaml` (a Discord
user) or any hand-made name such as `alice.yaml`. Files named `example-*.yaml` are documentation: the registry
skips them (they are still checked by `check_watchlists`).

A file that was valid and becomes invalid keeps its last good version active until it is fixed; `errors` holds
the current problem per user. Whatever is wrong with one file (invalid YAML, control characters, invalid UTF-8,
a symlink leaving the folder, an OS error) is that file's problem only: loading goes on with every other file. Reloads compare (mtime, size, inode) and re-read only what changed.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Callable, Hashable, Iterable

from ..yamlerrors import Problem, show
from .documents import EXAMPLE_PREFIX, Documents, FileDocuments
from .editing import EditError, Editing, UserLocks
from .files import load_file
from .model import Limits, Watchlist, WatchlistError, parse_watchlist

DEFAULT_DIRECTORY = Path("config/watchlists")
_USER_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+=-]{0,99}$")


def valid_user_id(user_id: object) -> bool:
    """A user id that is a safe file name (and so a safe key anywhere)."""
    return isinstance(user_id, str) and bool(_USER_ID_RE.match(user_id)) and ".." not in user_id


class WatchlistRegistry(Editing):
    """All users' watchlists: loaded from a directory, hot-reloaded, edited safely.

    Thread- and task-safe. Reads (`get`, `all`, `items`, lookups) never touch the disk. Edits (the `Editing`
    methods: add_symbols, set_fields, mute, import_yaml, ...) re-read the file, are serialized per user, validate
    the resulting text with the same parser used for loading and replace the file atomically; a refused edit
    raises EditError and leaves the file untouched.
    """

    def __init__(self, directory: str | Path = DEFAULT_DIRECTORY, universe: Callable[[], set[str]] | None = None,
                 limits: Limits = Limits(), *, quote: str = "USDT", include_examples: bool = False,
                 documents: Documents | None = None):
        self.directory = Path(directory)
        self.limits = limits
        # where the YAML documents live: files in `directory` (default) or the database (DatabaseDocuments)
        self.documents = documents or FileDocuments(self.directory, limits, include_examples)
        self.quote = quote
        self.include_examples = include_examples
        self._universe_fn = universe
        self._state = threading.RLock()
        self._lists: dict[str, Watchlist] = {}
        self._errors: dict[str, str] = {}
        self._sigs: dict[str, Hashable] = {}
        self._locks = UserLocks()

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
        if not valid_user_id(user_id):
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

    def _load_one(self, uid: str, universe: set[str] | None) -> tuple[bool, list[str]]:
        """(Re)load one document under its user lock; (active version changed, problems)."""
        with self._locks.thread(uid):
            sig = self.documents.sig(uid)
            if sig is None:
                return self._forget(uid), []
            try:
                wl = self._load_document(uid, universe)
            except FileNotFoundError:
                return self._forget(uid), []
            except WatchlistError as e:
                with self._state:
                    self._sigs[uid] = sig
                    self._errors[uid] = str(e)
                return False, e.messages
            with self._state:
                self._sigs[uid] = sig
                self._errors.pop(uid, None)
                changed = self._lists.get(uid) != wl
                self._lists[uid] = wl
            return changed, []

    def _load_document(self, uid: str, universe: set[str] | None) -> Watchlist:
        """Read and parse one document: WatchlistError (anything wrong with it) or FileNotFoundError (gone)."""
        if isinstance(self.documents, FileDocuments):
            return load_file(self.documents.path(uid), self.directory, limits=self.limits, universe=universe)[1]
        try:
            raw = self.documents.read(uid)
        except (WatchlistError, FileNotFoundError):
            raise
        except Exception as e:     # a last resort: one document's trouble never becomes anyone else's
            raise WatchlistError([Problem(self.documents.name(uid), None, None,
                                          f"cannot read: {type(e).__name__}")]) from None
        return parse_watchlist(raw, self.documents.name(uid), universe=universe, limits=self.limits)

    def _remember(self, uid: str, wl: Watchlist) -> None:
        """An edit's result becomes the active version (it was validated and written)."""
        with self._state:
            self._lists[uid] = wl
            self._errors.pop(uid, None)
            sig = self.documents.sig(uid)
            if sig is not None:
                self._sigs[uid] = sig

    def _forget(self, uid: str) -> bool:
        with self._state:
            self._sigs.pop(uid, None)
            self._errors.pop(uid, None)
            return self._lists.pop(uid, None) is not None

    def load_all(self) -> list[str]:
        """(Re)load every *.yaml; returns problem messages. A bad file keeps its last good version (never raises)."""
        found = self.documents.scan()
        universe = self._universe()
        problems: list[str] = []
        for uid in sorted(found):
            problems += self._load_one(uid, universe)[1]
        with self._state:
            gone = [uid for uid in set(self._lists) | set(self._sigs) | set(self._errors) if uid not in found]
        for uid in gone:
            with self._locks.thread(uid):
                if self.documents.sig(uid) is None:
                    self._forget(uid)
        return problems

    def reload_if_changed(self) -> tuple[list[str], list[str]]:
        """Reload new or changed files (by mtime, size, inode) and drop deleted ones.

        Returns (user ids whose active watchlist changed, problems found in this pass). A file that stays
        broken is reported once, not on every call; `errors` holds the current state.
        """
        found = self.documents.scan()
        universe = None
        changed: list[str] = []
        problems: list[str] = []
        with self._state:
            known = dict(self._sigs)
        for uid in sorted(found):
            if known.get(uid) == found[uid]:
                continue
            if universe is None:
                universe = self._universe() or set()
            did, errs = self._load_one(uid, universe or None)
            if did:
                changed.append(uid)
            problems += errs
        with self._state:
            gone = [uid for uid in set(self._lists) | set(self._sigs) if uid not in found]
        for uid in sorted(gone):
            with self._locks.thread(uid):
                if self.documents.sig(uid) is None and self._forget(uid):
                    changed.append(uid)
        return changed, problems


def check_watchlists(directory: str | Path = DEFAULT_DIRECTORY,
                     universe: Iterable[str] | Callable[[], Iterable[str]] | None = None,
                     limits: Limits = Limits()) -> list[str]:
    """Validate every *.yaml in `directory` (example files included); messages, empty when all are valid.

    A missing directory holds no watchlists (as for the registry), so it is not a problem. Each file is read and
    parsed on its own (`load_file`): whatever is wrong with one is reported for that file, and the rest are
    still checked."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    known = universe() if callable(universe) else universe
    out = []
    for p in sorted(directory.glob("*.yaml")):
        if p.name.startswith(".") or not (p.is_symlink() or p.is_file()):
            continue
        try:
            load_file(p, directory, limits=limits, universe=known)
        except WatchlistError as e:
            out += e.messages
        except FileNotFoundError:
            pass                  # deleted while checking
    return out
