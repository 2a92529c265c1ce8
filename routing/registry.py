"""Routing step names -> steps, and per-channel pipelines built from names.

Explicit: every built-in step is listed here with the channels it applies
to, and a pipeline naming an unknown step, or a step under a channel it
does not apply to, is an error at start — never a step silently skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from channels.base import Channel
from routing.base import ALL_CHANNELS, Step
from routing.keywords import SmsKeywords
from routing.mail_steps import EmailAutoreply, EmailBounce, EmailLoopGuard
from routing.threading import ThreadConversation
from routing.unsubscribe_mail import EmailUnsubscribe

StepFactory = Callable[[], Step]


@dataclass(frozen=True, slots=True)
class StepKind:
    """A built-in step: its name, the channels it applies to, how to build it without config."""

    name: str
    channels: frozenset[Channel]
    factory: StepFactory | None  # None: it needs config; the hub supplies the factory


def _kind(
    cls: type[EmailAutoreply | EmailBounce | EmailLoopGuard | ThreadConversation],
) -> StepKind:
    return StepKind(cls.name, cls.channels, cls)


STEPS: dict[str, StepKind] = {
    kind.name: kind
    for kind in (
        _kind(EmailBounce),
        _kind(EmailAutoreply),
        _kind(EmailLoopGuard),
        _kind(ThreadConversation),
        # Needs its word lists and answers: built by the hub from Settings.
        StepKind(SmsKeywords.name, SmsKeywords.channels, None),
        # Needs subscriptions.unsubscribe_address: built by the hub.
        StepKind(EmailUnsubscribe.name, EmailUnsubscribe.channels, None),
    )
}


class PipelineError(ValueError):
    """A pipeline that cannot be built: `where` (the config path) and `reason`."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


class UnknownStep(PipelineError):
    pass


class StepNotForChannel(PipelineError):
    pass


def check_pipeline(
    where: str, channel: Channel, names: Iterable[str], known: Iterable[str]
) -> None:
    """Raise for a step that does not exist or does not apply to `channel`.

    `known` are the names that exist besides the built-in ones (steps a hub
    was given in code), which apply to every channel. `where` prefixes the
    message with the config path, e.g. "routing.pipelines.email".
    """
    extra = set(known)
    for name in names:
        kind = STEPS.get(name)
        if kind is None:
            if name in extra:
                continue
            table = ", ".join(sorted({*STEPS, *extra}))
            raise UnknownStep(where, f"unknown routing step {name!r} (known: {table})")
        if channel not in kind.channels:
            only = ", ".join(sorted(c.value for c in kind.channels))
            raise StepNotForChannel(where, f"step {name!r} applies only to {only}")


def build_pipelines(
    pipelines: Mapping[Channel, Sequence[str]],
    factories: Mapping[str, StepFactory] | None = None,
    *,
    where: str = "routing.pipelines",
) -> dict[Channel, list[Step]]:
    """One list of step instances per channel, in the configured order.

    `factories` build steps that need config (they override the built-in
    factory of the same name) or steps of one's own (tests). A step named in
    several pipelines is built once and shared, as when there was one list:
    a stateful step (the loop guard's counts) must not count twice.
    """
    table: dict[str, StepFactory] = {
        kind.name: kind.factory for kind in STEPS.values() if kind.factory is not None
    }
    table.update(factories or {})
    own = set(table) - set(STEPS)
    built: dict[str, Step] = {}
    out: dict[Channel, list[Step]] = {}
    for channel, names in pipelines.items():
        check_pipeline(f"{where}.{channel.value}", channel, names, own)
        steps: list[Step] = []
        for name in names:
            if name not in table:  # a built-in step that needs config nobody supplied
                raise UnknownStep(f"{where}.{channel.value}", f"step {name!r} needs config")
            if name not in built:
                built[name] = table[name]()
            steps.append(built[name])
        out[channel] = steps
    return out


def applies_to(name: str) -> frozenset[Channel]:
    """The channels a step may be listed under (a step given in code: every channel)."""
    kind = STEPS.get(name)
    return kind.channels if kind is not None else ALL_CHANNELS
