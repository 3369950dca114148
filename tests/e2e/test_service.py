"""The whole service as deployed: Procfile processes, signed webhooks, the session API and the
operators' script."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import redis

from tests.e2e.conftest import Service
from wa_sessions.demo import TwilioSimulator, inbound, new_message_sid
from wa_sessions.statemachine.redis.keys import Keys, SessionField

pytestmark = pytest.mark.e2e

BUSINESS = "+14155238886"


def phone(i: int) -> str:
    return f"+1415555{i:04d}"


def post_burst(
    sim: TwilioSimulator, phones: list[str], per_phone: int, tag: str
) -> dict[str, list[str]]:
    """Each phone posts its messages one after another (Twilio delivers a chat in order);
    phones post in parallel. Returns the bodies each phone had accepted, in order."""
    accepted: dict[str, list[str]] = {p: [] for p in phones}

    def run(p: str) -> None:
        for n in range(per_phone):
            body = f"{tag}-{p}-{n}"
            resp = sim.send(p, body)
            assert resp.status == 200, resp.body
            accepted[p].append(body)

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(run, phones))
    return accepted


def wait_all_applied(
    sim: TwilioSimulator, expected: dict[str, list[str]], timeout_seconds: float
) -> dict[str, list[str]]:
    deadline = time.monotonic() + timeout_seconds
    seen: dict[str, list[str]] = {}
    pending = dict(expected)
    while pending and time.monotonic() < deadline:
        for p, bodies in list(pending.items()):
            resp = sim.session(p)
            if resp.status == 200:
                # The service replies to each message; the customer's side is what was posted.
                history = [m["content"] for m in inbound(resp.json()["conversation_history"])]
                seen[p] = history
                if len(history) >= len(bodies):
                    del pending[p]
        time.sleep(0.1)
    assert not pending, f"{len(pending)} phones incomplete after {timeout_seconds}s"
    return seen


def test_messages_from_many_phones_are_applied_once_in_posting_order(
    service: Service, e2e_client: redis.Redis
) -> None:
    """20 phones x 25 messages posted as fast as possible: every history equals posting order."""
    sim = service.simulator()
    phones = [phone(i) for i in range(20)]
    accepted = post_burst(sim, phones, 25, "burst")
    seen = wait_all_applied(sim, accepted, 60)
    for p in phones:
        assert seen[p] == accepted[p]
    keys = Keys()
    assert all(e2e_client.llen(keys.conv_inbox(f"{p}|{BUSINESS}")) == 0 for p in phones)


def test_killed_worker_loses_nothing_and_its_phones_resume_within_seconds(
    service: Service, e2e_client: redis.Redis
) -> None:
    """SIGKILL the whole dramatiq group mid-load, restart it: all applied once, in order, and
    the phones it held leases for resume well inside Dramatiq's 60 s requeue delay."""
    sim = service.simulator()
    keys = Keys()
    phones = [phone(100 + i) for i in range(20)]
    accepted: dict[str, list[str]] = {p: [] for p in phones}

    def feed(p: str) -> None:
        for n in range(40):
            body = f"kill-{p}-{n}"
            if sim.send(p, body).status == 200:
                accepted[p].append(body)
            time.sleep(0.01)

    def applied() -> int:
        return sum(
            int(e2e_client.hget(keys.session(conv, sid), SessionField.MESSAGE_COUNT) or 0)
            for sid, conv in e2e_client.hgetall(keys.session_conv).items()
        )

    threads = [threading.Thread(target=feed, args=(p,)) for p in phones]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while applied() < 150 and time.monotonic() < deadline:
        time.sleep(0.01)
    service.kill("worker", signal.SIGKILL)
    held = [k for k in e2e_client.scan_iter(match="wa:c:*:lease")]
    applied_at_kill = applied()
    time.sleep(1)  # the process manager's restart delay
    service.start("worker")
    restarted = time.monotonic()
    for t in threads:
        t.join(timeout=60)
    total = sum(len(v) for v in accepted.values())
    assert applied_at_kill < total, "the kill came after all work was done; nothing was tested"
    seen = wait_all_applied(sim, accepted, 30)
    resumed_after = time.monotonic() - restarted
    for p in phones:
        assert seen[p] == accepted[p], p
    print(
        f"killed with {len(held)} leases held, {applied_at_kill}/{total} applied; "
        f"all applied {resumed_after:.2f}s after restart"
    )
    # Dramatiq alone would hold the killed worker's messages for its 60 s heartbeat timeout.
    assert resumed_after < 10, f"took {resumed_after:.1f}s to apply everything after restart"


def test_one_killed_worker_child_is_recovered_by_the_process_manager_restart(
    service: Service,
) -> None:
    """Killing one dramatiq child stops the group; a restart applies everything once."""
    sim = service.simulator()
    phones = [phone(200 + i) for i in range(5)]
    first = post_burst(sim, phones, 5, "child-a")
    wait_all_applied(sim, first, 30)
    parent = psutil.Process(service.processes["worker"].pid)
    children = [c for c in parent.children(recursive=True) if "dramatiq" in " ".join(c.cmdline())]
    assert children, "expected dramatiq worker children"
    children[-1].kill()
    second = post_burst(sim, phones, 5, "child-b")
    service.stop("worker")
    service.start("worker")
    seen = wait_all_applied(sim, {p: first[p] + second[p] for p in phones}, 30)
    for p in phones:
        assert seen[p] == first[p] + second[p]


