"""The reading stage: rules files' YAML to typed items, each with its
context (Falco's ``rule_loader_reader.cpp``).

:func:`open_source` gets a file's text; :func:`read` goes through every
item of every YAML document in it, in order. Each item's kind, keys and
value types are checked, with Falco's messages, and the item is handed to
the :class:`~.collector.Collector` as soon as it is read, so that an item
always sees what the items before it defined: a list, macro or rule
definition, an append or override (``append: true`` or ``override:``), the
deprecated ``enabled``-only rule item, or a required engine or plugin
version. A problem that makes an item unusable is recorded and reading goes
on with the next item; deprecated or ignored keys and unknown items are
warnings.

Every context says where the item, key or value is (file, line, column),
what kind of thing it is and its name, inside its parent's context (a
rule's exceptions inside the rule, and so on up to the file).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, cast

import yaml

from ..inputs import GuardedLoader, InputError, read_text
from .collector import Collector
from .items import (
    IDENTIFIER,
    SYSCALL_SOURCE,
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
    RulesFile,
    RuleUpdate,
    Scalar,
    Text,
    semver,
)
from .model import Context, ErrorCode, PluginVersion, Priority, WarningCode

__all__ = ["MAX_RULES_FILE_BYTES", "MAX_RULES_ITEMS", "Source", "open_source", "read",
           "source_name"]

#: A rules file larger is refused before it is read (Falco's whole stock
#: ruleset is about 0.3 MB).
MAX_RULES_FILE_BYTES: Final = 16 << 20
# top-level items (rules, macros, lists) read from one file; the stock
# ruleset has a few hundred, and every rule costs each event it could match
MAX_RULES_ITEMS: Final = 20_000

Source = str | Path | tuple[str, str]
"""A rules file: a path, or a ``(name, yaml text)`` pair."""


def source_name(source: Source) -> str:
    """The name contexts and the result give `source`."""
    return source[0] if isinstance(source, tuple) else str(source)


def open_source(source: Source, problems: Problems) -> RulesFile | None:
    """`source`'s text, or None when it cannot be read (an error says why)."""
    name = source_name(source)
    if isinstance(source, tuple):
        return RulesFile(name, source[1])
    try:
        return RulesFile(name, read_text(source, MAX_RULES_FILE_BYTES))
    except OSError as exc:
        problems.error(ErrorCode.LOAD_ERR_FILE_READ, f"Could not read {name}: {exc}",
                       Context(name, 0, 0, "rules content"))
    except InputError as exc:
        problems.error(ErrorCode.LOAD_ERR_FILE_READ, f"Could not read {name}: {exc}",
                       Context(name, exc.line, exc.column, "rules content"))
    return None


def read(file: RulesFile, collector: Collector, problems: Problems) -> None:
    """Read every item of `file`, in order, into `collector`; problems go
    to `problems`."""
    _Reader(collector, problems).read(file)


# -- YAML nodes, and where they are --------------------------------------------

_NULL_TAG: Final = "tag:yaml.org,2002:null"
_TRUE: Final = frozenset({"y", "yes", "true", "on"})  # yaml-cpp's bool spellings
_FALSE: Final = frozenset({"n", "no", "false", "off"})


def _at(file: RulesFile, node: yaml.Node, kind: str, name: str = "",
        parent: Context | None = None) -> Context:
    return file.context(node.start_mark.index, kind, name, parent)


def _scalar(node: yaml.ScalarNode, file: RulesFile) -> Scalar:
    return Scalar(node.value, node.start_mark.index, node.end_mark.index, node.style, file)


def _validate(message: str, ctx: Context) -> ItemError:
    return ItemError(ErrorCode.LOAD_ERR_YAML_VALIDATE, message, ctx)


