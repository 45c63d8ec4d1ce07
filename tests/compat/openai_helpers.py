"""Driving EchoStream with the official ``openai`` SDK: clients pointed at a running pipeline,
audio at OpenAI's rates, an event collector for realtime sessions, and the reference rules every
transcription session must follow."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped]
from capture_audio import Speech, conversation, packaged, silence
from native_client import NativeClient
from openai import AsyncOpenAI
from pipeline_procs import Pipeline
from speech_corpus import corpus_dir, load_items, read_wav

TOKEN = "compat-secret"
RATE = 16_000
PCM_RATE = 24_000
Event = dict[str, Any]
Pcm = npt.NDArray[np.int16]


def client(pipeline: Pipeline, api_key: str = TOKEN) -> AsyncOpenAI:
    """The SDK as a user configures it: base URL of EchoStream, the capture token as the key.

    The beta realtime client always dials ``wss://`` unless ``websocket_base_url`` is given.
    """
    return AsyncOpenAI(
        api_key=api_key,
        base_url=pipeline.http + "/v1",
        websocket_base_url=pipeline.ws + "/v1",
        max_retries=0,
    )


def ga_client(pipeline: Pipeline, api_key: str = TOKEN) -> AsyncOpenAI:
    """Only ``base_url``: the GA realtime client derives ``ws://…/v1/realtime`` from it."""
    return AsyncOpenAI(api_key=api_key, base_url=pipeline.http + "/v1", max_retries=0)


def resample(pcm: Pcm, rate: int) -> Pcm:
    audio = soxr.resample(pcm.astype(np.float32) / 32768.0, RATE, rate, quality="VHQ")
    out: Pcm = np.clip(np.rint(audio * 32768.0), -32768, 32767).astype(np.int16)
    return out


def mulaw(pcm: Pcm) -> bytes:
    """8 kHz G.711 µ-law (ITU-T G.711 compression of 16-bit samples)."""
    samples = resample(pcm, 8000).astype(np.int32)
    sign = np.where(samples < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(samples), 32635) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return bytes((~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes())


ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def alaw(pcm: Pcm) -> bytes:
    """8 kHz G.711 A-law (ITU-T G.711 compression of 16-bit samples, as Sun's g711.c)."""
    samples = resample(pcm, 8000).astype(np.int32) >> 3
    mask = np.where(samples >= 0, 0xD5, 0x55)
    magnitude = np.where(samples >= 0, samples, -samples - 1)
    segment = np.searchsorted(ALAW_SEGMENT_ENDS, magnitude, side="left")
    shift = np.where(segment < 2, 1, segment)
    code = (segment << 4) | ((magnitude >> shift) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code)
    return ((code ^ mask) & 0xFF).astype(np.uint8).tobytes()


def wav_bytes(pcm: Pcm, rate: int = RATE) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.astype("<i2").tobytes())
    return out.getvalue()


def accuracy_speech() -> Speech:
    """The audio the WER comparisons use: about 45 s of dev-split speech with pauses when the
    corpus is present, else pytest-audioeval's packaged samples."""
    if not (corpus_dir() / "manifest.jsonl").is_file():
        return conversation(gap_s=1.0, names=("quick_brown_fox", "hello_world", "quick_brown_fox"))
    parts, texts, total = [silence(0.5)], [], 0.0
    for item in load_items("dev"):
        if item.source != "ljspeech":
            continue
        parts += [read_wav(item.path), silence(0.8)]
        texts.append(item.text)
        total += item.duration_s
        if total >= 45.0:
            break
    return Speech(np.concatenate(parts), " ".join(texts))


def speech_sample(name: str = "quick_brown_fox") -> Speech:
    return packaged(name)


async def native_transcript(
    pipeline: Pipeline, pcm: Pcm, rate: int = RATE, *, speed: float = 0.0
) -> str:
    """What EchoStream's native protocol makes of the same audio, in 0.1 s frames at ``speed`` ×
    real time (0: as fast as it takes them)."""
    data = pcm.astype("<i2").tobytes()
    async with NativeClient(pipeline.ws, token=TOKEN) as native:
        ready = await native.start(sample_rate=rate, partials=False)
        assert ready["type"] == "ready", ready
        await native.stream(0, data, frame_bytes=rate // 10 * 2, frames_per_s=10 * speed)
        done = await native.finish(timeout_s=180)
    assert done["complete"], done
    finals = sorted(native.of_type("final"), key=lambda f: f["start"])
    return " ".join(f["text"] for f in finals)


@dataclass
class Collected:
    """Every server event of a realtime session, in arrival order."""

    events: list[Event] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    closed: BaseException | None = None

    def of_type(self, kind: str) -> list[Event]:
        return [e for e in self.events if e["type"] == kind]

    async def wait_for(self, match: Callable[[Event], bool], timeout_s: float = 30.0) -> Event:
        async with asyncio.timeout(timeout_s):
            while True:
                for event in self.events:
                    if match(event):
                        return event
                if self.closed is not None:
                    raise AssertionError(f"closed ({self.closed!r}): {self.events[-3:]}")
                self.arrived.clear()
                await self.arrived.wait()

    async def wait_completed(self, timeout_s: float = 60.0) -> None:
        """Until every committed item has its ``completed``."""
        async with asyncio.timeout(timeout_s):
            while True:
                committed = {e["item_id"] for e in self.of_type("input_audio_buffer.committed")}
                done = {e["item_id"] for e in self.of_type(COMPLETED)}
                if committed and committed <= done:
                    return
                self.arrived.clear()
                await self.arrived.wait()

    def transcript(self) -> str:
        """The completed transcripts in commit order (clients order by ``previous_item_id``)."""
        order = [e["item_id"] for e in self.of_type("input_audio_buffer.committed")]
        texts = {e["item_id"]: e["transcript"] for e in self.of_type(COMPLETED)}
        return " ".join(texts[i] for i in order if texts.get(i))


async def collect(connection: Any, into: Collected) -> None:
    """Read the SDK connection's events (as plain dicts, the way they came) until it closes."""
    try:
        async for event in connection:
            into.events.append(event.to_dict())
            into.arrived.set()
    except Exception as exc:  # the connection closed in error (e.g. 1008)
        into.closed = exc
    else:
        into.closed = EOFError("closed normally")
    finally:
        into.arrived.set()


@contextlib.asynccontextmanager
async def reading(connection: Any) -> Any:
    collected = Collected()
    task = asyncio.create_task(collect(connection, collected))
    try:
        yield collected
    finally:
        with contextlib.suppress(Exception):
            await connection.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)


