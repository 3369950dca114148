"""The console's analytics page: the ``AnalyticsReport`` of a range of UTC days and one
business number (or all), as inline SVG charts drawn server-side (``analytics/svg.py``), each
with a table or a sentence carrying the same figures for screen readers. The charts hold no
script and no ``style``: their colours are presentation attributes, which the console's
policy (``pages._policy``, ``style-src 'self'``) does not govern."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from markupsafe import Markup
from starlette.responses import Response

from wa_sessions.analytics.reader import AnalyticsReader
from wa_sessions.analytics.report import (
    MAX_DAYS,
    AnalyticsReport,
    Distribution,
    HourFigures,
    day_range,
)
from wa_sessions.analytics.svg import (
    bucket_labels,
    estimate,
    svg_histogram,
    svg_sessions,
    svg_top_items,
)
from wa_sessions.console.auth import ConsoleRefusal, Operator, require_operator
from wa_sessions.console.context import ConsoleContext
from wa_sessions.console.pages import PREFIX
from wa_sessions.errors import InvalidDayRange, InvalidPhoneNumber
from wa_sessions.statemachine.identity import normalize_address

#: Up to this many days the sessions chart has a group of bars per hour (72 groups of three
#: bars in the chart's 584 pixels); beyond, per day: a week's 168 groups drew hairlines.
HOURLY_MAX_DAYS = 3


class BadDayRange(ConsoleRefusal):
    """Counted under the session API's code for the same problem."""

    code = InvalidDayRange.code
    title = "Bad day range"


@dataclass(frozen=True, slots=True)
class Histogram:
    """A distribution's chart and, for its table, each bucket's label and count."""

    chart: Markup
    rows: list[tuple[str, int]]
    p50: str
    p95: str

    @classmethod
    def of(cls, distribution: Distribution, title: str, counted: str = "sessions") -> Histogram:
        counts = [bucket.count for bucket in distribution.buckets]
        return cls(
            chart=_chart(svg_histogram(distribution, title=title, counted=counted)),
            rows=list(zip(bucket_labels(distribution), counts, strict=True)),
            p50=estimate(distribution.p50, distribution.unit),
            p95=estimate(distribution.p95, distribution.unit),
        )


@dataclass(frozen=True, slots=True)
class AnalyticsView:
    """What ``analytics.html`` shows of one report."""

    report: AnalyticsReport
    hourly: bool
    sessions_chart: Markup
    #: The sessions chart's figures: every day, or the hours with something started or ended.
    session_rows: list[HourFigures]
    duration: Histogram
    messages: Histogram
    replies: Histogram
    items_chart: Markup

    @classmethod
    def of(cls, report: AnalyticsReport) -> AnalyticsView:
        hourly = (report.to_day - report.from_day).days + 1 <= HOURLY_MAX_DAYS
        period = "hour" if hourly else "day"
        rows = [h for h in report.hours if h.started or h.completed or h.expired]
        return cls(
            report=report,
            hourly=hourly,
            sessions_chart=_chart(
                svg_sessions(
                    report.hours if hourly else report.days,
                    title=f"Sessions started and ended per {period}",
                    hourly=hourly,
                )
            ),
            session_rows=rows if hourly else report.days,
            duration=Histogram.of(report.duration_seconds, "Session duration"),
            messages=Histogram.of(report.messages_per_session, "Messages per session"),
            replies=Histogram.of(report.reply_seconds, "Message to reply time", "replies"),
            items_chart=_chart(svg_top_items(report.top_items, title="Most ordered items")),
        )


def _chart(svg: str) -> Markup:
    """A chart inlined as it is: ``analytics/svg.py`` escapes every text it draws from data
    (item names included), and its tests parse the result as XML."""
    return Markup(svg)  # noqa: S704


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def analytics_routes(ctx: ConsoleContext) -> APIRouter:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    service = ctx.service
    reader = AnalyticsReader(service.store.client, service.store.keys)

    @router.get("/analytics")
    def analytics(
        request: Request,
        _: Annotated[Operator, Depends(require_operator)],
        first: Annotated[str, Query(alias="from", max_length=10)] = "",
        last: Annotated[str, Query(alias="to", max_length=10)] = "",
        business: Annotated[str, Query(max_length=64)] = "",
    ) -> Response:
        try:
            start, end = day_range(first or None, last or None, today=service.clock().date())
        except InvalidDayRange as exc:
            raise BadDayRange(f"The day range is not valid: {exc}.") from exc
        try:
            number = (
                normalize_address(business.strip(), default_region=service.default_region)
                if business.strip()
                else None
            )
        except InvalidPhoneNumber as exc:
            raise ConsoleRefusal(f"the business number is not valid: {exc}") from exc
        numbers = reader.business_numbers()
        if number and number not in numbers:
            numbers = sorted([*numbers, number])
        return ctx.pages.render(
            request,
            "analytics.html",
            view=AnalyticsView.of(reader.report(start, end, number)),
            numbers=numbers,
            chosen=number or "",
            max_days=MAX_DAYS,
            percent=percent,
        )

    return router
