"""Demo data for `make run`: users, two teams, customers and a history on every channel.

Deterministic (fixed random seed), so screenshots and docs stay reproducible.
Inbound history goes through the real ingest pipeline, so the demo shows what
production would store.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlmodel import select

from channels.base import Channel, InboundContact
from hub.config import Settings
from hub.errors import Conflict
from hub.records.auth import create_user
from hub.runtime import Hub
from hub.store.models import (
    Customer,
    CustomerKind,
    CustomerTag,
    Identity,
    IdentityKind,
    Interaction,
    Role,
    Task,
    Team,
    utcnow,
)

log = logging.getLogger(__name__)

FIRST = [
    "Anna",
    "Ben",
    "Clara",
    "David",
    "Eva",
    "Felix",
    "Greta",
    "Hannes",
    "Ida",
    "Jonas",
    "Katrin",
    "Lukas",
    "Mia",
    "Noah",
    "Olga",
    "Paul",
    "Rita",
    "Stefan",
    "Tina",
    "Uwe",
]
LAST = [
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Koch",
    "Richter",
    "Klein",
    "Wolf",
    "Neumann",
]
CITIES = [
    ("10115", "Berlin"),
    ("10247", "Berlin"),
    ("20095", "Hamburg"),
    ("50667", "Köln"),
    ("60311", "Frankfurt am Main"),
    ("70173", "Stuttgart"),
    ("80331", "München"),
    ("01067", "Dresden"),
    ("04109", "Leipzig"),
    ("28195", "Bremen"),
]
INDUSTRIES = ["retail", "manufacturing", "healthcare", "logistics", "software", "hospitality"]
TAGS = ["newsletter", "vip", "trade-fair-2026", "b2b", "b2c", "reseller"]
COMPANY_SUFFIX = ["GmbH", "AG", "KG", "e.K.", "GmbH & Co. KG"]
USERS = [
    ("admin", Role.ADMIN, [], None),
    ("supervisor", Role.SUPERVISOR, ["Support", "Sales"], "100"),
    ("agent1", Role.AGENT, ["Support"], "101"),
    ("agent2", Role.AGENT, ["Sales"], "102"),
    ("marketing", Role.MARKETING, ["Sales", "Support"], None),
]
SUBJECTS = [
    "Question about my invoice",
    "Delivery date?",
    "Offer request",
    "Complaint",
    "Change of address",
    "Appointment",
]
TEXTS = [
    "Hello, could you call me back please?",
    "Thanks for the quick help!",
    "Where is my order?",
    "Please send me the offer again.",
    "STOP",
    "Is the shop open on Saturday?",
]


async def seed_demo(settings: Settings, customers: int, *, if_empty: bool = False) -> int:
    hub = Hub(settings, dispatch=False)
    await hub.start()
    try:
        async with hub.db.read() as s:
            existing = (await s.exec(select(func.count()).select_from(Customer))).one()
        if existing and if_empty:
            print(f"demo data present ({existing} customers); nothing to do")
            return 0
        if existing:
            raise Conflict(f"the database already has {existing} customers; use a fresh one")
        await _seed(hub, settings, customers)
    finally:
        await hub.stop()
    return 0


async def _seed(hub: Hub, settings: Settings, count: int) -> None:
    rnd = random.Random(42)
    user_ids: dict[str, int] = {}
    for username, role, teams, ext in USERS:
        user = await create_user(
            hub.db,
            username,
            role=role,
            teams=teams,
            password=settings.demo.password,
            password_cost=settings.auth.password_cost,
            phone_extension=ext,
            display_name=username.capitalize(),
        )
        assert user.id is not None
        user_ids[username] = user.id
    async with hub.db.read() as s:
        team_ids = dict((await s.exec(select(Team.name, Team.id))).all())
    now = utcnow()
    phones: list[str] = []
    emails: list[str] = []
    ids: list[int] = []
    async with hub.db.write() as s:
        batch: list[Customer] = []
        for n in range(count):
            first, last = rnd.choice(FIRST), rnd.choice(LAST)
            postal, city = rnd.choice(CITIES)
            team = "Sales" if n % 3 == 0 else "Support"
            company = f"{last} {rnd.choice(COMPANY_SUFFIX)}" if n % 2 == 0 else ""
            customer = Customer(
                kind=CustomerKind.CUSTOMER if n % 5 else CustomerKind.LEAD,
                name=f"{first} {last}",
                company=company,
                industry=rnd.choice(INDUSTRIES),
                postal_code=postal,
                city=city,
                country="DE",
                owner_id=user_ids["agent2" if team == "Sales" else "agent1"]
                if n % 4 == 0
                else None,
                team_id=team_ids[team],
                custom={"customer_number": f"K{10000 + n}"},
                created_at=now - timedelta(days=rnd.randint(30, 900)),
            )
            batch.append(customer)
        # One flush for all customers: the ids come back from one multi-row INSERT.
        s.add_all(batch)
        await s.flush()
        for n, customer in enumerate(batch):
            assert customer.id is not None
            ids.append(customer.id)
            first, last = customer.name.split(" ", 1)
            email = f"{first}.{last}.{n}@example.com".lower().replace("ü", "ue")
            phone = f"+49151{n:08d}"
            emails.append(email)
            phones.append(phone)
            s.add(
                Identity(
                    customer_id=customer.id,
                    kind=IdentityKind.EMAIL,
                    value=email,
                    raw=email,
                    primary=True,
                )
            )
            s.add(
                Identity(
                    customer_id=customer.id,
                    kind=IdentityKind.PHONE,
                    value=phone,
                    raw=f"0151 {n:08d}",
                    primary=True,
                )
            )
            for tag in rnd.sample(TAGS, rnd.randint(0, 2)):
                s.add(CustomerTag(customer_id=customer.id, tag=tag))
            if n % 10 == 0:
                s.add(
                    Task(
                        customer_id=customer.id,
                        title="Call back about the offer",
                        assignee_id=customer.owner_id or user_ids["agent1"],
                        due_at=now + timedelta(days=rnd.randint(-3, 14)),
                    )
                )
    # Inbound history through the real pipeline: a few hundred per channel.
    start = datetime.now(UTC) - timedelta(days=60)
    per_channel = max(1, min(300, count // 3))
    contacts: list[InboundContact] = []
    for i in range(per_channel * 3 if count else 0):
        # The first customers get one contact on every channel, so the README's
        # examples (customer 2, 0151 00000001) show a history; the rest at random.
        n = i // 3 if i < 3 * min(10, count) else rnd.randrange(count)
        channel = (Channel.EMAIL, Channel.SMS, Channel.PHONE)[i % 3]
        is_mail = channel == Channel.EMAIL
        contacts.append(
            InboundContact(
                channel,
                emails[n] if is_mail else phones[n],
                recipient=rnd.choice(["service@example.com", "sales@example.com"])
                if is_mail
                else "+49 30 5550100",
                subject=rnd.choice(SUBJECTS) if is_mail else "",
                text=rnd.choice(TEXTS) if channel != Channel.PHONE else "Inbound call, 3 min",
                provider_id=f"demo-{channel.value}-{i}",
                occurred_at=start + timedelta(minutes=rnd.randint(0, 60 * 24 * 59)),
            )
        )
    # Concurrently, so group commit stores them in a few transactions.
    await asyncio.gather(*[hub.ingestor.ingest(c) for c in contacts])
    # Outbound history and notes (what agents and campaigns wrote).
    async with hub.db.write() as s:
        for _ in range(per_channel):
            n = rnd.randrange(count)
            s.add(
                Interaction(
                    customer_id=ids[n],
                    channel=Channel.NOTE.value,
                    direction="out",
                    text="Customer prefers calls in the morning.",
                    author_id=user_ids["agent1"],
                    occurred_at=start + timedelta(minutes=rnd.randint(0, 60 * 24 * 59)),
                )
            )
    print(
        f"demo data: {count} customers, {per_channel * 3} inbound contacts, {per_channel} notes; "
        f"users {', '.join(u[0] for u in USERS)} (password: {settings.demo.password!r})"
    )
