"""The console's pages: login, my work, search, the customer card, a conversation.

Server-rendered with Jinja2 (autoescape: a customer named `<script>` is
text), over the same stores and permission checks as the API, so a page
can show nothing the API would refuse. Forms post back here with a CSRF
token; a refused action (opted out, bounced, not configured) shows its
reason on the page instead of an error page.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from hub.errors import DomainError, Forbidden
from hub.outbox.replies import reply
from hub.records.auth import authenticate_password, issue_token, revoke_token
from hub.records.consent import consent_in_force
from hub.records.customers import CustomerFilter, CustomerStore
from hub.records.history import HistoryStore
from hub.records.identity import InvalidIdentity, normalize_email, normalize_phone
from hub.records.lookup import caller_card
from hub.records.schemas import TaskIn, TaskPatch
from hub.store.models import Conversation, ConversationStatus
from hub.web.auth import HUB, PRINCIPAL, THROTTLE
from hub.web.console.calls import team_members
from hub.web.console.paths import path_id
from hub.web.console.session import (
    CSRF_FIELD,
    clear_session,
    csrf_ok,
    csrf_token,
    remember_csrf,
    session_principal,
    set_session,
)
from hub.web.serialize import customer_json

HERE = Path(__file__).parent
ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, auto_reload=False
)
# No inline script or style: everything the page runs comes from /static.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
# Pages reached by customers from links in mail (hub/web/public/): no session, no cookies.
CUSTOMER_PAGES = ("/u/", "/subscribe")
CHANNELS = ("email", "sms", "phone", "note")  # the card's history filters
PUBLIC = ("/login", "/static/", "/healthz", "/readyz", "/api/", "/webhooks/")
routes = web.RouteTableDef()


def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    context.setdefault("user", request.get(PRINCIPAL))
    context["csrf"] = csrf_token(request)
    html = ENV.get_template(name).render(**context)
    response = web.Response(text=html, content_type="text/html", status=status)
    remember_csrf(request, response)
    return response


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else ""


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Pages need a session (else the login page), forms a CSRF token, answers a CSP."""
    if request.path.startswith(("/api/", "/webhooks/", *CUSTOMER_PAGES)):
        return await handler(request)  # customer pages (unsubscribe, sign-up) set their own CSP
    if not request.path.startswith(PUBLIC):
        principal = await session_principal(request, request.app[HUB])
        if principal is None:
            raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs)}")
        request[PRINCIPAL] = principal
    if request.method == "POST" and not request.path.startswith(("/api/", "/webhooks/")):
        form = await request.post()
        if not csrf_ok(request, str(form.get(CSRF_FIELD, ""))):
            return web.Response(
                status=403, text="403: the form's CSRF token is missing or wrong; reload the page"
            )
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def _store(request: web.Request, session: Any) -> CustomerStore:
    hub = request.app[HUB]
    return CustomerStore(session, request[PRINCIPAL], hub.settings.identity.default_region)


def _history(request: web.Request, session: Any) -> HistoryStore:
    hub = request.app[HUB]
    return HistoryStore(session, request[PRINCIPAL], hub.settings.identity.default_region)


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    return render(request, "login.html", user=None, next=request.query.get("next", "/"))


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    form = await request.post()
    hub = request.app[HUB]
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    target = str(form.get("next", "/"))
    if not target.startswith("/") or target.startswith("//"):
        target = "/"  # only our own pages: no open redirect
    throttle = request.app[THROTTLE]
    address = request.remote or "unknown"
    wait = throttle.wait(username, address)
    if wait > 0:
        error = f"Too many failed logins; try again in {math.ceil(wait)} s."
        return render(request, "login.html", 429, user=None, error=error, next=target)
    principal = await authenticate_password(
        hub.db, username, password, cost=hub.settings.auth.password_cost
    )
    if principal is None:
        throttle.failed(username, address)
        error = "Wrong username or password."
        return render(
            request, "login.html", 401, user=None, error=error, next=target, username=username
        )
    throttle.succeeded(username)
    token = await issue_token(hub.db, principal.username, name="console")
    response = web.HTTPSeeOther(target)
    set_session(request, response, token)
    raise response


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    token = request.cookies.get("crmhub_session", "")
    if token:
        await revoke_token(request.app[HUB].db, token)
    response = web.HTTPSeeOther("/login")
    clear_session(response)
    raise response


