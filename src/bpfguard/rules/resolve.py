"""The resolving stage: collected lists, macros and rules to resolved,
checked rules (Falco's ``rule_loader_compiler.cpp``; bpfguard's
:mod:`.compiler` then turns a resolved condition into a Python check).

:func:`resolve` takes what the collector kept and, for every rule of the
``syscall`` source, in order of first definition:

* parses its condition, and the condition Falco builds for each of its
  exceptions, which is folded in as ``(condition) and not <exception>...``;
* substitutes macros: a macro sees only the macros defined before it, a
  rule sees them all, as in Falco. Every macro must parse and resolve, used
  or not; its fields are only checked in the rules that use it;
* expands list names into their items, lists named in lists included;
* checks every field, and the output's ``%`` tokens: an unknown field is an
  error, or skips the rule with a warning when it has
  ``skip-if-unknown-filter``;
* warns, as libsinsp's compiler does, of values that look like fields or
  simpler regexes, and of a condition matching too many event types;
* refuses, with a warning, a rule that a field bpfguard cannot provide
  (:data:`.fields.ABSENT`) would change the meaning of: one that could then
  never match, or whose exclusions (``not ...``, exceptions) test such a
  field and so would never exclude. The rule stays in the result, marked
  (``Rule.unavailable``), and the engine does not run it; the rest loads.
  A comparison on such a field elsewhere (one alternative of an ``or``)
  only narrows the rule, as Falco's own absent values do, and is kept.

Rules of other sources are passed through unresolved. As Falco's, this
stage runs only when reading and collecting found no error, and once it
finds one the rules are not used; unused lists and macros are only warned
of when it finds none.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Final

from . import STOCK_PREFIX, ast, stock_rules_path
from .fields import ABSENT, FIELDS, check_field, split_field
from .grammar import (
    TRANSFORMERS,
    ConditionSyntaxError,
    parse_condition,
    parse_list_items,
    parse_operand,
)
from .items import (
    FIELD,
    IDENTIFIER,
    LIST_OPS,
    SYSCALL_SOURCE,
    Collected,
    Defined,
    ExceptionItem,
    ItemError,
    MacroItem,
    Problems,
    RuleItem,
    Text,
    known_field,
)
from .model import Context, ErrorCode, Problem, Rule, WarningCode

__all__ = ["MAX_LIST_ITEMS", "MAX_MACRO_NESTING", "resolve"]

#: Macros used inside macros, and lists naming lists: a longer chain is
#: refused by name (Falco's stock rules nest about five deep; the resolver
#: recurses a level a macro or list).
MAX_MACRO_NESTING: Final = 64
#: Items of one list once the lists it names are expanded.
MAX_LIST_ITEMS: Final = 100_000


def resolve(collected: Collected, problems: Problems) -> list[Rule]:
    """The rules of `collected`, in order of first definition, resolved and
    checked; problems go to `problems`. Meaningful only when that has no
    error after the call: a rule with a problem is left out."""
    return _Resolver(collected, problems).resolve()


_DEPRECATED_OUTPUT_FIELDS: Final = ("evt.dir", "evt.latency", "evt.latency.s", "evt.latency.ns",
                                    "evt.latency.human", "evt.wait_latency")


def _quote_item(item: str) -> str:
    """How Falco writes a list item or exception value into condition text:
    quoted when it has a blank and is not quoted already (no escaping)."""
    if " " in item and item[:1] not in ("'", '"'):
        return f'"{item}"'
    return item


@dataclass
class _Origin:
    """The text a syntax tree was parsed from, to say where its nodes are."""

    text: Text
    ctx: Context  # the condition's context (rule condition, macro condition...)
    note: str = ""  # said after messages about built text, which has no file position
    kind: str = "condition expression"

    def at(self, pos: int) -> Context:
        return self.text.context_at(pos, self.ctx, self.kind)

    def say(self, message: str) -> str:
        return f"{message} ({self.note})" if self.note else message


class _Resolver:
    """One resolving pass over what was collected."""

    def __init__(self, collected: Collected, problems: Problems) -> None:
        self.lists = collected.lists
        self.macros = collected.macros
        self.rules = collected.rules
        self.problems = problems
        self._used_lists: set[str] = set()
        self._used_macros: set[str] = set()
        self._list_words: dict[str, tuple[ast.Word, ...] | None] = {}
        self._macro_trees: dict[str, ast.Condition | None] = {}
        self._failed_macros: set[str] = set()
        self._broken = False  # the condition being resolved has an error
        # the rule being resolved: its comparisons on absent fields, by id of
        # the resolved node, with the field and where it is written
        self._absent_at: dict[int, tuple[str, Context]] = {}

    def warn(self, code: str, message: str, ctx: Context) -> None:
        self.problems.warn(code, message, ctx)

    def resolve(self) -> list[Rule]:
        for macro in sorted(self.macros.values(), key=lambda m: m.index):
            # Every macro must resolve, used or not, as in Falco; fields are
            # only checked in the rules that use it.
            self._broken = False
            tree = self._macro_tree(macro)
            if tree is not None:
                self._resolve(tree, self._macro_origin(macro), macro.visibility, (), None)
            if tree is None or self._broken:
                self._failed_macros.add(macro.item.name)
        rules = []
        for info in sorted(self.rules.values(), key=lambda r: r.index):
            rule = self._resolve_rule(info.item)
            if rule is not None:
                rules.append(rule)
        if not self.problems.ok:
            return rules  # as Falco, whose compile stops at the first error
        for name, macro in self.macros.items():
            if name not in self._used_macros:
                self.warn(WarningCode.LOAD_UNUSED_MACRO,
                          "Macro not referred to by any other rule/macro", macro.item.ctx)
        for name, lst in self.lists.items():
            if name not in self._used_lists:
                self.warn(WarningCode.LOAD_UNUSED_LIST,
                          "List not referred to by any other rule/macro", lst.item.ctx)
        return rules

    @staticmethod
    def _macro_origin(macro: Defined[MacroItem]) -> _Origin:
        return _Origin(macro.item.cond, macro.item.cond_ctx)

    def _fault(self, code: str, message: str, ctx: Context) -> None:
        """An error that makes the condition being resolved unusable."""
        self._broken = True
        self.problems.error(code, message, ctx)

    def _parse(self, origin: _Origin) -> ast.Condition | None:
        try:
            return parse_condition(origin.text.text)
        except ConditionSyntaxError as exc:
            self._fault(ErrorCode.LOAD_ERR_COMPILE_CONDITION, origin.say(exc.reason),
                        origin.at(exc.offset))
            return None

    def _macro_tree(self, macro: Defined[MacroItem]) -> ast.Condition | None:
        name = macro.item.name
        if name not in self._macro_trees:
            self._macro_trees[name] = self._parse(self._macro_origin(macro))
        return self._macro_trees[name]

    def _resolve_rule(self, info: RuleItem) -> Rule | None:
        base = Rule(
            name=info.name, desc=info.desc, condition=None, condition_text=info.cond.text,
            output=info.output.text, priority=info.priority, tags=tuple(sorted(info.tags)),
            enabled=info.enabled, source=info.source, warn_evttypes=info.warn_evttypes,
            skip_if_unknown_filter=info.skip_if_unknown_filter, context=info.ctx,
            capture=info.capture, capture_duration=info.capture_duration,
            capture_events=info.capture_events, capture_filesize=info.capture_filesize)
        if info.source != SYSCALL_SOURCE:
            return base
        unknown: list[Problem] = []
        output = self._check_output(info, unknown)
        if unknown and info.skip_if_unknown_filter:
            # As Falco: the output is checked first, and the rule skipped.
            self.warn(WarningCode.LOAD_UNKNOWN_FILTER, unknown[0].message, unknown[0].context)
            return None
        self._broken = False
        self._absent_at = {}
        origin = _Origin(info.cond, info.cond_ctx)
        tree = self._parse(origin)
        clauses = self._exception_clauses(info)
        cond = None
        if tree is not None and clauses is not None:
            cond = self._resolve(tree, origin, None, (), unknown)
            nots: list[ast.Condition] = []
            for clause_tree, clause_origin in clauses:
                resolved = self._resolve(clause_tree, clause_origin, None, (), unknown)
                nots.append(ast.Not(resolved, pos=resolved.pos))
            if nots:
                cond = ast.And((cond, *nots), pos=cond.pos)
        if unknown:
            if info.skip_if_unknown_filter:
                self.warn(WarningCode.LOAD_UNKNOWN_FILTER, unknown[0].message,
                          unknown[0].context)
            else:
                for problem in unknown:
                    self.problems.add_error(problem)
            return None
        if cond is None or self._broken:
            return None
        if info.warn_evttypes and _matches_too_many_evttypes(cond):
            self.warn(WarningCode.LOAD_NO_EVTTYPE,
                      "Rule matches too many evt.type values. This has a significant "
                      "performance penalty.", info.ctx)
        return replace(base, condition=cond, output=output,
                       unavailable=self._refusal(info, cond))

    def _refusal(self, info: RuleItem, cond: ast.Condition) -> tuple[str, ...]:
        """The absent fields that change what the rule means (none: it runs
        as written), after warning of them, at the first one's position."""
        if not self._absent_at:
            return ()
        decided = _decided(cond, self._absent_at)
        if decided is False:
            hits = [self._absent_at[i] for i in _absent_ids(cond, self._absent_at, False)]
            why = "it could never match"
        else:
            hits = [self._absent_at[i] for i in _absent_ids(cond, self._absent_at, True)]
            why = "what it excludes by it would never be excluded"
        if decided is None and not hits:
            return ()
        fields = tuple(dict.fromkeys(f for f, _ in hits))
        reasons = "; ".join(f"{f}: {ABSENT[f]}" for f in fields)
        self.warn(WarningCode.LOAD_UNKNOWN_FILTER,
                  f"rule '{info.name}' refused: it needs {', '.join(fields)}, which bpfguard "
                  f"cannot provide, and without it {why} ({reasons})", hits[0][1])
        return fields

    def _exception_clauses(self, info: RuleItem
                           ) -> list[tuple[ast.Condition, _Origin]] | None:
        """Each exception as the condition text Falco builds for it, parsed:
        the rule's condition becomes ``(condition) and not <clause>...``."""
        out = []
        failed = False
        for ex in info.exceptions:
            try:
                text = _exception_text(ex)
            except ItemError as fail:
                self._fault(fail.code, fail.message, fail.ctx)
                failed = True
                continue
            if not text:
                continue
            origin = _Origin(Text.built(text), ex.ctx, f"in exception condition: {text}")
            tree = self._parse(origin)
            if tree is None:
                failed = True
            else:
                out.append((tree, origin))
        return None if failed else out

    # resolution: macros, lists, fields

    def _resolve(self, node: ast.Condition, origin: _Origin, visibility: int | None,
                 path: tuple[str, ...], unknown: list[Problem] | None) -> ast.Condition:
        """`node` with macro references replaced by the macros' resolved
        conditions and list names by their items. `visibility`: only macros
        defined before it are seen (None: all, for rules). `unknown`: where
        unknown fields go (None: fields are not checked, for macros)."""
        if isinstance(node, ast.And | ast.Or):
            items = tuple(self._resolve(i, origin, visibility, path, unknown)
                          for i in node.items)
            return replace(node, items=items)
        if isinstance(node, ast.Not):
            return replace(node, item=self._resolve(node.item, origin, visibility, path,
                                                     unknown))
        if isinstance(node, ast.Compare):
            return self._resolve_compare(node, origin, unknown)
        assert isinstance(node, ast.MacroRef)
        macro = self.macros.get(node.name)
        if macro is None or (visibility is not None and macro.index >= visibility):
            self._fault(ErrorCode.LOAD_ERR_VALIDATE,
                        origin.say(f"Undefined macro '{node.name}' used in filter."
                                   + _stable_hint(node.name)),
                        origin.at(node.pos))
            return node
        if node.name in path:
            self._fault(ErrorCode.LOAD_ERR_VALIDATE,
                        origin.say(f"reference loop in macro '{node.name}'"),
                        origin.at(node.pos))
            return node
        if len(path) >= MAX_MACRO_NESTING:
            chain = " -> ".join((*path[:3], "...", *path[-2:], node.name))
            self._fault(ErrorCode.LOAD_ERR_VALIDATE,
                        origin.say(f"macros nested more than {MAX_MACRO_NESTING} deep "
                                   f"({chain})"),
                        origin.at(node.pos))
            return node
        self._used_macros.add(node.name)
        tree = self._macro_tree(macro)
        if tree is None or node.name in self._failed_macros:
            self._broken = True  # its own errors are reported already
            return node
        return self._resolve(tree, self._macro_origin(macro), visibility, (*path, node.name),
                             unknown)

    def _resolve_compare(self, node: ast.Compare, origin: _Origin,
                         unknown: list[Problem] | None) -> ast.Compare:
        right = node.right
        if isinstance(right, ast.ListValue):
            words: list[ast.Word] = []
            for word in right.items:
                assert isinstance(word, ast.Word)  # the parser puts no val() in lists
                expanded = self._list_ref(word, origin)
                words.extend(expanded if expanded is not None else (word,))
            right = replace(right, items=tuple(words))
        elif isinstance(right, ast.Word):
            right = self._resolve_word(node.op, right, origin)
        resolved = replace(node, right=right)
        if unknown is not None:
            self._check_fields(resolved, origin, unknown)
            self._value_warnings(resolved, origin)
            for ref in _compare_refs(resolved):
                if ref.name in ABSENT:
                    self._absent_at.setdefault(id(resolved), (ref.name, origin.at(ref.pos)))
        return resolved

    def _resolve_word(self, op: str, word: ast.Word, origin: _Origin
                      ) -> ast.Word | ast.ListValue:
        """A single word on the right: Falco substitutes list names into the
        condition text, so a list name works outside parentheses only when
        its single item reads as what the operator takes there."""
        expanded = self._list_ref(word, origin)
        if op in LIST_OPS:
            if expanded is None:
                return ast.ListValue((word,), pos=word.pos)
            if len(expanded) == 1 and not expanded[0].quoted \
                    and IDENTIFIER.fullmatch(expanded[0].text):
                return ast.ListValue(expanded, pos=word.pos)
            self._fault(ErrorCode.LOAD_ERR_COMPILE_CONDITION,
                        origin.say(f"list '{word.text}' must be in parentheses: "
                                   f"'{op} ({word.text})'"), origin.at(word.pos))
            return word
        if expanded is None:
            return word
        if len(expanded) == 1:
            return expanded[0]
        self._fault(ErrorCode.LOAD_ERR_COMPILE_CONDITION,
                    origin.say(f"list '{word.text}' has {len(expanded)} items: only "
                               f"{', '.join(sorted(LIST_OPS))} compare with a list"),
                    origin.at(word.pos))
        return word

    def _list_ref(self, word: ast.Word, origin: _Origin) -> tuple[ast.Word, ...] | None:
        """The items of the list `word` names (None if it names none), at
        the word's position."""
        if word.quoted or word.text not in self.lists:
            return None
        words = self._expand_list(word.text, (), origin.at(word.pos))
        if words is None:
            self._broken = True  # the failure is reported: keep the name, quietly
            return (word,)
        return tuple(replace(w, pos=word.pos) for w in words)

    def _expand_list(self, name: str, path: tuple[str, ...], ctx: Context
                     ) -> tuple[ast.Word, ...] | None:
        """A list's items as condition values, with the lists it names
        expanded. Falco expands only lists defined before the one naming
        them, and only one level deep; this goes all the way down (a cycle
        is an error), which is what a list of lists means."""
        lst = self.lists[name]
        self._used_lists.add(name)
        if name in path:
            self._fault(ErrorCode.LOAD_ERR_VALIDATE, f"reference loop in list '{name}'", ctx)
            return None
        if name in self._list_words:
            return self._list_words[name]
        if len(path) >= MAX_MACRO_NESTING:
            chain = " -> ".join((*path[:3], "...", *path[-2:], name))
            self._fault(ErrorCode.LOAD_ERR_VALIDATE,
                        f"lists nested more than {MAX_MACRO_NESTING} deep ({chain})", ctx)
            return None
        self._list_words[name] = None  # a failure stays one
        words: list[ast.Word] = []
        ok = True
        for text, ictx in lst.item.items:
            ref = self.lists.get(text)
            if ref is not None and ref.index < lst.visibility:
                sub = self._expand_list(text, (*path, name), ictx)
                ok = ok and sub is not None
                words.extend(sub or ())
                if len(words) > MAX_LIST_ITEMS:  # lists naming lists can grow exponentially
                    self._fault(ErrorCode.LOAD_ERR_VALIDATE,
                                f"list '{name}' expands to more than {MAX_LIST_ITEMS:,} items",
                                ictx)
                    return None
                continue
            if not text.strip() and len(lst.item.items) > 1:
                # Falco writes the items into the condition joined by
                # commas: a blank one leaves ", ," there.
                self._fault(ErrorCode.LOAD_ERR_COMPILE_CONDITION,
                            f"empty item in list '{name}'", ictx)
                ok = False
                continue
            try:
                words.extend(parse_list_items(_quote_item(text)))
            except ConditionSyntaxError as exc:
                self._fault(ErrorCode.LOAD_ERR_COMPILE_CONDITION,
                            f"list item {text!r} is not a valid value: {exc.reason}", ictx)
                ok = False
        result = tuple(words) if ok else None
        self._list_words[name] = result
        return result

    def _check_fields(self, node: ast.Compare, origin: _Origin,
                      unknown: list[Problem]) -> None:
        operands: list[ast.Operand] = [node.left]
        if isinstance(node.right, ast.Value):
            operands.append(node.right.operand)
        for operand in operands:
            for ref in _field_refs(operand):
                reason = check_field(ref)
                if reason is None:
                    continue
                problem = Problem(ErrorCode.LOAD_ERR_COMPILE_CONDITION, origin.say(reason),
                                  origin.at(ref.pos))
                if ref.name in FIELDS:
                    self._broken = True
                    self.problems.add_error(problem)  # a misused field: never skipped
                else:
                    unknown.append(problem)

    def _value_warnings(self, node: ast.Compare, origin: _Origin) -> None:
        """libsinsp's compiler warnings on right-hand values (filter.cpp:
        check_value_and_add_warnings)."""
        right = node.right
        words = right.items if isinstance(right, ast.ListValue) else \
            (right,) if isinstance(right, ast.Word) else ()
        for word in words:
            assert isinstance(word, ast.Word)
            if node.op == "regex" and _simple_regex(word.text):
                self.warn(WarningCode.LOAD_COMPILE_CONDITION, origin.say(
                    f"regex check with '{word.text}' may be optimized with simpler operators "
                    "such as '=', 'contains', 'startswith', 'endswith'"), origin.at(word.pos))
            compact = "".join(word.text.split())
            if FIELD.fullmatch(compact) and split_field(compact).name in FIELDS:
                self.warn(WarningCode.LOAD_COMPILE_CONDITION, origin.say(
                    f"'{word.text}' may be a valid field misused as a const string value"),
                    origin.at(word.pos))
            for name in ("val", *TRANSFORMERS):
                if compact.startswith(name + "(") and compact.endswith(")") \
                        and len(compact) >= len(name) + 2:
                    self.warn(WarningCode.LOAD_COMPILE_CONDITION, origin.say(
                        f"'{word.text}' may be a valid field transformer misused as a const "
                        "string value"), origin.at(word.pos))

    # outputs

    def _check_output(self, info: RuleItem, unknown: list[Problem]) -> str:
        """The rule's output, checked as libsinsp's formatter reads it:
        ``%field``, ``%field[arg]``, ``%transformer(field)``, optionally with
        a width (``%20proc.name``), after an optional leading ``*``."""
        text = info.output.text
        for deprecated in _DEPRECATED_OUTPUT_FIELDS:
            if deprecated in text:
                self.warn(WarningCode.LOAD_DEPRECATED_ITEM,
                          f"usage of deprecated field '{deprecated}' has been detected in the "
                          "rule output", info.output_ctx)
        if "%container.info" in text:
            self.warn(WarningCode.LOAD_DEPRECATED_ITEM,
                      "%container.info is deprecated and no more useful, and will be dropped by "
                      "Falco 1.0.0. The container plugin will automatically add required "
                      "fields to the output message.", info.ctx)
            text = text.replace("%container.info", "")
        origin = _Origin(info.output, info.output_ctx, kind="rule output expression")

        def fail(offset: int, message: str, unknown_field: bool = False) -> None:
            problem = Problem(ErrorCode.LOAD_ERR_COMPILE_OUTPUT, message, origin.at(offset))
            if unknown_field:
                unknown.append(problem)
            else:
                self.problems.add_error(problem)

        if not text:
            fail(0, "empty formatting token")
        for offset, token, reason in _output_tokens(text):
            if reason is None:
                continue
            fail(offset, f"invalid formatting token '%{token}': {reason}",
                 unknown_field=reason.startswith("unknown field"))
        return text


