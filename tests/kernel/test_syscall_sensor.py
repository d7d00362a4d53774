"""Syscall sensor on the real kernel: arguments at entry, truth at exit, scope."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from bpfguard.sensors import SensorSet

from .helpers import mounts_crossed, trace

pytestmark = pytest.mark.kernel


def _opens(t, pid=None):  # type: ignore[no-untyped-def]
    return [r for r in t.of_type("syscall") if r["syscall"] in ("open", "openat")
            and (pid is None or r["pid"] == pid)]


def _open_of(t, user):  # type: ignore[no-untyped-def]
    found = [r for r in _opens(t) if r["args"]["pathname"]["user"] == user]
    assert found, f"no open of {user!r}: {[r['args']['pathname'] for r in _opens(t)]}"
    return found[0]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    d = tmp_path / "dir"
    d.mkdir()
    (d / "file").write_text("content\n")
    (d / "link").symlink_to(d / "file")
    return d


def test_relative_path_under_chdir(tree: Path) -> None:
    t = trace(["sh", "-c", f"cd {tree} && cat ./file >/dev/null && cat missing"],
              syscalls=["openat", "chdir"])
    ok = _open_of(t, "./file")
    assert ok["args"]["pathname"]["resolved"] == f"{tree}/file"
    assert ok["ret_file"]["path"] == f"{tree}/file"
    assert ok["ret"] >= 0 and ok["errno"] is None
    failed = _open_of(t, "missing")
    assert failed["errno"] == "ENOENT" and failed["ret"] == -2
    assert failed["args"]["pathname"]["resolved"] == f"{tree}/missing"
    assert failed["ret_file"] is None
    cd = [r for r in t.syscalls("chdir") if r["args"]["path"]["user"] == str(tree)]
    assert cd and cd[0]["ret"] == 0


def test_open_via_dirfd(tree: Path) -> None:
    code = (f"import os; d = os.open({str(tree)!r}, os.O_RDONLY); "
            "os.close(os.open('file', os.O_RDONLY, dir_fd=d))")
    t = trace([sys.executable, "-c", code], syscalls=["openat"])
    ev = _open_of(t, "file")
    assert isinstance(ev["args"]["dirfd"], int) and ev["args"]["dirfd"] >= 0
    assert ev["args"]["pathname"]["resolved"] == f"{tree}/file"
    assert ev["ret_file"]["path"] == f"{tree}/file"


def test_open_via_symlink_reports_target(tree: Path) -> None:
    t = trace(["cat", f"{tree}/link"], syscalls=["openat"])
    ev = _open_of(t, f"{tree}/link")
    assert ev["ret_file"]["path"] == f"{tree}/file"  # what the kernel opened
    assert ev["ret_file"]["ino"] == os.stat(tree / "file").st_ino


@pytest.mark.host_covers
def test_a_hard_link_keeps_its_name_and_tells_the_inode(tree: Path) -> None:
    """fd.name is the name used; dev, ino and the link count identify the file."""
    os.link(tree / "file", tree / "alias")
    t = trace(["cat", f"{tree}/alias"], syscalls=["openat"])
    f = _open_of(t, f"{tree}/alias")["ret_file"]
    st = os.stat(tree / "file")
    assert f["path"] == f"{tree}/alias"
    assert (f["ino"], f["nlink"]) == (st.st_ino, 2)


def test_failing_syscalls_report_errno_names(tree: Path) -> None:
    t = trace(["sh", "-c", f"mkdir {tree}; rm {tree}/nothing; true"],
              syscalls=["mkdir", "mkdirat", "unlink", "unlinkat"])
    by_name = {r["syscall"]: r for r in t.of_type("syscall")}
    mk = by_name.get("mkdir") or by_name["mkdirat"]
    assert mk["errno"] == "EEXIST"
    rm = by_name.get("unlinkat") or by_name["unlink"]
    assert rm["errno"] == "ENOENT"


def test_toctou_path_swapped_after_the_kernel_read_it(tmp_path: Path,
                                                       progs: dict[str, str]) -> None:
    """The open blocks on a FIFO; meanwhile another thread rewrites the path
    buffer. The event must report what was opened, not the rewritten buffer."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    decoy = "/etc/passwd"
    t = trace([progs["toctou_fifo"], str(fifo), decoy], syscalls=["openat"])
    assert t.exit_code == 0
    reads = [r for r in _opens(t, t.pid) if r["args"]["flags"].startswith("O_RDONLY")
             and r["ret_file"] and r["ret_file"]["path"] == str(fifo)]
    assert reads, [(r["args"], r.get("ret_file")) for r in _opens(t, t.pid)]
    ev = reads[0]
    assert ev["args"]["pathname"]["user"] == str(fifo)  # captured at entry
    assert ev["ret_file"]["path"] == str(fifo)  # resolved from the kernel's file
    assert decoy not in (ev["args"]["pathname"]["user"], ev["ret_file"]["path"])
    assert ev["latency_ns"] >= 100_000_000  # it really blocked while the buffer changed


