"""The session domain: models, the lifecycle machine, the Redis store and SessionService.

Knows nothing of HTTP, Dramatiq, Twilio or OpenAI.
"""

from wa_sessions.statemachine.identity import Conversation, normalize_address
from wa_sessions.statemachine.lifecycle import Trigger
from wa_sessions.statemachine.models import (
    Message,
    MessageDirection,
    MessageType,
    Session,
    SessionCreate,
    SessionPage,
    SessionStatus,
    SessionSummary,
    SessionUpdate,
)
from wa_sessions.statemachine.service import SessionService

__all__ = [
    "Conversation",
    "Message",
    "MessageDirection",
    "MessageType",
    "Session",
    "SessionCreate",
    "SessionPage",
    "SessionService",
    "SessionStatus",
    "SessionSummary",
    "SessionUpdate",
    "Trigger",
    "normalize_address",
]