# -- helpers for the resolving stage -----------------------------------------

@functools.cache
def _stable_macros() -> frozenset[str]:
    """The macros Falco's stable ruleset defines (the shipped copy, whose
    items each start a line with ``- macro: NAME``)."""
    text = stock_rules_path().read_text()
    return frozenset(re.findall(r"^- macro:\s*(\S+)\s*$", text, re.MULTILINE))


def _stable_hint(name: str) -> str:
    """What to do about an undefined macro that Falco's stable ruleset
    defines: rules written for Falco (its incubating and sandbox rules
    until they carried copies, and most local rules) expect that file to be
    loaded first, as Falco's packages do."""
    if name not in _stable_macros():
        return ""
    return (f" Falco's stable rules define it: load {STOCK_PREFIX}stable (falco_rules.yaml) "
            "before this file.")


def _exception_text(ex: ExceptionItem) -> str:
    """The condition Falco builds for one exception (rule_loader_compiler.cpp:
    build_rule_exception_infos): values are written in as text, quoted only
    when they hold a blank, so a value may name a list."""
    def fail(message: str) -> ItemError:
        return ItemError(ErrorCode.LOAD_ERR_VALIDATE, message, ex.ctx)

    if not ex.fields.is_list:
        values = []
        for value in ex.values:
            if value.is_list:
                raise fail("Expected values array to contain a list of strings")
            values.append(_quote_item(value.item))
        if not values:
            return ""
        return f"({ex.fields.item} {ex.comps.item} ({', '.join(values)}))"
    alternatives = []
    for value in ex.values:
        if len(value.items) != len(ex.fields.items):
            raise fail("Fields and values lists must have equal length")
        checks = []
        for fld, comp, val in zip(ex.fields.items, ex.comps.items, value.items, strict=True):
            if val.is_list:
                text = "(" + ", ".join(_quote_item(v.item) for v in val.items) + ")"
            elif comp.item in LIST_OPS:
                text = val.item if val.item.startswith("(") else f"({val.item})"
            else:
                text = _quote_item(val.item)
            checks.append(f"{fld.item} {comp.item} {text}")
        alternatives.append("(" + " and ".join(checks) + ")")
    return "(" + " or ".join(alternatives) + ")" if alternatives else ""


