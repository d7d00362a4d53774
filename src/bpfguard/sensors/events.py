"""Decoded sensor events.

:class:`Abi` reads the wire structs and enums from an object's BTF;
:func:`decode` turns one ring-buffer record into an event object. Events carry
kernel truth (resolved paths, the exe from mm->exe_file) next to what the
process claimed (the user string it passed), because a difference between the
two is itself a signal.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import functools
import ipaddress
import os
import posixpath
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..loader import Btf
from ..loader.btf import field_offset, unpacker
from .syscall_specs import SyscallSpec, spec_for
from .syscall_table import native_arches, syscall_name

__all__ = [
    "Abi",
    "Event",
    "ExecEvent",
    "ExitEvent",
    "FileRef",
    "ForkEvent",
    "LossEvent",
    "SockInfo",
    "SyscallArgs",
    "SyscallEvent",
    "Decoder",
    "boot_to_wall_ns",
]

# Pseudo filesystems whose files d_path names by inode (linux/magic.h).
_PIPEFS_MAGIC = 0x50495045
_SOCKFS_MAGIC = 0x534F434B
_ANON_INODE_FS_MAGIC = 0x09041934

_BOOT_OFFSET_NS = time.clock_gettime_ns(time.CLOCK_REALTIME) - time.clock_gettime_ns(
    time.CLOCK_BOOTTIME)


def boot_to_wall_ns(boot_ns: int) -> int:
    """CLOCK_BOOTTIME (as BPF reports it) to Unix time, in ns."""
    return boot_ns + _BOOT_OFFSET_NS


def _prefix_enum(values: dict[str, int], prefix: str) -> dict[str, int]:
    return {k.removeprefix(prefix): v for k, v in values.items()}


class Abi:
    """The wire ABI as one object's BTF describes it."""

    def __init__(self, btf: Btf) -> None:
        self.header = btf.struct("bg_event_header")
        self.exec = btf.struct("bg_exec_event")
        self.fork = btf.struct("bg_fork_event")
        self.exit = btf.struct("bg_exit_event")
        self.syscall = btf.struct("bg_syscall_event")
        self.spec = btf.struct("bg_syscall_spec")
        self.scope_config = btf.struct("bg_scope_config")
        self.push_stat = _prefix_enum(btf.enum("bg_push_stat"), "BG_PUSHED_")
        self.push_path = _prefix_enum(btf.enum("bg_push_path"), "BG_PATH_")
        self.pol_op = _prefix_enum(btf.enum("bg_pol_op"), "BG_OP_")
        self.pol_phase = _prefix_enum(btf.enum("bg_pol_phase"), "BG_PHASE_")
        self.event_type = _prefix_enum(btf.enum("bg_event_type"), "BG_EVENT_")
        self.event_flags = _prefix_enum(btf.enum("bg_event_flags"), "BG_EV_")
        self.file_flags = _prefix_enum(btf.enum("bg_file_flags"), "BG_FILE_")
        self.exec_flags = _prefix_enum(btf.enum("bg_exec_flags"), "BG_EXEC_")
        self.drop_reason = _prefix_enum(btf.enum("bg_drop_reason"), "BG_DROP_")
        self.arg_kind = _prefix_enum(btf.enum("bg_arg_kind"), "BG_ARG_")
        self.ret_kind = _prefix_enum(btf.enum("bg_ret_kind"), "BG_RET_")
        self.scope_flags = _prefix_enum(btf.enum("bg_scope_flags"), "BG_SCOPE_")
        self.scope_state = _prefix_enum(btf.enum("bg_scope_state"), "BG_SCOPE_")
        self.nr_max = ctypes.sizeof(btf.datasec(".bss")["interest"][1]) * 8 \
            if "interest" in btf.datasec(".bss") else 512
        self._types = {v: k for k, v in self.event_type.items()}
        ff = self.file_flags
        # what the decoder tests of a bg_file's flags, in _file_of's order
        self.file_bits = (ff["VALID"], ff["DELETED"] | ff["PSEUDO"], ff["TRUNCATED"],
                          ff["DETACHED"], ff["SOCKET"])


