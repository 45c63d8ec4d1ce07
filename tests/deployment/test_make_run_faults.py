"""The fault campaign of `docker compose` (tests/containers) on `make run`: the same faults, by
SIGKILL of the local processes, which the supervisor restarts. Each session complete, every
final once, WER within a point of the undisturbed run. Figures are printed as ``fault-figure``
lines for docs/reliability.md."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from capture_audio import Speech, conversation
from deployment.deploy_files import LOCAL
from deployment.local_run import LocalRun, health_status, local_run
from fault_checks import Fault, assert_whole, figure, native_session, stored_session, text_of
from nats_server import free_port
from pipeline_procs import require_whisper_worker
from speech_corpus import wer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

WORKERS = 3


@pytest.fixture(scope="module")
def talk() -> Speech:
    return conversation(gap_s=1.0, names=("quick_brown_fox", "hello_world") * 3)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    require_whisper_worker()
    workdir = tmp_path_factory.mktemp("make-run-faults")
    argv = [sys.executable, str(LOCAL / "run.py"), "--state-dir", str(workdir / "state")]
    argv += ["--nats-port", str(free_port()), "--whisper-workers", str(WORKERS)]
    # One stream per worker, as in the compose campaign: the holder of a stream is unambiguous.
    with local_run(workdir, argv, env={"ECHOSTREAM_WHISPER_MAX_STREAMS": "1"}) as run:
        started = time.monotonic()
        run.wait_for_line("run            | ready: ", timeout_s=180)
        figure("make run healthy after s", round(time.monotonic() - started, 1))
        yield run


def children(run: LocalRun) -> dict[int, tuple[str, dict[str, str]]]:
    """The supervisor's children: pid -> (command line, environment)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent != run.process.pid:
                continue
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            env = dict(
                item.split("=", 1)
                for item in (entry / "environ").read_bytes().decode().split("\0")
                if "=" in item
            )
        except (OSError, IndexError, ValueError):
            continue
        found[int(entry.name)] = (argv, env)
    return found


def pid_of(run: LocalRun, module: str) -> int:
    pids = [pid for pid, (argv, _) in children(run).items() if f"-m {module}" in argv]
    assert len(pids) == 1, pids
    return pids[0]


def nats_pid(run: LocalRun) -> int:
    pids = [pid for pid, (argv, _) in children(run).items() if "nats-server" in argv]
    assert len(pids) == 1, pids
    return pids[0]


def worker_holding_a_stream(run: LocalRun) -> int | None:
    """The whisper worker whose health reports an active stream (one stream per worker)."""
    for pid, (argv, env) in children(run).items():
        if "-m whisper_worker" not in argv:
            continue
        url = f"http://127.0.0.1:{env['ECHOSTREAM_WHISPER_METRICS_PORT']}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if json.loads(response.read()).get("active_streams"):
                    return pid
        except OSError:
            continue
    return None


async def kill_when_held(run: LocalRun, pid_to_kill: int | None = None) -> int:
    """SIGKILL ``pid_to_kill`` (or the worker holding the stream) once a worker holds it."""
    deadline = time.monotonic() + 30
    while (held := await asyncio.to_thread(worker_holding_a_stream, run)) is None:
        assert time.monotonic() < deadline, "no worker took the stream"
        await asyncio.sleep(0.3)
    victim = pid_to_kill or held
    os.kill(victim, signal.SIGKILL)
    return victim


class Undisturbed:
    wer = float("nan")


async def session_checked(
    run: LocalRun, talk: Speech, fault: str, during: Fault | None = None
) -> None:
    capture = f"ws://127.0.0.1:{run.ports['ECHOSTREAM_CAPTURE_PORT']}"
    started = time.monotonic()
    session_id = await native_session(capture, talk, during=during)
    api = run.url("ECHOSTREAM_AGGREGATOR_HTTP_PORT")
    session = await stored_session(api, session_id)
    assert_whole(session)
    error = wer(talk.text, text_of(session))
    took = round(time.monotonic() - started, 1)
    figure(
        f"make run: {fault}",
        f"complete in {took} s, {len(session['transcript'])} finals, WER {error:.3f}",
    )
    if fault == "undisturbed":
        Undisturbed.wer = error
        assert error <= 0.2, text_of(session)
    else:
        assert abs(error - Undisturbed.wer) <= 0.01, (fault, error, Undisturbed.wer)


async def test_undisturbed(running: LocalRun, talk: Speech) -> None:
    await session_checked(running, talk, "undisturbed")


async def test_sigkill_of_the_worker_holding_the_stream(running: LocalRun, talk: Speech) -> None:
    async def kill(_: str) -> None:
        await kill_when_held(running)

    await session_checked(running, talk, "SIGKILL the worker holding the stream", kill)


async def test_sigkill_of_nats(running: LocalRun, talk: Speech) -> None:
    async def kill(_: str) -> None:
        await kill_when_held(running, nats_pid(running))

    await session_checked(running, talk, "SIGKILL NATS (restarted by make run)", kill)


async def test_sigkill_of_the_aggregator(running: LocalRun, talk: Speech) -> None:
    async def kill(_: str) -> None:
        await kill_when_held(running, pid_of(running, "aggregator"))

    await session_checked(running, talk, "SIGKILL the aggregator mid-session", kill)


async def test_sigkill_of_capture_between_two_sessions(running: LocalRun, talk: Speech) -> None:
    await session_checked(running, talk, "capture: the session before its SIGKILL")
    os.kill(pid_of(running, "capture"), signal.SIGKILL)
    started = time.monotonic()
    health = running.url("ECHOSTREAM_CAPTURE_PORT", "/health")
    await asyncio.sleep(1)
    while health_status(health) not in ("ok", "degraded"):
        assert time.monotonic() - started < 60, running.output[-3000:]
        await asyncio.sleep(0.25)
    figure("make run: capture serving again after SIGKILL s", round(time.monotonic() - started, 1))
    await session_checked(running, talk, "capture: the session after its SIGKILL")