def _field_refs(operand: ast.Operand) -> Iterator[ast.FieldRef]:
    while isinstance(operand, ast.Transform):
        operand = operand.operand
    yield operand


def _compare_refs(node: ast.Compare) -> Iterator[ast.FieldRef]:
    """The fields a comparison reads: its left side, and a ``val()`` right."""
    yield from _field_refs(node.left)
    if isinstance(node.right, ast.Value):
        yield from _field_refs(node.right.operand)


def _decided(node: ast.Condition, absent: dict[int, tuple[str, Context]]) -> bool | None:
    """What `node` is whatever the event, when comparisons on absent fields
    (the ids in `absent`) are false, as they always are; None when it still
    depends on the event."""
    if isinstance(node, ast.Not):
        inner = _decided(node.item, absent)
        return None if inner is None else not inner
    if isinstance(node, ast.And | ast.Or):
        stop = isinstance(node, ast.Or)  # the value that decides: true for or
        values = [_decided(item, absent) for item in node.items]
        if stop in values:
            return stop
        return None if None in values else not stop
    return False if id(node) in absent else None


def _absent_ids(node: ast.Condition, absent: dict[int, tuple[str, Context]],
                negated: bool, under_not: bool = False) -> Iterator[int]:
    """The ids of comparisons on absent fields in `node`: under a ``not``
    (`negated`: an exclusion, which such a comparison can never make), or
    not (all of them)."""
    if isinstance(node, ast.Not):
        yield from _absent_ids(node.item, absent, negated, not under_not)
    elif isinstance(node, ast.And | ast.Or):
        for item in node.items:
            yield from _absent_ids(item, absent, negated, under_not)
    elif id(node) in absent and (under_not or not negated):
        yield id(node)


