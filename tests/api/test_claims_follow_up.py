"""Identity claims answer like free identities in lookup too, follow merges, and are exported."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from hub.privacy.subject_export import collect
from hub.runtime import Hub
from hub.store.tables import claim_t, identity_t
from tests.support.api import Api

pytestmark = pytest.mark.db


async def _create(api: Api, as_: str, **fields: Any) -> dict[str, Any]:
    status, body = await api.call("POST", "/api/v1/customers", as_, json=fields)
    assert status == 201, body
    return body  # type: ignore[no-any-return]


async def _claims(hub: Hub) -> list[tuple[int, str]]:
    async with hub.db.read() as s:
        conn = await s.connection()
        rows = await conn.execute(select(claim_t.c.customer_id, claim_t.c.value))
        return [tuple(r) for r in rows]


async def test_lookup_by_a_claimed_identity_finds_the_callers_record(api: Api) -> None:
    sales = await _create(api, "sales_agent", name="Bob", phones=["+4930777888"])
    mine = await _create(api, "agent", name="Bob", phones=["030 777888"])

    async def card(as_: str) -> tuple[str, int]:
        status, body = await api.call("GET", "/api/v1/lookup?phone=%2B4930777888", as_)
        assert status == 200, body
        return body["status"], body["customer"]["id"]

    # The team that claimed the number gets its own record, as for a free number.
    assert await card("agent") == ("known", mine["id"])
    assert await card("sales_agent") == ("known", sales["id"])
    assert await card("admin") == ("known", sales["id"])  # the holder


async def test_merging_the_pair_resolves_the_claim(api: Api, hub: Hub) -> None:
    sales = await _create(api, "sales_agent", name="Dan", emails=["dan@example.org"])
    mine = await _create(api, "agent", name="Dan", emails=["dan@example.org"])
    assert await _claims(hub) == [(mine["id"], "dan@example.org")]
    status, kept = await api.call(
        "POST", f"/api/v1/customers/{mine['id']}/merge/{sales['id']}", "admin"
    )
    assert status == 200, kept
    # The address is now the kept record's own, listed once, and no claim is left.
    assert [e["value"] for e in kept["emails"]] == ["dan@example.org"]
    assert await _claims(hub) == []
    async with hub.db.read() as s:
        conn = await s.connection()
        holder = (
            await conn.execute(
                select(identity_t.c.customer_id).where(identity_t.c.value == "dan@example.org")
            )
        ).scalar()
    assert holder == mine["id"]


async def test_claims_of_the_merged_away_record_move_to_the_survivor(api: Api, hub: Hub) -> None:
    await _create(api, "sales_agent", name="Eve", emails=["eve@example.org"])
    claimant = await _create(api, "agent", name="Eve", emails=["eve@example.org"])
    other = await _create(api, "agent", name="Eve B")
    status, _ = await api.call(
        "POST", f"/api/v1/customers/{other['id']}/merge/{claimant['id']}", "sup"
    )
    assert status == 200
    assert await _claims(hub) == [(other["id"], "eve@example.org")]


async def test_the_subject_export_names_the_claims(api: Api, hub: Hub) -> None:
    await _create(api, "sales_agent", name="Fay", emails=["fay@example.org"])
    mine = await _create(api, "agent", name="Fay", emails=["fay@example.org"])
    async with hub.db.read() as s:
        data = await collect(await s.connection(), mine["id"])
    assert data["identities"] == []
    assert [c["value"] for c in data["identity_claims"]] == ["fay@example.org"]
