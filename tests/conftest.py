"""Shared test fixtures and options.

Every test that depends on what the simulated market does at a time pins the seed and the simulated
start: ``--sim-start`` (default a fixed instant) is that start, so a run's outcome never depends on the
hour or the day it runs. ``tests/timing_matrix.py`` reruns the timing-sensitive tests with the start
(and, where libfaketime is installed, the wall clock) shifted across a day, under CPU load.
"""
from __future__ import annotations

import asyncio
import functools
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import pytest

from bot.cli_run import utc_ms

DEFAULT_SIM_START = "2026-11-18T00:00Z"

T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--sim-start", default=DEFAULT_SIM_START, type=utc_ms,
                     help=f"simulated market start for the timing-sensitive tests (default {DEFAULT_SIM_START})")


def pytest_configure(config: pytest.Config) -> None:
    share_one_tls_context()
    config.addinivalue_line("markers", "process: runs the bot as real processes against the simulator (slow, "
                                       "timing-sensitive; rerun across a day by tests/timing_matrix.py)")
    config.addinivalue_line("markers", "slow: takes seconds for reasons other than timing (e.g. builds the wheel)")
    config.addinivalue_line("markers", "browser: drives a real headless chromium (Debian's chromium and "
                                       "chromium-driver, installed by .ci/run) with selenium")


def share_one_tls_context() -> None:
    """Each httpx client (ours, python-telegram-bot's) builds its default TLS context by reading a CA bundle
    (certifi's or SSL_CERT_FILE's): ~25 ms of CPU, a few hundred times a run. Every client here speaks plain HTTP
    to a loopback server, so clients asking for the same default share one context, built by httpx's own function
    as each would have built it. Other arguments (a custom `verify`, a client cert) go through unchanged; if httpx
    moves the function, nothing is shared."""
    try:
        import httpx
        from httpx._transports import default as transports
        build = transports.create_ssl_context
    except (ImportError, AttributeError):
        return
    shared: dict[tuple, object] = {}

    def create_ssl_context(verify=True, cert=None, trust_env=True):
        if verify is not True or cert is not None:
            return build(verify=verify, cert=cert, trust_env=trust_env)
        key = (trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        if key not in shared:
            shared[key] = build(verify=verify, cert=cert, trust_env=trust_env)
        return shared[key]

    transports.create_ssl_context = create_ssl_context
    httpx.create_ssl_context = create_ssl_context       # what httpx-aiohttp's transport (our exchange client) calls


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (pyproject's addopts): one worker more than this process may use cores. A worker spends about
    40 % of its time waiting — on loopback servers, on `python -m bot` subprocesses, on PostgreSQL, on the real
    timeouts the fault tests are about — and a third worker's tests fill that (2 cores: the non-process tests in
    ~33 s instead of ~35.5 s; README "Tests")."""
    return len(os.sched_getaffinity(0)) + 1 if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1) + 1


def pytest_collection_finish(session: pytest.Session) -> None:
    """Python's cycle collector took ~7 s of CPU over a run (2,000+ collections per worker, each walking every
    module, class and function loaded so far). What exists once the tests are collected lives to the end: frozen,
    no collection walks it again; and a young generation of 7,000 objects instead of 700 lets most of a test's
    short-lived objects die before a collection sees them. (~3.5 s of CPU saved; the bot itself keeps Python's
    defaults.)"""
    import gc
    gc.freeze()
    gc.set_threshold(7000, 10, 10)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under xdist (`-n auto`, pyproject's addopts), the `process` tests share one worker, one after another:
    each runs the bot and a simulator as real processes, and side by side they would crowd each other out."""
    for item in items:
        if item.get_closest_marker("process"):
            item.add_marker(pytest.mark.xdist_group("process"))


@pytest.fixture(autouse=True)
def logging_put_back():
    """Each test leaves logging as it found it. `bot.cli.main` (called in-process by many tests) and some fixtures
    install handlers and levels; one left behind writes to a later test's closed capture stream, and every record
    from then on costs a printed "--- Logging error ---" stack (seconds over a run)."""
    import logging
    root = logging.getLogger()
    loggers = logging.root.manager.loggerDict
    handlers, level = root.handlers[:], root.level
    levels = {name: lg.level for name, lg in loggers.items() if isinstance(lg, logging.Logger)}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lg in list(loggers.items()):
        if isinstance(lg, logging.Logger) and lg.level != levels.get(name, logging.NOTSET):
            lg.setLevel(levels.get(name, logging.NOTSET))


@pytest.fixture
def no_pending_garbage():
    """For a test that drives a parser to the recursion limit: collect earlier tests' garbage first, so no finaliser
    of theirs runs inside that deep recursion (it would fail there for lack of stack, and count against this test)."""
    import gc
    gc.collect()


