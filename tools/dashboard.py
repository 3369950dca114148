"""The Grafana dashboard, generated here so its queries live beside the metrics they read.

``python -m tools.dashboard`` writes ``deploy/grafana/dashboards/wa-sessions.json``
(committed; a test checks it matches). The end-to-end test runs every query below against a real
Prometheus scraping the service, so a renamed metric breaks a test, not the dashboard.

Counters are summed over instances (each host's web process exposes its host's totals); values
read from Redis at scrape time are the same on every instance, so they are aggregated with
``max``. Session outcomes are rare events: their panels use one-hour windows.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_OUTPUT = Path("deploy/grafana/dashboards/wa-sessions.json")
UID = "wa-sessions"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
#: Window of the session-outcome panels (sessions end minutes to hours apart).
SESSION_WINDOW = "1h"


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    targets: Sequence[Target]
    unit: str = "short"
    kind: str = "timeseries"
    extra: dict[str, Any] = field(default_factory=dict)


def _quantile(q: float, metric: str, by: str = "", selector: str = "", window: str = RATE) -> str:
    groups = ", ".join(["le", *([by] if by else [])])
    return f"histogram_quantile({q}, sum by ({groups}) (rate({metric}_bucket{selector}[{window}])))"


PANELS: tuple[Panel, ...] = (
    Panel(
        "Active sessions",
        "Sessions active now, read from Redis at scrape time (exact across processes).",
        [Target("max(wa_sessions_sessions_active)", "active")],
        kind="stat",
    ),
    Panel(
        "Session starts and ends by outcome",
        "Sessions opened, and ended by outcome (completed, expired), per second.",
        [
            Target(f"sum(rate(wa_sessions_sessions_started_total[{RATE}]))", "started"),
            Target(
                f"sum by (outcome) (rate(wa_sessions_sessions_ended_total[{RATE}]))",
                "ended {{outcome}}",
            ),
        ],
        unit="reqps",
    ),
    Panel(
        "Completion rate (last hour)",
        "Completed sessions / (completed + expired) over the last hour.",
        [
            Target(
                f'sum(increase(wa_sessions_sessions_ended_total{{outcome="completed"}}'
                f"[{SESSION_WINDOW}])) / "
                f'sum(increase(wa_sessions_sessions_ended_total{{outcome=~"completed|expired"}}'
                f"[{SESSION_WINDOW}]))",
                "completion rate",
            )
        ],
        unit="percentunit",
        extra={"min": 0, "max": 1},
    ),
    Panel(
        "Session duration p50 / p95",
        "Creation to end of sessions that ended in the last hour, by outcome. Expired sessions "
        "include the idle timeout.",
        [
            Target(
                _quantile(0.5, "wa_sessions_session_duration_seconds", "outcome", "", "1h"),
                "p50 {{outcome}}",
            ),
            Target(
                _quantile(0.95, "wa_sessions_session_duration_seconds", "outcome", "", "1h"),
                "p95 {{outcome}}",
            ),
        ],
        unit="s",
    ),
    Panel(
        "Messages per session p50 / p95",
        "Messages held by sessions that ended in the last hour, by outcome.",
        [
            Target(
                _quantile(0.5, "wa_sessions_session_messages", "outcome", "", "1h"),
                "p50 {{outcome}}",
            ),
            Target(
                _quantile(0.95, "wa_sessions_session_messages", "outcome", "", "1h"),
                "p95 {{outcome}}",
            ),
        ],
    ),
    Panel(
        "Messages/s by direction",
        "Messages applied to sessions per second, inbound and outbound.",
        [
            Target(
                f"sum by (direction) (rate(wa_sessions_messages_total[{RATE}]))",
                "{{direction}}",
            )
        ],
        unit="reqps",
    ),
    Panel(
        "Webhook requests by outcome",
        "Twilio webhook requests per second by endpoint (inbound messages, status callbacks) "
        "and outcome (accepted, duplicate, bad_signature, bad_request, unavailable, error, ...).",
        [
            Target(
                f"sum by (endpoint, outcome) (rate(wa_sessions_webhook_requests_total[{RATE}]))",
                "{{endpoint}} {{outcome}}",
            )
        ],
        unit="reqps",
    ),
    Panel(
        "Webhook latency p50 / p99",
        "Time to answer Twilio (it gives up after 15 s in total).",
        [
            Target(
                _quantile(0.5, "wa_sessions_webhook_duration_seconds", "", '{endpoint="inbound"}'),
                "p50",
            ),
            Target(
                _quantile(0.99, "wa_sessions_webhook_duration_seconds", "", '{endpoint="inbound"}'),
                "p99",
            ),
        ],
        unit="s",
    ),
    Panel(
        "End-to-end lag p99",
        "From webhook acceptance to the message applied to its session.",
        [
            Target(_quantile(0.99, "wa_sessions_queue_lag_seconds"), "p99"),
            Target(_quantile(0.5, "wa_sessions_queue_lag_seconds"), "p50"),
        ],
        unit="s",
    ),
    Panel(
        "Inbox depth",
        "Conversations with accepted messages not yet applied, and the oldest one's wait.",
        [
            Target("max(wa_sessions_inbox_conversations_waiting)", "conversations waiting"),
            Target("max(wa_sessions_inbox_oldest_waiting_seconds)", "oldest wait (s)"),
        ],
    ),
    Panel(
        "Dramatiq queue",
        "Wake-up messages in the broker: ready, delayed (retry backoff), dead-lettered.",
        [Target("max by (state) (wa_sessions_queue_messages)", "{{state}}")],
    ),
    Panel(
        "Worker messages by outcome",
        "Dramatiq messages processed per second, by actor and outcome (failed ones retry).",
        [
            Target(
                f"sum by (actor, outcome) (rate(wa_sessions_actor_messages_total[{RATE}]))",
                "{{actor}} {{outcome}}",
            )
        ],
        unit="reqps",
    ),
    Panel(
        "Orders extracted",
        "Messages that added to or changed a session's order details, per second.",
        [
            Target(
                f"sum(rate(wa_sessions_orders_extracted_total[{RATE}])) or on() vector(0)",
                "orders extracted",
            )
        ],
        unit="reqps",
    ),
    Panel(
        "Extraction failures",
        "Extractions given up per second by reason, and the failed share of all extractions.",
        [
            Target(
                f"sum by (reason) (rate(wa_sessions_extraction_failures_total[{RATE}])) "
                "or on() vector(0)",
                "{{reason}}",
            ),
            Target(
                f'(sum(rate(wa_sessions_extractions_total{{outcome="failed"}}[{RATE}])) / '
                f"sum(rate(wa_sessions_extractions_total[{RATE}]))) or on() vector(0)",
                "failed ratio",
            ),
        ],
    ),
    Panel(
        "Delivery failures",
        "Outbound messages failed or undelivered per second by Twilio ErrorCode, and replies "
        "that could not be sent.",
        [
            Target(
                f"sum by (error_code) (rate(wa_sessions_delivery_failures_total[{RATE}])) "
                "or on() vector(0)",
                "delivery {{error_code}}",
            ),
            Target(
                f"sum by (outcome) (rate(wa_sessions_replies_total"
                f'{{outcome=~"failed|outside_window"}}[{RATE}])) or on() vector(0)',
                "reply {{outcome}}",
            ),
        ],
        unit="reqps",
    ),
    Panel(
        "Redis reachable",
        "1 when Redis answered the last scrape's reads.",
        [Target("min(wa_sessions_redis_up)", "redis up")],
        kind="stat",
    ),
)

_WIDTH = 8
_HEIGHT = 8
_PER_ROW = 24 // _WIDTH


def _panel_json(panel: Panel, index: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit, **panel.extra}
    body: dict[str, Any] = {
        "id": index + 1,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {
            "h": _HEIGHT,
            "w": _WIDTH,
            "x": (index % _PER_ROW) * _WIDTH,
            "y": (index // _PER_ROW) * _HEIGHT,
        },
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": [
            {
                "datasource": DATASOURCE,
                "expr": target.expr,
                "legendFormat": target.legend,
                "refId": chr(ord("A") + n),
            }
            for n, target in enumerate(panel.targets)
        ],
    }
    if panel.kind == "timeseries":
        body["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        }
    else:
        body["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
        }
    return body


def build_dashboard() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model, with a Prometheus datasource variable."""
    return {
        "uid": UID,
        "title": "wa-sessions",
        "description": "WhatsApp sessions: conversations, outcomes, messages, queues, failures.",
        "tags": ["wa-sessions"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "refresh": 1,
                    "hide": 0,
                    "current": {},
                    "options": [],
                    "regex": "",
                }
            ]
        },
        "annotations": {"list": []},
        "panels": [_panel_json(panel, n) for n, panel in enumerate(PANELS)],
    }


def render() -> str:
    return json.dumps(build_dashboard(), indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.dashboard")
    parser.add_argument("--output", "-o", type=Path, default=DEFAULT_OUTPUT, help="'-' for stdout")
    args = parser.parse_args(argv)
    text = render()
    if str(args.output) == "-":
        sys.stdout.write(text)
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
