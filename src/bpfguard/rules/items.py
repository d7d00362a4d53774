"""What the rule loader's stages hand each other (Falco's ``rule_loader.h``).

Loading rules files goes reader -> collector -> resolver (see
:mod:`.loader`). This module holds what crosses those boundaries:

* where things are: :class:`RulesFile` (a file's text, turning offsets into
  :class:`~.model.Context` objects), :class:`Scalar` and :class:`Text` (a
  condition or output, mapped back to the file offsets it came from, even
  after appends joined several scalars);
* what went wrong: :class:`Problems`, the one record of every error and
  warning of a load, which every stage adds to, and :class:`ItemError`, a
  problem that ends the reading of the current item;
* what the reader hands the collector, one item at a time: :class:`ListItem`,
  :class:`MacroItem`, :class:`RuleItem`, :class:`RuleUpdate`,
  :class:`RuleEnable`, :class:`EngineRequirement` and
  :class:`PluginRequirement` (a rule's exceptions as :class:`ExceptionItem`);
* what the collector hands the resolver: :class:`Collected`, every item as
  last defined or changed, each :class:`Defined` with its place in the order
  of definitions.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from . import ast
from .fields import check_field, split_field
from .grammar import FIELD_PATTERN
from .model import Context, PluginVersion, Priority, Problem

__all__ = [
    "FIELD",
    "IDENTIFIER",
    "LIST_OPS",
    "OPERATORS",
    "SYSCALL_SOURCE",
    "UPDATABLE",
    "Collected",
    "Defined",
    "EngineRequirement",
    "Entry",
    "ExceptionItem",
    "ItemError",
    "ListItem",
    "MacroItem",
    "PluginRequirement",
    "Problems",
    "RuleEnable",
    "RuleItem",
    "RuleUpdate",
    "RulesFile",
    "Scalar",
    "Text",
    "known_field",
    "semver",
]

SYSCALL_SOURCE: Final = "syscall"

LIST_OPS: Final = frozenset({"in", "intersects", "pmatch"})
OPERATORS: Final = frozenset({
    "exists", "<=", "<", ">=", ">", "==", "=", "!=", "glob", "iglob", "contains", "icontains",
    "bcontains", "startswith", "bstartswith", "endswith", "regex", "intersects", "in", "pmatch"})

IDENTIFIER: Final = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*")
FIELD: Final = re.compile(FIELD_PATTERN)
_SEMVER: Final = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def semver(text: str) -> tuple[int, int, int] | None:
    m = _SEMVER.match(text)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def known_field(text: str) -> ast.FieldRef | None:
    """`text` as a field bpfguard provides (argument included), or None."""
    if not FIELD.fullmatch(text):
        return None
    ref = split_field(text)
    return ref if check_field(ref) is None else None


# -- the text of the rules files, and where things are in it -----------------

class RulesFile:
    """One rules file's text, to turn offsets into line:column contexts."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self._starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
        self.root = Context(name, 0, 0, "rules content", source=text)

    def context(self, offset: int, kind: str, name: str = "",
                parent: Context | None = None) -> Context:
        offset = min(max(offset, 0), len(self.text))
        line = bisect.bisect_right(self._starts, offset)
        column = offset - self._starts[line - 1] + 1
        return Context(self.name, line, column, kind, name, parent or self.root, offset,
                       self.text)


@dataclass
class Scalar:
    """A YAML scalar's value and the file offset of each of its characters.

    `start` and `end` are the file offsets of the scalar's source text, and
    `style` its YAML style (None for plain, ``'``, ``"``, ``|`` or ``>``).
    The offsets are found by walking the value and the scalar's source text
    side by side, matching non-blank characters: exact for plain and block
    scalars, and for quoted ones but for the rare escapes that change a
    character (``\\x41``)."""

    value: str
    start: int
    end: int
    style: str | None
    file: RulesFile
    _offsets: list[int] | None = None

    def offset(self, index: int) -> int:
        """The file offset of the value's character `index`; the end of the
        value is just after its last character."""
        if self._offsets is None:
            self._offsets = self._align()
        if not self._offsets:
            return self.start
        if index >= len(self._offsets):
            return self._offsets[-1] + 1
        return self._offsets[max(index, 0)]

    def _align(self) -> list[int]:
        start, end = self.start, self.end
        raw = self.file.text[start:end]
        j = 0
        if self.style in (">", "|"):
            j = raw.find("\n") + 1
        elif self.style in ("'", '"'):
            j = 1
        out = []
        for ch in self.value:
            if not ch.isspace():
                k = raw.find(ch, j)
                if k >= 0:
                    j = k
            out.append(start + min(j, len(raw) - 1 if raw else 0))
            if not ch.isspace():
                j += 1
        return out


@dataclass(frozen=True)
class Text:
    """A condition or output: one scalar, or several joined by a blank when
    appended to. Maps offsets in the text back to the files."""

    text: str
    pieces: tuple[tuple[int, Scalar], ...]

    @staticmethod
    def of(scalar: Scalar) -> Text:
        return Text(scalar.value, ((0, scalar),))

    @staticmethod
    def built(text: str) -> Text:
        """Text made by the loader (an exception's condition): no source."""
        return Text(text, ())

    def __add__(self, other: Text) -> Text:
        shift = len(self.text) + 1
        return Text(self.text + " " + other.text,
                    self.pieces + tuple((at + shift, s) for at, s in other.pieces))

    def context_at(self, offset: int, parent: Context, kind: str) -> Context:
        """Where `offset` is, as a context of `kind` inside `parent`;
        `parent` itself for built text, which is in no file."""
        found = None
        for at, scalar in self.pieces:
            if at <= offset:
                found = (at, scalar)
        if found is None:
            return parent
        at, scalar = found
        return scalar.file.context(scalar.offset(offset - at), kind, parent=parent)