@routes.get("/search")
async def search(request: web.Request) -> web.Response:
    q = request.query.get("q", "").strip()
    results: list[dict[str, Any]] = []
    phone = None
    if q:
        region = request.app[HUB].settings.identity.default_region
        async with request.app[HUB].db.read() as s:
            store = _store(request, s)
            found = await _by_identity(request, s, q, region)
            if found is None:
                flt = CustomerFilter(q=q) if not q.isdigit() else CustomerFilter(postal_code=q)
                customers, _ = await store.search(flt, None, 50)
            else:
                customers = found
                if not found and "@" not in q:
                    phone = q  # an unknown caller: offer to create the customer
            for c in customers:
                last = max([t for t in (c.last_inbound_at, c.last_outbound_at) if t], default=None)
                results.append(
                    {
                        "id": c.id,
                        "name": c.name,
                        "company": c.company,
                        "postal_code": c.postal_code,
                        "city": c.city,
                        "last": _when(last),
                    }
                )
    return render(request, "search.html", q=q, results=results, phone=phone)


async def _by_identity(request: web.Request, s: Any, q: str, region: str) -> list[Any] | None:
    """A phone number in any spelling or an email address: the one customer it names."""
    try:
        ident = normalize_email(q) if "@" in q else normalize_phone(q, region)
    except InvalidIdentity:
        return None
    if "@" not in q and sum(ch.isdigit() for ch in q) < 6:
        return None  # a postal code or a house number, not a phone number
    card = await caller_card(
        await s.connection(),
        request[PRINCIPAL],
        region=region,
        phone=None if "@" in q else ident.value,
        email=ident.value if "@" in q else None,
    )
    if card["status"] != "known":
        return []  # nobody, or a customer of another team: not shown here
    return [await _store(request, s).get(card["customer"]["id"])]


@routes.get("/customers/{id}")
async def customer_card(request: web.Request) -> web.Response:
    customer_id = path_id(request)
    before = None
    raw = request.query.get("before", "")
    if raw:
        at, _, iid = raw.partition("_")
        try:
            before = (datetime.fromisoformat(at), int(iid))
        except ValueError:
            before = None
    async with request.app[HUB].db.read() as s:
        store = _store(request, s)
        customer = await store.get(customer_id)
        identities, tags = await store.details([customer_id])
        card = customer_json(customer, identities.get(customer_id, []), tags.get(customer_id, []))
        card["consent"] = (await consent_in_force(await s.connection(), [customer_id])).get(
            customer_id, []
        )
        history = _history(request, s)
        channel = request.query.get("channel") or None
        if channel not in CHANNELS:
            channel = None
        page, cursor = await history.timeline(customer_id, before, 50, channel)
        tasks, _ = await history.tasks(
            customer_id=customer_id,
            assignee_id=None,
            done=False,
            due_before=None,
            after_id=None,
            limit=100,
        )
        conversations, _ = await history.conversations(
            customer_id=customer_id,
            channel=None,
            status=ConversationStatus.OPEN.value,
            assignee_id=None,
            team_id=None,
            after_id=None,
            limit=50,
        )
        members = await team_members(await s.connection(), customer.team_id)
    timeline = [
        {
            "at": _when(i.occurred_at),
            "channel": i.channel,
            "direction": i.direction,
            "subject": i.subject,
            "text": i.text,
        }
        for i in page
    ]
    older = f"{cursor[0].isoformat()}_{cursor[1]}" if cursor else None
    return render(
        request,
        "customer.html",
        c=card,
        timeline=timeline,
        older=quote(older) if older else None,
        tasks=[
            {
                "id": t.id,
                "title": t.title,
                "due": _when(t.due_at),
                "due_input": _when(t.due_at).replace(" ", "T"),
                "assignee_id": t.assignee_id,
            }
            for t in tasks
        ],
        members=members,
        conversations=conversations,
        channel=channel,
        channels=CHANNELS,
        message=request.query.get("done"),
        error=request.query.get("error"),
    )


