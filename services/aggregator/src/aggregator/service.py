"""The aggregator: consumes the bus into the store, serves it over HTTP and NATS."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncEngine

from aggregator.app import create_app
from aggregator.config import AggregatorSettings
from aggregator.database import DatabaseError, open_database, redacted
from aggregator.feed import FeedPublisher
from aggregator.http_server import HttpServer
from aggregator.ingest import Ingest, bind_consumers
from aggregator.routes import Backend
from aggregator.store import SessionStore
from aggregator.stored_sessions import StoredSessionResponder
from echostream_shared.bus import Bus
from echostream_shared.logging import get_logger

log = get_logger("service")


class Aggregator:
    """Runs the consumers, the stored-session responder and the HTTP API until stopped."""

    name = "aggregator"

    def __init__(self, settings: AggregatorSettings) -> None:
        self._settings = settings
        self._state = "starting"

    def health(self) -> Mapping[str, object]:
        return {"status": self._state}

    async def run(self, bus: Bus, stop: asyncio.Event) -> None:
        settings = self._settings
        try:
            engine, store_id = await open_database(settings.database_url)
        except DatabaseError as exc:
            log.error("database.unreachable", error=str(exc))
            raise
        log.info("database.opened", url=redacted(settings.database_url), store_id=store_id)
        try:
            await bind_consumers(
                bus.js, store_id, settings.topology_limits(), settings.consumer_ack_wait_s
            )
            await self._serve(bus, engine, stop)
        finally:
            await engine.dispose()

    async def _serve(self, bus: Bus, engine: AsyncEngine, stop: asyncio.Event) -> None:
        settings = self._settings
        store = SessionStore(engine)
        feed = FeedPublisher(bus)
        backend = Backend(store=store, bus=bus, feed=feed, settings=settings)
        http = HttpServer(create_app(backend, self.health), settings.http_host, settings.http_port)
        responder = StoredSessionResponder(
            engine, settings.primary_engine, settings.summary_max_wait_s
        )
        await responder.start(bus.nc)
        ingest = Ingest(store, feed)
        tasks = {
            asyncio.create_task(ingest.run(bus, stop, settings.consumer_batch), name="ingest"),
            asyncio.create_task(http.run_until_stopped(), name="http"),
        }
        log.info("http.listening", host=settings.http_host, port=http.port)
        self._state = "ok"
        stopping = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait(tasks | {stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._state = "stopping"
            stop.set()
            http.stop()
            await asyncio.wait(tasks)
            await responder.stop()
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopping
        for task in tasks:
            error = task.exception()
            if error is not None:
                log.error(f"{task.get_name()}.failed", exc_info=error)
                raise RuntimeError(f"{task.get_name()} failed") from error
