"""Business-initiated messages through the real drain over the test Redis: STOP opts the
conversation out for good and is acknowledged in the customer's language."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler

from tests.integration.test_effects import CONV, Harness, HarnessFactory, sample
from tests.support import poll
from wa_sessions.bootstrap import build_nudge_policy
from wa_sessions.config import Settings
from wa_sessions.flows.registry import load_templates
from wa_sessions.replies.catalog import catalogs
from wa_sessions.replies.sender import SendFailure, SendResult
from wa_sessions.workers.handlers import WorkerDeps
from wa_sessions.workers.nudges import NudgePolicy, queue_due_nudges
from wa_sessions.workers.scheduler import build_scheduler


@pytest.mark.parametrize(
    ("first", "stop", "language"),
    [
        ("I need 2 units of Product A please", "STOP", "en"),
        ("Necesito 2 pizzas margarita por favor", "PARAR", "es"),
        ("Je voudrais deux pizzas margherita s'il vous plaît", "Arrêt", "fr"),
        (
            "Selamat pagi, saya ingin memesan dua pizza margherita untuk makan malam",
            "berhenti",
            "id",
        ),
    ],
)
def test_stop_opts_the_conversation_out_and_is_acknowledged_in_the_customers_language(
    make_harness: HarnessFactory, first: str, stop: str, language: str
) -> None:
    """The opt-out key is set, the reply is the catalog's acknowledgement, and the keyword
    is not read as an order item."""
    h: Harness = make_harness()
    h.accept(first)
    h.drain()
    order_before = h.session().order_details
    before = sample("wa_sessions_opt_outs_total")

    h.accept(stop)
    h.drain()

    assert h.store.client.exists(h.store.keys.conv_opt_out(CONV))
    assert h.history()[-1] == ("outbound", "text", catalogs()[language]["opted_out"])
    assert h.session().order_details == order_before
    assert sample("wa_sessions_opt_outs_total") == before + 1


def test_a_sentence_with_stop_in_it_does_not_opt_out(h: Harness) -> None:
    """Only a whole-message keyword opts out."""
    h.accept("stop by with 2 units of Product A")
    h.drain()
    assert not h.store.client.exists(h.store.keys.conv_opt_out(CONV))


# ---- the nudge -------------------------------------------------------------------------------

TEMPLATE_SID = "HX" + "b" * 32


@dataclass
class TemplateSender:
    """An ``OutboundSender`` recording texts and templates."""

    name: str = "twilio"
    budget_seconds: float = 0.0
    sent: list[tuple[str, object]] = field(default_factory=list)

    async def send(self, *, to: str, from_: str, body: str) -> SendResult | SendFailure:
        self.sent.append(("text", body))
        return SendResult(sid="SM" + uuid.uuid4().hex, status="queued", sent=True)

    async def send_template(
        self, *, to: str, from_: str, content_sid: str, variables: Mapping[str, str]
    ) -> SendResult | SendFailure:
        self.sent.append(("template", (content_sid, dict(variables))))
        return SendResult(sid="SM" + uuid.uuid4().hex, status="queued", sent=True)


def ordered(make_harness: HarnessFactory, hours: float, sender: TemplateSender) -> Harness:
    h: Harness = make_harness(session_timeout_hours=hours, sender=sender)
    h.accept("I need 2 units of Product A")
    h.drain()
    sender.sent.clear()
    return h


def test_the_nudge_is_due_an_hour_before_expiry_sent_once_and_does_not_postpone_expiry(
    make_harness: HarnessFactory,
) -> None:
    """With a 10-hour timeout, nothing at 8h59m; at 9h01m one free-text reminder of the
    order (the window is open); never again, from a restarted or a second scheduler; the
    session's last activity (its expiry) is unchanged by the nudge."""
    sender = TemplateSender()
    h = ordered(make_harness, 10, sender)
    last = h.session().last_activity
    policy = NudgePolicy(before_minutes=60)

    h.clock.advance(hours=8, minutes=59)
    assert queue_due_nudges(h.deps, policy) == 0
    h.clock.advance(minutes=2)
    assert queue_due_nudges(h.deps, policy) == 1
    h.drain()

    assert sender.sent == [("text", catalogs()["en"]["nudge"].format(items="2 units of Product A"))]
    assert h.session().last_activity == last
    second = make_harness(session_timeout_hours=10, sender=sender)
    assert queue_due_nudges(h.deps, policy) == 0
    assert queue_due_nudges(second.deps, policy) == 0
    h.drain()
    assert len(sender.sent) == 1


def test_outside_the_window_the_nudge_is_the_template_or_nothing(
    make_harness: HarnessFactory,
) -> None:
    """With a 48-hour timeout the window has closed when the nudge is due: the template
    NUDGE_CONTENT_SID with the order as its variable; without one, nothing (counted)."""
    sender = TemplateSender()
    h = ordered(make_harness, 48, sender)
    h.clock.advance(hours=47, minutes=1)
    skipped = sample("wa_sessions_nudges_total", {"outcome": "skipped_no_content_sid"})
    assert queue_due_nudges(h.deps, NudgePolicy()) == 0
    assert sample("wa_sessions_nudges_total", {"outcome": "skipped_no_content_sid"}) == skipped + 1


