"""A new sender writing to a sub-address (a reply-token address) joins its base mailbox's team."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hub.config import TeamsConfig
from hub.records.teams import TeamRouter
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Customer, Team
from tests.support.email_bounces import mail, parse, rows

DEFAULT, SALES, VIP = 1, 2, 3


@pytest.mark.parametrize(
    ("recipient", "team"),
    [
        ("sales@example.com", SALES),
        ("sales+c42-0123456789abcdef@example.com", SALES),
        ("Sales Team <SALES+c42-0123456789ABCDEF@Example.COM>", SALES),
        ("sales+vip@example.com", VIP),  # mapped itself: the full address wins
        ("sales+@example.com", SALES),
        ("+tag@example.com", DEFAULT),  # no base mailbox to fall back to
        ("support+c42-0123456789abcdef@example.com", DEFAULT),
        ("sales+c42@other.example", DEFAULT),
        ("", DEFAULT),
        ("not an address@", DEFAULT),
        ("+49 30 5550100", SALES),
    ],
)
def test_sub_address_falls_back_to_its_base_mailbox(recipient: str, team: int) -> None:
    router = TeamRouter(
        DEFAULT,
        {"sales@example.com": SALES, "sales+vip@example.com": VIP, "+49305550100": SALES},
    )
    assert router.team_for_recipient(recipient) == team


@pytest.mark.db
async def test_new_sender_answering_a_reply_token_address_is_a_lead_of_its_team(
    hub: Hub, db: Database
) -> None:
    r = await hub.ingestor.ingest(
        parse(
            mail(
                sender="New Person <new.person@prospect.example>",
                to="sales+c42-0123456789abcdef@example.com",
                message_id="<new1@prospect.example>",
            )
        )
    )
    ((sales,),) = await rows(db, select(Team.id).where(Team.name == "Sales"))
    assert r.created_customer and r.team_id == sales
    assert await rows(db, select(Customer.kind, Customer.team_id)) == [("lead", sales)]


@pytest.mark.db
async def test_a_mailbox_reply_address_shares_the_mailbox_team(db: Database) -> None:
    teams = TeamsConfig(default="Support", by_address={"sales@example.com": "Sales"})
    router = await TeamRouter.load(
        db, teams, "DE", aliases={"reply@example.com": "sales@example.com"}
    )
    ((sales,),) = await rows(db, select(Team.id).where(Team.name == "Sales"))
    assert router.team_for_recipient("reply+c42-0123456789abcdef@example.com") == sales
    assert router.team_for_recipient("reply@example.com") == sales
    assert router.team_for_recipient("other@example.com") == router.default_team_id
