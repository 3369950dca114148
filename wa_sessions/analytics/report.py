"""The analytics read model: ``AnalyticsReport`` for a range of UTC days and one business number
(or all of them), built from the rollups' raw hour hashes and item scores by pure functions
(``reader.py`` fetches them). Percentiles are estimated from the fixed buckets
(``buckets.quantile``), so they are as fine as the buckets are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from pydantic import BaseModel, Field

from wa_sessions.analytics.buckets import (
    DURATION_BOUNDS_SECONDS,
    MESSAGES_BOUNDS,
    REPLY_BOUNDS_SECONDS,
    quantile,
)
from wa_sessions.errors import InvalidDayRange
from wa_sessions.statemachine.models import SessionStatus
from wa_sessions.statemachine.redis.keys import RollupField, RollupFieldPrefix

#: The longest range one report covers (about a quarter): 2,208 hour hashes per number.
MAX_DAYS = 92
#: Days a report covers when the caller names no start.
DEFAULT_DAYS = 7
#: Items a report lists.
TOP_ITEMS = 10

HOUR = timedelta(hours=1)
_ENDED = (SessionStatus.COMPLETED.value, SessionStatus.EXPIRED.value)


def epoch_hour(moment: datetime) -> int:
    return int(moment.timestamp()) // 3600


def epoch_day(day: date) -> int:
    return (day - date(1970, 1, 1)).days


def day_range(first: str | None, last: str | None, *, today: date) -> tuple[date, date]:
    """The inclusive range ``first``..``last`` (ISO dates; ``last`` defaults to ``today``,
    ``first`` to ``DEFAULT_DAYS`` days ending at ``last``). Raises ``InvalidDayRange``."""
    end = _parse_day("to", last) if last else today
    start = _parse_day("from", first) if first else end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise InvalidDayRange(f"from ({start}) is after to ({end})")
    if (end - start).days + 1 > MAX_DAYS:
        raise InvalidDayRange(
            f"the range spans {(end - start).days + 1} days; at most {MAX_DAYS} are allowed"
        )
    return start, end


def _parse_day(name: str, value: str) -> date:
    try:
        return date.fromisoformat(value) if len(value) == 10 else _not_a_day(name)
    except ValueError:
        return _not_a_day(name)


def _not_a_day(name: str) -> date:
    raise InvalidDayRange(f"{name} must be a date as YYYY-MM-DD")


def hours_of(first: date, last: date) -> list[datetime]:
    """The start of every UTC hour of the days ``first``..``last``."""
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    return [start + HOUR * i for i in range(((last - first).days + 1) * 24)]


class HourFigures(BaseModel):
    """Sessions started and ended (per final status) in one hour, or one day."""

    start: datetime
    started: int = 0
    completed: int = 0
    expired: int = 0


class Bucket(BaseModel):
    #: Inclusive upper bound; None for the last bucket (everything above the last bound).
    upper: float | None
    count: int


class Distribution(BaseModel):
    """A histogram of fixed buckets with p50/p95 estimated from it (None when empty)."""

    unit: str
    count: int
    buckets: list[Bucket]
    p50: float | None
    p95: float | None


class DeliveryFigures(BaseModel):
    """Replies by delivery outcome, from Twilio's status callbacks. ``success_rate``: delivered
    (read included) over delivered, failed and undelivered; None before any outcome."""

    delivered: int = 0
    read: int = 0
    failed: int = 0
    undelivered: int = 0
    success_rate: float | None = None


class TopItem(BaseModel):
    name: str
    quantity: float


class AnalyticsReport(BaseModel):
    """The figures of one business number (``None``: every number with rollups) over the UTC
    days ``from_day``..``to_day``. Ends, durations, message counts and orders are counted when
    a session ends; message-to-reply times when the reply is committed; delivery outcomes when
    their callback arrives."""

    from_day: date
    to_day: date
    business_number: str | None
    business_numbers: list[str]
    started: int
    completed: int
    expired: int
    hours: list[HourFigures]
    days: list[HourFigures]
    duration_seconds: Distribution
    messages_per_session: Distribution
    reply_seconds: Distribution = Field(description="From a message's acceptance to its reply.")
    sessions_with_order: int
    #: Sessions with an order over sessions ended; None when none ended.
    order_share: float | None
    delivery: DeliveryFigures
    top_items: list[TopItem]


@dataclass
class Rollups:
    """What the reader fetched: per hour start, the summed hash fields of the numbers asked
    for; per item, its summed quantity over the days."""

    hours: dict[datetime, Counter[str]] = field(default_factory=dict)
    items: dict[str, float] = field(default_factory=dict)

    def add_hour(self, start: datetime, fields: Mapping[str, str]) -> None:
        counts = self.hours.setdefault(start, Counter())
        for name, value in fields.items():
            counts[name] += int(value)

    def add_items(self, scored: Iterable[tuple[str, float]]) -> None:
        for name, quantity in scored:
            self.items[name] = self.items.get(name, 0.0) + quantity


def build_report(
    rollups: Rollups,
    *,
    first: date,
    last: date,
    business_number: str | None,
    business_numbers: Sequence[str],
) -> AnalyticsReport:
    """The report of the days ``first``..``last`` from their hour rollups."""
    hours = [
        _hour_figures(start, rollups.hours.get(start, Counter())) for start in hours_of(first, last)
    ]
    total: Counter[str] = Counter()
    for counts in rollups.hours.values():
        total.update(counts)
    ended = sum(total[RollupFieldPrefix.ENDED + status] for status in _ENDED)
    delivery = DeliveryFigures(
        delivered=total[RollupField.DELIVERED],
        read=total[RollupField.READ],
        failed=total[RollupField.FAILED],
        undelivered=total[RollupField.UNDELIVERED],
    )
    outcomes = delivery.delivered + delivery.failed + delivery.undelivered
    delivery.success_rate = delivery.delivered / outcomes if outcomes else None
    ordered = total[RollupField.ORDERED]
    top = sorted(rollups.items.items(), key=lambda item: (-item[1], item[0]))[:TOP_ITEMS]
    return AnalyticsReport(
        from_day=first,
        to_day=last,
        business_number=business_number,
        business_numbers=sorted(business_numbers),
        started=total[RollupField.STARTED],
        completed=total[RollupFieldPrefix.ENDED + SessionStatus.COMPLETED],
        expired=total[RollupFieldPrefix.ENDED + SessionStatus.EXPIRED],
        hours=hours,
        days=_by_day(hours),
        duration_seconds=_distribution(
            total, RollupFieldPrefix.DURATION, DURATION_BOUNDS_SECONDS, "seconds"
        ),
        messages_per_session=_distribution(
            total, RollupFieldPrefix.MESSAGES, MESSAGES_BOUNDS, "messages"
        ),
        reply_seconds=_distribution(
            total, RollupFieldPrefix.REPLY, REPLY_BOUNDS_SECONDS, "seconds"
        ),
        sessions_with_order=ordered,
        order_share=ordered / ended if ended else None,
        delivery=delivery,
        top_items=[TopItem(name=name, quantity=quantity) for name, quantity in top],
    )


def _hour_figures(start: datetime, counts: Counter[str]) -> HourFigures:
    return HourFigures(
        start=start,
        started=counts[RollupField.STARTED],
        completed=counts[RollupFieldPrefix.ENDED + SessionStatus.COMPLETED],
        expired=counts[RollupFieldPrefix.ENDED + SessionStatus.EXPIRED],
    )


def _by_day(hours: list[HourFigures]) -> list[HourFigures]:
    days: list[HourFigures] = []
    for index in range(0, len(hours), 24):
        day = hours[index : index + 24]
        days.append(
            HourFigures(
                start=day[0].start,
                started=sum(h.started for h in day),
                completed=sum(h.completed for h in day),
                expired=sum(h.expired for h in day),
            )
        )
    return days


def _distribution(
    total: Counter[str], prefix: str, bounds: Sequence[float], unit: str
) -> Distribution:
    counts = [total[f"{prefix}{index}"] for index in range(len(bounds) + 1)]
    uppers: list[float | None] = [float(bound) for bound in bounds]
    uppers.append(None)
    return Distribution(
        unit=unit,
        count=sum(counts),
        buckets=[
            Bucket(upper=upper, count=count) for upper, count in zip(uppers, counts, strict=True)
        ],
        p50=quantile(bounds, counts, 0.5),
        p95=quantile(bounds, counts, 0.95),
    )
