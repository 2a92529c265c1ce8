"""Rendering: sandboxed, strict names with explicit fallbacks, autoescape in HTML only,
a failure that names the part, and the shipped defaults in German and English."""

from __future__ import annotations

from typing import Any

import pytest

from hub.templating import Rendered, TemplateError, TemplateParts, render
from hub.templating.defaults import load_defaults, system_template

ANNA: dict[str, Any] = {
    "customer_id": 1,
    "name": "Anna Schmidt",
    "first_name": "Anna",
    "last_name": "Schmidt",
    "salutation": "Sehr geehrte Frau",
    "company": "Schmidt & Söhne <GmbH>",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
    "industry": "retail",
    "owner_name": "Olga Owner",
    "email": "anna@example.org",
    "phone": "",
    "custom": {"tier": "gold"},
    "unsubscribe_url": "https://crm.example.com/u/TOKEN",
}


def test_email_parts_escape_html_only() -> None:
    parts = TemplateParts(
        subject="Hallo {{ company }}",
        html="<p>{{ company }}</p>",
        text="{{ company }} ({{ custom.tier }})",
    )
    assert render(parts, ANNA) == Rendered(
        subject="Hallo Schmidt & Söhne <GmbH>",
        html="<p>Schmidt &amp; Söhne &lt;GmbH&gt;</p>",
        text="Schmidt & Söhne <GmbH> (gold)",
        body="",
    )


def test_fallbacks_take_missing_and_empty_values() -> None:
    parts = TemplateParts(body='Hallo {{ first_name | default("Kundin, Kunde") }} {{ x | d("!") }}')
    assert render(parts, {**ANNA, "first_name": ""}).body == "Hallo Kundin, Kunde !"
    assert render(parts, ANNA).body == "Hallo Anna !"


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        (TemplateParts(body="Hallo {{ frist_name }}"), "body: 'frist_name' is undefined"),
        (
            TemplateParts(subject="{{ custom.size }}"),
            "subject: 'dict object' has no attribute 'size'",
        ),
        (TemplateParts(text="{% if %}"), "text, line 1: Expected an expression"),
        (TemplateParts(body="{{ 1 / 0 }}"), "body: ZeroDivisionError: division by zero"),
        (
            TemplateParts(body="{{ first_name.__class__.__mro__ }}"),
            "body: not allowed in a template: access to attribute '__class__'",
        ),
    ],
)
def test_a_failing_template_names_the_part_and_the_reason(
    parts: TemplateParts, reason: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        render(parts, ANNA)
    assert caught.value.reason.startswith(reason), caught.value.reason


def test_one_failing_recipient_fails_alone() -> None:
    """A campaign renders per recipient: the customer without `tier` fails, the rest render."""
    parts = TemplateParts(body="{{ first_name }}: {{ custom.tier }}")
    recipients = [ANNA, {**ANNA, "first_name": "Bea", "custom": {}}, {**ANNA, "first_name": "Cem"}]
    results: list[str] = []
    for ctx in recipients:
        try:
            results.append(render(parts, ctx).body)
        except TemplateError as exc:
            results.append(f"failed: {exc.reason}")
    assert results == [
        "Anna: gold",
        "failed: body: 'dict object' has no attribute 'tier'",
        "Cem: gold",
    ]


def test_a_subject_stays_one_line() -> None:
    assert render(TemplateParts(subject="a\r\nBcc: x@y {{ city }}\n"), ANNA).subject == (
        "a Bcc: x@y Berlin"
    )


def test_the_defaults_render_in_german_and_english() -> None:
    rendered = {d.name: (d.channel, render(d.parts, ANNA)) for d in load_defaults()}
    assert sorted(rendered) == [
        "follow-up-de",
        "follow-up-en",
        "newsletter-de",
        "newsletter-en",
        "sms-announcement-de",
        "sms-announcement-en",
    ]
    channel, de = rendered["newsletter-de"]
    assert channel == "email"
    assert de.subject == "Unser Newsletter: Neuigkeiten für Sie"
    assert de.text.startswith("Sehr geehrte Frau Anna Schmidt,\n\nhier sind unsere Neuigkeiten")
    assert "Ihre Ansprechperson Olga Owner" in de.text
    assert '<a href="https://crm.example.com/u/TOKEN">Newsletter abbestellen</a>' in de.html
    _, en = rendered["newsletter-en"]
    assert (en.subject, en.text.splitlines()[0]) == ("Our newsletter: news for you", "Dear Anna,")
    assert "Unsubscribe: https://crm.example.com/u/TOKEN" in en.text
    _, follow_de = rendered["follow-up-de"]
    assert follow_de.subject == "Kurze Nachfrage für Schmidt & Söhne <GmbH>"
    assert "Schmidt &amp; Söhne" not in follow_de.subject
    assert rendered["sms-announcement-de"] == (
        "sms",
        Rendered(body="Hallo Anna, wir haben Neuigkeiten für Sie. Abmelden: STOP"),
    )
    assert rendered["sms-announcement-en"][1].body == (
        "Hi Anna, we have news for you. Reply STOP to opt out."
    )
    # With nothing known about the recipient, the fallbacks carry every default.
    bare = {k: ("" if isinstance(v, str) else v) for k, v in ANNA.items()}
    bare["custom"], bare["unsubscribe_url"] = {}, "https://x/u/T"
    assert render(load_defaults()[2].parts, bare).text.startswith(
        "Guten Tag  liebe Kundin, lieber Kunde,"
    )


def test_the_signup_confirmation_falls_back_to_english() -> None:
    assert system_template("signup-confirmation", "fr") == system_template(
        "signup-confirmation", "en"
    )
    de = render(system_template("signup-confirmation", "de"), {"name": "", "confirm_url": "L"})
    assert de.subject == "Bitte bestätigen Sie Ihre Newsletter-Anmeldung"
    assert "\nL\n" in de.text
