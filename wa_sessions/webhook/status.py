"""``POST /twilio-status``: Twilio's delivery status callbacks for the replies we sent.

Signed and checked exactly like the inbound webhook. Twilio repeats callbacks and sends them out
of order, so each one is one Lua step (``statemachine.redis.delivery``) that dedupes on
MessageSid plus status and only moves a reply's status forward. Every well-formed, correctly
signed callback is answered 200 with empty TwiML, including ones for a MessageSid we do not know
(counted), since Twilio would otherwise retry them for nothing.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from redis.exceptions import RedisError
from starlette.responses import Response

from wa_sessions.config import STATUS_CALLBACK_PATH
from wa_sessions.errors import BadRequest
from wa_sessions.metrics.orders import DELIVERY_FAILURES, DELIVERY_STATUS
from wa_sessions.statemachine.models import DeliveryStatus
from wa_sessions.statemachine.redis.delivery import AsyncDeliveryStatuses, DeliveryOutcome
from wa_sessions.webhook.endpoint import (
    ERROR,
    TWIML_EMPTY,
    TwilioEndpoint,
    TwilioRequest,
    WebDeps,
    read_signed_form,
)
from wa_sessions.webhook.errors import ServiceUnavailableError, storage_unavailable

STATUS_PATH = STATUS_CALLBACK_PATH
#: The ``endpoint`` label of this route in WEBHOOK_REQUESTS / WEBHOOK_LATENCY.
STATUS_ENDPOINT = "status"
STATUS_OUTCOMES = (
    "applied",
    "stale",
    "duplicate",
    "unknown_sid",
    "bad_signature",
    "bad_request",
    "too_large",
    "unavailable",
    "error",
)
_MESSAGE_SID = re.compile(r"(?:SM|MM)[0-9a-fA-F]{32}")
_STATUS = re.compile(r"[a-z_]{1,32}")
_ERROR_CODE = re.compile(r"[0-9]{1,10}")
_FAILED = frozenset({DeliveryStatus.FAILED.value, DeliveryStatus.UNDELIVERED.value})


class _StatusCallback(TwilioEndpoint):
    """Checks, parses and records one status callback: one Redis round trip."""

    def __init__(self, deps: WebDeps) -> None:
        super().__init__(deps, STATUS_ENDPOINT, STATUS_OUTCOMES)
        self.statuses = AsyncDeliveryStatuses(deps.inbox.client, deps.inbox.keys)

    async def process(self, request: TwilioRequest) -> str:
        params = await read_signed_form(request, self.settings, self.checker)
        sid = params.get("MessageSid") or params.get("SmsSid") or ""
        if not _MESSAGE_SID.fullmatch(sid):
            raise BadRequest("MessageSid is missing or malformed")
        status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
        if not _STATUS.fullmatch(status):
            raise BadRequest("MessageStatus is missing or malformed")
        raw_code = (params.get("ErrorCode") or "").strip()
        error_code = raw_code if _ERROR_CODE.fullmatch(raw_code) else ""
        try:
            outcome = await self.statuses.record(
                sid, status, error_code, at=self.deps.service.clock()
            )
        except RedisError as exc:
            if storage_unavailable(exc):
                raise ServiceUnavailableError("storage is unavailable; retry later") from exc
            raise
        if outcome is DeliveryOutcome.APPLIED:
            DELIVERY_STATUS.labels(status).inc()
            if status in _FAILED:
                DELIVERY_FAILURES.labels(error_code or "none").inc()
        if outcome is DeliveryOutcome.UNKNOWN:
            return "unknown_sid"
        return outcome.value


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Recorded, already known, stale or for an unknown MessageSid: empty TwiML.",
        "content": {"text/xml": {"example": TWIML_EMPTY.decode()}},
    },
    400: {**ERROR, "description": "MessageSid or MessageStatus missing or malformed."},
    403: {
        **ERROR,
        "description": "Missing or invalid X-Twilio-Signature, or foreign account.",
    },
    413: {**ERROR, "description": "Body over MAX_BODY_BYTES."},
    503: {**ERROR, "description": "Redis unavailable."},
}


def install_status_callback(app: FastAPI, deps: WebDeps) -> TwilioEndpoint:
    """Declares ``POST /twilio-status`` on ``app``; returns its endpoint."""
    endpoint = _StatusCallback(deps)
    app.add_api_route(
        STATUS_PATH,
        endpoint.handle,
        methods=["POST"],
        name="twilio_status_callback",
        summary="Twilio delivery status callback for outbound replies",
        response_class=Response,
        responses=_RESPONSES,
        tags=["twilio"],
    )
    return endpoint
