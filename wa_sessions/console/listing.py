"""The sessions list's read model: one page of rows over the existing indexes (``idx:active``,
``idx:status:<status>``, ``idx:all``, a conversation's ``sessions`` zset for a phone search),
each row read with one pipelined round trip for the whole page.

Pages are positions in the index (``start``): the business-number filter skips the index's
entries of other numbers by their ``idx:conv`` value (an HMGET per chunk, no session read),
reading at most ``SCAN_BUDGET`` entries per page, so a filter matching few sessions of a
100,000-session index answers quickly with a "next" link instead of a long scan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from wa_sessions.statemachine.models import (
    CUSTOMER_SERVICE_WINDOW,
    Message,
    MessageDirection,
    MessageType,
    Session,
    SessionStatus,
)
from wa_sessions.statemachine.redis.calls import as_str
from wa_sessions.statemachine.redis.session_hash import session_from_hash
from wa_sessions.statemachine.redis.session_reads import SessionReads

PAGE_SIZE = 50
#: Index entries read at most per page when a business number filters them.
SCAN_BUDGET = 5000
_CHUNK = 500
#: Messages read from a row's history to find where the customer's unanswered run starts.
_TAIL = 10
_PREVIEW_CHARS = 80


def conversation_digest(conv: str) -> str:
    """A conversation's name in live-update events (not its phone number)."""
    return hashlib.sha256(conv.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ListQuery:
    status: SessionStatus | None = None
    #: Normalized business number, or None for every number.
    business: str | None = None
    #: A normalized customer address: that conversation's sessions only.
    phone: str | None = None
    start: int = 0


@dataclass(frozen=True)
class Row:
    session: Session
    last_message: str
    last_direction: str
    #: Since the first inbound message of the unanswered run at the end (active sessions).
    waiting_seconds: float | None
    order_summary: str
    #: Time left of the 24-hour customer-service window (None when closed or never opened).
    window_seconds_left: float | None
    digest: str


@dataclass(frozen=True)
class ListPage:
    rows: list[Row]
    #: Sessions in the index read (None when a filter makes it unknown).
    total: int | None
    start: int
    next_start: int | None
    prev_start: int | None


def order_summary(order: dict[str, Any] | None, limit: int = 60) -> str:
    if not order:
        return ""
    items = order.get("items") or []
    parts = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("name"):
            quantity = item.get("quantity")
            parts.append(
                f"{quantity:g} × {item['name']}"
                if isinstance(quantity, int | float)
                else str(item["name"])
            )
    text = ", ".join(parts)
    total = order.get("total_amount")
    if isinstance(total, int | float):
        text = f"{text} ({total:g} {order.get('currency') or ''})".strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _preview(message: Message | None) -> tuple[str, str]:
    if message is None:
        return "", ""
    text = message.content or ("[image]" if message.message_type is MessageType.IMAGE else "")
    text = " ".join(text.split())
    if len(text) > _PREVIEW_CHARS:
        text = text[: _PREVIEW_CHARS - 1] + "…"
    return text, message.direction.value


def waiting_since(tail: Sequence[Message]) -> datetime | None:
    """When the customer started waiting: the first inbound message after the last reply."""
    since = None
    for message in reversed(tail):
        if message.message_type is MessageType.SYSTEM:
            continue
        if message.direction is MessageDirection.OUTBOUND:
            break
        since = message.timestamp
    return since


def build_row(session: Session, tail: Sequence[Message], conv: str, now: datetime) -> Row:
    visible = [m for m in tail if m.message_type is not MessageType.SYSTEM]
    text, direction = _preview(visible[-1] if visible else None)
    waiting = None
    if session.status is SessionStatus.ACTIVE:
        since = waiting_since(tail)
        waiting = max(0.0, (now - since).total_seconds()) if since else None
    window = None
    if session.last_inbound_at is not None:
        left = (session.last_inbound_at + CUSTOMER_SERVICE_WINDOW - now).total_seconds()
        window = left if left > 0 else None
    return Row(
        session=session,
        last_message=text,
        last_direction=direction,
        waiting_seconds=waiting,
        order_summary=order_summary(session.order_details),
        window_seconds_left=window,
        digest=conversation_digest(conv),
    )


class SessionListing:
    """Reads pages of the sessions list from the store's indexes."""

    def __init__(
        self, store: SessionReads, *, default_business: str, page_size: int = PAGE_SIZE
    ) -> None:
        self.store = store
        #: The business number of a phone search that names none.
        self.default_business = default_business
        self.page_size = page_size

    def _index(self, status: SessionStatus | None) -> str:
        keys = self.store.keys
        if status is None:
            return keys.all
        if status is SessionStatus.ACTIVE:
            return keys.active
        return keys.status_index(status.value)

    def page(self, query: ListQuery, now: datetime) -> ListPage:
        if query.phone is not None:
            return self._conversation_page(query, now)
        client = self.store.client
        index = self._index(query.status)
        total = int(client.zcard(index))
        if query.business is None:
            ids = [
                as_str(x)
                for x in client.zrevrange(index, query.start, query.start + self.page_size - 1)
            ]
            convs = self._convs(ids)
            chosen = [(sid, c) for sid, c in zip(ids, convs, strict=True) if c is not None]
            next_start = query.start + len(ids)
            return self._page(chosen, total, query, next_start if next_start < total else None, now)
        chosen, position = [], query.start
        suffix = "|" + query.business
        while len(chosen) < self.page_size and position < total:
            if position - query.start >= SCAN_BUDGET:
                break
            ids = [as_str(x) for x in client.zrevrange(index, position, position + _CHUNK - 1)]
            if not ids:
                break
            for sid, conv in zip(ids, self._convs(ids), strict=True):
                position += 1
                if conv is not None and conv.endswith(suffix):
                    chosen.append((sid, conv))
                    if len(chosen) == self.page_size:
                        break
        return self._page(chosen, None, query, position if position < total else None, now)

    def _conversation_page(self, query: ListQuery, now: datetime) -> ListPage:
        conv = f"{query.phone}|{query.business or self.default_business}"
        ids = [
            as_str(x)
            for x in self.store.client.zrevrange(self.store.keys.conv_sessions(conv), 0, -1)
        ]
        pairs = [(sid, conv) for sid in ids]
        rows = self._rows(pairs, now)
        if query.status is not None:
            rows = [r for r in rows if r.session.status is query.status]
        window = rows[query.start : query.start + self.page_size]
        end = query.start + len(window)
        return ListPage(
            rows=window,
            total=len(rows),
            start=query.start,
            next_start=end if end < len(rows) else None,
            prev_start=max(0, query.start - self.page_size) if query.start else None,
        )

    def _convs(self, ids: list[str]) -> list[str | None]:
        if not ids:
            return []
        raw = self.store.client.hmget(self.store.keys.session_conv, ids)
        return [as_str(c) if c is not None else None for c in cast(list[Any], raw)]

    def _page(
        self,
        chosen: list[tuple[str, str]],
        total: int | None,
        query: ListQuery,
        next_start: int | None,
        now: datetime,
    ) -> ListPage:
        return ListPage(
            rows=self._rows(chosen, now),
            total=total,
            start=query.start,
            next_start=next_start,
            prev_start=max(0, query.start - self.page_size) if query.start else None,
        )

    def _rows(self, pairs: Sequence[tuple[str, str]], now: datetime) -> list[Row]:
        if not pairs:
            return []
        keys = self.store.keys
        pipe = self.store.client.pipeline(transaction=False)
        for sid, conv in pairs:
            pipe.hgetall(keys.session(conv, sid))
            pipe.lrange(keys.session_messages(conv, sid), -_TAIL, -1)
        results = pipe.execute()
        rows = []
        for n, (_, conv) in enumerate(pairs):
            fields, raw = results[2 * n], results[2 * n + 1]
            if not fields:
                continue  # purged between the index read and this one
            session = session_from_hash(fields, [])
            tail = [Message.model_validate_json(m) for m in raw]
            rows.append(build_row(session, tail, conv, now))
        return rows
