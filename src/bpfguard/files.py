"""Files as users name them: lists of YAML files (or directories of them),
and output files written whole or not at all."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path

from .errors import ConfigError

__all__ = ["check_writable", "write_atomically", "write_in_dir", "yaml_files"]


def write_in_dir(dir_fd: int, name: str, text: str | None, where: str) -> None:
    """Writes `text` to file `name` of the directory open as `dir_fd`, through
    a temporary file there and a rename: a reader sees the old file or the
    whole new one, never a part. Mode 0644. What is there must be a regular
    file (a device such as /dev/null would be replaced; a symbolic link
    would be). With `text` None, only checks that it could, now rather than
    after a long run. `where` begins the errors (the option and path)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{where}: not a regular file")
    except FileNotFoundError:
        pass
    tmp = f".{name}.{secrets.token_hex(6)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=dir_fd)
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w") as f:
            if text is not None:
                os.fchmod(f.fileno(), 0o644)  # whatever the umask
                f.write(text)
        if text is not None:
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)


def _in_dir_of(path: Path, text: str | None, what: str) -> None:
    where = f"{what} {path}"
    try:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{where}: directory {path.parent} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror}") from None
    try:
        write_in_dir(fd, path.name, text, where)
    finally:
        os.close(fd)


def check_writable(path: Path, what: str = "-o") -> None:
    """Fails now, not after a long run, when `path` cannot be written."""
    _in_dir_of(path, None, what)


def write_atomically(path: Path, text: str, what: str = "-o") -> None:
    """Writes `text` to `path` whole or not at all (see :func:`write_in_dir`).
    `what` names the option or key in errors."""
    _in_dir_of(path, text, what)


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
