"""Per-channel routing pipelines: `routing.pipelines` validated at start, each contact
routed by its own channel's steps, the batch context still prefetched once per batch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from channels.base import Channel, InboundContact, MetaKey
from hub.config import ConfigError, PipelinesConfig, Settings, load_settings
from hub.ingest.context import BatchContext
from hub.ingest.pipeline import IngestError
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Consent, Interaction
from routing.base import Decision, DecisionKey, RoutingContext
from routing.keywords import SmsKeywords
from routing.mail_steps import EmailLoopGuard
from routing.registry import STEPS, StepNotForChannel, UnknownStep, applies_to, build_pipelines
from routing.threading import ThreadConversation
from tests.support.hubs import make_settings

ROOT = Path(__file__).parent.parent.parent
EMPTY = Path(__file__).parent.parent / "empty.yaml"
AT = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)

TODAY = {
    Channel.EMAIL: [
        "email_bounce",
        "email_autoreply",
        "email_loop_guard",
        "email_unsubscribe",
        "thread_conversation",
    ],
    Channel.SMS: ["sms_keywords", "thread_conversation"],
    Channel.PHONE: ["thread_conversation"],
}


def routing_error(routing: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(EMPTY, routing=routing)
    return str(caught.value)


# --- config -------------------------------------------------------------------


def test_the_default_pipelines_are_what_the_single_list_did_per_channel() -> None:
    assert load_settings(EMPTY).routing.pipelines.by_channel() == TODAY


def test_config_yaml_documents_the_defaults() -> None:
    shipped = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    assert {Channel(c): s for c, s in shipped["routing"]["pipelines"].items()} == TODAY


def test_a_channel_left_out_keeps_its_default() -> None:
    settings = load_settings(EMPTY, routing={"pipelines": {"email": ["thread_conversation"]}})
    assert settings.routing.pipelines.by_channel() == {
        **TODAY,
        Channel.EMAIL: ["thread_conversation"],
    }


@pytest.mark.parametrize(
    "channel, step, only",
    [
        ("email", "sms_keywords", "sms"),
        ("sms", "email_bounce", "email"),
        ("phone", "email_loop_guard", "email"),
        ("sms", "email_autoreply", "email"),
    ],
)
def test_a_step_under_a_channel_it_does_not_apply_to_is_an_error(
    channel: str, step: str, only: str
) -> None:
    message = routing_error({"pipelines": {channel: [step, "thread_conversation"]}})
    assert message.endswith(f"routing.pipelines.{channel}: step {step!r} applies only to {only}")


def test_an_unknown_step_is_an_error_naming_the_path_and_the_known_steps() -> None:
    message = routing_error({"pipelines": {"sms": ["sms_keyword"]}})
    assert message.endswith(
        "routing.pipelines.sms: unknown routing step 'sms_keyword' (known: email_autoreply, "
        "email_bounce, email_loop_guard, email_unsubscribe, sms_keywords, thread_conversation)"
    )


def test_the_old_single_list_says_to_use_pipelines() -> None:
    message = routing_error({"steps": ["sms_keywords", "thread_conversation"]})
    assert message.endswith(
        "routing: the single list `steps` was replaced by `pipelines` (one step list per "
        "channel: email, sms, phone); move each step under the channels it applies to "
        "(see config.yaml)"
    )


def test_an_unknown_channel_is_an_error() -> None:
    assert routing_error({"pipelines": {"fax": ["thread_conversation"]}}).endswith(
        "routing.pipelines.fax: extra inputs are not permitted"
    )


def test_every_built_in_step_declares_its_channels() -> None:
    assert {name: sorted(c.value for c in kind.channels) for name, kind in STEPS.items()} == {
        "email_bounce": ["email"],
        "email_autoreply": ["email"],
        "email_loop_guard": ["email"],
        "email_unsubscribe": ["email"],
        "sms_keywords": ["sms"],
        "thread_conversation": sorted(c.value for c in Channel),
    }
    assert applies_to("a_step_given_in_code") == frozenset(Channel)


# --- building -----------------------------------------------------------------


def test_a_step_in_several_pipelines_is_one_instance() -> None:
    built = build_pipelines(
        {
            Channel.EMAIL: ["email_loop_guard", "thread_conversation"],
            Channel.SMS: ["thread_conversation"],
        }
    )
    assert [type(s) for s in built[Channel.EMAIL]] == [EmailLoopGuard, ThreadConversation]
    assert built[Channel.EMAIL][1] is built[Channel.SMS][0]


def test_a_step_that_needs_config_is_an_error_without_its_factory() -> None:
    with pytest.raises(
        UnknownStep, match=r"routing.pipelines.sms: step 'sms_keywords' needs config"
    ):
        build_pipelines({Channel.SMS: ["sms_keywords"]})


def test_the_hub_checks_pipelines_it_was_given_past_the_config(settings: Settings) -> None:
    # model_copy skips validation, as a caller building Settings in code might.
    wrong = settings.routing.pipelines.model_copy(update={"sms": ["email_bounce"]})
    with pytest.raises(StepNotForChannel, match=r"routing.pipelines.sms: step 'email_bounce'"):
        Hub(
            settings.model_copy(
                update={"routing": settings.routing.model_copy(update={"pipelines": wrong})}
            )
        )


# --- routing by channel -------------------------------------------------------


class Seen:
    """A step of a test's own: records which contacts reached it."""

    name = "seen"
    description = "records the provider ids it routes"
    ids: list[str] = []

    async def process(
        self, contact: InboundContact, decision: Decision, ctx: RoutingContext
    ) -> None:
        Seen.ids.append(contact.provider_id or "")


