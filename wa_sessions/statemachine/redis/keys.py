"""Every Redis key and every hash field the service uses, named in this one module; the Lua
scripts get the same names from ``lua_prelude`` and ``lua_constants`` (no name is spelled
twice).

Layout (``P`` is the configurable prefix, ``wa:`` by default; ``conv`` is
``<customer>|<business>``; times are epoch milliseconds):

===============================  ======  =====================================================
key                              type    holds
===============================  ======  =====================================================
``P c:{conv}:s:<sid>``           hash    one session (``SessionField``): status, addresses,
                                         times, counters, ``ctx:<name>`` -> JSON value per
                                         context key, ``order`` -> the order details JSON,
                                         ``op``/``op_at`` the operator who took it over and
                                         when, ``hb`` when it was last handed back,
                                         ``analysis`` the session analysis JSON (with the
                                         fingerprint it read: ``lua/save_analysis.lua``),
                                         ``flow``/``flow_step`` the conversation template it
                                         follows and its current step (``flows/``)
``P c:{conv}:s:<sid>:m``         list    the session's messages as JSON, oldest first
``P c:{conv}:active``            string  id of the conversation's active session
``P c:{conv}:sessions``          zset    every session of the conversation, by created time
``P c:{conv}:inbox``             list    accepted, not yet applied entries (the mailbox)
``P c:{conv}:lease``             string  owner token of the drain applying the inbox
``P c:{conv}:wake``              string  set while a drain wake-up is queued or running
``P c:{conv}:rate``              string  the conversation's inbound rate: when (epoch ms) its
                                         token bucket is full again (GCRA); expires then
                                         (``INGEST_MESSAGES_PER_MINUTE``, ``lua/ingest.lua``)
``P c:{conv}:lang``              string  the business's override of the customer's language
                                         (ISO 639-1) for every session of the conversation;
                                         absent: detected from the messages (no TTL)
``P c:{conv}:optout``            string  when (epoch ms) the customer sent STOP (or a
                                         translation): no nudge or business-initiated
                                         message goes to the conversation again (no TTL)
``P c:{conv}:effects``           list    applied inbound messages whose effects (order
                                         extraction, reply) are not committed yet, as
                                         ``<sid>\\t<message JSON>``, oldest first; a drain
                                         finishes them before it applies more of the inbox
``P idx:conv``                   hash    session id -> its conversation, for lookups by id
                                         (written when a session opens, removed by the purge)
``P idx:active``                 zset    active sessions by last activity (expiry sweep)
``P idx:nudge``                  zset    active sessions not nudged yet, by last activity:
                                         one is due for its nudge at score + timeout -
                                         ``NUDGE_BEFORE_EXPIRY_MINUTES`` (the same order as
                                         the due time, and a change of the setting needs no
                                         re-index); the claim removes it (``claim_nudges.lua``)
``P idx:all``                    zset    every session by created time (admin listing)
``P idx:status:<status>``        zset    ended sessions by end time, one zset per status
``P idx:ended``                  zset    ended sessions by end time (retention purge)
``P idx:takeover``               zset    active sessions taken over by an operator, by
                                         takeover time (the takeover gauge; an ending
                                         session leaves it)
``P idx:pending``                zset    conversations with a non-empty inbox or pending
                                         effects, by the acceptance time of their oldest
                                         entry (re-drive)
``P seen:<bucket>:<shard>``       hash    dedupe markers of accepted Twilio messages: field =
                                         the MessageSid without its last 3 characters (the
                                         shard), one hash per time bucket (a day) and shard;
                                         expires a dedupe period after its bucket closes
``P out:<MessageSid>``           hash    one outbound reply (``OutboundField``): ``sess``,
                                         ``mid`` and ``pos`` (its session, message id and
                                         absolute index in the history), the furthest
                                         ``status`` and its ``rank``, ``error_code``, and
                                         ``seen:<status>`` per status callback received
                                         (dedupe). TTL: the retention period once mapped, a
                                         day while only callbacks have arrived
``P wake:ttl``                   string  how long (ms) a wake-up flag lives while Dramatiq's queue
                                         is backed up: the re-drive pass sets it from the age of
                                         the oldest queued wake-up (lapses to the lease period)
``P limit:<api>:bucket``         hash    the deployment's request token bucket for one API
                                         (``tokens``, ``at``): ``ratelimit.RedisSharedLimit``
``P limit:<api>:pause``          string  set for as long as the API asked (429 Retry-After)
                                         that no request start
``P limit:<api>:day:<d>:<c>``    string  calls of the API customer ``c`` caused on UTC day
                                         ``d`` (``YYYYMMDD``), against
                                         ``OPENAI_DAILY_CALLS_PER_PHONE``; expires an hour
                                         after the day ends
``P events:ended``               list    one entry per ended session, ``<status> <duration_ms>
                                         <message_count> <sid> <reason>``, consumed by the
                                         metrics job (capped at 100,000 when nobody consumes it)
``P analysis:due``               list    ended sessions' ids waiting for their analysis: the
                                         metrics job pushes them, the scheduler's analysis
                                         job pops them (``ANALYSIS_ON_SESSION_END``; capped
                                         at 100,000)
``P console:s:<digest>``         hash    one operator's console sign-in (``ConsoleField``):
                                         ``op`` (the operator), ``csrf`` (the CSRF token of
                                         its forms), ``at``; ``<digest>`` is the SHA-256 of the
                                         cookie's secret (the secret itself is never stored).
                                         TTL: ``CONSOLE_SESSION_HOURS``; sign-out deletes it
``P console:fail:<address>``     string  failed console sign-ins from one client address in
                                         the current minute (``console/throttle.py``, against
                                         ``CONSOLE_SIGN_IN_FAILURES_PER_MINUTE``); expires a
                                         minute after its first failure
``P console:changes``            pubsub  (a channel, not a key) the conversation key of each
                                         drain step that applied or committed something, each
                                         session end, delivery status applied and takeover
                                         change; the web process fans it out to the console's
                                         live views
``P an:<biz>:h:<hour>``          hash    analytics rollup of one business number and UTC hour
                                         (``hour`` = epoch ms // 3,600,000; ``RollupField``):
                                         sessions started, ended per outcome, duration,
                                         messages-per-session and message-to-reply bucket
                                         counts, sessions with an order, delivery outcomes.
                                         TTL: ``rollup_keep_ms`` after the hour closes
``P an:<biz>:items:<day>``       zset    most ordered items of one business number and UTC day
                                         (epoch ms // 86,400,000), lower-cased name ->
                                         quantity, from the orders of sessions that ended;
                                         capped (``analytics.buckets.TOP_ITEMS_CAP``); TTL as
                                         the hour hashes
``P an:businesses``              set     business numbers that have rollups (the report over
                                         every number reads their hashes)
``P outbox``                     stream  lifecycle events (``session.started``,
                                         ``session.completed``, ``session.expired``,
                                         ``order.updated``, ``message.failed``), one XADD in
                                         the script that makes the change (``lua/lib/outbox.lua``);
                                         fields ``type``, ``session_id``, ``conv``, ``at`` (epoch
                                         ms), ``data`` (JSON). Read by consumer groups
                                         (``archive``, ``events``: ``wa_sessions/outbox/``),
                                         trimmed below the oldest entry any group still needs
``P events:due``                 zset    outgoing events (``wa_sessions/events``): the outbox
                                         entry id at the head of each session's queue, by
                                         when its next attempt is due (epoch ms; while an
                                         attempt runs, when its lease lapses)
``P events:q:<sid>``             list    one session's accepted, undelivered outbox entry ids
                                         in stream order (the head is the one being sent)
``P events:state``               hash    outbox entry id -> ``{"sid", "n", "first"}`` JSON:
                                         its session, attempts made, first attempt (epoch ms)
``P events:given_up``            hash    outbox entry id -> the event given up (JSON: body,
                                         reason, attempts, when), for operators and replay
``P events:given_up:at``         zset    the given-up events by when (the newest 100,000 kept)
===============================  ======  =====================================================

Every key of one conversation, its sessions and their histories included, carries the
conversation's ``{conv}`` hash tag, so a move to Redis Cluster moves no conversation data. The
global keys (``idx:*``, ``seen:*``, ``out:*``, ``wake:ttl``, ``events:ended``, ``an:*``,
``analysis:due``, ``outbox``) are
updated in the same scripts as the conversation they index, so the store needs a single Redis
(or Sentinel), not Cluster, until those scripts are split.

A session's keys need its conversation, so a lookup by session id alone (the session API, the
operators' script, a status callback's ``out:`` hash) first reads ``idx:conv``: one more HGET
(a round trip from Python, a hash lookup inside a script) than when the id was the key.

Ended sessions' keys get a TTL of the retention period plus a day; the retention purge removes
them from the indexes (and deletes them) when the retention period has passed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from wa_sessions.languages.choice import CANDIDATE_KEY, LANGUAGE_KEY


class SessionField(StrEnum):
    """The fields of a session hash (``Keys.session``)."""

    SESSION_ID = "sid"
    PHONE = "phone"
    BUSINESS = "biz"
    CONV = "conv"
    STATUS = "status"
    CREATED = "created"
    LAST_ACTIVITY = "last"
    LAST_INBOUND = "last_in"
    ENDED = "ended"
    END_REASON = "end_reason"
    MESSAGE_COUNT = "count"
    TRIMMED = "trimmed"
    ORDER = "order"
    #: The operator who took the session over (absent: automatic replies are on).
    TAKEN_OVER_BY = "op"
    TAKEN_OVER_AT = "op_at"
    #: When it was last handed back: messages accepted before then get no automatic reply.
    HANDED_BACK_AT = "hb"
    #: When the session's one nudge was claimed (epoch ms); never cleared.
    NUDGED = "nudged"
    #: The session analysis (``analysis.models.SessionAnalysis`` JSON), written only while
    #: the session still has the fingerprint it read.
    ANALYSIS = "analysis"
    #: The conversation template the session follows (``flows/``) and the id of its current
    #: step (``done`` once its last step was answered), written with the effects' commit.
    FLOW = "flow"
    FLOW_STEP = "flow_step"
    #: The stream id of the session's end event in the outbox (the purge waits for the archive).
    OUTBOX_ID = "ob"


class SessionFieldPrefix(StrEnum):
    """Families of session hash fields: a prefix, then a name."""

    #: Messages per direction: ``n:inbound``, ``n:outbound``.
    BY_DIRECTION = "n:"
    #: Messages per type: ``t:text``, ``t:image``, ...
    BY_TYPE = "t:"
    #: One context key's JSON value: ``ctx:<name>``.
    CONTEXT = "ctx:"


class ContextKey(StrEnum):
    """Context keys the service itself keeps in a session (``ctx:<name>``, JSON values)."""

    #: The customer's language (ISO 639-1) the replies are written in (``languages/choice.py``).
    LANGUAGE = LANGUAGE_KEY
    #: Another language detected once, awaiting a second message to confirm it.
    LANGUAGE_CANDIDATE = CANDIDATE_KEY


class OutboundField(StrEnum):
    """The fields of an outbound reply's hash (``Keys.outbound``)."""

    SESSION_ID = "sess"
    MESSAGE_ID = "mid"
    POSITION = "pos"
    STATUS = "status"
    RANK = "rank"
    ERROR_CODE = "error_code"


