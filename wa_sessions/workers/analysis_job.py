"""The scheduler's analysis of ended sessions: the session-end metrics job queues each ended
session's id (``analysis:due``), and this job takes a batch and analyses it, a few at a time on
an event loop of its own (each run builds its loop and closes the analyser's client after).

Out of the webhook's and the drain's way: an analysis (an OpenAI call of up to its retry
budget) holds neither a request nor a phone's lease. A session queued and not yet analysed
when the scheduler stops waits in Redis for the next run; an id popped by a run that crashed
is lost (the session can still be analysed on demand).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from wa_sessions.analysis.service import SessionAnalyses
from wa_sessions.errors import WaSessionsError
from wa_sessions.statemachine.steps import EndedEvent

log = logging.getLogger(__name__)

#: Sessions taken per run, and analysed at once within it.
BATCH = 50
CONCURRENCY = 8


def queue_ended(analyses: SessionAnalyses, events: Sequence[EndedEvent]) -> None:
    """Queues the analysis of every ended session the events name (``on_ended``)."""
    analyses.store.queue_due([e.session_id for e in events if e.session_id])


def analyse_ended_sessions(
    analyses: SessionAnalyses,
    *,
    batch: int = BATCH,
    concurrency: int = CONCURRENCY,
) -> int:
    """Analyses up to ``batch`` queued sessions; returns how many were taken."""
    session_ids = analyses.store.take_due(batch)
    if session_ids:
        asyncio.run(_analyse_all(analyses, session_ids, concurrency))
    return len(session_ids)


async def _analyse_all(analyses: SessionAnalyses, session_ids: list[str], concurrency: int) -> None:
    slots = asyncio.Semaphore(concurrency)

    async def one(session_id: str) -> None:
        async with slots:
            try:
                await analyses.analyse(session_id)
            except WaSessionsError as exc:
                # Failed (a note says why), stale, purged: counted; the next end or a person
                # asking analyses it again.
                log.info("session analysis not stored: %s", exc.code)

    try:
        await asyncio.gather(*(one(sid) for sid in session_ids))
    finally:
        close = getattr(analyses.analyser, "close", None)
        if close is not None:
            await close()
