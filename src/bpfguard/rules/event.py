"""An event as the rules see it: Falco's event types and argument names over
bpfguard's events, with the process (and its ancestry) from the process table.

bpfguard reports a syscall once, at exit, with its arguments: to the rules it
is Falco's exit event (``evt.dir = <``) carrying Falco's parameters. A program
start seen by the process sensor is an ``execve`` exit with result 0.
"""

from __future__ import annotations

import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..proctable import TRUNCATED, Process, ProcessTable
from ..sensors.events import (
    Event,
    ExecEvent,
    ExitEvent,
    FileRef,
    ForkEvent,
    SyscallArgs,
    SyscallEvent,
)

__all__ = ["FALCO_ARGS", "FLAG_ARGS", "NAMED_ARGS", "FdInfo", "RuleEvent", "event_type",
           "from_event"]

# Falco's parameter names where they differ from bpfguard's (the man pages'):
# Falco name -> bpfguard argument name, "$ret" for the result. Every syscall
# also has "res" (Falco's exit events carry the result first).
FALCO_ARGS: dict[str, dict[str, str]] = {
    "open": {"fd": "$ret", "name": "pathname"},
    "openat": {"fd": "$ret", "name": "pathname"},
    "openat2": {"fd": "$ret", "name": "pathname", "flags": "how"},
    "creat": {"fd": "$ret", "name": "pathname"},
    "socket": {"fd": "$ret", "proto": "protocol"},
    "connect": {"tuple": "addr"},
    "bind": {"addr": "addr"},
    "accept": {"fd": "$ret"},
    "accept4": {"fd": "$ret"},
    "unlink": {"path": "pathname"},
    "unlinkat": {"name": "pathname"},
    "rmdir": {"path": "pathname"},
    "mkdir": {"path": "pathname"},
    "mkdirat": {"path": "pathname"},
    "symlinkat": {"linkdirfd": "newdirfd"},
    "linkat": {"olddir": "olddirfd", "newdir": "newdirfd"},
    "chmod": {"filename": "pathname"},
    "fchmodat": {"filename": "pathname"},
    "chown": {"path": "pathname", "uid": "owner", "gid": "group"},
    "lchown": {"path": "pathname", "uid": "owner", "gid": "group"},
    "fchown": {"uid": "owner", "gid": "group"},
    "fchownat": {"pathname": "pathname", "uid": "owner", "gid": "group"},
    "mount": {"dev": "source", "dir": "target", "type": "filesystemtype",
              "flags": "mountflags"},
    "umount2": {"name": "target"},
    "memfd_create": {"fd": "$ret"},
    "init_module": {"img": "module_image", "length": "len", "uargs": "param_values"},
    "finit_module": {"uargs": "param_values"},
    "kill": {"pid": "pid"},
    "tgkill": {"pid": "tgid"},
}

_T = TypeVar("_T")
_FD_TYPES = {stat.S_IFREG: ("file", "f"), stat.S_IFDIR: ("directory", "d"),
             stat.S_IFIFO: ("pipe", "p"), stat.S_IFCHR: ("file", "f"),
             stat.S_IFBLK: ("file", "f"), stat.S_IFLNK: ("file", "f")}
_SOCK_FAMILY = {"AF_INET": ("ipv4", "4"), "AF_INET6": ("ipv6", "6"), "AF_UNIX": ("unix", "u"),
                "AF_NETLINK": ("netlink", "n")}
_ANON_TYPES = {"[eventfd]": ("event", "e"), "[signalfd]": ("signalfd", "s"),
               "inotify": ("inotify", "i"), "[timerfd]": ("timerfd", "t"),
               "bpf-prog": ("bpf", "b"), "bpf-map": ("bpf", "b"),
               "[userfaultfd]": ("userfaultfd", "u"),
               "[io_uring]": ("io_uring", "r"), "[eventpoll]": ("eventpoll", "l")}
_OPENS = frozenset({"open", "openat", "openat2", "creat"})
# Syscalls on the server side of a connection: the local end is the server.
_SERVER_SIDE = {"accept", "accept4", "listen", "bind"}


class _once(Generic[_T]):  # noqa: N801 - used as a decorator, like cached_property
    """functools.cached_property without its lock (Python < 3.12 takes one per
    read): a RuleEvent lives on one thread, and the reader reads these for
    every event."""

    def __init__(self, fn: Callable[[Any], _T]) -> None:
        self.fn, self.name = fn, fn.__name__

    def __get__(self, obj: Any, cls: Any = None) -> _T:
        v = obj.__dict__[self.name] = self.fn(obj)  # shadows this descriptor from now on
        return v


