"""Falco's stock rules on bpfguard's sensors: real behaviours raise the matching
stock rules, benign activity raises nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from bpfguard.agent.detect import Detector
from bpfguard.rules import stock_rules_path
from bpfguard.rules.engine import Engine
from bpfguard.rules.loader import load_rules_or_raise

from .helpers import start_watched

pytestmark = pytest.mark.kernel

# Stock rules on real events: the kernel side of each is the syscall and process
# sensors' (test_syscall_sensor.py, test_process_sensor.py, which the 6.1 guest
# runs); the guest keeps one end-to-end detection here
# (test_pushdown_changes_nothing_but_the_volume) and leaves the rest to the host,
# where the same code runs twenty times faster than under TCG.
host_covers = pytest.mark.host_covers

PY = [sys.executable, "-I", "-S", "-c"]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_rules_or_raise([str(stock_rules_path())]).rules, rule_matching="all")


def detect(engine: Engine, argv: list[str], *, cwd: str | None = None,
           pushdown: bool = True) -> list[dict[str, Any]]:
    """Runs argv watched by the stock rules (from its exec on); its alerts."""
    exe = shutil.which(argv[0]) or argv[0]
    out: list[dict[str, Any]] = []
    with Detector(engine, pushdown=pushdown) as det:
        child = start_watched(det, exe, argv, cwd=cwd)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out += det.alerts(timeout=0.05)
            if os.waitpid(child, os.WNOHANG)[0]:
                break
        out += det.stop()
    return [a for a in out if a.get("type") != "loss"]


def rules_of(alerts: list[dict[str, Any]]) -> set[str]:
    return {a["rule"] for a in alerts}


@host_covers
def test_untrusted_process_reads_etc_shadow(engine: Engine) -> None:
    alerts = detect(engine, [*PY, "open('/etc/shadow').read()"])
    hit = [a for a in alerts if a["rule"] == "Read sensitive file untrusted"]
    assert hit, rules_of(alerts)
    f = hit[0]["output_fields"]
    assert f["fd.name"] == "/etc/shadow" and f["proc.name"].startswith("python")
    assert f["user.uid"] == 0 and f["user.name"] == "root"
    assert hit[0]["priority"] == "Warning" and hit[0]["source"] == "syscall"
    assert "maturity_stable" in hit[0]["tags"]
    assert hit[0]["output"].startswith("Sensitive file opened for reading by non-trusted program")


# a rule on the thread's own name, beside the stock rules
_THREAD_COMM_RULE = """
- rule: Renamed thread reads shadow
  desc: test rule on thread.comm
  condition: evt.type in (open, openat, openat2) and fd.name=/etc/shadow and thread.comm=sshd
  output: "renamed %proc.name %thread.comm %proc.pname"
  priority: NOTICE
