"""The browser page in a real headless Chromium, against the real pipeline (whisper.cpp included).

Chromium's fake microphone plays pytest-audioeval's speech; the page streams it over the native
protocol from an AudioWorklet, shows partials then finals, and the session then shows in the
library, whose SRT download is checked. A refused microphone and a wrong token show their messages.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import browser_harness as harness
import httpx
import pysubs2
import pytest
from browser_harness import (
    AGGREGATOR_TOKEN,
    CAPTURE_TOKEN,
    LEAD_S,
    SHARED_TAB_TITLE,
    CuttableProxy,
    sign_in,
)
from capture_audio import RATE, Speech
from pipeline_procs import Pipeline
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Route
from speech_corpus import wer

pytestmark = pytest.mark.slow

MAX_WER = 0.15
CLOCK = r"\d\d:\d\d\.\d"
WORD_TIME = f"{CLOCK}–{CLOCK}"
LIVE_WORD_TIME = WORD_TIME + r"(, p [01]\.\d\d)?"
FINISH_TIMEOUT_MS = 75_000  # capture answers `done` within its FINISH_TIMEOUT_S (60 s)
FIRSTS = """() => {
  const root = document.querySelector('[data-testid="transcript"]');
  window.firstSeen = {};
  const note = () => {
    const now = performance.now();
    if (!window.firstSeen.partial && root.querySelector('.partial:not([data-final])'))
      window.firstSeen.partial = now;
    if (!window.firstSeen.final && root.querySelector('[data-final="true"]'))
      window.firstSeen.final = now;
  };
  new MutationObserver(note).observe(root, {
    subtree: true, childList: true, attributes: true, characterData: true,
  });
}"""

PLAYABLE_SECONDS = """async () => {
  const player = document.querySelector('.player audio');
  const loaded = new Promise((resolve, reject) => {
    player.addEventListener('loadedmetadata', resolve, { once: true });
    player.addEventListener('error', () => reject(new Error('audio failed')), { once: true });
  });
  player.preload = 'auto';
  player.load();
  await loaded;
  return player.duration;
}"""


def open_page(
    contexts: list[BrowserContext],
    browser: Browser,
    pipeline: Pipeline,
    *,
    microphone: bool,
    base: str | None = None,
) -> Page:
    return harness.open_page(contexts, browser, base or pipeline.http, microphone=microphone)


def alert(page: Page) -> Locator:
    return page.get_by_test_id("alert")


def test_live_microphone_transcript_then_library_and_srt(
    contexts: list[BrowserContext],
    browser: Browser,
    pipeline: Pipeline,
    speech: Speech,
    screenshots: Path,
) -> None:
    page = open_page(contexts, browser, pipeline, microphone=True)
    sign_in(page, CAPTURE_TOKEN)
    page.wait_for_selector("[data-signin][hidden]", state="attached")
    page.evaluate(FIRSTS)
    # One engine runs here: comparing it with itself exercises the second column's feed.
    page.get_by_label("Compare with").select_option("whisper")

    page.get_by_role("button", name="Start").click()
    page.wait_for_selector("[data-view-panel='live'][data-state='live']", timeout=20_000)
    # The WAV plays in real time (the live page's screenshot is test_two_engines.py's).
    page.wait_for_timeout((len(speech.pcm) / RATE + 1.5) * 1000)
    page.get_by_role("button", name="Stop").click()
    page.wait_for_selector("[data-view-panel='live'][data-state='done']", timeout=FINISH_TIMEOUT_MS)

    finals = page.get_by_test_id("transcript").locator("[data-final='true']").all_inner_texts()
    heard = " ".join(finals)
    assert finals, "no final reached the page"
    assert wer(speech.text, heard) <= MAX_WER, heard
    # Each final's words carry their times (and whisper.cpp's probability) as a title.
    live_titles = (
        page.get_by_test_id("transcript")
        .locator("span.word")
        .evaluate_all("ws => ws.map(w => w.title)")
    )
    assert live_titles and all(re.fullmatch(LIVE_WORD_TIME, t) for t in live_titles), live_titles
    # The figures: the last and median final latency, partials / finals, the worker status.
    latency = page.get_by_test_id("latency").inner_text()
    assert re.fullmatch(r"\d+\.\d\d s / \d+\.\d\d s", latency), latency
    last_s, median_s = (float(part.removesuffix(" s")) for part in latency.split(" / "))
    assert 0 < last_s < 30 and 0 < median_s < 30, latency
    partials, shown_finals = map(int, page.get_by_test_id("counts").inner_text().split(" / "))
    assert shown_finals >= len(finals) and partials >= 1
    assert page.get_by_test_id("worker-status").inner_text() == "whisper: 1 worker"
    compared = page.get_by_test_id("transcript-compare").locator("[data-final='true']")
    page.wait_for_function(
        """n => document.querySelectorAll('[data-testid="transcript-compare"] [data-final]')
            .length >= n""",
        arg=len(finals),
    )
    assert wer(speech.text, " ".join(compared.all_inner_texts())) <= MAX_WER
    firsts = page.evaluate("window.firstSeen")
    assert "partial" in firsts, "no partial was shown before the finals"
    assert firsts["partial"] < firsts["final"]
    session_id = page.get_by_test_id("session-id").inner_text()
    page.get_by_role("button", name="Library").click()
    row = page.locator(f"tr[data-session='{session_id}']")
    for _ in range(20):
        if row.count():
            break
        page.get_by_role("button", name="Search").click()
        page.wait_for_timeout(500)
    search = page.get_by_label("Search transcripts")
    search.fill("zebra")
    page.get_by_role("button", name="Search").click()
    page.wait_for_selector("text=0 session(s) match “zebra”")
    search.fill("lazy dog")
    page.get_by_role("button", name="Search").click()
    page.wait_for_selector("text=1 session(s) match “lazy dog”")
    row.get_by_role("button").click()
    timeline = page.get_by_test_id("timeline")
    timeline.locator("li.final").first.wait_for()
    stored = " ".join(timeline.locator("li.final").all_inner_texts())
    assert wer(speech.text, stored) <= MAX_WER, stored
    page.locator(".detail [data-status='complete']").wait_for(timeout=FINISH_TIMEOUT_MS)
    played_s = page.evaluate(PLAYABLE_SECONDS)
    # The session's audio is what the microphone gave between Start and Stop: the speech and more.
    assert len(speech.pcm) / RATE - 0.5 <= played_s <= len(speech.pcm) / RATE + 6
    page.screenshot(path=str(screenshots / "library.png"), full_page=True)

    # Word times on hover: each word of the stored timeline has its start–end as its title.
    word_titles = timeline.locator("span.word").evaluate_all("ws => ws.map(w => w.title)")
    assert word_titles and all(re.fullmatch(WORD_TIME, title) for title in word_titles), word_titles

    def download(label: str) -> tuple[str, str]:
        with page.expect_download() as started:
            page.get_by_role("link", name=label).click()
        return started.value.suggested_filename, Path(started.value.path()).read_text()

    name, srt = download("SRT")
    assert name == f"{session_id}.srt"
    cue_texts = [
        event.plaintext.removeprefix("[mic] ")
        for event in pysubs2.SSAFile.from_string(srt, format_="srt")
    ]
    assert wer(speech.text, " ".join(cue_texts)) <= MAX_WER, cue_texts
    name, vtt = download("VTT")
    assert name == f"{session_id}.vtt" and vtt.startswith("WEBVTT")
    cue_texts = [
        event.plaintext.removeprefix("[mic] ")
        for event in pysubs2.SSAFile.from_string(vtt, format_="vtt")
    ]
    assert wer(speech.text, " ".join(cue_texts)) <= MAX_WER, cue_texts
    name, txt = download("TXT")
    assert name == f"{session_id}.txt"
    txt_lines = [re.sub(r"^\[[^]]+\] mic: ", "", line) for line in txt.splitlines()]
    assert len(txt_lines) == len(finals) and all(not line.startswith("[") for line in txt_lines)
    assert wer(speech.text, " ".join(txt_lines)) <= MAX_WER, txt
    name, exported = download("JSON")
    assert name == f"{session_id}.json"
    document = json.loads(exported)
    assert document["session_id"] == session_id and document["complete"] is True
    assert wer(speech.text, " ".join(s["text"] for s in document["transcript"])) <= MAX_WER


def test_refused_microphone_is_explained(
    contexts: list[BrowserContext], browser: Browser, pipeline: Pipeline
) -> None:
    page = open_page(contexts, browser, pipeline, microphone=False)
    sign_in(page, CAPTURE_TOKEN)
    page.get_by_role("button", name="Start").click()
    message = alert(page)
    message.wait_for()
    assert message.get_attribute("data-code") == "refused"
    assert "microphone was refused" in message.inner_text()
    assert page.get_by_role("button", name="Start").is_enabled()


def test_wrong_token_is_explained(
    contexts: list[BrowserContext], browser: Browser, pipeline: Pipeline
) -> None:
    page = open_page(contexts, browser, pipeline, microphone=True)
    sign_in(page, "not-the-token")
    message = alert(page)
    message.wait_for()
    assert "refused this token" in message.inner_text()
    assert message.get_attribute("data-code") == "unauthorized"
    page.get_by_role("button", name="Start").click()  # the microphone stays closed
    page.wait_for_selector("[data-view-panel='live'][data-state='idle']")
    assert "refused this token" in message.inner_text()
    assert page.get_by_test_id("session-id").inner_text() == "—"


def test_a_lost_connection_reconnects_and_the_session_loses_no_text(
    contexts: list[BrowserContext], browser: Browser, pipeline: Pipeline, speech: Speech
) -> None:
    with CuttableProxy(pipeline.capture_port) as proxy:
        page = open_page(contexts, browser, pipeline, microphone=True, base=proxy.url)
        sign_in(page, CAPTURE_TOKEN)
        page.get_by_role("button", name="Start").click()
        page.wait_for_selector("[data-view-panel='live'][data-state='live']", timeout=20_000)
        first_id = page.get_by_test_id("session-id").inner_text()
        # Cut in the pause after the first sentence, before its final can have come back.
        fox_end_s = LEAD_S + 1.0 + 2.89
        page.wait_for_timeout((fox_end_s + 0.15) * 1000)
        proxy.cut()
        message = alert(page)
        page.wait_for_selector("[data-testid='alert'][data-code='connection_lost']")
        page.wait_for_selector("[data-testid='alert'][data-code='reconnected']", timeout=15_000)
        assert "session goes on" in message.inner_text()
        second_id = page.get_by_test_id("session-id").inner_text()
        assert second_id != first_id
        page.wait_for_timeout((len(speech.pcm) / RATE - fox_end_s + 1.0) * 1000)
        page.get_by_role("button", name="Stop").click()
        page.wait_for_selector(
            "[data-view-panel='live'][data-state='done']", timeout=FINISH_TIMEOUT_MS
        )
        transcript = page.get_by_test_id("transcript")
        # The lost connection's finals come from the library once its audio is transcribed.
        page.wait_for_function(
            """() => !document.querySelector('[data-testid="transcript"] .partial')""",
            timeout=FINISH_TIMEOUT_MS,
        )
        heard = " ".join(transcript.locator("[data-final='true']").all_inner_texts())
        sessions = set(
            transcript.locator("[data-final='true']").evaluate_all(
                "lines => lines.map(line => line.dataset.session)"
            )
        )
        # Two library entries (the aggregator does not merge them), linked both ways.
        page.get_by_role("button", name="Library").click()
        later = page.locator(f"tr[data-session='{second_id}']")
        later.wait_for()
        later.get_by_role("button").click()
        continues = page.locator(".detail [data-continuity='continues']")
        assert continues.inner_text() == f"continues {first_id}"
        continues.get_by_role("button").click()
        page.get_by_role("heading", name=f"Session {first_id}").wait_for()
        continued = page.locator(".detail [data-continuity='continued by']")
        assert continued.inner_text() == f"continued by {second_id}"
    assert sessions == {first_id, second_id}, heard
    assert wer(speech.text, heard) <= MAX_WER, heard
    resumed = httpx.get(
        f"{pipeline.aggregator}/v1/sessions/{second_id}",
        headers={"Authorization": f"Bearer {AGGREGATOR_TOKEN}"},
    ).json()
    assert resumed["metadata"]["resumes"] == first_id


def test_a_live_session_updates_in_place_in_the_library(
    contexts: list[BrowserContext], browser: Browser, pipeline: Pipeline, speech: Speech
) -> None:
    speaker = open_page(contexts, browser, pipeline, microphone=True)
    sign_in(speaker, CAPTURE_TOKEN)
    speaker.get_by_role("button", name="Start").click()
    speaker.wait_for_selector("[data-view-panel='live'][data-state='live']", timeout=20_000)
    session_id = speaker.get_by_test_id("session-id").inner_text()

    reader = open_page(contexts, browser, pipeline, microphone=False)
    sign_in(reader, CAPTURE_TOKEN)
    reader.evaluate("window.notReloaded = true")
    reader.get_by_role("button", name="Library").click()
    row = reader.locator(f"tr[data-session='{session_id}']")
    for _ in range(20):
        if row.count():
            break
        reader.get_by_role("button", name="Search").click()
        reader.wait_for_timeout(300)
    assert row.locator(".badge").inner_text() == "live"
    row.get_by_role("button").click()
    reader.locator(".detail [data-status='live']").wait_for()
    timeline = reader.get_by_test_id("timeline")
    timeline.locator("li.final").first.wait_for(timeout=30_000)
    assert speaker.locator("[data-view-panel='live'][data-state='live']").count() == 1, (
        "the final reached the library only after the session ended"
    )

    speaker.wait_for_timeout(len(speech.pcm) / RATE * 1000)
    speaker.get_by_role("button", name="Stop").click()
    reader.locator(".detail [data-status='complete']").wait_for(timeout=FINISH_TIMEOUT_MS)
    assert reader.evaluate("window.notReloaded") is True
    stored = " ".join(timeline.locator("li.final").all_inner_texts())
    assert wer(speech.text, stored) <= MAX_WER, stored

    delete = reader.get_by_role("button", name="Delete")
    delete.click()
    reader.get_by_role("button", name="Confirm delete").click()
    row.wait_for(state="detached")
    gone = httpx.get(
        f"{pipeline.aggregator}/v1/sessions/{session_id}",
        headers={"Authorization": f"Bearer {AGGREGATOR_TOKEN}"},
    )
    assert gone.status_code == 404


def test_a_shared_tab_opens_as_a_second_source_of_the_same_session(
    contexts: list[BrowserContext], browser: Browser, pipeline: Pipeline, speech: Speech
) -> None:
    """The plumbing of a second source: getDisplayMedia's audio track, its own worklet and meter,
    its own source in the session. The shared tab plays nothing (headless Chromium captured only
    silence from a playing tab when tried), so all the speech comes through the microphone."""
    page = open_page(contexts, browser, pipeline, microphone=True)
    shared = page.context.new_page()
    shared.route(
        "http://shared.test/",
        lambda route: route.fulfill(
            body=f"<title>{SHARED_TAB_TITLE}</title>", content_type="text/html"
        ),
    )
    shared.goto("http://shared.test/")
    sign_in(page, CAPTURE_TOKEN)
    page.get_by_label("Also a tab or system audio").check()
    page.get_by_role("button", name="Start").click()
    page.wait_for_selector("[data-view-panel='live'][data-state='live']", timeout=20_000)
    assert page.get_by_test_id("live-status").inner_text() == "Live — mic + tab → whisper"
    assert page.get_by_label("mic level").count() == page.get_by_label("tab level").count() == 1
    session_id = page.get_by_test_id("session-id").inner_text()
    page.wait_for_timeout((len(speech.pcm) / RATE + 1.0) * 1000)
    page.get_by_role("button", name="Stop").click()
    page.wait_for_selector("[data-view-panel='live'][data-state='done']", timeout=FINISH_TIMEOUT_MS)
    lines = page.get_by_test_id("transcript").locator("[data-final='true']")
    assert set(lines.evaluate_all("ls => ls.map(l => l.dataset.source)")) == {"mic"}
    assert wer(speech.text, " ".join(lines.all_inner_texts())) <= MAX_WER
    stored = httpx.get(
        f"{pipeline.aggregator}/v1/sessions/{session_id}",
        headers={"Authorization": f"Bearer {AGGREGATOR_TOKEN}"},
    ).json()
    assert sorted(stored["sources"]) == ["mic", "tab"]


def test_the_library_shows_more_than_a_page_with_more(
    contexts: list[BrowserContext], browser: Browser, pipeline: Pipeline
) -> None:
    """The list's paging, on a library of 120 sessions faked at the page's fetch (the real one
    holds the few this module makes): "More" asks for the next offset and adds its rows."""
    total = 120
    offsets: list[int] = []

    def fake_library(route: Route) -> None:
        query = parse_qs(urlparse(route.request.url).query)
        limit, offset = int(query["limit"][0]), int(query.get("offset", ["0"])[0])
        offsets.append(offset)
        shown = range(offset, min(offset + limit, total))
        items = [
            {
                "session_id": f"paged-{index:03d}",
                "status": "closed",
                "complete": True,
                "started_at": 1_700_000_000 - index * 60,
                "duration_s": 12.0,
                "sources": ["mic"],
                "engines": ["whisper"],
                "word_count": 20,
                "segments": 2,
                "metadata": {},
            }
            for index in shown
        ]
        following = offset + limit if offset + limit < total else None
        route.fulfill(
            json={
                "items": items,
                "total": total,
                "limit": limit,
                "offset": offset,
                "next_offset": following,
            }
        )

    page = open_page(contexts, browser, pipeline, microphone=False)
    sign_in(page, CAPTURE_TOKEN)
    page.route(re.compile(r".*/v1/library/sessions\?.*"), fake_library)
    page.get_by_role("button", name="Library").click()
    rows = page.locator("[data-library-list] tr")
    more = page.get_by_role("button", name="More")
    page.wait_for_function("() => document.querySelectorAll('[data-library-list] tr').length")
    assert rows.count() == 50 and more.is_visible()
    more.click()
    page.wait_for_function("() => document.querySelectorAll('[data-library-list] tr').length > 50")
    assert rows.count() == 100
    more.click()
    page.wait_for_function("() => document.querySelectorAll('[data-library-list] tr').length > 100")
    assert rows.count() == total and more.is_hidden()
    assert offsets == [0, 50, 100]
    ids = rows.evaluate_all("rs => rs.map(r => r.dataset.session)")
    assert ids == [f"paged-{index:03d}" for index in range(total)]
