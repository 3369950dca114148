"""The scheduler process: the idle-expiry sweep and the inbox re-drive, on APScheduler intervals.

Both jobs are single Lua passes and safe to run from several schedulers at once; a Redis outage
makes a run fail and the next run (after redis-py reconnects) carries on.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.blocking import BlockingScheduler

from wa_sessions.workers import handlers
from wa_sessions.workers.broker import current_settings, setup_broker

log = logging.getLogger(__name__)


def build_scheduler(
    deps: handlers.WorkerDeps, *, sweep_seconds: float, redrive_seconds: float
) -> BlockingScheduler:
    scheduler = BlockingScheduler(timezone="UTC")
    # Run both at once on start, then on their intervals.
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
    return scheduler


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
    setup_broker()
    settings = current_settings()
    from wa_sessions.workers import actors  # after setup_broker: actors bind to its broker

    deps = actors.deps()
    scheduler = build_scheduler(
        deps,
        sweep_seconds=settings.expiry_sweep_interval_seconds,
        redrive_seconds=settings.redrive_interval_seconds,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    log.info(
        "scheduler started: sweep every %ss, re-drive every %ss",
        settings.expiry_sweep_interval_seconds,
        settings.redrive_interval_seconds,
    )
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        scheduler.start()


if __name__ == "__main__":
    main()
