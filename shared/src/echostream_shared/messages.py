"""Every message that travels on the bus.

Each message is a frozen pydantic model with a ``type`` tag and a ``schema_version``. Times on the
audio timeline are sample indices on the 16 kHz clock of one source, counted from 0; wall-clock
times are Unix seconds (float).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

SCHEMA_VERSION: Literal[1] = 1
"""The version every message carries; a reader refuses any other."""
SAMPLE_RATE = 16_000
"""The bus carries 16 kHz mono PCM16 little-endian audio, nothing else."""

Token = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
"""A session id, source name, engine or worker id: safe to use as a NATS subject token."""

WorkerState = Literal["ok", "degraded", "error", "stopping"]
"""``ok`` takes work; ``degraded`` is behind and takes none; ``stopping`` hands its work back."""

Sample = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(ge=0)]


class Message(BaseModel):
    """Base of every bus message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION


class SessionOpened(Message):
    """A client opened a session."""

    type: Literal["session.opened"] = "session.opened"
    session_id: Token
    client: str = Field(max_length=64, description="protocol or client: echopanel, native, file")
    opened_at: Seconds
    engines: tuple[Token, ...] = Field(min_length=1, description="engines that transcribe it")
    metadata: dict[str, str] = Field(default_factory=dict, max_length=32)


class SessionClosed(Message):
    """A session ended; all its sources are closed."""

    type: Literal["session.closed"] = "session.closed"
    session_id: Token
    closed_at: Seconds
    reason: str = Field(default="client", max_length=200)


class SourceOpened(Message):
    """A source (one audio stream, e.g. ``mic`` or ``system``) of a session started."""

    type: Literal["source.opened"] = "source.opened"
    session_id: Token
    source: Token
    opened_at: Seconds
    engines: tuple[Token, ...] = Field(min_length=1)


class SourceClosed(Message):
    """No more audio will come for this source; ``end_sample`` is its total length."""

    type: Literal["source.closed"] = "source.closed"
    session_id: Token
    source: Token
    end_sample: Sample
    closed_at: Seconds


class AudioChunk(Message):
    """A run of 16 kHz mono PCM16 (little-endian) samples of one source."""

    type: Literal["audio.chunk"] = "audio.chunk"
    session_id: Token
    source: Token
    seq: Annotated[int, Field(ge=0)] = Field(description="chunk number within the source")
    first_sample: Sample
    pcm: bytes = Field(max_length=SAMPLE_RATE * 2 * 10)
    captured_at: Seconds = Field(description="wall-clock time the first sample was captured")

    @field_validator("pcm")
    @classmethod
    def _whole_samples(cls, pcm: bytes) -> bytes:
        if len(pcm) % 2:
            raise ValueError("PCM16 payload must hold a whole number of 2-byte samples")
        return pcm

    @property
    def num_samples(self) -> int:
        """Number of samples in the chunk."""
        return len(self.pcm) // 2

    @property
    def end_sample(self) -> int:
        """Index one past the chunk's last sample."""
        return self.first_sample + self.num_samples


class SpeechStarted(Message):
    """Voice activity began at ``sample`` (pre-roll included)."""

    type: Literal["speech.started"] = "speech.started"
    session_id: Token
    source: Token
    sample: Sample
    detected_at: Seconds


class SpeechEnded(Message):
    """Voice activity ended at ``sample``."""

    type: Literal["speech.ended"] = "speech.ended"
    session_id: Token
    source: Token
    sample: Sample
    detected_at: Seconds


class TranscriptionJob(Message):
    """Work-queue item: transcribe one source of a session with one engine."""

    type: Literal["transcription.job"] = "transcription.job"
    session_id: Token
    source: Token
    engine: Token
    created_at: Seconds


