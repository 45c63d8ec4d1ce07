"""Every way a client of one of capture's protocols presents its token."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from starlette.requests import HTTPConnection

from capture.auth import authorized, offered_subprotocols, presented_token, same_site_or_allowed


def connection(headers: dict[str, str], query: str = "") -> HTTPConnection:
    scope = {
        "type": "websocket",
        "path": "/",
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return HTTPConnection(scope)


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({"Authorization": "Bearer k3y"}, ""),
        ({"Authorization": "bearer   k3y "}, ""),
        ({"Authorization": "Token k3y"}, ""),
        ({"x-echopanel-token": "k3y"}, ""),
        ({}, "token=k3y"),
        ({"Sec-WebSocket-Protocol": "realtime, openai-insecure-api-key.k3y"}, ""),
        ({"Sec-WebSocket-Protocol": "token, k3y"}, ""),
        ({"Sec-WebSocket-Protocol": "bearer, k3y"}, ""),
    ],
    ids=[
        "bearer",
        "bearer-loose",
        "deepgram-token",
        "echopanel",
        "query",
        "openai-sub",
        "dg-sub",
        "dg-bearer-sub",
    ],
)
def test_each_form_presents_the_token(headers: dict[str, str], query: str) -> None:
    conn = connection(headers, query)
    assert presented_token(conn) == "k3y"
    assert authorized(conn, SecretStr("k3y"))
    assert not authorized(conn, SecretStr("other"))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic k3y"},
        {"Authorization": "Bearer "},
        {"Sec-WebSocket-Protocol": "realtime"},
        {"Sec-WebSocket-Protocol": "openai-insecure-api-key."},
        {"Sec-WebSocket-Protocol": "k3y, token"},
    ],
)
def test_no_token_is_found_where_none_was_presented(headers: dict[str, str]) -> None:
    conn = connection(headers)
    assert presented_token(conn) is None
    assert not authorized(conn, SecretStr("k3y"))
    assert authorized(conn, None), "without a configured token everyone is admitted"


def test_subprotocols_are_listed_in_the_clients_order() -> None:
    conn = connection({"Sec-WebSocket-Protocol": " realtime ,openai-beta.realtime-v1,, x "})
    assert offered_subprotocols(conn) == ["realtime", "openai-beta.realtime-v1", "x"]


@pytest.mark.parametrize(
    ("origin", "allowed", "admitted"),
    [
        (None, (), True),
        ("http://127.0.0.1:8000", (), True),
        ("http://evil.example", (), False),
        ("http://127.0.0.1:8001", (), False),
        ("https://app.example", ("https://app.example",), True),
    ],
)
def test_browser_pages_of_other_origins_are_refused(
    origin: str | None, allowed: tuple[str, ...], admitted: bool
) -> None:
    headers = {"Host": "127.0.0.1:8000"} | ({"Origin": origin} if origin else {})
    assert same_site_or_allowed(connection(headers), allowed) is admitted
