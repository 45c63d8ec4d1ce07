"""Alembic environment: runs on the connection the aggregator hands it (see database.py)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from aggregator.tables import metadata


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the aggregator applies its migrations itself: run `python -m aggregator`")
run_on(connection)
