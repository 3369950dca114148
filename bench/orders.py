"""Orders and replies, measured: ``python -m bench.orders [--overhead-messages N] [--outage]``.

1. Overhead: the in-process drain of the same messages with effects off, with the offline
   defaults (rule-based extraction, replies logged) and with the real OpenAI and Twilio SDKs
   against local fake servers (tests/fake_apis.py); milliseconds and Redis round trips per
   message.
2. Outage (``--outage``, about three minutes): one phone sends a message every 5 s for 60 s
   while OpenAI is down for the first 30 s, once hanging (every attempt times out) and once
   answering 503; with the default budget settings. Prints when each message was applied and
   when its effects were committed, and with what outcome.

Starts its own private Redis.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from bench.inproc import RoundTrips
from tests.fake_apis import (
    OPENAI_KEY,
    TWILIO_SID,
    TWILIO_TOKEN,
    FakeOpenAI,
    Recorded,
    Reply,
    extraction_reply,
    fake_openai,
    fake_twilio,
)
from wa_sessions.config import Settings
from wa_sessions.embedded_redis import EmbeddedRedis
from wa_sessions.orders.extractor import OrderExtractor
from wa_sessions.orders.models import ExtractionResult, ItemAction, ItemChange
from wa_sessions.orders.openai import OpenAIOrderExtractor
from wa_sessions.orders.rule_based import RuleBasedOrderExtractor
from wa_sessions.replies.sender import LogSender, OutboundSender
from wa_sessions.replies.twilio import TwilioSender
from wa_sessions.retries import RetryPolicy
from wa_sessions.statemachine.models import Message
from wa_sessions.statemachine.redis.inbox import Inbox
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.steps import to_ms
from wa_sessions.workers.handlers import WorkerDeps, drain_conversation

BUSINESS = "+14155238886"
BODY = "I need 5 units of Product A"
FOUND = ExtractionResult(
    found=True,
    changes=[ItemChange(action=ItemAction.ADD, name="Product A", quantity=5, unit="units")],
)


_Build = Callable[[], tuple[OrderExtractor | None, OutboundSender | None]]


def conv(i: int) -> str:
    return f"+1415{i:07d}|{BUSINESS}"


def deps_for(
    client: redis.Redis, extractor: OrderExtractor | None, sender: OutboundSender | None
) -> WorkerDeps:
    service = SessionService(client)
    return WorkerDeps(
        service=service,
        inbox=Inbox(service.store),
        wake=lambda conv: None,
        extractor=extractor,
        sender=sender,
    )


def accept(deps: WorkerDeps, key: str, body: str = BODY) -> None:
    now = datetime.now(UTC)
    message = Message(id="SM" + uuid.uuid4().hex, content=body, timestamp=now)
    deps.inbox.accept(key, message, accepted_ms=to_ms(now))


def overhead(client: redis.Redis, messages: int) -> None:
    phones, per_phone = max(1, messages // 5), 5
    print(f"## Overhead: {phones} phones x {per_phone} messages ({BODY!r}), in-process drain\n")
    print("| effects | ms/message | Redis round trips/message | drained messages/s |")
    print("| --- | --- | --- | --- |")
    default_policy = RetryPolicy(timeout_seconds=10, max_retries=2, budget_seconds=25)
    with fake_openai(FOUND) as openai_api, fake_twilio() as twilio_api:

        def openai() -> OrderExtractor:
            return OpenAIOrderExtractor(
                api_key=OPENAI_KEY,
                model="gpt-test",
                base_url=openai_api.api_url,
                policy=default_policy,
            )

        def twilio() -> OutboundSender:
            return TwilioSender(
                account_sid=TWILIO_SID,
                auth_token=TWILIO_TOKEN,
                policy=default_policy,
                status_callback_url="https://wa.example.test/twilio-status",
                api_base_url=twilio_api.base_url,
            )

        configs: list[tuple[str, _Build]] = [
            ("off (issue 3 drain)", lambda: (None, None)),
            (
                "rule-based + LogSender (offline default)",
                lambda: (RuleBasedOrderExtractor(), LogSender()),
            ),
            ("OpenAI SDK (local fake) + LogSender", lambda: (openai(), LogSender())),
            ("rule-based + Twilio SDK (local fake)", lambda: (RuleBasedOrderExtractor(), twilio())),
            ("OpenAI SDK + Twilio SDK (local fakes)", lambda: (openai(), twilio())),
        ]
        for label, build in configs:
            client.flushall()
            extractor, sender = build()
            deps = deps_for(client, extractor, sender)
            keys = [conv(i) for i in range(phones)]
            for _ in range(per_phone):
                for key in keys:
                    accept(deps, key)
            # Warm up connections and script caches on a phone of its own.
            accept(deps, conv(10**6))
            drain_conversation(deps, conv(10**6))
            with RoundTrips() as trips:
                started = time.perf_counter()
                applied = sum(drain_conversation(deps, key).applied for key in keys)
                elapsed = time.perf_counter() - started
            assert applied == phones * per_phone, applied
            print(
                f"| {label} | {elapsed / applied * 1000:.2f} | {trips.count / applied:.2f} "
                f"| {applied / elapsed:,.0f} |"
            )
    print()


@dataclass
class Timeline:
    accepted: float
    committed: float | None = None
    outcome: str = ""


def outage(client: redis.Redis, kind: str, outage_seconds: float = 30.0) -> None:
    settings = Settings()
    policy = RetryPolicy(
        timeout_seconds=settings.openai_timeout_seconds,
        max_retries=settings.openai_max_retries,
        budget_seconds=settings.openai_retry_budget_seconds,
    )
    print(
        f"## OpenAI {kind} for {outage_seconds:.0f} s; OPENAI_TIMEOUT_SECONDS="
        f"{policy.timeout_seconds:g}, OPENAI_MAX_RETRIES={policy.max_retries}, "
        f"OPENAI_RETRY_BUDGET_SECONDS={policy.budget_seconds:g}\n"
    )
    client.flushall()
    with fake_openai(FOUND) as api:
        start = time.monotonic()
        start_wall = time.time()
        outage_ends = start + outage_seconds
        original_check = api.check

        def check(recorded: Recorded) -> Reply | None:
            refusal = original_check(recorded)
            now = time.monotonic()
            if refusal is None and now < outage_ends:
                if kind == "hanging":
                    return Reply(200, extraction_reply(FOUND).body, delay=outage_ends - now + 60)
                return Reply(503, {"error": {"message": "overloaded"}})
            return refusal

        api.check = check  # type: ignore[method-assign]
        run_phone(client, api, policy, start, start_wall)


def run_phone(
    client: redis.Redis, api: FakeOpenAI, policy: RetryPolicy, start: float, start_wall: float
) -> None:
    extractor = OpenAIOrderExtractor(
        api_key=OPENAI_KEY, model="gpt-test", base_url=api.api_url, policy=policy
    )
    deps = deps_for(client, extractor, LogSender())
    key = conv(1)
    store = deps.service.store
    sent: list[Timeline] = []
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            drain_conversation(deps, key)
            time.sleep(0.05)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    for n in range(12):
        while time.monotonic() < start + 5 * n:
            time.sleep(0.01)
        sent.append(Timeline(time.monotonic() - start))
        accept(deps, key, f"{BODY} #{n}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        sid = store.latest_session_id(key)
        done = sid is not None and sum(
            1 for m in store.messages(sid) if m.direction.value == "outbound"
        ) >= len(sent)
        if done:
            break
        time.sleep(0.05)
    stop.set()
    thread.join()
    sid = store.latest_session_id(key)
    assert sid is not None
    history = store.messages(sid)
    for index, timeline in enumerate(sent):
        inbound = next(m for m in history if m.content == f"{BODY} #{index}")
        position = history.index(inbound)
        answer = history[position + 1]
        timeline.committed = answer.timestamp.timestamp() - start_wall
        timeline.outcome = (
            f"failed: {answer.metadata.get('reason')}"
            if answer.message_type.value == "system"
            else "extracted, replied"
        )
    print("| message | accepted at | effects committed at | waited | outcome |")
    print("| --- | --- | --- | --- | --- |")
    for index, t in enumerate(sent):
        assert t.committed is not None
        print(
            f"| #{index} | {t.accepted:.1f} s | {t.committed:.1f} s | "
            f"{t.committed - t.accepted:.1f} s | {t.outcome} |"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--overhead-messages", type=int, default=1000)
    parser.add_argument("--outage", action="store_true", help="also the 30 s outage runs")
    args = parser.parse_args()
    server = EmbeddedRedis().start()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        overhead(client, args.overhead_messages)
        if args.outage:
            outage(client, "hanging")
            outage(client, "answering 503")
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