def test_toctou_race_resolution_matches_what_was_opened(tmp_path: Path,
                                                        progs: dict[str, str]) -> None:
    """A racer thread flips the path between two files while the main thread
    opens it. Whatever the race does to the user string, each resolved file
    must be the one whose byte the program read."""
    d = tmp_path / "race"
    d.mkdir()
    (d / "benign").write_text("B")
    (d / "secret").write_text("S")
    out = tmp_path / "out"
    n = 2000
    t = trace(["sh", "-c", f"exec {progs['toctou_race']} {d}/benign {d}/secret {n} > {out}"],
              syscalls=["openat"])
    assert t.exit_code == 0
    seen = out.read_text().strip()
    # one open per iteration, in order; even a torn user string starts with the dir
    evs = [r for r in _opens(t, t.pid) if r["args"]["pathname"]["user"].startswith(str(d))]
    assert len(evs) == len(seen) == n, (len(evs), len(seen))
    differed = 0
    for r, c in zip(evs, seen, strict=True):
        if c == "E":
            assert r["ret"] < 0
            continue
        want = {"B": f"{d}/benign", "S": f"{d}/secret"}[c]
        assert r["ret_file"]["path"] == want, (r["args"]["pathname"], r["ret_file"], c)
        differed += r["args"]["pathname"]["user"] != want
    print(f"race: {n} opens; the user string differed from the opened file {differed} times")


def test_dup_resolves_each_fd_to_the_file_it_names_at_exit(tmp_path: Path) -> None:
    code = ("import os; a = os.open('/etc/hostname', os.O_RDONLY); "
            f"b = os.open('{tmp_path}', os.O_RDONLY); os.dup2(a, b); os.dup2(b, a); "
            "c = os.open('/dev/null', os.O_RDONLY); os.dup2(c, a)")
    t = trace([sys.executable, "-c", code], syscalls=["dup2", "dup3"])
    dups = [r for r in t.of_type("syscall") if r["syscall"] in ("dup2", "dup3")]
    assert len(dups) == 3, dups
    # oldfd and the returned fd name one file: resolved once, reported twice
    for ev, path in zip(dups, ("/etc/hostname", "/etc/hostname", "/dev/null"), strict=True):
        assert ev["args"]["oldfd"]["path"] == ev["ret_file"]["path"] == path
        assert ev["ret_file"]["ino"] == os.stat(path).st_ino
        assert ev["ret"] == ev["args"]["newfd"]
    assert t.exit_code == 0


def test_compat_syscall_is_named_for_its_abi(progs: dict[str, str]) -> None:
    t = trace([progs["int80_open"]], syscalls=["open", "fstat"])
    compat = [r for r in t.of_type("syscall") if r["arch"] == "i386"]
    assert compat, [(r["syscall"], r["arch"]) for r in t.of_type("syscall")]
    ev = compat[0]
    assert ev["syscall"] == "open" and ev["nr"] == 5  # fstat is 5 on x86_64
    assert ev["args"]["pathname"]["user"] == "/etc/hostname"
    assert ev["ret"] >= 0 and ev["ret_file"]["path"] == "/etc/hostname"
    assert t.exit_code == 0


