"""Bearer-token authentication of the API, active when a token is configured."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

bearer = HTTPBearer(auto_error=False, description="the aggregator's API token, when configured")

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def token_check(token: SecretStr | None) -> Callable[[Credentials], Awaitable[None]]:
    """A dependency that accepts any request without a token configured, else only the token."""
    expected = token.get_secret_value().encode() if token else None

    async def check(credentials: Credentials) -> None:
        if expected is None:
            return
        given = credentials.credentials.encode() if credentials else b""
        if not hmac.compare_digest(given, expected):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="Unauthorized",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check
