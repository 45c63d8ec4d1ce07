"""The API from a browser: short-lived tokens (header or ``?access_token=``) and CORS, off by default."""

from __future__ import annotations

import time

from api_harness import api_client
from pydantic import SecretStr
from session_script import session_script

from echostream_shared import browser_tokens
from echostream_shared.bus import Bus

API_TOKEN = "s3cret"
PAGE = "http://page.example:8000"


async def test_browser_tokens_open_the_api_until_they_expire(bus: Bus, sqlite_url: str) -> None:
    minted = browser_tokens.mint(SecretStr(API_TOKEN), ttl_s=60).token
    expired = browser_tokens.mint(SecretStr(API_TOKEN), ttl_s=60, now=time.time() - 120).token
    foreign = browser_tokens.mint(SecretStr("another"), ttl_s=60).token
    async with api_client(bus, sqlite_url, session_script("one"), api_token=API_TOKEN) as (
        client,
        _,
    ):
        header = await client.get("/v1/sessions", headers={"Authorization": f"Bearer {minted}"})
        assert header.status_code == 200 and header.json()["total"] == 1
        query = await client.get("/v1/sessions/one/export.srt", params={"access_token": minted})
        assert query.status_code == 200 and "-->" in query.text
        for refused in (expired, foreign):
            assert (
                await client.get("/v1/sessions", params={"access_token": refused})
            ).status_code == 401
            answer = await client.get(
                "/v1/sessions", headers={"Authorization": f"Bearer {refused}"}
            )
            assert answer.status_code == 401
        # The long-lived token is a header's business only: a URL would put it in logs.
        in_url = await client.get("/v1/sessions", params={"access_token": API_TOKEN})
        assert in_url.status_code == 401


async def test_cors_is_off_by_default(bus: Bus, sqlite_url: str) -> None:
    async with api_client(bus, sqlite_url, session_script("one")) as (client, _):
        answer = await client.get("/v1/sessions", headers={"Origin": PAGE})
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers


async def test_cors_answers_configured_origins_only(bus: Bus, sqlite_url: str) -> None:
    async with api_client(
        bus, sqlite_url, session_script("one"), api_token=API_TOKEN, cors_origins=(PAGE,)
    ) as (client, _):
        preflight = await client.options(
            "/v1/sessions/one",
            headers={
                "Origin": PAGE,
                "Access-Control-Request-Method": "DELETE",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == PAGE
        assert "DELETE" in preflight.headers["access-control-allow-methods"]
        other = await client.options(
            "/v1/sessions",
            headers={"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in other.headers
        answer = await client.get(
            "/v1/sessions", headers={"Origin": PAGE, "Authorization": f"Bearer {API_TOKEN}"}
        )
        assert answer.headers["access-control-allow-origin"] == PAGE
