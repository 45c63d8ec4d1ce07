"""The HTTP API against a real store and a real nats-server."""

from __future__ import annotations

from pathlib import Path

import pysubs2
import pytest
from api_harness import api_client
from session_script import session_script
from sqlalchemy import text

from echostream_shared import topology as t
from echostream_shared.bus import Bus


async def test_list_get_and_engines(bus: Bus, sqlite_url: str) -> None:
    script = session_script("one") + session_script("two", segments=2)
    async with api_client(bus, sqlite_url, script) as (client, _):
        page = (await client.get("/v1/sessions", params={"limit": 1})).json()
        assert page["total"] == 2 and len(page["items"]) == 1 and page["next_offset"] == 1
        last = (await client.get("/v1/sessions", params={"limit": 1, "offset": 1})).json()
        assert last["next_offset"] is None
        assert {page["items"][0]["session_id"], last["items"][0]["session_id"]} == {"one", "two"}
        found = (await client.get("/v1/sessions", params={"q": "DELTA"})).json()
        assert [item["session_id"] for item in found["items"]] == ["one"]
        primary = (await client.get("/v1/sessions/one")).json()
        assert primary["engine"] == "whisper" and primary["word_count"] == 40
        other = (await client.get("/v1/sessions/one", params={"engine": "voxtral"})).json()
        assert other["engine"] == "voxtral"
        assert {seg["engine"] for seg in other["transcript"]} == {"voxtral"}


async def test_clear_errors(bus: Bus, sqlite_url: str) -> None:
    async with api_client(bus, sqlite_url, session_script("one"), max_page_size=20) as (client, _):
        missing = await client.get("/v1/sessions/nope")
        assert missing.status_code == 404 and "nope" in missing.json()["detail"]
        engine = await client.get("/v1/sessions/one", params={"engine": "kaldi"})
        assert engine.status_code == 404 and "kaldi" in engine.json()["detail"]
        assert (await client.get("/v1/sessions/bad.id")).status_code == 422
        assert (await client.get("/v1/sessions", params={"limit": 21})).status_code == 422
        assert (await client.get("/v1/sessions", params={"offset": -1})).status_code == 422
        assert (await client.get("/v1/sessions/one/export.doc")).status_code == 404
        assert (await client.delete("/v1/sessions/nope")).status_code == 404


async def test_token_is_required_when_configured(bus: Bus, sqlite_url: str) -> None:
    async with api_client(bus, sqlite_url, session_script("one"), api_token="s3cret") as (
        client,
        _,
    ):
        assert (await client.get("/v1/sessions")).status_code == 401
        wrong = await client.get("/v1/sessions", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        right = await client.get("/v1/sessions", headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200


async def test_delete_purges_the_bus(bus: Bus, sqlite_url: str) -> None:
    keep, drop = session_script("keep", segments=1), session_script("drop", segments=1)
    async with api_client(bus, sqlite_url, keep + drop) as (client, _):
        for item in keep + drop:
            await bus.publish(item.subject, item.message)
        await bus.js.publish(t.audio("drop", "mic"), b"pcm")
        assert (await client.delete("/v1/sessions/drop")).status_code == 204
        assert (await client.get("/v1/sessions/drop")).status_code == 404
        assert (await client.get("/v1/sessions/keep")).status_code == 200
        for stream, subject in (
            (t.SESSION_STREAM, t.session_events("drop")),
            (t.TRANSCRIPT_STREAM, t.transcripts_of_session("drop")),
            (t.AUDIO_STREAM, t.audio_of_session("drop")),
        ):
            info = await bus.js.stream_info(stream, subjects_filter=subject)
            assert not info.state.subjects, f"{subject} still holds messages"
        kept = await bus.js.stream_info(t.SESSION_STREAM, subjects_filter=t.session_events("keep"))
        assert kept.state.subjects


async def test_exports(bus: Bus, sqlite_url: str) -> None:
    async with api_client(bus, sqlite_url, session_script("one")) as (client, _):
        session = (await client.get("/v1/sessions/one")).json()
        text = await client.get("/v1/sessions/one/export.txt")
        assert text.headers["content-type"].startswith("text/plain")
        assert len(text.text.splitlines()) == len(session["transcript"])
        assert (await client.get("/v1/sessions/one/export.json")).json() == session
        srt = await client.get("/v1/sessions/one/export.srt")
        assert srt.headers["content-type"].startswith("application/x-subrip")
        assert 'filename="one.srt"' in srt.headers["content-disposition"]
        assert len(pysubs2.SSAFile.from_string(srt.text, format_="srt")) == 8
        vtt = await client.get("/v1/sessions/one/export.vtt")
        assert len(pysubs2.SSAFile.from_string(vtt.text, format_="vtt")) == 8


@pytest.mark.parametrize("path", ["", "/export.srt", "/feed"])
async def test_unknown_session_is_404_everywhere(bus: Bus, sqlite_url: str, path: str) -> None:
    async with api_client(bus, sqlite_url, []) as (client, _):
        assert (await client.get(f"/v1/sessions/ghost{path}")).status_code == 404


async def test_a_lost_database_answers_503(bus: Bus, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'a.db'}"
    async with api_client(bus, url, session_script("one", segments=1)) as (client, store):
        async with store.engine.begin() as conn:
            await conn.execute(text("DROP TABLE finals"))
        response = await client.get("/v1/sessions/one")
        assert response.status_code == 503
        assert response.json() == {"detail": "the database is unavailable; retry"}
