"""Merges racing each other and racing ingest: nothing lost, never two tombstones."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from channels.base import Channel, InboundContact
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Customer, Interaction
from tests.support.api import Api


async def test_opposite_merges_at_once_leave_one_live_record(api: Api, db: Database) -> None:
    for round_ in range(5):
        _, a = await api.call("POST", "/api/v1/customers", json={"name": f"A{round_}"})
        _, b = await api.call("POST", "/api/v1/customers", json={"name": f"B{round_}"})
        answers = await asyncio.gather(
            api.call("POST", f"/api/v1/customers/{a['id']}/merge/{b['id']}"),
            api.call("POST", f"/api/v1/customers/{b['id']}/merge/{a['id']}"),
        )
        assert sorted(status for status, _ in answers) == [200, 409], answers
        async with db.read() as s:
            rows = (
                await s.exec(  # type: ignore[call-overload]
                    select(Customer.id, Customer.merged_into_id)
                    .where(Customer.id.in_([a["id"], b["id"]]))  # type: ignore[attr-defined]
                    .order_by(Customer.id)
                )
            ).all()
        live = [cid for cid, merged in rows if merged is None]
        assert len(live) == 1, rows
        assert [merged for cid, merged in rows if merged is not None] == live


async def test_contacts_during_a_merge_land_on_the_survivor(
    api: Api, hub: Hub, db: Database
) -> None:
    for round_ in range(5):
        phone = f"+49171555{round_:04d}"
        _, keep = await api.call("POST", "/api/v1/customers", json={"name": "Keep"})
        _, other = await api.call(
            "POST", "/api/v1/customers", json={"name": "Other", "phones": [phone]}
        )
        contacts = [
            hub.ingestor.ingest(
                InboundContact(Channel.SMS, phone, text=f"m{i}", provider_id=f"SM{round_}-{i}")
            )
            for i in range(30)
        ]
        merge = api.call("POST", f"/api/v1/customers/{keep['id']}/merge/{other['id']}")
        *_, (status, _) = await asyncio.gather(*contacts, merge)
        assert status == 200
        async with db.read() as s:
            owners = (
                (
                    await s.exec(  # type: ignore[call-overload]
                        select(Interaction.customer_id).where(
                            Interaction.provider_id.like(f"SM{round_}-%")  # type: ignore[union-attr]
                        )
                    )
                )
                .scalars()
                .all()
            )
        assert len(owners) == 30
        assert set(owners) == {keep["id"]}, round_
