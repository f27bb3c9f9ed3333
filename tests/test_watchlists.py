"""Per-user YAML watchlists: validation with file:line, hot reload, safe round-trip edits, quiet hours."""
from __future__ import annotations

import asyncio
import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from bot.watchlists import (TEMPLATE, EditError, Limits, Watchlist, WatchlistError, WatchlistRegistry,
                            check_watchlists, parse_watchlist)

UTC = timezone.utc
ROOT = Path(__file__).parent.parent
UNIVERSE = {"BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "1000PEPEUSDT"} | {f"C{i}USDT" for i in range(120)}

ALICE = """\
# Alice's list — hand written
name: Alice          # me
telegram_chat_id: 42

# majors
symbols:
  - BTCUSDT   # the big one
  - ETHUSDT
min_score: 30        # keep it quiet
timezone: Europe/Berlin
quiet_hours: "23:00-07:00"
# trailing note
"""


def write(path: Path, text: str) -> None:
    """Write and move the mtime forward, so a rewrite is noticed even within one clock tick."""
    old = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, max(st.st_mtime_ns, old + 1_000_000_000)))


def registry(tmp_path: Path, **kw) -> WatchlistRegistry:
    return WatchlistRegistry(tmp_path, universe=lambda: UNIVERSE, **kw)


def problems_of(text: str, path: str = "config/watchlists/alice.yaml", **kw) -> str:
    with pytest.raises(WatchlistError) as e:
        parse_watchlist(text, path, universe=UNIVERSE, **kw)
    return str(e.value)


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if not p.name.endswith(".yaml")]


# ------------------------------------------------------------------------------------------------ validation

@pytest.mark.parametrize("text, expected", [
    ("name: A\nsymbols:\n  - BTCUSDT\n  - ETHUSDT\n  - 12\n",
     "config/watchlists/alice.yaml:5: symbols[2]: expected a symbol such as BTCUSDT, got 12"),
    ("name: A\nalerts: true\nquiet_hours: 11pm\n",
     'config/watchlists/alice.yaml:3: quiet_hours: expected "HH:MM-HH:MM"'),
    ("name: A\n\n\n\nsymbols: [BTCUSDT, BTCUSDX]\n",
     'config/watchlists/alice.yaml:5: symbols[1]: unknown symbol "BTCUSDX" — did you mean BTCUSDT?'),
    ("name: A\n" + "\n" * 7 + "colour: red\n",
     "config/watchlists/alice.yaml:9: colour: unknown field (known: name, telegram_chat_id, discord_user_id,"),
    ("timezone: Europe/Berln\n",
     'config/watchlists/alice.yaml:1: timezone: unknown time zone "Europe/Berln" — did you mean Europe/Berlin?'),
    ("timezone: Mars/Olympus\n", 'alice.yaml:1: timezone: unknown time zone "Mars/Olympus"'),
    ("alerts: true\nmin_score: 150\n", "alice.yaml:2: min_score: must be at most 100, got 150"),
    ("telegram_chat_id: '123'\n", 'alice.yaml:1: telegram_chat_id: expected a whole number, got "123"'),
    ("alerts: 'on'\n", 'alice.yaml:1: alerts: expected true or false, got "on"'),
    ("bands: [lean, hot]\n", 'alice.yaml:1: bands[1]: unknown band "hot" (known: lean, stretched, stressed)'),
    ("regimes:\n  - long_crowded\n  - moon\n", 'alice.yaml:3: regimes[1]: unknown regime "moon"'),
    ("quiet_mode: later\n", 'alice.yaml:1: quiet_mode: expected digest or drop, got "later"'),
    ("cooldown_minutes: 2000\n", "alice.yaml:1: cooldown_minutes: must be at most 1440, got 2000"),
    ("muted:\n  BTCUSDT: soon\n",
     'alice.yaml:2: muted.BTCUSDT: expected an ISO-8601 UTC date-time such as 2026-03-29T12:00:00Z, got "soon"'),
    ("symbols: BTCUSDT\n", 'alice.yaml:1: symbols: expected a list such as [A, B], got "BTCUSDT"'),
    ("name: a\nalerts: true\nname: b\n", "alice.yaml:3: name: duplicate key (first on line 1)"),
    ("base: &b [BTCUSDT]\nsymbols: *b\n", "alice.yaml:1: anchors and aliases"),
    ("- BTCUSDT\n", "alice.yaml:1: expected a mapping of fields (name: value) at the top level, got a list"),
])
def test_validation_errors_name_file_line_and_field(text, expected):
    assert expected in problems_of(text)


