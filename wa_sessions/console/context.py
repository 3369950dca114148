"""What the console's routes work with, built once by ``install_console``."""

from __future__ import annotations

from dataclasses import dataclass

from wa_sessions.config import Settings
from wa_sessions.console.conversation import ConversationReader
from wa_sessions.console.listing import SessionListing
from wa_sessions.console.live import ChangeFeed
from wa_sessions.console.media import TwilioMedia
from wa_sessions.console.pages import Pages
from wa_sessions.statemachine.service import SessionService


@dataclass(frozen=True)
class ConsoleContext:
    settings: Settings
    service: SessionService
    pages: Pages
    listing: SessionListing
    conversations: ConversationReader
    feed: ChangeFeed
    #: None without Twilio credentials (images are then not shown).
    media: TwilioMedia | None
