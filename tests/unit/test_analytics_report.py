"""The report's arithmetic on hand-made rollups, the bucket rules the Lua scripts share, and
the day ranges the API accepts."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from wa_sessions.analytics.buckets import MESSAGES_BOUNDS, bucket_of, lua_buckets, quantile
from wa_sessions.analytics.report import MAX_DAYS, Rollups, build_report, day_range
from wa_sessions.errors import InvalidDayRange
from wa_sessions.statemachine.redis import scripts

DAY = date(2026, 1, 1)


def test_a_value_on_a_bound_falls_in_that_bound_s_bucket() -> None:
    """Bounds are inclusive upper bounds; above the last is the overflow bucket."""
    bounds = (1, 5)
    assert [bucket_of(bounds, v) for v in (0, 1, 1.5, 5, 6)] == [0, 0, 1, 1, 2]


def test_quantiles_interpolate_inside_their_bucket_and_floor_in_the_overflow() -> None:
    """Linear inside the bucket; the overflow bucket answers its lower bound."""
    bounds = (10, 20)
    assert quantile(bounds, [0, 4, 0], 0.5) == pytest.approx(15)
    assert quantile(bounds, [2, 2, 0], 0.5) == pytest.approx(10)
    assert quantile(bounds, [0, 0, 3], 0.95) == 20
    assert quantile(bounds, [0, 0, 0], 0.5) is None


def test_the_scripts_get_the_same_bounds_in_their_units() -> None:
    """Durations and reply times in ms, message counts as they are."""
    lua = lua_buckets()
    assert "local RB_DURATION = {60000, 300000," in lua
    assert "local RB_REPLY = {500, 1000," in lua
    assert "local RB_MESSAGES = {" + ", ".join(str(int(b)) for b in MESSAGES_BOUNDS) + "}" in lua


def test_the_report_sums_numbers_and_hours_and_derives_its_shares() -> None:
    """Two numbers' hours summed: totals, per-day figures, order share over ended sessions,
    delivery success over outcomes, top items by quantity then name."""
    rollups = Rollups()
    noon = datetime(2026, 1, 1, 12, tzinfo=UTC)
    rollups.add_hour(noon, {"started": "3", "end:completed": "2", "ordered": "1"})
    rollups.add_hour(noon, {"started": "1", "end:expired": "2", "delivered": "3", "failed": "1"})
    rollups.add_hour(noon, {"d:0": "4", "r:2": "2", "read": "2"})
    rollups.add_items([("pizza", 2.0), ("apples", 5.0)])
    rollups.add_items([("pizza", 3.0), ("bread", 5.0)])

    report = build_report(
        rollups, first=DAY, last=DAY, business_number=None, business_numbers=["b", "a"]
    )

    assert (report.started, report.completed, report.expired) == (4, 2, 2)
    assert [(d.started, d.completed, d.expired) for d in report.days] == [(4, 2, 2)]
    assert report.hours[12].started == 4
    assert report.hours[11].started == 0
    assert report.order_share == pytest.approx(1 / 4)
    assert report.delivery.success_rate == pytest.approx(3 / 4)
    assert report.delivery.read == 2
    assert report.duration_seconds.buckets[0].count == 4
    assert report.duration_seconds.p50 == pytest.approx(30)
    assert report.reply_seconds.count == 2
    assert [(i.name, i.quantity) for i in report.top_items] == [
        ("apples", 5),
        ("bread", 5),
        ("pizza", 5),
    ]
    assert report.business_numbers == ["a", "b"]


def test_an_empty_range_reports_zeros_and_no_shares() -> None:
    """Nothing counted: zeros, and None for shares and percentiles (not a division by 0)."""
    report = build_report(
        Rollups(), first=DAY, last=DAY, business_number="x", business_numbers=["x"]
    )

    assert (report.started, report.order_share, report.delivery.success_rate) == (0, None, None)
    assert report.reply_seconds.p50 is None


def test_a_range_of_the_maximum_length_is_accepted_and_one_more_day_is_not() -> None:
    """MAX_DAYS days inclusive pass; MAX_DAYS + 1 are refused."""
    first = date(2026, 1, 1)
    last = date.fromordinal(first.toordinal() + MAX_DAYS - 1)
    assert day_range(first.isoformat(), last.isoformat(), today=DAY) == (first, last)
    with pytest.raises(InvalidDayRange, match=f"at most {MAX_DAYS}"):
        day_range("2025-12-31", last.isoformat(), today=DAY)


@pytest.mark.parametrize("value", ["2026-1-1", "20260101", "2026-02-30", "", "2026-01-01T00"])
def test_anything_but_a_yyyy_mm_dd_date_is_refused(value: str) -> None:
    """Short forms, impossible dates and datetimes are not days."""
    with pytest.raises(InvalidDayRange, match="from must be a date"):
        day_range(value or "x", "2026-03-01", today=DAY)


def test_every_script_with_the_sessions_or_delivery_library_loads_the_rollups_first() -> None:
    """Those libraries count in the analytics: a script without ``rollups`` before them would
    fail the first time it opens or ends a session."""
    for name in scripts.NAMES:
        uses = scripts.spec(name).uses
        if {"sessions", "delivery"} & set(uses):
            assert "rollups" in uses, name
            assert uses.index("rollups") < min(
                uses.index(lib) for lib in ("sessions", "delivery") if lib in uses
            ), name
