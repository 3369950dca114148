"""The archive's tables: one row per ended session, one per stored message, one per outbound
reply's delivery. Order details, context and analysis (message counts by direction and type,
duration) are JSON columns: their shape is the session API's."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ArchivedSession(Base):
    __tablename__ = "archived_sessions"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    phone_number: Mapped[str] = mapped_column(String(64))
    business_number: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_activity: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_inbound_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    end_reason: Mapped[str | None] = mapped_column(String(200))
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    trimmed_count: Mapped[int] = mapped_column(Integer, default=0)
    order_details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Counts by direction and type (``n:inbound``, ``t:text`` ...) and the duration.
    analysis: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: The outbox entry this row was last written from, and when.
    outbox_id: Mapped[str] = mapped_column(String(40))
    archived_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_archived_sessions_phone", "phone_number", "business_number", "created_at"),
        Index("ix_archived_sessions_status_ended", "status", "ended_at"),
        Index("ix_archived_sessions_ended", "ended_at"),
    )


class ArchivedMessage(Base):
    __tablename__ = "archived_messages"

    session_id: Mapped[str] = mapped_column(
        String(64),
        ForeignKey("archived_sessions.session_id", ondelete="CASCADE"),
        primary_key=True,
    )
    message_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: Absolute position in the session's history (trimmed messages included).
    position: Mapped[int] = mapped_column(Integer)
    direction: Mapped[str] = mapped_column(String(16))
    message_type: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # ``metadata`` is taken by SQLAlchemy's declarative base.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)

    __table_args__ = (Index("ix_archived_messages_position", "session_id", "position"),)


class ArchivedDelivery(Base):
    __tablename__ = "archived_deliveries"

    session_id: Mapped[str] = mapped_column(
        String(64),
        ForeignKey("archived_sessions.session_id", ondelete="CASCADE"),
        primary_key=True,
    )
    message_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    twilio_sid: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[str | None] = mapped_column(String(40))
