"""The session API's reads when Redis no longer has a session (retention, a flush, a new
Redis): answered from the SQL archive and marked ``archived``. Redis stays the first source;
the archive is read only when Redis has nothing, or, for a listing of ended sessions, for
those older than the oldest Redis still holds. An archive that cannot be reached is a 503."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from wa_sessions.archive.reader import ArchiveReader
from wa_sessions.statemachine.models import Session, SessionStatus, SessionSummary
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.steps import from_ms
from wa_sessions.webhook.errors import ServiceUnavailableError
from wa_sessions.webhook.schemas import SessionList, SessionView


@contextmanager
def _archive_up() -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as exc:
        raise ServiceUnavailableError("the session archive is unavailable; retry later") from exc


class ArchiveFallback:
    def __init__(self, service: SessionService, reader: ArchiveReader | None) -> None:
        self.service = service
        self.reader = reader
        self.clock: Callable[[], datetime] = service.clock

    def latest_by_phone(
        self, phone: str, business: str | None, message_limit: int
    ) -> Session | None:
        if self.reader is None:
            return None
        conv = self.service.conversation(phone, business)
        with _archive_up():
            return self.reader.latest_by_phone(
                conv.customer, conv.business, message_limit=message_limit
            )

    def summary(self, session_id: str) -> SessionSummary | None:
        if self.reader is None:
            return None
        with _archive_up():
            return self.reader.summary(session_id, self.clock())

    def ended_page(self, status: SessionStatus, offset: int, limit: int) -> SessionList:
        """Redis' page of ended sessions, continued with the archived ones Redis no longer
        holds (ended before its oldest), newest end first."""
        page = self.service.get_all_sessions(offset=offset, limit=limit, status=status)
        now = self.clock()
        views = [SessionView.of(s, now) for s in page.sessions]
        total = page.total
        if self.reader is not None:
            oldest = self.service.store.oldest_in(self.service.store.keys.status_index(status))
            before = from_ms(oldest) if oldest is not None else None
            skip = max(0, offset - page.total)
            want = limit - len(views)
            with _archive_up():
                archived, count = self.reader.page(
                    status.value, offset=skip, limit=max(want, 1), ended_before=before
                )
            if want > 0:
                views += [SessionView.of(s, now, archived=True) for s in archived[:want]]
            total += count
        return SessionList(sessions=views, total=total, offset=offset, limit=limit)
