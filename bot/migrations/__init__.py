"""Alembic migrations of the database (run at every start by `bot.database.migrate`; env.py takes the
connection it is given). A new table or column: change `bot/dbschema.py` and add a revision in versions/ that
brings an existing database there (tests/test_storage.py checks the two agree, on both engines)."""
