"""Newsletter sign-up with double opt-in, through the outbox into a real aiosmtpd sink."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from hub.runtime import Hub
from hub.store.tables import consent_t, customer_t, identity_t
from tests.subscriptions.conftest import PUBLIC_URL
from tests.support.api import Api
from tests.support.smtp_server import SmtpServer

SENT = {
    "status": "Thank you! If the address can receive mail, a confirmation link is on its way. "
    "We send the newsletter only after you confirm."
}
SENT_DE = (
    "Danke! Wenn die Adresse E-Mails empfangen kann, ist ein Bestätigungslink unterwegs. "
    "Erst mit Ihrer Bestätigung senden wir den Newsletter."
)


async def _rows(hub: Hub, query: Any) -> list[tuple[Any, ...]]:
    async with hub.db.read() as s:
        return [tuple(r) for r in await (await s.connection()).execute(query)]


async def _sign_up(api: Api, **body: str) -> tuple[int, Any]:
    resp = await api.client.post("/subscribe", json=body)
    return resp.status, await resp.json()


async def test_double_opt_in_end_to_end(api: Api, hub: Hub, smtp_server: SmtpServer) -> None:
    status, body = await _sign_up(api, email="Neu@Example.org", name="Nina Neu", locale="de")
    assert (status, body) == (202, {"status": SENT_DE})
    assert await hub.dispatcher.run_once() == 1
    (mail,) = smtp_server.received
    assert mail.rcpt_tos == ["neu@example.org"]
    msg = mail.message
    assert msg["Subject"] == "Bitte bestätigen Sie Ihre Newsletter-Anmeldung"
    text = msg.get_content()
    assert text.startswith("Guten Tag Nina Neu,")
    (link,) = re.findall(rf"{re.escape(PUBLIC_URL)}/subscribe/confirm/\S+", text)
    path = link.removeprefix(PUBLIC_URL)
    # A lead with just that address; no consent until the link is confirmed.
    (customer,) = await _rows(
        hub, select(customer_t.c.id, customer_t.c.kind, customer_t.c.name, customer_t.c.team_id)
    )
    assert customer[1:] == ("lead", "Nina Neu", api.team_ids["Support"])
    assert await _rows(hub, select(identity_t.c.value)) == [("neu@example.org",)]
    page = await api.client.get(path)  # a mail scanner fetching the link changes nothing
    assert page.status == 200
    assert f'action="{path}"' in await page.text()
    assert await _rows(hub, select(consent_t.c.id)) == []
    for _ in range(2):
        done = await api.client.post(path, data="confirm=1")
        assert done.status == 200
        assert "Thank you, your subscription is confirmed." in await done.text()
    consent = await _rows(
        hub,
        select(
            consent_t.c.customer_id,
            consent_t.c.channel,
            consent_t.c.purpose,
            consent_t.c.state,
            consent_t.c.source,
        ),
    )
    assert len(consent) == 1
    assert consent[0][:4] == (customer[0], "email", "newsletter", "opted_in")
    assert re.fullmatch(
        r"newsletter sign-up, double opt-in \(asked \d{4}-\d\d-\d\d \d\d:00 UTC, "
        r"confirmed by link\)",
        consent[0][4],
    )
    forged = path[:-3] + ("xyz" if not path.endswith("xyz") else "abc")
    assert (await api.client.post(forged)).status == 400


async def test_the_answer_does_not_tell_whether_an_address_is_known(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    status, _ = await api.call(
        "POST", "/api/v1/customers", json={"name": "Known", "emails": ["known@example.org"]}
    )
    assert status == 201
    assert await _sign_up(api, email="known@example.org") == (202, SENT)
    assert await _sign_up(api, email="unknown@example.org") == (202, SENT)
    assert await hub.dispatcher.run_once() == 2
    assert sorted(m.rcpt_tos[0] for m in smtp_server.received) == [
        "known@example.org",
        "unknown@example.org",
    ]
    # The known address stays with its customer: no second record.
    assert await _rows(hub, select(customer_t.c.name).order_by(customer_t.c.id)) == [
        ("Known",),
        ("",),
    ]


async def test_bad_input_and_throttling(api: Api, hub: Hub, smtp_server: SmtpServer) -> None:
    status, body = await _sign_up(api, email="not an address")
    assert (status, body["error"]) == (422, "invalid")
    status, body = await _sign_up(api, email="a@example.org", colour="red")
    assert (status, body["detail"]) == (400, "unknown field colour (known: email, name, locale)")
    # One address gets at most 3 confirmation mails an hour, silently (same answer).
    for _ in range(4):
        assert await _sign_up(api, email="victim@example.org") == (202, SENT)
    # signup_per_hour is 5 per client address in this config (the 422 counted): refused.
    status, body = await _sign_up(api, email="victim@example.org")
    assert status == 429
    assert await hub.dispatcher.run_once() == 3
    assert [m.rcpt_tos for m in smtp_server.received] == [["victim@example.org"]] * 3


async def test_the_form_page_posts_back_as_a_form(api: Api, hub: Hub) -> None:
    page = await api.client.get("/subscribe", headers={"Accept-Language": "de"})
    html = await page.text()
    assert page.status == 200
    assert '<form method="post" action="/subscribe"' in html
    assert "Set-Cookie" not in page.headers
    resp = await api.client.post(
        "/subscribe", data={"email": "form@example.org", "name": "F", "locale": "de"}
    )
    assert resp.status == 202
    assert "Bestätigungslink" in await resp.text()


async def test_hostile_fields_are_refused_before_anything_is_stored(api: Api, hub: Hub) -> None:
    for body in (
        {"email": "a@example.org", "name": "x\x00y"},
        {"email": "a\x00@example.org"},
    ):
        status, answer = await _sign_up(api, **body)
        assert (status, answer["error"]) == (400, "bad_request"), answer
    status, answer = await _sign_up(api, email="a" * 60 + "@" + "b" * 250 + ".org")
    assert (status, answer["error"]) == (422, "invalid")
    resp = await api.client.post(
        "/subscribe", data="x" * 5000, headers={"Content-Type": "text/plain"}
    )
    assert resp.status == 413
    assert await _rows(hub, select(customer_t.c.id)) == []
