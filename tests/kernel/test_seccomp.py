"""The seccomp advisor for real: record in the kernel, enforce with libseccomp,
and report from the kernel's own audit records."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from bpfguard.sensors.syscall_table import syscall_number

pytestmark = pytest.mark.kernel
# The guest kernel run (scripts/vmtest, TCG: ~20x slower) keeps the recorder
# tests (the BPF object on its verifier); seccomp filters themselves are the
# kernel's and libseccomp's, fully covered on the host.
host_covers = pytest.mark.host_covers

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"  # copies, with LICENSE and SOURCE
# -S -I: no site packages, no environment: the same few startup syscalls every run
PY = [sys.executable, "-I", "-S"]

THREADS = textwrap.dedent("""
    import hashlib, sys, threading
    results = {}
    def work(i):
        results[i] = hashlib.sha256(str(i).encode() * 100000).hexdigest()[:16]
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    with open("out.txt", "w") as f:
        f.write(repr(sorted(results.items())))
    print(sorted(results.items()))
    if "--escape" in sys.argv:
        import ctypes, errno, socket
        try:
            socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            print("socket ok")
        except OSError as e:
            print("socket", errno.errorcode[e.errno])
        libc = ctypes.CDLL(None, use_errno=True)
        r = libc.mount(b"none", b"/mnt", b"tmpfs", 0, None)
        print("mount", errno.errorcode[ctypes.get_errno()] if r else "ok")
        print("still running")
