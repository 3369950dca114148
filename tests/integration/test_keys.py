"""The key layout on a real Redis: every key of a conversation carries its hash tag (so a later
Redis Cluster step moves no conversation data), and lookups by session id find the session
through the ``idx:conv`` index until the purge removes it; sessions stored the old way are
moved by the migration."""

from __future__ import annotations

import uuid
from typing import Any

import redis

from wa_sessions.orders.rule_based import RuleBasedOrderExtractor
from wa_sessions.replies.sender import LogSender
from wa_sessions.statemachine.identity import Conversation
from wa_sessions.statemachine.models import Message, SessionCreate
from wa_sessions.statemachine.redis.inbox import Inbox
from wa_sessions.statemachine.redis.keys import Keys
from wa_sessions.statemachine.redis.migrate import legacy_session_keys, migrate_sessions
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.steps import to_ms
from wa_sessions.workers.handlers import WorkerDeps, drain_conversation

KEYS = Keys()
BUSINESS = "+14155238886"
#: Keys shared by all conversations (single Redis or Sentinel, documented in ``keys``).
GLOBAL_PREFIXES = (
    "wa:idx:",
    "wa:seen:",
    "wa:out:",
    "wa:events:",
    "wa:wake:",
    "wa:an:",
    "wa:outbox",
)


def test_every_key_of_a_conversation_carries_its_hash_tag(
    redis_client: redis.Redis, clock: Any
) -> None:
    """After messages through the inbox and drain (with effects), the session API and an end,
    every key but the global indexes is ``wa:c:{<conv>}:...`` of a conversation used."""
    service = SessionService(redis_client, clock=clock, business_number=BUSINESS)
    inbox = Inbox(service.store)
    deps = WorkerDeps(
        service=service,
        inbox=inbox,
        wake=lambda conv: None,
        extractor=RuleBasedOrderExtractor(),
        sender=LogSender(),
    )
    drained = Conversation("+14155550001", BUSINESS).key
    for text in ("I need 5 units of Product A", "thanks"):
        message = Message(id="SM" + uuid.uuid4().hex, content=text, timestamp=clock())
        inbox.accept(drained, message, accepted_ms=to_ms(clock()))
    drain_conversation(deps, drained)
    created = service.create_session(
        SessionCreate(phone_number="+14155550002", initial_message="hi", context={"lang": "en"})
    )
    service.complete_session(created.session_id)

    convs = {drained, Conversation("+14155550002", BUSINESS).key}
    tagged = [k for k in redis_client.keys("wa:*") if not k.startswith(GLOBAL_PREFIXES)]
    assert tagged
    assert all(any(k.startswith(f"wa:c:{{{c}}}:") for c in convs) for k in tagged), tagged
    sessions = redis_client.hgetall(KEYS.session_conv)
    assert set(sessions.values()) == convs
    for sid, conv in sessions.items():
        assert redis_client.exists(KEYS.session(conv, sid), KEYS.session_messages(conv, sid)) == 2


def test_lookups_by_id_go_through_the_conversation_index(
    redis_client: redis.Redis, clock: Any
) -> None:
    """A session read by id alone is found through ``idx:conv``; once purged, it is gone from
    the index too and reads by id say it does not exist."""
    service = SessionService(redis_client, clock=clock, retention_days=1)
    session = service.add_message("+14155550003", "hello")
    conv = Conversation("+14155550003", service.business_number).key

    assert service.store.conv_of(session.session_id) == conv
    found = service.get_session_by_id(session.session_id)
    assert found is not None
    assert [m.content for m in found.messages] == ["hello"]

    service.complete_session(session.session_id)
    clock.advance(days=2)
    assert service.purge_retained() == 1
    assert service.store.conv_of(session.session_id) is None
    assert service.get_session_by_id(session.session_id) is None
    assert redis_client.hlen(KEYS.session_conv) == 0


def test_sessions_stored_the_old_way_are_moved_under_their_conversation(
    redis_client: redis.Redis, clock: Any
) -> None:
    """A session written by an earlier version (``wa:s:<sid>``, ``wa:s:<sid>:m``) is moved by
    the migration with its TTL, and the conversation then continues it."""
    service = SessionService(redis_client, clock=clock)
    session = service.add_message("+14155550004", "before the upgrade")
    conv = Conversation("+14155550004", service.business_number).key
    old_hash, old_list = legacy_session_keys(KEYS, session.session_id)
    redis_client.rename(KEYS.session(conv, session.session_id), old_hash)
    redis_client.rename(KEYS.session_messages(conv, session.session_id), old_list)
    redis_client.pexpire(old_list, 86_400_000)
    redis_client.delete(KEYS.session_conv)
    assert service.get_session_by_id(session.session_id) is None

    assert migrate_sessions(redis_client, KEYS, batch=1) == 1
    assert migrate_sessions(redis_client, KEYS) == 0

    assert not redis_client.exists(old_hash, old_list)
    assert redis_client.pttl(KEYS.session_messages(conv, session.session_id)) > 0
    after = service.add_message("+14155550004", "after it")
    assert after.session_id == session.session_id
    assert [m.content for m in service.get_conversation_history("+14155550004")] == [
        "before the upgrade",
        "after it",
    ]