class ConsoleField(StrEnum):
    """The fields of an operator's console sign-in (``Keys.console_session``)."""

    OPERATOR = "op"
    CSRF = "csrf"
    #: When the operator signed in (epoch ms).
    AT = "at"


class BucketField(StrEnum):
    """The fields of a rate-limit token bucket (``Keys.rate_bucket``)."""

    TOKENS = "tokens"
    #: When ``tokens`` was last computed (epoch ms).
    AT = "at"


class OutboundFieldPrefix(StrEnum):
    #: ``seen:<status>``: a status callback received (dedupe).
    SEEN = "seen:"


class RollupField(StrEnum):
    """Counters of an analytics hour hash (``Keys.rollup``)."""

    #: Sessions opened in the hour.
    STARTED = "started"
    #: Sessions ended in the hour whose order had at least one item.
    ORDERED = "ordered"
    #: Replies that reached ``delivered`` (or ``read``) in the hour, by the callbacks' arrival.
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    UNDELIVERED = "undelivered"


class RollupFieldPrefix(StrEnum):
    """Families of analytics hour hash fields: a prefix, then a status or a bucket index
    (``analytics.buckets``)."""

    #: Sessions ended in the hour, per final status: ``end:completed``, ``end:expired``.
    ENDED = "end:"
    #: Ended sessions per duration bucket: ``d:0`` .. ``d:<len(bounds)>``.
    DURATION = "d:"
    #: Ended sessions per messages-per-session bucket: ``n:<i>``.
    MESSAGES = "n:"
    #: Answered inbound messages per message-to-reply bucket: ``r:<i>``.
    REPLY = "r:"


