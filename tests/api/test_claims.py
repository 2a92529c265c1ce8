"""Creating a customer never reveals that an identity belongs to another team's customer."""

from __future__ import annotations

from tests.support.api import Api


async def test_an_identity_held_by_another_team_is_claimed_and_answered_like_a_free_one(
    api: Api,
) -> None:
    status, held = await api.call(
        "POST",
        "/api/v1/customers",
        "sales_agent",
        json={"name": "Sales Kunde", "emails": ["shared@example.org"]},
    )
    assert status == 201
    # The Support agent gives the same address: the answer is that of a free one.
    status, free = await api.call(
        "POST", "/api/v1/customers", "agent", json={"name": "Frei", "emails": ["free@example.org"]}
    )
    status2, claimed = await api.call(
        "POST", "/api/v1/customers", "agent", json={"name": "Neu", "emails": ["shared@example.org"]}
    )
    assert (status, status2) == (201, 201)
    strip = {"id", "name", "created_at", "updated_at"}

    def shape(body: dict[str, object]) -> dict[str, object]:
        out = {k: v for k, v in body.items() if k not in strip}
        out["emails"] = [
            {k: v for k, v in e.items() if k not in ("value", "raw")} for e in out["emails"]
        ]  # type: ignore[attr-defined]
        return out

    assert shape(claimed) == shape(free)
    assert [e["value"] for e in claimed["emails"]] == ["shared@example.org"]
    _, again = await api.call("GET", f"/api/v1/customers/{claimed['id']}", "agent")
    assert again["emails"] == claimed["emails"]
    # The identity stays with its holder; supervisors see the claim, admins the holder.
    _, sup = await api.call("GET", "/api/v1/identity-claims", "sup")
    assert [(c["customer_id"], c["value"]) for c in sup["items"]] == [
        (claimed["id"], "shared@example.org")
    ]
    assert "held_by_customer_id" not in sup["items"][0]
    _, admin = await api.call("GET", "/api/v1/identity-claims", "admin")
    assert admin["items"][0]["held_by_customer_id"] == held["id"]
    assert (await api.call("GET", "/api/v1/identity-claims", "agent"))[0] == 403
    _, sales_sup = await api.call("GET", "/api/v1/identity-claims", "sales_sup")
    assert sales_sup["items"] == []
    # The holder is unchanged; a holder the caller can see is still a 409.
    _, holder = await api.call("GET", f"/api/v1/customers/{held['id']}", "sales_agent")
    assert [e["value"] for e in holder["emails"]] == ["shared@example.org"]
    status, body = await api.call(
        "POST",
        "/api/v1/customers",
        "sales_agent",
        json={"name": "X", "emails": ["shared@example.org"]},
    )
    assert (status, body["detail"]) == (
        409,
        "email shared@example.org already belongs to another customer",
    )
    # Dropped: the record keeps no trace of the address.
    claim_id = sup["items"][0]["id"]
    assert (await api.call("DELETE", f"/api/v1/identity-claims/{claim_id}", "sales_sup"))[0] == 404
    assert (await api.call("DELETE", f"/api/v1/identity-claims/{claim_id}", "sup"))[0] == 204
    _, after = await api.call("GET", f"/api/v1/customers/{claimed['id']}", "agent")
    assert after["emails"] == []