""")


def bpfguard(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "bpfguard", "seccomp", *args], cwd=cwd,
                       capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def allowed(profile: dict[str, Any]) -> set[str]:
    """What the profile allows for what was recorded (the runtime base's rule aside)."""
    return {n for r in profile["syscalls"] if r["action"] == "SCMP_ACT_ALLOW"
            and not r.get("comment", "").startswith("runtime base") for n in r["names"]}


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for i in range(20):
        (src / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 3}" / f"f{i}.txt").write_text(f"file {i}\n" * (i * 50 + 1))
        os.utime(src / f"d{i % 3}" / f"f{i}.txt", (1_700_000_000, 1_700_000_000))
    return tmp_path


@host_covers
def test_tar_gzip_replays_under_its_recorded_profile(tree: Path) -> None:
    pipeline = "tar -C src --sort=name -cf - . | gzip -n > {out}"
    rec = bpfguard("record", "-o", "tar.json", "--", "sh", "-c", pipeline.format(out="a.tgz"),
                   cwd=tree)
    assert "-> tar.json (oci)" in rec.stderr
    profile = load(tree / "tar.json")
    names = allowed(profile)
    # each process of the pipeline left its mark: sh forks, tar reads dirs, gzip writes
    assert {"clone", "wait4", "pipe2", "getdents64", "execve", "exit_group"} <= names
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["defaultErrnoRet"] == 1
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert profile["syscalls"][0]["names"] == sorted(profile["syscalls"][0]["names"])
    run = bpfguard("run", "--profile", "tar.json", "--", "sh", "-c",
                   pipeline.format(out="b.tgz"), cwd=tree)
    assert "nothing was denied" in run.stderr
    assert (tree / "a.tgz").read_bytes() == (tree / "b.tgz").read_bytes()


@host_covers
def test_threads_replay_and_an_escape_is_denied_with_eperm(tmp_path: Path) -> None:
    (tmp_path / "work.py").write_text(THREADS)
    rec = bpfguard("record", "-o", "py.json", "--", *PY, "work.py", cwd=tmp_path)
    recorded_out = (tmp_path / "out.txt").read_text()
    names = allowed(load(tmp_path / "py.json"))
    assert names & {"clone", "clone3"} and "futex" in names, rec.stderr
    assert not names & {"socket", "mount"}

    (tmp_path / "out.txt").unlink()
    same = bpfguard("run", "--profile", "py.json", "--", *PY, "work.py", cwd=tmp_path)
    assert (tmp_path / "out.txt").read_text() == recorded_out
    assert "nothing was denied" in same.stderr

    esc = bpfguard("run", "--profile", "py.json", "--report", "denied.json", "--", *PY,
                   "work.py", "--escape", cwd=tmp_path)
    lines = esc.stdout.splitlines()
    assert "socket EPERM" in lines and "mount EPERM" in lines and lines[-1] == "still running"
    denied = {d["syscall"]: d for d in load(tmp_path / "denied.json")["denials"]}
    assert {"socket", "mount"} <= denied.keys(), esc.stderr
    proc = denied["socket"]["processes"][0]
    assert proc["exe"] == os.path.realpath(sys.executable) and proc["pid"] > 0
    assert denied["socket"]["profile_action"] == "SCMP_ACT_ERRNO(1)"


@host_covers
def test_the_launcher_leaves_nothing_in_the_profile(tmp_path: Path,
                                                    progs: dict[str, str]) -> None:
    # the program's only syscall is exit_group; execve is the one that started it
    bpfguard("record", "-o", "p.json", "--", progs["only_exit"], cwd=tmp_path)
    profile = load(tmp_path / "p.json")
    assert allowed(profile) == {"execve", "exit_group"}
    assert profile["bpfguard"]["syscalls"] == {"SCMP_ARCH_X86_64": ["execve", "exit_group"]}
    base, clone = [r for r in profile["syscalls"]
                   if r.get("comment", "").startswith("runtime base")]
    assert {"exit", "rt_sigreturn", "capset"} <= set(base["names"])
    assert clone["names"] == ["clone"] and clone["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
    assert not {"execve", "exit_group"} & set(base["names"])  # recorded: in the first rule


@pytest.mark.host_covers  # the recorder's program is the one the guest's other record tests load
def test_compat_syscalls_are_recorded_under_their_own_architecture(
        tmp_path: Path, progs: dict[str, str]) -> None:
    bpfguard("record", "-o", "c.json", "--", progs["int80_open"], cwd=tmp_path)
    per_arch = load(tmp_path / "c.json")["bpfguard"]["syscalls"]
    # i386 syscall 5 is open (x86_64's 5 is fstat)
    assert per_arch["SCMP_ARCH_X86"] == ["open"]
    assert "open" not in per_arch["SCMP_ARCH_X86_64"]


@host_covers
def test_args_profile_allows_af_unix_and_denies_af_inet(tmp_path: Path) -> None:
    unix_only = "import socket; socket.socket(socket.AF_UNIX).close(); print('unix ok')"
    bpfguard("record", "--args", "-o", "a.json", "--", *PY, "-c", unix_only, cwd=tmp_path)
    profile = load(tmp_path / "a.json")
    socket_rules = [r for r in profile["syscalls"] if "socket" in r["names"]]
    assert socket_rules == [{"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]
    both = textwrap.dedent("""
        import errno, socket
        socket.socket(socket.AF_UNIX).close(); print('unix ok')
        try:
            socket.socket(socket.AF_INET); print('inet ok')
        except OSError as e:
            print('inet', errno.errorcode[e.errno])
    """)
    r = bpfguard("run", "--profile", "a.json", "--", *PY, "-c", both, cwd=tmp_path)
    assert r.stdout.splitlines() == ["unix ok", "inet EPERM"]


@host_covers
def test_audit_mode_denies_nothing_and_reports_what_it_would(tmp_path: Path,
                                                             progs: dict[str, str]) -> None:
    bpfguard("record", "-o", "min.json", "--", progs["only_exit"], cwd=tmp_path)
    script = "import socket; socket.socket(); print('made a socket')"
    r = bpfguard("run", "--profile", "min.json", "--log", "--report", "would.json", "--",
                 *PY, "-c", script, cwd=tmp_path)
    assert r.stdout == "made a socket\n"
    assert "would have denied" in r.stderr
    would = {d["syscall"]: d for d in load(tmp_path / "would.json")["denials"]}
    assert {"socket", "brk", "mprotect"} <= would.keys()
    assert would["socket"]["action"] == "SCMP_ACT_LOG"
    assert would["socket"]["profile_action"] == "SCMP_ACT_ERRNO(1)"
    assert would["socket"]["processes"][0]["comm"].startswith("python")


@host_covers
def test_docker_default_loads_and_enforces(tmp_path: Path) -> None:
    profile = FIXTURES / "seccomp" / "docker-default.json"
    check = bpfguard("check", str(profile), cwd=tmp_path)
    assert "ok (docker format)" in check.stdout
    # keyctl is in no rule of Docker's profile: its default action answers EPERM
    script = textwrap.dedent(f"""
        import ctypes, errno, os
        libc = ctypes.CDLL(None, use_errno=True)
        r = libc.syscall({syscall_number("keyctl")}, 0, 0, 0, 0, 0)  # KEYCTL_GET_KEYRING_ID
        print('keyctl', errno.errorcode[ctypes.get_errno()] if r < 0 else 'ok')
        print('pid', os.getpid() > 0)
    """)
    r = bpfguard("run", "--profile", str(profile), "--report", "d.json", "--", *PY, "-c", script,
                 cwd=tmp_path)
    assert r.stdout.splitlines() == ["keyctl EPERM", "pid True"]
    assert [d["syscall"] for d in load(tmp_path / "d.json")["denials"]] == ["keyctl"]


@pytest.mark.host_covers  # the recorder's program is the one the guest's other record tests load
def test_record_a_running_tree_by_pid_follows_its_forks(tmp_path: Path) -> None:
    go = tmp_path / "go"
    # waits for the recorder, then forks a child that makes a directory
    sh = subprocess.Popen(["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done; "
                                       f"mkdir {tmp_path}/made; exit 0"])
    try:
        rec = subprocess.Popen([sys.executable, "-m", "bpfguard", "seccomp", "record", "-o",
                                "pid.json", "--pid", str(sh.pid)], cwd=tmp_path,
                               stderr=subprocess.PIPE, text=True)
        assert rec.stderr is not None
        assert "recording" in rec.stderr.readline()  # attached: from here on it is recorded
        go.touch()
        assert sh.wait(timeout=30) == 0
        _, err = rec.communicate(timeout=30)
        assert rec.returncode == 0, err
    finally:
        sh.kill()
    profile = load(tmp_path / "pid.json")
    assert profile["bpfguard"]["pids"] == [sh.pid]
    assert {"mkdir", "execve", "wait4"} <= allowed(profile)


@host_covers
def test_base_merge_keeps_the_base_actions(tmp_path: Path, progs: dict[str, str]) -> None:
    base = {"defaultAction": "SCMP_ACT_ERRNO",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": None}],
            "syscalls": [{"names": ["exit_group"], "action": "SCMP_ACT_LOG"}]}
    (tmp_path / "base.json").write_text(json.dumps(base))
    bpfguard("record", "--base", "base.json", "-o", "m.json", "--", progs["only_exit"],
             cwd=tmp_path)
    merged = load(tmp_path / "m.json")
    assert "archMap" in merged  # the base's (Docker) format
    assert merged["syscalls"][0] == {"names": ["exit_group"], "action": "SCMP_ACT_LOG"}
    assert merged["syscalls"][1]["names"] == ["execve"]
    assert merged["syscalls"][1]["action"] == "SCMP_ACT_ALLOW"
    assert merged["bpfguard"]["added"] == ["execve"]


@host_covers
def test_bad_profile_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["opne"], "action": "SCMP_ACT_ALLOW"}]}))
    r = bpfguard("run", "--profile", "bad.json", "--", "touch", "ran", cwd=tmp_path,
                 check=False)
    assert r.returncode != 0
    assert "$.syscalls[0].names[0]: unknown syscall 'opne'" in r.stderr
    assert not (tmp_path / "ran").exists()


