"""Console output: alerts and the periodic ranked table on stdout, for running with no chat tokens.

With `alert_log` set, each delivered digest is also appended to a JSON-lines file (fsynced), which makes
this sink able to answer `was_delivered` after a crash — exactly-once delivery, verifiable.

Order and guarantee: the log line is written and fsynced first, then the alert is printed. The print is the
delivery; the log is its receipt. A log write that fails (a full disk: ENOSPC; a read-only file system; `/dev/full`)
is reported as an ERROR and the alert is printed anyway, and the send succeeds: a full disk never turns one
alert into several prints, nor silences the console. So each alert is printed exactly once by a running process.
Across a crash: with a working log, an alert whose line was written is never printed again (a kill between the
fsync and the print loses that one print, the log still has it); an alert whose log write failed is known only
to the store, so a kill before the store marked it sent prints it again after the restart (the same one-part
window as the chat platforms). A failed write is cut back to the file's previous size, so no torn line is left.
"""
from __future__ import annotations

import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import TextIO

from .. import report
from ..outbox import Digest

log = logging.getLogger(__name__)


class ConsoleSender:
    channel = "console"

    def __init__(self, stream: TextIO | None = None, alert_log: str | Path | None = None):
        self.stream = stream or sys.stdout
        self.alert_log = Path(alert_log) if alert_log else None
        self.log_failures = 0              # log writes that failed (the alert was printed anyway)
        self._logged: set[str] = set()     # digest keys whose line this process wrote (a print retry skips it)
        if self.alert_log:
            self.alert_log.parent.mkdir(parents=True, exist_ok=True)
            self._drop_torn_tail()

    def render(self, digest: Digest) -> list[str]:
        """One part: the whole digest as text (a terminal has no length limit)."""
        if digest.notice:
            return [report.notice_text(digest.notice)]
        return [report.digest_text(digest.signals, digest.held)]

    async def send_part(self, address: str, part: str, digest: Digest) -> None:
        """Log line first (fsynced), then the print; a failed log write is reported and the alert printed anyway
        (see the module docstring for the guarantee)."""
        if self.alert_log and not set(digest.keys) <= self._logged:
            self._write_log_line(digest)
        print(f"\n🔔 {address}: {part}", file=self.stream, flush=True)

    def _write_log_line(self, digest: Digest) -> None:
        entry = {"keys": digest.keys, "recipient": digest.recipient, "signals": [s["id"] for s in digest.signals]}
        if digest.notice:
            entry["notice"] = digest.notice["kind"]
        line = (json.dumps(entry) + "\n").encode("utf-8")
        fd, size = None, None
        try:
            fd = os.open(self.alert_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            st = os.fstat(fd)
            size = st.st_size if stat.S_ISREG(st.st_mode) else None
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            if size is not None:
                os.fsync(fd)
            self._logged.update(digest.keys)
        except OSError as e:
            self.log_failures += 1
            if fd is not None and size is not None:
                try:
                    os.ftruncate(fd, size)          # no torn line for the next write to follow
                except OSError:
                    pass
            log.error("console: alert log %s: write failed (%s); printing the alert anyway (after a crash the log "
                      "cannot vouch for it)", self.alert_log, e)
        finally:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass

    async def was_delivered(self, key: str) -> bool | None:
        if not self._log_is_file():
            return None
        return key in self.delivered_keys()

    def _log_is_file(self) -> bool:
        """The log can answer for deliveries only as a regular file (never /dev/full, a pipe, a directory)."""
        try:
            return bool(self.alert_log) and stat.S_ISREG(os.stat(self.alert_log).st_mode)
        except OSError:
            return False

    def delivered_keys(self) -> list[str]:
        if not self._log_is_file():
            return []
        keys = []
        for line in self.alert_log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                keys += json.loads(line)["keys"]
            except (ValueError, KeyError, TypeError):
                continue
        return keys

    def _drop_torn_tail(self) -> None:
        """A kill mid-write can leave a partial last line: cut it so the next line starts clean."""
        if not self._log_is_file():
            return
        data = self.alert_log.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.alert_log, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def print_table(self, ts: int | None, results: list[dict], limit: int = 15) -> None:
        ranked = report.ranked(results)
        print("\n" + report.summary(results, ts), file=self.stream)
        print(report.format_table(report.TABLE_COLUMNS, report.table_rows(ranked, limit), {4: 42}),
              file=self.stream, flush=True)
