"""Every Redis key the service uses, named in this one module (for Python and for the Lua scripts).

Layout (``P`` is the configurable prefix, ``wa:`` by default; ``conv`` is
``<customer>|<business>``; times are epoch milliseconds):

===============================  ======  =====================================================
key                              type    holds
===============================  ======  =====================================================
``P s:<sid>``                    hash    one session: status, addresses, times, counters,
                                         ``ctx:<name>`` -> JSON value per context key,
                                         ``order`` -> the order details JSON
``P s:<sid>:m``                  list    the session's messages as JSON, oldest first
``P c:{conv}:active``            string  id of the conversation's active session
``P c:{conv}:sessions``          zset    every session of the conversation, by created time
``P c:{conv}:inbox``             list    accepted, not yet applied entries (the mailbox)
``P c:{conv}:lease``             string  owner token of the drain applying the inbox
``P c:{conv}:wake``              string  set while a drain wake-up is queued or running
``P c:{conv}:effects``           list    applied inbound messages whose effects (order
                                         extraction, reply) are not committed yet, as
                                         ``<sid>\\t<message JSON>``, oldest first; a drain
                                         finishes them before it applies more of the inbox
``P idx:active``                 zset    active sessions by last activity (expiry sweep)
``P idx:all``                    zset    every session by created time (admin listing)
``P idx:status:<status>``        zset    ended sessions by end time, one zset per status
``P idx:ended``                  zset    ended sessions by end time (retention purge)
``P idx:pending``                zset    conversations with a non-empty inbox or pending
                                         effects, by the acceptance time of their oldest
                                         entry (re-drive)
``P seen:<bucket>:<shard>``       hash    dedupe markers of accepted Twilio messages: field =
                                         the MessageSid without its last 3 characters (the
                                         shard), one hash per time bucket (a day) and shard;
                                         expires a dedupe period after its bucket closes
``P out:<MessageSid>``           hash    one outbound reply sent through Twilio: ``sess``,
                                         ``mid`` and ``pos`` (its session, message id and
                                         absolute index in the history), the furthest
                                         ``status`` and its ``rank``, ``error_code``, and
                                         ``seen:<status>`` per status callback received
                                         (dedupe). TTL: the retention period once mapped, a
                                         day while only callbacks have arrived
``P wake:ttl``                   string  how long (ms) a wake-up flag lives while Dramatiq's queue
                                         is backed up: the re-drive pass sets it from the age of
                                         the oldest queued wake-up (lapses to the lease period)
``P events:ended``               list    one entry per ended session, ``<status> <duration_ms>
                                         <message_count> <reason>``, consumed by the metrics
                                         job (capped at 100,000 when nobody consumes it)
===============================  ======  =====================================================

Per-conversation keys share the ``{conv}`` hash tag. The global indexes are updated in the same
scripts as the session they index, so the store needs a single Redis (or Sentinel), not Cluster.

Ended sessions' keys get a TTL of the retention period plus a day; the retention purge removes
them from the indexes (and deletes them) when the retention period has passed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "wa:"

    def session(self, session_id: str) -> str:
        return f"{self.prefix}s:{session_id}"

    def session_messages(self, session_id: str) -> str:
        return f"{self.prefix}s:{session_id}:m"

    def _conv(self, conv: str, suffix: str) -> str:
        return f"{self.prefix}c:{{{conv}}}:{suffix}"

    def conv_active(self, conv: str) -> str:
        return self._conv(conv, "active")

    def conv_sessions(self, conv: str) -> str:
        return self._conv(conv, "sessions")

    def conv_inbox(self, conv: str) -> str:
        return self._conv(conv, "inbox")

    def conv_lease(self, conv: str) -> str:
        return self._conv(conv, "lease")

    def conv_wake(self, conv: str) -> str:
        return self._conv(conv, "wake")

    def conv_effects(self, conv: str) -> str:
        return self._conv(conv, "effects")

    @property
    def active(self) -> str:
        return f"{self.prefix}idx:active"

    @property
    def all(self) -> str:
        return f"{self.prefix}idx:all"

    def status_index(self, status: str) -> str:
        return f"{self.prefix}idx:status:{status}"

    @property
    def ended(self) -> str:
        return f"{self.prefix}idx:ended"

    @property
    def pending(self) -> str:
        return f"{self.prefix}idx:pending"

    @property
    def ended_events(self) -> str:
        return f"{self.prefix}events:ended"

    @property
    def wake_ttl(self) -> str:
        return f"{self.prefix}wake:ttl"

    @property
    def seen_prefix(self) -> str:
        """Dedupe buckets are ``<seen_prefix><bucket>:<shard>`` (built in the ingest script)."""
        return f"{self.prefix}seen:"

    def seen(self, message_sid: str, bucket: int) -> tuple[str, str]:
        """The dedupe bucket hash and field of a MessageSid accepted in ``bucket``."""
        return f"{self.prefix}seen:{bucket}:{message_sid[-3:]}", message_sid[:-3]

    def outbound(self, message_sid: str) -> str:
        return f"{self.prefix}out:{message_sid}"

    def lua_prelude(self) -> str:
        """The same names as Lua functions, for scripts that reach keys derived from data."""
        p = self.prefix.replace("\\", "\\\\").replace("'", "\\'")
        return f"""
local P = '{p}'
local function k_sess(sid) return P .. 's:' .. sid end
local function k_msgs(sid) return P .. 's:' .. sid .. ':m' end
local function k_conv(conv, suffix) return P .. 'c:{{' .. conv .. '}}:' .. suffix end
local function k_out(message_sid) return P .. 'out:' .. message_sid end
local K_ACTIVE = P .. 'idx:active'
local K_ALL = P .. 'idx:all'
local K_ENDED = P .. 'idx:ended'
local K_PENDING = P .. 'idx:pending'
local K_ENDED_EVENTS = P .. 'events:ended'
local K_WAKE_TTL = P .. 'wake:ttl'
local function k_status(status) return P .. 'idx:status:' .. status end
"""
