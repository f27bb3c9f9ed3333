"""Which database, and how to talk to it: the one place that knows the two engines apart.

`DATABASE_URL` (postgres://, postgresql://, sqlite:///path) selects the database; without it the store is the
SQLite file at --db / BOT_DB_PATH / storage.db_path, as before. `connect()` makes the SQLAlchemy engine (psycopg 3
for PostgreSQL; for SQLite one connection in WAL mode, as the hand-written store had) and brings the schema to
`bot.dbschema` with Alembic (`migrate`: idempotent; two processes starting at once take turns behind a
PostgreSQL advisory lock, or SQLite's write lock).

`Leadership` is the "exactly one of these runs" lock for hosted roles (the engine's cycle, the Telegram poller):
a PostgreSQL session advisory lock held on its own connection. PostgreSQL drops it the moment the holder's
connection ends (a killed process's socket closes at once; a vanished host's after the TCP keepalives below,
KEEPALIVE_BOUND_S), so a waiting process takes over within its poll interval after that.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, Table, create_engine, event, inspect, text
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)
logging.getLogger("alembic").setLevel(logging.WARNING)     # its per-start INFO lines; ours says the revision

DATABASE_URL_ENV = "DATABASE_URL"
MIGRATIONS = Path(__file__).parent / "migrations"
# TCP keepalives on every PostgreSQL connection: a holder whose host vanished is noticed after about
# idle + interval * count seconds, and its locks go then.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
KEEPALIVE_BOUND_S = 10 + 5 * 3
SERVER_KEEPALIVES = {"tcp_keepalives_idle": 10, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 3}


def lock_key(name: str) -> int:
    """A stable 63-bit advisory-lock key for a name (PostgreSQL's locks are keyed by bigint)."""
    return zlib.crc32(f"derivatives-pressure-bot:{name}".encode()) | (0x5EED << 32)


def normalize_url(url: str) -> str:
    """postgres:// (what Heroku, Render and others hand out) and postgresql:// both mean psycopg 3 here."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def is_url(target: str) -> bool:
    return "://" in target


def sqlite_file(target: str) -> str | None:
    """The SQLite file a target names (a path or sqlite:///path), ':memory:' for memory; None for other engines."""
    if not is_url(target):
        return target
    url = make_url(normalize_url(target))
    if url.get_backend_name() != "sqlite":
        return None
    return url.database or ":memory:"


def describe(target: str) -> str:
    """The target for messages and logs: a path as is, a URL without its password."""
    return make_url(target).render_as_string(hide_password=True) if is_url(target) else target


def connect(target: str) -> Engine:
    """The engine for a path or URL, its schema migrated to `bot.dbschema` (raises what the driver raises when the
    database cannot be opened)."""
    engine = engine_of(target)
    migrate(engine)
    return engine


def engine_of(target: str) -> Engine:
    """The engine for a path or URL, as it is (no migration)."""
    target = normalize_url(target)
    path = sqlite_file(target)
    return _sqlite_engine(path) if path is not None else _postgres_engine(target)


def _sqlite_engine(path: str) -> Engine:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    # One connection for the process (the store serialises its use): what it sees, it committed.
    engine = create_engine("sqlite://", creator=lambda: db, poolclass=StaticPool)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # pysqlite's own transaction handling is off (isolation_level=None): we say BEGIN, and BEGIN IMMEDIATE for
        # a write, so two processes never both hold a read lock they then both want to upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")
    return engine


def _postgres_engine(url: str) -> Engine:
    return create_engine(url, pool_size=4, max_overflow=4, pool_pre_ping=True, connect_args=dict(KEEPALIVES))


def is_postgres(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "postgresql"


def insert(bind: Engine | Connection, table: Table):
    """The dialect's INSERT, which has on_conflict_do_nothing / on_conflict_do_update on both engines."""
    return (pg_dialect.insert if is_postgres(bind) else sqlite_dialect.insert)(table)


def upsert(bind: Engine | Connection, table: Table):
    """INSERT ... ON CONFLICT (primary key) DO UPDATE every other column: SQLite's INSERT OR REPLACE, portably."""
    stmt = insert(bind, table)
    keys = [c.name for c in table.primary_key.columns]
    return stmt.on_conflict_do_update(index_elements=keys,
                                      set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys})


# ------------------------------------------------------------------------------------------------ migrations
_script_lock = threading.Lock()
_script: list = []


def _alembic_config():
    from alembic.config import Config as AlembicConfig
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _scripts():
    """The migration scripts, read once per process (alembic would re-read every revision file per call)."""
    with _script_lock:
        if not _script:
            from alembic.script import ScriptDirectory
            _script.append(ScriptDirectory.from_config(_alembic_config()))
        return _script[0]


def head_revision() -> str:
    return _scripts().get_current_head()


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext
    return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine) -> None:
    """Bring the schema to head. Cheap when it is there already; otherwise one process at a time runs the
    migrations (PostgreSQL: a transaction-scoped advisory lock; SQLite: BEGIN IMMEDIATE) and re-reads the revision
    inside the lock, so the second of two processes starting together finds the work done. A database with no
    tables at all is made from `bot.dbschema` in one step and stamped at head (Alembic's recipe for a new
    database: the revisions only bring older databases there; tests/test_storage.py checks both agree)."""
    head = head_revision()
    with engine.connect() as conn:
        if current_revision(conn) == head:
            return
    with engine.connect() as conn:
        conn.execution_options(write=True)
        with conn.begin():
            if is_postgres(conn):
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key("migrate")})
            if inspect(conn).get_table_names():
                run_migrations(conn)
            else:
                create_at_head(conn)
    log.info("database schema at revision %s", head)


