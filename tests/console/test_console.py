"""The agent console in a real browser: Debian's chromium driven by Playwright.

The hub serves on SQLite in a thread of its own (with the Twilio fake), and
the browser does what an agent does: log in, find a caller by any phone
spelling, open the card, add a note and a task, answer an SMS, and see new
messages arrive without a reload. Screenshots go to the test's tmp folder.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from channels.base import Channel, InboundContact
from hub.records.auth import create_user
from hub.runtime import Hub
from hub.store.migrate import upgrade
from hub.store.models import Role
from hub.web.app import create_app
from tests.support.email_outbound import SECRET, mailbox_config
from tests.support.hubs import make_settings
from tests.support.services import require_service
from tests.support.smtp_server import SmtpServer
from tests.support.twilio_fake import ACCOUNT_SID, TwilioFake, twilio_fake

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PHONE = "+49301234567"
PASSWORD = "console-pass-1"
PBX_TOKEN = "console-pbx-token"
MISSED = "+491705550123"  # a customer whose call nobody took


class Console:
    """A hub, its web app and the Twilio fake, on one event loop in a thread."""

    def __init__(self, db: Path) -> None:
        self.url = f"sqlite+aiosqlite:///{db}"
        upgrade(self.url)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.base = ""
        self.fake: TwilioFake | None = None
        self.smtp = SmtpServer()
        self.hub: Hub | None = None
        self.ids: dict[str, int] = {}
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),))

    async def _main(self) -> None:
        from aiohttp import web

        async with twilio_fake() as fake:
            self.fake = fake
            settings = make_settings(
                self.url,
                sms={
                    "enabled": True,
                    "account_sid": ACCOUNT_SID,
                    "auth_token": "console-token",
                    "from_number": "+4930555000",
                    "public_url": "http://127.0.0.1",
                    "api_base_url": fake.base_url,
                },
                email={
                    "mailboxes": [mailbox_config("support", "support@example.com", self.smtp)],
                    "reply_token_secret": SECRET,
                },
                voice={
                    "public_url": "http://127.0.0.1",
                    "pbx": {"enabled": True, "token": PBX_TOKEN},
                    "twilio": {
                        "enabled": True,
                        "auth_token": "console-voice-token",
                        "account_sid": ACCOUNT_SID,
                        "from_number": "+4930555000",
                        "api_base_url": fake.base_url,
                    },
                },
            )
            hub = self.hub = Hub(settings)
            await hub.start()
            for name, team, role in (
                ("anna", "Support", Role.AGENT),
                ("ben", "Support", Role.AGENT),
                ("sven", "Sales", Role.AGENT),
                ("sara", "Support", Role.SUPERVISOR),
            ):
                user = await create_user(
                    hub.db,
                    name,
                    role=role,
                    teams=[team],
                    password=PASSWORD,
                    password_cost=12,
                )
                assert user.id is not None
                self.ids[name] = user.id
            caller = await hub.ingestor.ingest(
                InboundContact(Channel.SMS, PHONE, text="Wann kommt mein Paket?", provider_id="SM1")
            )
            self.ids["caller"] = caller.customer_id
            self.ids["conversation"] = caller.conversation_id or 0
            other = await hub.ingestor.ingest(
                InboundContact(
                    Channel.EMAIL,
                    "x@example.org",
                    recipient="sales@example.com",
                    provider_id="<s1@example.org>",
                )
            )
            self.ids["sales_customer"] = other.customer_id
            mail = await hub.ingestor.ingest(
                InboundContact(
                    Channel.EMAIL,
                    "Kunde <kunde@customer.example>",
                    recipient="support@example.com",
                    subject="Lieferung",
                    text="Wo bleibt die Lieferung?",
                    provider_id="<m1@customer.example>",
                    metadata={"mailbox": "support", "folder": "INBOX", "uid": 1},
                )
            )
            self.ids["email_conversation"] = mail.conversation_id or 0
            missed = await hub.ingestor.ingest(
                InboundContact(Channel.SMS, MISSED, text="Bitte um Rückruf", provider_id="SM9")
            )
            self.ids["missed_customer"] = missed.customer_id
            async with hub.db.write() as s:
                from sqlalchemy import update

                from hub.store.tables import customer_t

                await (await s.connection()).execute(
                    update(customer_t)
                    .where(customer_t.c.id == caller.customer_id)
                    .values(name="<script>window.pwned=1</script>Paula", company="Paket AG")
                )
            runner = web.AppRunner(create_app(hub, manage_hub=False))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            self._stop = asyncio.Event()
            self.ready.set()
            await self._stop.wait()
            await runner.cleanup()
            await hub.stop()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def __enter__(self) -> Console:
        self.smtp.start()
        self.thread.start()
        assert self.ready.wait(60), "the console server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)
        self.smtp.stop()

    def pbx(self, body: dict[str, Any]) -> None:
        """A PBX script's webhook, authenticated by the token in the URL as configured."""
        import json
        import urllib.request

        request = urllib.request.Request(
            f"{self.base}/webhooks/cti/{PBX_TOKEN}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200, answer.read()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    if not Path(CHROMIUM).exists():
        require_service("chromium", "the console's browser tests drive Debian's chromium")
    with Console(tmp_path_factory.mktemp("console") / "console.db") as running:
        yield running


@pytest.fixture(scope="module")
def browser(console: Console) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


def _login(browser: Any, console: Console, user: str, **context: Any) -> Any:
    page = browser.new_context(**context).new_page()
    page.goto(console.base + "/")
    assert page.url.startswith(console.base + "/login")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(console.base + "/")
    return page


def test_an_agents_day_search_card_note_task_reply(
    console: Console, browser: Any, tmp_path: Path
) -> None:
    page = _login(browser, console, "anna")
    page.get_by_label("Search customers").fill("030 / 123 45 67")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="<script>window.pwned=1</script>Paula").click()
    # The name is text, not markup, and no script of the customer's ran.
    assert page.locator("#name").inner_text() == "<script>window.pwned=1</script>Paula"
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert "Wann kommt mein Paket?" in page.locator("#timeline").inner_text()
    page.get_by_label("Note").fill("Paket ist unterwegs")
    page.get_by_role("button", name="Add note").click()
    page.wait_for_selector("text=Note added")
    assert "Paket ist unterwegs" in page.locator("#timeline").inner_text()
    page.get_by_label("New task").fill("Rückruf morgen")
    page.get_by_role("button", name="Add task").click()
    page.wait_for_selector("text=Task added")
    assert "Rückruf morgen" in page.locator("#tasks").inner_text()
    page.screenshot(path=str(tmp_path / "card.png"), full_page=True)
    # Reply on the SMS conversation: the Twilio fake receives it.
    page.goto(f"{console.base}/conversations/{console.ids['conversation']}")
    page.get_by_label("Reply by sms").fill("Morgen zwischen 9 und 12 Uhr.")
    assert "1 SMS" in page.locator("#segments").inner_text()
    page.get_by_role("button", name="Send").click()
    page.wait_for_selector("text=Sent")
    assert "Morgen zwischen 9 und 12 Uhr." in page.locator("#messages").inner_text()
    assert console.fake is not None
    for _ in range(100):
        if console.fake.requests:
            break
        page.wait_for_timeout(100)
    [sent] = console.fake.requests
    assert (sent.form["To"], sent.form["Body"]) == (PHONE, "Morgen zwischen 9 und 12 Uhr.")


