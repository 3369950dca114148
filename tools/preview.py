"""A picture of the dashboard without Grafana: its panels' queries run against a Prometheus and
drawn as SVG, in the dashboard's own layout.

Grafana is not packaged in Debian's main archive, so the README's picture comes from here:
``python -m tools.preview --prometheus http://127.0.0.1:9090 -o docs/dashboard.svg``.
Lines and numbers are what Grafana would plot from the same queries; the styling is not Grafana's.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from tools import dashboard

_COLORS = ("#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#f2495c", "#b877d9", "#8ab8ff", "#fade2a")
_CELL_W = 50  # pixels per Grafana grid column (24 columns)
_CELL_H = 30  # pixels per Grafana grid row
_BG = "#111217"
_PANEL = "#181b1f"
_TEXT = "#ccccdc"
_MUTED = "#8e8e99"


@dataclass(frozen=True)
class Series:
    label: str
    points: list[tuple[float, float]]


def _legend(template: str, labels: dict[str, str]) -> str:
    text = template
    for name, value in labels.items():
        text = text.replace("{{" + name + "}}", value)
    while "{{" in text and "}}" in text:
        start, end = text.index("{{"), text.index("}}")
        text = text[:start] + text[end + 2 :]
    return text.strip() or "none"


def query_range(
    base_url: str, expr: str, start: float, end: float, step: float, rate_interval: str
) -> list[dict[str, Any]]:
    """Samples of one query over a range, with Grafana's variables filled in."""
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__range", "1h")
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    url = f"{base_url.rstrip('/')}/api/v1/query_range?{params}"
    with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - operator-given URL
        body = json.loads(resp.read())
    if body.get("status") != "success":
        raise RuntimeError(f"query failed: {expr}: {body}")
    return list(body["data"]["result"])


def panel_series(
    base_url: str, panel: dashboard.Panel, start: float, end: float, step: float, rate: str
) -> list[Series]:
    series = []
    for target in panel.targets:
        for result in query_range(base_url, target.expr, start, end, step, rate):
            points = [(float(t), float(v)) for t, v in result["values"] if math.isfinite(float(v))]
            series.append(Series(_legend(target.legend, result["metric"]), points))
    return series


def _fmt(value: float, unit: str) -> str:
    if unit == "percentunit":
        return f"{value * 100:.0f}%"
    if unit == "s":
        if value and abs(value) < 1:
            return f"{value * 1000:.0f} ms"
        return f"{value:.1f} s" if abs(value) < 120 else f"{value / 60:.0f} min"
    if unit == "reqps":
        return f"{value:.2f}/s" if abs(value) < 10 else f"{value:.0f}/s"
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"


def _panel_svg(panel: dashboard.Panel, grid: dict[str, int], series: list[Series]) -> str:
    x, y = grid["x"] * _CELL_W + 6, grid["y"] * _CELL_H + 6
    w, h = grid["w"] * _CELL_W - 12, grid["h"] * _CELL_H - 12
    parts = [
        f'<g transform="translate({x},{y})">',
        f'<rect width="{w}" height="{h}" rx="3" fill="{_PANEL}" stroke="#2c3235"/>',
        f'<text x="10" y="20" fill="{_TEXT}" font-size="13" font-weight="600">'
        f"{escape(panel.title)}</text>",
    ]
    values = [v for s in series for _, v in s.points]
    if not values:
        parts.append(
            f'<text x="{w / 2}" y="{h / 2}" fill="{_MUTED}" text-anchor="middle">No data</text>'
        )
    elif panel.kind == "stat":
        last = series[0].points[-1][1] if series[0].points else values[-1]
        parts.append(
            f'<text x="{w / 2}" y="{h / 2 + 20}" fill="#73bf69" font-size="48" font-weight="600" '
            f'text-anchor="middle">{escape(_fmt(last, panel.unit))}</text>'
        )
    else:
        parts.extend(_plot(series, panel.unit, w, h))
    parts.append("</g>")
    return "\n".join(parts)


def _plot(series: list[Series], unit: str, w: int, h: int) -> list[str]:
    left, right, top, bottom = 58, 10, 32, 24 + 14 * min(len(series), 4)
    times = [t for s in series for t, _ in s.points]
    values = [v for s in series for _, v in s.points]
    t0, t1 = min(times), max(times)
    low, high = min(0.0, min(values)), max(values)
    if high == low:
        high = low + 1
    plot_w, plot_h = w - left - right, h - top - bottom

    def px(t: float, v: float) -> str:
        fx = left + (t - t0) / ((t1 - t0) or 1) * plot_w
        fy = top + plot_h - (v - low) / (high - low) * plot_h
        return f"{fx:.1f},{fy:.1f}"

    out = []
    for frac in (0.0, 0.5, 1.0):
        gy = top + plot_h - frac * plot_h
        label = _fmt(low + frac * (high - low), unit)
        out.append(
            f'<line x1="{left}" x2="{w - right}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#2c3235"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{gy + 4:.1f}" fill="{_MUTED}" font-size="10" '
            f'text-anchor="end">{escape(label)}</text>'
        )
    for n, s in enumerate(series):
        color = _COLORS[n % len(_COLORS)]
        if s.points:
            path = " ".join(px(t, v) for t, v in s.points)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.6"/>'
            )
        if n < 4:
            ly = h - bottom + 22 + 14 * n
            out.append(f'<rect x="{left}" y="{ly - 8}" width="10" height="3" fill="{color}"/>')
            out.append(
                f'<text x="{left + 16}" y="{ly - 3}" fill="{_TEXT}" font-size="10">'
                f"{escape(s.label)}</text>"
            )
    return out


def render_svg(base_url: str, *, minutes: float, rate_interval: str) -> str:
    """The whole dashboard over the last ``minutes``, as one SVG document."""
    model = dashboard.build_dashboard()
    end = time.time()
    start = end - minutes * 60
    step = max(1.0, minutes * 60 / 240)
    panels = []
    bottom = 0
    for panel, body in zip(dashboard.PANELS, model["panels"], strict=True):
        series = panel_series(base_url, panel, start, end, step, rate_interval)
        grid = body["gridPos"]
        bottom = max(bottom, grid["y"] + grid["h"])
        panels.append(_panel_svg(panel, grid, series))
    width, height = 24 * _CELL_W, bottom * _CELL_H + 40
    header = (
        f'<text x="8" y="{height - 14}" fill="{_MUTED}" font-size="11">'
        f"{escape(model['title'])}: last {minutes:g} min, queries from "
        f"tools/dashboard.py run against Prometheus</text>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="Inter, Helvetica, Arial, sans-serif">\n'
        f'<rect width="100%" height="100%" fill="{_BG}"/>\n'
        + "\n".join(panels)
        + "\n"
        + header
        + "\n</svg>\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.preview")
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus URL")
    parser.add_argument("--minutes", type=float, default=10.0, help="time range to draw")
    parser.add_argument("--rate-interval", default="1m", help="stands in for $__rate_interval")
    parser.add_argument("--output", "-o", type=Path, default=Path("docs/dashboard.svg"))
    args = parser.parse_args(argv)
    svg = render_svg(args.prometheus, minutes=args.minutes, rate_interval=args.rate_interval)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(svg)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
