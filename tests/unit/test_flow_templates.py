"""Conversation template files: the shipped ones load, and every kind of mistake in a file is
refused with a message naming the file, the step and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from wa_sessions.flows.registry import load_shipped, load_templates, shipped_names
from wa_sessions.flows.schema import DONE, FlowTemplateError, StepKind, load_template

_GOOD = """
name = "custom"
description = "A test flow."

[[steps]]
id = "items"
kind = "items"
prompt = { message = "flow_items_ask" }

[[steps]]
id = "notes"
kind = "free_text"
prompt = { text = { en = "Anything we should know?", es = "¿Algo más que debamos saber?" } }
store_as = "delivery_notes"
"""


def _file(tmp_path: Path, text: str, name: str = "flow.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _refusal(tmp_path: Path, text: str) -> str:
    path = _file(tmp_path, text)
    with pytest.raises(FlowTemplateError) as caught:
        load_template(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    return message


def test_the_shipped_order_template_asks_items_name_address_then_a_confirmation() -> None:
    """The order flow of issue #15, in that order."""
    template = load_shipped("order")

    assert "order" in shipped_names()
    assert [(s.id, s.kind) for s in template.steps] == [
        ("items", StepKind.ITEMS),
        ("name", StepKind.CUSTOMER_NAME),
        ("address", StepKind.DELIVERY_ADDRESS),
        ("confirm", StepKind.CONFIRMATION),
    ]
    assert template.step("confirm") is not None
    assert template.step("confirm").on_no == "items"  # type: ignore[union-attr]
    assert template.step("confirm").on_yes == DONE  # type: ignore[union-attr]


def test_a_valid_file_loads_with_its_literal_prompts_and_defaults(tmp_path: Path) -> None:
    """``next`` defaults to the following step, the last one's to done."""
    template = load_template(_file(tmp_path, _GOOD))

    assert template.name == "custom"
    assert template.following(template.steps[0]) == "notes"
    assert template.following(template.steps[1]) == DONE
    assert template.steps[1].prompt.text["es"] == "¿Algo más que debamos saber?"


def test_a_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    assert "not valid TOML" in _refusal(tmp_path, "name = 'x'\n[[steps]\n")


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FlowTemplateError, match="cannot be read"):
        load_template(tmp_path / "nowhere.toml")


def test_an_unknown_step_kind_names_the_step_and_the_field(tmp_path: Path) -> None:
    message = _refusal(tmp_path, _GOOD.replace('kind = "free_text"', 'kind = "phone"'))

    assert "step 'notes', field 'kind'" in message


def test_a_next_that_names_no_step_is_refused(tmp_path: Path) -> None:
    text = _GOOD.replace('kind = "items"\n', 'kind = "items"\nnext = "payment"\n')

    assert "step 'items', field 'next': no step has the id 'payment'" in _refusal(tmp_path, text)


def test_two_steps_with_one_id_are_refused(tmp_path: Path) -> None:
    message = _refusal(tmp_path, _GOOD.replace('id = "notes"', 'id = "items"'))

    assert "field 'id': duplicate step id 'items'" in message


def test_a_step_without_a_prompt_is_refused(tmp_path: Path) -> None:
    text = _GOOD.replace('prompt = { message = "flow_items_ask" }\n', "")

    assert "step 'items', field 'prompt'" in _refusal(tmp_path, text)


def test_a_prompt_naming_a_message_no_catalog_has_is_refused(tmp_path: Path) -> None:
    message = _refusal(tmp_path, _GOOD.replace("flow_items_ask", "flow_welcome"))

    assert "field 'prompt.message'" in message
    assert "'flow_welcome'" in message


def test_a_prompt_in_an_unsupported_language_is_refused(tmp_path: Path) -> None:
    message = _refusal(tmp_path, _GOOD.replace("es = ", "nl = "))

    assert "step 'notes', field 'prompt.text'" in message
    assert "'nl'" in message


def test_a_prompt_with_an_unknown_placeholder_is_refused(tmp_path: Path) -> None:
    message = _refusal(tmp_path, _GOOD.replace("Anything we", "{total} we"))

    assert "step 'notes', field 'prompt.text'" in message
    assert "total" in message


def test_a_typo_in_a_field_name_is_refused(tmp_path: Path) -> None:
    message = _refusal(tmp_path, _GOOD.replace("store_as", "stor_as"))

    assert "step 'notes', field 'stor_as'" in message


def test_a_confirmation_without_on_no_is_refused(tmp_path: Path) -> None:
    text = _GOOD.replace('kind = "free_text"', 'kind = "confirmation"').replace(
        'store_as = "delivery_notes"\n', ""
    )

    assert "step 'notes'" in _refusal(tmp_path, text)
    assert "on_no" in _refusal(tmp_path, text)


def test_on_yes_on_a_step_that_is_no_confirmation_is_refused(tmp_path: Path) -> None:
    text = _GOOD.replace('kind = "items"\n', 'kind = "items"\non_yes = "notes"\n')

    assert "on_yes and on_no belong to confirmation steps" in _refusal(tmp_path, text)


def test_a_validation_pattern_that_does_not_compile_is_refused(tmp_path: Path) -> None:
    text = _GOOD.replace(
        'store_as = "delivery_notes"', 'store_as = "x"\nvalidation = { pattern = "([a-z" }'
    )

    assert "field 'validation.pattern': not a regular expression" in _refusal(tmp_path, text)


def test_a_file_without_steps_is_refused(tmp_path: Path) -> None:
    assert "field 'steps'" in _refusal(tmp_path, 'name = "empty"\nsteps = []\n')


def test_an_unknown_shipped_name_lists_the_shipped_ones() -> None:
    with pytest.raises(FlowTemplateError, match=r"shipped: .*order"):
        load_templates("ordre", None)


def test_a_directory_gives_each_business_number_its_file_and_its_mapping(
    tmp_path: Path,
) -> None:
    """``<number>.toml`` and ``templates.toml``; other numbers get the default (or none)."""
    _file(tmp_path, _GOOD, "+14155550100.toml")
    _file(tmp_path, '"+14155550111" = "order"\n', "templates.toml")

    templates = load_templates(None, tmp_path)

    assert templates.for_business("whatsapp:+14155550100").name == "custom"  # type: ignore[union-attr]
    assert templates.for_business("+14155550111").name == "order"  # type: ignore[union-attr]
    assert templates.for_business("+14155550199") is None
    assert load_templates("order", tmp_path).for_business("+14155550199") is not None


def test_a_bad_file_in_the_directory_stops_the_start(tmp_path: Path) -> None:
    _file(tmp_path, _GOOD.replace('kind = "items"', 'kind = "item"'), "+14155550100.toml")

    with pytest.raises(FlowTemplateError, match=r"\+14155550100\.toml: step 'items'"):
        load_templates(None, tmp_path)


def test_without_settings_no_business_has_a_flow() -> None:
    """The service then behaves exactly as before templates."""
    templates = load_templates(None, None)

    assert not templates
    assert templates.for_business("+14155550100") is None
