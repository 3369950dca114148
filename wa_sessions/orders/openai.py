"""Order extraction by an OpenAI model through the official SDK, with structured output parsed
into ``ExtractionResult``.

The model sees the current order, the session's recent history and the new message (and its
image, fetched with the Twilio account's credentials and inlined as a data URL, since Twilio
media URLs need HTTP basic auth that OpenAI cannot send). The SDK's own retries are off: the
call runs inside ``retries.call_with_retries`` so its whole cost stays within the budget the
drain extended its lease for. Every failure comes back as an ``ExtractionFailure``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import openai
import pydantic
import requests
from openai.types.responses import (
    EasyInputMessageParam,
    ResponseInputImageParam,
    ResponseInputMessageContentListParam,
    ResponseInputTextParam,
)

from wa_sessions.orders.extractor import ExtractionFailure, ExtractionRequest
from wa_sessions.orders.models import ExtractionResult
from wa_sessions.retries import (
    CallFailure,
    Classified,
    FailureReason,
    RetryPolicy,
    call_with_retries,
    parse_retry_after,
)
from wa_sessions.statemachine.models import Message, MessageDirection, MessageType

DEFAULT_TWILIO_MEDIA_HOST = "api.twilio.com"
#: Larger images are not worth a model call from a chat (WhatsApp caps images at 5 MB).
MAX_IMAGE_BYTES = 10 * 1024 * 1024
_HISTORY_CHARS = 500

INSTRUCTIONS = """\
You keep a customer's order for a business that takes orders over WhatsApp. Read the customer's \
NEW message (and its image, if any) in the light of the recent conversation and the current \
order, and report only what the new message changes:
- add: the customer orders an item, or more of one; quantity is how many they add.
- set_quantity: the customer changes how many of an item they want; "make that 6" means the \
item discussed last.
- remove: the customer no longer wants an item (quantity null).
When the customer refers to an item already in the order, use its name exactly as the order \
spells it. Set found to false, with no changes, when the message says nothing about the order \
(greetings, thanks, questions). Fill customer_name, delivery_address, notes, currency and \
total_amount only when the new message states them, else null. Never invent items or quantities.\
"""


class InvalidOutput(Exception):
    """The model answered, but not with an ``ExtractionResult`` (a refusal, an empty answer)."""


class MediaUnavailable(Exception):
    """The message's image could not be fetched for a reason another attempt will not fix."""


@dataclass(frozen=True, slots=True)
class TwilioMediaAuth:
    """Credentials sent only to Twilio's media host (redirects elsewhere drop them)."""

    account_sid: str
    auth_token: str
    host: str = DEFAULT_TWILIO_MEDIA_HOST


