"""Fuzzing every decoder of client input with a bounded budget: EchoPanel and native WebSocket frames
(binary and JSON), and uploaded containers. Each input gets the protocol's error or is accepted;
none crashes a connection, and the session still ends normally afterwards.

On the sockets each fuzzed frame is followed by a probe whose answer is known (a ``ping`` on the
native protocol, an unknown type on EchoPanel), so the answers to every frame are told apart and
a frame the protocol must refuse is checked to have got its ``error`` (or ``status``) reply."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from capture_audio import encode, packaged
from capture_harness import RunningCapture
from fuzz_inputs import Originals, json_values, mutated, real_files
from hypothesis import HealthCheck, given, settings, strategies as st
from pydantic import ValidationError
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.connection import Connection

from capture import metrics
from capture.audio import AudioDecodeError, decode_file
from capture.echopanel import IGNORED_TYPES, MAX_SOURCES, SOURCE_NAME
from capture.echopanel_events import normalize_source, parse_binary
from capture.native_protocol import CLIENT_MESSAGE, End, Start

pytestmark = pytest.mark.slow

BUDGET = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SPEECH = packaged("hello_world").pcm[:8000].tobytes()


def json_messages(types: list[str]) -> st.SearchStrategy[str]:
    """JSON objects of the protocol's own types (and others) with random fields."""
    typed = st.fixed_dictionaries(
        {"type": st.sampled_from(types) | st.text(max_size=12) | json_values},
        optional={
            "data": st.text(max_size=40) | st.just(base64.b64encode(SPEECH[:641]).decode()),
            "source": json_values | st.sampled_from(["mic", "system", "x" * 80, "a b"]),
            "sources": json_values,
            "sample_rate": st.integers(-10, 500_000),
            "channels": st.integers(-2, 20),
            "encoding": st.text(max_size=12),
            "session_id": json_values,
        },
    )
    return typed.map(json.dumps) | st.text(max_size=60) | json_values.map(json.dumps)


