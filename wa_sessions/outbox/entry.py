"""What an outbox entry is and what a consumer of the outbox does with a batch of them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

#: The ``type`` of every event the scripts write.
EVENT_TYPES = frozenset(
    {
        "session.started",
        "session.completed",
        "session.expired",
        "order.updated",
        "message.failed",
    }
)


class MalformedEntry(ValueError):
    """An outbox entry without the contract's fields (never written by our scripts)."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One event of the outbox stream. ``id`` is its stream id (``<ms>-<seq>``, increasing:
    the order events happened in); ``at`` the change's time (epoch ms, the caller's clock);
    ``data`` the JSON object the script wrote (a ``SessionView`` for ``session.*``, the order
    details for ``order.updated``, the message id, reason and error code for
    ``message.failed``)."""

    id: str
    type: str
    session_id: str
    conv: str
    at: int
    data: dict[str, Any]

    @property
    def phone(self) -> str:
        """The customer's address (the conversation key's first half)."""
        return self.conv.partition("|")[0]

    @property
    def business(self) -> str:
        return self.conv.partition("|")[2]

    @classmethod
    def parse(cls, entry_id: str, fields: Mapping[str, str]) -> OutboxEntry:
        """The entry of one XREADGROUP item; ``MalformedEntry`` names what is wrong."""
        try:
            kind, sid, conv = fields["type"], fields["session_id"], fields["conv"]
            at = int(fields["at"])
            data = json.loads(fields["data"])
        except (KeyError, ValueError) as exc:
            raise MalformedEntry(f"outbox entry {entry_id}: {exc!r}") from None
        if kind not in EVENT_TYPES or not isinstance(data, dict):
            raise MalformedEntry(f"outbox entry {entry_id}: unknown type or data")
        return cls(entry_id, kind, sid, conv, at, data)


class OutboxConsumer(Protocol):
    """A consumer group's work. ``handle`` gets a batch in stream order and returns the ids it
    finished durably (committed, delivered, or given up on): those are acknowledged; the rest
    stay pending and come back (to this process or, after a crash, to another)."""

    name: str

    async def handle(self, entries: list[OutboxEntry]) -> list[str]: ...
