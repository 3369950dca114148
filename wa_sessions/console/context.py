"""What the console's routes work with, built once by ``install_console``."""

from __future__ import annotations

from dataclasses import dataclass

from wa_sessions.analysis.service import SessionAnalyses
from wa_sessions.archive.reader import ArchiveReader
from wa_sessions.config import Settings
from wa_sessions.console.conversation import ConversationReader
from wa_sessions.console.listing import SessionListing
from wa_sessions.console.live import ChangeFeed
from wa_sessions.console.media import TwilioMedia
from wa_sessions.console.pages import Pages
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.takeover import TakeoverService


@dataclass(frozen=True)
class ConsoleContext:
    settings: Settings
    service: SessionService
    takeover: TakeoverService
    pages: Pages
    listing: SessionListing
    conversations: ConversationReader
    feed: ChangeFeed
    #: None without Twilio credentials (images are then not shown).
    media: TwilioMedia | None
    #: The session analysis panel and its Analyse button (None: not shown).
    analyses: SessionAnalyses | None = None
    #: The SQL archive the conversation page falls back to (None: Redis only).
    archive: ArchiveReader | None = None
