"""A session on the bus: opened, its sources opened lazily with one job per engine, closed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping

from capture import metrics
from capture.ingest import IngestConfig, OnBoundary, SourceIngest
from capture.publish import publish
from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.logging import get_logger

log = get_logger("session")


def new_session_id() -> str:
    """A fresh bus session id; every connection or upload gets its own."""
    return uuid.uuid4().hex


class Session:
    """Publishes a session's lifecycle and owns its sources."""

    def __init__(
        self,
        bus: Bus,
        config: IngestConfig,
        *,
        client: str,
        engines: tuple[str, ...],
        metadata: Mapping[str, str] | None = None,
        session_id: str | None = None,
        abort: asyncio.Event | None = None,
        on_boundary: OnBoundary | None = None,
    ) -> None:
        self.session_id = session_id or new_session_id()
        self.client = client
        self.engines = engines
        self.sources: dict[str, SourceIngest] = {}
        self._bus = bus
        self._config = config
        self._metadata = {k[:64]: v[:256] for k, v in (metadata or {}).items()}
        self._abort = abort
        self._on_boundary = on_boundary
        self._opened = False
        self._closed = False
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Publish ``SessionOpened``."""
        opened = m.SessionOpened(
            session_id=self.session_id,
            client=self.client,
            opened_at=time.time(),
            engines=self.engines,
            metadata=self._metadata,
        )
        await self._publish(t.session_events(self.session_id), opened, "opened")
        self._opened = True
        metrics.SESSIONS.labels(self.client).inc()
        log.info("session.opened", client=self.client, engines=list(self.engines))

    async def source(self, name: str) -> SourceIngest:
        """The named source, opened (with its jobs) on first use."""
        async with self._lock:
            found = self.sources.get(name)
            if found is None:
                found = await self._open_source(name)
            return found

    async def close(self, reason: str) -> dict[str, int]:
        """Close every source and the session; returns each source's length in samples."""
        async with self._lock:
            if self._closed or not self._opened:
                return {}
            self._closed = True
        ends = await asyncio.gather(*(ingest.close() for ingest in self.sources.values()))
        closed = m.SessionClosed(
            session_id=self.session_id, closed_at=time.time(), reason=reason[:200]
        )
        await self._publish(t.session_events(self.session_id), closed, "closed")
        log.info("session.closed", reason=reason, sources=len(self.sources))
        return dict(zip(self.sources, ends, strict=True))

    async def _open_source(self, name: str) -> SourceIngest:
        now = time.time()
        opened = m.SourceOpened(
            session_id=self.session_id, source=name, opened_at=now, engines=self.engines
        )
        await self._publish(t.session_events(self.session_id), opened, f"source.{name}")
        for engine in self.engines:
            job = m.TranscriptionJob(
                session_id=self.session_id, source=name, engine=engine, created_at=now
            )
            await publish(
                self._bus, t.job(engine), job, f"job.{engine}.{self.session_id}.{name}", self._abort
            )
        ingest = SourceIngest(
            self._bus,
            self.session_id,
            name,
            self._config,
            abort=self._abort,
            on_boundary=self._on_boundary,
        )
        ingest.start()
        self.sources[name] = ingest
        log.info("source.opened", source=name)
        return ingest

    async def _publish(self, subject: str, message: m.Message, key: str) -> None:
        await publish(self._bus, subject, message, f"ev.{key}.{self.session_id}", self._abort)
