"""Opening the store: an async engine for SQLite or PostgreSQL, migrated to the newest schema."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from aggregator import tables
from aggregator.upsert import insert_ignore

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
STORE_ID_KEY = "store_id"


class DatabaseError(Exception):
    """The database cannot be reached or migrated; the message says which and why."""


def redacted(url: str) -> str:
    """The URL without its password, for logs and errors."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets its parent directory, WAL and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


async def open_database(url: str) -> tuple[AsyncEngine, str]:
    """Connect, apply the migrations and return the engine and the store's id.

    The id is created with the store, so an empty replacement database has a new one.

    Raises:
        DatabaseError: when the database is unreachable or cannot be migrated.
    """
    try:
        engine = create_engine(url)
    except Exception as exc:
        raise DatabaseError(f"invalid database URL {redacted(url)}: {exc}") from exc
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
            await insert_ignore(
                conn, tables.store_info, {"key": STORE_ID_KEY, "value": uuid.uuid4().hex}
            )
            store_id = await conn.scalar(
                select(tables.store_info.c.value).where(tables.store_info.c.key == STORE_ID_KEY)
            )
    except Exception as exc:
        await engine.dispose()
        raise DatabaseError(f"cannot open database {redacted(url)}: {exc}") from exc
    return engine, str(store_id)


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
