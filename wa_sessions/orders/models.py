"""The order a session accumulates and the change one message makes to it, as pydantic models.

``ExtractionResult`` is also the structured-output schema the OpenAI model fills in, so every
field is required (nullable where optional) and kept flat enough for strict JSON schema.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator


class OrderItem(BaseModel):
    """One line of an order: ``5 units of Product A``, ``2 x Margherita pizza``. Keys the
    business added through the session API are kept (``extra="allow"``)."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    quantity: int | float = Field(gt=0)
    unit: str | None = None


class OrderDetails(BaseModel):
    """What ``order_details`` holds on a session (other keys the business stored are kept)."""

    model_config = ConfigDict(extra="allow")

    customer_name: str | None = None
    items: list[OrderItem] = Field(default_factory=list)
    total_amount: float | None = None
    currency: str | None = None
    delivery_address: str | None = None
    notes: str | None = None


class ItemAction(StrEnum):
    #: Adds the quantity to the item, inserting it when the order does not have it.
    ADD = "add"
    #: Sets the item's quantity ("make that 6"), inserting it when the order does not have it.
    SET_QUANTITY = "set_quantity"
    #: Removes the item ("remove the apples").
    REMOVE = "remove"


class ItemChange(BaseModel):
    """One change to one item; ``quantity`` is ignored for ``remove``."""

    # Checks are validators, not schema keywords: OpenAI's strict JSON schema refuses some
    # keywords (string lengths), and a model answer that breaks them is invalid output anyway.
    action: ItemAction
    name: str = Field(description="The item as the order names it.")
    quantity: int | float | None = Field(
        default=None, description="How many; required for add and set_quantity, else null."
    )
    unit: str | None = Field(default=None, description="e.g. units, boxes, kg; null for none.")

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("an item needs a name")
        return value

    @field_validator("quantity")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and not value > 0:
            raise ValueError("quantity must be positive")
        return value


class ExtractionResult(BaseModel):
    """What one message says about the order. ``found`` is false when it says nothing about
    it; the other fields are null (or empty) when the message does not mention them."""

    found: bool
    changes: list[ItemChange] = Field(default_factory=list)
    customer_name: str | None = None
    delivery_address: str | None = None
    notes: str | None = None
    currency: str | None = Field(default=None, description="ISO 4217 code, e.g. USD.")
    total_amount: float | None = Field(default=None, description="Order total, if stated.")

    @classmethod
    def nothing(cls) -> ExtractionResult:
        return cls(found=False)
