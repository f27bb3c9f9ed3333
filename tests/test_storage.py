"""The storage layer on both engines (tests/conftest.py `db_url`: SQLite and a throwaway PostgreSQL): the
migrated schema is `bot.dbschema`'s, migrations are idempotent and safe with processes starting together,
concurrent claims never share a row or split a route, and a dead worker's lease passes its rows on."""
from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from bot import database
from bot.dbschema import metadata
from bot.store import LEASE_MS, Store
from conftest import ENGINES

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_800_000_000_000


def queue(store: Store, routes: int, per_route: int = 2) -> None:
    store.commit_alert_cycle({"ts": NOW, "duration_s": 0, "requests": 0, "weight": 0, "failed": {}}, [], {}, [], [],
                             [dict(key=f"k{r}-{i}", recipient=f"u{r}", channel="console", address=f"u{r}", created=NOW,
                                   due=NOW, signal_ids=[]) for r in range(routes) for i in range(per_route)])


def test_the_migrated_schema_is_the_one_the_code_uses(db_url):
    store = Store(db_url)
    try:
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            assert database.current_revision(conn) == database.head_revision()
    finally:
        store.close()
    # an index or unique constraint reflected under another name is no difference worth failing on
    assert [d for d in diff if d[0] not in ("remove_index", "add_index", "add_constraint", "remove_constraint")] == []


@pytest.mark.parametrize("engine", ENGINES)
def test_the_revisions_from_an_empty_database_give_the_same_schema(engine, tmp_path, request):
    """A new database is made from bot.dbschema and stamped at head (bot.database.create_at_head); every revision
    run from an empty database instead must end at that same schema."""
    url = str(tmp_path / "bot.db") if engine == "sqlite" else request.getfixturevalue("empty_postgres")
    db = database.engine_of(url)
    try:
        with db.connect() as conn:
            with conn.begin():
                database.run_migrations(conn)
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            assert database.current_revision(conn) == database.head_revision()
    finally:
        db.dispose()
    assert [d for d in diff if d[0] not in ("remove_index", "add_index", "add_constraint", "remove_constraint")] == []


def test_opening_again_migrates_nothing_and_keeps_the_data(db_url):
    first = Store(db_url)
    first.set_meta("kept", {"a": 1})
    first.close()
    again = Store(db_url)
    try:
        assert again.get_meta("kept") == {"a": 1}
    finally:
        again.close()


@pytest.fixture
def empty_postgres(postgres_server):
    """A new PostgreSQL database with no tables at all (not the migrated template)."""
    import psycopg
    admin, _ = postgres_server
    name = f"e_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    yield admin.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_two_processes_starting_at_once_migrate_once(empty_postgres):
    """Two workers deploying together on an empty database: both start, the schema is made once (the advisory
    lock makes the second wait and then find it done). The URL is the postgres:// form platforms hand out."""
    url = empty_postgres.replace("postgresql://", "postgres://")
    code = "import sys; from bot.store import Store; Store(sys.argv[1]).close(); print('ok')"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-800:] for o in outs]
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        store.close()


def test_concurrent_claims_never_share_a_row_nor_split_a_route(db_url):
    """Four workers (each its own store: its own connection, as separate processes have) claim at once, a few
    routes at a time: every row is claimed exactly once and each route's rows go to one worker together."""
    stores = [Store(db_url) for _ in range(4)]
    try:
        queue(stores[0], routes=60, per_route=3)
        claims: dict[str, list] = {}
        barrier = threading.Barrier(len(stores))

        def work(i: int) -> None:
            barrier.wait()
            got = []
            while rows := stores[i].claim_due(NOW, worker=f"w{i}", max_routes=5):
                got += rows
            claims[f"w{i}"] = got

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        keys = [r["key"] for rows in claims.values() for r in rows]
        assert sorted(keys) == sorted(f"k{r}-{i}" for r in range(60) for i in range(3))     # each exactly once
        owner = {}
        for w, rows in claims.items():
            for r in rows:
                assert owner.setdefault(r["recipient"], w) == w                             # a route, one worker
        assert all(r["status"] == "sending" and r["attempts"] == 1 for r in stores[0].outbox_rows())
    finally:
        for s in stores:
            s.close()


def test_a_dead_workers_rows_go_to_the_next_after_the_lease(db_url):
    a, b = Store(db_url), Store(db_url)
    try:
        queue(a, routes=2, per_route=1)
        claimed = a.claim_due(NOW, worker="a")            # ... and worker a dies
        assert len(claimed) == 2 and b.claim_due(NOW + 1000, worker="b") == []
        assert b.expired_claims(NOW + LEASE_MS - 1) == []                   # still a's
        expired = b.expired_claims(NOW + LEASE_MS + 1)
        assert [r["key"] for r, _ in expired] == ["k0-0", "k1-0"]
        for row, lease in expired:
            assert b.settle_expired(row["id"], lease, "pending")
            assert not a.settle_expired(row["id"], lease, "pending")     # a second settle changes nothing
        again = b.claim_due(NOW + LEASE_MS + 1, worker="b")
        assert [(r["key"], r["attempts"]) for r in again] == [("k0-0", 2), ("k1-0", 2)]
        stale_lease = expired[0][1]
        assert not a.settle_expired(again[0]["id"], stale_lease, "pending")   # b's fresh claim is b's
    finally:
        a.close()
        b.close()


