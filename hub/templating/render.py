"""Rendering a message template for one recipient, in Jinja2's sandbox.

Templates are written by marketing users, so they run sandboxed (no attribute
access to Python internals) and undefined names are errors: a typo in
`{{ frist_name }}` must fail that message with a reason rather than send
"Hallo ,". Fallbacks are explicit: `{{ first_name | default("Kundin, Kunde") }}`
(`default` also replaces empty values here, since a missing first name is
stored as ""). HTML parts autoescape; subject, text and SMS bodies do not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, Undefined
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.exceptions import TemplateError as JinjaError
from jinja2.sandbox import SandboxedEnvironment

MAX_SOURCE = 200_000  # characters of one part


class TemplateError(Exception):
    """This template cannot be rendered (for this recipient): `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TemplateParts:
    """Email: subject, html, text; SMS: body. Unused parts stay empty."""

    subject: str = ""
    html: str = ""
    text: str = ""
    body: str = ""


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str = ""
    html: str = ""
    text: str = ""
    body: str = ""


def _default(value: Any, fallback: Any = "", boolean: bool = True) -> Any:
    """Jinja's `default`, but an empty value counts as missing too (boolean=True)."""
    if isinstance(value, Undefined) or value is None:
        return fallback
    if boolean and not value:
        return fallback
    return value


def _environment(autoescape: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=autoescape,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.filters["default"] = env.filters["d"] = _default
    return env


_PLAIN = _environment(False)
_HTML = _environment(True)


@lru_cache(maxsize=512)
def _compile(source: str, html: bool) -> Template:
    """Compiled once per distinct source: a campaign renders one template 100,000 times."""
    return (_HTML if html else _PLAIN).from_string(source)


def check(parts: TemplateParts) -> None:
    """Syntax-check every part (at save time), raising TemplateError naming the part."""
    for name in ("subject", "html", "text", "body"):
        source = getattr(parts, name)
        if len(source) > MAX_SOURCE:
            raise TemplateError(f"{name}: longer than {MAX_SOURCE} characters")
        try:
            _compile(source, name == "html")
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{name}, line {exc.lineno}: {exc.message}") from None


def render(parts: TemplateParts, context: Mapping[str, Any]) -> Rendered:
    """All parts for one recipient, or TemplateError with the part and the reason."""
    out: dict[str, str] = {}
    for name in ("subject", "html", "text", "body"):
        source = getattr(parts, name)
        if not source:
            out[name] = ""
            continue
        try:
            out[name] = _compile(source, name == "html").render(context)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{name}, line {exc.lineno}: {exc.message}") from None
        except UndefinedError as exc:
            raise TemplateError(f"{name}: {exc.message}") from None
        except SecurityError as exc:
            raise TemplateError(f"{name}: not allowed in a template: {exc}") from None
        except JinjaError as exc:
            raise TemplateError(f"{name}: {exc}") from None
        except (ArithmeticError, TypeError, ValueError, LookupError) as exc:
            # Errors of the template's own expressions ({{ 1 / 0 }}, "a" + 1).
            raise TemplateError(f"{name}: {type(exc).__name__}: {exc}") from None
    # A subject is one line: a newline in it would start a header of its own.
    out["subject"] = " ".join(out["subject"].split())
    return Rendered(**out)
