"""The channel registry: one entry per channel, checked, and the hub built from it alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from aiohttp.test_utils import TestClient, TestServer

from channels import registry
from channels.base import (
    Channel,
    WebhookAnswer,
    WebhookFields,
    WebhookParsed,
    WebhookRequest,
)
from channels.registry import CHANNELS, ChannelConfigs, ChannelEntry, RegistryError, check
from hub.config import Settings
from hub.runtime import Hub
from hub.web.app import create_app
from hub.web.openapi import build_document


@dataclass(frozen=True)
class FakeHook:
    path: str
    summary: str = "a test webhook"
    fields: WebhookFields = field(default_factory=WebhookFields)

    def parse(self, request: WebhookRequest) -> WebhookParsed:
        return WebhookParsed()

    def answer(self, replies: Sequence[str | None]) -> WebhookAnswer:
        return WebhookAnswer(204)


def entry(channel: Channel, *paths: str) -> ChannelEntry:
    return ChannelEntry(
        channel,
        lambda c: c.sms,
        lambda config, timeout: None,
        webhooks=lambda config: [FakeHook(p) for p in paths],
    )


def test_a_channel_registered_twice_fails() -> None:
    with pytest.raises(RegistryError, match="channel 'sms' is registered twice"):
        check([entry(Channel.SMS), entry(Channel.SMS)], ChannelConfigs())


def test_two_webhooks_on_one_path_fail() -> None:
    entries = [entry(Channel.SMS, "/webhooks/x"), entry(Channel.PHONE, "/webhooks/x")]
    with pytest.raises(RegistryError, match="/webhooks/x is registered by sms and phone"):
        check(entries, ChannelConfigs())


def test_the_settings_carry_every_channel_section() -> None:
    fields = set(Settings.model_fields)
    assert set(ChannelConfigs.model_fields) <= fields
    settings = Settings()
    for e in CHANNELS:
        assert e.config(settings) is getattr(settings, e.section_name)


@pytest.mark.parametrize("e", CHANNELS, ids=lambda e: e.channel.value)
def test_every_channel_keeps_its_contract(e: ChannelEntry) -> None:
    statuses = e.statuses
    # Failed statuses are final, and final ones are never ranked (nothing follows them).
    assert statuses.failed <= statuses.final
    assert not statuses.final & set(statuses.ranks)
    assert statuses.advances(None, "queued") and not statuses.advances("failed", "sent")
    assert statuses.opt_out_errors == frozenset() or statuses.provider
    # Unconfigured (the defaults), a channel builds no sender: nothing is sent by accident.
    assert e.sender(e.config(ChannelConfigs()), 30.0) is None
    for hook in e.webhooks(e.config(ChannelConfigs())):
        assert hook.path.startswith("/webhooks/")
        assert hook.summary


async def test_every_registered_webhook_is_mounted_and_described(settings: Settings) -> None:
    hooks = registry.webhooks(settings)
    assert [(c, h.path) for c, h in hooks] == [
        (Channel.SMS, "/webhooks/twilio/sms"),
        (Channel.SMS, "/webhooks/twilio/sms/status"),
        (Channel.PHONE, "/webhooks/twilio/voice"),
        (Channel.PHONE, "/webhooks/twilio/voice/status"),
        (Channel.PHONE, "/webhooks/sipgate"),
        (Channel.PHONE, "/webhooks/cti/{token}"),
    ]
    app = create_app(Hub(settings), manage_hub=False)
    routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    document = build_document("test", settings)
    for _, hook in hooks:
        assert ("POST", hook.path) in routes
        assert document["paths"][hook.path]["post"]["summary"] == hook.summary
    # A disabled channel's webhook answers 404 through the same mounted route.
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        resp = await client.post("/webhooks/twilio/sms/status", data={"MessageSid": "SM1"})
        assert resp.status == 404
        assert await resp.json() == {
            "error": "not_found",
            "detail": "the SMS channel is not enabled",
        }
    finally:
        await client.close()
