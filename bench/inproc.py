"""Measures taken inside this one Python process: the store's calls, an in-process drain, and
the Redis memory a stored session costs (filled through the real ingest and drain code).
"""

from __future__ import annotations

import math
import multiprocessing
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import redis

from tools.demo import TwilioSimulator, new_message_sid
from wa_sessions.statemachine.entries import message_entry
from wa_sessions.statemachine.models import Message
from wa_sessions.statemachine.redis import scripts
from wa_sessions.statemachine.redis.calls import ingest_call
from wa_sessions.statemachine.redis.inbox import Inbox, InboxPolicy
from wa_sessions.statemachine.redis.keys import SessionField
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.steps import to_ms
from wa_sessions.webhook.twilio import decode_form, parse_inbound
from wa_sessions.workers.handlers import WorkerDeps, drain_conversation

from .load import BODY, phone

#: The memory target's body: 300 bytes of ordinary text.
BODY_300 = (
    "Hi! I'd like to order 3 large pepperoni pizzas and 2 bottles of sparkling water, "
    "delivered to 42 Wallaby Way, Sydney, apartment 7B, ring twice. Can you also tell me "
    "whether the garlic bread is vegan and how long delivery takes tonight? Paying by card "
    "on arrival. Thanks a lot, see you very soon, Anna"
)
assert len(BODY_300.encode()) == 300, len(BODY_300.encode())


class RoundTrips:
    """Counts this process' Redis round trips by counting packed sends (a pipeline is one)."""

    def __init__(self) -> None:
        self.count = 0
        self._original: Callable[..., Any] | None = None

    def __enter__(self) -> RoundTrips:
        from redis.connection import AbstractConnection

        original: Callable[..., Any] = AbstractConnection.send_packed_command
        self._original = original
        counter = self

        def counting(conn: Any, command: Any, check_health: bool = True) -> None:
            counter.count += 1
            original(conn, command, check_health)

        AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        from redis.connection import AbstractConnection

        AbstractConnection.send_packed_command = self._original  # type: ignore[method-assign,assignment]


def bench_add_message(url: str, n: int) -> dict[str, float]:
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushall()
    service = SessionService(client)
    service.add_message(phone(0), "warm-up")
    with RoundTrips() as trips:
        start = time.perf_counter()
        for i in range(n):
            service.add_message(phone(i % 1000), BODY)
        elapsed = time.perf_counter() - start
    conv = service.conversation(phone(1))
    with RoundTrips() as apply_trips:
        start = time.perf_counter()
        for i in range(n):
            service.store.apply_message(
                conv.key,
                Message(id=f"m{i}", content=BODY, timestamp=datetime.now(UTC)),
                ts_ms=to_ms(datetime.now(UTC)),
                now_ms=to_ms(datetime.now(UTC)),
                new_session_id="s",
                timeout_ms=service.timeout_ms,
                cap=10**9,
                keep_ms=service.keep_ms,
            )
        apply_elapsed = time.perf_counter() - start
    return {
        "add_message_per_s": n / elapsed,
        "add_message_round_trips": trips.count / n,
        "apply_per_s": n / apply_elapsed,
        "apply_round_trips": apply_trips.count / n,
    }


def bench_drain(url: str, phones: int, per_phone: int) -> dict[str, float]:
    """Preload through the ingest path, then drain every phone in this one process."""
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushall()
    service = SessionService(client)
    inbox = Inbox(service.store)
    convs = [service.conversation(phone(p)).key for p in range(phones)]
    now = datetime.now(UTC)
    with RoundTrips() as ingest_trips:
        start = time.perf_counter()
        for _k in range(per_phone):
            for conv in convs:
                inbox.accept(
                    conv,
                    Message(id=new_message_sid(), content=BODY, timestamp=now),
                    accepted_ms=to_ms(now),
                )
        ingest_elapsed = time.perf_counter() - start
    deps = WorkerDeps(service, inbox, wake=lambda conv: None)
    total = phones * per_phone
    with RoundTrips() as trips:
        start = time.perf_counter()
        applied = sum(drain_conversation(deps, conv).applied for conv in convs)
        elapsed = time.perf_counter() - start
    assert applied == total, (applied, total)
    return {
        "ingest_per_s": total / ingest_elapsed,
        "ingest_round_trips": ingest_trips.count / total,
        "drain_per_s": total / elapsed,
        "drain_round_trips": trips.count / total,
    }


