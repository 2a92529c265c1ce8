"""The unsubscribe link and headers a marketing message carries (for the sender)."""

from __future__ import annotations

from hub.config import Settings
from hub.subscriptions.tokens import make_token, unsubscribe_mailto, unsubscribe_url

ONE_CLICK = "List-Unsubscribe=One-Click"


def unsubscribe_headers(
    settings: Settings, customer_id: int, identity_id: int | None, campaign_id: int | None
) -> tuple[str, dict[str, str]]:
    """(the visible link for the template's `unsubscribe_url`, the RFC 2369/8058 headers).

    List-Unsubscribe names the https link first (the one-click POST target) and
    the mailto when subscriptions.unsubscribe_address is set.
    """
    token = make_token(settings.subscriptions.token_key, customer_id, identity_id, campaign_id)
    url = unsubscribe_url(settings, token)
    targets = [f"<{url}>"]
    if settings.subscriptions.unsubscribe_address:
        targets.append(f"<{unsubscribe_mailto(settings, token)}>")
    return url, {"List-Unsubscribe": ", ".join(targets), "List-Unsubscribe-Post": ONE_CLICK}


def preview_unsubscribe_url(settings: Settings, customer_id: int) -> str:
    """A template preview shows the link the customer would get (no campaign yet);
    without a token key it shows where the link will go."""
    if len(settings.subscriptions.token_key) < 16:
        return unsubscribe_url(settings, "TOKEN")
    token = make_token(settings.subscriptions.token_key, customer_id, None, None)
    return unsubscribe_url(settings, token)
