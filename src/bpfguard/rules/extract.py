"""Field extractors: one function per field, from a RuleEvent to a value.

An extractor returns None when the value is absent (Falco: the field cannot
be extracted, so every comparison on it is false), or :class:`AnyOf` for a
field that stands for several values at once (``proc.aname`` without an index:
any ancestor), which a comparison matches if one of them does.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import grp
import ipaddress
import posixpath
import pwd
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..containers import Container, Mount, Pod
from ..proctable import TRUNCATED, Process
from ..seccomp.profile import CAPABILITIES
from ..timefmt import rfc3339
from .ast import FieldRef
from .event import RuleEvent, exe_writable, memfd_exepath
from .fields import ABSENT, FIELDS

__all__ = ["ABSENT_FIELDS", "AnyOf", "Extractor", "extractor", "render"]


class AnyOf(list[Any]):
    """Several values for one field: a comparison holds if it holds for one."""


Extractor = Callable[[RuleEvent], Any]

_OVERLAYFS_MAGIC = 0x794C7630
_SHELLS = frozenset({"ash", "bash", "csh", "ksh", "sh", "tcsh", "zsh", "dash", "fish"})
_K8S_POD = re.compile(r"pod([0-9a-f]{8}(?:[-_][0-9a-f]{4}){3}[-_][0-9a-f]{12})")


def _user(uid: int | None) -> pwd.struct_passwd | None:
    if uid is None or uid < 0:
        return None
    return _pw(uid)


_pw_cache: dict[int, pwd.struct_passwd | None] = {}


def _pw(uid: int) -> pwd.struct_passwd | None:
    if uid not in _pw_cache:
        try:
            _pw_cache[uid] = pwd.getpwuid(uid)
        except KeyError:
            _pw_cache[uid] = None
    return _pw_cache[uid]


_gr_cache: dict[int, str | None] = {}


def _group_name(gid: int | None) -> str | None:
    if gid is None:
        return None
    if gid not in _gr_cache:
        try:
            _gr_cache[gid] = grp.getgrgid(gid).gr_name
        except KeyError:
            _gr_cache[gid] = None
    return _gr_cache[gid]


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


# -- process helpers ------------------------------------------------------------


def _p(e: RuleEvent) -> Process | None:
    return e.proc


def _exepath(p: Process | None) -> str | None:
    return memfd_exepath(p.exe) if p else None


def _argv0(p: Process | None) -> str | None:
    return p.args[0] if p and p.args else None


def _cmdline(p: Process | None, comm: str | None = None) -> str | None:
    """Falco's proc.cmdline: the name, then the arguments."""
    if p is None:
        return None
    name = comm or p.comm
    return " ".join([name, *p.args[1:]]) + (TRUNCATED if p.args_truncated else "")


def _ancestor(e: RuleEvent, n: int) -> Process | None:
    """[0] the process itself, [1] its parent, ..."""
    if n == 0:
        return e.proc
    anc = e.ancestors
    return anc[n - 1] if n - 1 < len(anc) else None


def _by_ancestor(get: Callable[[Process], Any]) -> Callable[[RuleEvent, str | None], Any]:
    def extract(e: RuleEvent, arg: str | None) -> Any:
        if arg is None:
            return AnyOf(v for v in (get(a) for a in e.ancestors) if v is not None)
        p = _ancestor(e, int(arg))
        return get(p) if p else None
    return extract


def _euid(e: RuleEvent) -> int | None:
    if e.event.euid is not None:
        return e.event.euid
    return e.proc.euid if e.proc else None


def _egid(e: RuleEvent) -> int | None:
    if e.event.egid is not None:
        return e.event.egid
    return e.proc.egid if e.proc else None


def _caps(mask: int | None) -> str | None:
    if mask is None:
        return None
    return " ".join(c for i, c in enumerate(CAPABILITIES) if mask >> i & 1)


def _duration(e: RuleEvent, p: Process | None) -> int | None:
    if p is None or not p.start_ns:
        return None
    return max(0, e.event.ktime_ns - p.start_ns)


def _leader(e: RuleEvent, pid: int | None) -> Process | None:
    return e.table.get(pid) if pid else None


