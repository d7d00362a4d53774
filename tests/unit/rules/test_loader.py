"""Loading rules files, against Falco's rule loader's behaviour."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import bpfguard.rules
from bpfguard.errors import ConfigError
from bpfguard.rules import ast
from bpfguard.rules.fields import check_field
from bpfguard.rules.grammar import parse_condition
from bpfguard.rules.loader import ENGINE_VERSION, RulesError, load_rules, load_rules_or_raise
from bpfguard.rules.model import LoadResult, PluginVersion, Priority, Problem, Rule

STOCK = Path(bpfguard.rules.__file__).parent / "data" / "falco_rules.yaml"

RULE = """
- rule: {name}
  desc: a test rule
  condition: {condition}
  output: "%proc.name did it"
  priority: WARNING
"""


def load(*texts: str) -> LoadResult:
    return load_rules([(f"file{i + 1}.yaml", text) for i, text in enumerate(texts)])


def rule(text: str, name: str = "R", condition: str = "evt.type = execve") -> str:
    return text + RULE.format(name=name, condition=condition)


def only_rule(result: LoadResult) -> Rule:
    assert result.ok, result.render()
    assert len(result.rules) == 1
    return result.rules[0]


def condition_of(*texts: str) -> ast.Condition:
    cond = only_rule(load(*texts)).condition
    assert cond is not None
    return cond


def codes(problems: tuple[Problem, ...]) -> list[str]:
    return [p.code for p in problems]


def the_error(result: LoadResult) -> Problem:
    assert not result.ok
    assert result.rules == ()
    assert len(result.errors) == 1, result.render()
    return result.errors[0]


def nodes(node: ast.Node) -> Iterator[ast.Node]:
    yield node
    children: tuple[ast.Node | None, ...] = ()
    if isinstance(node, ast.And | ast.Or):
        children = node.items
    elif isinstance(node, ast.Not):
        children = (node.item,)
    elif isinstance(node, ast.Compare):
        children = (node.left, node.right)
    elif isinstance(node, ast.ListValue):
        children = node.items
    elif isinstance(node, ast.Transform | ast.Value):
        children = (node.operand,)
    for child in children:
        if child is not None:
            yield from nodes(child)


# -- the stock ruleset -------------------------------------------------------

@pytest.fixture(scope="module")
def stock() -> LoadResult:
    return load_rules([STOCK])


def test_stock_ruleset_loads_clean(stock: LoadResult) -> None:
    # Falco itself loads this file without a warning: every macro and list
    # is used, every rule restricts evt.type, no value looks like a field.
    # bpfguard's one warning: the rule that needs a host name it cannot know.
    assert stock.ok, stock.render()
    assert stock.errors == ()
    [refusal] = stock.warnings
    assert refusal.code == "LOAD_UNKNOWN_FILTER"
    assert refusal.message.startswith("rule 'Contact K8S API Server From Container' refused: "
                                      "it needs fd.sip.name, which bpfguard cannot provide")
    assert (refusal.context.line, refusal.context.column) == (822, 15)
    assert [r.name for r in stock.rules if r.unavailable] == \
        ["Contact K8S API Server From Container"]
    assert len(stock.rules) == 25
    assert stock.required_engine_version == "0.57.0"
    assert stock.required_plugin_versions == ((PluginVersion("container", "0.4.0"),),)


def test_stock_rules_are_in_file_order(stock: LoadResult) -> None:
    names = [item["rule"] for item in yaml.safe_load(STOCK.read_text()) if "rule" in item]
    assert [r.name for r in stock.rules] == names


def test_stock_rules_are_fully_resolved(stock: LoadResult) -> None:
    lists = {item["list"] for item in yaml.safe_load(STOCK.read_text()) if "list" in item}
    for r in stock.rules:
        assert r.condition is not None and r.source == "syscall"
        for node in nodes(r.condition):
            assert not isinstance(node, ast.MacroRef), r.name
            if isinstance(node, ast.FieldRef):
                assert check_field(node) is None, (r.name, node)
            if isinstance(node, ast.Compare) and node.op in ("in", "intersects", "pmatch"):
                assert isinstance(node.right, ast.ListValue), (r.name, node)
            if isinstance(node, ast.Word):
                assert node.quoted or node.text not in lists, (r.name, node.text)


def test_stock_rule_details(stock: LoadResult) -> None:
    by_name = {r.name: r for r in stock.rules}
    untrusted = by_name["Read sensitive file untrusted"]
    assert untrusted.priority is Priority.WARNING
    assert untrusted.tags == tuple(sorted(untrusted.tags))
    assert "maturity_stable" in untrusted.tags
    assert untrusted.condition_text.startswith("open_read and sensitive_files and")
    assert untrusted.context.line == 397 and untrusted.context.kind == "rule"
    assert by_name["System user interactive"].priority is Priority.INFORMATIONAL
    # '"(systemd)"' in login_binaries is a quoted string once in a condition.
    assert untrusted.condition is not None
    values = {n.text: n.quoted for n in nodes(untrusted.condition) if isinstance(n, ast.Word)}
    assert values["(systemd)"] is True
    assert values["unix_chkpwd"] is False  # shadowutils_binaries, in user_mgmt_binaries
    assert values["salt-call"] is False


def test_the_engine_version_gates_the_stock_ruleset() -> None:
    result = load_rules([STOCK], engine_version="0.56.0")
    problem = the_error(result)
    assert problem.code == "LOAD_ERR_VALIDATE"
    assert problem.message == "Rules require engine version 0.57.0, but engine version is 0.56.0"
    assert problem.context.line == 28
    assert ENGINE_VERSION == "0.57.0"


# -- the stock rulesets by name -------------------------------------------------

def test_stock_rulesets_are_named_and_shipped_as_source_says() -> None:
    from bpfguard.rules import STOCK_RULESETS, rule_files, stock_rules_path

    source = (STOCK.parent / "SOURCE").read_text().splitlines()
    assert [line.split()[1] for line in source] == \
        [f"rules/{f}" for f in STOCK_RULESETS.values()]
    assert stock_rules_path() == STOCK == stock_rules_path("stable")
    for name, file in STOCK_RULESETS.items():
        assert stock_rules_path(name).is_file() and stock_rules_path(name).name == file
    # stock names and paths mix, in the order given; no path is stable alone
    assert rule_files(["stock:sandbox", str(STOCK)]) == \
        [str(stock_rules_path("sandbox")), str(STOCK)]
    assert rule_files([]) == [str(STOCK)]


def test_an_unknown_stock_name_lists_the_known_ones() -> None:
    from bpfguard.rules import rule_files

    with pytest.raises(ConfigError) as err:
        rule_files(["stock:stable", "stock:incubation"], what="rules.files: ")
    assert str(err.value) == ("rules.files: stock:incubation: no such stock ruleset; known: "
                              "stock:stable, stock:incubating, stock:sandbox")
    with pytest.raises(ConfigError, match="^-r stock:: no such stock ruleset"):
        rule_files(["stock:"], what="-r ")


def test_a_macro_of_the_stable_rules_used_without_them_says_to_load_them() -> None:
    result = load(rule("", condition="spawned_process and proc.name = bash"))
    assert the_error(result).message == (
        "Undefined macro 'spawned_process' used in filter. Falco's stable rules define "
        "it: load stock:stable (falco_rules.yaml) before this file.")
    # with them first it loads; a macro stable lacks gets no such advice
    assert load_rules([STOCK, ("mine.yaml", rule("", condition="spawned_process"))]).ok
    assert the_error(load(rule("", condition="spawned_proces"))).message == \
        "Undefined macro 'spawned_proces' used in filter."



def test_the_three_stock_rulesets_load_together_and_each_alone() -> None:
    from bpfguard.rules import stock_rules_path

    paths = [stock_rules_path(n) for n in ("stable", "incubating", "sandbox")]
    every = load_rules(paths)
    assert every.ok and len(every.rules) == 25 + 31 + 37, every.render()
    assert all(p.code == "LOAD_UNKNOWN_FILTER" for p in every.warnings), every.render()
    refused = {r.name: r.unavailable for r in every.rules if r.unavailable}
    assert refused == {
        "Contact K8S API Server From Container": ("fd.sip.name",),
        "Unexpected inbound connection source": ("fd.cip.name",),
        "Detect outbound connections to common miner pool ports": ("fd.sip.name",),
        "Java Process Class File Download": ("evt.buffer",),
    }
    assert len(every.warnings) == len(refused)
    # at this commit incubating and sandbox carry copies of what they use
    for path in paths[1:]:
        alone = load_rules([path])
        assert alone.ok and not alone.errors, alone.render()


# -- fields bpfguard cannot provide --------------------------------------------

def refusals(result: LoadResult) -> dict[str, tuple[str, ...]]:
    assert result.ok, result.render()
    return {r.name: r.unavailable for r in result.rules if r.unavailable}


@pytest.mark.parametrize(("condition", "refused"), [
    # never matches: a conjunct, every alternative, or all of a list
    ("evt.type = read and evt.buffer bcontains cafebabe", ("evt.buffer",)),
    ("evt.type = connect and (fd.sip.name = a or fd.rip.name = b)",
     ("fd.sip.name", "fd.rip.name")),
    ("evt.type = connect and fd.sip.name != a", ("fd.sip.name",)),   # != is false too
    # an exclusion that could never exclude
    ("evt.type = accept and not fd.cip.name in (google.com)", ("fd.cip.name",)),
    ("evt.type = accept and not (fd.cip = 1.2.3.4 or fd.cip.name = x)", ("fd.cip.name",)),
    # one alternative among others only narrows the rule: kept, as Falco's absent values
    ("evt.type = sendto and (fd.connected = true or fd.name_changed = true)", ()),
    ("evt.type = connect and not not fd.sip.name = a or evt.type = accept", ()),
    ("evt.type = execve and proc.aexe[2] endswith java", ()),   # provided
])
def test_a_rule_that_needs_an_absent_field_is_refused(condition: str,
                                                      refused: tuple[str, ...]) -> None:
    result = load(rule("", condition=condition) + rule("", name="Other"))
    assert refusals(result) == ({"R": refused} if refused else {})
    assert [r.name for r in result.rules] == ["R", "Other"]   # the rest loads
    if refused:
        [warning] = result.warnings
        assert warning.code == "LOAD_UNKNOWN_FILTER"
        assert warning.message.startswith(
            f"rule 'R' refused: it needs {', '.join(refused)}, which bpfguard cannot provide")
        assert warning.context.file == "file1.yaml" and warning.context.line == 4
        assert condition[warning.context.column - len("  condition: ") - 1:].startswith(
            refused[0])
    else:
        assert result.warnings == ()


def test_a_refusal_in_an_exception_or_a_macro_points_at_the_field() -> None:
    text = """