_REGEX_SPECIAL: Final = set(".+*?^$()[]{}|\\")


def _simple_regex(value: str) -> bool:
    """True when a regex could be a plain comparison (libsinsp's heuristic):
    no special character but anchors at the ends and ``.*``-like edges."""
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if (i == 0 and ch == "^") or (i == n - 1 and ch == "$"):
            i += 1
            continue
        if ((i == 0 and n > 1) or i == n - 2) and ch == "." and i + 1 < n \
                and value[i + 1] in "+*?":
            i += 2
            continue
        if ch in _REGEX_SPECIAL:
            return False
        i += 1
    return True


_TRANSFORM_START: Final = re.compile(r"(?:" + "|".join(TRANSFORMERS) + r")\(")


def _output_tokens(fmt: str) -> Iterator[tuple[int, str, str | None]]:
    """Each ``%`` token of an output format: its offset, its text and what
    is wrong with it (None if nothing). As libsinsp, a field token is the
    longest prefix of what follows the ``%`` that is a known field."""
    j = 1 if fmt.startswith("*") else 0
    n = len(fmt)
    while j < n:
        if fmt[j] != "%":
            j += 1
            continue
        start = j
        j += 1
        if j == n:
            yield start, "", "formatting cannot end with a %"
            return
        while j < n and fmt[j].isdigit():
            j += 1
        if j == n:
            yield start, fmt[start + 1:], "formatting cannot end with a number"
            return
        rest = fmt[j:]
        if _TRANSFORM_START.match(rest):
            end = _closing_paren(rest)
            token = rest[:end]
            yield start, token, _transformer_problem(token)
            j += max(len(token), 1)
            continue
        m = FIELD.match(rest)
        if m is None:
            yield start, rest[:20], "unknown field"
            j += 1
            continue
        for size in range(m.end(), 0, -1):
            if known_field(rest[:size]) is not None:
                j += size
                yield start, rest[:size], None
                break
        else:
            ref = split_field(m[0])
            yield start, m[0], check_field(ref) or "unknown field"
            j += m.end()


