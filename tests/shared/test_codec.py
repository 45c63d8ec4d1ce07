from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings, strategies as st
from message_strategies import every_message

from echostream_shared import messages as m
from echostream_shared.codec import MAX_MESSAGE_BYTES, DecodeError, decode, decode_as, encode

SUBJECT = "ep.test.subject"

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=20,
)


@given(every_message)
def test_every_message_survives_a_round_trip(message: m.Message) -> None:
    assert decode(encode(message), SUBJECT) == message


@given(every_message, st.data())
def test_truncated_payloads_raise_the_typed_error(message: m.Message, data: st.DataObject) -> None:
    payload = encode(message)
    cut = data.draw(st.integers(min_value=0, max_value=len(payload) - 1))
    with pytest.raises(DecodeError) as raised:
        decode(payload[:cut], SUBJECT)
    assert raised.value.subject == SUBJECT


@settings(max_examples=500)
@given(st.binary(max_size=512))
def test_random_bytes_never_raise_anything_but_the_typed_error(payload: bytes) -> None:
    try:
        decoded = decode(payload, SUBJECT)
    except DecodeError as exc:
        assert exc.subject == SUBJECT and exc.reason
    else:
        assert isinstance(decoded, m.Message)


@settings(max_examples=300)
@given(msgpack_values)
def test_wrong_shaped_msgpack_raises_the_typed_error(value: object) -> None:
    payload = msgpack.packb(value, use_bin_type=True)
    with pytest.raises(DecodeError):
        decode(payload, SUBJECT)


@given(every_message, st.sampled_from(["type", "schema_version"]))
def test_unknown_type_or_version_is_rejected(message: m.Message, key: str) -> None:
    raw = message.model_dump()
    raw[key] = "no.such.type" if key == "type" else 99
    with pytest.raises(DecodeError):
        decode(msgpack.packb(raw, use_bin_type=True), SUBJECT)


def test_the_error_names_the_subject_and_the_reason() -> None:
    chunk = m.AudioChunk(
        session_id="s1", source="mic", seq=0, first_sample=0, pcm=b"\x00\x00", captured_at=1.0
    )
    raw = chunk.model_dump()
    raw["pcm"] = b"\x00\x00\x00"
    with pytest.raises(DecodeError) as raised:
        decode(msgpack.packb(raw, use_bin_type=True), "ep.audio.s1.mic")
    assert "ep.audio.s1.mic" in str(raised.value)
    assert "whole number of 2-byte samples" in raised.value.reason


def test_oversized_payloads_are_rejected_before_parsing() -> None:
    with pytest.raises(DecodeError, match="exceeds"):
        decode(b"\x00" * (MAX_MESSAGE_BYTES + 1), SUBJECT)


def test_pcm_travels_as_raw_bytes() -> None:
    pcm = bytes(range(256)) * 4
    chunk = m.AudioChunk(
        session_id="s1", source="mic", seq=3, first_sample=160, pcm=pcm, captured_at=2.5
    )
    payload = encode(chunk)
    assert pcm in payload
    assert len(payload) < len(pcm) + 120


def test_decode_as_checks_the_type() -> None:
    closed = m.SessionClosed(session_id="s1", closed_at=1.0)
    assert decode_as(encode(closed), m.SessionClosed) == closed
    with pytest.raises(DecodeError, match="expected AudioChunk"):
        decode_as(encode(closed), m.AudioChunk)
