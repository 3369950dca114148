"""One session's records when its business number follows a conversation template
(``flows/``): each message in order goes to the flow's current step (through the order
extractor on an items step), then one reply, the prompt of the step the flow stands at, in the
customer's language. The flow's new position, the order and any free-text answers are
committed with the drain's next step, atomically with the reply; the last step's answer
completes the session in that same commit (``lua/drain_step.lua``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wa_sessions.flows.machine import Outcome, advance, needs_extraction, start
from wa_sessions.flows.render import render
from wa_sessions.flows.schema import FlowTemplate
from wa_sessions.languages.choice import LanguageState
from wa_sessions.orders.extractor import ExtractionFailure
from wa_sessions.orders.merge import merge_order
from wa_sessions.orders.models import OrderDetails
from wa_sessions.statemachine.steps import EffectSession, SessionEffects
from wa_sessions.workers.records import History

if TYPE_CHECKING:
    from wa_sessions.workers.session_run import SessionRun


class FlowRun:
    """A ``SessionRun`` whose session follows ``template``."""

    def __init__(self, run: SessionRun, template: FlowTemplate) -> None:
        self.run_ = run
        self.template = template

    async def run(
        self, session: EffectSession, order: OrderDetails, kept: LanguageState
    ) -> SessionEffects | None:
        """The session's outcome; None when the lease was lost."""
        run = self.run_
        template = self.template
        step = session.flow_step if session.flow == template.name else None
        if step is None or template.step(step) is None:
            step = start(template, order).step
        initial_order = order
        history = History(session.tail, run.messages, run.effects.extractor.history_limit)
        context: dict[str, Any] = {}
        outcome: Outcome | None = None
        for index, message in run.messages:
            run.observe_language(session, message)
            found_items = found_other = False
            if needs_extraction(template, step):
                extracted = await run.extract(history, index, message, order)
                if extracted is None:
                    return None
                if not isinstance(extracted, ExtractionFailure):
                    merged = merge_order(order, extracted)
                    if merged.changed:
                        order = merged.order
                        run.counts.orders_changed += 1
                    found_items = bool(extracted.changes) and merged.changed
                    found_other = bool(extracted.customer_name or extracted.delivery_address)
            outcome = advance(
                template,
                step,
                order,
                message.content,
                found_items=found_items,
                found_other=found_other,
            )
            step, order = outcome.step, outcome.order
            context.update(outcome.context)
            if outcome.complete:
                # The session ends with this commit: later messages of the batch are stored
                # in it, but the flow is over.
                break
        if outcome is None:
            return SessionEffects(session.session_id, None, run.notes)
        if not await run.reply(session, render(outcome.reply, order, run.language)):
            return None
        if run.language_state != kept:
            context.update(run.language_state.context())
        held = run.counts.replies.get("taken_over", 0) > 0
        return SessionEffects(
            session.session_id,
            order.model_dump(mode="json") if order != initial_order else None,
            run.notes,
            run.waits_ms,
            context,
            flow=(template.name, step),
            complete=outcome.complete and not held,
        )