@dataclass
class FdInfo:
    """The file descriptor an event is about, as Falco's fd.* fields see it."""

    num: int
    name: str | None  # resolved path, or a connection tuple
    nameraw: str | None  # what the process passed
    type: str | None
    typechar: str | None
    ino: int | None = None
    dev: int | None = None
    file: FileRef | None = None
    server_local: bool = False
    connected: bool | None = None


@dataclass
class RuleEvent:
    """One event for rule evaluation. Values are computed when first asked."""

    num: int
    type: str
    event: Event
    proc: Process | None
    table: ProcessTable
    hostname: str

    @property
    def syscall(self) -> SyscallEvent | None:
        return self.event if isinstance(self.event, SyscallEvent) else None

    @_once
    def open_flags(self) -> str | None:
        """An open's flags as Falco names them (O_RDONLY|O_CLOEXEC); None for
        other events."""
        sc = self.syscall
        if sc is None or sc.syscall not in _OPENS:
            return None
        if sc.syscall == "creat":
            return "O_WRONLY|O_CREAT|O_TRUNC"
        flags = sc.args.get("how" if sc.syscall == "openat2" else "flags")
        return flags if isinstance(flags, str) else None

    @property
    def exec(self) -> ExecEvent | None:
        return self.event if isinstance(self.event, ExecEvent) else None

    @property
    def ret(self) -> int:
        return self.event.ret if isinstance(self.event, SyscallEvent) else 0

    @_once
    def ancestors(self) -> list[Process]:
        return self.table.ancestors(self.event.pid)

    @_once
    def args(self) -> dict[str, Any]:
        """Falco's parameters by name, values rendered as Falco renders them."""
        sc = self.syscall
        if sc is not None:
            # Falco's exit events start with the result: "fd" for those returning one
            alias = FALCO_ARGS.get(sc.syscall, {})
            first = next((falco for falco, ours in alias.items() if ours == "$ret"), "res")
            out: dict[str, Any] = {first: sc.ret}
            back = {ours: falco for falco, ours in alias.items()}
            for name, value in sc.args.items():
                out[back.get(name, name)] = _render_arg(value)
            out.setdefault("res", sc.ret)
            for name, names in NAMED_ARGS.get(sc.syscall, {}).items():
                v = sc.args.get(name)
                if isinstance(v, int):
                    out[back.get(name, name)] = names.get(v, str(v))
            for name, render in FLAG_ARGS.get(sc.syscall, {}).items():
                v = sc.args.get(name)
                if isinstance(v, int):
                    out[back.get(name, name)] = render(v)
            return out
        out = {"res": 0}
        ex = self.exec
        if ex is not None:
            out.update(exe=ex.args[0] if ex.args else ex.filename,
                       args=" ".join(ex.args[1:]) + (TRUNCATED if ex.args_truncated else ""),
                       tid=ex.tid, pid=ex.pid, ptid=ex.ppid, cwd=ex.cwd.path if ex.cwd else None,
                       comm=ex.comm, uid=ex.euid if ex.euid is not None else ex.uid,
                       loginuid=ex.loginuid, pgid=ex.pgid,
                       flags=_exe_flags(self.proc), filename=ex.filename)
        return out

    def arg(self, name: str) -> Any:
        """``args[name]``, decoding and rendering that argument alone: a rule
        testing evt.arg.flags of every open need not render the rest."""
        sc = self.syscall
        if sc is None:
            return self.args.get(name)
        alias = FALCO_ARGS.get(sc.syscall, {})
        ours = alias.get(name, name)
        if ours == "$ret":
            return sc.ret
        # an argument Falco renames is in args only under Falco's name
        if ours in sc.args and (name in alias or name not in alias.values()):
            value = sc.args[ours]
            if isinstance(value, int):
                names = NAMED_ARGS.get(sc.syscall, {}).get(ours)
                if names is not None:
                    return names.get(value, str(value))
                render = FLAG_ARGS.get(sc.syscall, {}).get(ours)
                if render is not None:
                    return render(value)
            return _render_arg(value)
        return sc.ret if name == "res" else None

    @_once
    def fd(self) -> FdInfo | None:
        sc = self.syscall
        return _fd_of(sc, self.open_flags) if sc is not None else None


def _render_arg(value: Any) -> Any:
    if isinstance(value, dict):
        if "user" in value:  # a path: Falco's parameter is what the process passed
            return value["user"]
        if "fd" in value:
            return value["fd"]
        if "family" in value:
            return _sockaddr_text(value)
    return value


def _sockaddr_text(sa: dict[str, Any]) -> str:
    if "addr" in sa:
        return f"{sa['addr']}:{sa.get('port', 0)}"
    if "path" in sa:
        return str(sa["path"])
    return str(sa.get("family"))


