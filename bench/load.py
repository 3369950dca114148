"""HTTP load with wrk: closed-loop for the maximum, and paced (open-loop) for fixed rates.

Pacing: wrk's Lua ``delay()`` runs before every request of a connection. Each wrk thread gets
exactly one connection, so a thread's Lua state is one connection's schedule: request ``k`` is
due at ``phase + k / rate``; ``delay()`` waits until then (0 when already late) and the latency
is measured from the due time, not from the send (wrk2's correction for coordinated omission:
a slow answer that delays the next send is charged to that request). Connections get enough
slots (at least 10 ms apart) that answers normally arrive before the next request is due, so the
offered rate does not depend on the server's speed. Times come from ``clock_gettime`` through
LuaJIT's FFI (wrk is built on LuaJIT).

Every request is a distinct, validly signed Twilio webhook (its own ``MessageSid``), read from a
file written beforehand; thread ``t`` of ``n`` takes the file's lines ``t, t+n, t+2n, ...``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tools.demo import TwilioSimulator

#: A realistic WhatsApp text: 252 characters.
BODY = "I need 5 units of Product A and 2 boxes of apples, delivered to 221B Baker Street. " * 3
WEBHOOK_PATH = "/twilio-webhook-opt"

_COMMON_LUA = r"""
local sigs, bodies = {}, {}
local counter = 0
local threads = 0
all_threads = {}
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
  table.insert(all_threads, thread)
end
local function load(prefix)
  local f = assert(io.open(prefix .. tid .. ".txt", "r"))
  for line in f:lines() do
    local sig, body = line:match("^(%S+) (.*)$")
    table.insert(sigs, sig)
    table.insert(bodies, body)
  end
  f:close()
end
local function next_request()
  counter = counter + 1
  local i = ((counter - 1) % #bodies) + 1
  return wrk.format("POST", "__PATH__", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Twilio-Signature"] = sigs[i],
  }, bodies[i])
end
"""

# Closed loop: every connection sends its next request as soon as the last one is answered.
_MAX_LUA = (
    _COMMON_LUA
    + r"""
function init(args)
  load(args[1])
end
function request()
  return next_request()
end
"""
)

# Open loop: args are the file prefix, requests/s per connection, and the schedule's start and
# end on CLOCK_MONOTONIC in microseconds (the same clock as Python's time.monotonic), so every
# connection starts together however long the others took to load their files.
_PACED_LUA = (
    _COMMON_LUA
    + r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end
local interval_us, due, sent, end_at = 0, 0, 0, 0
lat, late, bad = {}, 0, 0
function init(args)
  load(args[1])
  interval_us = 1000000 / tonumber(args[2])
  local nthreads = tonumber(args[5])
  end_at = tonumber(args[4])
  -- Spread the connections' phases evenly over one interval.
  due = tonumber(args[3]) + interval_us * (tid + 0.5) / nthreads
end
function delay()
  if due >= end_at then return 3600000 end
  local wait = due - now_us()
  if wait <= 0 then
    late = late + 1
    return 0
  end
  return math.floor(wait / 1000)
end
function request()
  sent = now_us()
  return next_request()
end
function response(status, headers, body)
  -- From the due time; the timer's millisecond rounding may send up to 1 ms early.
  lat[#lat + 1] = now_us() - math.min(due, sent)
  if status ~= 200 then bad = bad + 1 end
  due = due + interval_us
end
function done(summary, latency, requests)
  local out = assert(io.open(os.getenv("BENCH_LATENCY_FILE"), "w"))
  local total_late, total_bad = 0, 0
  for _, thread in ipairs(all_threads) do
    total_late = total_late + thread:get("late")
    total_bad = total_bad + thread:get("bad")
  end
  out:write(string.format("# late %d bad %d\n", total_late, total_bad))
  for _, thread in ipairs(all_threads) do
    for _, v in ipairs(thread:get("lat")) do out:write(string.format("%.0f\n", v)) end
  end
  out:close()
end
"""
)


def ensure_wrk() -> str | None:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"],
            check=False,
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    return shutil.which("wrk")


def phone(i: int) -> str:
    return f"+1415{i:07d}"


def write_requests(
    sim: TwilioSimulator, path: Path, count: int, phones: int, *, start: int = 0
) -> None:
    """Distinct signed inbound webhooks ``start`` to ``count`` (appended when ``start`` is not
    0), round-robin over ``phones`` customers."""
    with path.open("a" if start else "w") as out:
        for i in range(start, count):
            form = sim.inbound_form(phone(10_000 + i % phones), BODY)
            body, headers = sim.signed_request(form)
            out.write(f"{headers['X-Twilio-Signature']} {body.decode()}\n")


