"""The drain wake-up the ingest script enqueues is byte for byte what Dramatiq would enqueue."""

from __future__ import annotations

import dramatiq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wa_sessions.workers.actors import DRAIN_CONVERSATION
from wa_sessions.workers.broker import DrainWakeMessages
from wa_sessions.workers.queues import NAMESPACE, QUEUE, QueueKeys


@pytest.fixture(scope="module")
def wake() -> DrainWakeMessages:
    return DrainWakeMessages(QueueKeys(), DRAIN_CONVERSATION)


def dramatiq_bytes(conv: str, message_id: str, timestamp: int) -> bytes:
    return dramatiq.Message(
        queue_name=QUEUE,
        actor_name="drain_conversation",
        args=(conv,),
        kwargs={},
        options={"redis_message_id": message_id},
        message_id=message_id,
        message_timestamp=timestamp,
    ).encode()


@given(conv=st.text(max_size=60))
def test_the_template_writes_dramatiqs_own_encoding(wake: DrainWakeMessages, conv: str) -> None:
    """Any conversation key (quotes, backslashes, non-ASCII included)."""
    assert wake.encode(conv, "abc-1", 1_795_000_000_000) == dramatiq_bytes(
        conv, "abc-1", 1_795_000_000_000
    )


def test_each_wake_up_has_its_own_id_in_dramatiqs_queue_keys(wake: DrainWakeMessages) -> None:
    conv = "whatsapp:+14155550001|whatsapp:+14155238886"
    first, second = wake(conv), wake(conv)
    assert (first.queue_key, first.messages_key) == (
        f"{NAMESPACE}:{QUEUE}",
        f"{NAMESPACE}:{QUEUE}.msgs",
    )
    assert first.message_id != second.message_id
    decoded = dramatiq.Message.decode(first.data)
    assert decoded.args == (conv,)
    assert decoded.options == {"redis_message_id": first.message_id}
