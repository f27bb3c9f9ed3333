"""Score rows in an ordinary (rowid) table on SQLite: WITHOUT ROWID stored these ~1 KB rows in ~2.4 KB each
(interior pages and overflow pages), 0.46x the size as a rowid table (bench/history_size.py). PostgreSQL tables
are heap tables already: nothing to do there.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from alembic import op
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    ddl = bind.execute(sa.text("SELECT sql FROM sqlite_master WHERE type='table' AND name='scores'")).scalar()
    if not ddl or "WITHOUT ROWID" not in ddl.upper():
        return
    bind.execute(sa.text(
        "CREATE TABLE scores_rowid (ts BIGINT NOT NULL, symbol TEXT NOT NULL, score INTEGER NOT NULL, "
        "bias TEXT NOT NULL, regime TEXT NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (ts, symbol))"))
    bind.execute(sa.text("INSERT INTO scores_rowid (ts, symbol, score, bias, regime, payload) "
                         "SELECT ts, symbol, score, bias, regime, payload FROM scores"))
    bind.execute(sa.text("DROP TABLE scores"))
    bind.execute(sa.text("ALTER TABLE scores_rowid RENAME TO scores"))
    bind.execute(sa.text("CREATE INDEX scores_symbol_ts ON scores (symbol, ts)"))
