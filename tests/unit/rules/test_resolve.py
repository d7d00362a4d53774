"""The resolving stage on its own: collected items to resolved, checked
rules, without any YAML."""

from __future__ import annotations

from bpfguard.rules import ast
from bpfguard.rules.collector import Collector
from bpfguard.rules.items import ListItem, MacroItem, Problems, RuleItem, Text
from bpfguard.rules.model import Context, ErrorCode, Priority, WarningCode
from bpfguard.rules.resolve import resolve


def ctx(kind: str, name: str, line: int = 1) -> Context:
    return Context("f.yaml", line, 3, kind, name)


class Items:
    """Builds what a collector would hand over, item by item."""

    def __init__(self) -> None:
        self.problems = Problems()
        self.collector = Collector("0.57.0", self.problems)

    def list(self, name: str, *words: str) -> Items:
        self.collector.define_list(ListItem(name, ctx("list", name),
                                            [(w, ctx("list item", "")) for w in words]))
        return self

    def macro(self, name: str, cond: str) -> Items:
        c = ctx("macro", name)
        self.collector.define_macro(MacroItem(name, c, Text.built(cond), c))
        return self

    def rule(self, name: str, cond: str, output: str = "%proc.name",
             source: str = "syscall") -> Items:
        c = ctx("rule", name)
        self.collector.define_rule(RuleItem(name, c, source, Text.built(cond), c,
                                            Text.built(output), c, "d", Priority.NOTICE,
                                            set(), []))
        return self

    def resolve(self) -> tuple[list[str], list[ast.Condition | None], Problems]:
        rules = resolve(self.collector.collected(), self.problems)
        return [r.name for r in rules], [r.condition for r in rules], self.problems


def test_macros_and_lists_are_substituted() -> None:
    names, conds, problems = (Items().list("shells", "sh", "bash")
                              .macro("spawned", "evt.type = execve")
                              .rule("R", "spawned and proc.name in (shells)").resolve())
    assert problems.ok and not problems.warnings
    assert names == ["R"]
    cond = conds[0]
    assert isinstance(cond, ast.And)
    spawned, shells = cond.items
    assert isinstance(spawned, ast.Compare) and spawned.left == ast.FieldRef("evt.type")
    assert isinstance(shells, ast.Compare) and isinstance(shells.right, ast.ListValue)
    assert [w.text for w in shells.right.items if isinstance(w, ast.Word)] == ["sh", "bash"]


def test_a_macro_sees_only_earlier_macros_and_a_rule_sees_all() -> None:
    _, _, problems = (Items().macro("early", "late").macro("late", "evt.type = open")
                      .rule("R", "late").resolve())
    assert [(p.code, p.message, p.context.name) for p in problems.errors] == [
        (ErrorCode.LOAD_ERR_VALIDATE, "Undefined macro 'late' used in filter.", "early")]
    names, _, problems = (Items().rule("R", "late").macro("late", "evt.type = open")
                          .resolve())
    assert names == ["R"] and problems.ok


def test_unused_items_are_warned_of_only_when_all_resolves() -> None:
    _, _, problems = (Items().list("l", "a").macro("m", "evt.type = open")
                      .rule("R", "evt.type = open").resolve())
    assert [p.code for p in problems.warnings] == [WarningCode.LOAD_UNUSED_MACRO,
                                                   WarningCode.LOAD_UNUSED_LIST]
    _, _, problems = (Items().list("l", "a").rule("R", "proc.nope = 1").resolve())
    assert [p.message for p in problems.errors] == ["unknown field 'proc.nope'"]
    assert not problems.warnings


def test_other_sources_pass_through_unresolved() -> None:
    names, conds, problems = Items().rule("K", "ka.verb = create and nonsense(",
                                          source="k8s_audit").resolve()
    assert names == ["K"] and conds == [None]
    assert [p.code for p in problems.warnings] == [WarningCode.LOAD_UNKNOWN_SOURCE]
    assert problems.ok


def test_outputs_are_checked() -> None:
    _, _, problems = Items().rule("R", "evt.type = open", output="%proc.nope x").resolve()
    assert [(p.code, p.message) for p in problems.errors] == [
        (ErrorCode.LOAD_ERR_COMPILE_OUTPUT,
         "invalid formatting token '%proc.nope': unknown field 'proc.nope'")]


def test_rules_come_in_order_of_first_definition() -> None:
    items = Items().rule("A", "evt.type = open").rule("B", "evt.type = close")
    items.rule("A", "evt.type = execve")  # redefined: keeps its place
    names, conds, problems = items.resolve()
    assert problems.ok and names == ["A", "B"]
    first = conds[0]
    assert isinstance(first, ast.Compare) and first.right == ast.Word("execve", pos=11)
