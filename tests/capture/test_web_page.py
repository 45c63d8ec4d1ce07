"""Capture's browser page: its files, its token exchange, CORS, and the library it proxies from a
real aggregator app (real store, real bus) served on a real port."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile  # type: ignore[import-untyped]
import uvicorn
from capture_harness import RunningCapture, StartCapture
from nats_server import free_port

from aggregator.app import create_app
from aggregator.config import AggregatorSettings
from aggregator.database import open_database
from aggregator.feed import FeedPublisher
from aggregator.routes import Backend
from aggregator.store import SessionStore
from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "aggregator"))
from api_harness import healthy, store_script  # noqa: E402
from session_script import session_script  # noqa: E402

TOKEN = "capture-s3cret"
AGGREGATOR_TOKEN = "aggregator-s3cret"
PAGE = "http://page.example"


@asynccontextmanager
async def aggregator_api(bus: Bus, tmp_path: Path, api_token: str) -> AsyncIterator[str]:
    """The aggregator's HTTP app over a stored session ``one``, on a free port."""
    engine, _ = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'aggregator.db'}")
    store = SessionStore(engine)
    await store_script(store, session_script("one"))
    settings = AggregatorSettings(api_token=api_token)  # type: ignore[arg-type]
    app = create_app(Backend(store, bus, FeedPublisher(bus), settings), healthy)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
        await engine.dispose()


@pytest.fixture
async def served(
    start_capture: StartCapture, bus: Bus, tmp_path: Path
) -> AsyncIterator[RunningCapture]:
    async with aggregator_api(bus, tmp_path, AGGREGATOR_TOKEN) as url:
        yield await start_capture(
            token=TOKEN, aggregator_url=url, aggregator_token=AGGREGATOR_TOKEN
        )


async def browser_token(client: httpx.AsyncClient) -> str:
    answer = await client.post("/v1/browser-token", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    token: str = answer.json()["token"]
    return token


async def test_the_page_and_its_modules_are_served(capture: RunningCapture) -> None:
    async with httpx.AsyncClient(base_url=capture.http) as client:
        page = await client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'data-testid="transcript"' in page.text and "data-start>Start</button>" in page.text
        for module in ("app.js", "live.js", "pcm-worklet.js", "library.js"):
            answer = await client.get(f"/web/{module}")
            assert answer.status_code == 200
            assert "javascript" in answer.headers["content-type"]
        assert (await client.get("/web/missing.js")).status_code == 404
        config = (await client.get("/v1/web/config")).json()
        assert config["auth"] is False and config["engines"] == ["whisper"]


async def test_the_token_exchange_takes_the_long_lived_token_in_a_header_only(
    served: RunningCapture,
) -> None:
    async with httpx.AsyncClient(base_url=served.http) as client:
        assert (await client.get("/v1/web/config")).json()["auth"] is True
        assert (await client.post("/v1/browser-token")).status_code == 401
        wrong = await client.post("/v1/browser-token", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json() == {"detail": "Unauthorized"}
        in_url = await client.post("/v1/browser-token", params={"token": TOKEN})
        assert in_url.status_code == 401
        minted = await browser_token(client)
        renewal = await client.post(
            "/v1/browser-token", headers={"Authorization": f"Bearer {minted}"}
        )
        assert renewal.status_code == 401, "a browser token must not extend its own life"


async def test_without_a_token_configured_the_exchange_gives_none(capture: RunningCapture) -> None:
    async with httpx.AsyncClient(base_url=capture.http) as client:
        answer = await client.post("/v1/browser-token")
        assert answer.status_code == 200 and answer.json()["token"] is None


async def test_the_library_is_proxied_for_a_browser_token(served: RunningCapture) -> None:
    async with httpx.AsyncClient(base_url=served.http) as client:
        assert (await client.get("/v1/library/sessions")).status_code == 401
        minted = await browser_token(client)
        listing = await client.get("/v1/library/sessions", params={"token": minted, "q": "ALPHA"})
        assert listing.status_code == 200
        assert [item["session_id"] for item in listing.json()["items"]] == ["one"]
        detail = await client.get(
            "/v1/library/sessions/one",
            params={"engine": "voxtral"},
            headers={"Authorization": f"Bearer {minted}"},
        )
        assert detail.json()["engine"] == "voxtral"
        srt = await client.get("/v1/library/sessions/one/export.srt", params={"token": minted})
        assert srt.status_code == 200 and "-->" in srt.text
        assert srt.headers["content-disposition"] == 'attachment; filename="one.srt"'
        missing = await client.get("/v1/library/sessions/nope", params={"token": minted})
        assert missing.status_code == 404 and "nope" in missing.json()["detail"]
        feed = await client.get("/v1/library/sessions/one/feed", params={"token": minted})
        assert feed.headers["content-type"].startswith("text/event-stream")
        assert "event: snapshot" in feed.text
        deleted = await client.delete("/v1/library/sessions/one", params={"token": minted})
        assert deleted.status_code == 204
        after = await client.get("/v1/library/sessions", params={"token": minted})
        assert after.json()["total"] == 0


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/library/health", 404),
        ("GET", "/v1/library/sessions/one/export.doc", 404),
        ("GET", "/v1/library/sessions/../metrics", 404),
        ("DELETE", "/v1/library/sessions", 405),
        ("DELETE", "/v1/library/sessions/one/export.txt", 405),
    ],
)
async def test_only_the_pages_routes_pass(
    served: RunningCapture, method: str, path: str, status: int
) -> None:
    async with httpx.AsyncClient(base_url=served.http) as client:
        minted = await browser_token(client)
        answer = await client.request(method, path, params={"token": minted})
        assert answer.status_code == status


