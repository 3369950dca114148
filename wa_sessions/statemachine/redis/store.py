"""The Redis adapter: the only module that talks to Redis about sessions and inboxes.

Every state change is one Lua script (``lua/*.lua``, loaded and encoded by ``scripts``: one
round trip, atomic). Reads are plain commands, pipelined where they need several keys. The
caller passes times in; the store never reads a clock. The session changes are here; the reads
by session id in ``session_reads``, the inboxes and drains in ``inbox_store``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from wa_sessions.statemachine.models import Message
from wa_sessions.statemachine.redis.calls import as_str
from wa_sessions.statemachine.redis.inbox_store import InboxStore
from wa_sessions.statemachine.redis.keys import SessionFieldPrefix
from wa_sessions.statemachine.redis.outbox_store import OutboxStore
from wa_sessions.statemachine.redis.session_reads import SessionReads
from wa_sessions.statemachine.steps import ApplyResult


class RedisSessionStore(SessionReads, InboxStore, OutboxStore):
    """Sessions, their messages and the per-conversation inboxes, stored in one Redis."""

    def apply_message(
        self,
        conv: str,
        message: Message,
        *,
        ts_ms: int,
        now_ms: int,
        new_session_id: str,
        timeout_ms: int,
        cap: int,
        keep_ms: int,
        carry: Sequence[str] = (),
    ) -> ApplyResult:
        sid, created, expired = self._run(
            "apply_message",
            conv=conv,
            ts=ts_ms,
            now=now_ms,
            new_sid=new_session_id,
            timeout_ms=timeout_ms,
            cap=cap,
            keep_ms=keep_ms,
            direction=message.direction.value,
            message_type=message.message_type.value,
            message=message.model_dump_json(exclude_defaults=True),
            carry=list(carry),
        )
        return ApplyResult(as_str(sid), bool(int(created)), as_str(expired) or None)

    def create_session(
        self,
        conv: str,
        session_id: str,
        *,
        ts_ms: int,
        timeout_ms: int,
        keep_ms: int,
        initial_message: Message | None,
        context: dict[str, Any],
    ) -> tuple[bool, str]:
        """Opens a session unless the conversation has a live one: (created, session id)."""
        result = self._run(
            "create_session",
            conv=conv,
            sid=session_id,
            ts=ts_ms,
            timeout_ms=timeout_ms,
            keep_ms=keep_ms,
            initial=initial_message.model_dump_json(exclude_defaults=True)
            if initial_message
            else "",
            context={SessionFieldPrefix.CONTEXT + k: json.dumps(v) for k, v in context.items()},
        )
        return as_str(result[0]) == "created", as_str(result[1])

    def end_session(
        self, session_id: str, trigger: str, *, now_ms: int, keep_ms: int, reason: str
    ) -> tuple[str, str]:
        """Fires ``trigger`` atomically: (``ok``|``invalid``|``missing``, state)."""
        outcome, state = self._run(
            "end_session",
            sid=session_id,
            trigger=trigger,
            now=now_ms,
            keep_ms=keep_ms,
            reason=reason,
        )
        return as_str(outcome), as_str(state)

    def read_active(
        self, conv: str, *, now_ms: int, timeout_ms: int, keep_ms: int
    ) -> tuple[str | None, str | None]:
        sid, expired = self._run(
            "read_active", conv=conv, now=now_ms, timeout_ms=timeout_ms, keep_ms=keep_ms
        )
        return as_str(sid) or None, as_str(expired) or None

    def expire_if_idle(
        self, session_id: str, *, now_ms: int, timeout_ms: int, keep_ms: int
    ) -> bool:
        return bool(
            self._run(
                "expire_if_idle",
                sid=session_id,
                now=now_ms,
                timeout_ms=timeout_ms,
                keep_ms=keep_ms,
            )
        )

    def update_fields(
        self, session_id: str, set_fields: dict[str, str], delete_fields: Iterable[str]
    ) -> bool:
        return bool(
            self._run("update_fields", sid=session_id, set=set_fields, delete=list(delete_fields))
        )

    def expire_idle(
        self, *, now_ms: int, timeout_ms: int, keep_ms: int, limit: int, offset: int = 0
    ) -> tuple[list[str], int, int]:
        """One batch of the idle sweep: (expired ids, candidates examined, skipped)."""
        expired, examined, skipped = self._run(
            "expire_idle",
            now=now_ms,
            timeout_ms=timeout_ms,
            keep_ms=keep_ms,
            limit=limit,
            offset=offset,
        )
        return [as_str(x) for x in expired], int(examined), int(skipped)

    def claim_nudges(
        self, *, cutoff_ms: int, now_ms: int, timeout_ms: int, limit: int
    ) -> tuple[list[list[str]], int]:
        """Marks the due sessions nudged (``lua/claim_nudges.lua``): (per claimed session its
        id, conversation, order JSON, last inbound ms, language JSON, override; examined)."""
        claimed, examined = self._run(
            "claim_nudges", cutoff=cutoff_ms, now=now_ms, timeout_ms=timeout_ms, limit=limit
        )
        return [[as_str(x) for x in row] for row in claimed], int(examined)

    def opted_out(self, conv: str) -> bool:
        """Whether the conversation's customer sent STOP (``c:{conv}:optout``)."""
        return bool(self.client.exists(self.keys.conv_opt_out(conv)))

    def purge(self, *, cutoff_ms: int, limit: int) -> int:
        return int(self._run("purge", cutoff_ms=cutoff_ms, limit=limit))

    def set_language_override(self, conv: str, language: str | None) -> None:
        """The business's reply language for the conversation (None: detected again)."""
        key = self.keys.conv_language(conv)
        if language:
            self.client.set(key, language)
        else:
            self.client.delete(key)

    def language_override(self, conv: str) -> str | None:
        value = self.client.get(self.keys.conv_language(conv))
        return as_str(value) if value is not None else None

    def ping(self) -> bool:
        return bool(self.client.ping())


__all__ = ["RedisSessionStore"]