def test_a_new_message_appears_without_a_reload(console: Console, browser: Any) -> None:
    page = _login(browser, console, "ben")
    page.goto(f"{console.base}/conversations/{console.ids['conversation']}")
    page.wait_for_selector("#live.on")
    assert console.hub is not None
    hub = console.hub
    console.run(
        hub.ingestor.ingest(InboundContact(Channel.SMS, PHONE, text="Danke!", provider_id="SM2"))
    )
    page.wait_for_selector("#messages >> text=Danke!")


def test_forms_need_the_csrf_token_and_other_teams_stay_out(console: Console, browser: Any) -> None:
    page = _login(browser, console, "sven")
    resp = page.request.post(
        f"{console.base}/customers/{console.ids['sales_customer']}/notes", form={"text": "x"}
    )
    assert resp.status == 403
    resp = page.goto(f"{console.base}/customers/{console.ids['caller']}")
    assert resp is not None and resp.status == 404


def test_the_phone_view_has_no_horizontal_scrolling(
    console: Console, browser: Any, tmp_path: Path
) -> None:
    page = _login(browser, console, "anna", viewport={"width": 390, "height": 844})
    for path in (
        "/",
        f"/customers/{console.ids['caller']}",
        f"/conversations/{console.ids['conversation']}",
        "/search?q=Paula",
    ):
        page.goto(console.base + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
    page.goto(f"{console.base}/customers/{console.ids['caller']}")
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)