def _loginshell(e: RuleEvent) -> int | None:
    found = None
    for p in [e.proc, *e.ancestors]:
        if p is not None and p.comm in _SHELLS:
            found = p.pid
    return found


def _env(e: RuleEvent, arg: str | None) -> str | None:
    p = e.proc
    if p is None or p.env is None:
        return None
    if arg is None:
        return " ".join(p.env)
    for item in p.env:
        k, _, v = item.partition("=")
        if k == arg:
            return v
    return None


# -- container ------------------------------------------------------------------


def _container(p: Process | None) -> tuple[str, str] | None:
    return p.container if p else None


def _info(e: RuleEvent) -> Container | None:
    c = _container(e.proc)
    return e.table.containers.get(c[1], c[0]) if c is not None else None


def _cfield(get: Callable[[Container, str | None], Any], host: Any
            ) -> Callable[[RuleEvent, str | None], Any]:
    """A container field: `host` on the host (container.name is "host"
    there, image fields absent, as in libsinsp), absent
    while the runtime has not said, else what `get` reads."""
    def extract(e: RuleEvent, a: str | None) -> Any:
        if _container(e.proc) is None:
            return host
        info = _info(e)
        return get(info, a) if info is not None else None
    return extract


def _pod_field(get: Callable[[Pod, str | None], Any]) -> Callable[[RuleEvent, str | None], Any]:
    def extract(e: RuleEvent, a: str | None) -> Any:
        info = _info(e) if _container(e.proc) is not None else None
        return get(info.pod, a) if info is not None and info.pod is not None else None
    return extract


def _pod_uid(e: RuleEvent, _a: str | None) -> str | None:
    info = _info(e) if _container(e.proc) is not None else None
    if info is not None and info.pod is not None and info.pod.uid:
        return info.pod.uid
    p = e.proc
    m = None
    for path in (p.cgroup, p.cgroup_v1) if p else ():
        m = m or _K8S_POD.search(path or "")
    return m.group(1).replace("_", "-") if m else None


def _labels_text(labels: Mapping[str, str]) -> str | None:
    """Falco's rendering of labels: ``k:v, k2:v2``, leaving out the runtime's
    own io.kubernetes.* and annotation.* keys."""
    shown = [f"{k}:{v}" if v else k for k, v in labels.items()
             if not k.startswith(("io.kubernetes.", "annotation."))]
    return ", ".join(shown) if shown else None


def _mount(c: Container, key: str | None, by: str = "source") -> Mount | None:
    """A mount by index, or the first whose source (destination, for
    container.mount.source[...]) matches a glob, as Falco's container.mount*
    fields take them (its sensitive_mount macro: container.mount.dest[/proc*])."""
    if key is None:
        return None
    if key.isdigit():
        i = int(key)
        return c.mounts[i] if i < len(c.mounts) else None
    return next((m for m in c.mounts if fnmatch.fnmatchcase(getattr(m, by), key)), None)


def _mount_attr(attr: str) -> Callable[[Container, str | None], Any]:
    def get(c: Container, key: str | None) -> Any:
        m = _mount(c, key)
        if m is None:
            return None
        v = getattr(m, attr)
        return ("true" if v else "false") if isinstance(v, bool) else v
    return get


def _mount_source(c: Container, key: str | None) -> str | None:
    m = _mount(c, key, by="dest")
    return m.source if m is not None else None


# -- fd and network ----------------------------------------------------------------


def _fd_file(e: RuleEvent) -> str | None:
    fd = e.fd
    return fd.name if fd and fd.typechar in ("f", "d", "m") else None


def _ends(e: RuleEvent) -> tuple[tuple[Any, int], tuple[Any, int]] | None:
    """((server ip, port), (client ip, port)) of the event's IP socket."""
    fd = e.fd
    s = fd.file.sock if fd and fd.file else None
    if s is None or s.local is None or s.remote is None:
        return None
    local = (ipaddress.ip_address(s.local), s.local_port)
    remote = (ipaddress.ip_address(s.remote), s.remote_port)
    return (local, remote) if fd and fd.server_local else (remote, local)


def _end(which: int, part: int) -> Callable[[RuleEvent, str | None], Any]:
    def extract(e: RuleEvent, _arg: str | None) -> Any:
        ends = _ends(e)
        return ends[which][part] if ends else None
    return extract


