"""The NATS configurations of the compose files, as nats-server itself checks them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from nats_server import nats_server_binary

REPO = Path(__file__).resolve().parents[1]
NATS_CONF = REPO / "infra" / "nats"


def check(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nats_server_binary(), "-c", str(config), "-t"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_nats_config_of_the_compose_file_is_valid() -> None:
    result = check(NATS_CONF / "nats-server.conf", NATS_TOKEN="test-token")
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stderr + result.stdout


def test_the_nats_config_of_the_cluster_override_is_valid() -> None:
    result = check(NATS_CONF / "nats-cluster.conf", NATS_TOKEN="t", NATS_SERVER_NAME="nats-1")
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stderr + result.stdout


@pytest.mark.parametrize("config", ["nats-server.conf", "nats-cluster.conf"])
def test_a_broker_without_its_token_variable_does_not_start(config: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NATS_TOKEN"}
    result = subprocess.run(
        [nats_server_binary(), "-c", str(NATS_CONF / config), "-t"],
        env={**env, "NATS_SERVER_NAME": "nats-1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "NATS_TOKEN" in result.stderr + result.stdout
