"""What the hot Lua scripts cost, server side and client side: the webhook's ingest and the
drain step (a one-message drain, and a drain with effects: apply, then commit one reply).

Not part of the benchmark suite: a quick before/after figure for changes to the scripts or to
how their arguments are encoded. Starts its own redis-server on a free port.

    .venv/bin/python -m bench.scripts_cost -n 4000 --rounds 5

Server side is ``INFO commandstats``' ``cmdstat_evalsha`` ``usec_per_call`` (the script's run
time inside Redis, argument decoding included); client side is the wall time per call from one
Python process over one connection (encoding the arguments, the round trip, parsing the reply).
The machine is shared, so each measure runs in several rounds and the best round is the figure
(the median round beside it).
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis

from wa_sessions.embedded_redis import embedded_redis
from wa_sessions.statemachine.models import Message, MessageDirection, MessageType

try:  # since the store's split (issue #12): steps and entries from the domain
    from wa_sessions.statemachine.entries import message_entry
    from wa_sessions.statemachine.redis.keys import Keys
    from wa_sessions.statemachine.redis.store import RedisSessionStore
    from wa_sessions.statemachine.steps import (
        DrainPolicy,
        EffectMessage,
        EffectsCommit,
        SessionEffects,
    )
except ImportError:  # the fallbacks measure the code before it
    try:
        from wa_sessions.statemachine.redis.keys import Keys
        from wa_sessions.statemachine.redis.store import (
            DrainPolicy,
            EffectMessage,
            EffectsCommit,
            RedisSessionStore,
            SessionEffects,
            message_entry,
        )
    except ImportError:
        from wa_sessions.statemachine.keys import Keys
        from wa_sessions.statemachine.store import (
            DrainPolicy,
            EffectMessage,
            EffectsCommit,
            RedisSessionStore,
            SessionEffects,
            message_entry,
        )

BUSINESS = "whatsapp:+14155238886"
T0_MS = 1_780_000_000_000
DEDUPE_TTL_MS = 7 * 24 * 3600 * 1000
POLICY = DrainPolicy(
    lease_ms=600_000, batch=100, timeout_ms=24 * 3600 * 1000, cap=5000, keep_ms=31 * 86_400_000
)


def conv_of(i: int) -> str:
    return f"whatsapp:+1555{i:07d}|{BUSINESS}"


def message(i: int) -> Message:
    return Message(
        id=f"SM{uuid.uuid4().hex}",
        content="I need 5 units of Product A",
        timestamp=datetime.fromtimestamp((T0_MS + i) / 1000, tz=UTC),
    )


def expect(ok: bool, step: object) -> None:
    if not ok:
        raise RuntimeError(f"unexpected drain step: {step}")


def evalsha_usec(client: redis.Redis) -> float:
    stats: dict[str, Any] = client.info("commandstats")
    return float(stats["cmdstat_evalsha"]["usec_per_call"])


def redis_cpu_seconds(client: redis.Redis) -> float:
    """CPU time of Redis' main thread (where scripts run), from its own getrusage."""
    cpu: dict[str, Any] = client.info("cpu")
    return float(cpu["used_cpu_user_main_thread"]) + float(cpu["used_cpu_sys_main_thread"])


#: Per call: EVALSHA time inside Redis (usec_per_call), Redis main-thread CPU, client wall time,
#: client CPU (this process). The CPU figures are the steadier ones on a shared machine: time
#: spent preempted counts in the wall figures, not in CPU.
Figures = tuple[float, float, float, float]
COLUMNS = ("EVALSHA us", "Redis CPU us", "client wall us", "client CPU us")


def measure(client: redis.Redis, n: int, call: Callable[[int], object]) -> Figures:
    """Per-call figures (``COLUMNS``) over ``n`` calls."""
    client.config_resetstat()
    redis_cpu = redis_cpu_seconds(client)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        call(i)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    redis_cpu = redis_cpu_seconds(client) - redis_cpu
    return evalsha_usec(client), redis_cpu / n * 1e6, wall / n * 1e6, cpu / n * 1e6


