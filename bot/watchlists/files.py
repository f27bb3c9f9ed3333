"""Reading a watchlist file and locking the folder: the one place a file's bytes are read, and the lock that
serialises edits between processes.

`read_file` refuses what is not the folder's own (a symlink whose real path is outside the folder, which could
point at `.env`; anything not a regular file) and what is too large, and turns every OS error into a
`WatchlistError` of that file; `load_file` adds parsing (`parse_watchlist`, itself total). Neither raises
anything else except FileNotFoundError (a file that is gone is not a problem, it is no watchlist), so one bad
file is only ever its own problem: start-up, `check-config` and hot reload carry on with every other file.

`folder_lock` is an exclusive `flock` on the folder itself (no lock file to leave behind): two `run`
processes, or a bot and a script, editing the same watchlists take turns, and every edit re-reads the file
inside the lock, so none is lost. The OS drops the lock when the holder dies.
"""
from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Iterable, Iterator

from ..yamlerrors import Problem
from .model import Limits, Watchlist, WatchlistError, parse_watchlist

try:
    import fcntl
except ImportError:       # not POSIX: edits are still serialised within the process, not across processes
    fcntl = None  # type: ignore[assignment]

OUTSIDE = "refused: symlink to outside the watchlist folder"


def _inside(real: Path, folder: Path) -> bool:
    try:
        return real.is_relative_to(folder.resolve())
    except OSError:
        return False


def read_file(path: Path, folder: Path, limits: Limits) -> bytes:
    """The file's bytes; WatchlistError for a symlink leaving `folder`, a non-regular file, a file over
    `limits.max_file_bytes` or any OS error (never echoing a symlink's target); FileNotFoundError when gone."""
    name = str(path)
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        if os.path.lexists(path):          # a dangling symlink: whatever it meant, it is not a watchlist here
            raise WatchlistError([Problem(name, None, None, "refused: symlink to a missing file")]) from None
        raise
    except RuntimeError:                   # a symlink loop (Python < 3.13)
        raise WatchlistError([Problem(name, None, None, "cannot read: a symlink loop")]) from None
    except OSError as e:                   # a symlink loop (3.13+), a permission problem on the way
        raise WatchlistError([Problem(name, None, None, f"cannot read: {_os_reason(e)}")]) from None
    if not _inside(real, folder):
        raise WatchlistError([Problem(name, None, None, OUTSIDE)])
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except OSError as e:
        raise WatchlistError([Problem(name, None, None, f"cannot read: {_os_reason(e)}")]) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise WatchlistError([Problem(name, None, None, "refused: not a regular file")])
        if st.st_size > limits.max_file_bytes:
            raise WatchlistError([Problem(name, None, None, f"file is too large ({st.st_size} bytes, at most "
                                                            f"{limits.max_file_bytes})")])
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limits.max_file_bytes + 1)
    except OSError as e:
        raise WatchlistError([Problem(name, None, None, f"cannot read: {_os_reason(e)}")]) from None
    finally:
        os.close(fd)


def _os_reason(e: BaseException) -> str:
    """An OS error without the paths it carries (a symlink's target must never be echoed)."""
    return getattr(e, "strerror", None) or type(e).__name__


def load_file(path: Path, folder: Path, *, limits: Limits, universe: Iterable[str] | None = None,
              grandfathered: Iterable[str] = ()) -> tuple[bytes, Watchlist]:
    """`read_file` + `parse_watchlist`: (bytes, watchlist). Raises WatchlistError (anything wrong with this file,
    caught broadly) or FileNotFoundError (it is gone), nothing else."""
    try:
        raw = read_file(path, folder, limits)
        return raw, parse_watchlist(raw, path, universe=universe, limits=limits, grandfathered=grandfathered)
    except (WatchlistError, FileNotFoundError):
        raise
    except Exception as e:     # a last resort: one file's trouble never becomes anyone else's
        raise WatchlistError([Problem(str(path), None, None, f"cannot read: {type(e).__name__}")]) from None


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Exclusive, blocking, cross-process: an flock on the folder's own directory handle (created if missing).
    Callers run in worker threads; within a process the per-user locks come first."""
    if fcntl is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)          # closing drops the lock
