"""Files as users name them: lists of YAML files (or directories of them),
output files written whole or not at all, and the directories the agent
writes in, reached without following a path another user could steer."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from .errors import ConfigError

__all__ = ["DIR_MODE", "absolute", "check_output_path", "check_trusted_dir", "check_writable",
           "fs_type", "mounts", "open_in_trusted_dir", "open_trusted_dir", "remove_tree",
           "write_atomically", "write_in_dir", "yaml_files"]

_MAX_LINKS = 40  # symbolic links followed in one path, as the kernel's MAXSYMLINKS
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
DIR_MODE = 0o750  # the directories bpfguard makes on the way


def absolute(path: str | os.PathLike[str]) -> str:
    """`path` made absolute from the working directory, but not normalised:
    ``a/../b`` keeps its ``..``, which the kernel resolves after following
    whatever link ``a`` is, as the walk below does too."""
    p = os.fspath(path)
    return p if os.path.isabs(p) else os.path.join(os.getcwd(), p)


def _owner_ok(st: os.stat_result) -> bool:
    return st.st_uid in (0, os.geteuid())


def _check_dir(st: os.stat_result, shown: str, where: str) -> bool:
    """Raises unless only root (or this process's user) own the directory
    and no one else may replace what is in it: others may not write it
    unless it is sticky (/tmp). Returns whether others share it (a sticky
    world-writable or a group-writable one, as Ubuntu's /var/log): its
    entries must then be checked for their owner, since another user can
    put theirs there."""
    if not _owner_ok(st):
        raise ConfigError(f"{where}: directory {shown} belongs to uid {st.st_uid}, who could "
                          "replace what bpfguard writes there with a link to another file; "
                          "use a directory only root can write")
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        raise ConfigError(f"{where}: directory {shown} is writable by anyone (mode "
                          f"{stat.S_IMODE(st.st_mode):04o}, not sticky), who could replace "
                          "what bpfguard writes there with a link to another file; use a "
                          "directory only root can write")
    return bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _walk(path: str | os.PathLike[str], where: str, create: bool, dir_mode: int,
          shared: bool) -> tuple[int, bool]:
    """:func:`open_trusted_dir`'s walk; also returns whether the directory
    reached is shared."""
    todo = list(Path(absolute(path)).parts[1:])
    fd = os.open("/", _DIR_FLAGS)
    shown = Path("/")
    links = 0
    name = ""
    try:
        while todo:
            name = todo.pop(0)
            in_shared = _check_dir(os.fstat(fd), str(shown), where)
            if name in ("", "."):
                continue
            if name == "..":  # from the directory reached, as the kernel does
                up = os.open("..", _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd, shown = up, shown.parent
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    raise ConfigError(f"{where}: directory {shown / name} does not exist"
                                      ) from None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_mode, dir_fd=fd)
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if in_shared and not _owner_ok(st):
                raise ConfigError(f"{where}: {shown / name} belongs to uid {st.st_uid} in "
                                  f"{shown}, which others may write; bpfguard goes only "
                                  "through root's own entries there")
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    raise ConfigError(f"{where}: more than {_MAX_LINKS} symbolic links")
                target = Path(os.readlink(name, dir_fd=fd))
                if target.is_absolute():
                    root = os.open("/", _DIR_FLAGS)
                    os.close(fd)
                    fd, shown = root, Path("/")
                todo[:0] = target.parts[1:] if target.is_absolute() else target.parts
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise ConfigError(f"{where}: {shown / name} is not a directory")
            sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            try:
                opened = os.fstat(sub)
            except BaseException:
                os.close(sub)
                raise
            if (opened.st_ino, opened.st_dev) != (st.st_ino, st.st_dev):
                os.close(sub)
                raise ConfigError(f"{where}: {shown / name} was replaced while it was opened")
            os.close(fd)
            fd, shown, name = sub, shown / name, ""
        is_shared = _check_dir(os.fstat(fd), str(shown), where)
        if is_shared and not shared:
            raise ConfigError(f"{where}: directory {shown} may be written by others, and "
                              "files are made there by name; use a directory only root can "
                              "write")
    except OSError as exc:
        os.close(fd)
        raise ConfigError(f"{where}: {shown / name}: {exc.strerror}") from None
    except BaseException:
        os.close(fd)
        raise
    return fd, is_shared


def open_trusted_dir(path: str | os.PathLike[str], where: str, *, create: bool = False,
                     dir_mode: int = DIR_MODE, shared: bool = True) -> int:
    """Opens directory `path` (O_RDONLY) walking it from / one component at
    a time, so that no user but root (or this process's) can steer where
    it leads: every directory passed through must pass :func:`_check_dir`;
    in one others may write (sticky /tmp, a group-writable /var/log), an
    entry is passed through only when root (or this user) owns it; a
    symbolic link is followed only where it lies in such a directory; a
    ``..`` goes up from the directory reached, as the kernel's does. With
    `create`, missing directories are made (mode `dir_mode`). With
    `shared` False, the directory itself may not be one others can write
    (for a writer that then works by name there: SQLite's side files, a
    socket's bind, a pin). Raises ConfigError naming the component and
    why; `where` begins it (the option and path)."""
    return _walk(path, where, create, dir_mode, shared)[0]


def check_trusted_dir(path: str | os.PathLike[str], where: str, *, create: bool = False,
                      dir_mode: int = DIR_MODE, shared: bool = False) -> None:
    """:func:`open_trusted_dir` for code that then uses paths in it (libbpf's
    pins, a socket's bind): in a directory only root can change, a path in
    it still leads where it was checked, so by default it may not be one
    others can write."""
    os.close(open_trusted_dir(path, where, create=create, dir_mode=dir_mode, shared=shared))


def remove_tree(path: str | os.PathLike[str], where: str) -> None:
    """Removes directory `path` and what is in it, if it is there, through
    its parent reached by :func:`open_trusted_dir` (not by a path someone
    could have pointed elsewhere); ConfigError when the parent is not
    trusted, and nothing is removed."""
    full = absolute(path)
    parent, name = os.path.split(full)
    if not os.path.lexists(parent):
        return
    fd = open_trusted_dir(parent, where)
    try:
        shutil.rmtree(name, ignore_errors=True, dir_fd=fd)
    finally:
        os.close(fd)


def open_in_trusted_dir(path: str | os.PathLike[str], flags: int, where: str, *,
                        mode: int = 0o644, create_dirs: bool = False,
                        shared: bool = True) -> int:
    """Opens file `path` with `flags` (O_NOFOLLOW, O_NOCTTY and O_CLOEXEC
    added) in its directory reached by :func:`open_trusted_dir`: a
    symbolic link or a file that is not a regular one is refused
    (ConfigError), whatever fs.protected_symlinks says; in a directory
    others may write, so is a file of another user's or one with other
    hard links. New files get `mode` (less the umask)."""
    full = absolute(path)
    parent, name = os.path.split(full)
    if name in ("", ".", ".."):
        raise ConfigError(f"{where}: {full} does not name a file")
    dir_fd, in_shared = _walk(parent, where, create_dirs, DIR_MODE, shared)
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC | os.O_NONBLOCK,
                     mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"{where}: {full} is a symbolic link; bpfguard does not follow "
                              "links to the files it writes (name the file itself)") from None
        if exc.errno == errno.ENXIO:  # a FIFO without a reader, a device without its driver
            raise ConfigError(f"{where}: {full} is not a regular file; bpfguard writes only "
                              "regular files") from None
        raise ConfigError(f"{where}: {full}: {exc.strerror}") from None
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        problem = ("is not a regular file" if not stat.S_ISREG(st.st_mode) else
                   f"belongs to uid {st.st_uid}" if in_shared and not _owner_ok(st) else
                   f"has {st.st_nlink} hard links (another name reaches the same file)"
                   if in_shared and st.st_nlink > 1 else "")
        if problem:
            rule = ("in a directory others may write, bpfguard writes only its own regular "
                    "files" if stat.S_ISREG(st.st_mode) else "bpfguard writes only regular files")
            raise ConfigError(f"{where}: {full} {problem}; {rule}")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


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


def check_output_path(path: str | os.PathLike[str], where: str, *,
                      missing: Literal["fail", "make", "allow"] = "fail",
                      dir_mode: int = DIR_MODE, shared: bool = True) -> None:
    """Checks an output path as :func:`open_in_trusted_dir` would open it,
    without writing: its directories, and the file if there is one.
    Missing directories `fail` (ConfigError), are made (`make`), or are
    left to whoever makes them later (`allow`, for a check that makes
    nothing: the directories that exist are checked)."""
    full = absolute(path)
    parent = os.path.dirname(full)
    if missing != "allow":
        os.close(open_trusted_dir(parent, where, create=missing == "make", dir_mode=dir_mode,
                                  shared=shared))
    else:
        existing = parent
        while not os.path.lexists(existing):
            existing = os.path.dirname(existing)
        # (a directory still to be made is made by the agent, its own: whether
        # the existing one above it is shared does not matter)
        os.close(open_trusted_dir(existing, where, shared=shared or existing != parent))
    if os.path.lexists(full):
        os.close(open_in_trusted_dir(full, os.O_RDONLY, where, shared=shared))


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


def mounts() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every mount, in mount order, from
    /proc/self/mountinfo (where the kernel writes space, tab, newline and
    backslash as a backslash and three octal digits)."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields.split()[4])
        out.append((point, tail.split()[0]))
    return out


def fs_type(path: str | os.PathLike[str]) -> str:
    """The type of the filesystem `path` (or, missing, its nearest existing
    ancestor) is on: the last mount over it in the mount table."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    real = os.path.realpath(p)
    best, kind = "", ""
    for point, fstype in mounts():
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fstype
    return kind
