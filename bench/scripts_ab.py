"""A/B of the hot Lua scripts of two checkouts on one Redis, call by call, for a figure that a
shared machine's noise does not swamp.

    .venv/bin/python -m bench.scripts_ab /path/to/checkout-A /path/to/checkout-B -n 5000

Each checkout's own code (run in a subprocess with that checkout first on ``sys.path``) writes
its script sources and the KEYS/ARGV of a fixed scenario under its own key prefix: per
conversation, ingest a message, drain it (opening a session), ingest another, drain it with
effects on (its record handed out), commit one reply. This process then loads both sets of
scripts into one private redis-server and runs the two scenarios interleaved step by step,
so that both see the same interference (which side goes first alternates); Redis' slow log
(threshold 0) gives each call's time inside Redis (which then includes logging each command the
script runs: a few percent more on both sides). Run it both ways round (A B, then B A).
Client-side encoding is not measured here (``bench.scripts_cost`` and a timeit of
``ingest_call``/``drain_step_call`` do that).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

from wa_sessions.embedded_redis import embedded_redis

STEPS = ("ingest", "drain", "ingest (2nd)", "drain with effects: apply", "commit")

#: Run inside the checkout under test: prints {"scripts": {name: source}, "calls": [...]}.
_DUMP = r"""
import json, sys, uuid
from datetime import UTC, datetime
try:
    from wa_sessions.statemachine.redis import scripts
    from wa_sessions.statemachine.redis.keys import Keys
    from wa_sessions.statemachine.redis import store as st
except ImportError:
    from wa_sessions.statemachine import scripts
    from wa_sessions.statemachine.keys import Keys
    from wa_sessions.statemachine import store as st
if not hasattr(st, "ingest_call"):
    # Since the store's split (issue #12) the calls live in redis/calls.py, the steps and
    # entries in the domain.
    import types
    from wa_sessions.statemachine import entries, steps
    from wa_sessions.statemachine.redis import calls
    st = types.SimpleNamespace(**{**vars(steps), **vars(entries), **vars(calls)})
from wa_sessions.statemachine.models import Message, MessageDirection

prefix, n = sys.argv[1], int(sys.argv[2])
keys = Keys(prefix)
T0 = 1_780_000_000_000
plain = st.DrainPolicy(lease_ms=600_000, batch=100, timeout_ms=86_400_000, cap=5000,
                       keep_ms=31 * 86_400_000)
effects = st.DrainPolicy(lease_ms=600_000, batch=100, timeout_ms=86_400_000, cap=5000,
                         keep_ms=31 * 86_400_000, effects=True, history=20)
calls = []
def at(ms):
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
for i in range(n):
    conv = f"whatsapp:+1555{i:07d}|whatsapp:+14155238886"
    base = uuid.UUID(int=(i + 1) << 16).hex[:-4]
    base = f"{base[:8]}-{base[8:12]}-{base[12:16]}-{base[16:20]}-{base[20:]}0000"
    sid = base[:-4] + "0001"
    for step, text in ((0, "hello"), (1, "I need 5 units of Product A")):
        ts = T0 + 10 * i + step
        m = Message(id=f"SM{i:030d}{step:02d}", content=text, timestamp=at(ts))
        k, a = st.ingest_call(keys, conv, st.message_entry(m, ts), message_sid=m.id,
                              accepted_ms=ts, dedupe_ttl_ms=604_800_000, max_depth=10_000,
                              wake_ttl_ms=5000)
        calls.append(["ingest", k, a])
        policy = plain if step == 0 else effects
        k, a = st.drain_step_call(keys, conv, "tok", policy, acquire=True, now_ms=ts,
                                  id_base=base)
        calls.append(["drain_step", k, a])
    record = sid + "\t" + m.model_dump_json(exclude_defaults=True)
    reply = Message(id=f"out-{i}", content="Order received: 5 units of Product A",
                    direction=MessageDirection.OUTBOUND, timestamp=at(ts),
                    metadata={"in_reply_to": m.id, "sent": True})
    commit = st.EffectsCommit(
        records=[record],
        sessions=[st.SessionEffects(sid, {"items": [{"name": "Product A", "quantity": 5}]},
                                    [st.EffectMessage(reply, twilio_sid=f"SM{i:032x}",
                                                      delivery_status="queued")])],
        at=at(ts))
    k, a = st.drain_step_call(keys, conv, "tok", effects, acquire=False, now_ms=ts,
                              id_base=base, commit=commit)
    calls.append(["drain_step", k, a])
