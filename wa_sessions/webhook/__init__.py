"""HTTP layer: the signed Twilio webhook feeds conversation inboxes; an admin API reads sessions."""

from wa_sessions.webhook.app import create_app
from wa_sessions.webhook.endpoint import WebDeps

__all__ = ["WebDeps", "create_app"]