def binary_frames(header: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    payload = st.binary(max_size=700) | st.integers(0, 3200).map(lambda n: SPEECH[:n])
    return st.tuples(header, payload).map(lambda parts: parts[0] + parts[1])


def internal_errors(protocol: str) -> float:
    return float(metrics.PROTOCOL_ERRORS.labels(protocol, "internal")._value.get())


def send_all(ws: Connection, frames: list[bytes | str]) -> None:
    """Send until the server closes (a frame may legitimately end the session)."""
    try:
        for frame in frames:
            ws.send(frame)
    except ConnectionClosed:
        pass


def receive_until(ws: Connection, kinds: set[str], timeout_s: float) -> list[dict[str, Any]]:
    """Messages until one of ``kinds`` (or the close); asserts no internal error was reported."""
    seen: list[dict[str, Any]] = []
    try:
        while True:
            message = json.loads(ws.recv(timeout=timeout_s))
            seen.append(message)
            assert "internal" not in json.dumps(message).lower(), message
            if message.get("type") in kinds:
                return seen
    except ConnectionClosed:
        return seen


Expect = Literal["refused", "warned", "ends", "any"]
"""What a frame must get: an ``error``, a ``warning`` status, the session's end, or nothing
in particular (accepted, or refused for a reason the test does not model)."""


def _json_object(frame: str) -> dict[str, Any] | None:
    """The frame as the protocols' ``parse_json`` accepts it: an object with a string type."""
    try:
        raw = json.loads(frame)
    except ValueError:
        return None
    return raw if isinstance(raw, dict) and isinstance(raw.get("type"), str) else None


class EchoPanelModel:
    """What EchoPanel must answer to each frame after ``start`` (16 kHz pcm_s16le)."""

    def __init__(self) -> None:
        self.admitted: set[str] = set()

    def expect(self, frame: str | bytes) -> Expect:
        if isinstance(frame, bytes):
            audio = parse_binary(frame)
            return self._audio(audio.source, audio.pcm)
        raw = _json_object(frame)
        if raw is None:
            return "refused"
        match raw["type"]:
            case "start":
                return "warned"  # already streaming
            case "stop":
                return "ends"
            case "audio":
                if not isinstance(raw.get("data"), str):
                    return "refused"
                try:
                    pcm = base64.b64decode(raw["data"], validate=True)
                except (binascii.Error, ValueError):
                    return "refused"
                source = normalize_source(raw.get("source"))
                if not SOURCE_NAME.fullmatch(source):
                    return "refused"
                return self._audio(source, pcm)
            case kind if kind in IGNORED_TYPES:
                return "any"
        return "refused"

    def _audio(self, source: str, pcm: bytes) -> Expect:
        if source not in self.admitted:
            if len(self.admitted) >= MAX_SOURCES:
                return "any"  # one warning per refused source, then dropped
            self.admitted.add(source)
        return "refused" if len(pcm) % 2 else "any"


class NativeModel:
    """What the native protocol must answer to each frame after ``start`` of mic and system."""

    NAMES = ("mic", "system")

    def __init__(self) -> None:
        self.ended: set[str] = set()

    def expect(self, frame: str | bytes) -> Expect:
        if isinstance(frame, bytes):
            if not frame or frame[0] >= len(self.NAMES):
                return "refused"
            if self.NAMES[frame[0]] in self.ended:
                return "any"  # refused once the source's end has been processed
            return "refused" if len(frame[1:]) % 2 else "any"
        raw = _json_object(frame)
        if raw is None:
            return "refused"
        try:
            message = CLIENT_MESSAGE.validate_python(raw)
        except ValidationError:
            return "refused"
        if isinstance(message, Start):
            return "refused"  # already started
        if isinstance(message, End):
            if message.source is None:
                return "ends"
            if message.source not in self.NAMES:
                return "refused"
            self.ended.add(message.source)
            if self.ended == set(self.NAMES):
                return "ends"  # every source ended: the session is done
        return "any"


def check_probed(
    sent: list[bytes | str],
    seen: list[dict[str, Any]],
    tags: list[str],
    answers_probe: Callable[[dict[str, Any], str], bool],
    expect: Callable[[str | bytes], Expect],
    final: str,
    tally: dict[str, int],
) -> None:
    """Split what the server sent at the probes' answers and check each frame's share."""
    split: list[list[dict[str, Any]]] = [[]]
    for message in seen:
        if len(split) <= len(tags) and answers_probe(message, tags[len(split) - 1]):
            split.append([])
        else:
            split[-1].append(message)
    assert seen and seen[-1]["type"] == final, seen[-3:]
    for index, frame in enumerate(sent):
        expected = expect(frame)
        tally[expected] = tally.get(expected, 0) + 1
        answer = split[index]
        if index == len(split) - 1:
            # The session ended before this frame's probe was answered: this frame ended it.
            assert expected == "ends", (frame, answer[-3:])
            return
        if expected == "refused":
            assert any(m["type"] == "error" or m.get("state") == "error" for m in answer), (
                f"no error for {frame!r}: {answer}"
            )
        elif expected == "warned":
            assert any(m.get("state") == "warning" for m in answer), (frame, answer)
        elif expected == "ends":
            raise AssertionError(f"{frame!r} should have ended the session: {answer}")


async def test_echopanel_frames_never_crash_a_connection(
    capture_with_worker: RunningCapture,
) -> None:
    capture = capture_with_worker
    header = st.sampled_from(
        [b"", b"EP\x01\x00", b"EP\x01\x01", b"EP\x01\x05", b"EP\x02\x00", b"E"]
    )
    frames = st.lists(
        binary_frames(header) | json_messages(["start", "audio", "voice_note_start", "ocr_text"]),
        max_size=8,
    )
    before = internal_errors("echopanel")

    def answers_probe(message: dict[str, Any], tag: str) -> bool:
        return message["type"] == "error" and tag in message.get("message", "")

    @BUDGET
    @given(frames)
    def one_session(sent: list[bytes | str]) -> None:
        tags = [f"probe-{uuid.uuid4().hex[:12]}" for _ in sent]
        probed = [x for frame, tag in zip(sent, tags, strict=True) for x in (frame, _type(tag))]
        with connect(capture.ws + "/ws/live-listener") as ws:
            start = {"type": "start", "session_id": "fuzz", "sample_rate": 16000}
            ws.send(json.dumps(start))
            send_all(ws, [*probed, json.dumps({"type": "stop", "session_id": "fuzz"})])
            seen = receive_until(ws, {"final_summary"}, timeout_s=15)
        check_probed(
            sent, seen, tags, answers_probe, EchoPanelModel().expect, "final_summary", tally
        )

    tally: dict[str, int] = {}
    await asyncio.to_thread(one_session)
    print(f"echopanel frames: {tally}")
    assert tally.get("refused", 0) > 0 and tally.get("warned", 0) > 0
    assert internal_errors("echopanel") == before


async def test_native_frames_never_crash_a_connection(
    capture_with_worker: RunningCapture,
) -> None:
    capture = capture_with_worker
    header = st.sampled_from([b"", b"\x00", b"\x01", b"\xff"])
    frames = st.lists(binary_frames(header) | json_messages(["start", "end", "ping"]), max_size=8)
    before = internal_errors("native")

    def answers_probe(message: dict[str, Any], tag: str) -> bool:
        return message["type"] == "pong" and message.get("id") == tag

    @BUDGET
    @given(frames)
    def one_session(sent: list[bytes | str]) -> None:
        tags = [f"probe-{uuid.uuid4().hex[:12]}" for _ in sent]
        probed = [
            x
            for frame, tag in zip(sent, tags, strict=True)
            for x in (frame, json.dumps({"type": "ping", "id": tag}))
        ]
        with connect(capture.ws + "/v1/stream") as ws:
            ws.send(json.dumps({"type": "start", "sources": ["mic", "system"]}))
            send_all(ws, [*probed, json.dumps({"type": "end"})])
            seen = receive_until(ws, {"done"}, timeout_s=15)
        check_probed(sent, seen, tags, answers_probe, NativeModel().expect, "done", tally)

    tally: dict[str, int] = {}
    await asyncio.to_thread(one_session)
    print(f"native frames: {tally}")
    assert tally.get("refused", 0) > 0 and tally.get("any", 0) > 0
    assert internal_errors("native") == before


def _type(tag: str) -> str:
    return json.dumps({"type": tag})


@pytest.fixture(scope="module")
def containers(tmp_path_factory: pytest.TempPathFactory) -> Originals:
    """Small real files in every container uploads accept, to mutate."""
    specs = [("a.wav", "pcm_s16le"), ("a.flac", "flac"), ("a.ogg", "libopus"), ("a.mp3", "mp3")]
    folder = tmp_path_factory.mktemp("containers")
    return real_files(folder, [(name, codec, 16000, 1) for name, codec in specs])


def test_mutated_containers_decode_or_raise_the_typed_error(
    containers: Originals, tmp_path: Path
) -> None:
    path = tmp_path / "upload"

    @settings(max_examples=400, deadline=None, database=None)
    @given(mutated(containers) | st.binary(max_size=2048))
    def decode_one(data: bytes) -> None:
        path.write_bytes(data)
        try:
            for rate, block in decode_file(path):
                assert rate > 0 and block.dtype == np.float32
                assert np.isfinite(block).all()
        except AudioDecodeError as exc:
            assert str(exc)

    decode_one()


def test_tags_that_are_not_utf8_do_not_make_a_file_undecodable(tmp_path: Path) -> None:
    """Found by the fuzzer: PyAV raised UnicodeDecodeError on a FLAC comment of invalid UTF-8."""
    speech = packaged("hello_world").pcm[:16000]
    flac = encode(speech, tmp_path / "a.flac", "flac", 16000, 1)
    tagged = flac.read_bytes().replace(b"encoder=", b"\x80ncoder=")
    assert tagged != flac.read_bytes()
    flac.write_bytes(tagged)
    decoded = np.concatenate([block for _, block in decode_file(flac)])
    assert len(decoded) == len(speech)


@pytest.mark.parametrize(("path", "end"), [("/ws/live-listener", "stop"), ("/v1/stream", "end")])
async def test_a_client_gone_right_after_its_end_is_no_internal_error(
    capture_with_worker: RunningCapture, path: str, end: str
) -> None:
    """Found by fuzzing from outside: closing the socket of a client that had already closed it
    ended EchoPanel connections with a logged traceback."""
    protocol = "echopanel" if "live" in path else "native"
    before = internal_errors(protocol)

    def hang_up_after_end() -> None:
        for _ in range(20):
            with connect(capture_with_worker.ws + path) as ws:
                ws.send(json.dumps({"type": "start", "session_id": "gone"}))
                ws.send(
                    b"EP\x01\x00" + SPEECH[:6400] if "live" in path else b"\x00" + SPEECH[:6400]
                )
                ws.send(json.dumps({"type": end, "session_id": "gone"}))

    await asyncio.to_thread(hang_up_after_end)
    await asyncio.sleep(2)
    assert internal_errors(protocol) == before