async def append_paced(
    connection: Any, data: bytes, bytes_per_s: int, *, speed: float = 1.0, chunk_s: float = 0.1
) -> None:
    """Append audio in ``chunk_s`` pieces at ``speed`` × real time."""
    loop = asyncio.get_running_loop()
    step = int(bytes_per_s * chunk_s)
    step -= step % 2
    started = loop.time()
    for k, offset in enumerate(range(0, len(data), step)):
        piece = base64.b64encode(data[offset : offset + step]).decode()
        await connection.input_audio_buffer.append(audio=piece)
        wait = started + (k + 1) * chunk_s / speed - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)


COMPLETED = "conversation.item.input_audio_transcription.completed"
ITEM_EVENTS = ("conversation.item.added", "conversation.item.created")  # GA, beta
ITEM = "conversation.item"
DELTA = "conversation.item.input_audio_transcription.delta"


def check_event_rules(events: list[Event], *, server_vad: bool) -> None:
    """The reference's ordering rules of a transcription session (compat-openai-deepgram.md A1)."""
    assert events and events[0]["type"] == "session.created", events[:2]
    assert all(isinstance(e.get("event_id"), str) and e["event_id"] for e in events)
    assert not [e for e in events if e["type"].startswith("response.")], "no responses, ever"
    items: dict[str, list[str]] = {}
    for event in events:
        if "item_id" in event:
            items.setdefault(event["item_id"], []).append(event["type"])
        elif event["type"] in ITEM_EVENTS:  # the user item a commit creates
            items.setdefault(event["item"]["id"], []).append(ITEM)
            assert event["item"]["role"] == "user" and event["item"]["type"] == "message"
    commits = [e for e in events if e["type"] == "input_audio_buffer.committed"]
    previous = None
    for commit in commits:
        assert commit["previous_item_id"] == previous
        previous = commit["item_id"]
    for item_id, kinds in items.items():
        steps = [k for k in kinds if k != DELTA]
        expected = ["input_audio_buffer.committed", ITEM, COMPLETED]
        if server_vad:
            expected = [
                "input_audio_buffer.speech_started",
                "input_audio_buffer.speech_stopped",
                *expected,
            ]
        assert steps == expected, (item_id, kinds)
        first_delta = kinds.index(DELTA) if DELTA in kinds else None
        if first_delta is not None:
            assert kinds.index(ITEM) < first_delta
            assert max(i for i, k in enumerate(kinds) if k == DELTA) < kinds.index(COMPLETED)
        deltas = "".join(
            e["delta"] for e in events if e["type"] == DELTA and e["item_id"] == item_id
        )
        [done] = [e for e in events if e["type"] == COMPLETED and e["item_id"] == item_id]
        assert done["transcript"].startswith(deltas), (deltas, done["transcript"])
        assert done["usage"]["type"] == "duration" and done["usage"]["seconds"] >= 0
        assert done["content_index"] == 0
    if server_vad:
        for item_id in items:
            [start] = [
                e
                for e in events
                if e["type"] == "input_audio_buffer.speech_started" and e["item_id"] == item_id
            ]
            [stop] = [
                e
                for e in events
                if e["type"] == "input_audio_buffer.speech_stopped" and e["item_id"] == item_id
            ]
            assert 0 <= start["audio_start_ms"] < stop["audio_end_ms"]


async def stored_session(
    pipeline: Pipeline, openai_session_id: str, timeout_s: float = 90.0
) -> dict[str, Any]:
    """The aggregator's stored session opened by a realtime connection, once it is complete."""
    async with httpx.AsyncClient(base_url=pipeline.aggregator, timeout=10) as http:
        async with asyncio.timeout(timeout_s):
            while True:
                page = (await http.get("/v1/sessions", params={"limit": 200})).json()
                found = [
                    s
                    for s in page["items"]
                    if s["metadata"].get("openai_session_id") == openai_session_id
                ]
                if found and found[0]["complete"]:
                    detail = await http.get(f"/v1/sessions/{found[0]['session_id']}")
                    assert detail.status_code == 200
                    body: dict[str, Any] = detail.json()
                    return body
                await asyncio.sleep(0.5)
