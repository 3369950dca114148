"""Reads of the archive, for the session API and the console when Redis no longer has a
session (retention, a flush, a new Redis): the same ``Session`` and ``SessionSummary`` models
the Redis reads give, which the callers mark ``archived``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session as OrmSession

from wa_sessions.archive.models import ArchivedMessage, ArchivedSession
from wa_sessions.archive.rows import as_message, as_session
from wa_sessions.statemachine.models import Message, Session, SessionSummary
from wa_sessions.statemachine.queries import summarize


class ArchiveReader:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def session(self, session_id: str, *, message_limit: int | None = None) -> Session | None:
        with OrmSession(self.engine) as db:
            row = db.get(ArchivedSession, session_id)
            if row is None:
                return None
            return as_session(row, self._messages(db, session_id, message_limit))

    def latest_by_phone(
        self, phone: str, business: str, *, message_limit: int | None = None
    ) -> Session | None:
        """The phone's most recent archived session with ``business``."""
        with OrmSession(self.engine) as db:
            row = db.scalars(
                select(ArchivedSession)
                .where(
                    ArchivedSession.phone_number == phone,
                    ArchivedSession.business_number == business,
                )
                .order_by(ArchivedSession.created_at.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            return as_session(row, self._messages(db, row.session_id, message_limit))

    def page(
        self, status: str, *, offset: int, limit: int, ended_before: datetime | None
    ) -> tuple[list[Session], int]:
        """Sessions of ``status`` ended before ``ended_before`` (all when None), newest end
        first, and how many there are."""
        where = [ArchivedSession.status == status]
        if ended_before is not None:
            where.append(ArchivedSession.ended_at < ended_before)
        with OrmSession(self.engine) as db:
            total = db.scalar(select(func.count()).select_from(ArchivedSession).where(*where))
            rows = db.scalars(
                select(ArchivedSession)
                .where(*where)
                .order_by(ArchivedSession.ended_at.desc(), ArchivedSession.session_id)
                .offset(offset)
                .limit(limit)
            ).all()
            return [as_session(r) for r in rows], int(total or 0)

    def summary(self, session_id: str, now: datetime) -> SessionSummary | None:
        with OrmSession(self.engine) as db:
            row = db.get(ArchivedSession, session_id)
            if row is None:
                return None
            session = as_session(row)
            first, last = (
                db.scalars(
                    select(ArchivedMessage)
                    .where(ArchivedMessage.session_id == session_id)
                    .order_by(order)
                    .limit(1)
                ).first()
                for order in (ArchivedMessage.position, ArchivedMessage.position.desc())
            )
        return summarize(
            session,
            as_message(first) if first else None,
            as_message(last) if last else None,
            now,
            archived=True,
        )

    @staticmethod
    def _messages(db: OrmSession, session_id: str, limit: int | None) -> list[Message]:
        query = (
            select(ArchivedMessage)
            .where(ArchivedMessage.session_id == session_id)
            .order_by(ArchivedMessage.position.desc())
        )
        if limit:
            query = query.limit(limit)
        return [as_message(m) for m in reversed(db.scalars(query).all())]