"""


@host_covers
def test_a_renamed_process_keeps_its_exec_name(tmp_path: Path) -> None:
    """prctl(PR_SET_NAME, "sshd") does not make a program sshd, which the stock
    rules trust to read /etc/shadow: proc.name stays the name it was executed
    as, in the kernel's filter and in user space, for it and for a child it
    forks after the rename; thread.comm tells the name it set."""
    extra = tmp_path / "thread_comm.yaml"
    extra.write_text(_THREAD_COMM_RULE)
    eng = Engine(load_rules_or_raise([str(stock_rules_path()), str(extra)]).rules,
                 rule_matching="all")
    code = ("import ctypes, os\n"
            "ctypes.CDLL(None).prctl(15, b'sshd', 0, 0, 0)\n"
            "open('/etc/shadow').read()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    open('/etc/shadow').read()\n"
            "    os._exit(0)\n"
            "os.waitpid(pid, 0)\n")
    alerts = detect(eng, [*PY, code])
    name = Path(sys.executable).name[:15]
    hit = [a for a in alerts if a["rule"] == "Read sensitive file untrusted"]
    assert len(hit) == 2, rules_of(alerts)
    assert {a["output_fields"]["proc.name"] for a in hit} == {name}
    renamed = [a["output_fields"] for a in alerts if a["rule"] == "Renamed thread reads shadow"]
    assert len(renamed) == 2
    assert {(f["proc.name"], f["thread.comm"]) for f in renamed} == {(name, "sshd")}
    # the child's parent is the renamed program, still known by its exec name
    assert name in {f["proc.pname"] for f in renamed}


@host_covers
def test_traversal_read_is_seen_through(engine: Engine) -> None:
    # the kernel resolves /etc/../../etc/shadow to /etc/shadow; the raw path shows the traversal
    alerts = detect(engine, [*PY, "open('/etc/../../etc/shadow').read()"])
    hit = [a for a in alerts if a["rule"] == "Directory traversal monitored file read"]
    assert hit, rules_of(alerts)
    assert hit[0]["output_fields"]["fd.name"] == "/etc/shadow"
    assert hit[0]["output_fields"]["fd.nameraw"] == "/etc/../../etc/shadow"


@host_covers
def test_symlink_over_etc(engine: Engine, tmp_path: Path) -> None:
    alerts = detect(engine, ["ln", "-s", "/etc", str(tmp_path / "etc-link")])
    hit = [a for a in alerts if a["rule"] == "Create Symlink Over Sensitive Files"]
    assert hit, rules_of(alerts)
    assert hit[0]["output_fields"]["evt.arg.target"] == "/etc"


@host_covers
def test_hardlink_to_etc_shadow(engine: Engine, tmp_path: Path) -> None:
    alerts = detect(engine, ["ln", "/etc/shadow", str(tmp_path / "shadow-link")])
    assert "Create Hardlink Over Sensitive Files" in rules_of(alerts)


PTRACE = textwrap.dedent("""
    import ctypes, os, signal, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if sys.argv[1] == "attach":
        child = os.fork()
        if child == 0:
            time.sleep(5)
            os._exit(0)
        libc.ptrace(16, child, None, None)  # PTRACE_ATTACH
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    else:
        libc.ptrace(0, 0, None, None)  # PTRACE_TRACEME
