"""The step machine on the shipped order flow: each step's validation, where an answer takes
the flow, what it answers; and, for random answers, that a session never stands at a step the
template does not have."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wa_sessions.flows import DONE, advance, start_flow
from wa_sessions.flows.machine import needs_extraction
from wa_sessions.flows.registry import load_shipped
from wa_sessions.flows.render import render
from wa_sessions.flows.words import says_done
from wa_sessions.orders.merge import merge_order
from wa_sessions.orders.models import OrderDetails, OrderItem
from wa_sessions.orders.rule_based import extract_order

ORDER = load_shipped("order")
ITEMS = OrderDetails(items=[OrderItem(name="Product A", quantity=2, unit="units")])


def _say(step: str | None, order: OrderDetails, text: str):  # type: ignore[no-untyped-def]
    """One customer message as the worker runs it: extraction on items steps, then the step."""
    found_items = found_other = False
    if needs_extraction(ORDER, step):
        extracted = extract_order(text, order)
        merged = merge_order(order, extracted)
        order = merged.order
        found_items = bool(extracted.changes) and merged.changed
        found_other = bool(extracted.customer_name or extracted.delivery_address)
    return advance(ORDER, step, order, text, found_items=found_items, found_other=found_other)


def test_the_issue_exchange_ends_confirmed_with_the_name_and_the_address() -> None:
    """Items, "John Doe", the address, "yes": done, each reply the next question."""
    step: str | None = None
    order = OrderDetails()
    replies = []
    for text in ("I need 2 units of Product A", "John Doe", "12 Main Street, Springfield", "yes"):
        outcome = _say(step, order, text)
        step, order = outcome.step, outcome.order
        replies.append(render(outcome.reply, order, "en"))

    assert step == DONE
    assert order.customer_name == "John Doe"
    assert order.delivery_address == "12 Main Street, Springfield"
    assert [item.name for item in order.items] == ["Product A"]
    assert replies[0].startswith("✅ Your order so far: 2 units of Product A")
    assert replies[1] == "Where should we deliver it? Please send the full address."
    assert "for John Doe, delivered to 12 Main Street, Springfield" in replies[2]
    assert replies[3] == "🎉 Thank you, John Doe! Your order is confirmed: 2 units of Product A."


@pytest.mark.parametrize(
    "text",
    ["that's all", "That's all, thanks!", "nothing else", "eso es todo", "é só isso",
     "c'est tout", "das ist alles", "è tutto", "itu saja", "no, that's it"],
)  # fmt: skip
def test_that_is_all_in_every_language_ends_the_items(text: str) -> None:
    outcome = advance(ORDER, "items", ITEMS, text)

    assert says_done(text)
    assert outcome.step == "name"


def test_that_is_all_before_any_item_asks_for_items_again() -> None:
    outcome = advance(ORDER, "items", OrderDetails(), "that's all")

    assert outcome.step == "items"
    assert render(outcome.reply, OrderDetails(), "en").startswith("What would you like to order?")


def test_more_items_keep_the_flow_at_the_items() -> None:
    outcome = _say("items", ITEMS, "and 3 boxes of apples")

    assert outcome.step == "items"
    assert [item.name for item in outcome.order.items] == ["Product A", "apples"]


def test_a_name_at_the_name_step_is_stored_and_never_an_item() -> None:
    outcome = advance(ORDER, "name", ITEMS, "  Maria   da Silva ")

    assert outcome.step == "address"
    assert outcome.order.customer_name == "Maria da Silva"
    assert outcome.order.items == ITEMS.items


@pytest.mark.parametrize("text", ["J", "R2D2", "12 Main Street", "x" * 81, "!!!"])
def test_a_name_step_refuses_what_is_not_letters_of_2_to_80(text: str) -> None:
    outcome = advance(ORDER, "name", ITEMS, text)

    assert (outcome.step, outcome.accepted, outcome.order.customer_name) == ("name", False, None)
    assert render(outcome.reply, ITEMS, "en").startswith("Sorry, that doesn't look like a name")


def test_an_address_step_stores_the_text_as_the_address() -> None:
    named = ITEMS.model_copy(update={"customer_name": "Ana"})

    outcome = advance(ORDER, "address", named, "Calle Mayor 5, Madrid")

    assert outcome.step == "confirm"
    assert outcome.order.delivery_address == "Calle Mayor 5, Madrid"


@pytest.mark.parametrize("text", ["12", "abc", "!!!!!!!!"])
def test_an_address_step_refuses_what_is_too_short_or_has_no_letters(text: str) -> None:
    outcome = advance(ORDER, "address", ITEMS, text)

    assert (outcome.step, outcome.accepted) == ("address", False)


@pytest.mark.parametrize("text", ["yes", "Sí", "sim", "oui", "ja", "sì", "ya", "YES!"])
def test_yes_in_every_language_completes_the_flow(text: str) -> None:
    assert advance(ORDER, "confirm", ITEMS, text).complete


@pytest.mark.parametrize("text", ["no", "No.", "não", "non", "nein", "tidak"])
def test_no_goes_back_to_the_items(text: str) -> None:
    outcome = advance(ORDER, "confirm", ITEMS, text)

    assert outcome.step == "items"
    assert not outcome.complete


def test_neither_yes_nor_no_asks_the_confirmation_again() -> None:
    outcome = advance(ORDER, "confirm", ITEMS, "maybe later")

    assert outcome.step == "confirm"
    assert render(outcome.reply, ITEMS, "es").startswith("Por favor responde SÍ o NO.")


def test_steps_whose_answer_the_order_has_skip_themselves() -> None:
    """A name and an address said with the items: "that's all" goes straight to the summary."""
    full = ITEMS.model_copy(update={"customer_name": "Ana", "delivery_address": "Rua Augusta 5"})

    assert advance(ORDER, "items", full, "that's all").step == "confirm"


def test_a_flow_started_by_the_business_asks_for_the_items_first() -> None:
    outcome = start_flow(ORDER)

    assert outcome.step == "items"
    assert render(outcome.reply, outcome.order, "fr").startswith("Que souhaitez-vous commander")


def test_a_step_the_template_no_longer_has_restarts_at_the_first_step() -> None:
    assert advance(ORDER, "payment", OrderDetails(), "hello").step == "items"


_ANSWERS = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        ["yes", "no", "that's all", "John Doe", "12 Main Street, Springfield", "2 x pizza",
         "remove the pizza", "my name is Ana", "deliver to 5 Rue Cler", "", "sí", "eso es todo"]
    ),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(_ANSWERS, min_size=1, max_size=12))
def test_random_answers_never_leave_a_session_at_a_step_that_does_not_exist(
    answers: list[str],
) -> None:
    """Whatever customers say, the flow stands at one of its steps or is done, and a done
    flow has an order with items, a name and an address."""
    step: str | None = None
    order = OrderDetails()
    for text in answers:
        outcome = _say(step, order, text)
        step, order = outcome.step, outcome.order
        assert step in ORDER.step_ids()
        render(outcome.reply, order, "en")
        if outcome.complete:
            assert order.items
            assert order.customer_name
            assert order.delivery_address
            break
