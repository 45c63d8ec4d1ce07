"""``python -m aggregator`` as a child process, its log in a file, reached over HTTP."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from nats_server import free_port


class AggregatorProcess:
    """One aggregator process; ``start`` again after ``kill``/``stop`` reuses port and database."""

    def __init__(self, nats_url: str, database_url: str, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.log_path = log_path
        self._env = {
            **os.environ,
            "ECHOSTREAM_NATS_URL": nats_url,
            "ECHOSTREAM_NATS_CONNECT_TIMEOUT_S": "5",
            "ECHOSTREAM_AGGREGATOR_DATABASE_URL": database_url,
            "ECHOSTREAM_AGGREGATOR_HTTP_PORT": str(self.port),
            "ECHOSTREAM_AGGREGATOR_CONSUMER_ACK_WAIT_S": "1",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AggregatorProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "aggregator"], env=self._env, stdout=log, stderr=log
            )
        return self

    async def ready(self, timeout_s: float = 30.0) -> None:
        """Wait until /health answers ok."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2) as client:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(f"aggregator exited early:\n{self.log()}")
                try:
                    if (await client.get("/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"aggregator not ready:\n{self.log()}")
                await asyncio.sleep(0.1)

    async def get(self, path: str, **params: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as client:
            return await client.get(path, params=params)

    async def session(self, session_id: str, engine: str = "whisper") -> dict[str, Any] | None:
        response = await self.get(f"/v1/sessions/{session_id}/export.json", engine=engine)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def wait_complete(self, session_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """The session once it is closed and every engine transcribed every source."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            response = await self.get(f"/v1/sessions/{session_id}")
            if response.status_code == 200 and response.json()["complete"]:
                body: dict[str, Any] = response.json()
                return body
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{session_id} not complete: {response.text}\n{self.log()}")
            await asyncio.sleep(0.1)

    async def engine_view(self, session_id: str, engine: str) -> dict[str, Any]:
        """The session as ``engine`` transcribed it, checked to hold that engine's text only."""
        response = await self.get(f"/v1/sessions/{session_id}", engine=engine)
        response.raise_for_status()
        view: dict[str, Any] = response.json()
        assert view["engine"] == engine, f"asked for {engine}, got {view['engine']}"
        assert all(segment["engine"] == engine for segment in view["transcript"])
        assert view["segments"] == len(view["transcript"])
        return view

    def kill(self) -> None:
        """SIGKILL, if it still runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM and the exit code."""
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(timeout=timeout_s)

    def wait_exit(self, timeout_s: float = 30) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
