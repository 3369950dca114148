"""The session domain's data: the design document's models, plus the customer-service window.

Pure pydantic; nothing here knows about Redis, HTTP or Dramatiq.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: WhatsApp's customer-service window: free-form replies only within 24 h of the last inbound.
CUSTOMER_SERVICE_WINDOW = timedelta(hours=24)


class SessionStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    EXPIRED = "expired"


class MessageType(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    DOCUMENT = "document"
    LOCATION = "location"
    SYSTEM = "system"


class MessageDirection(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class DeliveryStatus(StrEnum):
    """Where an outbound reply is: Twilio's ``MessageStatus`` values, plus ``not_sent`` for a
    reply only recorded (no Twilio credentials)."""

    NOT_SENT = "not_sent"
    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    UNDELIVERED = "undelivered"
    CANCELED = "canceled"


#: Status callbacks repeat and arrive out of order; a status only replaces one of lower rank, so
#: a late ``sent`` never overwrites ``read``. Failures are terminal. Unknown statuses rank 0.
DELIVERY_RANK: dict[str, int] = {
    DeliveryStatus.ACCEPTED: 0,
    DeliveryStatus.SCHEDULED: 0,
    DeliveryStatus.QUEUED: 1,
    DeliveryStatus.SENDING: 2,
    DeliveryStatus.SENT: 3,
    DeliveryStatus.DELIVERED: 4,
    DeliveryStatus.READ: 5,
    DeliveryStatus.FAILED: 9,
    DeliveryStatus.UNDELIVERED: 9,
    DeliveryStatus.CANCELED: 9,
}


class Message(BaseModel):
    """One message of a conversation, as stored (oldest first) in its session's history."""

    model_config = ConfigDict(frozen=True)

    id: str
    content: str
    message_type: MessageType = MessageType.TEXT
    direction: MessageDirection = MessageDirection.INBOUND
    timestamp: datetime
    metadata: dict[str, Any] = Field(default_factory=dict)


class Session(BaseModel):
    """A conversation between one customer address and one business number."""

    session_id: str
    phone_number: str
    business_number: str
    status: SessionStatus
    created_at: datetime
    last_activity: datetime
    last_inbound_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None
    message_count: int = 0
    #: Messages dropped from the head of the history by the per-session cap (still counted).
    trimmed_count: int = 0
    counts: dict[str, int] = Field(default_factory=dict)
    messages: list[Message] = Field(default_factory=list)
    context: dict[str, Any] = Field(default_factory=dict)
    order_details: dict[str, Any] | None = None
    #: The operator who took the session over (automatic replies are off), and when.
    taken_over_by: str | None = None
    taken_over_at: datetime | None = None
    #: The conversation template the session follows and its current step (``flows/``).
    flow: str | None = None
    flow_step: str | None = None

    def window_open(self, now: datetime) -> bool:
        """Whether a free-form (non-template) reply may be sent to the customer at ``now``."""
        if self.last_inbound_at is None:
            return False
        return now < self.last_inbound_at + CUSTOMER_SERVICE_WINDOW

    def window_closes_at(self) -> datetime | None:
        if self.last_inbound_at is None:
            return None
        return self.last_inbound_at + CUSTOMER_SERVICE_WINDOW


class SessionCreate(BaseModel):
    phone_number: str
    business_number: str | None = None
    initial_message: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)


class SessionUpdate(BaseModel):
    """A partial update: ``context`` keys are merged (a ``None`` value removes the key),
    ``order_details`` replaces the stored details, ``status`` fires the matching trigger."""

    context: dict[str, Any] | None = None
    order_details: dict[str, Any] | None = None
    status: SessionStatus | None = None


class WindowState(BaseModel):
    open: bool
    last_inbound_at: datetime | None
    closes_at: datetime | None


class SessionSummary(BaseModel):
    session_id: str
    phone_number: str
    business_number: str
    status: SessionStatus
    created_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    duration_seconds: float
    message_count: int
    messages_by_direction: dict[str, int]
    messages_by_type: dict[str, int]
    first_message_at: datetime | None
    last_message_at: datetime | None
    last_activity: datetime
    order_details: dict[str, Any] | None
    context: dict[str, Any]
    window: WindowState
    #: Read from the SQL archive: Redis no longer has the session.
    archived: bool = False


class SessionPage(BaseModel):
    sessions: list[Session]
    total: int
    offset: int
    limit: int
