"""Bearer-token authentication of the API, active when a token is configured."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Query, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from echostream_shared import browser_tokens

bearer = HTTPBearer(auto_error=False, description="the aggregator's API token, when configured")

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
AccessToken = Annotated[
    str | None,
    Query(
        max_length=browser_tokens.MAX_TOKEN_CHARS,
        description="a short-lived browser token, for clients that cannot set headers (EventSource)",
    ),
]


def token_check(token: SecretStr | None) -> Callable[[Credentials], Awaitable[None]]:
    """A dependency that accepts any request without a token configured, else the token (in the
    header) or a browser token minted with it (in the header or ``?access_token=``)."""
    expected = token.get_secret_value().encode() if token else None

    async def check(credentials: Credentials, access_token: AccessToken = None) -> None:
        if expected is None or token is None:
            return
        given = credentials.credentials if credentials else (access_token or "")
        if browser_tokens.is_browser_token(given):
            accepted = browser_tokens.is_valid(given, token)
        else:  # the long-lived token only in a header, never from a URL
            accepted = credentials is not None and hmac.compare_digest(given.encode(), expected)
        if not accepted:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="Unauthorized",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check
