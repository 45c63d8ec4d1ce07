"""Short-lived tokens for browsers, signed with a service's own long-lived token.

A browser's WebSocket and EventSource APIs cannot set headers, so a page must put its credential
in the URL, where proxies and access logs keep it. The page therefore trades the long-lived token
once (in a header) for one of these, which expires in minutes: ``ebt1.<expiry>.<nonce>.<mac>``,
an HMAC-SHA256 over the first three parts. Whoever verifies needs only the long-lived token it
already has: there is no second secret to configure and nothing to store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from pydantic import SecretStr

PREFIX = "ebt1"
DEFAULT_TTL_S = 600.0
MAX_TOKEN_CHARS = 128
_DOMAIN = b"echostream browser token v1"


@dataclass(frozen=True)
class BrowserToken:
    """A minted token and when it stops being accepted (Unix seconds)."""

    token: str
    expires_at: int


def mint(secret: SecretStr, ttl_s: float = DEFAULT_TTL_S, now: float | None = None) -> BrowserToken:
    """A token that ``is_valid`` accepts with the same ``secret`` for ``ttl_s`` seconds."""
    expires_at = int((time.time() if now is None else now) + ttl_s)
    body = f"{PREFIX}.{expires_at}.{secrets.token_urlsafe(12)}"
    return BrowserToken(f"{body}.{_mac(secret, body)}", expires_at)


def is_browser_token(presented: str) -> bool:
    """True when ``presented`` has this module's shape (it may still be forged or expired)."""
    return presented.startswith(PREFIX + ".")


def is_valid(presented: str, secret: SecretStr, now: float | None = None) -> bool:
    """True when ``presented`` was minted with ``secret`` and has not expired."""
    if len(presented) > MAX_TOKEN_CHARS or not is_browser_token(presented):
        return False
    body, _, mac = presented.rpartition(".")
    parts = body.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    if not hmac.compare_digest(mac.encode(), _mac(secret, body).encode()):
        return False
    return int(parts[1]) > (time.time() if now is None else now)


def _mac(secret: SecretStr, body: str) -> str:
    key = hmac.new(secret.get_secret_value().encode(), _DOMAIN, hashlib.sha256).digest()
    digest = hmac.new(key, body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
