"""Alembic migrations of the database (run at every start by `bot.database.migrate` on a database behind head;
a new, empty one is made from `bot/dbschema.py` and stamped at head; env.py takes the connection it is given).
A new table or column: change `bot/dbschema.py` and add a revision in versions/ that brings an existing database
there (tests/test_storage.py checks the two agree, on both engines, revisions run from an empty database too)."""

import sqlalchemy as sa


def ensure(metadata: sa.MetaData) -> None:
    """For a revision: create the tables of `metadata` that are missing; add the columns an existing table lacks
    (with their defaults, so old rows take them); create missing indexes. Idempotent: what exists is left as it
    is (a database file made by the SQLite-only store, which had no alembic_version, goes through it too)."""
    from alembic import op
    bind = op.get_bind()
    insp = sa.inspect(bind)
    for table in metadata.sorted_tables:
        if not insp.has_table(table.name):
            table.create(bind)
            continue
        have = {c["name"] for c in insp.get_columns(table.name)}
        for col in table.columns:
            if col.name not in have:
                op.add_column(table.name, col._copy())
        indexes = {i["name"] for i in insp.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(bind)
