"""Loads the Lua scripts (``lua/*.lua``, package data) and encodes their calls: the one place
where script arguments are turned into KEYS and ARGV.

Each script file opens with a header naming what it takes (see ``lua/ingest.lua``)::

    -- Uses: sessions, delivery        libraries from lua/lib/, after the generated prelude
    -- KEYS:
    --   inbox                         one key per line; ``name?`` when optional (trailing)
    -- ARGV:
    --   accepted_ms     int   ...     one argument per line: name, type, description

and the loader assembles the script as: the prelude (key names from ``keys``, the lifecycle
table from ``lifecycle``, delivery ranks) when it uses any library, the libraries it names, a
decoder generated from the header, then its body.

The body reads its arguments by name (``KEY.inbox``, ``ARG.token``), never by position; hash
fields and entry kinds by name too (``S.status``, ``O.rank``, ``ENTRY.message``). The loader
checks every such name (against the header, ``keys``, ``entries``) and fails on one it does
not know; it writes field names and kinds in as literals and reads arguments from one local
each (``ARG_token``), as tables of them built on every call cost the hot scripts 2-6%.

Arguments travel positionally in the header's order (no names on the wire); an argument's type
says how it is encoded here and decoded there: ``str`` as is, ``int`` through ``tonumber``,
``flag`` as ``'1'``/``'0'`` to a boolean, ``json`` (lists, records, commit groups) through
``cjson.decode``. Times are epoch milliseconds passed in by the caller, never Redis' clock, so
tests drive time with an injected clock.

What this costs, against the Python-string scripts with positional ARGV it replaced (time
inside Redis from ``bench/scripts_ab.py``, 8,000 calls, four runs alternating the order; the
session layout of ``keys`` included): ingest +2%; a drain step applying one message to a new
session +8.5%, half of it the ``idx:conv`` write that lookups by session id need (about 4%:
measured without it); a drain step applying with effects on +6%; a step committing a batch's
effects +18% (its commit is one JSON argument, and the records and message JSON it carries are
escaped text for cjson to decode; once per batch, beside that batch's OpenAI and Twilio calls).
Replies are identical call for call (``scripts_ab`` compares them). Encoding here:
``ingest_call`` 1.3-1.8 -> 5 us and ``drain_step_call`` 1.1-1.3 -> 6 us per call, about 1% of
the webhook's CPU per request (~340 us) and of a worker's per message (~900 us).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

from wa_sessions.analytics.buckets import lua_buckets
from wa_sessions.statemachine.entries import EntryKind
from wa_sessions.statemachine.lifecycle import transition_table
from wa_sessions.statemachine.models import DELIVERY_RANK
from wa_sessions.statemachine.redis.keys import Keys, lua_constants

_LUA = files("wa_sessions.statemachine.redis") / "lua"

#: The scripts, by name (``lua/<name>.lua``).
NAMES = (
    "apply_message",
    "create_session",
    "end_session",
    "read_active",
    "expire_if_idle",
    "update_fields",
    "expire_idle",
    "purge",
    "ingest",
    "push_op",
    "start_flow",
    "drain_step",
    "extend_lease",
    "delivery_status",
    "redrive",
    "migrate_sessions",
    "take_token",
    "take_daily_call",
    "takeover",
    "save_analysis",
    "claim_nudges",
    "outbox_trim",
    "outbox_backlog",
    "erase_conv",
    "events_accept",
    "events_claim",
    "events_retry",
    "events_finish",
)

#: ``names`` is the generated prelude alone; every library needs it and brings it along.
_PRELUDE = "names"

_TYPES = ("str", "int", "flag", "json")
_KEY_LINE = re.compile(r"^--   (\w+)(\?)?(?:\s|$)")
_ARG_LINE = re.compile(r"^--   (\w+)(\?)?\s+(\w+)(?:\s|$)")


#: Non-ASCII as UTF-8, no \u escapes for cjson to turn back; one encoder (``json.dumps`` with
#: options builds one per call).
_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _flag(value: Any) -> str:
    return "1" if value else "0"


#: How a value of each type is encoded; ``str`` and ``int`` go to redis-py as they are.
_CODECS: dict[str, Callable[[Any], Any]] = {"flag": _flag, "json": _to_json}


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: str = "str"
    optional: bool = False


@dataclass(frozen=True, slots=True)
class ScriptSpec:
    """A script file's header and body, independent of the key prefix."""

    name: str
    uses: tuple[str, ...]
    keys: tuple[Param, ...]
    args: tuple[Param, ...]
    body: str
    # What ``encode`` needs, computed once: key names, argument names, (index, codec) pairs.
    _key_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _arg_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _codecs: tuple[tuple[int, Callable[[Any], Any]], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        codecs = tuple((i, _CODECS[p.type]) for i, p in enumerate(self.args) if p.type in _CODECS)
        object.__setattr__(self, "_key_names", tuple(p.name for p in self.keys))
        object.__setattr__(self, "_arg_names", tuple(p.name for p in self.args))
        object.__setattr__(self, "_codecs", codecs)

    def decoder(self) -> str:
        """Lua that decodes the script's KEYS and ARGV into one local each, named as the body
        reads them (``KEY.inbox`` is the local ``KEY_inbox``, see ``_localize``)."""
        lines = [f"local KEY_{p.name} = KEYS[{i}]" for i, p in enumerate(self.keys, 1)]
        lines += [f"local ARG_{p.name} = {_decode(p, i)}" for i, p in enumerate(self.args, 1)]
        return "\n".join(lines) + "\n"

    def encode(
        self, keys: Mapping[str, str | None], args: Mapping[str, Any]
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV in the header's order; optional trailing ones left off when None.
        (On the webhook's hot path: a few microseconds, so no per-value dispatch.)"""
        try:
            key_values = [keys[name] for name in self._key_names]
            arg_values = [args[name] for name in self._arg_names]
        except KeyError as missing:
            raise self._mismatch(keys, args) from missing
        if len(key_values) != len(keys) or len(arg_values) != len(args):
            raise self._mismatch(keys, args)
        for index, codec in self._codecs:
            if arg_values[index] is not None:
                arg_values[index] = codec(arg_values[index])
        return _trailing(key_values, self.keys, self.name), _trailing(
            arg_values, self.args, self.name
        )

    def _mismatch(self, keys: Mapping[str, Any], args: Mapping[str, Any]) -> TypeError:
        return TypeError(
            f"{self.name} takes KEYS {[p.name for p in self.keys]} and ARGV "
            f"{[p.name for p in self.args]}; got {sorted(keys)} and {sorted(args)}"
        )


def _decode(param: Param, index: int) -> str:
    raw = f"ARGV[{index}]"
    value = {
        "str": raw,
        "int": f"tonumber({raw})",
        "flag": f"{raw} == '1'",
        "json": f"cjson.decode({raw})",
    }[param.type]
    if param.optional and param.type in ("int", "json"):
        return f"{raw} and {value}"
    return value


def _trailing(values: list[Any], params: tuple[Param, ...], script: str) -> list[Any]:
    while values and values[-1] is None and params[len(values) - 1].optional:
        values.pop()
    if None in values:
        raise TypeError(f"{script}: only trailing optional KEYS/ARGV may be None")
    return values


def call(name: str, keys: Mapping[str, str | None], **args: Any) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of one call of script ``name``, from its arguments by name: the one
    function that encodes script arguments, for the sync store and the async clients alike."""
    return spec(name).encode(keys, args)


@cache
def spec(name: str) -> ScriptSpec:
    """Script ``name``'s header and body, read from ``lua/<name>.lua`` once."""
    source = (_LUA / f"{name}.lua").read_text(encoding="utf-8")
    uses: tuple[str, ...] = ()
    keys: list[Param] = []
    args: list[Param] = []
    section: list[Param] | None = None
    for line in source.splitlines():
        if not line.startswith("--"):
            break
        if line.startswith("-- Uses:"):
            uses = tuple(u.strip() for u in line.removeprefix("-- Uses:").split(","))
        elif line.startswith("-- KEYS:"):
            section = keys
        elif line.startswith("-- ARGV:"):
            section = args
        elif section is keys and (match := _KEY_LINE.match(line)):
            keys.append(Param(match[1], optional=bool(match[2])))
        elif section is args and (match := _ARG_LINE.match(line)):
            if match[3] not in _TYPES:
                raise ValueError(f"{name}.lua: {match[1]} has unknown type {match[3]}")
            args.append(Param(match[1], match[3], bool(match[2])))
        elif not line.startswith("--    "):
            section = None
    if not args:
        raise ValueError(f"{name}.lua: no ARGV in its header")
    return ScriptSpec(name, uses, tuple(keys), tuple(args), source)


@cache
def _library(name: str) -> str:
    return (_LUA / "lib" / f"{name}.lua").read_text(encoding="utf-8")


def prelude(keys: Keys) -> str:
    """Key names, the lifecycle table (T), delivery ranks (R) and the analytics buckets (RB_*,
    in the unit the scripts count in: ms, messages)."""
    transitions = ", ".join(
        f"['{state}|{trigger}'] = '{dest}'" for (state, trigger), dest in transition_table().items()
    )
    ranks = ", ".join(f"['{status}'] = {rank}" for status, rank in DELIVERY_RANK.items())
    return (
        keys.lua_prelude()
        + "-- The lifecycle: T['<state>|<trigger>'] = state after.\n"
        + f"local T = {{{transitions}}}\n"
        + "-- Delivery statuses' ranks: a status only replaces one of lower rank.\n"
        + f"local R = {{{ranks}}}\n"
        + lua_buckets()
    )


def constants() -> dict[str, str]:
    """What the loader writes in place of a name: hash fields (``S.status``, ``O.rank``,
    ``A.started``) and inbox entry kinds (``ENTRY.message``), as Lua string literals."""
    kinds = {f"ENTRY.{kind.name.lower()}": f"'{kind.value}'" for kind in EntryKind}
    return {**lua_constants(), **kinds}


_CONSTANT = re.compile(r"\b(?:S|O|B|A|CTX|ENTRY)\.\w+")


def _substitute(name: str, text: str) -> str:
    """Writes each ``S.*``/``O.*``/``A.*``/``CTX.*``/``ENTRY.*`` as its literal. Measured:
    tables of them built on every call cost a drain step 3-6% (``bench/scripts_ab.py``)."""
    table = constants()

    def literal(match: re.Match[str]) -> str:
        try:
            return table[match[0]]
        except KeyError:
            raise ValueError(f"{name}.lua: unknown name {match[0]}") from None

    return _CONSTANT.sub(literal, text)


_ARGUMENT = re.compile(r"\b(ARG|KEY)\.(\w+)")


def _localize(script: ScriptSpec) -> str:
    """The body with ``ARG.token`` and ``KEY.inbox`` as the decoder's locals (``ARG_token``).
    Measured: a table of the arguments built on every call cost the webhook's ingest 2-4%
    (``bench/scripts_ab.py``). A name the header does not declare fails here, at load."""
    declared = {("ARG", p.name) for p in script.args} | {("KEY", p.name) for p in script.keys}

    def local(match: re.Match[str]) -> str:
        if (match[1], match[2]) not in declared:
            raise ValueError(f"{script.name}.lua: {match[0]} is not in its header")
        return f"{match[1]}_{match[2]}"

    return _ARGUMENT.sub(local, script.body)


def source(name: str, keys: Keys) -> str:
    """Script ``name`` as sent to Redis: prelude, libraries, argument decoder, body."""
    script = spec(name)
    parts = []
    if script.uses:
        parts.append(prelude(keys))
        parts += [_library(lib) for lib in script.uses if lib != _PRELUDE]
    parts += [script.decoder(), _localize(script)]
    return _substitute(name, "\n".join(parts))


def build(keys: Keys) -> dict[str, str]:
    """Every script's source by name, for ``keys``' prefix."""
    return {name: source(name, keys) for name in NAMES}
