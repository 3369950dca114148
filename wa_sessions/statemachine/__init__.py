"""The session domain: models, the lifecycle machine, the drain's rules and the store protocols
(with an in-memory store); the Redis adapter in ``redis/``, and ``SessionService`` over it.

Knows nothing of HTTP, Dramatiq, Twilio or OpenAI, and its domain modules load without Redis:
``SessionService`` (the design document's API, on the Redis store) is loaded on first use.
"""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name == "SessionService":
        # imported here: it brings the Redis adapter, which the domain modules must not load.
        from wa_sessions.statemachine.service import SessionService

        return SessionService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
