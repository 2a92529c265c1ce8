"""The routing pipelines of a hub: per channel, built from Settings at start.

Routing never sees Settings (routing/ must not import hub); the factories
here read the config and pass only what each step needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from channels.base import Channel
from hub.config import Settings
from routing.base import Step
from routing.keywords import SmsKeywords
from routing.mail_steps import EmailLoopGuard
from routing.registry import StepFactory, build_pipelines
from routing.threading import ThreadConversation
from routing.unsubscribe_mail import EmailUnsubscribe


def configured_steps(settings: Settings) -> dict[str, StepFactory]:
    """Factories of the steps that need config; routing gets plain values, never Settings."""
    sms = settings.sms

    def sms_keywords() -> Step:
        return SmsKeywords(
            opt_out=sms.keywords.opt_out,
            opt_in=sms.keywords.opt_in,
            help=sms.keywords.help,
            opt_out_text=sms.opt_out_text,
            opt_in_text=sms.opt_in_text,
            help_text=sms.help_text,
        )

    def thread_conversation() -> Step:
        return ThreadConversation({Channel.SMS: timedelta(hours=sms.reply_window_hours)})

    loop = settings.email.loop_guard

    def email_loop_guard() -> Step:
        return EmailLoopGuard(max_messages=loop.max_messages, minutes=loop.minutes)

    def email_unsubscribe() -> Step:
        return EmailUnsubscribe(settings.subscriptions.unsubscribe_address)

    # email_bounce and email_autoreply need no config: routing/registry.py has them.
    return {
        EmailUnsubscribe.name: email_unsubscribe,
        SmsKeywords.name: sms_keywords,
        EmailLoopGuard.name: email_loop_guard,
        ThreadConversation.name: thread_conversation,
    }


def pipelines_from(
    settings: Settings, extra_steps: Mapping[str, StepFactory] | None = None
) -> dict[Channel, list[Step]]:
    """`routing.pipelines` as step instances; `extra_steps` are steps given in code
    (tests), usable under any channel. Raises routing.registry.PipelineError."""
    factories = {**configured_steps(settings), **(extra_steps or {})}
    return build_pipelines(settings.routing.pipelines.by_channel(), factories)
