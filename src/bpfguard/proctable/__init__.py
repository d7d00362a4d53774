"""The process table: what user space knows about each process, with ancestry.

Fed by the process sensor (exec, fork, exit) and seeded from /proc for
processes that existed before bpfguard started. Identity is (pid, start
time), never the pid alone, so a reused pid never inherits a dead process's
ancestry. Memory is bounded: exited processes stay for a while (late events
and children's ancestry need them), then the oldest are evicted.

Example::

    table = ProcessTable()
    table.seed_from_proc()
    table.apply(event)                     # an ExecEvent / ForkEvent / ExitEvent
    [p.exe for p in table.ancestors(pid)]  # parent first
"""

from __future__ import annotations

import os
import posixpath
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..containers import ContainerCache
from ..containers.cgroups import cgroup_paths, container_id_from_cgroup, container_of
from ..sensors.events import Event, ExecEvent, ExitEvent, ForkEvent

__all__ = ["TRUNCATED", "Process", "ProcessTable", "cgroup_paths", "container_id_from_cgroup",
           "container_of", "exec_name", "read_proc"]

# what ends a command line the kernel cut (Falco's marker of truncated data)
TRUNCATED = "..."


@dataclass
class Process:
    pid: int
    ppid: int
    start_ns: int
    exec_id: str
    comm: str
    exe: str | None = None
    args: list[str] = field(default_factory=list)
    args_truncated: bool = False  # argv was longer than the kernel reads at exec
    cwd: str | None = None
    uid: int = 0
    gid: int = 0
    euid: int = 0
    loginuid: int = -1
    cgroup: str | None = None
    cgroup_v1: str | None = None  # the pids controller's v1 path (see ExecEvent)
    tty: str | None = None
    tty_nr: int = 0
    exe_from_memfd: bool = False
    egid: int = 0
    sid: int = 0
    pgid: int = 0
    vpid: int | None = None  # the pid in its own pid namespace
    cap_effective: int | None = None
    cap_permitted: int | None = None
    exe_ino: int | None = None
    exe_mode: int | None = None
    exe_uid: int | None = None
    exe_gid: int | None = None
    exe_fs_magic: int | None = None
    exe_upper_layer: bool | None = None  # on overlayfs: written in the container?
    env: list[str] | None = None  # None: not read
    parent_exec_id: str | None = None
    exited: bool = False
    exit_status: int | None = None
    from_proc: bool = False  # seeded from /proc, not observed at exec

    @property
    def container(self) -> tuple[str, str] | None:
        """(runtime, 64-hex id) of the container the process runs in; None on
        the host. From its cgroup v2 path, else its cgroup v1 one: on a v1-only
        host (no unified hierarchy mounted) every v2 path is the root, and a
        runtime that joins only the v1 hierarchies leaves it there too."""
        for path in (self.cgroup, self.cgroup_v1):
            c = container_of(path) if path else None
            if c is not None:
                return c
        return None

    @property
    def container_id(self) -> str:
        c = self.container
        return c[1][:12] if c else "host"

    @property
    def cmdline(self) -> str:
        return " ".join(self.args) + (TRUNCATED if self.args_truncated else "")

    def summary(self) -> dict[str, Any]:
        return {"pid": self.pid, "exec_id": self.exec_id, "exe": self.exe,
                "cmdline": self.cmdline, "ppid": self.ppid, "comm": self.comm}


# What a forked child shares with its parent until it execs (or changes it).
_INHERITED = ("exe", "args", "args_truncated", "cwd", "cgroup", "cgroup_v1", "euid", "egid",
              "loginuid", "tty",
              "tty_nr", "exe_from_memfd", "sid", "pgid", "cap_effective", "cap_permitted",
              "exe_ino", "exe_mode", "exe_uid", "exe_gid", "exe_fs_magic", "exe_upper_layer",
              "env")


