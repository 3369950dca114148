"""Charts of an ``AnalyticsReport`` drawn server-side as SVG strings: pure functions, no
JavaScript, no external resources, so a page can inline them (and a phone's browser draws them
at once). Each chart is an ``<svg role="img">`` with an ``aria-label`` and a ``<title>``, a
``<desc>`` that states its figures in words, and a ``<title>`` on every bar for a tooltip; every
text from data is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from wa_sessions.analytics.report import Distribution, HourFigures, TopItem

WIDTH = 640
HEIGHT = 240
#: Room for the axis labels: left, right, top, bottom.
PAD_L, PAD_R, PAD_T, PAD_B = 44, 12, 28, 40
#: Outcome colours, each dark enough for 4.5:1 against white (WCAG AA) as text.
COLOURS = {"started": "#1f4e99", "completed": "#1b6e35", "expired": "#9a4a06"}
BAR_COLOUR = "#1f4e99"
TEXT = "#222222"


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float]
    colour: str


def svg_sessions(rows: Sequence[HourFigures], *, title: str, hourly: bool = True) -> str:
    """Sessions per hour (or per day) by outcome: started, completed and expired side by
    side for each period."""
    labels = [row.start.strftime("%m-%d %H:00" if hourly else "%Y-%m-%d") for row in rows]
    series = [
        Series(name, [getattr(row, name) for row in rows], colour)
        for name, colour in COLOURS.items()
    ]
    return svg_bars(labels, series, title=title)


def svg_bars(labels: Sequence[str], series: Sequence[Series], *, title: str, note: str = "") -> str:
    """Grouped vertical bars: one group per label, one bar per series, a legend above;
    ``note`` ends the description."""
    top = max((v for s in series for v in s.values), default=0) or 1
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B
    group_w = plot_w / max(len(labels), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    totals = ", ".join(f"{s.name} {_number(sum(s.values))}" for s in series)
    parts = [_open(title, f"{title}: {totals} over {len(labels)} periods.{note}")]
    parts += _axis(top, plot_h)
    for x, (name, colour) in enumerate((s.name, s.colour) for s in series):
        parts.append(_legend(PAD_L + x * 110, 14, name, colour))
    for index, label in enumerate(labels):
        x0 = PAD_L + index * group_w + group_w * 0.1
        for k, s in enumerate(series):
            value = s.values[index]
            h = plot_h * value / top
            parts.append(
                _rect(
                    x0 + k * bar_w,
                    PAD_T + plot_h - h,
                    bar_w,
                    h,
                    s.colour,
                    f"{label}: {s.name} {_number(value)}",
                )
            )
    for index in _label_indexes(len(labels)):
        label_x = PAD_L + (index + 0.5) * group_w
        parts.append(_text(label_x, HEIGHT - PAD_B + 14, labels[index], anchor="middle"))
    parts.append("</svg>")
    return "".join(parts)


def svg_histogram(distribution: Distribution, *, title: str, counted: str = "sessions") -> str:
    """A distribution's bucket counts as bars (of ``counted``), labelled by their upper
    bounds, with its p50/p95 in the description."""
    counts = [b.count for b in distribution.buckets]
    unit = distribution.unit
    note = f" p50 {estimate(distribution.p50, unit)}, p95 {estimate(distribution.p95, unit)}."
    return svg_bars(
        bucket_labels(distribution), [Series(counted, counts, BAR_COLOUR)], title=title, note=note
    )


def bucket_labels(distribution: Distribution) -> list[str]:
    """Each bucket's label (``≤5 min``, the last ``>48 h``): the chart's and its table's."""
    uppers = [b.upper for b in distribution.buckets]
    return [
        _bound_label(upper, distribution.unit, uppers[i - 1] if i else None)
        for i, upper in enumerate(uppers)
    ]


def svg_top_items(items: Sequence[TopItem], *, title: str) -> str:
    """The most ordered items as horizontal bars, name on the left, quantity at the bar's end."""
    row_h = 24
    height = PAD_T + row_h * max(len(items), 1) + 8
    name_w = 180
    plot_w = WIDTH - name_w - 60
    top = max((item.quantity for item in items), default=0) or 1
    listed = "; ".join(f"{item.name} {_number(item.quantity)}" for item in items) or "none"
    parts = [_open(title, f"{title}: {listed}.", height=height)]
    if not items:
        parts.append(_text(PAD_L, PAD_T + 16, "No orders in this range."))
    for index, item in enumerate(items):
        y = PAD_T + index * row_h
        w = plot_w * item.quantity / top
        parts.append(_text(name_w - 8, y + 16, _clip(item.name, 26), anchor="end"))
        parts.append(
            _rect(name_w, y + 4, w, row_h - 8, BAR_COLOUR, f"{item.name}: {_number(item.quantity)}")
        )
        parts.append(_text(name_w + w + 6, y + 16, _number(item.quantity)))
    parts.append("</svg>")
    return "".join(parts)


def _open(title: str, desc: str, *, height: int = HEIGHT) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" aria-label={quoteattr(title)} '
        f'font-family="sans-serif" font-size="11" fill="{TEXT}">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>"
    )


def _axis(top: float, plot_h: float) -> list[str]:
    base = PAD_T + plot_h
    return [
        f'<line x1="{PAD_L}" y1="{base}" x2="{WIDTH - PAD_R}" y2="{base}" stroke="{TEXT}"/>',
        f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{base}" stroke="{TEXT}"/>',
        _text(PAD_L - 4, PAD_T + 4, _number(top), anchor="end"),
        _text(PAD_L - 4, base, "0", anchor="end"),
    ]


def _legend(x: float, y: float, name: str, colour: str) -> str:
    return f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{colour}"/>' + _text(
        x + 14, y, name
    )


def _rect(x: float, y: float, w: float, h: float, colour: str, tip: str) -> str:
    return (
        f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
        f'fill="{colour}"><title>{escape(tip)}</title></rect>'
    )


def _text(x: float, y: float, value: str, *, anchor: str = "start") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{escape(value)}</text>'


def _label_indexes(n: int, most: int = 8) -> range:
    """Which x labels to write: at most ``most``, evenly spaced, so they never overlap."""
    return range(0, n, max(1, -(-n // most)))


def _bound_label(upper: float | None, unit: str, previous: float | None) -> str:
    if upper is None:
        return f">{_amount(previous or 0, unit)}"
    return f"≤{_amount(upper, unit)}"


def _amount(value: float, unit: str) -> str:
    if unit != "seconds":
        return _number(value)
    for size, suffix in ((86400, "d"), (3600, "h"), (60, "min")):
        if value >= size:
            return f"{_number(value / size)} {suffix}"
    return f"{_number(value)} s"


def estimate(value: float | None, unit: str) -> str:
    """A percentile for people: ``3.5 s``, ``1.5 h``, ``n/a`` when nothing was counted."""
    return "n/a" if value is None else _amount(round(value, 1), unit)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _clip(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"
