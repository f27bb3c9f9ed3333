"""The watchlist behaviours on every place the documents can live: files (the default), and the database on both
engines (SQLite through a sqlite:/// URL, PostgreSQL). Validation with the user and line named, the last good
version kept, hot reload, comment-keeping chat edits, concurrent edits from two processes, /import and /export,
and `python -m bot watchlists import|export` round-tripping byte for byte."""
from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from bot import cli
from bot.store import Store
from bot.watchlists import DatabaseDocuments, EditError, FileDocuments, Limits, WatchlistRegistry


ROOT = Path(__file__).resolve().parent.parent
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


class Place:
    """Where the documents are, and a hand (or another process) changing them behind the registry's back."""

    def __init__(self, kind: str, tmp_path: Path, url: str | None):
        self.kind, self.tmp, self.url = kind, tmp_path, url
        self.folder = tmp_path / "wl"
        self.stores: list[Store] = []

    def documents(self):
        if self.url is None:
            return FileDocuments(self.folder, Limits())
        store = Store(self.url)
        self.stores.append(store)
        return DatabaseDocuments(store, Limits())

    def registry(self, **kw) -> WatchlistRegistry:
        return WatchlistRegistry(self.folder, universe=lambda: UNIVERSE, documents=self.documents(), **kw)

    def name(self, uid: str) -> str:
        return str(self.folder / f"{uid}.yaml") if self.url is None else f"watchlist {uid}"

    def put(self, uid: str, text: str) -> None:
        """Another writer: a hand edit of the file, or another process's write to the database."""
        if self.url is None:
            path = self.folder / f"{uid}.yaml"
            self.folder.mkdir(exist_ok=True)
            old = path.stat().st_mtime_ns if path.exists() else 0
            path.write_text(text)
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns, max(st.st_mtime_ns, old + 1_000_000_000)))
        else:
            self.documents().write(uid, text)

    def drop(self, uid: str) -> None:
        if self.url is None:
            (self.folder / f"{uid}.yaml").unlink()
        else:
            self.stores[0].delete_watchlist(uid) if self.stores else Store(self.url).delete_watchlist(uid)

    def close(self) -> None:
        for s in self.stores:
            s.close()


@pytest.fixture(params=["files", "sqlite", "postgresql"])
def place(request, tmp_path):
    url = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'bot.db'}"
    elif request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    p = Place(request.param, tmp_path, url)
    yield p
    p.close()


def test_errors_name_the_user_and_line_and_the_last_good_version_stays(place):
    place.put("alice", ALICE)
    place.put("broken", "symbols: [\n")
    reg = place.registry()
    errors = reg.load_all()
    assert len(errors) == 1 and errors[0].startswith(f"{place.name('broken')}:2: ")
    good = reg.get("alice")
    assert good.symbols == ["BTCUSDT", "ETHUSDT"] and set(reg.errors) == {"broken"}

    place.put("alice", ALICE.replace("  - ETHUSDT\n", "  - ETHUSDT\n  - 12\n"))
    changed, errors = reg.reload_if_changed()
    assert changed == [] and errors == [f"{place.name('alice')}:9: symbols[2]: expected a symbol such as BTCUSDT, got 12"]
    assert reg.get("alice") is good and reg.reload_if_changed() == ([], [])      # reported once

    place.put("alice", ALICE.replace("min_score: 30", "min_score: 35"))
    place.put("carol", "symbols: [XRPUSDT]\n")
    place.drop("broken")
    assert sorted(reg.reload_if_changed()[0]) == ["alice", "carol"]
    assert reg.get("alice").min_score == 35 and reg.errors == {}
    place.drop("carol")
    assert reg.reload_if_changed() == (["carol"], []) and reg.get("carol") is None


async def test_chat_edits_keep_comments_and_another_process_sees_them(place):
    place.put("alice", ALICE)
    reg, other = place.registry(), place.registry()         # two processes on the same documents
    reg.load_all()
    other.load_all()
    await reg.add_symbols("alice", ["sol"])
    await reg.set_fields("alice", min_score=50)
    text = reg.export_yaml("alice")
    assert text == ALICE.replace("  - ETHUSDT\n", "  - ETHUSDT\n  - SOLUSDT\n") \
        .replace("min_score: 30        # keep it quiet", "min_score: 50        # keep it quiet")
    assert reg.reload_if_changed() == ([], [])                # its own writes are not "changes"
    assert other.reload_if_changed() == (["alice"], [])       # the other process hot-reloads them
    assert other.get("alice") == reg.get("alice") and other.export_yaml("alice") == text


async def test_concurrent_edits_from_two_processes_lose_nothing(place):
    a, b = place.registry(limits=Limits(max_symbols=100)), place.registry(limits=Limits(max_symbols=100))
    await a.create("u", name="Busy")
    b.load_all()

    def from_b(i: int) -> None:
        asyncio.run(b.add_symbols("u", [f"C{i}"]))

    threads = [threading.Thread(target=from_b, args=(i,)) for i in range(20, 32)]
    for t in threads:
        t.start()
    await asyncio.gather(*(a.add_symbols("u", [f"C{i}"]) for i in range(20)))
    for t in threads:
        t.join()
    a.load_all()
    assert set(a.get("u").symbols) == {f"C{i}USDT" for i in range(32)}


async def test_import_and_export_in_chat(place):
    reg = place.registry()
    await reg.create("tg-42", telegram_chat_id=42)
    wl = await reg.import_yaml("tg-42", "# mine\nname: Imported   # hi\ntelegram_chat_id: 999\nsymbols: [ETHUSDT]\n")
    assert wl.telegram_chat_id == 42 and wl.symbols == ["ETHUSDT"]
    text = reg.export_yaml("tg-42")
    assert text.startswith("# mine\nname: Imported   # hi\n")
    with pytest.raises(EditError) as e:
        await reg.import_yaml("tg-42", "name: x\nsymbols: [ETHUSDT, 12]\n")
    assert str(e.value).startswith("import:2: symbols[1]: expected a symbol")
    assert reg.export_yaml("tg-42") == text
    with pytest.raises(EditError, match="no watchlist"):
        await reg.import_yaml("tg-7", "name: x\n")


def test_cli_import_then_export_round_trips_byte_for_byte(db_url, tmp_path, capsys):
    """Files -> database -> files: the same bytes, comments included; an invalid file is named and not copied;
    importing the same files again copies nothing (no new versions)."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    docs = {"alice": ALICE, "tg-42": (ROOT / "config" / "watchlists" / "example-desk.yaml").read_text()}
    for uid, text in docs.items():
        (src / f"{uid}.yaml").write_text(text)
    (src / "bad.yaml").write_text("min_score: 300\n")
    (src / "example-x.yaml").write_text("name: doc\n")
    rc = cli.main(["watchlists", "import", str(src), "--db", db_url])
    captured = capsys.readouterr()
    assert rc == 1 and f"{src / 'bad.yaml'}:1: min_score" in captured.err
    assert "2 watchlist(s) copied" in captured.out and "alice, tg-42" in captured.out
    assert cli.main(["watchlists", "import", str(src), "--db", db_url]) == 1
    assert "0 watchlist(s) copied" in capsys.readouterr().out
    assert cli.main(["watchlists", "export", str(out), "--db", db_url]) == 0
    assert {p.name: p.read_text() for p in out.iterdir()} == {f"{u}.yaml": t for u, t in docs.items()}
