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


# ------------------------------------------------------------------------------ one bad file is its own problem

@pytest.mark.parametrize("byte, expected", BAD_BYTES)
def test_a_bad_byte_is_a_file_line_problem_of_that_file(byte, expected):
    with pytest.raises(WatchlistError) as e:
        parse_watchlist(poisoned(byte), "wl/bob.yaml")
    assert str(e.value) == f"wl/bob.yaml:{expected}"


@pytest.mark.parametrize("text", ["a: !!python/object:os.system x\n", "a: !custom x\n", "x: 2026-13-45 01:02:03\n",
                                  "[" * 5000, "{a: 1, b: [" * 300, "\ufeff\ufeffname: x\n", "a: \ud800\n",
                                  "a: \x85b\n", "key: *undefined\n"])
def test_whatever_the_parser_raises_is_a_watchlist_error(text, no_pending_garbage):
    """The parser is total: any text is a Watchlist or a WatchlistError naming the file, never another exception."""
    try:
        parse_watchlist(text, "wl/x.yaml")
    except WatchlistError as e:
        assert str(e).startswith("wl/x.yaml") and "Traceback" not in str(e)


@pytest.mark.parametrize("byte, expected", BAD_BYTES)
def test_start_up_and_check_config_carry_on_with_every_other_file(tmp_path, byte, expected):
    (tmp_path / "alice.yaml").write_text("symbols: [ETHUSDT]\n")
    (tmp_path / "bob.yaml").write_bytes(poisoned(byte))
    (tmp_path / "carol.yaml").write_text("symbols: [SOLUSDT]\n")
    reg = WatchlistRegistry(tmp_path, universe=lambda: UNIVERSE)
    assert reg.load_all() == [f"{tmp_path / 'bob.yaml'}:{expected}"]
    assert [uid for uid, _ in reg.items()] == ["alice", "carol"] and set(reg.errors) == {"bob"}
    assert check_watchlists(tmp_path, UNIVERSE) == [f"{tmp_path / 'bob.yaml'}:{expected}"]


@pytest.mark.parametrize("byte, expected", BAD_BYTES)
def test_hot_reload_keeps_the_last_good_version_and_picks_up_everyone_else(tmp_path, byte, expected):
    touch_later(tmp_path / "alice.yaml", b"symbols: [ETHUSDT]\n")
    touch_later(tmp_path / "bob.yaml", GOOD + b"0\n")
    reg = WatchlistRegistry(tmp_path, universe=lambda: UNIVERSE)
    assert reg.load_all() == []
    good = reg.get("bob")
    touch_later(tmp_path / "bob.yaml", poisoned(byte))            # bob breaks his file ...
    touch_later(tmp_path / "alice.yaml", b"symbols: [ETHUSDT, SOLUSDT]\n")   # ... in the same pass alice edits hers
    touch_later(tmp_path / "dave.yaml", b"symbols: [BTCUSDT]\n")             # ... and dave arrives
    changed, problems = reg.reload_if_changed()
    assert sorted(changed) == ["alice", "dave"] and problems == [f"{tmp_path / 'bob.yaml'}:{expected}"]
    assert reg.get("bob") is good and reg.get("alice").symbols == ["ETHUSDT", "SOLUSDT"]
    assert reg.reload_if_changed() == ([], [])                   # reported once
    touch_later(tmp_path / "bob.yaml", GOOD + b"5\n")
    assert reg.reload_if_changed() == (["bob"], []) and reg.get("bob").min_score == 45


async def test_the_bot_starts_with_a_broken_watchlist(make_services, tmp_path):
    """`run` builds its services the one way (`build_services`): a poisoned file does not stop it."""
    folder = tmp_path / "watchlists"
    folder.mkdir()
    (folder / "alice.yaml").write_text("telegram_chat_id: 1\n")
    (folder / "bob.yaml").write_bytes(poisoned(b"\x1b"))
    svc = make_services()
    assert [uid for uid, _ in svc.watchlists.items()] == ["alice"] and set(svc.watchlists.errors) == {"bob"}


async def test_a_broken_file_can_still_be_exported_and_replaced_by_import(tmp_path):
    """The owner of a poisoned file gets it back (/export, bad bytes replaced) and can /import a fixed one."""
    reg = WatchlistRegistry(tmp_path, universe=lambda: UNIVERSE)
    await reg.create("bob", telegram_chat_id=7)
    touch_later(tmp_path / "bob.yaml", b"telegram_chat_id: 7\nname: B\xffb\x1b\n")
    reg.reload_if_changed()
    assert reg.export_yaml("bob") == "telegram_chat_id: 7\nname: B\ufffdb\x1b\n"
    with pytest.raises(EditError, match="has problems"):
        await reg.add_symbols("bob", ["btc"])
    wl = await reg.import_yaml("bob", "name: Bob\nsymbols: [BTCUSDT]\n")
    assert wl.telegram_chat_id == 7 and wl.symbols == ["BTCUSDT"] and reg.errors == {}