- macro: from_pool
  condition: fd.sip.name in (pool.example)
- rule: Pool
  desc: d
  condition: evt.type = connect and from_pool
  output: "%proc.name"
  priority: WARNING
- rule: Allowed
  desc: d
  condition: evt.type = accept
  output: "%proc.name"
  priority: WARNING
  exceptions:
    - name: by_name
      fields: fd.cip.name
      values: [a.example]
"""
    result = load(text)
    assert refusals(result) == {"Pool": ("fd.sip.name",), "Allowed": ("fd.cip.name",)}
    pool, allowed = result.warnings
    assert (pool.context.line, pool.context.column) == (3, 14)
    assert pool.context.parent is not None and pool.context.parent.kind == "macro condition"
    assert "would never be excluded" in allowed.message
    assert [c.kind for c in allowed.context.chain()][:3] == ["rules content", "rule",
                                                              "exception"]


def test_the_engine_never_runs_a_refused_rule() -> None:
    from bpfguard.rules.engine import Engine

    result = load(rule("", condition="evt.type = read and evt.buffer contains x")
                  + rule("", name="Other"))
    engine = Engine(result.rules, disable_rules=["R"])   # a refused rule can still be named
    assert [c.name for c in Engine(result.rules).compiled] == ["Other"]
    assert [c.name for c in engine.compiled] == ["Other"]


# -- items and keys -----------------------------------------------------------

def test_minimal_rule() -> None:
    r = only_rule(load(rule("")))
    assert r.name == "R" and r.desc == "a test rule" and r.output == "%proc.name did it"
    assert r.priority is Priority.WARNING and r.tags == () and r.enabled
    assert r.source == "syscall" and r.warn_evttypes and not r.skip_if_unknown_filter
    assert r.condition == parse_condition("evt.type = execve")
    assert r.condition_text == "evt.type = execve"
    assert (r.context.file, r.context.line, r.context.column) == ("file1.yaml", 2, 3)


def test_optional_rule_keys() -> None:
    text = RULE.format(name="R", condition="evt.type = open") + """
  tags: [b, a, b]
  enabled: false
  warn_evttypes: false
  skip-if-unknown-filter: true
  capture: true
  capture_duration: 5
  source: syscall
