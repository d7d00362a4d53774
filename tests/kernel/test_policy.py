"""TracingPolicies on the real kernel: selectors evaluated in the kernel,
Sigkill in the offending task, monitor mode, removal, and every Tetragon
example policy either served or refused with the missing feature named."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bpfguard.errors import ConfigError
from bpfguard.policy import PolicyError, load_policy, load_policy_text
from bpfguard.policy.compiler import compile_policy
from bpfguard.policy.engine import PolicyEngine
from bpfguard.policy.events import PolicyEvent
from bpfguard.probe import features
from bpfguard.sensors import SensorSet
from bpfguard.sensors.syscall_table import syscall_number

pytestmark = pytest.mark.kernel

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tetragon"
PY = [sys.executable, "-I", "-S", "-c"]

SERVED = {"list-syscalls-tracepoint", "openat_write", "raw_syscalls", "rawtp",
          "sys_clock_settime", "sys_mount", "sys_pivot_root", "sys_ptrace", "sys_setuid",
          "write"}
# fixture -> (probe features that serve it, any one set will do; what a refusal names)
_FENTRY = ((("fentry",), ("kprobe",)), "needs BPF trampolines (fentry) or kprobes")
NEEDS = {
    "fd_install_ns_host": _FENTRY, "kprobe_commit_creds": _FENTRY, "tcp-connect": _FENTRY,
    "tcp-connect-only-private-addrs": _FENTRY,
    "filename_monitoring": ((("fentry", "fexit"), ("kprobe",)),
                            "needs BPF trampolines (fentry and fexit) or kprobes"),
    "override-security": ((("fmod_ret",),), "needs BPF trampolines (fmod_ret)"),
    "lsm_file_open": ((("lsm",),), "needs BPF LSM"),
    "lsm_bprm_check": ((("lsm",),), "needs BPF LSM"),
}
REFUSED = {  # on every kernel: fixture -> what the refusal must name
    # its enforcers are on syscalls: fmod_ret there needs the error-injection list
    "killer": "enforcers: __x64_sys_dup: an enforcer",
    "symlink-override": "Override on a syscall",
}


def _served_here(name: str) -> bool:
    f = features()
    return any(all(f.has(x) for x in alt) for alt in NEEDS[name][0])


class Running:
    """A started engine, its ring buffer drained all along by a thread (so a
    busy host cannot fill it); `events()` takes what arrived."""

    def __init__(self, engine: PolicyEngine, sensors: SensorSet) -> None:
        self.engine = engine
        self.sensors = sensors
        self._got: list[PolicyEvent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.paused = threading.Event()  # set: records stay in the ring buffer
        self.drops_before = 0  # ring-buffer drops before the current test
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            if self.paused.is_set():
                time.sleep(0.02)
                continue
            batch = [e for e in self.sensors.read(timeout_ms=50) if isinstance(e, PolicyEvent)]
            with self._lock:
                self._got += batch

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def add(self, text: str, name: str = "test.yaml") -> Any:
        return self.engine.add(load_policy_text(name, textwrap.dedent(text)))

    def wait_events(self, n: int, timeout: float = 20.0) -> list[PolicyEvent]:
        """The events, once `n` have arrived (decoding may be slow: naming a
        stack's frames under the guest's emulation), or when `timeout` ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._got) >= n:
                    break
            time.sleep(0.05)
        return self.events(settle=0.1)

    def events(self, settle: float = 0.3) -> list[PolicyEvent]:
        time.sleep(settle)
        with self._lock:
            out, self._got = self._got, []
        assert self.sensors.drops()["ringbuf_full"] == self.drops_before
        return out


@pytest.fixture(scope="module")
def _engine() -> Iterator[Running]:
    """One started engine for the module: loading and verifying its programs
    is most of a test's time, tenfold in the TCG guest of scripts/vmtest."""
    engine = PolicyEngine(features=features())
    with SensorSet(syscalls=(), extra=[engine]) as sensors:
        sensors.start()
        r = Running(engine, sensors)
        try:
            yield r
        finally:
            r.stop()


@pytest.fixture
def running(_engine: Running) -> Iterator[Running]:
    """The module's engine, with no policy loaded and no event pending."""
    _engine.drops_before = _engine.sensors.drops()["ringbuf_full"]
    _engine.events(settle=0)
    yield _engine
    _engine.paused.clear()
    for lp in _engine.engine.list():
        _engine.engine.delete(lp["name"])
    _engine.events(settle=0.05)


@pytest.fixture
def two_cats(tmp_path: Path) -> tuple[str, str]:
    """Two copies of cat at different paths: one to target, one to spare."""
    out = []
    for d in ("victim", "bystander"):
        (tmp_path / d).mkdir()
        dst = tmp_path / d / "cat"
        shutil.copy2("/usr/bin/cat", dst)
        out.append(str(dst))
    return out[0], out[1]


def kill_policy(binary: str, mode: str = "enforce", name: str = "kill-etc") -> str:
    return f"""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata:
      name: {name}
    spec:
      options:
      - name: policy-mode
        value: {mode}
      kprobes:
      - call: sys_openat
        syscall: true
        args:
        - index: 0
          type: int
        - index: 1
          type: string
        selectors:
        - matchArgs:
          - index: 1
            operator: Prefix
            values: ["/etc/host"]
          matchBinaries:
          - operator: In
            values: ["{binary}"]
          matchActions:
          - action: Sigkill
    """


def test_sigkill_kills_the_matching_binary_only(running: Running,
                                                two_cats: tuple[str, str]) -> None:
    victim, bystander = two_cats
    running.add(kill_policy(victim))
    v = subprocess.run([victim, "/etc/hostname"], capture_output=True)
    b = subprocess.run([bystander, "/etc/hostname"], capture_output=True)
    assert v.returncode == -9 and v.stdout == b""
    assert b.returncode == 0 and b.stdout
    evs = running.events()
    mine = [e for e in evs if e.policy_name == "kill-etc"]
    assert len(mine) == 1
    ev = mine[0]
    assert ev.action == "KPROBE_ACTION_SIGKILL"
    assert ev.args[1].value == "/etc/hostname"
    assert ev.function_name == "__x64_sys_openat"
    (enf,) = ev.enforcement
    assert enf.done and enf.mode == "enforce" and enf.backend == "bpf_send_signal"
    assert enf.before_operation is False  # honest: the open itself happened
    assert running.engine.counters("kill-etc")["actions"] == 1


def test_monitor_mode_posts_and_kills_nothing(running: Running,
                                              two_cats: tuple[str, str]) -> None:
    victim, _ = two_cats
    running.add(kill_policy(victim, mode="monitor"))
    v = subprocess.run([victim, "/etc/hostname"], capture_output=True)
    assert v.returncode == 0 and v.stdout
    (ev,) = [e for e in running.events() if e.policy_name == "kill-etc"]
    assert ev.action == "KPROBE_ACTION_POST"
    (enf,) = ev.enforcement
    assert not enf.done and enf.mode == "monitor" and enf.action == "Sigkill"
    c = running.engine.counters("kill-etc")
    assert c["would_act"] == 1 and c["actions"] == 0


def test_mode_switches_live(running: Running, two_cats: tuple[str, str]) -> None:
    victim, _ = two_cats
    running.add(kill_policy(victim))
    running.engine.set_mode("kill-etc", "monitor")
    assert subprocess.run([victim, "/etc/hostname"], capture_output=True).returncode == 0
    running.engine.set_mode("kill-etc", "enforce")
    assert subprocess.run([victim, "/etc/hostname"], capture_output=True).returncode == -9


@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
def test_twenty_reloads_of_a_changed_enforce_policy_let_nothing_through(
        running: Running, two_cats: tuple[str, str]) -> None:
    """Make before break (issue 22, defect 1): while a changed version of
    an enforce-mode policy replaces the running one, twenty times, a loop
    of forbidden opens keeps being killed: not one run survives."""
    from bpfguard.agent.policy import PolicySubscriber

    victim, _ = two_cats
    subscriber = PolicySubscriber.__new__(PolicySubscriber)  # its apply(), on this engine
    subscriber.engine, subscriber.from_config, subscriber.cgroup = running.engine, {}, None

    def version(i: int) -> dict[str, Any]:
        text = textwrap.dedent(kill_policy(victim)).replace(
            "    syscall: true\n", f"    syscall: true\n    message: version {i}\n")
        return {"kill-etc": (load_policy_text("kill.yaml", text), "kill.yaml")}

    subscriber.apply(version(0), None)
    [first] = running.engine.list()
    stop = threading.Event()
    outcomes: list[int] = []

    def hammer() -> None:
        while not stop.is_set():
            outcomes.append(subprocess.run([victim, "/etc/hostname"],
                                           capture_output=True).returncode)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        for i in range(1, 21):
            subscriber.apply(version(i), None)
            time.sleep(0.02)
    finally:
        stop.set()
        t.join()
    assert len(outcomes) >= 20 and set(outcomes) == {-9}, outcomes
    [lp] = running.engine.list()
    assert lp["name"] == "kill-etc" and lp["hooks"] == 1  # the old versions are gone
    # one policy all along: its id, and the kills of every version counted
    assert lp["id"] == first["id"] and lp["counters"]["signals"] >= len(outcomes) // 2


@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
def test_disable_detaches_and_enable_restores_mode_and_counters(
        running: Running, two_cats: tuple[str, str]) -> None:
    victim, _ = two_cats
    running.add(kill_policy(victim))
    running.engine.set_mode("kill-etc", "monitor")
    assert subprocess.run([victim, "/etc/hostname"], capture_output=True).returncode == 0
    running.engine.disable("kill-etc")
    [lp] = running.engine.list()
    assert (lp["state"], lp["hooks"], lp["counters"]["would_signal"]) == ("disabled", 0, 1)
    assert subprocess.run([victim, "/etc/hostname"], capture_output=True).returncode == 0
    assert len(running.events()) == 1  # the first open only
    with pytest.raises(ConfigError, match="disabled already"):
        running.engine.disable("kill-etc")
    running.engine.enable("kill-etc")
    [lp] = running.engine.list()
    assert (lp["state"], lp["mode"], lp["hooks"]) == ("enabled", "monitor", 1)
    assert subprocess.run([victim, "/etc/hostname"], capture_output=True).returncode == 0
    assert running.engine.counters("kill-etc")["would_signal"] == 2
    running.engine.set_mode("kill-etc", "enforce")
    assert subprocess.run([victim, "/etc/hostname"], capture_output=True).returncode == -9
    c = running.engine.counters("kill-etc")
    assert (c["signals"], c["posted"]) == (1, 3)


@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
def test_deleting_a_disabled_policy_leaves_the_others_sets_alone(
        running: Running, two_cats: tuple[str, str]) -> None:
    """disable gave the policy's sets back; delete must not give them back
    again when another policy holds them by then."""
    victim, bystander = two_cats
    running.add(kill_policy(victim, name="first"))
    running.engine.disable("first")
    running.add(kill_policy(bystander, name="second"))  # may take the sets first had
    running.engine.delete("first")
    assert subprocess.run([bystander, "/etc/hostname"], capture_output=True).returncode == -9


@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
def test_inmap_syscall_list_on_raw_syscalls_matches_only_listed(running: Running,
                                                                tmp_path: Path) -> None:
    # the fixture unmodified: InMap list:dups (sys_dup, sys_dup2) on raw_syscalls/sys_enter
    running.engine.add(load_policy(FIXTURES / "list-syscalls-tracepoint.yaml"))
    child = subprocess.Popen([*PY, "import os; os.dup2(1, 9); os.dup2(1, 10, "
                                   "inheritable=False); os.getpid()"])
    assert child.wait() == 0
    evs = running.events()
    listed = {syscall_number("dup"), syscall_number("dup2")}
    assert {e.args[0].value for e in evs} <= listed  # host-wide: nothing but dup and dup2
    # the child's own: dup2 once; not dup3 (os.dup2 non-inheritable), not getpid
    assert [e.args[0].value for e in evs if e.pid == child.pid] == [syscall_number("dup2")]
    assert all(e.kind == "tracepoint" and e.subsys == "raw_syscalls" for e in evs)


def test_match_binaries_notin_excludes_the_listed_binary(running: Running,
                                                         two_cats: tuple[str, str]) -> None:
    victim, bystander = two_cats
    running.add(f"""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata: {{name: not-victim}}
    spec:
      kprobes:
      - call: sys_openat
        args: [{{index: 1, type: string}}]
        selectors:
        - matchArgs: [{{index: 1, operator: Equal, values: ["/etc/hostname"]}}]
          matchBinaries: [{{operator: NotIn, values: ["{victim}"]}}]
    """)
    pv = subprocess.Popen([victim, "/etc/hostname"], stdout=subprocess.DEVNULL)
    pb = subprocess.Popen([bystander, "/etc/hostname"], stdout=subprocess.DEVNULL)
    assert pv.wait() == 0 and pb.wait() == 0
    pids = {e.pid for e in running.events() if e.policy_name == "not-victim"}
    assert pb.pid in pids
    assert pv.pid not in pids


def _follow_policy(shell: str, op: str = "In") -> str:
    return f"""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata: {{name: follow}}
    spec:
      kprobes:
      - call: sys_openat
        syscall: true
        args: [{{index: 1, type: string}}]
        selectors:
        - matchArgs: [{{index: 1, operator: Equal, values: ["/etc/hostname"]}}]
          matchBinaries: [{{operator: {op}, values: ["{shell}"], followChildren: true}}]
          matchActions: [{{action: Sigkill}}]
    """


