"""Every subject, stream, consumer and KV bucket of EchoStream, and their idempotent creation.

Subjects (tokens are validated ``Token`` strings, so they never contain dots or wildcards)::

    ep.audio.<session>.<source>             AudioChunk, SpeechStarted, SpeechEnded, SourceClosed
    ep.session.<session>.events             SessionOpened, SourceOpened, SourceClosed, SessionClosed
    ep.session.<session>.feed               aggregator's live session updates (core NATS)
    ep.transcript.<engine>.<session>.<src>  TranscriptPartial, TranscriptFinal, SourceTranscribed
    ep.job.<engine>                         TranscriptionJob (work queue; each engine's workers
                                            create their consumer, so any engine name works)
    ep.status.<engine>.<worker>             WorkerStatus (core NATS)

Speech boundaries travel in the audio subject, not only beside it, so a worker reading one
source sees chunks and boundaries in sample order from a single ordered stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, BucketNotFoundError

PREFIX = "ep"

AUDIO_STREAM = "EP_AUDIO"
SESSION_STREAM = "EP_SESSIONS"
TRANSCRIPT_STREAM = "EP_TRANSCRIPTS"
JOB_STREAM = "EP_JOBS"
CHECKPOINT_BUCKET = "ep_checkpoints"

HOUR = 3600.0


def audio(session_id: str, source: str) -> str:
    """Audio chunks and speech boundaries of one source."""
    return f"{PREFIX}.audio.{session_id}.{source}"


def audio_of_session(session_id: str) -> str:
    """Every source's audio of one session (a wildcard)."""
    return f"{PREFIX}.audio.{session_id}.*"


def session_events(session_id: str) -> str:
    """Lifecycle events of one session."""
    return f"{PREFIX}.session.{session_id}.events"


def session_feed(session_id: str) -> str:
    """The aggregator's live updates of one session."""
    return f"{PREFIX}.session.{session_id}.feed"


def transcript(engine: str, session_id: str, source: str) -> str:
    """Partial and final transcripts of one source by one engine."""
    return f"{PREFIX}.transcript.{engine}.{session_id}.{source}"


def transcripts_of_session(session_id: str) -> str:
    """Every engine's transcripts of one session (a wildcard)."""
    return f"{PREFIX}.transcript.*.{session_id}.*"


def job(engine: str) -> str:
    """Work queue of one engine."""
    return f"{PREFIX}.job.{engine}"


def worker_status(engine: str, worker_id: str) -> str:
    """Status reports of one worker."""
    return f"{PREFIX}.status.{engine}.{worker_id}"


def worker_consumer(engine: str) -> str:
    """Durable consumer shared by every worker of one engine."""
    return f"{engine}-worker"


AGGREGATOR_SESSION = f"{PREFIX}.aggregator.session"
"""Request/reply (core NATS): a StoredSessionRequest is answered with a StoredSessionReply."""

AGGREGATOR_QUEUE = "aggregator"
"""Queue group of the aggregators' request/reply subscriptions, so one of them answers."""

AGGREGATOR_STORE_KEY = "echostream_store_id"
"""Consumer metadata key naming the aggregator store the consumer's position belongs to."""


def aggregator_consumer(stream: str) -> str:
    """Durable consumer through which the aggregators read one stream."""
    return f"aggregator-{stream.lower().replace('_', '-')}"


def aggregator_consumer_config(
    stream: str, store_id: str, limits: TopologyLimits, ack_wait_s: float = 30.0
) -> ConsumerConfig:
    """The aggregator's consumer of one stream, from its first message, bound to one store.

    ``store_id`` identifies the database whose contents the consumer's position reflects; a
    new, empty database has another id, so the aggregator recreates the consumer and rebuilds.
    """
    return ConsumerConfig(
        durable_name=aggregator_consumer(stream),
        description=f"aggregator's session store reading {stream}",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_deliver=-1,
        max_ack_pending=1000,
        num_replicas=limits.replicas,
        metadata={AGGREGATOR_STORE_KEY: store_id},
    )


AGGREGATOR_STREAMS = (SESSION_STREAM, TRANSCRIPT_STREAM)
"""Streams the aggregator consumes, in the order it should read them."""


def checkpoint_key(engine: str, session_id: str, source: str) -> str:
    """KV key of a stream's checkpoint."""
    return f"{engine}.{session_id}.{source}"


