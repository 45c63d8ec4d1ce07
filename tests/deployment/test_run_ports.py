"""`make run` holds its ports: a port left in TIME_WAIT by a closed connection is still its own,
and a port another process holds stops it with the port and the variable to change, instead of
a silent move to a port that clients such as EchoPanel do not know (``--any-port`` is for tests)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from deployment.deploy_files import LOCAL, local_services
from deployment.local_run import PORT_VARIABLES, clean_environment, local_run
from nats_server import free_port

RUN_PY = (sys.executable, str(LOCAL / "run.py"))


def time_wait_port() -> int:
    """A port whose last connection was closed by the server first, as capture closes a finished
    WebSocket: its server side sits in TIME_WAIT for a minute."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port: int = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()
        client.recv(1)  # the server's FIN
        client.close()
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # the state the issue describes is really there
    return port


@contextmanager
def held_port() -> Iterator[int]:
    """A port another process (here: this one) listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def free_ports() -> dict[str, str]:
    return {variable: str(free_port()) for variable in PORT_VARIABLES}


def test_a_port_in_time_wait_is_free_for_a_server() -> None:
    port = time_wait_port()
    assert local_services.port_is_free(port)
    ports = local_services.choose_ports({**free_ports(), "ECHOSTREAM_CAPTURE_PORT": str(port)})
    assert ports.capture == port


def test_a_port_held_by_another_process_names_the_port_and_its_variable() -> None:
    with held_port() as busy:
        env = {**free_ports(), "ECHOSTREAM_AGGREGATOR_HTTP_PORT": str(busy)}
        with pytest.raises(local_services.PortTaken) as refused:
            local_services.choose_ports(env)
        assert f"port {busy} (ECHOSTREAM_AGGREGATOR_HTTP_PORT)" in str(refused.value)
        assert "set ECHOSTREAM_AGGREGATOR_HTTP_PORT" in str(refused.value)
        moved = local_services.choose_ports(env, any_port=True)
        assert moved.aggregator != busy and local_services.port_is_free(moved.aggregator)


def test_two_variables_with_one_port_are_refused() -> None:
    env = free_ports()
    env["ECHOSTREAM_AGGREGATOR_HTTP_PORT"] = env["ECHOSTREAM_CAPTURE_PORT"]
    with pytest.raises(local_services.PortTaken, match="ECHOSTREAM_AGGREGATOR_HTTP_PORT"):
        local_services.choose_ports(env)


def test_an_asked_for_embedded_nats_port_held_by_another_process_is_refused(
    tmp_path: Path,
) -> None:
    with held_port() as busy:
        with pytest.raises(local_services.PortTaken) as refused:
            local_services.embedded_nats(busy, tmp_path, "token")
        assert "--nats-port" in str(refused.value)
        assert f"ECHOSTREAM_NATS_URL=nats://127.0.0.1:{busy}" in str(refused.value)
        _, broker = local_services.embedded_nats(busy, tmp_path, "token", any_port=True)
        assert not broker.url.endswith(f":{busy}")
    port = time_wait_port()
    _, broker = local_services.embedded_nats(port, tmp_path, "token")
    assert broker.url == f"nats://127.0.0.1:{port}"


def test_make_run_stops_before_starting_anything_when_capture_port_is_held(
    tmp_path: Path,
) -> None:
    with held_port() as busy:
        env = {**clean_environment(), **free_ports(), "ECHOSTREAM_CAPTURE_PORT": str(busy)}
        nats_port = free_port()
        argv = [*RUN_PY, "--state-dir", str(tmp_path), "--nats-port", str(nats_port)]
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"port {busy} (ECHOSTREAM_CAPTURE_PORT) is taken" in result.stderr
    assert "NATS at" not in result.stdout + result.stderr  # nothing was started
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", nats_port)) != 0


@pytest.mark.slow
def test_make_run_listens_on_its_port_left_in_time_wait(tmp_path: Path) -> None:
    port = time_wait_port()
    argv = [*RUN_PY, "--state-dir", str(tmp_path / "state"), "--nats-port", str(free_port())]
    argv += ["--without", "whisper-worker", "--without", "aggregator"]
    with local_run(tmp_path, argv, env={"ECHOSTREAM_CAPTURE_PORT": str(port)}) as run:
        run.wait_healthy([f"http://127.0.0.1:{port}/health"], timeout_s=90)
        assert run.interrupt() == 0


def test_the_default_embedded_nats_port_held_elsewhere_moves_to_a_free_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only make run's own services use the embedded NATS, so a machine that already runs a NATS
    on 4222 still gets one (the run announces where)."""
    with held_port() as busy:
        monkeypatch.setattr(local_services, "DEFAULT_NATS_PORT", busy)
        _, broker = local_services.embedded_nats(None, tmp_path, "token")
        assert not broker.url.endswith(f":{busy}")
        assert local_services.port_is_free(int(broker.url.rsplit(":", 1)[1]))
