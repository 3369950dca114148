"""What the OpenAI extractor asks the model and how it reads the answer: the instructions, the
user turn, the structured-output format, the answer's shape."""

from __future__ import annotations

import json
from typing import Any

import openai
import pydantic

from wa_sessions.orders.extractor import ExtractionRequest
from wa_sessions.orders.models import ExtractionResult
from wa_sessions.orders.openai_errors import InvalidOutput
from wa_sessions.statemachine.models import MessageDirection, MessageType

_HISTORY_CHARS = 500

INSTRUCTIONS = """\
You keep a customer's order for a business that takes orders over WhatsApp. Read the customer's \
NEW message (and its image, if any) in the light of the recent conversation and the current \
order, and report only what the new message changes:
- add: the customer orders an item, or more of one; quantity is how many they add.
- set_quantity: the customer changes how many of an item they want; "make that 6" means the \
item discussed last.
- remove: the customer no longer wants an item (quantity null).
Write item names as the customer wrote them, in their language: never translate them \
("5 unidades del Producto A" is the item "Producto A", unit "unidades"). When the customer \
refers to an item already in the order, use its name exactly as the order spells it. Set \
found to false, with no changes, when the message says nothing about the order \
(greetings, thanks, questions). Fill customer_name, delivery_address, notes, currency and \
total_amount only when the new message states them, else null. Never invent items or quantities.\
"""


class ResponseOutput(pydantic.BaseModel):
    """What is read of a Responses API answer: its status and the output items' text."""

    class Item(pydantic.BaseModel):
        class Content(pydantic.BaseModel):
            type: str
            text: str | None = None
            refusal: str | None = None

        type: str
        content: list[Content] = pydantic.Field(default_factory=list)

    status: str | None = None
    output: list[Item] = pydantic.Field(default_factory=list)

    def parsed(self) -> ExtractionResult:
        return ExtractionResult.model_validate_json(self.output_text())

    def output_text(self) -> str:
        """The structured answer's text; ``InvalidOutput`` for a refusal, an incomplete or
        an empty answer."""
        if self.status not in (None, "completed"):
            raise InvalidOutput(f"the model's answer is {self.status}")
        for item in self.output:
            for content in item.content if item.type == "message" else []:
                if content.type == "refusal":
                    raise InvalidOutput("the model refused to answer")
                if content.type == "output_text" and content.text:
                    return content.text
        raise InvalidOutput("the model returned no structured answer (refusal or empty)")


def text_format(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """A request's structured-output format: ``model``'s strict JSON schema (compute once)."""
    return {
        "format": {
            "type": "json_schema",
            "name": model.__name__,
            "schema": openai.pydantic_function_tool(model)["function"]["parameters"],
            "strict": True,
        }
    }


#: The request's structured-output format, computed once from ``ExtractionResult``.
TEXT_FORMAT: dict[str, Any] = text_format(ExtractionResult)


def prompt_text(request: ExtractionRequest, *, images_left_out: int = 0) -> str:
    """The user turn: current order, recent history (oldest first), then the new message.
    ``images_left_out``: the message's images that could not be fetched (the model is told, so
    that "this one please" is read as unclear rather than as nothing)."""
    order = request.order.model_dump(mode="json", exclude_none=True)
    lines = [f"Current order (JSON): {json.dumps(order, ensure_ascii=False)}", ""]
    if request.language:
        lines[1:1] = [f"Customer's language (ISO 639-1, detected): {request.language}"]
    history = [m for m in request.history if m.id != request.message.id]
    if history:
        lines.append("Recent conversation, oldest first:")
        for message in history:
            if message.message_type is MessageType.SYSTEM:
                continue
            who = "customer" if message.direction is MessageDirection.INBOUND else "business"
            text = " ".join(message.content.split())[:_HISTORY_CHARS]
            if message.message_type is not MessageType.TEXT:
                text = f"[{message.message_type.value}] {text}".strip()
            lines.append(f"{who}: {text}")
        lines.append("")
    lines.append("New message from the customer:")
    lines.append(request.message.content or "(no text)")
    if request.message.message_type is MessageType.IMAGE:
        if images_left_out:
            lines.append(
                f"(The customer also sent {images_left_out} image(s) that could not be loaded: "
                "go by the text alone.)"
            )
        else:
            lines.append("(The customer also sent the attached image.)")
    return "\n".join(lines)
