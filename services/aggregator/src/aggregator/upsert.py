"""Dialect-aware ``INSERT … ON CONFLICT DO NOTHING``: the one statement SQL spells per database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


async def insert_ignore(conn: AsyncConnection, table: Table, values: Mapping[str, Any]) -> bool:
    """Insert a row unless its primary key exists; True when a row was inserted."""
    if conn.dialect.name == "postgresql":
        statement: Any = postgresql.insert(table).values(**values).on_conflict_do_nothing()
    elif conn.dialect.name == "sqlite":
        statement = sqlite.insert(table).values(**values).on_conflict_do_nothing()
    else:
        raise ValueError(f"only SQLite and PostgreSQL are supported, not {conn.dialect.name!r}")
    result = await conn.execute(statement)
    return bool(result.rowcount == 1)
