"""The step machine: given where a session's flow stands, its order and one customer message
(and, on an items step, what the extractor made of it), the flow's new position, the order's
changes, context to store and the reply. Pure: no Redis, no clock, no I/O; the worker runs it
(``workers/flow_run.py``) and the drain step's commit stores what it answers.

A step the session names but the template no longer has (the file changed under a live
session) restarts the flow at its first step rather than leaving the session nowhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wa_sessions.flows import words
from wa_sessions.flows.schema import DONE, FlowTemplate, Prompt, Step, StepKind
from wa_sessions.orders.models import OrderDetails


@dataclass(frozen=True, slots=True)
class Reply:
    """What to answer: prompts said one after the other (a refusal, then the question again)."""

    prompts: tuple[Prompt, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One message's effect on the flow: the step it now stands at (``done``: the session
    completes), the order (changed or not), context keys to store and the reply."""

    step: str
    order: OrderDetails
    reply: Reply
    context: dict[str, Any] = field(default_factory=dict)
    #: Whether the message's answer was taken (False: refused, the step asks again).
    accepted: bool = True

    @property
    def complete(self) -> bool:
        return self.step == DONE


_INVALID = {
    StepKind.CUSTOMER_NAME: Prompt(message="flow_invalid_name"),
    StepKind.DELIVERY_ADDRESS: Prompt(message="flow_invalid_address"),
    StepKind.CONFIRMATION: Prompt(message="flow_yes_or_no"),
    StepKind.FREE_TEXT: Prompt(message="flow_invalid_answer"),
}
_MORE = Prompt(message="flow_items_more")


def needs_extraction(template: FlowTemplate, step_id: str | None) -> bool:
    """Whether the message for ``step_id`` goes through the order extractor (items steps)."""
    return current_step(template, step_id).kind is StepKind.ITEMS


def current_step(template: FlowTemplate, step_id: str | None) -> Step:
    """The step ``step_id`` names; the first step for a new flow or an unknown id."""
    return template.step(step_id or "") or template.steps[0]


def start(template: FlowTemplate, order: OrderDetails) -> Outcome:
    """Where a flow that starts now stands (its first step, skipped past what the order has)
    and its first question."""
    step_id = _settle(template, template.steps[0].id, order)
    return Outcome(step_id, order, _ask(template, step_id, order))


def advance(
    template: FlowTemplate,
    step_id: str | None,
    order: OrderDetails,
    text: str,
    *,
    found_items: bool = False,
    found_other: bool = False,
) -> Outcome:
    """The flow after the customer said ``text`` at ``step_id``. On an items step ``order``
    is the order with the extraction merged already, ``found_items`` whether it changed
    items and ``found_other`` whether it found a name or an address."""
    step = current_step(template, step_id)
    if step.kind is StepKind.ITEMS:
        return _items(template, step, order, text, found_items, found_other)
    return _answer(template, step, order, text)


def _items(
    template: FlowTemplate,
    step: Step,
    order: OrderDetails,
    text: str,
    found_items: bool,
    found_other: bool,
) -> Outcome:
    if found_items:
        return Outcome(step.id, order, Reply((step.more or _MORE,)))
    if order.items and (words.says_done(text) or found_other):
        return _moved(template, template.following(step), order)
    if order.items:
        # Nothing about the items: an answer that clearly belongs to the next step is one.
        following = _settle(template, template.following(step), order)
        upcoming = template.step(following)
        if upcoming is not None and _clearly(upcoming, text):
            return _answer(template, upcoming, order, text)
        return Outcome(step.id, order, Reply((step.more or _MORE,)))
    return Outcome(step.id, order, Reply((step.prompt,)), accepted=False)


def _clearly(step: Step, text: str) -> bool:
    """Whether ``text``, said at an items step, is plainly the answer to ``step``."""
    if step.kind is StepKind.CUSTOMER_NAME:
        return words.looks_like_name(text) and step.rules().accepts(text)
    if step.kind is StepKind.DELIVERY_ADDRESS:
        return words.looks_like_address(text) and step.rules().accepts(text)
    if step.kind is StepKind.CONFIRMATION:
        return words.says_yes(text)
    return False


def _answer(template: FlowTemplate, step: Step, order: OrderDetails, text: str) -> Outcome:
    answer = " ".join(text.split())
    rules = step.rules()
    if step.kind is StepKind.CONFIRMATION:
        if words.says_yes(answer):
            return _moved(template, step.on_yes or template.following(step), order)
        if words.says_no(answer):
            return _moved(template, step.on_no or template.steps[0].id, order)
        return _refused(template, step, order)
    if step.kind is StepKind.CUSTOMER_NAME:
        if not (
            words.is_name(answer, rules.min_length, rules.max_length) and rules.accepts(answer)
        ):
            return _refused(template, step, order)
        changed = order.model_copy(update={"customer_name": answer})
        return _moved(template, template.following(step), changed)
    if step.kind is StepKind.DELIVERY_ADDRESS:
        if not (rules.accepts(answer) and any(ch.isalpha() for ch in answer)):
            return _refused(template, step, order)
        changed = order.model_copy(update={"delivery_address": answer})
        return _moved(template, template.following(step), changed)
    if not rules.accepts(answer):
        return _refused(template, step, order)
    moved = _moved(template, template.following(step), order)
    return Outcome(moved.step, order, moved.reply, {step.store_as or step.id: answer})


def _refused(template: FlowTemplate, step: Step, order: OrderDetails) -> Outcome:
    invalid = _INVALID.get(step.kind)
    prompts = (invalid, step.prompt) if invalid is not None else (step.prompt,)
    return Outcome(step.id, order, Reply(prompts), accepted=False)


def _moved(template: FlowTemplate, step_id: str, order: OrderDetails) -> Outcome:
    settled = _settle(template, step_id, order)
    return Outcome(settled, order, _ask(template, settled, order))


def _ask(template: FlowTemplate, step_id: str, order: OrderDetails) -> Reply:
    if step_id == DONE:
        return Reply((template.completed,))
    step = current_step(template, step_id)
    if step.kind is StepKind.ITEMS and order.items:
        return Reply((step.more or _MORE,))
    return Reply((step.prompt,))


def _settle(template: FlowTemplate, step_id: str, order: OrderDetails) -> str:
    """``step_id``, or the first step after it that does not skip itself; at most one pass
    over the steps (a loop of skipping steps ends the flow)."""
    for _ in range(len(template.steps) + 1):
        step = template.step(step_id)
        if step is None or not (step.skip_if_present and _present(step, order)):
            return step_id if step is not None else DONE
        step_id = template.following(step)
    return DONE


def _present(step: Step, order: OrderDetails) -> bool:
    if step.kind is StepKind.CUSTOMER_NAME:
        return bool(order.customer_name)
    if step.kind is StepKind.DELIVERY_ADDRESS:
        return bool(order.delivery_address)
    if step.kind is StepKind.ITEMS:
        return bool(order.items)
    return False
