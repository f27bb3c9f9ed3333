"""Storage behind one small interface, on either engine: SQLite (WAL; the zero-setup default, one process) or
PostgreSQL (DATABASE_URL; hosted workers with ephemeral disks, several processes). SQLAlchemy Core writes the
SQL for both from the tables in `bot.dbschema`; `bot.database` opens the engine and migrates the schema (Alembic)
before the first query.

Sync API on purpose: each call is a short transaction; the engine runs batches in a worker thread
(asyncio.to_thread) so the shared event loop never blocks on the database.

Callers ask by name (`outbox_by_status("sending")`, `outbox_row(key)`), never with SQL of their own; what
goes in and comes out is typed in `records`.
"""
from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from sqlalchemy import and_, delete, exists, func, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError as DatabaseError  # noqa: F401  (what a failed query raises, on both engines)

from . import database
from .dbschema import cycles as T_cycles
from .dbschema import last_fired as T_last_fired
from .dbschema import liq_prints as T_liq_prints
from .dbschema import liq_steps as T_liq_steps
from .dbschema import manifests as T_manifests
from .dbschema import meta as T_meta
from .dbschema import oi_history as T_oi
from .dbschema import outbox as T_outbox
from .dbschema import scores as T_scores
from .dbschema import send_pacing as T_pacing
from .dbschema import signals as T_signals
from .dbschema import symbol_state as T_state
from .dbschema import watchlists as T_watchlists
from .liqmap import Print, Step
from .records import (Closing, CycleRecord, FiredRow, InclusionProof, ManifestRow, OIPoint,  # noqa: F401
                      OutboxEntry, OutboxRow, OutboxStatus, ScoredRow, SealedCycle, SignalRecord, StoredCycle,
                      StoredManifest, StoredSignal, SymbolStateRow, scored_row, stored_score)
from .score import rank_key

# Seals the cycle being committed, inside its transaction: given the cycle's signals as stored (by id) and the
# previous manifest's hash, returns the manifest and each signal's receipt hash and proof (bot.sealing).
CycleSealer = Callable[[list[StoredSignal], str | None], SealedCycle]

OUTBOX_COLUMNS = ("id", "key", "recipient", "channel", "address", "created", "due", "signal_ids",
                  "status", "attempts", "last_error", "sent", "parts_sent", "digest_key", "notice")
SIGNAL_COLUMNS = ("id", "ts", "symbol", "rule", "kind", "score", "bias", "regime", "receipt", "outcome", "record_hash")
MANIFEST_COLUMNS = ("seq", "cycle_ts", "manifest", "hash", "signature", "public_key", "leaves")
SCORES_PRUNED_BEFORE = "scores_pruned_before"    # meta: score rows (and leaf hashes) before this ts were pruned
SCORES_THINNED = "scores_thinned"   # meta {"before": ts, "step": ms}: before ts only each step's first cycle keeps scores
_COMPACT = (",", ":")               # score payloads: no blanks (the seal hashes the parsed payload, not its text)
LEASE_MS = 60_000          # a claimed outbox row is its worker's this long; then another worker may take it over
_OUTBOX = [T_outbox.c[c] for c in OUTBOX_COLUMNS]
_SIGNAL_SELECT = select(*(T_signals.c[c] for c in SIGNAL_COLUMNS))
_MANIFEST_SELECT = select(*(T_manifests.c[c] for c in MANIFEST_COLUMNS))


def _score_payload(row: ScoredRow, ts: int) -> str:
    """A score row as stored: records.stored_score (what the seal hashes), compact, UTF-8 as is."""
    return json.dumps(stored_score(row, ts), separators=_COMPACT, ensure_ascii=False)


