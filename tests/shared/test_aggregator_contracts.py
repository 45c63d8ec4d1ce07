"""The aggregator's bus contracts: its messages and its consumers."""

from __future__ import annotations

import msgpack
import pytest
from nats.js.api import AckPolicy, DeliverPolicy

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.codec import DecodeError, decode, encode


@pytest.mark.parametrize(
    "message",
    [
        m.SessionUpdate(
            session_id="s1",
            kind="transcript.final",
            source="mic",
            engine="whisper",
            segment_id="abc",
            start_sample=0,
            end_sample=16_000,
            text="hello",
            language="en",
            updated_at=1.0,
        ),
        m.SessionUpdate(session_id="s1", kind="session.completed", updated_at=2.0),
        m.StoredSessionRequest(session_id="S-1", engine="whisper", wait_s=5, offset=3),
        m.StoredSessionReply(
            session_id="S-1",
            status="ok",
            client="echopanel",
            engine="whisper",
            engines=("whisper",),
            closed=True,
            complete=True,
            sources=(m.StoredSource(source="mic", end_sample=32_000, transcribed=True),),
            finals=(
                m.TranscriptFinal(
                    session_id="S-1",
                    source="mic",
                    engine="whisper",
                    segment_id="seg",
                    start_sample=0,
                    end_sample=16_000,
                    text="hello",
                    words=(m.Word(text="hello", start_sample=0, end_sample=16_000),),
                    emitted_at=1.0,
                ),
            ),
            next_offset=None,
        ),
        m.StoredSessionReply(session_id="nobody", status="not_found"),
    ],
)
def test_round_trip(message: m.Message) -> None:
    assert decode(encode(message)) == message


def test_invalid_requests_are_rejected() -> None:
    too_long = msgpack.packb({"type": "stored_session.request", "session_id": "s", "wait_s": 99})
    with pytest.raises(DecodeError, match="wait_s"):
        decode(too_long)
    bad_kind = msgpack.packb(
        {"type": "session.update", "session_id": "s", "kind": "nonsense", "updated_at": 0}
    )
    with pytest.raises(DecodeError, match="kind"):
        decode(bad_kind)
    with pytest.raises(ValueError):
        m.StoredSessionRequest(session_id="not.a.token")


def test_consumer_names_and_config() -> None:
    names = {t.aggregator_consumer(stream) for stream in t.AGGREGATOR_STREAMS}
    assert names == {"aggregator-ep-sessions", "aggregator-ep-transcripts"}
    config = t.aggregator_consumer_config(t.TRANSCRIPT_STREAM, "store-1", t.TopologyLimits(), 5)
    assert config.deliver_policy == DeliverPolicy.ALL
    assert config.ack_policy == AckPolicy.EXPLICIT and config.ack_wait == 5
    assert config.metadata == {t.AGGREGATOR_STORE_KEY: "store-1"}
    assert t.AGGREGATOR_SESSION == "ep.aggregator.session"


async def test_nats_server_keeps_the_store_id(bus: Bus) -> None:
    await t.ensure_topology(bus.js)
    for stream in t.AGGREGATOR_STREAMS:
        await bus.js.add_consumer(
            stream, t.aggregator_consumer_config(stream, "store-1", t.TopologyLimits())
        )
        info = await bus.js.consumer_info(stream, t.aggregator_consumer(stream))
        assert info.config.metadata[t.AGGREGATOR_STORE_KEY] == "store-1"
