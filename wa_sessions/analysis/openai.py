"""Session analysis by an OpenAI model: one structured-output call through the same SDK path,
retry budget and rate gate as order extraction (``orders/openai.py``: ``AsyncOpenAI.post`` with
the strict JSON schema of ``Findings`` computed once, ``call_with_retries``, the process'
``RateGate``). Every failure (timeouts, 429 past the budget, a refusal, output that does not fit
the schema) comes back as an ``AnalysisFailure``; nothing here raises for one."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
from openai.types.responses import EasyInputMessageParam, ResponseInputTextParam

from wa_sessions.analysis.models import (
    MAX_OPEN_QUESTIONS,
    AnalyserName,
    AnalysisFailure,
    AnalysisRequest,
    Findings,
)
from wa_sessions.orders.openai_client import LoopBoundClient
from wa_sessions.orders.openai_errors import classify_error
from wa_sessions.orders.openai_prompt import ResponseOutput, text_format
from wa_sessions.retries import CallFailure, Gate, RetryPolicy, call_with_retries
from wa_sessions.statemachine.models import MessageDirection, MessageType

#: Characters of one message the model sees (a pasted essay must not fill the context).
_MESSAGE_CHARS = 1000

INSTRUCTIONS = f"""\
You help the operators of a business that takes orders over WhatsApp. Read the whole \
conversation between a customer and the business and report: the customer's language (ISO \
639-1 code, null if unclear); the customer's intent (order: they order; order_change: they \
change or remove items of an order; question: they only ask; complaint: they complain; other); \
their sentiment; a summary of one or two short sentences in English; open_questions: the \
questions the customer asked that no later business message answered, quoted as written (at \
most {MAX_OPEN_QUESTIONS}); next_step: one short sentence in English on what the business \
should do next (for example: ask for the delivery address of an order that has none). Never \
invent facts that the conversation does not state.\
"""

#: The request's structured-output format, computed once from ``Findings``.
TEXT_FORMAT: dict[str, Any] = text_format(Findings)


def prompt_text(request: AnalysisRequest) -> str:
    """The user turn: the current order, then the conversation, oldest first."""
    order = json.dumps(request.order or {}, ensure_ascii=False)
    lines = [f"Current order (JSON): {order}", "", "Conversation, oldest first:"]
    for message in request.messages:
        who = "customer" if message.direction is MessageDirection.INBOUND else "business"
        text = " ".join(message.content.split())[:_MESSAGE_CHARS]
        if message.message_type is not MessageType.TEXT:
            text = f"[{message.message_type.value}] {text}".strip()
        lines.append(f"{who}: {text}")
    return "\n".join(lines)


class OpenAISessionAnalyser:
    """``Analyser`` backed by the OpenAI Responses API. Its client belongs to the event loop
    that first uses it; a call from another loop builds a new one."""

    name = AnalyserName.OPENAI

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        policy: RetryPolicy,
        base_url: str | None = None,
        max_messages: int = 200,
        gate: Gate | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.model = model
        self.policy = policy
        self.budget_seconds = policy.budget_seconds
        self.max_messages = max_messages
        self.gate = gate
        self._sleep = sleep
        self._openai = LoopBoundClient(
            api_key=api_key, base_url=base_url, timeout_seconds=policy.timeout_seconds
        )

    async def close(self) -> None:
        await self._openai.close()

    async def analyse(self, request: AnalysisRequest) -> Findings | AnalysisFailure:
        client, _ = self._openai.get()
        body = {
            "model": self.model,
            "instructions": INSTRUCTIONS,
            "input": [
                EasyInputMessageParam(
                    role="user",
                    content=[
                        ResponseInputTextParam(
                            type="input_text", text=prompt_text(self._recent(request))
                        )
                    ],
                )
            ],
            "store": False,
            "text": TEXT_FORMAT,
        }

        async def attempt() -> Findings:
            answer = await client.post("/responses", cast_to=httpx2.Response, body=body)
            output = ResponseOutput.model_validate_json(answer.content).output_text()
            return Findings.model_validate_json(output)

        kwargs: dict[str, Any] = {"sleep": self._sleep} if self._sleep else {}
        outcome = await call_with_retries(
            attempt, classify_error, self.policy, gate=self.gate, **kwargs
        )
        if isinstance(outcome, CallFailure):
            return AnalysisFailure(outcome.reason, outcome.detail, outcome.attempts)
        return outcome.value

    def _recent(self, request: AnalysisRequest) -> AnalysisRequest:
        if len(request.messages) <= self.max_messages:
            return request
        return AnalysisRequest(
            request.session_id,
            request.messages[-self.max_messages :],
            request.order,
            request.fingerprint,
        )
