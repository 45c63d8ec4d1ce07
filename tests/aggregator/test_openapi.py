"""Schema-driven tests: schemathesis calls every operation in-process; no 5xx, responses conform."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import schemathesis
from api_harness import healthy, store_script
from hypothesis import HealthCheck, given, settings
from nats_server import NatsServer
from schemathesis.python.asgi import shutdown_lifespans
from session_script import session_script

from aggregator.app import create_app
from aggregator.config import AggregatorSettings
from aggregator.database import open_database
from aggregator.feed import FeedPublisher
from aggregator.routes import Backend
from aggregator.store import SessionStore
from echostream_shared.bus import Bus
from echostream_shared.topology import ensure_topology

TOKEN = "schema-test-token"
EXAMPLES = 30
"""Per operation; about 10 operations keep the whole run well under a minute."""


class AggregatorApp:
    """The aggregator's app, built in the event loop that serves it (schemathesis runs its own),
    when the ASGI lifespan starts."""

    def __init__(self, nats_url: str, database_url: str) -> None:
        self._nats_url = nats_url
        self._database_url = database_url
        self._app: Any = None
        self._closers: list[Any] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self._app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._start()
                await send({"type": "lifespan.startup.complete"})
            else:
                for close in reversed(self._closers):
                    await close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        nc = await nats.connect(self._nats_url)
        self._closers.append(nc.close)
        bus = Bus(nc, nc.jetstream())
        await ensure_topology(bus.js)
        engine, _ = await open_database(self._database_url)
        self._closers.append(engine.dispose)
        settings = AggregatorSettings(
            database_url=self._database_url, max_page_size=50, api_token=TOKEN
        )
        backend = Backend(SessionStore(engine), bus, FeedPublisher(bus), settings)
        self._app = create_app(backend, healthy)


async def populate(database_url: str) -> None:
    engine, _ = await open_database(database_url)
    # Ids that generated path parameters often take, so stored sessions get exercised too.
    for session_id in ("0", "A", "a"):
        await store_script(SessionStore(engine), session_script(session_id, segments=2))
    await engine.dispose()


@pytest.fixture
def api_schema(tmp_path: Path) -> Iterator[Any]:
    server = NatsServer(tmp_path / "js")
    server.start()
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'aggregator.db'}"
    asyncio.run(populate(database_url))
    yield schemathesis.openapi.from_asgi("/openapi.json", AggregatorApp(server.url, database_url))
    shutdown_lifespans()
    server.stop()


@pytest.mark.slow
def test_api_conforms_to_its_schema(api_schema: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    # Client protocols are capture's business: the aggregator serves stored data only.
    assert not any("echopanel" in op.label for op in operations)
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case: schemathesis.Case) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})

        conforms()
