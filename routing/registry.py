"""Routing step names -> factories. Explicit: an unknown name is an error at start."""

from __future__ import annotations

from collections.abc import Callable

from routing.base import Step
from routing.mail_steps import EmailAutoreply, EmailBounce, EmailLoopGuard
from routing.threading import ThreadConversation

# Steps that need config (sms_keywords, the loop guard's limits, reply
# windows) are built by the hub from Settings and override these defaults.
STEPS: dict[str, Callable[[], Step]] = {
    EmailBounce.name: EmailBounce,
    EmailAutoreply.name: EmailAutoreply,
    EmailLoopGuard.name: EmailLoopGuard,
    ThreadConversation.name: ThreadConversation,
}


class UnknownStep(KeyError):
    pass


def build_steps(names: list[str], extra: dict[str, Callable[[], Step]] | None = None) -> list[Step]:
    table = {**STEPS, **(extra or {})}
    steps: list[Step] = []
    for name in names:
        if name not in table:
            known = ", ".join(sorted(table))
            raise UnknownStep(f"unknown routing step {name!r} (known: {known})")
        steps.append(table[name]())
    return steps
