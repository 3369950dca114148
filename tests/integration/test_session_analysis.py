"""The session analysis over the real Redis: stored with the session, never recomputed when
nothing changed, stored only while the session still has the messages it read, and a failed
analysis leaving the session as it was with a system note."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest
import redis

from tests.conftest import FakeClock
from wa_sessions.analysis.models import (
    AnalyserName,
    AnalysisFailure,
    AnalysisRequest,
    Findings,
    Intent,
    Sentiment,
)
from wa_sessions.analysis.offline import OfflineAnalyser
from wa_sessions.analysis.service import SessionAnalyses
from wa_sessions.errors import AnalysisFailed, AnalysisNotFound, AnalysisStale, SessionNotFound
from wa_sessions.metrics.analysis import ANALYSES
from wa_sessions.metrics.events import observe_ended_sessions
from wa_sessions.retries import FailureReason
from wa_sessions.statemachine.models import Message, MessageDirection, MessageType
from wa_sessions.statemachine.redis.analysis_store import RedisAnalysisStore
from wa_sessions.statemachine.redis.keys import SessionField
from wa_sessions.statemachine.service import SessionService
from wa_sessions.workers.analysis_job import analyse_ended_sessions, queue_ended

PHONE = "+15550001111"


class CountingAnalyser:
    """The offline analyser, counting its calls; ``during`` runs inside each call (a message
    arriving while the analysis runs)."""

    name = AnalyserName.OFFLINE
    budget_seconds = 1.0

    def __init__(self, during: list[object] | None = None) -> None:
        self.calls = 0
        self.during = during or []

    async def analyse(self, request: AnalysisRequest) -> Findings | AnalysisFailure:
        self.calls += 1
        if self.during:
            action = self.during.pop(0)
            assert callable(action)
            await asyncio.to_thread(action)
        return await OfflineAnalyser().analyse(request)


class FailingAnalyser:
    name = AnalyserName.OPENAI
    budget_seconds = 1.0

    async def analyse(self, request: AnalysisRequest) -> Findings | AnalysisFailure:
        return AnalysisFailure(FailureReason.TIMEOUT, "OpenAI request timed out", 3)


@pytest.fixture
def service(redis_client: redis.Redis, clock: FakeClock) -> SessionService:
    return SessionService(redis_client, clock=clock)


def analyses(service: SessionService, analyser: object) -> SessionAnalyses:
    store = RedisAnalysisStore(service.store.client, service.store.keys)
    return SessionAnalyses(service, store, analyser)  # type: ignore[arg-type]


def conversation(service: SessionService) -> str:
    service.add_message(PHONE, "Hola, necesito 5 unidades del Producto A")
    service.add_message(PHONE, "Recibimos su pedido", direction=MessageDirection.OUTBOUND)
    session = service.add_message(PHONE, "¿Cuándo llega el pedido?")
    return session.session_id


def test_an_analysis_is_stored_with_the_session_and_answered_back(
    service: SessionService,
) -> None:
    """The offline analysis is written into the session's hash and read back as stored."""
    sid = conversation(service)
    runner = analyses(service, OfflineAnalyser())
    analysis = asyncio.run(runner.analyse(sid))
    assert analysis.language == "es"
    assert analysis.intent is Intent.ORDER
    assert analysis.open_questions == ["¿Cuándo llega el pedido?"]
    assert analysis.analyser is AnalyserName.OFFLINE
    assert analysis.fingerprint.startswith("3:")
    raw = service.store.client.hget(
        service.store.keys.session(service.conversation(PHONE).key, sid), SessionField.ANALYSIS
    )
    assert raw is not None
    stored = runner.stored(sid)
    assert stored is not None
    assert stored.current
    assert stored.analysis == analysis


def test_an_unchanged_session_is_not_analysed_again(service: SessionService) -> None:
    """A second request with no new message answers the stored analysis without computing."""
    sid = conversation(service)
    analyser = CountingAnalyser()
    runner = analyses(service, analyser)
    first = asyncio.run(runner.analyse(sid))
    before = ANALYSES.labels("offline", "unchanged")._value.get()
    again = asyncio.run(runner.analyse(sid))
    assert analyser.calls == 1
    assert again == first
    assert ANALYSES.labels("offline", "unchanged")._value.get() == before + 1


def test_a_new_message_makes_the_stored_analysis_stale_and_the_next_one_reads_it(
    service: SessionService, clock: FakeClock
) -> None:
    """After a new customer message the stored analysis is not current; analysing again
    computes a new one that read the new message."""
    sid = conversation(service)
    analyser = CountingAnalyser()
    runner = analyses(service, analyser)
    asyncio.run(runner.analyse(sid))
    clock.advance(minutes=1)
    service.add_message(PHONE, "El producto llegó roto, quiero un reembolso")
    stored = runner.stored(sid)
    assert stored is not None
    assert not stored.current
    fresh = asyncio.run(runner.analyse(sid))
    assert analyser.calls == 2
    assert fresh.intent is Intent.COMPLAINT
    assert fresh.sentiment is Sentiment.NEGATIVE
    assert fresh.fingerprint.startswith("4:")


