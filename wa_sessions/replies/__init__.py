"""Replies to customers: what to say (templates) and how it goes out (Twilio, or only a log).

``TwilioSender`` lives in ``wa_sessions.replies.twilio`` and is imported only where it is built,
so reading settings does not load the Twilio REST client.
"""

from wa_sessions.replies.sender import LogSender, OutboundSender, SendFailure, SendResult
from wa_sessions.replies.templates import ReplyTemplates, format_items

__all__ = [
    "LogSender",
    "OutboundSender",
    "ReplyTemplates",
    "SendFailure",
    "SendResult",
    "format_items",
]
