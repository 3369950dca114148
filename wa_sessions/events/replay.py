"""Sends one event again on an operator's word (``wa-sessions-enqueue replay-event <id>``):
the body rebuilt from its outbox entry, or, once the stream no longer holds it, taken from
its given-up record. The ``webhook-id`` is the event's own, so a receiver that got it before
drops the repeat; the delivery state of the event, if it is still being retried, is left as
it is."""

from __future__ import annotations

from dataclasses import dataclass

from wa_sessions.events.schema import MalformedEntry, entry_id_of, event_body, event_from_entry
from wa_sessions.events.sender import Attempt, WebhookSender
from wa_sessions.events.store import RedisEventStore


class EventNotFound(LookupError):
    """Neither the outbox nor the given-up records hold the event."""


@dataclass(frozen=True, slots=True)
class Replayed:
    event_id: str
    #: ``outbox`` or ``given_up``: where the body came from.
    source: str
    attempt: Attempt


async def replay_event(store: RedisEventStore, sender: WebhookSender, wanted: str) -> Replayed:
    """One attempt to send event ``wanted`` (``evt_<entry id>`` or the entry id)."""
    entry_id = entry_id_of(wanted.strip())
    fields = await store.read_entry(entry_id) if _looks_like_entry_id(entry_id) else None
    if fields is not None:
        try:
            event = event_from_entry(entry_id, fields)
        except MalformedEntry as exc:
            raise EventNotFound(f"outbox entry {entry_id} makes no event: {exc}") from None
        body, source, ident = event_body(event), "outbox", event.id
    else:
        record = await store.given_up_record(entry_id)
        if record is None or not record.get("body"):
            raise EventNotFound(f"no event {wanted!r} in the outbox or the given-up records")
        body, source, ident = str(record["body"]), "given_up", str(record["id"])
    return Replayed(ident, source, await sender.send(ident, body))


def _looks_like_entry_id(value: str) -> bool:
    """A stream id ``<ms>-<seq>`` (XRANGE refuses anything else with an error)."""
    ms, dash, seq = value.partition("-")
    return bool(dash) and ms.isdigit() and seq.isdigit()
