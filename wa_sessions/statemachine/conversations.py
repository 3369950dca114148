"""Starting a conversation from the business's side (issue #15: ``POST /conversations`` and
``wa-sessions-enqueue start-conversation``): a template (``content_sid``) or, inside WhatsApp's
24-hour window, free text, to a phone that did not opt out.

The rule of ``outreach.refusal`` is asked up front, so the caller learns at once (409
``opted_out`` / ``outside_window``); the message then travels through the phone's inbox like an
operator's reply, and the drain asks again right before the send
(``workers/outreach_run.py``). The phone's active session carries it; without one, a session is
opened for it (its window is closed: only a template can go out).

With a conversation ``template`` (a flow of ``flows/``, loaded from the settings), the first
message is either the approved WhatsApp template given (``content_sid``) or, inside the window,
the flow's first prompt as free text in the customer's language; the session's ``flow`` and
``flow_step`` are set in the same script that queues that message (``lua/start_flow.lua``), so
the customer's answer, queued behind it, is read by the first step. A session already in an
unfinished flow is refused (``FlowInProgress``): its customer owes that flow an answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from wa_sessions.errors import (
    BadRequest,
    FlowInProgress,
    InvalidTransition,
    SessionAlreadyActive,
    WaSessionsError,
)
from wa_sessions.flows import DONE, FlowTemplate, FlowTemplates, start_flow
from wa_sessions.flows.render import render
from wa_sessions.languages.choice import LANGUAGE_KEY, LanguageState, reply_language
from wa_sessions.metrics.outreach import BUSINESS_MESSAGES
from wa_sessions.orders.models import OrderDetails
from wa_sessions.statemachine.entries import operator_reply_entry
from wa_sessions.statemachine.models import Session, SessionCreate, SessionStatus
from wa_sessions.statemachine.outreach import OutboundContent, refusal, validated_content
from wa_sessions.statemachine.redis.calls import QueuedWake
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.steps import to_ms

#: The origin a started conversation's entry and message carry (``metadata.outreach``).
CONVERSATION = "conversation"


@dataclass(frozen=True, slots=True)
class QueuedConversation:
    """A business-initiated message accepted into the phone's inbox: its id and the session
    that carries it, as it was then."""

    message_id: str
    session: Session


class ConversationStarter:
    """Queues business-initiated messages; ``wake_message`` as for ``TakeoverService``."""

    def __init__(
        self,
        sessions: SessionService,
        *,
        wake_message: Callable[[str], QueuedWake] | None,
        wake_ttl_ms: int,
        templates: FlowTemplates | None = None,
    ) -> None:
        self.sessions = sessions
        self.wake_message = wake_message
        self.wake_ttl_ms = wake_ttl_ms
        self.templates = templates or FlowTemplates()

    def start(
        self,
        phone_number: str,
        business_number: str | None = None,
        *,
        text: str | None = None,
        content_sid: str | None = None,
        variables: Mapping[str, object] | None = None,
        template: str | None = None,
    ) -> QueuedConversation:
        """``BadRequest`` for bad content, phone or template, ``OptedOut`` or ``OutsideWindow``
        when the message may not be sent, ``FlowInProgress`` when the session already follows
        an unfinished flow; else queued behind the conversation's waiting entries."""
        flow = self._template(template, text, content_sid, variables)
        # A flow without content_sid sends its first prompt, rendered once the session is read.
        content = (
            None
            if flow and content_sid is None
            else validated_content(text, content_sid, variables)
        )
        service = self.sessions
        conv = service.conversation(phone_number, business_number)
        session = service.get_latest_session_by_phone(
            conv.customer, conv.business, include_messages=False
        )
        active = session if session and session.status is SessionStatus.ACTIVE else None
        if flow is not None and active is not None and _in_flow(active):
            raise self._refused(FlowInProgress(_in_flow_text(active)))
        now = service.clock()
        first = None
        if flow is not None:
            first = start_flow(flow, _order_of(active))
            if first.step == DONE:
                raise BadRequest(f"template: {flow.name!r} has nothing left to ask this customer")
            if content is None:
                language = reply_language(
                    service.store.language_override(conv.key),
                    LanguageState(active.context.get(LANGUAGE_KEY) if active else None),
                )
                content = OutboundContent(text=render(first.reply, first.order, language))
        assert content is not None
        refused = refusal(
            content,
            last_inbound_ms=(
                to_ms(active.last_inbound_at) if active and active.last_inbound_at else None
            ),
            now=now,
            opted_out=service.store.opted_out(conv.key),
        )
        if refused is not None:
            raise self._refused(refused)
        if active is None:
            active = self._open(conv.customer, conv.business)
        message = content.message(CONVERSATION, now)
        if flow is not None:
            message.metadata["flow"] = flow.name
        accepted_ms = service.now_ms()
        entry = operator_reply_entry(active.session_id, CONVERSATION, message, accepted_ms)
        wake = self.wake_message(conv.key) if self.wake_message is not None else None
        if flow is None or first is None:
            service.store.push_operation(
                conv.key, entry, accepted_ms=accepted_ms, wake_ttl_ms=self.wake_ttl_ms, wake=wake
            )
        else:
            outcome, detail = service.store.start_flow(
                conv.key,
                active.session_id,
                entry,
                flow=(flow.name, first.step),
                done=DONE,
                accepted_ms=accepted_ms,
                wake_ttl_ms=self.wake_ttl_ms,
                wake=wake,
            )
            if outcome == "flow":
                raise self._refused(FlowInProgress(f"the session already follows {detail!r}"))
            if outcome != "ok":
                # The session ended between the read and the script: the caller may retry
                # (a new session is opened then).
                raise self._refused(
                    InvalidTransition(active.session_id, detail or "gone", "start a flow")
                )
            active = active.model_copy(update={"flow": flow.name, "flow_step": first.step})
        BUSINESS_MESSAGES.labels("queued").inc()
        return QueuedConversation(message.id, active)

    def _template(
        self,
        name: str | None,
        text: str | None,
        content_sid: str | None,
        variables: Mapping[str, object] | None,
    ) -> FlowTemplate | None:
        """The conversation template named ``name`` (None: none asked for)."""
        if name is None:
            return None
        if variables and content_sid is None:
            raise BadRequest("variables: only a WhatsApp template (content_sid) takes variables")
        found = self.templates.named(name)
        if found is None:
            known = ", ".join(self.templates.names()) or "none configured"
            raise BadRequest(f"template: no conversation template {name!r} (known: {known})")
        if text is not None:
            raise BadRequest(
                "text: a conversation template sends its first step's prompt (or content_sid)"
            )
        return found

    @staticmethod
    def _refused(error: WaSessionsError) -> WaSessionsError:
        BUSINESS_MESSAGES.labels(f"refused_{error.code}").inc()
        return error

    def _open(self, phone_number: str, business_number: str) -> Session:
        """A session for the message; a customer's message opening one meanwhile wins."""
        try:
            return self.sessions.create_session(
                SessionCreate(phone_number=phone_number, business_number=business_number)
            )
        except SessionAlreadyActive as exc:
            session = self.sessions.get_session_by_id(exc.session_id, include_messages=False)
            assert session is not None
            return session


def _in_flow(session: Session) -> bool:
    return session.flow is not None and session.flow_step != DONE


def _in_flow_text(session: Session) -> str:
    return (
        f"the session already follows {session.flow!r} (at step {session.flow_step!r}); "
        "its customer owes that step an answer"
    )


def _order_of(session: Session | None) -> OrderDetails:
    if session is None or not session.order_details:
        return OrderDetails()
    return OrderDetails.model_validate(session.order_details)
