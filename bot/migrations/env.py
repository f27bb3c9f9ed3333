"""Alembic's entry: runs on the connection `bot.database.migrate` passes in, inside the transaction (and the
lock) it holds."""
from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