@dataclass
class SockInfo:
    family: str
    type: int
    protocol: int
    local: str | None
    local_port: int
    remote: str | None
    remote_port: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FileRef:
    """What an fd, path or cwd referred to, read from kernel objects."""

    path: str
    ino: int
    dev: int
    fs_magic: int
    mode: int
    nlink: int | None = None  # hard links to the inode, at most 65535 (None: not told)
    deleted: bool = False
    truncated: bool = False
    detached: bool = False
    sock: SockInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "ino": self.ino, "dev": self.dev,
                             "mode": oct(self.mode), "nlink": self.nlink}
        if self.deleted:
            d["deleted"] = True
        if self.truncated:
            d["truncated"] = True
        if self.sock:
            d["sock"] = self.sock.to_dict()
        return d


@dataclass
class Event:
    type: str
    ktime_ns: int
    pid: int
    tid: int
    uid: int
    gid: int
    cgroup_id: int
    # the name the process was executed as (Falco's proc.name), which it
    # cannot change; see struct bg_event_header
    comm: str
    truncated: bool
    # effective ids at the event (the process table's are as of the last exec)
    euid: int | None = field(default=None, kw_only=True)
    egid: int | None = field(default=None, kw_only=True)
    # the thread's name at the event, as prctl(PR_SET_NAME) left it (None:
    # not from a kernel event)
    thread_comm: str | None = field(default=None, kw_only=True)

    @property
    def time_ns(self) -> int:
        return boot_to_wall_ns(self.ktime_ns)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        d["time_ns"] = self.time_ns
        for k, v in list(d.items()):
            if hasattr(v, "to_dict"):
                d[k] = v.to_dict()
        if not self.truncated:
            d.pop("truncated")
        return d


@dataclass
class ExecEvent(Event):
    ppid: int
    start_ns: int
    exec_id: str
    exe: FileRef | None
    filename: str
    args: list[str]
    args_truncated: bool
    cwd: FileRef | None
    loginuid: int
    sessionid: int
    cap_effective: int
    cap_permitted: int
    mntns: int
    pidns: int
    netns: int
    userns: int
    cgroupns: int
    cgroup: str
    tty: str | None
    sid: int = 0
    pgid: int = 0
    tty_nr: int = 0  # as /proc/PID/stat's tty_nr: 0 for none
    exe_uid: int | None = None
    exe_gid: int | None = None
    env: list[str] | None = None  # None: not read (see ProcessSensor env_max)
    env_truncated: bool = False
    # an executable on overlayfs: in the upper layer (written in the
    # container)? None where the kernel could not tell, or not on overlayfs
    exe_upper_layer: bool | None = None
    # the path in the pids controller's cgroup v1 hierarchy (None: not read):
    # on a v1-only host, where the v2 path is always the root, the container's
    cgroup_v1: str | None = None
    vpid: int | None = None  # the pid in its own pid namespace (1: a container's init)


@dataclass
class ForkEvent(Event):
    ppid: int
    start_ns: int
    vpid: int | None = None  # the child's pid in its own pid namespace


@dataclass
class ExitEvent(Event):
    ppid: int
    start_ns: int
    status: int
    exit_code: int | None = None
    signal: int | None = None
    core_dumped: bool = False


@dataclass
class SyscallEvent(Event):
    syscall: str
    nr: int
    arch: str
    ret: int
    errno: str | None
    latency_ns: int
    args: Mapping[str, Any]  # a SyscallArgs when decoded from a record
    ret_file: FileRef | None = None
    # submitted through io_uring (the request reported as this syscall;
    # bpf/lib/io_uring.bpf.h), on a registered file (its fd argument is an
    # index in the ring's file table), and into a file slot (ret is a slot
    # of that table, not an fd)
    io_uring: bool = field(default=False, kw_only=True)
    fixed_file: bool = field(default=False, kw_only=True)
    fixed_result: bool = field(default=False, kw_only=True)
    # ... that posts no completion when it succeeds (IOSQE_CQE_SKIP_SUCCESS):
    # reported at submission, ret 0 for a result nobody is told
    no_completion: bool = field(default=False, kw_only=True)


