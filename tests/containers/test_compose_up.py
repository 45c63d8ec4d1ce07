"""`docker compose up` for real: the images built, every service healthy, real speech through the
published capture port (native protocol and EchoPanel), sessions read back from the aggregator;
three workers sharing three sessions; SIGKILL of the worker holding a stream, of NATS, of the
aggregator and of capture, each session complete with no segment twice and the undisturbed WER;
`down`/`up` keeping the sessions; the browser page, a browser token and the session library
served through the published capture port. Traffic goes to loopback and the project's containers
only.

`make compose-test` runs this; it skips with the reason where no Docker engine is usable. Figures
(build, time to healthy, per fault) are printed as ``fault-figure`` lines for
docs/reliability.md."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from capture_audio import Speech, conversation
from containers.compose_project import ComposeProject, base_images, docker_unusable
from deployment.deploy_files import COMPOSE_FILE, SECRETS
from echopanel_client import EchoPanelClient
from fault_checks import (
    Fault,
    assert_whole,
    figure,
    native_session,
    stored_session,
    text_of,
)
from speech_corpus import wer

REASON = docker_unusable()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(REASON is not None, reason=f"compose tests need Docker: {REASON}"),
    pytest.mark.timeout(900),
]

CAPTURE_TOKEN = SECRETS["ECHOSTREAM_CAPTURE_TOKEN"]
API_HEADERS = {"Authorization": f"Bearer {SECRETS['ECHOSTREAM_AGGREGATOR_API_TOKEN']}"}
SPEED = 2.0
"""Audio is sent at twice real time: faults still land mid-stream, the suite stays short."""
WORKERS = 3
TALK = ("quick_brown_fox", "hello_world")
"""Samples whose transcripts have no numbers (the WER normalizer does not read digits)."""
OVERRIDE = """services:
  whisper-worker:
    environment:
      ECHOSTREAM_WHISPER_MAX_STREAMS: "1"
