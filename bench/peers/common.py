"""What both peers share: the signed form of Twilio's webhook (a FastAPI dependency) and the
design document's handling of one inbound message, done start to finish by one caller.

The design document's flow, step by step: the inbound message is added to the phone's session
(``SessionService.add_message`` creates or continues it), the order is extracted by OpenAI with
the session's recent history, merged into the session's ``order_details``
(``update_session``), the reply is sent through Twilio and added to the session as outbound.
Extraction and sending are the service's own classes (``bootstrap.build_extractor`` and
``build_sender``, with the same timeouts and retries), so the peers pay what ours pays for each
external call; the peers call them as blocking calls, the way a plain webhook or actor calls an
SDK: each thread runs them to completion on its own event loop and waits.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from twilio.request_validator import RequestValidator

from wa_sessions import bootstrap
from wa_sessions.config import Settings
from wa_sessions.orders.extractor import ExtractionFailure, ExtractionRequest, OrderExtractor
from wa_sessions.orders.merge import merge_order
from wa_sessions.orders.models import OrderDetails
from wa_sessions.replies.sender import OutboundSender, SendFailure
from wa_sessions.replies.templates import ReplyTemplates
from wa_sessions.statemachine.models import MessageDirection, SessionUpdate
from wa_sessions.statemachine.service import SessionService

#: Peer 2's Dramatiq namespace and queue (the bench samples the queue's length).
PEER_NAMESPACE = "peer-dramatiq"
PEER_QUEUE = "inbound"
PEER_QUEUE_KEY = f"{PEER_NAMESPACE}:{PEER_QUEUE}"
TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


T = TypeVar("T")


@dataclass(frozen=True)
class Deps:
    settings: Settings
    service: SessionService
    templates: ReplyTemplates
    validator: RequestValidator


class _Blocking(threading.local):
    """One event loop, extractor and sender per thread (their HTTP clients belong to a loop)."""

    loop: asyncio.AbstractEventLoop | None = None
    extractor: OrderExtractor | None = None
    sender: OutboundSender | None = None


_blocking = _Blocking()


def _clients(d: Deps) -> tuple[asyncio.AbstractEventLoop, OrderExtractor, OutboundSender]:
    if _blocking.loop is None:
        _blocking.loop = asyncio.new_event_loop()
        _blocking.extractor = bootstrap.build_extractor(d.settings)
        _blocking.sender = bootstrap.build_sender(d.settings)
    assert _blocking.extractor is not None
    assert _blocking.sender is not None
    return _blocking.loop, _blocking.extractor, _blocking.sender


def _wait(loop: asyncio.AbstractEventLoop, call: Coroutine[Any, Any, T]) -> T:
    """Runs the call to completion, holding the thread meanwhile (a blocking SDK call)."""
    return loop.run_until_complete(call)


@cache
def deps() -> Deps:
    """Built on first use, once per process (the service's settings, from the environment)."""
    settings = bootstrap.load_settings()
    return Deps(
        settings=settings,
        service=bootstrap.build_service(settings),
        templates=bootstrap.build_reply_templates(settings),
        validator=RequestValidator(settings.twilio_auth_token),
    )


async def signed_form(request: Request) -> dict[str, str]:
    """The webhook's form once its signature (over the public URL and every field) checks."""
    d = deps()
    params = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
    url = d.settings.public_base_url.rstrip("/") + request.url.path
    if not d.validator.validate(url, params, request.headers.get("X-Twilio-Signature", "")):
        raise HTTPException(status_code=403, detail="invalid signature")
    return params


def handle_message(d: Deps, form: dict[str, str]) -> None:
    """The design document's webhook flow for one inbound text message."""
    service = d.service
    phone, text, sid = form["From"], form.get("Body", ""), form["MessageSid"]
    session = service.add_message(phone, text, message_id=sid, metadata={"message_sid": sid})
    history = service.get_conversation_history(phone, limit=d.settings.openai_history_messages + 1)
    message = history[-1]
    order = OrderDetails.model_validate(session.order_details or {})
    loop, extractor, sender = _clients(d)
    extracted = _wait(loop, extractor.extract(ExtractionRequest(message, history[:-1], order)))
    if isinstance(extracted, ExtractionFailure) or not extracted.found:
        body = d.templates.for_nothing()
    else:
        merged = merge_order(order, extracted)
        if merged.changed:
            service.update_session(
                session.session_id,
                SessionUpdate(order_details=merged.order.model_dump(mode="json")),
            )
        body = d.templates.for_order(merged.order)
    sent = _wait(loop, sender.send(to=phone, from_=service.business_number, body=body))
    metadata: dict[str, object] = {"in_reply_to": sid}
    if isinstance(sent, SendFailure):
        metadata["send_failed"] = sent.reason.value
    else:
        metadata["message_sid"] = sent.sid
    service.add_message(phone, body, direction=MessageDirection.OUTBOUND, metadata=metadata)


def create_app(handle: Callable[[dict[str, str]], object]) -> FastAPI:
    """A peer's web app: ``GET /healthz`` (builds the dependencies, so the first webhook does
    not) and ``POST /twilio-webhook-opt``, a plain ``def`` route (FastAPI runs it in its thread
    pool) that calls ``handle`` with the signed form and answers TwiML."""
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        deps()
        return {"status": "ok"}

    @app.post("/twilio-webhook-opt")
    def webhook(form: Annotated[dict[str, str], Depends(signed_form)]) -> Response:
        handle(form)
        return Response(TWIML, media_type="text/xml")

    return app
