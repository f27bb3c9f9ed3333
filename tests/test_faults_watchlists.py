"""The fault matrix, watchlist rows: one user's broken file never takes anyone else down (start-up,
`check-config`, hot reload), symlinks leaving the folder are refused without echoing their target, error
snippets never echo a secret, and edits from two processes are serialised (none lost).
docs/reliability.md ("Watchlists and processes") lists each fault, what happens and which test shows it."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import wait_for

from bot.watchlists import EditError, Limits, WatchlistError, WatchlistRegistry, check_watchlists, parse_watchlist
from bot.yamlerrors import redact, show

ROOT = Path(__file__).resolve().parent.parent
UNIVERSE = {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"        # Telegram-token-shaped, not a real one

# one bad byte in an otherwise fine file, and what the problem says about it (always naming file:line)
CONTROL = "3: not valid YAML: control character {} is not allowed (line 3, column 13); delete it"
UTF8 = "3: not valid UTF-8 text: {} (line 3, column 13); save the file as UTF-8"
BAD_BYTES = [
    pytest.param(b"\x0c", CONTROL.format("U+000C (form feed)"), id="form-feed"),
    pytest.param(b"\x1b", CONTROL.format("U+001B (ESC)"), id="esc"),
    pytest.param(b"\x00", CONTROL.format("U+0000 (NUL)"), id="nul"),
    pytest.param(b"\xff", UTF8.format("invalid start byte 0xFF"), id="invalid-utf8"),
    pytest.param(b"\xc3", UTF8.format("invalid continuation byte 0xC3"), id="cut-utf8"),
]
GOOD = b"name: Bob\nsymbols: [BTCUSDT]\nmin_score: 4"


def poisoned(byte: bytes) -> bytes:
    """GOOD with `byte` inside `min_score: 4_0` (line 3, column 13)."""
    return GOOD + byte + b"0\n"


def touch_later(path: Path, data: bytes) -> None:
    old = path.stat().st_mtime_ns if path.exists() else 0
    path.write_bytes(data)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, max(st.st_mtime_ns, old + 1_000_000_000)))


# ------------------------------------------------------------------------------------------- secret snippets

@pytest.mark.parametrize("value", [
    f"TELEGRAM_BOT_TOKEN={TOKEN}", f"x {TOKEN} y", "api_key: hunter2-and-more", "secret=abc", "password: letmein",
    "deadbeefcafebabe0123456789abcdef0123", "c2VjcmV0LXZhbHVlLXRoYXQtaXMtbG9uZw==",
])
def test_show_and_redact_never_echo_a_secret(value):
    for shown in (show(value), redact(value)):
        assert "[redacted]" in shown
        for part in ("AAHdqTcvCH1v", "hunter2", "abc", "letmein", "deadbeefcafe", "c2VjcmV0"):
            assert part not in shown


@pytest.mark.parametrize("value", ["BTCUSDT", "1000PEPEUSDT", "America/Argentina/Buenos_Aires", "short_squeeze_risk",
                                   "23:00-07:00", "2026-03-29T12:00:00Z", "duplicate key (first on line 1)"])
def test_redact_leaves_ordinary_values_alone(value):
    assert redact(value) == value


def test_a_secret_saved_as_a_watchlist_is_never_echoed(tmp_path):
    (tmp_path / "oops.yaml").write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\n")
    (tmp_path / "oops2.yaml").write_text(f"symbols: [{TOKEN.replace(':', '')}]\nname: {{token: {TOKEN}}}\n")
    (tmp_path / "oops3.yaml").write_text(f"muted:\n  {TOKEN.replace(':', '')}: soon\n")
    msgs = "\n".join(check_watchlists(tmp_path))
    assert "oops.yaml:1: expected a mapping of fields" in msgs and "[redacted]" in msgs
    assert "oops2.yaml:1: symbols[0]" in msgs and "oops3.yaml:2: muted." in msgs
    assert "AAHdqTcv" not in msgs and "123456789" not in msgs
