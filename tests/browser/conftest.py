"""Debian's Chromium, driven by Playwright, against the whole pipeline; a speech WAV as its mic.

Chromium comes from the system (``infra/browser/install-chromium.sh``, run by ``make install``):
Playwright's own browser download does not work everywhere, and Debian's package does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile  # type: ignore[import-untyped]
from browser_harness import LEAD_S, browser_pipeline, chromium
from capture_audio import RATE, Speech, conversation, silence
from pipeline_procs import Pipeline
from playwright.sync_api import Browser, BrowserContext


@pytest.fixture(scope="session")
def speech() -> Speech:
    """pytest-audioeval's English sentences, with a second of silence before them.

    Its counting sample is left out: tiny.en writes it as "1-2-345-678910" on any path (one
    word against ten), which measures the model's number formatting, not the page.
    """
    spoken = conversation(names=("quick_brown_fox", "hello_world"))
    return Speech(np.concatenate([silence(LEAD_S), spoken.pcm]), spoken.text)


@pytest.fixture(scope="session")
def speech_wav(speech: Speech, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fake-mic") / "speech.wav"
    soundfile.write(path, speech.pcm, RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """The real pipeline with a capture token and an aggregator API token, as compose runs it."""
    with browser_pipeline(tmp_path_factory.mktemp("pipeline")) as running:
        yield running


@pytest.fixture(scope="module")
def browser(speech_wav: Path) -> Iterator[Browser]:
    with chromium(speech_wav) as launched:
        yield launched


@pytest.fixture
def contexts(browser: Browser) -> Iterator[list[BrowserContext]]:
    """Browser contexts a test opens, closed after it (their pages poll the server)."""
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        context.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where screenshots go: ECHOSTREAM_SCREENSHOT_DIR (e.g. docs/images) or the test's tmp."""
    chosen = os.environ.get("ECHOSTREAM_SCREENSHOT_DIR")
    path = Path(chosen) if chosen else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path
