"""Redis goes away under load and comes back: the webhook refuses with 503 what it cannot
store, the workers and the scheduler reconnect by themselves, and everything acknowledged
before, during and after the outage is applied once and in order. A restart with AOF on keeps
sessions and inboxes."""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from collections.abc import Callable

import pytest
import redis
from twilio.request_validator import RequestValidator

from tests.e2e.conftest import Service
from tests.reliability.harness import (
    FUZZ_ADMIN_TOKEN,
    FUZZ_BASE_URL,
    FUZZ_TWILIO_TOKEN,
    KEYS,
    Load,
    Web,
    address_forms,
    applied_counts,
    conv_key,
    deadline_poll,
    leaks,
    log_files,
    metric_value,
    phone,
    record,
    scrape,
    verify,
    wait_applied,
)
from wa_sessions.embedded_redis import EmbeddedRedis

OUTAGE_SECONDS = 5.0


def _crash(server: EmbeddedRedis) -> None:
    """SIGKILL: no shutdown, no final fsync (what a host or OOM kill does)."""
    assert server.process is not None
    server.process.kill()
    server.process.wait(timeout=10)
    server.process = None


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "appendfsync"),
    [("stop", "everysec"), ("crash", "everysec"), ("crash", "always")],
    ids=["graceful-stop-everysec", "sigkill-everysec", "sigkill-always"],
)
def test_redis_outage_under_load_loses_nothing_acknowledged(
    service_factory: Callable[..., Service],
    e2e_redis: EmbeddedRedis,
    e2e_client: redis.Redis,
    how: str,
    appendfsync: str,
) -> None:
    """20 phones post throughout a 5 s outage. While Redis is down the webhook answers 503
    with a JSON error (the load retries those, as Twilio's retry and fallback would); after
    Redis returns, the same web, worker and scheduler processes carry on, and every message
    answered 200 is applied once, in posting order; the scheduler's jobs run again."""
    service = service_factory(METRICS_EVENTS_INTERVAL_SECONDS="1").start_all()
    e2e_client.config_set("appendfsync", appendfsync)
    pids = {name: proc.pid for name, proc in service.processes.items()}
    phones = [phone(100 + i) for i in range(20)]
    load = Load(service, phones, rate_per_second=100, tag=f"outage-{how}").start()
    try:
        deadline_poll(lambda: load.accepted_total() > 200, 30)
        accepted_before = load.accepted()
        applied_before = applied_counts(e2e_client, phones)
        went_down = time.monotonic()
        if how == "stop":
            e2e_redis.stop()
        else:
            _crash(e2e_redis)
        refused_before = load.statuses[503]
        deadline_poll(lambda: load.statuses[503] > refused_before, 30)
        time.sleep(OUTAGE_SECONDS)
        e2e_redis.start()
        came_back = time.monotonic()
        accepted_at_return = load.accepted_total()
        e2e_client.close()  # the test's own client: a fresh connection to the new server
        applied_at_return = sum(applied_counts(e2e_client, phones).values())
        # The webhook takes messages again, the workers apply them, and the backlog clears.
        deadline_poll(lambda: load.accepted_total() > accepted_at_return, 30, 0.01)
        webhook_back = time.monotonic() - came_back
        deadline_poll(
            lambda: sum(applied_counts(e2e_client, phones).values()) > applied_at_return, 30
        )
        workers_back = time.monotonic() - came_back

        def backlog_applied() -> bool:
            counts = applied_counts(e2e_client, phones)
            return all(counts[p] >= len(accepted_before[p]) for p in phones) and sum(
                counts.values()
            ) > sum(applied_before.values())

        deadline_poll(backlog_applied, 60)
        backlog_cleared = time.monotonic() - came_back
        time.sleep(3)
    finally:
        load.stop()
    accepted = load.accepted()
    wait_applied(e2e_client, accepted, 60)
    verdict = verify(e2e_client, accepted)
    refusals = [json.loads(a.body) for a in load.refusals]
    # The scheduler reconnected: a session ended now reaches /metrics through its events job.
    sim = service.simulator()
    ended = sim.session(phones[0]).json()["session"]["session_id"]
    assert sim.request("POST", f"/session/{ended}/complete", admin=True).status == 200
    deadline_poll(
        lambda: (
            metric_value(scrape(service), "wa_sessions_sessions_ended_total", outcome="completed")
            >= 1
        ),
        30,
    )
    record(
        f"redis_outage_{how}_{appendfsync}",
        appendfsync=appendfsync,
        outage_s=round(came_back - went_down, 2),
        phones=len(phones),
        accepted=verdict.accepted,
        load_msgs_per_s=round(load.accepted_rate(), 1),
        statuses=dict(load.statuses),
        refusal_answered_within_s=round(max(load.refusal_seconds), 2),
        webhook_accepting_after_s=round(webhook_back, 2),
        workers_applying_after_s=round(workers_back, 2),
        backlog_applied_after_s=round(backlog_cleared, 2),
        lost=verdict.lost,
        duplicated=verdict.duplicated,
        reordered=verdict.reordered,
        unacknowledged_applied=verdict.unacknowledged_applied,
    )
    assert verdict.clean, verdict
    assert load.statuses[503] > 0
    assert set(load.statuses) <= {200, 503}, load.statuses
    assert {r["error"]["code"] for r in refusals} == {"unavailable"}
    # Well inside the 15 s Twilio waits, so its retry or fallback URL takes over.
    assert max(load.refusal_seconds) < 5
    assert all(a.headers["content-type"] == "application/json" for a in load.refusals)
    # Nobody restarted anything but Redis.
    assert {name: proc.pid for name, proc in service.processes.items()} == pids
    assert all(proc.poll() is None for proc in service.processes.values())
    # The drains that failed mid-outage were logged by Dramatiq without their phone number.
    texts = log_files(service)
    assert not leaks(texts, [form for p in phones for form in address_forms(p)])