def test_bad_yaml_names_file_and_line():
    msg = problems_of("name: A\nsymbols: [BTCUSDT,\nalerts: true\n")
    assert msg.startswith("config/watchlists/alice.yaml:")
    assert ": not valid YAML: " in msg and "line " in msg
    msg = problems_of("name: A\n  bad: indent\n")
    assert msg.startswith("config/watchlists/alice.yaml:2: not valid YAML:")


def test_every_problem_is_reported_on_its_own_line():
    msg = problems_of("symbols: [btcusdt, 7]\nmin_score: -1\nquiet_hours: 25:00-07:00\n")
    lines = msg.splitlines()
    assert lines[0].startswith("config/watchlists/alice.yaml:1: symbols[1]:")   # lower case is accepted
    assert lines[1] == "config/watchlists/alice.yaml:2: min_score: must be at least 0, got -1"
    assert lines[2].startswith("config/watchlists/alice.yaml:3: quiet_hours:")


def test_limits_too_many_symbols_and_too_large():
    many = "symbols: [" + ", ".join(f"C{i}USDT" for i in range(51)) + "]\n"
    assert "alice.yaml:1: symbols: too many symbols: 51 (at most 50)" in problems_of(many)
    parse_watchlist(many, "x.yaml", universe=UNIVERSE, limits=Limits(max_symbols=60))
    big = "# " + "x" * (64 * 1024) + "\nname: A\n"
    assert "alice.yaml: file is too large (65547 bytes, at most 65536)" in problems_of(big)


def test_shape_is_checked_without_a_universe_and_values_are_normalized():
    wl = parse_watchlist("symbols: [btcusdt, ETHUSDT, BTCUSDT]\nquiet_hours: 7:05-9:00\n"
                         "muted: {XRPUSDT: 2026-03-29T12:00:00}\n", "x.yaml")
    assert wl.symbols == ["BTCUSDT", "ETHUSDT"]
    assert wl.quiet_hours == "07:05-09:00"
    assert wl.muted == {"XRPUSDT": datetime(2026, 3, 29, 12, tzinfo=UTC)}   # no offset means UTC
    assert parse_watchlist("", "empty.yaml") == Watchlist()                  # every key is optional



def test_symbols_are_normalised_one_way_everywhere(tmp_path):
    """bot.symbols.clean is the one normalisation: files, edits, config filters and the CLI agree."""
    from bot.config import AlertFilter
    from bot.rules import FilterSubscriber
    from bot.symbols import clean, normalize, with_quote
    assert clean(" eth/usdt ") == clean("ETH-USDT") == clean("eth_usdt") == "ETHUSDT"
    assert with_quote("btc") == "BTCUSDT" and normalize("pepe", UNIVERSE) == "1000PEPEUSDT"
    wl = parse_watchlist("symbols: [eth/usdt, ETH-USDT, btcusdt]\nmuted: {sol_usdt: 2026-03-29T12:00:00Z}\n",
                         "x.yaml", universe=UNIVERSE)
    assert wl.symbols == ["ETHUSDT", "BTCUSDT"] and wl.is_muted("sol/usdt", datetime(2026, 3, 29, tzinfo=UTC))
    sub = FilterSubscriber.from_filter(AlertFilter(symbols=["eth/usdt", "btc"]), UNIVERSE)
    assert sub.symbols == {"ETHUSDT", "BTCUSDT"}

