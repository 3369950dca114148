"""The console's routes under ``/console``: sign-in and sign-out, the sessions list and its
live-update stream, a conversation with its Complete and Expire buttons, and the media proxy.
Every route but sign-in depends on ``require_operator`` (or ``operator_form`` for POSTs, which
also checks the CSRF token)."""

from __future__ import annotations

import asyncio
import hmac
import secrets
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from wa_sessions.console.auth import (
    COOKIE,
    CSRF_FIELD,
    PRE_COOKIE,
    Conflict,
    ConsoleRefusal,
    NotFound,
    Operator,
    console_auth,
    operator_form,
    read_form,
    require_operator,
)
from wa_sessions.console.context import ConsoleContext
from wa_sessions.console.listing import ListQuery
from wa_sessions.console.live import stream
from wa_sessions.console.media import MediaRefused
from wa_sessions.console.pages import PREFIX
from wa_sessions.errors import InvalidPhoneNumber, InvalidTransition, SessionNotFound
from wa_sessions.metrics import CONSOLE_SIGN_INS
from wa_sessions.statemachine.identity import normalize_address
from wa_sessions.statemachine.models import SessionStatus

SessionId = Annotated[uuid.UUID, Path(description="A session id (a UUID).")]
_STATUSES = {s.value: s for s in SessionStatus}


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(PREFIX + path, status_code=303)


def sign_in_routes(ctx: ConsoleContext) -> APIRouter:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    settings = ctx.settings

    def sign_in_page(request: Request, status: int = 200, problem: str = "") -> Response:
        pre = secrets.token_urlsafe(24)
        response = ctx.pages.render(request, "sign_in.html", status, pre_token=pre, problem=problem)
        response.set_cookie(
            PRE_COOKIE,
            pre,
            max_age=3600,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=console_auth(request).secure_cookie,
        )
        return response

    @router.get("/sign-in")
    def sign_in_form(request: Request) -> Response:
        if console_auth(request).sessions.get(request.cookies.get(COOKIE, "")):
            return _redirect("/")
        return sign_in_page(request)

    @router.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        form = await read_form(request)
        pre = request.cookies.get(PRE_COOKIE, "")
        given = form.get(CSRF_FIELD, "")
        if not pre or not given or not hmac.compare_digest(pre.encode(), given.encode()):
            CONSOLE_SIGN_INS.labels("bad_request").inc()
            return sign_in_page(
                request, 403, "The sign-in form had expired or was not this site's; try again."
            )
        token = form.get("token", "")
        auth = console_auth(request)
        operator = auth.directory.authenticate(token) if token else None
        if operator is None:
            CONSOLE_SIGN_INS.labels("refused" if token else "bad_request").inc()
            # Slows guessing: every failure waits before it is answered.
            await asyncio.sleep(settings.console_sign_in_delay_seconds)
            problem = "That token is not valid." if token else "Enter your token."
            return sign_in_page(request, 401 if token else 400, problem)
        secret, _ = await asyncio.to_thread(auth.sessions.create, operator)
        CONSOLE_SIGN_INS.labels("ok").inc()
        response = _redirect("/")
        response.set_cookie(
            COOKIE,
            secret,
            max_age=auth.sessions.ttl_seconds,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=auth.secure_cookie,
        )
        response.delete_cookie(PRE_COOKIE, path=PREFIX)
        return response

    @router.post("/sign-out")
    def sign_out(
        request: Request, _: Annotated[tuple[Operator, dict[str, str]], Depends(operator_form)]
    ) -> Response:
        auth = console_auth(request)
        auth.sessions.revoke(request.cookies.get(COOKIE, ""))
        response = _redirect("/sign-in")
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    return router


