"""The session analysis and what it is computed from. Pure pydantic: no I/O.

The *fingerprint* names what an analysis read: the number of customer and business messages
(system notes left out) and the id of the last of them. An analysis whose fingerprint is the
session's current one is never recomputed; a failed analysis adds a system note, which leaves
the fingerprint (and so the stored analysis' freshness) as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from wa_sessions.retries import FailureReason
from wa_sessions.statemachine.models import Message, MessageType, Session

#: At most this many open questions and characters of summary are kept (the console's panel).
MAX_OPEN_QUESTIONS = 5
MAX_SUMMARY_CHARS = 400


#: A language tag whose first part is an ISO 639-1 code ("pt", "pt-BR", "pt_br").
_LANGUAGE_TAG = re.compile(r"([a-z]{2})(?:[-_][a-z0-9]+)*")


class Intent(StrEnum):
    ORDER = "order"
    ORDER_CHANGE = "order_change"
    QUESTION = "question"
    COMPLAINT = "complaint"
    OTHER = "other"


class Sentiment(StrEnum):
    POSITIVE = "positive"
    NEUTRAL = "neutral"
    NEGATIVE = "negative"


class AnalyserName(StrEnum):
    OPENAI = "openai"
    OFFLINE = "offline"


class Findings(BaseModel):
    """What an analyser finds in a conversation (the model's structured output, too)."""

    model_config = ConfigDict(extra="forbid")

    language: str | None = Field(description="ISO 639-1 code of the customer's language, or null")
    intent: Intent
    sentiment: Sentiment
    summary: str = Field(description="One or two sentences on what the conversation is about")
    open_questions: list[str] = Field(
        description="Questions the customer asked that no later business message answered"
    )
    next_step: str = Field(description="What the business should do next, one sentence")

    @field_validator("language")
    @classmethod
    def _iso_code(cls, value: str | None) -> str | None:
        # A model may answer "Portuguese" or "pt-BR": kept only as a two-letter code.
        found = _LANGUAGE_TAG.fullmatch((value or "").strip().lower())
        return found.group(1) if found else None

    @field_validator("summary", "next_step")
    @classmethod
    def _short(cls, value: str) -> str:
        return value[:MAX_SUMMARY_CHARS]

    @field_validator("open_questions")
    @classmethod
    def _few(cls, value: list[str]) -> list[str]:
        return [q[:MAX_SUMMARY_CHARS] for q in value[-MAX_OPEN_QUESTIONS:]]


class SessionAnalysis(Findings):
    """An analysis as stored with the session and answered by the API."""

    analysed_at: datetime
    analyser: AnalyserName
    #: What was analysed: ``<messages>:<last message id>`` (system notes left out).
    fingerprint: str
    message_count: int


def fingerprint_of(session: Session) -> str:
    """The session's current fingerprint (its history must hold the latest messages)."""
    count = session.message_count - session.counts.get("t:" + MessageType.SYSTEM.value, 0)
    last = next(
        (m.id for m in reversed(session.messages) if m.message_type is not MessageType.SYSTEM),
        "",
    )
    return f"{count}:{last}"


@dataclass(frozen=True, slots=True)
class AnalysisRequest:
    """A session's conversation as an analyser reads it: customer and business messages,
    oldest first (system notes left out), and the order the session holds."""

    session_id: str
    messages: list[Message]
    order: dict[str, object] | None
    fingerprint: str

    @classmethod
    def of(cls, session: Session) -> AnalysisRequest:
        return cls(
            session.session_id,
            [m for m in session.messages if m.message_type is not MessageType.SYSTEM],
            session.order_details,
            fingerprint_of(session),
        )


@dataclass(frozen=True, slots=True)
class AnalysisFailure:
    """An analyser that gave up: why (the retry module's reasons), what, attempts made."""

    reason: FailureReason
    detail: str
    attempts: int = 1


class Analyser(Protocol):
    """Reads a conversation and finds what it is about; never raises for an external failure."""

    name: AnalyserName
    #: The longest one analysis may take (the OpenAI retry budget), for callers that wait.
    budget_seconds: float

    async def analyse(self, request: AnalysisRequest) -> Findings | AnalysisFailure: ...


#: How a stored analysis relates to its session now.
Freshness = Literal["current", "stale"]