def _closing_paren(text: str) -> int:
    depth = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def _transformer_problem(token: str) -> str | None:
    try:
        operand = parse_operand(token)
    except ConditionSyntaxError as exc:
        return exc.reason
    for ref in _field_refs(operand):
        reason = check_field(ref)
        if reason is not None:
            return reason
    return None


# Sets of event types, as (complemented, names): (False, {a, b}) is {a, b},
# (True, {a}) is every event type but a.
_EvtSet = tuple[bool, frozenset[str]]
_ALL: Final[_EvtSet] = (True, frozenset())
_NONE: Final[_EvtSet] = (False, frozenset())


def _union(a: _EvtSet, b: _EvtSet) -> _EvtSet:
    (ca, na), (cb, nb) = a, b
    if ca and cb:
        return True, na & nb
    if ca:
        return True, na - nb
    if cb:
        return True, nb - na
    return False, na | nb


def _complement(a: _EvtSet) -> _EvtSet:
    return not a[0], a[1]


def _intersect(a: _EvtSet, b: _EvtSet) -> _EvtSet:
    return _complement(_union(_complement(a), _complement(b)))


def _matches_too_many_evttypes(cond: ast.Condition) -> bool:
    """Falco's LOAD_NO_EVTTYPE test: the event types the condition can match
    (libsinsp filter/ppm_codes.cpp) are none, or more than 100 event codes.
    Sets are of names here; each syscall name counts as its two codes
    (enter and exit), and "all but some" always counts as too many."""
    complemented, names = _evttypes(cond, negated=False)
    return complemented or not names or 2 * len(names) > 100


def _evttypes(node: ast.Condition, negated: bool) -> _EvtSet:
    # De Morgan's laws push negations to the leaves; a check that is not on
    # evt.type matches every type, negated or not.
    if isinstance(node, ast.And | ast.Or):
        combine: Callable[[_EvtSet, _EvtSet], _EvtSet] = \
            _intersect if isinstance(node, ast.And) != negated else _union
        result = _ALL if combine is _intersect else _NONE
        for item in node.items:
            result = combine(result, _evttypes(item, negated))
        return result
    if isinstance(node, ast.Not):
        return _evttypes(node.item, not negated)
    if not isinstance(node, ast.Compare) or node.left != ast.FieldRef("evt.type"):
        return _ALL
    if node.op == "exists":
        return _NONE if negated else _ALL
    right = node.right
    if node.op not in ("=", "==", "!=", "in") or isinstance(right, ast.Value) or right is None:
        return _ALL
    words = right.items if isinstance(right, ast.ListValue) else (right,)
    matched: _EvtSet = (False, frozenset(w.text for w in words if isinstance(w, ast.Word)))
    if negated != (node.op == "!="):
        matched = _complement(matched)
    return matched
