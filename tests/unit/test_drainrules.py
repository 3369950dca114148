"""The drain's decisions as plain functions (``statemachine.drainrules``, ``sessionrules``): the
same answers the Lua gives, checked here without any store (the property test compares them with
the Lua)."""

from __future__ import annotations

import pytest

from wa_sessions.statemachine import drainrules as rules
from wa_sessions.statemachine import sessionrules
from wa_sessions.statemachine.drainrules import InboxEntry
from wa_sessions.statemachine.sessionrules import SessionState

CONV = "+14155550100|+14155238886"
HOUR = 3_600_000


def session(**fields: object) -> SessionState:
    state = sessionrules.open_session(CONV, "s1", 1_000)
    for name, value in fields.items():
        setattr(state, name, value)
    return state


def test_an_entry_is_parsed_from_its_tab_separated_header() -> None:
    """Acceptance time, one-letter kind, two header fields and a payload that may hold tabs."""
    assert rules.parse_entry('12\tm\tinbound\ttext\t{"a":"x\ty"}\n') == InboxEntry(
        12, "m", "inbound", "text", '{"a":"x\ty"}\n'
    )


@pytest.mark.parametrize("raw", ["garbage", "1\tm\tinbound", "x\tm\ta\tb\tp", "1\tmm\ta\tb\tp"])
def test_a_malformed_entry_parses_to_none(raw: str) -> None:
    """What the Lua pattern does not match is dropped as ``bad``."""
    assert rules.parse_entry(raw) is None


def test_any_operator_kind_but_complete_expires() -> None:
    """The Lua fires ``complete`` for ``c`` and ``expire`` for every other non-message kind."""
    assert [rules.operation_trigger(k) for k in "cxz"] == ["complete", "expire", "expire"]


def test_a_session_is_idle_from_exactly_one_timeout_after_its_last_activity() -> None:
    """``last + timeout <= at``: the boundary itself is idle."""
    assert not sessionrules.idle(0, HOUR - 1, HOUR)
    assert sessionrules.idle(0, HOUR, HOUR)


def test_appending_counts_the_message_and_moves_the_activity_times() -> None:
    """count, n:<direction>, t:<type>, last (only forward) and last_in (inbound only)."""
    state = session()
    assert sessionrules.append_message(state, "a", "inbound", "text", 2_000, 10) == 0
    assert sessionrules.append_message(state, "b", "outbound", "image", 5_000, 10) == 1
    assert sessionrules.append_message(state, "c", "inbound", "text", 3_000, 10) == 2
    assert state.count == 3
    assert state.counts == {"n:inbound": 2, "t:text": 2, "n:outbound": 1, "t:image": 1}
    assert (state.last_ms, state.last_inbound_ms) == (5_000, 3_000)


def test_the_history_cap_trims_the_oldest_and_positions_stay_absolute() -> None:
    """Past the cap the oldest messages go and ``trimmed`` counts them."""
    state = session()
    positions = [sessionrules.append_message(state, m, "inbound", "text", 2_000, 2) for m in "abc"]
    assert positions == [0, 1, 2]
    assert (state.messages, state.trimmed, state.count) == (["b", "c"], 1, 3)


def test_an_ended_session_takes_no_message() -> None:
    """The lifecycle's ``receive`` is only allowed while active."""
    state = session(status="completed")
    with pytest.raises(sessionrules.CannotReceive):
        sessionrules.append_message(state, "a", "inbound", "text", 2_000, 10)


@pytest.mark.parametrize(
    ("status", "trigger", "accepted_ms", "outcome", "after"),
    [
        ("active", "complete", 2_000, "completed", "completed"),
        ("active", "expire", 2_000, "expired", "expired"),
        ("active", "complete", 1_000 + HOUR, "invalid:expired", "expired"),
        ("completed", "expire", 2_000, "invalid:completed", "completed"),
        ("expired", "complete", 2_000 + HOUR, "invalid:expired", "expired"),
    ],
)
def test_an_operation_ends_the_session_per_the_lifecycle(
    status: str, trigger: str, accepted_ms: int, outcome: str, after: str
) -> None:
    """completed/expired; invalid:<state> when refused; an idle session expires first."""
    state = session(status=status)
    detail, _ = sessionrules.apply_operation(
        state, trigger, accepted_ms=accepted_ms, now_ms=9_000, timeout_ms=HOUR, reason="op"
    )
    assert (detail, state.status) == (outcome, after)


