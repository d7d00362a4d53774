"""What every recorded profile allows beyond what was recorded.

A container runtime installs the container's seccomp filter before it hands
over to the entrypoint: the runtime's own last syscalls run under the
profile, and so does every process's exit. A recording cannot see them (it
counts from the entrypoint's execve, so the runtime's setup stays out), so
they are added here, named in the profile's metadata, and kept out of the
recorded set.

The lists are the runtimes' own, by where they come from:

- ``runc``: measured here (runc 1.1, podman 4.3) with a profile whose default
  action is SCMP_ACT_LOG, reading seccomp's audit records of ``runc:[2:INIT]``
  from the filter to the entrypoint's execve, with and without
  ``no-new-privileges`` (without it, runc installs the filter before it sets
  the container's user and capabilities).
- ``go``: runc is a Go program, and any of its threads may make these at any
  time (new OS threads, the scheduler, the garbage collector, signal
  delivery): Go's runtime/sys_linux_amd64.s. Missing them, the Go runtime
  crashes now and then, not every time.
- ``crun``: libcrun/container.c after ``libcrun_apply_seccomp``: capabilities
  and user (``libcrun_set_caps``), chdir, closing inherited descriptors
  (``mark_or_close_fds_ge_than``), the exec fifo, ``execv``.
- ``exit``: what every process needs to end: ``exit_group``, ``exit`` (a
  thread), and ``rt_sigreturn`` to return from a signal handler (a service that
  handles SIGTERM and was never stopped while recorded).
"""

from __future__ import annotations

__all__ = ["RUNTIME_ARG_VALUES", "RUNTIME_BASE", "RUNTIME_BASE_COMMENT", "runtime_base"]

RUNTIME_BASE: dict[str, tuple[str, ...]] = {
    "runc": ("capget", "capset", "chdir", "close", "epoll_ctl", "execve", "faccessat2", "fcntl",
             "fstat", "fstatfs", "futex", "getcwd", "getdents64", "getpid", "getppid",
             "newfstatat", "openat", "prctl", "read", "setgid", "setgroups", "setuid", "write"),
    "go": ("clone", "epoll_pwait", "futex", "getpid", "gettid", "madvise", "mmap", "munmap",
           "nanosleep", "rt_sigaction", "rt_sigprocmask", "sched_yield", "sigaltstack",
           "tgkill"),
    "crun": ("capset", "chdir", "close", "close_range", "execve", "fstat", "getdents64",
             "lseek", "openat", "prctl", "read", "setgroups", "setresgid", "setresuid",
             "write"),
    "exit": ("exit", "exit_group", "rt_sigreturn"),
}

# Where a profile checks a base syscall's argument (record --args), the values
# the runtimes pass, which the argument rules allow too: prctl's operations in
# runc's and crun's capability and user setup (linux/prctl.h: PR_SET_KEEPCAPS 8,
# PR_CAPBSET_READ 23, PR_CAPBSET_DROP 24, PR_SET_NO_NEW_PRIVS 38, PR_CAP_AMBIENT
# 47), and clone without namespace flags (Go's new threads). clone is never in
# the base whole: a profile that did not record it allows only that.
RUNTIME_ARG_VALUES: dict[str, tuple[int, ...]] = {
    "prctl": (8, 23, 24, 38, 47),
    "clone": (0,),
}

RUNTIME_BASE_COMMENT = ("runtime base: what runc and crun make after installing the filter, "
                        "and what every process needs to exit")


def runtime_base() -> frozenset[str]:
    """Every name of :data:`RUNTIME_BASE`."""
    return frozenset(n for names in RUNTIME_BASE.values() for n in names)
