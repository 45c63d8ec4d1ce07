"""Per-stream checkpoints in the JetStream KV bucket, saved after each final."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from echostream_shared.jobs.updates import ResumePoint
from echostream_shared.topology import checkpoint_key


class CheckpointError(Exception):
    """A stored checkpoint that cannot be read."""


@dataclass(frozen=True)
class Checkpoint:
    """A stream's resume point plus where in the audio stream a successor must replay from."""

    resume: ResumePoint
    replay_from_seq: int
    finals: int = 0
    closed: bool = False


class CheckpointStore:
    """Loads and saves checkpoints of one engine's (session, source) streams."""

    def __init__(self, kv: KeyValue, engine: str) -> None:
        self._kv = kv
        self._engine = engine

    async def load(self, session_id: str, source: str) -> Checkpoint | None:
        try:
            entry = await self._kv.get(checkpoint_key(self._engine, session_id, source))
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return unpack(entry.value)

    async def save(self, session_id: str, source: str, checkpoint: Checkpoint) -> None:
        await self._kv.put(checkpoint_key(self._engine, session_id, source), pack(checkpoint))


def pack(checkpoint: Checkpoint) -> bytes:
    data: bytes = msgpack.packb(
        {
            "done": checkpoint.resume.done,
            "state": dict(checkpoint.resume.state),
            "replay_from_seq": checkpoint.replay_from_seq,
            "finals": checkpoint.finals,
            "closed": checkpoint.closed,
        },
        use_bin_type=True,
    )
    return data


def unpack(data: bytes) -> Checkpoint:
    try:
        raw: dict[str, Any] = msgpack.unpackb(data, raw=False)
        return Checkpoint(
            resume=ResumePoint(done=int(raw["done"]), state=dict(raw["state"])),
            replay_from_seq=int(raw["replay_from_seq"]),
            finals=int(raw["finals"]),
            closed=bool(raw["closed"]),
        )
    except Exception as exc:  # msgpack and a foreign layout raise many types
        raise CheckpointError(f"unreadable checkpoint: {type(exc).__name__}: {exc}") from exc
