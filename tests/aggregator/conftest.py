from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

# The helpers beside these tests import as top-level modules, as the ones in tests/ do.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aggregator.database import open_database  # noqa: E402
from aggregator.store import SessionStore  # noqa: E402

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_database() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database, dropped afterwards; skips without a server."""
    psycopg_free = pytest.importorskip("asyncpg")
    import asyncio

    name = f"agg_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await psycopg_free.connect(POSTGRES_ADMIN, timeout=3)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, psycopg_free.PostgresError) as exc:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN}: {exc}")
    yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store's URL, once on a SQLite file and once on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store' / 'aggregator.db'}"
    else:
        yield from postgres_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'store' / 'aggregator.db'}"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SessionStore]:
    engine, _ = await open_database(database_url)
    yield SessionStore(engine)
    await engine.dispose()