#: The outbox's consumer group that writes the SQL archive: the purge keeps an ended session
#: until this group has acknowledged its end event.
OUTBOX_ARCHIVE_GROUP = "archive"

#: How long analytics rollups are kept after their hour (or day) closes, by default.
ROLLUP_KEEP_MS = 90 * 86_400_000


@dataclass(frozen=True, slots=True)
class Keys:
    """The key layout. ``rollup_keep_ms`` is the analytics rollups' retention
    (``ANALYTICS_RETENTION_DAYS``): the scripts get it from the prelude with the key names."""

    prefix: str = "wa:"
    rollup_keep_ms: int = ROLLUP_KEEP_MS

    def session(self, conv: str, session_id: str) -> str:
        return self._conv(conv, f"s:{session_id}")

    def session_messages(self, conv: str, session_id: str) -> str:
        return self._conv(conv, f"s:{session_id}:m")

    @property
    def session_conv(self) -> str:
        """The ``idx:conv`` hash: session id -> conversation."""
        return f"{self.prefix}idx:conv"

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

    def conv_rate(self, conv: str) -> str:
        return self._conv(conv, "rate")

    def conv_opt_out(self, conv: str) -> str:
        """Set for good once the customer opted out of business-initiated messages."""
        return self._conv(conv, "optout")

    def conv_language(self, conv: str) -> str:
        """The business's override of the conversation's reply language."""
        return self._conv(conv, "lang")

    @property
    def active(self) -> str:
        return f"{self.prefix}idx:active"

    @property
    def nudge(self) -> str:
        """The ``idx:nudge`` zset: sessions awaiting their nudge, by last activity."""
        return f"{self.prefix}idx:nudge"

    @property
    def all(self) -> str:
        return f"{self.prefix}idx:all"

    def status_index(self, status: str) -> str:
        return f"{self.prefix}idx:status:{status}"

    @property
    def ended(self) -> str:
        return f"{self.prefix}idx:ended"

    @property
    def takeover(self) -> str:
        """The ``idx:takeover`` zset: sessions taken over by an operator."""
        return f"{self.prefix}idx:takeover"

    @property
    def pending(self) -> str:
        return f"{self.prefix}idx:pending"

    @property
    def ended_events(self) -> str:
        return f"{self.prefix}events:ended"

    @property
    def analysis_due(self) -> str:
        """Ended sessions waiting for their analysis (``analysis_store``)."""
        return f"{self.prefix}analysis:due"

    def rate_bucket(self, api: str) -> str:
        return f"{self.prefix}limit:{api}:bucket"

    def rate_pause(self, api: str) -> str:
        return f"{self.prefix}limit:{api}:pause"

    def daily_calls(self, api: str, day: str, customer: str) -> str:
        """One customer's calls of ``api`` on ``day`` (``YYYYMMDD``, UTC)."""
        return f"{self.prefix}limit:{api}:day:{day}:{customer}"

    def console_session(self, digest: str) -> str:
        return f"{self.prefix}console:s:{digest}"

    def console_sign_in_failures(self, address: str) -> str:
        """Failed console sign-ins from the client ``address`` in the current minute."""
        return f"{self.prefix}console:fail:{address}"

    @property
    def console_channel(self) -> str:
        """The pub/sub channel of conversation changes (``drain_step.lua``, session ends,
        ``delivery_status.lua`` and ``takeover.lua`` publish)."""
        return f"{self.prefix}console:changes"

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

    def rollup(self, business: str, hour: int) -> str:
        """The analytics hash of ``business`` for the UTC hour ``hour`` (epoch hours)."""
        return f"{self.prefix}an:{business}:h:{hour}"

    def rollup_items(self, business: str, day: int) -> str:
        """The most ordered items of ``business`` on ``day`` (epoch days)."""
        return f"{self.prefix}an:{business}:items:{day}"

    @property
    def rollup_businesses(self) -> str:
        return f"{self.prefix}an:businesses"

    @property
    def outbox(self) -> str:
        """The outbox stream of lifecycle events (``lua/lib/outbox.lua`` writes it)."""
        return f"{self.prefix}outbox"

    @property
    def events_due(self) -> str:
        """Outgoing events: each session's head entry by its next attempt (``events/store``)."""
        return f"{self.prefix}events:due"

    def events_queue(self, session_id: str) -> str:
        """One session's undelivered outgoing events, oldest first."""
        return f"{self.prefix}events:q:{session_id}"

    @property
    def events_state(self) -> str:
        return f"{self.prefix}events:state"

    @property
    def events_given_up(self) -> str:
        return f"{self.prefix}events:given_up"

    @property
    def events_given_up_at(self) -> str:
        return f"{self.prefix}events:given_up:at"

    def lua_prelude(self) -> str:
        """The same key names for Lua, generated from the methods above: functions for keys
        derived from data, constants for the global keys (hash fields: ``lua_constants``)."""
        return "\n".join(
            [
                _lua_function("k_sess", self.session, "conv", "sid"),
                _lua_function("k_msgs", self.session_messages, "conv", "sid"),
                _lua_function("k_active", self.conv_active, "conv"),
                _lua_function("k_sessions", self.conv_sessions, "conv"),
                _lua_function("k_inbox", self.conv_inbox, "conv"),
                _lua_function("k_lease", self.conv_lease, "conv"),
                _lua_function("k_wake", self.conv_wake, "conv"),
                _lua_function("k_effects", self.conv_effects, "conv"),
                _lua_function("k_lang", self.conv_language, "conv"),
                _lua_function("k_optout", self.conv_opt_out, "conv"),
                _lua_function("k_rate", self.conv_rate, "conv"),
                _lua_function("k_out", self.outbound, "message_sid"),
                _lua_function("k_status", self.status_index, "status"),
                f"local K_SESSION_CONV = {_lua_string(self.session_conv)}",
                f"local K_ACTIVE = {_lua_string(self.active)}",
                f"local K_ALL = {_lua_string(self.all)}",
                f"local K_NUDGE = {_lua_string(self.nudge)}",
                f"local K_ENDED = {_lua_string(self.ended)}",
                f"local K_PENDING = {_lua_string(self.pending)}",
                f"local K_TAKEOVER = {_lua_string(self.takeover)}",
                f"local K_ENDED_EVENTS = {_lua_string(self.ended_events)}",
                f"local K_WAKE_TTL = {_lua_string(self.wake_ttl)}",
                f"local K_CONSOLE_CHANNEL = {_lua_string(self.console_channel)}",
                _lua_function("k_rollup", self.rollup, "biz", "hour"),
                _lua_function("k_rollup_items", self.rollup_items, "biz", "day"),
                f"local K_OUTBOX = {_lua_string(self.outbox)}",
                f"local OUTBOX_ARCHIVE_GROUP = {_lua_string(OUTBOX_ARCHIVE_GROUP)}",
                f"local K_ROLLUP_BUSINESSES = {_lua_string(self.rollup_businesses)}",
                f"local ROLLUP_KEEP_MS = {int(self.rollup_keep_ms)}",
                "",
            ]
        )


