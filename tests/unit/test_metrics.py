"""Metric values after known sequences of events: in one process, across two worker processes
sharing a multiprocess directory, and as the dashboard and alert rules name them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
import yaml
from dramatiq.brokers.stub import StubBroker
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tools import dashboard
from wa_sessions import metrics
from wa_sessions.metrics.collectors import RedisStateCollector
from wa_sessions.metrics.events import observe_ended_sessions
from wa_sessions.metrics.middleware import ActorMetrics
from wa_sessions.statemachine.steps import EndedEvent
from wa_sessions.workers import scheduler
from wa_sessions.workers.queues import QueueKeys

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_JSON = ROOT / "deploy" / "grafana" / "dashboards" / "wa-sessions.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
#: Every label name a metric may have: small fixed sets, never a phone, text or session id.
ALLOWED_LABELS = {
    "endpoint",
    # One of the seven supported ISO 639-1 codes or "unknown" (metrics/languages.py).
    "language",
    "outcome",
    "route",
    "status",
    "code",
    "direction",
    "type",
    "trigger",
    "action",
    "result",
    #: The console's live streams: opened, closed.
    "event",
    "actor",
    "extractor",
    "reason",
    "sender",
    "error_code",
    #: The outbox's consumer group: archive or events (metrics/outbox.py).
    "consumer",
    "queue",
    "state",
    "phase",
    #: The session analysis: openai, offline; and what it found (fixed enums).
    "analyser",
    "intent",
    "sentiment",
}


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@dataclass
class FakeEvents:
    """Session-end events handed out in ``pop_ended_events``'s batches."""

    events: list[EndedEvent]
    calls: list[int] = field(default_factory=list)

    def pop_ended_events(self, limit: int = 1000) -> list[EndedEvent]:
        self.calls.append(limit)
        taken, self.events = self.events[:limit], self.events[limit:]
        return taken


class FakePipeline:
    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes
        self.replies: list[int] = []

    def llen(self, key: str) -> None:
        self.replies.append(self.sizes.get(key, 0))

    def zcard(self, key: str) -> None:
        self.replies.append(self.sizes.get(key, 0))

    def execute(self) -> list[int]:
        return self.replies


@dataclass
class FakeState:
    """The store's scrape-time reads, with Redis key sizes for the queue depth."""

    active: int = 0
    waiting: int = 0
    taken_over: int = 0
    oldest_ms: int | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    down: bool = False

    @property
    def client(self) -> Any:
        return self

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self.sizes)

    def count_active(self) -> int:
        if self.down:
            raise redis.ConnectionError("Connection refused")
        return self.active

    def pending_summary(self) -> tuple[int, int | None]:
        return self.waiting, self.oldest_ms

    def count_taken_over(self) -> int:
        return self.taken_over


def collect(collector: RedisStateCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in collector.collect()
        for sample in family.samples
    }


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


# ---- session ends ---------------------------------------------------------------------------


def test_session_ends_are_counted_by_outcome_with_duration_and_message_count() -> None:
    """Two completions and an expiry: counters by outcome, histogram sums, counts and buckets."""
    watched = {
        "completed": ("wa_sessions_sessions_ended_total", {"outcome": "completed"}),
        "expired": ("wa_sessions_sessions_ended_total", {"outcome": "expired"}),
        "duration_sum": ("wa_sessions_session_duration_seconds_sum", {"outcome": "completed"}),
        "duration_le_10": (
            "wa_sessions_session_duration_seconds_bucket",
            {"outcome": "completed", "le": "10.0"},
        ),
        "messages_sum": ("wa_sessions_session_messages_sum", {"outcome": "expired"}),
        "messages_count": ("wa_sessions_session_messages_count", {"outcome": "expired"}),
    }
    before = {key: value(name, **labels) for key, (name, labels) in watched.items()}
    source = FakeEvents(
        [
            EndedEvent("completed", 4.5, 3, "operator"),
            EndedEvent("completed", 600.0, 12, "operator"),
            EndedEvent("expired", 86_400.0, 1, "timeout"),
        ]
    )

    assert observe_ended_sessions(source) == 3

    change = {key: value(name, **labels) - before[key] for key, (name, labels) in watched.items()}
    assert change == {
        "completed": 2,
        "expired": 1,
        "duration_sum": pytest.approx(604.5),
        "duration_le_10": 1,
        "messages_sum": 1,
        "messages_count": 1,
    }


def test_an_unknown_end_status_is_counted_as_other() -> None:
    """A status this version does not know cannot mint new label values."""
    before = value("wa_sessions_sessions_ended_total", outcome="other")
    observe_ended_sessions(FakeEvents([EndedEvent("archived", 1.0, 0, "x")]))
    assert value("wa_sessions_sessions_ended_total", outcome="other") - before == 1


