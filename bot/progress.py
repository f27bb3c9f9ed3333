"""Progress of long work (the cold-start backfill) on stderr, for the CLI and the running bot alike."""
from __future__ import annotations

import sys
import time
from typing import Callable

Progress = Callable[[int, int], None]


def progress_printer(label: str) -> Progress:
    """A live line on a terminal, every 10 % otherwise (logs, CI)."""
    started = time.monotonic()
    tty = sys.stderr.isatty()
    step = {"next": 0}

    def show(done: int, total: int) -> None:
        elapsed = time.monotonic() - started
        eta = elapsed / done * (total - done) if done else 0
        text = f"{label}: {done}/{total} symbols, ETA {eta:.0f}s"
        if tty:
            print("\r" + text, end="\n" if done == total else "", file=sys.stderr, flush=True)
        elif done * 10 // total >= step["next"] or done == total:
            step["next"] = done * 10 // total + 1
            print(text, file=sys.stderr, flush=True)

    return show
