"""Two different engines side by side in Chromium: whisper.cpp transcribes the live column and
faster-whisper the compare column, which follows the aggregator's feed of faster-whisper's
transcript. This module runs its own pipeline (capture configured with both engines, a worker of
each) and its own Chromium, whose microphone says three sentences, so the compare column has
finals while the speaker is still talking (the screenshot in docs/images/live-page.png).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile  # type: ignore[import-untyped]
from browser_harness import (
    AGGREGATOR_TOKEN,
    CAPTURE_TOKEN,
    LEAD_S,
    browser_pipeline,
    chromium,
    open_page,
    sign_in,
)
from capture_audio import RATE, Speech, conversation, silence
from pipeline_procs import Pipeline
from playwright.sync_api import Browser, BrowserContext
from speech_corpus import wer
from worker_process import WorkerProcess, require_ct2_model

pytestmark = pytest.mark.slow

ENGINES = ("whisper", "fasterwhisper")
MAX_WER = 0.15
COMPARE_MAX_WER = 0.2  # as tests/engines/test_two_batch_engines.py allows each engine
FINISH_TIMEOUT_MS = 75_000
COUNT_FEEDS = """(() => {
  const Native = window.EventSource;
  window.openedFeeds = [];
  window.EventSource = class extends Native {
    constructor(...args) {
      super(...args);
      window.openedFeeds.push(this);
    }
  };
})();"""
SPEAKING_AND_COMPARED = """() => {
  const level = document.querySelector('meter[aria-label="mic level"]');
  const final = (column) => document.querySelector(`[data-testid="${column}"] [data-final="true"]`);
  return Boolean(final("transcript") && final("transcript-compare")) && level?.value > -45;
}"""


@pytest.fixture(scope="module")
def talk() -> Speech:
    """Three sentences after a second of silence: the third is said while the first's finals of
    both engines are on the page."""
    spoken = conversation(names=("quick_brown_fox", "hello_world", "quick_brown_fox"))
    return Speech(np.concatenate([silence(LEAD_S), spoken.pcm]), spoken.text)


@pytest.fixture(scope="module")
def browser(talk: Speech, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    wav = tmp_path_factory.mktemp("fake-mic-two-engines") / "talk.wav"
    soundfile.write(wav, talk.pcm, RATE, subtype="PCM_16")
    with chromium(wav) as launched:
        yield launched


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """Capture with both engines, a whisper.cpp worker (running_pipeline's) and a faster-whisper
    worker, once capture counts a worker of each."""
    require_ct2_model()
    workdir = tmp_path_factory.mktemp("pipeline-two-engines")
    with browser_pipeline(workdir, ECHOSTREAM_CAPTURE_ENGINES=",".join(ENGINES)) as running:
        worker = WorkerProcess(
            running.nats_url, workdir / "fasterwhisper.log", engine="fasterwhisper"
        ).start()
        try:
            wait_for_workers(running, timeout_s=90)
            yield running
        finally:
            worker.kill()


def wait_for_workers(pipeline: Pipeline, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        workers = httpx.get(pipeline.http + "/v1/web/config", timeout=2).json()["workers"]
        if all(workers.get(engine, 0) >= 1 for engine in ENGINES):
            return
        time.sleep(0.3)
    raise RuntimeError(f"capture did not count a worker of each of {ENGINES} in {timeout_s} s")


def stored_view(pipeline: Pipeline, session_id: str, engine: str) -> dict[str, Any]:
    response = httpx.get(
        f"{pipeline.aggregator}/v1/sessions/{session_id}",
        params={"engine": engine},
        headers={"Authorization": f"Bearer {AGGREGATOR_TOKEN}"},
    )
    response.raise_for_status()
    view: dict[str, Any] = response.json()
    return view


def test_the_compare_column_shows_the_second_engine_side_by_side(
    contexts: list[BrowserContext],
    browser: Browser,
    pipeline: Pipeline,
    talk: Speech,
    screenshots: Path,
) -> None:
    page = open_page(contexts, browser, pipeline.http, microphone=True)
    page.add_init_script(COUNT_FEEDS)
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    sign_in(page, CAPTURE_TOKEN)
    page.wait_for_selector("[data-signin][hidden]", state="attached")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"worker-status\"]').textContent"
        ".includes('fasterwhisper: 1 worker')"
    )
    page.get_by_label("Engine").select_option("whisper")
    page.get_by_label("Compare with").select_option("fasterwhisper")

    page.get_by_role("button", name="Start").click()
    started = time.monotonic()
    page.wait_for_selector("[data-view-panel='live'][data-state='live']", timeout=20_000)
    talk_s = len(talk.pcm) / RATE
    # While the third sentence is said, the first's finals of both engines are on the page.
    page.wait_for_function(SPEAKING_AND_COMPARED, timeout=talk_s * 1000, polling=50)
    page.screenshot(path=str(screenshots / "live-page.png"), full_page=True)
    page.wait_for_timeout(max(0.0, talk_s + 1.5 - (time.monotonic() - started)) * 1000)
    page.get_by_role("button", name="Stop").click()
    page.wait_for_selector("[data-view-panel='live'][data-state='done']", timeout=FINISH_TIMEOUT_MS)

    assert page.locator("[data-compare-title]").inner_text() == "Transcript (fasterwhisper)"
    primary = page.get_by_test_id("transcript").locator("[data-final='true']").all_inner_texts()
    assert wer(talk.text, " ".join(primary)) <= MAX_WER, primary
    session_id = page.get_by_test_id("session-id").inner_text()

    # The aggregator completes the session once both engines' finals are stored; by then the
    # column has every faster-whisper final, and its feed is closed (it is not reopened).
    deadline = time.monotonic() + FINISH_TIMEOUT_MS / 1000
    while not stored_view(pipeline, session_id, "fasterwhisper")["complete"]:
        assert time.monotonic() < deadline, "the aggregator did not complete the session"
        time.sleep(0.5)
    stored = stored_view(pipeline, session_id, "fasterwhisper")
    stored_texts = [str(s["text"]).strip() for s in stored["transcript"]]
    compared = page.get_by_test_id("transcript-compare").locator("[data-final='true']")
    page.wait_for_function(
        """n => document.querySelectorAll(
            '[data-testid="transcript-compare"] [data-final="true"]').length >= n""",
        arg=len([text for text in stored_texts if text]),
        timeout=10_000,
    )
    shown = compared.all_inner_texts()
    assert shown == [text for text in stored_texts if text]
    assert wer(talk.text, " ".join(shown)) <= COMPARE_MAX_WER, shown
    feeds = page.evaluate("window.openedFeeds.map(feed => feed.url)")
    assert feeds and all("engine=fasterwhisper" in url for url in feeds), feeds

    page.wait_for_function(
        "() => window.openedFeeds.every(feed => feed.readyState === EventSource.CLOSED)",
        timeout=10_000,
    )
    opened = page.evaluate("window.openedFeeds.length")
    page.wait_for_timeout(4000)  # an EventSource left open would have reconnected by now
    assert page.evaluate("window.openedFeeds.length") == opened

    # The library's "all engines" timeline: both engines' finals, by start time, each labelled.
    page.get_by_role("button", name="Library").click()
    page.locator(f"tr[data-session='{session_id}']").get_by_role("button").click()
    page.get_by_role("heading", name=f"Session {session_id}").wait_for()
    page.get_by_label("Engine shown").select_option(label="all engines")
    lines = page.get_by_test_id("timeline").locator("li.final")
    expected = len(stored["transcript"]) + len(
        stored_view(pipeline, session_id, "whisper")["transcript"]
    )
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=\"timeline\"] li.final').length === n",
        arg=expected,
    )
    shown_lines = lines.evaluate_all(
        "ls => ls.map(l => [l.dataset.engine, Number(l.dataset.start), l.textContent])"
    )
    assert {engine for engine, _, _ in shown_lines} == set(ENGINES)
    starts = [start for _, start, _ in shown_lines]
    assert starts == sorted(starts)
    fasterwhisper_lines = [text for engine, _, text in shown_lines if engine == "fasterwhisper"]
    # Word spans joined: the stored text up to spacing.
    assert len(fasterwhisper_lines) == len(stored["transcript"])
    assert wer(" ".join(stored_texts), " ".join(fasterwhisper_lines)) == 0, fasterwhisper_lines
