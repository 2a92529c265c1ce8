"""Templates over HTTP and in the database: versions, validation, preview for a customer,
the batched recipient contexts, and importing the shipped defaults."""

from __future__ import annotations

from sqlalchemy import select, update

from hub.runtime import Hub
from hub.store.tables import customer_t, message_template_t, template_version_t
from hub.templating import recipient_contexts
from hub.templating.defaults import import_defaults
from tests.support.api import Api

EMAIL = {
    "name": "welcome",
    "channel": "email",
    "locale": "de",
    "subject": "Willkommen {{ first_name | default('') }}",
    "html": "<p>Hallo {{ name }} von {{ company | default('Ihrer Firma') }}</p>",
    "text": "Hallo {{ name }}",
}


async def _customer(api: Api, **fields: object) -> int:
    status, body = await api.call("POST", "/api/v1/customers", json=fields)
    assert status == 201, body
    return int(body["id"])


async def test_create_version_show_and_list(api: Api, hub: Hub) -> None:
    status, made = await api.call("POST", "/api/v1/templates", "marketing", json=EMAIL)
    assert status == 201, made
    assert made == {**EMAIL, "id": 1, "version": 1, "body": ""}
    status, v2 = await api.call(
        "POST",
        "/api/v1/templates/1/versions",
        "marketing",
        json={"subject": "Neu: {{ name }}", "text": "Hallo {{ name }}!"},
    )
    assert (status, v2["version"], v2["html"]) == (201, 2, "")
    status, shown = await api.call("GET", "/api/v1/templates/1")
    assert (status, shown["version"], shown["subject"]) == (200, 2, "Neu: {{ name }}")
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    status, old = await api.call("GET", "/api/v1/templates/1?version=1")
    assert (status, old["subject"]) == (200, EMAIL["subject"])
    assert (await api.call("GET", "/api/v1/templates/1?version=3"))[0] == 404
    status, listed = await api.call("GET", "/api/v1/templates", "agent")
    assert status == 200
    assert [(t["name"], t["channel"], t["version"]) for t in listed["items"]] == [
        ("welcome", "email", 2)
    ]
    async with hub.db.read() as s:
        rows = (await s.connection()).execute(
            select(template_version_t.c.version, template_version_t.c.created_by)
        )
        assert sorted((await rows).all()) == [
            (1, api.user_ids["marketing"]),
            (2, api.user_ids["marketing"]),
        ]


async def test_invalid_templates_are_refused_and_nothing_is_stored(api: Api, hub: Hub) -> None:
    cases = [
        ({**EMAIL, "html": "{% for %}"}, 422, "html, line 1"),
        ({**EMAIL, "subject": ""}, 422, "subject: an email template needs a subject"),
        ({"name": "s", "channel": "sms", "body": "x", "subject": "y"}, 422, "subject: an SMS"),
        ({"name": "s", "channel": "sms"}, 422, "body: an SMS template needs a body"),
        ({**EMAIL, "channel": "fax"}, 422, None),
        ({**EMAIL, "colour": "red"}, 422, None),
    ]
    for body, status, detail in cases:
        got, answer = await api.call("POST", "/api/v1/templates", "marketing", json=body)
        assert got == status, (body, answer)
        if detail:
            assert detail in answer["detail"]
    assert (await api.call("POST", "/api/v1/templates", "agent", json=EMAIL))[0] == 403
    async with hub.db.read() as s:
        count = await (await s.connection()).execute(select(message_template_t.c.id))
        assert count.all() == []
    assert (await api.call("POST", "/api/v1/templates", json=EMAIL))[0] == 201
    assert (await api.call("POST", "/api/v1/templates", json=EMAIL))[0] == 409
    got, answer = await api.call(
        "POST", "/api/v1/templates/1/versions", json={"body": "sms text on an email template"}
    )
    assert got == 422 and "body: an email template" in answer["detail"]


