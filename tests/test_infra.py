from __future__ import annotations

import os
import subprocess
from pathlib import Path

from nats_server import nats_server_binary

REPO = Path(__file__).resolve().parents[1]


def test_the_nats_config_of_the_compose_file_is_valid() -> None:
    result = subprocess.run(
        [nats_server_binary(), "-c", str(REPO / "infra/nats/nats-server.conf"), "-t"],
        env={**os.environ, "NATS_TOKEN": "test-token"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stderr + result.stdout
