"""The conversation page's read model: one page of a session's messages (newest page first,
``before`` an absolute index in the history), each reply's delivery status from its ``out:``
hash (status callbacks move it on after the message was stored), and the images to show
through the media proxy. A session Redis no longer holds is paged from the SQL archive's copy
(``archived_page``): read-only, delivery statuses as archived, no images (the proxy reads Redis).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from wa_sessions.console.listing import conversation_digest
from wa_sessions.statemachine.identity import Conversation
from wa_sessions.statemachine.models import Message, MessageDirection, MessageType, Session
from wa_sessions.statemachine.redis.calls import as_str
from wa_sessions.statemachine.redis.keys import OutboundField
from wa_sessions.statemachine.redis.session_reads import SessionReads

MESSAGES_PAGE = 100
#: Delivery statuses shown as ticks: one for sent, two for delivered, two blue for read.
TICKS = {"sent": "✓", "delivered": "✓✓", "read": "✓✓"}


@dataclass(frozen=True)
class ChatItem:
    message: Message
    #: Its absolute position in the history (``before`` links and media lookups use it).
    position: int
    kind: str  # inbound, outbound or system
    delivery: str | None = None
    delivery_error: str | None = None
    images: list[int] = field(default_factory=list)

    @property
    def ticks(self) -> str:
        return TICKS.get(self.delivery or "", "")

    @property
    def sender(self) -> str:
        return str(self.message.metadata.get("sender") or "")

    @property
    def operator(self) -> str:
        """The operator who wrote an outbound reply ('' for the automatic ones; a note about
        an operator's reply names them in its text)."""
        if self.kind != "outbound":
            return ""
        return str(self.message.metadata.get("operator") or "")

    @property
    def reason(self) -> str:
        """A system note's reason (``taken_over``, ``outside_window``, ``not_taken_over``...)."""
        return str(self.message.metadata.get("reason") or "")


@dataclass(frozen=True)
class ConversationPage:
    session: Session
    items: list[ChatItem]
    total: int
    #: ``before`` of the older and newer pages (None at either end).
    older: int | None
    newer: int | None
    digest: str
    #: From the SQL archive: Redis no longer holds the session (read-only, no live updates).
    archived: bool = False

    @property
    def newest(self) -> bool:
        return self.newer is None


def _kind(message: Message) -> str:
    if message.message_type is MessageType.SYSTEM:
        return "system"
    return "inbound" if message.direction is MessageDirection.INBOUND else "outbound"


def image_indexes(message: Message) -> list[int]:
    media = message.metadata.get("media")
    if not isinstance(media, list):
        return []
    return [
        n
        for n, item in enumerate(media)
        if isinstance(item, dict) and str(item.get("content_type", "")).startswith("image/")
    ]


class ConversationReader:
    def __init__(self, store: SessionReads, *, page_size: int = MESSAGES_PAGE) -> None:
        self.store = store
        self.page_size = page_size

    def page(self, session: Session, before: int | None) -> ConversationPage:
        conv = Conversation(session.phone_number, session.business_number).key
        key = self.store.keys.session_messages(conv, session.session_id)
        total = int(self.store.client.llen(key))
        start, end = self._window(total, before)
        raw = cast(list[str], self.store.client.lrange(key, start, end - 1)) if end else []
        messages = [Message.model_validate_json(m) for m in raw]
        statuses = self._delivery(messages)
        items = []
        for offset, message in enumerate(messages):
            status, error = statuses.get(message.id, (None, None))
            if status is None and message.direction is MessageDirection.OUTBOUND:
                status = message.metadata.get("delivery_status")
            items.append(
                ChatItem(
                    message=message,
                    position=start + offset,
                    kind=_kind(message),
                    delivery=str(status) if status else None,
                    delivery_error=error,
                    images=image_indexes(message),
                )
            )
        return self._page(session, items, total, start, end)

    def archived_page(self, session: Session, before: int | None) -> ConversationPage:
        """One page of an archived session's messages (``session.messages`` holds them all)."""
        messages = session.messages
        start, end = self._window(len(messages), before)
        items = [
            ChatItem(
                message=message,
                position=start + offset,
                kind=_kind(message),
                delivery=str(message.metadata.get("delivery_status") or "") or None,
            )
            for offset, message in enumerate(messages[start:end])
        ]
        return self._page(session, items, len(messages), start, end, archived=True)

    def _window(self, total: int, before: int | None) -> tuple[int, int]:
        """The page's first and past-the-end positions in a history of ``total`` messages."""
        end = total if before is None else max(0, min(before, total))
        return max(0, end - self.page_size), end

    def _page(
        self,
        session: Session,
        items: list[ChatItem],
        total: int,
        start: int,
        end: int,
        *,
        archived: bool = False,
    ) -> ConversationPage:
        conv = Conversation(session.phone_number, session.business_number).key
        return ConversationPage(
            session=session,
            items=items,
            total=total,
            older=start if start > 0 else None,
            newer=min(total, end + self.page_size) if end < total else None,
            digest=conversation_digest(conv),
            archived=archived,
        )

    def _delivery(self, messages: list[Message]) -> dict[str, tuple[str | None, str | None]]:
        """Each sent reply's furthest status and error code, read from its ``out:`` hash."""
        sent = [
            (m.id, str(m.metadata["twilio_sid"]))
            for m in messages
            if m.direction is MessageDirection.OUTBOUND and m.metadata.get("twilio_sid")
        ]
        if not sent:
            return {}
        pipe = self.store.client.pipeline(transaction=False)
        for _, twilio_sid in sent:
            pipe.hmget(
                self.store.keys.outbound(twilio_sid),
                [OutboundField.STATUS, OutboundField.ERROR_CODE],
            )
        found: dict[str, tuple[str | None, str | None]] = {}
        for (message_id, _), values in zip(sent, pipe.execute(), strict=True):
            status, error = cast(list[Any], values)
            found[message_id] = (
                as_str(status) if status else None,
                as_str(error) if error else None,
            )
        return found

    def find_message(self, session: Session, message_id: str) -> Message | None:
        """A message of the session by id (the media proxy's lookup): the raw history is
        searched for the id before anything is parsed."""
        conv = Conversation(session.phone_number, session.business_number).key
        key = self.store.keys.session_messages(conv, session.session_id)
        needle = f'"id":"{message_id}"'
        for raw in cast(list[str], self.store.client.lrange(key, 0, -1)):
            if needle in raw:
                message = Message.model_validate_json(raw)
                if message.id == message_id:
                    return message
        return None