def test_check_config_names_the_file_and_never_shows_a_traceback(tmp_path):
    wl = tmp_path / "wl"
    wl.mkdir()
    (wl / "alice.yaml").write_text("symbols: [BTCUSDT]\n")
    for name, byte in [("ff", b"\x0c"), ("esc", b"\x1b"), ("nul", b"\x00"), ("latin1", b"\xe9")]:
        (wl / f"{name}.yaml").write_bytes(poisoned(byte))
    out = subprocess.run([sys.executable, "-m", "bot", "check-config", "--watchlists", str(wl)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    for name in ("ff", "esc", "nul", "latin1"):
        assert f"ERROR {wl / name}.yaml:3: not valid" in out.stderr, out.stderr
    assert "alice.yaml" not in out.stderr
    assert "5 watchlist file(s) checked" in out.stdout and "4 problem(s)" in out.stdout


# -------------------------------------------------------------------------------------------------- symlinks

@pytest.fixture
def folder_with_links(tmp_path):
    secret = tmp_path / ".env"
    secret.write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\n")
    wl = tmp_path / "wl"
    wl.mkdir()
    (wl / "real.yaml").write_text("symbols: [BTCUSDT]\n")
    (wl / "evil.yaml").symlink_to(secret)                      # absolute, leaving the folder
    (wl / "sneaky.yaml").symlink_to(Path("..") / ".env")       # relative, leaving the folder
    (wl / "alias.yaml").symlink_to("real.yaml")                # staying inside: fine
    return wl


def test_symlinks_leaving_the_folder_are_refused_without_echoing_the_target(folder_with_links):
    wl = folder_with_links
    reg = WatchlistRegistry(wl, universe=lambda: UNIVERSE)
    problems = reg.load_all()
    assert problems == [f"{wl / 'evil.yaml'}: refused: symlink to outside the watchlist folder",
                        f"{wl / 'sneaky.yaml'}: refused: symlink to outside the watchlist folder"]
    assert [uid for uid, _ in reg.items()] == ["alias", "real"]
    assert check_watchlists(wl, UNIVERSE) == problems
    for text in problems:
        assert ".env" not in text and "TOKEN" not in text and TOKEN[:12] not in text


async def test_edits_and_export_refuse_a_symlink_leaving_the_folder(folder_with_links):
    wl = folder_with_links
    reg = WatchlistRegistry(wl, universe=lambda: UNIVERSE)
    reg.load_all()
    for attempt in (lambda: reg.add_symbols("evil", ["eth"]), lambda: reg.set_fields("evil", alerts=False),
                    lambda: reg.import_yaml("evil", "name: x\n"), lambda: reg.ensure("evil")):
        with pytest.raises(EditError, match="refused: symlink to outside the watchlist folder") as e:
            await attempt()
        assert "TOKEN" not in str(e.value) and TOKEN[:12] not in str(e.value)
    with pytest.raises(EditError, match="refused: symlink"):
        reg.export_yaml("evil")                               # /export would have sent the .env to the chat
    assert (wl / "evil.yaml").is_symlink() and (wl.parent / ".env").read_text().startswith("TELEGRAM_BOT_TOKEN=")
    res = await reg.add_symbols("alias", ["eth"])             # a link inside the folder is an ordinary file
    assert res.added == ["ETHUSDT"]


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


# ------------------------------------------------------------------------------------ edits from two processes

EDITOR = textwrap.dedent("""
    import asyncio, sys, time
    from pathlib import Path
    from bot.watchlists import Limits, WatchlistRegistry
    folder, tag, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    reg = WatchlistRegistry(folder, limits=Limits(max_symbols=100))
    reg.load_all()
    (folder.parent / f"ready-{tag}").touch()
    while not go.exists():
        time.sleep(0.005)

    async def main():
        for i in range(20):
            res = await reg.add_symbols("shared", [f"{tag}{i}X"])
            assert res.added == [f"{tag}{i}XUSDT"], res
            print("done", i, flush=True)
    asyncio.run(main())
""")


def test_edits_from_two_processes_are_serialised_and_none_is_lost(tmp_path):
    folder = tmp_path / "wl"
    folder.mkdir()
    (folder / "shared.yaml").write_text("# shared by two bots\nname: Shared\nsymbols: []\n")
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", EDITOR, str(folder), tag, str(go)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tag in ("P", "Q")]
    try:
        wait_for(lambda: all((tmp_path / f"ready-{t}").exists() for t in "PQ")
                 or any(p.poll() is not None for p in procs), 60, "both editors ready")
        go.touch()                                           # both start editing at once
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert out.count("done") == 20                       # each said "done" 20 times ...
    wl = parse_watchlist((folder / "shared.yaml").read_bytes(), "shared", limits=Limits(max_symbols=100))
    expected = {f"{t}{i}XUSDT" for t in "PQ" for i in range(20)}
    assert set(wl.symbols) == expected and len(wl.symbols) == 40    # ... and all 40 edits landed
    assert (folder / "shared.yaml").read_text().startswith("# shared by two bots\n")
    assert [p.name for p in folder.iterdir()] == ["shared.yaml"]      # no lock file or temp file left behind
