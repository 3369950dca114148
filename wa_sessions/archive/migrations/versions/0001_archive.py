"""The archive: sessions, their messages and their replies' deliveries.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "archived_sessions",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("phone_number", sa.String(64), nullable=False),
        sa.Column("business_number", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("last_activity", _TS, nullable=False),
        sa.Column("last_inbound_at", _TS, nullable=True),
        sa.Column("ended_at", _TS, nullable=True),
        sa.Column("end_reason", sa.String(200), nullable=True),
        sa.Column("message_count", sa.Integer, nullable=False),
        sa.Column("trimmed_count", sa.Integer, nullable=False),
        sa.Column("order_details", sa.JSON, nullable=True),
        sa.Column("context", sa.JSON, nullable=False),
        sa.Column("analysis", sa.JSON, nullable=False),
        sa.Column("outbox_id", sa.String(40), nullable=False),
        sa.Column("archived_at", _TS, nullable=False),
    )
    op.create_index(
        "ix_archived_sessions_phone",
        "archived_sessions",
        ["phone_number", "business_number", "created_at"],
    )
    op.create_index(
        "ix_archived_sessions_status_ended", "archived_sessions", ["status", "ended_at"]
    )
    op.create_index("ix_archived_sessions_ended", "archived_sessions", ["ended_at"])
    op.create_table(
        "archived_messages",
        sa.Column(
            "session_id",
            sa.String(64),
            sa.ForeignKey("archived_sessions.session_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("message_id", sa.String(100), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("message_type", sa.String(16), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("timestamp", _TS, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
    )
    op.create_index(
        "ix_archived_messages_position", "archived_messages", ["session_id", "position"]
    )
    op.create_table(
        "archived_deliveries",
        sa.Column(
            "session_id",
            sa.String(64),
            sa.ForeignKey("archived_sessions.session_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("message_id", sa.String(100), primary_key=True),
        sa.Column("twilio_sid", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(16), nullable=True),
        sa.Column("updated_at", sa.String(40), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("archived_deliveries")
    op.drop_index("ix_archived_messages_position", table_name="archived_messages")
    op.drop_table("archived_messages")
    op.drop_index("ix_archived_sessions_ended", table_name="archived_sessions")
    op.drop_index("ix_archived_sessions_status_ended", table_name="archived_sessions")
    op.drop_index("ix_archived_sessions_phone", table_name="archived_sessions")
    op.drop_table("archived_sessions")
