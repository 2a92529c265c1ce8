"""The running hub: config, database, event bus, teams and the ingest pipeline, wired once.

`crmhub serve`, the CLI commands and the tests all build the same object, so
there is one place that decides how the parts fit together.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from channels.base import Channel
from channels.email.attachments import AttachmentStore
from channels.email.inbound import MailReader
from hub.calls.assign import ConversationAssigner
from hub.campaigns.scheduler import CampaignScheduler
from hub.config import Settings
from hub.events.bus import EventBus
from hub.events.presence import Presence
from hub.events.stream import EventStream
from hub.ingest.pipeline import Ingestor
from hub.ingest.steps import pipelines_from
from hub.mail.quarantine import Quarantine
from hub.mail.runner import MailboxRunner
from hub.outbox.dispatcher import Dispatcher
from hub.outbox.queue import senders_from
from hub.privacy.audit import AuditLog
from hub.privacy.retention import run_periodically
from hub.records.teams import TeamRouter
from hub.store.checkpoint import WalCheckpointer
from hub.store.db import Database
from routing.base import Step


class Hub:
    def __init__(
        self,
        settings: Settings,
        extra_steps: dict[str, Callable[[], Step]] | None = None,
        *,
        read_mail: bool = False,
        dispatch: bool = True,
    ) -> None:
        """`read_mail`: run the IMAP sync of the configured mailboxes (`crmhub serve`
        does; one-shot CLI commands and most tests do not). `dispatch`: send what
        the outbox holds; one-shot commands (seed-demo, quarantine) pass False so
        that running one never sends a queued message as a side effect."""
        self.settings = settings
        self.read_mail = read_mail
        self.dispatch = dispatch
        self.mail_runners: list[MailboxRunner] = []
        self.attachments = AttachmentStore(settings.email.attachments_dir)
        self.db = Database(settings.database)
        self.bus = EventBus()
        self.presence = Presence()
        self.audit = AuditLog(self.db)
        self.events = EventStream(
            self.db,
            self.bus,
            keep=settings.events.keep_events,
            keep_hours=settings.events.keep_hours,
            pop_region=settings.identity.default_region,
        )
        self._retention: asyncio.Task[None] | None = None
        self.checkpoints = WalCheckpointer(self.db)
        # Built now, not in start(): an unknown step name must fail before anything runs.
        self.pipelines: dict[Channel, list[Step]] = pipelines_from(settings, extra_steps)
        self._ingestor: Ingestor | None = None
        self._teams: TeamRouter | None = None
        # Outbound: the channels this node sends on, and the outbox worker.
        self.senders = senders_from(settings)
        self.dispatcher = Dispatcher(self.db, settings.outbox, self.senders, self.bus)
        # Campaign runs, follow-ups and task reminders (one leading node).
        self.campaigns = CampaignScheduler(self)

    @property
    def ingestor(self) -> Ingestor:
        if self._ingestor is None:
            raise RuntimeError("Hub.start() was not called")
        return self._ingestor

    @property
    def quarantine(self) -> Quarantine:
        """The held mail, read back by the same reader the mailbox sync uses."""
        reader = MailReader(self.settings.email, self.attachments)
        return Quarantine(self.db, self.ingestor, reader)

    @property
    def teams(self) -> TeamRouter:
        if self._teams is None:
            raise RuntimeError("Hub.start() was not called")
        return self._teams

    async def start(self) -> None:
        await self.checkpoints.start()  # before any write: commits never checkpoint
        await self.events.start()  # first: every event published from here on is kept
        region = self.settings.identity.default_region
        reply_addresses = {
            m.reply_address: m.address for m in self.settings.email.mailboxes if m.reply_address
        }
        self._teams = await TeamRouter.load(
            self.db, self.settings.teams, region, aliases=reply_addresses
        )
        self._ingestor = Ingestor(
            self.db,
            self.bus,
            self.pipelines,
            self._teams,
            region=region,
            batch_max=self.settings.ingest.batch_max,
            max_queue=self.settings.ingest.max_queue,
        )
        await self._ingestor.start()
        self.events.write_through = self._ingestor.write_through
        assignment = self.settings.routing.assignment
        if assignment.enabled:
            self._ingestor.assigner = ConversationAssigner(
                self.presence, assignment.steps, assignment.max_open_conversations
            )
        await self.audit.start()
        privacy = self.settings.privacy
        if privacy.retention and self.dispatch:  # the serving node's job, not one-shot commands
            self._retention = asyncio.create_task(
                run_periodically(self.db, privacy.retention, privacy.retention_interval_hours),
                name="retention",
            )
        if self.dispatch:
            await self.dispatcher.start()
            if self.settings.campaigns.scheduler:
                await self.campaigns.start()
        if self.read_mail:
            for mailbox in self.settings.email.mailboxes:
                if mailbox.imap is None:
                    continue
                runner = MailboxRunner(
                    self.db, self._ingestor, mailbox, self.settings.email, self.attachments
                )
                self.mail_runners.append(runner)
                await runner.start()

    async def stop(self) -> None:
        await self.campaigns.stop()
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
            self._retention = None
        await self.audit.stop()
        for runner in self.mail_runners:
            await runner.stop()
        self.mail_runners = []
        await self.dispatcher.stop()
        if self._ingestor is not None:
            await self._ingestor.stop()
        await self.events.stop()
        await self.checkpoints.stop()
        await self.db.close()
