"""The metrics as operators see them: a real Prometheus scraping the Procfile's processes, the
dashboard's queries and the alert rules run by it, and promtool's checks.

Prometheus comes from Debian's ``prometheus`` package (installed by the ``prometheus_tools``
fixture when missing and running as root, else the tests fail with the install command); each
test runs its own server on a loopback port.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ROOT, PrometheusServer, PrometheusTools, Service
from tools import dashboard, preview
from tools.demo import TwilioSimulator

pytestmark = pytest.mark.e2e

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
#: Stand-ins for Grafana's variables when running the dashboard's queries directly.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "5m"}
#: Idle timeout of the service under test: long enough for the checks, short for an expiry.
TIMEOUT_SECONDS = 10.0
METRICS_TOKEN = "e2e-metrics-token"


def phone(i: int) -> str:
    return f"+1415556{i:04d}"


def grafana_expr(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def wait_for(condition: Callable[[], bool], timeout_seconds: float, what: str) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def scalar(server: PrometheusServer, expr: str) -> float | None:
    samples = server.query(expr)
    return float(samples[0]["value"][1]) if samples else None


def total_active(sim: TwilioSimulator) -> int:
    resp = sim.request("GET", "/sessions/active?limit=1", admin=True)
    assert resp.status == 200, resp.body
    return int(resp.json()["total_active"])


def converse(sim: TwilioSimulator, number: str, count: int) -> dict[str, Any]:
    """Sends ``count`` messages and waits until each has been applied and answered (with the
    offline defaults by a recorded reply, one for the messages drained together)."""
    for n in range(count):
        assert sim.send(number, f"message {n} from {number}").status == 200
    return sim.wait_for_answers(number, count, timeout_seconds=20)


@pytest.fixture
def observed_service(service_factory: Callable[..., Service]) -> Service:
    """The service with a short idle timeout, fast sweep and metrics jobs, and ``/metrics``
    behind ``METRICS_TOKEN``, as production should run it."""
    return service_factory(
        SESSION_TIMEOUT_HOURS=str(TIMEOUT_SECONDS / 3600),
        EXPIRY_SWEEP_INTERVAL_SECONDS="0.5",
        METRICS_EVENTS_INTERVAL_SECONDS="0.5",
        METRICS_TOKEN=METRICS_TOKEN,
    ).start_all()


@pytest.fixture
def metrics_token_file(tmp_path: Path) -> Path:
    """The token where Prometheus reads it (``credentials_file``), readable by its owner only."""
    path = tmp_path / "metrics-token"
    path.write_text(METRICS_TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.timeout(120)
def test_dashboard_queries_return_data_from_a_real_prometheus(
    observed_service: Service,
    prometheus_factory: Callable[..., PrometheusServer],
    prometheus_tools: PrometheusTools,
    metrics_token_file: Path,
) -> None:
    """Messages, a completion and an expiry, scraped by Prometheus (with the metrics token,
    as the deploy config does): every dashboard query answers with finite data, active
    sessions equal the API's count, the rules evaluate."""
    service = observed_service
    sim = service.simulator()
    assert sim.request("GET", "/metrics").status == 401
    prom = prometheus_factory(
        [f"127.0.0.1:{service.port}"], rule_files=[ALERTS], credentials_file=metrics_token_file
    )
    # Scraped before any traffic: counters start from their zero samples, so increase() and
    # rate() see every event that follows.
    wait_for(lambda: scalar(prom, 'up{job="wa-sessions"}') == 1.0, 15, "the first scrape")

    completed = converse(sim, phone(1), 3)
    expiring = converse(sim, phone(2), 2)
    resp = sim.request(
        "POST", f"/session/{completed['session']['session_id']}/complete", admin=True
    )
    assert resp.status == 200, resp.body

    def expired() -> bool:
        current = sim.session(phone(2)).json()["session"]
        return (current["session_id"], current["status"]) == (
            expiring["session"]["session_id"],
            "expired",
        )

    wait_for(expired, TIMEOUT_SECONDS + 10, "the idle session to expire")
    for i in range(3, 6):
        converse(sim, phone(i), 2)

    ended = 'sum(wa_sessions_sessions_ended_total{outcome="%s"})'
    wait_for(
        lambda: scalar(prom, ended % "completed") == 1.0 and scalar(prom, ended % "expired") == 1.0,
        15,
        "both session ends in Prometheus",
    )
    # The ends were scraped before the last conversations began: wait for a scrape after
    # their messages too (their counts never go beyond the messages sent, checked below).
    inbound = 'sum(wa_sessions_messages_total{direction="inbound"})'
    wait_for(lambda: scalar(prom, inbound) == 3 + 2 + 3 * 2, 15, "every inbound message")

    def active_matches() -> bool:
        # Polled: a session may expire between the two reads (the API's count comes first).
        api_count = total_active(sim)
        return api_count > 0 and scalar(prom, "max(wa_sessions_sessions_active)") == api_count

    wait_for(active_matches, 5, "wa_sessions_sessions_active to equal the API's total_active")

    empty, not_finite = [], []
    for panel in dashboard.PANELS:
        for target in panel.targets:
            samples = prom.query(grafana_expr(target.expr))
            values = [float(sample["value"][1]) for sample in samples]
            if not values:
                empty.append(f"{panel.title}: {target.expr}")
            elif not any(math.isfinite(v) for v in values):
                not_finite.append(f"{panel.title}: {target.expr} = {values}")
    assert not empty, "queries without data:\n" + "\n".join(empty)
    assert not not_finite, "queries without a finite value:\n" + "\n".join(not_finite)

    assert scalar(prom, inbound) == 3 + 2 + 3 * 2
    # Every reply the workers recorded is counted as an outbound message too (no system notes
    # here: nothing failed and every reply was inside the customer-service window).
    outbound = 'sum(wa_sessions_messages_total{direction="outbound"})'
    recorded = 'sum(wa_sessions_replies_total{outcome=~"sent|logged"})'
    assert (scalar(prom, outbound) or 0) > 0
    assert scalar(prom, outbound) == scalar(prom, recorded)
    assert scalar(prom, "sum(wa_sessions_sessions_started_total)") == 5
    # The completed session: 3 customer messages and the replies recorded for them (one per
    # batch the worker drained them in).
    held = completed["session"]["message_count"]
    assert 3 + 1 <= held <= 3 + 3
    assert scalar(prom, 'sum(wa_sessions_session_messages_sum{outcome="completed"})') == held
    completion = next(p for p in dashboard.PANELS if p.title.startswith("Completion")).targets[0]
    assert scalar(prom, grafana_expr(completion.expr)) == pytest.approx(0.5)
    duration = scalar(prom, 'sum(wa_sessions_session_duration_seconds_sum{outcome="expired"})')
    assert duration is not None
    assert duration >= TIMEOUT_SECONDS

    def rules_evaluated() -> bool:
        groups = prom.api("/api/v1/rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return bool(rules) and all(rule["health"] == "ok" for rule in rules)

    wait_for(rules_evaluated, 10, "every alert rule to evaluate without error")
    alerts = prom.api("/api/v1/alerts")["alerts"]
    assert [a["labels"]["alertname"] for a in alerts if a["state"] == "firing"] == []

    # The README's picture is drawn the same way: range queries of every panel.
    svg = preview.render_svg(prom.url, minutes=1, rate_interval="1m")
    assert "No data" not in svg
    assert all(escape(panel.title) in svg for panel in dashboard.PANELS)


def test_live_metrics_pass_promtool_and_carry_no_personal_data(
    service: Service, prometheus_tools: PrometheusTools
) -> None:
    """The web process' /metrics, with every process's series, passes ``promtool check
    metrics`` and names no phone number, message text or session id."""
    sim = service.simulator()
    number = phone(7)
    data = converse(sim, number, 2)
    session_id = data["session"]["session_id"]
    resp = sim.request("POST", f"/session/{session_id}/complete", admin=True)
    assert resp.status == 200
    body = sim.request("GET", "/metrics").body.decode()
    assert "wa_sessions_redis_up 1.0" in body
    assert "wa_sessions_sessions_active 0.0" in body
    assert "wa_sessions_actor_messages_total{" in body  # counted in the worker processes
    for secret in (number, number.lstrip("+"), session_id, "message 0"):
        assert secret not in body
    check = subprocess.run(
        [str(prometheus_tools.promtool), "check", "metrics"],
        input=body,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_alert_rules_pass_promtool_check_and_unit_tests(
    prometheus_tools: PrometheusTools, tmp_path: Path
) -> None:
    """alerts.yml is valid and its alerts fire (or stay quiet) as alerts.test.yml says; the
    scrape config is valid once its metrics token file is written beside it."""
    deploy = ROOT / "deploy" / "prometheus"
    installed = tmp_path / "prometheus"
    installed.mkdir()
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(deploy / name, installed / name)
    (installed / "metrics-token").write_text("a-token\n")
    for args in (
        ["check", "rules", str(ALERTS)],
        ["check", "config", str(installed / "prometheus.yml")],
        ["test", "rules", str(deploy / "alerts.test.yml")],
    ):
        result = subprocess.run(
            [str(prometheus_tools.promtool), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"


def test_missing_prometheus_fails_with_the_install_command_instead_of_skipping(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without promtool on PATH and no root to install it, the tests fail and say how."""
    from tests.e2e.conftest import find_or_install_prometheus

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.fail.Exception, match="apt-get install prometheus"):
        find_or_install_prometheus()
