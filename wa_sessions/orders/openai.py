"""Order extraction by an OpenAI model through the official SDK, with structured output parsed
into ``ExtractionResult``.

The model sees the current order, the session's recent history and the new message (and its
images, fetched by ``media.TwilioMediaFetcher`` with the Twilio account's credentials and
inlined as data URLs, since Twilio media URLs need HTTP basic auth that OpenAI cannot send). The
images are fetched once, before the OpenAI call and outside its retries, within their own
deadline (at most what the retry budget leaves after one attempt's timeout); an image left out
leaves the model the text. The SDK's own retries are off: the call runs inside
``retries.call_with_retries`` with what the fetch left of the budget, so the whole extraction
stays within the budget the drain extended its lease for, behind the process' ``RateGate``.
Every failure comes back as an ``ExtractionFailure``.

The call is the SDK's own ``AsyncOpenAI.post("/responses", ...)`` (its documented way to
send a request body as is) over its aiohttp transport, with the strict JSON schema of
``ExtractionResult`` computed once (``pydantic_function_tool``) as the request's ``text``
format; the answer's output text is validated into ``ExtractionResult`` here. That is what
``responses.parse`` does, minus what it repeats on every call: rebuilding the schema from the
model, walking the whole request (schema included) through the SDK's type transforms, and
building the typed ``Response``. Authentication, timeouts and the mapping of HTTP errors to
``openai.APIStatusError`` and its kin stay the SDK's. Client CPU per call against a local
stand-in, 64 in flight on this 2-core machine (``python -m bench.sdk_cost``): ``parse`` over
httpx2 7.2-8.6 ms, ``parse`` over aiohttp 5.6-5.9 ms, ``with_raw_response.create`` with the
schema precomputed 1.8-2.3 ms, this 0.8-1.1 ms (a bare aiohttp POST: 0.2 ms). At hundreds of
extractions a second that is the difference between a worker bound by OpenAI's latency and one
bound by its own CPU.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import httpx2
import openai
from openai.types.responses import (
    EasyInputMessageParam,
    ResponseInputImageParam,
    ResponseInputMessageContentListParam,
    ResponseInputTextParam,
)

from wa_sessions.orders.extractor import ExtractionFailure, ExtractionRequest
from wa_sessions.orders.media import FetchedImages, TwilioMediaFetcher
from wa_sessions.orders.models import ExtractionResult
from wa_sessions.orders.openai_client import LoopBoundClient
from wa_sessions.orders.openai_errors import classify_error
from wa_sessions.orders.openai_prompt import (
    INSTRUCTIONS,
    TEXT_FORMAT,
    ResponseOutput,
    prompt_text,
)
from wa_sessions.retries import CallFailure, Gate, RetryPolicy, call_with_retries
from wa_sessions.statemachine.models import MessageType


class OpenAIOrderExtractor:
    """``OrderExtractor`` backed by the OpenAI Responses API.

    Its HTTP clients belong to the event loop that first uses them (the worker's drain loop);
    a call from another loop builds new ones."""

    name = "openai"

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        policy: RetryPolicy,
        base_url: str | None = None,
        history_limit: int = 20,
        media: TwilioMediaFetcher | None = None,
        gate: Gate | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.model = model
        self.policy = policy
        self.history_limit = history_limit
        self.media = media or TwilioMediaFetcher()
        self.budget_seconds = policy.budget_seconds
        self.gate = gate
        self._sleep = sleep
        self._openai = LoopBoundClient(
            api_key=api_key, base_url=base_url, timeout_seconds=policy.timeout_seconds
        )
        self._http: aiohttp.ClientSession | None = None

    def _clients(self) -> tuple[openai.AsyncOpenAI, aiohttp.ClientSession]:
        client, built = self._openai.get()
        if built or self._http is None:
            self._http = self.media.open_session()
        return client, self._http

    async def close(self) -> None:
        await self._openai.close()
        if self._http is not None:
            await self._http.close()
        self._http = None

    async def extract(self, request: ExtractionRequest) -> ExtractionResult | ExtractionFailure:
        client, http = self._clients()
        policy = self.policy
        images = FetchedImages()
        if request.message.message_type is MessageType.IMAGE:
            started = time.monotonic()
            deadline = min(
                self.media.policy.deadline_seconds, policy.budget_seconds - policy.timeout_seconds
            )
            images = await self.media.images(http, request.message, deadline_seconds=deadline)
            left = policy.budget_seconds - (time.monotonic() - started)
            policy = replace(policy, budget_seconds=max(policy.timeout_seconds, left))

        async def attempt() -> ExtractionResult:
            return await self._ask(client, request, images)

        kwargs: dict[str, Any] = {"sleep": self._sleep} if self._sleep else {}
        outcome = await call_with_retries(attempt, classify_error, policy, gate=self.gate, **kwargs)
        if isinstance(outcome, CallFailure):
            return ExtractionFailure(outcome.reason, outcome.detail, outcome.attempts)
        return outcome.value

    async def _ask(
        self, client: openai.AsyncOpenAI, request: ExtractionRequest, images: FetchedImages
    ) -> ExtractionResult:
        text = prompt_text(request, images_left_out=len(images.skipped))
        content: ResponseInputMessageContentListParam = [
            ResponseInputTextParam(type="input_text", text=text)
        ]
        content += [
            ResponseInputImageParam(type="input_image", image_url=url, detail="auto")
            for url in images.data_urls
        ]
        body = {
            "model": self.model,
            "instructions": INSTRUCTIONS,
            "input": [EasyInputMessageParam(role="user", content=content)],
            "store": False,
            "text": TEXT_FORMAT,
        }
        answer = await client.post("/responses", cast_to=httpx2.Response, body=body)
        return ResponseOutput.model_validate_json(answer.content).parsed()
