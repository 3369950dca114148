"""A conversation template: a flow of steps in a TOML file, validated by pydantic. A file that
does not hold is refused at start with a ``FlowTemplateError`` naming the file, the step and the
field (docs/TEMPLATES.md describes the format)."""

from __future__ import annotations

import re
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from wa_sessions.errors import WaSessionsError
from wa_sessions.languages.detect import SUPPORTED
from wa_sessions.replies.catalog import KEYS, placeholders

#: The step id a flow goes to once its last step is answered: the session completes.
DONE = "done"
#: What a prompt's text may name: the order's lines, the customer's name and address.
VARIABLES = frozenset({"items", "name", "address"})
_STEP_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class FlowTemplateError(WaSessionsError, ValueError):
    """A template file that cannot be used: the message names the file, step and field."""


class StepKind(StrEnum):
    ITEMS = "items"
    CUSTOMER_NAME = "customer_name"
    DELIVERY_ADDRESS = "delivery_address"
    CONFIRMATION = "confirmation"
    FREE_TEXT = "free_text"


class Prompt(BaseModel):
    """What a step says: a reply catalog's message id (``replies/locales/*.po``, in the
    customer's language) and/or literal text per language; literal text in the customer's
    language wins, then the catalog, then the literal text in English."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message: str | None = None
    text: dict[str, str] = Field(default_factory=dict)

    @field_validator("message")
    @classmethod
    def _known_message(cls, value: str | None) -> str | None:
        if value is not None and value not in KEYS:
            raise ValueError(f"no reply catalog has the message id {value!r}")
        return value

    @field_validator("text")
    @classmethod
    def _known_languages(cls, value: dict[str, str]) -> dict[str, str]:
        for language, text in value.items():
            if language not in SUPPORTED:
                raise ValueError(f"{language!r} is not one of {', '.join(SUPPORTED)}")
            try:
                names = placeholders(text)
            except ValueError as exc:
                raise ValueError(f"text in {language!r} has broken braces: {exc}") from None
            if names - VARIABLES:
                raise ValueError(
                    f"text in {language!r} may use {sorted(VARIABLES)}, not {sorted(names)}"
                )
        return value

    @model_validator(mode="after")
    def _says_something(self) -> Self:
        if self.message is None and not self.text:
            raise ValueError("a prompt needs a message id or text")
        return self


class Validation(BaseModel):
    """Rules an answer must meet (the kind's own rules apply too: a name is letters only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_length: int = Field(default=2, ge=1, le=1000)
    max_length: int = Field(default=80, ge=1, le=1000)
    pattern: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_length > self.max_length:
            raise ValueError("min_length is greater than max_length")
        return self

    def accepts(self, text: str) -> bool:
        answer = " ".join(text.split())
        return self.min_length <= len(answer) <= self.max_length and (
            self.pattern is None or re.fullmatch(self.pattern, answer) is not None
        )


_DEFAULT_LENGTHS = {
    StepKind.CUSTOMER_NAME: (2, 80),
    StepKind.DELIVERY_ADDRESS: (6, 200),
    StepKind.FREE_TEXT: (1, 500),
}


class Step(BaseModel):
    """One step: what it asks (``prompt``), how an answer is checked (``validation``), whether
    it skips itself when the order already has its answer, and where the flow goes next
    (``next``: a step id or ``done``; a confirmation's ``on_yes`` and ``on_no``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    kind: StepKind
    prompt: Prompt
    #: Items only: the reply while items keep coming (default: the catalog's
    #: ``flow_items_more``, which lists the order).
    more: Prompt | None = None
    validation: Validation | None = None
    skip_if_present: bool = False
    next: str | None = None
    on_yes: str | None = None
    on_no: str | None = None
    #: Free text only: the session context key the answer is stored under (default: the id).
    store_as: str | None = None

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if value == DONE or not _STEP_ID.match(value):
            raise ValueError(
                "a step id is lower-case letters, digits and _ (at most 40), not 'done'"
            )
        return value

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Self:
        confirmation = self.kind is StepKind.CONFIRMATION
        if not confirmation and (self.on_yes or self.on_no):
            raise ValueError("on_yes and on_no belong to confirmation steps")
        if confirmation and self.on_no is None:
            raise ValueError("a confirmation step needs on_no")
        if self.more is not None and self.kind is not StepKind.ITEMS:
            raise ValueError("more belongs to items steps")
        if self.store_as is not None and self.kind is not StepKind.FREE_TEXT:
            raise ValueError("store_as belongs to free_text steps")
        if self.validation is not None and self.kind in (StepKind.ITEMS, StepKind.CONFIRMATION):
            raise ValueError(f"a {self.kind.value} step takes no validation")
        return self

    def rules(self) -> Validation:
        """The step's validation, or its kind's defaults."""
        if self.validation is not None:
            return self.validation
        low, high = _DEFAULT_LENGTHS.get(self.kind, (1, 1000))
        return Validation(min_length=low, max_length=high)


class FlowTemplate(BaseModel):
    """A whole template: its name, what it is for, and its steps in order (the first one is
    where a flow starts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    steps: tuple[Step, ...] = Field(min_length=1)
    #: The reply once the last step is answered (default: the catalog's ``flow_completed``).
    completed: Prompt = Prompt(message="flow_completed")

    @model_validator(mode="after")
    def _references(self) -> Self:
        ids = [step.id for step in self.steps]
        seen: set[str] = set()
        for index, step in enumerate(self.steps):
            if step.id in seen:
                raise _StepError(index, "id", f"duplicate step id {step.id!r}")
            seen.add(step.id)
            for name in ("next", "on_yes", "on_no"):
                target = getattr(step, name)
                if target is not None and target != DONE and target not in ids:
                    raise _StepError(index, name, f"no step has the id {target!r}")
        return self

    def step(self, step_id: str) -> Step | None:
        return next((step for step in self.steps if step.id == step_id), None)

    def following(self, step: Step) -> str:
        """Where ``step`` goes when answered: its ``next``, else the step after it, else done."""
        if step.next is not None:
            return step.next
        index = self.steps.index(step)
        return self.steps[index + 1].id if index + 1 < len(self.steps) else DONE

    def step_ids(self) -> frozenset[str]:
        return frozenset(step.id for step in self.steps) | {DONE}


class _StepError(ValueError):
    def __init__(self, index: int, field: str, message: str) -> None:
        super().__init__(message)
        self.index, self.field, self.message = index, field, message


def parse_template(raw: dict[str, Any], source: str) -> FlowTemplate:
    """The template of a parsed TOML document; ``source`` names it in errors."""
    try:
        return FlowTemplate.model_validate(raw)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, _StepError):
            where = _where(raw, ("steps", cause.index, cause.field))
            raise FlowTemplateError(f"{source}: {where}: {cause.message}") from None
        message = str(error["msg"]).removeprefix("Value error, ")
        raise FlowTemplateError(f"{source}: {_where(raw, error['loc'])}: {message}") from None


def _where(raw: dict[str, Any], loc: tuple[int | str, ...]) -> str:
    """``step 'name', field 'next'`` (or ``field 'name'`` for the template's own fields)."""
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = raw.get("steps")
        step = steps[loc[1]] if isinstance(steps, list) and loc[1] < len(steps) else None
        step_id = step.get("id") if isinstance(step, dict) else None
        named = f"step {step_id!r}" if isinstance(step_id, str) else f"step #{loc[1] + 1}"
        rest = ".".join(str(part) for part in loc[2:])
        return f"{named}, field {rest!r}" if rest else named
    return f"field {'.'.join(str(part) for part in loc)!r}"


def load_template(path: Path) -> FlowTemplate:
    """Reads and validates one template file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FlowTemplateError(f"{path}: cannot be read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FlowTemplateError(f"{path}: not valid TOML: {exc}") from None
    return parse_template(raw, str(path))