def test_database_urls_and_paths():
    assert database.normalize_url("postgres://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert database.normalize_url("postgresql://h/db") == "postgresql+psycopg://h/db"
    assert database.sqlite_file("data/bot.db") == "data/bot.db"
    assert database.sqlite_file("sqlite:////tmp/x.db") == "/tmp/x.db"
    assert database.sqlite_file("postgres://h/db") is None
    assert database.describe("postgres://u:secret@h/db") == "postgres://u:***@h/db"


def test_a_shared_send_rate_hands_out_one_slot_per_interval_across_stores(db_url):
    """Two processes (stores) drawing from one schedule: slots never coincide and are one interval apart."""
    a, b = Store(db_url), Store(db_url)
    try:
        slots = []
        for i in range(6):
            slots.append((a if i % 2 else b).reserve_send_slot("telegram-bot", 1000, 5_000))
        assert slots == [5_000, 6_000, 7_000, 8_000, 9_000, 10_000]
        assert a.reserve_send_slot("telegram-bot", 1000, 50_000) == 50_000      # idle: the next slot is now
    finally:
        a.close()
        b.close()


def test_the_engine_lock_holder_is_visible_to_a_probe(postgres_url, empty_postgres):
    """`scan`/`score` ask who runs the engine before running a competing cycle: on PostgreSQL the advisory lock,
    which belongs to its database: another bot's engine on the same server is not this one's."""
    from bot.app import engine_holder
    store = Store(postgres_url)
    lead = database.Leadership(store.engine, "engine")
    try:
        assert engine_holder(postgres_url) is None
        assert lead.try_acquire()
        assert (engine_holder(postgres_url) or "").startswith("server process ")
        assert engine_holder(empty_postgres) is None            # another database on the same server
        other = database.Leadership(store.engine, "engine")
        assert not other.try_acquire()                     # exactly one holder
        lead.release()
        assert engine_holder(postgres_url) is None and other.try_acquire()
        other.release()
    finally:
        store.close()


def test_the_liqmap_tables_on_both_engines(db_url):
    from bot.liqmap import Print, Step
    store = Store(db_url)
    try:
        steps = [Step(1_000 * i, 10.0, 11.0, 9.0, 10.5, 2.0, 21.0, 12.0, None if i == 2 else 100.0 + i)
                 for i in range(3)]
        assert store.add_liq_steps("BTCUSDT", steps) == 3
        store.add_liq_steps("BTCUSDT", [Step(2_000, 10.0, 12.0, 9.0, 11.5, 3.0, 33.0, 20.0, 105.0)])   # rewritten
        got = store.liq_steps("BTCUSDT", 1_000)
        assert [(s.ts, s.close, s.oi) for s in got] == [(1_000, 10.5, 101.0), (2_000, 11.5, 105.0)]
        assert store.last_liq_step("BTCUSDT") == 2_000 and store.last_liq_step("ETHUSDT") is None
        store.add_liq_prints([Print(1_500, "BTCUSDT", "long", 9.5, 2.0), Print(2_500, "BTCUSDT", "short", 11.0, 1.0)])
        assert [(p.ts, p.side, p.qty) for p in store.liq_prints("BTCUSDT", 2_000)] == [(2_500, "short", 1.0)]
        assert store.prune_liq(2_000) == 3                         # two steps and one print before it
    finally:
        store.close()


def test_closings_and_period_starts_on_both_engines(db_url):
    store = Store(db_url)
    receipt = {"rule": "cross:35"}
    try:
        for ts in (60_000, 120_000, 3_600_000 + 60_000):
            store.commit_alert_cycle({"ts": ts, "duration_s": 0, "requests": 0, "weight": 0, "failed": {}},
                                     [{"symbol": "BTCUSDT", "score": ts // 60_000, "bias": "LONG",
                                       "regime_key": "net_long"}], {},
                                     [dict(id=f"S{ts}", ts=ts, symbol="BTCUSDT", rule="cross:35", kind="threshold",
                                           score=40, bias="LONG", regime="r", receipt=receipt)], [], [])
        assert [r[0] for r in store.score_rows_at_period_starts(0, 3_600_000)] == [60_000, 3_660_000]
        assert [s["id"] for s in store.open_signals()] == ["S60000", "S120000", "S3660000"]
        store.commit_alert_cycle({"ts": 3_700_000, "duration_s": 0, "requests": 0, "weight": 0, "failed": {}}, [], {},
                                 [], [], [], closings=[{"signal": "S60000", "outcome": {"result": "TP1"}}])
        assert [s["id"] for s in store.closed_signals()] == ["S60000"] and store.closed_in("S60000") == 3_700_000
        assert [s["id"] for s in store.cycle_closings(3_700_000)] == ["S60000"] and store.closed_in("S120000") is None
        assert len(store.score_rows_between(0, 120_000)) == 2 and len(store.signals_since(100_000)) == 2
    finally:
        store.close()


def test_thinning_scores_keeps_each_steps_first_cycle_on_both_engines(db_url):
    store = Store(db_url)
    try:
        for ts in (60_000, 120_000, 3_600_000 + 60_000, 3_600_000 + 120_000, 7_200_000 + 60_000):
            store.commit_alert_cycle({"ts": ts, "duration_s": 0, "requests": 0, "weight": 0, "failed": {}},
                                     [{"symbol": "BTCUSDT", "score": 10, "bias": "LONG", "regime_key": "net_long"}],
                                     {}, [], [], [])
        assert store.kept_score_cycles(7_200_000, 3_600_000) == {60_000, 3_660_000}
        assert store.thin_scores(7_200_000, 3_600_000) == 2            # 120 000 and 3 720 000 go
        assert [t for t in store.cycle_times() if store.cycle_score_rows(t)] == [60_000, 3_660_000, 7_260_000]
        assert store.get_meta("scores_thinned") == {"before": 7_200_000, "step": 3_600_000}
        assert store.latest_scores()[1][0]["symbol"] == "BTCUSDT"       # read back through records.scored_row
    finally:
        store.close()