# -- what went wrong -----------------------------------------------------------

class Problems:
    """Every error and warning of one load, in the order found: the stages
    all add to one record, as Falco's do to its ``load_result``."""

    def __init__(self) -> None:
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self._seen: set[Problem] = set()

    @property
    def ok(self) -> bool:
        """True while no error has been found."""
        return not self.errors

    def error(self, code: str, message: str, ctx: Context) -> None:
        self.add_error(Problem(code, message, ctx))

    def warn(self, code: str, message: str, ctx: Context) -> None:
        self._add(self.warnings, Problem(code, message, ctx))

    def add_error(self, problem: Problem) -> None:
        self._add(self.errors, problem)

    def _add(self, into: list[Problem], problem: Problem) -> None:
        # A macro is checked for every rule that uses it: say each thing once.
        if problem not in self._seen:
            self._seen.add(problem)
            into.append(problem)


class ItemError(Exception):
    """A problem that ends the reading of the current item. The reader and
    the collector raise it; the reader records it and goes on with the next
    item."""

    def __init__(self, code: str, message: str, ctx: Context) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ctx = ctx


# -- what the reader hands the collector ---------------------------------------

@dataclass
class Entry:
    """An exception's fields, comps or one of its values: a string or a
    list of entries (Falco's rule_exception_info::entry)."""

    is_list: bool = False
    item: str = ""
    items: list[Entry] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return bool(self.items) if self.is_list else bool(self.item)


@dataclass
class ExceptionItem:
    """One of a rule's exceptions as read; the collector checks it and
    fills in default comps."""

    name: str
    ctx: Context
    fields: Entry
    comps: Entry
    values: list[Entry]


@dataclass(frozen=True)
class EngineRequirement:
    """A ``required_engine_version`` item: the version, and how to write it."""

    version: tuple[int, int, int]
    ctx: Context

    @property
    def text(self) -> str:
        return ".".join(map(str, self.version))


@dataclass(frozen=True)
class PluginRequirement:
    """One entry of a ``required_plugin_versions`` item: any one of its
    alternatives satisfies it."""

    alternatives: tuple[PluginVersion, ...]
    ctx: Context


@dataclass
class ListItem:
    """A list definition, or what an append adds to one."""

    name: str
    ctx: Context
    items: list[tuple[str, Context]]


@dataclass
class MacroItem:
    """A macro definition, or what an append adds to one."""

    name: str
    ctx: Context
    cond: Text
    cond_ctx: Context


@dataclass
class RuleItem:
    """A rule definition; the collector's appends and replaces change it."""

    name: str
    ctx: Context
    source: str
    cond: Text
    cond_ctx: Context
    output: Text
    output_ctx: Context
    desc: str
    priority: Priority
    tags: set[str]
    exceptions: list[ExceptionItem]
    enabled: bool = True
    warn_evttypes: bool = True
    skip_if_unknown_filter: bool = False
    capture: bool = False
    capture_duration: int = 0
    capture_events: int = 0
    capture_filesize: int = 0


@dataclass
class RuleUpdate:
    """What an append or a selective replace of a rule brings."""

    name: str
    ctx: Context
    cond: Text | None = None
    cond_ctx: Context | None = None
    output: Text | None = None
    output_ctx: Context | None = None
    desc: str | None = None
    tags: set[str] | None = None
    exceptions: list[ExceptionItem] | None = None
    priority: Priority | None = None
    enabled: bool | None = None
    warn_evttypes: bool | None = None
    skip_if_unknown_filter: bool | None = None
    capture: bool | None = None
    capture_duration: int | None = None
    capture_events: int | None = None
    capture_filesize: int | None = None

    def has_any_value(self) -> bool:
        return any(getattr(self, k) is not None for k in UPDATABLE)


UPDATABLE: Final = ("cond", "output", "desc", "tags", "exceptions", "priority", "enabled",
                    "warn_evttypes", "skip_if_unknown_filter", "capture", "capture_duration",
                    "capture_events", "capture_filesize")
"""The attributes a :class:`RuleUpdate` can bring, named as in :class:`RuleItem`."""


@dataclass(frozen=True)
class RuleEnable:
    """The deprecated item that only sets an existing rule's ``enabled``."""

    name: str
    ctx: Context
    enabled: bool


# -- what the collector hands the resolver -------------------------------------

_T = TypeVar("_T")


@dataclass
class Defined(Generic[_T]):
    """An item as the collector keeps it. `index` is its place in the order
    of first definitions (the order of the result); `visibility` that of its
    latest definition or change: a macro sees only the macros, and a list
    only the lists, whose index is below its visibility."""

    item: _T
    index: int
    visibility: int


@dataclass(frozen=True)
class Collected:
    """Everything the files defined, after every append and override, by
    name in order of first definition; the highest engine version required
    (None if none was) and each plugin requirement, in order."""

    lists: Mapping[str, Defined[ListItem]]
    macros: Mapping[str, Defined[MacroItem]]
    rules: Mapping[str, Defined[RuleItem]]
    engine_required: EngineRequirement | None
    plugins: tuple[PluginRequirement, ...]