@pytest.fixture()
def empty_cgroup() -> Any:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[fields.index("-") + 1] == "cgroup2":
            cg = Path(fields[4]) / f"bpfguard-test-{os.getpid()}"
            cg.mkdir()
            yield cg
            deadline = time.monotonic() + 10
            while (pids := (cg / "cgroup.procs").read_text().split()) and \
                    time.monotonic() < deadline:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), 9)
                time.sleep(0.05)
            cg.rmdir()
            return
    raise AssertionError("no cgroup2 mount")


@host_covers
def test_nothing_recorded_writes_no_profile(tmp_path: Path, empty_cgroup: Path) -> None:
    r = bpfguard("record", "-o", "none.json", "--duration", "0.2", "--cgroup",
                 str(empty_cgroup), cwd=tmp_path, check=False)
    assert r.returncode != 0 and "nothing was recorded" in r.stderr
    assert not (tmp_path / "none.json").exists()


@host_covers
def test_record_a_cgroup_until_sigint(tmp_path: Path, empty_cgroup: Path) -> None:
    loop = subprocess.Popen(["sh", "-c", f"echo $$ > {empty_cgroup}/cgroup.procs; "
                                         "while :; do cat /etc/hostname >/dev/null; "
                                         "sleep 0.05; done"])
    try:
        rec = subprocess.Popen([sys.executable, "-m", "bpfguard", "seccomp", "record", "-o",
                                "cg.json", "--cgroup", str(empty_cgroup)], cwd=tmp_path,
                               stderr=subprocess.PIPE, text=True)
        assert rec.stderr is not None
        assert "recording" in rec.stderr.readline()
        time.sleep(1)  # a few rounds of the loop
        rec.send_signal(2)  # SIGINT, as Ctrl-C
        _, err = rec.communicate(timeout=30)
        assert rec.returncode == 0, err
    finally:
        loop.kill()
        loop.wait()
    profile = load(tmp_path / "cg.json")
    assert profile["bpfguard"]["cgroups"] == [str(empty_cgroup)]
    assert {"openat", "read", "execve", "wait4"} <= allowed(profile)


