"""Short-lived browser tokens: accepted with their secret until they expire, and never otherwise."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from echostream_shared import browser_tokens as bt

SECRET = SecretStr("the-long-lived-token")


def test_a_minted_token_is_valid_until_it_expires() -> None:
    minted = bt.mint(SECRET, ttl_s=60, now=1_000.0)
    assert minted.expires_at == 1_060
    assert bt.is_browser_token(minted.token)
    assert bt.is_valid(minted.token, SECRET, now=1_059.0)
    assert not bt.is_valid(minted.token, SECRET, now=1_060.0)
    assert not bt.is_valid(minted.token, SecretStr("another-token"), now=1_000.0)


def test_tokens_differ_each_time() -> None:
    assert bt.mint(SECRET, now=0).token != bt.mint(SECRET, now=0).token


def test_a_token_with_a_later_expiry_written_in_is_refused() -> None:
    token = bt.mint(SECRET, ttl_s=60, now=1_000.0).token
    prefix, expiry, nonce, mac = token.split(".")
    forged = ".".join([prefix, str(int(expiry) + 3600), nonce, mac])
    assert not bt.is_valid(forged, SECRET, now=1_100.0)


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "the-long-lived-token",
        "ebt1.",
        "ebt1.123.abc",
        "ebt1.notanumber.abc.def",
        "ebt1.99999999999.abc.def.ghi",
        "ebt1." + "9" * 200,
    ],
)
def test_malformed_tokens_are_refused(presented: str) -> None:
    assert not bt.is_valid(presented, SECRET, now=0)


def test_the_long_lived_token_is_not_mistaken_for_a_browser_token() -> None:
    assert not bt.is_browser_token(SECRET.get_secret_value())
