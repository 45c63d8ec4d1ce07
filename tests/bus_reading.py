"""Reading back what capture and workers published, for tests: a source's transcripts, the job
queue, and a recorder of the audio and transcripts published while a test runs."""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import DeliverPolicy

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import decode


async def read_transcripts(
    bus: Bus, engine: str, session_id: str, source: str = "mic", idle_s: float = 0.5
) -> list[m.BusMessage]:
    """Everything ``engine`` published for a source, in order, until ``idle_s`` brings nothing."""
    return await read_subject(bus, t.transcript(engine, session_id, source), idle_s)


async def wait_for_jobs_done(bus: Bus, timeout_s: float, poll_s: float = 0.1) -> None:
    """The work queue is empty once every job was acked at its source's close."""

    async def poll() -> None:
        while (await bus.js.stream_info(t.JOB_STREAM)).state.messages:
            await asyncio.sleep(poll_s)

    await asyncio.wait_for(poll(), timeout_s)


async def read_subject(bus: Bus, subject: str, idle_s: float = 0.5) -> list[m.BusMessage]:
    """Every message stored on ``subject`` (wildcards allowed), oldest first, until ``idle_s``
    brings nothing."""
    subscription = await bus.js.subscribe(
        subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    found: list[m.BusMessage] = []
    try:
        while True:
            msg = await subscription.next_msg(timeout=idle_s)
            found.append(decode(msg.data, msg.subject))
    except NatsTimeoutError:
        return found
    finally:
        await subscription.unsubscribe()


class BusRecorder:
    """Every source's audio and every engine's transcripts as they are published, while it listens
    (core NATS: what is published from ``start`` on, nothing replayed). It only watches."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._subscriptions: list[Subscription] = []
        self.audio: dict[tuple[str, str], list[m.BusMessage]] = {}
        """Each (session, source)'s chunks, speech boundaries and close, in order."""
        self.transcripts: list[m.BusMessage] = []

    async def start(self) -> None:
        for subject, keep in (
            (t.audio("*", "*"), self._keep_audio),
            (t.transcript("*", "*", "*"), self._keep_transcript),
        ):
            self._subscriptions.append(await self._bus.nc.subscribe(subject, cb=keep))

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            await subscription.unsubscribe()

    def chunks(self) -> list[m.AudioChunk]:
        return [c for events in self.audio.values() for c in events if isinstance(c, m.AudioChunk)]

    def closed(self, source: str) -> list[m.SourceClosed]:
        """The closes of every session's ``source``."""
        return [
            e
            for (_, name), events in self.audio.items()
            for e in events
            if isinstance(e, m.SourceClosed) and name == source
        ]

    def speech(self, session_id: str, source: str) -> list[tuple[int, int]]:
        """The source's speech segments as its speech boundaries placed them (samples)."""
        bounds = [
            e.sample
            for e in self.audio.get((session_id, source), [])
            if isinstance(e, m.SpeechStarted | m.SpeechEnded)
        ]
        return list(zip(bounds[::2], bounds[1::2], strict=True))

    @property
    def finals(self) -> list[m.TranscriptFinal]:
        return [f for f in self.transcripts if isinstance(f, m.TranscriptFinal)]

    @property
    def transcribed(self) -> list[m.SourceTranscribed]:
        return [d for d in self.transcripts if isinstance(d, m.SourceTranscribed)]

    def text(self, session_id: str) -> str:
        """The session's finals in time order, as one text."""
        finals = sorted(
            (f for f in self.finals if f.session_id == session_id),
            key=lambda f: (f.start_sample, f.source),
        )
        return " ".join(f.text for f in finals)

    async def _keep_audio(self, msg: Msg) -> None:
        message = decode(msg.data, msg.subject)
        session_id, source = msg.subject.split(".")[-2:]
        self.audio.setdefault((session_id, source), []).append(message)

    async def _keep_transcript(self, msg: Msg) -> None:
        self.transcripts.append(decode(msg.data, msg.subject))
