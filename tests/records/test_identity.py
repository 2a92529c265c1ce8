"""Normalisation rules for email addresses and phone numbers (pure functions)."""

from __future__ import annotations

import pytest

from hub.records.identity import (
    InvalidIdentity,
    normalize_address,
    normalize_email,
    normalize_phone,
)
from hub.store.models import IdentityKind


@pytest.mark.parametrize(
    "raw",
    [
        "Alice <ALICE@Example.ORG>",
        "alice@example.org",
        "  alice@EXAMPLE.org ",
        '"A." <Alice@example.org.>',
    ],
)
def test_email_forms_are_one_identity(raw: str) -> None:
    ident = normalize_email(raw)
    assert ident.kind == IdentityKind.EMAIL
    assert ident.value == "alice@example.org"
    assert ident.raw == raw.strip()


def test_idna_domain_has_one_form() -> None:
    assert normalize_email("kunde@Bücher.de").value == "kunde@xn--bcher-kva.de"
    assert normalize_email("kunde@xn--bcher-kva.de").value == "kunde@xn--bcher-kva.de"


def test_plus_tags_and_dots_are_kept() -> None:
    assert normalize_email("a.b+news@example.org").value == "a.b+news@example.org"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty email address"),
        ("not-an-address", "not an email address"),
        ("x@y", "invalid domain"),
        ("a b@example.org", "invalid local part"),
        ("a..b@example.org", "invalid local part"),
        ("a@exa_mple.org", "invalid domain"),
        ("a@example.org, b@example.org", "more than one address"),
    ],
)
def test_invalid_email_is_rejected_with_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidIdentity, match=reason):
        normalize_email(raw)


@pytest.mark.parametrize(
    "raw", ["030 1234567", "+49 30 1234567", "0049 (0)30-1234567", "+49301234567"]
)
def test_phone_forms_are_one_identity(raw: str) -> None:
    ident = normalize_phone(raw, "DE")
    assert (ident.kind, ident.value, ident.verified) == (IdentityKind.PHONE, "+49301234567", True)
    assert ident.raw == raw


def test_default_region_decides_national_numbers() -> None:
    assert normalize_phone("030 1234567", "DE").value == "+49301234567"
    assert normalize_phone("01 23 45 67 89", "FR").value == "+33123456789"


@pytest.mark.parametrize(("raw", "kept"), [("12", "12"), ("ext. 42-7", "42-7".replace("-", ""))])
def test_unparseable_phone_is_kept_unverified(raw: str, kept: str) -> None:
    ident = normalize_phone(raw, "DE")
    assert (ident.value, ident.verified, ident.raw) == (kept, False, raw)


def test_phone_without_digits_is_rejected() -> None:
    with pytest.raises(InvalidIdentity, match="no digits"):
        normalize_phone("call me", "DE")


def test_address_kind_is_chosen_by_at_sign() -> None:
    assert normalize_address("Bob <bob@example.org>", "DE").kind == IdentityKind.EMAIL
    assert normalize_address("+49 30 1234567", "DE").kind == IdentityKind.PHONE


def test_a_very_long_number_is_not_a_phone_number() -> None:
    with pytest.raises(InvalidIdentity, match="too many digits for a phone number"):
        normalize_phone("1" * 33, "DE")
    assert normalize_phone("1" * 32, "DE").verified is False