@pytest.fixture
def sim_start_ms(request: pytest.FixtureRequest) -> int:
    """The pinned simulated start (epoch ms) for market-dependent tests."""
    return request.config.getoption("--sim-start")


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


async def until(check: Callable[[], T], timeout: float = 5.0, what: str = "condition", interval: float = 0.01,
                context: Callable[[], str] | None = None) -> T:
    """`wait_for` for coroutines: poll without blocking the loop the bot runs in; fail after `timeout` s, with
    `context()` (e.g. the fake's recent calls) in the message."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}" + (f"; {context()}" if context else ""))
        await asyncio.sleep(interval)


# ---------------------------------------------------------------------------------------------- bot services
@pytest.fixture
async def make_services(tmp_path):
    """Factory for the running bot's `Services`, built the one way `python -m bot run` builds them
    (`bot.app.build_services`: store in tmp_path, watchlists in tmp_path/"watchlists", the Queries port and its
    market snapshot). `universe` pre-publishes the traded symbols; adapters are then `svc.register`ed.
    `seed` (a database file) starts the store from a copy of it and of its signing key: an expensive state (a
    cold-start cycle) made once per session, each test then owning its copy.
    Everything made is closed at teardown (closing twice is harmless)."""
    from bot.app import build_services
    from bot.config import Config

    made = []

    def make(cfg: Config | None = None, *, db: str = "bot.db", exchange_url: str | None = None,
             universe: Iterable[str] | None = None, seed: Path | None = None):
        if seed is not None:
            copy_database(seed, tmp_path / db)
        svc = build_services(cfg or Config(), str(tmp_path / db), tmp_path / "watchlists", exchange_url=exchange_url)
        if universe is not None:
            svc.market.set_universe(universe)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        await svc.client.aclose()
        svc.store.close()


# ---------------------------------------------------------------------------------------------- closed signals
def closing_of(cfg, sig: dict, move: float, now: int) -> dict:
    """A closing of `sig` as the tracker makes it (bot.evaluation on constructed candles): ATR 2 % of the entry
    from 14 hourly ranges, then one 5m candle moving the price by `move`."""
    from bot.evaluation import HOUR_MS, Candle, evaluate
    from bot.outcomes import costs_of, plan_for, signal_input
    m5 = 300_000
    entry, t = sig["receipt"]["raw"]["mark_price"], sig["ts"]
    hourly = [Candle(t - (15 - i) * HOUR_MS, entry, entry * 1.01, entry * 0.99, entry, t - (14 - i) * HOUR_MS)
              for i in range(15)]
    end = entry * (1 + move)
    walk = [Candle(t, entry, max(entry, end), min(entry, end), end, t + m5)]
    out = evaluate(signal_input(sig), plan_for(cfg.evaluation, sig["kind"]), costs_of(cfg.evaluation), hourly, walk,
                   m5, [], now)
    assert out is not None, "the constructed candle touches no level"
    return {"signal": sig["id"], "outcome": out}


def commit_sealed(svc, ts: int, signals=(), closings=()) -> None:
    """One cycle committed and sealed as the engine does: these signals, these closings (no scores)."""
    from bot.sealing import Sealer
    svc.store.commit_alert_cycle(dict(ts=ts, duration_s=0.0, requests=0, weight=0, failed={}), [], {}, list(signals),
                                 [], [], seal=Sealer(svc.signing).prepare(ts, [], list(closings)),
                                 closings=list(closings))


def copy_database(src: Path, dst: Path) -> None:
    """A closed SQLite database and the files beside it that belong to it (its signing key; a WAL if any)."""
    for f in src.parent.glob(src.name + "*"):
        if not f.name.endswith(".lock"):
            shutil.copy2(f, dst.parent / (dst.name + f.name[len(src.name):]))


# ---------------------------------------------------------------------------------------------- the two engines
# The storage, outbox, sealing and watchlist tests run on SQLite and on PostgreSQL: `db_url` is a fresh database
# of each. PostgreSQL is a throwaway cluster started once per run (shared by the xdist workers) on loopback
# (tests/pgcluster.py), or BOT_TEST_POSTGRES_URL's server (.ci/run starts one). Without a server the PostgreSQL
# cases skip, saying why; under CI (CI or REQUIRE_POSTGRES set) they fail instead: there they must run.
ENGINES = ("sqlite", "postgresql")


def postgres_required() -> bool:
    return any(os.environ.get(k, "").strip().lower() not in ("", "0", "false") for k in ("CI", "REQUIRE_POSTGRES"))


@pytest.fixture(scope="session")
def postgres_server(worker_id, tmp_path_factory):
    """(admin URL, template database) of a PostgreSQL server, or pytest.skip with the reason."""
    import pgcluster
    import psycopg
    url = os.environ.get("BOT_TEST_POSTGRES_URL")
    if not url:
        try:
            url = _shared_cluster_url(worker_id, tmp_path_factory)
        except pgcluster.NoPostgres as e:
            if postgres_required():
                pytest.fail(f"PostgreSQL is required here (CI/REQUIRE_POSTGRES) but cannot start: {e}")
            pytest.skip(f"PostgreSQL cases skipped: {e}")
    template = f"tmpl_{worker_id}_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{template}"')
        c.execute(f'CREATE DATABASE "{template}"')
    from bot.store import Store
    Store(_with_db(url, template)).close()             # migrated once: each test's database is a copy
    yield url, template


# One throwaway cluster for all the xdist workers of a run (the first to need it starts it, under a lock; the others
# read its address), stopped by the controller at the end (`pytest_unconfigure`); without xdist, by this process.
def _cluster_note(root: Path) -> Path:
    return root / "postgres-cluster.json"


def _shared_cluster_url(worker_id: str, tmp_path_factory) -> str:
    import fcntl
    import json

    import pgcluster        # tests/pgcluster.py (this folder is on sys.path, as for `from conftest import`)
    base = tmp_path_factory.getbasetemp()
    root = base.parent if worker_id != "master" else base
    with open(root / "postgres-cluster.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        note = _cluster_note(root)
        if note.exists():
            return json.loads(note.read_text())["url"]
        cluster = pgcluster.start()
        note.write_text(json.dumps({"url": cluster.url, "folder": str(cluster.folder), "port": cluster.port}))
    return cluster.url


def pytest_unconfigure(config: pytest.Config) -> None:
    """The controller (or a run without xdist) stops the cluster its workers shared."""
    import json
    if hasattr(config, "workerinput") or getattr(config, "_tmp_path_factory", None) is None:
        return
    note = _cluster_note(config._tmp_path_factory.getbasetemp())
    if note.exists():
        import pgcluster
        found = json.loads(note.read_text())
        pgcluster.Cluster(Path(found["folder"]), found["port"]).stop()
        note.unlink()


def _with_db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def emptied_postgres_dbs(postgres_server):
    """Databases finished tests left behind, emptied for the next (copying the template costs the server ~100 ms
    of CPU a test; emptying one, ~10 ms); dropped at the end (on a server of BOT_TEST_POSTGRES_URL's, which stays)."""
    import psycopg
    free: list[str] = []
    yield free
    with psycopg.connect(postgres_server[0], autocommit=True) as c:
        for name in free:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_server, emptied_postgres_dbs):
    """A fresh, migrated PostgreSQL database: a copy of the template, or one an earlier test left and that was
    emptied (its sessions ended, so no lock of theirs survives; every table truncated, identities restarted; the
    schema checked to be the template's, else it is dropped instead)."""
    import uuid

    import psycopg
    admin, template = postgres_server
    if emptied_postgres_dbs:
        name = emptied_postgres_dbs.pop()
    else:
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield _with_db(admin, name)
    if _emptied(admin, name, _template_schema(admin, template)):
        emptied_postgres_dbs.append(name)
    else:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@functools.cache
