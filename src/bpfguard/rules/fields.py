"""The filter fields bpfguard provides, with Falco's names, types and arguments.

This is the registry the loader validates conditions against and the
compiler looks extractors up in (:mod:`.extract`). Semantics follow Falco's
(libsinsp) field documentation; where bpfguard cannot know a value it is
absent, never invented (a comparison on an absent value is false).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .ast import FieldRef

__all__ = ["ABSENT", "FIELDS", "SUGGESTED_FIELDS", "ArgKind", "FieldSpec", "FieldType",
           "check_field", "split_field"]


class FieldType(Enum):
    STR = "string"
    INT = "int"
    BOOL = "bool"
    IP = "ipaddr"
    NET = "ipnet"
    PORT = "port"
    TIME = "abstime"  # ns since the epoch
    DURATION = "reltime"  # ns
    LIST = "list"  # a set of strings (fd.types)


class ArgKind(Enum):
    NONE = "none"
    INDEX = "index"  # proc.aname[2]: a non-negative integer; absent means "any"
    INDEX_REQUIRED = "index-required"
    KEY = "key"  # proc.env[HOME], evt.arg[flags] / evt.arg.flags
    KEY_REQUIRED = "key-required"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: FieldType
    desc: str
    arg: ArgKind = ArgKind.NONE


def _specs(*rows: tuple[str, FieldType, str] | tuple[str, FieldType, str, ArgKind]
           ) -> dict[str, FieldSpec]:
    out = {}
    for row in rows:
        name, typ, desc = row[0], row[1], row[2]
        arg = row[3] if len(row) > 3 else ArgKind.NONE
        out[name] = FieldSpec(name, typ, desc, arg)
    return out


S, N, B = FieldType.STR, FieldType.INT, FieldType.BOOL
IDX, KEY = ArgKind.INDEX, ArgKind.KEY

FIELDS: dict[str, FieldSpec] = _specs(
    # -- event
    ("evt.num", N, "event number, increasing"),
    ("evt.time", FieldType.TIME, "event time (ns since the epoch)"),
    ("evt.time.s", S, "event time as HH:MM:SS"),
    ("evt.time.iso8601", S, "event time, ISO 8601"),
    ("evt.datetime", S, "event date and time"),
    ("evt.rawtime", FieldType.TIME, "event time (ns since the epoch)"),
    ("evt.type", S, "syscall name (execve for a new program)"),
    ("evt.dir", S, "'<' for an exit event: bpfguard reports syscalls at exit"),
    ("evt.cpu", N, "CPU number"),
    ("evt.args", S, "all arguments as text"),
    ("evt.buffer", S, "the data a read or write moved"),
    ("evt.arg", S, "one argument by name (evt.arg.flags) or index (evt.arg[0])",
     ArgKind.KEY_REQUIRED),
    ("evt.rawarg", S, "one argument's raw value by name", ArgKind.KEY_REQUIRED),
    ("evt.res", S, "SUCCESS, or the errno name of a failure (ENOENT)"),
    ("evt.rawres", N, "the return value"),
    ("evt.failed", B, "the syscall failed"),
    ("evt.is_open_read", B, "an open for reading"),
    ("evt.is_open_write", B, "an open for writing"),
    ("evt.is_open_exec", B, "an open that creates a file with an execute bit in its mode"),
    ("evt.is_open_create", B, "an open that creates (O_CREAT)"),
    ("evt.is_io_uring", B, "submitted through io_uring: the request reported as the syscall "
                           "that does the same (bpfguard's; Falco sees none of them)"),
    ("evt.latency", FieldType.DURATION, "syscall duration (ns)"),
    ("evt.hostname", S, "host name"),
    ("evt.source", S, "event source: syscall"),
    ("syscall.type", S, "syscall name (absent for a program start seen by the process sensor)"),
    # -- process
    ("proc.name", S, "the name the process was executed as (15 chars), from the kernel at "
                     "its execve; a forked child keeps its parent's. prctl(PR_SET_NAME) "
                     "does not change it (see thread.comm)"),
    ("proc.exe", S, "argv[0] as the process passed it"),
    ("proc.exepath", S, "the executable's full path, from the kernel"),
    ("proc.pexepath", S, "the parent's executable path"),
    ("proc.aexepath", S, "an ancestor's executable path ([1] the parent)", IDX),
    ("proc.cmdline", S, "name and arguments (ending in ... when argv was cut)"),
    ("proc.args", S, "arguments, space separated; ending in ... when the kernel cut argv "
                     "(longer than sensors.args_max)"),
    ("proc.args_truncated", B, "bpfguard: argv was longer than the kernel reads at exec; "
                               "proc.args and proc.cmdline end in ..."),
    ("proc.pid", N, "process id"),
    ("proc.ppid", N, "parent process id"),
    ("proc.vpid", N, "process id in its pid namespace"),
    ("proc.pname", S, "parent's name (as proc.name)"),
    ("proc.pexe", S, "parent's argv[0]"),
    ("proc.aexe", S, "an ancestor's argv[0] ([1] the parent); no index: any", IDX),
    ("proc.pcmdline", S, "parent's command line"),
    ("proc.aname", S, "an ancestor's name, as proc.name ([1] parent, [2] grandparent); "
                      "no index: any", IDX),
    ("proc.apid", N, "an ancestor's pid; no index: any", IDX),
    ("proc.sid", N, "session id"),
    ("proc.sname", S, "session leader's name"),
    ("proc.vpgid", N, "process group id"),
    ("proc.vpgid.name", S, "process group leader's name"),
    ("proc.vpgid.exe", S, "process group leader's argv[0]"),
    ("proc.is_vpgid_leader", B, "the process leads its process group"),
    ("proc.is_sid_leader", B, "the process leads its session"),
    ("proc.tty", N, "controlling terminal (0 for none)"),
    ("proc.cwd", S, "working directory"),
    ("proc.duration", FieldType.DURATION, "ns since the process started"),
    ("proc.ppid.duration", FieldType.DURATION, "ns since the parent started"),
    ("proc.loginshellid", N, "pid of the oldest shell ancestor (absent when none)"),
    ("proc.is_exe_from_memfd", B, "the executable is a memfd"),
    ("proc.is_exe_upper_layer", B, "the executable is in an overlayfs upper layer"),
    ("proc.is_exe_writable", B, "the executable is writable by the process's user"),
    ("proc.exe_ino", N, "the executable's inode number"),
    ("proc.exe_ino.ctime", FieldType.TIME, "the executable's ctime"),
    ("proc.exe_ino.mtime", FieldType.TIME, "the executable's mtime"),
    ("proc.exe_ino.ctime_duration_proc_start", FieldType.DURATION,
     "ns from the executable's ctime to the process start"),
    ("proc.env", S, "environment (all, or one variable by name)", KEY),
    ("proc.stdin.name", S, "what fd 0 refers to"),
    ("proc.stdout.name", S, "what fd 1 refers to"),
    ("thread.tid", N, "thread id"),
    ("thread.comm", S, "the thread's name at the event, whatever it set with "
                       "prctl(PR_SET_NAME) or /proc/PID/comm (bpfguard's; Falco has none)"),
    ("thread.cap_effective", S, "effective capabilities"),
    ("thread.cap_permitted", S, "permitted capabilities"),
    # -- user and group
    ("user.uid", N, "user id"),
    ("user.name", S, "user name"),
    ("user.homedir", S, "home directory"),
    ("user.shell", S, "login shell"),
    ("user.loginuid", N, "audit login uid (-1 when unset)"),
    ("user.loginname", S, "name of the login uid"),
    ("group.gid", N, "group id"),
    ("group.name", S, "group name"),
    # -- file descriptors (the fd the syscall acted on or returned)
    ("fd.num", N, "fd number (-1 when the syscall failed)"),
    ("fd.name", S, "path of a file, or the connection tuple of a socket"),
    ("fd.nameraw", S, "the path as the process passed it"),
    ("fd.directory", S, "directory of fd.name"),
    ("fd.filename", S, "file name part of fd.name"),
    ("fd.type", S, "file, directory, ipv4, ipv6, unix, pipe, event, signalfd, memfd, ..."),
    ("fd.typechar", S, "f, 4, 6, u, p, e, ... (Falco's one-letter type)"),
    ("fd.types", FieldType.LIST, "types of the process's fds", IDX),
    ("fd.ino", N, "inode number"),
    ("fd.dev", N, "device number"),
    ("fd.nlink", N, "hard links to the file's inode, at most 65535 (bpfguard's): with "
                    "fd.dev and fd.ino it names the file however it was reached"),
    ("fd.sip", FieldType.IP, "server IP"),
    ("fd.cip", FieldType.IP, "client IP"),
    ("fd.lip", FieldType.IP, "local IP"),
    ("fd.rip", FieldType.IP, "remote IP"),
    ("fd.ip", FieldType.IP, "either end's IP (matches if one does)"),
    ("fd.sport", FieldType.PORT, "server port"),
    ("fd.cport", FieldType.PORT, "client port"),
    ("fd.lport", FieldType.PORT, "local port"),
    ("fd.rport", FieldType.PORT, "remote port"),
    ("fd.port", FieldType.PORT, "either end's port"),
    ("fd.l4proto", S, "tcp, udp, icmp, raw"),
    ("fd.sockfamily", S, "ip or unix"),
    ("fd.snet", FieldType.NET, "server network"),
    ("fd.cnet", FieldType.NET, "client network"),
    ("fd.lnet", FieldType.NET, "local network"),
    ("fd.rnet", FieldType.NET, "remote network"),
    ("fd.net", FieldType.NET, "either end's network"),
    ("fd.sip.name", S, "server host name"),
    ("fd.cip.name", S, "client host name"),
    ("fd.lip.name", S, "local host name"),
    ("fd.rip.name", S, "remote host name"),
    ("fd.connected", B, "the socket is connected"),
    ("fd.name_changed", B, "the fd name changed"),
    ("fs.path.name", S, "path a syscall named (resolved, absolute)"),
    ("fs.path.nameraw", S, "path a syscall named, as passed"),
    ("fs.path.source", S, "source path of a rename/link (resolved)"),
    ("fs.path.sourceraw", S, "source path as passed"),
    ("fs.path.target", S, "target path of a rename/link/symlink (resolved)"),
    ("fs.path.targetraw", S, "target path as passed"),
    # -- container and Kubernetes: the id from the cgroup path, the rest from
    # the runtime (bpfguard.containers); absent while the runtime has not
    # answered, and where it cannot say
    ("container.id", S, "container id (12 chars), 'host' on the host"),
    ("container.full_id", S, "container id (full), 'host' on the host"),
    ("container.name", S, "container name from the runtime, 'host' on the host"),
    ("container.image", S, "image reference the container was started from"),
    ("container.image.repository", S, "image repository (the reference without tag or digest)"),
    ("container.image.tag", S, "image tag"),
    ("container.image.id", S, "image id"),
    ("container.image.digest", S, "image repository digest (sha256:...)"),
    ("container.type", S, "docker, containerd, cri-o, podman, host"),
    ("container.privileged", B, "the container runs privileged"),
    ("container.mounts", S, "mounts, source:dest:mode:rdwr:propagation, comma-separated"),
    ("container.mount", S, "one mount (by index or source), as in container.mounts",
     ArgKind.KEY_REQUIRED),
    ("container.mount.source", S, "source of a mount (by index or destination)",
     ArgKind.KEY_REQUIRED),
    ("container.mount.dest", S, "destination of a mount (by index or source)",
     ArgKind.KEY_REQUIRED),
    ("container.mount.mode", S, "mode of a mount (by index or source)", ArgKind.KEY_REQUIRED),
    ("container.mount.rdwr", S, "'true' if a mount (by index or source) is writable",
     ArgKind.KEY_REQUIRED),
    ("container.mount.propagation", S, "propagation of a mount (by index or source)",
     ArgKind.KEY_REQUIRED),
    ("container.start_ts", FieldType.TIME, "container start, from the runtime (Falco: the "
                                           "pid namespace init's start)"),
    ("container.label", S, "a container label by key", ArgKind.KEY_REQUIRED),
    ("container.labels", S, "container labels, k:v comma-separated"),
    ("k8s.pod.uid", S, "pod UID (io.kubernetes.pod.uid, else the kubepods cgroup path)"),
    ("k8s.pod.name", S, "pod name (io.kubernetes.pod.name)"),
    ("k8s.ns.name", S, "pod namespace (io.kubernetes.pod.namespace)"),
    ("k8s.pod.label", S, "a pod label by key", ArgKind.KEY_REQUIRED),
    ("k8s.pod.labels", S, "pod labels, k:v comma-separated"),
)


_NO_NAMES = ("bpfguard resolves no host names (Falco resolves the names a rule compares "
             "with and matches their addresses)")
_NO_FDS = "bpfguard does not keep a table of each process's fds"
_NO_INODE_TIMES = "bpfguard reads no inode times at exec"

#: The fields bpfguard never has a value for, and why. A comparison on one
#: is false (``!=`` too), as on any field Falco cannot extract; the loader
#: refuses a rule that this would turn into one that never matches, or
#: whose exclusions it would silently turn off (see :mod:`.resolve`).
ABSENT: dict[str, str] = {
    "evt.cpu": "bpfguard does not record the CPU an event ran on",
    "evt.buffer": "bpfguard captures no read/write buffers",
    "proc.exe_ino.ctime": _NO_INODE_TIMES,
    "proc.exe_ino.mtime": _NO_INODE_TIMES,
    "proc.exe_ino.ctime_duration_proc_start": _NO_INODE_TIMES,
    "proc.stdin.name": _NO_FDS,
    "proc.stdout.name": _NO_FDS,
    "fd.types": _NO_FDS,
    "fd.name_changed": "bpfguard does not follow an fd's name after it is opened",
    "fd.sip.name": _NO_NAMES,
    "fd.cip.name": _NO_NAMES,
    "fd.lip.name": _NO_NAMES,
    "fd.rip.name": _NO_NAMES,
}

assert set(ABSENT) <= set(FIELDS), set(ABSENT) - set(FIELDS)


#: The fields Falco 0.41's container plugin marks as suggested output, which
#: falco.yaml's default ``append_output: [suggested_output: true]`` appends to
#: every rule's output as ``container_id=%container.id ...``.
SUGGESTED_FIELDS: tuple[str, ...] = (
    "container.id", "container.name", "container.image.repository", "container.image.tag",
    "k8s.pod.name", "k8s.ns.name")


def check_field(ref: FieldRef) -> str | None:
    """None if `ref` names a field bpfguard provides with a fitting argument;
    otherwise what is wrong, for the loader's error message."""
    spec = FIELDS.get(ref.name)
    if spec is None:
        return f"unknown field {ref.name!r}"
    if ref.arg is None:
        if spec.arg in (ArgKind.INDEX_REQUIRED, ArgKind.KEY_REQUIRED):
            return f"field {ref.name!r} needs an argument"
        return None
    if spec.arg is ArgKind.NONE:
        return f"field {ref.name!r} takes no argument"
    if spec.arg in (ArgKind.INDEX, ArgKind.INDEX_REQUIRED) and not ref.arg.isdigit():
        return f"field {ref.name!r} takes an index, not {ref.arg!r}"
    return None


# Fields whose argument Falco writes after a dot: evt.arg.flags is evt.arg[flags].
_DOTTED_ARG = ("evt.arg", "evt.rawarg")


def split_field(text: str, pos: int = 0) -> FieldRef:
    """A field as written (``proc.aname[2]``, ``evt.arg.flags``, ``evt.arg[0]``,
    ``proc.env[HOME]``) as a FieldRef, whether or not the field exists."""
    arg = None
    if text.endswith("]") and "[" in text:
        text, _, arg = text[:-1].partition("[")
    for prefix in _DOTTED_ARG:
        if arg is None and text.startswith(prefix + "."):
            return FieldRef(prefix, text[len(prefix) + 1:], pos=pos)
    return FieldRef(text, arg, pos=pos)
