"""The session API: the admin-token-guarded routes that read sessions and end them, over
``SessionService``, and agent takeover (take over, hand back, reply) over ``TakeoverService``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.security import HTTPBearer

from wa_sessions.analytics.reader import AnalyticsReader
from wa_sessions.analytics.report import MAX_DAYS, AnalyticsReport, day_range
from wa_sessions.errors import SessionNotFound
from wa_sessions.statemachine.identity import normalize_address
from wa_sessions.statemachine.models import SessionStatus, SessionSummary
from wa_sessions.webhook.archive_fallback import ArchiveFallback
from wa_sessions.webhook.auth import require_bearer
from wa_sessions.webhook.endpoint import ERROR, WebDeps
from wa_sessions.webhook.schemas import (
    ActiveSessions,
    LanguageSetting,
    OperatorAction,
    OperatorReplyQueued,
    OperatorReplyRequest,
    PhoneLanguage,
    SessionDetail,
    SessionEnded,
    SessionList,
    SessionView,
    TakeoverChanged,
)

MAX_PAGE = 1000
#: Redis range indexes are 64-bit: an unbounded offset would make the page read fail (a 500).
MAX_OFFSET = 1_000_000_000

bearer = HTTPBearer(auto_error=False, description="The service's ADMIN_TOKEN.")
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Sessions to skip.")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")]
#: Module level: the routes' annotations are strings (``from __future__ import annotations``)
#: that FastAPI resolves against the module's globals, not a function's locals.
BusinessNumber = Annotated[
    str | None, Query(description="Defaults to the configured BUSINESS_NUMBER.")
]


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    described: dict[int | str, dict[str, Any]] = {code: dict(ERROR) for code in codes}
    # Declaring a default error also keeps FastAPI from advertising its 422 (we answer 400).
    described["default"] = {**ERROR, "description": "Any error, as a JSON error body."}
    return described


def session_api(deps: WebDeps) -> APIRouter:
    """The session API's routes, each behind the admin bearer token."""
    service = deps.service
    # An unset token locks the API rather than opening it.
    require_admin = require_bearer(
        deps.settings.admin_token, bearer, "a valid admin bearer token is required"
    )

    router = APIRouter(dependencies=[Depends(require_admin)], tags=["sessions"])
    fallback = ArchiveFallback(service, deps.archive)

    @router.get(
        "/session/{phone_number}",
        responses=responses(400, 401, 404),
        summary="A phone's active session, else its latest one, with recent history",
    )
    def get_session(
        phone_number: str,
        limit: Annotated[
            int, Query(ge=1, le=MAX_PAGE, description="Messages of history to return.")
        ] = 50,
        business_number: Annotated[
            str | None, Query(description="Defaults to the configured BUSINESS_NUMBER.")
        ] = None,
    ) -> SessionDetail:
        session = service.get_latest_session_by_phone(
            phone_number, business_number, message_limit=limit
        )
        archived = session is None
        if session is None:
            session = fallback.latest_by_phone(phone_number, business_number, limit)
        if session is None:
            raise SessionNotFound("no session for that phone number")
        history = session.messages
        return SessionDetail(
            session=SessionView.of(session, service.clock(), archived=archived),
            conversation_history=history,
            message_count=len(history),
        )

    @router.get(
        "/sessions/active",
        responses=responses(400, 401),
        summary="Active sessions, most recently active first",
    )
    def active_sessions(offset: Offset = 0, limit: Limit = 50) -> ActiveSessions:
        page = service.get_active_sessions(offset=offset, limit=limit)
        now = service.clock()
        return ActiveSessions(
            active_sessions=[SessionView.of(s, now) for s in page.sessions],
            total_active=page.total,
            offset=page.offset,
            limit=page.limit,
        )

    @router.get(
        "/sessions",
        responses=responses(400, 401),
        summary="All sessions, newest first, optionally filtered by status",
    )
    def list_sessions(
        status: Annotated[SessionStatus | None, Query()] = None,
        offset: Offset = 0,
        limit: Limit = 50,
    ) -> SessionList:
        if status in (SessionStatus.COMPLETED, SessionStatus.EXPIRED):
            return fallback.ended_page(status, offset, limit)
        page = service.get_all_sessions(offset=offset, limit=limit, status=status)
        now = service.clock()
        return SessionList(
            sessions=[SessionView.of(s, now) for s in page.sessions],
            total=page.total,
            offset=page.offset,
            limit=page.limit,
        )

    @router.post(
        "/session/{session_id}/complete",
        responses=responses(400, 401, 404, 409),
        summary="Mark an active session completed",
    )
    def complete_session(session_id: uuid.UUID) -> SessionEnded:
        session = service.complete_session(str(session_id))
        return SessionEnded(
            message="Session completed successfully",
            session=SessionView.of(session, service.clock()),
        )

    @router.post(
        "/session/{session_id}/expire",
        responses=responses(400, 401, 404, 409),
        summary="Mark an active session expired",
    )
    def expire_session(session_id: uuid.UUID) -> SessionEnded:
        session = service.expire_session(str(session_id))
        return SessionEnded(
            message="Session expired successfully",
            session=SessionView.of(session, service.clock()),
        )

    reader = AnalyticsReader(service.store.client, service.store.keys)

    @router.get(
        "/analytics",
        responses=responses(400, 401),
        summary="Sessions, orders, reply times and deliveries over a range of UTC days",
        tags=["analytics"],
    )
    def analytics(
        first: Annotated[
            str | None,
            Query(
                alias="from",
                description="First UTC day, YYYY-MM-DD (default: six days before `to`).",
            ),
        ] = None,
        last: Annotated[
            str | None,
            Query(
                alias="to",
                description=f"Last UTC day, YYYY-MM-DD (default: today); at most {MAX_DAYS} days.",
            ),
        ] = None,
        business_number: Annotated[
            str | None, Query(description="One business number; every number when absent.")
        ] = None,
    ) -> AnalyticsReport:
        start, end = day_range(first, last, today=service.clock().date())
        number = (
            normalize_address(business_number, default_region=service.default_region)
            if business_number
            else None
        )
        return reader.report(start, end, number)

    @router.get(
        "/session/{session_id}/summary",
        responses=responses(400, 401, 404),
        summary="Counts, duration and window state of one session",
    )
    def session_summary(session_id: uuid.UUID) -> SessionSummary:
        try:
            return service.get_session_summary(str(session_id))
        except SessionNotFound:
            archived = fallback.summary(str(session_id))
            if archived is None:
                raise
            return archived

    @router.put(
        "/phones/{phone_number}/language",
        responses=responses(400, 401),
        summary="Set (or, with null, clear) the reply language of one customer's conversation",
    )
    def set_language(
        phone_number: str, body: LanguageSetting, business_number: BusinessNumber = None
    ) -> PhoneLanguage:
        conv = service.conversation(phone_number, business_number)
        service.set_language_override(phone_number, business_number, body.language)
        return PhoneLanguage(
            phone_number=conv.customer, business_number=conv.business, language=body.language
        )

    @router.get(
        "/phones/{phone_number}/language",
        responses=responses(400, 401),
        summary="The business's reply language for one customer (null: detected)",
    )
    def get_language(phone_number: str, business_number: BusinessNumber = None) -> PhoneLanguage:
        conv = service.conversation(phone_number, business_number)
        return PhoneLanguage(
            phone_number=conv.customer,
            business_number=conv.business,
            language=service.language_override(phone_number, business_number),
        )

    takeover = deps.takeovers

    @router.post(
        "/sessions/{session_id}/takeover",
        responses=responses(400, 401, 404, 409),
        summary="An operator takes an active session over: automatic replies stop for it",
    )
    def take_over(session_id: uuid.UUID, body: OperatorAction) -> TakeoverChanged:
        session = takeover.take_over(str(session_id), body.operator)
        return TakeoverChanged(
            message=f"Session taken over by {body.operator}",
            session=SessionView.of(session, service.clock()),
        )

    @router.post(
        "/sessions/{session_id}/handback",
        responses=responses(400, 401, 404, 409),
        summary="Hand a session back: automatic replies resume for messages from now on",
    )
    def hand_back(session_id: uuid.UUID, body: OperatorAction) -> TakeoverChanged:
        session = takeover.hand_back(str(session_id), body.operator, force=body.force)
        return TakeoverChanged(
            message="Session handed back to automatic replies",
            session=SessionView.of(session, service.clock()),
        )

    @router.post(
        "/sessions/{session_id}/reply",
        status_code=202,
        responses=responses(400, 401, 404, 409),
        summary="Queue an operator's reply; the phone's worker sends it in order",
    )
    def reply(session_id: uuid.UUID, body: OperatorReplyRequest) -> OperatorReplyQueued:
        queued = takeover.send_operator_reply(str(session_id), body.operator, body.text)
        return OperatorReplyQueued(
            message="Reply queued; the conversation's worker sends it",
            reply_id=queued.reply_id,
            session=SessionView.of(queued.session, service.clock()),
        )

    return router
