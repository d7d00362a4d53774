"""What loading rules files produces: rules, and the problems found on the way.

Names, codes and texts follow Falco's rule loader (``falco_load_result.h``,
``rule_loader.h``) so that a message means the same thing in both tools,
with one difference: line and column numbers here are 1-based, as editors
count them (Falco prints yaml-cpp's 0-based marks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from functools import total_ordering
from typing import Literal

from . import ast

__all__ = [
    "Context",
    "ErrorCode",
    "LoadResult",
    "PluginVersion",
    "Priority",
    "Problem",
    "Rule",
    "WarningCode",
]


@total_ordering
class Priority(Enum):
    """A rule's severity, Falco's eight levels. The value is the syslog level
    (EMERGENCY 0 ... DEBUG 7); comparisons go by severity, so
    ``Priority.ERROR > Priority.WARNING``."""

    EMERGENCY = 0
    ALERT = 1
    CRITICAL = 2
    ERROR = 3
    WARNING = 4
    NOTICE = 5
    INFORMATIONAL = 6
    DEBUG = 7

    @classmethod
    def parse(cls, text: str) -> Priority:
        """The priority named by `text`, case-insensitively; ``info`` is
        INFORMATIONAL, as in Falco. Raises ValueError for anything else."""
        name = text.upper()
        if name == "INFO":
            return cls.INFORMATIONAL
        try:
            return cls[name]
        except KeyError:
            raise ValueError(f"unknown priority {text!r}") from None

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Priority):
            return NotImplemented
        return self.value > other.value

    def __str__(self) -> str:
        return self.name.capitalize()


class ErrorCode(StrEnum):
    """Falco's load error codes (``falco::load_result::error_code``)."""

    LOAD_ERR_FILE_READ = "LOAD_ERR_FILE_READ"
    LOAD_ERR_YAML_PARSE = "LOAD_ERR_YAML_PARSE"
    LOAD_ERR_YAML_VALIDATE = "LOAD_ERR_YAML_VALIDATE"
    LOAD_ERR_COMPILE_CONDITION = "LOAD_ERR_COMPILE_CONDITION"
    LOAD_ERR_COMPILE_OUTPUT = "LOAD_ERR_COMPILE_OUTPUT"
    LOAD_ERR_VALIDATE = "LOAD_ERR_VALIDATE"


class WarningCode(StrEnum):
    """Falco's load warning codes (``falco::load_result::warning_code``); the
    ones bpfguard can raise."""

    LOAD_UNKNOWN_SOURCE = "LOAD_UNKNOWN_SOURCE"
    LOAD_NO_EVTTYPE = "LOAD_NO_EVTTYPE"
    LOAD_UNKNOWN_FILTER = "LOAD_UNKNOWN_FILTER"
    LOAD_UNUSED_MACRO = "LOAD_UNUSED_MACRO"
    LOAD_UNUSED_LIST = "LOAD_UNUSED_LIST"
    LOAD_UNKNOWN_ITEM = "LOAD_UNKNOWN_ITEM"
    LOAD_DEPRECATED_ITEM = "LOAD_DEPRECATED_ITEM"
    LOAD_APPEND_NO_VALUES = "LOAD_APPEND_NO_VALUES"
    LOAD_EXCEPTION_NAME_NOT_UNIQUE = "LOAD_EXCEPTION_NAME_NOT_UNIQUE"
    LOAD_INVALID_MACRO_NAME = "LOAD_INVALID_MACRO_NAME"
    LOAD_INVALID_LIST_NAME = "LOAD_INVALID_LIST_NAME"
    LOAD_COMPILE_CONDITION = "LOAD_COMPILE_CONDITION"
    LOAD_UNKNOWN_KEY = "LOAD_UNKNOWN_KEY"


# Falco's one-line descriptions of each code (error_strings, warning_strings).
_CODE_TEXT: dict[str, str] = {
    "LOAD_ERR_FILE_READ": "File read error",
    "LOAD_ERR_YAML_PARSE": "YAML parse error",
    "LOAD_ERR_YAML_VALIDATE": "Error validating internal structure of YAML file",
    "LOAD_ERR_COMPILE_CONDITION": "Error compiling condition",
    "LOAD_ERR_COMPILE_OUTPUT": "Error compiling output",
    "LOAD_ERR_VALIDATE": "Error validating rule/macro/list/exception objects",
    "LOAD_UNKNOWN_SOURCE": "Unknown event source",
    "LOAD_NO_EVTTYPE": "Condition has no event-type restriction",
    "LOAD_UNKNOWN_FILTER": "Unknown field or event-type in condition or output",
    "LOAD_UNUSED_MACRO": "Unused macro",
    "LOAD_UNUSED_LIST": "Unused list",
    "LOAD_UNKNOWN_ITEM": "Unknown rules file item",
    "LOAD_DEPRECATED_ITEM": "Used deprecated item",
    "LOAD_APPEND_NO_VALUES": "Overriding/appending with no values",
    "LOAD_EXCEPTION_NAME_NOT_UNIQUE": "Multiple exceptions defined with the same name",
    "LOAD_INVALID_MACRO_NAME": "Invalid macro name",
    "LOAD_INVALID_LIST_NAME": "Invalid list name",
    "LOAD_COMPILE_CONDITION": "Warning in rule condition",
    "LOAD_UNKNOWN_KEY": "Unknown key in item definition",
}

_SNIPPET_WIDTH = 160