def test_examples_and_template_are_valid():
    assert check_watchlists(ROOT / "config" / "watchlists", UNIVERSE) == []
    alice = parse_watchlist((ROOT / "config/watchlists/example-alice.yaml").read_text(), "a", universe=UNIVERSE)
    assert alice.timezone == "Europe/Berlin" and alice.quiet_hours == "23:00-07:00"
    assert {"BTCUSDT", "ETHUSDT", "SOLUSDT"} <= set(alice.symbols)
    desk = parse_watchlist((ROOT / "config/watchlists/example-desk.yaml").read_text(), "d", universe=UNIVERSE)
    assert desk.any_symbol_above == 60 and len(desk.regimes) == 6
    assert parse_watchlist(TEMPLATE, "t") == Watchlist()
    documented = (ROOT / "docs" / "watchlists.md").read_text()
    for name in Watchlist.model_fields:
        assert f"`{name}`" in documented and name in TEMPLATE



def test_model_template_and_docs_list_the_same_keys_in_the_same_order():
    """The schema is defined once (the Watchlist model); the template and the docs' table follow it."""
    fields = list(Watchlist.model_fields)
    assert list(yaml.safe_load(TEMPLATE)) == fields
    schema = (ROOT / "docs" / "watchlists.md").read_text().split("## Schema")[1].split("\n## ")[0]
    table = [line.split("|")[1].strip().strip("`") for line in schema.splitlines() if line.startswith("| `")]
    assert table == fields

def test_check_watchlists_reports_every_file(tmp_path):
    (tmp_path / "good.yaml").write_text("symbols: [BTCUSDT]\n")
    (tmp_path / "bad.yaml").write_text("symbols: [BTCUSDX]\n")
    (tmp_path / "example-x.yaml").write_text("colour: red\n")
    (tmp_path / "notes.txt").write_text("colour: red\n")
    msgs = check_watchlists(tmp_path, lambda: UNIVERSE)
    assert msgs == [f'{tmp_path / "bad.yaml"}:1: symbols[0]: unknown symbol "BTCUSDX" — did you mean BTCUSDT?',
                    f'{tmp_path / "example-x.yaml"}:1: colour: unknown field (known: name, telegram_chat_id, '
                    "discord_user_id, alerts, symbols, any_symbol_above, min_score, bands, regimes, squeeze_anywhere, bias_flips, "
                    "cooldown_minutes, timezone, quiet_hours, quiet_mode, muted, active, liqmap_within_pct)"]
    assert check_watchlists(tmp_path / "missing") == []


# -------------------------------------------------------------------------------------------- loading, reload

def test_load_all_and_lookups(tmp_path):
    write(tmp_path / "tg-42.yaml", "telegram_chat_id: 42\nsymbols: [BTCUSDT]\n")
    write(tmp_path / "alice.yaml", "telegram_chat_id: 42\n")
    write(tmp_path / "tg-g1001.yaml", "telegram_chat_id: -1001\n")
    write(tmp_path / "dc-7.yaml", "discord_user_id: 7\n")
    write(tmp_path / "broken.yaml", "symbols: [\n")
    write(tmp_path / "example-alice.yaml", "telegram_chat_id: 1\n")      # documentation: never loaded
    write(tmp_path / "notes.yml", "x")
    reg = registry(tmp_path)
    errors = reg.load_all()
    assert len(errors) == 1 and errors[0].startswith(f"{tmp_path / 'broken.yaml'}:")
    assert [uid for uid, _ in reg.items()] == ["alice", "dc-7", "tg-42", "tg-g1001"]
    assert len(reg.all()) == 4 and reg.get("broken") is None and set(reg.errors) == {"broken"}
    assert reg.by_telegram_chat(42)[0] == "tg-42"         # the user's own file wins over alice.yaml
    assert reg.by_telegram_chat(-1001)[0] == "tg-g1001"
    assert reg.by_discord_user(7)[0] == "dc-7"
    assert reg.by_telegram_chat(5) is None and reg.by_discord_user(42) is None


def test_invalid_edit_on_disk_keeps_last_good_version(tmp_path):
    path = tmp_path / "alice.yaml"
    write(path, ALICE)
    reg = registry(tmp_path)
    assert reg.load_all() == []
    good = reg.get("alice")
    assert good.symbols == ["BTCUSDT", "ETHUSDT"]

    write(path, ALICE.replace("  - ETHUSDT\n", "  - ETHUSDT\n  - 12\n"))
    changed, errors = reg.reload_if_changed()
    assert changed == [] and errors == [f"{path}:9: symbols[2]: expected a symbol such as BTCUSDT, got 12"]
    assert reg.get("alice") is good and reg.errors == {"alice": errors[0]}
    assert reg.reload_if_changed() == ([], [])           # reported once, not on every pass
    assert reg.load_all() == errors                       # a full reload reports it again

    write(path, ALICE.replace("min_score: 30", "min_score: 35"))
    assert reg.reload_if_changed() == (["alice"], [])
    assert reg.get("alice").min_score == 35 and reg.errors == {}