def _template_schema(admin: str, template: str) -> list[tuple]:
    return _schema_of(admin, template)


def _schema_of(admin: str, db: str) -> list[tuple]:
    import psycopg
    with psycopg.connect(_with_db(admin, db), autocommit=True) as c:
        columns = c.execute("SELECT table_name, column_name, data_type, is_nullable, column_default FROM "
                            "information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2").fetchall()
        indexes = c.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1").fetchall()
        return columns + indexes + c.execute("SELECT version_num FROM alembic_version").fetchall()


def _emptied(admin: str, name: str, schema: list[tuple]) -> bool:
    """Empty `name` for the next test; False when it is not the template's schema any more (or cannot be used)."""
    import psycopg
    try:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND "
                      "pid <> pg_backend_pid()", (name,))
        if _schema_of(admin, name) != schema:
            return False
        from bot.dbschema import metadata
        with psycopg.connect(_with_db(admin, name), autocommit=True) as c:
            c.execute("TRUNCATE " + ", ".join(f'"{t.name}"' for t in metadata.sorted_tables) + " RESTART IDENTITY")
        return True
    except psycopg.Error:
        return False


@pytest.fixture(params=ENGINES)
def db_url(request, tmp_path):
    """A fresh database on each engine: a SQLite file path, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "bot.db")
    return request.getfixturevalue("postgres_url")