"""
    r = only_rule(load(text))
    assert r.tags == ("a", "b")
    assert not r.enabled and not r.warn_evttypes and r.skip_if_unknown_filter
    assert r.capture and r.capture_duration == 5


@pytest.mark.parametrize(("key", "value", "message"), [
    ("enable", "false", "Unexpected key 'enable'"),
    ("items", "[a]", "Unexpected key 'items'"),
    ("enabled", "maybe", "Can't decode YAML scalar value"),
    ("tags", "a", "Value is not a sequence"),
    ("tags", "[[a]]", "sequence value is not scalar"),
    ("capture_duration", "-1", "Can't decode YAML scalar value"),
    ("desc", "", "Mapping for key 'desc' is empty"),
    ("desc", "''", "Value must be non-empty"),
    ("desc", "[a]", "Value is not a scalar value"),
])
def test_bad_rule_keys(key: str, value: str, message: str) -> None:
    text = f"""
- rule: R
  condition: evt.type = open
  output: x
  priority: INFO
  {key}: {value}
""" + ("  desc: d\n" if key != "desc" else "")
    problem = the_error(load(text))
    assert problem.code == "LOAD_ERR_YAML_VALIDATE"
    assert message in problem.message


def test_duplicate_key() -> None:
    problem = the_error(load(rule("").replace("  priority: WARNING", "  priority: WARNING\n"
                                                                      "  priority: ERROR")))
    assert "appears twice" in problem.message


@pytest.mark.parametrize("missing", ["desc", "output", "priority"])
def test_missing_required_rule_key(missing: str) -> None:
    text = "\n".join(line for line in rule("").splitlines()
                     if not line.strip().startswith(missing + ":"))
    problem = the_error(load(text))
    assert problem.message == f"Item has no mapping for key '{missing}'"
    assert (problem.context.kind, problem.context.name) == ("rule", "R")


def test_unknown_priority() -> None:
    problem = the_error(load(rule("").replace("WARNING", "LOUD")))
    assert problem.message == "Invalid priority"
    assert (problem.context.kind, problem.context.line, problem.context.column) == (
        "rule priority", 6, 13)
    assert "priority: LOUD" in problem.snippet()


@pytest.mark.parametrize(("text", "priority"), [
    ("emergency", Priority.EMERGENCY), ("Alert", Priority.ALERT), ("CRITICAL", Priority.CRITICAL),
    ("error", Priority.ERROR), ("Warning", Priority.WARNING), ("notice", Priority.NOTICE),
    ("info", Priority.INFORMATIONAL), ("INFORMATIONAL", Priority.INFORMATIONAL),
    ("debug", Priority.DEBUG),
])
def test_priorities_parse_case_insensitively(text: str, priority: Priority) -> None:
    assert Priority.parse(text) is priority
    assert only_rule(load(rule("").replace("WARNING", text))).priority is priority


def test_priorities_order_by_severity() -> None:
    order = [Priority.DEBUG, Priority.INFORMATIONAL, Priority.NOTICE, Priority.WARNING,
             Priority.ERROR, Priority.CRITICAL, Priority.ALERT, Priority.EMERGENCY]
    assert sorted(reversed(order)) == order
    assert Priority.ERROR > Priority.WARNING >= Priority.WARNING
    assert Priority.EMERGENCY.value == 0 and str(Priority.INFORMATIONAL) == "Informational"
    with pytest.raises(ValueError):
        Priority.parse("warn")


def test_unknown_top_level_item_is_a_warning() -> None:
    result = load(rule("- rul: x\n"))
    assert result.ok and len(result.rules) == 1
    assert codes(result.warnings) == ["LOAD_UNKNOWN_ITEM"]


@pytest.mark.parametrize(("text", "message"), [
    ("a: b", "Rules content is not yaml array of objects"),
    ("just text", "Rules content is not yaml"),
    ("- [a, b]", "Each element should be a yaml associative array"),
])
def test_content_must_be_a_sequence_of_mappings(text: str, message: str) -> None:
    problem = the_error(load(text))
    assert message in problem.message


def test_empty_documents_and_items_are_skipped() -> None:
    assert load("").ok
    assert load("---\n...\n").ok
    assert only_rule(load(rule("-\n"))).name == "R"


def test_yaml_parse_error_has_a_position() -> None:
    problem = the_error(load("- rule: a\n  desc: [unclosed\n"))
    assert problem.code == "LOAD_ERR_YAML_PARSE"
    assert (problem.context.file, problem.context.line) == ("file1.yaml", 3)


def test_unreadable_file(tmp_path: Path) -> None:
    problem = the_error(load_rules([tmp_path / "nope.yaml"]))
    assert problem.code == "LOAD_ERR_FILE_READ"
    assert problem.snippet() == ""


def test_files_by_path(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(rule(""))
    result = load_rules([str(path)])
    assert result.names == (str(path),)
    assert only_rule(result).context.file == str(path)


def test_invalid_names_are_warnings() -> None:
    result = load("""
