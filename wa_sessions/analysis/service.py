"""Analysing a session: read it, answer the stored analysis when it read the same messages,
else ask the analyser and store its findings only if the session still has the messages they
were computed from. A failed analysis leaves the session as it was, with a system note saying
why. Used by the session API, the console and the scheduler's session-end job.

The store is synchronous (redis-py); its calls run in a thread so the caller's event loop (the
web process', the scheduler's) keeps serving while Redis answers.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from time import perf_counter
from typing import Protocol

import pydantic

from wa_sessions.analysis.models import (
    Analyser,
    AnalysisFailure,
    AnalysisRequest,
    Findings,
    SessionAnalysis,
    fingerprint_of,
)
from wa_sessions.errors import AnalysisFailed, AnalysisNotFound, AnalysisStale, SessionNotFound
from wa_sessions.metrics.analysis import (
    ANALYSES,
    ANALYSIS_DURATION,
    ANALYSIS_FAILURES,
    ANALYSIS_FINDINGS,
)
from wa_sessions.retries import FailureReason
from wa_sessions.statemachine.models import Message, MessageDirection, MessageType, Session
from wa_sessions.statemachine.service import SessionService

log = logging.getLogger(__name__)

#: Analyses tried when the session changes under one (each new message makes it stale).
ATTEMPTS = 2


class AnalysisStore(Protocol):
    """The analysis field of sessions (``statemachine.redis.analysis_store``)."""

    def stored_analysis(self, session_id: str) -> str | None: ...

    def save_analysis(
        self, session_id: str, *, fingerprint: str, analysis_json: str
    ) -> tuple[str, str]: ...

    def note(self, session_id: str, message: Message, *, cap: int) -> str: ...

    def queue_due(self, session_ids: list[str]) -> None:
        """Queues ended sessions for the scheduler's analysis job."""
        ...

    def take_due(self, limit: int) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class StoredAnalysis:
    """A stored analysis and whether it read the session's messages as they are now."""

    analysis: SessionAnalysis
    current: bool


class SessionAnalyses:
    """Analyses of sessions, over the session service, the analysis store and one analyser."""

    def __init__(
        self,
        sessions: SessionService,
        store: AnalysisStore,
        analyser: Analyser,
        *,
        max_messages: int = 200,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.analyser = analyser
        self.max_messages = max_messages

    def stored(self, session_id: str) -> StoredAnalysis | None:
        """The stored analysis (None when none yet); ``SessionNotFound`` for an unknown id."""
        session = self._session(session_id)
        analysis = self._parse(self.store.stored_analysis(session_id))
        if analysis is None:
            return None
        return StoredAnalysis(analysis, analysis.fingerprint == fingerprint_of(session))

    def require_stored(self, session_id: str) -> SessionAnalysis:
        found = self.stored(session_id)
        if found is None:
            raise AnalysisNotFound(f"session {session_id} has not been analysed yet")
        return found.analysis

    async def analyse(self, session_id: str) -> SessionAnalysis:
        """The session's analysis for its messages now: the stored one when it read them,
        else a new one, stored. ``SessionNotFound``, ``AnalysisFailed`` (a system note was
        added) or ``AnalysisStale`` (the session kept changing)."""
        name = self.analyser.name.value
        for _ in range(ATTEMPTS):
            session = await asyncio.to_thread(self._session, session_id)
            request = AnalysisRequest.of(session)
            raw = await asyncio.to_thread(self.store.stored_analysis, session_id)
            stored = self._parse(raw)
            if stored is not None and stored.fingerprint == request.fingerprint:
                ANALYSES.labels(name, "unchanged").inc()
                return stored
            found = await self._ask(request)
            if isinstance(found, AnalysisFailure):
                await asyncio.to_thread(self._note_failure, session_id, found)
                raise AnalysisFailed(
                    f"the {name} analyser failed ({found.reason.value}): {found.detail}"
                )
            analysis = SessionAnalysis(
                **found.model_dump(),
                analysed_at=self.sessions.clock(),
                analyser=self.analyser.name,
                fingerprint=request.fingerprint,
                message_count=len(request.messages),
            )
            outcome, _ = await asyncio.to_thread(
                self.store.save_analysis,
                session_id,
                fingerprint=request.fingerprint,
                analysis_json=analysis.model_dump_json(),
            )
            ANALYSES.labels(name, outcome).inc()
            if outcome == "stored":
                ANALYSIS_FINDINGS.labels(analysis.intent.value, analysis.sentiment.value).inc()
                return analysis
            if outcome == "missing":
                raise SessionNotFound(f"no session {session_id}")
        raise AnalysisStale(
            f"session {session_id} changed while it was analysed; nothing was stored, try again"
        )

    async def _ask(self, request: AnalysisRequest) -> Findings | AnalysisFailure:
        started = perf_counter()
        try:
            return await self.analyser.analyse(request)
        except Exception as exc:
            # An analyser bug must not become a 500 or a dead scheduler job.
            log.exception("session analyser %s raised", self.analyser.name.value)
            return AnalysisFailure(FailureReason.OTHER, f"analyser error: {type(exc).__name__}")
        finally:
            ANALYSIS_DURATION.labels(self.analyser.name.value).observe(perf_counter() - started)

    def _note_failure(self, session_id: str, failure: AnalysisFailure) -> None:
        name = self.analyser.name.value
        ANALYSES.labels(name, "failed").inc()
        ANALYSIS_FAILURES.labels(name, failure.reason.value).inc()
        note = Message(
            id=f"sys-{uuid.uuid4().hex}",
            content=(
                f"Session analysis failed ({failure.reason.value}, {failure.attempts} "
                f"attempt(s)): {failure.detail}. The stored analysis was not changed."
            ),
            message_type=MessageType.SYSTEM,
            direction=MessageDirection.OUTBOUND,
            timestamp=self.sessions.clock(),
            metadata={
                "event": "analysis_failed",
                "reason": failure.reason.value,
                "attempts": failure.attempts,
                "analyser": name,
            },
        )
        self.store.note(session_id, note, cap=self.sessions.max_messages_per_session)

    def _session(self, session_id: str) -> Session:
        session = self.sessions.store.load(session_id, message_limit=self.max_messages)
        if session is None:
            raise SessionNotFound(f"no session {session_id}")
        return session

    @staticmethod
    def _parse(raw: str | None) -> SessionAnalysis | None:
        if raw is None:
            return None
        try:
            return SessionAnalysis.model_validate_json(raw)
        except pydantic.ValidationError:
            # A field written by another version: as if none, the next analysis replaces it.
            return None