def _exe_flags(p: Process | None) -> str | None:
    """Falco's execve exit `flags`: EXE_WRITABLE, EXE_FROM_MEMFD, ..."""
    if p is None:
        return None
    names = []
    if p.exe_from_memfd:
        names.append("EXE_FROM_MEMFD")
    if exe_writable(p):
        names.append("EXE_WRITABLE")
    return "|".join(names) or "0"


_CAP_DAC_OVERRIDE = 1


def exe_writable(p: Process) -> bool | None:
    """Whether the process's user may write its executable (the kernel's permission
    check: owner, group, other bits, CAP_DAC_OVERRIDE)."""
    if p.exe_mode is None or p.exe_uid is None or p.exe_gid is None:
        return None
    if p.cap_effective is not None and p.cap_effective >> _CAP_DAC_OVERRIDE & 1:
        return True
    if p.euid == p.exe_uid:
        return bool(p.exe_mode & stat.S_IWUSR)
    if p.egid == p.exe_gid:
        return bool(p.exe_mode & stat.S_IWGRP)
    return bool(p.exe_mode & stat.S_IWOTH)


def _file_types(f: FileRef) -> tuple[str, str]:
    if f.sock is not None:
        return _SOCK_FAMILY.get(f.sock.family, ("socket", "?"))
    if f.path.startswith("anon_inode:"):
        return _ANON_TYPES.get(f.path.removeprefix("anon_inode:"), ("anon_inode", "?"))
    if f.path.startswith("/memfd:"):
        return "memfd", "m"
    return _FD_TYPES.get(stat.S_IFMT(f.mode), ("file", "f"))


def _fd_of(sc: SyscallEvent, flags: str | None) -> FdInfo | None:
    """The fd a syscall event is about: the one it returned (open, accept, dup,
    socket, memfd_create), else the fd argument (connect, fchmod, ...)."""
    name = sc.syscall
    if name in _OPENS:
        # libsinsp types an opened fd by its flags, whatever the inode: a directory
        # with O_DIRECTORY, a file without; a failed open still describes its file
        # (O_TMPFILE carries O_DIRECTORY's bit, and so does Falco's flag for it)
        ftype, ch = ("directory", "d") if flags and \
            ("O_DIRECTORY" in flags or "O_TMPFILE" in flags) else ("file", "f")
        if sc.ret >= 0 and sc.ret_file is not None:
            f = sc.ret_file
            return FdInfo(sc.ret, f.path, _user_path(sc, "pathname"), ftype, ch, f.ino, f.dev, f)
        path = sc.args.get("pathname") or {}
        # an io_uring open into a registered file slot, or one whose success
        # posts no completion: no fd; the slot's number (0: not told)
        num = sc.ret if sc.fixed_result and sc.ret >= 0 else -1
        return FdInfo(num, path.get("resolved"), path.get("user"), ftype, ch)
    # an io_uring accept or socket into a file slot, or one that posts no
    # completion: no fd to name (a connect's or a read's is its fd argument)
    if sc.fixed_result and (name.startswith("accept") or name == "socket"):
        return None
    if sc.ret_file is not None and sc.ret >= 0:  # accept, dup, socket, memfd_create
        f = sc.ret_file
        ftype, ch = _file_types(f)
        return FdInfo(sc.ret, _fd_name(f, name in _SERVER_SIDE), None, ftype, ch, f.ino, f.dev,
                      f, server_local=name in _SERVER_SIDE or name.startswith("accept"))
    for key in ("fd", "oldfd"):
        arg = sc.args.get(key)
        if isinstance(arg, dict) and "path" in arg:
            f = _file_from_dict(arg)
            ftype, ch = _file_types(f)
            server = name in _SERVER_SIDE
            return FdInfo(int(arg["fd"]), _fd_name(f, server), None, ftype, ch, f.ino, f.dev, f,
                          server_local=server,
                          connected=(sc.ret == 0 or sc.errno == "EINPROGRESS")
                          if name == "connect" else None)
    return None


def _user_path(sc: SyscallEvent, name: str) -> str | None:
    """What path argument `name` was given: from a decoded record without
    resolving it (SyscallArgs.user_path), which a successful open never needs."""
    if isinstance(sc.args, SyscallArgs):
        return sc.args.user_path(name)
    v = sc.args.get(name)
    return v.get("user") if v else None


def _file_from_dict(d: dict[str, Any]) -> FileRef:
    from ..sensors.events import SockInfo

    sock = None
    if d.get("sock"):
        sock = SockInfo(**d["sock"])
    return FileRef(path=d["path"], ino=d.get("ino", 0), dev=d.get("dev", 0), fs_magic=0,
                   mode=int(d.get("mode", "0"), 8) if isinstance(d.get("mode"), str)
                   else int(d.get("mode", 0)), nlink=d.get("nlink"), sock=sock)


