"""Message templates: Jinja2 in a sandbox, stored with versions, defaults in templates/."""

from hub.templating.context import recipient_contexts
from hub.templating.render import Rendered, TemplateError, TemplateParts, check, render

__all__ = ["Rendered", "TemplateError", "TemplateParts", "check", "recipient_contexts", "render"]
