"""The webhook under load with no worker running, beside a bare ASGI endpoint (``bench.bare``)
on the same uvicorn command line: the most HTTP requests this server answers here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import redis

from .load import LoadResult, run_max, run_paced
from .procs import Processes

BARE_APP = "bench.bare:app"
_OUTCOME = re.compile(
    r'^wa_sessions_webhook_requests_total\{endpoint="inbound",outcome="(\w+)"\} (\S+)$', re.M
)


@dataclass
class WebhookRun:
    load: LoadResult
    #: CPU of the server process per answered request.
    cpu_us: float
    #: Outcome counts from the service's own counter (the bare endpoint has none).
    outcomes: dict[str, int]


def bare_command(web_command: str) -> str:
    return web_command.replace("--factory wa_sessions.bootstrap:create_app", BARE_APP)


def _outcomes(procs: Processes) -> dict[str, int]:
    body = procs.simulator().request("GET", "/metrics").body.decode()
    return {m.group(1): int(float(m.group(2))) for m in _OUTCOME.finditer(body)}


def measure(
    procs: Processes,
    name: str,
    client: redis.Redis,
    wrk: str,
    requests_file: Path,
    seconds: float,
    rate: float | None = None,
) -> WebhookRun:
    """One load on one server after a FLUSHALL: closed loop, or paced at ``rate``."""
    client.flushall()
    counted = name == "web"
    before = _outcomes(procs) if counted else {}
    cpu = procs.cpu_seconds(name)
    if rate is None:
        load = run_max(wrk, procs.port, requests_file, seconds)
    else:
        load = run_paced(wrk, procs.port, requests_file, seconds, rate)
    cpu = procs.cpu_seconds(name) - cpu
    after = _outcomes(procs) if counted else {}
    outcomes = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    return WebhookRun(load, cpu * 1e6 / max(load.requests, 1), outcomes)
