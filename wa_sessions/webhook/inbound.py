"""``POST /twilio-webhook-opt``: Twilio's signed inbound messages into the conversation inbox,
with the route's OpenAPI declaration (the form fields Twilio sends, the answers it gets)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from redis.exceptions import RedisError
from starlette.responses import Response

from wa_sessions.errors import InboxFull, RateLimited
from wa_sessions.statemachine.steps import IngestOutcome, to_ms
from wa_sessions.webhook.endpoint import (
    ERROR,
    TWIML_EMPTY,
    TwilioEndpoint,
    TwilioRequest,
    WebDeps,
    read_signed_form,
)
from wa_sessions.webhook.errors import ServiceUnavailableError, storage_unavailable
from wa_sessions.webhook.twilio import parse_inbound

WEBHOOK_PATH = "/twilio-webhook-opt"
#: The ``endpoint`` label of this webhook in WEBHOOK_REQUESTS / WEBHOOK_LATENCY.
WEBHOOK_ENDPOINT = "inbound"
WEBHOOK_OUTCOMES = (
    "accepted",
    "duplicate",
    "bad_signature",
    "bad_request",
    "too_large",
    "inbox_full",
    "rate_limited",
    "unavailable",
    "error",
)


class _TwilioWebhook(TwilioEndpoint):
    """Checks, parses and queues one inbound message: one Redis round trip per request."""

    def __init__(self, deps: WebDeps) -> None:
        super().__init__(deps, WEBHOOK_ENDPOINT, WEBHOOK_OUTCOMES)

    async def process(self, request: TwilioRequest) -> str:
        settings = self.settings
        params = await read_signed_form(request, settings, self.checker)
        accepted_at = self.deps.service.clock()
        conversation, message = parse_inbound(
            params,
            accepted_at=accepted_at,
            default_region=settings.default_region,
            account_sid=settings.twilio_account_sid,
        )
        try:
            result = await self.deps.inbox.accept(
                conversation.key, message, accepted_ms=to_ms(accepted_at)
            )
        except RedisError as exc:
            if storage_unavailable(exc):
                raise ServiceUnavailableError("storage is unavailable; retry later") from exc
            raise
        if result is IngestOutcome.FULL:
            raise InboxFull("this conversation has too many unprocessed messages; retry later")
        if result is IngestOutcome.RATE_LIMITED:
            raise RateLimited(
                f"this conversation sent more than {self.deps.inbox.policy.messages_per_minute} "
                "messages in a minute; retry later"
            )
        if result is IngestOutcome.DUPLICATE:
            return "duplicate"
        return "accepted"


_WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Accepted (or already accepted): empty TwiML.",
        "content": {"text/xml": {"example": TWIML_EMPTY.decode()}},
    },
    400: {**ERROR, "description": "Missing or malformed field."},
    403: {
        **ERROR,
        "description": "Missing or invalid X-Twilio-Signature, or foreign account.",
    },
    413: {**ERROR, "description": "Body over MAX_BODY_BYTES."},
    429: {
        **ERROR,
        "description": "The conversation's inbox is full (inbox_full) or it sent more than "
        "INGEST_MESSAGES_PER_MINUTE (rate_limited). Twilio does not retry it later.",
    },
    503: {
        **ERROR,
        "description": "Redis unavailable; Twilio should retry or use its fallback.",
    },
}
_TWILIO_FIELDS = (
    "MessageSid",
    "AccountSid",
    "From",
    "To",
    "Body",
    "NumMedia",
    "NumSegments",
    "ProfileName",
    "WaId",
    "MessageType",
    "ButtonText",
    "ButtonPayload",
    "Latitude",
    "Longitude",
    "Address",
    "Label",
    "OriginalRepliedMessageSid",
)
_WEBHOOK_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": "X-Twilio-Signature",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "Twilio's HMAC over the public URL and every form field.",
        },
        {
            "name": "X-Twilio-Webhooks-Signature-Settings",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "Names the signing algorithm (HMAC_SHA256); absent means HMAC_SHA1.",
        },
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["MessageSid", "From", "To"],
                    "properties": {
                        **{name: {"type": "string"} for name in _TWILIO_FIELDS},
                        "NumMedia": {"type": "integer", "minimum": 0, "maximum": 10},
                    },
                    "additionalProperties": {"type": "string"},
                }
            }
        },
    },
}


def install_inbound_webhook(app: FastAPI, deps: WebDeps) -> TwilioEndpoint:
    """Declares ``POST /twilio-webhook-opt`` on ``app``; returns its endpoint."""
    endpoint = _TwilioWebhook(deps)
    app.add_api_route(
        WEBHOOK_PATH,
        endpoint.handle,
        methods=["POST"],
        name="twilio_webhook",
        summary="Twilio inbound WhatsApp message webhook",
        response_class=Response,
        responses=_WEBHOOK_RESPONSES,
        openapi_extra=_WEBHOOK_OPENAPI,
        tags=["twilio"],
    )
    return endpoint
