"""Figures as text: min / median / max of the runs, targets with met or missed, and the header
that says where and when they were taken."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path


def spread(values: Iterable[float], fmt: str = "{:.1f}") -> str:
    """``min / median / max``."""
    vals = list(values)
    if not vals:
        return "n/a"
    return " / ".join(fmt.format(v) for v in (min(vals), statistics.median(vals), max(vals)))


def pct(values: Iterable[float]) -> str:
    return spread([v * 100 for v in values], "{:.0f}%")


def median(values: Iterable[float]) -> float:
    vals = list(values)
    return statistics.median(vals) if vals else 0.0


@dataclass
class Target:
    name: str
    measured: str
    met: bool

    @property
    def verdict(self) -> str:
        return "met" if self.met else "**missed**"


class Document:
    """Markdown lines, echoed to stdout as they are written."""

    def __init__(self, echo: Callable[[str], None] = print) -> None:
        self.lines: list[str] = []
        self.echo = echo

    def __call__(self, text: str = "") -> None:
        self.echo(text)
        self.lines.append(text)

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self("| " + " | ".join(header) + " |")
        self("|" + " --- |" * len(header))
        for row in rows:
            self("| " + " | ".join(row) + " |")
        self()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def wrk_version(wrk: str | None) -> str:
    if wrk is None:
        return "not installed"
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).splitlines()
    return first[0].split(" [")[0] if first else "?"


def header(doc: Document, *, redis_version: str, wrk: str | None, runs: int, argv: str) -> None:
    load = os.getloadavg()
    doc("# Benchmarks")
    doc()
    doc(
        "Written by `./run bench` (`bench/`); every figure is min / median / max of "
        f"{runs} runs, beside the baseline it is compared with, measured in the same run."
    )
    doc()
    doc(f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; command: `./run bench{argv}`")
    doc(
        f"- machine: {_cpu_model()}, {os.cpu_count()} cores, "
        f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, "
        f"{platform.platform()}"
    )
    doc(f"- load average when the run began: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    doc(
        f"- Python {platform.python_version()}, Redis {redis_version}, {wrk_version(wrk)}, "
        + ", ".join(
            f"{p} {_version(p)}"
            for p in (
                "dramatiq",
                "redis",
                "hiredis",
                "uvicorn",
                "uvloop",
                "httptools",
                "starlette",
                "fastapi",
                "pydantic",
            )
        )
    )


def splice_block(path: Path, block: list[str], begin: str, end: str) -> list[str]:
    """The file's lines with the block between ``begin`` and ``end`` replaced by ``block`` (or
    ``block`` inserted before the hand-written findings, or at the end, when it has none)."""
    lines = path.read_text().splitlines() if path.exists() else []
    if begin in lines and end in lines:
        start, stop = lines.index(begin), lines.index(end)
        return lines[:start] + block + lines[stop + 1 :]
    findings = next((i for i, line in enumerate(lines) if line.startswith("## Findings")), None)
    if findings is None:
        return [*lines, "", *block]
    return lines[:findings] + block + [""] + lines[findings:]
