"""Duplicates and replays against the running service: one ``MessageSid`` raced in from many
connections at once is applied once, and a captured signed request replayed later (after it
was applied, after its session ended) is not applied again (tests/e2e covers a plain
redelivery)."""

from __future__ import annotations

import threading

import pytest
import redis

from tests.e2e.conftest import Service
from tests.reliability.harness import (
    KEYS,
    Poster,
    conv_key,
    metric_value,
    phone,
    record,
    scrape,
    verify,
    wait_applied,
)
from tools.demo import new_message_sid

pytestmark = pytest.mark.e2e

CONNECTIONS = 20
ROUNDS = 5


def test_same_message_sid_from_twenty_connections_at_once_is_applied_once(
    service: Service, e2e_client: redis.Redis
) -> None:
    """Five rounds: 20 threads, each on its own connection, released together by a barrier,
    post the same signed request. Every one is answered 200; each message is applied once and
    the phone's history keeps the rounds in order."""
    sim = service.simulator()
    customer = phone(400)
    posters = [Poster(service) for _ in range(CONNECTIONS)]
    bodies: list[str] = []
    statuses: list[int] = []
    before = metric_value(
        scrape(service), "wa_sessions_webhook_requests_total", outcome="duplicate"
    )
    try:
        for n in range(ROUNDS):
            body = f"race-{n}"
            form = sim.inbound_form(customer, body, message_sid=new_message_sid())
            answers = _race(posters, form)
            statuses += answers
            bodies.append(body)
    finally:
        for poster in posters:
            poster.close()
    wait_applied(e2e_client, {customer: bodies}, 30)
    verdict = verify(e2e_client, {customer: bodies})
    duplicates = (
        metric_value(scrape(service), "wa_sessions_webhook_requests_total", outcome="duplicate")
        - before
    )
    record(
        "duplicate_concurrent",
        rounds=ROUNDS,
        connections=CONNECTIONS,
        requests=len(statuses),
        statuses=sorted(set(statuses)),
        applied=verdict.applied,
        duplicates_counted=duplicates,
        lost=verdict.lost,
        duplicated=verdict.duplicated,
        reordered=verdict.reordered,
    )
    assert statuses == [200] * (ROUNDS * CONNECTIONS)
    assert verdict.clean, verdict
    assert verdict.applied == ROUNDS
    assert duplicates == ROUNDS * (CONNECTIONS - 1)


def _race(posters: list[Poster], form: dict[str, str]) -> list[int]:
    """Every poster sends ``form`` at the same moment; their statuses."""
    # Connections opened first, so the barrier releases requests, not handshakes.
    for poster in posters:
        poster.raw("GET", "/healthz", None, {})
    barrier = threading.Barrier(len(posters))
    answers: list[int] = []
    lock = threading.Lock()

    def race(poster: Poster) -> None:
        barrier.wait(timeout=30)
        status = poster.post(form).status
        with lock:
            answers.append(status)

    threads = [threading.Thread(target=race, args=(p,)) for p in posters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def test_a_captured_request_replayed_later_is_never_applied_again(
    service: Service, e2e_client: redis.Redis
) -> None:
    """An attacker (or a confused proxy) keeps a signed request and sends it again: after it
    was applied, and again after the session was completed, when a new message would open a
    new session. It is answered 200 (the signature is valid) and changes nothing."""
    sim = service.simulator()
    poster = Poster(service)
    duplicates = metric_value(
        scrape(service), "wa_sessions_webhook_requests_total", outcome="duplicate"
    )
    customer = phone(401)
    conv = conv_key(customer)
    captured = sim.inbound_form(customer, "I need 5 units of Product A")
    body, headers = poster.signed(captured)
    try:
        assert poster.raw("POST", "/twilio-webhook-opt", body, headers).status == 200
        wait_applied(e2e_client, {customer: [captured["Body"]]}, 30)
        first = sim.session(customer).json()
        session_id = first["session"]["session_id"]

        replays = [poster.raw("POST", "/twilio-webhook-opt", body, headers) for _ in range(3)]
        assert sim.request("POST", f"/session/{session_id}/complete", admin=True).status == 200
        replays += [poster.raw("POST", "/twilio-webhook-opt", body, headers) for _ in range(3)]
    finally:
        poster.close()
    assert [r.status for r in replays] == [200] * 6

    # Nothing queued, no new session: the completed one is still the phone's latest.
    wait_applied(e2e_client, {customer: [captured["Body"]]}, 30)
    assert e2e_client.zcard(KEYS.conv_sessions(conv)) == 1
    after = sim.session(customer).json()
    assert after["session"]["session_id"] == session_id
    assert after["session"]["status"] == "completed"
    assert after["session"]["message_count"] == first["session"]["message_count"]
    assert after["session"]["order_details"] == first["session"]["order_details"]
    counted = metric_value(
        scrape(service), "wa_sessions_webhook_requests_total", outcome="duplicate"
    )
    assert counted - duplicates == len(replays)
    record("replay_after_apply_and_completion", replays=len(replays), new_sessions=0, applied=0)
