"""channels/sms/inbound.py alone: Twilio's form in, plain data out; TwiML out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels.base import AttachmentRef, Channel
from channels.sms.inbound import BodyTooLong, InvalidSmsForm, parse_inbound, twiml
from tests.support.sms import twilio_form

AT = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)


def test_form_becomes_contact_with_all_other_params_as_metadata() -> None:
    form = twilio_form(
        "SM42",
        "Hallo, grüße 👋",
        MessagingServiceSid="MG" + "1" * 32,
        FutureParam="added by Twilio later",
    )
    contact = parse_inbound(form, max_body_chars=1600, received_at=AT)
    assert (
        contact.channel,
        contact.provider_id,
        contact.sender,
        contact.recipient,
        contact.text,
        contact.occurred_at,
        contact.attachments,
    ) == (Channel.SMS, "SM42", "+4917155500001", "+49305550100", "Hallo, grüße 👋", AT, ())
    assert contact.metadata == {
        "twilio": {
            "ToCountry": "DE",
            "NumMedia": "0",
            "SmsStatus": "received",
            "NumSegments": "1",
            "AccountSid": "AC" + "0" * 32,
            "ApiVersion": "2010-04-01",
            "FromCountry": "DE",
            "MessagingServiceSid": "MG" + "1" * 32,
            "FutureParam": "added by Twilio later",
        }
    }


def test_media_become_attachment_references() -> None:
    base = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/"
    form = twilio_form(
        "MM1",
        "",
        NumMedia="2",
        MediaUrl0=base + "ME1",
        MediaContentType0="image/jpeg",
        MediaUrl1=base + "ME2",
        MediaContentType1="application/pdf",
    )
    contact = parse_inbound(form, max_body_chars=1600)
    assert contact.attachments == (
        AttachmentRef("ME1.jpg", "image/jpeg", url=base + "ME1"),
        AttachmentRef("ME2.pdf", "application/pdf", url=base + "ME2"),
    )
    assert "MediaUrl0" not in contact.metadata["twilio"]
    assert contact.metadata["twilio"]["NumMedia"] == "2"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"MessageSid": "", "SmsSid": ""}, "MessageSid is missing"),
        ({"From": " "}, "From is missing"),
        ({"NumMedia": "x"}, "NumMedia must be a number from 0 to 10, not 'x'"),
        ({"NumMedia": "11"}, "NumMedia must be a number from 0 to 10, not '11'"),
        ({"NumMedia": "1"}, "NumMedia is 1 but MediaUrl0 is missing"),
    ],
)
def test_unusable_forms_say_why(change: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidSmsForm) as info:
        parse_inbound({**twilio_form(), **change}, max_body_chars=1600)
    assert str(info.value) == message
    assert not isinstance(info.value, BodyTooLong)


def test_body_limit_counts_characters() -> None:
    assert parse_inbound(twilio_form(body="ä" * 1600), max_body_chars=1600).text == "ä" * 1600
    with pytest.raises(BodyTooLong, match="Body has 1601 characters; at most 1600 are accepted"):
        parse_inbound(twilio_form(body="a" * 1601), max_body_chars=1600)


def test_twiml_is_empty_without_reply_and_escaped_with_one() -> None:
    declaration = '<?xml version="1.0" encoding="UTF-8"?>'
    assert twiml(None) == declaration + "<Response />"
    assert twiml("") == declaration + "<Response />"
    assert twiml("Tom & <Jerry> ü") == (
        declaration + "<Response><Message>Tom &amp; &lt;Jerry&gt; ü</Message></Response>"
    )
