"""The database's tables, as SQLAlchemy Core `Table`s: the one definition of what is stored, for both engines
(SQLite, the zero-setup default, and PostgreSQL when DATABASE_URL says so). `bot/store.py` writes its queries
against these; `bot/migrations/` brings a database to this shape (Alembic, run at every start).

Times are epoch milliseconds (BIGINT: PostgreSQL's INTEGER stops in 1970 + 25 days of ms). JSON documents are
TEXT (json.dumps), so what is stored is byte-for-byte the same on both engines (the receipts hash it).
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, Column, Float, Index, Integer, LargeBinary, MetaData, Table, Text, UniqueConstraint,
                        text)

metadata = MetaData()

# An auto-numbered key: BIGINT on PostgreSQL (an identity), SQLite's INTEGER PRIMARY KEY (the rowid) there.
AutoId = BigInteger().with_variant(Integer(), "sqlite")

oi_history = Table(
    "oi_history", metadata,
    Column("symbol", Text, primary_key=True), Column("ts", BigInteger, primary_key=True, autoincrement=False),
    Column("oi", Float, nullable=False), Column("price", Float),
    Index("oi_history_ts", "ts"),                          # the cycle's window reads and thinning, by time
    sqlite_with_rowid=False)

cycles = Table(
    "cycles", metadata,
    Column("ts", BigInteger, primary_key=True, autoincrement=False), Column("duration_s", Float),
    Column("requests", Integer), Column("weight", Integer), Column("scored", Integer), Column("failed", Text))

scores = Table(
    "scores", metadata,
    Column("ts", BigInteger, primary_key=True, autoincrement=False), Column("symbol", Text, primary_key=True),
    Column("score", Integer, nullable=False), Column("bias", Text, nullable=False),
    Column("regime", Text, nullable=False), Column("payload", Text, nullable=False),
    Index("scores_symbol_ts", "symbol", "ts"))          # a rowid table on SQLite (migration 0003: 0.46x the size)

meta = Table(
    "meta", metadata,
    Column("key", Text, primary_key=True), Column("value", Text, nullable=False))

symbol_state = Table(
    "symbol_state", metadata,
    Column("symbol", Text, primary_key=True), Column("score", Integer, nullable=False),
    Column("bias", Text, nullable=False), Column("regime", Text, nullable=False), Column("armed", Text, nullable=False),
    Column("regime_cycles", Integer, nullable=False, server_default=text("1")),
    Column("timing", Text))                     # the rules' confirmations/re-arming in time (JSON)

last_fired = Table(
    "last_fired", metadata,
    Column("recipient", Text, primary_key=True), Column("symbol", Text, primary_key=True),
    Column("rule", Text, primary_key=True), Column("ts", BigInteger, nullable=False),
    sqlite_with_rowid=False)

signals = Table(
    "signals", metadata,
    Column("id", Text, primary_key=True), Column("ts", BigInteger, nullable=False),
    Column("symbol", Text, nullable=False), Column("rule", Text, nullable=False), Column("kind", Text, nullable=False),
    Column("score", Integer, nullable=False), Column("bias", Text, nullable=False),
    Column("regime", Text, nullable=False), Column("receipt", Text, nullable=False), Column("outcome", Text),
    Column("record_hash", Text), Column("proof", Text),
    Column("closed_ts", BigInteger),            # the cycle whose seal holds its closing (outcome)
    Column("closing_proof", Text),              # the closing's inclusion proof in that cycle (JSON)
    Index("signals_ts", "ts"))

outbox = Table(
    "outbox", metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True), Column("key", Text, nullable=False),
    Column("recipient", Text, nullable=False), Column("channel", Text, nullable=False),
    Column("address", Text, nullable=False), Column("created", BigInteger, nullable=False),
    Column("due", BigInteger, nullable=False), Column("signal_ids", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default=text("0")), Column("last_error", Text),
    Column("sent", BigInteger), Column("parts_sent", Integer, nullable=False, server_default=text("0")),
    Column("digest_key", Text),
    Column("lease_until", BigInteger),     # a 'sending' row's claim ends then (ms): after it, another worker takes it
    Column("worker", Text),                # who claimed it (for the log and the operator)
    Column("notice", Text),                # a notice row's Notice (JSON); NULL: a signal digest
    UniqueConstraint("key", name="outbox_key"),
    Index("outbox_status_due", "status", "due"))

manifests = Table(
    "manifests", metadata,
    Column("seq", AutoId, primary_key=True, autoincrement=True), Column("cycle_ts", BigInteger, nullable=False),
    Column("manifest", Text, nullable=False), Column("hash", Text, nullable=False),
    Column("signature", Text, nullable=False), Column("public_key", Text, nullable=False),
    Column("leaves", LargeBinary),
    UniqueConstraint("cycle_ts", name="manifests_cycle_ts"))

# Each user's watchlist YAML document, comments and all, when watchlists live in the database (DATABASE_URL):
# `version` goes up by one on every write, which is what hot reload compares.
watchlists = Table(
    "watchlists", metadata,
    Column("user_id", Text, primary_key=True), Column("text", Text, nullable=False),
    Column("version", BigInteger, nullable=False), Column("updated", BigInteger, nullable=False))

# The next free send slot of a rate shared by every process (microseconds): hosted delivery workers pace the bot's
# messages through it (one Telegram bot: about 30 a second, whichever worker sends).
send_pacing = Table(
    "send_pacing", metadata,
    Column("name", Text, primary_key=True), Column("next_us", BigInteger, nullable=False))

# LiqMap (bot/liqmap): model steps (candle with taker-buy volume + OI at its close) and realised liquidation prints.
liq_steps = Table(
    "liq_steps", metadata,
    Column("symbol", Text, primary_key=True), Column("ts", BigInteger, primary_key=True, autoincrement=False),
    Column("open", Float, nullable=False), Column("high", Float, nullable=False), Column("low", Float, nullable=False),
    Column("close", Float, nullable=False), Column("base_volume", Float, nullable=False),
    Column("quote_volume", Float, nullable=False), Column("taker_buy_quote", Float, nullable=False),
    Column("oi", Float))

liq_prints = Table(
    "liq_prints", metadata,
    Column("symbol", Text, nullable=False), Column("ts", BigInteger, nullable=False), Column("side", Text, nullable=False),
    Column("price", Float, nullable=False), Column("qty", Float, nullable=False),
    Index("liq_prints_by_symbol", "symbol", "ts"))
