"""Customer records, scoped to what the asking principal may see.

`CustomerStore` is the only way the API reads or writes customers: each query
starts from `_visible()`, which applies team scoping, so an endpoint cannot
forget it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, bindparam, case, delete, func, or_
from sqlalchemy import select as core_select  # Core statements; sqlmodel's is for the ORM
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from hub.errors import Conflict, Forbidden, Invalid, Moved, NotFound
from hub.records.access import Action, customer_visible, may_use_team, require
from hub.records.auth import Principal
from hub.records.claims import CLAIMS_OF, claim_view, hidden_from, set_claims
from hub.records.identity import InvalidIdentity, NormalIdentity, normalize_email, normalize_phone
from hub.records.schemas import CustomerIn, CustomerPatch
from hub.store.models import (
    AuditEvent,
    Customer,
    CustomerTag,
    Identity,
    IdentityKind,
    Role,
    Team,
    User,
    UserTeam,
    utcnow,
)
from hub.store.tables import identity_t, tag_t

SCALAR_FIELDS = ("kind", "name", "company", "industry", "postal_code", "city", "country", "notes")


@dataclass(frozen=True, slots=True)
class CustomerFilter:
    q: str | None = None
    postal_code: str | None = None  # prefix
    city: str | None = None
    country: str | None = None
    industry: str | None = None
    # Every one of these tags (AND): a second tag narrows, never widens.
    tags: tuple[str, ...] = ()
    owner_id: int | None = None
    team_id: int | None = None
    kind: str | None = None
    last_contact_before: datetime | None = None
    last_contact_after: datetime | None = None


def last_contact() -> ColumnElement[Any]:
    """The later of last inbound and last outbound contact (NULL when neither)."""
    inbound, outbound = col(Customer.last_inbound_at), col(Customer.last_outbound_at)
    return case(
        (inbound.is_(None), outbound),
        (outbound.is_(None), inbound),
        (inbound > outbound, inbound),
        else_=outbound,
    )


# Built once: these run for every customer the API returns, so they skip the
# ORM and statement construction (the compiled form is cached per statement).
IDENTITIES_OF = (
    core_select(
        identity_t.c.customer_id,
        identity_t.c.kind,
        identity_t.c.value,
        identity_t.c.raw,
        identity_t.c.primary,
        identity_t.c.verified,
        identity_t.c.undeliverable_at,
        identity_t.c.undeliverable_reason,
        identity_t.c.soft_bounces,
    )
    .where(identity_t.c.customer_id.in_(bindparam("ids", expanding=True)))
    .order_by(identity_t.c.customer_id, identity_t.c.primary.desc(), identity_t.c.id)
)
TAGS_OF = (
    core_select(tag_t.c.customer_id, tag_t.c.tag)
    .where(tag_t.c.customer_id.in_(bindparam("ids", expanding=True)))
    .order_by(tag_t.c.customer_id, tag_t.c.tag)
)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class CustomerStore:
    def __init__(self, session: AsyncSession, principal: Principal, region: str) -> None:
        self.s = session
        self.p = principal
        self.region = region

    def _visible(self) -> SelectOfScalar[Customer]:
        return (
            select(Customer)
            .where(col(Customer.merged_into_id).is_(None))
            .where(customer_visible(self.p))
        )

    async def get(self, customer_id: int) -> Customer:
        found = (await self.s.exec(self._visible().where(Customer.id == customer_id))).first()
        if found is not None:
            return found
        # A merged id keeps resolving: follow the chain to the surviving record.
        seen = {customer_id}
        current = (await self.s.exec(select(Customer).where(Customer.id == customer_id))).first()
        while current is not None and current.merged_into_id is not None:
            target = current.merged_into_id
            if target in seen:
                break
            seen.add(target)
            current = (await self.s.exec(select(Customer).where(Customer.id == target))).first()
            if current is not None and current.merged_into_id is None:
                visible = await self.s.exec(self._visible().where(Customer.id == target))
                if visible.first() is not None:
                    raise Moved("customer", target)
        raise NotFound(f"no customer {customer_id}")

    async def search(
        self, flt: CustomerFilter, after_id: int | None, limit: int
    ) -> tuple[Sequence[Customer], int | None]:
        query = self._visible()
        if flt.q:
            pattern = f"%{_escape_like(flt.q.lower())}%"
            query = query.where(
                or_(
                    func.lower(Customer.name).like(pattern, escape="\\"),
                    func.lower(Customer.company).like(pattern, escape="\\"),
                )
            )
        if flt.postal_code:
            query = query.where(
                col(Customer.postal_code).like(f"{_escape_like(flt.postal_code)}%", escape="\\")
            )
        for field in ("city", "country", "industry", "owner_id", "team_id", "kind"):
            value = getattr(flt, field)
            if value is not None:
                query = query.where(getattr(Customer, field) == value)
        for tag in flt.tags:
            query = query.where(
                col(Customer.id).in_(select(CustomerTag.customer_id).where(CustomerTag.tag == tag))
            )
        if flt.last_contact_before:
            query = query.where(last_contact() < flt.last_contact_before)
        if flt.last_contact_after:
            query = query.where(last_contact() > flt.last_contact_after)
        if after_id is not None:
            query = query.where(col(Customer.id) > after_id)
        rows = (await self.s.exec(query.order_by(col(Customer.id)).limit(limit + 1))).all()
        page = rows[:limit]
        next_after = page[-1].id if len(rows) > limit and page else None
        return page, next_after

    async def details(
        self, ids: list[int]
    ) -> tuple[dict[int, list[Row[Any]]], dict[int, list[str]]]:
        """Identities and tags of many customers in two queries (Core: on every answer)."""
        identities: dict[int, list[Row[Any]]] = defaultdict(list)
        tags: dict[int, list[str]] = defaultdict(list)
        if not ids:
            return identities, tags
        conn = await self.s.connection()
        for ident in await conn.execute(IDENTITIES_OF, {"ids": ids}):
            identities[ident.customer_id].append(ident)
        for claim in await conn.execute(CLAIMS_OF, {"ids": ids}):
            # Shown as the identity it would have been: primary when it is the first of its kind.
            first = not any(i.kind == claim.kind for i in identities[claim.customer_id])
            identities[claim.customer_id].append(claim_view(claim, primary=first))
        for cid, tag in await conn.execute(TAGS_OF, {"ids": ids}):
            tags[cid].append(tag)
        return identities, tags

    def _normalize(self, emails: list[str], phones: list[str]) -> list[NormalIdentity]:
        out: dict[tuple[str, str], NormalIdentity] = {}
        try:
            for raw in emails:
                ident = normalize_email(raw)
                out.setdefault((ident.kind, ident.value), ident)
            for raw in phones:
                ident = normalize_phone(raw, self.region)
                out.setdefault((ident.kind, ident.value), ident)
        except InvalidIdentity as exc:
            raise Invalid(str(exc)) from exc
        return list(out.values())

    async def check_user(self, field: str, user_id: int | None) -> None:
        """A user id given in a request must name a user (422 otherwise, not a 409 from the FK)."""
        if user_id is not None:
            found = (await self.s.exec(select(User.id).where(User.id == user_id))).first()
            if found is None:
                raise Invalid(f"{field}: no user {user_id}")

    async def check_assignee(self, field: str, user_id: int | None, team_id: int | None) -> None:
        """An assignee must be able to see what they are given: a member of its team
        (or an admin). Else 422 naming why, not a task nobody on the team can see."""
        if user_id is None:
            return
        user = (await self.s.exec(select(User).where(User.id == user_id))).first()
        if user is None:
            raise Invalid(f"{field}: no user {user_id}")
        if team_id is None or user.role == Role.ADMIN.value:
            return
        member = (
            await self.s.exec(
                select(UserTeam.user_id)
                .where(UserTeam.user_id == user_id)
                .where(UserTeam.team_id == team_id)
            )
        ).first()
        if member is None:
            raise Invalid(f"{field}: user {user_id} is not a member of team {team_id}")

    async def get_for_reference(self, field: str, customer_id: int) -> Customer:
        """A customer named in a request body: a merged id is a 422 naming the survivor.

        (A 308 would make the client re-send the same body to the same URL.)
        """
        try:
            return await self.get(customer_id)
        except Moved as exc:
            raise Invalid(
                f"{field}: customer {customer_id} was merged into {exc.target_id}"
            ) from exc

    async def _check_refs(self, owner_id: int | None, team_id: int | None) -> None:
        await self.check_user("owner_id", owner_id)
        if not may_use_team(self.p, team_id):
            raise Forbidden(f"team_id: you are not a member of team {team_id}")
        if team_id is not None:
            found = (await self.s.exec(select(Team.id).where(Team.id == team_id))).first()
            if found is None:
                raise Invalid(f"team_id: no team {team_id}")

    async def _set_identities(self, customer_id: int, wanted: list[NormalIdentity]) -> None:
        keys = [(i.kind.value, i.value) for i in wanted]
        existing: list[Identity] = []
        for kind in (IdentityKind.EMAIL, IdentityKind.PHONE):
            values = [v for k, v in keys if k == kind.value]
            if values:
                existing.extend(
                    await self.s.exec(
                        select(Identity)
                        .where(Identity.kind == kind.value)
                        .where(col(Identity.value).in_(values))
                    )
                )
        conn = await self.s.connection()
        others = [t for t in existing if t.customer_id != customer_id]
        hidden = await hidden_from(conn, self.p, [t.customer_id for t in others])
        for taken in others:
            if taken.customer_id not in hidden:
                raise Conflict(f"{taken.kind} {taken.value} already belongs to another customer")
        # Held by a customer the caller may not see: claimed, not refused (claims.py).
        claimed = {(t.kind, t.value) for t in others}
        raw_of = {(i.kind.value, i.value): i.raw for i in wanted}
        await set_claims(
            conn,
            customer_id,
            [(k, v, raw_of[(k, v)]) for k, v in sorted(claimed)],
            [],
            self.p.user_id,
        )
        existing = [t for t in existing if t.customer_id == customer_id]
        wanted = [w for w in wanted if (w.kind.value, w.value) not in claimed]
        keys = [(i.kind.value, i.value) for i in wanted]
        first_of_kind: dict[str, str] = {}
        for want in wanted:
            first_of_kind.setdefault(want.kind.value, want.value)
        owned = {(i.kind, i.value) for i in existing}
        for current in existing:
            current.primary = first_of_kind.get(current.kind) == current.value
            self.s.add(current)
        stale = delete(Identity).where(col(Identity.customer_id) == customer_id)
        if keys:
            stale = stale.where(
                ~or_(*[and_(col(Identity.kind) == k, col(Identity.value) == v) for k, v in keys])
            )
        await self.s.exec(stale)
        for ident in wanted:
            if (ident.kind.value, ident.value) in owned:
                continue
            self.s.add(
                Identity(
                    customer_id=customer_id,
                    kind=ident.kind.value,
                    value=ident.value,
                    raw=ident.raw,
                    primary=first_of_kind[ident.kind.value] == ident.value,
                    verified=ident.verified,
                )
            )

    async def _set_tags(self, customer_id: int, tags: list[str]) -> None:
        clean = sorted({t.strip() for t in tags if t.strip()})
        if any(len(t) > 100 for t in clean):
            raise Invalid("tags: a tag is at most 100 characters")
        await self.s.exec(delete(CustomerTag).where(col(CustomerTag.customer_id) == customer_id))
        self.s.add_all([CustomerTag(customer_id=customer_id, tag=t) for t in clean])

    def _audit(self, action: str, customer_id: int | None, **detail: Any) -> None:
        self.s.add(
            AuditEvent(
                actor_id=self.p.user_id or None,
                action=action,
                entity="customer",
                entity_id=customer_id,
                # Found by `audit?customer_id=`, the subject export and erasure's scrub.
                customer_id=customer_id,
                detail=detail,
            )
        )

    async def create(self, data: CustomerIn, default_team_id: int | None) -> Customer:
        require(self.p, Action.WRITE_CUSTOMER)
        team_id = data.team_id
        if team_id is None:
            team_id = min(self.p.team_ids) if self.p.team_ids else default_team_id
        await self._check_refs(data.owner_id, team_id)
        identities = self._normalize(data.emails, data.phones)
        customer = Customer(
            **{f: getattr(data, f) for f in SCALAR_FIELDS},
            custom=data.custom,
            owner_id=data.owner_id,
            team_id=team_id,
        )
        self.s.add(customer)
        await self.s.flush()
        assert customer.id is not None
        await self._set_identities(customer.id, identities)
        await self._set_tags(customer.id, data.tags)
        self._audit("create", customer.id)
        await self.s.flush()
        return customer

    async def update(self, customer_id: int, patch: CustomerPatch) -> Customer:
        require(self.p, Action.WRITE_CUSTOMER)
        customer = await self.get(customer_id)
        sent = patch.model_fields_set
        if "owner_id" in sent or "team_id" in sent:
            team_id = patch.team_id if "team_id" in sent else customer.team_id
            await self._check_refs(patch.owner_id if "owner_id" in sent else None, team_id)
        for field in SCALAR_FIELDS:
            value = getattr(patch, field)
            if field in sent and value is not None:
                setattr(customer, field, value)
        for field in ("owner_id", "team_id", "custom"):
            if field in sent:
                setattr(
                    customer, field, getattr(patch, field) or ({} if field == "custom" else None)
                )
        assert customer.id is not None
        if patch.emails is not None or patch.phones is not None:
            identities, _ = await self.details([customer.id])
            current = identities.get(customer.id, [])
            emails = (
                patch.emails
                if patch.emails is not None
                else [i.raw or i.value for i in current if i.kind == IdentityKind.EMAIL]
            )
            phones = (
                patch.phones
                if patch.phones is not None
                else [i.raw or i.value for i in current if i.kind == IdentityKind.PHONE]
            )
            await self._set_identities(customer.id, self._normalize(emails, phones))
        if patch.tags is not None:
            await self._set_tags(customer.id, patch.tags)
        customer.updated_at = utcnow()
        self.s.add(customer)
        self._audit("update", customer.id, fields=sorted(sent))
        await self.s.flush()
        return customer

    async def delete(self, customer_id: int) -> None:
        """Erase the record and everything attached (personal data must be deletable)."""
        require(self.p, Action.DELETE_CUSTOMER)
        customer = await self.get(customer_id)
        # Tombstones of records merged into this one hold no data; they go too.
        await self.s.exec(delete(Customer).where(col(Customer.merged_into_id) == customer.id))
        await self.s.delete(customer)
        self._audit("delete", customer_id)
        await self.s.flush()