@dataclass(frozen=True)
class Context:
    """Where something is: a position in a rules file, what kind of item is
    there (Falco's names: ``rule``, ``macro``, ``list``, ``exception``,
    ``rule condition``, ``condition expression``, ``value for``...) and its
    name, inside its `parent` (the rule an exception belongs to, and so on
    up to the file itself, whose context has line 0).

    `line` and `column` are 1-based; `offset` is the 0-based character
    offset of the same position in `source`, the text it points into, kept
    for :meth:`Problem.snippet`.
    """

    file: str
    line: int
    column: int
    kind: str
    name: str = ""
    parent: Context | None = None
    offset: int = 0
    source: str = field(default="", repr=False, compare=False)

    def chain(self) -> tuple[Context, ...]:
        """This context and its ancestors, outermost (the file) first."""
        out: list[Context] = []
        ctx: Context | None = self
        while ctx is not None:
            out.append(ctx)
            ctx = ctx.parent
        return tuple(reversed(out))

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One error or warning: a Falco `code`, what is wrong (`message`) and
    where (`context`)."""

    code: str
    message: str
    context: Context

    def snippet(self) -> str:
        """The source line the problem is on, with a ``^`` under the column;
        empty when there is no source to show (a file that could not be
        read, say). Lines longer than 160 characters are cut around the
        column, with ``...`` marking the cuts, as Falco does."""
        ctx = self.context
        text = ctx.source
        if not text or ctx.line < 1:
            return ""
        lines = text.splitlines() or [""]
        line = lines[min(ctx.line, len(lines)) - 1]
        col = min(max(ctx.column - 1, 0), len(line))
        half = _SNIPPET_WIDTH // 2
        start = max(col - half, 0)
        end = min(col + half, len(line))
        shown = line[start:end]
        if start > 0:
            shown = "..." + shown[3:]
        if end < len(line):
            shown = shown[:-3] + "..."
        return f"{shown}\n{' ' * (col - start)}^\n"

    def describe(self) -> str:
        """Falco's one-line description of the code."""
        return _CODE_TEXT.get(self.code, self.code)

    def __str__(self) -> str:
        return f"{self.context}: {self.code}: {self.message}"


@dataclass(frozen=True)
class PluginVersion:
    """A plugin a rules file needs, with the oldest version it accepts."""

    name: str
    version: str


@dataclass(frozen=True)
class Rule:
    """A loaded rule, ready for the compiler.

    `condition` is resolved: no macro reference is left in it, list names
    are expanded into their items, ``in``/``intersects``/``pmatch`` always
    have a :class:`~.ast.ListValue` on the right, and the rule's exceptions
    are folded in as Falco builds them (``(condition) and not (...)``). It
    is None only for a rule whose `source` is not ``syscall``: Falco skips
    those without compiling them, and so does bpfguard (a warning says so).
    `condition_text` is the rule's own condition as written (after appends
    and overrides), without exceptions. `tags` are sorted and unique, as in
    Falco (a set). `context` is where the rule is first defined.
    `unavailable` names the fields bpfguard cannot provide that the rule
    cannot do without: such a rule is refused (a warning says why) and
    never run, whatever `enabled` says.
    """

    name: str
    desc: str
    condition: ast.Condition | None
    condition_text: str
    output: str
    priority: Priority
    tags: tuple[str, ...]
    enabled: bool
    source: str
    warn_evttypes: bool
    skip_if_unknown_filter: bool
    context: Context
    capture: bool = False
    capture_duration: int = 0
    capture_events: int = 0
    capture_filesize: int = 0
    unavailable: tuple[str, ...] = ()


def _location(ctx: Context) -> dict[str, object]:
    return {
        "item_type": ctx.kind,
        "item_name": ctx.name,
        "position": {"name": ctx.file, "line": ctx.line, "column": ctx.column,
                     "offset": ctx.offset},
    }


def _problem_json(p: Problem) -> dict[str, object]:
    return {
        "code": p.code,
        "codedesc": p.describe(),
        "message": p.message,
        "context": {"locations": [_location(c) for c in p.context.chain()],
                    "snippet": p.snippet()},
    }


def _problem_text(p: Problem) -> str:
    lines = []
    for i, ctx in enumerate(p.context.chain()):
        named = f" '{ctx.name}'" if ctx.name else ""
        lines.append(f"{'In ' if i == 0 else '    '}{ctx.kind}{named}: ({ctx})")
    snippet = p.snippet()
    if snippet:
        lines += ["------", snippet.rstrip("\n"), "------"]
    lines.append(f"{p.code} ({p.describe()}): {p.message}")
    return "\n".join(lines)


@dataclass(frozen=True)
class LoadResult:
    """The outcome of loading one or more rules files.

    `rules` are in the order they were first defined, and empty as soon as
    there is any error: loading is all or nothing. `required_engine_version`
    is the highest any file asked for; `required_plugin_versions` lists each
    requirement as its alternatives (any one satisfies it).
    """

    names: tuple[str, ...]
    rules: tuple[Rule, ...] = ()
    errors: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()
    required_engine_version: str | None = None
    required_plugin_versions: tuple[tuple[PluginVersion, ...], ...] = ()

    @property
    def ok(self) -> bool:
        """True when there is no error (there may be warnings)."""
        return not self.errors

    def render(self, fmt: Literal["text", "json"] = "text") -> str:
        """Every error and warning, with where it is and the source line:
        Falco's verbose text layout, or its JSON layout."""
        if fmt == "json":
            return json.dumps({
                "name": ", ".join(self.names),
                "successful": self.ok,
                "errors": [_problem_json(p) for p in self.errors],
                "warnings": [_problem_json(p) for p in self.warnings],
            }, indent=2)
        status = "Ok" if self.ok else "Invalid"
        if self.ok and self.warnings:
            status += ", with warnings"
        parts = [f"{', '.join(self.names)}: {status}"]
        for title, problems in (("Errors", self.errors), ("Warnings", self.warnings)):
            if problems:
                parts.append(f"{len(problems)} {title}:")
                parts.extend(_problem_text(p) for p in problems)
        return "\n".join(parts) + "\n"
