"""The session lifecycle table: every state x trigger, legal and illegal, as the machine defines it.

The Lua scripts are compiled from ``transition_table()``, so pinning the table here pins the rules
Redis enforces too.
"""

from __future__ import annotations

import pytest

from wa_sessions.errors import InvalidTransition, WaSessionsError
from wa_sessions.statemachine.lifecycle import ENDED_STATES, Trigger, fire, may, transition_table
from wa_sessions.statemachine.models import SessionStatus

ACTIVE = SessionStatus.ACTIVE
COMPLETED = SessionStatus.COMPLETED
EXPIRED = SessionStatus.EXPIRED

#: The whole table, written out by hand: (state, trigger) -> destination, or None when illegal.
EXPECTED: dict[tuple[SessionStatus, Trigger], SessionStatus | None] = {
    (ACTIVE, Trigger.RECEIVE): ACTIVE,
    (ACTIVE, Trigger.COMPLETE): COMPLETED,
    (ACTIVE, Trigger.EXPIRE): EXPIRED,
    (COMPLETED, Trigger.RECEIVE): None,
    (COMPLETED, Trigger.COMPLETE): None,
    (COMPLETED, Trigger.EXPIRE): None,
    (EXPIRED, Trigger.RECEIVE): None,
    (EXPIRED, Trigger.COMPLETE): None,
    (EXPIRED, Trigger.EXPIRE): None,
}

LEGAL = [(s, t, d) for (s, t), d in EXPECTED.items() if d is not None]
ILLEGAL = [(s, t) for (s, t), d in EXPECTED.items() if d is None]


def test_expected_table_covers_every_state_and_trigger() -> None:
    """The hand-written table has one row for each of the 3 states x 3 triggers."""
    assert set(EXPECTED) == {(s, t) for s in SessionStatus for t in Trigger}
    assert len(EXPECTED) == 9


@pytest.mark.parametrize(("state", "trigger", "dest"), LEGAL)
def test_legal_trigger_moves_to_its_destination(
    state: SessionStatus, trigger: Trigger, dest: SessionStatus
) -> None:
    """A legal trigger returns the destination state as a SessionStatus."""
    result = fire("sid-1", state, trigger)
    assert result == dest
    assert isinstance(result, SessionStatus)


@pytest.mark.parametrize(("state", "trigger", "dest"), LEGAL)
def test_legal_trigger_accepts_plain_strings(
    state: SessionStatus, trigger: Trigger, dest: SessionStatus
) -> None:
    """Stored states and trigger names arrive as plain strings and fire the same way."""
    assert fire("sid-1", state.value, trigger.value) == dest


@pytest.mark.parametrize(("state", "trigger"), ILLEGAL)
def test_illegal_trigger_raises_invalid_transition(state: SessionStatus, trigger: Trigger) -> None:
    """An illegal trigger raises InvalidTransition, part of the package's one error hierarchy."""
    with pytest.raises(InvalidTransition) as info:
        fire("sid-42", state, trigger)
    assert isinstance(info.value, WaSessionsError)
    assert info.value.code == "invalid_transition"


@pytest.mark.parametrize(("state", "trigger"), ILLEGAL)
def test_invalid_transition_names_session_state_and_trigger(
    state: SessionStatus, trigger: Trigger
) -> None:
    """InvalidTransition carries the session id, the state and the trigger, and says them."""
    with pytest.raises(InvalidTransition) as info:
        fire("3f1c-session", state, trigger)
    err = info.value
    assert (err.session_id, err.state, err.trigger) == ("3f1c-session", state.value, trigger.value)
    message = str(err)
    assert "3f1c-session" in message
    assert state.value in message
    assert trigger.value in message


def test_unknown_trigger_raises_invalid_transition() -> None:
    """A trigger the machine does not define is refused like an illegal one, not a KeyError."""
    with pytest.raises(InvalidTransition) as info:
        fire("sid-7", ACTIVE, "reopen")
    assert info.value.trigger == "reopen"
    assert info.value.state == "active"


def test_ended_states_are_exactly_those_without_outgoing_transitions() -> None:
    """ENDED_STATES are the states from which no trigger is legal."""
    dead_ends = {s for s in SessionStatus if not any(EXPECTED[(s, t)] for t in Trigger)}
    assert dead_ends == ENDED_STATES == {COMPLETED, EXPIRED}


def test_transition_table_matches_the_lifecycle() -> None:
    """transition_table(), which the Lua scripts are built from, lists exactly the legal rows."""
    expected = {(s.value, t.value): d.value for s, t, d in LEGAL}
    assert transition_table() == expected


def test_transition_table_agrees_with_fire_on_every_cell() -> None:
    """Every (state, trigger) cell: fire succeeds exactly when the table has the row."""
    table = transition_table()
    for state in SessionStatus:
        for trigger in Trigger:
            key = (state.value, trigger.value)
            if key in table:
                assert fire("s", state, trigger).value == table[key]
            else:
                with pytest.raises(InvalidTransition):
                    fire("s", state, trigger)


def test_transition_table_is_a_fresh_copy() -> None:
    """Mutating the returned table cannot change the rules later callers see."""
    table = transition_table()
    table[("completed", "receive")] = "active"
    assert ("completed", "receive") not in transition_table()


@pytest.mark.parametrize(("state", "trigger"), list(EXPECTED))
def test_may_answers_without_raising(state: SessionStatus, trigger: Trigger) -> None:
    """may() is True exactly for legal cells, for enum and string arguments alike."""
    expected = EXPECTED[(state, trigger)] is not None
    assert may(state, trigger) is expected
    assert may(state.value, trigger.value) is expected


def test_may_is_false_for_an_unknown_trigger() -> None:
    """may() says no, rather than raising, for a trigger the machine does not define."""
    assert may(ACTIVE, "reopen") is False


def test_firing_does_not_leak_state_between_calls() -> None:
    """The machine is shared: ending one session leaves the next active session receivable."""
    assert fire("a", ACTIVE, Trigger.COMPLETE) == COMPLETED
    assert fire("b", ACTIVE, Trigger.RECEIVE) == ACTIVE
    assert fire("c", ACTIVE, Trigger.EXPIRE) == EXPIRED
    assert may(ACTIVE, Trigger.RECEIVE) is True


def test_a_stored_state_the_machine_does_not_know_is_an_invalid_transition() -> None:
    """A corrupted or foreign state never leaks transitions' ValueError to callers."""
    with pytest.raises(InvalidTransition) as caught:
        fire("sid-9", "archived", Trigger.COMPLETE)
    assert caught.value.state == "archived"
