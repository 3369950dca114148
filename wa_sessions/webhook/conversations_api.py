"""``POST /conversations`` behind the admin bearer token: the business starts (or continues) a
conversation with a template or, inside WhatsApp's 24-hour window, free text
(``statemachine/conversations.py``; docs/OUTREACH.md). Answered 202 once queued in the phone's
inbox; 409 ``opted_out``, ``outside_window`` or ``flow_in_progress`` when it may not be sent;
400 for bad input (an unknown ``template`` too)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from wa_sessions.statemachine.outreach import CONTENT_SID_PATTERN, MAX_VARIABLES
from wa_sessions.statemachine.takeover import TWILIO_BODY_LIMIT
from wa_sessions.webhook.auth import require_bearer
from wa_sessions.webhook.endpoint import WebDeps
from wa_sessions.webhook.schemas import SessionView
from wa_sessions.webhook.session_api import bearer, responses


class ConversationRequest(BaseModel):
    """Exactly one of ``content_sid`` (an approved template) and ``text``; with a conversation
    ``template``, ``content_sid`` or nothing (the flow's first prompt, inside the window)."""

    model_config = ConfigDict(extra="forbid")

    phone_number: str = Field(description="The customer's WhatsApp number (E.164).")
    business_number: str | None = Field(
        default=None, description="Defaults to the configured BUSINESS_NUMBER."
    )
    content_sid: str | None = Field(
        default=None,
        description="An approved WhatsApp template's Twilio Content SID; sent at any time.",
        pattern=CONTENT_SID_PATTERN,
    )
    variables: dict[str, str] | None = Field(
        default=None,
        description='The template\'s variables (ContentVariables), e.g. {"1": "Ana"}.',
        max_length=MAX_VARIABLES,
    )
    text: str | None = Field(
        default=None,
        description="Free text: only inside the 24-hour window of the customer's last message.",
        max_length=TWILIO_BODY_LIMIT,
    )
    template: str | None = Field(
        default=None,
        description="A conversation template the service loaded (CONVERSATION_TEMPLATE, "
        "CONVERSATION_TEMPLATES_DIR), e.g. order: the session follows its steps from the first; "
        "the first message is content_sid's template or, inside the window, the first prompt.",
        min_length=1,
        max_length=64,
    )


class ConversationQueued(BaseModel):
    message: str
    message_id: str = Field(
        description="The message's id in the history (replaced by Twilio's MessageSid once "
        "sent through Twilio)."
    )
    session: SessionView


def conversations_api(deps: WebDeps) -> APIRouter:
    """``POST /conversations``."""
    require_admin = require_bearer(
        deps.settings.admin_token, bearer, "a valid admin bearer token is required"
    )
    router = APIRouter(dependencies=[Depends(require_admin)], tags=["outreach"])
    starter = deps.starter
    service = deps.service

    @router.post(
        "/conversations",
        status_code=202,
        responses=responses(400, 401, 409),
        summary="Send a customer a template or, inside the 24-hour window, free text, or start "
        "a conversation template; the phone's worker sends it in order",
    )
    def start_conversation(body: ConversationRequest) -> ConversationQueued:
        queued = starter.start(
            body.phone_number,
            body.business_number,
            text=body.text,
            content_sid=body.content_sid,
            variables=body.variables,
            template=body.template,
        )
        return ConversationQueued(
            message="Message queued; the conversation's worker sends it",
            message_id=queued.message_id,
            session=SessionView.of(queued.session, service.clock()),
        )

    return router
