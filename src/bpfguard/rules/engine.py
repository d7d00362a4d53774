"""The rule engine: compiled rules indexed by event type, matched against events,
and Falco-compatible alerts.

Example::

    result = load_rules_or_raise([stock_rules_path()])
    engine = Engine(result.rules)
    for alert in engine.process(rule_event):
        channels.send(alert)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import ConfigError
from ..outputs.alert import Alert
from . import ast
from .compiler import (
    ALL_TYPES,
    Check,
    CompileError,
    Matcher,
    OnError,
    compile_matcher,
    event_types,
    prepare,
    specialize,
)
from .event import RuleEvent
from .extract import AnyOf, Extractor, extractor, render
from .fields import SUGGESTED_FIELDS, check_field, split_field
from .model import Priority, Rule

__all__ = ["SUGGESTED_OUTPUT", "CompiledRule", "Engine", "OutputFormat", "alert"]

# %field, %field[arg] and %(field): Falco's output substitutions
_OUTPUT_FIELD = re.compile(r"%\(([^)]+)\)|%([A-Za-z0-9_.]+(?:\[[^\]]*\])?)")


#: What every rule's output gets appended (see SUGGESTED_FIELDS).
SUGGESTED_OUTPUT: Final = "".join(f" {f.replace('.', '_')}=%{f}" for f in SUGGESTED_FIELDS)


class OutputFormat:
    """A rule's output string, with its fields resolved once."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._parts: list[str | tuple[str, Extractor]] = []
        pos = 0
        for m in _OUTPUT_FIELD.finditer(text):
            name = m.group(1) or m.group(2)
            ref = split_field(name)
            problem = check_field(ref)
            if problem:
                raise CompileError(f"output: {problem}", m.start())
            self._parts.append(text[pos:m.start()])
            self._parts.append((name, extractor(ref)))
            pos = m.end()
        self._parts.append(text[pos:])

    @property
    def fields(self) -> list[str]:
        return [p[0] for p in self._parts if isinstance(p, tuple)]

    def format(self, e: RuleEvent) -> tuple[str, dict[str, Any]]:
        """The output text, and each field's value (JSON-ready: None when absent)."""
        out: list[str] = []
        values: dict[str, Any] = {}
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            name, get = part
            v = get(e)
            out.append(render(v))
            values[name] = _json_value(v)
        return "".join(out), values