@dataclass(frozen=True)
class TopologyLimits:
    """Retention and timing of the JetStream topology.

    Audio is kept long enough for a failed-over worker (or a restarted aggregator) to replay a
    session; at 32 kB/s per source, 8 GiB holds about 70 source-hours. Transcripts are small and
    kept for a week so the aggregator can rebuild its store. ``job_ack_wait_s`` bounds how long a
    dead worker's stream waits before moving; live workers extend it with progress acks.
    """

    audio_max_age_s: float = 24 * HOUR
    audio_max_bytes: int = 8 * 1024**3
    session_max_age_s: float = 7 * 24 * HOUR
    transcript_max_age_s: float = 7 * 24 * HOUR
    transcript_max_bytes: int = 2 * 1024**3
    max_msg_size: int = 1024 * 1024
    duplicate_window_s: float = 120.0
    job_ack_wait_s: float = 30.0
    job_max_deliver: int = 20
    storage: StorageType = StorageType.FILE
    replicas: int = 1


def stream_configs(limits: TopologyLimits) -> list[StreamConfig]:
    """The four streams, limits applied."""
    return [
        _stream(
            limits,
            AUDIO_STREAM,
            "16 kHz PCM16 chunks and speech boundaries, per source",
            f"{PREFIX}.audio.>",
            max_age=limits.audio_max_age_s,
            max_bytes=limits.audio_max_bytes,
        ),
        _stream(
            limits,
            SESSION_STREAM,
            "session and source lifecycle events",
            f"{PREFIX}.session.*.events",
            max_age=limits.session_max_age_s,
        ),
        _stream(
            limits,
            TRANSCRIPT_STREAM,
            "partial and final transcripts of every engine",
            f"{PREFIX}.transcript.>",
            max_age=limits.transcript_max_age_s,
            max_bytes=limits.transcript_max_bytes,
        ),
        _stream(
            limits,
            JOB_STREAM,
            "transcription jobs, one per (session, source, engine)",
            f"{PREFIX}.job.*",
            max_age=limits.audio_max_age_s,
            retention=RetentionPolicy.WORK_QUEUE,
        ),
    ]


def _stream(
    limits: TopologyLimits,
    name: str,
    description: str,
    subject: str,
    *,
    max_age: float,
    max_bytes: int = -1,
    retention: RetentionPolicy = RetentionPolicy.LIMITS,
) -> StreamConfig:
    return StreamConfig(
        name=name,
        description=description,
        subjects=[subject],
        retention=retention,
        discard=DiscardPolicy.OLD,
        max_age=max_age,
        max_bytes=max_bytes,
        max_msg_size=limits.max_msg_size,
        storage=limits.storage,
        num_replicas=limits.replicas,
        duplicate_window=limits.duplicate_window_s,
    )


def worker_consumer_config(engine: str, limits: TopologyLimits) -> ConsumerConfig:
    """The pull consumer that hands an engine's jobs to its workers, one at a time each."""
    return ConsumerConfig(
        durable_name=worker_consumer(engine),
        description=f"jobs for {engine} workers",
        filter_subject=job(engine),
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=limits.job_ack_wait_s,
        max_deliver=limits.job_max_deliver,
        max_ack_pending=-1,
        num_replicas=limits.replicas,
    )


def checkpoint_bucket_config(limits: TopologyLimits) -> KeyValueConfig:
    """KV bucket of per-stream checkpoints; they expire with the audio they point into."""
    return KeyValueConfig(
        bucket=CHECKPOINT_BUCKET,
        description="last finalized position of each (engine, session, source)",
        history=1,
        ttl=limits.audio_max_age_s,
        storage=limits.storage,
        replicas=limits.replicas,
    )


async def ensure_topology(js: JetStreamContext, limits: TopologyLimits | None = None) -> None:
    """Create or update every stream and bucket; a no-op when they already match.

    An engine's job consumer is its workers' to create (``ensure_worker_consumer``): jobs for an
    engine no worker has served yet wait in the work queue until one starts.
    """
    limits = limits or TopologyLimits()
    for config in stream_configs(limits):
        await _ensure_stream(js, config)
    await _ensure_bucket(js, checkpoint_bucket_config(limits))


async def ensure_worker_consumer(
    js: JetStreamContext, engine: str, limits: TopologyLimits | None = None
) -> None:
    """Create or update the job consumer of ``engine``; a no-op when it already matches."""
    await js.add_consumer(JOB_STREAM, worker_consumer_config(engine, limits or TopologyLimits()))


async def _ensure_bucket(js: JetStreamContext, config: KeyValueConfig) -> None:
    # nats-py's bucket config does not round-trip, so re-creating an existing bucket fails.
    try:
        await js.key_value(config.bucket)
    except BucketNotFoundError:
        await js.create_key_value(config)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError as exc:
        # 10058: the stream exists with another configuration (e.g. changed limits).
        if exc.err_code != 10058:
            raise
        await js.update_stream(config)
