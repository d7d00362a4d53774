"""Process table: ancestry, fork inheritance, eviction, pid reuse, containers."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bpfguard.proctable import ProcessTable, container_id_from_cgroup
from bpfguard.sensors.events import ExecEvent, ExitEvent, FileRef, ForkEvent

_T = 0


def _hdr(kind: str, pid: int) -> dict:  # type: ignore[type-arg]
    global _T
    _T += 1000
    return dict(type=kind, ktime_ns=_T, pid=pid, tid=pid, uid=0, gid=0, cgroup_id=1,
                comm="c", truncated=False)


def _file(path: str) -> FileRef:
    return FileRef(path=path, ino=1, dev=1, fs_magic=0, mode=0o100755)


def exec_ev(pid: int, ppid: int, exe: str, start: int = 0) -> ExecEvent:
    h = _hdr("exec", pid)
    return ExecEvent(**h, ppid=ppid, start_ns=start or h["ktime_ns"],
                     exec_id=f"b:{h['ktime_ns']}:{pid}", exe=_file(exe), filename=exe,
                     args=[exe, "-x"], args_truncated=False, cwd=_file("/"), euid=0, egid=0,
                     loginuid=0, sessionid=0, cap_effective=0, cap_permitted=0, mntns=0,
                     pidns=0, netns=0, userns=0, cgroupns=0, cgroup="/", tty=None)


def fork_ev(pid: int, ppid: int) -> ForkEvent:
    h = _hdr("fork", pid)
    return ForkEvent(**h, ppid=ppid, start_ns=h["ktime_ns"])


def exit_ev(pid: int, status: int = 0) -> ExitEvent:
    return ExitEvent(**_hdr("exit", pid), ppid=0, start_ns=0, status=status)


def test_ancestry_any_depth() -> None:
    t = ProcessTable()
    t.apply(exec_ev(1, 0, "/sbin/init"))
    for pid in range(2, 60):
        t.apply(fork_ev(pid, pid - 1))
        t.apply(exec_ev(pid, pid - 1, f"/bin/p{pid}"))
    chain = t.ancestors(59)
    assert [p.pid for p in chain] == list(range(58, 0, -1))
    assert chain[0].exe == "/bin/p58"


def test_fork_inherits_image_until_exec() -> None:
    t = ProcessTable()
    t.apply(exec_ev(10, 1, "/usr/bin/bash"))
    child = t.apply(fork_ev(11, 10))
    assert child is not None and child.exe == "/usr/bin/bash"
    assert child.exec_id != t.get(10).exec_id  # type: ignore[union-attr]
    t.apply(exec_ev(11, 10, "/usr/bin/curl"))
    assert t.get(11).exe == "/usr/bin/curl"  # type: ignore[union-attr]
    assert t.get(11).parent_exec_id == t.get(10).exec_id  # type: ignore[union-attr]


def test_exited_entries_are_evicted_oldest_first() -> None:
    t = ProcessTable(max_exited=10)
    for pid in range(100, 150):
        t.apply(exec_ev(pid, 1, "/bin/x"))
        t.apply(exit_ev(pid))
    assert len(t) == 10
    assert t.get(149) is not None and t.get(139) is None


def test_a_pid_proc_does_not_have_is_read_once_until_it_is_born_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import bpfguard.proctable as pt

    reads: list[int] = []

    def read_proc(pid: int, **_kw: object) -> None:
        reads.append(pid)
    monkeypatch.setattr(pt, "read_proc", read_proc)
    t = ProcessTable(max_exited=2)
    for _ in range(3):   # a process that exited before the reader got to its events
        assert t.lookup_or_read(500) is None
    assert reads == [500]
    t.apply(fork_ev(500, 1))   # the pid is reused: the table knows it from its fork
    assert t.lookup_or_read(500) is not None and reads == [500]
    for pid in (501, 502, 503):   # gone pids are remembered up to max_exited
        t.lookup_or_read(pid)
    t.lookup_or_read(501)
    assert reads == [500, 501, 502, 503, 501]
    # and for a second: a pid reused by a process whose fork event was lost
    # is read again
    later = time.monotonic() + 2 * pt._GONE_S
    monkeypatch.setattr(pt.time, "monotonic", lambda: later)
    t.lookup_or_read(503)
    assert reads == [500, 501, 502, 503, 501, 503]


def test_reused_pid_is_not_taken_for_the_parent() -> None:
    t = ProcessTable()
    t.apply(exec_ev(20, 1, "/bin/parent"))
    t.apply(fork_ev(21, 20))
    t.apply(exec_ev(21, 20, "/bin/child"))
    t.apply(exit_ev(20))
    t.apply(exec_ev(20, 1, "/bin/impostor"))  # pid 20 reused by a younger process
    assert [p.exe for p in t.ancestors(21)] == []


@pytest.mark.parametrize("path,want", [
    ("/system.slice/docker-" + "a" * 64 + ".scope", "a" * 12),
    ("/docker/" + "b" * 64, "b" * 12),
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/"
     "cri-containerd-" + "c" * 64 + ".scope", "c" * 12),
    ("/kubepods.slice/kubepods-pod1.slice/crio-" + "d" * 64 + ".scope", "d" * 12),
    ("/machine.slice/libpod-" + "e" * 64 + ".scope/container", "e" * 12),
    ("/kubepods/besteffort/pod0a1b/" + "f" * 64, "f" * 12),
    ("/user.slice/user-0.slice/session-1.scope", "host"),
    ("/", "host"),
])
def test_container_id_from_cgroup(path: str, want: str) -> None:
    assert container_id_from_cgroup(path) == want


def test_a_container_in_the_v1_hierarchies_only_is_found() -> None:
    """On a v1-only host (or with a runtime that joins only the v1
    hierarchies) a container's v2 path is the root: the v1 path names it."""
    from bpfguard.proctable import Process, cgroup_paths

    cid = "ab" * 32
    text = (f"9:name=systemd:/\n8:pids:/libpod_parent/libpod-{cid}\n"
            f"4:memory:/libpod_parent/libpod-{cid}\n0::/\n")
    assert cgroup_paths(text) == ("/", f"/libpod_parent/libpod-{cid}")
    assert cgroup_paths("0::/system.slice/x.scope\n") == ("/system.slice/x.scope", None)
    p = Process(pid=1, ppid=0, start_ns=0, exec_id="e", comm="sh", cgroup="/",
                cgroup_v1=f"/libpod_parent/libpod-{cid}")
    assert p.container == ("podman", cid) and p.container_id == cid[:12]
    on_v2 = Process(pid=2, ppid=0, start_ns=0, exec_id="f", comm="sh",
                    cgroup=f"/machine.slice/libpod-{cid}.scope", cgroup_v1="/")
    assert on_v2.container == ("podman", cid)
    assert Process(pid=3, ppid=0, start_ns=0, exec_id="g", comm="sh", cgroup="/",
                   cgroup_v1="/").container is None


def test_a_forked_child_inherits_the_v1_path() -> None:
    t = ProcessTable()
    ev = exec_ev(10, 1, "/bin/sh")
    ev.cgroup_v1 = "/docker/" + "cd" * 32
    t.apply(ev)
    child = t.apply(fork_ev(11, 10))
    assert child is not None and child.container_id == "cd" * 6


def test_a_process_read_from_proc_has_its_pid_in_its_namespace_and_exec_name() -> None:
    from bpfguard.proctable import read_proc

    p = read_proc(os.getpid())
    assert p is not None and p.vpid == os.getpid()  # the host's namespace: the same
    exe = Path(os.path.realpath("/proc/self/exe")).name
    assert p.comm and (p.comm == exe[:15] or exe.startswith(p.comm))