def test_match_binaries_follow_children_reaches_descendants(running: Running,
                                                            tmp_path: Path) -> None:
    """followChildren: what a copy of bash starts, and what that starts, is
    matched too, though its own binary is cat; cat run elsewhere is not. Mode
    switches keep the marks (and take no new followChildren slot)."""
    shell = tmp_path / "bash"
    shutil.copy2("/usr/bin/bash", shell)
    running.add(_follow_policy(str(shell)))
    for _ in range(70):  # more switches than there are followChildren slots
        running.engine.set_mode("follow", "monitor")
        running.engine.set_mode("follow", "enforce")
    child = subprocess.run([str(shell), "-c", "cat /etc/hostname; echo $?"],
                           capture_output=True, text=True)
    grandchild = subprocess.run([str(shell), "-c", "sh -c 'cat /etc/hostname; echo $?'"],
                                capture_output=True, text=True)
    assert child.stdout.split()[-1] == "137" and grandchild.stdout.split()[-1] == "137"
    assert subprocess.run(["cat", "/etc/hostname"], capture_output=True).returncode == 0
    assert {e.comm for e in running.events() if e.policy_name == "follow"} == {"cat"}


def test_follow_children_covers_processes_started_before_the_policy(running: Running,
                                                                    tmp_path: Path) -> None:
    """A shell already running when the policy arrives is found from /proc,
    and NotIn with followChildren spares its descendants. Loaded for a test
    cgroup only: NotIn would kill any other reader of /etc/hostname."""
    shell = tmp_path / "bash"
    shutil.copy2("/usr/bin/bash", shell)
    go = tmp_path / "go"
    with _test_cgroup() as cg:
        join = f"echo $$ > {cg}/cgroup.procs; "
        early = subprocess.Popen(
            [str(shell), "-c", f"{join}while [ ! -e {go} ]; do sleep 0.05; done; "
             "cat /etc/hostname; echo $?"], stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.3)
            running.engine.add(load_policy_text("f.yaml", textwrap.dedent(
                _follow_policy(str(shell)))), cgroup=str(cg))
            go.touch()
            out, _ = early.communicate(timeout=30)
        finally:
            early.kill()
            early.wait()
        assert out.split()[-1] == "137"
        running.engine.delete("follow")
        running.engine.add(load_policy_text("f.yaml", textwrap.dedent(
            _follow_policy(str(shell), op="NotIn"))), cgroup=str(cg))
        spared = subprocess.run([str(shell), "-c", f"{join}cat /etc/hostname; echo $?"],
                                capture_output=True, text=True)
        other = subprocess.run(["sh", "-c", f"{join}cat /etc/hostname; echo $?"],
                               capture_output=True, text=True)
    assert spared.stdout.split()[-1] == "0"
    assert other.stdout.split()[-1] == "137"


def test_connect_to_a_disallowed_cidr_posts(running: Running) -> None:
    running.add("""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata: {name: no-bench-net}
    spec:
      kprobes:
      - call: sys_connect
        args: [{index: 0, type: int}, {index: 1, type: sockaddr}]
        selectors:
        - matchArgs: [{index: 1, operator: DAddr, values: ["198.18.0.0/15"]}]
    """)
    # in a network namespace of its own (loopback only): nothing leaves this host
    code = ("import socket\n"
            "for a in ('198.18.0.7', '127.0.0.1'):\n"
            "    s = socket.socket()\n"
            "    try: s.connect((a, 9))\n"
            "    except OSError: pass\n")
    p = subprocess.run(["unshare", "--net", *PY, code], check=True)
    assert p.returncode == 0
    evs = [e for e in running.events() if e.policy_name == "no-bench-net"]
    assert [e.args[1].value for e in evs] == [
        {"family": "AF_INET", "addr": "198.18.0.7", "port": 9}]


def test_return_hook_filters_on_the_return_value(running: Running, tmp_path: Path) -> None:
    target = tmp_path / "watched"
    target.write_text("x")
    running.add("""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata: {name: opened-ok}
    spec:
      kprobes:
      - call: sys_openat
        return: true
        args: [{index: 1, type: string}]
        returnArg: {index: 0, type: int}
        selectors:
        - matchArgs: [{index: 1, operator: Postfix, values: ["/watched", "/missing"]}]
          matchReturnArgs: [{index: 0, operator: GT, values: ["0"]}]
    """)
    subprocess.run([*PY, f"import os\nos.close(os.open({str(target)!r}, 0))\n"
                        f"try: os.open({str(tmp_path / 'missing')!r}, 0)\n"
                        "except OSError: pass"], check=True)
    evs = [e for e in running.events() if e.policy_name == "opened-ok"]
    assert [e.args[0].value for e in evs] == [str(target)]
    assert evs[0].return_value is not None and evs[0].return_value.value > 0


def test_return_actions_are_the_events_return_action(running: Running,
                                                     two_cats: tuple[str, str]) -> None:
    """As Tetragon reports it: `action` is what matchActions did at the call,
    `return_action` what matchReturnActions did at the return."""
    victim, _ = two_cats
    running.add(f"""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata: {{name: kill-at-return}}
    spec:
      kprobes:
      - call: sys_openat
        syscall: true
        return: true
        args: [{{index: 1, type: string}}]
        returnArg: {{index: 0, type: int}}
        selectors:
        - matchArgs: [{{index: 1, operator: Equal, values: ["/etc/hostname"]}}]
          matchBinaries: [{{operator: In, values: ["{victim}"]}}]
          matchReturnActions: [{{action: Sigkill}}]
    """)
    v = subprocess.run([victim, "/etc/hostname"], capture_output=True)
    assert v.returncode == -9 and v.stdout == b""  # killed once the open returned
    (ev,) = [e for e in running.events() if e.policy_name == "kill-at-return"]
    assert (ev.action, ev.return_action) == ("KPROBE_ACTION_POST", "KPROBE_ACTION_SIGKILL")
    assert ev.return_value is not None and ev.return_value.value >= 0


def test_return_copy_reads_the_buffer_the_call_filled(running: Running,
                                                     two_cats: tuple[str, str],
                                                     tmp_path: Path) -> None:
    """returnCopy: read()'s buffer holds nothing at entry; at return the event
    carries the bytes read, as many as read returned."""
    victim, _ = two_cats
    note = tmp_path / "note"
    note.write_bytes(b"written before, read after\n")
    running.add(f"""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata: {{name: reads}}
    spec:
      kprobes:
      - call: sys_read
        syscall: true
        return: true
        args:
        - {{index: 0, type: fd}}
        - {{index: 1, type: char_buf, returnCopy: true}}
        - {{index: 2, type: size_t}}
        returnArg: {{index: 0, type: int}}
        selectors:
        - matchBinaries: [{{operator: In, values: ["{victim}"]}}]
    """)
    assert subprocess.run([victim, str(note)], capture_output=True).returncode == 0
    evs = [e for e in running.events() if e.policy_name == "reads"
           and e.args[0].value == str(note)]
    assert [(e.args[1].value, e.return_value.value if e.return_value else None)
            for e in evs] == [(note.read_bytes(), 27), (b"", 0)]  # the data, then EOF


@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
def test_removing_a_policy_detaches_everything(running: Running,
                                               two_cats: tuple[str, str]) -> None:
    victim, _ = two_cats
    engine = running.engine

    def links() -> int:
        """bpf_link fds this process holds: every attachment is one."""
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir()
                   if os.path.exists(fd) and os.readlink(fd) == "anon_inode:bpf_link")

    def programs() -> int:
        """BPF program fds this process holds (a loaded tracepoint copy is one)."""
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir()
                   if os.path.exists(fd) and os.readlink(fd) == "anon_inode:bpf-prog")

    before, progs_before = links(), programs()
    running.add(kill_policy(victim))
    engine.add(load_policy(FIXTURES / "rawtp.yaml"))
    assert links() == before + 3  # sys_enter and sys_exit, the raw tracepoint copy
    assert programs() == progs_before + 1  # the raw tracepoint's copy
    # the slots of the 4096-slot set arrays in use (reading them all costs minutes
    # in the TCG guest, where arrays of maps have no batch lookup)
    used = [(outer, s) for outer, s in engine._sets._tries]
    assert [o for o, _ in used] == ["pol_prefix"]  # kill-etc's Prefix set
    assert all(engine.obj.map(o).lookup(ctypes.c_uint32(s)) is not None for o, s in used)
    engine.delete("kill-etc")
    engine.delete("rawtp")
    assert links() == before
    assert programs() == progs_before
    assert engine.policies == {}
    for name in ("pol_ints", "pol_strs", "pol_addrs"):
        assert list(engine.obj.map(name).keys()) == [], name
    assert all(engine.obj.map(o).lookup(ctypes.c_uint32(s)) is None for o, s in used)
    assert engine._sets._tries == {}
    assert subprocess.run([victim, "/etc/hostname"], capture_output=True).returncode == 0


def test_a_refused_policy_leaves_nothing_behind(running: Running) -> None:
    engine = running.engine
    text = (FIXTURES / "killer.yaml").read_text()
    with pytest.raises(PolicyError, match="an enforcer"):
        engine.add(load_policy_text("killer.yaml", text))
    assert engine.policies == {}
    assert list(engine.obj.map("pol_ints").keys()) == []


def test_every_fixture_is_classified() -> None:
    names = {p.stem for p in FIXTURES.glob("*.yaml")}
    assert names == SERVED | set(NEEDS) | set(REFUSED)


# the fixtures served, or refused, on every kernel: the host covers them; the
# guest serves what needs its kernel functions and LSM hooks
@pytest.mark.parametrize("name", [
    n if n in NEEDS else pytest.param(n, marks=pytest.mark.host_covers)
    for n in sorted(SERVED | set(NEEDS) | set(REFUSED))])
def test_every_tetragon_example_is_served_or_refused_by_name(running: Running,
                                                             name: str) -> None:
    """Served where the probe finds what the fixture needs, refused naming
    it elsewhere: both branches run, one on this host, one in scripts/vmtest."""
    pol = load_policy(FIXTURES / f"{name}.yaml")
    if name in SERVED or (name in NEEDS and _served_here(name)):
        lp = running.engine.add(pol)
        assert lp.slots
        running.engine.delete(pol.name)
    else:
        with pytest.raises(PolicyError) as err:
            running.engine.add(pol)
        why = (NEEDS[name][1] if name in NEEDS else
               "needs BPF LSM" if name == "lsm_bprm_check" and not features().has("lsm")
               else REFUSED[name])
        assert why in str(err.value)
        assert f"{name}.yaml:" in str(err.value)  # file:line of the hook
        assert running.engine.policies == {}


def _fixture_events(running: Running, name: str, code: str, *,
                    netns: bool = False) -> list[PolicyEvent]:
    pol = running.engine.add(load_policy(FIXTURES / f"{name}.yaml")).policy
    argv = (["unshare", "--net"] if netns else []) + PY + [code]
    p = subprocess.Popen(argv)
    p.wait()
    return [e for e in running.events() if e.policy_name == pol.name and e.pid == p.pid]


def test_fixture_rawtp_reports_the_exec_binprm(running: Running) -> None:
    running.engine.add(load_policy(FIXTURES / "rawtp.yaml"))
    p = subprocess.Popen(["/usr/bin/true"])
    p.wait()
    evs = [e for e in running.events() if e.pid == p.pid]
    assert [(e.event, e.args[0].value) for e in evs] == [("sched_process_exec",
                                                          "/usr/bin/true")]


def test_resolve_reads_fields_through_a_raw_tracepoints_arguments(
        running: Running, tmp_path: Path) -> None:
    # resolve walks the arguments' BTF types: members, pointers followed
    # (real_parent), an array element, a char * and a char array
    target = tmp_path / "bg-resolve-target"
    shutil.copy("/usr/bin/true", target)
    running.add(f"""
        apiVersion: cilium.io/v1alpha1
        kind: TracingPolicy
        metadata:
          name: resolve-exec
        spec:
          tracepoints:
          - subsystem: sched
            event: sched_process_exec
            raw: true
            args:
            - {{index: 0, type: int, resolve: pid}}
            - {{index: 0, type: int, resolve: real_parent.tgid}}
            - {{index: 2, type: string, resolve: filename}}
            - {{index: 2, type: uint8, resolve: "buf[1]"}}
            - {{index: 2, type: string, resolve: file.f_path.dentry.d_name.name}}
            selectors:
            - matchArgs:
              - index: 2
                operator: Equal
                values: ["{target}"]
        """)
    p = subprocess.Popen([target])
    p.wait()
    evs = [e for e in running.events() if e.policy_name == "resolve-exec"]
    assert [[a.value for a in e.args] for e in evs] == [
        [p.pid, os.getpid(), str(target), ord("E"), "bg-resolve-target"]]


