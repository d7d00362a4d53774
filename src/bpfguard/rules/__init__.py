"""Falco-compatible detection: rules files, conditions, fields, the engine,
and what of it the kernel can check (pushdown)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError

__all__ = ["rule_files", "stock_rules_path"]


def stock_rules_path() -> Path:
    """Falco's stock ruleset (falcosecurity/rules), shipped with bpfguard."""
    return Path(__file__).parent / "data" / "falco_rules.yaml"


def rule_files(paths: Sequence[str], what: str = "") -> list[str]:
    """The rules files `paths` name, in load order: a directory stands for its
    ``*.yaml``/``*.yml`` files in name order (as Falco reads rules.d); no path
    at all means the stock ruleset. `what` prefixes errors (an option name)."""
    if not paths:
        return [str(stock_rules_path())]
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = [str(f) for f in sorted(path.iterdir())
                     if f.suffix in (".yaml", ".yml") and f.is_file()]
            if not found:
                raise ConfigError(f"{what}{p}: no .yaml or .yml rules file in this directory")
            out += found
        elif path.exists():
            out.append(str(path))
        else:
            raise ConfigError(f"{what}{p}: no such file or directory")
    return out