@pytest.mark.host_covers  # the same selector engine the guest's pushdown tests run
def test_out_of_scope_events_are_not_delivered(tmp_path: Path) -> None:
    marker = tmp_path / "outsider-marker"
    marker.write_text("x")

    def outsider(_pid: int) -> subprocess.Popen[bytes]:
        # a process outside the scope, and this test process itself, open the
        # marker while the traced command runs
        proc = subprocess.Popen(["sh", "-c", f"while :; do cat {marker} >/dev/null; done"])
        for _ in range(20):
            marker.read_text()
            time.sleep(0.01)
        return proc

    t = trace(["sh", "-c", f"sleep 0.4; cat {marker} >/dev/null"], syscalls=["openat"],
              during=outsider)
    proc = t.extra["during"]
    proc.kill()
    proc.wait()
    pids = {r["pid"] for r in t.records}
    assert proc.pid not in pids and os.getpid() not in pids
    marker_opens = [r for r in _opens(t) if r["args"]["pathname"]["user"] == str(marker)]
    assert len(marker_opens) == 1  # only the traced cat's
    in_scope = {t.pid} | {r["pid"] for r in t.of_type("fork")}
    assert pids <= in_scope, pids - in_scope


def test_a_path_deeper_than_the_walk_never_reads_as_absolute(tmp_path: Path) -> None:
    """(issue 22, defect 11) the kernel walks BG_PATH_DEPTH components; a
    deeper path keeps its innermost ones, after "...", and is flagged."""
    deep = tmp_path.joinpath(*["d"] * 120)
    deep.mkdir(parents=True)
    (deep / "f").write_text("x")
    t = trace(["cat", "f"], syscalls=["openat"], cwd=str(deep))
    opened = [r for r in _opens(t) if r["args"]["pathname"]["user"] == "f"]
    assert len(opened) == 1
    f = opened[0]["ret_file"]
    assert f["truncated"] is True
    assert f["path"].startswith(".../d/d/") and f["path"].endswith("/d/f")
    assert not f["path"].startswith("/")
    # exactly BG_PATH_DEPTH steps, the file the last: whole, not flagged (a
    # step is a name or a mount crossed: the guest's /tmp is a mount)
    steps = len(tmp_path.parts) - 1 + mounts_crossed(tmp_path)
    exact = tmp_path.joinpath(*["e"] * (96 - steps - 1))
    exact.mkdir(parents=True)
    (exact / "f").write_text("x")
    t = trace(["cat", "f"], syscalls=["openat"], cwd=str(exact))
    f = [r for r in _opens(t) if r["args"]["pathname"]["user"] == "f"][0]["ret_file"]
    assert f["path"] == str(exact / "f") and "truncated" not in f


def test_bpfguard_spares_itself_by_pid_and_start_time(tmp_path: Path) -> None:
    """Programs pinned past the agent's death spare the agent's pid only
    while it names the process that started then: not another one the
    kernel gives that pid."""
    import ctypes

    from bpfguard.policy.engine import PolicyEngine
    from bpfguard.probe import features
    from bpfguard.sensors.sensorset import self_start

    marker = tmp_path / "self-marker"
    marker.write_text("x")
    # the agent's whole object (syscalls and policies), which on 6.1 once
    # passed the 512-byte stack of its call chain (bg_record_enter inlined)
    with SensorSet(syscalls=["openat"], extra=[PolicyEngine(features=features())]) as sensors:
        sensors.start()
        seen = {}
        for label, start_delta in (("other start", 1), ("its start", 0)):
            child = subprocess.Popen(["sh", "-c", f"read x; : < {marker}"],  # (sh opens it)
                                     stdin=subprocess.PIPE)
            cfg = sensors.abi.scope_config()
            cfg.self_tgid, cfg.self_start = child.pid, self_start(child.pid) + start_delta
            sensors.maps["scope_config"].update(ctypes.c_uint32(0), cfg)
            child.communicate(b"go\n")
            deadline = time.monotonic() + 2
            events: list[Any] = []
            while time.monotonic() < deadline:
                events += sensors.read(timeout_ms=100)
            # (the shell's own start-up opens may come before the update)
            seen[label] = [e for e in events if getattr(e, "pid", 0) == child.pid
                           and e.type == "syscall" and str(marker) in str(e.to_dict())]
        assert seen["other start"] and not seen["its start"]