class _Item:
    """A YAML mapping (a rules file item, an exception, a plugin entry):
    typed access to its keys with Falco's messages for what is wrong."""

    def __init__(self, node: yaml.MappingNode, file: RulesFile, ctx: Context) -> None:
        self.file = file
        self.ctx = ctx
        self.keys: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise _validate("Keys must be strings", _at(file, key, "value for", parent=ctx))
            if key.value in self.keys:
                raise _validate(f"Key '{key.value}' appears twice",
                                _at(file, key, "value for", key.value, ctx))
            self.keys[key.value] = (key, value)

    def has(self, key: str) -> bool:
        return key in self.keys

    def node(self, key: str) -> yaml.Node:
        return self.keys[key][1]

    def at(self, node: yaml.Node, kind: str, name: str = "",
           parent: Context | None = None) -> Context:
        return _at(self.file, node, kind, name, parent)

    def value_ctx(self, key: str) -> Context:
        return self.at(self.node(key), "value for", key, self.ctx)

    def key_ctx(self, key: str, kind: str = "value for") -> Context:
        return self.at(self.keys[key][0], kind, key, self.ctx)

    def check_keys(self, allowed: frozenset[str], what: str) -> None:
        for key in self.keys:
            if key not in allowed:
                raise _validate(
                    f"Unexpected key '{key}': a {what} has no such key (it has: "
                    f"{', '.join(sorted(allowed))})", self.key_ctx(key))

    def scalar(self, key: str) -> Scalar:
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
        return _scalar(node, self.file)

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
            ictx = self.at(sub, "list item", parent=vctx)
            if not isinstance(sub, yaml.ScalarNode) or sub.tag == _NULL_TAG:
                raise _validate("sequence value is not scalar", ictx)
            out.append((sub.value, ictx))
        return out


def _mapping(node: yaml.Node, file: RulesFile, kind: str, message: str, name: str = "",
             parent: Context | None = None) -> _Item:
    ctx = _at(file, node, kind, name, parent)
    if not isinstance(node, yaml.MappingNode):
        raise _validate(message, ctx)
    return _Item(node, file, ctx)


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

# A rule's boolean and unsigned keys, and the RuleItem/RuleUpdate attribute of each.
_RULE_BOOLEANS: Final = (("enabled", "enabled"), ("warn_evttypes", "warn_evttypes"),
                         ("skip-if-unknown-filter", "skip_if_unknown_filter"),
                         ("capture", "capture"))
_RULE_UNSIGNED: Final = ("capture_duration", "capture_events", "capture_filesize")

_BARESTR: Final = re.compile(r"[^()\"'\t\n\v\f\r =,]+")

_WARNING_APPEND: Final = ("'append' key is deprecated. Add an 'append' entry "
                          "(e.g. 'condition: append') under 'override' instead.")
_WARNING_ENABLED: Final = ("The standalone 'enabled' key usage is deprecated. The correct "
                           "approach requires also a 'replace' entry under the 'override' key "
                           "(i.e. 'enabled: replace').")
_ERROR_OVERRIDE_APPEND: Final = ("Keys 'override' and 'append: true' cannot be used together. "
                                 "Add an 'append' entry (e.g. 'condition: append') under "
                                 "'override' instead.")


class _Deferred:
    """Stands for the collector and the problems while a file is read: the
    calls made of either, item by item, replayed in order once the file has
    parsed. The collector refuses some (ItemError: an append to nothing,
    ...); as when it is called at once, that ends its item."""

    def __init__(self) -> None:
        self.items: list[list[tuple[bool, str, tuple[Any, ...]]]] = [[]]
        self.collector = cast(Collector, _Recorder(self, to_problems=False))
        self.problems = cast(Problems, _Recorder(self, to_problems=True))

    def next_item(self) -> None:
        self.items.append([])

    def replay(self, collector: Collector, problems: Problems) -> None:
        for calls in self.items:
            for to_problems, name, args in calls:
                try:
                    getattr(problems if to_problems else collector, name)(*args)
                except ItemError as fail:
                    problems.error(fail.code, fail.message, fail.ctx)
                    break