@routes.post("/customers/{id}/notes")
async def add_note(request: web.Request) -> web.Response:
    customer_id = path_id(request)
    text = str((await request.post()).get("text", "")).strip()
    if text:
        async with request.app[HUB].db.write() as s:
            await _history(request, s).add_note(customer_id, text[:10000])
    raise web.HTTPSeeOther(f"/customers/{customer_id}?done=Note+added")


@routes.post("/customers/{id}/tasks")
async def add_task(request: web.Request) -> web.Response:
    customer_id = path_id(request)
    form = await request.post()
    due_raw = str(form.get("due", "")).strip()
    try:
        due = datetime.fromisoformat(due_raw).replace(tzinfo=UTC) if due_raw else None
    except ValueError:
        error = quote(f"due: {due_raw!r} is not a date and time")
        raise web.HTTPSeeOther(f"/customers/{customer_id}?error={error}") from None
    title = str(form.get("title", "")).strip()[:300]
    if not title:
        raise web.HTTPSeeOther(f"/customers/{customer_id}?error=A+task+needs+a+title")
    data = TaskIn(customer_id=customer_id, title=title, due_at=due)
    async with request.app[HUB].db.write() as s:
        await _history(request, s).create_task(data)
    raise web.HTTPSeeOther(f"/customers/{customer_id}?done=Task+added")


@routes.post("/tasks/{id}/done")
async def task_done(request: web.Request) -> web.Response:
    async with request.app[HUB].db.write() as s:
        task = await _history(request, s).update_task(path_id(request), TaskPatch(done=True))
    raise web.HTTPSeeOther(f"/customers/{task.customer_id}?done=Task+closed")


@routes.get("/conversations/{id}")
async def conversation(request: web.Request) -> web.Response:
    async with request.app[HUB].db.read() as s:
        history = _history(request, s)
        conv: Conversation = await history.conversation(path_id(request))
        messages = await history.conversation_interactions(conv)
        customer = await _store(request, s).get(conv.customer_id)
    return render(
        request,
        "conversation.html",
        v=conv,
        customer_name=customer.name,
        messages=[
            {
                "at": _when(i.occurred_at),
                "direction": i.direction,
                "text": i.text,
                "delivery_status": i.delivery_status,
            }
            for i in messages
        ],
        error=request.query.get("error"),
        message=request.query.get("done"),
    )


@routes.post("/conversations/{id}/reply")
async def send_reply(request: web.Request) -> web.Response:
    conversation_id = path_id(request)
    form = await request.post()
    text = str(form.get("text", "")).strip()
    subject = str(form.get("subject", "")).strip() or None
    hub = request.app[HUB]
    try:
        async with hub.db.write() as s:
            _interaction, event = await reply(
                s, request[PRINCIPAL], hub.settings, hub.senders, conversation_id, text, subject
            )
    except (DomainError, Forbidden) as exc:
        reason = exc.detail if isinstance(exc, DomainError) else str(exc)
        raise web.HTTPSeeOther(
            f"/conversations/{conversation_id}?error={quote(str(reason))}"
        ) from None
    hub.bus.publish(event)
    hub.dispatcher.wake()
    raise web.HTTPSeeOther(f"/conversations/{conversation_id}?done=Sent")


def static_routes() -> list[web.AbstractRouteDef]:
    return [web.static("/static", HERE / "static", append_version=False)]