def session_routes(ctx: ConsoleContext) -> APIRouter:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    service = ctx.service

    @router.get("")
    def root(_: Annotated[Operator, Depends(require_operator)]) -> Response:
        return _redirect("/")

    @router.get("/")
    def sessions_list(
        request: Request,
        _: Annotated[Operator, Depends(require_operator)],
        status: Annotated[str, Query(max_length=20)] = "",
        business: Annotated[str, Query(max_length=64)] = "",
        phone: Annotated[str, Query(max_length=64)] = "",
        start: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    ) -> Response:
        if status and status not in _STATUSES:
            raise ConsoleRefusal(f"status must be one of {', '.join(_STATUSES)} (or empty)")
        try:
            query = ListQuery(
                status=_STATUSES.get(status),
                business=_address(business, service.default_region),
                phone=_address(phone, service.default_region),
                start=start,
            )
        except InvalidPhoneNumber as exc:
            raise ConsoleRefusal(f"the phone or business number is not valid: {exc}") from exc
        page = ctx.listing.page(query, service.clock())
        return ctx.pages.render(
            request,
            "sessions.html",
            page=page,
            filters={"status": status, "business": business, "phone": phone},
            statuses=list(_STATUSES),
        )

    @router.get("/events")
    async def events(
        request: Request, _: Annotated[Operator, Depends(require_operator)]
    ) -> Response:
        auth = console_auth(request)
        secret = request.cookies.get(COOKIE, "")
        return StreamingResponse(
            stream(ctx.feed, lambda: auth.sessions.alive(secret)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @router.get("/sessions/{session_id}")
    def conversation(
        request: Request,
        session_id: SessionId,
        _: Annotated[Operator, Depends(require_operator)],
        before: Annotated[int | None, Query(ge=0, le=1_000_000_000)] = None,
    ) -> Response:
        try:
            summary = service.get_session_summary(str(session_id))
        except SessionNotFound as exc:
            raise NotFound(f"there is no session {session_id}") from exc
        session = service.store.load(str(session_id), include_messages=False)
        if session is None:
            raise NotFound(f"there is no session {session_id}")
        page = ctx.conversations.page(session, before)
        return ctx.pages.render(request, "session.html", page=page, summary=summary)

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
        return _redirect(f"/sessions/{session_id}")

    @router.post("/sessions/{session_id}/complete")
    def complete(
        session_id: SessionId,
        _: Annotated[tuple[Operator, dict[str, str]], Depends(operator_form)],
    ) -> Response:
        return end(session_id, "complete")

    @router.post("/sessions/{session_id}/expire")
    def expire(
        session_id: SessionId,
        _: Annotated[tuple[Operator, dict[str, str]], Depends(operator_form)],
    ) -> Response:
        return end(session_id, "expire")

    @router.get("/media/{session_id}/{message_id}/{n}")
    async def media(
        session_id: SessionId,
        message_id: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
        n: Annotated[int, Path(ge=0, le=9)],
        _: Annotated[Operator, Depends(require_operator)],
    ) -> Response:
        if ctx.media is None:
            raise NotFound("images need TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN to be shown")
        session = await asyncio.to_thread(
            service.store.load, str(session_id), include_messages=False
        )
        if session is None:
            raise NotFound(f"there is no session {session_id}")
        message = await asyncio.to_thread(ctx.conversations.find_message, session, message_id)
        items = message.metadata.get("media") if message else None
        if not isinstance(items, list) or n >= len(items) or not isinstance(items[n], dict):
            raise NotFound("that message has no such image")
        try:
            fetched = await ctx.media.fetch(str(items[n].get("url", "")))
        except MediaRefused as exc:
            raise _refusal(exc) from exc
        return Response(
            fetched.body,
            media_type=fetched.content_type,
            headers={
                "Cache-Control": "private, max-age=300",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'",
            },
        )

    return router


class MediaUnavailable(ConsoleRefusal):
    status = 502
    code = "media_unavailable"
    title = "Image unavailable"


def _refusal(exc: MediaRefused) -> ConsoleRefusal:
    return NotFound(exc.message) if exc.status == 404 else MediaUnavailable(exc.message)


def _address(value: str, region: str | None) -> str | None:
    value = value.strip()
    return normalize_address(value, default_region=region) if value else None