#: The business number a phone (by its index) writes to; None: the simulator's sandbox number.
BusinessOf = Callable[[int], str] | None


def twilio_messages(
    sessions: int,
    per_session: int,
    body: str,
    first_phone: int = 0,
    business_of: BusinessOf = None,
) -> Iterator[tuple[str, Message, int]]:
    """(conversation key, message, accepted ms) as the webhook would build them from Twilio's
    form, the messages of a phone spread over time like a real conversation's."""
    sims: dict[str, TwilioSimulator] = {}
    default = TwilioSimulator("http://127.0.0.1", "unused")
    now = datetime.now(UTC)
    for k in range(per_session):
        for s in range(sessions):
            sim = default
            if business_of is not None:
                number = business_of(first_phone + s)
                sim = sims.setdefault(
                    number, TwilioSimulator("http://127.0.0.1", "unused", business_number=number)
                )
            form = sim.inbound_form(phone(first_phone + s), body)
            params = decode_form(urllib.parse.urlencode(form).encode())
            conversation, message = parse_inbound(
                params, accepted_at=now, account_sid=sim.account_sid
            )
            yield conversation.key, message, to_ms(now) + k


def fast_messages(
    sessions: int,
    per_session: int,
    body: str,
    first_phone: int = 0,
    business_of: BusinessOf = None,
) -> Iterator[tuple[str, Message, int]]:
    """Like ``twilio_messages`` (the webhook's parsing of Twilio's form), parsed once per phone
    and copied with a fresh MessageSid per message: the same bytes at a fraction of the cost."""
    templates = list(twilio_messages(sessions, 1, body, first_phone, business_of))
    for k in range(per_session):
        for conv, message, accepted_ms in templates:
            yield conv, message.model_copy(update={"id": new_message_sid()}), accepted_ms + k


def ingest_pipelined(
    client: redis.Redis, service: SessionService, items: Iterator[tuple[str, Message, int]]
) -> tuple[int, list[str]]:
    """The ingest script (the webhook's round trip), pipelined 1,000 calls at a time for speed.
    Returns the number accepted and the conversations that would be woken."""
    policy = InboxPolicy()
    source = scripts.build(service.store.keys)["ingest"]
    # EVALSHA names a script by its SHA-1 (Redis' choice, not a security measure).
    sha = str(client.script_load(source))
    accepted = 0
    woken: list[str] = []
    batch: list[str] = []
    pipe = client.pipeline(transaction=False)

    def flush() -> None:
        nonlocal accepted, pipe
        for conv, outcome in zip(batch, pipe.execute(), strict=True):
            accepted += int(outcome) > 0
            if int(outcome) == 2:
                woken.append(conv)
        batch.clear()
        pipe = client.pipeline(transaction=False)

    for conv, message, accepted_ms in items:
        keys, args = ingest_call(
            service.store.keys,
            conv,
            message_entry(message, accepted_ms),
            message_sid=message.id,
            accepted_ms=accepted_ms,
            dedupe_ttl_ms=policy.dedupe_ttl_seconds * 1000,
            max_depth=policy.max_depth,
            wake_ttl_ms=policy.wake_ttl_ms,
        )
        pipe.evalsha(sha, len(keys), *keys, *args)
        batch.append(conv)
        if len(batch) >= 1000:
            flush()
    if batch:
        flush()
    return accepted, woken


def _fill_part(
    url: str,
    first_phone: int,
    sessions: int,
    per_session: int,
    body: str = BODY_300,
    business_of: BusinessOf = None,
) -> tuple[int, int]:
    client = redis.Redis.from_url(url, decode_responses=True)
    service = SessionService(client)
    accepted, woken = ingest_pipelined(
        client, service, fast_messages(sessions, per_session, body, first_phone, business_of)
    )
    deps = WorkerDeps(service, Inbox(service.store), wake=lambda conv: None)
    return accepted, sum(drain_conversation(deps, conv).applied for conv in woken)


