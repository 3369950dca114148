"""The outbox: lifecycle events the Lua scripts append to a Redis Stream atomically with the
change (``lua/lib/outbox.lua``), read by consumer groups (the SQL archive, the business's
webhooks) in the ``outbox`` process (``runner.py``)."""

from wa_sessions.outbox.entry import EVENT_TYPES, OutboxConsumer, OutboxEntry

__all__ = ["EVENT_TYPES", "OutboxConsumer", "OutboxEntry"]