class OpenAIOrderExtractor:
    """``OrderExtractor`` backed by the OpenAI Responses API."""

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
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.model = model
        self.policy = policy
        self.history_limit = history_limit
        self.media_auth = media_auth
        self.budget_seconds = policy.budget_seconds
        self._sleep = sleep
        self.client = openai.OpenAI(
            api_key=api_key,
            base_url=base_url or None,
            timeout=policy.timeout_seconds,
            max_retries=0,
        )
        self._http = requests.Session()

    def extract(self, request: ExtractionRequest) -> ExtractionResult | ExtractionFailure:
        images: dict[str, str] = {}

        def attempt() -> ExtractionResult:
            if request.message.message_type is MessageType.IMAGE and not images:
                images.update(self._images(request.message))
            return self._ask(request, list(images.values()))

        kwargs: dict[str, Any] = {"sleep": self._sleep} if self._sleep else {}
        outcome = call_with_retries(attempt, classify_error, self.policy, **kwargs)
        if isinstance(outcome, CallFailure):
            return ExtractionFailure(outcome.reason, outcome.detail, outcome.attempts)
        return outcome.value

    def _ask(self, request: ExtractionRequest, image_urls: list[str]) -> ExtractionResult:
        content: ResponseInputMessageContentListParam = [
            ResponseInputTextParam(type="input_text", text=prompt_text(request))
        ]
        content += [
            ResponseInputImageParam(type="input_image", image_url=url, detail="auto")
            for url in image_urls
        ]
        response = self.client.responses.parse(
            model=self.model,
            instructions=INSTRUCTIONS,
            input=[EasyInputMessageParam(role="user", content=content)],
            text_format=ExtractionResult,
            store=False,
        )
        parsed = response.output_parsed
        if parsed is None:
            raise InvalidOutput("the model returned no structured answer (refusal or empty)")
        return parsed

    def _images(self, message: Message) -> dict[str, str]:
        """Each image of the message as a data URL, in order."""
        urls: dict[str, str] = {}
        for index, media in enumerate(message.metadata.get("media") or []):
            content_type = str(media.get("content_type") or "")
            if not content_type.startswith("image/"):
                continue
            urls[str(index)] = self._fetch(str(media.get("url") or ""), content_type)
        return urls

    def _fetch(self, url: str, content_type: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise MediaUnavailable("media URL is not http(s)")
        auth = None
        if self.media_auth and parts.hostname == self.media_auth.host:
            auth = (self.media_auth.account_sid, self.media_auth.auth_token)
        with self._http.get(
            url, auth=auth, timeout=self.policy.timeout_seconds, stream=True
        ) as response:
            response.raise_for_status()
            body = bytearray()
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > MAX_IMAGE_BYTES:
                    raise MediaUnavailable(f"image is over {MAX_IMAGE_BYTES} bytes")
            served = str(response.headers.get("Content-Type") or "").split(";")[0].strip()
        kind = served if served.startswith("image/") else content_type
        return f"data:{kind};base64,{base64.b64encode(bytes(body)).decode()}"


def prompt_text(request: ExtractionRequest) -> str:
    """The user turn: current order, recent history (oldest first), then the new message."""
    order = request.order.model_dump(mode="json", exclude_none=True)
    lines = [f"Current order (JSON): {json.dumps(order, ensure_ascii=False)}", ""]
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
        lines.append("(The customer also sent the attached image.)")
    return "\n".join(lines)


def classify_error(exc: Exception) -> Classified:
    """What an exception from the SDK, the media fetch or the parsing means for retrying."""
    if isinstance(exc, openai.APITimeoutError):
        return Classified(FailureReason.TIMEOUT, True, "OpenAI request timed out")
    if isinstance(exc, openai.APIConnectionError):
        return Classified(FailureReason.CONNECTION, True, "could not connect to OpenAI")
    if isinstance(exc, openai.RateLimitError):
        headers = exc.response.headers
        retry_after = _retry_after_ms(headers.get("retry-after-ms")) or parse_retry_after(
            headers.get("retry-after")
        )
        return Classified(
            FailureReason.RATE_LIMITED, True, "OpenAI rate limit (429)", retry_after, "429"
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status >= 500:
            detail = f"OpenAI server error ({status})"
            return Classified(FailureReason.SERVER_ERROR, True, detail, code=str(status))
        if status == 408:
            return Classified(FailureReason.TIMEOUT, True, "OpenAI request timeout (408)")
        return Classified(
            FailureReason.OTHER, False, f"OpenAI refused the request ({status})", code=str(status)
        )
    if isinstance(
        exc,
        pydantic.ValidationError
        | InvalidOutput
        | openai.APIResponseValidationError
        | openai.LengthFinishReasonError
        | openai.ContentFilterFinishReasonError
        | json.JSONDecodeError,
    ):
        what = str(exc) if isinstance(exc, InvalidOutput) else type(exc).__name__
        return Classified(
            FailureReason.INVALID_OUTPUT, False, f"model output does not fit the schema: {what}"
        )
    return _classify_media(exc)


def _classify_media(exc: Exception) -> Classified:
    if isinstance(exc, requests.Timeout):
        return Classified(FailureReason.TIMEOUT, True, "fetching the image timed out")
    if isinstance(exc, requests.ConnectionError):
        return Classified(FailureReason.CONNECTION, True, "could not connect to the media host")
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = int(exc.response.status_code)
        if status == 429:
            retry_after = parse_retry_after(exc.response.headers.get("Retry-After"))
            return Classified(
                FailureReason.RATE_LIMITED, True, "media host rate limit (429)", retry_after
            )
        if status >= 500:
            return Classified(FailureReason.SERVER_ERROR, True, f"media host error ({status})")
        return Classified(FailureReason.OTHER, False, f"media host refused the image ({status})")
    if isinstance(exc, MediaUnavailable):
        return Classified(FailureReason.OTHER, False, str(exc))
    return Classified(FailureReason.OTHER, False, f"unexpected {type(exc).__name__}")


def _retry_after_ms(value: str | None) -> float | None:
    seconds = parse_retry_after(value)
    return None if seconds is None else seconds / 1000
