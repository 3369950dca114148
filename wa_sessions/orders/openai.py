"""Order extraction by an OpenAI model through the official SDK, with structured output parsed
into ``ExtractionResult``.

The model sees the current order, the session's recent history and the new message (and its
image, fetched with the Twilio account's credentials and inlined as a data URL, since Twilio
media URLs need HTTP basic auth that OpenAI cannot send). The SDK's own retries are off: the
call runs inside ``retries.call_with_retries`` so its whole cost stays within the budget the
drain extended its lease for, behind the process' ``RateGate``. Every failure comes back as an
``ExtractionFailure``.

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

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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
from wa_sessions.orders.models import ExtractionResult
from wa_sessions.orders.openai_errors import MediaUnavailable, classify_error
from wa_sessions.orders.openai_prompt import (
    INSTRUCTIONS,
    TEXT_FORMAT,
    ResponseOutput,
    prompt_text,
)
from wa_sessions.retries import CallFailure, Gate, RetryPolicy, call_with_retries
from wa_sessions.statemachine.models import Message, MessageType

DEFAULT_TWILIO_MEDIA_HOST = "api.twilio.com"
#: Larger images are not worth a model call from a chat (WhatsApp caps images at 5 MB).
MAX_IMAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TwilioMediaAuth:
    """Credentials sent only to Twilio's media host (redirects elsewhere drop them)."""

    account_sid: str
    auth_token: str
    host: str = DEFAULT_TWILIO_MEDIA_HOST


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
        media_auth: TwilioMediaAuth | None = None,
        gate: Gate | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.model = model
        self.policy = policy
        self.history_limit = history_limit
        self.media_auth = media_auth
        self.budget_seconds = policy.budget_seconds
        self.gate = gate
        self._api_key = api_key
        self._base_url = base_url or None
        self._sleep = sleep
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: openai.AsyncOpenAI | None = None
        self._http: aiohttp.ClientSession | None = None

    def _clients(self) -> tuple[openai.AsyncOpenAI, aiohttp.ClientSession]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._http is None or self._loop is not loop:
            self._loop = loop
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self._base_url,
                timeout=self.policy.timeout_seconds,
                max_retries=0,
                http_client=openai.DefaultAioHttpClient(),
            )
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout_seconds)
            )
        return self._client, self._http

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._http is not None:
            await self._http.close()
        self._client = self._http = None

    async def extract(self, request: ExtractionRequest) -> ExtractionResult | ExtractionFailure:
        images: dict[str, str] = {}
        client, http = self._clients()

        async def attempt() -> ExtractionResult:
            if request.message.message_type is MessageType.IMAGE and not images:
                images.update(await self._images(http, request.message))
            return await self._ask(client, request, list(images.values()))

        kwargs: dict[str, Any] = {"sleep": self._sleep} if self._sleep else {}
        outcome = await call_with_retries(
            attempt, classify_error, self.policy, gate=self.gate, **kwargs
        )
        if isinstance(outcome, CallFailure):
            return ExtractionFailure(outcome.reason, outcome.detail, outcome.attempts)
        return outcome.value

    async def _ask(
        self, client: openai.AsyncOpenAI, request: ExtractionRequest, image_urls: list[str]
    ) -> ExtractionResult:
        content: ResponseInputMessageContentListParam = [
            ResponseInputTextParam(type="input_text", text=prompt_text(request))
        ]
        content += [
            ResponseInputImageParam(type="input_image", image_url=url, detail="auto")
            for url in image_urls
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

    async def _images(self, http: aiohttp.ClientSession, message: Message) -> dict[str, str]:
        """Each image of the message as a data URL, in order."""
        urls: dict[str, str] = {}
        for index, media in enumerate(message.metadata.get("media") or []):
            content_type = str(media.get("content_type") or "")
            if not content_type.startswith("image/"):
                continue
            urls[str(index)] = await self._fetch(http, str(media.get("url") or ""), content_type)
        return urls

    async def _fetch(self, http: aiohttp.ClientSession, url: str, content_type: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise MediaUnavailable("media URL is not http(s)")
        headers = {}
        if self.media_auth and parts.hostname == self.media_auth.host:
            headers["Authorization"] = aiohttp.encode_basic_auth(
                self.media_auth.account_sid, self.media_auth.auth_token
            )
        # Redirects (Twilio's media URLs redirect to a CDN) drop the credentials: aiohttp
        # strips Authorization when a redirect leaves the origin.
        async with http.get(url, headers=headers) as response:
            response.raise_for_status()
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MAX_IMAGE_BYTES:
                    raise MediaUnavailable(f"image is over {MAX_IMAGE_BYTES} bytes")
            served = response.headers.get("Content-Type", "").split(";")[0].strip()
        kind = served if served.startswith("image/") else content_type
        return f"data:{kind};base64,{base64.b64encode(bytes(body)).decode()}"
