"""Files as users name them: lists of YAML files (or directories of them),
and output files written whole or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .errors import ConfigError

__all__ = ["check_writable", "write_atomically", "yaml_files"]


def check_writable(path: Path, what: str = "-o") -> None:
    """Fails now, not after a long run, when `path` cannot be written."""
    if not path.parent.is_dir():
        raise ConfigError(f"{what} {path}: directory {path.parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None
    os.close(fd)
    os.unlink(tmp)


def write_atomically(path: Path, text: str, what: str = "-o") -> None:
    """Writes `text` to `path` through a temporary file in the same directory
    and a rename: a reader sees the old file or the whole new one, never a
    part. Mode 0644. `what` names the option or key in errors."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.")
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None
    except BaseException:
        os.unlink(tmp)
        raise


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