def _fd_name(f: FileRef, server_local: bool) -> str:
    """Falco's fd.name: a path, or a tuple client->server for an IP socket."""
    s = f.sock
    if s is None or s.local is None:
        return f.path
    local, remote = f"{s.local}:{s.local_port}", f"{s.remote}:{s.remote_port}"
    return f"{remote}->{local}" if server_local else f"{local}->{remote}"


def event_type(ev: Event) -> str | None:
    """Falco's evt.type for a bpfguard event; None for events rules never see."""
    if isinstance(ev, SyscallEvent):
        return ev.syscall
    if isinstance(ev, ExecEvent):
        return "execve"
    if isinstance(ev, ForkEvent):
        return "clone"
    if isinstance(ev, ExitEvent):
        return "procexit"
    return None


def from_event(ev: Event, num: int, table: ProcessTable, hostname: str) -> RuleEvent | None:
    """The rule view of `ev`, after the process table has applied it."""
    etype = event_type(ev)
    if etype is None:
        return None
    return RuleEvent(num, etype, ev, table.lookup_or_read(ev.pid), table, hostname)


def memfd_exepath(path: str | None) -> str | None:
    """/memfd:NAME (deleted), as the kernel's d_path names it, is Falco's memfd:NAME."""
    if path and path.startswith("/memfd:"):
        return path[1:].removesuffix(" (deleted)")
    return path


# linux/ptrace.h (UAPI): request numbers and Falco's names for them
_PTRACE_REQUESTS: dict[int, str] = {
    0: "PTRACE_TRACEME", 1: "PTRACE_PEEKTEXT", 2: "PTRACE_PEEKDATA", 3: "PTRACE_PEEKUSR",
    4: "PTRACE_POKETEXT", 5: "PTRACE_POKEDATA", 6: "PTRACE_POKEUSR", 7: "PTRACE_CONT",
    8: "PTRACE_KILL", 9: "PTRACE_SINGLESTEP", 12: "PTRACE_GETREGS", 13: "PTRACE_SETREGS",
    14: "PTRACE_GETFPREGS", 15: "PTRACE_SETFPREGS", 16: "PTRACE_ATTACH", 17: "PTRACE_DETACH",
    18: "PTRACE_GETFPXREGS", 19: "PTRACE_SETFPXREGS", 24: "PTRACE_SYSCALL",
    0x4200: "PTRACE_SETOPTIONS", 0x4201: "PTRACE_GETEVENTMSG", 0x4202: "PTRACE_GETSIGINFO",
    0x4203: "PTRACE_SETSIGINFO", 0x4204: "PTRACE_GETREGSET", 0x4205: "PTRACE_SETREGSET",
    0x4206: "PTRACE_SEIZE", 0x4207: "PTRACE_INTERRUPT", 0x4208: "PTRACE_LISTEN",
    0x4209: "PTRACE_PEEKSIGINFO",
}

# Integer arguments Falco renders by name (evt.arg.X), by syscall and argument:
# the rules see the name, or the number when it has none. The pushdown decides
# tests of the name over these same tables.
NAMED_ARGS: dict[str, dict[str, dict[int, str]]] = {
    "ptrace": {"request": _PTRACE_REQUESTS},
    "socket": {"domain": {int(f): f.name for f in socket.AddressFamily}},
}

# sys/stat.h: the permission bits, in the order of Falco's chmod_mode table
_MODE_BITS = (("S_IXOTH", 0o1), ("S_IWOTH", 0o2), ("S_IROTH", 0o4), ("S_IXGRP", 0o10),
              ("S_IWGRP", 0o20), ("S_IRGRP", 0o40), ("S_IXUSR", 0o100), ("S_IWUSR", 0o200),
              ("S_IRUSR", 0o400), ("S_ISVTX", 0o1000), ("S_ISGID", 0o2000),
              ("S_ISUID", 0o4000))


def _mode(value: int) -> str:
    """A chmod mode as Falco renders it: the octal value, then the bits' names
    (``0755(S_IXOTH|S_IROTH|...)``), which rules test with ``contains S_ISUID``."""
    names = "|".join(n for n, bit in _MODE_BITS if value & bit)
    return f"0{value:o}({names})" if value else "0()"


# Integer arguments Falco renders as a set of flags, by syscall and argument.
# Not in NAMED_ARGS: the pushdown does not decide tests of these (a mode is
# UINT, which it leaves to user space).
FLAG_ARGS: dict[str, dict[str, Callable[[int], str]]] = {
    sc: {"mode": _mode} for sc in ("chmod", "fchmod", "fchmodat", "fchmodat2")}
