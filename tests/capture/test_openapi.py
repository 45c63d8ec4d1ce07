"""Schema-driven fuzzing of capture's HTTP API: schemathesis calls every documented operation
in-process with generated requests (bodies, query strings, headers); no 5xx, every response
conforms to the document (status, content type, schema)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from nats_server import NatsServer, free_port
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import positive_data_acceptance

from capture.app import build_app
from capture.config import CaptureSettings
from capture.hub import Hub
from echostream_shared.bus import Bus
from echostream_shared.topology import ensure_topology

TOKEN = "schema-test-token"
EXAMPLES = 30
"""Per operation; seven operations keep the run under a minute."""


class CaptureApp:
    """Capture's app, built in the event loop that serves it (schemathesis runs its own) when
    the ASGI lifespan starts. No engine runs: uploads end as 'processing' after a short wait."""

    def __init__(self, nats_url: str) -> None:
        self._nats_url = nats_url
        self._app: Any = None
        self._nc: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self._app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._nc = await nats.connect(self._nats_url)
                bus = Bus(self._nc, self._nc.jetstream())
                await ensure_topology(bus.js)
                settings = CaptureSettings(token=TOKEN, finish_timeout_s=0.5, upload_speed=0)
                self._app = build_app(Hub(bus, settings))
                await send({"type": "lifespan.startup.complete"})
            else:
                await self._nc.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the aggregator exited"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} not healthy within {timeout_s} s")


@pytest.fixture
def api_schema(tmp_path: Path) -> Iterator[Any]:
    server = NatsServer(tmp_path / "js")
    server.start()
    http_port = free_port()
    env = {
        **os.environ,
        "ECHOSTREAM_NATS_URL": server.url,
        "ECHOSTREAM_AGGREGATOR_HTTP_PORT": str(http_port),
        "ECHOSTREAM_AGGREGATOR_METRICS_PORT": str(free_port()),
        "ECHOSTREAM_AGGREGATOR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'a.db'}",
    }
    # The real aggregator answers capture's stored-session requests (GET /v1/transcriptions).
    with (tmp_path / "aggregator.log").open("wb") as log:
        aggregator = subprocess.Popen([sys.executable, "-m", "aggregator"], env=env, stderr=log)
    try:
        wait_healthy(f"http://127.0.0.1:{http_port}/health", aggregator)
        yield schemathesis.openapi.from_asgi("/openapi.json", CaptureApp(server.url))
        shutdown_lifespans()
    finally:
        aggregator.terminate()
        aggregator.wait(timeout=20)
        server.stop()


def fuzz(operation: Any, token: str, examples: int) -> None:
    """Generated requests to one operation; each response checked against the document."""
    post = operation.method.upper() == "POST"

    @given(case=operation.as_strategy())
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: schemathesis.Case) -> None:
        # Bytes the schema allows are rarely audio: a 415 for them is the right answer.
        response = case.call_and_validate(
            headers={"Authorization": f"Bearer {token}"},
            excluded_checks=[positive_data_acceptance],
        )
        if token != TOKEN and post:
            assert response.status_code == 401, response.text[:200]

    conforms()


@pytest.mark.slow
@pytest.mark.parametrize("token", [TOKEN, "wrong"], ids=["token", "wrong-token"])
def test_http_api_conforms_to_its_schema(api_schema: Any, token: str) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 7, [op.label for op in operations]
    for operation in operations:
        fuzz(operation, token, EXAMPLES if token == TOKEN else 10)


def test_the_document_is_served(api_schema: Any) -> None:
    labels = {op.ok().label for op in api_schema.get_all_operations()}
    assert "POST /v1/audio/transcriptions" in labels and "POST /v1/listen" in labels
