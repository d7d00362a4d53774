"""Process sensor on the real kernel: exec, fork, exit, ancestry, kernel truth."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bpfguard.sensors import SensorSet

from .helpers import trace

pytestmark = pytest.mark.kernel


def _exec_of(t, exe_suffix):  # type: ignore[no-untyped-def]
    execs = [r for r in t.of_type("exec")
             if (r.get("exe") or {}).get("path", "").endswith(exe_suffix)]
    assert execs, f"no exec of *{exe_suffix} in {[r.get('exe') for r in t.of_type('exec')]}"
    return execs[0]


def test_exec_argv_and_ancestry() -> None:
    t = trace(["sh", "-c", '/bin/echo one "two words" three; true'], syscalls=[])
    sh = _exec_of(t, "/dash")
    echo = _exec_of(t, "/echo")
    assert sh["pid"] == t.pid
    # argv exactly as passed, including an argument with a space
    assert echo["args"] == ["/bin/echo", "one", "two words", "three"]
    # kernel truth: /bin is a symlink to /usr/bin on Debian, mm->exe_file says so
    assert echo["exe"]["path"] == "/usr/bin/echo"
    assert echo["filename"] == "/bin/echo"  # what execve was given
    assert echo["ppid"] == t.pid
    chain = [a["pid"] for a in echo["ancestors"]]
    assert chain[:2] == [t.pid, os.getpid()], chain  # sh, then this test (the launcher)
    assert echo["ancestors"][0]["exe"] == "/usr/bin/dash"
    assert echo["ancestors"][0]["exec_id"] == sh["exec_id"]
    assert echo["exec_id"] != sh["exec_id"]
    # the fork that preceded the exec is reported for the child
    forks = [r for r in t.of_type("fork") if r["pid"] == echo["pid"]]
    assert forks and forks[0]["ppid"] == t.pid
    assert sh["cwd"]["path"] == os.getcwd()
    assert echo["mntns"] == os.stat("/proc/self/ns/mnt").st_ino
    assert echo["cap_effective"] != 0  # root


def test_exit_code_and_signal() -> None:
    t = trace(["sh", "-c", "sh -c 'exit 7'; sh -c 'kill -KILL $$'; exit 3"], syscalls=[])
    exits = {r["pid"]: r for r in t.of_type("exit")}
    codes = {(r["exit_code"], r["signal"]) for r in exits.values()}
    assert (7, None) in codes
    assert (None, 9) in codes
    assert exits[t.pid]["exit_code"] == 3
    assert t.exit_code == 3


def test_long_argv_is_truncated_and_flagged() -> None:
    arg = "x" * 600
    t = trace(["/bin/true", arg, arg], syscalls=[], args_max=1024)
    ex = _exec_of(t, "/true")
    assert ex["args_truncated"] is True
    assert ex["args"][:2] == ["/bin/true", arg]
    assert len("\0".join(ex["args"])) <= 1024


def test_prctl_rename_keeps_true_exe() -> None:
    code = ("import ctypes; libc = ctypes.CDLL(None); "
            "libc.prctl(15, b'innocent', 0, 0, 0); open('/etc/hostname').close()")
    t = trace([sys.executable, "-c", code], syscalls=["openat", "prctl"])
    prctl = t.syscalls("prctl", t.pid)
    assert prctl and prctl[0]["args"]["option"] == 15  # PR_SET_NAME
    opens = [r for r in t.syscalls("openat", t.pid)
             if r["args"]["pathname"]["user"] == "/etc/hostname"]
    assert opens, "the open after the rename was not reported"
    ev = opens[0]
    assert ev["thread_comm"] == "innocent"  # what the process claims
    assert ev["comm"] == os.path.basename(sys.executable)[:15]  # the name it ran as
    assert ev["process"]["exe"] == os.path.realpath(sys.executable)  # kernel truth


def test_a_renamed_process_running_before_the_sensor_is_named_by_its_executable(
        tmp_path: Path) -> None:
    """The sensor never saw its exec: its comm is not believed unless it
    begins its executable's name, and the name found is kept."""
    go = tmp_path / "go"
    code = ("import ctypes, os, time\n"
            "ctypes.CDLL(None).prctl(15, b'sshd', 0, 0, 0)\n"
            f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
            "open('/etc/hostname').close()\n"
            "ctypes.CDLL(None).prctl(15, b'py', 0, 0, 0)\n"
            "open('/etc/hostname').close()\n")
    proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", code])
    comm = Path(f"/proc/{proc.pid}/comm")
    deadline = time.monotonic() + 10
    while comm.read_text().strip() != "sshd" and time.monotonic() < deadline:
        time.sleep(0.01)
    opens = []
    with SensorSet(syscalls=["openat"]) as sensors:
        sensors.scope.add_pid(proc.pid)
        sensors.start()
        go.write_text("x")
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while len(opens) < 2 and time.monotonic() < deadline:
            opens += [e for e in sensors.read(100) if getattr(e, "syscall", None) == "openat"
                      and e.args["pathname"]["user"] == "/etc/hostname"]
    exe = os.path.basename(os.path.realpath(sys.executable))[:15]
    assert [(e.comm, e.thread_comm) for e in opens] == [(exe, "sshd"), (exe, "py")]