def _json_value(v: Any) -> Any:
    if isinstance(v, AnyOf):
        return [_json_value(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


@dataclass
class CompiledRule:
    rule: Rule
    types: frozenset[str]  # ALL_TYPES when the rule does not restrict evt.type
    output: OutputFormat
    order: int

    @property
    def name(self) -> str:
        return self.rule.name


# An event type's candidate rules, the matcher of their conditions, and what
# counts a condition's error against its rule.
_Candidates = tuple[list[CompiledRule], Matcher, OnError]


@dataclass
class Engine:
    """Compiled, enabled rules, indexed by event type.

    Args:
        rules: loaded rules (disabled and refused ones are skipped).
        min_priority: rules below it are not run (Falco's priority setting).
        rule_matching: "first" (Falco's default: the first matching rule in file
            order alerts) or "all".
        disable_rules / disable_tags / enable_rules / enable_tags: Falco's -D/-T/-t:
            names or tags to turn off, or (enable_*) the only ones to keep on.
    """

    rules: Sequence[Rule]
    min_priority: Priority = Priority.DEBUG
    rule_matching: str = "first"
    disable_rules: Iterable[str] = ()
    disable_tags: Iterable[str] = ()
    enable_rules: Iterable[str] | None = None
    enable_tags: Iterable[str] | None = None
    suggested_output: bool = True
    compiled: list[CompiledRule] = field(init=False)
    errors: dict[str, int] = field(init=False, default_factory=dict)
    last_error: str | None = field(init=False, default=None)
    # per event type, its candidate rules in file order and one matcher of their
    # conditions as they read for that type (see compiler.specialize)
    _by_type: dict[str, _Candidates] = field(init=False)
    _any_type: _Candidates = field(init=False)
    # the check of each distinct comparison, shared by the matchers
    _checks: dict[ast.Compare, Check] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.rule_matching not in ("first", "all"):
            raise ConfigError(f"rule_matching must be first or all, not {self.rule_matching!r}")
        off_rules, off_tags = set(self.disable_rules), set(self.disable_tags)
        on_rules = set(self.enable_rules) if self.enable_rules is not None else None
        on_tags = set(self.enable_tags) if self.enable_tags is not None else None
        names = {r.name for r in self.rules}
        for n in sorted((off_rules | (on_rules or set())) - names):
            raise ConfigError(f"no rule named {n!r}")
        self.compiled = []
        errors = []
        for i, r in enumerate(self.rules):
            if not r.enabled or r.condition is None or r.source != "syscall" \
                    or r.unavailable or r.priority < self.min_priority:
                continue
            if r.name in off_rules or off_tags & set(r.tags):
                continue
            if on_rules is not None and r.name not in on_rules and not (
                    on_tags and on_tags & set(r.tags)):
                continue
            if on_rules is None and on_tags is not None and not on_tags & set(r.tags):
                continue
            cond = r.condition
            try:
                prepare(cond, self._checks)
                output = r.output + SUGGESTED_OUTPUT if self.suggested_output else r.output
                self.compiled.append(CompiledRule(r, event_types(cond), OutputFormat(output), i))
            except CompileError as exc:
                errors.append(f"{r.context}: rule {r.name!r}: {exc}")
        if errors:
            raise ConfigError("rules do not compile:\n  " + "\n  ".join(errors))
        first = self.rule_matching == "first"
        self._by_type = {}
        any_type = [c for c in self.compiled if c.types is ALL_TYPES]
        self._any_type = self._candidates(any_type, [c.rule.condition for c in any_type], first)
        for t in {t for c in self.compiled if c.types is not ALL_TYPES for t in c.types}:
            cands = [c for c in self.compiled if c.types is ALL_TYPES or t in c.types]
            conds = [specialize(c.rule.condition, t) for c in cands]  # type: ignore[arg-type]
            kept = [(c, x) for c, x in zip(cands, conds, strict=True) if x is not False]
            self._by_type[t] = self._candidates([c for c, _ in kept], [x for _, x in kept], first)

    def _candidates(self, rules: list[CompiledRule], conds: list[Any], first: bool
                    ) -> _Candidates:
        def failed(i: int, exc: Exception) -> None:
            name = rules[i].name
            self.errors[name] = self.errors.get(name, 0) + 1
            self.last_error = f"{name}: {type(exc).__name__}: {exc}"
        return rules, compile_matcher(conds, first=first, checks=self._checks), failed

    def event_types(self) -> frozenset[str] | None:
        """Every evt.type some enabled rule can match; None when a rule matches any."""
        if self._any_type:
            return None
        return frozenset(self._by_type)

    def match(self, e: RuleEvent) -> list[CompiledRule]:
        """The rules that match `e` (only the first with rule_matching "first").
        A rule that raises on an event does not match it; the error is counted
        per rule (:attr:`errors`) and never stops detection."""
        rules, match, failed = self._by_type.get(e.type, self._any_type)
        return [rules[i] for i in match(e, failed)]

    def process(self, e: RuleEvent) -> list[Alert]:
        """Falco-compatible alerts for `e`."""
        return [alert(c, e) for c in self.match(e)]


def alert(c: CompiledRule, e: RuleEvent) -> Alert:
    """One alert in Falco's shape. `output` is the rule's text; the outputs
    put Falco's "HH:MM:SS.nnnnnnnnn: Priority " prefix (local time) before it.
    The time stays nanoseconds: a channel formats it when it writes."""
    text, values = c.output.format(e)
    ns = e.event.time_ns
    rule = c.rule
    return Alert(time_ns=ns, rule=rule.name, priority=str(rule.priority), source="syscall",
                 hostname=e.hostname, output=text, output_fields={"evt.time": ns, **values},
                 tags=tuple(sorted(rule.tags)))