def test_an_unknown_caller_becomes_a_customer_from_the_search(
    console: Console, browser: Any
) -> None:
    page = _login(browser, console, "anna")
    page.get_by_label("Search customers").fill("0171 9876543")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("button", name="Create customer with this number").click()
    page.wait_for_selector("text=Customer created")
    assert "+491719876543" in page.locator("main").inner_text()
    # Edit the basic fields and tags.
    page.get_by_text("Edit").click()
    page.get_by_label("Name").fill("Neue Anruferin")
    page.get_by_label("Tags (comma-separated)").fill("vip, rückruf")
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("text=Saved")
    assert page.locator("#name").inner_text() == "Neue Anruferin"
    assert "rückruf" in page.locator("main").inner_text()


def test_presence_switch_and_the_supervisors_reassignment(console: Console, browser: Any) -> None:
    assert console.hub is not None
    page = _login(browser, console, "ben")
    page.get_by_role("button", name="Go away").click()
    page.wait_for_selector("#status >> text=away")
    assert console.hub.presence.status(console.ids["ben"]).value == "away"
    page.get_by_role("button", name="Be available").click()
    page.wait_for_selector("#status >> text=available")

    sup = _login(browser, console, "sara")
    sup.get_by_role("link", name="Team view").click()
    sup.get_by_label(f"Assign conversation {console.ids['conversation']}").select_option(
        label="ben"
    )
    sup.get_by_role("button", name="Assign").first.click()
    sup.wait_for_url(console.base + "/team")
    assert "ben" in sup.locator("main").inner_text()
    # An agent may not open the team view.
    resp = page.goto(console.base + "/team")
    assert resp is not None and resp.status == 403


# Desktop notifications are recorded, not shown: the page's own code calls the API.
RECORD_NOTIFICATIONS = """
window.__notes = []; window.__closed = [];
function FakeNotification(title, options) {
  window.__notes.push(title);
  this.close = function () { window.__closed.push(title); };
}
FakeNotification.permission = "granted";
FakeNotification.requestPermission = function () { return Promise.resolve("granted"); };
window.Notification = FakeNotification;
"""


def _call(call_id: str, **extra: Any) -> dict[str, Any]:
    return {"callId": call_id, "from": PHONE, "to": "+4930555000", "direction": "in", **extra}


def test_a_ringing_call_pops_where_it_rings_and_closes_when_taken(
    console: Console, browser: Any, tmp_path: Path
) -> None:
    anna = _login(browser, console, "anna")
    ben = _login(browser, console, "ben")
    sven = _login(browser, console, "sven")
    for page in (anna, ben, sven):
        page.add_init_script(RECORD_NOTIFICATIONS)
        page.reload()
        page.wait_for_selector("#live.on")
    console.pbx({"event": "newCall", **_call("pop-1"), "user": ["anna", "ben"]})
    name = "<script>window.pwned=1</script>Paula"
    for page in (anna, ben):
        pop = page.locator(".pop[data-call='pop-1']")
        pop.wait_for()
        assert pop.locator(".pop-name").inner_text() == name
        text = pop.inner_text()
        assert "Paket AG" in text and "Wann kommt mein Paket?" in text, text
        assert page.evaluate("typeof window.pwned") == "undefined"
        assert page.title().startswith("☎ " + name)
        assert page.evaluate("window.__notes") == ["Call: " + name]
    ben.screenshot(path=str(tmp_path / "pop.png"), full_page=True)
    # Anna takes it: her pop becomes the card, Ben's closes (and its notification).
    console.pbx({"event": "answer", **_call("pop-1"), "user": "anna"})
    anna.wait_for_url(f"{console.base}/customers/{console.ids['caller']}")
    ben.locator(".pop[data-call='pop-1']").wait_for(state="detached")
    assert not ben.title().startswith("☎")
    assert ben.evaluate("window.__closed") == ["Call: " + name]
    console.pbx({"event": "hangup", **_call("pop-1"), "cause": "normalClearing"})
    # Sven (Sales) was not rung and may not see the caller: no pop ever reached him.
    assert sven.locator(".pop").count() == 0
    assert sven.evaluate("window.__notes") == []