def fill_parallel(
    url: str,
    sessions: int,
    per_session: int,
    processes: int = 2,
    *,
    body: str = BODY_300,
    business_of: BusinessOf = None,
) -> tuple[int, int]:
    """Ingest and drain ``sessions`` phones' messages from ``processes`` forked processes, each
    with its own phones, so filling is not bound by one Python process. (accepted, applied)"""
    ctx = multiprocessing.get_context("fork")
    share = math.ceil(sessions / processes)
    parts = [
        (url, i * share, min(share, sessions - i * share), per_session, body, business_of)
        for i in range(processes)
        if sessions > i * share
    ]
    with ctx.Pool(len(parts)) as pool:
        done = pool.starmap(_fill_part, parts)
    return sum(a for a, _ in done), sum(b for _, b in done)


def _memory_usage(client: redis.Redis, keys: list[str]) -> float:
    """Mean ``MEMORY USAGE`` (every element sampled) of the keys."""
    if not keys:
        return 0.0
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    values = [int(v or 0) for v in pipe.execute()]
    return sum(values) / len(values)


def bench_memory(
    url: str, sessions: int, per_session: int, deps: WorkerDeps | None = None
) -> dict[str, float]:
    """Redis memory of ``sessions`` sessions of ``per_session`` inbound 300-byte messages,
    filled the way the service fills it: the webhook's ingest script, then the workers' drain
    (``deps``: the worker's own, with its order extraction and replies; default none)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushall()
    time.sleep(0.2)
    before = int(client.info("memory")["used_memory"])
    plain = deps is None
    service = deps.service if deps is not None else SessionService(client)
    if deps is None:
        deps = WorkerDeps(service, Inbox(service.store), wake=lambda conv: None)
    total = sessions * per_session
    if plain:
        accepted, applied = fill_parallel(url, sessions, per_session)
    else:
        # A conversation: each round one message per phone, drained (and answered) before the
        # next arrives, so every message gets its own reply as in real traffic (a burst drained
        # at once would get one reply for all of it).
        accepted = applied = 0
        for _ in range(per_session):
            got, woken = ingest_pipelined(client, service, fast_messages(sessions, 1, BODY_300))
            accepted += got
            applied += sum(drain_conversation(deps, conv).applied for conv in woken)
    assert (accepted, applied) == (total, total), (accepted, applied, total)
    after = int(client.info("memory")["used_memory"])
    keys = service.store.keys
    conv_of = {str(sid): str(conv) for sid, conv in client.hgetall(keys.session_conv).items()}
    sids = [str(sid) for sid in client.zrange(keys.all, 0, -1)]
    pipe = client.pipeline(transaction=False)
    for sid in sids:
        pipe.hget(keys.session(conv_of[sid], sid), SessionField.MESSAGE_COUNT)
    stored = sum(int(c or 0) for c in pipe.execute())
    sample = sids[:100]
    convs = [conv_of[sid] for sid in sample]
    seen = list(client.scan_iter(f"{keys.seen_prefix}*", count=1000))
    raw = client.lrange(keys.session_messages(convs[0], sample[0]), 0, -1)
    lengths = [len(str(m).encode()) for m in raw if '"direction":"outbound"' not in str(m)]
    per_session_keys = {
        "session hash": _memory_usage(
            client, [keys.session(c, s) for c, s in zip(convs, sample, strict=True)]
        ),
        "message list": _memory_usage(
            client, [keys.session_messages(c, s) for c, s in zip(convs, sample, strict=True)]
        ),
        "active pointer": _memory_usage(client, [keys.conv_active(c) for c in convs]),
        "sessions of the conversation": _memory_usage(
            client, [keys.conv_sessions(c) for c in convs]
        ),
        "global indexes (share)": sum(
            int(client.memory_usage(k, samples=0) or 0)
            for k in (keys.active, keys.all, keys.session_conv)
        )
        / sessions,
    }
    per_message_keys = {
        "dedupe markers (`seen:` hashes, share)": _memory_usage(client, seen) * len(seen) / total
    }
    return {
        "used_memory_per_message": (after - before) / total,
        "used_memory_per_stored": (after - before) / max(stored, 1),
        "stored_per_inbound": stored / total,
        "used_memory_per_session": (after - before) / sessions,
        "stored_json_bytes": sum(lengths) / max(len(lengths), 1),
        **{f"key:{name}": value for name, value in per_session_keys.items()},
        **{f"msgkey:{name}": value for name, value in per_message_keys.items()},
    }