def test_never_valid_file_has_no_version(tmp_path):
    write(tmp_path / "bob.yaml", "colour: red\n")
    reg = registry(tmp_path)
    assert reg.load_all() == [f"{tmp_path / 'bob.yaml'}:1: colour: unknown field (known: name, telegram_chat_id, "
                              "discord_user_id, alerts, symbols, any_symbol_above, min_score, bands, regimes, "
                              "squeeze_anywhere, bias_flips, cooldown_minutes, timezone, quiet_hours, quiet_mode, muted, active, "
                              "liqmap_within_pct)"]
    assert reg.get("bob") is None


def test_hot_reload_changed_new_and_deleted(tmp_path):
    write(tmp_path / "a.yaml", "symbols: [BTCUSDT]\n")
    write(tmp_path / "b.yaml", "symbols: [ETHUSDT]\n")
    reg = registry(tmp_path)
    reg.load_all()
    assert reg.reload_if_changed() == ([], [])

    write(tmp_path / "a.yaml", "symbols: [BTCUSDT, SOLUSDT]\n")
    write(tmp_path / "c.yaml", "symbols: [XRPUSDT]\n")
    (tmp_path / "b.yaml").unlink()
    changed, errors = reg.reload_if_changed()
    assert sorted(changed) == ["a", "b", "c"] and errors == []
    assert reg.get("a").symbols == ["BTCUSDT", "SOLUSDT"] and reg.get("b") is None
    assert reg.get("c").symbols == ["XRPUSDT"]

    write(tmp_path / "a.yaml", "symbols: [BTCUSDT, SOLUSDT]\n")     # touched, same content
    assert reg.reload_if_changed() == ([], [])

    write(tmp_path / "bad.yaml", "alerts: maybe\n")                 # a new, broken file
    changed, errors = reg.reload_if_changed()
    assert changed == [] and errors == [f'{tmp_path / "bad.yaml"}:1: alerts: expected true or false, got "maybe"']
    (tmp_path / "bad.yaml").unlink()
    assert reg.reload_if_changed() == ([], []) and reg.errors == {}


def test_missing_directory_is_empty_until_first_edit(tmp_path):
    reg = registry(tmp_path / "wl")
    assert reg.load_all() == [] and reg.reload_if_changed() == ([], []) and reg.all() == []
    wl, created = asyncio.run(reg.ensure("tg-1", telegram_chat_id=1))
    assert created and wl.telegram_chat_id == 1 and (tmp_path / "wl" / "tg-1.yaml").exists()


# ---------------------------------------------------------------------------------------------------- edits

async def test_create_from_commented_template_and_ensure(tmp_path):
    reg = registry(tmp_path)
    wl = await reg.create("tg-5", name="Bob", telegram_chat_id=5)
    assert (wl.name, wl.telegram_chat_id, wl.symbols) == ("Bob", 5, [])
    text = reg.export_yaml("tg-5")
    assert text.startswith("# Watchlist:") and "name: Bob                  # display name" in text
    assert text.count("#") >= TEMPLATE.count("#")
    with pytest.raises(EditError, match="already exists"):
        await reg.create("tg-5")
    again, created = await reg.ensure("tg-5", telegram_chat_id=999)
    assert not created and again.telegram_chat_id == 5      # fields only apply when creating
    new, created = await reg.ensure("dc-9", discord_user_id=9)
    assert created and new.discord_user_id == 9 and reg.by_discord_user(9)[0] == "dc-9"
    assert reg.reload_if_changed() == ([], [])              # the registry's own writes are not "changes"