@dataclass
class LossEvent:
    """Events the pipeline knows it lost since the last report, by reason."""

    reason: str
    count: int
    total: int
    type: str = "loss"
    time_ns: int = field(default_factory=time.time_ns)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- helpers --------------------------------------------------------------------


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def _cgroup_path(raw: bytes) -> str:
    """A cgroup path the kernel wrote leaf first, NUL-terminated components."""
    parts = [p.decode(errors="replace") for p in raw.split(b"\0") if p]
    parts.reverse()
    return "/" + "/".join(parts)


def _tty_nr(dev: int) -> int:
    """MKDEV(major, minor) as the kernel encodes it for userspace (new_encode_dev),
    the number /proc/PID/stat and Falco's proc.tty give."""
    major, minor = dev >> 20, dev & 0xFFFFF
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def _strings(raw: bytes) -> list[str]:
    """NUL-separated strings (argv, environ): a final NUL ends the last one."""
    out = [a.decode(errors="replace") for a in raw.split(b"\0")]
    if out and out[-1] == "" and raw.endswith(b"\0"):
        out.pop()
    return out if raw else []


def _blob(data: bytes, blob: Any) -> bytes:
    return data[blob.off: blob.off + blob.len]


def _file(abi: Abi, data: bytes, f: Any) -> FileRef | None:
    return _file_of(abi, data, f.ino, f.dev, f.fs_magic, f.mode, f.nlink, f.flags, f.depth,
                    f.name.off, f.name.len, lambda: f.sock)


def _file_of(abi: Abi, data: bytes, ino: int, dev: int, fs_magic: int, mode: int, nlink: int,
             fflags: int, depth: int, name_off: int, name_len: int,
             sock: Callable[[], Any]) -> FileRef | None:
    """A struct bg_file's fields as a FileRef (None when not resolved). `sock`
    gives its bg_sock, called only for a socket."""
    valid, gone_bits, truncated, detached, is_sock = abi.file_bits
    if not fflags & valid:
        return None
    # one decode, then the split: NUL is a whole character in UTF-8, so this
    # reads the same as decoding each name
    parts = data[name_off:name_off + name_len].decode(errors="replace").split("\0")[:depth]
    parts.reverse()
    gone = fflags & gone_bits
    if fs_magic == _PIPEFS_MAGIC:
        path = f"pipe:[{ino}]"
    elif fs_magic == _SOCKFS_MAGIC:
        path = f"socket:[{ino}]"
    elif fs_magic == _ANON_INODE_FS_MAGIC:
        path = f"anon_inode:{parts[-1] if parts else ''}"
    else:
        # a path deeper than the kernel walks holds its innermost components
        # only: "..." before them, so it never reads as an absolute path
        path = ("..." if fflags & truncated else "") + "/" + "/".join(parts)
        # d_path: " (deleted)" for unlinked files, and simple_dname() names
        # pseudo files (memfd, ...) the same way
        if gone:
            path += " (deleted)"
    return FileRef(path, ino, dev, fs_magic, mode, nlink, bool(gone), bool(fflags & truncated),
                   bool(fflags & detached),
                   _sock(sock()) if fflags & is_sock else None)


def _family(fam: int) -> str:
    try:
        return socket.AddressFamily(fam).name
    except ValueError:
        return str(fam)


def _addr(fam: int, raw: bytes) -> str | None:
    if fam == socket.AF_INET:
        return str(ipaddress.IPv4Address(raw[:4]))
    if fam == socket.AF_INET6:
        return str(ipaddress.IPv6Address(raw[:16]))
    return None


def _sock(s: Any) -> SockInfo:
    return SockInfo(family=_family(s.family), type=s.type, protocol=s.protocol,
                    local=_addr(s.family, bytes(s.laddr)), local_port=s.lport,
                    remote=_addr(s.family, bytes(s.raddr)), remote_port=s.rport)


