"""The collecting stage on its own: items applied in order, as the reader
would hand them over."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bpfguard.rules.collector import Collector
from bpfguard.rules.items import (
    EngineRequirement,
    Entry,
    ExceptionItem,
    ItemError,
    ListItem,
    MacroItem,
    PluginRequirement,
    Problems,
    RuleEnable,
    RuleItem,
    RuleUpdate,
    Text,
)
from bpfguard.rules.model import Context, PluginVersion, Priority

CTX = Context("f.yaml", 1, 3, "rule", "R")


def collector() -> tuple[Collector, Problems]:
    problems = Problems()
    return Collector("0.57.0", problems), problems


def rule(name: str = "R", cond: str = "evt.type = open", source: str = "syscall",
         exceptions: list[ExceptionItem] | None = None) -> RuleItem:
    ctx = Context("f.yaml", 1, 3, "rule", name)
    return RuleItem(name, ctx, source, Text.built(cond), ctx, Text.built("%proc.name"), ctx,
                    "desc", Priority.WARNING, {"a"}, exceptions or [])


def items(*words: str) -> list[tuple[str, Context]]:
    return [(w, CTX) for w in words]


def test_a_redefinition_keeps_the_first_place() -> None:
    c, _ = collector()
    c.define_list(ListItem("l", CTX, items("a")))
    c.define_macro(MacroItem("m", CTX, Text.built("evt.type = open"), CTX))
    c.define_list(ListItem("l", CTX, items("b")))
    lists = c.collected().lists
    assert [w for w, _ in lists["l"].item.items] == ["b"]
    assert (lists["l"].index, lists["l"].visibility) == (0, 2)
    assert c.collected().macros["m"].index == 1


def test_appends_change_the_existing_item() -> None:
    c, _ = collector()
    c.define_list(ListItem("l", CTX, items("a")))
    c.append_list(ListItem("l", CTX, items("b", "c")))
    c.define_macro(MacroItem("m", CTX, Text.built("evt.type = open"), CTX))
    c.append_macro(MacroItem("m", CTX, Text.built("or evt.type = close"), CTX))
    got = c.collected()
    assert [w for w, _ in got.lists["l"].item.items] == ["a", "b", "c"]
    assert got.macros["m"].item.cond.text == "evt.type = open or evt.type = close"
    assert got.lists["l"].visibility == 1 and got.macros["m"].visibility == 3


@pytest.mark.parametrize("change, message", [
    (lambda c: c.append_list(ListItem("x", CTX, [])), "List uses 'append'"),
    (lambda c: c.append_macro(MacroItem("x", CTX, Text.built("a"), CTX)), "Macro uses 'append'"),
    (lambda c: c.append_rule(RuleUpdate("x", CTX, desc="d")), "Rule uses 'append'"),
    (lambda c: c.replace_rule(RuleUpdate("x", CTX, desc="d")), "An 'override.<key>: replace'"),
    (lambda c: c.enable_rule(RuleEnable("x", CTX, False)), "Rule has 'enabled' key"),
], ids=["list append", "macro append", "rule append", "rule replace", "rule enable"])
def test_changing_what_does_not_exist_is_an_item_error(change: Callable[[Collector], None],
                                                       message: str) -> None:
    c, problems = collector()
    with pytest.raises(ItemError) as caught:
        change(c)
    assert caught.value.message.startswith(message)
    assert caught.value.ctx == CTX
    assert problems.ok  # recording it is the reader's business


def test_rule_append_and_replace() -> None:
    c, _ = collector()
    c.define_rule(rule())
    c.append_rule(RuleUpdate("R", CTX, cond=Text.built("and proc.name = sh"), tags={"b"}))
    c.replace_rule(RuleUpdate("R", CTX, priority=Priority.ERROR, enabled=False))
    got = c.collected().rules["R"]
    assert got.item.cond.text == "evt.type = open and proc.name = sh"
    assert got.item.tags == {"a", "b"}
    assert (got.item.priority, got.item.enabled) == (Priority.ERROR, False)
    assert (got.index, got.visibility) == (0, 2)
    with pytest.raises(ItemError, match="at least one field"):
        c.replace_rule(RuleUpdate("R", CTX))


def test_a_rule_keeps_its_source() -> None:
    c, problems = collector()
    c.define_rule(rule(source="k8s_audit"))
    assert [p.message for p in problems.warnings] == ["Unknown source k8s_audit, skipping"]
    with pytest.raises(ItemError, match="different source"):
        c.define_rule(rule())


def test_exceptions_are_checked_and_get_default_comps() -> None:
    c, _ = collector()
    listed = ExceptionItem("e1", CTX, Entry(True, items=[Entry(False, "proc.name"),
                                                         Entry(False, "fd.name")]),
                           Entry(), [])
    single = ExceptionItem("e2", CTX, Entry(False, "proc.name"), Entry(), [])
    c.define_rule(rule(exceptions=[listed, single]))
    assert [e.item for e in listed.comps.items] == ["=", "="]
    assert single.comps == Entry(False, "in")
    bad = ExceptionItem("e", CTX, Entry(False, "proc.nope"), Entry(), [])
    with pytest.raises(ItemError, match="'proc.nope' is not a supported filter field"):
        c.define_rule(rule("S", exceptions=[bad]))
    assert "S" not in c.collected().rules


def test_exception_values_append_to_an_existing_exception() -> None:
    c, _ = collector()
    c.define_rule(rule(exceptions=[ExceptionItem("e", CTX, Entry(False, "proc.name"), Entry(),
                                                 [Entry(False, "sh")])]))
    c.append_rule(RuleUpdate("R", CTX, exceptions=[
        ExceptionItem("e", CTX, Entry(), Entry(), [Entry(False, "bash")])]))
    assert [v.item for v in c.collected().rules["R"].item.exceptions[0].values] == ["sh", "bash"]
    with pytest.raises(ItemError, match="Can not append exception fields"):
        c.append_rule(RuleUpdate("R", CTX, exceptions=[
            ExceptionItem("e", CTX, Entry(False, "fd.name"), Entry(), [])]))


def test_engine_requirements_keep_the_highest() -> None:
    c, _ = collector()
    c.require_engine(EngineRequirement((0, 26, 0), CTX))
    c.require_engine(EngineRequirement((0, 57, 0), CTX))
    c.require_engine(EngineRequirement((0, 30, 0), CTX))
    engine = c.collected().engine_required
    assert engine is not None and engine.text == "0.57.0"
    with pytest.raises(ItemError, match="Rules require engine version 0.58.0, but engine "
                                        "version is 0.57.0"):
        c.require_engine(EngineRequirement((0, 58, 0), CTX))


def test_plugin_requirements_are_checked_well_formed_only() -> None:
    c, problems = collector()
    unknown = PluginRequirement((PluginVersion("k8saudit", "0.1.0"),), CTX)
    c.require_plugins(unknown)  # whether it is satisfied is decided once all is read
    assert c.collected().plugins == (unknown,) and problems.ok
    with pytest.raises(ItemError, match="Invalid required version 'x'"):
        c.require_plugins(PluginRequirement((PluginVersion("a", "x"),), CTX))
    with pytest.raises(ItemError, match="multiple alternative"):
        c.require_plugins(PluginRequirement((PluginVersion("a", "1.0.0"),
                                             PluginVersion("a", "2.0.0")), CTX))
