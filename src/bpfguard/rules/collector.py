"""The collecting stage: rules file items applied, in order, to what earlier
items defined (Falco's ``rule_loader_collector.cpp``).

The reader hands each item over as it reads it, through one method per
kind of change:

* ``define_*``: a definition replaces an earlier one of the same name but
  keeps its place in the order of definitions (a rule may not change its
  source);
* ``append_*`` and :meth:`Collector.replace_rule`: change an existing item,
  an error if there is none. Appending to a rule adds to its condition,
  output, description, tags and exceptions (new exceptions, or values of
  existing ones); replacing sets what the update brings;
* :meth:`Collector.enable_rule`: the deprecated ``enabled``-only item;
* ``require_*``: the engine and plugin versions the files ask for. The
  engine version is checked here, as Falco does, since it is known; plugin
  requirements are only checked well-formed, and left for the loader to
  check against the plugins bpfguard provides.

Rule exceptions are checked here, where the rule they belong to is known
(its source decides whether fields are checked), and get their default
comps. A problem that makes the item unusable raises
:class:`~.items.ItemError`, which the reader records; warnings go to the
shared :class:`~.items.Problems`. :meth:`Collector.collected` hands the
result to the resolver.
"""

from __future__ import annotations

from .items import (
    LIST_OPS,
    OPERATORS,
    SYSCALL_SOURCE,
    UPDATABLE,
    Collected,
    Defined,
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
    known_field,
    semver,
)
from .model import ErrorCode, WarningCode

__all__ = ["Collector"]


class Collector:
    """The items of one load, as defined and changed so far."""

    def __init__(self, engine_version: str, problems: Problems) -> None:
        self.engine_version = engine_version
        self.problems = problems
        self._index = 0
        self._lists: dict[str, Defined[ListItem]] = {}
        self._macros: dict[str, Defined[MacroItem]] = {}
        self._rules: dict[str, Defined[RuleItem]] = {}
        self._engine_required: EngineRequirement | None = None
        self._plugins: list[PluginRequirement] = []

    def collected(self) -> Collected:
        """What has been collected (not a copy: collect no more after)."""
        return Collected(self._lists, self._macros, self._rules, self._engine_required,
                         tuple(self._plugins))

    def _next_index(self) -> int:
        self._index += 1
        return self._index - 1

    # required versions

    def require_engine(self, req: EngineRequirement) -> None:
        ours = semver(self.engine_version)
        if ours is None or ours[0] != req.version[0] or ours < req.version:
            raise ItemError(ErrorCode.LOAD_ERR_VALIDATE,
                            f"Rules require engine version {req.text}, but "
                            f"engine version is {self.engine_version}", req.ctx)
        if self._engine_required is None or self._engine_required.version < req.version:
            self._engine_required = req

    def require_plugins(self, req: PluginRequirement) -> None:
        seen: set[str] = set()
        for alt in req.alternatives:
            if semver(alt.version) is None:
                raise ItemError(ErrorCode.LOAD_ERR_VALIDATE,
                                f"Invalid required version '{alt.version}' for plugin "
                                f"'{alt.name}'", req.ctx)
            if alt.name in seen:
                raise ItemError(ErrorCode.LOAD_ERR_VALIDATE,
                                "Defined multiple alternative version requirements for plugin "
                                f"'{alt.name}'", req.ctx)
            seen.add(alt.name)
        self._plugins.append(req)

    # lists and macros

    def define_list(self, item: ListItem) -> None:
        index = self._next_index()
        prev = self._lists.get(item.name)
        if prev is not None:
            prev.item, prev.visibility = item, index
        else:
            self._lists[item.name] = Defined(item, index, index)

    def append_list(self, item: ListItem) -> None:
        index = self._next_index()
        prev = self._lists.get(item.name)
        if prev is None:
            raise ItemError(ErrorCode.LOAD_ERR_VALIDATE,
                            "List uses 'append' or 'override.items: append' but no list by "
                            "that name already exists", item.ctx)
        prev.item.items.extend(item.items)
        prev.visibility = index

    def define_macro(self, item: MacroItem) -> None:
        index = self._next_index()
        prev = self._macros.get(item.name)
        if prev is not None:
            prev.item, prev.visibility = item, index
        else:
            self._macros[item.name] = Defined(item, index, index)

    def append_macro(self, item: MacroItem) -> None:
        index = self._next_index()
        prev = self._macros.get(item.name)
        if prev is None:
            raise ItemError(ErrorCode.LOAD_ERR_VALIDATE,
                            "Macro uses 'append' or 'override.condition: append' but no macro "
                            "by that name already exists", item.ctx)
        prev.item.cond = prev.item.cond + item.cond
        prev.visibility = index

    # rules

    def define_rule(self, item: RuleItem) -> None:
        prev = self._rules.get(item.name)
        if prev is not None and prev.item.source != item.source:
            raise ItemError(ErrorCode.LOAD_ERR_VALIDATE,
                            "Rule has been re-defined with a different source", item.ctx)
        if item.source != SYSCALL_SOURCE:
            self.problems.warn(WarningCode.LOAD_UNKNOWN_SOURCE,
                               f"Unknown source {item.source}, skipping", item.ctx)
        for ex in item.exceptions:
            _validate_whole_exception(ex, item.source == SYSCALL_SOURCE)
        visibility = self._next_index()
        index = prev.index if prev is not None else visibility
        self._rules[item.name] = Defined(item, index, visibility)

    def append_rule(self, update: RuleUpdate) -> None:
        prev = self._rules.get(update.name)
        if prev is None:
            raise ItemError(ErrorCode.LOAD_ERR_VALIDATE,
                            "Rule uses 'append' or 'override.<key>: append' but no rule by that "
                            "name already exists", update.ctx)
        if not update.has_any_value():
            raise ItemError(ErrorCode.LOAD_ERR_VALIDATE,
                            "Appended rule must have exceptions or condition property",
                            update.ctx)
        rule = prev.item
        if update.cond is not None and update.cond.text:
            rule.cond = rule.cond + update.cond
        if update.output is not None and update.output.text:
            rule.output = rule.output + update.output
        if update.desc:
            rule.desc += " " + update.desc
        if update.tags is not None:
            rule.tags |= update.tags
        for ex in update.exceptions or ():
            old = next((e for e in rule.exceptions if e.name == ex.name), None)
            if old is None:
                if not ex.fields.valid:
                    raise ItemError(ErrorCode.LOAD_ERR_VALIDATE,
                                    "Rule exception must have fields property with a list of "
                                    "fields", ex.ctx)
                if not ex.values:
                    raise ItemError(ErrorCode.LOAD_ERR_VALIDATE,
                                    "Rule exception must have values property with a list of "
                                    "values", ex.ctx)
                _validate_exception(ex, rule.source == SYSCALL_SOURCE)
                rule.exceptions.append(ex)
            else:
                if ex.fields.valid:
                    raise ItemError(ErrorCode.LOAD_ERR_VALIDATE,
                                    "Can not append exception fields to existing exception, "
                                    "only values", ex.ctx)
                if ex.comps.valid:
                    raise ItemError(ErrorCode.LOAD_ERR_VALIDATE,
                                    "Can not append exception comps to existing exception, "
                                    "only values", ex.ctx)
                old.values.extend(ex.values)
        prev.visibility = self._next_index()

    def replace_rule(self, update: RuleUpdate) -> None:
        prev = self._rules.get(update.name)
        if prev is None:
            raise ItemError(ErrorCode.LOAD_ERR_VALIDATE,
                            "An 'override.<key>: replace' to a rule was requested but no rule "
                            "by that name already exists", update.ctx)
        if not update.has_any_value():
            raise ItemError(ErrorCode.LOAD_ERR_VALIDATE,
                            "The rule must have at least one field that can be replaced",
                            update.ctx)
        rule = prev.item
        if update.cond is not None and update.cond_ctx is not None:
            rule.cond, rule.cond_ctx = update.cond, update.cond_ctx
        if update.output is not None and update.output_ctx is not None:
            rule.output, rule.output_ctx = update.output, update.output_ctx
        if update.exceptions is not None:
            for ex in update.exceptions:
                _validate_whole_exception(ex, rule.source == SYSCALL_SOURCE)
            rule.exceptions = update.exceptions
        for attr in UPDATABLE:
            value = getattr(update, attr)
            if value is not None and attr not in ("cond", "output", "exceptions"):
                setattr(rule, attr, value)
        prev.visibility = self._next_index()

    def enable_rule(self, change: RuleEnable) -> None:
        prev = self._rules.get(change.name)
        if prev is None:
            raise ItemError(ErrorCode.LOAD_ERR_VALIDATE,
                            "Rule has 'enabled' key but no rule by that name already exists",
                            change.ctx)
        prev.item.enabled = change.enabled