""")


@host_covers
def test_ptrace_attach(engine: Engine) -> None:
    alerts = detect(engine, [*PY, PTRACE, "attach"])
    hit = [a for a in alerts if a["rule"] == "PTRACE attached to process"]
    assert hit, rules_of(alerts)


@host_covers
def test_ptrace_traceme(engine: Engine) -> None:
    alerts = detect(engine, [*PY, PTRACE, "traceme"])
    assert "PTRACE anti-debug attempt" in rules_of(alerts)


@host_covers
def test_exec_from_memfd(engine: Engine) -> None:
    script = textwrap.dedent("""
        import os
        fd = os.memfd_create("payload")
        with open("/bin/true", "rb") as f:
            os.write(fd, f.read())
        os.execve(fd, ["payload"], {})
    """)
    alerts = detect(engine, [*PY, script])
    hit = [a for a in alerts if a["rule"] == "Fileless execution via memfd_create"]
    assert hit, rules_of(alerts)
    assert hit[0]["output_fields"]["proc.exepath"] == "memfd:payload"


@host_covers   # a hand-made container: a v1 pids cgroup and an overlay mount
def test_a_binary_dropped_into_a_containers_upper_layer_and_run(engine: Engine) -> None:
    """The stock "Drop and execute new binary in container": a process in a
    (libpod-shaped, v1) container cgroup runs a binary copied into its overlay
    root; the one the image shipped, and the dropped one run from the host,
    raise nothing."""
    import contextlib

    from .test_process_sensor import _overlay, _v1_container

    with contextlib.ExitStack() as stack:
        _, cg = _v1_container(stack)
        lower, _, root = _overlay(stack)
        shutil.copy("/bin/true", lower / "shipped")
        shutil.copy("/bin/true", root / "dropped")
        inside = detect(engine, ["sh", "-c", f"echo $$ > {cg}/cgroup.procs && "
                                             f"{root}/shipped && exec {root}/dropped"])
        hits = [a for a in inside if a["rule"] == "Drop and execute new binary in container"]
        assert [h["output_fields"]["proc.exepath"] for h in hits] == [f"{root}/dropped"], \
            rules_of(inside)
        assert hits[0]["priority"] == "Critical"
        # the same binary run from the host: not in a container (the cgroup says)
        outside = detect(engine, ["sh", "-c", f"exec {root}/dropped"])
        assert "Drop and execute new binary in container" not in rules_of(outside)


@host_covers
def test_exec_from_dev_shm(engine: Engine) -> None:
    target = Path("/dev/shm") / f"bpfguard-test-{os.getpid()}"
    shutil.copy("/bin/true", target)
    try:
        alerts = detect(engine, [str(target)])
    finally:
        target.unlink()
    assert "Execution from /dev/shm" in rules_of(alerts)


@host_covers
def test_truncating_a_file_named_syslog(engine: Engine, tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_text("evidence\n")
    alerts = detect(engine, ["sh", "-c", f": > {log}"])
    hit = [a for a in alerts if a["rule"] == "Clear Log Activities"]
    assert hit, rules_of(alerts)
    assert hit[0]["output_fields"]["fd.name"] == str(log)


@host_covers
def test_find_for_private_keys(engine: Engine, tmp_path: Path) -> None:
    alerts = detect(engine, ["find", str(tmp_path), "-name", "id_rsa"])
    assert "Search Private Keys or Passwords" in rules_of(alerts)


@host_covers
def test_shred(engine: Engine, tmp_path: Path) -> None:
    victim = tmp_path / "data"
    victim.write_bytes(b"x" * 4096)
    alerts = detect(engine, ["shred", "-u", str(victim)])
    assert "Remove Bulk Data from Disk" in rules_of(alerts)


@host_covers
def test_benign_activity_raises_nothing(engine: Engine, tmp_path: Path) -> None:
    script = (f"ls /etc >/dev/null; cat /etc/hostname >/dev/null; echo hi > {tmp_path}/f; "
              f"mkdir {tmp_path}/d; mv {tmp_path}/f {tmp_path}/d/; rm -r {tmp_path}/d; "
              f"{sys.executable} -I -S -c 'import os; os.listdir(\".\")'")
    assert detect(engine, ["sh", "-c", script]) == []


def test_pushdown_changes_nothing_but_the_volume(engine: Engine) -> None:
    with_push = detect(engine, [*PY, "open('/etc/shadow').read()"])
    without = detect(engine, [*PY, "open('/etc/shadow').read()"], pushdown=False)
    assert rules_of(with_push) == rules_of(without) != set()


@host_covers
def test_user_uid_is_the_effective_uid_at_the_event(tmp_path: Path) -> None:
    from bpfguard.rules.loader import load_rules_or_raise as load

    rules = tmp_path / "uid.yaml"
    rules.write_text(textwrap.dedent("""
        - rule: Opened as nobody
          desc: an open made after dropping privileges
          condition: evt.type = openat and user.uid = 65534 and fd.name = /etc/hostname
          output: opened by uid %user.uid (%user.name)
          priority: NOTICE
    """))
    eng = Engine(load([str(rules)]).rules)
    # the uid changes after the exec: the process table still says 0, the event says 65534
    script = "import os; os.setresuid(65534, 65534, 65534); open('/etc/hostname').read()"
    for pushdown in (True, False):  # pushed down as an euid filter, or checked in Python
        alerts = detect(eng, [*PY, script], pushdown=pushdown)
        assert [a["output_fields"]["user.uid"] for a in alerts] == [65534], pushdown


# a storm of opens: minutes under TCG; the guest runs the same kernel path tests in
# test_syscall_sensor.py::test_pushdown_path_tests_decide_on_the_resolved_path
@pytest.mark.host_covers
def test_stock_rules_keep_benign_opens_in_the_kernel(engine: Engine, progs: dict[str, str],
                                                      tmp_path: Path) -> None:
    """The path pushdown: 20,000 reads of a file no stock rule names never reach
    user space, and the kernel counts them as dropped by the path tests; the
    same program reading /etc/shadow under an untrusted name still alerts."""
    n = 20_000

    def run(exe: str, path: str, count: int) -> tuple[list[dict[str, Any]], int, int]:
        alerts: list[dict[str, Any]] = []
        with Detector(engine) as det:
            before = det.sensors.pushed_down_by()["by_path"]
            child = start_watched(det, exe, [exe, path, str(count)])
            deadline = time.monotonic() + 60
            status = None
            while time.monotonic() < deadline and status is None:
                alerts += det.alerts(timeout=0.05)
                pid, st = os.waitpid(child, os.WNOHANG)
                status = st if pid else None
            assert status is not None and os.waitstatus_to_exitcode(status) == 0
            alerts += det.alerts(timeout=0.5)
            alerts += det.stop()
            pushed = det.sensors.pushed_down_by()["by_path"] - before
            return [a for a in alerts if a.get("type") != "loss"], det.syscall_events, pushed

    alerts, events, pushed = run(progs["open_loop"], "/etc/hostname", n)
    assert alerts == [] and events == 0, (events, rules_of(alerts))
    assert pushed >= n
    peek = tmp_path / "shadowpeek"  # in no list of trusted programs
    shutil.copy(progs["open_loop"], peek)
    alerts, events, _ = run(str(peek), "/etc/shadow", 1)
    hit = [a for a in alerts if a["rule"] == "Read sensitive file untrusted"]
    assert hit and events == 1, (events, rules_of(alerts))
    assert hit[0]["output_fields"]["proc.name"] == "shadowpeek"
    assert hit[0]["output_fields"]["fd.name"] == "/etc/shadow"


# a CLI subprocess and a storm of opens: slow in the TCG guest, the same code as here
@pytest.mark.host_covers
def test_detect_cli_reports_every_alert_a_tiny_output_queue_drops(tmp_path: Path) -> None:
    # a storm of opens of /etc/shadow by a copied interpreter (an untrusted
    # program): each raises "Read sensitive file untrusted", far faster than a
    # 4-slot stdout queue can print them. Nothing may vanish: every open is an
    # alert printed or counted in a drop alert of the stream itself.
    opens = 20_000
    storm = tmp_path / "shadowstorm"
    shutil.copy2(os.path.realpath(sys.executable), storm)
    code = (f"import os\nfor _ in range({opens}):\n"
            "    os.close(os.open('/etc/shadow', os.O_RDONLY))\n")
    res = subprocess.run([sys.executable, "-m", "bpfguard", "detect", "--json", "--stats",
                          "-o", "outputs_queue.capacity=4", "--", str(storm), "-I", "-S",
                          "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 0, res.stderr[-3000:]
    printed = dropped = output_dropped = 0
    for line in res.stdout.splitlines():
        a = json.loads(line)
        if a["rule"] == "Read sensitive file untrusted":
            assert a["output_fields"]["proc.name"] == "shadowstorm"
            printed += 1
        elif a["rule"] == "Falco internal: syscall event drop":
            n = int(a["output_fields"]["n_drops"])
            dropped += n
            if "n_drops_output_queue_full" in a["output_fields"]:
                output_dropped += n
    assert printed + dropped >= opens, (printed, dropped, res.stderr[-2000:])
    # the queue did overflow, and the stream's count is the channel's own
    assert output_dropped > 0, res.stderr[-2000:]
    m = re.search(r"'stdout': \{'sent': \d+, 'failed': \d+, 'dropped': (\d+)", res.stderr)
    assert m is not None, res.stderr[-2000:]
    assert int(m[1]) == output_dropped