- macro: bad-name
  condition: evt.type = open
- list: "bad name"
  items: [a]
""")
    assert result.ok
    assert codes(result.warnings)[:2] == ["LOAD_INVALID_MACRO_NAME", "LOAD_INVALID_LIST_NAME"]


# -- macros and lists ----------------------------------------------------------

def test_macros_resolve_recursively() -> None:
    cond = condition_of(rule("""
- macro: a
  condition: evt.type = open
- macro: b
  condition: a and proc.name = cat
""", condition="b or evt.type = close"))
    assert cond == parse_condition("(evt.type = open and proc.name = cat) or evt.type = close")
    assert not any(isinstance(n, ast.MacroRef) for n in nodes(cond))


def test_a_macro_sees_only_macros_defined_before_it() -> None:
    problem = the_error(load(rule("""
- macro: a
  condition: b
- macro: b
  condition: evt.type = open
""", condition="a")))
    assert problem.message == "Undefined macro 'b' used in filter."
    assert (problem.context.kind, problem.context.line, problem.context.column) == (
        "condition expression", 3, 14)


def test_a_rule_sees_every_macro() -> None:
    text = RULE.format(name="R", condition="later") + """
- macro: later
  condition: evt.type = open
"""
    assert condition_of(text) == parse_condition("evt.type = open")


def test_undefined_macro() -> None:
    problem = the_error(load(rule("", condition="evt.type = open and nonesuch")))
    assert problem.code == "LOAD_ERR_VALIDATE"
    assert problem.message == "Undefined macro 'nonesuch' used in filter."
    assert (problem.context.line, problem.context.column) == (4, 34)


def test_macro_cycle_is_an_error() -> None:
    result = load(rule("""
- macro: a
  condition: evt.type = open
- macro: b
  condition: a
- macro: a
  condition: b or evt.type = close
  override:
    condition: replace
""", condition="a"))
    problem = the_error(result)
    assert problem.message == "reference loop in macro 'b'"
    assert (problem.context.line, problem.context.column) == (7, 14)


def test_macro_referring_to_itself() -> None:
    problem = the_error(load(rule("""
- macro: a
  condition: evt.type = open
- macro: a
  condition: or a
  override:
    condition: append
""", condition="a")))
    assert problem.message == "reference loop in macro 'a'"


def test_lists_in_lists_expand_recursively() -> None:
    cond = condition_of(rule("""
- list: inner
  items: [a, "b c"]
- list: middle
  items: [inner, d]
- list: outer
  items: [middle, e, '"quoted"']
""", condition="evt.type = open and proc.name in (outer, f)"))
    assert cond == parse_condition(
        'evt.type = open and proc.name in (a, "b c", d, e, "quoted", f)')


def test_a_list_names_only_lists_defined_before_it() -> None:
    cond = condition_of(rule("""
- list: first
  items: [second]
- list: second
  items: [x]
""", condition="evt.type = open and proc.name in (first, second)"))
    assert cond == parse_condition("evt.type = open and proc.name in (second, x)")


def test_list_cycle_is_an_error() -> None:
    problem = the_error(load(rule("""
- list: a
  items: [x]
- list: b
  items: [a]
- list: a
  items: [b]
  override:
    items: append
""", condition="evt.type = open and proc.name in (a)")))
    assert problem.message.startswith("reference loop in list")


def test_empty_list_and_empty_list_items() -> None:
    assert condition_of(rule("- list: none\n  items: []\n",
                             condition="evt.type = open and proc.name in (none)")) == \
        parse_condition("evt.type = open and proc.name in ()")
    problem = the_error(load(rule("- list: l\n  items: [a, '']\n",
                                  condition="evt.type = open and proc.name in (l)")))
    assert problem.message == "empty item in list 'l'"


def test_list_items_are_read_as_condition_values() -> None:
    # As Falco writes them into the condition: quoted if they have a blank.
    cond = condition_of(rule("- list: l\n  items: ['a,b', 'c, d', '\"e\"', 80]\n",
                             condition="evt.type = open and proc.name in (l)"))
    assert cond == parse_condition('evt.type = open and proc.name in (a, b, "c, d", "e", 80)')
    problem = the_error(load(rule("- list: l\n  items: ['a)']\n",
                                  condition="evt.type = open and proc.name in (l)")))
    assert problem.message.startswith("list item 'a)' is not a valid value")
    assert (problem.context.line, problem.context.column) == (2, 11)


def test_list_name_outside_parentheses() -> None:
    # Falco writes list items into the condition text: `in list` and `= list`
    # only work when that reads as a valid condition.
    lists = "- list: one\n  items: [bash]\n- list: two\n  items: [bash, sh]\n"
    assert condition_of(rule(lists, condition="evt.type = open and proc.name in one")) == \
        parse_condition("evt.type = open and proc.name in (bash)")
    assert condition_of(rule(lists, condition="evt.type = open and proc.name = one")) == \
        parse_condition("evt.type = open and proc.name = bash")
    assert condition_of(rule(lists, condition="evt.type = open and proc.name in other")) == \
        parse_condition("evt.type = open and proc.name in (other)")
    assert condition_of(rule(lists, condition='evt.type = open and proc.name = "two"')) == \
        parse_condition('evt.type = open and proc.name = "two"')
    assert "must be in parentheses" in the_error(
        load(rule(lists, condition="evt.type = open and proc.name in two"))).message
    assert "has 2 items" in the_error(
        load(rule(lists, condition="evt.type = open and proc.name = two"))).message


# -- warnings ------------------------------------------------------------------

def test_unused_macros_and_lists() -> None:
    result = load(rule("""
- list: used_by_list
  items: [a]
