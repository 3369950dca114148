"""The session API's response shapes, declared so ``/openapi.json`` documents them.

The webhook itself answers TwiML and never goes through these models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from wa_sessions.languages.detect import SUPPORTED
from wa_sessions.statemachine.models import Message, Session, SessionStatus, WindowState
from wa_sessions.statemachine.takeover import OPERATOR_PATTERN, REPLY_PATTERN, TWILIO_BODY_LIMIT


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable name, e.g. session_not_found.")
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class SessionView(BaseModel):
    """A session without its messages."""

    session_id: str
    phone_number: str
    business_number: str
    status: SessionStatus
    created_at: datetime
    last_activity: datetime
    last_inbound_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    message_count: int = Field(description="Messages ever added to the session.")
    trimmed_count: int = Field(
        description="Oldest messages dropped from the history by MAX_MESSAGES_PER_SESSION "
        "(still counted in message_count)."
    )
    order_details: dict[str, Any] | None
    context: dict[str, Any]
    window: WindowState = Field(
        description="WhatsApp's 24-hour customer-service window, from the last inbound message."
    )
    taken_over_by: str | None = Field(
        default=None,
        description="The operator holding the session (automatic replies off), or null.",
    )
    taken_over_at: datetime | None = None
    flow: str | None = Field(
        default=None, description="The conversation template the session follows, or null."
    )
    flow_step: str | None = Field(
        default=None, description="The template's current step (`done` once answered), or null."
    )
    archived: bool = Field(
        default=False,
        description="Read from the SQL archive: Redis no longer has the session.",
    )

    @classmethod
    def of(cls, session: Session, now: datetime, *, archived: bool = False) -> SessionView:
        return cls(
            session_id=session.session_id,
            phone_number=session.phone_number,
            business_number=session.business_number,
            status=session.status,
            created_at=session.created_at,
            last_activity=session.last_activity,
            last_inbound_at=session.last_inbound_at,
            ended_at=session.ended_at,
            end_reason=session.end_reason,
            message_count=session.message_count,
            trimmed_count=session.trimmed_count,
            order_details=session.order_details,
            context=session.context,
            window=WindowState(
                open=session.window_open(now),
                last_inbound_at=session.last_inbound_at,
                closes_at=session.window_closes_at(),
            ),
            taken_over_by=session.taken_over_by,
            taken_over_at=session.taken_over_at,
            flow=session.flow,
            flow_step=session.flow_step,
            archived=archived,
        )


class SessionDetail(BaseModel):
    session: SessionView
    conversation_history: list[Message] = Field(
        description="The last `limit` messages of the session, oldest first."
    )
    message_count: int = Field(description="Messages in conversation_history.")


class ActiveSessions(BaseModel):
    active_sessions: list[SessionView]
    total_active: int
    offset: int
    limit: int


class SessionList(BaseModel):
    sessions: list[SessionView]
    total: int
    offset: int
    limit: int


class SessionEnded(BaseModel):
    message: str
    session: SessionView


class OperatorAction(BaseModel):
    """Who takes a session over or hands it back."""

    operator: str = Field(
        description="The operator's name (letters, digits, _ . @ -).",
        # Documented here, checked by TakeoverService (its refusal names the rule).
        json_schema_extra={"pattern": OPERATOR_PATTERN},
    )
    force: bool = Field(
        default=False,
        description="Hand back: even when another operator holds the session.",
    )


class OperatorReplyRequest(BaseModel):
    operator: str = Field(description="The operator holding the session.", pattern=OPERATOR_PATTERN)
    text: str = Field(
        description="The reply, sent as free-form WhatsApp text (OPERATOR_REPLY_MAX_CHARS "
        "at most).",
        json_schema_extra={"pattern": REPLY_PATTERN},
        max_length=TWILIO_BODY_LIMIT,
    )


class TakeoverChanged(BaseModel):
    message: str
    session: SessionView


class OperatorReplyQueued(BaseModel):
    message: str
    reply_id: str = Field(
        description="The reply's message id in the history (replaced by Twilio's MessageSid "
        "once sent through Twilio)."
    )
    session: SessionView


class Health(BaseModel):
    status: str


#: One of the supported reply languages (``languages/detect.py``'s ``SUPPORTED``).
LANGUAGE_PATTERN = "^(" + "|".join(SUPPORTED) + ")$"


class LanguageSetting(BaseModel):
    language: str | None = Field(
        description="ISO 639-1 code of the reply language for this phone (en, es, pt, fr, de, "
        "it, id); null: detect it from the customer's messages again.",
        json_schema_extra={"pattern": LANGUAGE_PATTERN},
        pattern=LANGUAGE_PATTERN,
    )


class PhoneLanguage(BaseModel):
    phone_number: str
    business_number: str
    language: str | None = Field(
        description="The business's override, or null when the language is detected."
    )
