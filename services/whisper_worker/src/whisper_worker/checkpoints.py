"""Where a stream's transcription stands, kept in the JetStream KV bucket after each final."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import msgpack
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from echostream_shared.topology import checkpoint_key
from whisper_worker.streaming import StreamCheckpoint, TimedWord

ENGINE = "whisper"


@dataclass(frozen=True)
class Checkpoint:
    """A stream's engine state plus where in the audio stream a successor must replay from."""

    stream: StreamCheckpoint
    replay_from_seq: int
    finals: int = 0
    closed: bool = False


class CheckpointStore:
    """Loads and saves checkpoints of (session, source) streams for this engine."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def load(self, session_id: str, source: str) -> Checkpoint | None:
        try:
            entry = await self._kv.get(checkpoint_key(ENGINE, session_id, source))
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return _unpack(entry.value)

    async def save(self, session_id: str, source: str, checkpoint: Checkpoint) -> None:
        await self._kv.put(checkpoint_key(ENGINE, session_id, source), _pack(checkpoint))


def _pack(checkpoint: Checkpoint) -> bytes:
    data: bytes = msgpack.packb(dataclasses.asdict(checkpoint), use_bin_type=True)
    return data


def _unpack(data: bytes) -> Checkpoint:
    raw: dict[str, Any] = msgpack.unpackb(data, raw=False)
    state = raw["stream"]
    return Checkpoint(
        stream=StreamCheckpoint(
            done=state["done"],
            in_speech=state["in_speech"],
            segment_start=state["segment_start"],
            events_seen=state["events_seen"],
            tail=tuple(TimedWord(**word) for word in state["tail"]),
            after_cut=state.get("after_cut", False),
        ),
        replay_from_seq=raw["replay_from_seq"],
        finals=raw["finals"],
        closed=raw["closed"],
    )