class ProcessTable:
    """Processes by pid, bounded.

    Args:
        max_exited: exited processes kept for late lookups before eviction; as
            many pids that /proc did not have are remembered as gone.
        boot_id: prefix of exec ids made for processes seeded from /proc.
        containers: what the container runtimes say about the containers
            the processes run in (default: nothing, no runtime asked).
    """

    def __init__(self, *, max_exited: int = 4096, boot_id: str = "00000000",
                 containers: ContainerCache | None = None) -> None:
        self.containers = containers if containers is not None else ContainerCache()
        self._procs: dict[int, Process] = {}
        self._exited: OrderedDict[int, None] = OrderedDict()
        # pids /proc did not have, and when: their late events (a process
        # that exited before the reader got to them) do not read /proc again
        # and again; after _GONE_S it is read again, in case the pid was
        # reused by a process whose fork event was lost
        self._gone: OrderedDict[int, float] = OrderedDict()
        self.max_exited = max_exited
        self.boot_id = boot_id

    def __len__(self) -> int:
        return len(self._procs)

    def get(self, pid: int) -> Process | None:
        return self._procs.get(pid)

    def ancestors(self, pid: int, *, limit: int = 256) -> list[Process]:
        """Parent chain of `pid`, nearest first, as far as it is known."""
        out: list[Process] = []
        p = self._procs.get(pid)
        seen = {pid}
        while p is not None and len(out) < limit:
            parent = self._procs.get(p.ppid)
            if parent is None or parent.pid in seen:
                break
            if p.parent_exec_id and parent.exec_id != p.parent_exec_id and \
                    parent.start_ns > p.start_ns:
                break  # the pid was reused by a younger process: not our parent
            out.append(parent)
            seen.add(parent.pid)
            p = parent
        return out

    # -- updates -------------------------------------------------------------

    def apply(self, ev: Event) -> Process | None:
        """Updates the table from a process event; returns the process it concerns."""
        if isinstance(ev, ExecEvent):
            return self._exec(ev)
        if isinstance(ev, ForkEvent):
            return self._fork(ev)
        if isinstance(ev, ExitEvent):
            return self._exit(ev)
        return self._procs.get(ev.pid)

    def _put(self, p: Process) -> None:
        self._procs[p.pid] = p
        self._exited.pop(p.pid, None)
        self._gone.pop(p.pid, None)

    def _exec(self, ev: ExecEvent) -> Process:
        parent = self._procs.get(ev.ppid)
        exe = ev.exe.path if ev.exe else None
        p = Process(
            pid=ev.pid, ppid=ev.ppid, start_ns=ev.start_ns, exec_id=ev.exec_id, comm=ev.comm,
            exe=exe, args=ev.args, args_truncated=ev.args_truncated,
            cwd=ev.cwd.path if ev.cwd else None, uid=ev.uid,
            gid=ev.gid, euid=ev.euid if ev.euid is not None else ev.uid,
            loginuid=ev.loginuid, cgroup=ev.cgroup, cgroup_v1=ev.cgroup_v1, tty=ev.tty,
            exe_from_memfd=bool(exe and ev.exe and ev.exe.detached
                                and exe.startswith("/memfd:")),
            egid=ev.egid if ev.egid is not None else ev.gid, sid=ev.sid, pgid=ev.pgid,
            tty_nr=ev.tty_nr,
            cap_effective=ev.cap_effective,
            cap_permitted=ev.cap_permitted, exe_uid=ev.exe_uid, exe_gid=ev.exe_gid,
            exe_ino=ev.exe.ino if ev.exe else None, exe_mode=ev.exe.mode if ev.exe else None,
            exe_fs_magic=ev.exe.fs_magic if ev.exe else None,
            exe_upper_layer=ev.exe_upper_layer, env=ev.env, vpid=ev.vpid,
            parent_exec_id=parent.exec_id if parent else None,
        )
        self._put(p)
        return p

    def _fork(self, ev: ForkEvent) -> Process:
        parent = self._procs.get(ev.ppid)
        p = Process(
            pid=ev.pid, ppid=ev.ppid, start_ns=ev.start_ns,
            exec_id=f"{self.boot_id}:{ev.ktime_ns}:{ev.pid}", comm=ev.comm, uid=ev.uid,
            gid=ev.gid, parent_exec_id=parent.exec_id if parent else None, vpid=ev.vpid,
        )
        if parent is not None:  # a forked child runs its parent's image until it execs
            for name in _INHERITED:
                setattr(p, name, getattr(parent, name))
        self._put(p)
        return p

    def _exit(self, ev: ExitEvent) -> Process | None:
        p = self._procs.get(ev.pid)
        if p is None:
            return None
        p.exited = True
        p.exit_status = ev.status
        self._exited[p.pid] = None
        while len(self._exited) > self.max_exited:
            old, _ = self._exited.popitem(last=False)
            self._procs.pop(old, None)
        return p

    # -- /proc -----------------------------------------------------------------

    def seed_from_proc(self, root: str = "/proc") -> int:
        """Adds every running process from /proc; returns how many."""
        n = 0
        for d in Path(root).iterdir():
            if d.name.isdigit() and int(d.name) not in self._procs:
                p = read_proc(int(d.name), root=root, boot_id=self.boot_id)
                if p is not None:
                    self._procs[p.pid] = p
                    n += 1
        for p in self._procs.values():
            parent = self._procs.get(p.ppid)
            if parent is not None and p.parent_exec_id is None:
                p.parent_exec_id = parent.exec_id
        return n

    def lookup_or_read(self, pid: int) -> Process | None:
        """The process, reading /proc when the table has not seen it."""
        p = self._procs.get(pid)
        if p is not None:
            return p
        now = time.monotonic()
        gone = self._gone.get(pid)
        if gone is not None and now - gone < _GONE_S:
            return None
        p = read_proc(pid, boot_id=self.boot_id)
        if p is not None:
            self._procs[pid] = p
            self._gone.pop(pid, None)
        else:
            self._gone[pid] = now
            self._gone.move_to_end(pid)
            if len(self._gone) > self.max_exited:
                self._gone.popitem(last=False)
        return p


