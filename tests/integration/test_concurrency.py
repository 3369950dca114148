"""Several OS processes hammer the same phones; the Lua scripts must keep every session consistent.

Each process builds its own SessionService (as web and worker processes do) and mixes messages
with completions and expiries of whatever session is active. Afterwards every message is stored
exactly once, in each sender's order, and no phone ever has two active sessions.

A shared Redis counter brackets every operation (taken just before and just after it), which
orders operations of different processes without trusting their clocks: an operation whose
"before" is greater than another's "after" certainly started after the other had finished.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
from collections import Counter
from dataclasses import dataclass

import redis

from wa_sessions.errors import InvalidTransition, SessionNotFound
from wa_sessions.statemachine import MessageDirection, SessionService, SessionStatus
from wa_sessions.statemachine.redis.keys import Keys

BUSINESS = "+14155238886"
PHONES = ["+14155550701", "+14155550702", "+14155550703"]
PROCESSES = 4
OPERATIONS_PER_PROCESS = 200
DEADLINE_SECONDS = 30.0
SEQUENCE_KEY = "test:concurrency:sequence"
KEYS = Keys()


@dataclass(frozen=True)
class Sent:
    """A message a process appended, the session it was told it joined, and its bracket."""

    worker: int
    index: int
    phone: str
    content: str
    session_id: str
    before: int
    after: int


@dataclass(frozen=True)
class Ended:
    """A completion or expiry a process performed successfully, and its bracket."""

    worker: int
    phone: str
    session_id: str
    status: str
    before: int
    after: int


def hammer(redis_url: str, worker: int, seed: int, start: object, results: object) -> None:
    """One process's share of the load; runs in a spawned child, reports through ``results``."""
    service = SessionService(
        redis.Redis.from_url(redis_url, decode_responses=True), business_number=BUSINESS
    )
    counter = redis.Redis.from_url(redis_url, decode_responses=True)
    rng = random.Random(seed)
    sent: list[Sent] = []
    ended: list[Ended] = []
    start.wait(timeout=DEADLINE_SECONDS)  # type: ignore[attr-defined]
    for index in range(OPERATIONS_PER_PROCESS):
        phone = rng.choice(PHONES)
        if rng.random() < 0.8:
            content = f"worker {worker} message {index}"
            direction = rng.choice(list(MessageDirection))
            before = int(counter.incr(SEQUENCE_KEY))
            session = service.add_message(phone, content, direction=direction)
            after = int(counter.incr(SEQUENCE_KEY))
            sent.append(Sent(worker, index, phone, content, session.session_id, before, after))
            continue
        active = service.get_session_by_phone(phone, include_messages=False)
        if active is None:
            continue
        end = service.complete_session if rng.random() < 0.5 else service.expire_session
        before = int(counter.incr(SEQUENCE_KEY))
        try:
            result = end(active.session_id)
        except (InvalidTransition, SessionNotFound):
            continue
        after = int(counter.incr(SEQUENCE_KEY))
        ended.append(Ended(worker, phone, result.session_id, result.status, before, after))
    counter.close()
    service.store.client.close()
    results.put((worker, sent, ended))  # type: ignore[attr-defined]


def run_workers(redis_url: str) -> tuple[list[Sent], list[Ended]]:
    """Starts the processes together and collects their logs, all within the deadline."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    processes = [
        ctx.Process(target=hammer, args=(redis_url, worker, 1000 + worker, start, results))
        for worker in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    start.set()
    logs = {}
    try:
        for _ in processes:
            worker, sent, ended = results.get(timeout=DEADLINE_SECONDS)
            logs[worker] = (sent, ended)
    except queue.Empty:
        raise AssertionError(f"only {sorted(logs)} of {PROCESSES} workers reported") from None
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
    assert [p.exitcode for p in processes] == [0] * PROCESSES
    all_sent = [s for worker in sorted(logs) for s in logs[worker][0]]
    all_ended = [e for worker in sorted(logs) for e in logs[worker][1]]
    return all_sent, all_ended


def test_concurrent_processes_keep_sessions_consistent(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Messages are stored once each, in sender order; no phone ever has two active sessions."""
    sent, ended = run_workers(redis_url)
    service = SessionService(redis_client, business_number=BUSINESS)

    assert len(sent) > PROCESSES * OPERATIONS_PER_PROCESS // 2
    assert ended, "no process managed to end a session: the mix exercised nothing"

    sessions = {}
    for phone in PHONES:
        for sid in service.store.conversation_session_ids(f"{phone}|{BUSINESS}"):
            session = service.store.load(sid)
            assert session is not None
            assert session.phone_number == phone
            sessions[sid] = session
    assert len(sessions) > len(PHONES), "sessions never rolled over"

    # Every appended message is stored exactly once, in the session its sender was told.
    stored = Counter(m.content for s in sessions.values() for m in s.messages)
    assert stored == Counter(s.content for s in sent)
    where = {m.content: sid for sid, s in sessions.items() for m in s.messages}
    for message in sent:
        assert where[message.content] == message.session_id
        assert sessions[message.session_id].phone_number == message.phone
    for session in sessions.values():
        assert session.message_count == len(session.messages) >= 1
        assert session.trimmed_count == 0

    # At most one active session per phone, and the indexes agree with the hashes.
    active = [s for s in sessions.values() if s.status is SessionStatus.ACTIVE]
    assert len({s.phone_number for s in active}) == len(active)
    assert set(redis_client.zrange(KEYS.active, 0, -1)) == {s.session_id for s in active}
    for phone in PHONES:
        pointer = redis_client.get(KEYS.conv_active(f"{phone}|{BUSINESS}"))
        assert pointer == next((s.session_id for s in active if s.phone_number == phone), None)
    for session in sessions.values():
        if session.status is not SessionStatus.ACTIVE:
            assert session.ended_at is not None
            index = KEYS.status_index(session.status.value)
            assert redis_client.zscore(index, session.session_id) is not None

    # Each process's messages appear in its sending order, and it never returns to a session
    # it has left (sessions of one phone follow one another).
    for worker in range(PROCESSES):
        mine = [s for s in sent if s.worker == worker]
        for sid, session in sessions.items():
            order = [
                int(m.content.rsplit(" ", 1)[1])
                for m in session.messages
                if m.content.startswith(f"worker {worker} ")
            ]
            assert order == sorted(order), f"worker {worker} reordered in {sid}"
        for phone in PHONES:
            visited = [s.session_id for s in mine if s.phone == phone]
            runs = [sid for i, sid in enumerate(visited) if i == 0 or visited[i - 1] != sid]
            assert len(runs) == len(set(runs)), f"worker {worker} went back to an old session"

    # Each successful end is reported once, matches the stored status, and no message that
    # started after the end had finished was appended to the ended session.
    assert len({e.session_id for e in ended}) == len(ended)
    for end in ended:
        session = sessions[end.session_id]
        assert session.status.value == end.status
        late = [s.content for s in sent if s.session_id == end.session_id and s.before > end.after]
        assert late == [], f"messages appended to {end.session_id} after it ended"
