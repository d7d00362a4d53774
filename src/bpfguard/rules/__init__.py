"""Falco-compatible detection: rules files, conditions, fields, the engine,
and what of it the kernel can check (pushdown)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["stock_rules_path"]


def stock_rules_path() -> Path:
    """Falco's stock ruleset (falcosecurity/rules), shipped with bpfguard."""
    return Path(__file__).parent / "data" / "falco_rules.yaml"
