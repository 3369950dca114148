"""The Lua scripts' headers and the one function that encodes their arguments: every script
declares its KEYS and ARGV, the loader names them for Lua, and a call with a wrong or missing
name fails in Python instead of shifting every argument after it."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest

from wa_sessions.statemachine.entries import EntryKind
from wa_sessions.statemachine.redis import scripts
from wa_sessions.statemachine.redis.keys import Keys, SessionField

LUA = files("wa_sessions.statemachine.redis") / "lua"


def test_every_lua_file_is_a_named_script_with_a_header() -> None:
    """Each ``lua/*.lua`` is loaded by name and declares ARGV, each library is used."""
    on_disk = {f.name.removesuffix(".lua") for f in LUA.iterdir() if f.name.endswith(".lua")}
    assert on_disk == set(scripts.NAMES)
    libraries = {f.name.removesuffix(".lua") for f in (LUA / "lib").iterdir()}
    used = {lib for name in scripts.NAMES for lib in scripts.spec(name).uses}
    assert libraries <= used
    for name in scripts.NAMES:
        assert scripts.spec(name).args, name


def test_bodies_read_arguments_by_name_only() -> None:
    """No script body indexes KEYS or ARGV itself: only the generated decoder does."""
    for name in scripts.NAMES:
        assert not re.search(r"\b(KEYS|ARGV)\[", scripts.spec(name).body), name


def test_ingest_header_names_its_keys_and_arguments_in_order() -> None:
    """The header's order is the wire order, optional ones last."""
    spec = scripts.spec("ingest")
    assert [p.name for p in spec.keys] == [
        "inbox",
        "wake",
        "pending",
        "wake_ttl",
        "rate",
        "queue",
        "queue_messages",
    ]
    assert [(p.name, p.type, p.optional) for p in spec.args][-2:] == [
        ("wake_id", "str", True),
        ("wake_message", "str", True),
    ]
    assert "local ARG_entry = ARGV[1]\n" in spec.decoder()
    assert "local ARG_accepted_ms = tonumber(ARGV[4])\n" in spec.decoder()
    assert "local KEY_queue_messages = KEYS[7]\n" in spec.decoder()
    source = scripts.source("ingest", Keys())
    assert "redis.call('RPUSH', KEY_inbox, ARG_entry)" in source
    assert "ARG." not in source


def test_call_encodes_by_header_order_and_types() -> None:
    """Flags become '1'/'0', JSON arguments are compact UTF-8 text, absent trailing optional
    arguments are left off."""
    keys, args = scripts.call(
        "update_fields", {}, sid="s1", set={"ctx:name": '"Zoë"'}, delete=["order"]
    )
    assert (keys, args) == ([], ["s1", '{"ctx:name":"\\"Zoë\\""}', '["order"]'])
    _, args = scripts.call(
        "drain_step",
        {"lease": "l", "wake": "w", "inbox": "i", "pending": "p", "effects": "e"},
        acquire=True,
        token="t",
        lease_ms=5000,
        batch=10,
        conv="c",
        now=1,
        timeout_ms=2,
        cap=3,
        keep_ms=4,
        effects=False,
        history=0,
        id_base="b",
        carry=[],
        commit=None,
    )
    assert args == ["1", "t", 5000, 10, "c", 1, 2, 3, 4, "0", 0, "b", "[]"]


def test_call_refuses_a_missing_or_unknown_argument() -> None:
    """A misspelt name is an error, not a shifted argument."""
    with pytest.raises(TypeError, match="extend_lease takes"):
        scripts.call("extend_lease", {"lease": "k"}, token="t", lease_msec=5)
    with pytest.raises(TypeError, match="extend_lease takes"):
        scripts.call("extend_lease", {"lease": "k"}, token="t")
    with pytest.raises(TypeError, match="extend_lease takes"):
        scripts.call("extend_lease", {}, token="t", lease_ms=5)


def test_only_trailing_optional_arguments_may_be_none() -> None:
    """A None in the middle is refused rather than sent as an empty string."""
    with pytest.raises(TypeError, match="trailing optional"):
        scripts.call("extend_lease", {"lease": "k"}, token=None, lease_ms=5)


def test_lua_gets_the_python_names() -> None:
    """Field names, entry kinds and key shapes come from the Python definitions: fields and
    kinds are written in as literals, keys are functions built from ``Keys``' methods."""
    source = scripts.source("drain_step", Keys("p:"))
    assert not re.search(r"\b(?:S|O|ENTRY)\.\w+", source)
    assert f"HGET', skey, '{SessionField.STATUS.value}')" in source
    assert f"kind == '{EntryKind.MESSAGE.value}'" in source
    assert "local function k_sess(conv, sid) return 'p:c:{' .. conv .. '}:s:' .. sid end" in (
        scripts.prelude(Keys("p:"))
    )


def test_a_misspelt_field_fails_when_the_script_is_assembled() -> None:
    """``S.stauts`` would read nil at run time; the loader refuses it instead."""
    with pytest.raises(ValueError, match=r"unknown name S\.stauts"):
        scripts._substitute("x", "redis.call('HGET', k, S.stauts)")


def test_an_argument_missing_from_the_header_fails_when_the_script_is_assembled() -> None:
    """``ARG.tokn`` would be an undefined global at run time; the loader refuses it."""
    spec = scripts.spec("extend_lease")
    broken = scripts.ScriptSpec(spec.name, spec.uses, spec.keys, spec.args, "return ARG.tokn")
    with pytest.raises(ValueError, match=r"ARG\.tokn is not in its header"):
        scripts._localize(broken)


def test_scripts_without_libraries_carry_no_prelude() -> None:
    """The webhook's ingest is sent without the shared functions (it runs on every message)."""
    source = scripts.source("ingest", Keys())
    assert "local function" not in source
    assert "local function end_session" in scripts.source("drain_step", Keys())
