"""The design document's four "Usage Examples", run as written against a real Redis.

Only the import paths differ from the document (``src.services...`` became
``wa_sessions.statemachine``), and where it writes ``SessionService()`` the service comes from the
composition root (``build_service(load_settings())``: settings from the environment, the client
built there, not by the service). Each example is kept verbatim in a function; the tests run them in
the document's order, since each one continues the conversation of the one before.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from wa_sessions.statemachine import (
    MessageDirection,
    MessageType,
    Session,
    SessionService,
    SessionStatus,
)


def basic_session_creation() -> tuple[SessionService, Session]:
    from wa_sessions.bootstrap import build_service, load_settings
    from wa_sessions.statemachine import SessionCreate

    session_service = build_service(load_settings())

    # Create a new session
    session_data = SessionCreate(
        phone_number="+1234567890",
        initial_message="Hi, I want to place an order",
        context={"customer_type": "new"},
    )

    session = session_service.create_session(session_data)
    return session_service, session


def adding_messages(session_service: SessionService) -> Session:
    # Add inbound message
    session = session_service.add_message(
        phone_number="+1234567890",
        content="I need 5 units of Product A",
        message_type=MessageType.TEXT,
        direction=MessageDirection.INBOUND,
    )

    # Add outbound response
    session = session_service.add_message(
        phone_number="+1234567890",
        content="✅ Order received!",
        message_type=MessageType.TEXT,
        direction=MessageDirection.OUTBOUND,
    )
    return session  # noqa: RET504 (the document's code, kept as written)


def getting_conversation_history(session_service: SessionService) -> None:
    history = session_service.get_conversation_history("+1234567890", limit=10)
    for message in history:
        print(f"{message.direction}: {message.content}")


def updating_session_with_order_details(
    session_service: SessionService, session: Session
) -> dict[str, Any]:
    from wa_sessions.statemachine import SessionUpdate

    order_details = {
        "customer_name": "John Doe",
        "items": [{"name": "Product A", "quantity": 5}],
        "total_amount": 129.95,
    }

    session_service.update_session(session.session_id, SessionUpdate(order_details=order_details))
    return order_details


@pytest.fixture
def design_env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Iterator[list[SessionService]]:
    """Points the examples' service at the test Redis and closes the clients the examples open."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    services: list[SessionService] = []
    yield services
    for service in services:
        service.store.client.close()


def test_basic_session_creation_opens_an_active_session(
    design_env: list[SessionService],
) -> None:
    """Example 1: the session is active, keeps the initial message and the given context."""
    service, session = basic_session_creation()
    design_env.append(service)

    assert session.status is SessionStatus.ACTIVE
    assert session.phone_number == "+1234567890"
    assert session.context == {"customer_type": "new"}
    assert session.message_count == 1
    [first] = session.messages
    assert first.content == "Hi, I want to place an order"
    assert first.direction is MessageDirection.INBOUND
    assert first.message_type is MessageType.TEXT
    assert service.get_session_by_phone("+1234567890") == session
    assert service.get_active_sessions_count() == 1


def test_adding_messages_continues_the_same_session(design_env: list[SessionService]) -> None:
    """Example 2: inbound and outbound messages join the session the first example opened."""
    service, created = basic_session_creation()
    design_env.append(service)

    session = adding_messages(service)

    assert session.session_id == created.session_id
    assert session.status is SessionStatus.ACTIVE
    assert session.message_count == 3
    assert session.counts == {"n:inbound": 2, "n:outbound": 1, "t:text": 3}
    assert session.last_inbound_at is not None
    assert service.get_active_sessions_count() == 1


def test_conversation_history_prints_every_message_in_order(
    design_env: list[SessionService], capsys: pytest.CaptureFixture[str]
) -> None:
    """Example 3: the history loop prints direction and content, oldest first."""
    service, _ = basic_session_creation()
    design_env.append(service)
    adding_messages(service)

    getting_conversation_history(service)

    assert capsys.readouterr().out.splitlines() == [
        "inbound: Hi, I want to place an order",
        "inbound: I need 5 units of Product A",
        "outbound: ✅ Order received!",
    ]


def test_updating_session_with_order_details_stores_them(
    design_env: list[SessionService],
) -> None:
    """Example 4: the order details are stored on the session and it stays active."""
    service, _ = basic_session_creation()
    design_env.append(service)
    session = adding_messages(service)

    order_details = updating_session_with_order_details(service, session)

    stored = service.get_session_by_id(session.session_id)
    assert stored is not None
    assert stored.order_details == order_details
    assert stored.order_details["total_amount"] == 129.95
    assert stored.context == {"customer_type": "new"}
    assert stored.status is SessionStatus.ACTIVE
    assert [m.content for m in stored.messages] == [
        "Hi, I want to place an order",
        "I need 5 units of Product A",
        "✅ Order received!",
    ]