def lua_constants() -> dict[str, str]:
    """The hash fields as the Lua scripts write them: ``S.<name>`` for the session hash,
    ``O.<name>`` for an outbound reply's, ``CTX.<name>`` for a context key's name, ``B.<name>``
    for a rate-limit bucket, ``A.<name>`` for an analytics hour hash (names lower-cased:
    ``S.last_inbound``), each with its Lua string literal. The loader writes the literal in
    place of the name when it assembles a script, so no table is built per call and a misspelt
    field fails at load."""
    tables = {
        "S": (SessionField, SessionFieldPrefix),
        "CTX": (ContextKey,),
        "O": (OutboundField, OutboundFieldPrefix),
        "B": (BucketField,),
        "A": (RollupField, RollupFieldPrefix),
    }
    return {
        f"{table}.{member.name.lower()}": _lua_string(member.value)
        for table, enums in tables.items()
        for enum in enums
        for member in enum
    }


def _lua_function(name: str, build: Callable[..., str], *params: str) -> str:
    """A Lua function that builds the same key as ``build``: called with markers in place of
    its arguments, the key it returns is cut at the markers into literals and parameters."""
    marks = {f"\x00{param}\x00": param for param in params}
    pieces = re.split("(\x00\\w+\x00)", build(*marks))
    body = " .. ".join(marks[p] if p in marks else _lua_string(p) for p in pieces if p)
    return f"local function {name}({', '.join(params)}) return {body} end"


def _lua_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
