"""`/u/{token}` (unsubscribe, RFC 8058 one-click) and `/subscribe` (double opt-in sign-up).

Reached from mail by customers: no login, no session, no cookies, no CSRF
token (the signed link is the authority, and RFC 8058's POST comes from the
mail provider without any), no inline script; the console's CSP. A GET never
changes anything — mail scanners fetch links — so each GET shows one button
that POSTs. Answers are HTML pages, JSON for a JSON sign-up.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import jinja2
from aiohttp import web

from hub.errors import Conflict, DomainError
from hub.events.kinds import consent_changed
from hub.subscriptions.signup import (
    NEWSLETTER,
    PER_ADDRESS_PER_HOUR,
    Throttle,
    check_address,
    confirm,
    read_confirmation,
    request_signup,
    sending_mailbox,
)
from hub.subscriptions.tokens import InvalidToken, TokenClaims, read_token
from hub.subscriptions.unsubscribe import opt_out
from hub.web.auth import HUB
from hub.web.console.pages import CSP

log = logging.getLogger(__name__)
SIGNUP_THROTTLE = web.AppKey("signup_throttle", Throttle)
ADDRESS_THROTTLE = web.AppKey("signup_address_throttle", Throttle)
ONE_CLICK = "List-Unsubscribe=One-Click"
MAX_FORM = 4096
ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    auto_reload=False,
)
TEXT: dict[str, dict[str, str]] = {
    "de": {
        "unsub_title": "Abmelden",
        "unsub_ask": "Möchten Sie keine weiteren E-Mails dieser Art erhalten?",
        "unsub_button": "Ja, abmelden",
        "unsub_done_title": "Abgemeldet",
        "unsub_done": "Sie sind abgemeldet und erhalten keine weiteren E-Mails dieser Art.",
        "bad_title": "Link ungültig",
        "signup_title": "Newsletter abonnieren",
        "signup_ask": "Tragen Sie Ihre E-Mail-Adresse ein; Sie erhalten einen Bestätigungslink.",
        "signup_sent": "Danke! Wenn die Adresse E-Mails empfangen kann, ist ein "
        "Bestätigungslink unterwegs. Erst mit Ihrer Bestätigung senden wir den Newsletter.",
        "confirm_title": "Anmeldung bestätigen",
        "confirm_ask": "Bitte bestätigen Sie, dass Sie unseren Newsletter erhalten möchten.",
        "confirm_button": "Ja, Newsletter erhalten",
        "confirmed_title": "Bestätigt",
        "confirmed": "Danke, Ihre Anmeldung ist bestätigt.",
        "slow": "Zu viele Anmeldungen von Ihrer Adresse; bitte später noch einmal versuchen.",
        "unavailable": "Die Anmeldung ist derzeit nicht möglich.",
        "email": "E-Mail-Adresse",
        "name": "Name (freiwillig)",
        "subscribe": "Abonnieren",
    },
    "en": {
        "unsub_title": "Unsubscribe",
        "unsub_ask": "Do you want to stop receiving emails like this?",
        "unsub_button": "Yes, unsubscribe",
        "unsub_done_title": "Unsubscribed",
        "unsub_done": "You are unsubscribed and will get no more emails like this.",
        "bad_title": "Link not valid",
        "signup_title": "Subscribe to our newsletter",
        "signup_ask": "Enter your email address; you will get a confirmation link.",
        "signup_sent": "Thank you! If the address can receive mail, a confirmation link is "
        "on its way. We send the newsletter only after you confirm.",
        "confirm_title": "Confirm your subscription",
        "confirm_ask": "Please confirm that you want to receive our newsletter.",
        "confirm_button": "Yes, send me the newsletter",
        "confirmed_title": "Confirmed",
        "confirmed": "Thank you, your subscription is confirmed.",
        "slow": "Too many sign-ups from your address; please try again later.",
        "unavailable": "Sign-up is not available at the moment.",
        "email": "Email address",
        "name": "Name (optional)",
        "subscribe": "Subscribe",
    },
}


def _lang(request: web.Request, wanted: str | None = None) -> str:
    if wanted in TEXT:
        return wanted
    accept = request.headers.get("Accept-Language", "").lower()
    return "de" if accept.startswith("de") else "en"


def _page(
    request: web.Request,
    title: str,
    message: str,
    *,
    status: int = 200,
    action: str | None = None,
    button: str = "",
    form: str = "",
    lang: str | None = None,
) -> web.Response:
    lang = lang or _lang(request)
    html = ENV.get_template("page.html").render(
        lang=lang,
        t=TEXT[lang],
        title=title,
        message=message,
        action=action,
        button=button,
        form=form,
    )
    return web.Response(
        text=html,
        content_type="text/html",
        status=status,
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",  # the token is in the URL
            "Cache-Control": "no-store",
        },
    )


def _claims(request: web.Request) -> TokenClaims:
    key = request.app[HUB].settings.subscriptions.token_key
    if len(key) < 16:
        raise InvalidToken()
    return read_token(key, request.match_info["token"])


def _bad_link(request: web.Request, exc: DomainError) -> web.Response:
    t = TEXT[_lang(request)]
    return _page(request, t["bad_title"], exc.detail, status=400)


async def unsubscribe_page(request: web.Request) -> web.Response:
    t = TEXT[_lang(request)]
    try:
        _claims(request)
    except InvalidToken as exc:
        return _bad_link(request, exc)
    return _page(
        request, t["unsub_title"], t["unsub_ask"], action=request.path, button=t["unsub_button"]
    )


async def unsubscribe(request: web.Request) -> web.Response:
    """The page's button, or a mail provider's RFC 8058 one-click POST: opt out at once."""
    t = TEXT[_lang(request)]
    try:
        claims = _claims(request)
    except InvalidToken as exc:
        return _bad_link(request, exc)
    raw = await request.content.read(MAX_FORM)
    one_click = ONE_CLICK.encode() in raw
    how = "one-click unsubscribe (RFC 8058)" if one_click else "unsubscribe page"
    source = how + (f", campaign {claims.campaign_id}" if claims.campaign_id else "")
    hub = request.app[HUB]
    async with hub.db.write() as s:
        result = await opt_out(await s.connection(), claims, source)
    for purpose in result.purposes:
        assert result.customer_id is not None
        hub.bus.publish(
            consent_changed(
                customer_id=result.customer_id,
                channel=result.channel,
                purpose=purpose,
                state="opted_out",
                source=source,
                team_id=result.team_id,
            )
        )
    log.info("unsubscribe: customer %s, %s %s", result.customer_id, result.channel, result.purposes)
    return _page(request, t["unsub_done_title"], t["unsub_done"])


async def signup_form(request: web.Request) -> web.Response:
    t = TEXT[_lang(request)]
    return _page(request, t["signup_title"], t["signup_ask"], form="signup")


async def _signup_fields(request: web.Request) -> tuple[dict[str, str], bool]:
    raw = await request.content.read(MAX_FORM + 1)
    if len(raw) > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM, actual_size=len(raw))
    if request.content_type == "application/json":
        try:
            data = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise DomainError("body is not valid JSON") from None
        if not isinstance(data, dict):
            raise DomainError("body must be a JSON object")
        extra = sorted(set(data) - {"email", "name", "locale"})
        if extra:
            raise DomainError(f"unknown field {', '.join(extra)} (known: email, name, locale)")
        fields = {k: v for k, v in data.items() if isinstance(v, str)}
        as_json = True
    else:
        try:
            fields = dict(parse_qsl(raw.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            raise DomainError("form is not UTF-8") from None
        as_json = False
    if any("\x00" in v for v in fields.values()):
        # PostgreSQL text cannot hold NUL: refused here, not a failed commit.
        raise DomainError("fields must not contain NUL characters")
    return fields, as_json


def _answer(
    request: web.Request, as_json: bool, status: int, text: str, lang: str, title: str
) -> web.Response:
    if as_json:
        key = "detail" if status >= 400 else "status"
        body: dict[str, Any] = {key: text}
        if status >= 400:
            body["error"] = {400: "bad_request", 409: "conflict", 422: "invalid"}.get(
                status, "too_many_requests"
            )
        return web.json_response(body, status=status)
    return _page(
        request, title, text, status=status, lang=lang, form="signup" if status >= 400 else ""
    )


async def signup(request: web.Request) -> web.Response:
    """Queue a confirmation mail. The same answer for any well-formed address."""
    hub = request.app[HUB]
    try:
        fields, as_json = await _signup_fields(request)
    except DomainError as exc:
        return _answer(request, True, 400, exc.detail, "en", "")
    lang = _lang(request, fields.get("locale"))
    t = TEXT[lang]
    if not request.app[SIGNUP_THROTTLE].allow(request.remote or "unknown"):
        return _answer(request, as_json, 429, t["slow"], lang, t["signup_title"])
    name = " ".join(fields.get("name", "").split())[:200]
    try:
        sending_mailbox(hub.settings)
        address = check_address(fields.get("email", ""))
    except Conflict:
        return _answer(request, as_json, 409, t["unavailable"], lang, t["signup_title"])
    except DomainError as exc:
        return _answer(request, as_json, 422, exc.detail, lang, t["signup_title"])
    if request.app[ADDRESS_THROTTLE].allow(address):
        async with hub.db.write() as s:
            await request_signup(
                await s.connection(),
                hub.settings,
                address=address,
                raw=fields.get("email", "").strip(),
                name=name,
                locale=lang,
                team_id=hub.teams.default_team_id,
            )
        hub.dispatcher.wake()
    return _answer(request, as_json, 202, t["signup_sent"], lang, t["signup_title"])


async def confirm_page(request: web.Request) -> web.Response:
    t = TEXT[_lang(request)]
    try:
        read_confirmation(request.app[HUB].settings, request.match_info["token"])
    except InvalidToken as exc:
        return _bad_link(request, exc)
    return _page(
        request,
        t["confirm_title"],
        t["confirm_ask"],
        action=request.path,
        button=t["confirm_button"],
    )


async def confirm_signup(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    t = TEXT[_lang(request)]
    try:
        customer_id, issued = read_confirmation(hub.settings, request.match_info["token"])
    except InvalidToken as exc:
        return _bad_link(request, exc)
    async with hub.db.write() as s:
        done = await confirm(await s.connection(), customer_id, issued)
    if done is None:
        return _bad_link(request, InvalidToken())
    if done.newly:
        hub.bus.publish(
            consent_changed(
                customer_id=done.customer_id,
                channel="email",
                purpose=NEWSLETTER,
                state="opted_in",
                source="newsletter sign-up, double opt-in",
                team_id=done.team_id,
            )
        )
    return _page(request, t["confirmed_title"], t["confirmed"])


def mount(app: web.Application) -> None:
    hub = app[HUB]
    app[SIGNUP_THROTTLE] = Throttle(hub.settings.subscriptions.signup_per_hour)
    app[ADDRESS_THROTTLE] = Throttle(PER_ADDRESS_PER_HOUR)
    app.router.add_get("/u/{token}", unsubscribe_page)
    app.router.add_post("/u/{token}", unsubscribe)
    app.router.add_get("/subscribe", signup_form)
    app.router.add_post("/subscribe", signup)
    app.router.add_get("/subscribe/confirm/{token}", confirm_page)
    app.router.add_post("/subscribe/confirm/{token}", confirm_signup)
