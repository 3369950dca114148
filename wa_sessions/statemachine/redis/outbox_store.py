"""The outbox stream's shared state, read and trimmed in one script each: the backlog the
metrics show and the trim below what every consumer group has acknowledged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wa_sessions.statemachine.redis.calls import as_str
from wa_sessions.statemachine.redis.scripted import ScriptedStore


@dataclass(frozen=True, slots=True)
class GroupBacklog:
    """One consumer group: entries delivered and not acknowledged, and the stream id of the
    first entry it has not acknowledged (pending or never delivered; None: none)."""

    group: str
    pending: int
    first_unacknowledged: str | None

    def oldest_ms(self) -> int | None:
        """When (epoch ms, Redis' clock) the first unacknowledged entry was written."""
        if self.first_unacknowledged is None:
            return None
        return int(self.first_unacknowledged.partition("-")[0])


@dataclass(frozen=True, slots=True)
class OutboxBacklog:
    length: int
    groups: tuple[GroupBacklog, ...]


class OutboxStore(ScriptedStore):
    """The outbox's backlog and trim (``lua/outbox_backlog.lua``, ``lua/outbox_trim.lua``)."""

    def outbox_backlog(self, groups: Sequence[str] = ()) -> OutboxBacklog:
        """The stream's length and every group's backlog; ``groups`` are reported even before
        they exist (as having acknowledged nothing)."""
        length, *rows = self._run("outbox_backlog", groups=list(groups))
        return OutboxBacklog(
            int(length),
            tuple(
                GroupBacklog(as_str(name), int(pending), as_str(first) or None)
                for name, pending, first in rows
            ),
        )

    def trim_outbox(self, *, limit: int = 10_000) -> int:
        """Drops entries every group has acknowledged; how many went."""
        return int(self._run("outbox_trim", limit=limit))

    def erase_conversation(self, conv: str, *, page: int = 1000) -> tuple[int, int]:
        """Deletes the conversation everywhere in Redis (``lua/erase_conv.lua``) and its outbox
        entries (a scan of the stream, XDEL of its entries: an erasure is rare, the stream is
        short once trimmed). Returns (sessions, outbox entries) deleted."""
        sessions = int(self._run("erase_conv", conv=conv))
        removed, start = 0, "-"
        while True:
            entries = self.client.xrange(self.keys.outbox, start, "+", count=page)
            if not entries:
                break
            mine = [
                as_str(entry_id)
                for entry_id, fields in entries
                if (fields or {}).get("conv") == conv
            ]
            if mine:
                removed += int(self.client.xdel(self.keys.outbox, *mine))
            if len(entries) < page:
                break
            start = "(" + as_str(entries[-1][0])
        return sessions, removed

    def erase_daily_calls(self, customer: str) -> int:
        """Deletes the customer's daily call counters (their key names carry the address)."""
        pattern = self.keys.daily_calls("*", "*", customer)
        keys = [as_str(k) for k in self.client.scan_iter(match=_glob_literal(pattern, customer))]
        return int(self.client.delete(*keys)) if keys else 0


def _glob_literal(pattern: str, literal: str) -> str:
    """``pattern`` with the glob characters of ``literal`` escaped (a ``+`` is safe; ``[`` is
    not)."""
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in literal)
    return pattern.replace(literal, escaped)