def decode_sockaddr(raw: bytes) -> dict[str, Any]:
    """A user sockaddr as captured at entry."""
    if len(raw) < 2:
        return {"family": None}
    fam = int.from_bytes(raw[:2], "little")
    out: dict[str, Any] = {"family": _family(fam)}
    if fam == socket.AF_INET and len(raw) >= 8:
        out["port"] = int.from_bytes(raw[2:4], "big")
        out["addr"] = str(ipaddress.IPv4Address(raw[4:8]))
    elif fam == socket.AF_INET6 and len(raw) >= 24:
        out["port"] = int.from_bytes(raw[2:4], "big")
        out["addr"] = str(ipaddress.IPv6Address(raw[8:24]))
    elif fam == socket.AF_UNIX:
        path = raw[2:]
        out["path"] = ("@" + path[1:].split(b"\0")[0].decode(errors="replace")
                       if path[:1] == b"\0" else _cstr(path))
    return out


def _flag_names(value: int, names: dict[int, str], zero: str | None = None) -> str:
    if value == 0 and zero:
        return zero
    out = []
    for bit, name in names.items():
        if bit and value & bit == bit:
            out.append(name)
            value &= ~bit
    if value:
        out.append(hex(value))
    return "|".join(out) or "0"


_ACCESS_MODES = {os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}
# O_* constants from Python's os module, which takes them from the C headers.
# Composites (O_TMPFILE includes O_DIRECTORY's bit) come first so they are named whole.
_NOT_OPEN_BITS = ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE", "O_RSYNC", "O_FSYNC", "O_NDELAY")
_OPEN_BITS = dict(sorted(
    ((getattr(os, n), n) for n in sorted(dir(os))
     if n.startswith("O_") and getattr(os, n) and n not in _NOT_OPEN_BITS),
    key=lambda kv: -bin(kv[0]).count("1")))


@functools.lru_cache(maxsize=4096)  # a workload opens with few distinct flag words
def _open_flags(value: int) -> str:
    mode = _ACCESS_MODES.get(value & os.O_ACCMODE, hex(value & os.O_ACCMODE))
    rest = value & ~os.O_ACCMODE
    return mode + ("|" + _flag_names(rest, _OPEN_BITS) if rest else "")


# linux/fcntl.h (UAPI, stable)
_AT_FLAGS = {0x100: "AT_SYMLINK_NOFOLLOW", 0x200: "AT_REMOVEDIR", 0x400: "AT_SYMLINK_FOLLOW",
             0x800: "AT_NO_AUTOMOUNT", 0x1000: "AT_EMPTY_PATH"}

@functools.lru_cache(maxsize=256)
def _at_flags(value: int) -> str:
    return _flag_names(value, _AT_FLAGS, "0")


FLAG_DECODERS: dict[str, Callable[[int], str]] = {
    "open_flags": _open_flags,
    "at_flags": _at_flags,
}

_AT_FDCWD = -100
# the fields of the fixed part the syscall decoder reads, in layout order (each
# group is read as one slice of the unpacked tuple; the decoder checks the order)
_HDR_FIELDS = ("ktime_ns", "flags", "tgid", "tid", "uid", "gid", "euid", "egid",
               "cgroup_id", "comm", "thread_comm")
_FILE_FIELDS = ("ino", "dev", "fs_magic", "mode", "nlink", "flags", "depth", "name.off",
                "name.len")