def test_redelivered_message_sid_is_stored_once(service: Service) -> None:
    """The same MessageSid sent 10 times, 5 of them concurrently, is one message."""
    sim = service.simulator()
    p = phone(300)
    form = sim.inbound_form(p, "only once", message_sid=new_message_sid())
    statuses = [sim.post_form(form).status for _ in range(5)]
    with ThreadPoolExecutor(max_workers=5) as pool:
        statuses += list(pool.map(lambda _: sim.post_form(form).status, range(5)))
    assert statuses == [200] * 10
    sim.send(p, "marker")
    data = sim.wait_for_messages(p, 2, 20, inbound_only=True)
    contents = [m["content"] for m in inbound(data["conversation_history"])]
    assert contents == ["only once", "marker"]


def test_message_after_api_completion_opens_a_new_session(service: Service) -> None:
    """Complete through the API; the next message starts a fresh session."""
    sim = service.simulator()
    p = phone(400)
    sim.send(p, "I need 5 units of Product A")
    first = sim.wait_for_messages(p, 1, 20)["session"]["session_id"]
    done = sim.request("POST", f"/session/{first}/complete", admin=True)
    assert done.status == 200
    again = sim.request("POST", f"/session/{first}/complete", admin=True)
    assert again.status == 409
    sim.send(p, "one more")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        data = sim.session(p).json()
        if data["session"]["session_id"] != first:
            break
        time.sleep(0.05)
    assert data["session"]["session_id"] != first
    assert data["session"]["status"] == "active"
    assert [m["content"] for m in inbound(data["conversation_history"])] == ["one more"]


def test_enqueue_script_completes_and_expires_through_the_workers(service: Service) -> None:
    """The operators' script ends sessions by id and by phone, and refuses unknown ones."""
    sim = service.simulator()
    a, b = phone(500), phone(501)
    sim.send(a, "hello")
    sim.send(b, "hello")
    sid_a = sim.wait_for_messages(a, 1, 20)["session"]["session_id"]
    sim.wait_for_messages(b, 1, 20)

    done = service.run_enqueue("complete", sid_a, "--wait", "--timeout", "20")
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout
    assert sim.session(a).json()["session"]["status"] == "completed"

    expired = service.run_enqueue("expire", "--phone", b, "--wait", "--timeout", "20")
    assert expired.returncode == 0, expired.stderr
    assert sim.session(b).json()["session"]["status"] == "expired"

    unknown = service.run_enqueue("complete", "00000000-0000-4000-8000-000000000000")
    assert unknown.returncode == 1
    assert unknown.stderr.strip().count("\n") == 0
    assert "unknown session" in unknown.stderr
    twice = service.run_enqueue("complete", sid_a)
    assert twice.returncode == 1
    assert "already completed" in twice.stderr


def test_scheduler_expires_an_idle_session(service_factory: Callable[..., Service]) -> None:
    """With a 2-second timeout and a fast sweep, an idle session ends by itself."""
    service = service_factory(
        SESSION_TIMEOUT_HOURS=str(2 / 3600), EXPIRY_SWEEP_INTERVAL_SECONDS="0.5"
    ).start_all()
    sim = service.simulator()
    p = phone(600)
    sim.send(p, "hello")
    sim.wait_for_messages(p, 1, 20)
    deadline = time.monotonic() + 20
    status = "active"
    while time.monotonic() < deadline:
        status = sim.session(p).json()["session"]["status"]
        if status != "active":
            break
        time.sleep(0.2)
    assert status == "expired"
    active = sim.request("GET", "/sessions/active", admin=True).json()
    assert active["total_active"] == 0


def test_unhappy_paths_are_refused_with_json_errors_and_store_nothing(
    service: Service, e2e_client: redis.Redis
) -> None:
    """Forged, unsigned, malformed and oversized webhooks, and unauthenticated API calls."""
    sim = service.simulator()
    p = phone(700)
    form = sim.inbound_form(p, "forged")
    body, headers = sim.signed_request(form)
    forged = sim.request(
        "POST",
        "/twilio-webhook-opt",
        body=body,
        headers={**headers, "X-Twilio-Signature": "AAAA" + headers["X-Twilio-Signature"][4:]},
    )
    assert forged.status == 403
    assert forged.json()["error"]["code"] == "invalid_signature"
    unsigned = sim.request(
        "POST",
        "/twilio-webhook-opt",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert unsigned.status == 403
    bad = sim.inbound_form(p, "bad")
    bad["NumMedia"] = "many"
    malformed = sim.post_form(bad)
    assert malformed.status == 400
    assert malformed.json()["error"]["code"] == "bad_request"
    huge = sim.post_form(sim.inbound_form(p, "x" * 200_000))
    assert huge.status == 413
    for path in ("/sessions/active", f"/session/{p}"):
        assert sim.request("GET", path).status == 401
    assert e2e_client.keys(f"*{p}*") == []
