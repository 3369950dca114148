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

from tests.e2e.conftest import AUTH_TOKEN, Service, _wait_gone
from tests.fake_apis import Reply, fake_twilio, twilio_message
from tests.reliability.harness import metric_value
from tests.support import poll
from tools.demo import TwilioSimulator, inbound, new_message_sid
from wa_sessions.statemachine.redis.keys import Keys, SessionField

pytestmark = pytest.mark.e2e

BUSINESS = "+14155238886"
ACCOUNT = "AC" + "0" * 32


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


def redrives(sim: TwilioSimulator) -> float:
    """The scheduler's re-drive count, from the host's /metrics."""
    resp = sim.request("GET", "/metrics")
    assert resp.status == 200
    return metric_value(resp.body.decode(), "wa_sessions_redrives_total")


def test_killed_worker_loses_nothing_and_its_phones_resume_within_seconds(
    service_factory: Callable[..., Service], e2e_client: redis.Redis
) -> None:
    """SIGKILL the whole dramatiq group mid-load, no new message after it, restart it: the
    phones it held leases on with entries waiting are re-driven by the scheduler, and every
    message is applied once, in order, well inside Dramatiq's 60 s requeue delay."""
    with fake_twilio(ACCOUNT, AUTH_TOKEN) as twilio_api:
        # Replies take a while, as Twilio's do: a drain holds its phone's lease through the
        # send while the phone's next messages wait, so the kill finds phones in that state.
        twilio_api.set_default(lambda r: Reply(201, twilio_message(r.form()), delay=0.3))
        service = service_factory(
            TWILIO_ACCOUNT_SID=ACCOUNT, TWILIO_API_BASE_URL=twilio_api.base_url
        ).start_all()
        _kill_worker_mid_load_and_resume(service, e2e_client)


def _kill_worker_mid_load_and_resume(service: Service, e2e_client: redis.Redis) -> None:
    sim = service.simulator()
    keys = Keys()
    phones = [phone(100 + i) for i in range(20)]
    accepted: dict[str, list[str]] = {p: [] for p in phones}
    stop = threading.Event()

    def feed(p: str) -> None:
        for n in range(40):
            if stop.is_set():
                return
            body = f"kill-{p}-{n}"
            if sim.send(p, body).status == 200:
                accepted[p].append(body)
            time.sleep(0.01)

    def applied() -> int:
        return sum(
            int(e2e_client.hget(keys.session(conv, sid), SessionField.MESSAGE_COUNT) or 0)
            for sid, conv in e2e_client.hgetall(keys.session_conv).items()
        )

    def waiting(p: str) -> int:
        conv = f"{p}|{BUSINESS}"
        return int(e2e_client.llen(keys.conv_inbox(conv))) + int(
            e2e_client.llen(keys.conv_effects(conv))
        )

    threads = [threading.Thread(target=feed, args=(p,)) for p in phones]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    held: list[str] = []
    # Kill at a moment when a drain holds a phone that still has entries waiting: only the
    # re-drive pass (or Dramatiq's requeue, 60 s later) can wake that phone again.
    while time.monotonic() < deadline:
        if applied() >= 100:
            held = [p for p in phones if e2e_client.exists(keys.conv_lease(f"{p}|{BUSINESS}"))]
            if any(waiting(p) for p in held):
                break
        time.sleep(0.005)
    stop.set()
    service.kill("worker", signal.SIGKILL)
    for t in threads:
        t.join(timeout=60)
    stranded = [p for p in phones if e2e_client.exists(keys.conv_lease(f"{p}|{BUSINESS}"))]
    stranded = [p for p in stranded if waiting(p)]
    assert stranded, "no drain held a phone with entries waiting at the kill; nothing was tested"
    redrives_at_kill = redrives(sim)
    service.start("worker")
    restarted = time.monotonic()
    seen = wait_all_applied(sim, accepted, 45)
    resumed_after = time.monotonic() - restarted
    for p in phones:
        assert seen[p] == accepted[p], p
    # The last batches' replies are still being sent (and committed) after their messages show.
    poll(lambda: all(waiting(p) == 0 for p in phones), timeout=30)
    assert redrives(sim) > redrives_at_kill, "the stranded phones were not re-driven"
    # Dramatiq alone would hold the killed worker's messages for its 60 s heartbeat timeout.
    assert resumed_after < 45, f"took {resumed_after:.1f}s to apply everything after restart"


def test_a_killed_worker_child_stops_the_group_and_a_restart_applies_everything_once(
    service: Service,
) -> None:
    """Killing one dramatiq child makes the parent stop the other children and exit (NOTES:
    the process manager must restart it); messages accepted meanwhile wait, and the restarted
    group applies them once, in order."""
    sim = service.simulator()
    phones = [phone(200 + i) for i in range(5)]
    first = post_burst(sim, phones, 5, "child-a")
    wait_all_applied(sim, first, 30)
    worker = service.processes["worker"]
    root = psutil.Process(worker.pid)
    group = [root, *root.children(recursive=True)]
    # The Procfile line runs under /bin/sh, which may or may not exec dramatiq.
    dramatiq = [p for p in group if p.name() == "dramatiq"]
    parent = next(p for p in dramatiq if p.ppid() not in {d.pid for d in dramatiq})
    children = parent.children()
    assert len(children) == 2, "expected the Procfile's 2 worker processes"
    children[-1].kill()
    worker.wait(timeout=60)  # the whole group stops by itself, nothing else stops it
    assert _wait_gone(group, 30) == []
    second = post_burst(sim, phones, 5, "child-b")
    service.processes.pop("worker")
    service.start("worker")  # the process manager's restart
    seen = wait_all_applied(sim, {p: first[p] + second[p] for p in phones}, 60)
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