print(json.dumps({"scripts": scripts.build(keys), "calls": calls}))
"""


def dump(checkout: Path, prefix: str, n: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _DUMP, prefix, str(n)],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(checkout), "PATH": "/usr/bin:/bin"},
        cwd=checkout,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def run(
    url: str, sides: dict[str, dict[str, Any]], chunk: int = 100
) -> tuple[dict[str, list[int]], int]:
    """Per ``"<side> <step>"``, each call's time inside Redis in microseconds; and how many
    steps got different replies from the two sides (key prefixes aside)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushall()
    shas = {
        side: {name: client.script_load(src) for name, src in data["scripts"].items()}
        for side, data in sides.items()
    }
    durations: dict[str, list[int]] = {f"{side} {s}": [] for side in sides for s in STEPS}
    # Redis 7 logs the commands a script runs too (about 30 a drain step): room for them all.
    client.config_set("slowlog-max-len", 1000 * chunk)
    client.config_set("slowlog-log-slower-than", 0)
    client.slowlog_reset()
    issued: list[str] = []  # the label of every EVALSHA sent since the last collection
    total = len(next(iter(sides.values()))["calls"])
    differing = 0
    for j in range(total):
        replies: dict[str, str] = {}
        # Which side goes first alternates: the second of a pair runs on warmer caches.
        order = list(sides.items()) if j % 2 == 0 else list(sides.items())[::-1]
        for side, data in order:
            name, keys, args = data["calls"][j]
            reply = client.evalsha(shas[side][name], len(keys), *keys, *args)
            replies[side] = json.dumps(reply)
            if name == "drain_step" and reply[0] != "ok":
                raise RuntimeError(f"{side}: drain step refused: {reply}")
            issued.append(f"{side} {STEPS[j % len(STEPS)]}")
        differing += len(set(replies.values())) > 1
        if len(issued) >= chunk or j == total - 1:
            raw = client.slowlog_get(-1)
            entries = [e for e in raw if e["command"].startswith(b"EVALSHA")]
            client.slowlog_reset()
            entries.sort(key=lambda e: e["id"])
            if len(entries) != len(issued):
                raise RuntimeError(f"slow log kept {len(entries)} of {len(issued)} calls")
            for label, entry in zip(issued, entries, strict=True):
                durations[label].append(int(entry["duration"]))
            issued = []
    client.config_set("slowlog-log-slower-than", 10_000)
    client.close()
    return durations, differing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="checkout A (e.g. before)")
    parser.add_argument("b", type=Path, help="checkout B (e.g. after)")
    parser.add_argument("-n", type=int, default=5000, help="conversations")
    args = parser.parse_args(argv)
    sides = {"A": dump(args.a, "a:", args.n), "B": dump(args.b, "b:", args.n)}
    with embedded_redis() as server:
        durations, differing = run(server.url, sides)
    print(f"us inside Redis per call (slow log), {args.n} calls each, A={args.a} B={args.b}")
    print(f"steps whose replies differ between A and B: {differing}")
    print("trimmed mean: the middle 80% of calls (preemptions on a shared machine left out)")
    print(
        f"{'step':<28}{'A trimmed':>10}{'B trimmed':>10}{'B/A':>7}{'A median':>10}{'B median':>10}"
    )
    for step in STEPS:
        a, b = durations[f"A {step}"], durations[f"B {step}"]
        ta, tb = trimmed_mean(a), trimmed_mean(b)
        print(
            f"{step:<28}{ta:>10.1f}{tb:>10.1f}{tb / ta:>7.3f}"
            f"{statistics.median(a):>10.0f}{statistics.median(b):>10.0f}"
        )


def trimmed_mean(values: list[int], cut: float = 0.1) -> float:
    ordered = sorted(values)
    k = int(len(ordered) * cut)
    return statistics.fmean(ordered[k : len(ordered) - k])


if __name__ == "__main__":
    main()
