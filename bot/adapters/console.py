"""Console output: alerts and the periodic ranked table on stdout, for running with no chat tokens.

With `alert_log` set, each delivered digest is also appended to a JSON-lines file (fsynced), which makes
this sink able to answer `was_delivered` after a crash — exactly-once delivery, verifiable.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TextIO

from .. import report
from ..outbox import Digest


class ConsoleSender:
    channel = "console"

    def __init__(self, stream: TextIO | None = None, alert_log: str | Path | None = None):
        self.stream = stream or sys.stdout
        self.alert_log = Path(alert_log) if alert_log else None
        if self.alert_log:
            self.alert_log.parent.mkdir(parents=True, exist_ok=True)
            self._drop_torn_tail()

    def render(self, digest: Digest) -> list[str]:
        """One part: the whole digest as text (a terminal has no length limit)."""
        return [report.digest_text(digest.signals, digest.held)]

    async def send_part(self, address: str, part: str, digest: Digest) -> None:
        print(f"\n🔔 {address}: {part}", file=self.stream, flush=True)
        if self.alert_log:
            line = json.dumps({"keys": digest.keys, "recipient": digest.recipient,
                               "signals": [s["id"] for s in digest.signals]})
            with open(self.alert_log, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())

    async def was_delivered(self, key: str) -> bool | None:
        if not self.alert_log:
            return None
        return key in self.delivered_keys()

    def delivered_keys(self) -> list[str]:
        if not self.alert_log or not self.alert_log.exists():
            return []
        keys = []
        for line in self.alert_log.read_text(encoding="utf-8").splitlines():
            try:
                keys += json.loads(line)["keys"]
            except (ValueError, KeyError):
                continue
        return keys

    def _drop_torn_tail(self) -> None:
        """A kill mid-write can leave a partial last line: cut it so the next line starts clean."""
        if not self.alert_log.exists():
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
