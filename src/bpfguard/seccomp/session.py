"""Running commands for the advisor: record one, or confine one with a profile."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from ..agent.launch import spawn_waiting
from ..errors import BpfguardError
from .audit import AuditReader, SeccompRecord, kernel_lost
from .enforce import FilterPlan, build_filter
from .recorder import Recording, SeccompRecorder

__all__ = ["Denial", "RecordResult", "RunResult", "record", "run_confined"]

_POLL_S = 0.05


@dataclass
class RecordResult:
    recording: Recording
    started: dt.datetime
    ended: dt.datetime
    status: int | None  # the command's wait status; None without a command
    interrupted: bool


@contextmanager
def _stop_signals() -> Iterator[list[int]]:
    """SIGINT/SIGTERM end the wait instead of the process; yields what arrived."""
    got: list[int] = []

    def _handler(signum: int, _frame: Any) -> None:
        got.append(signum)

    old = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield got
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def record(recorder: SeccompRecorder, *, argv: list[str] | None = None, exe: str | None = None,
           pids: Iterable[int] = (), cgroups: Iterable[str] = (), mntns: Iterable[int] = (),
           armed: Iterable[int] = (), duration: float | None = None,
           on_ready: Callable[[], None] = lambda: None,
           on_status: Callable[[str], None] = lambda _m: None) -> RecordResult:
    """Records a command (started here, in scope from its execve), running
    processes with their descendants (`pids`), processes that are in scope
    from their next execve on (`armed`), cgroups and/or mount namespaces (by
    inode), until the pid scope is empty, `duration` seconds passed, or
    SIGINT/SIGTERM. A mount namespace's processes are recorded from the
    start, and those that enter it later from their execve there (so a
    runtime's setup of a container's `exec` is left out). `on_ready` runs
    once recording has begun."""
    pids, armed = list(pids), list(armed)
    child = 0
    status: int | None = None
    with _stop_signals() as stop:
        for cg in cgroups:
            recorder.scope.add_cgroup(cg)
        mntns = list(mntns)
        for ns in mntns:
            recorder.scope.add_mntns(ns, at_exec=True)
        for pid in pids:  # scope flags first, so attaching records these alone
            recorder.scope.add_pid(pid, children=False)
        for pid in armed:
            recorder.scope.add_pid(pid, armed=True)
        if argv:
            assert exe is not None
            child, release = spawn_waiting(exe, argv)
            recorder.scope.add_pid(child, armed=True)

        def join_children() -> None:
            # The fork program follows the pids from here on; their children
            # forked before it was attached join now, before any syscall is counted,
            # as do the processes in the namespaces.
            for pid in pids:
                recorder.scope.add_pid(pid)
            for ns in mntns:
                recorder.scope.join_mntns(ns)

        recorder.start(join_children)
        started = dt.datetime.now(dt.UTC)
        on_ready()
        if child:
            os.write(release, b"x")
            os.close(release)
        on_status("recording (Ctrl-C stops)")
        deadline = time.monotonic() + duration if duration else None
        told = False
        pid_scoped = bool(argv or pids or armed)
        while not stop:
            if child and status is None:
                done, st = os.waitpid(child, os.WNOHANG)
                if done:
                    status = st
            if pid_scoped and (not child or status is not None):
                recorder.prune()
                live = recorder.live()
                if live == 0:
                    break
                if not told:
                    on_status(f"waiting for {live} remaining process(es) of the recorded tree "
                              "(Ctrl-C stops)")
                    told = True
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(_POLL_S)
        ended = dt.datetime.now(dt.UTC)
        recording = recorder.recording()
    if child and status is None:
        with suppress(ProcessLookupError):
            os.kill(child, signal.SIGTERM)
        status = os.waitpid(child, 0)[1]
    return RecordResult(recording, started, ended, status, bool(stop))


@dataclass
class Denial:
    """Syscalls of one kind the filter acted on (or, in audit mode, would have),
    and the processes that made them."""

    syscall: str
    arch: str
    action: str  # what the kernel logged: the filter's action, without its errno
    count: int = 0
    processes: dict[int, tuple[str, str]] = field(default_factory=dict)  # pid -> (comm, exe)

    def to_dict(self) -> dict[str, Any]:
        return {"syscall": self.syscall, "arch": self.arch, "action": self.action,
                "count": self.count,
                "processes": [{"pid": p, "comm": c, "exe": e}
                              for p, (c, e) in sorted(self.processes.items())]}


@dataclass
class RunResult:
    status: int
    denials: list[Denial] = field(default_factory=list)
    tracking_error: str | None = None  # why nothing could be reported, if so
    audit_available: bool = True
    lost: int = 0  # audit records lost: socket overflows and the kernel's own drops
    unattributed: int = 0  # processes of the tree the recorder could not remember


def run_confined(plan: FilterPlan, exe: str, argv: list[str], *, track: bool = True) -> RunResult:
    """Runs the command under the plan's filter and waits for it.

    With `track`, denials (or, for an audit-mode plan, would-be denials) the
    kernel logs are collected and attributed to the command's process tree,
    which the seccomp recorder's in-kernel scope follows across forks. If that
    cannot be set up, the command still runs confined and the result says why
    nothing was reported.
    """
    filt = build_filter(plan)
    audit: AuditReader | None = None
    recorder: SeccompRecorder | None = None
    tracking_error = None
    if track:
        try:
            audit = AuditReader()
            recorder = SeccompRecorder()
        except BpfguardError as exc:
            tracking_error = str(exc)
            if audit:
                audit.close()
            audit = None
    # (pid, syscall, arch, action) -> [count, comm, exe]
    counts: dict[tuple[int, str, str, str], list[Any]] = {}

    def keep(rec: SeccompRecord) -> None:
        if rec.action == "SCMP_ACT_ALLOW":
            return
        entry = counts.setdefault((rec.pid, rec.syscall, rec.arch, rec.action),
                                  [0, rec.comm, rec.exe])
        entry[0] += 1

    lost_before = kernel_lost() if audit else None
    try:
        available = audit.barrier(lambda _r: None) if audit else False
        child, release = spawn_waiting(exe, argv, prepare=filt.load)
        if recorder:
            recorder.scope.add_pid(child, armed=True)
            recorder.start()
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal signals CMD
        forward = signal.signal(signal.SIGTERM, lambda s, _f: os.kill(child, s))
        try:
            os.write(release, b"x")
            os.close(release)
            while True:
                if audit:
                    for rec in audit.read(_POLL_S):
                        keep(rec)
                else:
                    time.sleep(_POLL_S)
                done, status = os.waitpid(child, os.WNOHANG)
                if done:
                    break
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, forward)
        if audit and available:
            available = audit.barrier(keep)
        tree = (recorder.members() if recorder else set()) | {child}
        by_kind: dict[tuple[str, str, str], Denial] = {}
        for (pid, syscall, arch, action), (n, comm, path) in counts.items():
            if pid not in tree:
                continue
            d = by_kind.setdefault((syscall, arch, action), Denial(syscall, arch, action))
            d.count += n
            d.processes.setdefault(pid, (comm, path))
        lost = audit.lost if audit else 0
        lost_after = kernel_lost() if audit else None
        if lost_before is not None and lost_after is not None:
            lost += lost_after - lost_before
        return RunResult(status, [by_kind[k] for k in sorted(by_kind)], tracking_error,
                         available, lost, recorder.members_full() if recorder else 0)
    finally:
        if recorder:
            recorder.close()
        if audit:
            audit.close()
