"""The Twilio sender through the real ``twilio`` SDK against a local fake of the Messages API:
the request Twilio receives, error codes that are final, and retries that are not."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator

import pytest

from tests.fake_apis import (
    TWILIO_SID,
    TWILIO_TOKEN,
    FakeTwilio,
    Reply,
    fake_twilio,
    twilio_error,
)
from wa_sessions.replies.sender import SendFailure, SendResult
from wa_sessions.replies.twilio import TwilioSender
from wa_sessions.retries import FailureReason, RetryPolicy

CALLBACK = "https://wa.example.test/twilio-status"
CUSTOMER = "+14155550100"
BUSINESS = "+14155238886"


def send(sender: TwilioSender, *, to: str, from_: str, body: str) -> SendResult | SendFailure:
    """One send on a fresh event loop; the sender's HTTP client is closed after."""

    async def run() -> SendResult | SendFailure:
        try:
            return await sender.send(to=to, from_=from_, body=body)
        finally:
            await sender.close()

    return asyncio.run(run())


def recorder(into: list[float]) -> Callable[[float], Awaitable[None]]:
    """A ``sleep`` that records how long it was asked to wait, and returns at once."""

    async def sleep(seconds: float) -> None:
        into.append(seconds)

    return sleep


@pytest.fixture
def api() -> Iterator[FakeTwilio]:
    with fake_twilio() as server:
        yield server


def sender(
    api: FakeTwilio,
    *,
    sleeps: list[float] | None = None,
    token: str = TWILIO_TOKEN,
    policy: RetryPolicy | None = None,
) -> TwilioSender:
    recorded = sleeps if sleeps is not None else []
    return TwilioSender(
        account_sid=TWILIO_SID,
        auth_token=token,
        policy=policy or RetryPolicy(timeout_seconds=1, max_retries=2, budget_seconds=4),
        status_callback_url=CALLBACK,
        api_base_url=api.base_url,
        sleep=recorder(recorded),
    )


def test_a_reply_is_created_from_the_business_number_with_a_status_callback(
    api: FakeTwilio,
) -> None:
    """POST /2010-04-01/Accounts/{sid}/Messages.json with basic auth and WhatsApp addresses;
    Twilio's MessageSid and initial status come back."""
    result = send(sender(api), to=CUSTOMER, from_=BUSINESS, body="✅ Order received: 5 x A")

    assert isinstance(result, SendResult)
    assert result.sent
    assert result.status == "queued"
    assert result.sid is not None
    assert result.sid.startswith("SM")
    [request] = api.requests
    assert request.path == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    assert request.form() == {
        "To": f"whatsapp:{CUSTOMER}",
        "From": f"whatsapp:{BUSINESS}",
        "Body": "✅ Order received: 5 x A",
        "StatusCallback": CALLBACK,
    }


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (63016, "Failed to send freeform message because you are outside the allowed window."),
        (21211, "Invalid 'To' Phone Number"),
    ],
)
def test_a_4xx_with_an_error_code_is_final(api: FakeTwilio, code: int, message: str) -> None:
    """Twilio's 400s (63016 outside the window, 21211 invalid number) are not retried."""
    api.reply(twilio_error(400, code, message))

    result = send(sender(api), to=CUSTOMER, from_=BUSINESS, body="hi")

    assert isinstance(result, SendFailure)
    assert (result.reason, result.code, result.attempts) == (
        FailureReason.REJECTED,
        str(code),
        1,
    )
    assert len(api.requests) == 1


def test_a_5xx_is_retried_and_the_retry_succeeds(api: FakeTwilio) -> None:
    """A 500 then a 201: two requests, one backoff, the reply went out."""
    api.reply(twilio_error(500, 20500, "Internal Server Error"))
    sleeps: list[float] = []

    result = send(sender(api, sleeps=sleeps), to=CUSTOMER, from_=BUSINESS, body="hi")

    assert isinstance(result, SendResult)
    assert result.sent
    assert len(api.requests) == 2
    assert len(sleeps) == 1


def test_5xx_on_every_attempt_gives_up_after_the_retries(api: FakeTwilio) -> None:
    """Three 503s: server_error after three attempts."""
    api.reply(*[twilio_error(503, 20503, "Service Unavailable") for _ in range(3)])

    result = send(sender(api), to=CUSTOMER, from_=BUSINESS, body="hi")

    assert isinstance(result, SendFailure)
    assert (result.reason, result.attempts) == (FailureReason.SERVER_ERROR, 3)


def test_a_429_retry_after_is_honoured(api: FakeTwilio) -> None:
    """Twilio's 429 with Retry-After: waited out, then sent."""
    limited = twilio_error(429, 20429, "Too Many Requests")
    limited.headers["Retry-After"] = "0.3"
    api.reply(limited)
    sleeps: list[float] = []

    result = send(sender(api, sleeps=sleeps), to=CUSTOMER, from_=BUSINESS, body="hi")

    assert isinstance(result, SendResult)
    assert sleeps == [0.3]


def test_a_hung_api_times_out(api: FakeTwilio) -> None:
    """No answer within the timeout on any attempt: a timeout failure inside the budget."""
    api.reply(*[Reply(201, {}, delay=3.0) for _ in range(3)])
    policy = RetryPolicy(timeout_seconds=0.3, max_retries=2, budget_seconds=1.2)

    result = send(sender(api, policy=policy), to=CUSTOMER, from_=BUSINESS, body="hi")

    assert isinstance(result, SendFailure)
    assert result.reason is FailureReason.TIMEOUT
    assert result.attempts >= 2


def test_wrong_credentials_are_a_final_refusal(api: FakeTwilio) -> None:
    """401 (error 20003): rejected, not retried."""
    result = send(sender(api, token="wrong"), to=CUSTOMER, from_=BUSINESS, body="hi")

    assert isinstance(result, SendFailure)
    assert (result.reason, result.code, result.attempts) == (FailureReason.REJECTED, "20003", 1)


def test_a_template_is_created_with_content_sid_and_json_content_variables(
    api: FakeTwilio,
) -> None:
    """Content API: ContentSid in place of Body, the variables as one JSON string."""
    sid = "HX" + "0" * 32

    async def run() -> SendResult | SendFailure:
        twilio = sender(api)
        try:
            return await twilio.send_template(
                to=CUSTOMER, from_=BUSINESS, content_sid=sid, variables={"1": "Ana", "2": "3 x A"}
            )
        finally:
            await twilio.close()

    result = asyncio.run(run())

    assert isinstance(result, SendResult)
    assert result.sent
    [request] = api.requests
    form = request.form()
    assert "Body" not in form
    assert form["ContentSid"] == sid
    assert json.loads(form["ContentVariables"]) == {"1": "Ana", "2": "3 x A"}
    assert form["To"] == f"whatsapp:{CUSTOMER}"
    assert form["StatusCallback"] == CALLBACK