def run_migrations(conn: Connection) -> None:
    """Every revision from the database's own to head, on `conn` (in its transaction)."""
    from alembic import command
    cfg = _alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


def create_at_head(conn: Connection) -> None:
    """An empty database: the schema as `bot.dbschema` defines it, recorded as at head."""
    from alembic.runtime.migration import MigrationContext

    from .dbschema import metadata
    metadata.create_all(conn)
    MigrationContext.configure(conn).stamp(_scripts(), "head")


# ------------------------------------------------------------------------------------------------ leadership
def engine_lock_holder(url: str, name: str) -> int | None:
    """The server process id (pg_backend_pid) of the connection holding `name`'s advisory lock, or None. A probe:
    takes nothing, migrates nothing. None too when the database cannot be reached."""
    key = lock_key(name)
    engine = create_engine(normalize_url(url), poolclass=None, connect_args=dict(KEEPALIVES))
    try:
        with engine.connect() as conn:
            # advisory locks belong to a database: another bot's engine on the same server is not this one's
            return conn.execute(text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                                     "classid = :hi AND objid = :lo AND objsubid = 1 AND database = "
                                     "(SELECT oid FROM pg_database WHERE datname = current_database())"),
                                {"hi": key >> 32, "lo": key & 0xFFFFFFFF}).scalar()
    except Exception:
        return None
    finally:
        engine.dispose()

@dataclass
class Leadership:
    """Exactly one holder of `name` per database (PostgreSQL session advisory lock on a connection of its own).
    `try_acquire()` takes it if free; `held()` checks the connection still holds it (a lost connection means
    lost leadership: the caller must stop leading); `release()` lets it go."""
    engine: Engine
    name: str
    _conn: Connection | None = None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return True
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            for setting, value in SERVER_KEEPALIVES.items():    # the server, too, notices a holder's host vanish
                conn.execute(text(f"SET {setting} = {int(value)}"))
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key(self.name)}).scalar()
        except Exception:
            conn.close()
            raise
        if got:
            self._conn = conn
        else:
            conn.close()
        return bool(got)

    def held(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1")).scalar()
            return True
        except Exception as e:
            log.error("%s: lost the database connection that held the lock (%s): no longer in charge", self.name, e)
            self._drop()
            return False

    def release(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key(self.name)})
        except Exception:
            pass
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        try:
            conn.invalidate()          # never back to the pool: a pooled connection would keep the lock
        except Exception:
            pass
