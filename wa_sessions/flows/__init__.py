"""Conversation templates (issue #15): a flow of steps in a TOML file that asks a customer for
what an order still lacks, chosen per business number; the step machine that moves a session
through it; the shipped ``order`` template. docs/TEMPLATES.md describes the format."""

from __future__ import annotations

from wa_sessions.flows.machine import Outcome, Reply, advance, needs_extraction, start
from wa_sessions.flows.registry import FlowTemplates, load_templates
from wa_sessions.flows.schema import DONE, FlowTemplate, FlowTemplateError, StepKind
from wa_sessions.orders.models import OrderDetails


def start_flow(template: FlowTemplate, order: OrderDetails | None = None) -> Outcome:
    """A flow started now (``POST /conversations``): the first step that does not skip itself
    and its question; store ``(template.name, outcome.step)`` as the session's ``flow`` and
    ``flow_step`` and send ``flows.render.render(outcome.reply, ...)``."""
    return start(template, order or OrderDetails())


__all__ = [
    "DONE",
    "FlowTemplate",
    "FlowTemplateError",
    "FlowTemplates",
    "Outcome",
    "Reply",
    "StepKind",
    "advance",
    "load_templates",
    "needs_extraction",
    "start_flow",
]
