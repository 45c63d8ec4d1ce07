"""Token authentication of HTTP requests and WebSocket connections, in every client's way of sending it."""

from __future__ import annotations

import hmac

from pydantic import SecretStr
from starlette.requests import HTTPConnection

from echostream_shared import browser_tokens

UNAUTHORIZED = "Unauthorized"
SCHEMES = frozenset({"bearer", "token"})
"""``Bearer`` (EchoPanel, OpenAI, native) and ``Token`` (Deepgram's SDK default)."""
OPENAI_KEY_PREFIX = "openai-insecure-api-key."
SCHEME_PROTOCOLS = frozenset({"token", "bearer"})
"""Deepgram's browser form: the subprotocols ``token, <key>`` (API keys) or ``bearer, <jwt>``."""


def offered_subprotocols(conn: HTTPConnection) -> list[str]:
    """The WebSocket subprotocols the client offered, in its order."""
    header = conn.headers.get("sec-websocket-protocol", "")
    return [part.strip() for part in header.split(",") if part.strip()]


def presented_token(conn: HTTPConnection) -> str | None:
    """The token a client sent, wherever its protocol puts it.

    Headers first (``Authorization: Bearer|Token``, ``x-echopanel-token``); then the forms that
    exist for browsers, whose WebSocket API cannot set headers: ``?token=``, OpenAI's
    ``openai-insecure-api-key.<key>`` subprotocol and Deepgram's ``token, <key>`` or
    ``bearer, <jwt>`` pairs.
    """
    scheme, _, value = conn.headers.get("authorization", "").partition(" ")
    if scheme.lower() in SCHEMES and value.strip():
        return value.strip()
    header = conn.headers.get("x-echopanel-token", "").strip()
    if header:
        return header
    if query := conn.query_params.get("token"):
        return query
    offered = offered_subprotocols(conn)
    for protocol in offered:
        if protocol.startswith(OPENAI_KEY_PREFIX) and len(protocol) > len(OPENAI_KEY_PREFIX):
            return protocol[len(OPENAI_KEY_PREFIX) :]
    if len(offered) >= 2 and offered[0] in SCHEME_PROTOCOLS:
        return offered[1]
    return None


def same_site_or_allowed(conn: HTTPConnection, allowed: tuple[str, ...]) -> bool:
    """Whether a browser page may open this socket: any page of capture's own origin, or one
    of the configured CORS origins. Clients that are not browsers send no ``Origin``.

    Without it, any web site the user visits could stream to (and read from) a capture that
    runs without a token on loopback.
    """
    origin = conn.headers.get("origin")
    if origin is None:
        return True
    _, _, authority = origin.partition("://")
    return authority == conn.headers.get("host", "") or origin in allowed


def authorized(conn: HTTPConnection, token: SecretStr | None) -> bool:
    """True when no token is configured or the client presented it (or a browser token minted
    with it that has not expired)."""
    if token is None:
        return True
    presented = presented_token(conn)
    if presented is not None and browser_tokens.is_browser_token(presented):
        return browser_tokens.is_valid(presented, token)
    expected = token.get_secret_value().encode()
    return presented is not None and hmac.compare_digest(presented.encode(), expected)