def test_cgroup_scope(tmp_path: Path) -> None:
    from bpfguard.sensors.sensorset import _is_cgroup2

    roots = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
             if line.split()[line.split().index("-") + 1] == "cgroup2"]
    assert roots, "no cgroup2 mount"
    cg = Path(roots[0]) / f"bpfguard-test-{os.getpid()}"
    cg.mkdir()
    try:
        assert _is_cgroup2(cg)
        with SensorSet(syscalls=["openat"]) as sensors:
            cgid = sensors.scope.add_cgroup(cg)
            sensors.start()
            inside = subprocess.Popen(
                ["sh", "-c", f"echo $$ > {cg}/cgroup.procs; exec cat /etc/hostname"],
                stdout=subprocess.DEVNULL)
            outside = subprocess.Popen(["cat", "/etc/hostname"], stdout=subprocess.DEVNULL)
            inside.wait()
            outside.wait()
            evs = []
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                evs += sensors.read(100)
        pids = {e.pid for e in evs}
        assert inside.pid in pids
        assert outside.pid not in pids
        assert all(e.cgroup_id == cgid for e in evs)
    finally:
        cg.rmdir()


def test_mount_namespace_scope() -> None:
    # a process in its own mount namespace waits until it is in scope
    proc = subprocess.Popen(["unshare", "-m", "sh", "-c", "read x; cat /etc/hostname"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        mine = os.stat("/proc/self/ns/mnt").st_ino
        while True:  # unshare execs sh once the namespace exists
            ns = os.stat(f"/proc/{proc.pid}/ns/mnt").st_ino
            if ns != mine or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert ns != mine
        with SensorSet(syscalls=["openat"]) as sensors:
            sensors.scope.add_mntns(ns)
            sensors.start()
            outside = subprocess.run(["cat", "/etc/hostname"], stdout=subprocess.DEVNULL)
            assert outside.returncode == 0
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.close()
            proc.wait()
            evs = []
            while True:
                batch = sensors.read(300)
                if not batch:
                    break
                evs += batch
    finally:
        proc.kill()
        proc.wait()
    hostname_opens = [e for e in evs if e.type == "syscall"
                      and e.args["pathname"]["user"] == "/etc/hostname"]
    assert len(hostname_opens) == 1  # the one inside the namespace, not the outsider's
    assert all(getattr(e, "mntns", ns) == ns for e in evs)
    assert {e.comm for e in hostname_opens} == {"cat"}


@pytest.mark.host_covers  # the same selector engine the guest's pushdown tests run
def test_ring_buffer_loss_is_counted_and_reported(tmp_path: Path) -> None:
    n = 2000
    code = f"import os\nfor _ in range({n}): os.close(os.open('/etc/hostname', os.O_RDONLY))"
    with SensorSet(syscalls=["openat"], ringbuf_bytes=4096) as sensors:
        ready = "import sys; print('ready', flush=True); sys.stdin.read(1)\n"
        proc = subprocess.Popen([sys.executable, "-c", ready + code], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"  # start-up done: only the loop opens now
        sensors.scope.add_pid(proc.pid)
        sensors.start()
        proc.stdin.write(b"x")
        proc.stdin.close()
        proc.wait()  # nothing is read meanwhile: the 4 KiB ring overflows
        proc.stdout.close()
        delivered = []
        while True:
            batch = sensors.read(200)
            if not batch:
                break
            delivered += [e for e in batch if e.type == "syscall"
                          and e.args["pathname"]["user"] == "/etc/hostname"]
        losses = {loss.reason: loss for loss in sensors.losses()}
    assert "ringbuf_full" in losses
    lost = losses["ringbuf_full"].count
    assert 0 < len(delivered) < n
    assert len(delivered) + lost == n  # every event is either delivered or counted


def test_pushdown_filters_drop_in_the_kernel_what_no_rule_wants(tmp_path: Path) -> None:
    from bpfguard.sensors import SyscallFilter

    out = tmp_path / "w.txt"
    script = f"echo x > {out}; cat /etc/hostname >/dev/null; cat /nonexistent 2>/dev/null; true"
    failed = trace(["sh", "-c", script], syscalls=["openat"],
                   filters={"openat": SyscallFilter(results=frozenset({"failure"}))})
    assert failed.syscalls("openat") and all(r["ret"] < 0 for r in failed.syscalls("openat"))
    assert any(r["args"]["pathname"]["user"] == "/nonexistent" for r in failed.syscalls("openat"))
    writes = trace(["sh", "-c", script], syscalls=["openat"], filters={"openat": SyscallFilter(
        accmodes=frozenset({os.O_WRONLY, os.O_RDWR}), comms=frozenset({"sh"}),
        euids=frozenset({os.geteuid()}))})
    seen = {(r["comm"], r["args"]["pathname"]["user"]) for r in writes.syscalls("openat")}
    # sh's two redirections stay; cat's reads and the failed open are gone
    assert seen == {("sh", str(out)), ("sh", "/dev/null")}
    nobody = trace(["sh", "-c", script], syscalls=["openat"],
                   filters={"openat": SyscallFilter(euids=frozenset({65534}))})
    assert nobody.syscalls("openat") == []


@pytest.mark.host_covers  # the same selector engine the guest's pushdown tests run
def test_pushdown_open_flags_drop_directory_opens() -> None:
    from bpfguard.sensors import SyscallFilter

    script = ("ls /etc >/dev/null; cat /etc/hostname >/dev/null; cat /nonexistent 2>/dev/null; "
              f"{sys.executable} -I -S -c \"import os; os.close(os.open('/etc', "
              "os.O_RDONLY | os.O_DIRECTORY)); os.close(os.open('/etc', os.O_RDONLY))\"")
    for syscalls in (["openat"], ["openat", "openat2"]):
        t = trace(["sh", "-c", script], syscalls=syscalls, filters={
            s: SyscallFilter(without_flags=os.O_DIRECTORY) for s in syscalls})
        opened = [(r["args"]["pathname"]["user"], r["args"]["flags"])
                  for r in t.syscalls("openat")]
        paths = [p for p, _ in opened]
        assert "/etc/hostname" in paths and "/nonexistent" in paths  # a failure passes too
        assert paths.count("/etc") == 1  # the directory opened without the flag, only
        assert not any("O_DIRECTORY" in f for _, f in opened)


@pytest.mark.host_covers  # the same selector engine the guest's pushdown tests run
def test_openat2_flags_are_read_from_open_how(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import ctypes, os
        class How(ctypes.Structure):
            _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                        ("resolve", ctypes.c_uint64)]
        libc = ctypes.CDLL(None, use_errno=True)
        how = How(os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600, 0)
        fd = libc.syscall(437, -100, b"{tmp_path}/o2", ctypes.byref(how), ctypes.sizeof(how))
        os.close(fd)
    """)
    t = trace([sys.executable, "-I", "-S", "-c", script], syscalls=["openat2"])
    (ev,) = t.syscalls("openat2")
    assert ev["args"]["how"] == "O_WRONLY|O_CREAT|O_TRUNC"
    assert ev["ret_file"]["path"] == f"{tmp_path}/o2"


PATH_OPENS = textwrap.dedent("""
    import os, sys
    d = sys.argv[1]
    def opens(p, flags=os.O_RDONLY):
        try:
            os.close(os.open(p, flags))
        except OSError:
            pass
    for p in ("file", "link", "other", "sub/x", "sub2/x", "leaf.log", "pre-fix", "a.key",
              "sub2/../other", "missing"):
        opens(f"{d}/{p}")
    os.chdir(d)
    opens("other")
    opens("file")
    fd = os.open(f"{d}/gone", os.O_RDWR | os.O_CREAT)
    os.unlink(f"{d}/gone")
    opens(f"/proc/self/fd/{fd}")  # the same, unlinked, file: "(deleted)" in user space
""")


def _script_opens(t: Any, d: Path) -> list[str]:
    """The opens PATH_OPENS makes (not the interpreter's start-up), relative to d."""
    users = [r["args"]["pathname"]["user"] for r in t.syscalls("openat", t.pid)]
    return [u.removeprefix(f"{d}/") for u in users
            if u.startswith((f"{d}/", "/proc/self/fd/")) or u in ("file", "other")]


def test_pushdown_path_tests_decide_on_the_resolved_path(tmp_path: Path) -> None:
    from bpfguard.sensors import PathFilter, SyscallFilter

    d = tmp_path / "d"
    for sub in ("sub", "sub2"):
        (d / sub).mkdir(parents=True)
    for name in ("file", "other", "sub/x", "sub2/x", "leaf.log", "pre-fix", "a.key"):
        (d / name).write_text("x")
    (d / "link").symlink_to(d / "file")
    path = PathFilter(names=frozenset({f"{d}/file"}), dirs=frozenset({f"{d}/sub"}),
                      files=frozenset({"leaf.log"}), prefixes=frozenset({f"{d}/pre"}),
                      suffixes=frozenset({".key"}), dotdot=True)
    t = trace([sys.executable, "-I", "-S", "-c", PATH_OPENS, str(d)], syscalls=["openat"],
              filters={"openat": SyscallFilter(path=path)})
    seen = _script_opens(t, d)
    # kept: the name (also through a symlink, and relative), the directory, the leaf
    # name, prefix, suffix, a traversal in the string, a failure (no file to name),
    # an unlinked file (user space names it "... (deleted)"); dropped: the others
    assert seen == ["file", "link", "sub/x", "leaf.log", "pre-fix", "a.key", "sub2/../other",
                    "missing", "file", f"/proc/self/fd/{seen[-1].rsplit('/', 1)[-1]}"], seen
    # a suffix holding a '/' is matched on the whole path, not just the last name
    t = trace([sys.executable, "-I", "-S", "-c", PATH_OPENS, str(d)], syscalls=["openat"],
              filters={"openat": SyscallFilter(results=frozenset({"success"}),
                                               path=PathFilter(suffixes=frozenset({"b/x"})))})
    seen = _script_opens(t, d)
    assert "sub/x" in seen and "sub2/x" not in seen and "file" not in seen, seen


_WORKER = """
import os, sys
for line in sys.stdin:
    what = line.strip()
    if what == "open":
        os.close(os.open("/etc/hostname", os.O_RDONLY))
    elif what == "missing":
        try:
            os.open("/nonexistent-bg-reload", os.O_RDONLY)
        except OSError:
            pass
    elif what == "unlink":
        os.unlink(sys.argv[1])
    print("done", flush=True)
"""


@pytest.mark.host_covers  # the same selector engine the guest's pushdown tests run
def test_a_rules_change_retraces_the_running_sensor_in_two_steps(tmp_path: Path) -> None:
    """What a rules reload does to a running sensor (SyscallChange): after
    widen + narrow it traces and filters as the new rules ask; after widen +
    rollback, as before; back again, the syscall no rule wants is left out."""
    from bpfguard.sensors import SyscallFilter
    from bpfguard.sensors.events import SyscallEvent

    victim = tmp_path / "victim"
    # (the euid set is one selector set, which the changes must give back)
    only_failures = {"openat": SyscallFilter(results=frozenset({"failure"}),
                                             euids=frozenset({os.geteuid()}))}
    worker = subprocess.Popen([sys.executable, "-I", "-S", "-c", _WORKER, str(victim)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert worker.stdin is not None and worker.stdout is not None
    try:
        with SensorSet(syscalls=["openat"], filters=only_failures) as sensors:
            sensors.scope.add_pid(worker.pid, follow=False, children=False)
            sensors.start()
            syscalls = sensors.syscalls
            assert syscalls is not None

            def run() -> list[tuple[str, bool]]:
                victim.touch()
                for what in ("open", "missing", "unlink"):
                    worker.stdin.write(what + "\n")   # type: ignore[union-attr]
                    worker.stdin.flush()              # type: ignore[union-attr]
                    assert worker.stdout.readline() == "done\n"  # type: ignore[union-attr]
                seen: list[tuple[str, bool]] = []
                quiet = 0
                while quiet < 3:
                    got = [e for e in sensors.read(timeout_ms=100) if isinstance(e, SyscallEvent)]
                    seen += [(e.syscall, e.ret >= 0) for e in got]
                    quiet = 0 if got else quiet + 1
                return seen

            before = [("openat", False)]   # failures only; unlink untraced
            after = [("openat", True), ("openat", False), ("unlink", True)]
            free = sensors.selector_sets.available
            assert run() == before
            change = syscalls.prepare(syscalls=["openat", "unlink"], filters=None)
            change.widen()
            change.rollback()
            assert run() == before
            assert sensors.selector_sets.available == free   # rollback allocates nothing
            change = syscalls.prepare(syscalls=["openat", "unlink"], filters=None)
            change.widen()
            assert run() == after      # widened: the new set's syscalls, unfiltered
            change.narrow()
            assert run() == after
            assert sensors.selector_sets.available == free + 1   # the euid set given back
            change = syscalls.prepare(syscalls=["openat"], filters=only_failures)
            change.widen()
            assert run() == after      # the old set's wider filters stay until narrow
            change.narrow()
            assert run() == before
            assert sensors.selector_sets.available == free
    finally:
        worker.stdin.close()
        worker.wait(timeout=10)
        worker.stdout.close()


@pytest.mark.host_covers  # the same selector engine the guest's pushdown tests run
def test_pushdown_keeps_only_the_listed_results() -> None:
    """rets (the dup rule's evt.rawres in (0, 1, 2)): a dup onto fd 1 reaches user
    space, one onto fd 200 is dropped in the kernel and counted there."""
    from bpfguard.sensors import SyscallFilter
    from bpfguard.sensors.events import SyscallEvent

    code = "import os\nos.dup2(1, 200)\nos.dup2(1, 1)\n"
    keep = {"dup2": SyscallFilter(results=frozenset({"success"}), rets=frozenset({0, 1, 2}))}
    t = trace([sys.executable, "-I", "-S", "-c", code], syscalls=["dup2"], filters=keep)
    assert t.exit_code == 0
    assert [(r["args"]["newfd"], r["ret"]) for r in t.syscalls("dup2", t.pid)] == [(1, 1)]
    with SensorSet(syscalls=["dup2"], filters=keep) as sensors:
        p = subprocess.Popen([sys.executable, "-I", "-S", "-c", "import sys, os\n"
                              "sys.stdin.read()\nos.dup2(1, 200)\n"], stdin=subprocess.PIPE)
        sensors.scope.add_pid(p.pid, follow=False, children=False)
        sensors.start()
        p.communicate(b"")
        events = [e for e in sensors.read(timeout_ms=300) if isinstance(e, SyscallEvent)]
        assert events == [] and sensors.pushed_down_by()["at_exit"] >= 1


@pytest.mark.host_covers  # the same selector engine the guest's pushdown tests run
def test_pushdown_keeps_a_dup_of_a_socket_of_the_listed_families() -> None:
    """families (the dup rule's fd.type in (ipv4, ipv6)), decided on the fd the
    kernel returned: a TCP socket dup'd onto fd 1 reaches user space; a pipe
    and a unix socket dup'd onto fd 1 (a shell's redirects) are dropped in the
    kernel, at exit."""
    import socket

    from bpfguard.sensors import SyscallFilter

    code = ("import os, socket\n"
            "r, w = os.pipe(); os.dup2(w, 1)\n"
            "u = socket.socket(socket.AF_UNIX); os.dup2(u.fileno(), 1)\n"
            "t = socket.socket(socket.AF_INET6); os.dup2(t.fileno(), 1)\n")
    keep = {"dup2": SyscallFilter(results=frozenset({"success"}), rets=frozenset({0, 1, 2}),
                                  families=frozenset({socket.AF_INET, socket.AF_INET6}))}
    t = trace([sys.executable, "-I", "-S", "-c", code], syscalls=["dup2"], filters=keep)
    assert t.exit_code == 0
    kept = t.syscalls("dup2", t.pid)
    assert len(kept) == 1 and kept[0]["ret"] == 1
    assert kept[0]["ret_file"]["sock"]["family"] == "AF_INET6"


@pytest.mark.host_covers  # the same selector engine the guest's pushdown tests run
def test_pushdown_keeps_a_connect_of_an_inet_socket_only(tmp_path: Path) -> None:
    """families on a connect (the stock outbound macro's fd.typechar 4 or 6),
    decided at exit on the socket its fd argument names: a unix-socket
    connect is dropped in the kernel, a TCP one kept, refused or not."""
    import socket

    from bpfguard.sensors import SyscallFilter

    code = ("import socket\n"
            f"u = socket.socket(socket.AF_UNIX); u.connect_ex({str(tmp_path / 'none')!r})\n"
            "t = socket.socket(socket.AF_INET); t.connect_ex(('127.0.0.1', 1))\n")
    keep = {"connect": SyscallFilter(families=frozenset({socket.AF_INET, socket.AF_INET6}))}
    t = trace([sys.executable, "-I", "-S", "-c", code], syscalls=["connect"], filters=keep)
    assert t.exit_code == 0
    kept = t.syscalls("connect", t.pid)
    assert [r["args"]["fd"]["sock"]["family"] for r in kept] == ["AF_INET"]


@pytest.mark.host_covers  # the same selector engine the guest's pushdown tests run
def test_a_c_int_argument_is_what_the_syscall_saw_and_is_filtered_so() -> None:
    """socket's domain is a C int: the kernel's wrapper drops the register's
    high half, so socket(1 << 32 | AF_PACKET) makes a packet socket. The event
    says AF_PACKET, and a filter keeping only AF_PACKET keeps it (and drops
    the AF_INET socket), so the high half cannot hide a packet socket."""
    import socket

    from bpfguard.sensors import SyscallFilter
    from bpfguard.sensors.syscall_table import syscall_number

    code = ("import ctypes, socket\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "libc.syscall.restype = ctypes.c_long\n"
            f"nr = {syscall_number('socket')}\n"
            "assert libc.syscall(ctypes.c_long(nr), ctypes.c_long((1 << 32) | 17),"
            " ctypes.c_long(3), ctypes.c_long(0)) >= 0\n"
            "socket.socket(socket.AF_INET)\n")
    keep = {"socket": SyscallFilter(args=((0, frozenset({socket.AF_PACKET})),))}
    t = trace([sys.executable, "-I", "-S", "-c", code], syscalls=["socket"], filters=keep)
    assert t.exit_code == 0
    assert [r["args"]["domain"] for r in t.syscalls("socket", t.pid)] == [socket.AF_PACKET]
