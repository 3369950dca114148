"""Worker crashes under sustained load, again and again: nothing lost, duplicated or reordered,
and every phone a dead worker held resumes in seconds (tests/e2e covers one kill of the whole
group and of one child; this repeats the kill and times each recovery)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
import redis

from tests.e2e.conftest import Service
from tests.reliability.harness import (
    Load,
    applied_counts,
    deadline_poll,
    phone,
    record,
    verify,
    wait_applied,
    waiting,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KILLS = 3
#: A process manager's restart delay (honcho and systemd wait about this long).
RESTART_DELAY_SECONDS = 1.0
#: Production's lease and re-drive interval, so resume times are the ones a deployment sees.
PRODUCTION_TIMING = {"LEASE_SECONDS": "5", "REDRIVE_INTERVAL_SECONDS": "1"}
#: Lease (5 s) + re-drive pass (1 s) + a worker's start-up on a busy 2-core machine.
RESUME_BOUND_SECONDS = 15.0


def test_repeated_worker_kills_under_load_lose_nothing_and_resume_in_seconds(
    service_factory: Callable[..., Service], e2e_client: redis.Redis
) -> None:
    """SIGKILL the dramatiq group three times while 20 phones post; after each restart every
    phone left waiting (by the dead group, or posting while it was down) applies again within
    the bound; in the end every acknowledged message is applied once, in posting order."""
    service = service_factory(**PRODUCTION_TIMING).start_all()
    phones = [phone(i) for i in range(20)]
    load = Load(service, phones, rate_per_second=150, tag="kill").start()
    resumes: list[float] = []
    stalls: list[float] = []
    held_leases: list[int] = []
    waiting_at_restart: list[int] = []
    try:
        for _ in range(KILLS):
            # Let the restarted group get busy before killing it again.
            time.sleep(4)
            killed_at = time.monotonic()
            service.kill("worker", signal.SIGKILL)
            held_leases.append(len(list(e2e_client.scan_iter(match="wa:c:*:lease"))))
            time.sleep(RESTART_DELAY_SECONDS)
            # Phones the dead group left unfinished, and those that posted while it was down.
            stuck = waiting(e2e_client, phones)
            before = applied_counts(e2e_client, stuck)
            waiting_at_restart.append(len(stuck))
            service.start("worker")
            restarted_at = time.monotonic()

            def resumed(stuck: set[str] = stuck, before: dict[str, int] = before) -> bool:
                now = applied_counts(e2e_client, stuck)
                return all(now[p] > before[p] for p in stuck)

            deadline_poll(resumed, 60)
            resumes.append(time.monotonic() - restarted_at)
            stalls.append(time.monotonic() - killed_at)
        time.sleep(2)
    finally:
        load.stop()
    accepted = load.accepted()
    drained = wait_applied(e2e_client, accepted, 60)
    verdict = verify(e2e_client, accepted)
    record(
        "worker_kill_repeated",
        kills=KILLS,
        phones=len(phones),
        accepted=verdict.accepted,
        load_msgs_per_s=round(load.accepted_rate(), 1),
        statuses=dict(load.statuses),
        leases_held_at_kill=held_leases,
        phones_waiting_at_restart=waiting_at_restart,
        resume_after_restart_s=[round(r, 2) for r in resumes],
        stall_from_kill_s=[round(s, 2) for s in stalls],
        drain_after_load_s=round(drained, 2),
        lost=verdict.lost,
        duplicated=verdict.duplicated,
        reordered=verdict.reordered,
    )
    assert min(waiting_at_restart) >= len(phones) // 2, "phones did not wait: nothing tested"
    assert verdict.clean, verdict
    assert verdict.accepted > 1000
    # Dramatiq alone would hold a dead worker's messages for its 60 s heartbeat timeout.
    assert max(resumes) < RESUME_BOUND_SECONDS, resumes