_CLK_TCK = os.sysconf("SC_CLK_TCK")
# how long a pid /proc did not have is taken as gone (see ProcessTable._gone)
_GONE_S = 1.0


_COMM_LEN = 15  # TASK_COMM_LEN without its NUL


def exec_name(comm: str, exe: str | None) -> str:
    """The name of a process running before bpfguard saw its exec, as the
    kernel side tells it (bg_comm_of_exe in bpf/include/common.bpf.h): its
    thread's `comm` where that starts its executable's file name, else the
    file name cut as comm is. A process may set its comm to anything
    (prctl PR_SET_NAME); it cannot change its executable."""
    if not exe:
        return comm  # a kernel thread, or an exe /proc would not show
    name = posixpath.basename(exe.removesuffix(" (deleted)"))[:_COMM_LEN]
    return comm if comm and name.startswith(comm) else name


def read_proc(pid: int, *, root: str = "/proc", boot_id: str = "00000000") -> Process | None:
    """A Process from /proc/<pid>, or None if it is gone (or a kernel thread)."""
    base = Path(root) / str(pid)
    try:
        stat = (base / "stat").read_text()
        comm = stat[stat.index("(") + 1: stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        ppid = int(fields[1])
        tty_nr = int(fields[4])
        start_ns = int(fields[19]) * 1_000_000_000 // _CLK_TCK
        args = [a.decode(errors="replace")
                for a in (base / "cmdline").read_bytes().split(b"\0")[:-1]]
        status = (base / "status").read_text()
    except (OSError, ValueError, IndexError):
        return None

    def _link(name: str) -> str | None:
        try:
            return os.readlink(base / name)
        except OSError:
            return None

    uid = gid = euid = egid = 0
    vpid: int | None = None
    caps: dict[str, int] = {}
    for line in status.splitlines():
        if line.startswith("Uid:"):
            uid, euid = (int(x) for x in line.split()[1:3])
        elif line.startswith("Gid:"):
            gid, egid = (int(x) for x in line.split()[1:3])
        elif line.startswith(("CapEff:", "CapPrm:")):
            caps[line[:6]] = int(line.split()[1], 16)
        elif line.startswith("NSpid:"):  # the pid in each namespace, its own last
            vpid = int(line.split()[-1])
    try:
        cgroup, cgroup_v1 = cgroup_paths((base / "cgroup").read_text())
    except OSError:
        cgroup = cgroup_v1 = None
    try:
        loginuid = int((base / "loginuid").read_text())
    except (OSError, ValueError):
        loginuid = -1
    exe = _link("exe")
    comm = exec_name(comm, exe)
    try:
        st = os.stat(base / "exe")
        exe_stat: dict[str, Any] = {"exe_ino": st.st_ino, "exe_mode": st.st_mode,
                                    "exe_uid": st.st_uid, "exe_gid": st.st_gid}
    except OSError:
        exe_stat = {}
    return Process(
        pid=pid, ppid=ppid, start_ns=start_ns, exec_id=f"{boot_id}:{start_ns}:{pid}",
        comm=comm, exe=exe, args=args, cwd=_link("cwd"), uid=uid, gid=gid, euid=euid,
        egid=egid, loginuid=loginuid, cgroup=cgroup, cgroup_v1=cgroup_v1,
        tty=str(tty_nr) if tty_nr else None,
        exe_from_memfd=bool(exe and exe.startswith("/memfd:")), from_proc=True,
        sid=int(fields[3]), pgid=int(fields[2]), vpid=vpid, cap_effective=caps.get("CapEff"),
        cap_permitted=caps.get("CapPrm"), **exe_stat,
    )