def _local_end(local: bool, part: int) -> Callable[[RuleEvent, str | None], Any]:
    def extract(e: RuleEvent, _arg: str | None) -> Any:
        ends = _ends(e)
        if ends is None or e.fd is None:
            return None
        server_is_local = e.fd.server_local
        return ends[0 if server_is_local == local else 1][part]
    return extract


def _both(part: int) -> Callable[[RuleEvent, str | None], Any]:
    def extract(e: RuleEvent, _arg: str | None) -> Any:
        ends = _ends(e)
        return AnyOf([ends[0][part], ends[1][part]]) if ends else None
    return extract


def _l4proto(e: RuleEvent) -> str | None:
    fd = e.fd
    s = fd.file.sock if fd and fd.file else None
    if s is None:
        return None
    if s.family not in ("AF_INET", "AF_INET6"):
        return None
    return {1: "tcp", 2: "udp", 3: "raw"}.get(s.type, "unknown")


# -- event ------------------------------------------------------------------------


def _arg(e: RuleEvent, arg: str | None) -> Any:
    """evt.arg.NAME / evt.arg[N]: Falco's parameter, as text (evt.rawarg is the value)."""
    if arg is None:
        return None
    if arg.isdigit():
        args = e.args
        keys = list(args)
        i = int(arg)
        v = args[keys[i]] if i < len(keys) else None
    else:
        v = e.arg(arg)
    return None if v is None else render(v)


def _args_text(e: RuleEvent) -> str:
    return " ".join(f"{k}={render(v)}" for k, v in e.args.items() if k != "res")


def _res(e: RuleEvent) -> str:
    sc = e.syscall
    if sc is None or sc.ret >= 0:
        return "SUCCESS"
    return sc.errno or str(sc.ret)


def _is_open(mode: str) -> Callable[[RuleEvent, str | None], Any]:
    def extract(e: RuleEvent, _arg: str | None) -> Any:
        flags = e.open_flags
        if flags is None:
            return False if e.syscall is not None else None
        return mode in _open_modes(flags)
    return extract


def _is_open_exec(e: RuleEvent) -> bool | None:
    """Falco's evt.is_open_exec: an open that creates a file (evt.is_open_create)
    with an execute bit in its mode, the mark of a binary being dropped.
    Absent for openat2, whose mode bpfguard does not decode."""
    flags = e.open_flags
    if flags is None:
        return False if e.syscall is not None else None
    mode = e.syscall.args.get("mode") if e.syscall is not None else None
    if not isinstance(mode, int):
        return None
    return "create" in _open_modes(flags) and bool(mode & 0o111)


@functools.lru_cache(maxsize=1024)  # a workload opens with few distinct flag words
def _open_modes(flags: str) -> frozenset[str]:
    """What evt.is_open_read/write/create say of open flags."""
    names = set(flags.split("|"))
    return frozenset(m for m, bits in (("read", {"O_RDONLY", "O_RDWR"}),
                                       ("write", {"O_WRONLY", "O_RDWR"}),
                                       ("create", {"O_CREAT", "O_TMPFILE"})) if names & bits)


def _time(fmt: Callable[[dt.datetime, int], str]) -> Callable[[RuleEvent, str | None], Any]:
    def extract(e: RuleEvent, _arg: str | None) -> Any:
        ns = e.event.time_ns
        return fmt(dt.datetime.fromtimestamp(ns / 1e9, dt.UTC), ns)
    return extract


def _fs_path(which: str, raw: bool) -> Callable[[RuleEvent, str | None], Any]:
    """fs.path.name/source/target of path syscalls (resolved, or as passed)."""
    def extract(e: RuleEvent, _arg: str | None) -> Any:
        sc = e.syscall
        if sc is None:
            return None
        paths = [v for v in sc.args.values() if isinstance(v, dict) and "user" in v]
        name = sc.syscall
        if name in ("symlink", "symlinkat"):
            pick = {"source": sc.args.get("target"),
                    "target": paths[0] if paths else None}.get(which)
            if isinstance(pick, str):
                return pick
        elif which == "name" and len(paths) == 1:
            pick = paths[0]
        elif which in ("source", "target") and len(paths) == 2:
            pick = paths[0 if which == "source" else 1]
        else:
            return None
        if not isinstance(pick, dict):
            return None
        return pick.get("user") if raw else pick.get("resolved")
    return extract