@pytest.mark.parametrize(("args", "code", "message"), [
    ("{index: 0, type: int, resolve: real_parent.no_such_field}", "UNAVAILABLE",
     "argument 0: resolve 'real_parent.no_such_field': struct task_struct has no member "
     "'no_such_field' in this kernel"),
    ("{index: 0, type: uint8, resolve: 'comm[16]'}", "BAD_VALUE",
     "argument 0: resolve 'comm[16]': [16] is past the end of char[16] (16 elements)"),
    ("{index: 0, type: string, resolve: mm}", "BAD_VALUE",
     "argument 0: resolve 'mm' ends at struct mm_struct *; type 'string' reads a char array "
     "or char *"),
    ("{index: 0, type: int, resolve: pid.x}", "BAD_VALUE",
     "argument 0: resolve 'pid.x': pid_t has no member 'x'"),
])
def test_resolve_paths_that_do_not_fit_the_types_are_refused(
        running: Running, args: str, code: str, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        running.add(f"""
            apiVersion: cilium.io/v1alpha1
            kind: TracingPolicy
            metadata:
              name: resolve-bad
            spec:
              tracepoints:
              - subsystem: sched
                event: sched_process_exec
                raw: true
                args: [{args}]
            """)
    assert [(p.code.name, p.message) for p in info.value.problems] == [
        (code, f"sched:sched_process_exec: {message}")]


def test_get_url_and_dns_lookup_are_done_by_the_agent(running: Running) -> None:
    import http.server

    got: list[str] = []

    class Canary(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            got.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Canary)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code = "import os, sys; sys.stdin.readline(); os.getppid()"
        child = subprocess.Popen([*PY, code], stdin=subprocess.PIPE)
        running.add(f"""
            apiVersion: cilium.io/v1alpha1
            kind: TracingPolicy
            metadata:
              name: canary
            spec:
              kprobes:
              - call: sys_getppid
                syscall: true
                selectors:
                - matchPIDs:
                  - {{operator: In, values: [{child.pid}]}}
                  matchActions:
                  - {{action: GetUrl, argUrl: "http://127.0.0.1:{server.server_port}/t?x=1"}}
                  - {{action: DnsLookup, argFqdn: localhost}}
            """)
        child.communicate(b"go\n")  # released once the policy is in
        evs = [e for e in running.events(settle=1.0) if e.policy_name == "canary"]
        assert [e.action for e in evs] == ["KPROBE_ACTION_GETURL"]
        deadline = time.monotonic() + 10  # the requests run beside the event path

        def done() -> dict[str, int]:
            [listed] = [p for p in running.engine.list() if p["name"] == "canary"]
            return listed["agent_actions"]  # type: ignore[no-any-return]

        while len(done()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert done() == {"DnsLookup ok": 1, "GetUrl ok": 1}
        assert got == ["/t?x=1"]
    finally:
        server.shutdown()
        server.server_close()


def test_pt_regs_data_of_a_syscall_are_its_user_registers(running: Running) -> None:
    # as Tetragon's kprobe on the syscall wrapper: rdi, rsi, rdx, r10, r8 hold
    # the arguments; matchData filters one, NotInRange another
    # the two calls the filters must drop: another option, another r8
    code = ("import ctypes; p = ctypes.CDLL(None).prctl; p(0xffff1, 1, 2, 3, 4); "
            "p(0xffff0, 1, 2, 3, 7); p(0xffff0, 1, 2, 3, 4)")
    child = subprocess.Popen([*PY, f"import sys; sys.stdin.readline(); {code}"],
                             stdin=subprocess.PIPE)
    running.add(f"""
        apiVersion: cilium.io/v1alpha1
        kind: TracingPolicy
        metadata:
          name: prctl-regs
        spec:
          kprobes:
          - call: sys_prctl
            syscall: true
            data:
            - {{index: 0, type: uint64, source: pt_regs, resolve: rdi}}
            - {{index: 1, type: uint64, source: pt_regs, resolve: rsi}}
            - {{index: 2, type: uint64, source: pt_regs, resolve: rdx}}
            - {{index: 3, type: uint64, source: pt_regs, resolve: r10}}
            - {{index: 4, type: uint32, source: pt_regs, resolve: r8d}}
            selectors:
            - matchPIDs:
              - {{operator: In, values: [{child.pid}]}}
              matchData:
              - {{index: 0, operator: Equal, values: ["0xffff0"]}}
              - {{index: 4, operator: NotInRange, values: ["5:9", "100:200"]}}
        """)
    child.communicate(b"go\n")
    evs = [e for e in running.events() if e.policy_name == "prctl-regs"]
    assert [[d.value for d in e.data] for e in evs] == [[0xffff0, 1, 2, 3, 4]]


def test_file_type_and_port_ranges(running: Running, tmp_path: Path) -> None:
    # FileType on an fd argument; a DPort range on a sockaddr
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code = (f"import os, socket, sys; sys.stdin.readline()\n"
            f"fd = os.open({str(fifo)!r}, os.O_RDWR); os.read(fd, 0)\n"
            f"f = os.open({str(tmp_path)!r}, os.O_RDONLY)\n"
            "try: os.read(f, 0)\n"
            "except OSError: pass\n"
            "for port in (9921, 9925):\n"
            "    s = socket.socket(); s.setblocking(False)\n"
            "    try: s.connect(('127.0.0.1', port))\n"
            "    except OSError: pass\n")
    child = subprocess.Popen([*PY, code], stdin=subprocess.PIPE)
    running.add(f"""
        apiVersion: cilium.io/v1alpha1
        kind: TracingPolicy
        metadata:
          name: types-and-ports
        spec:
          kprobes:
          - call: sys_read
            syscall: true
            args: [{{index: 0, type: fd}}]
            selectors:
            - matchPIDs: [{{operator: In, values: [{child.pid}]}}]
              matchArgs: [{{index: 0, operator: FileType, values: [fifo, pipe]}}]
          - call: sys_connect
            syscall: true
            args: [{{index: 1, type: sockaddr}}]
            selectors:
            - matchPIDs: [{{operator: In, values: [{child.pid}]}}]
              matchArgs: [{{index: 1, operator: DPort, values: ["9922:9932"]}}]
        """)
    child.communicate(b"go\n")
    evs = [(e.function_name.rsplit("_", 1)[-1], e.args[0].value) for e in running.events()
           if e.policy_name == "types-and-ports"]
    # the fifo (and the stdin pipe the child waited on: a fifo too), not the directory
    assert ("read", str(fifo)) in evs and ("read", str(tmp_path)) not in evs
    assert [v for f, v in evs if f == "connect"] == [
        {"family": "AF_INET", "addr": "127.0.0.1", "port": 9925}]


def test_char_iovec_reads_the_buffers_of_writev_and_what_readv_filled(
        running: Running) -> None:
    code = ("import os, sys; sys.stdin.readline()\n"
            "r, w = os.pipe()\n"
            "os.writev(w, [b'hello ', b'iovec'])\n"
            "a, b = bytearray(4), bytearray(8)\n"
            "os.readv(r, [a, b])\n")
    child = subprocess.Popen([*PY, code], stdin=subprocess.PIPE)
    running.add(f"""
        apiVersion: cilium.io/v1alpha1
        kind: TracingPolicy
        metadata:
          name: iovecs
        spec:
          kprobes:
          - call: sys_writev
            syscall: true
            args: [{{index: 1, type: char_iovec, sizeArgIndex: 3}}]
            selectors: [{{matchPIDs: [{{operator: In, values: [{child.pid}]}}]}}]
          - call: sys_readv
            syscall: true
            args: [{{index: 1, type: char_iovec, sizeArgIndex: 3, returnCopy: true}}]
            selectors: [{{matchPIDs: [{{operator: In, values: [{child.pid}]}}]}}]
        """)
    child.communicate(b"go\n")
    assert child.returncode == 0
    evs = {e.function_name.rsplit("_", 1)[-1]: (e.args[0].value, e.return_value)
           for e in running.events() if e.policy_name == "iovecs"}
    # readv filled 4 + 7 bytes: as many as it returned; no return value shown
    assert evs == {"writev": (b"hello iovec", None), "readv": (b"hello iovec", None)}


@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
def test_fixture_raw_syscalls_reports_every_syscall(running: Running) -> None:
    evs = _fixture_events(running, "raw_syscalls", "import os; os.getppid()")
    assert syscall_number("getppid") in {e.args[0].value for e in evs}
    assert len(evs) > 20  # an interpreter's start-up: every syscall is there


def test_fixture_openat_write_sees_a_write_open_of_passwd(running: Running) -> None:
    # O_WRONLY|O_APPEND and no write: /etc/passwd is not changed
    evs = _fixture_events(running, "openat_write",
                          "import os; os.close(os.open('/etc/passwd', os.O_RDONLY)); "
                          "os.close(os.open('/etc/passwd', os.O_WRONLY | os.O_APPEND))")
    assert len(evs) == 1
    assert evs[0].args[1].value == "/etc/passwd"
    assert evs[0].args[2].value & os.O_WRONLY
    assert evs[0].return_value is not None and evs[0].return_value.value > 0


@pytest.mark.parametrize(("name", "code", "expect"), [
    ("sys_setuid", "import os; os.setuid(0)", [0]),
    ("sys_mount", "import ctypes; ctypes.CDLL(None, use_errno=True).mount("
                  "b'bg-src', b'/nonexistent/bg-target', b'tmpfs', 0, None)",
     ["bg-src", "/nonexistent/bg-target"]),
    ("sys_ptrace", "import ctypes; ctypes.CDLL(None).ptrace(1, 0x7ffffff0, 4660, 0)",
     [4660]),
])
def test_fixture_syscall_policies_report_their_arguments(running: Running, name: str,
                                                        code: str, expect: list[Any]) -> None:
    evs = _fixture_events(running, name, code)
    assert [a.value for a in evs[0].args] == expect if evs else False, evs


@pytest.mark.parametrize(("name", "code", "marker"), [
    ("write", "import os; os.write(1, b'bg-marker')", b"bg-marker"),
    ("sys_pivot_root", "import ctypes; ctypes.CDLL(None).syscall(155, b'/bg-marker', b'/y')",
     "/bg-marker"),
    ("sys_clock_settime", "import ctypes; ctypes.CDLL(None).syscall(227, 99, None)", 99),
])
def test_fixture_pid_selectors_exclude_namespace_init(running: Running, name: str, code: str,
                                                      marker: Any) -> None:
    # matchPIDs NotIn [1] (isNamespacePID, followForks): pid 1 of a new pid
    # namespace raises nothing; the same policy without matchPIDs (the
    # control) shows the hook does see the call
    text = (FIXTURES / f"{name}.yaml").read_text()
    running.engine.add(load_policy_text(f"{name}.yaml", text))
    doc = yaml.safe_load(text)
    doc["metadata"]["name"] += "-control"
    for hook in doc["spec"]["kprobes"]:
        for sel in hook.get("selectors", []):
            sel.pop("matchPIDs", None)
        hook["selectors"] = [sel for sel in hook.get("selectors", []) if sel] or None
        if hook["selectors"] is None:
            del hook["selectors"]
    running.engine.add(load_policy_text(f"{name}-control.yaml", yaml.safe_dump(doc)))

    def seen() -> dict[str, int]:
        out: dict[str, int] = {}
        for e in running.events():
            if any(a.value == marker for a in e.args):
                out[e.policy_name] = out.get(e.policy_name, 0) + 1
        return out

    control = doc["metadata"]["name"]
    subprocess.run(["unshare", "--pid", "--fork", *PY, code], stdout=subprocess.DEVNULL,
                   check=True)
    assert seen() == {control: 1}
    # entered into a pid namespace (as `kubectl exec` does): not its pid 1, and its
    # ancestry leaves the namespace at once, so the example reports it
    holder = subprocess.Popen(["unshare", "--pid", "--fork", "sleep", "30"])
    try:
        deadline = time.monotonic() + 5
        inner = ""
        while not inner and time.monotonic() < deadline:
            inner = subprocess.run(["pgrep", "-P", str(holder.pid)], capture_output=True,
                                   text=True).stdout.strip()
        subprocess.run(["nsenter", "-t", inner, "-p", *PY, code], stdout=subprocess.DEVNULL,
                       check=True)
        assert seen() == {control: 1, doc["metadata"]["name"].removesuffix("-control"): 1}
    finally:
        holder.kill()
        holder.wait()


def _marker_open_policy(name: str, marker: str, extra: str = "") -> str:
    return f"""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata: {{name: {name}}}
    spec:
      kprobes:
      - call: sys_openat
        args: [{{index: 1, type: string}}]
        selectors:
        - matchArgs: [{{index: 1, operator: Postfix, values: ["{marker}"]}}]
    {extra}"""


def test_rate_limit_posts_identical_events_once(running: Running, tmp_path: Path) -> None:
    target = tmp_path / "rate-marker"
    target.write_text("x")
    running.add(_marker_open_policy("rated", "/rate-marker", """
          matchActions: [{action: Post, rateLimit: 1m, rateLimitScope: process}]"""))
    subprocess.run([*PY, f"import os\nfor _ in range(5): os.close(os.open({str(target)!r}, 0))"],
                   check=True)
    evs = [e for e in running.events() if e.policy_name == "rated"]
    assert len(evs) == 1
    c = running.engine.counters("rated")
    assert (c["posted"], c["rate_limited"]) == (1, 4)


def test_signal_action_sends_the_given_signal(running: Running, tmp_path: Path) -> None:
    target = tmp_path / "sig-marker"
    target.write_text("x")
    running.add(_marker_open_policy("usr1", "/sig-marker", """
          matchActions: [{action: Signal, argSig: 10}]"""))
    p = subprocess.run([*PY, f"import os\nos.open({str(target)!r}, 0)\nimport time\n"
                             "time.sleep(5)"], timeout=30)
    assert p.returncode == -10  # SIGUSR1's default action ends it


@contextlib.contextmanager
def _test_cgroup() -> Iterator[Path]:
    """A fresh cgroup v2 directory, removed afterwards."""
    root = Path("/sys/fs/cgroup/unified")
    if not (root / "cgroup.procs").exists():
        root = Path("/sys/fs/cgroup")
    cg = root / f"bpfguard-test-{os.getpid()}"
    cg.mkdir()
    try:
        yield cg
    finally:
        cg.rmdir()


def test_policy_limited_to_a_cgroup(running: Running, tmp_path: Path) -> None:
    with _test_cgroup() as cg:
        target = tmp_path / "cg-marker"
        target.write_text("x")
        text = textwrap.dedent(_marker_open_policy("in-cgroup", "/cg-marker"))
        running.engine.add(load_policy_text("cg.yaml", text), cgroup=str(cg))
        open_it = f"os.close(os.open({str(target)!r}, 0))"
        inside = subprocess.Popen([*PY, f"import os\nopen('{cg}/cgroup.procs', 'w')"
                                        f".write(str(os.getpid()))\n{open_it}"])
        outside = subprocess.Popen([*PY, f"import os\n{open_it}"])
        assert inside.wait() == 0 and outside.wait() == 0
        pids = {e.pid for e in running.events() if e.policy_name == "in-cgroup"}
        assert pids == {inside.pid}


def test_match_namespaces_and_capabilities(running: Running, tmp_path: Path) -> None:
    target = tmp_path / "ns-marker"
    target.write_text("x")
    running.add(_marker_open_policy("host-mnt", "/ns-marker", """
          matchNamespaces: [{namespace: Mnt, operator: In, values: [host_ns]}]"""))
    running.add(_marker_open_policy("no-sysadmin", "/ns-marker", """
          matchCapabilities: [{type: Effective, operator: NotIn, values: [CAP_SYS_ADMIN]}]"""))
    open_it = f"import os; os.close(os.open({str(target)!r}, 0))"
    host = subprocess.Popen([*PY, open_it])
    other_ns = subprocess.Popen(["unshare", "--mount", *PY, open_it])  # execs python in place
    no_caps = subprocess.Popen(["setpriv", "--inh-caps=-all", "--bounding-set=-all", *PY,
                                open_it])
    assert host.wait() == 0 and other_ns.wait() == 0 and no_caps.wait() == 0
    got: dict[str, set[int]] = {}
    for e in running.events():
        got.setdefault(e.policy_name, set()).add(e.pid)
    assert host.pid in got["host-mnt"] and no_caps.pid in got["host-mnt"]
    assert other_ns.pid not in got["host-mnt"]
    assert got["no-sysadmin"] == {no_caps.pid}


def test_a_reused_slot_starts_clean(running: Running, tmp_path: Path) -> None:
    target = tmp_path / "gen-marker"
    target.write_text("x")
    open_it = [*PY, f"import os; os.close(os.open({str(target)!r}, 0))"]
    running.add(_marker_open_policy("first", "/gen-marker"))
    time.sleep(0.2)
    running.paused.set()  # the event waits in the ring buffer while the slot changes hands
    time.sleep(0.1)
    subprocess.run(open_it, check=True)
    running.engine.delete("first")
    running.add(_marker_open_policy("second", "/no-such-marker"))
    assert running.engine.counters("second")["posted"] == 0
    running.paused.clear()
    # the first policy's record is not passed off as the second's
    assert [e.policy_name for e in running.events()] == []


def test_return_hook_tries_every_selector_that_matched_at_entry(running: Running,
                                                                tmp_path: Path) -> None:
    running.add("""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata: {name: two-outcomes}
    spec:
      kprobes:
      - call: sys_openat
        return: true
        args: [{index: 1, type: string}]
        returnArg: {index: 0, type: int}
        selectors:
        - matchArgs: [{index: 1, operator: Postfix, values: ["/two-outcomes"]}]
          matchReturnArgs: [{index: 0, operator: GT, values: ["-1"]}]
        - matchArgs: [{index: 1, operator: Postfix, values: ["/two-outcomes"]}]
          matchReturnArgs: [{index: 0, operator: LT, values: ["0"]}]
    """)
    missing = tmp_path / "two-outcomes"
    subprocess.run([*PY, f"import os\ntry: os.open({str(missing)!r}, 0)\n"
                         "except OSError: pass"], check=True)
    evs = [e for e in running.events() if e.policy_name == "two-outcomes"]
    assert [(e.selector, e.return_value.value if e.return_value else None) for e in evs] == [
        (1, -2)]  # -ENOENT, through the second selector


def test_a_second_return_hook_on_a_syscall_is_refused(running: Running) -> None:
    text = """
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata: {name: NAME}
    spec:
      kprobes:
      - call: sys_openat
        return: true
        args: [{index: 1, type: string}]
        returnArg: {index: 0, type: int}
    """
    running.add(text.replace("NAME", "ret-one"))
    with pytest.raises(ConfigError, match="already has a return: true hook"):
        running.add(text.replace("NAME", "ret-two"))
    assert list(running.engine.policies) == ["ret-one"]


def test_global_rate_limit_spans_processes(running: Running, tmp_path: Path) -> None:
    target = tmp_path / "global-marker"
    target.write_text("x")
    running.add(_marker_open_policy("rated-global", "/global-marker", """
          matchActions: [{action: Post, rateLimit: 1m, rateLimitScope: global}]"""))
    for _ in range(3):
        subprocess.run([*PY, f"import os; os.close(os.open({str(target)!r}, 0))"], check=True)
    assert len([e for e in running.events() if e.policy_name == "rated-global"]) == 1
    assert running.engine.counters("rated-global")["rate_limited"] == 2


# -- kernel functions and LSM hooks: run where the probe finds them (scripts/vmtest) --

class _Without:
    """The probe's verdicts with some features taken away: forces a backend."""

    def __init__(self, *missing: str) -> None:
        self.missing = set(missing)

    def has(self, name: str) -> bool:
        return name not in self.missing and features().has(name)


def _fd_install_policy(binary: str, action: str = "Post") -> str:
    return f"""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata:
      name: fd-install-etc
    spec:
      kprobes:
      - call: fd_install
        syscall: false
        args:
        - index: 0
          type: int
        - index: 1
          type: file
        selectors:
        - matchBinaries:
          - operator: In
            values: ["{binary}"]
          matchArgs:
          - index: 1
            operator: Prefix
            values: ["/etc/"]
          matchActions:
          - action: {action}
    """


def _check_fd_install(running: Running, two_cats: tuple[str, str]) -> None:
    victim, bystander = two_cats
    running.add(_fd_install_policy(victim))
    v = subprocess.run([victim, "/etc/hostname"], capture_output=True)
    b = subprocess.run([bystander, "/etc/hostname"], capture_output=True)
    assert v.returncode == 0 and b.returncode == 0
    mine = [e for e in running.events() if e.policy_name == "fd-install-etc"]
    # the victim's opens under /etc (the loader's too), the bystander's none
    assert len({e.pid for e in mine}) == 1
    assert all(e.function_name == "fd_install" and e.args[1].value.startswith("/etc/")
               for e in mine)
    [cat] = [e for e in mine if e.args[1].value == "/etc/hostname"]
    assert cat.args[0].value >= 0  # the fd number


@pytest.mark.needs("fentry")
def test_fd_install_prefix_etc_posts_the_resolved_path(running: Running,
                                                      two_cats: tuple[str, str]) -> None:
    assert running.engine.features is not None
    _check_fd_install(running, two_cats)
    [h] = [h for lp in running.engine.policies.values() for h in lp.compiled.hooks]
    assert h.programs == ("bg_pol_fentry",)


@pytest.mark.needs("fentry")
def test_kernel_function_arguments_resolved_cast_and_dereferenced(
        running: Running, tmp_path: Path) -> None:
    # resolve through a struct file *; an int declared on a pointer reads the
    # address (as Tetragon does, with a warning); cap_effective reads the
    # kernel_cap_t security_capset's third parameter points to. A child does
    # it: bpfguard never reports its own process.
    target = tmp_path / "bg-resolve-file"
    target.write_text("x")
    code = (f"import ctypes, sys; sys.stdin.readline(); open({str(target)!r}, 'rb').close()\n"
            "header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3\n"
            "data = (ctypes.c_uint32 * 6)()\n"
            "libc = ctypes.CDLL(None)\n"
            "assert libc.capget(header, data) == 0\n"
            "assert libc.capset(header, data) == 0  # the same sets: a change of nothing\n"
            "print(data[0] | data[3] << 32)\n")
    child = subprocess.Popen([*PY, code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    lp = running.add(f"""
        apiVersion: cilium.io/v1alpha1
        kind: TracingPolicy
        metadata:
          name: resolve-func
        spec:
          kprobes:
          - call: security_file_open
            syscall: false
            args:
            - {{index: 0, type: file}}
            - {{index: 0, type: string, resolve: f_path.dentry.d_name.name}}
            - {{index: 0, type: uint32, resolve: f_flags}}
            - {{index: 0, type: uint64}}
            selectors:
            - matchPIDs:
              - {{operator: In, values: [{child.pid}]}}
              matchArgs:
              - {{index: 0, operator: Equal, values: ["{target}"]}}
          - call: security_capset
            syscall: false
            args:
            - {{index: 2, type: cap_effective}}
            selectors:
            - matchPIDs:
              - {{operator: In, values: [{child.pid}]}}
        """)
    assert [w.message for w in lp.compiled.warnings] == [
        "security_file_open: argument 0 of security_file_open is a pointer (struct file * "
        "file); type 'uint64' reads the address itself, as Tetragon does (resolve: reads "
        "what it points to)"]
    effective = int(child.communicate("go\n")[0])
    assert child.returncode == 0
    evs = [(e.function_name, [a.value for a in e.args]) for e in running.events()
           if e.policy_name == "resolve-func"]
    opened = [a for f, a in evs if f == "security_file_open"]  # (Python opens it twice)
    assert opened and all(a[:2] == [str(target), "bg-resolve-file"] for a in opened), evs
    assert any(a[2] & 3 == os.O_RDONLY for a in opened)
    # a kernel address: the canonical upper half (4- or 5-level paging)
    assert all(isinstance(a[3], int) and a[3] >= 0xff00000000000000 for a in opened)
    assert [v for f, v in evs if f == "security_capset"] == [[effective]]


@pytest.mark.needs("fentry")
def test_capabilities_gained_compares_the_new_set_with_the_old(running: Running) -> None:
    # args: the old set (resolved from the old cred), then the new, in
    # Tetragon's order; a capset that raises CAP_NET_RAW back into the
    # effective set gains it, the one that drops it does not
    code = ("import ctypes, sys; sys.stdin.readline()\n"
            "header = (ctypes.c_uint32 * 2)(0x20080522, 0)\n"
            "data = (ctypes.c_uint32 * 6)()\n"
            "libc = ctypes.CDLL(None)\n"
            "assert libc.capget(header, data) == 0\n"
            "full = data[0]\n"
            "data[0] = full & ~(1 << 13)  # CAP_NET_RAW out of the effective set\n"
            "assert libc.capset(header, data) == 0\n"
            "data[0] = full\n"
            "assert libc.capset(header, data) == 0\n")
    child = subprocess.Popen([*PY, code], stdin=subprocess.PIPE)
    running.add(f"""
        apiVersion: cilium.io/v1alpha1
        kind: TracingPolicy
        metadata:
          name: caps-gained
        spec:
          kprobes:
          - call: security_capset
            syscall: false
            args:
            - {{index: 2, type: cap_effective}}
            - {{index: 1, type: cap_effective, resolve: cap_effective}}
            selectors:
            - matchPIDs:
              - {{operator: In, values: [{child.pid}]}}
              matchArgs:
              - {{args: [1, 0], operator: CapabilitiesGained, values: [CAP_NET_RAW]}}
        """)
    child.communicate(b"go\n")
    assert child.returncode == 0
    evs = [[a.value for a in e.args] for e in running.events()
           if e.policy_name == "caps-gained"]
    assert len(evs) == 1
    new, old = evs[0]
    assert new & (1 << 13) and not old & (1 << 13)


@pytest.mark.needs("fentry")
def test_socket_sockaddr_skb_net_device_and_dentry_arguments(
        running: Running, tmp_path: Path) -> None:
    # a child connects over TCP and over a unix socket, sends a UDP datagram
    # and unlinks a file; each kernel function reads its arguments' objects
    unix_path = tmp_path / "bg-unix.sock"
    doomed = tmp_path / "bg-unlink-me"
    doomed.write_text("x")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(unix_path))
    listener.listen()
    code = ("import os, socket, sys; sys.stdin.readline()\n"
            "s = socket.socket(); s.setblocking(False)\n"
            "try: s.connect(('127.0.0.1', 9927))\n"
            "except OSError: pass\n"
            f"u = socket.socket(socket.AF_UNIX); u.connect({str(unix_path)!r})\n"
            "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', 9928))\n"
            f"os.unlink({str(doomed)!r})\n")
    child = subprocess.Popen([*PY, code], stdin=subprocess.PIPE)
    pids = f"matchPIDs: [{{operator: In, values: [{child.pid}]}}]"
    try:
        running.add(f"""
            apiVersion: cilium.io/v1alpha1
            kind: TracingPolicy
            metadata:
              name: net-objects
            spec:
              kprobes:
              - call: security_socket_connect
                syscall: false
                args:
                - {{index: 0, type: socket}}
                - {{index: 1, type: sockaddr}}
                selectors:
                - {pids}
                  matchArgs: [{{index: 1, operator: DPort, values: ["9927"]}}]
              - call: security_unix_stream_connect
                syscall: false
                args:
                - {{index: 0, type: sock}}
                selectors:
                - {pids}
              - call: ip_send_skb
                syscall: false
                args:
                - {{index: 1, type: skb}}
                selectors:
                - {pids}
                  matchArgs: [{{index: 1, operator: DPort, values: ["9928"]}}]
              - call: dev_hard_start_xmit
                syscall: false
                args:
                - {{index: 1, type: net_device}}
                selectors:
                - {pids}
                  matchArgs: [{{index: 1, operator: Equal, values: [lo]}}]
              - call: security_path_unlink
                syscall: false
                args:
                - {{index: 1, type: dentry}}
                selectors:
                - {pids}
                  matchArgs: [{{index: 1, operator: Postfix, values: ["/bg-unlink-me"]}}]
            """)
        child.communicate(b"go\n")
        assert child.returncode == 0
    finally:
        listener.close()
    evs: dict[str, list[Any]] = {}
    for e in running.events():
        if e.policy_name == "net-objects":
            evs.setdefault(e.function_name, []).append([a.value for a in e.args])
    [[sock, addr]] = evs["security_socket_connect"]
    assert (sock["family"], sock["type"], sock["protocol"]) == (2, 1, 6)
    assert addr == {"family": "AF_INET", "addr": "127.0.0.1", "port": 9927}
    assert evs["security_unix_stream_connect"][0][0]["family"] == 1
    [[skb]] = evs["ip_send_skb"]
    assert (skb["saddr"], skb["daddr"], skb["dport"], skb["protocol"]) == (
        "127.0.0.1", "127.0.0.1", 9928, 17)
    assert ["lo"] in evs["dev_hard_start_xmit"]
    [[where]] = evs["security_path_unlink"]
    assert where.endswith("/bg-unlink-me") and str(tmp_path).endswith(where.rsplit("/", 1)[0])


@pytest.mark.needs("fentry")
def test_sockaddr_un_gives_the_family_and_the_path(running: Running, tmp_path: Path) -> None:
    unix_path = tmp_path / "bg-unix2.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(unix_path))
    listener.listen()
    code = (f"import socket, sys; sys.stdin.readline()\n"
            f"socket.socket(socket.AF_UNIX).connect({str(unix_path)!r})\n")
    child = subprocess.Popen([*PY, code], stdin=subprocess.PIPE)
    try:
        running.add(f"""
            apiVersion: cilium.io/v1alpha1
            kind: TracingPolicy
            metadata:
              name: unix-connect
            spec:
              kprobes:
              - call: security_socket_connect
                syscall: false
                args:
                - {{index: 1, type: sockaddr_un}}
                selectors:
                - matchPIDs: [{{operator: In, values: [{child.pid}]}}]
                  matchArgs:
                  - {{index: 1, operator: Family, values: [AF_UNIX]}}
                  - {{index: 1, operator: Postfix, values: ["/bg-unix2.sock"]}}
            """)
        child.communicate(b"go\n")
        assert child.returncode == 0
    finally:
        listener.close()
    evs = [e.args[0].value for e in running.events() if e.policy_name == "unix-connect"]
    assert evs == [{"family": "AF_UNIX", "path": str(unix_path)}]


_BPF_OBJECTS_CHILD = """
import ctypes, os, sys
sys.stdin.readline()
libc = ctypes.CDLL(None, use_errno=True)
attr = ctypes.create_string_buffer(128)  # perf_event_open: a software CPU clock
ctypes.memmove(attr, (1).to_bytes(4, "little") + (128).to_bytes(4, "little"), 8)
fd = libc.syscall(298, attr, 0, -1, -1, 0)
assert fd >= 0, ctypes.get_errno()
mattr = ctypes.create_string_buffer(128)  # BPF_MAP_CREATE: a hash map named bgmap
ctypes.memmove(mattr, b"".join(n.to_bytes(4, "little") for n in (1, 4, 8, 4)), 16)
ctypes.memmove(ctypes.addressof(mattr) + 28, b"bgmap", 5)
assert libc.syscall(321, 0, mattr, 128) >= 0, ctypes.get_errno()
insns = ctypes.create_string_buffer(bytes([0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]))
license = ctypes.create_string_buffer(b"GPL")
pattr = ctypes.create_string_buffer(128)  # BPF_PROG_LOAD: r0 = 0; exit, named bgprog
ctypes.memmove(pattr, (1).to_bytes(4, "little") + (2).to_bytes(4, "little")
               + ctypes.addressof(insns).to_bytes(8, "little")
               + ctypes.addressof(license).to_bytes(8, "little"), 24)
ctypes.memmove(ctypes.addressof(pattr) + 48, b"bgprog", 6)
assert libc.syscall(321, 5, pattr, 128) >= 0, ctypes.get_errno()
os.setuid(0)  # a capability check in the initial user namespace
"""


_TTY_WRITES = """
import os, pty
master, slave = pty.openpty()
print(os.ttyname(slave), flush=True)
os.write(slave, b"one buffer")                 # an ITER_UBUF (or one-segment ITER_IOVEC)
os.writev(slave, [b"first segment", b" more"])  # an ITER_IOVEC: its first segment is read
"""


@pytest.mark.needs("fentry")
def test_kiocb_and_iov_iter_read_the_file_and_the_written_bytes(running: Running) -> None:
    running.add("""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata:
      name: tty
    spec:
      kprobes:
      - call: tty_write
        syscall: false
        args:
        - {index: 0, type: kiocb}
        - {index: 1, type: iov_iter, maxData: true}
    """)
    child = subprocess.run([*PY, _TTY_WRITES], check=True, capture_output=True, text=True)
    tty = child.stdout.strip()
    got = [[a.value for a in e.args] for e in running.wait_events(2) if e.args[0].value == tty]
    assert got == [[tty, b"one buffer"], [tty, b"first segment"]]


_PWRITE = """
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
try:
    os.pwrite(fd, b"changed", 0)
except OSError as exc:
    print(exc.errno, flush=True)
"""


@pytest.mark.needs("fmod_ret", "send_signal")
def test_notify_enforcer_fails_the_next_enforcer_call_and_kills(running: Running,
                                                                tmp_path: Path) -> None:
    """The kprobe arms the policy's enforcer (fmod_ret on
    security_file_permission) for the thread; the pwrite's permission check
    then returns EPERM and the writer is killed. Another file is spared."""
    guarded, spared = tmp_path / "guarded", tmp_path / "spared"
    for f in (guarded, spared):
        f.write_text("original")
    running.add(f"""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata:
      name: no-pwrite
    spec:
      options:
      - {{name: override-method, value: fmod-ret}}
      enforcers:
      - calls: [security_file_permission]
      kprobes:
      - call: sys_pwrite64
        args: [{{index: 0, type: fd}}]
        selectors:
        - matchArgs: [{{index: 0, operator: Equal, values: ["{guarded}"]}}]
          matchActions: [{{action: NotifyEnforcer, argError: -1, argSig: 9}}]
    """)
    [lp] = running.engine.list()
    assert lp["hooks"] == 2  # the kprobe and the enforcer
    killed = subprocess.run([*PY, _PWRITE, str(guarded)], capture_output=True, text=True)
    assert killed.returncode == -9 and guarded.read_text() == "original"
    assert killed.stdout in ("", f"{errno.EPERM}\n")  # (the kill may come first)
    ok = subprocess.run([*PY, _PWRITE, str(spared)], capture_output=True, text=True)
    assert ok.returncode == 0 and spared.read_text() == "changedl"
    [ev] = running.wait_events(1)
    assert ev.action == "KPROBE_ACTION_NOTIFYENFORCER"
    [enf] = ev.enforcement
    assert (enf.action, enf.done, enf.backend) == ("NotifyEnforcer", True, "fmod_ret")
    c = running.engine.counters("no-pwrite")
    assert c["notify_enforcer"] == 1


_ALG_BIND = ("import socket; s = socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET); "
             "s.bind(('hash', 'sha256'))")


@pytest.mark.needs("fentry")
def test_btf_type_of_a_module_is_read_in_its_btf(running: Running) -> None:
    """btfTypeModule: struct sockaddr_alg_new is af_alg's, in that module's
    BTF (loaded by the first AF_ALG socket), over the kernel's."""
    subprocess.run([*PY, _ALG_BIND], check=True)  # the kernel loads af_alg for it
    running.add("""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata:
      name: af-alg-bind
    spec:
      kprobes:
      - call: security_socket_bind
        syscall: false
        args:
        - {index: 1, type: uint16, btfType: sockaddr_alg_new, btfTypeModule: af_alg,
           resolve: salg_family}
        - {index: 1, type: string, btfType: sockaddr_alg_new, btfTypeModule: af_alg,
           resolve: salg_name}
    """)
    child = subprocess.Popen([*PY, _ALG_BIND])
    assert child.wait() == 0
    [ev] = [e for e in running.wait_events(1) if e.pid == child.pid]
    assert [a.value for a in ev.args] == [socket.AF_ALG, "sha256"]


@pytest.mark.needs("fentry")
def test_kernel_objects_shown_field_by_field(running: Running) -> None:
    # bpf_attr, bpf_map, perf_event and user_namespace arguments: the fields
    # Tetragon's messages name, laid out from this kernel's BTF
    child = subprocess.Popen([*PY, _BPF_OBJECTS_CHILD], stdin=subprocess.PIPE)
    pids = f"matchPIDs: [{{operator: In, values: [{child.pid}]}}]"
    running.add(f"""
        apiVersion: cilium.io/v1alpha1
        kind: TracingPolicy
        metadata:
          name: bpf-objects
        spec:
          kprobes:
          - call: bpf_check
            syscall: false
            args: [{{index: 1, type: bpf_attr}}]
            selectors: [{{{pids}}}]
          - call: security_bpf_map_alloc
            syscall: false
            args: [{{index: 0, type: bpf_map}}]
            selectors: [{{{pids}}}]
          - call: security_perf_event_alloc
            syscall: false
            args: [{{index: 0, type: perf_event}}]
            selectors: [{{{pids}}}]
          - call: cap_capable
            syscall: false
            args: [{{index: 1, type: user_namespace}}, {{index: 2, type: capability}}]
            selectors:
            - {pids}
              matchArgs: [{{index: 2, operator: Equal, values: ["7"]}}]
        """)
    child.communicate(b"go\n")
    assert child.returncode == 0
    evs: dict[str, list[Any]] = {}
    for e in running.events():
        if e.policy_name == "bpf-objects":
            evs.setdefault(e.function_name, []).append(e.args[0].value)
    assert evs["bpf_check"] == [{"ProgType": "BPF_PROG_TYPE_SOCKET_FILTER", "InsnCnt": 2,
                                 "ProgName": "bgprog"}]
    assert evs["security_bpf_map_alloc"] == [{
        "MapType": "BPF_MAP_TYPE_HASH", "KeySize": 4, "ValueSize": 8, "MaxEntries": 4,
        "MapName": "bgmap"}]
    assert {"Type": 1, "Config": 0, "ProbeOffset": 0} in evs["security_perf_event_alloc"]
    host_userns = os.stat("/proc/1/ns/user").st_ino
    assert {"level": 0, "owner": 0, "group": 0,
            "ns": {"inum": host_userns}} in evs["cap_capable"]


@pytest.mark.needs("fentry", "fexit")
def test_track_sock_names_the_sockets_owner_in_another_tasks_context(running: Running) -> None:
    # the receiver's socket is tracked when sk_alloc returns it; a datagram
    # the sender sends is queued on it in the sender's context, and the event
    # of that names the receiver, as Tetragon's socket tracking does
    receiver = subprocess.Popen(
        [*PY, "import socket, sys; sys.stdin.readline()\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "s.bind(('127.0.0.1', 0)); print(s.getsockname()[1], flush=True)\n"
              "s.recv(16)"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    running.add(f"""
        apiVersion: cilium.io/v1alpha1
        kind: TracingPolicy
        metadata:
          name: track-sock
        spec:
          kprobes:
          - call: sk_alloc
            syscall: false
            return: true
            args: [{{index: 1, type: int, label: Family}}]
            returnArg: {{index: 0, type: sock}}
            returnArgAction: TrackSock
            selectors:
            - matchPIDs: [{{operator: In, values: [{receiver.pid}]}}]
          - call: __udp_enqueue_schedule_skb
            syscall: false
            args: [{{index: 0, type: sock}}]
            selectors:
            - matchArgs: [{{index: 0, operator: SAddr, values: [127.0.0.1/32]}}]
          - call: __sk_free
            syscall: false
            args: [{{index: 0, type: sock}}]
            selectors:
            - matchActions: [{{action: UntrackSock, argSock: 0}}]
        """)
    assert receiver.stdin is not None and receiver.stdout is not None
    receiver.stdin.write("go\n")
    receiver.stdin.flush()
    port = int(receiver.stdout.readline())
    sender = subprocess.run([*PY, "import socket; socket.socket(socket.AF_INET, "
                                  f"socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', {port}))"])
    assert sender.returncode == 0 and receiver.wait(timeout=30) == 0
    receiver.stdin.close()
    receiver.stdout.close()
    evs = [e for e in running.events() if e.policy_name == "track-sock"]
    queued = [e.pid for e in evs if e.function_name == "__udp_enqueue_schedule_skb"
              and e.args[0].value["sport"] == port]
    assert queued == [receiver.pid]


@pytest.mark.needs("kprobe")
def test_fd_install_on_the_kprobe_backend(two_cats: tuple[str, str]) -> None:
    engine = PolicyEngine(features=_Without("fentry", "fexit"))  # type: ignore[arg-type]
    with SensorSet(syscalls=(), extra=[engine]) as sensors:
        sensors.start()
        r = Running(engine, sensors)
        try:
            _check_fd_install(r, two_cats)
            [h] = [h for lp in engine.policies.values() for h in lp.compiled.hooks]
            assert h.programs == ("bg_pol_kprobe",)
        finally:
            r.stop()


@pytest.mark.needs("fentry", "send_signal")
def test_fd_install_sigkill_kills_the_reader(running: Running,
                                             two_cats: tuple[str, str]) -> None:
    victim, bystander = two_cats
    running.add(_fd_install_policy(victim, "Sigkill"))
    v = subprocess.run([victim, "/etc/hostname"], capture_output=True)
    b = subprocess.run([bystander, "/etc/hostname"], capture_output=True)
    assert v.returncode == -9 and v.stdout == b""
    assert b.returncode == 0 and b.stdout
    [ev] = [e for e in running.events() if e.policy_name == "fd-install-etc"]
    assert ev.action == "KPROBE_ACTION_SIGKILL"
    [enf] = ev.enforcement
    assert enf.done and enf.before_operation is False


def _lsm_open_policy(binary: str) -> str:
    return f"""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata:
      name: lsm-deny-passwd
    spec:
      lsmhooks:
      - hook: file_open
        args:
        - index: 0
          type: file
        selectors:
        - matchBinaries:
          - operator: In
            values: ["{binary}"]
          matchArgs:
          - index: 0
            operator: Equal
            values: ["/etc/passwd"]
          matchActions:
          - action: Override
            argError: -1
    """


@pytest.mark.needs("lsm", "fentry")
def test_lsm_file_open_denies_one_binary_before_the_open(running: Running,
                                                        two_cats: tuple[str, str]) -> None:
    victim, bystander = two_cats
    running.add(_lsm_open_policy(victim))
    # fd_install sees every successful open: the witness that the denied one never was
    running.add(_fd_install_policy(victim).replace(f'["{victim}"]', f'["{victim}", '
                                                   f'"{bystander}"]'), "witness.yaml")
    v = subprocess.run([victim, "/etc/passwd"], capture_output=True)
    b = subprocess.run([bystander, "/etc/passwd"], capture_output=True)
    assert v.returncode == 1 and b"Operation not permitted" in v.stderr and v.stdout == b""
    assert b.returncode == 0 and b"root:" in b.stdout
    evs = running.events()
    [deny] = [e for e in evs if e.policy_name == "lsm-deny-passwd"]
    assert (deny.kind, deny.function_name, deny.args[0].value) == (
        "lsm", "file_open", "/etc/passwd")
    assert deny.action == "KPROBE_ACTION_OVERRIDE"
    [enf] = deny.enforcement
    assert (enf.action, enf.done, enf.backend, enf.before_operation) == (
        "Override", True, "bpf_lsm", True)
    opened = {e.pid for e in evs if e.policy_name == "fd-install-etc"
              and e.args[1].value == "/etc/passwd"}
    assert deny.pid not in opened  # the victim's open never installed an fd
    assert len(opened) == 1        # the bystander's did


@pytest.mark.needs("lsm")
def test_ima_hash_on_file_open_with_override(running: Running, two_cats: tuple[str, str],
                                             tmp_path: Path) -> None:
    """imaHash on file_open, with Override: the open is denied and the event
    posted, hash or not. At file_open the file is not readable yet
    (FMODE_CAN_READ comes later); a kernel whose IMA does not reopen it (6.1)
    says EOPNOTSUPP, one that does re-enters the hook, and that inner open is
    not judged."""
    victim, bystander = two_cats
    secret = tmp_path / "secret"
    secret.write_text("not for victims\n")
    running.add(_lsm_open_policy(victim).replace('"/etc/passwd"', f'"{secret}"').replace(
        "argError: -1", "argError: -1\n          - action: Post\n            imaHash: true"))
    v = subprocess.run([victim, str(secret)], capture_output=True)
    b = subprocess.run([bystander, str(secret)], capture_output=True)
    assert v.returncode == 1 and b"Operation not permitted" in v.stderr
    assert b.stdout == b"not for victims\n"
    [ev] = [e for e in running.events() if e.policy_name == "lsm-deny-passwd"]
    assert ev.action == "KPROBE_ACTION_OVERRIDE"
    assert (ev.ima_hash, ev.ima_error) in (
        ("sha256:" + hashlib.sha256(secret.read_bytes()).hexdigest(), 0),
        ("", errno.EOPNOTSUPP))


@pytest.mark.needs("fmod_ret")
def test_override_security_fixture_denies_mkdir(running: Running, tmp_path: Path) -> None:
    # unmodified: its second selector has no filters, so every mkdir is denied
    running.engine.add(load_policy(FIXTURES / "override-security.yaml"))
    code = f"import os; os.mkdir({str(tmp_path / 'd')!r})"
    p = subprocess.run(PY + [code], capture_output=True, text=True)
    assert p.returncode == 1 and "PermissionError" in p.stderr
    assert not (tmp_path / "d").exists()
    evs = [e for e in running.events() if e.policy_name == "security-override"]
    assert any(e.action == "KPROBE_ACTION_OVERRIDE" and e.enforcement[0].backend == "fmod_ret"
               for e in evs)
    running.engine.delete("security-override")
    assert subprocess.run(PY + [code]).returncode == 0


@pytest.mark.needs("fentry")
def test_fixture_tcp_connect_reports_the_socket(running: Running) -> None:
    evs = _fixture_events(running, "tcp-connect", textwrap.dedent("""
        import socket, subprocess
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)  # a new netns
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
        c = socket.create_connection(srv.getsockname()); c.sendall(b"x"); c.close()
        """), netns=True)
    by_fn = {e.function_name: e for e in evs}
    assert {"tcp_connect", "tcp_sendmsg", "tcp_close"} <= set(by_fn)
    sock = by_fn["tcp_connect"].args[0].value
    assert sock["family"] == 2 and sock["daddr"] == "127.0.0.1" and sock["dport"] > 0
    assert by_fn["tcp_sendmsg"].args[1].value == 1  # the size


@pytest.mark.needs("fentry", "send_signal")
def test_fixture_tcp_connect_only_private_addrs_kills_a_public_connect(running: Running
                                                                      ) -> None:
    """The unmodified policy kills whoever connects outside the private and
    loopback ranges. Loaded for a test cgroup only (a load option, not an
    edit), so nothing else on the machine can be killed; 198.18.0.1 (a
    benchmarking address) lives on lo in the test's own network namespace."""
    code = textwrap.dedent("""
        import socket, subprocess, sys
        open(sys.argv[1] + "/cgroup.procs", "w").write("0")
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "addr", "add", "198.18.0.1/32", "dev", "lo"], check=True)
        for addr in ("127.0.0.1", "198.18.0.1"):
            srv = socket.socket(); srv.bind((addr, 0)); srv.listen()
            socket.create_connection(srv.getsockname()).close()
            print(addr, "connected", flush=True)
        """)
    with _test_cgroup() as cg:
        running.engine.add(load_policy(FIXTURES / "tcp-connect-only-private-addrs.yaml"),
                           cgroup=str(cg))
        p = subprocess.run(["unshare", "--net", *PY, code, str(cg)], capture_output=True,
                           text=True)
    assert (p.returncode, p.stdout) == (-9, "127.0.0.1 connected\n")
    [ev] = [e for e in running.events() if e.policy_name == "connect-only-private-addrs"]
    assert ev.args[0].value["daddr"] == "198.18.0.1" and ev.action == "KPROBE_ACTION_SIGKILL"


@pytest.mark.needs("fentry")
def test_fixture_commit_creds_reports_the_new_credentials(running: Running) -> None:
    evs = _fixture_events(running, "kprobe_commit_creds", "import os; os.setgid(4242)")
    creds = [e.args[0].value for e in evs]
    assert any(c["gid"] == 4242 and c["egid"] == 4242 for c in creds)


@pytest.mark.needs("fentry", "fexit")
def test_fixture_filename_monitoring_reports_reads_with_the_return(running: Running) -> None:
    evs = _fixture_events(running, "filename_monitoring",
                          "open('/etc/hostname').read()")
    reads = [e for e in evs if e.function_name == "security_file_permission"]
    assert reads and all(e.args[0].value.startswith("/etc/") for e in reads)
    assert any(e.args[0].value == "/etc/hostname" and e.return_value is not None
               and e.return_value.value == 0 for e in reads)


@pytest.mark.needs("fentry")
def test_fixture_fd_install_ns_host_reports_host_opens(running: Running) -> None:
    evs = _fixture_events(running, "fd_install_ns_host", "open('/etc/hostname')")
    assert "/etc/hostname" in {e.args[1].value for e in evs}


@pytest.mark.needs("lsm")
def test_fixture_lsm_bprm_check_denies_the_exec_and_hashes_the_file(running: Running,
                                                                    tmp_path: Path) -> None:
    """lsm_bprm_check.yaml, unmodified: bash may not exec a program whose path
    ends in contrib/tester-progs/nop; the event carries the file's IMA hash."""
    nop = tmp_path / "contrib" / "tester-progs" / "nop"
    nop.parent.mkdir(parents=True)
    shutil.copy2("/usr/bin/true", nop)
    running.add((FIXTURES / "lsm_bprm_check.yaml").read_text(), "lsm_bprm_check.yaml")
    denied = subprocess.run(["/usr/bin/bash", "-c", f"{nop}; echo ran $?"],
                            capture_output=True, text=True)
    assert "Operation not permitted" in denied.stderr and "ran 126" in denied.stdout
    spared = subprocess.run(["/bin/dash", "-c", f"{nop}; echo ran $?"],
                            capture_output=True, text=True)
    assert spared.stdout == "ran 0\n"
    [ev] = [e for e in running.events() if e.policy_name == "lsm"]
    assert (ev.kind, ev.function_name, ev.args[0].value) == (
        "lsm", "bprm_check_security", str(nop))
    assert ev.ima_hash == "sha256:" + hashlib.sha256(nop.read_bytes()).hexdigest()
    [override] = [x for x in ev.enforcement if x.action == "Override"]
    assert override.done and override.before_operation


def test_prevention_is_honest_on_every_kernel(running: Running, tmp_path: Path) -> None:
    """Sigkill on unlink: where BPF LSM exists, an Override denies the unlink
    itself; elsewhere the process dies but the unlink completes, and the
    event says so."""
    rm = tmp_path / "rm"
    shutil.copy2("/usr/bin/rm", rm)
    victim = tmp_path / "victim"
    victim.write_text("x")
    lsm = features().has("lsm")
    if lsm:
        hook = "lsmhooks:\n      - hook: path_unlink"
        actions = "- action: Override\n            argError: -1\n          - action: Sigkill"
    else:
        hook = "kprobes:\n      - call: sys_unlinkat\n        syscall: true"
        actions = "- action: Sigkill"
    running.add(f"""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata:
      name: no-unlink
    spec:
      {hook}
        selectors:
        - matchBinaries:
          - operator: In
            values: ["{rm}"]
          matchActions:
          {actions}
    """)
    p = subprocess.run([str(rm), str(victim)], capture_output=True)
    assert p.returncode == -9
    [ev] = [e for e in running.events() if e.policy_name == "no-unlink"]
    kill = next(e for e in ev.enforcement if e.action == "Sigkill")
    assert kill.done
    if lsm:
        assert victim.exists()  # denied before it happened
        override = next(e for e in ev.enforcement if e.action == "Override")
        assert override.done and override.before_operation and kill.before_operation
    else:
        assert not victim.exists()  # killed, but the unlink completed
        assert kill.before_operation is False
        assert "not prevented" in kill.note


# -- uprobes --

@pytest.fixture
def uprobe_target(progs: dict[str, str]) -> str:
    """progs/uprobe_target.c: bg_other(n) then bg_guarded(n, word), each
    printing a line when it runs, then bg_greeting(n), returning "hello n"."""
    return progs["uprobe_target"]


def _uprobe_policy(binary: str, action: str, symbols: str = "[bg_other, bg_guarded]") -> str:
    return f"""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata:
      name: guard
    spec:
      uprobes:
      - path: {binary}
        symbols: {symbols}
        args:
        - index: 0
          type: int
        selectors:
        - matchArgs:
          - index: 0
            operator: Equal
            values: ["7"]
          matchActions:
          - action: {action}
    """


@pytest.mark.needs("uprobe")
def test_uprobe_posts_which_symbol_ran_with_its_arguments(running: Running,
                                                          uprobe_target: str) -> None:
    running.add(_uprobe_policy(uprobe_target, "Post"))
    subprocess.run([uprobe_target, "3", "spare"], check=True, capture_output=True)
    subprocess.run([uprobe_target, "7", "match"], check=True, capture_output=True)
    evs = [e for e in running.events() if e.policy_name == "guard"]
    assert [(e.kind, e.path, e.symbol, e.args[0].value) for e in evs] == [
        ("uprobe", uprobe_target, "bg_other", 7), ("uprobe", uprobe_target, "bg_guarded", 7)]


@pytest.mark.needs("uprobe", "send_signal")
@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
def test_uprobe_sigkill_stops_the_user_function_before_it_runs(running: Running,
                                                               uprobe_target: str) -> None:
    running.add(_uprobe_policy(uprobe_target, "Sigkill", symbols="[bg_guarded]"))
    spared = subprocess.run([uprobe_target, "3", "x"], capture_output=True, text=True)
    assert spared.returncode == 0 and "guarded 3 x" in spared.stdout
    killed = subprocess.run([uprobe_target, "7", "x"], capture_output=True, text=True)
    assert killed.returncode == -9
    assert killed.stdout == "other 7\n"  # bg_guarded never printed: it did not run
    [ev] = [e for e in running.events() if e.policy_name == "guard"]
    [kill] = ev.enforcement
    assert kill.done and kill.before_operation and ev.action == "KPROBE_ACTION_SIGKILL"


@pytest.mark.needs("uprobe")
@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
def test_uprobe_return_filters_the_returned_string_and_reads_task_data(
        running: Running, uprobe_target: str) -> None:
    # a uretprobe: the returnArg is a string read at the return, filtered by
    # matchReturnArgs; data entries read the current task, filtered by matchData
    running.add(f"""
        apiVersion: cilium.io/v1alpha1
        kind: TracingPolicy
        metadata:
          name: greeting
        spec:
          uprobes:
          - path: {uprobe_target}
            symbols: [bg_greeting]
            args:
            - {{index: 0, type: int}}
            return: true
            returnArg: {{index: 0, type: string}}
            data:
            - {{index: 0, type: string, source: current_task, resolve: comm}}
            - {{index: 1, type: int, source: current_task, resolve: tgid}}
            selectors:
            - matchData:
              - {{index: 1, operator: NotInRange, values: ["0:1"]}}
              matchReturnArgs:
              - {{index: 0, operator: Postfix, values: [" 7"]}}
        """)
    spare = subprocess.run([uprobe_target, "3", "x"], capture_output=True, text=True)
    hit = subprocess.Popen([uprobe_target, "7", "x"], stdout=subprocess.PIPE, text=True)
    hit.communicate()
    # (the data filter holds for any child, whatever pid wraparound gave it;
    # it is tested to fail in test_pt_regs_data_of_a_syscall_are_its_user_registers)
    assert spare.stdout.endswith("hello 3\n")
    evs = [e for e in running.events() if e.policy_name == "greeting"]
    assert [([a.value for a in e.args], e.return_value.value if e.return_value else None,
             [d.value for d in e.data]) for e in evs] == [
        ([7], "hello 7", [Path(uprobe_target).name[:15], hit.pid])]


@pytest.mark.needs("uprobe")
@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
def test_uprobe_on_a_missing_symbol_is_refused_and_leaves_nothing(running: Running,
                                                                  uprobe_target: str) -> None:
    with pytest.raises(PolicyError, match="no_such_function"):
        running.add(_uprobe_policy(uprobe_target, "Post", symbols="[bg_other, no_such_function]"))
    assert running.engine.list() == []
    assert running.engine.obj is not None
    subprocess.run([uprobe_target, "7", "x"], check=True, capture_output=True)
    assert running.events() == []


# -- CelExpr --

@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
@pytest.mark.needs("tp_btf")
def test_cel_expressions_filter_in_the_kernel(running: Running) -> None:
    """Two expressions (ORed) over args entries, signed and unsigned."""
    running.add("""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata:
      name: lseek-cel
    spec:
      kprobes:
      - call: sys_lseek
        args:
        - {index: 2, type: int, label: whence}
        - {index: 0, type: int, label: fd}
        - {index: 1, type: long, label: offset}
        selectors:
        - matchArgs:
          - operator: CelExpr
            values:
            - "arg2 - 7 == 993 && arg0 == int32(0) && arg1 >= int32(0)"
            - "uint(arg2) > 1000000u && arg0 == int32(2)"
    """)
    child = subprocess.Popen([*PY, "import os\n"
                              "fd = os.open('/etc/hostname', os.O_RDONLY)\n"
                              "for off, how in ((1000, 0), (5, 0), (1000, 1), (-5, 2), (5, 2)):\n"
                              "    try: os.lseek(fd, off, how)\n"
                              "    except OSError: pass\n"])
    assert child.wait() == 0
    got = [[a.value for a in e.args] for e in running.wait_events(2) if e.pid == child.pid]
    assert [(w, off) for w, _, off in got] == [(0, 1000), (2, -5)]


# -- generated lists --

def _run_stack_target(target: str) -> None:
    subprocess.run([target, "/etc/hostname"], input=b"\n\n", check=True, capture_output=True)


@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
@pytest.mark.needs("tp_btf")
def test_generated_syscalls_list_hooks_every_syscall(running: Running,
                                                     progs: dict[str, str]) -> None:
    target = progs["stack_target"]
    running.add(f"""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata:
      name: all-syscalls
    spec:
      lists:
      - name: all
        type: generated_syscalls
      kprobes:
      - call: list:all
        selectors:
        - matchBinaries: [{{operator: In, values: ["{target}"]}}]
    """)
    _run_stack_target(target)
    seen = {e.function_name for e in running.wait_events(5)}
    assert {"__x64_sys_openat", "__x64_sys_read", "__x64_sys_close",
            "__x64_sys_exit_group"} <= seen, seen


@pytest.mark.needs("fentry")
def test_generated_ftrace_list_hooks_each_matching_function(running: Running,
                                                            progs: dict[str, str]) -> None:
    target = progs["stack_target"]
    running.add(f"""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata:
      name: open-path
    spec:
      lists:
      - name: open
        type: generated_ftrace
        pattern: ^(do_sys_openat2|fd_install)$
      kprobes:
      - call: list:open
        selectors:
        - matchBinaries: [{{operator: In, values: ["{target}"]}}]
    """)
    [lp] = running.engine.list()
    _run_stack_target(target)
    seen = {e.function_name for e in running.wait_events(2)}
    assert seen == {"do_sys_openat2", "fd_install"}, (seen, lp)


# -- namespace and capability changes --

_CHANGER = """
import ctypes, os, sys
def opened():
    open("/etc/hostname").close()
sys.stdin.readline()
opened()                  # as at exec: no change yet
if sys.argv[1] == "uts":
    assert ctypes.CDLL(None, use_errno=True).unshare(0x04000000) == 0  # CLONE_NEWUTS
elif sys.argv[1] == "setuid":
    os.setuid(65534)      # root -> nobody: the effective capabilities go
opened()                  # changed: reported
opened()                  # the change was reported: compared with it now
"""


def _changes_policy(name: str, selector: str) -> str:
    return f"""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata:
      name: {name}
    spec:
      kprobes:
      - call: sys_openat
        args: [{{index: 1, type: string}}]
        selectors:
        - matchArgs: [{{index: 1, operator: Equal, values: ["/etc/hostname"]}}]
          {selector}
    """


def _changer(how: str) -> None:
    """A child that opens /etc/hostname, changes (`how`), opens it twice."""
    subprocess.run([sys.executable, "-c", _CHANGER, how], input=b"go\n",
                   capture_output=True, check=True)


@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
@pytest.mark.needs("tp_btf")
def test_namespace_changes_report_the_first_call_after_an_unshare(running: Running) -> None:
    running.add(_changes_policy("ns-changes",
                                "matchNamespaceChanges: [{operator: In, values: [Uts]}]"))
    _changer("none")
    assert running.events() == []
    _changer("uts")
    [ev] = running.wait_events(1)
    assert ev.policy_name == "ns-changes" and ev.args[0].value == "/etc/hostname"


@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
@pytest.mark.needs("tp_btf")
def test_capability_changes_report_a_dropped_capability(running: Running) -> None:
    running.add(_changes_policy(
        "cap-changes",
        "matchCapabilityChanges: [{type: Effective, operator: In, values: [CAP_SYS_ADMIN]}]"))
    _changer("none")
    assert running.events() == []
    _changer("setuid")
    [ev] = running.wait_events(1)
    assert ev.policy_name == "cap-changes" and ev.uid == 65534


@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
@pytest.mark.needs("tp_btf")
def test_namespace_capability_matches_outside_the_host_user_namespace(
        running: Running) -> None:
    running.add(_changes_policy(
        "ns-caps", "matchCapabilities: [{type: Effective, operator: In, "
                   "isNamespaceCapability: true, values: [CAP_SYS_ADMIN]}]"))
    subprocess.run(["cat", "/etc/hostname"], check=True, capture_output=True)
    assert running.events() == []  # root, but in the host's user namespace
    subprocess.run(["unshare", "--user", "--map-root-user", "cat", "/etc/hostname"],
                   check=True, capture_output=True)
    [ev] = running.wait_events(1)
    assert ev.comm == "cat"


# -- stack traces --

@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
@pytest.mark.needs("tp_btf")
def test_stack_traces_name_the_kernel_and_user_callers(running: Running,
                                                       progs: dict[str, str]) -> None:
    """kernelStackTrace/userStackTrace on a syscall kprobe: the kernel stack
    starts at the syscall's callers (bpfguard's own frames cut), the user
    stack names the program's functions and its file."""
    target = progs["stack_target"]
    running.add(f"""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata:
      name: stacks
    spec:
      kprobes:
      - call: sys_openat
        args: [{{index: 1, type: string}}]
        selectors:
        - matchArgs: [{{index: 1, operator: Equal, values: ["/etc/hostname"]}}]
          matchBinaries: [{{operator: In, values: ["{target}"]}}]
          matchActions: [{{action: Post, kernelStackTrace: true, userStackTrace: true}}]
    """)
    with subprocess.Popen([target, "/etc/hostname"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        proc.stdout.readline()  # it has opened; it waits for the next line
        [ev] = running.wait_events(1)
        proc.stdin.write(b"\n")
    kernel = [f.symbol for f in ev.kernel_stack]
    assert "do_syscall_64" in kernel[:3], kernel
    assert not _BPF_GLUE.match(kernel[0]) and not ev.kernel_stack[0].module, kernel
    user = [(f.symbol, f.module) for f in ev.user_stack[:3]]
    assert user == [("bg_open_it", target), ("bg_outer", target), ("main", target)]


_BPF_GLUE = re.compile(r"_*bpf|_*trace")


def _stacks_of_one_open(r: Running, target: str, policy: str) -> PolicyEvent:
    r.add(policy)
    with subprocess.Popen([target, "/etc/hostname"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        proc.stdout.readline()  # it has opened; it waits for the next line
        [ev] = r.wait_events(1)
        proc.stdin.write(b"\n")
    return ev


def _fd_install_stacks_policy(target: str) -> str:
    return f"""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata:
      name: stacks
    spec:
      kprobes:
      - call: fd_install
        syscall: false
        args: [{{index: 0, type: int}}, {{index: 1, type: file}}]
        selectors:
        - matchBinaries: [{{operator: In, values: ["{target}"]}}]
          matchArgs: [{{index: 1, operator: Equal, values: ["/etc/hostname"]}}]
          matchActions: [{{action: Post, kernelStackTrace: true, userStackTrace: true}}]
    """


def _check_function_stacks(ev: PolicyEvent) -> None:
    """The kernel stack of fd_install starts at the hooked function: the
    trampoline's or kprobe's dispatch is cut."""
    kernel = [f.symbol for f in ev.kernel_stack]
    assert kernel[0] == "fd_install", kernel  # the hooked function first, as Tetragon's
    assert "do_sys_openat2" in kernel and "do_syscall_64" in kernel, kernel
    assert not any(f.module == "bpf" for f in ev.kernel_stack), kernel
    assert [f.symbol for f in ev.user_stack[:2]] == ["bg_open_it", "bg_outer"], ev.user_stack


@pytest.mark.needs("fentry")
def test_stack_traces_of_a_kernel_function_on_fentry(running: Running,
                                                      progs: dict[str, str]) -> None:
    target = progs["stack_target"]
    _check_function_stacks(_stacks_of_one_open(running, target,
                                               _fd_install_stacks_policy(target)))


@pytest.mark.needs("kprobe")
def test_stack_traces_of_a_kernel_function_on_kprobe(progs: dict[str, str]) -> None:
    target = progs["stack_target"]
    engine = PolicyEngine(features=_Without("fentry", "fexit"))  # type: ignore[arg-type]
    with SensorSet(syscalls=(), extra=[engine]) as sensors:
        sensors.start()
        r = Running(engine, sensors)
        try:
            _check_function_stacks(_stacks_of_one_open(r, target,
                                                       _fd_install_stacks_policy(target)))
        finally:
            r.stop()


# -- USDT probes --

@pytest.fixture
def usdt_target(progs: dict[str, str]) -> str:
    """progs/usdt_target.c: probes bpfguard_test:args (n in a register,
    -1000*n in another, argv[2] a pointer in memory), :memory (a global
    read rip-relative, and the constant 42) and :gated, which the program
    fires only while its semaphore says a probe is attached."""
    return progs["usdt_target"]


def _usdt_policy(binary: str, probe: str, args: str, selectors: str = "") -> str:
    return f"""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata:
      name: usdt-{probe}
    spec:
      usdts:
      - path: {binary}
        provider: bpfguard_test
        name: {probe}
        args: {args}
        {selectors}
    """


@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
@pytest.mark.needs("uprobe")
def test_usdt_reads_register_memory_and_constant_operands(running: Running,
                                                          usdt_target: str) -> None:
    running.add(_usdt_policy(
        usdt_target, "args",
        "[{index: 0, type: int32}, {index: 1, type: int64}, {index: 2, type: string}]",
        "selectors: [{matchArgs: [{index: 0, operator: Equal, values: ['7']}]}]"))
    running.add(_usdt_policy(usdt_target, "memory",
                             "[{index: 0, type: int64}, {index: 1, type: int32}]"))
    subprocess.run([usdt_target, "3", "spare"], check=True, capture_output=True)
    subprocess.run([usdt_target, "7", "match"], check=True, capture_output=True)
    evs = running.events()
    assert [(e.kind, e.policy_name, e.path, e.provider, e.probe, [a.value for a in e.args])
            for e in evs] == [
        ("usdt", "usdt-memory", usdt_target, "bpfguard_test", "memory", [-5, 42]),
        ("usdt", "usdt-args", usdt_target, "bpfguard_test", "args", [7, -7000, "match"]),
        ("usdt", "usdt-memory", usdt_target, "bpfguard_test", "memory", [-5, 42])]


@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
@pytest.mark.needs("uprobe")
def test_usdt_semaphore_is_raised_while_the_probe_is_watched(running: Running,
                                                             usdt_target: str) -> None:
    """The program fires `gated` only when its semaphore is non-zero: the
    uprobe's reference counter raises it while the policy is loaded."""
    running.add(_usdt_policy(usdt_target, "gated", "[{index: 0, type: int}]"))
    subprocess.run([usdt_target, "5", "x"], check=True, capture_output=True)
    assert [[a.value for a in e.args] for e in running.events()] == [[5]]
    running.engine.delete("usdt-gated")
    subprocess.run([usdt_target, "5", "x"], check=True, capture_output=True)
    assert running.events() == []


@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
@pytest.mark.needs("uprobe")
def test_usdt_refusals_name_the_missing_probe_and_a_bad_index(running: Running,
                                                              usdt_target: str) -> None:
    with pytest.raises(PolicyError) as missing:
        running.add(_usdt_policy(usdt_target, "nowhere", "[]"))
    [p] = missing.value.problems
    assert p.code == "POLICY_UNAVAILABLE" and "no USDT probe bpfguard_test:nowhere" in p.message
    with pytest.raises(PolicyError) as index:
        running.add(_usdt_policy(usdt_target, "gated", "[{index: 1, type: int}]"))
    [p] = index.value.problems
    assert p.code == "POLICY_BAD_VALUE" and "has 1 arguments" in p.message
    assert running.engine.list() == []


_VERDICT_SET = """selectors:
        - matchArgs: [{index: 1, operator: Equal, values: ['7']}]
          matchActions: [{action: Set, argIndex: 0, argValue: 32}]"""


@pytest.mark.needs("uprobe", "write_user")
def test_usdt_set_writes_the_value_the_program_reads_back(running: Running,
                                                           usdt_target: str) -> None:
    """Set writes argValue into the probe's memory operand: the program
    prints the local it passed to the probe. The run with another n is
    left alone (the selector's matchArgs), and the event shows the value
    as it was at the probe, before the write."""
    running.add(_usdt_policy(usdt_target, "verdict",
                             "[{index: 0, type: int32}, {index: 1, type: int32}]",
                             _VERDICT_SET))
    spared = subprocess.run([usdt_target, "3", "x"], check=True, capture_output=True, text=True)
    hit = subprocess.run([usdt_target, "7", "x"], check=True, capture_output=True, text=True)
    assert (spared.stdout, hit.stdout) == ("ran 3 verdict 0\n", "ran 7 verdict 32\n")
    [e] = running.events()
    assert ([a.value for a in e.args], e.action) == ([0, 7], "KPROBE_ACTION_SET")
    [set_] = e.enforcement
    assert (set_.action, set_.done, set_.mode, set_.backend) == (
        "Set", True, "enforce", "bpf_probe_write_user")
    running.engine.set_mode("usdt-verdict", "monitor")
    monitored = subprocess.run([usdt_target, "7", "x"], check=True, capture_output=True,
                               text=True)
    assert monitored.stdout == "ran 7 verdict 0\n"
    [e] = running.events()
    assert [(x.action, x.done, x.mode) for x in e.enforcement] == [("Set", False, "monitor")]
    c = running.engine.counters("usdt-verdict")
    assert (c["sets"], c["would_set"], c["set_failed"], c["actions"], c["would_act"],
            c["posted"]) == (1, 1, 0, 1, 1, 2)


@pytest.mark.host_covers  # compiled only: no program is loaded
def test_usdt_set_refusals_name_the_operand_and_the_kernel(usdt_target: str) -> None:
    """Set writes a 4-byte memory operand only (Tetragon's rule); a kernel
    that refuses bpf_probe_write_user refuses the policy, naming it."""
    def problems(probe: str, args: str, arg_index: int, **features: bool) -> list[str]:
        sel = f"selectors: [{{matchActions: [{{action: Set, argIndex: {arg_index}}}]}}]"
        policy = load_policy_text("set.yaml", textwrap.dedent(
            _usdt_policy(usdt_target, probe, args, sel)))
        with pytest.raises(PolicyError) as exc:
            compile_policy(policy, features={"uprobe": True, **features})
        return [f"{p.code} {p.message}" for p in exc.value.problems]

    [reg] = problems("args", "[{index: 0, type: int32}]", 0, write_user=True)
    assert reg.startswith("POLICY_BAD_VALUE") and "'-4@%" in reg and "4-byte memory" in reg
    [wide] = problems("memory", "[{index: 0, type: int64}]", 0, write_user=True)
    assert "'-8@in_memory(%rip)'" in wide and "4-byte memory" in wide
    [beyond] = problems("verdict", "[{index: 0, type: int32}]", 1, write_user=True)
    assert "the probe's args list has 1 entries" in beyond
    [locked] = problems("verdict", "[{index: 0, type: int32}]", 0, write_user=False)
    assert locked.startswith("POLICY_UNAVAILABLE") and "bpf_probe_write_user" in locked
    # a locked-down host still learns what else is wrong
    locked, also = problems("args", "[{index: 0, type: int32}]", 0, write_user=False)
    assert locked.startswith("POLICY_UNAVAILABLE") and "bpf_probe_write_user" in locked
    assert also.startswith("POLICY_BAD_VALUE") and "still refused" in also
    assert "4-byte memory" in also


@pytest.mark.host_covers  # host hooks (syscalls, uprobes): the guest runs kernel functions
@pytest.mark.needs("uprobe")
def test_uprobe_binary_digests_attach_only_to_the_trusted_binary(
        running: Running, uprobe_target: str) -> None:
    sha = hashlib.sha256(Path(uprobe_target).read_bytes()).hexdigest()
    other = "sha256:" + "0" * 64

    def policy(digests: str, ignore: str = "") -> str:
        return _uprobe_policy(uprobe_target, "Post").replace(
            "symbols:", f"binaryDigests: {digests}\n        {ignore}\n        symbols:")

    running.add(policy(f"[{other}, 'sha256:{sha}']"))
    subprocess.run([uprobe_target, "7", "x"], check=True, capture_output=True)
    assert len(running.events()) == 2  # bg_other and bg_guarded
    running.engine.delete("guard")
    with pytest.raises(PolicyError) as refused:
        running.add(policy(f"[{other}]"))
    [p] = refused.value.problems
    assert p.code == "POLICY_UNAVAILABLE" and f"sha256:{sha}" in p.message
    running.add(policy(f"[{other}]", "ignore: {digestVerificationFailure: true}"))
    [lp] = running.engine.list()
    assert lp["hooks"] == 0  # loaded, that uprobe skipped (as Tetragon's DIGEST_REJECTED)
    subprocess.run([uprobe_target, "7", "x"], check=True, capture_output=True)
    assert running.events() == []


def _read_lines(stream: Any, n: int, timeout: float = 30.0) -> list[str]:
    """`n` lines of `stream`, failing (not hanging) if they do not come in time."""
    got: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [got.put(stream.readline()) for _ in range(n)],
                     daemon=True).start()
    try:
        return [got.get(timeout=timeout) for _ in range(n)]
    except queue.Empty:
        raise AssertionError(f"fewer than {n} lines in {timeout} s") from None


@pytest.mark.host_covers  # a CLI subprocess: slow in the TCG guest, the same code as here
@pytest.mark.needs("uprobe")
def test_run_policy_streams_tetragon_json_lines(uprobe_target: str, tmp_path: Path) -> None:
    """`bpfguard run --policy A --policy B --json`, as a user runs it: both
    policies load at start and their events arrive as JSON lines."""
    guard, kill = tmp_path / "guard.yaml", tmp_path / "kill.yaml"
    guard.write_text(textwrap.dedent(_uprobe_policy(uprobe_target, "Post")))
    kill.write_text(textwrap.dedent(kill_policy("/usr/bin/cat", mode="monitor")))
    with subprocess.Popen(
            [sys.executable, "-m", "bpfguard", "run", "--policy", str(guard), "--policy",
             str(kill), "--json", "--no-process-events", "--socket",
             str(tmp_path / "control.sock")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as agent:
        assert agent.stderr is not None and agent.stdout is not None
        try:
            loaded = _read_lines(agent.stderr, 2)
            assert ["loaded" in line for line in loaded] == [True, True], loaded
            subprocess.run([uprobe_target, "7", "x"], check=True, capture_output=True)
            subprocess.run(["cat", "/etc/hostname"], check=True, capture_output=True)
            lines = [json.loads(line) for line in _read_lines(agent.stdout, 3)]
        finally:
            agent.terminate()
            try:
                agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()
                raise
    got = [(kind, body["policy_name"], body.get("symbol") or body["function_name"])
           for d in lines for kind, body in d.items() if kind.startswith("process_")]
    assert got == [("process_uprobe", "guard", "bg_other"),
                   ("process_uprobe", "guard", "bg_guarded"),
                   ("process_kprobe", "kill-etc", "__x64_sys_openat")]
    assert agent.returncode == 0


def test_pod_selector_applies_in_the_selected_containers_cgroups_only(
        running: Running, tmp_path: Path) -> None:
    """The kernel half of pod and container scopes: a podSelector policy acts
    in a task whose cgroup (or an ancestor) the scope tracker wrote into
    pol_scope for a matching container, and nowhere else; when the
    container stops it is taken out. (tests/kernel/test_containers.py does
    the same with podman's pods, on the host.)"""
    from bpfguard.containers import Container, Pod

    running.add("""
    apiVersion: cilium.io/v1alpha1
    kind: TracingPolicy
    metadata: {name: pod-scope}
    spec:
      podSelector: {matchLabels: {app: bigsecret}}
      kprobes:
      - call: sys_openat
        syscall: true
        args: [{index: 1, type: string}]
        selectors:
        - matchArgs: [{index: 1, operator: Equal, values: ["/etc/hostname"]}]
          matchActions: [{action: Sigkill}]
    """)
    with _test_cgroup() as cg:
        nested = cg / "inner"          # a container's own sub-cgroups are in it too
        nested.mkdir()
        try:
            def cat(where: Path | None) -> str:
                join = f"echo $$ > {where}/cgroup.procs; " if where else ""
                r = subprocess.run(["sh", "-c", f"{join}cat /etc/hostname; echo $?"],
                                   capture_output=True, text=True)
                return r.stdout.split()[-1]

            def container(labels: dict[str, str]) -> Container:
                return Container(id="ab" * 32, runtime="podman", name="c",
                                 pod=Pod(name="p", labels=labels),
                                 cgroup_id=os.stat(cg).st_ino)

            scopes = running.engine.scopes
            scopes.container_changed(container({"app": "other"}), True)
            assert cat(cg) == "0" and cat(None) == "0"     # not selected: not in the set
            scopes.container_changed(container({"app": "bigsecret"}), True)
            assert cat(cg) == "137" and cat(nested) == "137"
            assert cat(None) == "0"                        # the host: never
            scopes.container_changed(container({"app": "bigsecret"}), False)
            assert cat(cg) == "0"
        finally:
            nested.rmdir()


def test_a_path_deeper_than_the_walk_is_marked_and_matches_no_prefix(
        running: Running, two_cats: tuple[str, str], tmp_path: Path) -> None:
    """(issue 22, defect 11) a policy's path argument deeper than the walk
    holds the innermost names: shown after ".../", flagged truncated, and
    never taken for the path from the root by a Prefix selector; a shorter
    one is whole."""
    victim, _ = two_cats
    base = len(tmp_path.parts) - 1
    deep = tmp_path.joinpath(*["d"] * (120 - base))
    deep.mkdir(parents=True)
    (deep / "f").write_text("x")
    # one step short of BG_PATH_DEPTH (a step: a name, or a mount crossed):
    # whole (the policies' walk takes a path of exactly that many for cut)
    from .helpers import mounts_crossed

    exact = tmp_path.joinpath(*["e"] * (95 - base - mounts_crossed(tmp_path) - 1))
    exact.mkdir(parents=True)
    (exact / "f").write_text("x")
    # Prefix "/d/" would match the deep path's innermost names taken for the
    # path from the root; Postfix matches its end, which is whole
    for name, selector in (("reads-any", ""),
                           ("reads-d", 'matchArgs: [{index: 0, operator: Prefix, '
                                       'values: ["/d/"]}]'),
                           ("reads-tmp", f'matchArgs: [{{index: 0, operator: Prefix, '
                                         f'values: ["/{tmp_path.parts[1]}/"]}}]'),
                           ("reads-end", 'matchArgs: [{index: 0, operator: Postfix, '
                                         'values: ["/d/f"]}]')):
        running.add(f"""
        apiVersion: cilium.io/v1alpha1
        kind: TracingPolicy
        metadata: {{name: {name}}}
        spec:
          kprobes:
          - call: sys_read
            syscall: true
            args: [{{index: 0, type: fd}}]
            selectors:
            - matchBinaries: [{{operator: In, values: ["{victim}"]}}]
              {selector}
        """)
    for f in (deep / "f", exact / "f"):
        assert subprocess.run([victim, str(f)], capture_output=True).returncode == 0
    evs = running.events()
    got = {(e.policy_name, e.args[0].value, e.args[0].truncated) for e in evs
           if e.args[0].value and e.args[0].value.endswith("/f")}
    shown = ".../" + "/".join(deep.parts[-95:] + ("f",))
    assert got == {("reads-any", shown, True), ("reads-any", str(exact / "f"), False),
                   ("reads-tmp", str(exact / "f"), False), ("reads-end", shown, True)}, got
