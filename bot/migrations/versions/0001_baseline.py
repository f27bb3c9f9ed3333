"""Baseline: the schema of the hand-written SQLite store, plus outbox leases and watchlists in the database.

A database file made by the SQLite-only store (tables there, no alembic_version) is brought here too: tables
that exist are kept, the columns they lack are added (`ensure`), nothing is dropped.

Revision ID: 0001
"""
import sqlalchemy as sa

from bot.migrations import ensure

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Auto = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
m = sa.MetaData()
sa.Table("oi_history", m, sa.Column("symbol", sa.Text, primary_key=True),
         sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
         sa.Column("oi", sa.Float, nullable=False), sa.Column("price", sa.Float), sqlite_with_rowid=False)
sa.Table("cycles", m, sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
         sa.Column("duration_s", sa.Float), sa.Column("requests", sa.Integer), sa.Column("weight", sa.Integer),
         sa.Column("scored", sa.Integer), sa.Column("failed", sa.Text))
sa.Table("scores", m, sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
         sa.Column("symbol", sa.Text, primary_key=True), sa.Column("score", sa.Integer, nullable=False),
         sa.Column("bias", sa.Text, nullable=False), sa.Column("regime", sa.Text, nullable=False),
         sa.Column("payload", sa.Text, nullable=False), sa.Index("scores_symbol_ts", "symbol", "ts"),
         sqlite_with_rowid=False)
sa.Table("meta", m, sa.Column("key", sa.Text, primary_key=True), sa.Column("value", sa.Text, nullable=False))
sa.Table("symbol_state", m, sa.Column("symbol", sa.Text, primary_key=True),
         sa.Column("score", sa.Integer, nullable=False), sa.Column("bias", sa.Text, nullable=False),
         sa.Column("regime", sa.Text, nullable=False), sa.Column("armed", sa.Text, nullable=False),
         sa.Column("regime_cycles", sa.Integer, nullable=False, server_default=sa.text("1")))
sa.Table("last_fired", m, sa.Column("recipient", sa.Text, primary_key=True),
         sa.Column("symbol", sa.Text, primary_key=True), sa.Column("rule", sa.Text, primary_key=True),
         sa.Column("ts", sa.BigInteger, nullable=False), sqlite_with_rowid=False)
sa.Table("signals", m, sa.Column("id", sa.Text, primary_key=True), sa.Column("ts", sa.BigInteger, nullable=False),
         sa.Column("symbol", sa.Text, nullable=False), sa.Column("rule", sa.Text, nullable=False),
         sa.Column("kind", sa.Text, nullable=False), sa.Column("score", sa.Integer, nullable=False),
         sa.Column("bias", sa.Text, nullable=False), sa.Column("regime", sa.Text, nullable=False),
         sa.Column("receipt", sa.Text, nullable=False), sa.Column("outcome", sa.Text),
         sa.Column("record_hash", sa.Text), sa.Column("proof", sa.Text), sa.Index("signals_ts", "ts"))
sa.Table("outbox", m, sa.Column("id", Auto, primary_key=True, autoincrement=True),
         sa.Column("key", sa.Text, nullable=False), sa.Column("recipient", sa.Text, nullable=False),
         sa.Column("channel", sa.Text, nullable=False), sa.Column("address", sa.Text, nullable=False),
         sa.Column("created", sa.BigInteger, nullable=False), sa.Column("due", sa.BigInteger, nullable=False),
         sa.Column("signal_ids", sa.Text, nullable=False),
         sa.Column("status", sa.Text, nullable=False, server_default="pending"),
         sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
         sa.Column("last_error", sa.Text), sa.Column("sent", sa.BigInteger),
         sa.Column("parts_sent", sa.Integer, nullable=False, server_default=sa.text("0")),
         sa.Column("digest_key", sa.Text), sa.Column("lease_until", sa.BigInteger), sa.Column("worker", sa.Text),
         sa.UniqueConstraint("key", name="outbox_key"), sa.Index("outbox_status_due", "status", "due"))
sa.Table("manifests", m, sa.Column("seq", Auto, primary_key=True, autoincrement=True),
         sa.Column("cycle_ts", sa.BigInteger, nullable=False), sa.Column("manifest", sa.Text, nullable=False),
         sa.Column("hash", sa.Text, nullable=False), sa.Column("signature", sa.Text, nullable=False),
         sa.Column("public_key", sa.Text, nullable=False), sa.Column("leaves", sa.LargeBinary),
         sa.UniqueConstraint("cycle_ts", name="manifests_cycle_ts"))
sa.Table("watchlists", m, sa.Column("user_id", sa.Text, primary_key=True), sa.Column("text", sa.Text, nullable=False),
         sa.Column("version", sa.BigInteger, nullable=False), sa.Column("updated", sa.BigInteger, nullable=False))
sa.Table("send_pacing", m, sa.Column("name", sa.Text, primary_key=True),
         sa.Column("next_us", sa.BigInteger, nullable=False))


def upgrade() -> None:
    ensure(m)