"""
"""One stream per worker, so three concurrent sessions must spread over three workers."""


@pytest.fixture(scope="module")
def talk() -> Speech:
    return conversation(gap_s=1.0, names=TALK * 3)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    workdir = tmp_path_factory.mktemp("compose")
    override = workdir / "one-stream-per-worker.yml"
    override.write_text(OVERRIDE)
    images = base_images()
    figure("base images", images or "public")
    project = ComposeProject(
        f"echostream-test-{uuid.uuid4().hex[:6]}", workdir, (COMPOSE_FILE, override), images
    )
    started = time.monotonic()
    project.compose("build", timeout=3600)
    figure("build s", round(time.monotonic() - started, 1))
    try:
        figure("up --wait s", round(project.up("--scale", f"whisper-worker={WORKERS}"), 1))
        yield project
    finally:
        project.down("--volumes")


async def test_the_browser_page_and_the_library_through_the_published_capture_port(
    project: ComposeProject,
) -> None:
    """What a user opens first: the page, then (signed in) the library, which capture proxies to
    the aggregator with its own token."""
    async with httpx.AsyncClient(base_url=project.capture_http, timeout=10) as http:
        page = await http.get("/")
        assert page.status_code == 200, page.text[:200]
        assert page.headers["content-type"].startswith("text/html"), page.headers
        minted = await http.post(
            "/v1/browser-token", headers={"Authorization": f"Bearer {CAPTURE_TOKEN}"}
        )
        assert minted.status_code == 200, minted.text
        token = minted.json()["token"]
        assert token and token != CAPTURE_TOKEN
        library = await http.get(
            "/v1/library/sessions", headers={"Authorization": f"Bearer {token}"}
        )
        assert library.status_code == 200, library.text
        assert isinstance(library.json()["items"], list), library.json()


async def talk_through(project: ComposeProject, speech: Speech, during: Fault | None = None) -> str:
    return await native_session(
        project.capture_ws, speech, token=CAPTURE_TOKEN, speed=SPEED, during=during
    )


async def stored(project: ComposeProject, session_id: str) -> dict[str, Any]:
    return await stored_session(project.api, session_id, headers=API_HEADERS)


async def echopanel_session(project: ComposeProject, speech: Speech) -> str:
    """One EchoPanel session; returns the id the aggregator stores it under."""
    async with EchoPanelClient(project.capture_ws, token=CAPTURE_TOKEN) as client:
        await client.stream({"system": speech.pcm}, speed=SPEED)
        summary = await client.stop(timeout_s=240)
    assert summary is not None, client.messages[-5:]
    async with httpx.AsyncClient(base_url=project.api, headers=API_HEADERS, timeout=5) as http:
        listed = (await http.get("/v1/sessions", params={"limit": 100})).json()["items"]
    ids = [
        s["session_id"]
        for s in listed
        if s["metadata"].get("client_session_id") == client.session_id
    ]
    assert len(ids) == 1, listed
    return str(ids[0])


def holder(project: ComposeProject, session_id: str) -> str | None:
    """The worker container that started this session's job last (by log time: containers are
    listed by name, so a later start in an earlier-named container must not lose to the order)."""
    starts = [
        (str(event.get("timestamp", "")), str(row["Name"]))
        for row in project.containers("whisper-worker")
        for event in project.logs(str(row["Name"]))
        if event.get("event") == "job.started" and event.get("session_id") == session_id
    ]
    return max(starts)[1] if starts else None


async def wait_for_holder(project: ComposeProject, session_id: str, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        name = await asyncio.to_thread(holder, project, session_id)
        if name:
            return name
        await asyncio.sleep(0.5)
    raise AssertionError(f"no worker started session {session_id} in {timeout_s} s")


class Baseline:
    wer: float = float("nan")
    sessions: dict[str, dict[str, Any]] = {}


async def check(project: ComposeProject, session_id: str, talk: Speech, fault: str) -> None:
    session = await stored(project, session_id)
    assert_whole(session)
    error = wer(talk.text, text_of(session))
    figure(f"fault {fault}", f"complete, {len(session['transcript'])} finals, WER {error:.3f}")
    assert abs(error - Baseline.wer) <= 0.01, (fault, error, Baseline.wer, text_of(session))
    Baseline.sessions[session_id] = session


async def test_three_sessions_native_and_echopanel_spread_over_three_workers(
    project: ComposeProject, talk: Speech
) -> None:
    started = time.monotonic()
    ids = await asyncio.gather(
        talk_through(project, talk),
        talk_through(project, talk),
        echopanel_session(project, talk),
    )
    sessions = [await stored(project, session_id) for session_id in ids]
    figure("3 concurrent sessions s", round(time.monotonic() - started, 1))
    errors = [wer(talk.text, text_of(session)) for session in sessions]
    figure("undisturbed WER (native, native, EchoPanel)", [round(e, 3) for e in errors])
    for session in sessions:
        assert_whole(session)
    assert max(errors) <= 0.2, [text_of(s) for s in sessions]
    assert sessions[2]["client"] and "echopanel" in sessions[2]["client"].lower(), sessions[2]
    holders = {holder(project, session_id) for session_id in ids}
    assert len(holders) == WORKERS and None not in holders, holders
    Baseline.wer = errors[0]
    Baseline.sessions.update(zip(ids, sessions, strict=True))


async def test_killing_the_worker_holding_a_stream(project: ComposeProject, talk: Speech) -> None:
    killed: list[str] = []

    async def kill_holder(session_id: str) -> None:
        name = await wait_for_holder(project, session_id)
        await asyncio.to_thread(project.kill, name)
        killed.append(name)

    started = time.monotonic()
    session_id = await talk_through(project, talk, kill_holder)
    figure("worker kill: session done after s", round(time.monotonic() - started, 1))
    assert holder(project, session_id) not in (None, killed[0])
    await check(project, session_id, talk, "SIGKILL the worker holding the stream")
    await asyncio.to_thread(project.start, killed[0])
    await asyncio.to_thread(project.wait_healthy, killed[0])


async def test_killing_nats_then_starting_it_again(project: ComposeProject, talk: Speech) -> None:
    nats = project.container("nats")

    async def bounce(session_id: str) -> None:
        await wait_for_holder(project, session_id)
        await asyncio.to_thread(project.kill, nats)
        await asyncio.sleep(4)
        await asyncio.to_thread(project.start, nats)

    session_id = await talk_through(project, talk, bounce)
    await check(project, session_id, talk, "SIGKILL NATS, started again after 4 s")


async def test_killing_the_aggregator(project: ComposeProject, talk: Speech) -> None:
    aggregator = project.container("aggregator")

    async def kill(session_id: str) -> None:
        await wait_for_holder(project, session_id)
        await asyncio.to_thread(project.kill, aggregator)
        await asyncio.sleep(2)
        await asyncio.to_thread(project.start, aggregator)

    session_id = await talk_through(project, talk, kill)
    await check(project, session_id, talk, "SIGKILL the aggregator mid-session")


async def test_killing_capture_between_two_sessions(project: ComposeProject, talk: Speech) -> None:
    capture = project.container("capture")
    first = await talk_through(project, talk)
    project.kill(capture)
    started = time.monotonic()
    project.start(capture)
    project.wait_healthy(capture)
    figure("capture healthy again after s", round(time.monotonic() - started, 1))
    second = await talk_through(project, talk)
    await check(project, first, talk, "SIGKILL capture between sessions (before)")
    await check(project, second, talk, "SIGKILL capture between sessions (after)")


async def test_down_then_up_keeps_every_session(project: ComposeProject) -> None:
    before = dict(Baseline.sessions)
    assert before, "no sessions from the tests before"
    project.down()
    figure("up --wait after down s", round(project.up("--scale", f"whisper-worker={WORKERS}"), 1))
    for session_id, session in before.items():
        again = await stored(project, session_id)
        assert kept(again) == kept(session), session_id


def kept(session: dict[str, Any]) -> list[tuple[object, ...]]:
    """A session's finals as stored: ids, sources, their own sample clocks and text. (Times on
    the merged session timeline are left out: they moved by a few ms after `down`/`up`.)"""
    keys = ("segment_id", "source", "source_start_sample", "source_end_sample", "text")
    return [tuple(segment[key] for key in keys) for segment in session["transcript"]]
