"""Merging customers: everything moves, the old id redirects, over the API and the CLI."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from channels.base import Channel, InboundContact
from hub.cli.main import main
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Consent, Customer, CustomerTag, Identity, Interaction, Task
from tests.support.api import Api


async def _two_records(api: Api, hub: Hub) -> tuple[int, int]:
    _, keep = await api.call(
        "POST",
        "/api/v1/customers",
        json={
            "name": "Alice Example",
            "emails": ["alice@example.org"],
            "tags": ["vip"],
            "custom": {"a": 1, "shared": "keep"},
        },
    )
    sms = await hub.ingestor.ingest(
        InboundContact(
            Channel.SMS,
            "+491716666666",
            text="from the phone",
            provider_id="S1",
            occurred_at=datetime(2026, 8, 1, tzinfo=UTC),
        )
    )
    _, other = await api.call(
        "PATCH",
        f"/api/v1/customers/{sms.customer_id}",
        json={
            "company": "Example GmbH",
            "city": "Berlin",
            "tags": ["b2b", "vip"],
            "custom": {"b": 2, "shared": "other"},
        },
    )
    await api.call("POST", "/api/v1/tasks", json={"customer_id": sms.customer_id, "title": "call"})
    async with hub.db.write() as s:
        s.add(Consent(customer_id=sms.customer_id, channel="sms", state="opted_out", source="STOP"))
    return keep["id"], other["id"]


async def test_merge_moves_everything_and_redirects(api: Api, hub: Hub, db: Database) -> None:
    keep, other = await _two_records(api, hub)
    status, body = await api.call("POST", f"/api/v1/customers/{keep}/merge/{other}", "sup")
    assert status == 200
    assert (body["id"], body["name"], body["company"], body["city"], body["tags"]) == (
        keep,
        "Alice Example",
        "Example GmbH",
        "Berlin",
        ["b2b", "vip"],
    )
    assert body["custom"] == {"a": 1, "b": 2, "shared": "keep"}
    assert [e["value"] for e in body["emails"]] == ["alice@example.org"]
    assert [(p["value"], p["primary"]) for p in body["phones"]] == [("+491716666666", False)]
    assert body["last_inbound_at"] == "2026-08-01T00:00:00+00:00"
    async with db.read() as s:
        for model in (Identity, Interaction, Task, Consent):
            owners = set((await s.exec(select(model.customer_id))).scalars())  # type: ignore[attr-defined,call-overload]
            assert owners == {keep}, model.__name__
        tomb = (await s.exec(select(Customer).where(Customer.id == other))).scalar_one()
        assert (tomb.merged_into_id, tomb.name, tomb.company, tomb.custom) == (keep, "", "", {})
        assert (
            list(
                (
                    await s.exec(select(CustomerTag.tag).where(CustomerTag.customer_id == other))
                ).scalars()
            )
            == []
        )
    # The old id keeps resolving for API clients.
    for suffix in ("", "/timeline?limit=1"):
        resp = await api.client.get(
            f"/api/v1/customers/{other}{suffix}",
            headers={"Authorization": f"Bearer {api.tokens['sup']}"},
            allow_redirects=False,
        )
        assert resp.status == 308
        assert resp.headers["Location"] == f"/api/v1/customers/{keep}{suffix}"
    resp = await api.client.get(
        f"/api/v1/customers/{other}", headers={"Authorization": f"Bearer {api.tokens['sup']}"}
    )
    assert resp.status == 200 and (await resp.json())["id"] == keep
    # A new contact from the merged number lands on the survivor.
    r = await hub.ingestor.ingest(InboundContact(Channel.SMS, "0171 6666666", provider_id="S2"))
    assert (r.customer_id, r.created_customer) == (keep, False)


async def test_merge_chain_and_errors(api: Api, hub: Hub) -> None:
    ids = []
    for n in range(3):
        _, c = await api.call("POST", "/api/v1/customers", json={"name": f"C{n}"})
        ids.append(c["id"])
    assert (await api.call("POST", f"/api/v1/customers/{ids[1]}/merge/{ids[0]}"))[0] == 200
    assert (await api.call("POST", f"/api/v1/customers/{ids[2]}/merge/{ids[1]}"))[0] == 200
    status, body = await api.call("GET", f"/api/v1/customers/{ids[0]}")
    assert status == 308 and body["detail"] == f"customer was merged into {ids[2]}"
    status, body = await api.call("POST", f"/api/v1/customers/{ids[2]}/merge/{ids[0]}")
    assert (status, body["detail"]) == (409, f"customer {ids[0]} was already merged into {ids[2]}")
    status, body = await api.call("POST", f"/api/v1/customers/{ids[2]}/merge/{ids[2]}")
    assert (status, body["detail"]) == (422, "cannot merge a customer into itself")


async def test_cli_merge(
    api: Api, hub: Hub, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keep, other = await _two_records(api, hub)
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  url: {db_url}\n")
    # The CLI runs its own event loop, so it runs in a thread here as in a shell.
    args = ["-c", str(config), "customer", "merge", str(keep), str(other)]
    assert await asyncio.to_thread(main, args) == 0
    assert capsys.readouterr().out.strip() == f"customer {other} merged into {keep}"
    assert await asyncio.to_thread(main, args) == 1
    assert (
        capsys.readouterr().err.strip()
        == f"crmhub: customer {other} was already merged into {keep}"
    )
