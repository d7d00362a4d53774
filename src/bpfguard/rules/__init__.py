"""Falco-compatible detection: rules files, conditions, fields, the engine,
and what of it the kernel can check (pushdown)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..files import yaml_files

__all__ = ["rule_files", "stock_rules_path"]


def stock_rules_path() -> Path:
    """Falco's stock ruleset (falcosecurity/rules), shipped with bpfguard."""
    return Path(__file__).parent / "data" / "falco_rules.yaml"


def rule_files(paths: Sequence[str], what: str = "") -> list[str]:
    """The rules files `paths` name, in load order (see :func:`yaml_files`); no
    path at all means the stock ruleset. `what` prefixes errors (an option name)."""
    if not paths:
        return [str(stock_rules_path())]
    return [str(p) for p in yaml_files(paths, what, "rules")]
