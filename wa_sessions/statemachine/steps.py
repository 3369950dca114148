"""What a drain step takes and answers, and the other values that cross the store's boundary:
plain data, no I/O. The Redis adapter (``redis/store.py``) and the in-memory store
(``memory.py``) both speak in these types; the workers only ever see these."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from wa_sessions.statemachine.entries import EntryKind
from wa_sessions.statemachine.models import Message

#: Dedupe markers are grouped by day (or by the dedupe period, when shorter).
DEDUPE_BUCKET_MS = 24 * 3600 * 1000


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_ms(value: int | str | float) -> datetime:
    return datetime.fromtimestamp(int(float(value)) / 1000, tz=UTC)


class IngestOutcome(IntEnum):
    #: Over the conversation's messages per minute: neither stored nor marked seen.
    RATE_LIMITED = -2
    FULL = -1
    DUPLICATE = 0
    ACCEPTED = 1
    #: Accepted; the caller must enqueue a drain wake-up.
    ACCEPTED_WAKE = 2
    #: Accepted; the ingest script enqueued the wake-up itself.
    ACCEPTED_WOKEN = 3


@dataclass(frozen=True, slots=True)
class ApplyResult:
    session_id: str
    created: bool
    expired_session_id: str | None


@dataclass(frozen=True, slots=True)
class EntryResult:
    """What applying one inbox entry did. ``status`` is ``ok``, or ``bad`` for a malformed entry
    (dropped, of kind ``MALFORMED``). ``session_id``: the session it applied to (opened when
    ``created``); ``detail``: for a message, the session it expired on the way; for an
    operation, its outcome (the state reached, ``missing`` or ``invalid:<state>``).
    A message's ``direction`` and ``message_type``; an operation's ``target_session_id`` (as
    requested; empty: the active session) and ``operation_id``."""

    status: str
    kind: EntryKind = EntryKind.MALFORMED
    session_id: str = ""
    created: bool = False
    detail: str = ""
    direction: str = ""
    message_type: str = ""
    target_session_id: str = ""
    operation_id: str = ""
    accepted_ms: int = 0


@dataclass(frozen=True, slots=True)
class DrainPolicy:
    """What every step of a drain passes to Redis besides the token and the time: the lease's
    length, the batch, the session rules and whether applying queues effects. ``history``: how
    many earlier messages of a session the step returns with its pending records."""

    lease_ms: int
    batch: int
    timeout_ms: int
    cap: int
    keep_ms: int
    carry: tuple[str, ...] = ()
    effects: bool = False
    history: int = 0


@dataclass(frozen=True, slots=True)
class EffectSession:
    """What the effects of one session's pending records need of it, read by the drain step
    that handed them out: status (None once the session is gone), the stored order JSON, the
    last inbound time, the addresses, and its last messages as stored JSON (the extractor's
    history, then the records' own messages), where a record's own message is the record's
    index in ``DrainStep.effects`` instead; the operator holding it, if any."""

    session_id: str
    status: str | None
    order_json: str | None
    last_inbound_ms: int | None
    phone: str
    business: str
    tail: list[str | int]
    #: The operator who holds the session (None: automatic replies are on).
    taken_over_by: str | None = None
    #: The customer's language kept in the session's context and the candidate awaiting
    #: confirmation (``languages/choice.py``), and the business's override for the phone.
    language: str | None = None
    language_candidate: str | None = None
    language_override: str | None = None
    #: The conversation template the session follows and its current step (``flows/``);
    #: None: no flow started.
    flow: str | None = None
    flow_step: str | None = None


@dataclass(frozen=True, slots=True)
class SessionNow:
    """What a reply re-reads of its session right before it leaves: its status (None once
    gone), the operator holding it (None: nobody) and whether the customer opted out (STOP:
    a business-initiated message claimed or queued earlier must not leave after it)."""

    status: str | None
    taken_over_by: str | None = None
    opted_out: bool = False


@dataclass(frozen=True, slots=True)
class EffectMessage:
    """A message that committing effects appends to the session (a reply or a system note);
    ``twilio_sid`` maps Twilio's status callbacks to it."""

    message: Message
    twilio_sid: str = ""
    delivery_status: str = ""
    #: Not activity: the nudge does not postpone the session's expiry (docs/OUTREACH.md).
    passive: bool = False


@dataclass(frozen=True, slots=True)
class SessionEffects:
    """The outcome of one session's records: the order details to store (None: unchanged) and
    the replies and system notes to append, in order. ``reply_waits_ms``: for each message its
    reply answers, the time from the message's acceptance to the reply's send (analytics)."""

    session_id: str
    order: dict[str, Any] | None
    messages: Sequence[EffectMessage]
    reply_waits_ms: Sequence[int] = ()
    #: Context keys to store (name -> JSON-able value), e.g. the customer's language.
    context: Mapping[str, Any] = field(default_factory=dict)
    #: The flow's new position to store: (template name, step id); None: unchanged.
    flow: tuple[str, str] | None = None
    #: Complete the session once the messages are appended (its flow's last step answered),
    #: in the same commit: a message accepted after it opens a new session.
    complete: bool = False
    #: The customer sent STOP: the conversation is opted out for good (``c:{conv}:optout``).
    opt_out: bool = False


@dataclass(frozen=True, slots=True)
class EffectsCommit:
    """The effects of the records a drain ran, committed by its next step: ``records`` must be
    the head of the effects list, in order; ``sessions`` in the order of their first record;
    ``at`` stamps delivery statuses met at commit."""

    records: Sequence[str]
    sessions: Sequence[SessionEffects]
    at: datetime


@dataclass(frozen=True, slots=True)
class DrainStep:
    """One step's answer. ``status`` is ``ok``, or why nothing was done: ``busy`` (another drain
    holds the lease), ``lease`` (the token is no longer the lease's), ``head`` (the committed
    records were not the effects list's head). ``committed``: per committed session, ``ok`` or
    ``ended`` (it ended meanwhile: its records were only popped). ``effects``: the pending
    records to run next, with ``sessions`` by id; empty with ``released`` when the drain is
    done (the lease given up)."""

    status: str
    released: bool
    committed: list[str]
    results: list[EntryResult]
    effects: list[str]
    sessions: dict[str, EffectSession]

    @classmethod
    def refused(cls, status: str) -> DrainStep:
        return cls(status, False, [], [], [], {})


@dataclass(frozen=True, slots=True)
class EndedEvent:
    """A session that ended: its final status, how long it lasted and how many messages
    (and which session: empty in an event recorded before the id was)."""

    status: str
    duration_seconds: float
    message_count: int
    reason: str
    session_id: str = ""

    @classmethod
    def parse(cls, raw: str) -> EndedEvent:
        """``<status> <duration_ms> <message_count> <session id> <reason>`` (the reason may
        hold spaces); an event written without the session id has no fifth field where the
        id would be, so a fourth field that is not a session id is the reason's start."""
        status, duration_ms, count, *rest = [*raw.split(" ", 3), "", ""][:4]
        sid, _, reason = rest[0].partition(" ")
        if not _SESSION_ID.fullmatch(sid):
            sid, reason = "", rest[0]
        return cls(status, int(float(duration_ms)) / 1000, int(count), reason, sid)


#: What ``new_session_id`` makes (a UUID's text).
_SESSION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
