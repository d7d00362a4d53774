"""Falco-compatible detection: rules files, conditions, fields, the engine,
and what of it the kernel can check (pushdown)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

from ..errors import ConfigError
from ..files import yaml_files

__all__ = ["STOCK_PREFIX", "STOCK_RULESETS", "rule_files", "stock_rules_path"]

STOCK_PREFIX: Final = "stock:"
"""How a rules path names a shipped ruleset (``stock:incubating``). Not
``@name``: YAML reserves ``@``, so a config file would need quotes."""

STOCK_RULESETS: Final = {
    "stable": "falco_rules.yaml",
    "incubating": "falco-incubating_rules.yaml",
    "sandbox": "falco-sandbox_rules.yaml",
}
"""Falco's rulesets (falcosecurity/rules, the commit in ``data/SOURCE``),
shipped unmodified, by the maturity level Falco gives them. Incubating and
sandbox are meant to be loaded after stable, as Falco's packages do."""


def stock_rules_path(name: str = "stable") -> Path:
    """The shipped Falco ruleset `name` (a key of :data:`STOCK_RULESETS`);
    ConfigError naming the valid ones for any other name."""
    if name not in STOCK_RULESETS:
        known = ", ".join(STOCK_PREFIX + n for n in STOCK_RULESETS)
        raise ConfigError(f"{STOCK_PREFIX}{name}: no such stock ruleset; known: {known}")
    return Path(__file__).parent / "data" / STOCK_RULESETS[name]


def rule_files(paths: Sequence[str], what: str = "") -> list[str]:
    """The rules files `paths` name, in load order: ``stock:NAME`` is a
    shipped ruleset (:func:`stock_rules_path`), anything else a file or
    directory (see :func:`yaml_files`); no path at all means the stable
    stock ruleset. `what` prefixes errors (an option name)."""
    if not paths:
        return [str(stock_rules_path())]
    out: list[str] = []
    for p in paths:
        if p.startswith(STOCK_PREFIX):
            try:
                out.append(str(stock_rules_path(p[len(STOCK_PREFIX):])))
            except ConfigError as exc:
                raise ConfigError(f"{what}{exc}") from None
        else:
            out += [str(f) for f in yaml_files([p], what, "rules")]
    return out