async def test_edits_keep_comments_and_key_order(tmp_path):
    path = tmp_path / "alice.yaml"
    write(path, ALICE)
    reg = registry(tmp_path)
    reg.load_all()
    res = await reg.add_symbols("alice", ["sol", "pepe"])
    assert res.added == ["SOLUSDT", "1000PEPEUSDT"]
    await reg.set_fields("alice", min_score=50, alerts=False)
    await reg.remove_symbols("alice", ["eth"])
    text = path.read_text()
    assert text == ALICE.replace("  - ETHUSDT\n", "  - SOLUSDT\n  - 1000PEPEUSDT\n") \
        .replace("min_score: 30        # keep it quiet", "min_score: 50        # keep it quiet") \
        .replace("# trailing note\n", "# trailing note\nalerts: false\n")
    keys = list(yaml.safe_load(text))
    assert keys == ["name", "telegram_chat_id", "symbols", "min_score", "timezone", "quiet_hours", "alerts"]
    assert reg.get("alice").symbols == ["BTCUSDT", "SOLUSDT", "1000PEPEUSDT"] and not reg.get("alice").alerts


@pytest.mark.parametrize("name", ["example-alice.yaml", "example-desk.yaml"])
async def test_unchanged_round_trip_is_byte_identical(tmp_path, name):
    original = (ROOT / "config" / "watchlists" / name).read_text()
    path = tmp_path / "u.yaml"
    write(path, original)
    reg = registry(tmp_path)
    reg.load_all()
    await reg.set_fields("u", cooldown_minutes=reg.get("u").cooldown_minutes)    # a no-op edit
    assert path.read_text() == original
    await reg.set_fields("u", cooldown_minutes=15)
    changed = [(a, b) for a, b in zip(original.splitlines(), path.read_text().splitlines()) if a != b]
    assert len(changed) == 1 and changed[0][1].startswith("cooldown_minutes: 15")


async def test_values_pyyaml_would_misread_are_quoted(tmp_path):
    reg = registry(tmp_path)
    await reg.create("u", name="yes")
    wl = await reg.set_fields("u", quiet_hours="22:30-06:00", timezone="America/New_York")
    assert wl.name == "yes" and wl.quiet_hours == "22:30-06:00"
    assert 'name: "yes"' in reg.export_yaml("u")
    wl = await reg.set_fields("u", name="null", quiet_hours=None)
    assert wl.name == "null" and wl.quiet_hours is None


async def test_add_and_remove_symbols(tmp_path):
    reg = registry(tmp_path, limits=Limits(max_symbols=5))
    await reg.create("u")
    res = await reg.add_symbols("u", ["btc", "ETH/USDT", "btcusdx", "btc", "  sol "])
    assert res.added == ["BTCUSDT", "ETHUSDT", "SOLUSDT"] and res.unknown == {"btcusdx": "BTCUSDT"}
    res = await reg.add_symbols("u", ["eth", "xrp"])
    assert res.added == ["XRPUSDT"] and res.already == ["ETHUSDT"]
    before = reg.export_yaml("u")
    with pytest.raises(EditError, match="too many symbols: you watch 4, adding 2 would make 6"):
        await reg.add_symbols("u", ["doge", "pepe"])
    assert reg.export_yaml("u") == before and len(reg.get("u").symbols) == 4
    res = await reg.remove_symbols("u", ["btc", "doge", "zzzz"])
    assert res.removed == ["BTCUSDT"] and res.already == ["DOGEUSDT"] and res.unknown == {"zzzz": None}
    assert reg.get("u").symbols == ["ETHUSDT", "SOLUSDT", "XRPUSDT"]
    assert yaml.safe_load(reg.export_yaml("u"))["symbols"] == ["ETHUSDT", "SOLUSDT", "XRPUSDT"]


