"""Malformed requests are a 4xx with the JSON error, never a 500, and store nothing.

Each case was a 500 with a traceback before: found by hand and by the
route fuzzer (tests/web/test_fuzz.py keeps new routes honest).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from hub.store.db import Database
from hub.store.models import Customer, Interaction, Task
from hub.web.params import encode_cursor
from tests.support.sms import PATH, PUBLIC, count, post_signed, sms_client, twilio_form

pytestmark = pytest.mark.db

STATUS_PATH = "/webhooks/twilio/sms/status"


@pytest.fixture
async def client(db_url: str, db: Database) -> AsyncIterator[TestClient[Any, Any]]:
    async with sms_client(db_url) as (test_client, _):
        yield test_client


async def _error(resp: Any) -> tuple[int, str, str]:
    body = await resp.json()
    return resp.status, body["error"], body["detail"]


async def _nothing_stored(db: Database) -> None:
    assert (await count(db, Interaction), await count(db, Customer)) == (0, 0)


async def test_a_non_ascii_signature_is_refused_as_not_matching(
    client: TestClient[Any, Any], db: Database
) -> None:
    resp = await client.post(PATH, data=twilio_form(), headers={"X-Twilio-Signature": "ü" * 28})
    assert await _error(resp) == (403, "forbidden", "X-Twilio-Signature does not match")
    await _nothing_stored(db)


async def test_a_form_in_an_unknown_charset_is_a_400(
    client: TestClient[Any, Any], db: Database
) -> None:
    content_type = "application/x-www-form-urlencoded; charset=no-such-charset"
    resp = await client.post(PATH, data=b"Body=hi", headers={"Content-Type": content_type})
    assert await _error(resp) == (
        400,
        "bad_request",
        "the form body cannot be decoded: unknown encoding: no-such-charset",
    )
    await _nothing_stored(db)


async def test_a_form_that_is_not_utf_8_is_a_400(
    client: TestClient[Any, Any], db: Database
) -> None:
    content_type = "application/x-www-form-urlencoded; charset=utf-8"
    resp = await client.post(
        PATH, data=b"Body=\xff\xfe&From=x", headers={"Content-Type": content_type}
    )
    status, error, detail = await _error(resp)
    assert (status, error) == (400, "bad_request")
    assert detail.startswith("the form body cannot be decoded: 'utf-8' codec can't decode byte")
    await _nothing_stored(db)


async def test_deeply_nested_json_at_login_is_a_400(client: TestClient[Any, Any]) -> None:
    body = b'{"username": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    resp = await client.post(
        "/api/v1/auth/token", data=body, headers={"Content-Type": "application/json"}
    )
    assert await _error(resp) == (400, "bad_request", "body is not valid JSON: nested too deeply")


@pytest.mark.parametrize("num_media", ["²", "٣", "1" * 50])
async def test_a_signed_num_media_that_is_no_small_ascii_number_is_a_400(
    client: TestClient[Any, Any], db: Database, num_media: str
) -> None:
    resp = await post_signed(client, twilio_form("SMx", NumMedia=num_media))
    assert await _error(resp) == (
        400,
        "bad_request",
        f"NumMedia must be a number from 0 to 10, not {num_media!r}",
    )
    await _nothing_stored(db)


@pytest.mark.parametrize("outbox", ["99999999999999999999", "²", "-1", "0"])
async def test_a_signed_status_callback_with_an_outbox_id_we_never_sent_is_a_400(
    client: TestClient[Any, Any], outbox: str
) -> None:
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    path = f"{STATUS_PATH}?outbox={quote(outbox)}"  # as Twilio calls it, percent-encoded
    resp = await post_signed(client, form, url=PUBLIC + path, path=path)
    assert await _error(resp) == (
        400,
        "bad_request",
        f"outbox must be an id we sent, not {outbox!r}",
    )


# PostgreSQL refuses NUL in text ("invalid byte sequence for encoding UTF8: 0x00"),
# SQLite stores it: found by the route fuzzer on PostgreSQL, refused at the edge on both
# (JSON bodies: by the request models, hub/records/schemas.py).


async def test_a_nul_character_in_a_query_parameter_is_a_400(api: Any, db: Database) -> None:
    status, body = await api.call("GET", "/api/v1/customers?tag=a%00b")
    assert (status, body) == (
        400,
        {"error": "bad_request", "detail": "query parameter 'tag' contains a NUL character"},
    )


@pytest.mark.parametrize("path", [PATH, STATUS_PATH])
async def test_a_nul_character_in_a_webhooks_query_is_a_400(
    client: TestClient[Any, Any], db: Database, path: str
) -> None:
    """Webhooks skip the API's middlewares (hub/web/webhooks/mount.py), not this check."""
    signed = f"{path}?outbox=1%00"
    resp = await post_signed(client, twilio_form("SMq"), url=PUBLIC + signed, path=signed)
    assert await _error(resp) == (
        400,
        "bad_request",
        "query parameter 'outbox' contains a NUL character",
    )
    await _nothing_stored(db)