def test_a_missed_call_is_listed_with_a_call_back_button(console: Console, browser: Any) -> None:
    missed = {"callId": "miss-1", "from": MISSED, "to": "+4930555000", "direction": "in"}
    console.pbx({"event": "newCall", **missed, "user": ["anna"]})
    console.pbx({"event": "hangup", **missed, "cause": "noAnswer"})
    page = _login(browser, console, "anna")
    row = page.locator("#missed li")
    assert row.count() == 1 and MISSED in row.inner_text()
    page.get_by_role("button", name=f"Call back {MISSED}").click()
    page.wait_for_selector(f"text=Calling {MISSED}")
    assert console.fake is not None
    [placed] = [r for r in console.fake.requests if r.path.endswith("/Calls.json")]
    assert placed.form["To"] == "client:anna"
    assert MISSED in placed.form["Twiml"]
    # Returned: it leaves the list (the outbound call is in the history).
    assert page.locator("#missed").count() == 0
    assert "No missed calls to return." in page.locator("main").inner_text()


def test_an_email_reply_reaches_the_smtp_relay(console: Console, browser: Any) -> None:
    page = _login(browser, console, "anna")
    page.goto(f"{console.base}/conversations/{console.ids['email_conversation']}")
    page.get_by_label("Reply by email").fill("Die Lieferung kommt am Montag.")
    page.get_by_role("button", name="Send").click()
    page.wait_for_selector("text=Sent")
    for _ in range(200):
        if console.smtp.received:
            break
        page.wait_for_timeout(100)
    [mail] = console.smtp.received
    assert mail.rcpt_tos == ["kunde@customer.example"]
    message = mail.message
    assert message["Subject"] == "Re: Lieferung"
    assert message["In-Reply-To"] == "<m1@customer.example>"
    assert "Die Lieferung kommt am Montag." in message.get_body(("plain",)).get_content()


def test_tasks_move_close_and_the_history_filter(console: Console, browser: Any) -> None:
    from sqlalchemy import select

    from hub.store.tables import task_t

    page = _login(browser, console, "anna")
    page.goto(f"{console.base}/customers/{console.ids['caller']}")
    page.get_by_label("New task").fill("Angebot schicken")
    page.get_by_role("button", name="Add task").click()
    page.wait_for_selector("text=Task added")
    item = page.locator("#tasks li", has_text="Angebot schicken")
    item.get_by_text("Move", exact=True).click()
    item.get_by_label("Due (UTC)").fill("2030-01-02T09:30")
    item.get_by_label("Assignee").select_option(label="ben")
    item.get_by_role("button", name="Move task").click()
    page.wait_for_selector("text=Task moved")
    assert console.hub is not None
    db = console.hub.db

    async def task_row() -> Any:
        async with db.read() as s:
            conn = await s.connection()
            return (
                await conn.execute(
                    select(task_t.c.due_at, task_t.c.assignee_id, task_t.c.done).where(
                        task_t.c.title == "Angebot schicken"
                    )
                )
            ).one()

    due, assignee, done = console.run(task_row())
    assert (due.strftime("%Y-%m-%d %H:%M"), assignee, done) == (
        "2030-01-02 09:30",
        console.ids["ben"],
        False,
    )
    assert "2030-01-02 09:30" in page.locator("#tasks li", has_text="Angebot schicken").inner_text()
    page.get_by_role("button", name="Close task Angebot schicken").click()
    page.wait_for_selector("text=Task closed")
    assert "Angebot schicken" not in page.locator("#tasks").inner_text()
    assert console.run(task_row())[2] is True
    # The history by channel: SMS only, then notes only.
    page.get_by_label("Note").fill("Nur eine Notiz")
    page.get_by_role("button", name="Add note").click()
    page.wait_for_selector("text=Note added")
    filters = page.get_by_role("navigation", name="History by channel")
    filters.get_by_role("link", name="sms", exact=True).click()
    page.wait_for_url("**channel=sms")
    timeline = page.locator("#timeline").inner_text()
    assert "Wann kommt mein Paket?" in timeline and "Nur eine Notiz" not in timeline
    filters.get_by_role("link", name="note", exact=True).click()
    page.wait_for_url("**channel=note")
    timeline = page.locator("#timeline").inner_text()
    assert "Nur eine Notiz" in timeline and "Wann kommt mein Paket?" not in timeline
