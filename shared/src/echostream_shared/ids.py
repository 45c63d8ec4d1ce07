"""Deterministic identifiers, so a replay after a crash produces the same ids."""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("6f1c2f4e-8d7b-4c1a-9a57-3e0f9b1d2c11")


def segment_id(session_id: str, source: str, engine: str, start_sample: int) -> str:
    """The id of the segment that starts at ``start_sample`` of a source, for one engine."""
    key = f"{session_id}/{source}/{engine}/{start_sample}"
    return uuid.uuid5(_NAMESPACE, key).hex


def audio_msg_id(session_id: str, source: str, seq: int) -> str:
    """JetStream de-duplication id of an audio chunk."""
    return f"audio.{session_id}.{source}.{seq}"
