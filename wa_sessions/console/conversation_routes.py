"""The conversation page's routes: the page itself, Complete and Expire, and agent takeover
(take over, hand back, reply) over ``TakeoverService`` as the signed-in operator.

A refused action re-renders the conversation with the problem next to the form (status 400,
404 or 409) and the operator's draft kept in the reply box, so nothing typed is lost and no
stack trace is ever shown; an accepted one redirects back to the page (post/redirect/get).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from wa_sessions.console.auth import (
    ArchiveUnavailable,
    Conflict,
    NotFound,
    Operator,
    operator_form,
    require_operator,
)
from wa_sessions.console.context import ConsoleContext
from wa_sessions.console.conversation import ConversationPage
from wa_sessions.console.pages import PREFIX
from wa_sessions.console.routes import SessionId
from wa_sessions.errors import (
    AnalysisFailed,
    AnalysisStale,
    BadRequest,
    InvalidTransition,
    OutsideWindow,
    SessionNotFound,
    TakeoverConflict,
    WaSessionsError,
)
from wa_sessions.metrics import API_ERRORS
from wa_sessions.statemachine.models import SessionSummary

OperatorForm = Annotated[tuple[Operator, dict[str, str]], Depends(operator_form)]
#: What the page says after an accepted action (``?done=<name>``).
DONE = {
    "taken_over": "You hold this conversation: automatic replies are off until you hand it back.",
    "handed_back": "Handed back: automatic replies resume for the customer's next messages.",
    "reply_queued": "Reply queued: it shows here once the conversation's worker has sent it.",
    "analysed": "Analysis up to date.",
}


def _redirect(session_id: uuid.UUID, done: str = "") -> RedirectResponse:
    query = f"?done={done}" if done else ""
    return RedirectResponse(f"{PREFIX}/sessions/{session_id}{query}", status_code=303)


def _status_of(exc: WaSessionsError) -> int:
    """The page's status for a refused action: the session API's mapping."""
    if isinstance(exc, SessionNotFound):
        return 404
    if isinstance(exc, TakeoverConflict | OutsideWindow | InvalidTransition | AnalysisStale):
        return 409
    if isinstance(exc, AnalysisFailed):
        return 502
    return 400


def conversation_routes(ctx: ConsoleContext) -> APIRouter:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    service = ctx.service
    takeover = ctx.takeover

    def render(
        request: Request,
        session_id: uuid.UUID,
        *,
        before: int | None = None,
        status: int = 200,
        problem: str = "",
        notice: str = "",
        draft: str = "",
    ) -> Response:
        try:
            summary = service.get_session_summary(str(session_id))
            session = service.store.load(str(session_id), include_messages=False)
        except SessionNotFound:
            session = None
        if session is None:
            summary, page = archived(session_id, before)
        else:
            page = ctx.conversations.page(session, before)
        shown = ctx.analyses is not None and not page.archived
        return ctx.pages.render(
            request,
            "session.html",
            status,
            page=page,
            summary=summary,
            problem=problem,
            notice=notice,
            draft=draft,
            max_reply_chars=takeover.max_reply_chars,
            analyses_shown=shown,
            analysis=ctx.analyses.stored(str(session_id)) if ctx.analyses and shown else None,
        )

    def archived(
        session_id: uuid.UUID, before: int | None
    ) -> tuple[SessionSummary, ConversationPage]:
        """The archive's copy of a session Redis no longer holds, else a 404; an archive that
        cannot be reached is a 503 page."""
        found = None
        if ctx.archive is not None:
            try:
                session = ctx.archive.session(str(session_id))
                if session is not None:
                    found = ctx.archive.summary(str(session_id), service.clock()), session
            except SQLAlchemyError as exc:
                raise ArchiveUnavailable(
                    "The session archive cannot be reached; retry later."
                ) from exc
        if found is None or found[0] is None:
            raise NotFound(f"there is no session {session_id}")
        return found[0], ctx.conversations.archived_page(found[1], before)

    def refused(
        request: Request, session_id: uuid.UUID, exc: WaSessionsError, draft: str = ""
    ) -> Response:
        status = _status_of(exc)
        if status == 404:
            raise NotFound(str(exc)) from exc
        API_ERRORS.labels(exc.code).inc()
        return render(request, session_id, status=status, problem=_readable(exc), draft=draft)

    @router.get("/sessions/{session_id}")
    def conversation(
        request: Request,
        session_id: SessionId,
        _: Annotated[Operator, Depends(require_operator)],
        before: Annotated[int | None, Query(ge=0, le=1_000_000_000)] = None,
        done: Annotated[str, Query(max_length=20)] = "",
    ) -> Response:
        return render(request, session_id, before=before, notice=DONE.get(done, ""))

    def end(session_id: uuid.UUID, action: str) -> Response:
        try:
            if action == "complete":
                service.complete_session(str(session_id))
            else:
                service.expire_session(str(session_id))
        except SessionNotFound as exc:
            raise NotFound(f"there is no session {session_id}") from exc
        except InvalidTransition as exc:
            raise Conflict(f"This session cannot be ended now: {exc}.") from exc
        return _redirect(session_id)

    @router.post("/sessions/{session_id}/complete")
    def complete(session_id: SessionId, _: OperatorForm) -> Response:
        return end(session_id, "complete")

    @router.post("/sessions/{session_id}/expire")
    def expire(session_id: SessionId, _: OperatorForm) -> Response:
        return end(session_id, "expire")

    def act(
        request: Request,
        session_id: uuid.UUID,
        change: Callable[[str], object],
        done: str,
        draft: str = "",
    ) -> Response:
        """Runs ``change`` on the session; back to the page, or the page with the refusal."""
        try:
            change(str(session_id))
        except WaSessionsError as exc:
            return refused(request, session_id, exc, draft=draft)
        return _redirect(session_id, done)

    @router.post("/sessions/{session_id}/take-over")
    def take_over(request: Request, session_id: SessionId, signed: OperatorForm) -> Response:
        name = signed[0].name
        return act(request, session_id, lambda sid: takeover.take_over(sid, name), "taken_over")

    @router.post("/sessions/{session_id}/hand-back")
    def hand_back(request: Request, session_id: SessionId, signed: OperatorForm) -> Response:
        operator, form = signed
        force = form.get("force") == "1"
        return act(
            request,
            session_id,
            lambda sid: takeover.hand_back(sid, operator.name, force=force),
            "handed_back",
        )

    @router.post("/sessions/{session_id}/reply")
    def reply(request: Request, session_id: SessionId, signed: OperatorForm) -> Response:
        operator, form = signed
        text = form.get("text", "")
        return act(
            request,
            session_id,
            lambda sid: takeover.send_operator_reply(sid, operator.name, text),
            "reply_queued",
            draft=text,
        )

    @router.post("/sessions/{session_id}/analyse")
    async def analyse(request: Request, session_id: SessionId, _: OperatorForm) -> Response:
        """Analyses the session now (the stored analysis when nothing changed); a failure is
        the page with the reason (a system note in the chat says it too)."""
        if ctx.analyses is None:
            raise NotFound("session analysis is not available here")
        try:
            await ctx.analyses.analyse(str(session_id))
        except WaSessionsError as exc:
            return await run_in_threadpool(refused, request, session_id, exc)
        return _redirect(session_id, "analysed")

    return router


def _readable(exc: WaSessionsError) -> str:
    """The refusal as a sentence for the page."""
    if isinstance(exc, BadRequest) and str(exc).startswith("text: "):
        return "Your reply was not sent: " + str(exc).removeprefix("text: ") + "."
    if isinstance(exc, OutsideWindow):
        return f"Your reply was not sent: {exc}."
    text = str(exc)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