async def test_refused_edits_leave_the_file_untouched(tmp_path):
    path = tmp_path / "u.yaml"
    write(path, ALICE)
    reg = registry(tmp_path)
    reg.load_all()
    for fields, message in [({"min_score": 500}, "min_score: must be at most 100, got 500"),
                            ({"quiet_hours": "11pm"}, 'quiet_hours: expected "HH:MM-HH:MM"'),
                            ({"timezone": "Europe/Berln"}, "did you mean Europe/Berlin?"),
                            ({"colour": "red"}, "unknown field colour"),
                            ({"symbols": ["BTCUSDX"]}, 'symbols[0]: unknown symbol "BTCUSDX"')]:
        with pytest.raises(EditError, match=message.replace("[", r"\[").replace("?", r"\?")):
            await reg.set_fields("u", **fields)
        assert path.read_text() == ALICE
    with pytest.raises(EditError, match="no watchlist for nobody"):
        await reg.add_symbols("nobody", ["btc"])
    for bad in ["../etc/passwd", "a/b", ".hidden", "", "example-alice"]:
        with pytest.raises(EditError):
            await reg.set_fields(bad, alerts=False)
    # a file broken by hand: edits refuse and say why, the last good version stays active
    write(path, ALICE + "colour: red\n")
    reg.reload_if_changed()
    with pytest.raises(EditError, match=r"(?s)has problems.*u\.yaml:13: colour: unknown field"):
        await reg.add_symbols("u", ["sol"])
    assert path.read_text() == ALICE + "colour: red\n" and reg.get("u").min_score == 30
    assert leftovers(tmp_path) == []


async def test_symbol_dropped_from_universe_can_still_be_removed(tmp_path):
    write(tmp_path / "u.yaml", "symbols: [BTCUSDT, OLDUSDT]\n")
    reg = registry(tmp_path)
    assert reg.load_all() != []                                          # unknown on load: reported
    res = await reg.add_symbols("u", ["eth"])                              # but the edit API grandfathers it
    assert reg.get("u").symbols == ["BTCUSDT", "OLDUSDT", "ETHUSDT"] and res.added == ["ETHUSDT"]
    res = await reg.remove_symbols("u", ["old"])
    assert res.removed == ["OLDUSDT"] and reg.get("u").symbols == ["BTCUSDT", "ETHUSDT"]


async def test_concurrent_edits_lose_nothing(tmp_path):
    reg = registry(tmp_path, limits=Limits(max_symbols=100))
    await reg.create("u", name="Busy")
    thread_syms = [f"C{i}USDT" for i in range(50, 62)]

    def from_thread(sym: str) -> None:
        asyncio.run(reg.add_symbols("u", [sym]))          # its own event loop: the threading lock serializes

    threads = [threading.Thread(target=from_thread, args=(s,)) for s in thread_syms]
    for t in threads:
        t.start()
    results = await asyncio.gather(*(reg.add_symbols("u", [f"C{i}"]) for i in range(50)),
                                   reg.set_fields("u", min_score=40), reg.mute("u", "btc", datetime.now(UTC) + timedelta(hours=1)))
    for t in threads:
        t.join()
    assert all(r.added for r in results[:50])
    expected = {f"C{i}USDT" for i in range(50)} | set(thread_syms)
    on_disk = parse_watchlist(reg.export_yaml("u"), "u", universe=UNIVERSE, limits=Limits(max_symbols=100))
    assert set(on_disk.symbols) == expected and len(on_disk.symbols) == 62
    assert on_disk.min_score == 40 and "BTCUSDT" in on_disk.muted and on_disk.name == "Busy"
    assert reg.get("u") == on_disk
    assert leftovers(tmp_path) == []


async def test_atomic_write_failure_leaves_file_and_no_temp(tmp_path, monkeypatch):
    reg = registry(tmp_path)
    await reg.create("u")
    before = reg.export_yaml("u")

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        await reg.add_symbols("u", ["btc"])
    monkeypatch.undo()
    assert reg.export_yaml("u") == before and reg.get("u").symbols == []
    assert leftovers(tmp_path) == []