def test_ended_events_are_taken_in_batches_until_a_short_one() -> None:
    """A backlog larger than a batch is drained in one run, one Redis round trip per batch."""
    source = FakeEvents([EndedEvent("completed", 1.0, 1, "operator")] * 5)
    assert observe_ended_sessions(source, batch=2) == 5
    assert source.calls == [2, 2, 2]
    assert observe_ended_sessions(source, batch=2) == 0


def test_known_outcomes_and_message_kinds_exist_at_zero_before_any_event() -> None:
    """Pre-created series let rate() and increase() see each first event."""
    names = {
        (s.name, tuple(sorted(s.labels.items()))) for f in REGISTRY.collect() for s in f.samples
    }
    for outcome in metrics.SESSION_OUTCOMES:
        assert ("wa_sessions_sessions_ended_total", (("outcome", outcome),)) in names
    assert ("wa_sessions_messages_total", (("direction", "outbound"), ("type", "text"))) in names


# ---- the Redis-backed collector -------------------------------------------------------------


def test_collector_reports_active_sessions_inboxes_and_queue_depth() -> None:
    """Values come straight from the store's reads; the oldest wait is measured from now."""
    state = FakeState(
        active=7,
        taken_over=2,
        waiting=2,
        oldest_ms=1_000_000,
        sizes={"ns:q": 4, "ns:q.DQ": 1, "ns:q.XQ": 3},
    )
    collector = RedisStateCollector(state, queues=[QueueKeys("ns", "q")], clock=lambda: 1_012.5)
    samples = collect(collector)
    assert samples == {
        ("wa_sessions_redis_up", ()): 1,
        ("wa_sessions_sessions_active", ()): 7,
        ("wa_sessions_sessions_taken_over", ()): 2,
        ("wa_sessions_inbox_conversations_waiting", ()): 2,
        ("wa_sessions_inbox_oldest_waiting_seconds", ()): 12.5,
        ("wa_sessions_queue_messages", (("queue", "q"), ("state", "ready"))): 4,
        ("wa_sessions_queue_messages", (("queue", "q"), ("state", "delayed"))): 1,
        ("wa_sessions_queue_messages", (("queue", "q"), ("state", "dead"))): 3,
    }


def test_collector_reports_zero_wait_when_no_inbox_waits() -> None:
    """No waiting entry reads as a zero age, not a missing or negative one."""
    collector = RedisStateCollector(FakeState(), queues=[QueueKeys("ns", "q")])
    assert collect(collector)[("wa_sessions_inbox_oldest_waiting_seconds", ())] == 0


def test_collector_with_redis_down_gives_a_clean_scrape_saying_so() -> None:
    """Redis unreachable: ``wa_sessions_redis_up 0`` and no Redis-backed samples, no error."""
    collector = RedisStateCollector(FakeState(down=True), queues=[QueueKeys("ns", "q")])
    assert collect(collector) == {("wa_sessions_redis_up", ()): 0}


def test_render_metrics_adds_the_collectors_it_is_given() -> None:
    """The exposition carries this process's metrics and the scrape-time Redis values."""
    collector = RedisStateCollector(FakeState(active=3), queues=[QueueKeys("ns", "q")])
    body, content_type = metrics.render_metrics([collector])
    assert content_type.startswith("text/plain")
    parsed = families(body.decode())
    assert parsed["wa_sessions_sessions_active"].samples[0].value == 3
    assert "wa_sessions_webhook_requests" in parsed
    assert "wa_sessions_extractions" in parsed


# ---- two worker processes, one multiprocess directory ---------------------------------------


@dataclass(frozen=True)
class _Message:
    message_id: str
    actor_name: str


#: What each of two worker processes does: messages applied, sessions started and ended,
#: Dramatiq messages processed.
WORKER_EVENTS: dict[str, dict[str, Any]] = {
    "a": {
        "messages": [("inbound", "text")] * 3,
        "lags": [0.02, 0.03, 0.04],
        "started": 2,
        "ended": [("completed", 30.0, 3), ("expired", 86_405.0, 1)],
        "actor": ["ok", "ok", "failed"],
    },
    "b": {
        "messages": [("inbound", "image"), ("outbound", "text"), ("outbound", "text")],
        "lags": [0.5],
        "started": 1,
        "ended": [("completed", 5.0, 1)],
        "actor": ["ok"],
    },
}


