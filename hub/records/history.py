"""History, conversations and tasks, visible exactly when their customer is."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy import or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from channels.base import Channel, Direction
from hub.errors import Invalid, NotFound
from hub.records.access import Action, customer_visible, require
from hub.records.auth import Principal
from hub.records.customers import CustomerStore
from hub.records.schemas import ConversationPatch, TaskIn, TaskPatch
from hub.store.models import (
    Conversation,
    Customer,
    Interaction,
    Task,
    utcnow,
)

T = TypeVar("T")


class HistoryStore:
    def __init__(self, session: AsyncSession, principal: Principal, region: str) -> None:
        self.s = session
        self.p = principal
        self.customers = CustomerStore(session, principal, region)
        self.region = region

    # -- timeline -----------------------------------------------------------
    async def timeline(
        self,
        customer_id: int,
        before: tuple[datetime, int] | None,
        limit: int,
        channel: str | None = None,
    ) -> tuple[Sequence[Interaction], tuple[datetime, int] | None]:
        customer = await self.customers.get(customer_id)
        query = select(Interaction).where(Interaction.customer_id == customer.id)
        if channel is not None:
            query = query.where(Interaction.channel == channel)
        if before is not None:
            at, iid = before
            query = query.where(
                or_(
                    col(Interaction.occurred_at) < at,
                    (col(Interaction.occurred_at) == at) & (col(Interaction.id) < iid),
                )
            )
        rows = (
            await self.s.exec(
                query.order_by(
                    col(Interaction.occurred_at).desc(), col(Interaction.id).desc()
                ).limit(limit + 1)
            )
        ).all()
        page = rows[:limit]
        cursor = None
        if len(rows) > limit and page:
            last = page[-1]
            assert last.id is not None
            cursor = (last.occurred_at, last.id)
        return page, cursor

    async def add_note(self, customer_id: int, text: str) -> Interaction:
        require(self.p, Action.WRITE_HISTORY)
        customer = await self.customers.get(customer_id)
        assert customer.id is not None
        note = Interaction(
            customer_id=customer.id,
            channel=Channel.NOTE.value,
            direction=Direction.OUT.value,
            text=text,
            author_id=self.p.user_id,
        )
        self.s.add(note)
        await self.s.flush()
        return note

    # -- conversations ------------------------------------------------------
    def _conversations(self) -> SelectOfScalar[Conversation]:
        return self._via_customer(select(Conversation), Conversation.customer_id)

    def _via_customer(self, query: SelectOfScalar[T], customer_id: object) -> SelectOfScalar[T]:
        """Rows visible exactly when their customer is (team scoping)."""
        return query.join(Customer, col(Customer.id) == customer_id).where(customer_visible(self.p))

    async def conversations(
        self,
        *,
        customer_id: int | None,
        channel: str | None,
        status: str | None,
        assignee_id: int | None,
        team_id: int | None,
        after_id: int | None,
        limit: int,
    ) -> tuple[Sequence[Conversation], int | None]:
        query = self._conversations()
        for field, value in (
            ("customer_id", customer_id),
            ("channel", channel),
            ("status", status),
            ("assignee_id", assignee_id),
            ("team_id", team_id),
        ):
            if value is not None:
                query = query.where(getattr(Conversation, field) == value)
        if after_id is not None:
            query = query.where(col(Conversation.id) < after_id)
        rows = (
            await self.s.exec(query.order_by(col(Conversation.id).desc()).limit(limit + 1))
        ).all()
        page = rows[:limit]
        return page, (page[-1].id if len(rows) > limit and page else None)

    async def conversation(self, conversation_id: int) -> Conversation:
        found = (
            await self.s.exec(self._conversations().where(Conversation.id == conversation_id))
        ).first()
        if found is None:
            raise NotFound(f"no conversation {conversation_id}")
        return found

    async def conversation_interactions(self, conv: Conversation) -> Sequence[Interaction]:
        """Only the conversation customer's own entries, whatever else may point here."""
        return (
            await self.s.exec(
                select(Interaction)
                .where(Interaction.conversation_id == conv.id)
                .where(Interaction.customer_id == conv.customer_id)
                .order_by(col(Interaction.occurred_at), col(Interaction.id))
            )
        ).all()

    async def update_conversation(
        self, conversation_id: int, patch: ConversationPatch
    ) -> Conversation:
        require(self.p, Action.WRITE_HISTORY)
        conv = await self.conversation(conversation_id)
        sent = patch.model_fields_set
        if "status" in sent:
            if patch.status is None:
                raise Invalid("status: must be open, pending or closed")
            conv.status = patch.status
        if "assignee_id" in sent:
            await self.customers.check_assignee("assignee_id", patch.assignee_id, conv.team_id)
            conv.assignee_id = patch.assignee_id
        self.s.add(conv)
        await self.s.flush()
        return conv

    # -- tasks --------------------------------------------------------------
    def _tasks(self) -> SelectOfScalar[Task]:
        return self._via_customer(select(Task), Task.customer_id)

    async def tasks(
        self,
        *,
        customer_id: int | None,
        assignee_id: int | None,
        done: bool | None,
        due_before: datetime | None,
        after_id: int | None,
        limit: int,
    ) -> tuple[Sequence[Task], int | None]:
        query = self._tasks()
        if customer_id is not None:
            query = query.where(Task.customer_id == customer_id)
        if assignee_id is not None:
            query = query.where(Task.assignee_id == assignee_id)
        if done is not None:
            query = query.where(Task.done == done)
        if due_before is not None:
            query = query.where(col(Task.due_at) < due_before)
        if after_id is not None:
            query = query.where(col(Task.id) > after_id)
        rows = (await self.s.exec(query.order_by(col(Task.id)).limit(limit + 1))).all()
        page = rows[:limit]
        return page, (page[-1].id if len(rows) > limit and page else None)

    async def task(self, task_id: int) -> Task:
        found = (await self.s.exec(self._tasks().where(Task.id == task_id))).first()
        if found is None:
            raise NotFound(f"no task {task_id}")
        return found

    async def create_task(self, data: TaskIn) -> Task:
        require(self.p, Action.WRITE_TASKS)
        customer = await self.customers.get_for_reference("customer_id", data.customer_id)
        await self.customers.check_assignee("assignee_id", data.assignee_id, customer.team_id)
        assert customer.id is not None
        task = Task(
            customer_id=customer.id,
            title=data.title,
            due_at=data.due_at,
            assignee_id=data.assignee_id if data.assignee_id is not None else self.p.user_id,
        )
        self.s.add(task)
        await self.s.flush()
        return task

    async def update_task(self, task_id: int, patch: TaskPatch) -> Task:
        require(self.p, Action.WRITE_TASKS)
        task = await self.task(task_id)
        sent = patch.model_fields_set
        if "title" in sent and patch.title is not None:
            task.title = patch.title
        if "due_at" in sent:
            task.due_at = patch.due_at
        if "assignee_id" in sent:
            owner = await self.customers.get(task.customer_id)
            await self.customers.check_assignee("assignee_id", patch.assignee_id, owner.team_id)
            task.assignee_id = patch.assignee_id
        if "done" in sent and patch.done is not None:
            task.done = patch.done
        self.s.add(task)
        await self.s.flush()
        return task

    async def delete_task(self, task_id: int) -> None:
        require(self.p, Action.WRITE_TASKS)
        await self.s.delete(await self.task(task_id))
        await self.s.flush()


__all__ = ["HistoryStore", "utcnow"]
