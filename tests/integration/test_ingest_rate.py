"""The per-conversation rate in the ingest step, on the real Redis and in the in-memory store:
the same steps get the same answers from both (the Lua and ``drainrules.rate_admits`` are two
implementations of one rule), and the Redis side leaves one short-lived key per conversation."""

from __future__ import annotations

import uuid

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wa_sessions.statemachine.memory import InMemoryStore
from wa_sessions.statemachine.ports import IngestStore
from wa_sessions.statemachine.redis.keys import Keys
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.steps import IngestOutcome

CONVS = ("+14155550001|+14155238886", "+14155550002|+14155238886")
#: Noon of some day, in epoch milliseconds.
NOON = 20_000 * 86_400_000 + 43_200_000

# A step: which conversation, how long after the previous step (ms), a new MessageSid or the
# one of an earlier step (a Twilio retry or a replay).
_steps = st.lists(
    st.tuples(
        st.sampled_from(CONVS),
        st.sampled_from([0, 0, 0, 1, 999, 5_000, 19_999, 20_000, 60_000]),
        st.one_of(st.none(), st.integers(min_value=0, max_value=30)),
    ),
    min_size=1,
    max_size=40,
)


def run(
    store: IngestStore, steps: list[tuple[str, int, int | None]], per_minute: int, max_depth: int
) -> list[IngestOutcome]:
    now, sids, outcomes = NOON, [], []
    for conv, after_ms, earlier in steps:
        now += after_ms
        sid = sids[earlier] if earlier is not None and earlier < len(sids) else uuid.uuid4().hex
        sids.append(sid)
        outcome = store.ingest(
            conv,
            f"{now}\tm\tinbound\ttext\t{{}}",
            message_sid="SM" + sid,
            accepted_ms=now,
            dedupe_ttl_ms=30 * 86_400_000,
            max_depth=max_depth,
            wake_ttl_ms=5_000,
            messages_per_minute=per_minute,
        )
        outcomes.append(IngestOutcome(min(outcome, IngestOutcome.ACCEPTED)))
    return outcomes


@given(steps=_steps, per_minute=st.sampled_from([1, 3, 7, 60]), max_depth=st.sampled_from([2, 50]))
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_redis_and_the_in_memory_store_answer_every_step_alike(
    redis_client: redis.Redis,
    steps: list[tuple[str, int, int | None]],
    per_minute: int,
    max_depth: int,
) -> None:
    """Bursts, waits across the refill, retries of accepted and of refused sids, a full inbox:
    accepted, duplicate, rate-limited and full in the same places."""
    redis_client.flushall()
    in_redis = run(SessionService(redis_client).store, steps, per_minute, max_depth)
    assert in_redis == run(InMemoryStore(), steps, per_minute, max_depth)


def test_a_burst_of_the_limit_passes_and_the_next_waits_a_refill(redis_client: redis.Redis) -> None:
    """Seven a minute: seven at once, then the eighth only after about 60/7 s; the conversation's
    key is its hash-tagged ``rate`` and expires when its bucket is full again."""
    store = SessionService(redis_client).store
    steps = [(CONVS[0], 0, None)] * 8 + [(CONVS[0], 8_000, None), (CONVS[0], 600, None)]
    accepted, limited = IngestOutcome.ACCEPTED, IngestOutcome.RATE_LIMITED
    assert run(store, steps, 7, 100) == [accepted] * 7 + [limited, limited, accepted]
    key = Keys().conv_rate(CONVS[0])
    assert key == f"wa:c:{{{CONVS[0]}}}:rate"
    assert 0 < redis_client.pttl(key) <= 60_000
    assert not redis_client.exists(Keys().conv_rate(CONVS[1]))


def test_no_key_is_written_without_a_limit(redis_client: redis.Redis) -> None:
    """0 means off: nothing is refused for rate and no ``rate`` key is kept."""
    store = SessionService(redis_client).store
    assert set(run(store, [(CONVS[0], 0, None)] * 20, 0, 100)) == {IngestOutcome.ACCEPTED}
    assert not redis_client.exists(Keys().conv_rate(CONVS[0]))
