"""What the syscall sensor captures for each security-relevant syscall.

Each entry names the arguments (as in the man pages) and says how the kernel
side treats them (``bg_arg_kind`` in bpf/include/bpfguard.h). Numbers are not
here: they come from libseccomp per architecture (:mod:`.syscall_table`).
A syscall without an entry can still be traced; its six raw arguments are
reported as unsigned integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_SYSCALLS", "SPECS", "ArgSpec", "SyscallSpec", "spec_for"]

# Kinds, by their enumerator names in bg_arg_kind / bg_ret_kind (BG_ARG_<kind>).
# INT is a C int: the syscall sees the low 32 bits of its register (the
# kernel's wrappers truncate), so that is what is reported and filtered on;
# U32 a 32-bit unsigned type (uid_t, gid_t: (uid_t)-1 is 4294967295, as Falco
# prints it); LONG a C long.
INT, U32, LONG, UINT, PTR, FD, DIRFD, PATH, PATH_AT, SOCKADDR, STR, OPEN_HOW = (
    "INT", "U32", "LONG", "UINT", "PTR", "FD", "DIRFD", "PATH", "PATH_AT", "SOCKADDR", "STR",
    "OPEN_HOW")
RET_INT, RET_FD, RET_EXEC = "INT", "FD", "EXEC"


@dataclass(frozen=True)
class ArgSpec:
    name: str
    kind: str
    decoder: str | None = None  # name of a flag decoder in events.FLAG_DECODERS


@dataclass(frozen=True)
class SyscallSpec:
    name: str
    args: tuple[ArgSpec, ...]
    ret: str = RET_INT
    # each argument's position, by name
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {a.name: i for i, a in enumerate(self.args)})


def _s(name: str, *args: tuple[str, ...], ret: str = RET_INT) -> SyscallSpec:
    return SyscallSpec(name, tuple(ArgSpec(*a) for a in args), ret)


_OPEN_FLAGS = "open_flags"
_AT_FLAGS = "at_flags"

SPECS: dict[str, SyscallSpec] = {s.name: s for s in [
    _s("open", ("pathname", PATH), ("flags", UINT, _OPEN_FLAGS), ("mode", UINT), ret=RET_FD),
    _s("openat", ("dirfd", DIRFD), ("pathname", PATH_AT), ("flags", UINT, _OPEN_FLAGS),
       ("mode", UINT), ret=RET_FD),
    _s("openat2", ("dirfd", DIRFD), ("pathname", PATH_AT), ("how", OPEN_HOW, _OPEN_FLAGS),
       ("size", UINT), ret=RET_FD),
    _s("creat", ("pathname", PATH), ("mode", UINT), ret=RET_FD),
    _s("execve", ("filename", PATH), ("argv", PTR), ("envp", PTR), ret=RET_EXEC),
    _s("execveat", ("dirfd", DIRFD), ("pathname", PATH_AT), ("argv", PTR), ("envp", PTR),
       ("flags", UINT, _AT_FLAGS), ret=RET_EXEC),
    _s("socket", ("domain", INT), ("type", INT), ("protocol", INT), ret=RET_FD),
    _s("connect", ("fd", FD), ("addr", SOCKADDR), ("addrlen", UINT)),
    _s("bind", ("fd", FD), ("addr", SOCKADDR), ("addrlen", UINT)),
    _s("listen", ("fd", FD), ("backlog", INT)),
    _s("accept", ("fd", FD), ("addr", PTR), ("addrlen", PTR), ret=RET_FD),
    _s("accept4", ("fd", FD), ("addr", PTR), ("addrlen", PTR), ("flags", UINT), ret=RET_FD),
    _s("unlink", ("pathname", PATH)),
    _s("unlinkat", ("dirfd", DIRFD), ("pathname", PATH_AT), ("flags", UINT, _AT_FLAGS)),
    _s("rmdir", ("pathname", PATH)),
    _s("rename", ("oldpath", PATH), ("newpath", PATH)),
    _s("renameat", ("olddirfd", DIRFD), ("oldpath", PATH_AT), ("newdirfd", DIRFD),
       ("newpath", PATH_AT)),
    _s("renameat2", ("olddirfd", DIRFD), ("oldpath", PATH_AT), ("newdirfd", DIRFD),
       ("newpath", PATH_AT), ("flags", UINT)),
    _s("symlink", ("target", STR), ("linkpath", PATH)),
    _s("symlinkat", ("target", STR), ("newdirfd", DIRFD), ("linkpath", PATH_AT)),
    _s("link", ("oldpath", PATH), ("newpath", PATH)),
    _s("linkat", ("olddirfd", DIRFD), ("oldpath", PATH_AT), ("newdirfd", DIRFD),
       ("newpath", PATH_AT), ("flags", UINT, _AT_FLAGS)),
    _s("chmod", ("pathname", PATH), ("mode", UINT)),
    _s("fchmod", ("fd", FD), ("mode", UINT)),
    _s("fchmodat", ("dirfd", DIRFD), ("pathname", PATH_AT), ("mode", UINT)),
    _s("fchmodat2", ("dirfd", DIRFD), ("pathname", PATH_AT), ("mode", UINT),
       ("flags", UINT, _AT_FLAGS)),
    _s("chown", ("pathname", PATH), ("owner", U32), ("group", U32)),
    _s("lchown", ("pathname", PATH), ("owner", U32), ("group", U32)),
    _s("fchown", ("fd", FD), ("owner", U32), ("group", U32)),
    _s("fchownat", ("dirfd", DIRFD), ("pathname", PATH_AT), ("owner", U32), ("group", U32),
       ("flags", UINT, _AT_FLAGS)),
    _s("mkdir", ("pathname", PATH), ("mode", UINT)),
    _s("mkdirat", ("dirfd", DIRFD), ("pathname", PATH_AT), ("mode", UINT)),
    _s("chdir", ("path", PATH)),
    _s("fchdir", ("fd", FD)),
    _s("chroot", ("path", PATH)),
    _s("pivot_root", ("new_root", PATH), ("put_old", PATH)),
    _s("mount", ("source", STR), ("target", PATH), ("filesystemtype", STR),
       ("mountflags", UINT), ("data", PTR)),
    _s("umount2", ("target", PATH), ("flags", UINT)),
    _s("ptrace", ("request", LONG), ("pid", LONG), ("addr", PTR), ("data", PTR)),
    _s("setuid", ("uid", U32)),
    _s("setgid", ("gid", U32)),
    _s("setreuid", ("ruid", U32), ("euid", U32)),
    _s("setregid", ("rgid", U32), ("egid", U32)),
    _s("setresuid", ("ruid", U32), ("euid", U32), ("suid", U32)),
    _s("setresgid", ("rgid", U32), ("egid", U32), ("sgid", U32)),
    _s("setfsuid", ("fsuid", U32)),
    _s("setfsgid", ("fsgid", U32)),
    _s("memfd_create", ("name", STR), ("flags", UINT), ret=RET_FD),
    _s("userfaultfd", ("flags", UINT), ret=RET_FD),
    _s("init_module", ("module_image", PTR), ("len", UINT), ("param_values", STR)),
    _s("finit_module", ("fd", FD), ("param_values", STR), ("flags", UINT)),
    _s("bpf", ("cmd", INT), ("attr", PTR), ("size", UINT)),
    _s("dup", ("oldfd", FD), ret=RET_FD),
    _s("dup2", ("oldfd", FD), ("newfd", INT), ret=RET_FD),
    _s("dup3", ("oldfd", FD), ("newfd", INT), ("flags", UINT, _OPEN_FLAGS), ret=RET_FD),
    _s("kill", ("pid", INT), ("sig", INT)),
    _s("tkill", ("tid", INT), ("sig", INT)),
    _s("tgkill", ("tgid", INT), ("tid", INT), ("sig", INT)),
    _s("prctl", ("option", INT), ("arg2", UINT), ("arg3", UINT), ("arg4", UINT),
       ("arg5", UINT)),
    _s("unshare", ("flags", UINT)),
    _s("setns", ("fd", FD), ("nstype", INT)),
    # reads and writes: traced when a rule names them (io_uring's are reported
    # as these), never by default
    _s("read", ("fd", FD), ("buf", PTR), ("count", UINT)),
    _s("write", ("fd", FD), ("buf", PTR), ("count", UINT)),
    _s("readv", ("fd", FD), ("iov", PTR), ("iovcnt", UINT)),
    _s("writev", ("fd", FD), ("iov", PTR), ("iovcnt", UINT)),
]}

# What `bpfguard run` and `bpfguard trace` watch when no syscall is named:
# every syscall with a spec but the reads and writes, which would drown the rest.
DEFAULT_SYSCALLS: tuple[str, ...] = tuple(
    n for n in SPECS if n not in ("read", "write", "readv", "writev"))


def spec_for(name: str) -> SyscallSpec:
    """The spec of `name`, or a generic one (six unsigned arguments)."""
    return SPECS.get(name) or SyscallSpec(
        name, tuple(ArgSpec(f"arg{i}", UINT) for i in range(6)))