async def test_a_webhook_path_with_another_method_is_a_405(
    client: TestClient[Any, Any], db: Database
) -> None:
    resp = await client.get(PATH)
    assert (resp.status, (await resp.json())["error"], resp.headers["Allow"]) == (
        405,
        "method_not_allowed",
        "POST",
    )


async def test_a_signed_sms_with_a_nul_character_is_a_400(
    client: TestClient[Any, Any], db: Database
) -> None:
    resp = await post_signed(client, twilio_form("SMx", body="a\u0000b"))
    assert await _error(resp) == (
        400,
        "bad_request",
        "the form field 'Body' contains a NUL character",
    )
    await _nothing_stored(db)


# A time at the edge of the calendar with an offset has no UTC value: the
# drivers' conversion overflowed (a 500 on every time filter and due_at).
EDGE_TIMES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]


@pytest.mark.parametrize("at", EDGE_TIMES)
@pytest.mark.parametrize(
    "query",
    [
        "/api/v1/customers?last_contact_before=",
        "/api/v1/customers?last_contact_after=",
        "/api/v1/tasks?due_before=",
        "/api/v1/audit?since=",
        "/api/v1/audit?until=",
    ],
)
async def test_a_time_filter_without_a_utc_value_is_a_400(
    api: Any, db: Database, query: str, at: str
) -> None:
    name = query.rsplit("?", 1)[1].rstrip("=")
    status, body = await api.call("GET", query + quote(at))
    assert (status, body) == (
        400,
        {
            "error": "bad_request",
            "detail": f"query parameter {name} is outside the years 1 to 9999 in UTC",
        },
    )


@pytest.mark.parametrize("at", EDGE_TIMES)
async def test_a_timeline_cursor_without_a_utc_value_is_a_400(
    api: Any, db: Database, at: str
) -> None:
    status, created = await api.call("POST", "/api/v1/customers", json={"name": "Ann"})
    assert status == 201
    cursor = encode_cursor([at, 1])
    status, body = await api.call(
        "GET", f"/api/v1/customers/{created['id']}/timeline?cursor={cursor}"
    )
    assert (status, body) == (
        400,
        {"error": "bad_request", "detail": "cursor is outside the years 1 to 9999 in UTC"},
    )


@pytest.mark.parametrize("at", EDGE_TIMES)
async def test_a_task_due_without_a_utc_value_is_a_422(api: Any, db: Database, at: str) -> None:
    status, created = await api.call("POST", "/api/v1/customers", json={"name": "Ann"})
    assert status == 201
    task = {"customer_id": created["id"], "title": "call back", "due_at": at}
    status, body = await api.call("POST", "/api/v1/tasks", json=task)
    assert status == 422
    assert body["detail"] == [
        {"field": "due_at", "message": "Value error, must lie within the years 1 to 9999 in UTC"}
    ]
    assert await count(db, Task) == 0
