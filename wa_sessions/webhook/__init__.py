"""HTTP layer: the signed Twilio webhook feeds conversation inboxes; an admin API reads sessions."""

from wa_sessions.webhook.app import WebDeps, create_app

__all__ = ["WebDeps", "create_app"]