def test_outside_the_window_the_nudge_is_the_template_with_the_order(
    make_harness: HarnessFactory,
) -> None:
    """NUDGE_CONTENT_SID set: the Content API send, the order's lines as variable 1."""
    sender = TemplateSender()
    h = ordered(make_harness, 48, sender)
    h.clock.advance(hours=47, minutes=1)
    assert queue_due_nudges(h.deps, NudgePolicy(content_sid=TEMPLATE_SID)) == 1
    h.drain()
    assert sender.sent == [("template", (TEMPLATE_SID, {"1": "2 units of Product A"}))]


def test_no_nudge_for_an_opted_out_conversation_or_without_an_order(h: Harness) -> None:
    """STOP, or no order: the claim skips the session."""
    h.accept("hello there")
    h.drain()
    h.clock.advance(hours=47, minutes=1)
    assert queue_due_nudges(h.deps, NudgePolicy(content_sid=TEMPLATE_SID)) == 0


def started(deps: WorkerDeps, policy: NudgePolicy) -> tuple[BackgroundScheduler, list[int]]:
    """A real scheduler over ``deps`` nudging every 20 ms; the nudge job's results, per run."""
    built = build_scheduler(
        deps,
        sweep_seconds=3600,
        redrive_seconds=3600,
        metrics_seconds=3600,
        nudges=policy,
        nudge_seconds=0.02,
    )
    results: list[int] = []

    def record(event: JobExecutionEvent) -> None:
        if event.job_id == "queue_due_nudges":
            results.append(int(event.retval))

    built.add_listener(record, EVENT_JOB_EXECUTED)
    built.start()
    return built, results


def test_the_schedulers_nudge_job_nudges_a_due_session_once_across_two_schedulers_and_a_restart(
    make_harness: HarnessFactory,
) -> None:
    """Two running schedulers, built from the settings like the process does, each run the
    job many times; then one restarts: the due session got exactly one nudge."""
    sender = TemplateSender()
    h = ordered(make_harness, 10, sender)
    settings = Settings(session_timeout_hours=10, nudge_before_expiry_minutes=60)
    policy = build_nudge_policy(settings)
    h.clock.advance(hours=9, minutes=1)

    runs = [started(make_harness(session_timeout_hours=10).deps, policy) for _ in range(2)]
    poll(lambda: all(len(results) >= 5 for _, results in runs), timeout=10)
    for built, _ in runs:
        built.shutdown(wait=True)
    restarted, again = started(make_harness(session_timeout_hours=10).deps, policy)
    poll(lambda: len(again) >= 5, timeout=10)
    restarted.shutdown(wait=True)

    assert sum(sum(results) for _, results in runs) == 1
    assert sum(again) == 0
    h.drain()
    assert [kind for kind, _ in sender.sent] == ["text"]


def test_the_scheduler_has_no_nudge_job_when_the_nudge_is_off(h: Harness) -> None:
    built = build_scheduler(
        h.deps, sweep_seconds=1, redrive_seconds=1, metrics_seconds=1, nudges=NudgePolicy(0)
    )
    assert built.get_job("queue_due_nudges") is None


def test_a_stop_after_the_nudge_was_claimed_stops_it_before_the_send(
    make_harness: HarnessFactory,
) -> None:
    """The customer's STOP arrives while the nudge is claimed (and not yet drained): the
    drain commits the opt-out first, and the nudge, re-reading it right before the send, is
    not sent (a note says why)."""
    sender = TemplateSender()
    h = ordered(make_harness, 10, sender)
    h.clock.advance(hours=9, minutes=1)
    h.accept("STOP")
    refused = sample("wa_sessions_nudges_total", {"outcome": "opted_out"})

    assert queue_due_nudges(h.deps, NudgePolicy()) == 1
    h.drain()

    assert sender.sent == [("text", catalogs()["en"]["opted_out"])]
    assert sample("wa_sessions_nudges_total", {"outcome": "opted_out"}) == refused + 1


# ---- with a conversation template (flows) -----------------------------------------------------


def flowing(make_harness: HarnessFactory, sender: TemplateSender) -> Harness:
    """A session of the shipped order flow, at its address step."""
    h: Harness = make_harness(sender=sender, flow_templates=load_templates("order", None))
    for text in ("I need 2 units of Product A", "John Doe"):
        h.accept(text)
        h.drain()
    assert h.session().flow_step == "address"
    sender.sent.clear()
    return h


def test_stop_in_the_middle_of_a_flow_opts_out_and_is_not_the_flows_answer(
    make_harness: HarnessFactory,
) -> None:
    """STOP at the address step is acknowledged, not stored as the address; the step stays."""
    sender = TemplateSender()
    h = flowing(make_harness, sender)

    h.accept("STOP")
    h.drain()

    assert h.store.client.exists(h.store.keys.conv_opt_out(CONV))
    assert sender.sent == [("text", catalogs()["en"]["opted_out"])]
    session = h.session()
    assert session.flow_step == "address"
    assert (session.order_details or {}).get("delivery_address") is None


def test_a_flow_not_at_done_is_an_unconfirmed_order_and_gets_its_nudge(
    make_harness: HarnessFactory,
) -> None:
    sender = TemplateSender()
    h = flowing(make_harness, sender)
    h.clock.advance(hours=47, minutes=1)

    assert queue_due_nudges(h.deps, NudgePolicy(content_sid=TEMPLATE_SID)) == 1
    h.drain()
    assert sender.sent == [("template", (TEMPLATE_SID, {"1": "2 units of Product A"}))]
