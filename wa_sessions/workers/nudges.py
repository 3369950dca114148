"""The nudge before expiry (issue #15), the scheduler's side: find the sessions whose nudge is
due through the ``idx:nudge`` index (no scan), mark each one nudged in the same script that
decides (``lua/claim_nudges.lua``: at most one per session, ever, across restarts and
schedulers), then queue the message in the phone's inbox like an operator's reply, so it
leaves in order with the conversation through the phone's drain (``outreach_run.py``).

While WhatsApp's window is open the nudge is the catalog's free text in the customer's
language; after it closed, the template ``NUDGE_CONTENT_SID``, or nothing (counted) when none
is set. A scheduler killed between the claim and the push loses that session's nudge: at most
once, never twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from wa_sessions.metrics.outreach import NUDGES
from wa_sessions.orders.models import OrderDetails
from wa_sessions.replies.templates import ReplyTemplates, format_items
from wa_sessions.statemachine.entries import operator_reply_entry
from wa_sessions.statemachine.outreach import OutboundContent, refusal
from wa_sessions.workers.handlers import WorkerDeps

#: The origin a nudge's entry and message carry (``metadata.outreach``).
NUDGE = "nudge"


@dataclass(frozen=True, slots=True)
class NudgePolicy:
    """``NUDGE_BEFORE_EXPIRY_MINUTES`` (0: off) and ``NUDGE_CONTENT_SID`` (None: no nudge
    outside the window)."""

    before_minutes: float = 60.0
    content_sid: str | None = None
    batch: int = 500


def queue_due_nudges(deps: WorkerDeps, policy: NudgePolicy) -> int:
    """Claims the due sessions and queues their nudge; returns how many were queued."""
    if policy.before_minutes <= 0:
        return 0
    service = deps.service
    timeout_ms = int(service.timeout_ms)
    now_ms = service.now_ms()
    cutoff_ms = now_ms - timeout_ms + int(policy.before_minutes * 60_000)
    queued = 0
    while True:
        claimed, examined = service.store.claim_nudges(
            cutoff_ms=cutoff_ms, now_ms=now_ms, timeout_ms=timeout_ms, limit=policy.batch
        )
        for sid, conv, order_json, last_in, language_json, override in claimed:
            queued += _queue(
                deps, policy, sid, conv, order_json, last_in, language_json or override
            )
        if examined < policy.batch:
            return queued


def _queue(
    deps: WorkerDeps,
    policy: NudgePolicy,
    sid: str,
    conv: str,
    order_json: str,
    last_in: str,
    language: str,
) -> int:
    service = deps.service
    now = service.clock()
    order = OrderDetails.model_validate_json(order_json)
    lang = json.loads(language) if language.startswith('"') else (language or None)
    templates: ReplyTemplates = deps.reply_templates
    text = OutboundContent(text=templates.for_nudge(order, lang))
    last_inbound_ms = int(last_in) if last_in else None
    content = text
    if refusal(text, last_inbound_ms=last_inbound_ms, now=now, opted_out=False) is not None:
        if policy.content_sid is None:
            NUDGES.labels("skipped_no_content_sid").inc()
            return 0
        content = OutboundContent(
            content_sid=policy.content_sid, variables={"1": format_items(order, lang)}
        )
    message = content.message(NUDGE, now)
    accepted_ms = service.now_ms()
    if service.store.push_operation(
        conv,
        operator_reply_entry(sid, NUDGE, message, accepted_ms),
        accepted_ms=accepted_ms,
        wake_ttl_ms=deps.lease_ms,
    ):
        deps.wake(conv)
    NUDGES.labels("queued").inc()
    return 1
