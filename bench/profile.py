"""Where the time goes: py-spy samples of the service's processes under load, summarised into
the functions and libraries that use the CPU (py-spy is optional; without it, no profiles).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(pids: list[int], seconds: float, out: Path) -> list[subprocess.Popen[bytes]]:
    """Starts one sampler per process (100 Hz, without pausing it); each writes ``-f raw``."""
    exe = py_spy()
    if exe is None:
        return []
    return [
        subprocess.Popen(
            [
                exe,
                "record",
                "--nonblocking",
                "--gil",
                "-r",
                "100",
                "-d",
                f"{seconds:.0f}",
                "-f",
                "raw",
                "-o",
                str(out.with_name(f"{out.stem}-{pid}.txt")),
                "-p",
                str(pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]


def wait(samplers: list[subprocess.Popen[bytes]]) -> None:
    for sampler in samplers:
        sampler.wait(timeout=120)


@dataclass
class Profile:
    samples: int
    #: Share of samples whose innermost frame is this function.
    own: list[tuple[str, float]]
    #: Share of samples with this function anywhere on the stack.
    inclusive: list[tuple[str, float]]
    #: Share of samples by the library of the innermost frame.
    libraries: list[tuple[str, float]]


def _function(frame: str) -> str:
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    return f"{name} ({path})"


def _library(frame: str) -> str:
    _, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    if "/" not in path:
        return path or "?"
    head = path.split("/")[0]
    return head.removesuffix(".py")


def summarize(paths: list[Path], top: int = 12) -> Profile:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    total = 0
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            total += count
            own[_function(frames[-1])] += count
            libraries[_library(frames[-1])] += count
            for name in {_function(f) for f in frames}:
                inclusive[name] += count

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, n / total) for name, n in counter.most_common(top)] if total else []

    interesting = Counter(
        {
            name: n
            for name, n in inclusive.items()
            if "wa_sessions/" in name or "dramatiq/" in name or "starlette/" in name
        }
    )
    return Profile(total, shares(own), shares(interesting), shares(libraries))


def markdown(title: str, profile: Profile) -> list[str]:
    if not profile.samples:
        return [f"### {title}", "", "no samples (py-spy missing or not permitted)", ""]
    lines = [
        f"### {title}",
        "",
        f"{profile.samples} samples at 100 Hz of threads holding the GIL (Python's CPU time).",
        "",
    ]
    lines += ["| own time (innermost frame) | share |", "| --- | --- |"]
    lines += [f"| `{name}` | {share:.0%} |" for name, share in profile.own]
    lines += ["", "| library of the innermost frame | share |", "| --- | --- |"]
    lines += [f"| {name} | {share:.0%} |" for name, share in profile.libraries]
    lines += ["", "| ours, Dramatiq's and Starlette's, inclusive | share |", "| --- | --- |"]
    lines += [f"| `{name}` | {share:.0%} |" for name, share in profile.inclusive]
    lines.append("")
    return lines
