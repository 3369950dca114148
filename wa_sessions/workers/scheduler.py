"""The scheduler process: the idle-expiry sweep, the inbox re-drive, the session-end metrics
job (which also queues each ended session's analysis), the analysis of ended sessions and the
nudge before expiry (``workers/nudges.py``), on APScheduler intervals.

All jobs are safe to run from several schedulers at once (Lua passes; each session-end event is
popped by one scheduler only); a Redis outage makes a run fail and the next run (after redis-py
reconnects) carries on.
"""

from __future__ import annotations

import logging
import signal
from datetime import UTC, datetime
from functools import partial

from apscheduler.schedulers.background import BackgroundScheduler

from wa_sessions import bootstrap
from wa_sessions.analysis.service import SessionAnalyses
from wa_sessions.bootstrap_externals import build_analyses
from wa_sessions.metrics.events import observe_ended_sessions
from wa_sessions.workers import handlers
from wa_sessions.workers.analysis_job import analyse_ended_sessions, queue_ended
from wa_sessions.workers.nudges import NudgePolicy, queue_due_nudges

log = logging.getLogger(__name__)


def build_scheduler(
    deps: handlers.WorkerDeps,
    *,
    sweep_seconds: float,
    redrive_seconds: float,
    metrics_seconds: float,
    analyses: SessionAnalyses | None = None,
    nudges: NudgePolicy | None = None,
    nudge_seconds: float = 30.0,
) -> BackgroundScheduler:
    """The jobs over ``deps``; with ``analyses``, every ended session is analysed too; with
    ``nudges`` (and a nonzero lead), due sessions are nudged every ``nudge_seconds``."""
    scheduler = BackgroundScheduler(timezone="UTC")
    # Run each job at once on start, then on its interval.
    common = {
        "max_instances": 1,
        "coalesce": True,
        "misfire_grace_time": None,
        "next_run_time": datetime.now(UTC),
    }
    scheduler.add_job(
        handlers.expire_idle_sessions,
        "interval",
        args=[deps],
        seconds=sweep_seconds,
        id="expire_idle_sessions",
        **common,
    )
    scheduler.add_job(
        handlers.redrive,
        "interval",
        args=[deps],
        seconds=redrive_seconds,
        id="redrive",
        **common,
    )
    scheduler.add_job(
        observe_ended_sessions,
        "interval",
        args=[deps.service.store],
        kwargs={"on_ended": partial(queue_ended, analyses) if analyses is not None else None},
        seconds=metrics_seconds,
        id="observe_ended_sessions",
        **common,
    )
    if analyses is not None:
        scheduler.add_job(
            analyse_ended_sessions,
            "interval",
            args=[analyses],
            seconds=metrics_seconds,
            id="analyse_ended_sessions",
            **common,
        )
    if nudges is not None and nudges.before_minutes > 0:
        scheduler.add_job(
            queue_due_nudges,
            "interval",
            args=[deps, nudges],
            seconds=nudge_seconds,
            id="queue_due_nudges",
            **common,
        )
    return scheduler


#: What stops the scheduler (a process manager's SIGTERM, Ctrl-C).
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
    settings = bootstrap.load_serving_settings()
    # Blocked before any thread starts, so every thread inherits the mask and a stop signal
    # waits for ``sigwait`` below. A handler would run in the main thread wherever it is, even
    # inside the job executor's lock while it submits a run, where shutting down deadlocks.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    worker = bootstrap.build_worker(settings)
    scheduler = build_scheduler(
        worker.deps,
        sweep_seconds=settings.expiry_sweep_interval_seconds,
        redrive_seconds=settings.redrive_interval_seconds,
        metrics_seconds=settings.metrics_events_interval_seconds,
        analyses=(
            build_analyses(settings, worker.deps.service)
            if settings.analysis_on_session_end
            else None
        ),
        nudges=bootstrap.build_nudge_policy(settings),
        nudge_seconds=settings.nudge_interval_seconds,
    )
    scheduler.start()
    log.info(
        "scheduler started: sweep every %ss, re-drive every %ss, session-end metrics every %ss, "
        "nudges every %ss (%s min before expiry; 0: off)",
        settings.expiry_sweep_interval_seconds,
        settings.redrive_interval_seconds,
        settings.metrics_events_interval_seconds,
        settings.nudge_interval_seconds,
        settings.nudge_before_expiry_minutes,
    )
    signal.sigwait(STOP_SIGNALS)
    # Runs in progress finish before the process exits (their threads are joined).
    scheduler.shutdown(wait=False)


if __name__ == "__main__":
    main()
