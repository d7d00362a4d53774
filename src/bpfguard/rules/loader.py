"""Load Falco rules files: YAML in, resolved rules (or every problem) out.

This follows Falco's rule loader (``userspace/engine/rule_loader_reader.cpp``,
``rule_loader_collector.cpp``, ``rule_loader_compiler.cpp``), in its three
stages:

* reading: every item of every file, in order, is checked (kinds, keys, value
  types, exceptions) and applied to what earlier items defined: a definition
  replaces an earlier one of the same name but keeps its place, ``append``
  and ``override`` change an existing item (an error if there is none);
* checking requirements: ``required_engine_version`` against
  :data:`ENGINE_VERSION`, ``required_plugin_versions`` against the plugins
  bpfguard provides itself (only ``container``);
* compiling: conditions are parsed, list names expanded, macros substituted
  (a macro sees only the macros defined before it, a rule sees them all, as
  in Falco), exceptions folded in, fields and output fields checked.

Where Falco's behaviour comes from an accident of its implementation, this
module says so next to the code and does the sensible thing instead.
Loading is all or nothing: one error and no rule is returned.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import yaml

from ..errors import ConfigError
from . import ast
from .fields import FIELDS, check_field, split_field
from .grammar import (
    FIELD_PATTERN,
    TRANSFORMERS,
    ConditionSyntaxError,
    parse_condition,
    parse_list_items,
    parse_operand,
)
from .model import (
    Context,
    ErrorCode,
    LoadResult,
    PluginVersion,
    Priority,
    Problem,
    Rule,
    WarningCode,
)

__all__ = [
    "ENGINE_VERSION",
    "RulesError",
    "load_rules",
    "load_rules_or_raise",
]

ENGINE_VERSION: Final = "0.57.0"
"""The Falco engine version whose rules syntax bpfguard reads. It is the
version the stock ruleset (falcosecurity/rules at the commit in
``data/SOURCE``) requires: the newest whose syntax bpfguard implements in
full. Later engines added syntax bpfguard does not parse (the multi-argument
``join()`` transformer, ``oneof``/``anyof``/``allof`` comparison modifiers);
claiming them would let a file needing them past the version check only to
fail later, less clearly."""

SYSCALL_SOURCE: Final = "syscall"
BUILTIN_PLUGINS: Final = frozenset({"container"})
"""Plugins whose fields bpfguard provides itself: a requirement on any
version of them is satisfied."""

Source = str | Path | tuple[str, str]


class RulesError(ConfigError):
    """Rules files did not load. `result` has every error and warning."""

    def __init__(self, result: LoadResult) -> None:
        self.result = result
        super().__init__(result.render())


def load_rules(sources: Sequence[Source], *,
               engine_version: str = ENGINE_VERSION) -> LoadResult:
    """Load rules files in order, later ones changing what earlier ones
    defined. A source is a path, or a ``(name, yaml text)`` pair. Never
    raises for bad input: problems are in the result."""
    return _Loader(engine_version).load(sources)


def load_rules_or_raise(sources: Sequence[Source], *,
                        engine_version: str = ENGINE_VERSION) -> LoadResult:
    """:func:`load_rules`, raising RulesError when there is any error."""
    result = load_rules(sources, engine_version=engine_version)
    if not result.ok:
        raise RulesError(result)
    return result


# -- the text of the rules files, and where things are in it -----------------

_NULL_TAG: Final = "tag:yaml.org,2002:null"
_TRUE: Final = frozenset({"y", "yes", "true", "on"})  # yaml-cpp's bool spellings
_FALSE: Final = frozenset({"n", "no", "false", "off"})


class _File:
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

    def at(self, node: yaml.Node, kind: str, name: str = "",
           parent: Context | None = None) -> Context:
        return self.context(node.start_mark.index, kind, name, parent)


@dataclass
class _Scalar:
    """A YAML scalar's value and the file offset of each of its characters.

    The offsets are found by walking the value and the scalar's source text
    side by side, matching non-blank characters: exact for plain and block
    scalars, and for quoted ones but for the rare escapes that change a
    character (``\\x41``)."""

    value: str
    node: yaml.ScalarNode
    file: _File
    _offsets: list[int] | None = None

    def offset(self, index: int) -> int:
        """The file offset of the value's character `index`; the end of the
        value is just after its last character."""
        if self._offsets is None:
            self._offsets = self._align()
        if not self._offsets:
            return self.node.start_mark.index
        if index >= len(self._offsets):
            return self._offsets[-1] + 1
        return self._offsets[max(index, 0)]

    def _align(self) -> list[int]:
        start, end = self.node.start_mark.index, self.node.end_mark.index
        raw = self.file.text[start:end]
        j = 0
        if self.node.style in (">", "|"):
            j = raw.find("\n") + 1
        elif self.node.style in ("'", '"'):
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
class _Text:
    """A condition or output: one scalar, or several joined by a blank when
    appended to. Maps offsets in the text back to the files."""

    text: str
    pieces: tuple[tuple[int, _Scalar], ...]

    @staticmethod
    def of(scalar: _Scalar) -> _Text:
        return _Text(scalar.value, ((0, scalar),))

    @staticmethod
    def built(text: str) -> _Text:
        """Text made by the loader (an exception's condition): no source."""
        return _Text(text, ())

    def __add__(self, other: _Text) -> _Text:
        shift = len(self.text) + 1
        return _Text(self.text + " " + other.text,
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


class _Fail(Exception):
    """A problem that ends the reading of the current item."""

    def __init__(self, code: str, message: str, ctx: Context) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ctx = ctx


def _validate(message: str, ctx: Context) -> _Fail:
    return _Fail(ErrorCode.LOAD_ERR_YAML_VALIDATE, message, ctx)


class _Item:
    """A YAML mapping (a rules file item, an exception, a plugin entry):
    typed access to its keys with Falco's messages for what is wrong."""

    def __init__(self, node: yaml.MappingNode, file: _File, ctx: Context) -> None:
        self.file = file
        self.ctx = ctx
        self.keys: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise _validate("Keys must be strings", file.at(key, "value for", parent=ctx))
            if key.value in self.keys:
                raise _validate(f"Key '{key.value}' appears twice",
                                file.at(key, "value for", key.value, ctx))
            self.keys[key.value] = (key, value)

    def has(self, key: str) -> bool:
        return key in self.keys

    def node(self, key: str) -> yaml.Node:
        return self.keys[key][1]

    def value_ctx(self, key: str) -> Context:
        return self.file.at(self.node(key), "value for", key, self.ctx)

    def key_ctx(self, key: str, kind: str = "value for") -> Context:
        return self.file.at(self.keys[key][0], kind, key, self.ctx)

    def check_keys(self, allowed: frozenset[str], what: str) -> None:
        for key in self.keys:
            if key not in allowed:
                raise _validate(
                    f"Unexpected key '{key}': a {what} has no such key (it has: "
                    f"{', '.join(sorted(allowed))})", self.key_ctx(key))

    def scalar(self, key: str) -> _Scalar:
        """A required non-empty scalar, as Falco's decode_val wants it."""
        if key not in self.keys:
            raise _validate(f"Item has no mapping for key '{key}'", self.ctx)
        node = self.node(key)
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
            raise _validate(f"Mapping for key '{key}' is empty", self.ctx)
        if not isinstance(node, yaml.ScalarNode):
            raise _validate("Value is not a scalar value", self.value_ctx(key))
        if node.value == "":
            raise _validate("Value must be non-empty", self.value_ctx(key))
        return _Scalar(node.value, node, self.file)

    def string(self, key: str) -> str:
        return self.scalar(key).value

    def boolean(self, key: str) -> bool:
        text = self.string(key).lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise _validate("Can't decode YAML scalar value", self.value_ctx(key))

    def unsigned(self, key: str) -> int:
        text = self.string(key)
        if not text.isdigit():
            raise _validate("Can't decode YAML scalar value", self.value_ctx(key))
        return int(text)

    def strings(self, key: str) -> list[tuple[str, Context]]:
        """A sequence of scalars, each with its context."""
        if key not in self.keys:
            raise _validate(f"Item has no mapping for key '{key}'", self.ctx)
        node = self.node(key)
        vctx = self.value_ctx(key)
        if not isinstance(node, yaml.SequenceNode):
            raise _validate("Value is not a sequence", vctx)
        out = []
        for sub in node.value:
            ictx = self.file.at(sub, "list item", parent=vctx)
            if not isinstance(sub, yaml.ScalarNode) or sub.tag == _NULL_TAG:
                raise _validate("sequence value is not scalar", ictx)
            out.append((sub.value, ictx))
        return out


def _mapping(node: yaml.Node, file: _File, kind: str, message: str, name: str = "",
             parent: Context | None = None) -> _Item:
    ctx = file.at(node, kind, name, parent)
    if not isinstance(node, yaml.MappingNode):
        raise _validate(message, ctx)
    return _Item(node, file, ctx)


# -- what the reading stage collects ----------------------------------------

@dataclass
class _Entry:
    """An exception's fields, comps or one of its values: a string or a
    list of entries (Falco's rule_exception_info::entry)."""

    is_list: bool = False
    item: str = ""
    items: list[_Entry] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return bool(self.items) if self.is_list else bool(self.item)


@dataclass
class _Exception:
    name: str
    ctx: Context
    fields: _Entry
    comps: _Entry
    values: list[_Entry]


@dataclass
class _ListInfo:
    name: str
    ctx: Context
    index: int
    visibility: int
    items: list[tuple[str, Context]]
    used: bool = False


@dataclass
class _MacroInfo:
    name: str
    ctx: Context
    index: int
    visibility: int
    cond: _Text
    cond_ctx: Context
    used: bool = False


@dataclass
class _RuleInfo:
    name: str
    ctx: Context
    index: int
    visibility: int
    source: str
    cond: _Text
    cond_ctx: Context
    output: _Text
    output_ctx: Context
    desc: str
    priority: Priority
    tags: set[str]
    exceptions: list[_Exception]
    enabled: bool = True
    warn_evttypes: bool = True
    skip_if_unknown_filter: bool = False
    capture: bool = False
    capture_duration: int = 0
    capture_events: int = 0
    capture_filesize: int = 0


@dataclass
class _RuleUpdate:
    """What an append or a selective replace of a rule brings."""

    ctx: Context
    cond: _Text | None = None
    cond_ctx: Context | None = None
    output: _Text | None = None
    output_ctx: Context | None = None
    desc: str | None = None
    tags: set[str] | None = None
    exceptions: list[_Exception] | None = None
    priority: Priority | None = None
    enabled: bool | None = None
    warn_evttypes: bool | None = None
    skip_if_unknown_filter: bool | None = None
    capture: bool | None = None
    capture_duration: int | None = None
    capture_events: int | None = None
    capture_filesize: int | None = None

    def has_any_value(self) -> bool:
        return any(getattr(self, k) is not None for k in _UPDATABLE)


_UPDATABLE: Final = ("cond", "output", "desc", "tags", "exceptions", "priority", "enabled",
                     "warn_evttypes", "skip_if_unknown_filter", "capture", "capture_duration",
                     "capture_events", "capture_filesize")

# -- keys of each item kind (Falco's rule JSON schema and reader) ----------

_RULE_KEYS: Final = frozenset({
    "rule", "desc", "condition", "output", "priority", "tags", "enabled", "source",
    "exceptions", "warn_evttypes", "skip-if-unknown-filter", "append", "override",
    "capture", "capture_duration", "capture_events", "capture_filesize"})
_MACRO_KEYS: Final = frozenset({"macro", "condition", "append", "override"})
_LIST_KEYS: Final = frozenset({"list", "items", "append", "override"})
_EXCEPTION_KEYS: Final = frozenset({"name", "fields", "comps", "values"})
_PLUGIN_KEYS: Final = frozenset({"name", "version", "alternatives"})
_ALTERNATIVE_KEYS: Final = frozenset({"name", "version"})

_RULE_APPENDABLE: Final = ("condition", "output", "desc", "tags", "exceptions")
_RULE_REPLACEABLE: Final = ("condition", "output", "desc", "priority", "tags", "exceptions",
                            "enabled", "warn_evttypes", "skip-if-unknown-filter", "capture",
                            "capture_duration", "capture_events", "capture_filesize")
_RULE_REQUIRED: Final = ("condition", "output", "desc", "priority")

_LIST_OPS: Final = frozenset({"in", "intersects", "pmatch"})
_OPERATORS: Final = frozenset({
    "exists", "<=", "<", ">=", ">", "==", "=", "!=", "glob", "iglob", "contains", "icontains",
    "bcontains", "startswith", "bstartswith", "endswith", "regex", "intersects", "in", "pmatch"})

_IDENTIFIER: Final = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*")
_BARESTR: Final = re.compile(r"[^()\"'\t\n\v\f\r =,]+")
_FIELD: Final = re.compile(FIELD_PATTERN)
_SEMVER: Final = re.compile(r"(\d+)\.(\d+)\.(\d+)")

_WARNING_APPEND: Final = ("'append' key is deprecated. Add an 'append' entry "
                          "(e.g. 'condition: append') under 'override' instead.")
_WARNING_ENABLED: Final = ("The standalone 'enabled' key usage is deprecated. The correct "
                           "approach requires also a 'replace' entry under the 'override' key "
                           "(i.e. 'enabled: replace').")
_ERROR_OVERRIDE_APPEND: Final = ("Keys 'override' and 'append: true' cannot be used together. "
                                 "Add an 'append' entry (e.g. 'condition: append') under "
                                 "'override' instead.")
_DEPRECATED_OUTPUT_FIELDS: Final = ("evt.dir", "evt.latency", "evt.latency.s", "evt.latency.ns",
                                    "evt.latency.human", "evt.wait_latency")


def _semver(text: str) -> tuple[int, int, int] | None:
    m = _SEMVER.match(text)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def _quote_item(item: str) -> str:
    """How Falco writes a list item or exception value into condition text:
    quoted when it has a blank and is not quoted already (no escaping)."""
    if " " in item and item[:1] not in ("'", '"'):
        return f'"{item}"'
    return item


def _known_field(text: str) -> ast.FieldRef | None:
    """`text` as a field bpfguard provides (argument included), or None."""
    if not _FIELD.fullmatch(text):
        return None
    ref = split_field(text)
    return ref if check_field(ref) is None else None


# -- the loader -------------------------------------------------------------

@dataclass
class _Origin:
    """The text a syntax tree was parsed from, to say where its nodes are."""

    text: _Text
    ctx: Context  # the condition's context (rule condition, macro condition...)
    note: str = ""  # said after messages about built text, which has no file position
    kind: str = "condition expression"

    def at(self, pos: int) -> Context:
        return self.text.context_at(pos, self.ctx, self.kind)

    def say(self, message: str) -> str:
        return f"{message} ({self.note})" if self.note else message


class _Loader:
    """One load: the items read so far, and the problems found."""

    def __init__(self, engine_version: str) -> None:
        self.engine_version = engine_version
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self._seen: set[Problem] = set()
        self.names: list[str] = []
        self.index = 0
        self.lists: dict[str, _ListInfo] = {}
        self.macros: dict[str, _MacroInfo] = {}
        self.rules: dict[str, _RuleInfo] = {}
        self.engine_required: tuple[tuple[int, int, int], str] | None = None
        self.plugins: list[tuple[tuple[PluginVersion, ...], Context]] = []
        self._list_words: dict[str, tuple[ast.Word, ...] | None] = {}
        self._macro_trees: dict[str, ast.Condition | None] = {}
        self._failed_macros: set[str] = set()
        self._broken = False  # the condition being compiled has an error

    # reporting

    def error(self, code: str, message: str, ctx: Context) -> None:
        self._add(self.errors, Problem(code, message, ctx))

    def warn(self, code: str, message: str, ctx: Context) -> None:
        self._add(self.warnings, Problem(code, message, ctx))

    def _add(self, into: list[Problem], problem: Problem) -> None:
        # A macro is checked for every rule that uses it: say each thing once.
        if problem not in self._seen:
            self._seen.add(problem)
            into.append(problem)

    def _next_index(self) -> int:
        self.index += 1
        return self.index - 1

    # top level

    def load(self, sources: Sequence[Source]) -> LoadResult:
        for source in sources:
            file = self._read_file(source)
            if file is not None:
                self._read_content(file)
        if not self.errors:
            self._check_requirements()
        rules: list[Rule] = []
        if not self.errors:
            rules = self._compile()
        return LoadResult(
            names=tuple(self.names),
            rules=() if self.errors else tuple(rules),
            errors=tuple(self.errors),
            warnings=tuple(self.warnings),
            required_engine_version=self.engine_required[1] if self.engine_required else None,
            required_plugin_versions=tuple(alts for alts, _ in self.plugins),
        )

    def _read_file(self, source: Source) -> _File | None:
        if isinstance(source, tuple):
            name, text = source
            self.names.append(name)
            return _File(name, text)
        name = str(source)
        self.names.append(name)
        try:
            return _File(name, Path(source).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            self.error(ErrorCode.LOAD_ERR_FILE_READ, f"Could not read {name}: {exc}",
                       Context(name, 0, 0, "rules content"))
            return None

    def _read_content(self, file: _File) -> None:
        try:
            docs = list(yaml.compose_all(file.text, Loader=yaml.SafeLoader))
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            ctx = file.context(mark.index, "rules content") if mark else file.root
            message = " ".join(m for m in (exc.context, exc.problem) if m) or str(exc)
            self.error(ErrorCode.LOAD_ERR_YAML_PARSE, message, ctx)
            return
        except yaml.YAMLError as exc:
            ctx = file.context(getattr(exc, "position", 0), "rules content")
            self.error(ErrorCode.LOAD_ERR_YAML_PARSE, str(exc), ctx)
            return
        for doc in docs:
            if isinstance(doc, yaml.ScalarNode) and doc.tag == _NULL_TAG:
                continue
            if not isinstance(doc, yaml.SequenceNode):
                message = ("Rules content is not yaml array of objects"
                           if isinstance(doc, yaml.MappingNode) else "Rules content is not yaml")
                self.error(ErrorCode.LOAD_ERR_YAML_VALIDATE, message, file.root)
                continue
            for node in doc.value:
                if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
                    continue
                try:
                    self._read_item(node, file)
                except _Fail as fail:
                    self.error(fail.code, fail.message, fail.ctx)

    def _read_item(self, node: yaml.Node, file: _File) -> None:
        item = _mapping(node, file, "rules content item",
                        "Unexpected element type. Each element should be a yaml associative "
                        "array.")
        if item.has("required_engine_version"):
            self._read_engine_version(item)
        elif item.has("required_plugin_versions"):
            self._read_plugin_versions(item)
        elif item.has("list"):
            self._read_list(item)
        elif item.has("macro"):
            self._read_macro(item)
        elif item.has("rule"):
            self._read_rule(item)
        else:
            self.warn(WarningCode.LOAD_UNKNOWN_ITEM, "Unknown top level item", item.ctx)

    # required versions

    def _read_engine_version(self, item: _Item) -> None:
        ctx = replace(item.ctx, kind="required_engine_version")
        item.ctx = ctx
        item.check_keys(frozenset({"required_engine_version"}), "required_engine_version item")
        text = item.string("required_engine_version")
        # A bare number N is Falco's old engine numbering: version 0.N.0.
        version = (0, int(text), 0) if text.isdigit() else _semver(text)
        if version is None:
            raise _validate(f"Unable to parse engine version '{text}' as a semver string. "
                            'Expected "x.y.z" semver format.', ctx)
        ours = _semver(self.engine_version)
        if ours is None or ours[0] != version[0] or ours < version:
            raise _Fail(ErrorCode.LOAD_ERR_VALIDATE,
                        f"Rules require engine version {'.'.join(map(str, version))}, but "
                        f"engine version is {self.engine_version}", ctx)
        if self.engine_required is None or self.engine_required[0] < version:
            self.engine_required = (version, ".".join(map(str, version)))

    def _read_plugin_versions(self, item: _Item) -> None:
        item.check_keys(frozenset({"required_plugin_versions"}), "required_plugin_versions item")
        node = item.node("required_plugin_versions")
        ctx = item.file.at(node, "required plugin versions", parent=item.ctx)
        if not isinstance(node, yaml.SequenceNode):
            raise _validate("Value of required_plugin_versions must be a sequence", ctx)
        for sub in node.value:
            entry = _mapping(sub, item.file, "required plugin versions entry",
                             "Plugin version must be a mapping", parent=ctx)
            name = entry.string("name")
            entry.ctx = replace(entry.ctx, name=name)
            entry.check_keys(_PLUGIN_KEYS, "plugin version requirement")
            alternatives = [PluginVersion(name, entry.string("version"))]
            if entry.has("alternatives"):
                alts = entry.node("alternatives")
                if not isinstance(alts, yaml.SequenceNode):
                    raise _validate("Value of plugin version alternatives must be a sequence",
                                    entry.ctx)
                for alt_node in alts.value:
                    alt = _mapping(alt_node, item.file, "required plugin versions alternative",
                                   "Plugin version alternative must be a mapping",
                                   parent=entry.ctx)
                    alt_name = alt.string("name")
                    alt.ctx = replace(alt.ctx, name=alt_name)
                    alt.check_keys(_ALTERNATIVE_KEYS, "plugin version alternative")
                    alternatives.append(PluginVersion(alt_name, alt.string("version")))
            seen: set[str] = set()
            for req in alternatives:
                if _semver(req.version) is None:
                    raise _Fail(ErrorCode.LOAD_ERR_VALIDATE,
                                f"Invalid required version '{req.version}' for plugin "
                                f"'{req.name}'", entry.ctx)
                if req.name in seen:
                    raise _Fail(ErrorCode.LOAD_ERR_VALIDATE,
                                "Defined multiple alternative version requirements for plugin "
                                f"'{req.name}'", entry.ctx)
                seen.add(req.name)
            self.plugins.append((tuple(alternatives), entry.ctx))

    def _check_requirements(self) -> None:
        for alternatives, ctx in self.plugins:
            if not any(req.name in BUILTIN_PLUGINS for req in alternatives):
                wanted = ", ".join(f"{r.name} (>= {r.version})" for r in alternatives)
                self.error(ErrorCode.LOAD_ERR_VALIDATE,
                           f"Plugin requirement not satisfied, must load one of: {wanted}", ctx)

    # lists and macros

    def _overrides(self, item: _Item, appendable: Sequence[str],
                   replaceable: Sequence[str]) -> tuple[set[str], set[str]]:
        """The keys under `override`, split into appended and replaced."""
        if not item.has("override"):
            return set(), set()
        node = item.node("override")
        octx = item.key_ctx("override", "overrides")
        if not isinstance(node, yaml.MappingNode):
            raise _validate("Value of override must be a mapping", octx)
        append: set[str] = set()
        replace_: set[str] = set()
        for key_node, op_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else ""
            op = op_node.value if isinstance(op_node, yaml.ScalarNode) else ""
            kctx = item.file.at(key_node, "overrides", key, item.ctx)
            if op == "append":
                if key not in appendable:
                    raise _validate(f"Key '{key}' cannot be appended to, use 'replace' instead",
                                    kctx)
                append.add(key)
            elif op == "replace":
                if key not in replaceable:
                    raise _validate(f"Key '{key}' cannot be replaced", kctx)
                replace_.add(key)
            else:
                allowed = " ".join(o for o, ok in (("append", key in appendable),
                                                   ("replace", key in replaceable)) if ok)
                raise _validate(f"Invalid override operation for key '{key}': '{op}'. "
                                f"Allowed values are: {allowed}",
                                item.file.at(op_node, "value for", key, octx))
        return append, replace_

    def _append_flag(self, item: _Item) -> bool:
        if not item.has("append"):
            return False
        flag = item.boolean("append")
        if flag:
            self.warn(WarningCode.LOAD_DEPRECATED_ITEM, _WARNING_APPEND, item.ctx)
        return flag

    def _named(self, item: _Item, kind: str) -> str:
        item.ctx = replace(item.ctx, kind=kind)
        name = item.string(kind)
        item.ctx = replace(item.ctx, name=name)
        return name

    def _read_list(self, item: _Item) -> None:
        name = self._named(item, "list")
        item.check_keys(_LIST_KEYS, "list")
        if not _BARESTR.fullmatch(name):
            self.warn(WarningCode.LOAD_INVALID_LIST_NAME,
                      "List has an invalid name. List names should match a regular "
                      "expression: ([^()\"'[:space:]=,]+)", item.ctx)
        items = item.strings("items")
        append = self._append_flag(item)
        to_append, to_replace = self._overrides(item, ("items",), ("items",))
        if append and (to_append or to_replace):
            raise _validate(_ERROR_OVERRIDE_APPEND, item.ctx)
        index = self._next_index()
        prev = self.lists.get(name)
        if append or to_append:
            if prev is None:
                raise _Fail(ErrorCode.LOAD_ERR_VALIDATE,
                            "List uses 'append' or 'override.items: append' but no list by "
                            "that name already exists", item.ctx)
            prev.items.extend(items)
            prev.visibility = index
        elif prev is not None:
            prev.ctx, prev.items, prev.visibility = item.ctx, items, index
        else:
            self.lists[name] = _ListInfo(name, item.ctx, index, index, items)

    def _read_macro(self, item: _Item) -> None:
        name = self._named(item, "macro")
        item.check_keys(_MACRO_KEYS, "macro")
        if not _IDENTIFIER.fullmatch(name):
            self.warn(WarningCode.LOAD_INVALID_MACRO_NAME,
                      "Macro has an invalid name. Macro names should match a regular "
                      "expression: ([a-zA-Z]+[a-zA-Z0-9_]*)", item.ctx)
        cond = _Text.of(item.scalar("condition"))
        cond_ctx = item.file.at(item.node("condition"), "macro condition", parent=item.ctx)
        append = self._append_flag(item)
        to_append, to_replace = self._overrides(item, ("condition",), ("condition",))
        if append and (to_append or to_replace):
            raise _validate(_ERROR_OVERRIDE_APPEND, item.ctx)
        index = self._next_index()
        prev = self.macros.get(name)
        if append or to_append:
            if prev is None:
                raise _Fail(ErrorCode.LOAD_ERR_VALIDATE,
                            "Macro uses 'append' or 'override.condition: append' but no macro "
                            "by that name already exists", item.ctx)
            prev.cond = prev.cond + cond
            prev.visibility = index
        elif prev is not None:
            prev.ctx, prev.cond, prev.cond_ctx, prev.visibility = item.ctx, cond, cond_ctx, index
        else:
            self.macros[name] = _MacroInfo(name, item.ctx, index, index, cond, cond_ctx)

    # rules

    def _read_rule(self, item: _Item) -> None:
        name = self._named(item, "rule")
        item.check_keys(_RULE_KEYS, "rule")
        append = self._append_flag(item)
        to_append, to_replace = self._overrides(item, _RULE_APPENDABLE, _RULE_REPLACEABLE)
        if append and (to_append or to_replace):
            raise _validate(_ERROR_OVERRIDE_APPEND, item.ctx)
        if to_append or to_replace:
            self._read_rule_override(item, name, to_append, to_replace)
        elif append:
            update = _RuleUpdate(item.ctx)
            if item.has("condition"):
                update.cond = _Text.of(item.scalar("condition"))
            if item.has("exceptions"):
                update.exceptions = self._read_exceptions(item, append=True)
            self._ignored(item, {"rule", "append", "condition", "exceptions"}, "'append: true'")
            self._append_rule(name, update)
        elif not any(item.has(k) for k in _RULE_REQUIRED):
            enabled = item.boolean("enabled")
            self.warn(WarningCode.LOAD_DEPRECATED_ITEM, _WARNING_ENABLED, item.ctx)
            self._ignored(item, {"rule", "enabled"},
                          "an item without condition, output, desc or priority")
            prev = self.rules.get(name)
            if prev is None:
                raise _Fail(ErrorCode.LOAD_ERR_VALIDATE,
                            "Rule has 'enabled' key but no rule by that name already exists",
                            item.ctx)
            prev.enabled = enabled
        else:
            self._define_rule(item, name)

    def _ignored(self, item: _Item, used: set[str], form: str) -> None:
        """Warn of keys Falco silently ignores in this form of rule item."""
        for key in item.keys:
            if key not in used:
                self.warn(WarningCode.LOAD_UNKNOWN_KEY,
                          f"Key '{key}' is ignored in {form}", item.key_ctx(key))

    def _cond_ctx(self, item: _Item) -> Context:
        return item.file.at(item.node("condition"), "rule condition", parent=item.ctx)

    def _priority(self, item: _Item) -> Priority:
        text = item.string("priority")
        try:
            return Priority.parse(text)
        except ValueError:
            raise _validate("Invalid priority", item.file.at(item.node("priority"),
                                                              "rule priority",
                                                              parent=item.ctx)) from None

    def _tags(self, item: _Item) -> set[str]:
        return {tag for tag, _ in item.strings("tags")}

    def _define_rule(self, item: _Item, name: str) -> None:
        cond = _Text.of(item.scalar("condition"))
        cond_ctx = self._cond_ctx(item)
        output_scalar = item.scalar("output")
        output = self._trimmed(output_scalar)
        output_ctx = item.file.at(item.node("output"), "rule output", parent=item.ctx)
        desc = item.string("desc")
        priority = self._priority(item)
        source = item.string("source") if item.has("source") else SYSCALL_SOURCE
        info = _RuleInfo(name, item.ctx, 0, 0, source, cond, cond_ctx, output, output_ctx, desc,
                         priority, self._tags(item) if item.has("tags") else set(),
                         self._read_exceptions(item, append=False))
        for key, attr in (("enabled", "enabled"), ("warn_evttypes", "warn_evttypes"),
                          ("skip-if-unknown-filter", "skip_if_unknown_filter"),
                          ("capture", "capture")):
            if item.has(key):
                setattr(info, attr, item.boolean(key))
        for key in ("capture_duration", "capture_events", "capture_filesize"):
            if item.has(key):
                setattr(info, key, item.unsigned(key))
        prev = self.rules.get(name)
        if prev is not None and prev.source != source:
            raise _Fail(ErrorCode.LOAD_ERR_VALIDATE,
                        "Rule has been re-defined with a different source", item.ctx)
        if source != SYSCALL_SOURCE:
            self.warn(WarningCode.LOAD_UNKNOWN_SOURCE, f"Unknown source {source}, skipping",
                      item.ctx)
        for ex in info.exceptions:
            self._validate_whole_exception(ex, source == SYSCALL_SOURCE)
        info.visibility = self._next_index()
        info.index = prev.index if prev is not None else info.visibility
        self.rules[name] = info

    @staticmethod
    def _trimmed(scalar: _Scalar) -> _Text:
        """An output as Falco keeps it, trimmed, still mapped to the file."""
        lead = len(scalar.value) - len(scalar.value.lstrip())
        return _Text(scalar.value.strip(), ((-lead, scalar),))

    def _read_rule_override(self, item: _Item, name: str, to_append: set[str],
                            to_replace: set[str]) -> None:
        expected = {k for k in (*_RULE_APPENDABLE, *_RULE_REPLACEABLE) if item.has(k)}

        def take(key: str, kind: str) -> bool:
            ops = to_append if kind == "append" else to_replace
            if key not in ops:
                return False
            if key not in expected:
                raise _validate(f"An {kind} override for '{key}' was specified but '{key}' is "
                                "not defined", item.ctx)
            expected.discard(key)
            return True

        for kind in ("append", "replace"):
            if not (to_append if kind == "append" else to_replace):
                continue
            update = _RuleUpdate(item.ctx)
            if take("condition", kind):
                update.cond = _Text.of(item.scalar("condition"))
                update.cond_ctx = self._cond_ctx(item)
            if take("exceptions", kind):
                update.exceptions = self._read_exceptions(item, append=kind == "append")
            if take("output", kind):
                update.output = self._trimmed(item.scalar("output"))
                update.output_ctx = item.file.at(item.node("output"), "rule output",
                                                 parent=item.ctx)
            if take("desc", kind):
                update.desc = item.string("desc")
            if take("tags", kind):
                update.tags = self._tags(item)
            if take("priority", kind):
                update.priority = self._priority(item)
            for key, attr in (("enabled", "enabled"), ("warn_evttypes", "warn_evttypes"),
                              ("skip-if-unknown-filter", "skip_if_unknown_filter"),
                              ("capture", "capture")):
                if take(key, kind):
                    setattr(update, attr, item.boolean(key))
            for key in ("capture_duration", "capture_events", "capture_filesize"):
                if take(key, kind):
                    setattr(update, key, item.unsigned(key))
            if kind == "append":
                self._append_rule(name, update)
            else:
                self._replace_rule(name, update)
        if expected:
            key = sorted(expected)[0]
            raise _validate(f"Unexpected key '{key}': no corresponding entry under 'override' "
                            "is defined.", item.key_ctx(key, "overrides"))
        self._ignored(item, {"rule", "override", *_RULE_APPENDABLE, *_RULE_REPLACEABLE},
                      "an 'override' item")

    def _append_rule(self, name: str, update: _RuleUpdate) -> None:
        prev = self.rules.get(name)
        if prev is None:
            raise _Fail(ErrorCode.LOAD_ERR_VALIDATE,
                        "Rule uses 'append' or 'override.<key>: append' but no rule by that "
                        "name already exists", update.ctx)
        if not update.has_any_value():
            raise _Fail(ErrorCode.LOAD_ERR_VALIDATE,
                        "Appended rule must have exceptions or condition property", update.ctx)
        if update.cond is not None and update.cond.text:
            prev.cond = prev.cond + update.cond
        if update.output is not None and update.output.text:
            prev.output = prev.output + update.output
        if update.desc:
            prev.desc += " " + update.desc
        if update.tags is not None:
            prev.tags |= update.tags
        for ex in update.exceptions or ():
            old = next((e for e in prev.exceptions if e.name == ex.name), None)
            if old is None:
                if not ex.fields.valid:
                    raise _Fail(ErrorCode.LOAD_ERR_VALIDATE,
                                "Rule exception must have fields property with a list of fields",
                                ex.ctx)
                if not ex.values:
                    raise _Fail(ErrorCode.LOAD_ERR_VALIDATE,
                                "Rule exception must have values property with a list of values",
                                ex.ctx)
                self._validate_exception(ex, prev.source == SYSCALL_SOURCE)
                prev.exceptions.append(ex)
            else:
                if ex.fields.valid:
                    raise _Fail(ErrorCode.LOAD_ERR_VALIDATE,
                                "Can not append exception fields to existing exception, only "
                                "values", ex.ctx)
                if ex.comps.valid:
                    raise _Fail(ErrorCode.LOAD_ERR_VALIDATE,
                                "Can not append exception comps to existing exception, only "
                                "values", ex.ctx)
                old.values.extend(ex.values)
        prev.visibility = self._next_index()

    def _replace_rule(self, name: str, update: _RuleUpdate) -> None:
        prev = self.rules.get(name)
        if prev is None:
            raise _Fail(ErrorCode.LOAD_ERR_VALIDATE,
                        "An 'override.<key>: replace' to a rule was requested but no rule by "
                        "that name already exists", update.ctx)
        if not update.has_any_value():
            raise _Fail(ErrorCode.LOAD_ERR_VALIDATE,
                        "The rule must have at least one field that can be replaced", update.ctx)
        if update.cond is not None and update.cond_ctx is not None:
            prev.cond, prev.cond_ctx = update.cond, update.cond_ctx
        if update.output is not None and update.output_ctx is not None:
            prev.output, prev.output_ctx = update.output, update.output_ctx
        if update.exceptions is not None:
            for ex in update.exceptions:
                self._validate_whole_exception(ex, prev.source == SYSCALL_SOURCE)
            prev.exceptions = update.exceptions
        for attr in _UPDATABLE:
            value = getattr(update, attr)
            if value is not None and attr not in ("cond", "output", "exceptions"):
                setattr(prev, attr, value)
        prev.visibility = self._next_index()

    # exceptions

    def _read_exceptions(self, item: _Item, append: bool) -> list[_Exception]:
        if not item.has("exceptions"):
            return []
        node = item.node("exceptions")
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
            return []
        ectx = item.file.at(node, "exceptions", parent=item.ctx)
        if not isinstance(node, yaml.SequenceNode):
            raise _validate("Rule exceptions must be a sequence", ectx)
        out: list[_Exception] = []
        for sub in node.value:
            ex = _mapping(sub, item.file, "exception", "Rule exception must be a mapping",
                          parent=ectx)
            name = ex.string("name")
            ex.ctx = item.file.at(sub, "exception", name, item.ctx)
            ex.check_keys(_EXCEPTION_KEYS, "rule exception")
            if any(e.name == name for e in out):
                self.warn(WarningCode.LOAD_EXCEPTION_NAME_NOT_UNIQUE,
                          f"Multiple definitions of exception '{name}' in the same rule", ex.ctx)
            if ex.has("fields"):
                fields = self._entry(ex.node("fields"), ex, ex.value_ctx("fields"))
            elif append:
                fields = _Entry()
            else:
                raise _validate("Item has no mapping for key 'fields'", ex.ctx)
            comps = (self._entry(ex.node("comps"), ex, ex.value_ctx("comps"))
                     if ex.has("comps") else _Entry())
            values: list[_Entry] = []
            if ex.has("values"):
                vnode = ex.node("values")
                vctx = item.file.at(vnode, "exception values", parent=ex.ctx)
                if not isinstance(vnode, yaml.SequenceNode):
                    raise _validate("Rule exception values must be a sequence", vctx)
                values = [self._entry(v, ex, item.file.at(v, "exception value", parent=vctx))
                          for v in vnode.value]
            elif append:
                self.warn(WarningCode.LOAD_APPEND_NO_VALUES,
                          "Overriding/appending exception with no values", ex.ctx)
            out.append(_Exception(name, ex.ctx, fields, comps, values))
        return out

    def _entry(self, node: yaml.Node, ex: _Item, ctx: Context) -> _Entry:
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _NULL_TAG:
                return _Entry()  # Falco leaves an empty entry: caught as missing later
            if node.value == "":
                raise _validate("Value must be non-empty", ctx)
            return _Entry(False, node.value)
        if isinstance(node, yaml.SequenceNode):
            return _Entry(True, items=[
                self._entry(v, ex, ex.file.at(v, "exception", parent=ctx)) for v in node.value])
        raise _validate("Value is not a string or a sequence", ctx)

    def _validate_whole_exception(self, ex: _Exception, check_fields: bool) -> None:
        """An exception that defines a rule's exception, not one adding values."""
        if not ex.fields.valid:
            raise _Fail(ErrorCode.LOAD_ERR_VALIDATE,
                        "Rule exception item must have fields property with a list of fields",
                        ex.ctx)
        self._validate_exception(ex, check_fields)

    def _validate_exception(self, ex: _Exception, check_fields: bool) -> None:
        """Falco's checks of an exception's fields and comps, setting the
        default comps: ``=`` for each of a list of fields, ``in`` for one."""
        def fail(message: str) -> _Fail:
            return _Fail(ErrorCode.LOAD_ERR_VALIDATE, message, ex.ctx)

        if ex.fields.is_list:
            if not ex.comps.valid:
                ex.comps = _Entry(True, items=[_Entry(False, "=") for _ in ex.fields.items])
            if len(ex.fields.items) != len(ex.comps.items):
                raise fail("Fields and comps lists must have equal length")
            for comp in ex.comps.items:
                if comp.item not in _OPERATORS:
                    raise fail(f"'{comp.item}' is not a supported comparison operator")
            names = [f.item for f in ex.fields.items]
        else:
            if not ex.comps.valid:
                ex.comps = _Entry(False, "in")
            if ex.comps.is_list:
                raise fail("Fields and comps must both be strings")
            if ex.comps.item not in _LIST_OPS:
                raise fail("When fields is a single value, comps must be one of (in, pmatch, "
                           "intersects)")
            names = [ex.fields.item]
        if check_fields:
            for name in names:
                if _known_field(name) is None:
                    raise fail(f"'{name}' is not a supported filter field")

    # compiling

    def _compile(self) -> list[Rule]:
        for macro in sorted(self.macros.values(), key=lambda m: m.index):
            # Every macro must resolve, used or not, as in Falco; fields are
            # only checked in the rules that use it.
            self._broken = False
            tree = self._macro_tree(macro)
            if tree is not None:
                self._resolve(tree, self._macro_origin(macro), macro.visibility, (), None)
            if tree is None or self._broken:
                self._failed_macros.add(macro.name)
        rules = []
        for info in sorted(self.rules.values(), key=lambda r: r.index):
            rule = self._compile_rule(info)
            if rule is not None:
                rules.append(rule)
        if self.errors:
            return rules  # as Falco, whose compile stops at the first error
        for macro in self.macros.values():
            if not macro.used:
                self.warn(WarningCode.LOAD_UNUSED_MACRO,
                          "Macro not referred to by any other rule/macro", macro.ctx)
        for lst in self.lists.values():
            if not lst.used:
                self.warn(WarningCode.LOAD_UNUSED_LIST,
                          "List not referred to by any other rule/macro", lst.ctx)
        return rules

    def _macro_origin(self, macro: _MacroInfo) -> _Origin:
        return _Origin(macro.cond, macro.cond_ctx)

    def _fault(self, code: str, message: str, ctx: Context) -> None:
        """An error that makes the condition being compiled unusable."""
        self._broken = True
        self.error(code, message, ctx)

    def _parse(self, origin: _Origin) -> ast.Condition | None:
        try:
            return parse_condition(origin.text.text)
        except ConditionSyntaxError as exc:
            self._fault(ErrorCode.LOAD_ERR_COMPILE_CONDITION, origin.say(exc.reason),
                        origin.at(exc.offset))
            return None

    def _macro_tree(self, macro: _MacroInfo) -> ast.Condition | None:
        if macro.name not in self._macro_trees:
            self._macro_trees[macro.name] = self._parse(self._macro_origin(macro))
        return self._macro_trees[macro.name]

    def _compile_rule(self, info: _RuleInfo) -> Rule | None:
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
                    self._add(self.errors, problem)
            return None
        if cond is None or self._broken:
            return None
        if info.warn_evttypes and _matches_too_many_evttypes(cond):
            self.warn(WarningCode.LOAD_NO_EVTTYPE,
                      "Rule matches too many evt.type values. This has a significant "
                      "performance penalty.", info.ctx)
        return replace(base, condition=cond, output=output)

    def _exception_clauses(self, info: _RuleInfo
                           ) -> list[tuple[ast.Condition, _Origin]] | None:
        """Each exception as the condition text Falco builds for it, parsed:
        the rule's condition becomes ``(condition) and not <clause>...``."""
        out = []
        failed = False
        for ex in info.exceptions:
            try:
                text = _exception_text(ex)
            except _Fail as fail:
                self._fault(fail.code, fail.message, fail.ctx)
                failed = True
                continue
            if not text:
                continue
            origin = _Origin(_Text.built(text), ex.ctx, f"in exception condition: {text}")
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
                        origin.say(f"Undefined macro '{node.name}' used in filter."),
                        origin.at(node.pos))
            return node
        if node.name in path:
            self._fault(ErrorCode.LOAD_ERR_VALIDATE,
                        origin.say(f"reference loop in macro '{node.name}'"),
                        origin.at(node.pos))
            return node
        macro.used = True
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
        return resolved

    def _resolve_word(self, op: str, word: ast.Word, origin: _Origin
                      ) -> ast.Word | ast.ListValue:
        """A single word on the right: Falco substitutes list names into the
        condition text, so a list name works outside parentheses only when
        its single item reads as what the operator takes there."""
        expanded = self._list_ref(word, origin)
        if op in _LIST_OPS:
            if expanded is None:
                return ast.ListValue((word,), pos=word.pos)
            if len(expanded) == 1 and not expanded[0].quoted \
                    and _IDENTIFIER.fullmatch(expanded[0].text):
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
                               f"{', '.join(sorted(_LIST_OPS))} compare with a list"),
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
        lst.used = True
        if name in path:
            self._fault(ErrorCode.LOAD_ERR_VALIDATE, f"reference loop in list '{name}'", ctx)
            return None
        if name in self._list_words:
            return self._list_words[name]
        self._list_words[name] = None  # a failure stays one
        words: list[ast.Word] = []
        ok = True
        for text, ictx in lst.items:
            ref = self.lists.get(text)
            if ref is not None and ref.index < lst.visibility:
                sub = self._expand_list(text, (*path, name), ictx)
                ok = ok and sub is not None
                words.extend(sub or ())
                continue
            if not text.strip() and len(lst.items) > 1:
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
                    self._add(self.errors, problem)  # a misused field: never skipped
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
            if _FIELD.fullmatch(compact) and split_field(compact).name in FIELDS:
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

    def _check_output(self, info: _RuleInfo, unknown: list[Problem]) -> str:
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
                self._add(self.errors, problem)

        if not text:
            fail(0, "empty formatting token")
        for offset, token, reason in _output_tokens(text):
            if reason is None:
                continue
            fail(offset, f"invalid formatting token '%{token}': {reason}",
                 unknown_field=reason.startswith("unknown field"))
        return text


# -- helpers for the compiling stage -----------------------------------------

def _exception_text(ex: _Exception) -> str:
    """The condition Falco builds for one exception (rule_loader_compiler.cpp:
    build_rule_exception_infos): values are written in as text, quoted only
    when they hold a blank, so a value may name a list."""
    def fail(message: str) -> _Fail:
        return _Fail(ErrorCode.LOAD_ERR_VALIDATE, message, ex.ctx)

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
            elif comp.item in _LIST_OPS:
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
        m = _FIELD.match(rest)
        if m is None:
            yield start, rest[:20], "unknown field"
            j += 1
            continue
        for size in range(m.end(), 0, -1):
            if _known_field(rest[:size]) is not None:
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
