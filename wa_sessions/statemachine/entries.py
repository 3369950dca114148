"""What waits in a conversation's Redis lists: inbox entries and pending-effect records, encoded
and decoded here only (the Lua scripts parse the same format; their kind codes come from
``EntryKind``).

An inbox entry is ``<accepted_ms>\\t<kind>\\t<a>\\t<b>\\t<payload>``: one character of kind keeps
a stored message small (the benchmark's ~558 B per message), and ``a``/``b`` mean, per kind,
what ``EntryResult`` names them: a message's direction and type, an operation's session (empty:
the active one) and operation id; the payload is the message JSON or the operation's reason.
"""

from __future__ import annotations

from enum import StrEnum

from wa_sessions.statemachine.models import Message, MessageDirection


class EntryKind(StrEnum):
    """An inbox entry's kind, as its one-character code."""

    MESSAGE = "m"
    COMPLETE = "c"
    EXPIRE = "x"
    #: An operator's reply to a session they took over: ``a`` the session, ``b`` the operator,
    #: the payload the outbound message JSON (``metadata.operator`` names them).
    OPERATOR_REPLY = "o"
    #: Not stored: what the drain reports for an entry it could not parse (and dropped).
    MALFORMED = "?"


#: The operator triggers an entry can carry, by kind.
OPERATION_KINDS = {"complete": EntryKind.COMPLETE, "expire": EntryKind.EXPIRE}


def encode_entry(accepted_ms: int, kind: EntryKind, a: str, b: str, payload: str) -> str:
    """One inbox entry: a tab-separated header the Lua scripts parse, then the payload."""
    return f"{accepted_ms}\t{kind.value}\t{a}\t{b}\t{payload}"


def entry_accepted_ms(entry: str) -> int:
    return int(entry[: entry.index("\t")])


def message_entry(message: Message, accepted_ms: int) -> str:
    return encode_entry(
        accepted_ms,
        EntryKind.MESSAGE,
        message.direction.value,
        message.message_type.value,
        # Defaults (inbound, text, no metadata) are restored on load: not stored per message.
        message.model_dump_json(exclude_defaults=True),
    )


def operation_entry(
    trigger: str, session_id: str, operation_id: str, accepted_ms: int, reason: str
) -> str:
    """An operator's complete or expire; an empty ``session_id`` means the active session."""
    return encode_entry(accepted_ms, OPERATION_KINDS[trigger], session_id, operation_id, reason)


def operator_reply_entry(session_id: str, operator: str, message: Message, accepted_ms: int) -> str:
    """An operator's reply, queued behind the conversation's waiting entries; the drain sends
    it in order like an automatic reply (``workers/operator_replies.py``)."""
    return encode_entry(
        accepted_ms,
        EntryKind.OPERATOR_REPLY,
        session_id,
        operator,
        message.model_dump_json(exclude_defaults=True),
    )


def is_operator_reply(message: Message) -> bool:
    """Whether a pending-effect record's message is an operator's reply (not a customer's)."""
    return message.direction is MessageDirection.OUTBOUND and "operator" in message.metadata


def effect_record(session_id: str, message: Message) -> str:
    """A pending-effect record (``<sid>\\t<message JSON>``) as applying a message writes it."""
    return f"{session_id}\t{message.model_dump_json()}"


def parse_effect_record(record: str) -> tuple[str, Message]:
    session_id, _, payload = record.partition("\t")
    return session_id, Message.model_validate_json(payload)
