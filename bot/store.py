"""Storage behind one small interface. SQLite (WAL) now; the methods are what a PostgreSQL store
would implement for hosted workers with ephemeral disks.

Sync API on purpose: each call is a short transaction; the engine runs batches in a worker thread
(asyncio.to_thread) so the shared event loop never blocks on disk.

Callers ask by name (`outbox_by_status("sending")`, `outbox_row(key)`), never with SQL of their own; what
goes in and comes out is typed in `records`.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .records import (Closing, CycleRecord, FiredRow, InclusionProof, ManifestRow, OIPoint,  # noqa: F401
                      OutboxEntry, OutboxRow, OutboxStatus, ScoredRow, SealedCycle, SignalRecord, StoredCycle,
                      StoredManifest, StoredSignal, SymbolStateRow)
from .records import scored_row, stored_score
from .liqmap import Print, Step
from .score import rank_key

# Seals the cycle being committed, inside its transaction: given the cycle's signals as stored (by id) and the
# previous manifest's hash, returns the manifest and each signal's receipt hash and proof (bot.sealing).
CycleSealer = Callable[[list[StoredSignal], str | None], SealedCycle]

SCHEMA = """
CREATE TABLE IF NOT EXISTS oi_history (
    symbol TEXT NOT NULL, ts INTEGER NOT NULL, oi REAL NOT NULL, price REAL,
    PRIMARY KEY (symbol, ts)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS oi_history_ts ON oi_history (ts);
CREATE TABLE IF NOT EXISTS cycles (
    ts INTEGER PRIMARY KEY, duration_s REAL, requests INTEGER, weight INTEGER,
    scored INTEGER, failed TEXT
);
CREATE TABLE IF NOT EXISTS scores (
    ts INTEGER NOT NULL, symbol TEXT NOT NULL, score INTEGER NOT NULL, bias TEXT NOT NULL,
    regime TEXT NOT NULL, payload TEXT NOT NULL,
    PRIMARY KEY (ts, symbol)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS scores_symbol_ts ON scores (symbol, ts);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS symbol_state (
    symbol TEXT PRIMARY KEY, score INTEGER NOT NULL, bias TEXT NOT NULL, regime TEXT NOT NULL, armed TEXT NOT NULL,
    regime_cycles INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS last_fired (
    recipient TEXT NOT NULL, symbol TEXT NOT NULL, rule TEXT NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY (recipient, symbol, rule)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS signals (
    id TEXT PRIMARY KEY, ts INTEGER NOT NULL, symbol TEXT NOT NULL, rule TEXT NOT NULL, kind TEXT NOT NULL,
    score INTEGER NOT NULL, bias TEXT NOT NULL, regime TEXT NOT NULL, receipt TEXT NOT NULL, outcome TEXT,
    record_hash TEXT, proof TEXT
);
CREATE INDEX IF NOT EXISTS signals_ts ON signals (ts);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, recipient TEXT NOT NULL, channel TEXT NOT NULL,
    address TEXT NOT NULL, created INTEGER NOT NULL, due INTEGER NOT NULL, signal_ids TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, sent INTEGER,
    parts_sent INTEGER NOT NULL DEFAULT 0, digest_key TEXT
);
CREATE INDEX IF NOT EXISTS outbox_status_due ON outbox (status, due);
CREATE TABLE IF NOT EXISTS manifests (
    seq INTEGER PRIMARY KEY, cycle_ts INTEGER NOT NULL UNIQUE, manifest TEXT NOT NULL, hash TEXT NOT NULL,
    signature TEXT NOT NULL, public_key TEXT NOT NULL, leaves BLOB
);
"""


# LiqMap (bot/liqmap): model steps (candle with taker-buy volume + OI at its close) and realised liquidation prints.
LIQMAP_SCHEMA = """
CREATE TABLE IF NOT EXISTS liq_steps (
    symbol TEXT NOT NULL, ts INTEGER NOT NULL, open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL,
    close REAL NOT NULL, base_volume REAL NOT NULL, quote_volume REAL NOT NULL, taker_buy_quote REAL NOT NULL,
    oi REAL, PRIMARY KEY (symbol, ts));
CREATE TABLE IF NOT EXISTS liq_prints (
    symbol TEXT NOT NULL, ts INTEGER NOT NULL, side TEXT NOT NULL, price REAL NOT NULL, qty REAL NOT NULL);
CREATE INDEX IF NOT EXISTS liq_prints_by_symbol ON liq_prints (symbol, ts);
"""

OUTBOX_COLUMNS = ("id", "key", "recipient", "channel", "address", "created", "due", "signal_ids",
                  "status", "attempts", "last_error", "sent", "parts_sent", "digest_key", "notice")
# Columns added after the first release: (table, column, definition). A database file made before them gets
# them at open (ALTER TABLE ... ADD COLUMN; existing rows take the default).
MIGRATIONS = (
    ("outbox", "parts_sent", "INTEGER NOT NULL DEFAULT 0"),   # digest parts the platform accepted
    ("outbox", "digest_key", "TEXT"),                         # the digest those parts belong to
    ("signals", "record_hash", "TEXT"),                       # receipt hash, set when the cycle is sealed
    ("signals", "proof", "TEXT"),                             # its inclusion proof in the cycle's tree (JSON)
    ("signals", "closed_ts", "INTEGER"),                      # the cycle whose seal holds its closing (outcome)
    ("signals", "closing_proof", "TEXT"),                     # the closing's inclusion proof in that cycle (JSON)
    ("symbol_state", "timing", "TEXT"),                       # rules' confirmations/re-arming in time (JSON)
    ("outbox", "notice", "TEXT"),                             # a notice row's Notice (JSON); NULL: signal digest
)
SIGNAL_COLUMNS = ("id", "ts", "symbol", "rule", "kind", "score", "bias", "regime", "receipt", "outcome", "record_hash")
MANIFEST_COLUMNS = ("seq", "cycle_ts", "manifest", "hash", "signature", "public_key", "leaves")
SCORES_PRUNED_BEFORE = "scores_pruned_before"    # meta: score rows (and leaf hashes) before this ts were pruned
SCORES_THINNED = "scores_thinned"   # meta {"before": ts, "step": ms}: before ts only each step's first cycle keeps scores
_COMPACT = (",", ":")               # score payloads: no blanks (the seal hashes the parsed payload, not its text)


def _score_payload(row: ScoredRow, ts: int) -> str:
    """A score row as stored: records.stored_score (what the seal hashes), compact, UTF-8 as is."""
    return json.dumps(stored_score(row, ts), separators=_COMPACT, ensure_ascii=False)


# the cycles that keep their score rows when thinned: the first of each step (ms), counted from the epoch
_KEPT_CYCLES = "SELECT MIN(ts) FROM cycles WHERE ts < ? GROUP BY ts / ?"
_SIGNAL_SELECT = f"SELECT {', '.join(SIGNAL_COLUMNS)} FROM signals"


class StoreUnavailable(Exception):
    """The database file this store has open is no longer the one at its path (deleted, replaced) or can no longer
    be written: str() says what happened and what to do, for the operator."""


class Store:
    """SQLite store. One connection guarded by a lock (calls come from the loop and worker threads)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._db.executescript(LIQMAP_SCHEMA)
        self._migrate()
        self.file = self._main_file()           # the file SQLite opened (absolute), None in memory
        self._identity = _identity(self.file) if self.file else None

    # ---- durability -----------------------------------------------------------------------
    def _main_file(self) -> str | None:
        with self._lock:
            rows = self._db.execute("PRAGMA database_list").fetchall()
        return next((f for _, name, f in rows if name == "main" and f), None)

    def check_file(self) -> str | None:
        """Is what this store commits still durable? Raises StoreUnavailable when the database file was deleted or
        replaced under the open connection (the path's device/inode is no longer the one opened: commits would go
        to an unlinked file and vanish at the next restart). Returns a problem text when the file or its folder is
        no longer writable for this process (this connection still writes, the next start could not), else None.
        An in-memory store always passes. Cheap: a few stat calls."""
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

    def _migrate(self) -> None:
        """Add the columns of MIGRATIONS that an older database file lacks (idempotent)."""
        with self._tx() as db:
            for table, column, definition in MIGRATIONS:
                have = {r[1] for r in db.execute(f"PRAGMA table_info({table})").fetchall()}
                if column not in have:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self):
        return _Tx(self._db, self._lock)

    # ---- OI history -----------------------------------------------------------------------
    def add_oi_points(self, points: Iterable[OIPoint]) -> int:
        rows = [(p.symbol, p.ts, p.oi, p.price) for p in points]
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO oi_history VALUES (?,?,?,?)", rows)
        return len(rows)

    def oi_points_between(self, start_ms: int, end_ms: int, symbols: Iterable[str] | None = None) -> list[OIPoint]:
        with self._lock:
            rows = self._db.execute(
                "SELECT symbol, ts, oi, price FROM oi_history WHERE ts BETWEEN ? AND ? ORDER BY symbol, ts",
                (start_ms, end_ms)).fetchall()
        wanted = set(symbols) if symbols is not None else None
        return [OIPoint(*r) for r in rows if wanted is None or r[0] in wanted]

    def oi_series(self, symbol: str, since_ms: int) -> list[OIPoint]:
        with self._lock:
            rows = self._db.execute(
                "SELECT symbol, ts, oi, price FROM oi_history WHERE symbol=? AND ts>=? ORDER BY ts",
                (symbol, since_ms)).fetchall()
        return [OIPoint(*r) for r in rows]

    def history_coverage(self) -> dict[str, tuple[int, int]]:
        """symbol -> (oldest ts, newest ts) stored."""
        with self._lock:
            rows = self._db.execute("SELECT symbol, MIN(ts), MAX(ts) FROM oi_history GROUP BY symbol").fetchall()
        return {s: (lo, hi) for s, lo, hi in rows}

    def prune_history(self, before_ms: int) -> int:
        """OI history and score rows before `before_ms` go; the seals of those cycles stay (manifests, and the
        signals' own proofs), their leaf hashes go with the scores, and the horizon is noted for `verify`."""
        with self._tx() as db:
            n = db.execute("DELETE FROM oi_history WHERE ts < ?", (before_ms,)).rowcount
            db.execute("DELETE FROM scores WHERE ts < ?", (before_ms,))
            db.execute("UPDATE manifests SET leaves = NULL WHERE cycle_ts < ? AND leaves IS NOT NULL", (before_ms,))
            row = db.execute("SELECT value FROM meta WHERE key=?", (SCORES_PRUNED_BEFORE,)).fetchone()
            if row is None or json.loads(row[0]) < before_ms:
                db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (SCORES_PRUNED_BEFORE, json.dumps(before_ms)))
        return n

    def thin_history(self, before_ms: int, step_ms: int) -> int:
        """OI points before `before_ms` are thinned to one per symbol and `step_ms` bucket (the earliest): the
        1h change reads the fine points, the 4h/24h changes and the charts need no finer step than this."""
        with self._tx() as db:
            return db.execute(
                "DELETE FROM oi_history WHERE ts < ? AND EXISTS (SELECT 1 FROM oi_history k "
                "WHERE k.symbol = oi_history.symbol AND k.ts < oi_history.ts "
                "AND k.ts >= oi_history.ts - (oi_history.ts % ?))", (before_ms, step_ms)).rowcount

    def thin_scores(self, before_ms: int, step_ms: int) -> int:
        """Score rows of cycles before `before_ms` go, but for the first cycle of each `step_ms` step (counted from
        the epoch, so the hour's first cycle stays too: bot.performance samples it); the thinned cycles' seals stay
        (manifests, the signals' and closings' own proofs), their leaf hashes go with the rows, and the horizon is
        noted for `verify` beside the pruning's (SCORES_THINNED). Portable SQL."""
        with self._tx() as db:
            n = db.execute(f"DELETE FROM scores WHERE ts < ? AND ts NOT IN ({_KEPT_CYCLES})",
                           (before_ms, before_ms, step_ms)).rowcount
            db.execute(f"UPDATE manifests SET leaves = NULL WHERE cycle_ts < ? AND leaves IS NOT NULL "
                       f"AND cycle_ts NOT IN ({_KEPT_CYCLES})", (before_ms, before_ms, step_ms))
            row = db.execute("SELECT value FROM meta WHERE key=?", (SCORES_THINNED,)).fetchone()
            old = json.loads(row[0]) if row else None
            if old is None or old["before"] < before_ms or old["step"] != step_ms:
                value = json.dumps({"before": max(before_ms, old["before"] if old else 0), "step": step_ms})
                if row is None:
                    db.execute("INSERT INTO meta (key, value) VALUES (?,?)", (SCORES_THINNED, value))
                else:
                    db.execute("UPDATE meta SET value=? WHERE key=?", (value, SCORES_THINNED))
        return n

    def kept_score_cycles(self, before_ms: int, step_ms: int) -> set[int]:
        """The cycles before `before_ms` that `thin_scores` keeps the score rows of."""
        with self._lock:
            return {r[0] for r in self._db.execute(_KEPT_CYCLES, (before_ms, step_ms)).fetchall()}

    # ---- cycles and scores ----------------------------------------------------------------
    def save_cycle(self, ts: int, duration_s: float, requests: int, weight: int,
                   results: list[ScoredRow], failed: dict[str, str]) -> None:
        rows = [(ts, r["symbol"], r["score"], r["bias"], r["regime_key"], _score_payload(r, ts))
                for r in results]
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO cycles VALUES (?,?,?,?,?,?)",
                       (ts, duration_s, requests, weight, len(results), json.dumps(failed)))
            db.executemany("INSERT OR REPLACE INTO scores (ts, symbol, score, bias, regime, payload) "
                           "VALUES (?,?,?,?,?,?)", rows)

    def last_cycle(self) -> StoredCycle | None:
        with self._lock:
            row = self._db.execute("SELECT ts, duration_s, requests, weight, scored, failed FROM cycles "
                                   "ORDER BY ts DESC LIMIT 1").fetchone()
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
        with self._lock:
            rows = self._db.execute("SELECT payload FROM scores WHERE ts=?", (last["ts"],)).fetchall()
        return last["ts"], sorted((scored_row(json.loads(r[0]), last["ts"]) for r in rows), key=rank_key)

    def score_series(self, symbol: str, since_ms: int) -> list[tuple[int, int, str]]:
        with self._lock:
            return self._db.execute("SELECT ts, score, bias FROM scores WHERE symbol=? AND ts>=? ORDER BY ts",
                                    (symbol, since_ms)).fetchall()

    def score_payloads(self, symbol: str, since_ms: int) -> list[tuple[int, ScoredRow]]:
        with self._lock:
            rows = self._db.execute("SELECT ts, payload FROM scores WHERE symbol=? AND ts>=? ORDER BY ts",
                                    (symbol, since_ms)).fetchall()
        return [(ts, scored_row(json.loads(p), ts)) for ts, p in rows]

    # ---- alert rules state, signals, outbox --------------------------------------------------
    def load_symbol_state(self) -> dict[str, SymbolStateRow]:
        with self._lock:
            rows = self._db.execute("SELECT symbol, score, bias, regime, armed, regime_cycles, timing "
                                    "FROM symbol_state").fetchall()
        return {s: SymbolStateRow(sc, b, rg, {int(k): v for k, v in json.loads(a).items()}, n,
                                  json.loads(t) if t else None)
                for s, sc, b, rg, a, n, t in rows}

    def load_last_fired(self, since_ms: int) -> dict[tuple[str, str, str], int]:
        with self._lock:
            rows = self._db.execute("SELECT recipient, symbol, rule, ts FROM last_fired WHERE ts >= ?",
                                    (since_ms,)).fetchall()
        return {(r, s, rule): ts for r, s, rule, ts in rows}

    def commit_alert_cycle(self, cycle: CycleRecord, results: list[ScoredRow],
                           symbol_state: dict[str, SymbolStateRow], signals: list[SignalRecord],
                           fired: list[FiredRow], outbox: list[OutboxEntry], seal: CycleSealer | None = None,
                           closings: list[Closing] = ()) -> None:
        """Scores, rule state, signals, cooldowns and outbox rows of one cycle, in ONE transaction:
        after a crash the cycle either happened entirely (alerts queued, state advanced) or not at all.
        With `seal`, the cycle's seal is made and kept in the same transaction (see `_seal`). `closings`: signals
        that closed this cycle (their outcome, sealed in this cycle: bot.sealing)."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO cycles VALUES (?,?,?,?,?,?)",
                       (cycle["ts"], cycle["duration_s"], cycle["requests"], cycle["weight"], len(results),
                        json.dumps(cycle["failed"])))
            if seal is not None:      # a sealed cycle's scores are exactly these (matters if a ts comes again)
                db.execute("DELETE FROM scores WHERE ts=?", (cycle["ts"],))
            db.executemany("INSERT OR REPLACE INTO scores (ts, symbol, score, bias, regime, payload) "
                           "VALUES (?,?,?,?,?,?)",
                           [(cycle["ts"], r["symbol"], r["score"], r["bias"], r["regime_key"], _score_payload(r, cycle["ts"]))
                            for r in results])
            db.executemany("INSERT OR REPLACE INTO symbol_state (symbol, score, bias, regime, armed, regime_cycles, "
                           "timing) VALUES (?,?,?,?,?,?,?)",
                           [(sym, st.score, st.bias, st.regime_key, json.dumps(st.armed), st.regime_cycles,
                             json.dumps(st.timing) if st.timing is not None else None)
                            for sym, st in symbol_state.items()])
            db.executemany("INSERT OR IGNORE INTO signals (id, ts, symbol, rule, kind, score, bias, regime, receipt) "
                           "VALUES (?,?,?,?,?,?,?,?,?)",
                           [(g["id"], g["ts"], g["symbol"], g["rule"], g["kind"], g["score"], g["bias"],
                             g["regime"], json.dumps(g["receipt"])) for g in signals])
            db.executemany("UPDATE signals SET outcome=?, closed_ts=? WHERE id=? AND outcome IS NULL",
                           [(json.dumps(c["outcome"]), cycle["ts"], c["signal"]) for c in closings])
            if seal is not None:
                self._seal(db, cycle["ts"], seal)
            db.executemany("INSERT OR REPLACE INTO last_fired VALUES (?,?,?,?)", fired)
            db.executemany(
                "INSERT OR IGNORE INTO outbox (key, recipient, channel, address, created, due, signal_ids) "
                "VALUES (?,?,?,?,?,?,?)",
                [(o["key"], o["recipient"], o["channel"], o["address"], o["created"], o["due"],
                  json.dumps(o["signal_ids"])) for o in outbox])

    @staticmethod
    def _seal(db: sqlite3.Connection, ts: int, seal: CycleSealer) -> None:
        """Inside the commit: seal the cycle's signals as stored (an id seen before keeps its first row) after the
        last manifest, keep the manifest and each signal's receipt hash and proof. A cycle time sealed again
        replaces its manifest (its rows were just replaced); the chain then runs on from the one before it."""
        stored = [_stored_signal(r) for r in db.execute(f"{_SIGNAL_SELECT} WHERE ts=? ORDER BY id", (ts,)).fetchall()]
        prev = db.execute("SELECT hash FROM manifests WHERE cycle_ts != ? ORDER BY seq DESC LIMIT 1", (ts,)).fetchone()
        sealed = seal(stored, prev[0] if prev else None)
        m = sealed.manifest
        db.execute("DELETE FROM manifests WHERE cycle_ts=?", (ts,))
        db.execute("INSERT INTO manifests (cycle_ts, manifest, hash, signature, public_key, leaves) VALUES (?,?,?,?,?,?)",
                   (m["cycle_ts"], json.dumps(m["manifest"]), m["hash"], m["signature"], m["public_key"], m["leaves"]))
        db.executemany("UPDATE signals SET record_hash=?, proof=? WHERE id=?",
                       [(s.record_hash, json.dumps(s.proof), sid) for sid, s in sealed.signals.items()])
        db.executemany("UPDATE signals SET closing_proof=? WHERE id=?",
                       [(json.dumps(p), sid) for sid, p in sealed.closings.items()])

    # ---- seals (read by `verify`, /verify) -------------------------------------------------
    @contextmanager
    def reading(self) -> Iterator[None]:
        """One consistent view for a series of reads (a read transaction): `verify` sees no cycle half-pruned
        or half-committed by an engine running beside it."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield
            finally:
                self._db.execute("COMMIT")

    def manifests(self) -> list[StoredManifest]:
        """Every seal, in the order they were made (the chain's order)."""
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(MANIFEST_COLUMNS)} FROM manifests ORDER BY seq").fetchall()
        return [_manifest(r) for r in rows]

    def last_manifest(self) -> StoredManifest | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(MANIFEST_COLUMNS)} FROM manifests "
                                   "ORDER BY seq DESC LIMIT 1").fetchone()
        return _manifest(row) if row else None

    def last_manifest_before(self, ts_ms: int) -> StoredManifest | None:
        """The last sealed manifest of a cycle before `ts_ms` (a day's last root: the start of the next day)."""
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(MANIFEST_COLUMNS)} FROM manifests WHERE cycle_ts < ? "
                                   "ORDER BY cycle_ts DESC LIMIT 1", (ts_ms,)).fetchone()
        return _manifest(row) if row else None

    def manifest_for(self, cycle_ts: int) -> StoredManifest | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(MANIFEST_COLUMNS)} FROM manifests WHERE cycle_ts=?",
                                   (cycle_ts,)).fetchone()
        return _manifest(row) if row else None

    def cycle_score_rows(self, ts: int) -> list[tuple[str, int, str, str, str]]:
        """A cycle's score rows as stored, by symbol: (symbol, score, bias, regime, payload JSON)."""
        with self._lock:
            return self._db.execute("SELECT symbol, score, bias, regime, payload FROM scores WHERE ts=? "
                                    "ORDER BY symbol", (ts,)).fetchall()

    def cycle_signals(self, ts: int) -> list[StoredSignal]:
        """A cycle's signals as stored, by id."""
        with self._lock:
            rows = self._db.execute(f"{_SIGNAL_SELECT} WHERE ts=? ORDER BY id", (ts,)).fetchall()
        return [_stored_signal(r) for r in rows]

    def signal_proof(self, signal_id: str) -> InclusionProof | None:
        """The inclusion proof kept with a sealed signal (None: not sealed)."""
        with self._lock:
            row = self._db.execute("SELECT proof FROM signals WHERE id=?", (signal_id.strip().upper(),)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def cycle_times(self) -> list[int]:
        """Every stored cycle's time, oldest first."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT ts FROM cycles ORDER BY ts").fetchall()]

    def signal_cycle_times(self) -> set[int]:
        """The cycle times that have signals."""
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT DISTINCT ts FROM signals").fetchall()}

    def signal(self, signal_id: str) -> StoredSignal | None:
        with self._lock:
            row = self._db.execute(f"{_SIGNAL_SELECT} WHERE id = ?", (signal_id.strip().upper(),)).fetchone()
        return _stored_signal(row) if row else None

    def signals(self, ids: list[str]) -> list[StoredSignal]:
        """The signals with these ids, in the order asked (unknown ids left out)."""
        with self._lock:
            rows = self._db.execute(f"{_SIGNAL_SELECT} WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall()
        by_id = {r[0]: _stored_signal(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def recent_signals(self, limit: int = 20, symbols: list[str] | None = None,
                       recipient: str | None = None) -> list[StoredSignal]:
        """Newest first; for a recipient, the signals that were queued for them."""
        if recipient is not None:
            with self._lock:
                rows = self._db.execute("SELECT signal_ids FROM outbox WHERE recipient=? AND notice IS NULL "
                                        "ORDER BY id DESC LIMIT ?",
                                        (recipient, limit)).fetchall()
            ids = list(dict.fromkeys(i for r in rows for i in json.loads(r[0])))[:limit]
            return sorted(self.signals(ids), key=lambda g: -g["ts"])
        q, args = _SIGNAL_SELECT, []
        if symbols:
            q += f" WHERE symbol IN ({','.join('?' * len(symbols))})"
            args = list(symbols)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY ts DESC, id LIMIT ?", (*args, limit)).fetchall()
        return [_stored_signal(r) for r in rows]

    def outbox_rows(self) -> list[OutboxRow]:
        """Every outbox row, oldest first."""
        return self._outbox_where("1=1", ())

    def outbox_by_status(self, status: OutboxStatus) -> list[OutboxRow]:
        """Rows in one state, oldest first ('sending' after a crash: claimed, outcome unknown)."""
        return self._outbox_where("status = ?", (status,))

    def outbox_row(self, key: str) -> OutboxRow | None:
        """The row with this idempotency key."""
        rows = self._outbox_where("key = ?", (key,))
        return rows[0] if rows else None

    def _outbox_where(self, where: str, args: tuple) -> list[OutboxRow]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(OUTBOX_COLUMNS)} FROM outbox WHERE {where} ORDER BY id",
                                    args).fetchall()
        return [_outbox_row(r) for r in rows]

    def claim_due(self, now_ms: int, skip_channels: Iterable[str] = ()) -> list[OutboxRow]:
        """Pending rows whose time has come, marked 'sending' (so a crash mid-send is visible). Rows of
        `skip_channels` (a platform that is down) are left alone: pending, no attempt counted."""
        skip = sorted(set(skip_channels))
        not_in = f" AND channel NOT IN ({','.join('?' * len(skip))})" if skip else ""
        with self._tx() as db:
            ids = [r[0] for r in db.execute(f"SELECT id FROM outbox WHERE status='pending' AND due <= ?{not_in} "
                                            "ORDER BY id", (now_ms, *skip)).fetchall()]
            db.executemany("UPDATE outbox SET status='sending', attempts=attempts+1 WHERE id=?", [(i,) for i in ids])
        return self._outbox_where(f"id IN ({','.join('?' * len(ids))})", tuple(ids)) if ids else []

    def mark_outbox(self, ids: list[int], status: OutboxStatus, *, error: str | None = None, due: int | None = None,
                    sent: int | None = None) -> None:
        with self._tx() as db:
            db.executemany("UPDATE outbox SET status=?, last_error=?, due=COALESCE(?, due), sent=? WHERE id=?",
                           [(status, error, due, sent, i) for i in ids])

    def record_parts_sent(self, ids: list[int], parts_sent: int, digest_key: str, *,
                          sent: int | None = None) -> None:
        """The platform accepted the first `parts_sent` parts of the digest made of these rows (`digest_key`:
        the key of its first row, so a resume rebuilds the same digest). Committed before the next part is
        sent; with `sent` (ms) that was the last part and the rows are 'sent' in the same transaction."""
        with self._tx() as db:
            if sent is None:
                db.executemany("UPDATE outbox SET parts_sent=?, digest_key=? WHERE id=?",
                               [(parts_sent, digest_key, i) for i in ids])
            else:
                db.executemany("UPDATE outbox SET parts_sent=?, digest_key=?, status='sent', last_error=NULL, sent=? "
                               "WHERE id=?", [(parts_sent, digest_key, sent, i) for i in ids])

    def enqueue_notices(self, entries: list[OutboxEntry], fired: Iterable[FiredRow] = ()) -> int:
        """Queue notice rows (each entry's `notice` set, `signal_ids` empty) and, in the same transaction, the
        cooldowns they start (`fired`). A key already queued is left as it is, so a notice enqueued twice (a
        restart, a second refresh) is delivered once. Returns the rows added."""
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO last_fired VALUES (?,?,?,?)", list(fired))
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO outbox (key, recipient, channel, address, created, due, signal_ids, notice) "
                "VALUES (?,?,?,?,?,?,'[]',?)",
                [(o["key"], o["recipient"], o["channel"], o["address"], o["created"], o["due"],
                  json.dumps(o["notice"])) for o in entries])
            return db.total_changes - before

    def outbox_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())

    # ---- meta (small cached facts: funding intervals, universe) ---------------------------
    def get_meta(self, key: str) -> object | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: object) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, json.dumps(value)))

    # ---- closed signals (bot.outcomes, bot.evaluation): appended; portable SQL -------------------------------
    def open_signals(self) -> list[StoredSignal]:
        """Signals without an outcome yet, oldest first."""
        with self._lock:
            rows = self._db.execute(f"{_SIGNAL_SELECT} WHERE outcome IS NULL ORDER BY ts, id").fetchall()
        return [_stored_signal(r) for r in rows]

    def closed_signals(self, since_ms: int = 0, symbol: str | None = None) -> list[StoredSignal]:
        """Signals closed by the evaluation (opened at or after `since_ms`), oldest first."""
        q, args = f"{_SIGNAL_SELECT} WHERE closed_ts IS NOT NULL AND ts >= ?", [since_ms]
        if symbol:
            q, args = q + " AND symbol = ?", [*args, symbol]
        with self._lock:
            rows = self._db.execute(q + " ORDER BY ts, id", args).fetchall()
        return [_stored_signal(r) for r in rows]

    def cycle_closings(self, ts: int) -> list[StoredSignal]:
        """The signals whose closing was sealed in cycle `ts`, by id."""
        with self._lock:
            rows = self._db.execute(f"{_SIGNAL_SELECT} WHERE closed_ts = ? ORDER BY id", (ts,)).fetchall()
        return [_stored_signal(r) for r in rows]

    def closing_proof(self, signal_id: str) -> InclusionProof | None:
        """The inclusion proof of a signal's closing in the cycle that sealed it (None: open, or not sealed)."""
        with self._lock:
            row = self._db.execute("SELECT closing_proof FROM signals WHERE id=?", (signal_id.strip().upper(),)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def closed_in(self, signal_id: str) -> int | None:
        """The cycle whose seal holds this signal's closing (None: open)."""
        with self._lock:
            row = self._db.execute("SELECT closed_ts FROM signals WHERE id=?", (signal_id.strip().upper(),)).fetchone()
        return row[0] if row else None

    def signals_since(self, since_ms: int) -> list[StoredSignal]:
        """Every signal opened at or after `since_ms`, oldest first."""
        with self._lock:
            rows = self._db.execute(f"{_SIGNAL_SELECT} WHERE ts >= ? ORDER BY ts, id", (since_ms,)).fetchall()
        return [_stored_signal(r) for r in rows]

    def score_rows_between(self, start_ms: int, end_ms: int) -> list[tuple[int, str, int, str]]:
        """(ts, symbol, score, payload JSON) of every stored score row in [start_ms, end_ms], by time (backtest)."""
        with self._lock:
            return self._db.execute("SELECT ts, symbol, score, payload FROM scores WHERE ts BETWEEN ? AND ? "
                                    "ORDER BY ts, symbol", (start_ms, end_ms)).fetchall()

    def score_rows_at_period_starts(self, since_ms: int, period_ms: int) -> list[tuple[int, str, int, str]]:
        """(ts, symbol, score, payload JSON) of the first stored cycle of each period of `period_ms` (counted from
        the epoch) since `since_ms`, by time: the samples of the score-vs-move lens (bot.performance)."""
        with self._lock:
            return self._db.execute(
                "SELECT ts, symbol, score, payload FROM scores WHERE ts IN "
                "(SELECT MIN(ts) FROM cycles WHERE ts >= ? GROUP BY ts / ?) ORDER BY ts, symbol",
                (since_ms, int(period_ms))).fetchall()
    # ---- LiqMap: model steps and realised liquidation prints (portable SQL; bot/liqmap_feed.py writes them) ----
    def add_liq_steps(self, symbol: str, steps: Iterable[Step]) -> int:
        """Upsert: the still-open candle is rewritten by the next refresh."""
        rows = [(symbol, s.ts, s.open, s.high, s.low, s.close, s.base_volume, s.quote_volume, s.taker_buy_quote, s.oi)
                for s in steps]
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO liq_steps VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        return len(rows)

    def liq_steps(self, symbol: str, since_ms: int) -> list[Step]:
        with self._lock:
            rows = self._db.execute("SELECT ts, open, high, low, close, base_volume, quote_volume, taker_buy_quote, oi "
                                    "FROM liq_steps WHERE symbol=? AND ts>=? ORDER BY ts", (symbol, since_ms)).fetchall()
        return [Step(*r) for r in rows]

    def last_liq_step(self, symbol: str) -> int | None:
        """The open time of the newest step stored with its open interest (None: none yet)."""
        with self._lock:
            row = self._db.execute("SELECT MAX(ts) FROM liq_steps WHERE symbol=? AND oi IS NOT NULL",
                                   (symbol,)).fetchone()
        return row[0]

    def add_liq_prints(self, prints: Iterable[Print]) -> int:
        rows = [(p.symbol, p.ts, p.side, p.price, p.qty) for p in prints]
        with self._tx() as db:
            db.executemany("INSERT INTO liq_prints VALUES (?,?,?,?,?)", rows)
        return len(rows)

    def liq_prints(self, symbol: str, since_ms: int) -> list[Print]:
        with self._lock:
            rows = self._db.execute("SELECT ts, symbol, side, price, qty FROM liq_prints WHERE symbol=? AND ts>=? "
                                    "ORDER BY ts", (symbol, since_ms)).fetchall()
        return [Print(*r) for r in rows]

    def prune_liq(self, before_ms: int) -> int:
        """Bounded retention: steps and prints before `before_ms` go."""
        with self._tx() as db:
            n = db.execute("DELETE FROM liq_steps WHERE ts < ?", (before_ms,)).rowcount
            return n + db.execute("DELETE FROM liq_prints WHERE ts < ?", (before_ms,)).rowcount


def _identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT under the store lock; ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock):
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:          # e.g. a read-only or vanished file: never leave the store locked
            self.lock.release()
            raise
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()


def _stored_signal(row: tuple) -> StoredSignal:
    sid, ts, symbol, rule, kind, score, bias, regime, receipt, outcome, record_hash = row
    return StoredSignal(id=sid, ts=ts, symbol=symbol, rule=rule, kind=kind, score=score, bias=bias, regime=regime,
                        receipt=json.loads(receipt), outcome=json.loads(outcome) if outcome else None,
                        record_hash=record_hash)


def _manifest(row: tuple) -> StoredManifest:
    seq, cycle_ts, manifest, digest, signature, public_key, leaves = row
    return StoredManifest(seq=seq, cycle_ts=cycle_ts, manifest=json.loads(manifest), hash=digest, signature=signature,
                          public_key=public_key, leaves=leaves)


def _outbox_row(row: tuple) -> OutboxRow:
    (rid, key, recipient, channel, address, created, due, signal_ids, status, attempts, last_error, sent,
     parts_sent, digest_key, notice) = row
    return OutboxRow(id=rid, key=key, recipient=recipient, channel=channel, address=address, created=created,
                     due=due, signal_ids=json.loads(signal_ids), status=status, attempts=attempts,
                     last_error=last_error, sent=sent, parts_sent=parts_sent, digest_key=digest_key,
                     notice=json.loads(notice) if notice else None)
