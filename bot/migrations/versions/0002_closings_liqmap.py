"""Closed signals (the cycle whose seal holds a signal's closing, and its proof), the LiqMap's inputs (model
steps, realised liquidation prints), the rules' timing state, OI history indexed by time, and outbox notices.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa

from bot.migrations import ensure

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

m = sa.MetaData()
sa.Table("signals", m, sa.Column("id", sa.Text, primary_key=True),
         sa.Column("closed_ts", sa.BigInteger),          # the cycle whose seal holds its closing (outcome)
         sa.Column("closing_proof", sa.Text))            # the closing's inclusion proof in that cycle (JSON)
sa.Table("symbol_state", m, sa.Column("symbol", sa.Text, primary_key=True),
         sa.Column("timing", sa.Text))                   # the rules' confirmations/re-arming in time (JSON)
sa.Table("oi_history", m, sa.Column("symbol", sa.Text, primary_key=True),
         sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False), sa.Index("oi_history_ts", "ts"))
sa.Table("outbox", m, sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
         sa.Column("notice", sa.Text))                   # a notice row's Notice (JSON); NULL: a signal digest
sa.Table("liq_steps", m, sa.Column("symbol", sa.Text, primary_key=True),
         sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
         sa.Column("open", sa.Float, nullable=False), sa.Column("high", sa.Float, nullable=False),
         sa.Column("low", sa.Float, nullable=False), sa.Column("close", sa.Float, nullable=False),
         sa.Column("base_volume", sa.Float, nullable=False), sa.Column("quote_volume", sa.Float, nullable=False),
         sa.Column("taker_buy_quote", sa.Float, nullable=False), sa.Column("oi", sa.Float))
sa.Table("liq_prints", m, sa.Column("symbol", sa.Text, nullable=False), sa.Column("ts", sa.BigInteger, nullable=False),
         sa.Column("side", sa.Text, nullable=False), sa.Column("price", sa.Float, nullable=False),
         sa.Column("qty", sa.Float, nullable=False), sa.Index("liq_prints_by_symbol", "symbol", "ts"))


def upgrade() -> None:
    ensure(m)