def run_round(client: redis.Redis, n: int) -> dict[str, Figures]:
    """One round: each measure over ``n`` calls, on a flushed Redis."""
    client.flushall()
    store = RedisSessionStore(client, Keys())
    messages = [message(i) for i in range(n)]
    entries = [message_entry(messages[i], T0_MS + i) for i in range(n)]
    # One id base per conversation, as each drain has its own: sessions must not share ids.
    bases = [str(uuid.uuid4())[:-4] + "0000" for _ in range(n)]
    out: dict[str, Figures] = {}

    def ingest(i: int) -> None:
        store.ingest(
            conv_of(i),
            entries[i],
            message_sid=messages[i].id,
            accepted_ms=T0_MS + i,
            dedupe_ttl_ms=DEDUPE_TTL_MS,
            max_depth=10_000,
            wake_ttl_ms=5000,
        )

    def drain(i: int) -> None:
        step = store.drain_step(
            conv_of(i), "tok", POLICY, acquire=True, now_ms=T0_MS + n + i, id_base=bases[i]
        )
        expect(step.status == "ok" and step.released and len(step.results) == 1, step)

    out["ingest"] = measure(client, n, ingest)
    out["drain (1 message)"] = measure(client, n, drain)

    # With effects: the step that applies the message hands out its record, the next one
    # commits a reply (order JSON and one outbound message with a Twilio sid) and releases.
    client.flushall()
    store = RedisSessionStore(client, Keys())
    for i in range(n):
        ingest(i)
    effects = DrainPolicy(**{**_policy_fields(POLICY), "effects": True, "history": 20})
    steps: dict[int, Any] = {}

    def apply_with_effects(i: int) -> None:
        step = store.drain_step(
            conv_of(i), "tok", effects, acquire=True, now_ms=T0_MS + n + i, id_base=bases[i]
        )
        expect(step.status == "ok" and len(step.effects) == 1, step)
        steps[i] = step

    def commit(i: int) -> None:
        step = steps.pop(i)
        sid = next(iter(step.sessions))
        reply = Message(
            id=f"out-{i}",
            content="✅ Order received: 5 units of Product A",
            direction=MessageDirection.OUTBOUND,
            message_type=MessageType.TEXT,
            timestamp=datetime.fromtimestamp((T0_MS + n + i) / 1000, tz=UTC),
            metadata={"in_reply_to": messages[i].id, "sent": True},
        )
        done = store.drain_step(
            conv_of(i),
            "tok",
            effects,
            acquire=False,
            now_ms=T0_MS + n + i,
            id_base=bases[i],
            commit=EffectsCommit(
                records=step.effects,
                sessions=[
                    SessionEffects(
                        sid,
                        {"items": [{"name": "Product A", "quantity": 5}]},
                        [EffectMessage(reply, twilio_sid=f"SM{i:032x}", delivery_status="queued")],
                    )
                ],
                at=datetime.fromtimestamp((T0_MS + n + i) / 1000, tz=UTC),
            ),
        )
        expect(done.status == "ok" and done.released and done.committed == ["ok"], done)

    out["drain with effects: apply"] = measure(client, n, apply_with_effects)
    out["drain with effects: commit"] = measure(client, n, commit)
    return out


def run(url: str, n: int, rounds: int) -> dict[str, list[Figures]]:
    """Every round's figures per measure (the machine is shared: report the best round)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    results: dict[str, list[Figures]] = {}
    for _ in range(rounds):
        for name, figures in run_round(client, n).items():
            results.setdefault(name, []).append(figures)
    client.close()
    return results


def _policy_fields(policy: DrainPolicy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in DrainPolicy.__dataclass_fields__}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=4000, help="calls per measure and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best one is shown")
    parser.add_argument("--url", help="an existing, disposable Redis (flushed!)")
    args = parser.parse_args(argv)
    if args.url:
        results = run(args.url, args.n, args.rounds)
    else:
        with embedded_redis() as server:
            results = run(server.url, args.n, args.rounds)
    print(f"{args.rounds} rounds of {args.n} calls; per call, best round (median round)")
    print(f"{'script call':<28}" + "".join(f"{c:>22}" for c in COLUMNS))
    for name, figures in results.items():
        cells = []
        for column in range(len(COLUMNS)):
            values = sorted(f[column] for f in figures)
            cells.append(f"{values[0]:>12.1f} ({values[len(values) // 2]:>6.1f})")
        print(f"{name:<28}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
