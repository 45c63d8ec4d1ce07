"""Knowing that a source has been transcribed to its end.

Until the workers publish an explicit marker, a source counts as transcribed when the engine's
checkpoint in the ``ep_checkpoints`` bucket says ``closed``: the whisper worker writes it after
it consumed ``SourceClosed`` and published the last final.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgpack
from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError

from echostream_shared import topology as t
from echostream_shared.bus import Bus


async def transcribed(
    bus: Bus, engine: str, session_id: str, source: str, timeout_s: float
) -> bool:
    """Wait until ``engine`` finished ``source``; False after ``timeout_s``."""
    kv = await bus.js.key_value(t.CHECKPOINT_BUCKET)
    watcher = await kv.watch(t.checkpoint_key(engine, session_id, source))
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                entry = await watcher.updates(timeout=timeout_s)  # type: ignore[no-untyped-call]
                if entry is not None and is_closed(entry.value):
                    return True
    except TimeoutError:
        return False
    finally:
        with contextlib.suppress(NatsError):
            await watcher.stop()  # type: ignore[no-untyped-call]


async def is_transcribed(bus: Bus, engine: str, session_id: str, source: str) -> bool:
    """Whether ``engine`` finished ``source`` already."""
    kv = await bus.js.key_value(t.CHECKPOINT_BUCKET)
    try:
        entry = await kv.get(t.checkpoint_key(engine, session_id, source))
    except (KeyNotFoundError, NatsError):
        return False
    return is_closed(entry.value)


def is_closed(value: bytes | None) -> bool:
    """Whether a checkpoint value says its stream is closed."""
    if not value:
        return False
    try:
        state: Any = msgpack.unpackb(value, raw=False)
    except Exception:  # a checkpoint format this service does not know
        return False
    return isinstance(state, dict) and state.get("closed") is True
