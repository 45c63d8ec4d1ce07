"""Bearer-token authentication of HTTP requests and WebSocket connections."""

from __future__ import annotations

import hmac

from pydantic import SecretStr
from starlette.requests import HTTPConnection

UNAUTHORIZED = "Unauthorized"


def presented_token(conn: HTTPConnection) -> str | None:
    """The token a client sent: ``Authorization: Bearer``, ``x-echopanel-token`` or ``?token=``.

    The query form exists for browsers, whose WebSocket API cannot set headers.
    """
    authorization = conn.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    header = conn.headers.get("x-echopanel-token", "").strip()
    if header:
        return header
    return conn.query_params.get("token") or None


def authorized(conn: HTTPConnection, token: SecretStr | None) -> bool:
    """True when no token is configured or the client presented it."""
    if token is None:
        return True
    presented = presented_token(conn)
    expected = token.get_secret_value().encode()
    return presented is not None and hmac.compare_digest(presented.encode(), expected)
