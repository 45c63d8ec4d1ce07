"""One source of a session: its audio queue, chunking, speech boundaries and publishing order."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from capture import metrics
from capture.audio import Pcm16
from capture.publish import publish
from capture.vad import Boundary, ClientSegmenter, SpeechDetector, VadConfig
from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.ids import audio_msg_id
from echostream_shared.logging import get_logger

log = get_logger("ingest")

RATE = m.SAMPLE_RATE

Segmentation = Literal["vad", "manual"]
"""Who delimits speech segments: capture's VAD, or the client (``cut``)."""
OnBoundary = Callable[[str, Boundary], None]
"""Told of each speech boundary of a source once it is on the bus."""


@dataclass(frozen=True)
class IngestConfig:
    """How audio is cut and how much may wait for the bus."""

    chunk_samples: int = 1600
    backlog_max_samples: int = 10 * RATE
    vad: VadConfig = VadConfig()


@dataclass(frozen=True)
class _Cut:
    """Queued with the audio: end the current speech segment where the audio before it ends."""

    done: asyncio.Future[int]
    mode: Segmentation | None = None


class SourceIngest:
    """Queues a source's 16 kHz audio and publishes it in order from its own task.

    On ``ep.audio.<session>.<source>``: audio chunks with consecutive ``seq``, each speech
    boundary after the chunk that contains its sample, and ``SourceClosed`` last. ``write``
    waits while the queue holds ``backlog_max_samples``, so a slow bus slows the reader
    instead of dropping audio. Segments come from the VAD, or from the client's ``cut``s in
    ``manual`` segmentation; the VAD hears everything either way, so its clock never drifts.
    """

    def __init__(
        self,
        bus: Bus,
        session_id: str,
        source: str,
        config: IngestConfig,
        detector: SpeechDetector | None = None,
        abort: asyncio.Event | None = None,
        on_boundary: OnBoundary | None = None,
    ) -> None:
        self.session_id = session_id
        self.source = source
        self._bus = bus
        self._config = config
        self._detector = detector or SpeechDetector(config.vad)
        self._client_segments = ClientSegmenter()
        self._segmentation: Segmentation = "vad"
        self._abort = abort
        self._on_boundary = on_boundary
        self._queue: deque[Pcm16 | _Cut] = deque()
        self._queued = 0
        self._arrivals: deque[tuple[int, float]] = deque()
        self._last_captured_at = 0.0
        self._received = 0
        self._changed = asyncio.Condition()
        self._closing = False
        self._task: asyncio.Task[int] | None = None

    @property
    def received_samples(self) -> int:
        """Samples accepted so far: the source's clock."""
        return self._received

    @property
    def backlog_s(self) -> float:
        """Audio accepted but not yet published."""
        return self._queued / RATE

    @property
    def backlog_ratio(self) -> float:
        """The backlog as a share of what may wait."""
        return min(1.0, self._queued / self._config.backlog_max_samples)

    def start(self) -> None:
        """Start the publishing task."""
        self._task = asyncio.create_task(self._publish_all(), name=f"ingest-{self.source}")

    async def write(self, pcm: Pcm16) -> None:
        """Queue audio; waits while the backlog is full."""
        if not len(pcm):
            return
        if self._closing:
            raise RuntimeError("source is closed")
        async with self._changed:
            await self._changed.wait_for(
                lambda: self._queued < self._config.backlog_max_samples or self._closing
            )
            self._queue.append(pcm)
            self._queued += len(pcm)
            self._received += len(pcm)
            self._arrivals.append((self._received, time.time()))
            self._changed.notify_all()

    async def cut(self, mode: Segmentation | None = None) -> int:
        """End the speech segment in progress at the end of the audio written so far, publish
        that boundary without waiting for a whole chunk, then segment by ``mode`` (if given).

        Returns the sample of the cut.
        """
        if self._closing:
            raise RuntimeError("source is closed")
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        async with self._changed:
            self._queue.append(_Cut(done, mode))
            self._changed.notify_all()
        return await done

    async def close(self) -> int:
        """Publish what is queued, then ``SourceClosed``; returns the source's length."""
        async with self._changed:
            self._closing = True
            self._changed.notify_all()
        assert self._task is not None
        return await asyncio.shield(self._task)

    async def _publish_all(self) -> int:
        subject = t.audio(self.session_id, self.source)
        chunker = _Chunker(self._config.chunk_samples)
        pending: list[Boundary] = []
        while True:
            batch, closing = await self._take()
            for item in batch:
                if isinstance(item, _Cut):
                    pending = await self._cut(subject, chunker, pending, item)
                    continue
                # Chunks go out before VAD looks at them: a boundary always trails its chunk.
                for seq, first, chunk in chunker.push(item):
                    await self._send_chunk(subject, seq, first, chunk)
                pending += self._segment(item)
                pending = await self._send_boundaries(subject, pending, chunker.published)
                await self._release(len(item))
            if closing:
                break
        return await self._finish(subject, chunker, pending)

    def _segment(self, pcm: Pcm16) -> list[Boundary]:
        heard = self._detector.push(pcm)
        delimited = self._client_segments.push(pcm)
        return delimited if self._segmentation == "manual" else heard

    async def _cut(
        self, subject: str, chunker: _Chunker, pending: list[Boundary], cut: _Cut
    ) -> list[Boundary]:
        tail = chunker.flush()
        if tail is not None:
            await self._send_chunk(subject, *tail)
        at = chunker.published
        vad_ended = self._detector.cut(at)
        client_ended = self._client_segments.cut(at)
        pending += client_ended if self._segmentation == "manual" else vad_ended
        if cut.mode is not None:
            self._segmentation = cut.mode
        pending = await self._send_boundaries(subject, pending, at)
        if not cut.done.done():
            cut.done.set_result(at)
        return pending

    async def _take(self) -> tuple[list[Pcm16 | _Cut], bool]:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._queue) or self._closing)
            batch = list(self._queue)
            self._queue.clear()
            return batch, self._closing and not batch

    async def _release(self, samples: int) -> None:
        async with self._changed:
            self._queued -= samples
            self._changed.notify_all()

    async def _finish(self, subject: str, chunker: _Chunker, pending: list[Boundary]) -> int:
        tail = chunker.flush()
        if tail is not None:
            await self._send_chunk(subject, *tail)
        end = self._received
        vad_ended = self._detector.finish(end)
        client_ended = self._client_segments.cut(end)
        pending += client_ended if self._segmentation == "manual" else vad_ended
        await self._send_boundaries(subject, pending, end)
        closed = m.SourceClosed(
            session_id=self.session_id, source=self.source, end_sample=end, closed_at=time.time()
        )
        msg_id = f"closed.{self.session_id}.{self.source}"
        await publish(self._bus, subject, closed, msg_id, self._abort)
        await publish(
            self._bus, t.session_events(self.session_id), closed, f"ev.{msg_id}", self._abort
        )
        log.info("source.closed", source=self.source, end_sample=end, chunks=chunker.seq)
        return end

    async def _send_chunk(self, subject: str, seq: int, first: int, pcm: Pcm16) -> None:
        chunk = m.AudioChunk(
            session_id=self.session_id,
            source=self.source,
            seq=seq,
            first_sample=first,
            pcm=pcm.astype("<i2").tobytes(),
            captured_at=self._captured_at(first),
        )
        started = time.perf_counter()
        msg_id = audio_msg_id(self.session_id, self.source, seq)
        await publish(self._bus, subject, chunk, msg_id, self._abort)
        metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
        metrics.AUDIO_SECONDS.inc(len(pcm) / RATE)

    async def _send_boundaries(
        self, subject: str, pending: list[Boundary], published_end: int
    ) -> list[Boundary]:
        due = [b for b in pending if b.sample <= published_end]
        for boundary in due:
            kind = m.SpeechStarted if boundary.kind == "started" else m.SpeechEnded
            event = kind(
                session_id=self.session_id,
                source=self.source,
                sample=boundary.sample,
                detected_at=time.time(),
            )
            msg_id = f"speech.{self.session_id}.{self.source}.{boundary.kind}.{boundary.sample}"
            await publish(self._bus, subject, event, msg_id, self._abort)
            metrics.SPEECH_EVENTS.labels(boundary.kind).inc()
            if self._on_boundary is not None:
                try:
                    self._on_boundary(self.source, boundary)
                except Exception:
                    log.exception("boundary.callback_failed")
        return [b for b in pending if b.sample > published_end]

    def _captured_at(self, sample: int) -> float:
        """Wall time at which ``sample`` was captured: its batch arrived when it ended.

        Never earlier than the previous chunk's: audio sent faster than real time (a file) would
        otherwise look captured before the audio that precedes it.
        """
        while len(self._arrivals) > 1 and self._arrivals[0][0] <= sample:
            self._arrivals.popleft()
        end, arrived = self._arrivals[0]
        estimate = max(0.0, arrived - max(0, end - sample) / RATE)
        self._last_captured_at = max(self._last_captured_at, estimate)
        return self._last_captured_at


