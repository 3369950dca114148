"""wa-sessions: a WhatsApp session service for businesses on Twilio."""

__version__ = "0.1.0"
