"""The SVG charts parse as XML, carry their accessible names, draw one bar per figure at the
right scale, escape every text from data and contain no script."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from wa_sessions.analytics.report import Bucket, Distribution, HourFigures, TopItem
from wa_sessions.analytics.svg import (
    HEIGHT,
    PAD_B,
    PAD_T,
    svg_histogram,
    svg_sessions,
    svg_top_items,
)

NS = "{http://www.w3.org/2000/svg}"
START = datetime(2026, 1, 1, 12, tzinfo=UTC)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 (the module's own output, not untrusted input)


def bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{NS}rect") if r.get("class") == "bar"]


def tip(bar: ET.Element) -> str:
    title = bar.find(f"{NS}title")
    assert title is not None
    assert title.text is not None
    return title.text


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{NS}text")]


def test_the_sessions_chart_draws_three_outcome_bars_per_hour_to_scale() -> None:
    """Two hours: six bars (started, completed, expired), the largest value the full plot
    height, each bar's tooltip naming its hour, outcome and value."""
    rows = [
        HourFigures(start=START, started=4, completed=2, expired=0),
        HourFigures(start=START + timedelta(hours=1), started=1, completed=0, expired=3),
    ]

    root = parse(svg_sessions(rows, title="Sessions per hour"))

    assert root.get("role") == "img"
    assert root.get("aria-label") == "Sessions per hour"
    assert root.findtext(f"{NS}title") == "Sessions per hour"
    assert "started 5, completed 2, expired 3" in (root.findtext(f"{NS}desc") or "")
    drawn = bars(root)
    assert [tip(b) for b in drawn] == [
        "01-01 12:00: started 4",
        "01-01 12:00: completed 2",
        "01-01 12:00: expired 0",
        "01-01 13:00: started 1",
        "01-01 13:00: completed 0",
        "01-01 13:00: expired 3",
    ]
    heights = [float(b.get("height", "nan")) for b in drawn]
    assert heights[0] == HEIGHT - PAD_T - PAD_B
    assert heights[1] == heights[0] / 2
    assert heights[2] == 0
    assert {"started", "completed", "expired"} <= set(texts(root))


def test_a_histogram_labels_its_buckets_by_upper_bound_and_states_its_percentiles() -> None:
    """Buckets of seconds read as ≤1 min, ≤5 min and >5 min; p50 and p95 are in the desc."""
    distribution = Distribution(
        unit="seconds",
        count=6,
        buckets=[
            Bucket(upper=60, count=1),
            Bucket(upper=300, count=4),
            Bucket(upper=None, count=1),
        ],
        p50=150.0,
        p95=300.0,
    )

    root = parse(svg_histogram(distribution, title="Session duration"))

    assert [tip(b) for b in bars(root)] == [
        "≤1 min: sessions 1",
        "≤5 min: sessions 4",
        ">5 min: sessions 1",
    ]
    assert "p50 2.5 min, p95 5 min" in (root.findtext(f"{NS}desc") or "")


def test_an_empty_histogram_says_so_instead_of_inventing_percentiles() -> None:
    """No counts: flat bars and ``n/a`` percentiles."""
    distribution = Distribution(
        unit="messages", count=0, buckets=[Bucket(upper=1, count=0)], p50=None, p95=None
    )

    root = parse(svg_histogram(distribution, title="Messages per session"))

    assert "p50 n/a, p95 n/a" in (root.findtext(f"{NS}desc") or "")
    assert [float(b.get("height", "nan")) for b in bars(root)] == [0.0]


def test_the_top_items_are_horizontal_bars_longest_first() -> None:
    """Each item has its name, a bar proportional to its quantity and the quantity written."""
    items = [TopItem(name="pizza", quantity=8), TopItem(name="apples", quantity=2)]

    root = parse(svg_top_items(items, title="Most ordered"))

    widths = [float(b.get("width", "nan")) for b in bars(root)]
    assert widths[0] == 4 * widths[1]
    assert [tip(b) for b in bars(root)] == ["pizza: 8", "apples: 2"]
    assert texts(root) == ["pizza", "8", "apples", "2"]


def test_no_items_draw_a_sentence_not_an_empty_frame() -> None:
    """A range without orders draws a sentence saying so."""
    root = parse(svg_top_items([], title="Most ordered"))

    assert bars(root) == []
    assert texts(root) == ["No orders in this range."]


def test_text_from_data_is_escaped_and_no_chart_carries_script() -> None:
    """An item named like markup stays text: the SVG parses, the name reads back as written,
    and there is no script element or event attribute anywhere."""
    name = '<script>alert("x")</script> & "Tom\'s"'
    svgs = [
        svg_top_items([TopItem(name=name, quantity=1)], title=name),
        svg_sessions([HourFigures(start=START)], title=name),
    ]

    for svg in svgs:
        root = parse(svg)
        assert root.get("aria-label") == name
        assert root.findtext(f"{NS}title") == name
        for element in root.iter():
            assert not element.tag.endswith("script")
            assert not any(attribute.startswith("on") for attribute in element.attrib)
    assert tip(bars(parse(svgs[0]))[0]) == f"{name}: 1"
