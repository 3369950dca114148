"""A customer's ``MediaUrlN`` cannot steer the worker: only ``https`` URLs on Twilio's media
hosts are fetched, redirects only to allowed hosts, the account's credentials only to the media
host, within one deadline and a size cap. Anything else is left out, counted, and the message
is still extracted from its text. Real HTTPS servers on loopback with a test CA; the OpenAI
stand-in of ``tests/fake_apis.py``; the fetcher built by the composition root from settings.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.fake_apis import OPENAI_KEY, PNG, TWILIO_SID, TWILIO_TOKEN, FakeOpenAI, fake_openai
from tests.media_servers import BASIC_AUTH, MEDIA_HOST, OTHER_HOST, MediaServer
from tests.unit.test_orders_settings import settings
from wa_sessions.bootstrap import build_media_fetcher
from wa_sessions.orders.extractor import ExtractionFailure, ExtractionRequest
from wa_sessions.orders.media import MediaSkip
from wa_sessions.orders.media_policy import host_allowed
from wa_sessions.orders.models import ExtractionResult, ItemAction, ItemChange
from wa_sessions.orders.openai import OpenAIOrderExtractor
from wa_sessions.retries import RetryPolicy
from wa_sessions.statemachine.models import Message, MessageType

FIVE_OF_A = ExtractionResult(
    found=True, changes=[ItemChange(action=ItemAction.ADD, name="Product A", quantity=5)]
)
LEFT_OUT = "could not be loaded"


@pytest.fixture
def api() -> Iterator[FakeOpenAI]:
    with fake_openai(FIVE_OF_A) as server:
        yield server


def extractor(
    api: FakeOpenAI,
    tls: ssl.SSLContext,
    policy: RetryPolicy | None = None,
    **values: Any,
) -> OpenAIOrderExtractor:
    """The OpenAI extractor with the fetcher the composition root builds from ``values``
    (127.0.0.1 as Twilio's media host unless said otherwise), trusting the test CA."""
    defaults = {
        "twilio_account_sid": TWILIO_SID,
        "twilio_auth_token": TWILIO_TOKEN,
        "twilio_media_hosts": [MEDIA_HOST],
    }
    configured = settings(**{**defaults, **values})
    return OpenAIOrderExtractor(
        api_key=OPENAI_KEY,
        model="gpt-test",
        base_url=api.api_url,
        policy=policy or RetryPolicy(timeout_seconds=2, max_retries=0, budget_seconds=4),
        media=build_media_fetcher(configured, tls),
    )


def image_message(*urls: str) -> Message:
    return Message(
        id="SM" + "1" * 32,
        content="I need 5 units of Product A",
        message_type=MessageType.IMAGE,
        timestamp=datetime.now(UTC),
        metadata={"media": [{"url": url, "content_type": "image/png"} for url in urls]},
    )


def extract(extractor: OpenAIOrderExtractor, *urls: str) -> ExtractionResult | ExtractionFailure:
    async def run() -> ExtractionResult | ExtractionFailure:
        try:
            return await extractor.extract(ExtractionRequest(image_message(*urls)))
        finally:
            await extractor.close()

    return asyncio.run(run())


def sent_to_openai(api: FakeOpenAI) -> tuple[str, list[str]]:
    """The prompt text and the image URLs of the one request OpenAI received."""
    [call] = [r for r in api.requests if r.method == "POST"]
    content = call.json()["input"][0]["content"]
    images = [part["image_url"] for part in content if part["type"] == "input_image"]
    return content[0]["text"], images


def skipped(reason: MediaSkip) -> float:
    value = REGISTRY.get_sample_value("wa_sessions_media_skipped_total", {"reason": reason.value})
    return value or 0.0


def test_an_image_on_the_media_host_is_fetched_with_the_credentials_and_inlined(
    api: FakeOpenAI, media: MediaServer, client_tls: ssl.SSLContext
) -> None:
    """The working path: https, the media host, basic auth, the image as a data URL."""
    url = media.image("/Media/ME1")

    assert extract(extractor(api, client_tls), url) == FIVE_OF_A

    assert [(s.path, s.authorization) for s in media.requests] == [("/Media/ME1", BASIC_AUTH)]
    text, images = sent_to_openai(api)
    assert images == ["data:image/png;base64," + base64.b64encode(PNG).decode()]
    assert LEFT_OUT not in text


def test_a_plain_http_media_url_is_not_fetched(api: FakeOpenAI, client_tls: ssl.SSLContext) -> None:
    """``http://`` on the media host itself: no request at all (the credentials would travel
    in clear); the text is still extracted, the model told an image was left out."""
    before = skipped(MediaSkip.NOT_HTTPS)

    result = extract(extractor(api, client_tls), api.media_url("ME1"))

    assert result == FIVE_OF_A
    assert [r.method for r in api.requests] == ["POST"]  # the media GET never came
    text, images = sent_to_openai(api)
    assert images == []
    assert LEFT_OUT in text
    assert skipped(MediaSkip.NOT_HTTPS) == before + 1


def test_a_media_url_on_another_host_is_not_fetched(
    api: FakeOpenAI, media: MediaServer, client_tls: ssl.SSLContext
) -> None:
    """``https://localhost/...`` when the media host is 127.0.0.1: nothing is requested."""
    media.image("/Media/ME1", auth=False)
    before = skipped(MediaSkip.HOST_NOT_ALLOWED)

    result = extract(extractor(api, client_tls), media.url("/Media/ME1", host=OTHER_HOST))

    assert result == FIVE_OF_A
    assert media.requests == []
    assert sent_to_openai(api)[1] == []
    assert skipped(MediaSkip.HOST_NOT_ALLOWED) == before + 1


def test_a_redirect_to_another_host_is_not_followed(
    api: FakeOpenAI, media: MediaServer, cdn: MediaServer, client_tls: ssl.SSLContext
) -> None:
    """The media host redirects to a host that is neither a media host nor an allowed
    redirect host: the redirect is not followed, the image left out."""
    cdn.image("/stolen", auth=False)
    url = media.redirect("/Media/ME1", cdn.url("/stolen", host=OTHER_HOST))
    before = skipped(MediaSkip.REDIRECT_REFUSED)

    result = extract(extractor(api, client_tls), url)

    assert result == FIVE_OF_A
    assert media.paths() == ["/Media/ME1"]
    assert cdn.requests == []
    assert sent_to_openai(api)[1] == []
    assert skipped(MediaSkip.REDIRECT_REFUSED) == before + 1


def test_a_redirect_to_plain_http_is_not_followed(
    api: FakeOpenAI, media: MediaServer, client_tls: ssl.SSLContext
) -> None:
    """Even to the media host itself, a redirect to ``http://`` is refused."""
    url = media.redirect("/Media/ME1", api.media_url("ME1"))

    assert extract(extractor(api, client_tls), url) == FIVE_OF_A

    assert [r.method for r in api.requests] == ["POST"]
    assert sent_to_openai(api)[1] == []


def test_credentials_go_to_the_media_host_only_not_to_the_cdn_it_redirects_to(
    api: FakeOpenAI, media: MediaServer, cdn: MediaServer, client_tls: ssl.SSLContext
) -> None:
    """Twilio's redirect to its CDN (an allowed redirect host) is followed, without the
    account's credentials; the CDN's image reaches the model."""
    cdn.image("/signed/ME1", auth=False)
    url = media.redirect("/Media/ME1", cdn.url("/signed/ME1", host=OTHER_HOST), status=307)

    result = extract(extractor(api, client_tls, twilio_media_redirect_hosts=[OTHER_HOST]), url)

    assert result == FIVE_OF_A
    assert [(s.path, s.authorization) for s in media.requests] == [("/Media/ME1", BASIC_AUTH)]
    assert [(s.path, s.authorization) for s in cdn.requests] == [("/signed/ME1", None)]
    assert sent_to_openai(api)[1] == ["data:image/png;base64," + base64.b64encode(PNG).decode()]


def test_a_redirect_loop_stops_after_a_few_hops(
    api: FakeOpenAI, media: MediaServer, client_tls: ssl.SSLContext
) -> None:
    """A media host answering redirects forever is left after three hops."""
    media.redirect("/loop", "/loop")

    assert extract(extractor(api, client_tls), media.url("/loop")) == FIVE_OF_A

    assert media.paths() == ["/loop"] * 4
    assert sent_to_openai(api)[1] == []


def test_a_slow_image_is_cut_at_the_total_deadline_not_per_read(
    api: FakeOpenAI, media: MediaServer, client_tls: ssl.SSLContext
) -> None:
    """Two images trickled a byte every 0.1 s (each read is quick; each would take 10 s): the
    message's one deadline (0.5 s) ends the first and leaves the second unrequested."""
    first = media.trickle("/Media/ME1", chunks=100, every_seconds=0.1)
    second = media.trickle("/Media/ME2", chunks=100, every_seconds=0.1)
    before = skipped(MediaSkip.TOO_SLOW)
    slow = extractor(api, client_tls, media_fetch_deadline_seconds=0.5)
    started = time.monotonic()

    result = extract(slow, first, second)

    assert time.monotonic() - started < 5  # not 2 x 10 s
    assert result == FIVE_OF_A
    assert media.paths() == ["/Media/ME1"]
    assert skipped(MediaSkip.TOO_SLOW) == before + 2
    text, images = sent_to_openai(api)
    assert images == []
    assert "2 image(s) that " + LEFT_OUT in text


def test_the_image_fetch_and_the_openai_call_share_the_extractions_budget(
    api: FakeOpenAI, media: MediaServer, client_tls: ssl.SSLContext
) -> None:
    """The drain's lease covers the retry budget (1 s here), not the budget plus the media
    deadline (5 s): the fetch gets what the budget leaves after one attempt's timeout, and the
    extraction still ends, answered, within the budget."""
    url = media.trickle("/Media/ME1", chunks=100, every_seconds=0.1)
    policy = RetryPolicy(timeout_seconds=0.5, max_retries=0, budget_seconds=1.0)
    tight = extractor(api, client_tls, policy, media_fetch_deadline_seconds=5)
    started = time.monotonic()

    result = extract(tight, url)

    assert time.monotonic() - started < policy.budget_seconds
    assert tight.budget_seconds == policy.budget_seconds
    assert result == FIVE_OF_A
    assert sent_to_openai(api)[1] == []


def test_an_image_declared_over_the_cap_is_not_read(
    api: FakeOpenAI, media: MediaServer, client_tls: ssl.SSLContext
) -> None:
    """A Content-Length over ``MAX_IMAGE_BYTES`` is refused from the headers."""
    url = media.endless("/Media/ME1", up_to_bytes=50 * 2**20, declared=50 * 2**20)
    before = skipped(MediaSkip.TOO_LARGE)

    result = extract(extractor(api, client_tls, max_image_bytes=100_000), url)

    assert result == FIVE_OF_A
    assert skipped(MediaSkip.TOO_LARGE) == before + 1
    assert sent_to_openai(api)[1] == []


def test_a_huge_image_without_a_length_is_cut_at_the_cap(
    api: FakeOpenAI, media: MediaServer, client_tls: ssl.SSLContext
) -> None:
    """A body with no Content-Length, 50 MB long: the fetch stops past the cap (100 kB) and
    hangs up, so the server never gets to send most of it."""
    url = media.endless("/Media/ME1", up_to_bytes=50 * 2**20)
    before = skipped(MediaSkip.TOO_LARGE)

    result = extract(extractor(api, client_tls, max_image_bytes=100_000), url)

    assert result == FIVE_OF_A
    assert skipped(MediaSkip.TOO_LARGE) == before + 1
    assert sent_to_openai(api)[1] == []
    assert media.done.wait(10)
    assert media.sent["/Media/ME1"] == -1  # the client hung up before the 50 MB were out


def test_an_image_the_media_host_refuses_is_left_out_and_the_text_still_read(
    api: FakeOpenAI, media: MediaServer, client_tls: ssl.SSLContext
) -> None:
    """Without the account's credentials the media host answers 401: the image is left out
    (``refused``), the message is still extracted."""
    url = media.image("/Media/ME1")
    before = skipped(MediaSkip.REFUSED)
    anonymous = extractor(api, client_tls, twilio_account_sid="")

    assert extract(anonymous, url) == FIVE_OF_A

    assert [(s.path, s.authorization) for s in media.requests] == [("/Media/ME1", None)]
    assert skipped(MediaSkip.REFUSED) == before + 1


@pytest.mark.parametrize(
    ("hosts", "problem"),
    [(["https://api.twilio.com"], "not a host name"), (["api.twilio.com/x"], "not a host name")],
)
def test_a_media_host_setting_that_is_not_a_host_name_is_refused(
    hosts: list[str], problem: str
) -> None:
    """``TWILIO_MEDIA_HOSTS`` takes host names, not URLs: a URL fails at start."""
    with pytest.raises(ValueError, match=problem):
        settings(twilio_media_hosts=hosts)


def test_media_host_settings_are_comma_separated_with_leading_dot_suffixes() -> None:
    """``TWILIO_MEDIA_REDIRECT_HOSTS=.twiliocdn.com, cdn.example`` is two entries; the leading
    dot matches subdomains only."""
    configured = settings(twilio_media_redirect_hosts=".twiliocdn.com, cdn.example")

    hosts = configured.twilio_media_redirect_hosts
    assert hosts == [".twiliocdn.com", "cdn.example"]
    assert host_allowed("mms.twiliocdn.com", hosts)
    assert host_allowed("MMS.TwilioCDN.com.", hosts)
    assert not host_allowed("twiliocdn.com.evil.test", hosts)
    assert not host_allowed("eviltwiliocdn.com", hosts)
    assert not host_allowed("x.cdn.example", hosts)