class _Recorder:
    def __init__(self, deferred: _Deferred, *, to_problems: bool) -> None:
        self._deferred = deferred
        self._to_problems = to_problems

    def __getattr__(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self._deferred.items[-1].append((self._to_problems, name, args))
        return record


class _Reader:
    """Reads files into one collector."""

    def __init__(self, collector: Collector, problems: Problems) -> None:
        self.collector = collector
        self.problems = problems

    def warn(self, code: str, message: str, ctx: Context) -> None:
        self.problems.warn(code, message, ctx)

    def read(self, file: RulesFile) -> None:
        # Items are composed and read one at a time (a whole file's YAML
        # nodes took gigabytes for 100k rules), and what they give the
        # collector and the problems waits for the end of the file: a YAML
        # error anywhere leaves that one error, and nothing of the file, as
        # Falco's whole-file parse does.
        collector, problems = self.collector, self.problems
        deferred = _Deferred()
        self.collector, self.problems = deferred.collector, deferred.problems
        loader: GuardedLoader | None = None
        try:
            loader = GuardedLoader(file.text)   # (it checks the characters first)
            items = 0
            for in_sequence, node in loader.top_items():
                if not in_sequence:
                    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
                        continue
                    deferred.next_item()   # (not the last item's: its failure ends it)
                    message = ("Rules content is not yaml array of objects"
                               if isinstance(node, yaml.MappingNode) else
                               "Rules content is not yaml")
                    self.problems.error(ErrorCode.LOAD_ERR_YAML_VALIDATE, message, file.root)
                    continue
                if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
                    continue
                items += 1
                if items > MAX_RULES_ITEMS:
                    # refused here, not after the rest is parsed
                    problems.error(ErrorCode.LOAD_ERR_YAML_VALIDATE,
                                   f"more than {MAX_RULES_ITEMS:,} items (rules, macros, lists) "
                                   "in one file; bpfguard reads at most that many",
                                   _at(file, node, "rules content"))
                    return
                deferred.next_item()
                try:
                    self._read_item(node, file)
                except ItemError as fail:
                    self.problems.error(fail.code, fail.message, fail.ctx)
        except InputError as exc:
            problems.error(ErrorCode.LOAD_ERR_YAML_PARSE, str(exc),
                           file.context(exc.offset, "rules content"))
            return
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            ctx = file.context(mark.index, "rules content") if mark else file.root
            message = " ".join(m for m in (exc.context, exc.problem) if m) or str(exc)
            problems.error(ErrorCode.LOAD_ERR_YAML_PARSE, message, ctx)
            return
        except yaml.YAMLError as exc:
            ctx = file.context(getattr(exc, "position", 0), "rules content")
            problems.error(ErrorCode.LOAD_ERR_YAML_PARSE, str(exc), ctx)
            return
        finally:
            if loader is not None:
                loader.dispose()
            self.collector, self.problems = collector, problems
        deferred.replay(collector, problems)

    def _read_item(self, node: yaml.Node, file: RulesFile) -> None:
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
        version = (0, int(text), 0) if text.isdigit() else semver(text)
        if version is None:
            raise _validate(f"Unable to parse engine version '{text}' as a semver string. "
                            'Expected "x.y.z" semver format.', ctx)
        self.collector.require_engine(EngineRequirement(version, ctx))

    def _read_plugin_versions(self, item: _Item) -> None:
        item.check_keys(frozenset({"required_plugin_versions"}), "required_plugin_versions item")
        node = item.node("required_plugin_versions")
        ctx = item.at(node, "required plugin versions", parent=item.ctx)
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
            self.collector.require_plugins(PluginRequirement(tuple(alternatives), entry.ctx))

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
            kctx = item.at(key_node, "overrides", key, item.ctx)
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
                                item.at(op_node, "value for", key, octx))
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
        read = ListItem(name, item.ctx, items)
        if append or to_append:
            self.collector.append_list(read)
        else:
            self.collector.define_list(read)

    def _read_macro(self, item: _Item) -> None:
        name = self._named(item, "macro")
        item.check_keys(_MACRO_KEYS, "macro")
        if not IDENTIFIER.fullmatch(name):
            self.warn(WarningCode.LOAD_INVALID_MACRO_NAME,
                      "Macro has an invalid name. Macro names should match a regular "
                      "expression: ([a-zA-Z]+[a-zA-Z0-9_]*)", item.ctx)
        cond = Text.of(item.scalar("condition"))
        cond_ctx = item.at(item.node("condition"), "macro condition", parent=item.ctx)
        append = self._append_flag(item)
        to_append, to_replace = self._overrides(item, ("condition",), ("condition",))
        if append and (to_append or to_replace):
            raise _validate(_ERROR_OVERRIDE_APPEND, item.ctx)
        read = MacroItem(name, item.ctx, cond, cond_ctx)
        if append or to_append:
            self.collector.append_macro(read)
        else:
            self.collector.define_macro(read)

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
            update = RuleUpdate(name, item.ctx)
            if item.has("condition"):
                update.cond = Text.of(item.scalar("condition"))
            if item.has("exceptions"):
                update.exceptions = self._read_exceptions(item, append=True)
            self._ignored(item, {"rule", "append", "condition", "exceptions"}, "'append: true'")
            self.collector.append_rule(update)
        elif not any(item.has(k) for k in _RULE_REQUIRED):
            enabled = item.boolean("enabled")
            self.warn(WarningCode.LOAD_DEPRECATED_ITEM, _WARNING_ENABLED, item.ctx)
            self._ignored(item, {"rule", "enabled"},
                          "an item without condition, output, desc or priority")
            self.collector.enable_rule(RuleEnable(name, item.ctx, enabled))
        else:
            self.collector.define_rule(self._rule_definition(item, name))

    def _ignored(self, item: _Item, used: set[str], form: str) -> None:
        """Warn of keys Falco silently ignores in this form of rule item."""
        for key in item.keys:
            if key not in used:
                self.warn(WarningCode.LOAD_UNKNOWN_KEY,
                          f"Key '{key}' is ignored in {form}", item.key_ctx(key))

    @staticmethod
    def _cond_ctx(item: _Item) -> Context:
        return item.at(item.node("condition"), "rule condition", parent=item.ctx)

    @staticmethod
    def _output_ctx(item: _Item) -> Context:
        return item.at(item.node("output"), "rule output", parent=item.ctx)

    @staticmethod
    def _priority(item: _Item) -> Priority:
        text = item.string("priority")
        try:
            return Priority.parse(text)
        except ValueError:
            raise _validate("Invalid priority", item.at(item.node("priority"), "rule priority",
                                                        parent=item.ctx)) from None

    @staticmethod
    def _tags(item: _Item) -> set[str]:
        return {tag for tag, _ in item.strings("tags")}

    @staticmethod
    def _trimmed(scalar: Scalar) -> Text:
        """An output as Falco keeps it, trimmed, still mapped to the file."""
        lead = len(scalar.value) - len(scalar.value.lstrip())
        return Text(scalar.value.strip(), ((-lead, scalar),))

    def _rule_definition(self, item: _Item, name: str) -> RuleItem:
        cond = Text.of(item.scalar("condition"))
        cond_ctx = self._cond_ctx(item)
        output = self._trimmed(item.scalar("output"))
        output_ctx = self._output_ctx(item)
        desc = item.string("desc")
        priority = self._priority(item)
        source = item.string("source") if item.has("source") else SYSCALL_SOURCE
        rule = RuleItem(name, item.ctx, source, cond, cond_ctx, output, output_ctx, desc,
                        priority, self._tags(item) if item.has("tags") else set(),
                        self._read_exceptions(item, append=False))
        for key, attr in _RULE_BOOLEANS:
            if item.has(key):
                setattr(rule, attr, item.boolean(key))
        for key in _RULE_UNSIGNED:
            if item.has(key):
                setattr(rule, key, item.unsigned(key))
        return rule

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

        # The append is handed over before the replace keys are read: a
        # problem in those leaves the append done.
        for kind in ("append", "replace"):
            if not (to_append if kind == "append" else to_replace):
                continue
            update = RuleUpdate(name, item.ctx)
            if take("condition", kind):
                update.cond = Text.of(item.scalar("condition"))
                update.cond_ctx = self._cond_ctx(item)
            if take("exceptions", kind):
                update.exceptions = self._read_exceptions(item, append=kind == "append")
            if take("output", kind):
                update.output = self._trimmed(item.scalar("output"))
                update.output_ctx = self._output_ctx(item)
            if take("desc", kind):
                update.desc = item.string("desc")
            if take("tags", kind):
                update.tags = self._tags(item)
            if take("priority", kind):
                update.priority = self._priority(item)
            for key, attr in _RULE_BOOLEANS:
                if take(key, kind):
                    setattr(update, attr, item.boolean(key))
            for key in _RULE_UNSIGNED:
                if take(key, kind):
                    setattr(update, key, item.unsigned(key))
            if kind == "append":
                self.collector.append_rule(update)
            else:
                self.collector.replace_rule(update)
        if expected:
            key = sorted(expected)[0]
            raise _validate(f"Unexpected key '{key}': no corresponding entry under 'override' "
                            "is defined.", item.key_ctx(key, "overrides"))
        self._ignored(item, {"rule", "override", *_RULE_APPENDABLE, *_RULE_REPLACEABLE},
                      "an 'override' item")

    # exceptions

    def _read_exceptions(self, item: _Item, append: bool) -> list[ExceptionItem]:
        if not item.has("exceptions"):
            return []
        node = item.node("exceptions")
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
            return []
        ectx = item.at(node, "exceptions", parent=item.ctx)
        if not isinstance(node, yaml.SequenceNode):
            raise _validate("Rule exceptions must be a sequence", ectx)
        out: list[ExceptionItem] = []
        for sub in node.value:
            ex = _mapping(sub, item.file, "exception", "Rule exception must be a mapping",
                          parent=ectx)
            name = ex.string("name")
            ex.ctx = item.at(sub, "exception", name, item.ctx)
            ex.check_keys(_EXCEPTION_KEYS, "rule exception")
            if any(e.name == name for e in out):
                self.warn(WarningCode.LOAD_EXCEPTION_NAME_NOT_UNIQUE,
                          f"Multiple definitions of exception '{name}' in the same rule", ex.ctx)
            if ex.has("fields"):
                fields = self._entry(ex.node("fields"), ex, ex.value_ctx("fields"))
            elif append:
                fields = Entry()
            else:
                raise _validate("Item has no mapping for key 'fields'", ex.ctx)
            comps = (self._entry(ex.node("comps"), ex, ex.value_ctx("comps"))
                     if ex.has("comps") else Entry())
            values: list[Entry] = []
            if ex.has("values"):
                vnode = ex.node("values")
                vctx = item.at(vnode, "exception values", parent=ex.ctx)
                if not isinstance(vnode, yaml.SequenceNode):
                    raise _validate("Rule exception values must be a sequence", vctx)
                values = [self._entry(v, ex, item.at(v, "exception value", parent=vctx))
                          for v in vnode.value]
            elif append:
                self.warn(WarningCode.LOAD_APPEND_NO_VALUES,
                          "Overriding/appending exception with no values", ex.ctx)
            out.append(ExceptionItem(name, ex.ctx, fields, comps, values))
        return out

    def _entry(self, node: yaml.Node, ex: _Item, ctx: Context) -> Entry:
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _NULL_TAG:
                return Entry()  # Falco leaves an empty entry: caught as missing later
            if node.value == "":
                raise _validate("Value must be non-empty", ctx)
            return Entry(False, node.value)
        if isinstance(node, yaml.SequenceNode):
            return Entry(True, items=[
                self._entry(v, ex, ex.at(v, "exception", parent=ctx)) for v in node.value])
        raise _validate("Value is not a string or a sequence", ctx)
