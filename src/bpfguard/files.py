"""Lists of YAML files as users name them: files, or directories of them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .errors import ConfigError

__all__ = ["yaml_files"]


def yaml_files(paths: Sequence[str], what: str = "", kind: str = "") -> list[Path]:
    """The files `paths` name, in order: a directory stands for its ``*.yaml``
    and ``*.yml`` files in name order (as Falco reads rules.d). `what`
    prefixes errors (an option or key name, with its separator); `kind` names
    the files in them ("rules", "policy")."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(f for f in path.iterdir()
                           if f.suffix in (".yaml", ".yml") and f.is_file())
            if not found:
                noun = f"{kind} file" if kind else "file"
                raise ConfigError(f"{what}{p}: no .yaml or .yml {noun} in this directory")
            out += found
        elif path.exists():
            out.append(path)
        else:
            raise ConfigError(f"{what}{p}: no such file or directory")
    return out
