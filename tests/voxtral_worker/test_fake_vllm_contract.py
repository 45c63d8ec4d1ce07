"""The fake vLLM server against the reference document (vllm-realtime-protocol.md, 0.33.0).

One test per error code (§10) and per ordering rule (§4, §6), through a raw websockets client,
so the worker's tests run against something trustworthy.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator

import numpy as np
import pytest
from fake_vllm import FakeVllm, FakeVllmConfig, speak
from fake_vllm.client import append, commit, deltas_until_done, recv, send, silent, update
from fake_vllm.server import MODEL
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

SCRIPT = ("hello wonderful world", "second utterance here")
TOKEN = 1280
FIRST_STEP = 9000  # (6 delay tokens + 1) * 1280 + 40: 562.5 ms at 480 ms delay (§8)


@pytest.fixture
async def vllm() -> AsyncIterator[FakeVllm]:
    async with FakeVllm(FakeVllmConfig(script=SCRIPT)) as server:
        yield server


@pytest.fixture
async def ws(vllm: FakeVllm) -> AsyncIterator[ClientConnection]:
    async with connect(vllm.url) as client:
        created = await recv(client)
        assert created["type"] == "session.created"
        yield client


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), dtype=np.int16)


async def expect_error(ws: ClientConnection, code: str, message: str | None = None) -> dict:
    event = await recv(ws)
    assert event["type"] == "error" and event["code"] == code, event
    assert isinstance(event["error"], str)
    if message is not None:
        assert event["error"] == message
    return event


# --- connection (§2, §5) ---


async def test_session_created_comes_first_with_its_id_format(vllm: FakeVllm) -> None:
    async with connect(vllm.url) as client:
        created = await recv(client)
    assert list(created) == ["type", "id", "created"]
    assert re.fullmatch(r"sess-[0-9a-f]{16}", created["id"])
    assert isinstance(created["created"], int)


async def test_query_parameters_are_ignored(vllm: FakeVllm) -> None:
    async with connect(vllm.url + "?model=other&intent=transcription") as client:
        assert (await recv(client))["type"] == "session.created"


async def test_another_path_is_refused_at_the_handshake(vllm: FakeVllm) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(vllm.url.replace("/v1/realtime", "/v1/other")):
            pass
    assert refused.value.response.status_code == 403


async def test_api_key_is_required_as_a_bearer_header_when_configured() -> None:
    async with FakeVllm(FakeVllmConfig(api_keys=("k1", "k2"))) as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "k1"}):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(server.url, additional_headers=headers):
                    pass
            assert refused.value.response.status_code == 401
            assert json.loads(refused.value.response.body) == {"error": "Unauthorized"}
        async with connect(
            server.url + "?api_key=k1", additional_headers={"Authorization": "bearer k2"}
        ) as client:
            assert (await recv(client))["type"] == "session.created"


async def test_a_binary_frame_kills_the_connection_without_a_close_frame(
    ws: ClientConnection,
) -> None:
    await ws.send(b"\x00\x01")
    with pytest.raises(ConnectionClosedError) as closed:
        await recv(ws)
    assert closed.value.rcvd is None  # 1006: abnormal closure


# --- errors (§10): each one leaves the socket open ---


async def test_invalid_json(ws: ClientConnection) -> None:
    await ws.send("{not json")
    await expect_error(ws, "invalid_json", "Invalid JSON")
    await ws.send("[]")
    await expect_error(ws, "processing_error")
    await update(ws)
    await silent(ws)


async def test_unknown_event_types_including_openai_ones(ws: ClientConnection) -> None:
    for kind in (
        "input_audio_buffer.clear",
        "session.create",
        "response.create",
        "transcription_session.update",
    ):
        await send(ws, {"type": kind})
        await expect_error(ws, "unknown_event", f"Unknown event type: {kind}")
    await send(ws, {"model": MODEL})
    await expect_error(ws, "unknown_event", "Unknown event type: None")


async def test_session_update_without_model_is_an_invalid_event(ws: ClientConnection) -> None:
    await send(ws, {"type": "session.update", "session": {"model": MODEL}})
    await expect_error(ws, "invalid_event", "Missing required field: model")
    await send(ws, {"type": "session.update", "model": None})
    await expect_error(ws, "invalid_event", "Missing required field: model")


async def test_unknown_model_is_not_found_and_leaves_the_session_unvalidated(
    ws: ClientConnection,
) -> None:
    await update(ws, "voxtral-mini-transcribe-realtime-2602")
    await expect_error(
        ws, "model_not_found", "The model `voxtral-mini-transcribe-realtime-2602` does not exist."
    )
    await commit(ws)
    await expect_error(ws, "model_not_validated")


async def test_commit_before_session_update_is_not_validated(ws: ClientConnection) -> None:
    await commit(ws)
    await expect_error(
        ws,
        "model_not_validated",
        "Model not validated. Make sure to validate the model by sending a session.update event.",
    )
    await commit(ws, final=True)
    await expect_error(ws, "model_not_validated")


async def test_a_failed_update_does_not_unvalidate_an_earlier_success(ws: ClientConnection) -> None:
    await update(ws)
    await update(ws, "nope")
    await expect_error(ws, "model_not_found")
    await commit(ws)
    await silent(ws)


async def test_empty_model_name_is_accepted_and_no_session_updated_is_sent(
    ws: ClientConnection,
) -> None:
    await send(ws, {"type": "session.update", "model": "", "language": "fr", "prompt": "x"})
    await commit(ws)
    await silent(ws)


@pytest.mark.parametrize(
    "audio",
    ["not base64!", base64.b64encode(b"\x01\x02\x03").decode(), "", "AAE"],
    ids=["bad-base64", "odd-length", "empty", "bad-padding"],
)
async def test_invalid_audio_is_dropped_and_the_session_goes_on(
    ws: ClientConnection, audio: str
) -> None:
    await send(ws, {"type": "input_audio_buffer.append", "audio": audio})
    await expect_error(ws, "invalid_audio", "Invalid audio data")
    await send(
        ws,
        {
            "type": "input_audio_buffer.append",
            "audio": base64.b64encode(b"\x00\x00").decode(),
            "event_id": "e1",
        },
    )
    await silent(ws)


async def test_malformed_append_and_commit_are_processing_errors(ws: ClientConnection) -> None:
    await send(ws, {"type": "input_audio_buffer.append"})
    assert "audio" in (await expect_error(ws, "processing_error"))["error"]
    await send(ws, {"type": "input_audio_buffer.append", "audio": 5})
    await expect_error(ws, "processing_error")
    await update(ws)
    await send(ws, {"type": "input_audio_buffer.commit", "final": "sometimes"})
    assert "final" in (await expect_error(ws, "processing_error"))["error"]


async def test_a_failing_generation_reports_processing_error_and_no_done() -> None:
    async with FakeVllm(FakeVllmConfig(fail_after_steps=3)) as server, connect(server.url) as ws:
        await recv(ws)
        await update(ws)
        await commit(ws)
        await append(ws, silence(2))
        for _ in range(3):
            assert (await recv(ws))["type"] == "transcription.delta"
        await expect_error(ws, "processing_error")
        await commit(ws, final=True)
        await silent(ws)


# --- generation and ordering (§4.3, §6, §7, §8) ---


async def test_deltas_start_after_the_delay_and_come_one_per_80_ms(ws: ClientConnection) -> None:
    await update(ws)
    await commit(ws)
    await append(ws, silence(1)[: FIRST_STEP - 1], chunk=FIRST_STEP - 1)
    await silent(ws)
    await append(ws, np.zeros(1, dtype=np.int16))
    assert await recv(ws) == {"type": "transcription.delta", "delta": ""}
    await append(ws, np.zeros(TOKEN - 1, dtype=np.int16))
    await silent(ws)
    await append(ws, np.zeros(1, dtype=np.int16))
    assert (await recv(ws))["type"] == "transcription.delta"


async def test_done_text_is_the_concatenation_of_the_deltas_with_usage(
    ws: ClientConnection,
) -> None:
    audio = np.concatenate([silence(0.5), speak(0, 3), silence(0.5)])
    await update(ws)
    await commit(ws)
    await append(ws, audio)
    await commit(ws, final=True)
    deltas, done = await deltas_until_done(ws)
    assert done["text"] == "".join(deltas) == " hello wonderful world"
    assert "" in deltas and " won" in deltas and "derful" in deltas
    assert list(done) == ["type", "text", "usage"]
    right_pad = 17 * TOKEN
    steps = (len(audio) + right_pad - FIRST_STEP) // TOKEN + 1
    assert done["usage"] == {
        "prompt_tokens": 39,
        "total_tokens": 39 + steps,
        "completion_tokens": steps,
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }
    await silent(ws)  # the socket stays open after done


async def test_a_word_comes_a_delay_after_it_is_spoken(ws: ClientConnection) -> None:
    lead = silence(0.8)  # 10 tokens of silence, then the first word
    await update(ws)
    await commit(ws)
    await append(ws, np.concatenate([lead, speak(0, 1)]))
    assert [(await recv(ws))["delta"] for _ in range(7)] == [""] * 7
    await silent(ws)  # the word's token needs audio up to its end + the delay
    await append(ws, silence(0.3))
    deltas = [(await recv(ws))["delta"] for _ in range(4)]
    assert deltas == ["", "", "", " hello"]


async def test_appends_before_the_first_commit_are_kept(ws: ClientConnection) -> None:
    await update(ws)
    await append(ws, np.concatenate([speak(1, 2), silence(0.3)]))
    await commit(ws)
    await commit(ws, final=True)
    deltas, done = await deltas_until_done(ws)
    assert done["text"] == " second utterance"


async def test_a_second_commit_while_running_is_ignored_silently(ws: ClientConnection) -> None:
    await update(ws)
    await commit(ws)
    await commit(ws)
    await silent(ws)
    await append(ws, silence(0.7))
    await commit(ws, final=True)
    _, done = await deltas_until_done(ws)
    assert done["text"] == ""


async def test_a_final_commit_without_a_generation_waits_for_the_next_commit(
    ws: ClientConnection,
) -> None:
    await update(ws)
    await append(ws, silence(0.7))
    await commit(ws, final=True)
    await silent(ws)
    await commit(ws)
    _, done = await deltas_until_done(ws)
    assert done["usage"]["completion_tokens"] > 0


async def test_audio_between_final_and_done_is_discarded_but_after_done_it_is_kept(
    ws: ClientConnection,
) -> None:
    server_side = ws  # one connection, two utterances
    await update(server_side)
    await commit(server_side)
    await append(server_side, silence(0.7))
    await commit(server_side, final=True)
    await append(server_side, speak(0, 1))  # lands between final and done
    deltas, done = await deltas_until_done(server_side)
    assert done["text"] == ""
    await append(
        server_side, np.concatenate([speak(1, 1), silence(0.3)])
    )  # after done, before commit
    await commit(server_side)
    await commit(server_side, final=True)
    _, done = await deltas_until_done(server_side)
    assert done["text"] == " second"


async def test_max_model_len_ends_the_generation_with_an_unrequested_done() -> None:
    config = FakeVllmConfig(script=SCRIPT, max_model_len=39 + 20)
    async with FakeVllm(config) as server, connect(server.url) as ws:
        await recv(ws)
        await update(ws)
        await commit(ws)
        await append(ws, silence(3))
        deltas, done = await deltas_until_done(ws)
        assert len(deltas) == 20 and done["usage"]["completion_tokens"] == 20
        await append(ws, silence(0.7))  # kept for the next generation, which a commit starts
        await commit(ws)
        assert (await recv(ws))["type"] == "transcription.delta"
        assert server.stats.done_unsolicited == 1 and server.stats.generations == 2


async def test_old_servers_stop_silently_on_a_long_pause() -> None:
    async with FakeVllm(FakeVllmConfig(stall_after_s=0.3)) as server, connect(server.url) as ws:
        await recv(ws)
        await update(ws)
        await commit(ws)
        await append(ws, silence(0.7))
        assert [(await recv(ws))["type"] for _ in range(2)] == ["transcription.delta"] * 2
        await silent(ws, 0.6)
        await append(ws, silence(1))
        await commit(ws, final=True)
        await silent(ws, 0.5)
        assert server.stats.stalled == 1


async def test_drop_connections_closes_abnormally(vllm: FakeVllm, ws: ClientConnection) -> None:
    await update(ws)
    vllm.drop_connections()
    with pytest.raises(ConnectionClosedError) as closed:
        await recv(ws)
    assert closed.value.rcvd is None


async def test_a_duplicate_final_left_in_the_queue_ends_the_next_utterance_at_once(
    ws: ClientConnection,
) -> None:
    await update(ws)
    await commit(ws)
    await append(ws, silence(0.7))
    await commit(ws, final=True)
    await deltas_until_done(ws)
    await commit(ws, final=True)  # the duplicate stays queued for the next generation
    await commit(ws)
    deltas, done = await deltas_until_done(ws)
    assert (
        done["usage"]["completion_tokens"] == len(deltas) == (17 * TOKEN - FIRST_STEP) // TOKEN + 1
    )