async def test_an_unreachable_or_refusing_aggregator_is_said_plainly(
    start_capture: StartCapture, bus: Bus, tmp_path: Path
) -> None:
    nowhere = await start_capture(aggregator_url=f"http://127.0.0.1:{free_port()}")
    async with httpx.AsyncClient(base_url=nowhere.http) as client:
        answer = await client.get("/v1/library/sessions")
        assert answer.status_code == 503 and "unreachable" in answer.json()["detail"]
    async with aggregator_api(bus, tmp_path, "the-real-one") as url:
        refused = await start_capture(aggregator_url=url, aggregator_token="a-stale-one")
        async with httpx.AsyncClient(base_url=refused.http) as client:
            answer = await client.get("/v1/library/sessions")
            assert answer.status_code == 502
            assert "ECHOSTREAM_CAPTURE_AGGREGATOR_TOKEN" in answer.json()["detail"]


async def test_cors_is_off_by_default_and_answers_configured_origins(
    start_capture: StartCapture,
) -> None:
    plain = await start_capture()
    open_to_page = await start_capture(cors_origins=(PAGE,))
    preflight = {"Origin": PAGE, "Access-Control-Request-Method": "POST"}
    async with httpx.AsyncClient() as client:
        off = await client.options(plain.http + "/v1/browser-token", headers=preflight)
        assert "access-control-allow-origin" not in off.headers
        on = await client.options(open_to_page.http + "/v1/browser-token", headers=preflight)
        assert on.status_code == 200 and on.headers["access-control-allow-origin"] == PAGE
        other = await client.options(
            open_to_page.http + "/v1/browser-token",
            headers={"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in other.headers


async def test_a_sources_retained_audio_plays_as_wav(start_capture: StartCapture, bus: Bus) -> None:
    served = await start_capture(token=TOKEN)
    subject = t.audio("played", "mic")
    pcm = np.arange(-8000, 8000, dtype="<i2").tobytes()  # one second
    half = len(pcm) // 2
    for seq, (first, part) in enumerate([(0, pcm[:half]), (half // 2, pcm[half:])]):
        chunk = m.AudioChunk(
            session_id="played",
            source="mic",
            seq=seq,
            first_sample=first,
            pcm=part,
            captured_at=1.0,
        )
        await bus.publish(subject, chunk)
    await bus.publish(
        subject, m.SpeechEnded(session_id="played", source="mic", sample=9000, detected_at=1.5)
    )
    await bus.publish(
        subject, m.SourceClosed(session_id="played", source="mic", end_sample=16000, closed_at=2.0)
    )
    async with httpx.AsyncClient(base_url=served.http) as client:
        minted = await browser_token(client)
        path = "/v1/library/sessions/played/audio/mic.wav"
        assert (await client.get(path)).status_code == 401
        answer = await client.get(path, params={"token": minted})
        assert answer.status_code == 200 and answer.headers["content-type"] == "audio/wav"
        samples, rate = soundfile.read(io.BytesIO(answer.content), dtype="int16")
        assert rate == 16_000 and samples.tobytes() == pcm
        gone = await client.get("/v1/library/sessions/nope/audio/mic.wav", params={"token": minted})
        assert gone.status_code == 404 and "retained" in gone.json()["detail"]