def test_an_operation_without_a_session_is_missing() -> None:
    """Neither named nor active, or another conversation's."""
    assert sessionrules.apply_operation(
        None, "complete", accepted_ms=0, now_ms=0, timeout_ms=HOUR, reason=""
    ) == ("missing", False)
    assert sessionrules.operation_target(CONV, "s9", None, "other|conv") == ""
    assert sessionrules.operation_target(CONV, "", "s1", CONV) == "s1"


def test_a_message_finds_the_active_session_live_idle_or_stale() -> None:
    """The pointer's session continues, expires first, or is dropped."""
    state = session()
    assert sessionrules.find_active(None, None, 0, HOUR) is sessionrules.ActiveSession.NONE
    assert sessionrules.find_active("s1", state, 2_000, HOUR) is sessionrules.ActiveSession.LIVE
    assert (
        sessionrules.find_active("s1", state, 1_000 + HOUR, HOUR) is sessionrules.ActiveSession.IDLE
    )
    assert sessionrules.find_active("s1", None, 2_000, HOUR) is sessionrules.ActiveSession.STALE


def test_a_batch_with_records_stops_before_an_operation_or_a_late_message() -> None:
    """Nothing stops a batch without records; with them, an operator entry, a malformed entry
    or a message a timeout after the latest message does."""
    message = InboxEntry(1_000 + HOUR, "m", "inbound", "text", "{}")
    assert not rules.stops_before(None, message, HOUR)
    assert rules.stops_before(1_000, message, HOUR)
    assert not rules.stops_before(1_001, message, HOUR)
    assert rules.stops_before(1_000, InboxEntry(1_000, "c", "", "op", ""), HOUR)
    assert rules.stops_before(1_000, None, HOUR)
    assert rules.advance_since(None, 0, 5) is None
    assert rules.advance_since(7, 1, 5) == 7


def test_session_ids_count_up_in_the_last_four_hex_digits_until_ffff() -> None:
    """The ids after the base; a message is not applied once the counter would wrap."""
    counter = rules.SessionIdCounter.of("0123abcd-0000-0000-0000-00000000fffd")
    assert counter.next_id(0) == "0123abcd-0000-0000-0000-00000000fffe"
    assert counter.next_id(1) == "0123abcd-0000-0000-0000-00000000ffff"
    assert not counter.exhausted(1)
    assert counter.exhausted(2)


def test_the_effects_tail_marks_the_records_own_messages_by_index() -> None:
    """The last history + own messages, a record's message as its 1-based record index."""
    groups = rules.group_records(["s1\tm2", "s2\tx", "s1\tm3"])
    assert [(g.session_id, g.indexes, g.count) for g in groups] == [
        ("s1", {"m2": 1, "m3": 3}, 2),
        ("s2", {"x": 2}, 1),
    ]
    messages = ["m0", "m1", "r", "m2", "m3"]
    assert rules.effect_tail(messages, 2, 2, groups[0].indexes) == ["m1", "r", 1, 3]
    assert rules.effect_tail(messages, 0, 2, groups[0].indexes) == []


def test_a_status_callback_stored_first_wins_when_it_ranks_at_least_as_high() -> None:
    """A late ``queued`` from Twilio's create does not overwrite ``delivered``."""
    assert rules.stored_status_wins(4, "queued")
    assert not rules.stored_status_wins(1, "delivered")
    assert not rules.stored_status_wins(None, "queued")
    assert rules.delivery_rank("something-new") == 0


def test_dedupe_looks_back_over_every_bucket_the_period_covers() -> None:
    """A week's period in day buckets: today and the seven days before."""
    day = 86_400_000
    assert rules.dedupe_buckets(10 * day + 5, day, 7 * day) == range(3, 11)


def test_an_entry_of_a_kind_nobody_writes_is_malformed() -> None:
    """Like the Lua: only messages, completes and expires are applied; anything else is
    dropped as malformed, never taken for an operation."""
    assert rules.parse_entry("12\tz\t\top1\treason") is None
    assert rules.parse_entry("12\tx\t\top1\treason") is not None