def _snapshot(client: redis.Redis) -> dict[str, object]:
    """Every session, index, inbox, dedupe, analytics and outbox key with its value (wake-up
    flags, leases and the per-phone rate's short-lived state are left out: they are transient by
    design, and a rate key can expire between the scan and its read)."""
    out: dict[str, object] = {}
    for key in client.scan_iter(match="wa:*"):
        if key.endswith((":wake", ":lease", ":rate")):
            continue
        kind = client.type(key)
        if kind == "none":
            continue  # expired since the scan
        if kind == "stream":
            out[key] = client.xrange(key)
        elif kind == "string":
            out[key] = client.get(key)
        elif kind == "hash":
            out[key] = client.hgetall(key)
        elif kind == "list":
            out[key] = client.lrange(key, 0, -1)
        elif kind == "zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            out[key] = sorted(client.smembers(key))
        else:
            out[key] = (kind, "unexpected")
    return out


@pytest.mark.e2e
def test_redis_restart_with_aof_keeps_sessions_and_inboxes(
    service_factory: Callable[..., Service],
    e2e_redis: EmbeddedRedis,
    e2e_client: redis.Redis,
) -> None:
    """Applied sessions (one completed), and messages still waiting in inboxes because no
    worker runs, survive a Redis restart byte for byte; a worker started afterwards applies
    the waiting messages once, in order."""
    service = service_factory()
    service.start("web")
    service.wait_healthy()
    service.start("worker")
    sim = service.simulator()
    phones = [phone(200 + i) for i in range(5)]
    for p in phones:
        for n in range(3):
            assert sim.send(p, f"aof-{p}-{n}").status == 200
    first = {p: [f"aof-{p}-{n}" for n in range(3)] for p in phones}
    wait_applied(e2e_client, first, 30)
    done = sim.session(phones[0]).json()["session"]["session_id"]
    assert sim.request("POST", f"/session/{done}/complete", admin=True).status == 200
    service.stop("worker")
    for p in phones:
        for n in range(3, 6):
            assert sim.send(p, f"aof-{p}-{n}").status == 200
    assert [e2e_client.llen(KEYS.conv_inbox(conv_key(p))) for p in phones] == [3] * 5
    before = _snapshot(e2e_client)

    e2e_redis.stop()
    e2e_redis.start()
    e2e_client.close()
    after = _snapshot(e2e_client)
    assert after == before

    service.start("worker")
    service.start("scheduler")
    everything = {p: [f"aof-{p}-{n}" for n in range(6)] for p in phones}
    drained = wait_applied(e2e_client, everything, 30)
    verdict = verify(e2e_client, everything)
    assert verdict.clean, verdict
    assert sim.session(phones[0]).json()["session"]["session_id"] != done
    record(
        "redis_restart_aof",
        keys_compared=len(before),
        waiting_entries=15,
        applied_after_restart_s=round(drained, 2),
        lost=verdict.lost,
        duplicated=verdict.duplicated,
        reordered=verdict.reordered,
    )


def test_redis_at_maxmemory_is_a_503_and_stores_nothing(web: Web) -> None:
    """Under ``maxmemory-policy noeviction`` a full Redis refuses writes: the webhook answers
    503 ``unavailable`` (Twilio retries or falls back) rather than a 500, the operators' API
    likewise, and nothing is half-stored."""
    sid = web.service.add_message("+14155597300", "before").session_id
    before = _snapshot(web.redis)
    form = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": "whatsapp:+14155597300",
        "To": "whatsapp:+14155238886",
        "Body": "while full",
    }
    signature = RequestValidator(FUZZ_TWILIO_TOKEN).compute_signature(
        FUZZ_BASE_URL + "/twilio-webhook-opt", form
    )
    admin = {"Authorization": f"Bearer {FUZZ_ADMIN_TOKEN}"}
    web.redis.config_set("maxmemory-policy", "noeviction")
    web.redis.config_set("maxmemory", 1)
    try:
        hook = web.client.post(
            "/twilio-webhook-opt",
            content=urllib.parse.urlencode(form),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        )
        complete = web.client.post(f"/session/{sid}/complete", headers=admin)
        listing = web.client.get("/sessions", headers=admin)
    finally:
        web.redis.config_set("maxmemory", 0)
    assert hook.status_code == 503, hook.text
    assert hook.json()["error"]["code"] == "unavailable"
    assert complete.status_code == 503, complete.text
    assert listing.status_code == 200  # reads still work
    assert _snapshot(web.redis) == before
