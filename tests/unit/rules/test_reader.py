"""The reading stage on its own: YAML to items, handed to the collector in
order, each with where it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bpfguard.rules.collector import Collector
from bpfguard.rules.items import Problems, RuleItem, RulesFile, RuleUpdate
from bpfguard.rules.model import ErrorCode, WarningCode
from bpfguard.rules.reader import open_source, read, source_name


class Recording(Collector):
    """A real collector that also notes each call the reader makes."""

    def __init__(self, problems: Problems) -> None:
        super().__init__("0.57.0", problems)
        self.calls: list[tuple[str, Any]] = []

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name.startswith(("define_", "append_", "replace_", "enable_", "require_")):
            def call(item: Any) -> None:
                self.calls.append((name, item))
                attr(item)
            return call
        return attr


def read_text(text: str) -> tuple[Recording, Problems]:
    problems = Problems()
    collector = Recording(problems)
    read(RulesFile("f.yaml", text), collector, problems)
    return collector, problems


ITEMS = """\
- required_engine_version: 0.26.0
- list: shells
  items: [sh, bash]
- macro: spawned
  condition: evt.type = execve
- rule: R
  desc: d
  condition: spawned and proc.name in (shells)
  output: "  %proc.name ran  "
  priority: info
"""


def test_items_are_handed_over_in_order_with_their_context() -> None:
    collector, problems = read_text(ITEMS)
    assert problems.ok and not problems.warnings
    assert [name for name, _ in collector.calls] == [
        "require_engine", "define_list", "define_macro", "define_rule"]
    rule = collector.calls[-1][1]
    assert isinstance(rule, RuleItem)
    assert (rule.ctx.kind, rule.ctx.name, rule.ctx.line, rule.ctx.column) == ("rule", "R", 6, 3)
    assert rule.cond_ctx.kind == "rule condition" and rule.cond_ctx.parent == rule.ctx
    # The condition keeps where each of its characters is in the file.
    at = rule.cond.context_at(rule.cond.text.index("proc.name"), rule.cond_ctx, "x")
    assert (at.line, at.column) == (8, 26)
    assert rule.output.text == "%proc.name ran"  # trimmed, as Falco keeps it
    assert rule.output.context_at(0, rule.output_ctx, "x").column == 14
    shells = collector.calls[1][1]
    assert [(w, c.kind, c.line) for w, c in shells.items] == [("sh", "list item", 3),
                                                               ("bash", "list item", 3)]


def test_a_bad_item_is_recorded_and_reading_goes_on() -> None:
    collector, problems = read_text("""\
- rule: missing
  append: true
  condition: and proc.name = sh
- rule: R
  desc: d
  condition: evt.type = open
  output: x
  priority: oops
- list: l
  items: [a]
""")
    assert [(p.code, p.context.line, p.message) for p in problems.errors] == [
        (ErrorCode.LOAD_ERR_VALIDATE, 1,
         "Rule uses 'append' or 'override.<key>: append' but no rule by that name already "
         "exists"),
        (ErrorCode.LOAD_ERR_YAML_VALIDATE, 8, "Invalid priority"),
    ]
    assert [p.code for p in problems.warnings] == [WarningCode.LOAD_DEPRECATED_ITEM]
    assert [name for name, _ in collector.calls] == ["append_rule", "define_list"]


def test_an_override_hands_the_append_before_reading_the_replace() -> None:
    collector, problems = read_text("""\
- rule: R
  desc: d
  condition: evt.type = open
  output: x
  priority: info
- rule: R
  override: {condition: append, priority: replace}
  condition: and proc.name = sh
  priority: oops
""")
    assert [name for name, _ in collector.calls] == ["define_rule", "append_rule"]
    update = collector.calls[1][1]
    assert isinstance(update, RuleUpdate) and update.cond is not None
    assert collector.collected().rules["R"].item.cond.text == \
        "evt.type = open and proc.name = sh"
    assert [p.message for p in problems.errors] == ["Invalid priority"]


def test_what_is_not_a_rules_item() -> None:
    _, problems = read_text("- foo: bar\n- [a, b]\n")
    assert [(p.code, p.context.line) for p in problems.warnings] == [
        (WarningCode.LOAD_UNKNOWN_ITEM, 1)]
    assert [p.message for p in problems.errors] == [
        "Unexpected element type. Each element should be a yaml associative array."]
    _, problems = read_text("rule: R\n")
    assert [p.message for p in problems.errors] == ["Rules content is not yaml array of objects"]


def test_open_source(tmp_path: Path) -> None:
    problems = Problems()
    path = tmp_path / "r.yaml"
    path.write_text("- list: l\n  items: []\n")
    file = open_source(path, problems)
    assert file is not None and file.name == str(path) and file.text.startswith("- list")
    assert open_source(("given.yaml", "[]"), problems) is not None
    assert source_name(("given.yaml", "[]")) == "given.yaml"
    assert open_source(tmp_path / "none.yaml", problems) is None
    assert [(p.code, p.context.file) for p in problems.errors] == [
        (ErrorCode.LOAD_ERR_FILE_READ, str(tmp_path / "none.yaml"))]


def test_a_yaml_error_late_in_a_file_leaves_nothing_of_it() -> None:
    """Items are read one at a time, but handed over only once the whole
    file has parsed: a YAML error at the end leaves that error alone."""
    collector, problems = read_text("- macro: m\n  condition: evt.type = open\n"
                                    "- rule: r\n  desc: d\n  condition: m\n  output: o\n"
                                    "  priority: INFO\n- [unclosed\n")
    assert collector.calls == []
    assert [e.code for e in problems.errors] == [ErrorCode.LOAD_ERR_YAML_PARSE]
    assert problems.errors[0].context.line == 9   # (the end, where it is found unclosed)


def test_more_items_than_a_file_may_hold_are_refused_where_the_limit_is_passed(
        monkeypatch: Any) -> None:
    """(issue 22, defect 8) 100k rules took 132 s and 6.7 GB to read; a file
    is refused at its MAX_RULES_ITEMS + 1st item, before the rest is parsed,
    and nothing of it is taken."""
    import bpfguard.rules.reader as reader

    monkeypatch.setattr(reader, "MAX_RULES_ITEMS", 2)
    text = "".join(f"- list: l{i}\n  items: [a]\n" for i in range(3)) + "- [unclosed\n"
    collector, problems = read_text(text)
    assert collector.calls == []
    assert len(problems.errors) == 1   # (the YAML error after it is never reached)
    err = problems.errors[0]
    assert "more than 2 items (rules, macros, lists) in one file" in err.message
    assert err.context.line == 5


def test_a_document_that_is_not_a_list_is_said_after_a_refused_item() -> None:
    collector, problems = read_text("- macro: m\n  condition: evt.type = open\n  append: true\n"
                                    "---\n{a: 1}\n")
    assert [e.message for e in problems.errors] == [
        "Macro uses 'append' or 'override.condition: append' but no macro by that name "
        "already exists",
        "Rules content is not yaml array of objects"]