def contact(
    channel: Channel, sender: str, pid: str, text: str = "hi", **meta: Any
) -> InboundContact:
    return InboundContact(
        channel, sender, text=text, provider_id=pid, occurred_at=AT, metadata=meta
    )


async def rows(db: Database, stmt: Any) -> list[tuple[Any, ...]]:
    async with db.read() as s:
        return [tuple(r) for r in (await s.exec(stmt)).all()]


@pytest.mark.db
async def test_each_contact_runs_its_own_channels_pipeline_in_one_batch(
    db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(db_url)
    pipelines = PipelinesConfig.model_construct(
        email=["seen", *TODAY[Channel.EMAIL]],
        sms=TODAY[Channel.SMS],
        phone=["seen", "thread_conversation"],
    )
    routing = settings.routing.model_copy(update={"pipelines": pipelines})
    prefetches: list[int] = []
    original = BatchContext.prefetch

    async def counted(self: BatchContext, customers: Any, refs: Any) -> None:
        prefetches.append(1)
        await original(self, customers, refs)

    monkeypatch.setattr(BatchContext, "prefetch", counted)
    Seen.ids = []
    hub = Hub(settings.model_copy(update={"routing": routing}), extra_steps={"seen": Seen})
    await hub.start()
    try:
        # The same headers on every channel: only email's pipeline classifies them.
        machine = {MetaKey.AUTO_SUBMITTED: "auto-replied"}
        results = await asyncio.gather(
            hub.ingestor.ingest(contact(Channel.EMAIL, "ooo@example.org", "<e1@x>", **machine)),
            hub.ingestor.ingest(contact(Channel.SMS, "+491715550101", "SMs1", "STOP", **machine)),
            hub.ingestor.ingest(contact(Channel.PHONE, "+491715550102", "CAp1", **machine)),
        )
        batches = hub.ingestor.batches
    finally:
        await hub.stop()
    assert sorted(Seen.ids) == ["<e1@x>", "CAp1"]  # not on sms: not in its pipeline
    email, text, call = results
    assert email.conversation_id is None  # email_autoreply: history only
    assert text.conversation_id is not None and call.conversation_id is not None
    assert text.reply is not None  # sms_keywords ran for the SMS
    assert await rows(db, select(Consent.channel, Consent.state)) == [("sms", "opted_out")]
    metas = dict(await rows(db, select(Interaction.provider_id, Interaction.meta)))
    assert metas["<e1@x>"][DecisionKey.AUTO_REPLY] == "auto-submitted: auto-replied"
    assert (
        DecisionKey.AUTO_REPLY not in metas["SMs1"] and DecisionKey.AUTO_REPLY not in metas["CAp1"]
    )
    assert metas["SMs1"][DecisionKey.KEYWORD] == "STOP"
    # Prefetched per batch, never per contact, whatever the mix of channels.
    assert len(prefetches) == batches


@pytest.mark.db
async def test_a_channel_without_a_pipeline_is_refused(hub: Hub) -> None:
    with pytest.raises(IngestError, match="no routing pipeline for channel 'note'"):
        await hub.ingestor.ingest(contact(Channel.NOTE, "+491715550103", "n1"))


def test_sms_keywords_built_from_settings_sit_in_the_sms_pipeline(settings: Settings) -> None:
    hub = Hub(settings)
    assert isinstance(hub.pipelines[Channel.SMS][0], SmsKeywords)
    assert Channel.NOTE not in hub.pipelines