class _Chunker:
    """Cuts a stream of samples into chunks of a fixed size, numbering them."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._parts: list[Pcm16] = []
        self._buffered = 0
        self._next_first = 0
        self.seq = 0

    @property
    def published(self) -> int:
        """End of the last chunk cut so far."""
        return self._next_first

    def push(self, pcm: Pcm16) -> list[tuple[int, int, Pcm16]]:
        """The whole chunks now available, as (seq, first sample, samples)."""
        self._parts.append(pcm)
        self._buffered += len(pcm)
        out: list[tuple[int, int, Pcm16]] = []
        if self._buffered < self._size:
            return out
        audio = np.concatenate(self._parts)
        whole = len(audio) - len(audio) % self._size
        for start in range(0, whole, self._size):
            out.append(self._emit(audio[start : start + self._size]))
        rest = audio[whole:]
        self._parts = [rest] if len(rest) else []
        self._buffered = len(rest)
        return out

    def flush(self) -> tuple[int, int, Pcm16] | None:
        if not self._buffered:
            return None
        audio = np.concatenate(self._parts)
        self._parts, self._buffered = [], 0
        return self._emit(audio)

    def _emit(self, pcm: Pcm16) -> tuple[int, int, Pcm16]:
        seq, first = self.seq, self._next_first
        self._next_first += len(pcm)
        self.seq += 1
        return seq, first, pcm
