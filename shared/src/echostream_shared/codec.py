"""msgpack encoding of bus messages; PCM stays raw bytes."""

from __future__ import annotations

from typing import TypeVar

import msgpack
from pydantic import ValidationError

from echostream_shared.messages import BUS_MESSAGE_ADAPTER, BusMessage, Message

M = TypeVar("M", bound=Message)

MAX_MESSAGE_BYTES = 1024 * 1024


class DecodeError(Exception):
    """A payload that is not a valid bus message.

    Attributes:
        subject: the subject the payload arrived on.
        reason: why it was rejected, without the payload itself.
    """

    def __init__(self, subject: str, reason: str) -> None:
        super().__init__(f"cannot decode message on {subject!r}: {reason}")
        self.subject = subject
        self.reason = reason


def encode(message: Message) -> bytes:
    """Encode a message to msgpack bytes."""
    payload: bytes = msgpack.packb(message.model_dump(mode="python"), use_bin_type=True)
    return payload


def decode(data: bytes, subject: str = "") -> BusMessage:
    """Decode msgpack bytes into the bus message their ``type`` tag names.

    Raises:
        DecodeError: for anything that is not a valid, supported message.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(subject, f"payload of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises a zoo of types for bad input
        raise DecodeError(subject, f"not msgpack: {type(exc).__name__}") from exc
    if not isinstance(raw, dict):
        raise DecodeError(subject, f"expected a map, got {type(raw).__name__}")
    try:
        return BUS_MESSAGE_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "message"
        raise DecodeError(subject, f"invalid {where}: {first['msg']}") from exc
    except Exception as exc:  # e.g. unhashable keys produced by hostile input
        raise DecodeError(subject, f"invalid message: {type(exc).__name__}") from exc


def decode_as(data: bytes, kind: type[M], subject: str = "") -> M:
    """Decode and check that the message is of the expected type."""
    message = decode(data, subject)
    if not isinstance(message, kind):
        raise DecodeError(subject, f"expected {kind.__name__}, got {type(message).__name__}")
    return message