async def test_import_good_and_bad(tmp_path):
    reg = registry(tmp_path)
    await reg.create("tg-42", telegram_chat_id=42)
    good = ("# mine\nname: Imported   # hi\ntelegram_chat_id: 999   # someone else's chat\n"
            "discord_user_id: 5\nsymbols: [ETHUSDT]\n")
    wl = await reg.import_yaml("tg-42", good)
    assert wl.name == "Imported" and wl.symbols == ["ETHUSDT"]
    assert wl.telegram_chat_id == 42 and wl.discord_user_id is None      # identity stays the existing one
    text = reg.export_yaml("tg-42")
    assert text == "# mine\nname: Imported   # hi\ntelegram_chat_id: 42    # someone else's chat\nsymbols: [ETHUSDT]\n"
    assert reg.by_telegram_chat(999) is None

    for bad, message in [("name: x\nsymbols: [ETHUSDT, 12]\n", "import:2: symbols[1]: expected a symbol"),
                         ("symbols: [\n", "import:2: not valid YAML"),
                         ("colour: red\n", "import:1: colour: unknown field"),
                         ("name: x\n" + "#" * 70000, "import: file is too large")]:
        with pytest.raises(EditError) as e:
            await reg.import_yaml("tg-42", bad)
        assert str(e.value).startswith(message)
        assert reg.export_yaml("tg-42") == text and reg.get("tg-42") == wl
    with pytest.raises(EditError, match="no watchlist"):
        await reg.import_yaml("tg-7", good)
    assert not (tmp_path / "tg-7.yaml").exists()


# -------------------------------------------------------------------------------------------- mute, quiet

async def test_mute_unmute_and_expiry(tmp_path):
    reg = registry(tmp_path)
    await reg.create("u", symbols=["BTCUSDT"])
    now = datetime.now(UTC)
    wl = await reg.mute("u", "btc", now + timedelta(hours=2))
    assert wl.is_muted("BTCUSDT", now) and wl.is_muted("btcusdt", now + timedelta(minutes=119))
    assert not wl.is_muted("BTCUSDT", now + timedelta(hours=2, seconds=1)) and not wl.is_muted("ETHUSDT", now)
    assert "  BTCUSDT: 20" in reg.export_yaml("u")           # a plain timestamp in a block mapping
    with pytest.raises(EditError, match="future"):
        await reg.mute("u", "eth", now - timedelta(minutes=1))
    with pytest.raises(EditError, match="did you mean BTCUSDT"):
        await reg.mute("u", "btcusdx", now + timedelta(hours=1))
    # an expired entry written by hand is pruned by the next mute
    path = tmp_path / "u.yaml"
    write(path, path.read_text().replace("muted:", "muted:\n  XRPUSDT: 2020-01-01T00:00:00Z", 1))
    reg.reload_if_changed()
    assert not reg.get("u").is_muted("XRPUSDT", now)
    wl = await reg.mute("u", "eth", now + timedelta(minutes=30))
    assert set(wl.muted) == {"BTCUSDT", "ETHUSDT"}
    wl = await reg.unmute("u", "btc")
    assert set(wl.muted) == {"ETHUSDT"}
    wl = await reg.unmute("u")
    assert wl.muted == {} and "muted: {}" in reg.export_yaml("u")


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_quiet_hours_across_midnight():
    wl = Watchlist(quiet_hours="23:00-07:00")                # UTC
    assert not wl.in_quiet_hours(at(2026, 5, 1, 22, 59))
    assert wl.in_quiet_hours(at(2026, 5, 1, 23, 0)) and wl.in_quiet_hours(at(2026, 5, 2, 6, 59))
    assert not wl.in_quiet_hours(at(2026, 5, 2, 7, 0))
    assert wl.quiet_end_after(at(2026, 5, 1, 23, 30)) == at(2026, 5, 2, 7, 0)
    assert wl.quiet_end_after(at(2026, 5, 2, 3, 0)) == at(2026, 5, 2, 7, 0)
    assert wl.quiet_end_after(at(2026, 5, 2, 12, 0)) == at(2026, 5, 2, 12, 0)     # not quiet: now
    day = Watchlist(quiet_hours="12:00-13:30")
    assert day.in_quiet_hours(at(2026, 5, 1, 12, 0)) and not day.in_quiet_hours(at(2026, 5, 1, 13, 30))
    assert Watchlist().in_quiet_hours(at(2026, 5, 1, 3)) is False
    assert wl.in_quiet_hours(datetime(2026, 5, 1, 23, 30))                          # naive = UTC