def _const(value: Any) -> Callable[[RuleEvent, str | None], Any]:
    return lambda _e, _a: value


def _absent(_e: RuleEvent, _a: str | None) -> Any:
    """A field bpfguard never has a value for (fields.ABSENT says why)."""
    return None


def _proc(get: Callable[[RuleEvent, Process], Any]) -> Callable[[RuleEvent, str | None], Any]:
    def extract(e: RuleEvent, _arg: str | None) -> Any:
        p = e.proc
        return get(e, p) if p is not None else None
    return extract


def _parent(get: Callable[[Process], Any]) -> Callable[[RuleEvent, str | None], Any]:
    def extract(e: RuleEvent, _arg: str | None) -> Any:
        p = _ancestor(e, 1)
        return get(p) if p is not None else None
    return extract


_E = Callable[[RuleEvent, str | None], Any]

_EXTRACT: dict[str, _E] = {
    "evt.num": lambda e, a: e.num,
    "evt.time": lambda e, a: e.event.time_ns,
    "evt.rawtime": lambda e, a: e.event.time_ns,
    "evt.time.s": _time(lambda t, ns: t.strftime("%H:%M:%S")),
    "evt.time.iso8601": lambda e, a: rfc3339(e.event.time_ns),
    "evt.datetime": _time(lambda t, ns: t.strftime("%Y-%m-%d %H:%M:%S.") + f"{ns % 10**9:09d}"),
    "evt.type": lambda e, a: e.type,
    "evt.dir": _const("<"),
    "evt.cpu": _absent,
    "evt.args": lambda e, a: _args_text(e),
    "evt.buffer": _absent,
    "evt.arg": _arg,
    "evt.rawarg": lambda e, a: (e.syscall.args.get(a) if e.syscall and a else None),
    "evt.res": lambda e, a: _res(e),
    "evt.rawres": lambda e, a: e.ret,
    "evt.failed": lambda e, a: e.ret < 0,
    "evt.is_open_read": _is_open("read"),
    "evt.is_open_write": _is_open("write"),
    "evt.is_open_exec": lambda e, a: _is_open_exec(e),
    "evt.is_open_create": _is_open("create"),
    "evt.is_io_uring": lambda e, a: e.syscall.io_uring if e.syscall else False,
    "evt.latency": lambda e, a: e.syscall.latency_ns if e.syscall else 0,
    "evt.hostname": lambda e, a: e.hostname,
    "evt.source": _const("syscall"),
    "syscall.type": lambda e, a: e.type if e.syscall or e.exec else None,
    # process
    "proc.name": lambda e, a: e.event.comm,
    "proc.exe": lambda e, a: _argv0(e.proc),
    "proc.exepath": lambda e, a: _exepath(e.proc),
    "proc.pexepath": _parent(lambda p: memfd_exepath(p.exe)),
    "proc.aexepath": _by_ancestor(lambda p: memfd_exepath(p.exe)),
    "proc.cmdline": lambda e, a: _cmdline(e.proc, e.event.comm),
    "proc.args": _proc(lambda e, p: " ".join(p.args[1:]) + (TRUNCATED if p.args_truncated
                                                             else "")),
    "proc.args_truncated": _proc(lambda e, p: p.args_truncated),
    "proc.pid": lambda e, a: e.event.pid,
    "proc.ppid": _proc(lambda e, p: p.ppid),
    "proc.vpid": _proc(lambda e, p: p.vpid),
    "proc.pname": _parent(lambda p: p.comm),
    "proc.pexe": _parent(_argv0),
    "proc.aexe": _by_ancestor(_argv0),
    "proc.pcmdline": _parent(_cmdline),
    "proc.aname": _by_ancestor(lambda p: p.comm),
    "proc.apid": _by_ancestor(lambda p: p.pid),
    "proc.sid": _proc(lambda e, p: p.sid or None),
    "proc.sname": _proc(lambda e, p: (s.comm if (s := _leader(e, p.sid)) else None)),
    "proc.vpgid": _proc(lambda e, p: p.pgid or None),
    "proc.vpgid.name": _proc(lambda e, p: (g.comm if (g := _leader(e, p.pgid)) else None)),
    "proc.vpgid.exe": _proc(lambda e, p: _argv0(_leader(e, p.pgid))),
    "proc.is_vpgid_leader": _proc(lambda e, p: p.pgid == p.pid if p.pgid else None),
    "proc.is_sid_leader": _proc(lambda e, p: p.sid == p.pid if p.sid else None),
    "proc.tty": _proc(lambda e, p: p.tty_nr),
    "proc.cwd": _proc(lambda e, p: p.cwd.rstrip("/") + "/" if p.cwd else None),
    "proc.duration": lambda e, a: _duration(e, e.proc),
    "proc.ppid.duration": lambda e, a: _duration(e, _ancestor(e, 1)),
    "proc.loginshellid": lambda e, a: _loginshell(e),
    "proc.is_exe_from_memfd": _proc(lambda e, p: p.exe_from_memfd),
    # on overlayfs, as the kernel told it at exec; elsewhere false
    "proc.is_exe_upper_layer": _proc(
        lambda e, p: p.exe_upper_layer if p.exe_fs_magic == _OVERLAYFS_MAGIC
        else False if p.exe_fs_magic is not None else None),
    "proc.is_exe_writable": _proc(lambda e, p: exe_writable(p)),
    "proc.exe_ino": _proc(lambda e, p: p.exe_ino),
    "proc.exe_ino.ctime": _absent,
    "proc.exe_ino.mtime": _absent,
    "proc.exe_ino.ctime_duration_proc_start": _absent,
    "proc.env": _env,
    "proc.stdin.name": _absent,
    "proc.stdout.name": _absent,
    "thread.tid": lambda e, a: e.event.tid,
    "thread.comm": lambda e, a: e.event.thread_comm,
    "thread.cap_effective": _proc(lambda e, p: _caps(p.cap_effective)),
    "thread.cap_permitted": _proc(lambda e, p: _caps(p.cap_permitted)),
    # user and group: the effective ids at the event, as Falco's (and the kernel filter's)
    "user.uid": lambda e, a: _euid(e),
    "user.name": lambda e, a: (u.pw_name if (u := _user(_euid(e))) else None),
    "user.homedir": lambda e, a: (u.pw_dir if (u := _user(_euid(e))) else None),
    "user.shell": lambda e, a: (u.pw_shell if (u := _user(_euid(e))) else None),
    "user.loginuid": _proc(lambda e, p: _s32(p.loginuid)),
    "user.loginname": _proc(lambda e, p: (u.pw_name if (u := _user(_s32(p.loginuid))) else None)),
    "group.gid": lambda e, a: _egid(e),
    "group.name": lambda e, a: _group_name(_egid(e)),
    # fd
    "fd.num": lambda e, a: e.fd.num if e.fd else None,
    "fd.name": lambda e, a: e.fd.name if e.fd else None,
    "fd.nameraw": lambda e, a: (e.fd.nameraw or e.fd.name) if e.fd else None,
    "fd.directory": lambda e, a: (posixpath.dirname(n) if (n := _fd_file(e)) else None),
    "fd.filename": lambda e, a: (posixpath.basename(n) if (n := _fd_file(e)) else None),
    "fd.type": lambda e, a: e.fd.type if e.fd else None,
    "fd.typechar": lambda e, a: e.fd.typechar if e.fd else None,
    "fd.types": _absent,
    "fd.ino": lambda e, a: e.fd.ino if e.fd else None,
    "fd.dev": lambda e, a: e.fd.dev if e.fd else None,
    "fd.nlink": lambda e, a: e.fd.file.nlink if e.fd and e.fd.file else None,
    "fd.sip": _end(0, 0), "fd.sport": _end(0, 1),
    "fd.cip": _end(1, 0), "fd.cport": _end(1, 1),
    "fd.lip": _local_end(True, 0), "fd.lport": _local_end(True, 1),
    "fd.rip": _local_end(False, 0), "fd.rport": _local_end(False, 1),
    "fd.ip": _both(0), "fd.port": _both(1),
    "fd.snet": _end(0, 0), "fd.cnet": _end(1, 0),
    "fd.lnet": _local_end(True, 0), "fd.rnet": _local_end(False, 0), "fd.net": _both(0),
    "fd.l4proto": lambda e, a: _l4proto(e),
    "fd.sockfamily": lambda e, a: ({"4": "ip", "6": "ip", "u": "unix"}.get(e.fd.typechar or "")
                                   if e.fd else None),
    "fd.sip.name": _absent,
    "fd.cip.name": _absent,
    "fd.lip.name": _absent,
    "fd.rip.name": _absent,
    "fd.connected": lambda e, a: e.fd.connected if e.fd else None,
    "fd.name_changed": _absent,
    "fs.path.name": _fs_path("name", False),
    "fs.path.nameraw": _fs_path("name", True),
    "fs.path.source": _fs_path("source", False),
    "fs.path.sourceraw": _fs_path("source", True),
    "fs.path.target": _fs_path("target", False),
    "fs.path.targetraw": _fs_path("target", True),
    # container and Kubernetes
    "container.id": lambda e, a: (c[1][:12] if (c := _container(e.proc)) else "host"),
    "container.full_id": lambda e, a: (c[1] if (c := _container(e.proc)) else "host"),
    "container.type": lambda e, a: (c[0] if (c := _container(e.proc)) else "host"),
    "container.name": _cfield(lambda c, a: c.name, "host"),
    "container.image": _cfield(lambda c, a: c.image, None),
    "container.image.repository": _cfield(lambda c, a: c.image_repository, None),
    "container.image.tag": _cfield(lambda c, a: c.image_tag, None),
    "container.image.id": _cfield(lambda c, a: c.image_id, None),
    "container.image.digest": _cfield(lambda c, a: c.repo_digest, None),
    "container.privileged": _cfield(lambda c, a: c.privileged, None),
    "container.mounts": _cfield(lambda c, a: ",".join(m.text() for m in c.mounts) or None, None),
    "container.mount": _cfield(lambda c, a: (m.text() if (m := _mount(c, a)) else None), None),
    "container.mount.source": _cfield(_mount_source, None),
    "container.mount.dest": _cfield(_mount_attr("dest"), None),
    "container.mount.mode": _cfield(_mount_attr("mode"), None),
    "container.mount.rdwr": _cfield(_mount_attr("rdwr"), None),
    "container.mount.propagation": _cfield(_mount_attr("propagation"), None),
    "container.start_ts": _cfield(lambda c, a: c.start_ns, None),
    "container.label": _cfield(lambda c, a: c.labels.get(a or ""), None),
    "container.labels": _cfield(lambda c, a: _labels_text(c.labels), None),
    "k8s.pod.uid": _pod_uid,
    "k8s.pod.name": _pod_field(lambda p, a: p.name),
    "k8s.ns.name": _pod_field(lambda p, a: p.namespace),
    "k8s.pod.label": _pod_field(lambda p, a: p.labels.get(a or "")),
    "k8s.pod.labels": _pod_field(lambda p, a: _labels_text(p.labels)),
}

assert set(_EXTRACT) == set(FIELDS), set(FIELDS) ^ set(_EXTRACT)

# Comparisons on these are always false: the pushdown planner drops branches on them.
ABSENT_FIELDS = frozenset(k for k, v in _EXTRACT.items() if v is _absent)
assert set(ABSENT) == ABSENT_FIELDS, ABSENT_FIELDS ^ set(ABSENT)


def extractor(ref: FieldRef) -> Extractor:
    """The extractor of a (validated) field reference."""
    fn, arg = field_function(ref)
    return lambda e: fn(e, arg)


def field_function(ref: FieldRef) -> tuple[Callable[[RuleEvent, str | None], Any], str | None]:
    """What :func:`extractor` calls: a function of the event and the field's
    argument, and that argument (for code that makes the call itself)."""
    return _EXTRACT[ref.name], ref.arg


def render(value: Any) -> str:
    """A value as Falco prints it in outputs; absent values are <NA>."""
    if value is None:
        return "<NA>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, AnyOf):
        return ",".join(render(v) for v in value) or "<NA>"
    return str(value)