def test_exec_from_memfd() -> None:
    code = ("import os; fd = os.memfd_create('payload', 0); "
            "os.write(fd, open('/bin/true', 'rb').read()); "
            "os.execve(fd, ['payload'], {})")
    t = trace([sys.executable, "-c", code], syscalls=["memfd_create", "execveat", "execve"])
    execs = [r for r in t.of_type("exec") if r["pid"] == t.pid]
    memfd_exec = execs[-1]
    assert memfd_exec["exe"]["path"] == "/memfd:payload (deleted)"
    assert memfd_exec["exe"]["deleted"] is True
    proc = t.table.get(t.pid)
    assert proc is not None and proc.exe_from_memfd
    created = t.syscalls("memfd_create", t.pid)
    assert created and created[0]["args"]["name"] == "payload"
    assert created[0]["ret_file"]["path"] == "/memfd:payload (deleted)"
    assert t.exit_code == 0


def test_process_table_seeds_from_proc() -> None:
    from bpfguard.proctable import ProcessTable

    table = ProcessTable()
    assert table.seed_from_proc() > 1
    me = table.get(os.getpid())
    assert me is not None and me.exe == os.path.realpath(sys.executable)
    assert table.get(1) is not None
    assert [p.pid for p in table.ancestors(os.getpid())][:1] == [os.getppid()]


def test_session_group_terminal_owner_and_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # under script(1) the shell gets a pty: its tty_nr as /proc says, session and group
    out = tmp_path / "stat"
    t = trace(["script", "-qc", f"cat /proc/self/stat > {out}; exec env -i FOO=bar /bin/true",
               "/dev/null"], syscalls=[], env_max=1024)
    stat = out.read_text().rsplit(")", 1)[1].split()
    cat = _exec_of(t, "/cat")
    assert (cat["tty_nr"], cat["sid"], cat["pgid"]) == (int(stat[4]), int(stat[3]), int(stat[2]))
    assert cat["tty_nr"] != 0
    assert cat["exe_uid"] == 0 and cat["exe_gid"] == 0  # root owns /usr/bin/cat
    true = _exec_of(t, "/true")
    assert true["env"] == ["FOO=bar"]


def _v1_container(stack: contextlib.ExitStack) -> tuple[str, Path]:
    """A libpod-shaped cgroup in the v1 pids hierarchy, removed on exit: a
    hand-made container's cgroup (no runtime needed)."""
    v1 = Path("/sys/fs/cgroup/pids")
    if not (v1 / "cgroup.procs").exists():
        pytest.fail("this host has no cgroup v1 pids hierarchy at /sys/fs/cgroup/pids")
    cid = os.urandom(32).hex()
    parent = v1 / "libpod_parent"
    made_parent = not parent.exists()
    cg = parent / f"libpod-{cid}"
    cg.mkdir(parents=True)
    if made_parent:
        stack.callback(lambda: contextlib.suppress(OSError)(parent.rmdir)())
    stack.callback(cg.rmdir)   # after its processes exited (the test waits for them)
    return cid, cg


def _overlay(stack: contextlib.ExitStack) -> tuple[Path, Path, Path]:
    """An overlay mount on tmpfs (an upper layer may not be overlayfs): its
    lower and upper directories and its root, unmounted and removed on exit."""
    import shutil
    import subprocess
    import tempfile

    base = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="bg-ovl-"))
    stack.callback(shutil.rmtree, base, True)
    lower, upper, work, root = (base / d for d in ("lower", "upper", "work", "root"))
    for d in (lower, upper, work, root):
        d.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work}", str(root)], check=True)
    stack.callback(subprocess.run, ["umount", "-l", str(root)], check=False)
    return lower, upper, root


@pytest.mark.host_covers   # needs the pids controller on a cgroup v1 hierarchy (this host's)
def test_a_cgroup_v1_container_is_named_by_the_kernel() -> None:
    """Where a container's processes sit in v1 cgroups only (a v1-only host,
    whose v2 paths are all the root; here, a process moved into a libpod-shaped
    v1 pids cgroup by hand) the exec event carries the pids controller's v1
    path, and the container id comes from it."""
    from bpfguard.proctable import Process

    with contextlib.ExitStack() as stack:
        cid, cg = _v1_container(stack)
        t = trace(["sh", "-c", f"echo $$ > {cg}/cgroup.procs && exec /bin/true"], syscalls=[])
        true = _exec_of(t, "/true")
        assert true["cgroup_v1"] == f"/libpod_parent/libpod-{cid}"
        p = Process(pid=true["pid"], ppid=0, start_ns=0, exec_id="", comm="true",
                    cgroup=true["cgroup"], cgroup_v1=true["cgroup_v1"])
        assert p.container == ("podman", cid)


@pytest.mark.host_covers   # the guest's overlayfs is a module, maybe without its BTF loaded
def test_an_executable_written_in_an_overlays_upper_layer_is_told_apart() -> None:
    """proc.is_exe_upper_layer, decided in the kernel at exec: a binary shipped
    in the lower layer (an image's) is not in the upper one; one copied into the
    mounted overlay (a container writing a new binary) is; one outside an
    overlay (this host's root is not one) has no layer."""
    import shutil

    with contextlib.ExitStack() as stack:
        lower, upper, root = _overlay(stack)
        shutil.copy("/bin/true", lower / "shipped")
        shutil.copy("/bin/true", root / "dropped")
        assert (upper / "dropped").exists() and not (upper / "shipped").exists()
        t = trace(["sh", "-c", f"{root}/shipped; {root}/dropped; /bin/true"], syscalls=[])
        assert _exec_of(t, "/shipped")["exe_upper_layer"] is False
        assert _exec_of(t, "/dropped")["exe_upper_layer"] is True
        assert _exec_of(t, "/true")["exe_upper_layer"] is None