ACTIONS = textwrap.dedent("""
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    sys.stdout.write("start\\n"); sys.stdout.flush()
    os.getpid()  # LOG: allowed, and logged
    r = libc.syscall({sched_yield}, 0)  # MASKED_EQ: arg0 & 0xf0 == 0x10 -> ALLOW, else ERRNO 13
    print("yield(0)", ctypes.get_errno() if r < 0 else "ok")
    r = libc.syscall({sched_yield}, 0x13)
    print("yield(0x13)", "ok" if r == 0 else ctypes.get_errno())
    sys.stdout.flush()
    os.{last}()
    print("survived")
""")


@pytest.mark.parametrize(("action", "last", "code"), [
    ("SCMP_ACT_KILL_PROCESS", "getppid", 128 + 31),  # SIGSYS
    ("SCMP_ACT_TRAP", "getppid", 128 + 31),
    ("SCMP_ACT_ERRNO", "getppid", 0),
])
@host_covers
def test_actions_and_masked_eq_are_enforced(tmp_path: Path, action: str, last: str,
                                            code: int) -> None:
    base = json.loads((FIXTURES / "seccomp" / "docker-default.json").read_text())
    ours = {"getpid", "getppid", "sched_yield"}
    for rule in base["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n not in ours]
    base["syscalls"] = [r for r in base["syscalls"] if r["names"]]
    base["syscalls"] += [
        {"names": ["getpid"], "action": "SCMP_ACT_LOG"},
        {"names": ["sched_yield"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0xF0, "valueTwo": 0x10, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["sched_yield"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
         "args": [{"index": 0, "value": 0xF0, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": [last], "action": action},
    ]
    (tmp_path / "p.json").write_text(json.dumps(base))
    script = ACTIONS.format(sched_yield=syscall_number("sched_yield"), last=last)
    r = bpfguard("run", "--profile", "p.json", "--report", "r.json", "--", *PY, "-c", script,
                 cwd=tmp_path, check=False)
    assert r.returncode == code, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:3] == ["start", "yield(0) 13", "yield(0x13) ok"]
    assert ("survived" in lines) == (code == 0)
    assert "allowed and logged by SCMP_ACT_LOG rules" in r.stderr
    kinds = {(d["syscall"], d["action"]) for d in load(tmp_path / "r.json")["denials"]}
    expected = {"SCMP_ACT_KILL_PROCESS": "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP": "SCMP_ACT_TRAP",
                "SCMP_ACT_ERRNO": "SCMP_ACT_ERRNO"}[action]
    assert {("getpid", "SCMP_ACT_LOG"), ("sched_yield", "SCMP_ACT_ERRNO"),
            ("getppid", expected)} <= kinds


@host_covers
def test_record_by_pid_ends_when_the_tree_is_gone_even_with_a_zombie(tmp_path: Path) -> None:
    go = tmp_path / "go"
    # a child that exited before recording began stays a zombie until its parent ends
    parent = subprocess.Popen([*PY, "-c", textwrap.dedent(f"""
        import os, time
        if os.fork() == 0:
            os._exit(0)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.05)
        os.mkdir({str(tmp_path / "made")!r})
    """)])
    try:
        time.sleep(0.3)  # the child is a zombie by now
        rec = subprocess.Popen([sys.executable, "-m", "bpfguard", "seccomp", "record", "-o",
                                "z.json", "--pid", str(parent.pid)], cwd=tmp_path,
                               stderr=subprocess.PIPE, text=True)
        assert rec.stderr is not None
        assert "recording" in rec.stderr.readline()
        go.touch()
        assert parent.wait(timeout=30) == 0
        _, err = rec.communicate(timeout=30)
        assert rec.returncode == 0, err
    finally:
        parent.kill()
    assert "mkdir" in allowed(load(tmp_path / "z.json"))


@pytest.mark.parametrize("verb", ["record", "run"])
@pytest.mark.host_covers  # the recorder's program is the one the guest's other record tests load
def test_record_and_run_leave_the_commands_signals_as_bare(tmp_path: Path, verb: str) -> None:
    """Python ignores SIGPIPE and SIGXFSZ; a command bpfguard starts must not
    inherit that: `yes | head -1` under pipefail exits 141 (yes killed by
    SIGPIPE), as it does bare, not 1 with "Broken pipe"."""
    cmd = ["bash", "-c", "set -o pipefail; yes | head -1"]
    bare = subprocess.run(cmd, capture_output=True, text=True)
    assert bare.returncode == 141
    if verb == "record":
        r = bpfguard("record", "-o", str(tmp_path / "p.json"), "--", *cmd, cwd=tmp_path,
                     check=False)
    else:
        profile = tmp_path / "allow.json"
        profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}))
        r = bpfguard("run", "--profile", str(profile), "--", *cmd, cwd=tmp_path, check=False)
    assert r.returncode == 141, r.stderr
    assert "Broken pipe" not in r.stderr


_TARGET = textwrap.dedent("""
    import os, sys, time
    for line in sys.stdin:
        if line == "mkdir\\n":
            os.mkdir("m")
        elif line == "fork\\n":
            if os.fork() == 0:  # waits for "go", renames, exits
                while not os.path.exists("go"):
                    time.sleep(0.01)
                os.rename("m", "n")
                os._exit(0)
        elif line == "rmdir\\n":
            os.rmdir("n")
        print("ok", flush=True)
""")


def test_pids_join_after_the_fork_program_and_before_the_first_syscall(tmp_path: Path) -> None:
    """The attach order that keeps `record --pid` from racing a tree that forks:
    when the pids join, forks are followed already and no syscall is counted yet."""
    from bpfguard.seccomp import SeccompRecorder

    target = subprocess.Popen([*PY, "-c", _TARGET], cwd=tmp_path, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert target.stdin is not None and target.stdout is not None

    def ask(what: str) -> None:
        target.stdin.write(what + "\n")  # type: ignore[union-attr]
        target.stdin.flush()  # type: ignore[union-attr]
        assert target.stdout.readline() == "ok\n"  # type: ignore[union-attr]

    try:
        with SeccompRecorder() as rec:
            rec.scope.add_pid(target.pid, children=False)
            # in the window: mkdir is not counted, the forked child joins by itself
            rec.start(lambda: (ask("mkdir"), ask("fork")))
            (tmp_path / "go").touch()
            deadline = time.monotonic() + 10
            while not (tmp_path / "n").exists():
                assert time.monotonic() < deadline, "the child did not rename"
                time.sleep(0.01)
            ask("rmdir")
            seen = rec.recording().names()
    finally:
        target.kill()
        target.communicate()
    assert not seen & {"mkdir", "mkdirat"}, "a syscall made before sys_enter was attached"
    assert seen & {"rename", "renameat", "renameat2"}, "the child forked in the window escaped"
    assert seen & {"rmdir", "unlinkat"}