def test_an_analysis_overtaken_by_a_message_is_not_stored_and_is_recomputed(
    service: SessionService,
) -> None:
    """A message that arrives while the analysis runs makes its result stale: not stored;
    the next attempt reads the new message and is stored."""
    sid = conversation(service)
    analyser = CountingAnalyser(during=[lambda: service.add_message(PHONE, "Y dos del B")])
    runner = analyses(service, analyser)
    analysis = asyncio.run(runner.analyse(sid))
    assert analyser.calls == 2
    assert analysis.fingerprint.startswith("4:")
    stored = runner.stored(sid)
    assert stored is not None
    assert stored.current


def test_a_session_that_keeps_changing_is_refused_as_stale(service: SessionService) -> None:
    """When every attempt is overtaken, nothing is stored and the caller is told."""
    sid = conversation(service)
    more = [
        lambda: service.add_message(PHONE, "uno más"),
        lambda: service.add_message(PHONE, "y otro"),
    ]
    runner = analyses(service, CountingAnalyser(during=list(more)))
    with pytest.raises(AnalysisStale):
        asyncio.run(runner.analyse(sid))
    assert runner.stored(sid) is None


def test_a_failed_analysis_leaves_the_session_as_it_was_with_a_system_note(
    service: SessionService,
) -> None:
    """A failure stores nothing, keeps an earlier analysis and adds one system note, which
    does not make that analysis stale."""
    sid = conversation(service)
    asyncio.run(analyses(service, OfflineAnalyser()).analyse(sid))
    kept = analyses(service, OfflineAnalyser()).stored(sid)
    service.add_message(PHONE, "¿Y el precio?")
    with pytest.raises(AnalysisFailed, match="timeout"):
        asyncio.run(analyses(service, FailingAnalyser()).analyse(sid))
    after = analyses(service, OfflineAnalyser()).stored(sid)
    assert kept is not None
    assert after is not None
    assert after.analysis == kept.analysis
    history = service.store.messages(sid)
    notes = [m for m in history if m.message_type is MessageType.SYSTEM]
    assert len(notes) == 1
    assert notes[0].metadata["event"] == "analysis_failed"
    assert notes[0].metadata["reason"] == "timeout"


def test_a_system_note_does_not_change_what_is_analysed(service: SessionService) -> None:
    """The fingerprint leaves system notes out: a current analysis stays current after one."""
    sid = conversation(service)
    runner = analyses(service, OfflineAnalyser())
    asyncio.run(runner.analyse(sid))
    note = Message(
        id="sys-1",
        content="Reply failed",
        message_type=MessageType.SYSTEM,
        direction=MessageDirection.OUTBOUND,
        timestamp=service.clock(),
    )
    assert runner.store.note(sid, note, cap=100) == "noted"
    stored = runner.stored(sid)
    assert stored is not None
    assert stored.current
    assert service.store.messages(sid)[-1].id == "sys-1"


def test_an_ended_session_is_analysed_and_noted_like_an_active_one(
    service: SessionService,
) -> None:
    """Analyses and failure notes are written to ended sessions too, leaving them ended."""
    sid = conversation(service)
    service.complete_session(sid)
    with pytest.raises(AnalysisFailed):
        asyncio.run(analyses(service, FailingAnalyser()).analyse(sid))
    analysis = asyncio.run(analyses(service, OfflineAnalyser()).analyse(sid))
    session = service.get_session_by_id(sid)
    assert session is not None
    assert session.status == "completed"
    assert analysis.fingerprint.startswith("3:")


def test_unknown_sessions_and_missing_analyses_are_told_apart(service: SessionService) -> None:
    """An unknown id is SessionNotFound; a known session without an analysis is
    AnalysisNotFound."""
    sid = conversation(service)
    runner = analyses(service, OfflineAnalyser())
    with pytest.raises(AnalysisNotFound):
        runner.require_stored(sid)
    with pytest.raises(SessionNotFound):
        runner.require_stored("00000000-0000-4000-8000-000000000000")
    with pytest.raises(SessionNotFound):
        asyncio.run(runner.analyse("00000000-0000-4000-8000-000000000000"))


def test_the_scheduler_analyses_each_session_once_it_has_ended(service: SessionService) -> None:
    """The session-end metrics job queues the ended session (its id now travels in the
    event) and the analysis job stores its analysis; an active session is not analysed."""
    sid = conversation(service)
    service.add_message("+15550009999", "I want two apples")
    service.complete_session(sid)
    runner = analyses(service, OfflineAnalyser())
    assert observe_ended_sessions(service.store, on_ended=partial(queue_ended, runner)) == 1
    assert analyse_ended_sessions(runner) == 1
    stored = runner.stored(sid)
    assert stored is not None
    assert stored.current
    assert stored.analysis.language == "es"
    assert analyse_ended_sessions(runner) == 0


def test_a_scheduler_without_analyses_queues_nothing(service: SessionService) -> None:
    """ANALYSIS_ON_SESSION_END=false: ends are still counted, no analysis is queued."""
    sid = conversation(service)
    service.expire_session(sid)
    assert observe_ended_sessions(service.store) == 1
    assert analyses(service, OfflineAnalyser()).store.take_due(10) == []
