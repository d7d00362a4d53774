"""Load Falco rules files: YAML in, resolved rules (or every problem) out.

This is the public entry of Falco's rule loader (``userspace/engine``),
whose stages are modules here, each behind a narrow interface:

* reading (:mod:`.reader`, ``rule_loader_reader.cpp``): every item of every
  file, in order, is checked (kinds, keys, value types, exceptions) and
  handed to
* collecting (:mod:`.collector`, ``rule_loader_collector.cpp``), which
  applies it to what earlier items defined: a definition replaces an earlier
  one of the same name but keeps its place, ``append`` and ``override``
  change an existing item (an error if there is none);
* checking requirements (here): ``required_engine_version`` against
  :data:`ENGINE_VERSION` (as each item is collected),
  ``required_plugin_versions`` against the plugins bpfguard provides itself
  (only ``container``);
* resolving (:mod:`.resolve`, ``rule_loader_compiler.cpp``): conditions are
  parsed, list names expanded, macros substituted (a macro sees only the
  macros defined before it, a rule sees them all, as in Falco), exceptions
  folded in, fields and output fields checked.

:mod:`.items` holds what the stages hand each other, and the one record of
problems they all add to. Where Falco's behaviour comes from an accident of
its implementation, the stage doing it says so next to the code and does
the sensible thing instead. Loading is all or nothing: one error and no rule
is returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ..errors import ConfigError
from .collector import Collector
from .items import Collected, Problems
from .model import ErrorCode, LoadResult
from .reader import Source, open_source, read, source_name
from .resolve import resolve

__all__ = [
    "ENGINE_VERSION",
    "RulesError",
    "Source",
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

BUILTIN_PLUGINS: Final = frozenset({"container"})
"""Plugins whose fields bpfguard provides itself: a requirement on any
version of them is satisfied."""

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
    problems = Problems()
    collector = Collector(engine_version, problems)
    for source in sources:
        file = open_source(source, problems)
        if file is not None:
            read(file, collector, problems)
    collected = collector.collected()
    if problems.ok:
        _check_requirements(collected, problems)
    rules = resolve(collected, problems) if problems.ok else []
    engine = collected.engine_required
    return LoadResult(
        names=tuple(source_name(source) for source in sources),
        rules=tuple(rules) if problems.ok else (),
        errors=tuple(problems.errors),
        warnings=tuple(problems.warnings),
        required_engine_version=engine.text if engine is not None else None,
        required_plugin_versions=tuple(req.alternatives for req in collected.plugins),
    )


def load_rules_or_raise(sources: Sequence[Source], *,
                        engine_version: str = ENGINE_VERSION) -> LoadResult:
    """:func:`load_rules`, raising RulesError when there is any error."""
    result = load_rules(sources, engine_version=engine_version)
    if not result.ok:
        raise RulesError(result)
    return result


def _check_requirements(collected: Collected, problems: Problems) -> None:
    """Falco checks plugin requirements once every file is read, against the
    plugins loaded; bpfguard's are the ones it provides the fields of."""
    for req in collected.plugins:
        if not any(alt.name in BUILTIN_PLUGINS for alt in req.alternatives):
            wanted = ", ".join(f"{r.name} (>= {r.version})" for r in req.alternatives)
            problems.error(ErrorCode.LOAD_ERR_VALIDATE,
                           f"Plugin requirement not satisfied, must load one of: {wanted}",
                           req.ctx)
