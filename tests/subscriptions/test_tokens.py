"""Signed link tokens: round trip, compact and URL-safe, and every forgery refused."""

from __future__ import annotations

import re

import pytest

from hub.subscriptions.tokens import (
    CONFIRM_SIGNUP,
    InvalidToken,
    TokenClaims,
    make_token,
    read_token,
)

KEY = "k" * 32


def test_round_trip_and_shape() -> None:
    token = make_token(KEY, 123456, 78, 9, now=3600 * 500_000)
    assert re.fullmatch(r"[A-Za-z0-9._-]+", token)
    assert len(token) < 50
    assert read_token(KEY, token) == TokenClaims("u", 123456, 78, 9, 500_000)
    assert read_token(KEY, make_token(KEY, 1, None, None, now=0)) == TokenClaims(
        "u", 1, None, None, 0
    )


def _flip(token: str, index: int) -> str:
    ch = token[index]
    return token[:index] + ("1" if ch != "1" else "2") + token[index + 1 :]


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: _flip(t, 2),  # another customer
        lambda t: t.replace(".", "..", 1),
        lambda t: t[:-1],
        lambda t: t + "A",
        lambda t: t.rsplit(".", 1)[0],
        lambda t: "s" + t[1:],  # an unsubscribe token used as a sign-up confirmation
        lambda t: make_token("x" * 32, 5, None, None),  # another key
        lambda t: "",
        lambda t: "a" * 500,
        lambda t: "u.5...0." + t.rsplit(".", 1)[1],
    ],
)
def test_forged_tokens_are_refused(forge: object) -> None:
    token = make_token(KEY, 5, 6, 7)
    forged = forge(token)  # type: ignore[operator]
    with pytest.raises(InvalidToken):
        read_token(KEY, forged)


def test_purposes_do_not_mix() -> None:
    confirm = make_token(KEY, 5, 6, None, purpose=CONFIRM_SIGNUP)
    with pytest.raises(InvalidToken):
        read_token(KEY, confirm)
    assert read_token(KEY, confirm, purpose=CONFIRM_SIGNUP).customer_id == 5


def test_a_short_key_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="16"):
        make_token("short", 1, None, None)
