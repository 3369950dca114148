"""Client CPU per call of the webhook's RESP connection against ``redis.asyncio``: the figure
that keeps ``wa_sessions/statemachine/redis/resp.py`` hand-written.

One EVALSHA of a 4-command script, ``--in-flight`` calls at a time from one asyncio process
with uvloop, against a private redis-server; CPU is this process's only (``process_time``).

    .venv/bin/python -m bench.resp_pipe [--calls 20000] [--in-flight 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio
import uvloop

from wa_sessions.embedded_redis import embedded_redis
from wa_sessions.statemachine.redis.resp import RespPipe

SCRIPT = """
redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], 'at', ARGV[1])
redis.call('PEXPIRE', KEYS[2], 60000)
return redis.call('LLEN', KEYS[3])
"""

Call = Callable[[int], Awaitable[Any]]


async def measure(call: Call, calls: int, in_flight: int) -> tuple[float, float]:
    """(client CPU us per call, calls per second) for ``calls`` calls, ``in_flight`` at a time."""
    for i in range(200):  # connect and warm up
        await call(i)
    per_task = calls // in_flight

    async def worker(w: int) -> None:
        for i in range(per_task):
            await call(w * per_task + i)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(in_flight)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = per_task * in_flight
    return cpu / done * 1e6, done / wall


async def run(url: str, calls: int, in_flight: int) -> dict[str, tuple[float, float]]:
    client = redis.asyncio.Redis.from_url(url, max_connections=in_flight)
    sha = await client.script_load(SCRIPT)
    keys = ("{b}:n", "{b}:h", "{b}:l")
    pipe = RespPipe(client)

    async def through_pipe(i: int) -> Any:
        return (await pipe.execute([("EVALSHA", sha, 3, *keys, i)]))[0]

    async def through_client(i: int) -> Any:
        return await client.evalsha(sha, 3, *keys, i)  # type: ignore[no-untyped-call]

    try:
        return {
            "resp.py": await measure(through_pipe, calls, in_flight),
            "redis.asyncio": await measure(through_client, calls, in_flight),
        }
    finally:
        pipe.close()
        await client.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with embedded_redis() as server:
        for _ in range(args.runs):
            results = uvloop.run(run(server.url, args.calls, args.in_flight))
            print(
                "  ".join(
                    f"{name}: {cpu:.1f} us CPU/call, {rate:,.0f} calls/s"
                    for name, (cpu, rate) in results.items()
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
