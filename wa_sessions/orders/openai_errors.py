"""How the OpenAI extractor classifies a failure for retrying: the SDK's errors and an answer
that does not fit the schema. (The image fetch runs before the call and never fails it:
``media.py``.)"""

from __future__ import annotations

import json

import openai
import pydantic

from wa_sessions.retries import Classified, FailureReason, parse_retry_after


class InvalidOutput(Exception):
    """The model answered, but not with an ``ExtractionResult`` (a refusal, an empty answer)."""


def classify_error(exc: Exception) -> Classified:
    """What an exception from the SDK, the media fetch or the parsing means for retrying."""
    if isinstance(exc, openai.APITimeoutError) and not _caused_by(exc, ConnectionError):
        return Classified(FailureReason.TIMEOUT, True, "OpenAI request timed out")
    if isinstance(exc, openai.APIConnectionError):
        return Classified(FailureReason.CONNECTION, True, "could not connect to OpenAI")
    if isinstance(exc, openai.RateLimitError):
        headers = exc.response.headers
        retry_after = _retry_after_ms(headers.get("retry-after-ms")) or parse_retry_after(
            headers.get("retry-after")
        )
        return Classified(
            FailureReason.RATE_LIMITED,
            True,
            "OpenAI rate limit (429)",
            retry_after,
            "429",
            pauses_gate=True,
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
    return Classified(FailureReason.OTHER, False, f"unexpected {type(exc).__name__}")


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is in the exception's cause chain. The SDK's aiohttp transport reports a
    refused connection as a connect *timeout* (``APITimeoutError``); the ``OSError`` under it
    says what happened."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retry_after_ms(value: str | None) -> float | None:
    seconds = parse_retry_after(value)
    return None if seconds is None else seconds / 1000