- list: used_by_macro
  items: [used_by_list]
- list: unused_list
  items: [b]
- macro: used_by_macro_only
  condition: proc.name in (used_by_macro)
- macro: unused_macro
  condition: used_by_macro_only
"""))
    assert result.ok
    assert [(p.code, p.context.name) for p in result.warnings] == [
        ("LOAD_UNUSED_MACRO", "unused_macro"), ("LOAD_UNUSED_LIST", "unused_list")]


def test_unknown_field_in_an_unused_macro_is_no_error() -> None:
    result = load(rule("- macro: m\n  condition: proc.nonesuch = 1\n"))
    assert result.ok
    assert codes(result.warnings) == ["LOAD_UNUSED_MACRO"]


@pytest.mark.parametrize(("condition", "warns"), [
    ("evt.type = open", False),
    ("evt.type in (open, openat) and proc.name = cat", False),
    ("not evt.type != open", False),
    ("proc.name = cat", True),
    ("evt.type != open", True),
    ("not evt.type in (open, openat)", True),
    ("evt.type = open or proc.name = cat", True),
    ("evt.type = open and evt.type = close", True),
    ("evt.type exists", True),
])
def test_no_evttype_warning(condition: str, warns: bool) -> None:
    result = load(rule("", condition=condition))
    assert result.ok
    assert codes(result.warnings) == (["LOAD_NO_EVTTYPE"] if warns else [])
    quiet = load(rule("", condition=condition) + "  warn_evttypes: false\n")
    assert quiet.warnings == ()


@pytest.mark.parametrize(("condition", "says"), [
    ("proc.name = proc.pname", "'proc.pname' may be a valid field misused as a const string"),
    ("proc.name in (a, fd.name)", "'fd.name' may be a valid field misused"),
    ("proc.name = 'tolower(proc.name)'", "may be a valid field transformer misused"),
    ("proc.name regex '^bash.*'", "regex check with '^bash.*' may be optimized"),
])
def test_condition_warnings(condition: str, says: str) -> None:
    result = load(rule("", condition=f"evt.type = open and {condition}"))
    assert result.ok
    assert codes(result.warnings) == ["LOAD_COMPILE_CONDITION"]
    assert says in result.warnings[0].message


def test_a_real_regex_is_no_warning() -> None:
    assert load(rule("", condition="evt.type = open and proc.name regex 'ba(sh|rk)'")).warnings \
        == ()


# -- fields, outputs, skip-if-unknown-filter ----------------------------------

def test_unknown_field_error_points_at_the_field() -> None:
    text = """
- rule: R
  desc: d
  condition: >
    evt.type = open and
    proc.nme = bash
  output: x
  priority: INFO
"""
    problem = the_error(load(text))
    assert problem.code == "LOAD_ERR_COMPILE_CONDITION"
    assert problem.message == "unknown field 'proc.nme'"
    assert (problem.context.file, problem.context.line, problem.context.column) == (
        "file1.yaml", 6, 5)
    assert problem.snippet() == "    proc.nme = bash\n    ^\n"
    assert [c.kind for c in problem.context.chain()] == [
        "rules content", "rule", "rule condition", "condition expression"]


def test_unknown_field_in_a_macro_points_into_the_macro() -> None:
    problem = the_error(load(rule("- macro: m\n  condition: fd.nme = x\n",
                                  condition="evt.type = open and m")))
    assert (problem.context.line, problem.context.column) == (2, 14)
    assert problem.context.parent is not None
    assert problem.context.parent.kind == "macro condition"


@pytest.mark.parametrize(("condition", "message"), [
    ("proc.name[1] = x", "field 'proc.name' takes no argument"),
    ("proc.aname[x] = y", "field 'proc.aname' takes an index, not 'x'"),
    ("evt.arg = y", "field 'evt.arg' needs an argument"),
    ("tolower(proc.nme) = y", "unknown field 'proc.nme'"),
    ("proc.name = val(proc.nme)", "unknown field 'proc.nme'"),
])
def test_field_checks(condition: str, message: str) -> None:
    problem = the_error(load(rule("", condition=f"evt.type = open and {condition}")))
    assert problem.message == message


def test_skip_if_unknown_filter() -> None:
    text = rule("", condition="evt.type = open and proc.nme = x") + \
        "  skip-if-unknown-filter: true\n"
    result = load(rule(text, name="Kept"))
    assert result.ok
    assert [r.name for r in result.rules] == ["Kept"]
    assert codes(result.warnings) == ["LOAD_UNKNOWN_FILTER"]
    assert result.warnings[0].context.column == 34
    # A misused field is no unknown one: still an error.
    bad = rule("", condition="evt.type = open and proc.name[1] = x") + \
        "  skip-if-unknown-filter: true\n"
    assert the_error(load(bad)).code == "LOAD_ERR_COMPILE_CONDITION"


@pytest.mark.parametrize(("output", "ok"), [
    ("%proc.name %proc.aname[2] %evt.arg.flags %fd.sip.name", True),
    ("*%proc.name", True),
    ("%20proc.name|", True),
    ("%proc.names", True),  # the longest known prefix: %proc.name, then "s"
    ("%tolower(proc.name)", True),
    ("%proc.nonesuch", False),
    ("100%", False),
    ("%tolower(proc.nme)", False),
    ("%% done", False),
])
def test_outputs(output: str, ok: bool) -> None:
    result = load(rule("").replace('"%proc.name did it"', f'"{output}"'))
    assert result.ok is ok, result.render()
    if not ok:
        assert result.errors[0].code == "LOAD_ERR_COMPILE_OUTPUT"


def test_unknown_output_field_position_and_skip() -> None:
    text = rule("").replace('"%proc.name did it"', '"user %user.nme"')
    problem = the_error(load(text))
    assert (problem.context.kind, problem.context.line, problem.context.column) == (
        "rule output expression", 5, 17)
    skipped = load(text + "  skip-if-unknown-filter: true\n")
    assert skipped.ok and skipped.rules == ()
    assert codes(skipped.warnings) == ["LOAD_UNKNOWN_FILTER"]


def test_output_deprecations() -> None:
    result = load(rule("").replace('"%proc.name did it"', '"%proc.name %container.info"'))
    assert only_rule(result).output == "%proc.name "
    assert codes(result.warnings) == ["LOAD_DEPRECATED_ITEM"]
    result = load(rule("").replace('"%proc.name did it"', '"%evt.dir"'))
    assert codes(result.warnings) == ["LOAD_DEPRECATED_ITEM"]


def test_output_is_trimmed() -> None:
    assert only_rule(load(rule("").replace('"%proc.name did it"', '"  x  "'))).output == "x"


# -- syntax errors ----------------------------------------------------------------

def test_condition_syntax_error_position_and_snippet() -> None:
    problem = the_error(load(rule("", condition="evt.type = open and (proc.name = bash")))
    assert problem.code == "LOAD_ERR_COMPILE_CONDITION"
    assert "expected ')'" in problem.message
    assert str(problem.context) == "file1.yaml:4:51"
    assert problem.snippet() == (
        "  condition: evt.type = open and (proc.name = bash\n" + " " * 50 + "^\n")


def test_syntax_error_in_folded_condition() -> None:
    text = """
