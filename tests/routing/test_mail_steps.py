"""routing/mail_steps.py, mail_rules.py and loop_guard.py alone: plain contacts in,
decisions out (DSN samples: test_routing_dsn)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from channels.base import Channel, InboundContact, MetaKey
from routing.base import (
    ConversationRef,
    CustomerRef,
    Decision,
    DecisionKey,
    SentMessage,
    Step,
    run_steps,
)
from routing.loop_guard import LoopGuard
from routing.mail_rules import autoreply_reason
from routing.mail_steps import EmailAutoreply, EmailBounce, EmailLoopGuard
from tests.routing.test_dsn import DELAYED, EXIM, MIXED, POSTFIX_551, POSTFIX_PLAIN

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class SentMessages:
    """The one question a classification step asks: which message of ours bounced."""

    def __init__(self, sent: dict[str, SentMessage] | None = None) -> None:
        self.sent = sent or {}
        self.asked: list[tuple[str, str]] = []

    async def sent_message(self, channel: str, provider_id: str) -> SentMessage | None:
        self.asked.append((channel, provider_id))
        return self.sent.get(provider_id)


CTX: Any = SentMessages()  # nothing we sent: bounces stay with their sender


def contact(
    channel: Channel = Channel.EMAIL,
    sender: str = "Jane Doe <jane@customer.example>",
    text: str = "Hello, about my order ...",
    at: datetime = T0,
    provider_id: str | None = None,
    **metadata: Any,
) -> InboundContact:
    return InboundContact(
        channel, sender, text=text, occurred_at=at, provider_id=provider_id, metadata=metadata
    )


def fresh() -> Decision:
    return Decision(customer=CustomerRef(1, None, None, False))


async def decide(step: Step, c: InboundContact) -> Decision:
    decision = fresh()
    await step.process(c, decision, CTX)
    return decision


def untouched(d: Decision) -> bool:
    return (d.record_only, d.stop, d.bounce, d.meta) == (False, False, None, {})


# --- auto-replies -------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, None),
        ({MetaKey.AUTO_SUBMITTED: "no"}, None),
        ({MetaKey.AUTO_SUBMITTED: " No "}, None),
        ({MetaKey.AUTO_SUBMITTED: ""}, None),
        ({MetaKey.AUTO_SUBMITTED: None}, None),
        ({MetaKey.AUTO_SUBMITTED: "auto-replied"}, "auto-submitted: auto-replied"),
        ({MetaKey.AUTO_SUBMITTED: "Auto-Generated"}, "auto-submitted: auto-generated"),
        ({MetaKey.AUTO_SUBMITTED: "auto-replied; owner-email=x@y"}, "auto-submitted: auto-replied"),
        ({MetaKey.AUTO_SUBMITTED: "auto-notified"}, "auto-submitted: auto-notified"),
        ({MetaKey.PRECEDENCE: "bulk"}, "precedence: bulk"),
        ({MetaKey.PRECEDENCE: "JUNK"}, "precedence: junk"),
        ({MetaKey.PRECEDENCE: "list"}, "precedence: list"),
        ({MetaKey.PRECEDENCE: "first-class"}, None),
        ({MetaKey.PRECEDENCE: "normal"}, None),
        ({MetaKey.X_AUTOREPLY: "yes"}, "x-autoreply: yes"),
        ({MetaKey.X_AUTOREPLY: ""}, None),
        ({MetaKey.X_AUTO_RESPONSE_SUPPRESS: "All"}, "x-auto-response-suppress: All"),
        (
            {MetaKey.X_AUTO_RESPONSE_SUPPRESS: "OOF, AutoReply"},
            "x-auto-response-suppress: OOF, AutoReply",
        ),
        ({MetaKey.RETURN_PATH: ""}, "null sender"),
        ({MetaKey.RETURN_PATH: "<>"}, "null sender"),
        ({MetaKey.RETURN_PATH: "jane@customer.example"}, None),
        ({MetaKey.AUTO_SUBMITTED: "no", MetaKey.PRECEDENCE: "bulk"}, "precedence: bulk"),
    ],
)
async def test_autoreply_header_matrix(headers: dict[str, Any], reason: str | None) -> None:
    c = contact(**headers)
    assert autoreply_reason(c) == reason
    d = await decide(EmailAutoreply(), c)
    if reason is None:
        assert untouched(d)
    else:
        assert (d.record_only, d.stop, d.meta, d.bounce) == (
            True,
            True,
            {DecisionKey.AUTO_REPLY: reason},
            None,
        )


async def test_a_normal_mail_with_every_header_benign_is_not_classified() -> None:
    c = contact(
        auto_submitted="no",
        precedence="normal",
        return_path="jane@customer.example",
        content_type="text/plain",
        is_dsn=False,
    )
    for step in (EmailBounce(), EmailAutoreply(), EmailLoopGuard()):
        assert untouched(await decide(step, c))


@pytest.mark.parametrize("channel", [Channel.SMS, Channel.PHONE, Channel.NOTE])
async def test_steps_leave_other_channels_alone(channel: Channel) -> None:
    c = contact(
        channel,
        sender="MAILER-DAEMON@mail.example.com",
        auto_submitted="auto-replied",
        return_path="",
        is_dsn=True,
        dsn_text=POSTFIX_551,
    )
    guard = EmailLoopGuard(max_messages=1, minutes=1, clock=lambda: T0)
    for step in (EmailBounce(), EmailAutoreply(), guard, guard, guard):
        assert untouched(await decide(step, c))


async def test_autoreply_catches_a_dsn_when_no_bounce_step_runs() -> None:
    d = await decide(EmailAutoreply(), contact(is_dsn=True, dsn_text="garbage"))
    assert d.record_only and d.stop
    assert d.meta == {DecisionKey.AUTO_REPLY: "delivery status notification"}


# --- bounce step --------------------------------------------------------------


async def test_bounce_from_multipart_report() -> None:
    c = contact(
        sender="Mail Delivery System <MAILER-DAEMON@mail.example.com>",
        text="I'm sorry to have to inform you ...",
        return_path="",
        content_type="multipart/report",
        is_dsn=True,
        dsn_text=MIXED,
        dsn_original_headers={"Message-ID": " <abc.123@crmhub.example> ", "subject": "News"},
    )
    d = await decide(EmailBounce(), c)
    assert d.bounce is not None
    assert d.bounce.original_message_id == "<abc.123@crmhub.example>"
    assert [r.address for r in d.bounce.recipients] == [
        "gone@a.example",
        "busy@b.example",
        "ok@c.example",
    ]
    assert d.bounce.permanent
    assert (d.record_only, d.stop) == (True, True)
    assert d.meta == {
        DecisionKey.BOUNCE: "gone@a.example 5.1.1 failed; busy@b.example 4.4.1 delayed; "
        "ok@c.example 2.0.0 delivered"
    }


async def test_temporary_only_bounce_is_not_permanent() -> None:
    c = contact(sender="MAILER-DAEMON@x.example", is_dsn=True, dsn_text=DELAYED)
    d = await decide(EmailBounce(), c)
    assert d.bounce is not None and not d.bounce.permanent
    assert d.bounce.original_message_id is None


@pytest.mark.parametrize(
    ("headers", "message_id"),
    [
        ({"message-id": "x.1@crmhub.example"}, "<x.1@crmhub.example>"),
        ({"MESSAGE-ID": "<x.1@crmhub.example\n >"}, "<x.1@crmhub.example>"),
        ({"message-id": "  "}, None),
        ({"subject": "no id"}, None),
        ("not a mapping", None),
    ],
)
async def test_original_message_id_is_bracketed(headers: Any, message_id: str | None) -> None:
    c = contact(is_dsn=True, dsn_text=DELAYED, dsn_original_headers=headers)
    d = await decide(EmailBounce(), c)
    assert d.bounce is not None and d.bounce.original_message_id == message_id


async def test_unreadable_report_is_still_a_bounce() -> None:
    d = await decide(EmailBounce(), contact(is_dsn=True, dsn_text="", text="no details"))
    assert d.bounce is not None and d.bounce.recipients == ()
    assert (d.record_only, d.stop) == (True, True)
    assert d.meta == {DecisionKey.BOUNCE: "unreadable delivery report"}


async def test_mailer_daemon_without_multipart_report() -> None:
    c = contact(
        sender="MAILER-DAEMON@mail.example.com (Mail Delivery System)",
        text=POSTFIX_PLAIN,
        return_path="",
        content_type="text/plain",
        is_dsn=False,
    )
    d = await decide(EmailBounce(), c)
    assert d.bounce is not None and d.bounce.permanent
    assert [(r.address, r.status) for r in d.bounce.recipients] == [
        ("nobody@customer.example", "5.1.1")
    ]


async def test_postmaster_with_report_fields_in_the_body() -> None:
    c = contact(sender="postmaster@isp.example", text=EXIM, is_dsn=False)
    d = await decide(EmailBounce(), c)
    assert d.bounce is not None
    assert d.bounce.recipients[0].address == "old.address@isp.example"


async def test_postmaster_writing_a_normal_mail_is_not_a_bounce() -> None:
    c = contact(
        sender="Postmaster <postmaster@customer.example>",
        text="Hi, please whitelist our new server mx2@customer.example. Thanks!",
    )
    assert untouched(await decide(EmailBounce(), c))


# --- loop guard ---------------------------------------------------------------


def test_loop_guard_sliding_window() -> None:
    guard = LoopGuard(max_messages=3, minutes=10)
    at = [T0 + timedelta(minutes=m) for m in (0, 1, 2)]
    assert [guard.hit("a@x.example", t) for t in at] == [False, False, False]
    assert guard.hit("A@X.example ", T0 + timedelta(minutes=3))  # 4th within 10 minutes
    # The window slides: at 11:30 only the mails of 2, 3 and 11:30 are inside.
    assert not guard.hit("a@x.example", T0 + timedelta(minutes=11, seconds=30))
    assert guard.hit("a@x.example", T0 + timedelta(minutes=11, seconds=40))
    # Others are counted on their own.
    assert not guard.hit("b@x.example", T0 + timedelta(minutes=11))


def test_loop_guard_out_of_order_times_count_the_window_ending_at_the_mail() -> None:
    guard = LoopGuard(max_messages=2, minutes=5)
    assert not guard.hit("a@x", T0 + timedelta(minutes=30))
    assert not guard.hit("a@x", T0)  # a backfilled old mail
    assert not guard.hit("a@x", T0 + timedelta(minutes=1))
    assert guard.hit("a@x", T0 + timedelta(minutes=2))


def test_loop_guard_forgets_quiet_senders() -> None:
    guard = LoopGuard(max_messages=2, minutes=5)
    for i in range(50):
        guard.hit(f"s{i}@x.example", T0 + timedelta(seconds=i))
    assert len(guard) == 50
    guard.hit("late@x.example", T0 + timedelta(minutes=5, seconds=25))
    assert len(guard) == 25  # s0..s25 had nothing left inside the window


def test_loop_guard_caps_senders_and_per_sender_history() -> None:
    guard = LoopGuard(max_messages=2, minutes=60, max_senders=10)
    for i in range(100):
        guard.hit(f"s{i}@x.example", T0)
    assert len(guard) == 10
    hits = [guard.hit("loop@x.example", T0) for _ in range(1000)]
    assert hits[:3] == [False, False, True] and all(hits[2:])
    assert max(len(t) for t in guard._seen.values()) == 3
    # The looping sender survives a flood of others: it is the most recent.
    assert guard.hit("loop@x.example", T0)


@pytest.mark.parametrize("args", [(0, 1), (1, 0)])
def test_loop_guard_rejects_nonsense_limits(args: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        LoopGuard(*args)


async def test_loop_guard_step_throttles_over_the_limit() -> None:
    step = EmailLoopGuard(max_messages=2, minutes=10, clock=lambda: T0 + timedelta(hours=1))
    got = [
        await decide(step, contact(sender="Bot <BOT@x.example>", at=T0 + timedelta(seconds=s)))
        for s in (0, 10, 20, 30)
    ]
    assert [d.record_only for d in got] == [False, False, True, True]
    # The first throttled mail of a window carries the report, the rest only the mark.
    assert got[2].stop and got[2].meta == {
        DecisionKey.THROTTLED: True,
        DecisionKey.MAIL_LOOP: {"count": 3, "max_messages": 2, "minutes": 10},
    }
    assert got[3].meta == {DecisionKey.THROTTLED: True}
    assert untouched(got[0])


async def test_loop_guard_step_caps_future_dates_at_the_clock() -> None:
    step = EmailLoopGuard(max_messages=1, minutes=10, clock=lambda: T0)
    future = contact(at=T0 + timedelta(days=365))
    assert untouched(await decide(step, future))
    assert (await decide(step, contact(at=T0))).meta[DecisionKey.THROTTLED] is True


async def test_routing_the_same_mails_again_does_not_count_them_again() -> None:
    """A rolled-back batch retried contact by contact routes every mail twice."""
    step = EmailLoopGuard(max_messages=20, minutes=10, clock=lambda: T0 + timedelta(hours=1))
    mails = [
        contact(at=T0 + timedelta(seconds=s), provider_id=f"<m{s}@customer.example>")
        for s in range(12)
    ]
    for _attempt in range(2):
        for c in mails:
            assert untouched(await decide(step, c))
    assert step.guard.count("jane@customer.example", T0 + timedelta(minutes=1)) == 12


async def test_a_loop_routed_again_gets_the_same_decisions_report_included() -> None:
    step = EmailLoopGuard(max_messages=3, minutes=10, clock=lambda: T0 + timedelta(hours=1))
    mails = [
        contact(sender="bot@x.example", at=T0 + timedelta(seconds=s), provider_id=f"<b{s}@x>")
        for s in range(6)
    ]
    first = [await decide(step, c) for c in mails]
    again = [await decide(step, c) for c in reversed(mails)][::-1]
    assert [d.meta for d in again] == [d.meta for d in first]
    assert [bool(d.meta.get(DecisionKey.MAIL_LOOP)) for d in first] == [False] * 3 + [
        True,
        False,
        False,
    ]
    # Mail the guard has not seen yet is counted as ever.
    later = contact(sender="bot@x.example", at=T0 + timedelta(seconds=10), provider_id="<b10@x>")
    assert (await decide(step, later)).meta == {DecisionKey.THROTTLED: True}


def test_loop_guard_counts_a_provider_id_once_per_window_and_forgets_the_oldest() -> None:
    guard = LoopGuard(max_messages=2, minutes=10, max_ids=3)
    assert not guard.hit("a@x", T0, "<1@x>")
    assert not guard.hit("a@x", T0, "<1@x>")
    assert guard.count("a@x", T0) == 1
    # The same id from another sender is another mail.
    assert not guard.hit("b@x", T0, "<1@x>")
    # Outside the window the id counts again (and the window has slid on).
    assert not guard.hit("a@x", T0 + timedelta(minutes=10), "<1@x>")
    assert guard.count("a@x", T0 + timedelta(minutes=10)) == 1
    for i in (2, 3, 4):
        guard.hit("c@x", T0, f"<{i}@x>")
    assert len(guard._ids) == 3 and ("a@x", "<1@x>") not in guard._ids
    # Without a provider id every hit counts, as before.
    assert [guard.hit("d@x", T0) for _ in range(3)] == [False, False, True]


@pytest.mark.parametrize("args", [(1, 1, 1, 0), (1, 1, 0, 1)])
def test_loop_guard_rejects_nonsense_caps(args: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError):
        LoopGuard(*args)


def test_loop_report_is_due_again_for_the_mail_that_got_it() -> None:
    guard = LoopGuard(max_messages=1, minutes=10)
    assert guard.report_due("a@x", T0, "<m1@x>")
    assert guard.report_due("a@x", T0, "<m1@x>")  # the same mail routed again
    assert not guard.report_due("a@x", T0, "<m2@x>")
    assert not guard.report_due("a@x", T0)


# --- order --------------------------------------------------------------------


async def test_bounce_runs_before_autoreply_and_stops_the_rest() -> None:
    dsn = contact(
        sender="MAILER-DAEMON@mail.example.com",
        auto_submitted="auto-replied",
        return_path="",
        is_dsn=True,
        dsn_text=POSTFIX_551,
    )
    guard = EmailLoopGuard(max_messages=1, minutes=10, clock=lambda: T0)
    steps: list[Step] = [EmailBounce(), EmailAutoreply(), guard]
    d = await run_steps(steps, dsn, fresh(), CTX)
    assert d.bounce is not None and DecisionKey.AUTO_REPLY not in d.meta
    assert set(d.meta) == {DecisionKey.BOUNCE}
    # An auto-reply stops the loop guard, so auto-replies never count against it.
    ooo = contact(auto_submitted="auto-replied")
    for _ in range(3):
        d = await run_steps(steps, ooo, fresh(), CTX)
        assert d.meta == {DecisionKey.AUTO_REPLY: "auto-submitted: auto-replied"}
    assert len(guard.guard) == 0


# --- bounce attribution and loop reports ---------------------------------------


async def test_bounce_of_our_message_goes_to_the_customer_we_sent_it_to() -> None:
    ours = SentMessage(77, CustomerRef(5, 3, 9, False), ConversationRef(11, 9, 3))
    ctx = SentMessages({"<out1@crm.example>": ours})
    c = contact(
        sender="MAILER-DAEMON@mail.example.com",
        is_dsn=True,
        dsn_text=POSTFIX_551,
        dsn_original_headers={"message-id": "<out1@crm.example>"},
    )
    d = fresh()
    await EmailBounce().process(c, d, ctx)
    assert ctx.asked == [("email", "<out1@crm.example>")]
    assert d.customer == CustomerRef(5, 3, 9, False)
    assert d.team_id == 3
    assert d.meta[DecisionKey.BOUNCED_INTERACTION] == 77
    assert d.bounce is not None and (d.record_only, d.stop) == (True, True)
    assert d.conversation is None  # history only, even with the original's conversation known


async def test_bounce_of_a_message_we_did_not_send_stays_with_its_sender() -> None:
    ctx = SentMessages()
    c = contact(
        sender="MAILER-DAEMON@mail.example.com",
        is_dsn=True,
        dsn_text=POSTFIX_551,
        dsn_original_headers={"message-id": "<foreign@elsewhere.example>"},
    )
    d = await decide(EmailBounce(), c)
    assert d.customer == fresh().customer and DecisionKey.BOUNCED_INTERACTION not in d.meta
    no_id = await decide(EmailBounce(), contact(is_dsn=True, dsn_text=POSTFIX_551))
    assert no_id.bounce is not None and ctx.asked == []


def test_loop_report_is_due_once_per_window_and_sender() -> None:
    guard = LoopGuard(max_messages=1, minutes=10)
    assert guard.report_due("a@x", T0)
    assert not guard.report_due("A@X ", T0 + timedelta(minutes=9))
    assert not guard.report_due("a@x", T0 - timedelta(minutes=9))  # backfilled mail
    assert guard.report_due("b@x", T0)
    assert guard.report_due("a@x", T0 + timedelta(minutes=10))


def test_forgotten_senders_lose_their_report_too() -> None:
    guard = LoopGuard(max_messages=1, minutes=10, max_senders=1)
    guard.hit("a@x", T0)
    assert guard.report_due("a@x", T0)
    guard.hit("b@x", T0)  # pushes a@x out
    assert guard._reported == {}
    guard.hit("a@x", T0)
    assert guard.report_due("a@x", T0)