# -- exceptions ----------------------------------------------------------------

def _validate_whole_exception(ex: ExceptionItem, check_fields: bool) -> None:
    """An exception that defines a rule's exception, not one adding values."""
    if not ex.fields.valid:
        raise ItemError(ErrorCode.LOAD_ERR_VALIDATE,
                        "Rule exception item must have fields property with a list of fields",
                        ex.ctx)
    _validate_exception(ex, check_fields)


def _validate_exception(ex: ExceptionItem, check_fields: bool) -> None:
    """Falco's checks of an exception's fields and comps, setting the
    default comps: ``=`` for each of a list of fields, ``in`` for one."""
    def fail(message: str) -> ItemError:
        return ItemError(ErrorCode.LOAD_ERR_VALIDATE, message, ex.ctx)

    if ex.fields.is_list:
        if not ex.comps.valid:
            ex.comps = Entry(True, items=[Entry(False, "=") for _ in ex.fields.items])
        if len(ex.fields.items) != len(ex.comps.items):
            raise fail("Fields and comps lists must have equal length")
        for comp in ex.comps.items:
            if comp.item not in OPERATORS:
                raise fail(f"'{comp.item}' is not a supported comparison operator")
        names = [f.item for f in ex.fields.items]
    else:
        if not ex.comps.valid:
            ex.comps = Entry(False, "in")
        if ex.comps.is_list:
            raise fail("Fields and comps must both be strings")
        if ex.comps.item not in LIST_OPS:
            raise fail("When fields is a single value, comps must be one of (in, pmatch, "
                       "intersects)")
        names = [ex.fields.item]
    if check_fields:
        for name in names:
            if known_field(name) is None:
                raise fail(f"'{name}' is not a supported filter field")
