"""One error hierarchy for the whole service, so callers and the HTTP layer map errors in one place.

``code`` is the stable machine-readable name that HTTP error bodies carry.
"""

from __future__ import annotations


class WaSessionsError(Exception):
    """Root of every error this package raises on purpose."""

    code = "error"


class InvalidPhoneNumber(WaSessionsError):
    """An address is neither an E.164 phone number nor a WhatsApp business-scoped user id."""

    code = "invalid_phone_number"


class SessionNotFound(WaSessionsError):
    """No session with that id (or no session for that phone)."""

    code = "session_not_found"


class InvalidTransition(WaSessionsError):
    """A lifecycle trigger that the session's current state does not allow."""

    code = "invalid_transition"

    def __init__(self, session_id: str, state: str, trigger: str) -> None:
        super().__init__(f"session {session_id} is {state}; cannot {trigger}")
        self.session_id = session_id
        self.state = state
        self.trigger = trigger


class SessionAlreadyActive(WaSessionsError):
    """``create_session`` for a conversation that already has an active session."""

    code = "session_already_active"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"conversation already has active session {session_id}")
        self.session_id = session_id


class InvalidSignature(WaSessionsError):
    """A Twilio request whose signature is missing or does not match."""

    code = "invalid_signature"


class BadRequest(WaSessionsError):
    """A request payload that is missing fields or has malformed ones."""

    code = "bad_request"


class InboxFull(WaSessionsError):
    """A conversation's inbox holds the configured maximum of unapplied messages."""

    code = "inbox_full"


class RateLimited(WaSessionsError):
    """A conversation sent more messages in a minute than ``INGEST_MESSAGES_PER_MINUTE``."""

    code = "rate_limited"


class TakeoverConflict(WaSessionsError):
    """An operator acted on a session another operator holds (or that nobody holds, when the
    action needs it held: a reply, a hand-back)."""

    code = "takeover_conflict"


class OutsideWindow(WaSessionsError):
    """A free-form reply after WhatsApp's 24-hour customer-service window closed."""

    code = "outside_window"


class OptedOut(WaSessionsError):
    """A business-initiated message (a nudge, a started conversation) to a phone that sent
    STOP: it gets none, for good."""

    code = "opted_out"


class FlowInProgress(WaSessionsError):
    """A conversation template started for a session that already follows one, unfinished:
    starting another would take the answer the customer owes the current step."""

    code = "flow_in_progress"


class InvalidDayRange(BadRequest):
    """An analytics day range that is not two ISO dates in order, or spans too many days."""

    code = "invalid_day_range"


class AnalysisNotFound(WaSessionsError):
    """A session that has no stored analysis yet."""

    code = "analysis_not_found"


class AnalysisFailed(WaSessionsError):
    """The analyser gave up (OpenAI timed out, refused, answered out of shape): the session is
    left as it was, with a system note saying why."""

    code = "analysis_failed"


class AnalysisStale(WaSessionsError):
    """The session kept changing while it was analysed; nothing was stored."""

    code = "analysis_stale"