def _kept_cycles(before_ms: int, step_ms: int):
    """The cycles that keep their score rows when thinned: the first of each step (ms), counted from the epoch."""
    return (select(func.min(T_cycles.c.ts)).where(T_cycles.c.ts < before_ms)
            .group_by(T_cycles.c.ts // int(step_ms)))          # floor division on both engines


class StoreUnavailable(Exception):
    """The database file this store has open is no longer the one at its path (deleted, replaced) or can no longer
    be written: str() says what happened and what to do, for the operator."""


class StoreClosed(Exception):
    """The store was closed (the bot is stopping); open a new one to read."""


class Store:
    """The store over a SQLite path (or sqlite:/// URL) or a PostgreSQL URL. Calls come from the loop and worker
    threads; one lock serialises them within the process (SQLite has one connection; PostgreSQL's transactions
    are what keeps other processes apart)."""

    def __init__(self, path: str | Path):
        self.path = str(path)                   # what it was opened with: a SQLite path or a database URL
        self.engine = database.connect(self.path)
        self.shared = database.is_postgres(self.engine)     # other processes may use this database at once
        self._lock = threading.RLock()
        self._local = threading.local()         # the connection of a `reading()` block, per thread
        self._closed = False
        sqlite_path = database.sqlite_file(self.path)
        self.file = self._main_file() if sqlite_path is not None else None   # SQLite's file (absolute), else None
        self._identity = _identity(self.file) if self.file else None

    @property
    def _db(self):
        """SQLite only: the one sqlite3 connection (for tests that poke at the file's state)."""
        return self.engine.raw_connection().driver_connection

    def describe(self) -> str:
        """The database for messages: a path, or a URL without its password."""
        return database.describe(self.path)

    # ---- durability -----------------------------------------------------------------------
    def _main_file(self) -> str | None:
        with self._read() as c:
            rows = c.exec_driver_sql("PRAGMA database_list").fetchall()
        return next((f for _, name, f in rows if name == "main" and f), None)

    def check_file(self) -> str | None:
        """Is what this store commits still durable? Raises StoreUnavailable when the database file was deleted or
        replaced under the open connection (the path's device/inode is no longer the one opened: commits would go
        to an unlinked file and vanish at the next restart). Returns a problem text when the file or its folder is
        no longer writable for this process (this connection still writes, the next start could not), else None.
        An in-memory store, and a server database (PostgreSQL: durable by itself), always pass. Cheap: a few stat
        calls."""
        if self.file is None or self._identity is None:
            return None
        try:
            now = _identity(self.file)
        except FileNotFoundError:
            raise StoreUnavailable(f"the database file {self.file} was deleted while the bot was running; what it "
                                   "committed now would vanish at the next restart") from None
        except OSError as e:
            raise StoreUnavailable(f"the database file {self.file} cannot be checked: {e}") from None
        if now != self._identity:
            raise StoreUnavailable(f"the database file {self.file} was replaced while the bot was running "
                                   f"(device/inode {self._identity} is now {now}); the bot's connection still "
                                   "writes to the old, unlinked file")
        folder = os.path.dirname(self.file) or "."
        if not os.access(self.file, os.W_OK) or not os.access(folder, os.W_OK | os.X_OK):
            return (f"the database file {self.file} or its folder is no longer writable for this process: "
                    "this run still writes through its open connection, but the next start will fail")
        return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self.engine.dispose()          # closes the connections (SQLite's one included)

    # ---- transactions ---------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """One write transaction (SQLite: BEGIN IMMEDIATE) under the store lock; rolled back on error."""
        with self._lock:
            self._check_open()
            with self.engine.connect() as conn:
                conn.execution_options(write=True)
                with conn.begin():
                    yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection to read with: the `reading()` block's when one is open in this thread, else a fresh
        short read transaction."""
        held = getattr(self._local, "conn", None)
        if held is not None:
            yield held
            return
        with self._lock:
            self._check_open()
            with self.engine.connect() as conn:
                yield conn

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"the store of {self.describe()} is closed")

    # ---- OI history -----------------------------------------------------------------------
    def add_oi_points(self, points: Iterable[OIPoint]) -> int:
        rows = [{"symbol": p.symbol, "ts": p.ts, "oi": p.oi, "price": p.price} for p in points]
        if rows:
            with self._tx() as db:
                db.execute(database.upsert(db, T_oi), rows)
        return len(rows)

    def oi_points_between(self, start_ms: int, end_ms: int, symbols: Iterable[str] | None = None) -> list[OIPoint]:
        with self._read() as c:
            rows = c.execute(select(T_oi.c.symbol, T_oi.c.ts, T_oi.c.oi, T_oi.c.price)
                             .where(T_oi.c.ts.between(start_ms, end_ms)).order_by(T_oi.c.symbol, T_oi.c.ts)).all()
        wanted = set(symbols) if symbols is not None else None
        return [OIPoint(*r) for r in rows if wanted is None or r[0] in wanted]

    def oi_series(self, symbol: str, since_ms: int) -> list[OIPoint]:
        with self._read() as c:
            rows = c.execute(select(T_oi.c.symbol, T_oi.c.ts, T_oi.c.oi, T_oi.c.price)
                             .where(T_oi.c.symbol == symbol, T_oi.c.ts >= since_ms).order_by(T_oi.c.ts)).all()
        return [OIPoint(*r) for r in rows]

    def history_coverage(self) -> dict[str, tuple[int, int]]:
        """symbol -> (oldest ts, newest ts) stored."""
        with self._read() as c:
            rows = c.execute(select(T_oi.c.symbol, func.min(T_oi.c.ts), func.max(T_oi.c.ts))
                             .group_by(T_oi.c.symbol)).all()
        return {s: (lo, hi) for s, lo, hi in rows}

    def prune_history(self, before_ms: int) -> int:
        """OI history and score rows before `before_ms` go; the seals of those cycles stay (manifests, and the
        signals' own proofs), their leaf hashes go with the scores, and the horizon is noted for `verify`."""
        with self._tx() as db:
            n = db.execute(delete(T_oi).where(T_oi.c.ts < before_ms)).rowcount
            db.execute(delete(T_scores).where(T_scores.c.ts < before_ms))
            db.execute(update(T_manifests).where(T_manifests.c.cycle_ts < before_ms, T_manifests.c.leaves.is_not(None))
                       .values(leaves=None))
            row = db.execute(select(T_meta.c.value).where(T_meta.c.key == SCORES_PRUNED_BEFORE)).first()
            if row is None or json.loads(row[0]) < before_ms:
                db.execute(database.upsert(db, T_meta), {"key": SCORES_PRUNED_BEFORE, "value": json.dumps(before_ms)})
        return n

    def thin_history(self, before_ms: int, step_ms: int) -> int:
        """OI points before `before_ms` are thinned to one per symbol and `step_ms` bucket (the earliest): the
        1h change reads the fine points, the 4h/24h changes and the charts need no finer step than this."""
        o, k = T_oi, T_oi.alias("k")
        earlier_in_bucket = exists().where(k.c.symbol == o.c.symbol, k.c.ts < o.c.ts,
                                           k.c.ts >= o.c.ts - (o.c.ts % step_ms))
        with self._tx() as db:
            return db.execute(delete(o).where(o.c.ts < before_ms, earlier_in_bucket)).rowcount

    def thin_scores(self, before_ms: int, step_ms: int) -> int:
        """Score rows of cycles before `before_ms` go, but for the first cycle of each `step_ms` step (counted from
        the epoch, so the hour's first cycle stays too: bot.performance samples it); the thinned cycles' seals stay
        (manifests, the signals' and closings' own proofs), their leaf hashes go with the rows, and the horizon is
        noted for `verify` beside the pruning's (SCORES_THINNED)."""
        kept = _kept_cycles(before_ms, step_ms)
        with self._tx() as db:
            n = db.execute(delete(T_scores).where(T_scores.c.ts < before_ms, T_scores.c.ts.not_in(kept))).rowcount
            db.execute(update(T_manifests).where(T_manifests.c.cycle_ts < before_ms, T_manifests.c.leaves.is_not(None),
                                                 T_manifests.c.cycle_ts.not_in(kept)).values(leaves=None))
            row = db.execute(select(T_meta.c.value).where(T_meta.c.key == SCORES_THINNED)).first()
            old = json.loads(row[0]) if row else None
            if old is None or old["before"] < before_ms or old["step"] != step_ms:
                value = json.dumps({"before": max(before_ms, old["before"] if old else 0), "step": step_ms})
                db.execute(database.upsert(db, T_meta), {"key": SCORES_THINNED, "value": value})
        return n

    def kept_score_cycles(self, before_ms: int, step_ms: int) -> set[int]:
        """The cycles before `before_ms` that `thin_scores` keeps the score rows of."""
        with self._read() as c:
            return set(c.execute(_kept_cycles(before_ms, step_ms)).scalars())

    # ---- cycles and scores ----------------------------------------------------------------
    @staticmethod
    def _cycle_row(ts: int, duration_s: float, requests: int, weight: int, scored: int, failed: dict) -> dict:
        return {"ts": ts, "duration_s": duration_s, "requests": requests, "weight": weight, "scored": scored,
                "failed": json.dumps(failed)}

    @staticmethod
    def _score_rows(ts: int, results: list[ScoredRow]) -> list[dict]:
        return [{"ts": ts, "symbol": r["symbol"], "score": r["score"], "bias": r["bias"], "regime": r["regime_key"],
                 "payload": _score_payload(r, ts)} for r in results]

    def save_cycle(self, ts: int, duration_s: float, requests: int, weight: int,
                   results: list[ScoredRow], failed: dict[str, str]) -> None:
        with self._tx() as db:
            db.execute(database.upsert(db, T_cycles),
                       self._cycle_row(ts, duration_s, requests, weight, len(results), failed))
            if results:
                db.execute(database.upsert(db, T_scores), self._score_rows(ts, results))

    def last_cycle(self) -> StoredCycle | None:
        with self._read() as c:
            row = c.execute(select(T_cycles).order_by(T_cycles.c.ts.desc()).limit(1)).first()
        if not row:
            return None
        ts, duration_s, requests, weight, scored, failed = row
        return StoredCycle(ts=ts, duration_s=duration_s, requests=requests, weight=weight, scored=scored,
                           failed=json.loads(failed or "{}"))

    def latest_scores(self) -> tuple[int | None, list[ScoredRow]]:
        """The most recent cycle's results, ranked."""
        last = self.last_cycle()
        if not last:
            return None, []
        with self._read() as c:
            rows = c.execute(select(T_scores.c.payload).where(T_scores.c.ts == last["ts"])).all()
        return last["ts"], sorted((scored_row(json.loads(r[0]), last["ts"]) for r in rows), key=rank_key)

    def score_series(self, symbol: str, since_ms: int) -> list[tuple[int, int, str]]:
        with self._read() as c:
            return [tuple(r) for r in c.execute(
                select(T_scores.c.ts, T_scores.c.score, T_scores.c.bias)
                .where(T_scores.c.symbol == symbol, T_scores.c.ts >= since_ms).order_by(T_scores.c.ts)).all()]

    def score_payloads(self, symbol: str, since_ms: int) -> list[tuple[int, ScoredRow]]:
        with self._read() as c:
            rows = c.execute(select(T_scores.c.ts, T_scores.c.payload)
                             .where(T_scores.c.symbol == symbol, T_scores.c.ts >= since_ms)
                             .order_by(T_scores.c.ts)).all()
        return [(ts, scored_row(json.loads(p), ts)) for ts, p in rows]

    # ---- alert rules state, signals, outbox --------------------------------------------------
    def load_symbol_state(self) -> dict[str, SymbolStateRow]:
        with self._read() as c:
            rows = c.execute(select(T_state.c.symbol, T_state.c.score, T_state.c.bias, T_state.c.regime,
                                    T_state.c.armed, T_state.c.regime_cycles, T_state.c.timing)).all()
        return {s: SymbolStateRow(sc, b, rg, {int(k): v for k, v in json.loads(a).items()}, n,
                                  json.loads(t) if t else None)
                for s, sc, b, rg, a, n, t in rows}

    def load_last_fired(self, since_ms: int) -> dict[tuple[str, str, str], int]:
        with self._read() as c:
            rows = c.execute(select(T_last_fired.c.recipient, T_last_fired.c.symbol, T_last_fired.c.rule,
                                    T_last_fired.c.ts).where(T_last_fired.c.ts >= since_ms)).all()
        return {(r, s, rule): ts for r, s, rule, ts in rows}

    def commit_alert_cycle(self, cycle: CycleRecord, results: list[ScoredRow],
                           symbol_state: dict[str, SymbolStateRow], signals: list[SignalRecord],
                           fired: list[FiredRow], outbox: list[OutboxEntry], seal: CycleSealer | None = None,
                           closings: list[Closing] = ()) -> None:
        """Scores, rule state, signals, cooldowns and outbox rows of one cycle, in ONE transaction:
        after a crash the cycle either happened entirely (alerts queued, state advanced) or not at all.
        With `seal`, the cycle's seal is made and kept in the same transaction (see `_seal`). `closings`: signals
        that closed this cycle (their outcome, sealed in this cycle: bot.sealing)."""
        ts = cycle["ts"]
        with self._tx() as db:
            db.execute(database.upsert(db, T_cycles), self._cycle_row(
                ts, cycle["duration_s"], cycle["requests"], cycle["weight"], len(results), cycle["failed"]))
            if seal is not None:      # a sealed cycle's scores are exactly these (matters if a ts comes again)
                db.execute(delete(T_scores).where(T_scores.c.ts == ts))
            if results:
                db.execute(database.upsert(db, T_scores), self._score_rows(ts, results))
            if symbol_state:
                db.execute(database.upsert(db, T_state), [
                    {"symbol": sym, "score": st.score, "bias": st.bias, "regime": st.regime_key,
                     "armed": json.dumps(st.armed), "regime_cycles": st.regime_cycles,
                     "timing": json.dumps(st.timing) if st.timing is not None else None}
                    for sym, st in symbol_state.items()])
            if signals:
                db.execute(database.insert(db, T_signals).on_conflict_do_nothing(), [
                    {"id": g["id"], "ts": g["ts"], "symbol": g["symbol"], "rule": g["rule"], "kind": g["kind"],
                     "score": g["score"], "bias": g["bias"], "regime": g["regime"],
                     "receipt": json.dumps(g["receipt"])} for g in signals])
            for c in closings:
                db.execute(update(T_signals).where(T_signals.c.id == c["signal"], T_signals.c.outcome.is_(None))
                           .values(outcome=json.dumps(c["outcome"]), closed_ts=ts))
            if seal is not None:
                self._seal(db, ts, seal)
            if fired:
                db.execute(database.upsert(db, T_last_fired),
                           [{"recipient": r, "symbol": s, "rule": rule, "ts": t} for r, s, rule, t in fired])
            if outbox:
                db.execute(database.insert(db, T_outbox).on_conflict_do_nothing(), [
                    {"key": o["key"], "recipient": o["recipient"], "channel": o["channel"], "address": o["address"],
                     "created": o["created"], "due": o["due"], "signal_ids": json.dumps(o["signal_ids"])}
                    for o in outbox])

    @staticmethod
    def _seal(db: Connection, ts: int, seal: CycleSealer) -> None:
        """Inside the commit: seal the cycle's signals as stored (an id seen before keeps its first row) after the
        last manifest, keep the manifest and each signal's receipt hash and proof. A cycle time sealed again
        replaces its manifest (its rows were just replaced); the chain then runs on from the one before it."""
        stored = [_stored_signal(r) for r in db.execute(
            _SIGNAL_SELECT.where(T_signals.c.ts == ts).order_by(T_signals.c.id)).all()]
        prev = db.execute(select(T_manifests.c.hash).where(T_manifests.c.cycle_ts != ts)
                          .order_by(T_manifests.c.seq.desc()).limit(1)).first()
        sealed = seal(stored, prev[0] if prev else None)
        m = sealed.manifest
        db.execute(delete(T_manifests).where(T_manifests.c.cycle_ts == ts))
        db.execute(T_manifests.insert().values(cycle_ts=m["cycle_ts"], manifest=json.dumps(m["manifest"]),
                                               hash=m["hash"], signature=m["signature"], public_key=m["public_key"],
                                               leaves=m["leaves"]))
        for sid, s in sealed.signals.items():
            db.execute(update(T_signals).where(T_signals.c.id == sid)
                       .values(record_hash=s.record_hash, proof=json.dumps(s.proof)))
        for sid, p in sealed.closings.items():
            db.execute(update(T_signals).where(T_signals.c.id == sid).values(closing_proof=json.dumps(p)))

    # ---- seals (read by `verify`, /verify) -------------------------------------------------
    @contextmanager
    def reading(self) -> Iterator[None]:
        """One consistent view for a series of reads (a read transaction; PostgreSQL: REPEATABLE READ): `verify`
        sees no cycle half-pruned or half-committed by an engine running beside it."""
        with self._lock, self.engine.connect() as conn:
            if self.shared:
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                self._local.conn = conn
                try:
                    yield
                finally:
                    self._local.conn = None

    def manifests(self) -> list[StoredManifest]:
        """Every seal, in the order they were made (the chain's order)."""
        with self._read() as c:
            rows = c.execute(_MANIFEST_SELECT.order_by(T_manifests.c.seq)).all()
        return [_manifest(r) for r in rows]

    def last_manifest(self) -> StoredManifest | None:
        with self._read() as c:
            row = c.execute(_MANIFEST_SELECT.order_by(T_manifests.c.seq.desc()).limit(1)).first()
        return _manifest(row) if row else None

    def last_manifest_before(self, ts_ms: int) -> StoredManifest | None:
        """The last sealed manifest of a cycle before `ts_ms` (a day's last root: the start of the next day)."""
        with self._read() as c:
            row = c.execute(_MANIFEST_SELECT.where(T_manifests.c.cycle_ts < ts_ms)
                            .order_by(T_manifests.c.cycle_ts.desc()).limit(1)).first()
        return _manifest(row) if row else None

    def manifest_for(self, cycle_ts: int) -> StoredManifest | None:
        with self._read() as c:
            row = c.execute(_MANIFEST_SELECT.where(T_manifests.c.cycle_ts == cycle_ts)).first()
        return _manifest(row) if row else None

    def cycle_score_rows(self, ts: int) -> list[tuple[str, int, str, str, str]]:
        """A cycle's score rows as stored, by symbol: (symbol, score, bias, regime, payload JSON)."""
        with self._read() as c:
            return [tuple(r) for r in c.execute(
                select(T_scores.c.symbol, T_scores.c.score, T_scores.c.bias, T_scores.c.regime, T_scores.c.payload)
                .where(T_scores.c.ts == ts).order_by(T_scores.c.symbol)).all()]

    def cycle_signals(self, ts: int) -> list[StoredSignal]:
        """A cycle's signals as stored, by id."""
        with self._read() as c:
            rows = c.execute(_SIGNAL_SELECT.where(T_signals.c.ts == ts).order_by(T_signals.c.id)).all()
        return [_stored_signal(r) for r in rows]

    def signal_proof(self, signal_id: str) -> InclusionProof | None:
        """The inclusion proof kept with a sealed signal (None: not sealed)."""
        with self._read() as c:
            row = c.execute(select(T_signals.c.proof).where(T_signals.c.id == signal_id.strip().upper())).first()
        return json.loads(row[0]) if row and row[0] else None

    def cycle_times(self) -> list[int]:
        """Every stored cycle's time, oldest first."""
        with self._read() as c:
            return list(c.execute(select(T_cycles.c.ts).order_by(T_cycles.c.ts)).scalars())

    def signal_cycle_times(self) -> set[int]:
        """The cycle times that have signals."""
        with self._read() as c:
            return set(c.execute(select(T_signals.c.ts).distinct()).scalars())

    def signal(self, signal_id: str) -> StoredSignal | None:
        with self._read() as c:
            row = c.execute(_SIGNAL_SELECT.where(T_signals.c.id == signal_id.strip().upper())).first()
        return _stored_signal(row) if row else None

    def signals(self, ids: list[str]) -> list[StoredSignal]:
        """The signals with these ids, in the order asked (unknown ids left out)."""
        if not ids:
            return []
        with self._read() as c:
            rows = c.execute(_SIGNAL_SELECT.where(T_signals.c.id.in_(ids))).all()
        by_id = {r[0]: _stored_signal(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def recent_signals(self, limit: int = 20, symbols: list[str] | None = None,
                       recipient: str | None = None) -> list[StoredSignal]:
        """Newest first; for a recipient, the signals that were queued for them."""
        if recipient is not None:
            with self._read() as c:
                rows = c.execute(select(T_outbox.c.signal_ids)
                                 .where(T_outbox.c.recipient == recipient, T_outbox.c.notice.is_(None))
                                 .order_by(T_outbox.c.id.desc()).limit(limit)).all()
            ids = list(dict.fromkeys(i for r in rows for i in json.loads(r[0])))[:limit]
            return sorted(self.signals(ids), key=lambda g: -g["ts"])
        q = _SIGNAL_SELECT
        if symbols:
            q = q.where(T_signals.c.symbol.in_(list(symbols)))
        with self._read() as c:
            rows = c.execute(q.order_by(T_signals.c.ts.desc(), T_signals.c.id).limit(limit)).all()
        return [_stored_signal(r) for r in rows]

    def outbox_rows(self) -> list[OutboxRow]:
        """Every outbox row, oldest first."""
        return self._outbox_where(None)

    def outbox_by_status(self, status: OutboxStatus) -> list[OutboxRow]:
        """Rows in one state, oldest first ('sending' after a crash: claimed, outcome unknown)."""
        return self._outbox_where(T_outbox.c.status == status)

    def outbox_row(self, key: str) -> OutboxRow | None:
        """The row with this idempotency key."""
        rows = self._outbox_where(T_outbox.c.key == key)
        return rows[0] if rows else None

    def _outbox_where(self, where) -> list[OutboxRow]:
        q = select(*_OUTBOX).order_by(T_outbox.c.id)
        with self._read() as c:
            rows = c.execute(q if where is None else q.where(where)).all()
        return [_outbox_row(r) for r in rows]

    def claim_due(self, now_ms: int, skip_channels: Iterable[str] = (), *, worker: str = "",
                  max_routes: int | None = None, lease_ms: int = LEASE_MS) -> list[OutboxRow]:
        """Pending rows whose time has come, marked 'sending' with a lease until now + `lease_ms` (so a crash
        mid-send is visible, and another worker takes the rows over once the lease is over). Rows of
        `skip_channels` (a platform that is down) are left alone: pending, no attempt counted.

        A route's (recipient, channel, address) due rows are claimed together, by one worker (they make one
        digest); `max_routes` caps how many routes one call takes, so several workers share the work. On
        PostgreSQL each route is taken under a transaction-scoped advisory lock on the route and its rows with
        FOR UPDATE SKIP LOCKED: two workers claiming at once never split a route or take the same row."""
        skip = sorted(set(skip_channels))
        due = and_(T_outbox.c.status == "pending", T_outbox.c.due <= now_ms,
                   *([T_outbox.c.channel.not_in(skip)] if skip else []))
        route_cols = (T_outbox.c.recipient, T_outbox.c.channel, T_outbox.c.address)
        with self._tx() as db:
            routes = db.execute(select(*route_cols).where(due).group_by(*route_cols)
                                .order_by(func.min(T_outbox.c.id))
                                .limit(None if max_routes is None else max_routes * 2)).all()
            ids: list[int] = []
            taken = 0
            for recipient, channel, address in routes:
                if max_routes is not None and taken >= max_routes:
                    break
                this_route = and_(due, T_outbox.c.recipient == recipient, T_outbox.c.channel == channel,
                                  T_outbox.c.address == address)
                q = select(T_outbox.c.id).where(this_route)
                if self.shared:
                    route_key = f"outbox-route:{recipient}/{channel}/{address}"
                    if not db.execute(select(func.pg_try_advisory_xact_lock(func.hashtextextended(route_key, 0))))\
                            .scalar():
                        continue              # another worker is claiming this route right now
                    q = q.with_for_update(skip_locked=True)
                got = list(db.execute(q).scalars())
                if got:
                    ids += got
                    taken += 1
            if ids:
                db.execute(update(T_outbox).where(T_outbox.c.id.in_(ids))
                           .values(status="sending", attempts=T_outbox.c.attempts + 1,
                                   lease_until=now_ms + lease_ms, worker=worker or None))
        return self._outbox_where(T_outbox.c.id.in_(ids)) if ids else []

    def expired_claims(self, now_ms: int) -> list[tuple[OutboxRow, int | None]]:
        """'sending' rows whose lease is over (their worker died or hung), with the lease each was claimed
        until: for `settle_expired`. Rows claimed before leases existed (no lease) count as expired."""
        with self._read() as c:
            rows = c.execute(select(*_OUTBOX, T_outbox.c.lease_until)
                             .where(T_outbox.c.status == "sending",
                                    or_(T_outbox.c.lease_until.is_(None), T_outbox.c.lease_until < now_ms))
                             .order_by(T_outbox.c.id)).all()
        return [(_outbox_row(r[:-1]), r[-1]) for r in rows]

    def settle_expired(self, row_id: int, lease_until: int | None, status: OutboxStatus,
                       sent: int | None = None) -> bool:
        """Set an expired claim's row to `status` only if it is still that claim (still 'sending' with the same
        lease): two workers settling the same row, or a worker settling a row another has meanwhile claimed
        afresh, change nothing. True when this call settled it."""
        lease = T_outbox.c.lease_until.is_(None) if lease_until is None else T_outbox.c.lease_until == lease_until
        with self._tx() as db:
            return db.execute(update(T_outbox).where(T_outbox.c.id == row_id, T_outbox.c.status == "sending", lease)
                              .values(status=status, sent=sent, lease_until=None)).rowcount == 1

    def mark_outbox(self, ids: list[int], status: OutboxStatus, *, error: str | None = None, due: int | None = None,
                    sent: int | None = None) -> None:
        if not ids:
            return
        values = {"status": status, "last_error": error, "sent": sent}
        if due is not None:
            values["due"] = due
        with self._tx() as db:
            db.execute(update(T_outbox).where(T_outbox.c.id.in_(ids)).values(**values))

    def record_parts_sent(self, ids: list[int], parts_sent: int, digest_key: str, *,
                          sent: int | None = None) -> None:
        """The platform accepted the first `parts_sent` parts of the digest made of these rows (`digest_key`:
        the key of its first row, so a resume rebuilds the same digest). Committed before the next part is
        sent; with `sent` (ms) that was the last part and the rows are 'sent' in the same transaction."""
        if not ids:
            return
        values: dict = {"parts_sent": parts_sent, "digest_key": digest_key}
        if sent is not None:
            values.update(status="sent", last_error=None, sent=sent)
        with self._tx() as db:
            db.execute(update(T_outbox).where(T_outbox.c.id.in_(ids)).values(**values))

    def enqueue_notices(self, entries: list[OutboxEntry], fired: Iterable[FiredRow] = ()) -> int:
        """Queue notice rows (each entry's `notice` set, `signal_ids` empty) and, in the same transaction, the
        cooldowns they start (`fired`). A key already queued is left as it is, so a notice enqueued twice (a
        restart, a second refresh) is delivered once. Returns the rows added."""
        fired = list(fired)
        keys = [o["key"] for o in entries]
        with self._tx() as db:
            if fired:
                db.execute(database.upsert(db, T_last_fired),
                           [{"recipient": r, "symbol": sym, "rule": rule, "ts": t} for r, sym, rule, t in fired])
            if not entries:
                return 0
            had = db.execute(select(func.count()).select_from(T_outbox).where(T_outbox.c.key.in_(keys))).scalar_one()
            db.execute(database.insert(db, T_outbox).on_conflict_do_nothing(), [
                {"key": o["key"], "recipient": o["recipient"], "channel": o["channel"], "address": o["address"],
                 "created": o["created"], "due": o["due"], "signal_ids": "[]", "notice": json.dumps(o["notice"])}
                for o in entries])
            return db.execute(select(func.count()).select_from(T_outbox).where(T_outbox.c.key.in_(keys))).scalar_one() - had

    def outbox_counts(self) -> dict[str, int]:
        with self._read() as c:
            return dict(c.execute(select(T_outbox.c.status, func.count()).group_by(T_outbox.c.status)).all())

    # ---- meta (small cached facts: funding intervals, universe) ---------------------------
    def get_meta(self, key: str) -> object | None:
        with self._read() as c:
            row = c.execute(select(T_meta.c.value).where(T_meta.c.key == key)).first()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: object) -> None:
        with self._tx() as db:
            db.execute(database.upsert(db, T_meta), {"key": key, "value": json.dumps(value)})

    # ---- closed signals (bot.outcomes, bot.evaluation) ---------------------------------------------------------
    def open_signals(self) -> list[StoredSignal]:
        """Signals without an outcome yet, oldest first."""
        with self._read() as c:
            rows = c.execute(_SIGNAL_SELECT.where(T_signals.c.outcome.is_(None))
                             .order_by(T_signals.c.ts, T_signals.c.id)).all()
        return [_stored_signal(r) for r in rows]

    def closed_signals(self, since_ms: int = 0, symbol: str | None = None) -> list[StoredSignal]:
        """Signals closed by the evaluation (opened at or after `since_ms`), oldest first."""
        q = _SIGNAL_SELECT.where(T_signals.c.closed_ts.is_not(None), T_signals.c.ts >= since_ms)
        if symbol:
            q = q.where(T_signals.c.symbol == symbol)
        with self._read() as c:
            rows = c.execute(q.order_by(T_signals.c.ts, T_signals.c.id)).all()
        return [_stored_signal(r) for r in rows]

    def cycle_closings(self, ts: int) -> list[StoredSignal]:
        """The signals whose closing was sealed in cycle `ts`, by id."""
        with self._read() as c:
            rows = c.execute(_SIGNAL_SELECT.where(T_signals.c.closed_ts == ts).order_by(T_signals.c.id)).all()
        return [_stored_signal(r) for r in rows]

    def closing_proof(self, signal_id: str) -> InclusionProof | None:
        """The inclusion proof of a signal's closing in the cycle that sealed it (None: open, or not sealed)."""
        with self._read() as c:
            row = c.execute(select(T_signals.c.closing_proof)
                            .where(T_signals.c.id == signal_id.strip().upper())).first()
        return json.loads(row[0]) if row and row[0] else None

    def closed_in(self, signal_id: str) -> int | None:
        """The cycle whose seal holds this signal's closing (None: open)."""
        with self._read() as c:
            row = c.execute(select(T_signals.c.closed_ts).where(T_signals.c.id == signal_id.strip().upper())).first()
        return row[0] if row else None

    def signals_since(self, since_ms: int) -> list[StoredSignal]:
        """Every signal opened at or after `since_ms`, oldest first."""
        with self._read() as c:
            rows = c.execute(_SIGNAL_SELECT.where(T_signals.c.ts >= since_ms)
                             .order_by(T_signals.c.ts, T_signals.c.id)).all()
        return [_stored_signal(r) for r in rows]

    def score_rows_between(self, start_ms: int, end_ms: int) -> list[tuple[int, str, int, str]]:
        """(ts, symbol, score, payload JSON) of every stored score row in [start_ms, end_ms], by time (backtest)."""
        with self._read() as c:
            return [tuple(r) for r in c.execute(
                select(T_scores.c.ts, T_scores.c.symbol, T_scores.c.score, T_scores.c.payload)
                .where(T_scores.c.ts.between(start_ms, end_ms)).order_by(T_scores.c.ts, T_scores.c.symbol)).all()]

    def score_rows_at_period_starts(self, since_ms: int, period_ms: int) -> list[tuple[int, str, int, str]]:
        """(ts, symbol, score, payload JSON) of the first stored cycle of each period of `period_ms` (counted from
        the epoch) since `since_ms`, by time: the samples of the score-vs-move lens (bot.performance)."""
        firsts = (select(func.min(T_cycles.c.ts)).where(T_cycles.c.ts >= since_ms)
                  .group_by(T_cycles.c.ts // int(period_ms)))     # floor division (SQLAlchemy 2: `/` is true division)
        with self._read() as c:
            return [tuple(r) for r in c.execute(
                select(T_scores.c.ts, T_scores.c.symbol, T_scores.c.score, T_scores.c.payload)
                .where(T_scores.c.ts.in_(firsts)).order_by(T_scores.c.ts, T_scores.c.symbol)).all()]

    # ---- LiqMap: model steps and realised liquidation prints (bot/liqmap_feed.py writes them) -------------------
    def add_liq_steps(self, symbol: str, steps: Iterable[Step]) -> int:
        """Upsert: the still-open candle is rewritten by the next refresh."""
        rows = [{"symbol": symbol, "ts": s.ts, "open": s.open, "high": s.high, "low": s.low, "close": s.close,
                 "base_volume": s.base_volume, "quote_volume": s.quote_volume, "taker_buy_quote": s.taker_buy_quote,
                 "oi": s.oi} for s in steps]
        if rows:
            with self._tx() as db:
                db.execute(database.upsert(db, T_liq_steps), rows)
        return len(rows)

    def liq_steps(self, symbol: str, since_ms: int) -> list[Step]:
        t = T_liq_steps.c
        with self._read() as c:
            rows = c.execute(select(t.ts, t.open, t.high, t.low, t.close, t.base_volume, t.quote_volume,
                                    t.taker_buy_quote, t.oi).where(t.symbol == symbol, t.ts >= since_ms)
                             .order_by(t.ts)).all()
        return [Step(*r) for r in rows]

    def last_liq_step(self, symbol: str) -> int | None:
        """The open time of the newest step stored with its open interest (None: none yet)."""
        t = T_liq_steps.c
        with self._read() as c:
            return c.execute(select(func.max(t.ts)).where(t.symbol == symbol, t.oi.is_not(None))).scalar()

    def add_liq_prints(self, prints: Iterable[Print]) -> int:
        rows = [{"symbol": p.symbol, "ts": p.ts, "side": p.side, "price": p.price, "qty": p.qty} for p in prints]
        if rows:
            with self._tx() as db:
                db.execute(T_liq_prints.insert(), rows)
        return len(rows)

    def liq_prints(self, symbol: str, since_ms: int) -> list[Print]:
        t = T_liq_prints.c
        with self._read() as c:
            rows = c.execute(select(t.ts, t.symbol, t.side, t.price, t.qty)
                             .where(t.symbol == symbol, t.ts >= since_ms).order_by(t.ts)).all()
        return [Print(*r) for r in rows]

    def prune_liq(self, before_ms: int) -> int:
        """Bounded retention: steps and prints before `before_ms` go."""
        with self._tx() as db:
            n = db.execute(delete(T_liq_steps).where(T_liq_steps.c.ts < before_ms)).rowcount
            return n + db.execute(delete(T_liq_prints).where(T_liq_prints.c.ts < before_ms)).rowcount

    # ---- a send rate shared by every process --------------------------------------------------
    def reserve_send_slot(self, name: str, interval_us: int, now_us: int) -> int:
        """The next free slot (µs) of the rate `name` (one send per `interval_us`), taken atomically: the caller
        sends at the returned time. Every process using the database draws from the same schedule."""
        with self._tx() as db:
            stmt = database.insert(db, T_pacing).values(name=name, next_us=now_us + interval_us)
            stmt = stmt.on_conflict_do_update(index_elements=["name"], set_={
                "next_us": func.max(T_pacing.c.next_us, now_us) + interval_us if not self.shared
                else func.greatest(T_pacing.c.next_us, now_us) + interval_us})
            db.execute(stmt)
            return db.execute(select(T_pacing.c.next_us).where(T_pacing.c.name == name)).scalar_one() - interval_us

    # ---- watchlists kept in the database (bot.watchlists.storage.DatabaseStorage) -------------------
    def watchlist_versions(self) -> dict[str, int]:
        """user id -> version of each stored watchlist document (what hot reload compares)."""
        with self._read() as c:
            return dict(c.execute(select(T_watchlists.c.user_id, T_watchlists.c.version)).all())

    def watchlist_text(self, user_id: str) -> tuple[str, int] | None:
        """(YAML text, version) of a user's watchlist, None when there is none."""
        with self._read() as c:
            row = c.execute(select(T_watchlists.c.text, T_watchlists.c.version)
                            .where(T_watchlists.c.user_id == user_id)).first()
        return (row[0], row[1]) if row else None

    def put_watchlist(self, user_id: str, text: str, now_ms: int) -> int:
        """Store a user's YAML document (comments and all) as the next version; returns that version."""
        with self._tx() as db:
            stmt = database.insert(db, T_watchlists).values(user_id=user_id, text=text, version=1, updated=now_ms)
            stmt = stmt.on_conflict_do_update(index_elements=["user_id"], set_={
                "text": stmt.excluded.text, "updated": stmt.excluded.updated,
                "version": T_watchlists.c.version + 1})
            db.execute(stmt)
            return db.execute(select(T_watchlists.c.version).where(T_watchlists.c.user_id == user_id)).scalar_one()

    def delete_watchlist(self, user_id: str) -> bool:
        with self._tx() as db:
            return db.execute(delete(T_watchlists).where(T_watchlists.c.user_id == user_id)).rowcount == 1

    @contextmanager
    def watchlist_lock(self, user_id: str) -> Iterator[None]:
        """Serialises edits of one user's watchlist across processes (PostgreSQL: an advisory lock held for the
        block, on a connection of its own; SQLite: an flock on `<db>.watchlists.lock`, for a script editing beside
        the bot). The OS or the server drops it when the holder dies."""
        if not self.shared:
            if self.file is None:
                yield
                return
            import fcntl
            with open(f"{self.file}.watchlists.lock", "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                yield             # closing the file drops the lock
            return
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            key = database.lock_key(f"watchlist:{user_id}")
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})


def _identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _stored_signal(row: tuple) -> StoredSignal:
    sid, ts, symbol, rule, kind, score, bias, regime, receipt, outcome, record_hash = row
    return StoredSignal(id=sid, ts=ts, symbol=symbol, rule=rule, kind=kind, score=score, bias=bias, regime=regime,
                        receipt=json.loads(receipt), outcome=json.loads(outcome) if outcome else None,
                        record_hash=record_hash)


def _manifest(row: tuple) -> StoredManifest:
    seq, cycle_ts, manifest, digest, signature, public_key, leaves = row
    return StoredManifest(seq=seq, cycle_ts=cycle_ts, manifest=json.loads(manifest), hash=digest, signature=signature,
                          public_key=public_key, leaves=bytes(leaves) if leaves is not None else None)


def _outbox_row(row: tuple) -> OutboxRow:
    (rid, key, recipient, channel, address, created, due, signal_ids, status, attempts, last_error, sent,
     parts_sent, digest_key, notice) = row
    return OutboxRow(id=rid, key=key, recipient=recipient, channel=channel, address=address, created=created,
                     due=due, signal_ids=json.loads(signal_ids), status=status, attempts=attempts,
                     last_error=last_error, sent=sent, parts_sent=parts_sent, digest_key=digest_key,
                     notice=json.loads(notice) if notice else None)