- rule: R
  desc: d
  condition: >
    evt.type = open
    and proc.name in (a, b
  output: x
  priority: INFO
"""
    problem = the_error(load(text))
    assert (problem.context.line, problem.context.column) == (7, 1)


def test_syntax_error_in_appended_condition_points_into_the_second_file() -> None:
    local = """
- rule: R
  condition: and proc.name = (
  override:
    condition: append
"""
    problem = the_error(load(rule(""), local))
    assert (problem.context.file, problem.context.line, problem.context.column) == (
        "file2.yaml", 3, 30)


# -- overriding and appending across files ----------------------------------------

BASE = """
- required_engine_version: 0.26.0
- list: shells
  items: [bash, sh]
- macro: spawned
  condition: evt.type in (execve, execveat)
- rule: Shell
  desc: a shell
  condition: spawned and proc.name in (shells)
  output: shell %proc.name
  priority: WARNING
  tags: [b, a]
  exceptions:
    - name: known
      fields: [proc.pname, proc.cmdline]
      comps: [=, startswith]
      values:
        - [cron, "sh -c x"]
- rule: Other
  desc: other
  condition: evt.type = open
  output: other
  priority: INFO
"""


def rules_by_name(result: LoadResult) -> dict[str, Rule]:
    assert result.ok, result.render()
    return {r.name: r for r in result.rules}


def test_override_append_and_replace_across_files() -> None:
    local = """
- list: shells
  items: [zsh]
  override:
    items: append
- macro: spawned
  condition: or evt.type = clone
  override:
    condition: append
- rule: Shell
  desc: and more
  condition: and user.uid = 0
  output: (%user.name)
  tags: [c, a]
  exceptions:
    - name: known
      values:
        - [sshd, /usr/bin]
    - name: single
      fields: proc.aname
      values: [shells, tmux]
  override:
    desc: append
    condition: append
    output: append
    tags: append
    exceptions: append
- rule: Shell
  priority: ERROR
  enabled: false
  override:
    priority: replace
    enabled: replace
"""
    result = load(BASE, local)
    shell = rules_by_name(result)["Shell"]
    assert result.warnings == ()
    assert shell.desc == "a shell and more"
    assert shell.output == "shell %proc.name (%user.name)"
    assert shell.tags == ("a", "b", "c")
    assert shell.priority is Priority.ERROR and not shell.enabled
    assert shell.condition_text == "spawned and proc.name in (shells) and user.uid = 0"
    # Exactly as Falco builds it: the condition in parentheses, then each
    # exception as "and not" its clause, with list names in values expanded.
    assert shell.condition == parse_condition(
        "((evt.type in (execve, execveat) or evt.type = clone)"
        " and proc.name in (bash, sh, zsh) and user.uid = 0)"
        ' and not ((proc.pname = cron and proc.cmdline startswith "sh -c x")'
        " or (proc.pname = sshd and proc.cmdline startswith /usr/bin))"
        " and not (proc.aname in (bash, sh, zsh, tmux))")
    assert [r.name for r in result.rules] == ["Shell", "Other"]


def test_replacing_whole_items() -> None:
    local = """
- list: shells
  items: [fish]
- macro: spawned
  condition: evt.type = execve
  override:
    condition: replace
- rule: Shell
  desc: redefined
  condition: spawned and proc.name in (shells)
  output: new
  priority: DEBUG
"""
    result = load(BASE, local)
    shell = rules_by_name(result)["Shell"]
    assert shell.condition == parse_condition("evt.type = execve and proc.name in (fish)")
    assert (shell.desc, shell.output, shell.priority) == ("redefined", "new", Priority.DEBUG)
    # A redefined rule keeps its place.
    assert [r.name for r in result.rules] == ["Shell", "Other"]


def test_legacy_append_is_deprecated_but_works() -> None:
    local = """
- list: shells
  items: [zsh]
  append: true
- macro: spawned
  condition: or evt.type = clone
  append: true
- rule: Other
  condition: and proc.name = cat
  append: true
"""
    result = load(BASE, local)
    assert codes(result.warnings) == ["LOAD_DEPRECATED_ITEM"] * 3
    other = rules_by_name(result)["Other"]
    assert other.condition == parse_condition("evt.type = open and proc.name = cat")


def test_macro_append_is_text_concatenation() -> None:
    cond = condition_of(rule("""
- macro: m
  condition: evt.type = open and proc.name = a
- macro: m
  condition: or proc.name = b
  override:
    condition: append
""", condition="m"))
    # Falco appends text: `x and y or z` groups as `(x and y) or z`.
    assert cond == parse_condition("(evt.type = open and proc.name = a) or proc.name = b")


def test_enabled_only_item_toggles_a_rule() -> None:
    result = load(BASE, "- rule: Other\n  enabled: false\n")
    assert not rules_by_name(result)["Other"].enabled
    assert codes(result.warnings) == ["LOAD_DEPRECATED_ITEM"]
    problem = the_error(load(BASE, "- rule: Nonesuch\n  enabled: false\n"))
    assert "no rule by that name already exists" in problem.message


def test_keys_falco_ignores_are_warned_of() -> None:
    result = load(BASE, """
- rule: Other
  condition: and proc.name = x
  enabled: false
  append: true
""")
    assert rules_by_name(result)["Other"].enabled  # as in Falco: append ignores it
    assert sorted(codes(result.warnings)) == ["LOAD_DEPRECATED_ITEM", "LOAD_UNKNOWN_KEY"]


@pytest.mark.parametrize(("local", "message"), [
    ("- list: nonesuch\n  items: [a]\n  override:\n    items: append\n",
     "List uses 'append' or 'override.items: append' but no list by that name already exists"),
    ("- macro: nonesuch\n  condition: a\n  append: true\n",
     "Macro uses 'append' or 'override.condition: append' but no macro by that name already "
     "exists"),
    ("- rule: Nonesuch\n  condition: and x\n  override:\n    condition: append\n",
     "Rule uses 'append' or 'override.<key>: append' but no rule by that name already exists"),
    ("- rule: Nonesuch\n  priority: INFO\n  override:\n    priority: replace\n",
     "An 'override.<key>: replace' to a rule was requested but no rule by that name already "
     "exists"),
    ("- rule: Other\n  condition: and x\n  append: true\n  override:\n    condition: append\n",
     "Keys 'override' and 'append: true' cannot be used together"),
    ("- rule: Other\n  priority: INFO\n  override:\n    priority: append\n",
     "Key 'priority' cannot be appended to, use 'replace' instead"),
    ("- rule: Other\n  priority: INFO\n  override:\n    priority: merge\n",
     "Invalid override operation for key 'priority': 'merge'. Allowed values are: replace"),
    ("- rule: Other\n  desc: x\n  override:\n    condition: append\n",
     "An append override for 'condition' was specified but 'condition' is not defined"),
    ("- rule: Other\n  desc: x\n  priority: INFO\n  override:\n    desc: replace\n",
     "Unexpected key 'priority': no corresponding entry under 'override' is defined."),
    ("- rule: Other\n  source: k8s_audit\n  desc: d\n  condition: x\n  output: o\n"
     "  priority: INFO\n", "Rule has been re-defined with a different source"),
    ("- rule: Other\n  append: true\n", "Appended rule must have exceptions or condition"),
])
def test_override_errors(local: str, message: str) -> None:
    problem = the_error(load(BASE, local))
    assert message in problem.message
    assert problem.context.file == "file2.yaml"


def test_replace_of_a_missing_macro_or_list_defines_it() -> None:
    result = load(rule("""
- macro: m
  condition: evt.type = open
  override:
    condition: replace
""", condition="m"))
    assert only_rule(result).condition == parse_condition("evt.type = open")


# -- exceptions -----------------------------------------------------------------

def exception_rule(exceptions: str, condition: str = "evt.type = open") -> str:
    return rule("", condition=condition) + "  exceptions:\n" + exceptions


def test_exception_defaults_and_forms() -> None:
    cond = condition_of(exception_rule("""
    - name: pairs
      fields: [proc.name, fd.name]
      values:
        - [cat, /etc/passwd]
        - [ls, "/tmp/a b"]
    - name: lists
      fields: [proc.name, fd.directory]
      comps: [in, pmatch]
      values:
        - [[ls, dir], /tmp]
    - name: single
      fields: proc.pname
      values: [sshd, "systemd logind"]
    - name: empty
      fields: proc.name
    - name: list_op
      fields: [proc.name]
      comps: [in]
      values:
        - [bash]
"""))
    assert cond == parse_condition(
        "(evt.type = open)"
        " and not ((proc.name = cat and fd.name = /etc/passwd)"
        ' or (proc.name = ls and fd.name = "/tmp/a b"))'
        " and not ((proc.name in (ls, dir) and fd.directory pmatch (/tmp)))"
        ' and not (proc.pname in (sshd, "systemd logind"))'
        " and not ((proc.name in (bash)))")


@pytest.mark.parametrize(("exceptions", "message"), [
    ("    - name: e\n      values: [a]\n", "Item has no mapping for key 'fields'"),
    ("    - fields: proc.name\n", "Item has no mapping for key 'name'"),
    ("    - name: e\n      fields: proc.name\n      comps: =\n",
     "When fields is a single value, comps must be one of (in, pmatch, intersects)"),
    ("    - name: e\n      fields: proc.name\n      comps: [in]\n",
     "Fields and comps must both be strings"),
    ("    - name: e\n      fields: [proc.name, fd.name]\n      comps: [=]\n",
     "Fields and comps lists must have equal length"),
    ("    - name: e\n      fields: [proc.name]\n      comps: [like]\n",
     "'like' is not a supported comparison operator"),
    ("    - name: e\n      fields: [proc.nonesuch]\n", "'proc.nonesuch' is not a supported filter"),
    ("    - name: e\n      fields: [proc.name, fd.name]\n      values:\n        - [a]\n",
     "Fields and values lists must have equal length"),
    ("    - name: e\n      fields: proc.name\n      values: [[a]]\n",
     "Expected values array to contain a list of strings"),
    ("    - name: e\n      fields: proc.name\n      values: a\n",
     "Rule exception values must be a sequence"),
    ("    - name: e\n      fields: proc.name\n      value: [a]\n", "Unexpected key 'value'"),
    ("    - just a string\n", "Rule exception must be a mapping"),
    ("    - name: e\n      fields: [proc.name]\n      values:\n        - ['a)']\n",
     "in exception condition: ((proc.name = a)))"),
])
def test_exception_errors(exceptions: str, message: str) -> None:
    problem = the_error(load(exception_rule(exceptions)))
    assert message in problem.message


def test_exception_warnings() -> None:
    result = load(exception_rule("""
    - name: e
      fields: proc.name
      values: [a]
    - name: e
      fields: proc.pname
      values: [b]
"""), """
- rule: R
  exceptions:
    - name: e
  override:
    exceptions: append
""")
    assert result.ok
    assert codes(result.warnings) == ["LOAD_EXCEPTION_NAME_NOT_UNIQUE", "LOAD_APPEND_NO_VALUES"]


def test_exception_append_rules() -> None:
    base = exception_rule("    - name: e\n      fields: proc.name\n      values: [a]\n")
    for appended, message in [
        ("    - name: e\n      fields: proc.pname\n      values: [b]\n",
         "Can not append exception fields to existing exception, only values"),
        ("    - name: new\n      values: [b]\n",
         "Rule exception must have fields property with a list of fields"),
        ("    - name: new\n      fields: proc.pname\n",
         "Rule exception must have values property with a list of values"),
    ]:
        local = "- rule: R\n  exceptions:\n" + appended + "  override:\n    exceptions: append\n"
        assert message in the_error(load(base, local)).message
    replaced = load(base, "- rule: R\n  exceptions:\n    - name: e\n      values: [b]\n"
                          "  override:\n    exceptions: replace\n")
    assert the_error(replaced).message == "Item has no mapping for key 'fields'"


def test_exceptions_of_other_sources_are_not_checked_against_our_fields() -> None:
    text = """
- rule: K
  desc: d
  condition: ka.verb = create
  output: x
  priority: INFO
  source: k8s_audit
  exceptions:
    - name: e
      fields: [ka.user.name]
      values: [[admin]]
"""
    result = load(text)
    k8s = only_rule(result)
    assert (k8s.source, k8s.condition, k8s.condition_text) == ("k8s_audit", None,
                                                               "ka.verb = create")
    assert codes(result.warnings) == ["LOAD_UNKNOWN_SOURCE"]


# -- requirements ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "version"), [
    ("- required_engine_version: 26", "0.26.0"),
    ("- required_engine_version: 0.10.0\n- required_engine_version: 0.57.0", "0.57.0"),
])
def test_required_engine_version(text: str, version: str) -> None:
    result = load(text)
    assert result.ok and result.required_engine_version == version


@pytest.mark.parametrize(("text", "message"), [
    ("- required_engine_version: 0.58.0", "Rules require engine version 0.58.0"),
    ("- required_engine_version: 1.0.0", "Rules require engine version 1.0.0"),
    ("- required_engine_version: seven", "Unable to parse engine version 'seven'"),
])
def test_bad_required_engine_version(text: str, message: str) -> None:
    assert message in the_error(load(text)).message


def test_plugin_requirements() -> None:
    assert load("- required_plugin_versions:\n  - name: container\n    version: 9.9.9\n").ok
    alternative = load("""
- required_plugin_versions:
  - name: k8smeta
    version: 0.1.0
    alternatives:
      - name: container
        version: 0.1.0
""")
    assert alternative.ok
    assert alternative.required_plugin_versions == ((PluginVersion("k8smeta", "0.1.0"),
                                                     PluginVersion("container", "0.1.0")),)
    problem = the_error(load("- required_plugin_versions:\n  - name: k8saudit\n"
                             "    version: 0.1.0\n"))
    assert problem.message == ("Plugin requirement not satisfied, must load one of: "
                               "k8saudit (>= 0.1.0)")
    assert (problem.context.kind, problem.context.name) == ("required plugin versions entry",
                                                            "k8saudit")
    bad = load("- required_plugin_versions:\n  - name: container\n    version: latest\n")
    assert the_error(bad).message == "Invalid required version 'latest' for plugin 'container'"


# -- results -------------------------------------------------------------------------

def test_all_or_nothing() -> None:
    result = load(rule(""), rule("", name="Bad", condition="evt.type = open and"))
    assert not result.ok and result.rules == ()
    with pytest.raises(RulesError) as info:
        load_rules_or_raise([("a.yaml", rule("", condition="proc.nme = x"))])
    assert isinstance(info.value, ConfigError)
    assert info.value.result.errors[0].message == "unknown field 'proc.nme'"
    assert "a.yaml:4:14" in str(info.value)
    assert load_rules_or_raise([("a.yaml", rule(""))]).ok


def test_render_text_and_json() -> None:
    result = load(rule("", condition="evt.type = open and proc.nme = x"), "")
    text = result.render()
    assert text.startswith("file1.yaml, file2.yaml: Invalid\n1 Errors:\n")
    assert "    condition expression: (file1.yaml:4:34)" in text
    assert "LOAD_ERR_COMPILE_CONDITION (Error compiling condition): unknown field" in text
    assert "  condition: evt.type = open and proc.nme = x\n" + " " * 33 + "^" in text
    data = json.loads(result.render("json"))
    assert data["successful"] is False
    error = data["errors"][0]
    assert error["code"] == "LOAD_ERR_COMPILE_CONDITION"
    assert error["context"]["locations"][-1]["position"] == {
        "name": "file1.yaml", "line": 4, "column": 34, "offset": 64}
    assert error["context"]["snippet"].endswith("^\n")
    ok = load(rule("", condition="proc.name = x"))
    assert ok.render().startswith("file1.yaml: Ok, with warnings\n1 Warnings:\n")


def test_snippets_of_long_lines_are_cut() -> None:
    condition = "evt.type = open and " + " and ".join(["proc.name != x"] * 30) + " and fd.nme = y"
    problem = the_error(load(rule("", condition=condition)))
    line, caret = problem.snippet().splitlines()
    assert line.startswith("...") and len(line) <= 160
    assert line[caret.index("^"):].startswith("fd.nme")
