"""Shared by the browser tests: Chromium's location and flags, and the pipeline's tokens."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pipeline_procs import Pipeline, running_pipeline
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

CHROMIUM = Path(os.environ.get("ECHOSTREAM_CHROMIUM", "/usr/bin/chromium"))
CAPTURE_TOKEN = "browser-test-capture-token"
AGGREGATOR_TOKEN = "browser-test-aggregator-token"
LEAD_S = 1.0
SHARED_TAB_TITLE = "EchoStream shared tab"
"""The tab getDisplayMedia picks, as a user choosing a tab to share would."""
"""Silence before the speech: the fake microphone starts with the capture, before the socket."""


def chromium_args(wav: Path) -> list[str]:
    """Headless as root on a closed network, with a fake microphone playing ``wav`` once."""
    return [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        f"--auto-select-tab-capture-source-by-title={SHARED_TAB_TITLE}",
    ]


@contextlib.contextmanager
def chromium(microphone_wav: Path) -> Iterator[Browser]:
    """Debian's Chromium, headless, its fake microphone playing ``microphone_wav`` once."""
    if not CHROMIUM.is_file():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: run `make install` as root on Debian "
            "(infra/browser/install-chromium.sh), or set ECHOSTREAM_CHROMIUM"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=chromium_args(microphone_wav)
        )
        yield launched
        launched.close()


@contextlib.contextmanager
def browser_pipeline(workdir: Path, **capture_env: str) -> Iterator[Pipeline]:
    """The real pipeline with a capture token and an aggregator API token, as compose runs it,
    once the aggregator (which the library needs) answers healthy."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ECHOSTREAM_AGGREGATOR_API_TOKEN", AGGREGATOR_TOKEN)
        env.setenv("ECHOSTREAM_CAPTURE_AGGREGATOR_TOKEN", AGGREGATOR_TOKEN)
        with running_pipeline(
            workdir, ECHOSTREAM_CAPTURE_TOKEN=CAPTURE_TOKEN, **capture_env
        ) as running:
            wait_until_healthy(running.aggregator + "/health")
            yield running


def wait_until_healthy(url: str, timeout_s: float = 60.0) -> None:
    """Until ``url`` answers 200 (running_pipeline does not wait for the aggregator)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer healthy within {timeout_s} s")


def open_page(
    contexts: list[BrowserContext], browser: Browser, base: str, *, microphone: bool
) -> Page:
    """The page at ``base`` in a new 1200x600 context (the screenshots' size), once it booted."""
    context = browser.new_context(
        permissions=["microphone"] if microphone else [],
        viewport={"width": 1200, "height": 600},
        accept_downloads=True,
    )
    contexts.append(context)
    page = context.new_page()
    page.goto(base + "/")
    page.wait_for_selector("body[data-ready='true']")
    return page


def sign_in(page: Page, token: str) -> None:
    page.get_by_label("Server token").fill(token)
    page.get_by_role("button", name="Sign in").click()


class CuttableProxy:
    """A TCP forwarder to a local port whose open connections can be cut, as a network drop does.

    The page is loaded through it, so its WebSocket runs through it too; ``cut`` resets every
    connection open at that moment and keeps listening, so the page can connect again.
    """

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    def __enter__(self) -> CuttableProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        def reset() -> None:
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

        self._loop.call_soon_threadsafe(reset)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self._target
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )
        self._writers -= {writer, upstream_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.transport.abort()