def record_worker_events(name: str) -> None:
    """Runs in a child process with ``PROMETHEUS_MULTIPROC_DIR`` set: one worker's events."""
    events = WORKER_EVENTS[name]
    for direction, kind in events["messages"]:
        metrics.MESSAGES.labels(direction, kind).inc()
    for lag in events["lags"]:
        metrics.QUEUE_LAG.observe(lag)
    metrics.SESSIONS_STARTED.inc(events["started"])
    observe_ended_sessions(
        FakeEvents([EndedEvent(status, d, n, "test") for status, d, n in events["ended"]])
    )
    middleware = ActorMetrics()
    broker = StubBroker()
    for n, outcome in enumerate(events["actor"]):
        message: Any = _Message(f"{name}-{n}", "drain_conversation")
        middleware.before_process_message(broker, message)
        error = RuntimeError("redis down") if outcome == "failed" else None
        middleware.after_process_message(broker, message, exception=error)


def test_two_worker_processes_add_up_in_the_web_process_exposition(tmp_path: Path) -> None:
    """Two processes write one multiprocess directory; ``render_metrics`` (as the web process
    runs it) reports the sums of both, histograms bucket by bucket."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from tests.unit.test_metrics import record_worker_events as r; "
                "r(sys.argv[1])",
                name,
            ],
            cwd=ROOT,
            env=env,
        )
        for name in WORKER_EVENTS
    ]
    assert [child.wait(timeout=30) for child in children] == [0, 0]
    assert len(list(tmp_path.glob("*.db"))) >= 2

    body = metrics.render_metrics(multiprocess_dir=str(tmp_path))[0].decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }

    def at(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert at("wa_sessions_messages_total", direction="inbound", type="text") == 3
    assert at("wa_sessions_messages_total", direction="inbound", type="image") == 1
    assert at("wa_sessions_messages_total", direction="outbound", type="text") == 2
    assert at("wa_sessions_messages_total", direction="outbound", type="audio") == 0
    assert at("wa_sessions_queue_lag_seconds_count") == 4
    assert at("wa_sessions_queue_lag_seconds_sum") == pytest.approx(0.59)
    assert at("wa_sessions_queue_lag_seconds_bucket", le="0.25") == 3
    assert at("wa_sessions_sessions_started_total") == 3
    assert at("wa_sessions_sessions_ended_total", outcome="completed") == 2
    assert at("wa_sessions_sessions_ended_total", outcome="expired") == 1
    assert at("wa_sessions_session_duration_seconds_count", outcome="completed") == 2
    assert at("wa_sessions_session_duration_seconds_sum", outcome="completed") == 35
    assert at("wa_sessions_session_duration_seconds_bucket", outcome="completed", le="10.0") == 1
    assert at("wa_sessions_session_duration_seconds_bucket", outcome="completed", le="30.0") == 2
    assert at("wa_sessions_session_duration_seconds_bucket", outcome="expired", le="86400.0") == 0
    assert at("wa_sessions_session_duration_seconds_bucket", outcome="expired", le="+Inf") == 1
    assert at("wa_sessions_session_messages_sum", outcome="completed") == 4
    assert at("wa_sessions_actor_messages_total", actor="drain_conversation", outcome="ok") == 3
    assert at("wa_sessions_actor_messages_total", actor="drain_conversation", outcome="failed") == 1
    assert at("wa_sessions_actor_duration_seconds_count", actor="drain_conversation") == 4


# ---- the Dramatiq middleware ----------------------------------------------------------------


@pytest.fixture
def stub_broker() -> Iterator[StubBroker]:
    broker = StubBroker()
    broker.add_middleware(ActorMetrics())
    broker.emit_after("process_boot")
    yield broker
    broker.close()


def test_actor_metrics_count_processed_and_failed_messages(stub_broker: StubBroker) -> None:
    """A real Dramatiq worker: one message succeeds, one fails for good."""

    @dramatiq.actor(broker=stub_broker, actor_name="metrics_probe", max_retries=0)
    def probe(fail: bool) -> None:
        if fail:
            raise RuntimeError("boom")

    ok = value("wa_sessions_actor_messages_total", actor="metrics_probe", outcome="ok")
    failed = value("wa_sessions_actor_messages_total", actor="metrics_probe", outcome="failed")
    count = value("wa_sessions_actor_duration_seconds_count", actor="metrics_probe")
    worker = dramatiq.Worker(stub_broker, worker_timeout=50)
    worker.start()
    try:
        probe.send(False)
        probe.send(True)
        stub_broker.join(probe.queue_name, fail_fast=False)
        worker.join()
    finally:
        worker.stop()
    assert value("wa_sessions_actor_messages_total", actor="metrics_probe", outcome="ok") - ok == 1
    assert (
        value("wa_sessions_actor_messages_total", actor="metrics_probe", outcome="failed") - failed
        == 1
    )
    assert value("wa_sessions_actor_duration_seconds_count", actor="metrics_probe") - count == 2


# ---- scheduler ------------------------------------------------------------------------------


def test_scheduler_runs_the_session_end_metrics_job_on_its_interval() -> None:
    """The job is scheduled beside the sweep and the re-drive, on the store of the deps."""

    @dataclass
    class Service:
        store: object

    @dataclass
    class Deps:
        service: Service

    store = object()
    deps: Any = Deps(Service(store))
    built = scheduler.build_scheduler(
        deps, sweep_seconds=60, redrive_seconds=1, metrics_seconds=2.5
    )
    job = built.get_job("observe_ended_sessions")
    assert job is not None
    assert job.func is observe_ended_sessions
    assert job.args == (store,)
    assert job.trigger.interval.total_seconds() == 2.5
    assert {j.id for j in built.get_jobs()} == {
        "expire_idle_sessions",
        "redrive",
        "observe_ended_sessions",
    }


# ---- dashboard and alert rules --------------------------------------------------------------


def exposed_families() -> set[str]:
    """Every metric family the service can expose (this process's and the Redis-backed ones)."""
    collector = RedisStateCollector(FakeState(), queues=[QueueKeys("ns", "q")])
    names = {family.name for family in REGISTRY.collect()}
    names |= {family.name for family in collector.collect()}
    return names


def family_of(name: str) -> str:
    return re.sub(r"(_bucket|_sum|_count|_total)$", "", name)


def queried_names(exprs: Sequence[str]) -> set[str]:
    return {name for expr in exprs for name in re.findall(r"\bwa_sessions_[a-z_]+", expr)}


def test_the_committed_dashboard_is_the_generated_one() -> None:
    """deploy/grafana/dashboards/wa-sessions.json is regenerated after every panel change."""
    assert DASHBOARD_JSON.read_text() == dashboard.render(), "run: python -m tools.dashboard"


def test_dashboard_has_a_datasource_variable_that_every_query_uses() -> None:
    """Grafana asks which Prometheus to use; every panel and target reads that choice."""
    model = json.loads(DASHBOARD_JSON.read_text())
    variables = model["templating"]["list"]
    assert {"name": "datasource", "type": "datasource", "query": "prometheus"}.items() <= (
        variables[0].items()
    )
    for panel in model["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


def test_dashboard_covers_the_panels_operators_asked_for() -> None:
    """Active sessions, starts/ends, completion, duration, messages, webhook latency, lag,
    inbox depth, extraction and delivery failures."""
    titles = " | ".join(panel.title.lower() for panel in dashboard.PANELS)
    for wanted in (
        "active sessions",
        "starts and ends",
        "completion rate",
        "duration p50 / p95",
        "messages/s by direction",
        "webhook latency p50 / p99",
        "end-to-end lag p99",
        "inbox depth",
        "extraction failures",
        "delivery failures",
    ):
        assert wanted in titles


def test_dashboard_and_alerts_query_only_metrics_the_service_exposes() -> None:
    """A renamed metric fails here, not silently on a wall screen."""
    exposed = {family_of(name) for name in exposed_families()}
    exprs = [t.expr for p in dashboard.PANELS for t in p.targets]
    rules = yaml.safe_load(ALERTS.read_text())
    exprs += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    unknown = {n for n in queried_names(exprs) if family_of(n) not in exposed}
    assert not unknown


def test_no_metric_has_a_label_that_could_carry_personal_data() -> None:
    """Label names come from a short list of bounded dimensions."""
    labels: set[str] = set()
    for family in REGISTRY.collect():
        if family.name.startswith("wa_sessions_"):
            for sample in family.samples:
                labels |= set(sample.labels) - {"le"}
    collector = RedisStateCollector(FakeState(), queues=[QueueKeys("ns", "q")])
    for family in collector.collect():
        for sample in family.samples:
            labels |= set(sample.labels)
    # Labelled metrics without samples yet still declare their label names.
    for metric in (metrics.EXTRACTIONS, metrics.DELIVERY_FAILURES, metrics.REPLIES):
        labels |= set(metric._labelnames)
    assert labels <= ALLOWED_LABELS, labels - ALLOWED_LABELS


def test_every_metric_is_documented() -> None:
    """docs/METRICS.md lists every metric the service can expose."""
    documented = (ROOT / "docs" / "METRICS.md").read_text()
    missing = set()
    for name in exposed_families():
        if not name.startswith("wa_sessions_"):
            continue
        counter = f"{name}_total"
        if f"`{name}`" not in documented and f"`{counter}`" not in documented:
            missing.add(name)
    assert not missing