_E = TypeVar("_E", bound=Event)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _s64(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


# -- decode ---------------------------------------------------------------------


class Decoder:
    """Turns records into events for one ABI. Cheap to call per record."""

    def __init__(self, abi: Abi, boot_id: str, *, env_read: bool = False) -> None:
        self.abi = abi
        self.boot_id = boot_id
        self.env_read = env_read
        self._hsize = ctypes.sizeof(abi.header)
        self._type = unpacker(abi.header, ["type"])[0]
        native, compat = native_arches()
        self._arch = (native.name, compat.name if compat else native.name)
        self._kinds = {v: k for k, v in abi.arg_kind.items()}
        # a syscall event's fixed part, read in one unpack (see loader.btf.unpacker)
        sc = abi.syscall
        layout = dict(sc._fields_)
        nargs = layout["args"]._length_
        files = [f"arg_file.{i}" for i in range(nargs)] + ["ret_file"]
        paths = [f"hdr.{f}" for f in _HDR_FIELDS] + \
            ["enter_ns", "ret", "nr", "late_args"] + [f"args.{i}" for i in range(nargs)] + \
            [f"arg_data.{i}.{x}" for i in range(nargs) for x in ("off", "len")] + \
            [f"{f}.{x}" for f in files for x in _FILE_FIELDS]
        self._sc, ix = unpacker(sc, paths)
        self._sc_hdr = ix["hdr." + _HDR_FIELDS[0]]
        self._sc_at = tuple(ix[k] for k in ("enter_ns", "ret", "nr", "late_args"))
        self._sc_args = ix["args.0"]
        self._sc_data = ix["arg_data.0.off"]
        self._sc_files = [ix[f"{f}.ino"] for f in files]
        self._sc_socks = [field_offset(sc, f"{f}.sock")[0] for f in files]
        for first, fields in ((self._sc_hdr, [f"hdr.{f}" for f in _HDR_FIELDS]),
                              (self._sc_args, [f"args.{i}" for i in range(nargs)]),
                              (self._sc_data, [f"arg_data.{i}.{x}" for i in range(nargs)
                                               for x in ("off", "len")]),
                              *((ix[f"{f}.ino"], [f"{f}.{x}" for x in _FILE_FIELDS])
                                for f in files)):
            # each group is read as one slice of the tuple
            if [ix[k] for k in fields] != list(range(first, first + len(fields))):
                raise ValueError(f"{fields[0]}...: not in layout order in bg_syscall_event")
        self._sc_fixed = sc.data.offset
        self._compat_flag = abi.event_flags["COMPAT"]
        self._truncated_flag = abi.event_flags["TRUNCATED"]
        self._iou_flags = (abi.event_flags["IO_URING"], abi.event_flags["FIXED_FILE"],
                           abi.event_flags["FIXED_RESULT"], abi.event_flags["NO_COMPLETION"])
        # (number, compat) -> name and spec: the same few syscalls, event after event
        self._syscalls: dict[tuple[int, bool], tuple[str, SyscallSpec]] = {}
        self._sock_t = dict(layout["ret_file"]._fields_)["sock"]

    def _base(self, cls: type[_E], h: Any, **kw: Any) -> _E:
        ev = cls(type=kw.pop("type"), ktime_ns=h.ktime_ns, pid=h.tgid, tid=h.tid, uid=h.uid,
                 gid=h.gid, cgroup_id=h.cgroup_id, comm=_cstr(bytes(h.comm)),
                 truncated=bool(h.flags & self.abi.event_flags["TRUNCATED"]),
                 thread_comm=_cstr(bytes(h.thread_comm)), **kw)
        ev.euid, ev.egid = h.euid, h.egid
        return ev

    def decode(self, rec: bytes) -> Event | None:
        if len(rec) < self._hsize:
            return None
        kind = self.abi._types.get(self._type.unpack_from(rec)[0])
        if kind == "SYSCALL":
            return self._syscall(rec)
        if kind == "EXEC":
            return self._exec(rec)
        if kind == "FORK":
            e = self.abi.fork.from_buffer_copy(rec[: ctypes.sizeof(self.abi.fork)])
            return self._base(ForkEvent, e.hdr, type="fork", ppid=e.ppid, start_ns=e.start_ns,
                              vpid=e.vpid)
        if kind == "EXIT":
            e = self.abi.exit.from_buffer_copy(rec[: ctypes.sizeof(self.abi.exit)])
            st = e.exit_code
            sig = st & 0x7F
            return self._base(ExitEvent, e.hdr, type="exit", ppid=e.ppid, start_ns=e.start_ns,
                              status=st, exit_code=None if sig else (st >> 8) & 0xFF,
                              signal=sig or None, core_dumped=bool(st & 0x80))
        return None

    def _exec(self, rec: bytes) -> ExecEvent:
        size = ctypes.sizeof(self.abi.exec)
        e = self.abi.exec.from_buffer_copy(rec[:size].ljust(size, b"\0"))
        data = rec[self.abi.exec.data.offset:]  # the payload starts at data[], not at sizeof
        args = _strings(_blob(data, e.args))
        flags = self.abi.exec_flags
        tty = _cstr(_blob(data, e.tty)) if e.tty.len else None
        return self._base(
            ExecEvent, e.hdr, type="exec", ppid=e.ppid, start_ns=e.start_ns,
            exec_id=f"{self.boot_id}:{e.hdr.ktime_ns}:{e.hdr.tgid}",
            exe=_file(self.abi, data, e.exe), filename=_cstr(_blob(data, e.filename)),
            args=args, args_truncated=bool(e.exec_flags & flags["ARGS_TRUNCATED"]),
            cwd=_file(self.abi, data, e.cwd), euid=e.euid, egid=e.egid, loginuid=e.loginuid,
            sessionid=e.sessionid, cap_effective=e.cap_effective,
            cap_permitted=e.cap_permitted, mntns=e.mntns, pidns=e.pidns, netns=e.netns,
            userns=e.userns, cgroupns=e.cgroupns, cgroup=_cgroup_path(_blob(data, e.cgroup)),
            cgroup_v1=_cgroup_path(_blob(data, e.cgroup_v1)) if e.cgroup_v1.len else None,
            tty=tty, sid=e.sid, pgid=e.pgid, tty_nr=_tty_nr(e.tty_dev),
            exe_uid=e.exe_uid if e.exe.flags & self.abi.file_flags["VALID"] else None,
            exe_gid=e.exe_gid if e.exe.flags & self.abi.file_flags["VALID"] else None,
            env=_strings(_blob(data, e.env)) if self.env_read else None,
            env_truncated=bool(e.exec_flags & flags["ENV_TRUNCATED"]),
            exe_upper_layer=bool(e.exec_flags & flags["EXE_UPPER"])
            if e.exec_flags & flags["EXE_LAYER"] else None, vpid=e.vpid,
        )

    def _syscall(self, rec: bytes) -> SyscallEvent:
        st = self._sc
        if len(rec) < st.size:
            rec = rec.ljust(st.size, b"\0")
        t = st.unpack_from(rec)
        i_enter, i_ret, i_nr, i_late = self._sc_at
        h = self._sc_hdr
        hflags = t[h + 1]
        compat = bool(hflags & self._compat_flag)
        nr = t[i_nr] % self.abi.nr_max
        known = self._syscalls.get((nr, compat))
        if known is None:
            name = syscall_name(nr, compat=compat)
            known = self._syscalls[(nr, compat)] = (name, spec_for(name))
        name, spec = known
        args = SyscallArgs(self, spec, t, rec, compat, t[i_late])
        ret = t[i_ret]
        err = None
        if -4096 < ret < 0:
            err = _errno.errorcode.get(-ret, str(-ret))
        ktime = t[h]
        ev = SyscallEvent(
            type="syscall", ktime_ns=ktime, pid=t[h + 2], tid=t[h + 3], uid=t[h + 4],
            gid=t[h + 5], cgroup_id=t[h + 8], comm=_cstr(t[h + 9]),
            truncated=bool(hflags & self._truncated_flag), syscall=name, nr=nr,
            arch=self._arch[1] if compat else self._arch[0], ret=ret, errno=err,
            latency_ns=ktime - t[i_enter], args=args,
            ret_file=args.file(len(self._sc_files) - 1) if ret >= 0 else None,
            euid=t[h + 6], egid=t[h + 7], thread_comm=_cstr(t[h + 10]))
        if hflags & self._iou_flags[0]:
            ev.io_uring = True
            ev.fixed_file = bool(hflags & self._iou_flags[1])
            ev.fixed_result = bool(hflags & self._iou_flags[2])
            ev.no_completion = bool(hflags & self._iou_flags[3])
        return ev

    def _sc_arg(self, a: SyscallArgs, i: int) -> Any:
        """Argument i of a syscall event, decoded (see SyscallArgs)."""
        spec = a.spec.args[i]
        raw = a.t[self._sc_args + i] & (0xFFFFFFFF if a.compat else 0xFFFFFFFFFFFFFFFF)
        kind = spec.kind
        if kind == "INT":  # a C int: what the syscall saw of its register
            return _s32(raw)
        if kind == "U32":
            return raw & 0xFFFFFFFF
        if kind == "LONG":
            return _s32(raw) if a.compat else _s64(raw)
        if kind in ("UINT", "OPEN_HOW"):  # OPEN_HOW: the flags word the kernel read
            dec = FLAG_DECODERS.get(spec.decoder or "")
            return dec(raw) if dec else raw
        if kind == "PTR":
            return hex(raw)
        if kind == "DIRFD":
            fd = _s32(raw)
            return "AT_FDCWD" if fd == _AT_FDCWD else fd
        if kind == "FD":
            f = a.file(i)
            return {"fd": _s32(raw), **(f.to_dict() if f else {})}
        if kind in ("PATH", "PATH_AT"):
            user = _cstr(a.blob(i))
            if user.startswith("/"):
                resolved: str | None = posixpath.normpath(user)
            else:
                base = a.file(i)
                resolved = None if base is None else \
                    posixpath.normpath(posixpath.join(base.path, user))
            out: dict[str, Any] = {"user": user, "resolved": resolved}
            if a.late & (1 << i):
                out["read_at_exit"] = True
            return out
        if kind == "STR":
            return _cstr(a.blob(i))
        if kind == "SOCKADDR":
            return decode_sockaddr(a.blob(i))
        raise AssertionError(f"argument kind {kind}")


class SyscallArgs(Mapping[str, Any]):
    """A syscall event's arguments by name, each decoded when first read.

    The rules read few of an event's arguments (an open's flags and the name it
    was given, not the path of its dirfd), and the reader thread decodes every
    event that reaches user space: decoding only what is read is what keeps it
    fast. The record stays referenced until every argument is decoded or the
    event is dropped (the record only: payload offsets are read from it in
    place, not from a copy)."""

    __slots__ = ("_decoder", "spec", "t", "rec", "compat", "late", "_values")

    def __init__(self, decoder: Decoder, spec: SyscallSpec, t: tuple[Any, ...], rec: bytes,
                 compat: bool, late: int) -> None:
        self._decoder = decoder
        self.spec, self.t, self.rec = spec, t, rec
        self.compat, self.late = compat, late
        self._values: dict[int, Any] = {}

    def __getitem__(self, name: str) -> Any:
        i = self.spec.index.get(name)
        if i is None:
            raise KeyError(name)
        return self._at(i)

    def get(self, name: str, default: Any = None) -> Any:
        i = self.spec.index.get(name)
        return default if i is None else self._at(i)

    def _at(self, i: int) -> Any:
        v = self._values.get(i, _UNSET)
        if v is _UNSET:
            v = self._values[i] = self._decoder._sc_arg(self, i)
        return v

    def __iter__(self) -> Iterator[str]:
        return iter(self.spec.index)

    def __len__(self) -> int:
        return len(self.spec.args)

    def __repr__(self) -> str:
        return repr(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {name: self._at(i) for name, i in self.spec.index.items()}

    def file(self, i: int) -> FileRef | None:
        """The struct bg_file of argument i (the last: the returned fd's)."""
        d = self._decoder
        k, off = d._sc_files[i], d._sc_socks[i]
        ino, dev, magic, mode, nlink, fflags, depth, name_off, name_len = self.t[k:k + 9]
        return _file_of(d.abi, self.rec, ino, dev, magic, mode, nlink, fflags, depth,
                        d._sc_fixed + name_off, name_len,
                        functools.partial(d._sock_t.from_buffer_copy, self.rec, off))

    def user_path(self, name: str) -> str | None:
        """The string path argument `name` was given, without resolving it
        against its directory (what reading the argument itself adds)."""
        i = self.spec.index.get(name)
        if i is None:
            return None
        v = self._values.get(i)
        return v["user"] if v is not None else _cstr(self.blob(i))

    def blob(self, i: int) -> bytes:
        """The bytes argument i's user string or sockaddr was read into."""
        d = self._decoder
        off, n = self.t[d._sc_data + 2 * i], self.t[d._sc_data + 2 * i + 1]
        off += d._sc_fixed
        return self.rec[off:off + n]


_UNSET = object()