@dataclass
class LoadResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    errors: int
    #: Paced runs only: requests whose due time had passed when their connection was free.
    late: int = 0
    #: Paced runs only: the schedule's first and last due times, wall clock.
    started_at: float = 0.0
    ended_at: float = 0.0


def _script(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text.replace("__PATH__", WEBHOOK_PATH))
    return path


def split_requests(requests_file: Path, parts: int) -> str:
    """The file dealt round-robin into ``parts`` files (one per wrk thread, so no thread reads
    lines it will not send); returns their common prefix, to which the thread id is appended."""
    prefix = requests_file.parent / f"{requests_file.stem}-{parts}-"
    stamp = requests_file.with_name(f"{requests_file.stem}-{parts}.done")
    source_mtime = requests_file.stat().st_mtime_ns
    if not stamp.exists() or stamp.read_text() != str(source_mtime):
        with contextlib.ExitStack() as stack:
            outs = [stack.enter_context(Path(f"{prefix}{i}.txt").open("w")) for i in range(parts)]
            with requests_file.open() as lines:
                for i, line in enumerate(lines):
                    outs[i % parts].write(line)
        stamp.write_text(str(source_mtime))
    return str(prefix)


def run_max(
    wrk: str, port: int, requests_file: Path, seconds: float, connections: int = 64
) -> LoadResult:
    """Closed loop, 2 threads: the most the server answers."""
    script = _script(requests_file.parent, "max.lua", _MAX_LUA)
    out = subprocess.run(
        [
            wrk,
            "-t2",
            f"-c{connections}",
            f"-d{seconds:.0f}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
            "--",
            split_requests(requests_file, 2),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 120,
    ).stdout
    return parse_wrk(out)


def paced_connections(rate: float) -> int:
    """One connection per 100 requests/s: slots 10 ms apart on each, between 8 and 64."""
    return max(8, min(64, math.ceil(rate / 100)))


def run_paced(wrk: str, port: int, requests_file: Path, seconds: float, rate: float) -> LoadResult:
    """Open loop at ``rate`` requests/s for ``seconds``; latency from each request's due time."""
    connections = paced_connections(rate)
    script = _script(requests_file.parent, "paced.lua", _PACED_LUA)
    latency_file = requests_file.parent / "paced-latency.txt"
    prefix = split_requests(requests_file, connections)
    # Leave time for every wrk thread to load its file before the schedule starts.
    lead = 0.5 + 0.02 * connections
    start_mono = time.monotonic() + lead
    start_wall = time.time() + lead
    subprocess.run(
        [
            wrk,
            f"-t{connections}",
            f"-c{connections}",
            f"-d{math.ceil(lead + seconds + 1)}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
            "--",
            prefix,
            f"{rate / connections:.6f}",
            f"{start_mono * 1e6:.0f}",
            f"{(start_mono + seconds) * 1e6:.0f}",
            str(connections),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 120,
        env={**os.environ, "BENCH_LATENCY_FILE": str(latency_file)},
    )
    lines = latency_file.read_text().splitlines()
    header = lines[0].split()
    values = sorted(float(v) / 1000 for v in lines[1:])
    return LoadResult(
        requests=len(values),
        rps=len(values) / seconds,
        p50_ms=percentile(values, 50),
        p99_ms=percentile(values, 99),
        max_ms=values[-1] if values else 0.0,
        non_2xx=int(header[4]),
        errors=0,
        late=int(header[2]),
        started_at=start_wall,
        ended_at=start_wall + seconds,
    )


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _ms(value: str) -> float:
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
    for unit in ("us", "ms", "s", "m"):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * units[unit]
    return float(value)


def parse_wrk(out: str) -> LoadResult:
    result = LoadResult(0, 0.0, 0.0, 0.0, 0.0, 0, 0)
    for line in out.splitlines():
        parts = line.split()
        stripped = line.strip()
        if stripped.startswith("50%"):
            result.p50_ms = _ms(parts[1])
        elif stripped.startswith("99%"):
            result.p99_ms = _ms(parts[1])
        elif stripped.startswith("Latency") and len(parts) >= 4:
            result.max_ms = _ms(parts[3])
        elif line.startswith("Requests/sec:"):
            result.rps = float(parts[1])
        elif "Non-2xx" in line:
            result.non_2xx = int(parts[-1])
        elif "requests in" in line:
            result.requests = int(parts[0])
        elif stripped.startswith("Socket errors"):
            result.errors = sum(int(p.rstrip(",")) for p in parts if p.rstrip(",").isdigit())
    return result


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
