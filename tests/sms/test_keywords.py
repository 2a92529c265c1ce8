"""routing/keywords.py alone: plain contact and decision in, consent and reply out."""

from __future__ import annotations

from typing import Any

import pytest

from channels.base import Channel, InboundContact
from channels.sms.config import SmsConfig
from routing.base import ConsentChange, CustomerRef, Decision, DecisionKey
from routing.keywords import SmsKeywords

CONFIG = SmsConfig()
WORDS = CONFIG.keywords


def step(config: SmsConfig = CONFIG) -> SmsKeywords:
    return SmsKeywords(
        opt_out=config.keywords.opt_out,
        opt_in=config.keywords.opt_in,
        help=config.keywords.help,
        opt_out_text=config.opt_out_text,
        opt_in_text=config.opt_in_text,
        help_text=config.help_text,
    )


async def decide(text: str, channel: Channel = Channel.SMS) -> Decision:
    decision = Decision(customer=CustomerRef(1, None, None, False))
    ctx: Any = None  # the step asks the context nothing
    await step().process(InboundContact(channel, "+4917155500001", text=text), decision, ctx)
    return decision


def variants(word: str) -> list[str]:
    return [word, word.lower(), f"  {word.capitalize()} \n"]


@pytest.mark.parametrize("text", [v for w in WORDS.opt_out for v in variants(w)])
async def test_opt_out_words(text: str) -> None:
    d = await decide(text)
    word = text.strip().upper()
    assert d.consent == ConsentChange("sms", "opted_out", f"sms keyword {word}", "marketing")
    assert (d.reply, d.meta, d.stop) == (CONFIG.opt_out_text, {DecisionKey.KEYWORD: word}, False)


@pytest.mark.parametrize("text", [v for w in WORDS.opt_in for v in variants(w)])
async def test_opt_in_words(text: str) -> None:
    d = await decide(text)
    word = text.strip().upper()
    assert d.consent == ConsentChange("sms", "opted_in", f"sms keyword {word}", "marketing")
    assert (d.reply, d.meta) == (CONFIG.opt_in_text, {DecisionKey.KEYWORD: word})


@pytest.mark.parametrize("text", [v for w in WORDS.help for v in variants(w)])
async def test_help_words(text: str) -> None:
    d = await decide(text)
    assert (d.consent, d.reply, d.meta) == (
        None,
        CONFIG.help_text,
        {DecisionKey.KEYWORD: text.strip().upper()},
    )


@pytest.mark.parametrize(
    "text", ["stop it", "STOP!", "please stop", "", "Abmelden bitte", "S T O P", "stopp stopp"]
)
async def test_anything_but_the_whole_word_is_a_message(text: str) -> None:
    d = await decide(text)
    assert (d.consent, d.reply, d.meta) == (None, None, {})


async def test_other_channels_are_left_alone() -> None:
    d = await decide("STOP", Channel.EMAIL)
    assert (d.consent, d.reply, d.meta) == (None, None, {})


def test_default_lists_cover_the_issue() -> None:
    assert [*WORDS.opt_out, *WORDS.opt_in, *WORDS.help] == [
        *("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"),
        *("STOPP", "ABMELDEN", "START", "YES", "UNSTOP", "HELP", "INFO"),
    ]


async def test_an_empty_answer_text_records_without_answering() -> None:
    quiet = SmsKeywords(
        opt_out=["STOP"], opt_in=[], help=["HELP"], opt_out_text="", opt_in_text="", help_text=""
    )
    decision = Decision(customer=CustomerRef(1, None, None, False))
    ctx: Any = None
    await quiet.process(InboundContact(Channel.SMS, "+4917155500001", text="stop"), decision, ctx)
    assert (decision.reply, decision.consent is not None) == (None, True)


async def test_a_word_in_two_lists_opts_out() -> None:
    both = SmsKeywords(
        opt_out=["STOP"], opt_in=["stop"], help=[], opt_out_text="o", opt_in_text="i", help_text=""
    )
    decision = Decision(customer=CustomerRef(1, None, None, False))
    ctx: Any = None
    await both.process(InboundContact(Channel.SMS, "+4917155500001", text="Stop"), decision, ctx)
    assert (decision.consent and decision.consent.state, decision.reply) == ("opted_out", "o")