class Word(BaseModel):
    """One word of a final transcript with its place on the source's sample clock."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(max_length=200)
    start_sample: Sample
    end_sample: Sample
    probability: float | None = Field(default=None, ge=0, le=1)


class TranscriptPartial(Message):
    """A revisable hypothesis for a segment still in progress."""

    type: Literal["transcript.partial"] = "transcript.partial"
    session_id: Token
    source: Token
    engine: Token
    segment_id: Token
    revision: Annotated[int, Field(ge=0)]
    start_sample: Sample
    end_sample: Sample
    text: str = Field(max_length=10_000)
    emitted_at: Seconds


class TranscriptFinal(Message):
    """The immutable transcript of a segment; replaces every partial with its ``segment_id``."""

    type: Literal["transcript.final"] = "transcript.final"
    session_id: Token
    source: Token
    engine: Token
    segment_id: Token
    start_sample: Sample
    end_sample: Sample
    text: str = Field(max_length=20_000)
    words: tuple[Word, ...] = ()
    confidence: float | None = Field(default=None, ge=0, le=1)
    language: str | None = Field(default=None, max_length=16)
    emitted_at: Seconds


class SourceTranscribed(Message):
    """An engine has published every final of a source, up to ``end_sample``.

    It follows the source's last final on the transcript subject, so a reader of that subject
    knows the transcript is complete once it arrives. With ``failure`` set, the engine gave up on
    the source for good: its transcript ends at its last final and stays incomplete.
    """

    type: Literal["source.transcribed"] = "source.transcribed"
    session_id: Token
    source: Token
    engine: Token
    end_sample: Sample
    finals: Annotated[int, Field(ge=0)] = Field(description="finals published for the source")
    emitted_at: Seconds
    failure: str | None = Field(
        default=None, max_length=500, description="why the engine gave up on the source"
    )


class WorkerStatus(Message):
    """Periodic health and load report of one engine worker.

    ``capacity`` is the most streams the worker may hold (a safety cap); how many it takes
    follows its measured load: ``admitting`` says whether it takes another job now, and
    ``detail`` why not. ``shedding`` is set while it skips partials because its streams are
    behind real time (finals are never skipped); ``partials_shed`` counts those skips since it
    started and ``partial_shed_share`` is their share of the partials that were due over the
    last ``load_window_s``.
    """

    type: Literal["worker.status"] = "worker.status"
    worker_id: Token
    engine: Token
    state: WorkerState
    active_streams: Annotated[int, Field(ge=0)]
    capacity: Annotated[int, Field(ge=0)]
    max_lag_s: Seconds = 0.0
    real_time_factor: Seconds = 0.0
    admitting: bool = True
    shedding: bool = False
    partials_shed: Annotated[int, Field(ge=0)] = 0
    partial_shed_share: Annotated[float, Field(ge=0, le=1)] = 0.0
    cpu_cores: Seconds = Field(default=0.0, description="cores the process kept busy")
    cpu_wait_cores: Seconds = Field(
        default=0.0, description="time its threads waited for a core, per second (contention)"
    )
    cpu_cores_usable: Seconds = 0.0
    load_window_s: Seconds = 0.0
    detail: str = Field(default="", max_length=500)
    reported_at: Seconds


SessionUpdateKind = Literal[
    "session.opened",
    "session.closed",
    "session.completed",
    "session.deleted",
    "source.opened",
    "source.closed",
    "source.transcribed",
    "transcript.partial",
    "transcript.final",
]
"""What changed in a stored session; ``session.completed`` means closed and fully transcribed."""


class SessionUpdate(Message):
    """One change the aggregator stored for a session, for live feeds (core NATS and HTTP).

    Transcript kinds carry the segment (``segment_id``, sample times on the source's clock,
    ``text``); lifecycle kinds carry only ``source`` and ``engine`` where they apply.
    """

    type: Literal["session.update"] = "session.update"
    session_id: Token
    kind: SessionUpdateKind
    source: Token | None = None
    engine: Token | None = None
    segment_id: Token | None = None
    revision: Annotated[int, Field(ge=0)] | None = None
    start_sample: Sample | None = None
    end_sample: Sample | None = None
    text: str = Field(default="", max_length=20_000)
    language: str | None = Field(default=None, max_length=16)
    updated_at: Seconds


class StoredSessionRequest(Message):
    """Asks the aggregator (request/reply) for a stored session as one engine transcribed it.

    The aggregator waits up to ``wait_s`` for ``engine`` (its primary engine when None) to
    finish every source before it answers. Finals come in pages that fit one message: ask
    again from ``next_offset`` while the reply gives one.
    """

    type: Literal["stored_session.request"] = "stored_session.request"
    session_id: Token
    engine: Token | None = None
    wait_s: float = Field(default=0.0, ge=0, le=30)
    offset: int = Field(default=0, ge=0, description="index of the first final to send")


class StoredSource(BaseModel):
    """One source of a stored session."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Token
    end_sample: Sample | None = Field(default=None, description="None while the source is open")
    transcribed: bool = Field(default=False, description="the engine finished this source")


StoredSessionStatus = Literal["ok", "not_found", "unknown_engine", "bad_request", "error"]


class StoredSessionReply(Message):
    """The aggregator's answer to a ``StoredSessionRequest``: stored data, no client's shape.

    When ``status`` is ``ok``: the session's client and engines, ``closed``, each source's end,
    ``complete`` (``engine`` finished every source) and a page of ``engine``'s finals in time
    order (start sample, then source), one per segment.
    """

    type: Literal["stored_session.reply"] = "stored_session.reply"
    session_id: str = Field(max_length=256)
    status: StoredSessionStatus
    detail: str = Field(default="", max_length=500)
    client: str = Field(default="", max_length=64)
    engine: Token | None = None
    engines: tuple[Token, ...] = Field(default=(), description="every engine the session knows")
    closed: bool = False
    complete: bool = False
    sources: tuple[StoredSource, ...] = ()
    finals: tuple[TranscriptFinal, ...] = ()
    next_offset: int | None = Field(default=None, ge=0, description="more finals from here")


BusMessage = Annotated[
    SessionOpened
    | SessionClosed
    | SourceOpened
    | SourceClosed
    | AudioChunk
    | SpeechStarted
    | SpeechEnded
    | TranscriptionJob
    | TranscriptPartial
    | TranscriptFinal
    | SourceTranscribed
    | WorkerStatus
    | SessionUpdate
    | StoredSessionRequest
    | StoredSessionReply,
    Field(discriminator="type"),
]
"""Any bus message, told apart by its ``type`` tag."""

BUS_MESSAGE_ADAPTER: TypeAdapter[BusMessage] = TypeAdapter(BusMessage)
"""Validates a decoded map (the codec unpacks msgpack first) as whichever message its tag names."""