def test_quiet_hours_across_dst_berlin():
    wl = Watchlist(timezone="Europe/Berlin", quiet_hours="23:00-07:00")
    # spring forward 2026-03-29 02:00 CET -> 03:00 CEST: the night is an hour shorter
    assert wl.in_quiet_hours(at(2026, 3, 28, 22, 0))                                 # 23:00 CET
    assert wl.quiet_end_after(at(2026, 3, 28, 22, 0)) == at(2026, 3, 29, 5, 0)       # 07:00 CEST
    assert not wl.in_quiet_hours(at(2026, 3, 29, 5, 0)) and wl.in_quiet_hours(at(2026, 3, 29, 4, 59))
    # fall back 2026-10-25 03:00 CEST -> 02:00 CET: an hour longer
    assert wl.quiet_end_after(at(2026, 10, 24, 21, 0)) == at(2026, 10, 25, 6, 0)     # 07:00 CET
    assert wl.in_quiet_hours(at(2026, 10, 25, 5, 59))
    # an end time skipped by the jump (02:30 does not exist on 2026-03-29) ends quiet hours at the jump
    gap = Watchlist(timezone="Europe/Berlin", quiet_hours="01:00-02:30")
    assert gap.quiet_end_after(at(2026, 3, 29, 0, 30)) == at(2026, 3, 29, 1, 0)
    # an end time that happens twice (02:30 on 2026-10-25) ends them the first time
    twice = Watchlist(timezone="Europe/Berlin", quiet_hours="01:00-02:30")
    assert twice.quiet_end_after(at(2026, 10, 24, 23, 30)) == at(2026, 10, 25, 0, 30)


def test_quiet_hours_new_york():
    wl = Watchlist(timezone="America/New_York", quiet_hours="22:00-06:00")
    assert wl.quiet_end_after(at(2026, 3, 8, 3, 0)) == at(2026, 3, 8, 10, 0)        # 06:00 EDT (after 2026-03-08)
    assert wl.quiet_end_after(at(2026, 3, 7, 3, 0)) == at(2026, 3, 7, 11, 0)        # 06:00 EST
    assert wl.quiet_end_after(at(2026, 11, 1, 3, 0)) == at(2026, 11, 1, 11, 0)      # 06:00 EST (after fall back)
    assert not wl.in_quiet_hours(at(2026, 7, 1, 1, 59)) and wl.in_quiet_hours(at(2026, 7, 1, 2, 0))  # 22:00 EDT


@pytest.mark.parametrize("tz, start", [("Europe/Berlin", at(2026, 3, 28, 18)), ("Europe/Berlin", at(2026, 10, 24, 18)),
                                       ("America/New_York", at(2026, 3, 7, 22)), ("America/New_York", at(2026, 10, 31, 22))])
@pytest.mark.parametrize("quiet", ["23:00-07:00", "01:30-02:30", "02:15-03:15", "00:00-03:00"])
def test_quiet_end_is_the_first_non_quiet_instant(tz, start, quiet):
    wl = Watchlist(timezone=tz, quiet_hours=quiet)
    t = start
    while t < start + timedelta(hours=20):
        end = wl.quiet_end_after(t)
        if wl.in_quiet_hours(t):
            assert end > t and not wl.in_quiet_hours(end)
            assert all(wl.in_quiet_hours(t + timedelta(minutes=m)) for m in range(0, int((end - t).total_seconds() // 60), 5))
        else:
            assert end == t
        t += timedelta(minutes=10)


@pytest.mark.parametrize("original", [
    "# header comment\n---\nname: A   # me\nsymbols:\n- BTCUSDT   # zero-offset list\n",
    "name: A\nsymbols:\n    - BTCUSDT\nmuted:\n    XRPUSDT: 2030-01-01T00:00:00Z   # four-space style\n",
    "symbols: [BTCUSDT]  # flow\nbands:\n  - stressed\n",
])
async def test_edits_keep_the_files_own_layout(tmp_path, original):
    write(tmp_path / "u.yaml", original)
    reg = registry(tmp_path)
    assert reg.load_all() == []
    await reg.add_symbols("u", ["eth"])
    text = reg.export_yaml("u")
    before, after = original.splitlines(), text.splitlines()
    assert len(after) == len(before) + ("[" not in original)
    for line in before:
        if "BTCUSDT" not in line or "[" not in line:
            assert line in after                        # every untouched line survives verbatim
    assert reg.get("u").symbols == ["BTCUSDT", "ETHUSDT"]
