"""Bad input on Deepgram's live WebSocket, answered in Deepgram's own shapes, and nothing lost:
refused handshakes, malformed and unknown control messages, audio frames that split samples, a
client that vanishes mid-utterance, and a client that goes quiet."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from capture_audio import conversation, packaged, silence
from compat.deepgram_helpers import TOKEN, LiveStream, deepgram, stored_session
from deepgram.core.api_error import ApiError
from deepgram.core.unchecked_base_model import construct_type
from deepgram.listen.v1.socket_client import V1SocketClientResponse
from deepgram.listen.v1.types import ListenV1Error, ListenV1Metadata, ListenV1Results
from native_client import NativeClient
from pipeline_procs import Pipeline, running_pipeline
from speech_corpus import wer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

pytestmark = pytest.mark.slow

RATE = 16_000
FRAME = 3200


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    workdir = tmp_path_factory.mktemp("deepgram-errors")
    with running_pipeline(
        workdir, ECHOSTREAM_CAPTURE_TOKEN=TOKEN, ECHOSTREAM_CAPTURE_MAX_CONNECTIONS="2"
    ) as running:
        yield running


def listen_url(pipeline: Pipeline, **query: Any) -> str:
    params = "&".join(f"{k}={v}" for k, v in {"model": "nova-3", **query}.items())
    return f"{pipeline.ws}/v1/listen?{params}"


async def refused(url: str, **connect_args: Any) -> tuple[int, dict[str, Any]]:
    """The HTTP status and Deepgram error body of a refused handshake."""
    with pytest.raises(InvalidStatus) as refusal:
        async with connect(url, **connect_args):
            pass
    response = refusal.value.response
    return response.status_code, json.loads(response.body or b"{}")


async def sdk_messages(ws: ClientConnection) -> list[Any]:
    """Everything the server sends until it closes, parsed as the SDK parses it."""
    found = []
    try:
        async for raw in ws:
            found.append(construct_type(type_=V1SocketClientResponse, object_=json.loads(raw)))
    except ConnectionClosed:
        pass
    return found


async def native_text(pipeline: Pipeline, pcm: Any) -> str:
    async with NativeClient(pipeline.ws, token=TOKEN) as client:
        await client.start(partials=False)
        await client.stream(0, pcm.astype("<i2").tobytes(), frame_bytes=FRAME)
        done = await client.finish(timeout_s=120)
    assert done["complete"], done
    return " ".join(f["text"] for f in sorted(client.of_type("final"), key=lambda f: f["start"]))


async def test_handshakes_are_refused_with_deepgrams_http_errors(pipeline: Pipeline) -> None:
    raw = {"encoding": "linear16", "sample_rate": RATE}
    status, body = await refused(listen_url(pipeline, **raw))
    assert status == 401 and body["err_code"] == "INVALID_AUTH" and body["request_id"]
    status, body = await refused(
        listen_url(pipeline, **raw), additional_headers={"Authorization": "Token wrong"}
    )
    assert status == 401 and body["err_code"] == "INVALID_AUTH"
    with pytest.raises(ApiError) as sdk_refusal:
        async with deepgram(pipeline, api_key="wrong").listen.v1.connect(model="nova-3"):
            pass
    assert sdk_refusal.value.status_code == 401

    token = {"additional_headers": {"Authorization": f"Token {TOKEN}"}}
    for query, problem in [
        ({"encoding": "speex", "sample_rate": RATE}, "unsupported encoding"),
        ({"encoding": "linear16"}, "needs sample_rate"),
        ({**raw, "interim_results": "maybe"}, "interim_results"),
        ({**raw, "channels": 9}, "channels"),
        ({"encoding": "mulaw", "sample_rate": 100}, "sample_rate"),
    ]:
        status, body = await refused(listen_url(pipeline, **query), **token)
        assert status == 400 and body["err_code"] == "Bad Request", body
        assert problem in body["err_msg"], body


async def test_a_server_at_capacity_refuses_with_429(pipeline: Pipeline) -> None:
    async with (
        LiveStream(pipeline, encoding="linear16", sample_rate=RATE) as one,
        LiveStream(pipeline, encoding="linear16", sample_rate=RATE) as two,
    ):
        status, body = await refused(
            listen_url(pipeline, encoding="linear16", sample_rate=RATE, token=TOKEN)
        )
        assert status == 429 and body["err_code"] == "TOO_MANY_REQUESTS"
        await one.close_stream()
        await two.close_stream()


async def test_bearer_tokens_and_the_token_subprotocol_are_accepted(pipeline: Pipeline) -> None:
    async with LiveStream(pipeline, encoding="mulaw", sample_rate=8000) as stream:
        await stream.close_stream()
    assert isinstance(stream.messages[-1], ListenV1Metadata) and stream.close_code == 1000

    client = deepgram(pipeline, access_token=TOKEN)  # Authorization: bearer <token>
    async with client.listen.v1.connect(model="nova-3", encoding="alaw", sample_rate=8000) as s:
        await s.send_close_stream()
        assert isinstance(await s.recv(), ListenV1Metadata)

    url = listen_url(pipeline, encoding="linear16", sample_rate=RATE)
    for scheme in ("token", "bearer"):  # API keys; JS SDK 4.x access tokens in browsers
        async with connect(url, subprotocols=[scheme, TOKEN]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == scheme
            await ws.send(json.dumps({"type": "CloseStream"}))
            messages = await sdk_messages(ws)
        assert isinstance(messages[-1], ListenV1Metadata)

    async with connect(
        listen_url(pipeline, encoding="linear16", sample_rate=RATE, token=TOKEN)
    ) as ws:
        await ws.send(b"")  # the legacy end of stream
        messages = await sdk_messages(ws)
    assert isinstance(messages[-1], ListenV1Metadata) and ws.close_code == 1000


async def test_bad_messages_get_schema_errors_and_split_samples_lose_nothing(
    pipeline: Pipeline,
) -> None:
    speech = conversation(gap_s=1.0, names=("quick_brown_fox", "hello_world"))
    audio = speech.pcm.astype("<i2").tobytes()
    url = listen_url(pipeline, encoding="linear16", sample_rate=RATE, punctuate="true")
    async with connect(url, additional_headers={"Authorization": f"Token {TOKEN}"}) as ws:
        reading = asyncio.create_task(sdk_messages(ws))
        for bad in ['{"type": "KeepAlive"', "[1, 2]", '{"type": 5}', '{"type": "Bogus"}']:
            await ws.send(bad)
        await ws.send(json.dumps({"type": "Configure", "keyterms": ["EchoStream"]}))
        for offset in range(0, len(audio), 3333):  # every frame but the last splits a sample
            await ws.send(audio[offset : offset + 3333])
        await ws.send(b"\x01")  # half a sample, never completed
        await ws.send(json.dumps({"type": "CloseStream"}))
        messages = await reading
        assert ws.close_code == 1000

    errors = [msg for msg in messages if isinstance(msg, ListenV1Error)]
    for error in errors:
        ListenV1Error.model_validate(error.model_dump())
    assert [e.variant for e in errors] == ["SchemaError"] * 4 + ["DataError"]
    assert "unknown message type 'Bogus'" in errors[3].description
    assert "last 1 bytes" in errors[4].description
    assert any(getattr(m, "type", None) == "ConfigureFailure" for m in messages)
    assert isinstance(messages[-1], ListenV1Metadata)
    finals = [m for m in messages if isinstance(m, ListenV1Results) and m.is_final]
    text = " ".join(r.channel.alternatives[0].transcript for r in finals)
    assert (
        wer(speech.text, text) <= wer(speech.text, await native_text(pipeline, speech.pcm)) + 0.02
    )


async def test_a_client_that_vanishes_mid_utterance_is_still_transcribed_and_stored(
    pipeline: Pipeline,
) -> None:
    fox, hello = packaged("quick_brown_fox"), packaged("hello_world")
    sent = np.concatenate([silence(0.5), hello.pcm, silence(1.0), fox.pcm[: len(fox.pcm) * 2 // 3]])
    async with LiveStream(
        pipeline, encoding="linear16", sample_rate=RATE, interim_results="true"
    ) as stream:
        await stream.send_audio(sent.astype("<i2").tobytes(), FRAME, RATE * 2)
        await stream.wait_for(lambda r: isinstance(r, ListenV1Results))
        stream.socket._websocket.transport.abort()  # gone, mid-word, without a close frame
        await stream.wait_closed(10)
        session_id = stream.request_id

    stored = await stored_session(pipeline, session_id)
    assert stored["close_reason"] == "disconnected"
    segments = stored["transcript"]
    assert segments[-1]["end_s"] >= len(sent) / RATE - 1.0, "the cut-off utterance is stored"
    stored_text = " ".join(s["text"] for s in segments)
    assert wer(await native_text(pipeline, sent), stored_text) <= 0.1


async def test_keepalive_holds_a_quiet_stream_open_until_deepgrams_idle_timeout(
    pipeline: Pipeline,
) -> None:
    hello = packaged("hello_world")
    async with LiveStream(pipeline, encoding="linear16", sample_rate=RATE) as stream:
        await stream.send_audio(hello.pcm.astype("<i2").tobytes(), FRAME)
        for _ in range(4):
            await asyncio.sleep(3.0)
            await stream.socket.send_keep_alive()
        assert not stream.closed, "KeepAlive keeps the stream open"
        await stream.wait_closed(15)
    assert stream.close_code == 1011
    assert isinstance(stream.messages[-1], ListenV1Metadata)
    assert wer(hello.text, stream.transcript()) <= (
        wer(hello.text, await native_text(pipeline, hello.pcm)) + 0.02
    )
