"""Dedupe on Twilio's MessageSid: markers live in per-day, per-shard hashes, are looked up over
the whole dedupe period, and expire a dedupe period after their day closes."""

from __future__ import annotations

import uuid

import pytest
import redis

from wa_sessions.statemachine.redis.inbox import InboxPolicy
from wa_sessions.statemachine.redis.keys import Keys
from wa_sessions.statemachine.redis.store import RedisSessionStore
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.steps import DEDUPE_BUCKET_MS, IngestOutcome

DAY_MS = 24 * 3600 * 1000
WEEK_MS = 7 * DAY_MS
CONV = "+14155550001|+14155238886"
#: Noon of some day, in epoch milliseconds.
NOON = 20_000 * DAY_MS + DAY_MS // 2


@pytest.fixture
def store(redis_client: redis.Redis) -> RedisSessionStore:
    return SessionService(redis_client).store


def accept(
    store: RedisSessionStore, sid: str, at_ms: int, *, ttl_ms: int = WEEK_MS
) -> IngestOutcome:
    return store.ingest(
        CONV,
        f"{at_ms}\tm\tinbound\ttext\t{{}}",
        message_sid=sid,
        accepted_ms=at_ms,
        dedupe_ttl_ms=ttl_ms,
        max_depth=1000,
        wake_ttl_ms=5000,
    )


def new_sid() -> str:
    return "SM" + uuid.uuid4().hex


def test_a_retry_within_the_dedupe_period_is_a_duplicate_across_day_buckets(
    store: RedisSessionStore,
) -> None:
    """Accepted at noon; the same MessageSid on each of the next 7 days is refused."""
    sid = new_sid()
    assert accept(store, sid, NOON) > IngestOutcome.DUPLICATE
    for days in range(8):
        assert accept(store, sid, NOON + days * DAY_MS - 1) is IngestOutcome.DUPLICATE
    assert store.inbox_depth(CONV) == 1


def test_a_message_sid_is_accepted_again_once_its_day_is_out_of_the_period(
    store: RedisSessionStore,
) -> None:
    """Past the dedupe period plus the rest of its day, the old bucket is no longer looked up."""
    sid = new_sid()
    assert accept(store, sid, NOON) > IngestOutcome.DUPLICATE
    assert accept(store, sid, NOON + 8 * DAY_MS) > IngestOutcome.DUPLICATE
    assert store.inbox_depth(CONV) == 2


def test_markers_share_one_small_hash_per_day_and_shard_with_a_bounded_ttl(
    store: RedisSessionStore, redis_client: redis.Redis
) -> None:
    """Sids ending alike share a hash; it expires a dedupe period after its day closes, counted
    from the acceptance clock; it stays a compact listpack, not a key per message."""
    sids = [f"SM{uuid.uuid4().hex[:29]}abc" for _ in range(50)]
    for sid in sids:
        assert accept(store, sid, NOON) > IngestOutcome.DUPLICATE
    bucket = NOON // DEDUPE_BUCKET_MS
    key, _ = Keys().seen(sids[0], bucket)
    assert redis_client.hlen(key) == 50
    assert sorted(redis_client.hkeys(key)) == sorted(sid[:-3] for sid in sids)
    assert redis_client.object("encoding", key) == "listpack"
    expected_ms = (bucket + 1) * DEDUPE_BUCKET_MS + WEEK_MS - NOON
    assert expected_ms - 5_000 < redis_client.pttl(key) <= expected_ms
    assert redis_client.keys(f"{Keys().seen_prefix}*") == [key]


def test_the_default_period_covers_the_retention_period_not_a_week(
    store: RedisSessionStore, redis_client: redis.Redis
) -> None:
    """With the default policy (30 days, the retention period) a MessageSid is a duplicate on
    each of the 30 days after its own, its marker lives that long, and on the 32nd day, with
    its day out of the period, it is new again."""
    ttl_ms = InboxPolicy().dedupe_ttl_seconds * 1000
    assert ttl_ms == 30 * DAY_MS
    sid = new_sid()
    assert accept(store, sid, NOON, ttl_ms=ttl_ms) > IngestOutcome.DUPLICATE
    for days in (1, 7, 8, 15, 29, 30):
        assert accept(store, sid, NOON + days * DAY_MS, ttl_ms=ttl_ms) is IngestOutcome.DUPLICATE
    key, _ = Keys().seen(sid, NOON // DEDUPE_BUCKET_MS)
    assert redis_client.pttl(key) > 30 * DAY_MS
    assert accept(store, sid, NOON + 32 * DAY_MS, ttl_ms=ttl_ms) > IngestOutcome.DUPLICATE


def test_a_short_dedupe_period_uses_buckets_of_that_period(store: RedisSessionStore) -> None:
    """With a one-minute period a retry after two minutes is a new message."""
    sid = new_sid()
    assert accept(store, sid, NOON, ttl_ms=60_000) > IngestOutcome.DUPLICATE
    assert accept(store, sid, NOON + 59_000, ttl_ms=60_000) is IngestOutcome.DUPLICATE
    assert accept(store, sid, NOON + 121_000, ttl_ms=60_000) > IngestOutcome.DUPLICATE


@pytest.mark.parametrize("sid", ["S", "SM", "abc", "xabc"])
def test_short_sids_do_not_collide(store: RedisSessionStore, sid: str) -> None:
    """The shard is the sid's last 3 characters and the field the rest: short sids map to
    distinct (hash, field) pairs, so each is deduped only against itself."""
    assert accept(store, sid, NOON) > IngestOutcome.DUPLICATE
    assert accept(store, sid, NOON) is IngestOutcome.DUPLICATE
    others = {"S", "SM", "abc", "xabc", "bc", "c"} - {sid}
    for other in sorted(others):
        assert accept(store, other, NOON) > IngestOutcome.DUPLICATE