async def test_preview_for_a_customer(api: Api, hub: Hub) -> None:
    cid = await _customer(
        api, name="Anna Schmidt", company="A&B", emails=["anna@example.org"], custom={"x": "1"}
    )
    async with hub.db.write() as s:
        await (await s.connection()).execute(
            update(customer_t).where(customer_t.c.id == cid).values(owner_id=api.user_ids["agent"])
        )
    await api.call("POST", "/api/v1/templates", json=EMAIL)
    status, shown = await api.call(
        "POST", "/api/v1/templates/1/preview", "marketing", json={"customer_id": cid}
    )
    assert status == 200, shown
    assert shown == {
        "template_id": 1,
        "version": 1,
        "customer_id": cid,
        "subject": "Willkommen Anna",
        "html": "<p>Hallo Anna Schmidt von A&amp;B</p>",
        "text": "Hallo Anna Schmidt",
        "body": "",
    }
    # A template that fails for this customer: 422 with the reason.
    await api.call(
        "POST",
        "/api/v1/templates/1/versions",
        json={"subject": "{{ custom.missing }}", "text": "t"},
    )
    status, failed = await api.call(
        "POST", "/api/v1/templates/1/preview", json={"customer_id": cid}
    )
    assert status == 422
    assert (
        failed["detail"] == "template welcome v2: subject: 'dict object' has no attribute 'missing'"
    )
    # A customer of another team is not found.
    other = await _customer(api, name="Sven")
    async with hub.db.write() as s:
        await (await s.connection()).execute(
            update(customer_t).where(customer_t.c.id == other).values(team_id=api.team_ids["Sales"])
        )
    status, _ = await api.call(
        "POST", "/api/v1/templates/1/preview", "marketing", json={"customer_id": other}
    )
    assert status == 404


async def test_recipient_contexts_in_one_batch(api: Api, hub: Hub) -> None:
    a = await _customer(
        api,
        name="Anna Maria Schmidt",
        company="ACME",
        emails=["anna@example.org"],
        phones=["+49 30 1234567"],
        custom={"salutation": "Frau Dr.", "tier": "gold"},
    )
    b = await _customer(api, name="Solo")
    async with hub.db.write() as s:
        await (await s.connection()).execute(
            update(customer_t).where(customer_t.c.id == a).values(owner_id=api.user_ids["agent"])
        )
    async with hub.db.read() as s:
        got = await recipient_contexts(await s.connection(), [a, b, 999])
    assert got == {
        a: {
            "customer_id": a,
            "name": "Anna Maria Schmidt",
            "first_name": "Anna Maria",
            "last_name": "Schmidt",
            "salutation": "Frau Dr.",
            "company": "ACME",
            "city": "",
            "postal_code": "",
            "country": "",
            "industry": "",
            "owner_name": "agent",
            "email": "anna@example.org",
            "phone": "+49301234567",
            "custom": {"salutation": "Frau Dr.", "tier": "gold"},
        },
        b: {
            "customer_id": b,
            "name": "Solo",
            "first_name": "",
            "last_name": "Solo",
            "salutation": "",
            "company": "",
            "city": "",
            "postal_code": "",
            "country": "",
            "industry": "",
            "owner_name": "",
            "email": "",
            "phone": "",
            "custom": {},
        },
    }


async def test_import_defaults_creates_once_and_updates_on_request(hub: Hub) -> None:
    async with hub.db.write() as s:
        first = await import_defaults(await s.connection())
    assert first == {
        "follow-up-de": "created",
        "follow-up-en": "created",
        "newsletter-de": "created",
        "newsletter-en": "created",
        "sms-announcement-de": "created",
        "sms-announcement-en": "created",
    }
    async with hub.db.write() as s:
        conn = await s.connection()
        assert set((await import_defaults(conn)).values()) == {"kept"}
        assert set((await import_defaults(conn, update=True)).values()) == {"kept"}
        rows = await conn.execute(
            select(
                message_template_t.c.name, message_template_t.c.channel, message_template_t.c.locale
            ).order_by(message_template_t.c.name)
        )
        assert rows.all()[-2:] == [
            ("sms-announcement-de", "sms", "de"),
            ("sms-announcement-en", "sms", "en"),
        ]
