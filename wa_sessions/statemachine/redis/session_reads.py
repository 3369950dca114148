"""Reads of the sync Redis store by session id (a session's hash, its messages) and by index
(pages of the active and all-sessions indexes): plain commands, pipelined where they need
several keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from wa_sessions.statemachine.models import Message, Session
from wa_sessions.statemachine.redis.calls import as_str
from wa_sessions.statemachine.redis.keys import SessionField
from wa_sessions.statemachine.redis.scripted import ScriptedStore
from wa_sessions.statemachine.redis.session_hash import session_from_hash


class SessionReads(ScriptedStore):
    """Sessions and their messages, read by session id, conversation or index."""

    # Reads by session id: a session's keys carry its conversation's hash tag, so without
    # ``conv`` the conversation is looked up in ``idx:conv`` first (one more round trip).

    def conv_of(self, session_id: str) -> str | None:
        """The conversation of a session (None when unknown or purged)."""
        value = self.client.hget(self.keys.session_conv, session_id)
        return as_str(value) if value is not None else None

    def status_of(self, session_id: str, *, conv: str | None = None) -> str | None:
        conv = conv or self.conv_of(session_id)
        if conv is None:
            return None
        value = self.client.hget(self.keys.session(conv, session_id), SessionField.STATUS)
        return as_str(value) if value is not None else None

    def load(
        self,
        session_id: str,
        *,
        conv: str | None = None,
        include_messages: bool = True,
        message_limit: int | None = None,
    ) -> Session | None:
        conv = conv or self.conv_of(session_id)
        if conv is None:
            return None
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.session(conv, session_id))
        if include_messages:
            start = -message_limit if message_limit else 0
            pipe.lrange(self.keys.session_messages(conv, session_id), start, -1)
        results = pipe.execute()
        fields = results[0]
        if not fields:
            return None
        raw_messages = results[1] if include_messages else []
        return session_from_hash(fields, raw_messages)

    def load_many(self, session_ids: Sequence[str]) -> list[Session]:
        if not session_ids:
            return []
        convs = self.client.hmget(self.keys.session_conv, list(session_ids))
        pipe = self.client.pipeline(transaction=False)
        for sid, conv in zip(session_ids, convs, strict=True):
            if conv is not None:
                pipe.hgetall(self.keys.session(as_str(conv), sid))
        return [session_from_hash(f, []) for f in pipe.execute() if f]

    def messages(
        self, session_id: str, limit: int | None = None, *, conv: str | None = None
    ) -> list[Message]:
        conv = conv or self.conv_of(session_id)
        if conv is None:
            return []
        start = -limit if limit else 0
        raw = self.client.lrange(self.keys.session_messages(conv, session_id), start, -1)
        return [Message.model_validate_json(m) for m in cast(list[str], raw)]

    def messages_at(
        self, session_id: str, index: int, *, conv: str | None = None
    ) -> Message | None:
        conv = conv or self.conv_of(session_id)
        if conv is None:
            return None
        raw = self.client.lindex(self.keys.session_messages(conv, session_id), index)
        return Message.model_validate_json(cast(str, raw)) if raw else None

    def latest_session_id(self, conv: str) -> str | None:
        ids = self.client.zrevrange(self.keys.conv_sessions(conv), 0, 0)
        return as_str(ids[0]) if ids else None

    def conversation_session_ids(self, conv: str) -> list[str]:
        return [as_str(x) for x in self.client.zrange(self.keys.conv_sessions(conv), 0, -1)]

    def count_active(self) -> int:
        return int(self.client.zcard(self.keys.active))

    def count_taken_over(self) -> int:
        """Active sessions an operator holds (the takeover index)."""
        return int(self.client.zcard(self.keys.takeover))

    def page(self, index: str, *, offset: int, limit: int) -> tuple[list[str], int]:
        """Ids from an index zset, newest first, and the index's size."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zrevrange(index, offset, offset + limit - 1)
        pipe.zcard(index)
        ids, total = pipe.execute()
        return [as_str(x) for x in ids], int(total)

    def oldest_in(self, index: str) -> int | None:
        """The lowest score (epoch ms) of an index zset, None when it is empty."""
        first = self.client.zrange(index, 0, 0, withscores=True)
        return int(first[0][1]) if first else None
