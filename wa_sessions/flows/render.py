"""A step's reply as text in the customer's language: the prompt's literal text in that
language, else its catalog message (``replies/locales``), else its literal English text; the
order's lines, the customer's name and address filled in."""

from __future__ import annotations

from wa_sessions.flows.machine import Reply
from wa_sessions.flows.schema import Prompt
from wa_sessions.orders.models import OrderDetails
from wa_sessions.replies.catalog import FALLBACK
from wa_sessions.replies.templates import format_items, text


def render_prompt(prompt: Prompt, order: OrderDetails, language: str | None) -> str:
    wanted = language or FALLBACK
    if wanted in prompt.text:
        template = prompt.text[wanted]
    elif prompt.message is not None:
        template = text(prompt.message, wanted)
    else:
        template = prompt.text.get(FALLBACK) or next(iter(prompt.text.values()))
    return template.format(
        items=format_items(order, wanted),
        name=order.customer_name or "",
        address=order.delivery_address or "",
    )


def render(reply: Reply, order: OrderDetails, language: str | None) -> str:
    return "\n".join(render_prompt(prompt, order, language) for prompt in reply.prompts)
