"""`bpfguard run`, the agent, as a real process on the real kernel.

Each test starts the agent the way an operator does (a subprocess of
``python -m bpfguard run``), talks to it through its control socket, HTTP
metrics and signals, and checks what the kernel has attached with bpftool,
independently of bpfguard's own bookkeeping.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bpfguard.loader import Btf
from bpfguard.sensors.io_uring import submit_tracepoint

# The agent is the sensors, engines and policies the rest of tests/kernel
# exercises on both kernels; spawning it with the stock rules is slow under
# the guest's TCG, so these run on the host only.
pytestmark = [pytest.mark.kernel, pytest.mark.host_covers]

REPO = Path(__file__).resolve().parents[2]
READY = "running: "


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AgentProcess:
    """A running `bpfguard run`: its alerts (stdout, JSON lines) and log (stderr)."""

    def __init__(self, config: Path | None) -> None:
        args = [sys.executable, "-m", "bpfguard", "run"] + (["-c", str(config)] if config else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=REPO)
        self.alerts: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.log: list[str] = []
        self._log_cv = threading.Condition()
        self._threads = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._threads:
            t.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.alerts.put(json.loads(line))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._log_cv:
                self.log.append(line.rstrip("\n"))
                self._log_cv.notify_all()

    def wait_log(self, text: str, timeout: float = 90.0, start: int = 0) -> str:
        """The first log line from index `start` on that contains `text`."""
        deadline = time.monotonic() + timeout
        with self._log_cv:
            while True:
                for line in self.log[start:]:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no log line with {text!r}; the agent said:\n"
                                         + "\n".join(self.log))
                self._log_cv.wait(min(left, 0.5))

    def wait_alert(self, pred: Callable[[dict[str, Any]], bool],
                   timeout: float) -> dict[str, Any]:
        """The first alert (already seen or arriving within `timeout`) that matches."""
        for a in self.seen:
            if pred(a):
                return a
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                a = self.alerts.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(a)
            if pred(a):
                return a
        raise AssertionError(f"no matching alert within {timeout}s; got {len(self.seen)}: "
                             f"{[a.get('rule') for a in self.seen][-20:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signals the agent and waits; everything it wrote has been read after."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        for t in self._threads:
            t.join()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        return code


@pytest.fixture
def start_agent() -> Iterator[Callable[[Path | None], AgentProcess]]:
    running: list[AgentProcess] = []

    def start(config: Path | None) -> AgentProcess:
        a = AgentProcess(config)
        running.append(a)
        a.wait_log(READY)
        return a

    yield start
    for a in running:
        try:
            a.stop()
        except subprocess.TimeoutExpired:
            a.proc.kill()
            a.stop()


@pytest.fixture
def binary(tmp_path: Path) -> Callable[[str, str], str]:
    """A copy of a system binary under a name no rule or process shares."""

    def make(src: str, name: str) -> str:
        dst = tmp_path / f"{name}{os.getpid() % 10000}"
        shutil.copy2(shutil.which(src) or src, dst)
        return str(dst)

    return make


def _config(tmp_path: Path, text: str, sock: Path | None = None, *,
            bpf_stats: bool = False) -> tuple[Path, Path, int]:
    """A config file from `text` with a private control socket and metrics port."""
    sock = sock or tmp_path / "ctl" / "bpfguard.sock"
    port = _free_port()
    path = tmp_path / "agent.yaml"
    path.write_text(text + f"\ncontrol:\n  socket: {sock}\nmetrics:\n"
                           f"  listen: 127.0.0.1:{port}\n  bpf_stats: {str(bpf_stats).lower()}\n")
    return path, sock, port


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def _metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples `name` whose labels include `labels`."""
    found = [smp.value for fam in text_string_to_metric_families(text) for smp in fam.samples
             if smp.name == name and labels.items() <= smp.labels.items()]
    assert found, f"no {name} {labels} in the metrics"
    return sum(found)


def _bpftool(*args: str) -> Any:
    return json.loads(subprocess.run(["bpftool", "-j", *args], check=True,
                                     capture_output=True, text=True).stdout)


# -- the acceptance tests ------------------------------------------------------


def test_default_config_raises_a_stock_falco_alert_within_2s(
        start_agent: Callable[[Path | None], AgentProcess],
        binary: Callable[[str, str], str]) -> None:
    agent = start_agent(None)   # no -c: the embedded default
    reader = binary("cat", "bgagentcat")
    name = Path(reader).name
    t0 = time.monotonic()
    subprocess.run([reader, "/etc/shadow"], check=True, stdout=subprocess.DEVNULL)
    alert = agent.wait_alert(lambda a: a.get("output_fields", {}).get("proc.name") == name,
                             timeout=2.0)
    waited = time.monotonic() - t0
    assert alert["rule"] == "Read sensitive file untrusted"
    assert alert["priority"] == "Warning" and alert["source"] == "syscall"
    assert alert["output_fields"]["fd.name"] == "/etc/shadow"
    assert waited <= 2.0
    # the default policies run, in monitor mode
    assert "3 policies (3 in monitor mode)" in agent.wait_log(READY)
    # one sensor set: one program per kernel event, whatever runs (io_uring's
    # submissions and completions: the requests the rules' syscalls stand for)
    with Btf.vmlinux() as kernel:
        submit = submit_tracepoint(kernel)
    assert sorted(_agent_links(agent.proc.pid)) == sorted([
        "io_uring_complete", submit, "sched_process_exec",
        "sched_process_exit", "sched_process_fork", "sys_enter", "sys_exit"])
    assert agent.stop() == 0


def _agent_links(pid: int) -> list[str]:
    """The tracepoints of the BPF links process `pid` holds (from the fdinfo of
    its bpf_link fds; this bpftool lists no owning pids)."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:bpf_link":
                info = dict(line.split(":\t", 1) for line in
                            Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines()
                            if ":\t" in line)
                out.append(info.get("tp_name", info.get("link_type", "?")))
    return out


def test_default_agent_keeps_a_benign_open_storm_in_the_kernel(
        tmp_path: Path, start_agent: Callable[[Path | None], AgentProcess],
        progs: dict[str, str]) -> None:
    cfg, _sock, port = _config(tmp_path, "")   # the embedded default, private endpoints
    agent = start_agent(cfg)
    before = _metric(_metrics(port), "bpfguard_kernel_filtered_total", stage="by_path")
    n = 300_000
    subprocess.run([progs["open_loop"], "/etc/hostname", str(n)], check=True)
    text = _metrics(port)
    # every open was decided in the kernel by its path: none reached user space
    assert _metric(text, "bpfguard_kernel_filtered_total", stage="by_path") - before >= n
    assert _metric(text, "bpfguard_kernel_drops_total") == 0
    assert _metric(text, "bpfguard_output_dropped_total") == 0
    assert agent.stop() == 0


_KILL_POLICY = """
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {{name: agent-live-kill}}
spec:
  kprobes:
  - call: sys_openat
    syscall: true
    args: [{{index: 1, type: string}}]
    selectors:
    - matchArgs: [{{index: 1, operator: Equal, values: ["/etc/hostname"]}}]
      matchBinaries: [{{operator: In, values: ["{binary}"]}}]
      matchActions: [{{action: Sigkill}}]
"""


def test_policy_added_through_the_socket_takes_effect_without_restart(
        tmp_path: Path, start_agent: Callable[[Path | None], AgentProcess],
        binary: Callable[[str, str], str]) -> None:
    cfg, sock, _ = _config(tmp_path, "rules: {enabled: false}\npolicies: {defaults: false}")
    agent = start_agent(cfg)
    victim = binary("cat", "bgvictim")
    assert subprocess.run([victim, "/etc/hostname"], capture_output=True).returncode == 0
    pol = tmp_path / "kill.yaml"
    pol.write_text(_KILL_POLICY.format(binary=victim))
    r = subprocess.run([sys.executable, "-m", "bpfguard", "policy", "add", "--socket", str(sock),
                        str(pol)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert subprocess.run([victim, "/etc/hostname"], capture_output=True).returncode == -9
    alert = agent.wait_alert(lambda a: a["rule"] == "agent-live-kill", timeout=5)
    assert alert["source"] == "tetragon" and alert["priority"] == "Critical"
    assert alert["tetragon"]["process_kprobe"]["action"] == "KPROBE_ACTION_SIGKILL"
    assert alert["output_fields"]["proc.exepath"] == victim
    # a new version in place, make before break: another binary is killed,
    # under the same id, with the counters so far
    other = binary("cat", "bgvictim2")
    pol.write_text(_KILL_POLICY.format(binary=other))
    _bpfguard("policy", "add", "--replace", "--socket", str(sock), str(pol))
    assert subprocess.run([other, "/etc/hostname"], capture_output=True).returncode == -9
    assert subprocess.run([victim, "/etc/hostname"], capture_output=True).returncode == 0
    listed = json.loads(_bpfguard("policy", "list", "--json", "--socket", str(sock)).stdout)
    assert [(p["name"], p["id"], p["counters"]["signals"]) for p in listed] == [
        ("agent-live-kill", 1, 2)]
    r = subprocess.run([sys.executable, "-m", "bpfguard", "policy", "delete", "--socket",
                        str(sock), "agent-live-kill"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert subprocess.run([victim, "/etc/hostname"], capture_output=True).returncode == 0
    assert subprocess.run([other, "/etc/hostname"], capture_output=True).returncode == 0
    assert agent.stop() == 0


def _run_victim(path: str) -> int:
    return subprocess.run([path, "/etc/hostname"], capture_output=True).returncode


def _sys_enter_links() -> int:
    return sum(1 for li in _bpftool("link", "show") if li.get("tp_name") == "sys_enter")


def test_kill_9_leaves_the_policies_enforcing_and_the_next_agent_adopts_them(
        tmp_path: Path, start_agent: Callable[[Path | None], AgentProcess],
        binary: Callable[[str, str], str]) -> None:
    pins = Path(f"/sys/fs/bpf/bpfguard-test-{os.getpid()}")
    from bpfguard.files import remove_tree

    remove_tree(pins, "test pins")
    victim, victim2 = binary("cat", "bgpinned"), binary("cat", "bgpinned2")
    pol = tmp_path / "kill.yaml"
    pol.write_text(_KILL_POLICY.format(binary=victim))
    added = tmp_path / "added.yaml"
    added.write_text(_KILL_POLICY.format(binary=victim2).replace("agent-live-kill",
                                                                  "added-live-kill"))
    cfg, sock, _ = _config(tmp_path, f"rules: {{enabled: false}}\npolicies: {{defaults: false, "
                                     f"files: [{pol}], pin_dir: {pins}}}")
    sys_enter_before = _sys_enter_links()
    try:
        first = start_agent(cfg)
        r = _bpfguard("policy", "add", "--socket", str(sock), str(added))
        assert _run_victim(victim) == -9 and _run_victim(victim2) == -9
        assert _sys_enter_links() == sys_enter_before + 1
        # a second agent beside a live one's pins is refused, before it loads anything
        (tmp_path / "other").mkdir()
        other, _, _ = _config(tmp_path / "other", cfg.read_text().split("\ncontrol:")[0])
        r = subprocess.run([sys.executable, "-m", "bpfguard", "run", "-c", str(other)],
                           capture_output=True, text=True, timeout=120, cwd=REPO)
        assert r.returncode != 0
        assert f"agent pid {first.proc.pid} is running and pins its policies there" in r.stderr
        assert first.stop(signal.SIGKILL) == -9
        # no agent: the kernel still kills, from the pins, and counts
        assert _run_victim(victim) == -9 and _run_victim(victim2) == -9
        r = _bpfguard("policy", "list", "--socket", str(sock), "--pin-dir", str(pins))
        assert f"agent pid {first.proc.pid} died" in r.stderr
        listed = {line.split()[1]: line.split() for line in r.stdout.splitlines()[1:]}
        assert set(listed) == {"agent-live-kill", "added-live-kill"}
        assert listed["agent-live-kill"][10:12] == ["2", "2"]   # NPOST NENFORCE ("0 B" is two)
        # the next agent loads the config's policy and the socket's again,
        # then releases the dead one's pins: one copy of each, counters kept
        second = start_agent(cfg)
        second.wait_log(f"adopted the policies agent pid {first.proc.pid} pinned")
        assert [p.name for p in pins.iterdir()] == [f"{second.proc.pid}-" + (
            Path(f"/proc/{second.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])]
        assert _sys_enter_links() == sys_enter_before + 1
        r = _bpfguard("policy", "list", "--json", "--socket", str(sock))
        counters = {p["name"]: p["counters"]["signals"] for p in json.loads(r.stdout)}
        assert counters == {"agent-live-kill": 2, "added-live-kill": 2}
        assert _run_victim(victim) == -9 and _run_victim(victim2) == -9
        # a configuration's policy is changed in its file: --replace says so
        r = _bpfguard("policy", "add", "--replace", "--socket", str(sock), str(pol), check=False)
        assert r.returncode == 1 and "comes from the configuration" in r.stderr
        # with no enforce-mode policy nothing is pinned (monitor needs the agent)
        for name in ("agent-live-kill", "added-live-kill"):
            _bpfguard("policy", "mode", "--socket", str(sock), name, "monitor")
        assert list(pins.iterdir()) == []
        _bpfguard("policy", "mode", "--socket", str(sock), "added-live-kill", "enforce")
        assert len(list(pins.iterdir())) == 1
        # a stop ends enforcement: nothing stays pinned or attached
        assert second.stop() == 0
        assert list(pins.iterdir()) == []
        assert _sys_enter_links() == sys_enter_before
        assert _run_victim(victim) == 0 and _run_victim(victim2) == 0
    finally:
        remove_tree(pins, "test pins")


_CLIENT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print("connect:", exc.strerror)
    sys.exit(0)
try:
    s.sendall(b'{"op": "list"}\\n')
except (BrokenPipeError, ConnectionResetError):
    pass  # refused before the request was read: the answer says why
print(json.loads(s.makefile().readline())["error"])
"""


def _as_nobody(sock: Path) -> str:
    """What a plain client running as uid/gid 65534 gets from `sock` (the
    system's python3: the venv is not reachable for that user)."""
    r = subprocess.run(["/usr/bin/python3", "-c", _CLIENT, str(sock)], capture_output=True,
                       text=True, user=65534, group=65534, extra_groups=[], cwd="/")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory anyone may enter (pytest's own are 0700 all the way up)."""
    d = Path(tempfile.mkdtemp(prefix="bgctl"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_a_non_root_client_is_refused(tmp_path: Path, public_dir: Path,
                                      start_agent: Callable[[Path | None], AgentProcess]) -> None:
    cfg, sock, _ = _config(tmp_path, "rules: {enabled: false}\npolicies: {defaults: false}",
                           sock=public_dir / "ctl" / "bpfguard.sock")
    start_agent(cfg)
    assert sock.stat().st_mode & 0o777 == 0o600
    assert sock.parent.stat().st_mode & 0o777 == 0o700
    sock.parent.chmod(0o755)
    assert _as_nobody(sock) == "connect: Permission denied"   # the socket's mode
    # even with the modes opened up, the agent itself refuses (SO_PEERCRED)
    sock.chmod(0o666)
    said = _as_nobody(sock)
    assert "only root may manage" in said and "uid 65534" in said


_RULE = """
- rule: agent test marker read
  desc: a read of the test's marker file
  condition: evt.type in (open, openat, openat2) and fd.name = "{marker}"
  output: marker read ({label}) by %proc.name file=%fd.name
  priority: WARNING
"""


def test_sighup_with_a_broken_rules_file_keeps_the_old_rules(
        tmp_path: Path, start_agent: Callable[[Path | None], AgentProcess],
        binary: Callable[[str, str], str]) -> None:
    marker = tmp_path / "marker.txt"
    marker.write_text("x")
    rules = tmp_path / "rules.yaml"
    rules.write_text(_RULE.format(marker=marker, label="v1"))
    cfg, sock, port = _config(tmp_path, f"rules: {{files: [{rules}]}}\n"
                                        "policies: {defaults: false}")
    agent = start_agent(cfg)
    reader = binary("cat", "bgmarker")

    def read_and_alert(label: str) -> dict[str, Any]:
        agent.seen.clear()
        subprocess.run([reader, str(marker)], check=True, stdout=subprocess.DEVNULL)
        return agent.wait_alert(lambda a: a["rule"] == "agent test marker read", timeout=5)

    assert "(v1)" in read_and_alert("v1")["output"]
    rules.write_text("- rule: broken\n  condition: evt.type = = open\n  output: x\n"
                     "  priority: WARNING\n  desc: broken\n")
    mark = len(agent.log)
    agent.proc.send_signal(signal.SIGHUP)
    why = agent.wait_log("reload failed", start=mark, timeout=30)
    assert str(rules) in why or "broken" in "\n".join(agent.log[mark:])
    assert "(v1)" in read_and_alert("v1")["output"]        # the old rules still work
    assert _metric(_metrics(port), "bpfguard_reloads_total", result="error") == 1
    st = json.loads(subprocess.run([sys.executable, "-m", "bpfguard", "agent", "status",
                                    "--json", "--socket", str(sock)], capture_output=True,
                                   text=True, check=True).stdout)
    assert st["healthy"] and "last_reload_error" in st
    # a good file is taken on the next SIGHUP
    rules.write_text(_RULE.format(marker=marker, label="v2"))
    mark = len(agent.log)
    agent.proc.send_signal(signal.SIGHUP)
    agent.wait_log("reloaded: ", start=mark, timeout=60)
    assert "(v2)" in read_and_alert("v2")["output"]
    assert agent.stop() == 0


@pytest.fixture
def veth(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A veth pair whose far end lives in a fresh namespace: (interface, netns)."""
    tag = f"bgag{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", tag], check=True)
    try:
        subprocess.run(["ip", "link", "add", f"{tag}a", "type", "veth", "peer", "name",
                        f"{tag}b"], check=True)
        subprocess.run(["ip", "link", "set", f"{tag}a", "netns", tag], check=True)
        subprocess.run(["ip", "-n", tag, "link", "set", f"{tag}a", "up"], check=True)
        yield f"{tag}a", tag
    finally:
        from bpfguard.firewall import Firewall, FirewallError

        with contextlib.suppress(FirewallError):
            Firewall.open(f"{tag}a", tag).unload()
        subprocess.run(["ip", "link", "del", f"{tag}b"], capture_output=True)
        subprocess.run(["ip", "netns", "del", tag], capture_output=True)


def _prog_ids() -> set[int]:
    return {p["id"] for p in _bpftool("prog", "show")}


def test_sigterm_leaves_no_attached_program_but_the_pinned_firewall(
        tmp_path: Path, start_agent: Callable[[Path | None], AgentProcess],
        veth: tuple[str, str]) -> None:
    iface, ns = veth
    before = _prog_ids()
    links_before = {li["id"] for li in _bpftool("link", "show")}
    cfg, sock, port = _config(tmp_path, f"firewall:\n  interfaces:\n"
                                        f"  - {{interface: {iface}, netns: {ns}}}\n")
    agent = start_agent(cfg)
    during = _prog_ids() - before
    assert len(during) > 5    # sensors, policies, the firewall
    assert _metric(_metrics(port), "bpfguard_firewall_packets_total", interface=f"{iface}@{ns}") \
        >= 0
    assert agent.stop(signal.SIGTERM) == 0
    # the kernel frees programs after an RCU grace period, later on a busy host
    deadline = time.monotonic() + 10
    while True:
        progs = {p["id"]: p for p in _bpftool("prog", "show")}
        left = [progs[i] for i in set(progs) - before]
        links = [li for li in _bpftool("link", "show") if li["id"] not in links_before]
        if len(left) + len(links) <= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [p["type"] for p in left] == ["xdp"], left
    assert [li["type"] for li in links] == ["xdp"], links
    from bpfguard.firewall.xdp import FIREWALL_PINS

    assert (FIREWALL_PINS / f"{iface}@{ns}").is_dir()
    assert not sock.exists()


RX_IP, TX_IP = "198.18.99.2", "198.18.99.1"


@pytest.fixture
def netns_pair() -> Iterator[tuple[str, str]]:
    """Two fresh namespaces joined by a veth pair, each end named as its
    namespace: (receiver at RX_IP, sender at TX_IP)."""
    tag = f"bgfc{os.getpid() % 100000}"
    rx, tx = f"{tag}r", f"{tag}s"
    for ns in (rx, tx):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "link", "add", rx, "type", "veth", "peer", "name", tx], check=True)
        for ns, addr in ((rx, RX_IP), (tx, TX_IP)):
            subprocess.run(["ip", "link", "set", ns, "netns", ns], check=True)
            subprocess.run(["ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", ns], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", ns, "up"], check=True)
        yield rx, tx
    finally:
        from bpfguard.firewall import Firewall, FirewallError

        for ns in (rx, tx):
            with contextlib.suppress(FirewallError):
                Firewall.open(ns, ns).unload()
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _udp_received(rx: str, tx: str, port: int, count: int) -> int:
    """Datagrams of `count` sent from namespace `tx` that reached RX_IP:`port` in `rx`."""
    from bpfguard.firewall.netns import entered

    with entered(rx):
        rsock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with entered(tx):
        tsock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rsock, tsock:
        rsock.bind((RX_IP, port))
        rsock.settimeout(1.0)
        for _ in range(count):
            tsock.sendto(b"x", (RX_IP, port))
        got = 0
        with contextlib.suppress(TimeoutError):
            while got < count:
                rsock.recv(64)
                got += 1
    return got


def _bpfguard(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "bpfguard", *args], capture_output=True,
                       text=True, timeout=60, cwd=REPO)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def _firewalls_in(text: str) -> set[str]:
    """The interfaces the agent exports firewall counters for."""
    return {smp.labels["interface"] for fam in text_string_to_metric_families(text)
            for smp in fam.samples if smp.name == "bpfguard_firewall_packets_total"}


def test_firewall_rule_added_through_the_socket_takes_effect_and_is_counted_at_once(
        tmp_path: Path, start_agent: Callable[[Path | None], AgentProcess],
        netns_pair: tuple[str, str]) -> None:
    rx, tx = netns_pair
    label = f"{rx}@{rx}"
    cfg, sock, port = _config(tmp_path, "rules: {enabled: false}\npolicies: {enabled: false}\n"
                                        f"firewall:\n  interfaces:\n"
                                        f"  - {{interface: {rx}, netns: {rx}}}\n")
    agent = start_agent(cfg)
    assert _firewalls_in(_metrics(port)) == {label}
    mark = len(agent.log)
    out = _bpfguard("firewall", "rule", "add", "--src", TX_IP, "--proto", "udp", "--dport",
                    "9000", "--action", "drop", "--iface", rx, "--netns", rx,
                    "--socket", str(sock)).stdout
    assert out == f"rule 1: --src {TX_IP}/32 --proto udp --dport 9000 --action drop\n"
    said = agent.wait_log("changed through the control socket", start=mark, timeout=5)
    assert said.endswith(f"firewall on {label}, changed through the control socket: "
                         f"{out.strip()}")
    # the agent's metrics know the rule before any packet met it
    assert _metric(_metrics(port), "bpfguard_firewall_rule_packets_total", interface=label,
                   rule="1") == 0
    assert _udp_received(rx, tx, 9000, 3) == 0
    assert _udp_received(rx, tx, 9001, 2) == 2
    text = _metrics(port)
    assert _metric(text, "bpfguard_firewall_rule_packets_total", interface=label, rule="1") == 3
    assert _metric(text, "bpfguard_firewall_packets_total", interface=label,
                   action="drop_rule") == 3
    # the agent's refusals are the direct command's, and it keeps serving
    bad = _bpfguard("firewall", "rule", "add", "--src", "198.18.99.1/24", "--action", "drop",
                    "--iface", rx, "--netns", rx, "--socket", str(sock), check=False)
    assert bad.returncode == 1
    assert bad.stderr == ("bpfguard: error: --src: '198.18.99.1/24' has host bits set; did you "
                          "mean 198.18.99.0/24?\n")
    gone = _bpfguard("firewall", "mode", "nosuch0", "audit", "--socket", str(sock), check=False)
    assert gone.returncode == 1 and "no bpfguard firewall on nosuch0" in gone.stderr
    out = _bpfguard("firewall", "rule", "del", "--id", "1", "--iface", rx, "--netns", rx,
                    "--socket", str(sock)).stdout
    assert out.startswith("deleted rule 1: ")
    assert _udp_received(rx, tx, 9000, 1) == 1
    assert agent.stop() == 0
    # loaded at start and changed through the agent: nothing to adopt or warn of
    assert [ln for ln in agent.log if "adopted" in ln or "WARNING" in ln] == []


def test_firewalls_loaded_adopted_and_unloaded_through_the_socket_follow_in_metrics(
        tmp_path: Path, start_agent: Callable[[Path | None], AgentProcess],
        netns_pair: tuple[str, str]) -> None:
    rx, tx = netns_pair
    label = f"{tx}@{tx}"
    cfg, sock, port = _config(tmp_path, "rules: {enabled: false}\npolicies: {enabled: false}")
    agent = start_agent(cfg)
    where = ["--netns", tx, "--socket", str(sock)]
    # loaded without the agent (--direct): the agent takes it up at its next scrape
    mark = len(agent.log)
    out = _bpfguard("firewall", "load", tx, "--direct", *where).stdout
    assert out.startswith(f"firewall on {tx}: enforce mode, policy allow, 0 rule(s)")
    assert _firewalls_in(_metrics(port)) == {label}
    agent.wait_log(f"firewall on {label}: adopted the pinned one", start=mark, timeout=5)
    assert _bpfguard("firewall", "mode", tx, "audit", *where).stdout == \
        f"firewall on {tx}: audit mode\n"
    agent.wait_log(f"firewall on {label}, changed through the control socket: "
                   f"firewall on {tx}: audit mode", start=mark, timeout=5)
    # changed, replaced and unloaded around the agent: each next scrape follows
    _bpfguard("firewall", "rule", "add", "--dst", RX_IP, "--action", "drop", "--direct", *where)
    assert _metric(_metrics(port), "bpfguard_firewall_rule_packets_total", interface=label,
                   rule="1") == 0
    _bpfguard("firewall", "unload", tx, "--direct", *where)
    _bpfguard("firewall", "load", tx, "--direct", *where)     # a new one: no rules
    text = _metrics(port)
    assert _firewalls_in(text) == {label}
    assert "bpfguard_firewall_rule_packets_total{" not in text
    _bpfguard("firewall", "unload", tx, "--direct", *where)
    assert _firewalls_in(_metrics(port)) == set()
    # a firewall loaded through the agent, from a config file it never opens
    conf = tmp_path / "fw.yaml"
    conf.write_text(f"rules:\n  - {{src: {RX_IP}, proto: udp, action: drop}}\n")
    out = _bpfguard("firewall", "load", tx, "-c", str(conf), *where).stdout
    assert out.startswith(f"firewall on {tx}: enforce mode, policy allow, 1 rule(s)")
    assert _firewalls_in(_metrics(port)) == {label}
    st = json.loads(_bpfguard("agent", "status", "--json", "--socket", str(sock)).stdout)
    assert f"firewall on {label}" in st["running"]
    conf.write_text("rules:\n  - {dst: 198.18.99.300, action: drop}\n")
    bad = _bpfguard("firewall", "load", rx, "--netns", rx, "-c", str(conf),
                    "--socket", str(sock), check=False)
    assert bad.returncode == 1
    assert f"{conf}:2: rules[0].dst: '198.18.99.300' is not an IPv4" in bad.stderr
    assert _firewalls_in(_metrics(port)) == {label}
    assert _bpfguard("firewall", "unload", tx, *where).stdout == f"firewall removed from {tx}\n"
    assert _firewalls_in(_metrics(port)) == set()
    assert agent.stop() == 0
    # without an agent the same commands act on the pins themselves
    _bpfguard("firewall", "load", tx, *where)
    out = _bpfguard("firewall", "rule", "add", "--dst", TX_IP, "--action", "pass", *where).stdout
    assert out == f"rule 1: --dst {TX_IP}/32 --action pass\n"
    _bpfguard("firewall", "unload", tx, *where)


def test_a_failed_start_unloads_the_firewalls_it_loaded(
        tmp_path: Path, netns_pair: tuple[str, str]) -> None:
    from bpfguard.firewall.xdp import FIREWALL_PINS

    rx, tx = netns_pair
    Path(tmp_path / "bad.yaml").write_text("rules:\n  - {dst: 198.18.99.300, action: drop}\n")
    cfg, _sock, _port = _config(tmp_path, "rules: {enabled: false}\npolicies: {enabled: false}\n"
                                          "firewall:\n  interfaces:\n"
                                          f"  - {{interface: {rx}, netns: {rx}}}\n"
                                          f"  - {{interface: {tx}, netns: {tx}, "
                                          f"config: {tmp_path / 'bad.yaml'}}}\n")
    r = _bpfguard("run", "-c", str(cfg), check=False)
    assert r.returncode != 0
    assert "198.18.99.300" in r.stderr
    assert f"firewall on {rx}@{rx}: loaded" in r.stderr   # attached, then taken off again
    assert not (FIREWALL_PINS / f"{rx}@{rx}").exists()


def _drop_maps(after_id: int) -> list[int]:
    return [m["id"] for m in _bpftool("map", "show")
            if m["id"] > after_id and m.get("name") == "drops"]


def _kernel_drops(map_ids: list[int]) -> int:
    total = 0
    for mid in map_ids:
        for entry in _bpftool("map", "dump", "id", str(mid)):
            for cpu in entry["values"]:
                total += int.from_bytes(bytes(int(b, 16) for b in cpu["value"]), "little")
    return total


def test_metrics_expose_ring_buffer_drops_that_match_the_kernel_counters(
        tmp_path: Path, start_agent: Callable[[Path | None], AgentProcess]) -> None:
    last_map = max((m["id"] for m in _bpftool("map", "show")), default=0)
    cfg, _sock, port = _config(tmp_path, "sensors: {ringbuf_kb: 64}\nrules: {pushdown: false}\n"
                                         "policies: {enabled: false}", bpf_stats=True)
    agent = start_agent(cfg)
    maps = _drop_maps(last_map)
    assert len(maps) == 1, maps
    # a storm of traced syscalls far beyond what 64 KiB of ring buffer holds
    storm = subprocess.run([sys.executable, "-c",
                            "import os\nfor _ in range(200000): os.close(os.open('/etc/hostname', "
                            "os.O_RDONLY))"], check=True)
    assert storm.returncode == 0
    # the kernel counter read before and after a scrape; equal once the host is quiet
    for _ in range(40):
        kernel = _kernel_drops(maps)
        text = _metrics(port)
        exposed = _metric(text, "bpfguard_kernel_drops_total", sensors="sensor") - \
            _metric(text, "bpfguard_kernel_drops_total", sensors="sensor",
                    reason="recursion_miss")
        after = _kernel_drops(maps)
        assert kernel <= exposed <= after
        if kernel == after:
            break
        time.sleep(0.5)
    assert kernel > 1000, "the storm was meant to overflow the ring buffer"
    assert exposed == kernel == after
    # the rest of the agent's view of itself
    assert _metric(text, "bpfguard_events_total", type="syscall") > 0
    assert _metric(text, "bpfguard_bpf_program_runs_total", object="sensor") > 200000
    assert _metric(text, "bpfguard_bpf_program_run_seconds_total", object="sensor") > 0
    assert _metric(text, "bpfguard_output_queue_depth", output="stdout") >= 0
    assert _metric(text, "process_resident_memory_bytes") > 0
    assert _metric(text, "bpfguard_up") == 1
    # and the alerts stream says so too, as Falco's drop alerts
    assert agent.stop() == 0
    reported = sum(int(a["output_fields"]["n_drops"]) for a in agent.seen + _drain(agent)
                   if a["rule"] == "Falco internal: syscall event drop")
    assert reported >= kernel


def test_every_alert_a_small_output_queue_drops_is_counted_in_the_stream(
        tmp_path: Path, start_agent: Callable[[Path | None], AgentProcess]) -> None:
    """(issue 22, defect 4) with a 64-alert queue, a storm of alerts: the
    n_drops of the drop alerts add up to what the metrics count, kernel
    drops and the queue's alike."""
    cfg, _sock, port = _config(tmp_path, "outputs: {queue_size: 64}\npolicies: {enabled: false}")
    agent = start_agent(cfg)
    storm = tmp_path / "shadowstorm"
    shutil.copy2(os.path.realpath(sys.executable), storm)   # an untrusted reader
    subprocess.run([str(storm), "-I", "-S", "-c", "import os\nfor _ in range(20000): "
                    "os.close(os.open('/etc/shadow', os.O_RDONLY))"], check=True)
    last = None
    for _ in range(60):   # until the counts stop moving
        text = _metrics(port)
        now = (_metric(text, "bpfguard_output_dropped_total", output="stdout"),
               _metric(text, "bpfguard_kernel_drops_total"),
               _metric(text, "bpfguard_output_sent_total", output="stdout"))
        if now == last:
            break
        last = now
        time.sleep(0.5)
    queue_dropped, kernel_dropped, _ = now
    assert queue_dropped > 0, "the storm was meant to overflow the queue"
    assert agent.stop() == 0
    drops = [a["output_fields"] for a in agent.seen + _drain(agent)
             if a["rule"] == "Falco internal: syscall event drop"]
    assert sum(int(f["n_drops"]) for f in drops if "n_drops_output_queue_full" in f) \
        == queue_dropped
    assert sum(int(f["n_drops"]) for f in drops if "n_drops_output_queue_full" not in f) \
        == kernel_dropped


def _drain(agent: AgentProcess) -> list[dict[str, Any]]:
    out = []
    with contextlib.suppress(queue.Empty):
        while True:
            out.append(agent.alerts.get(timeout=1))
    return out


_LOGGED = """
import os, pyseccomp as sc
f = sc.SyscallFilter(defaction=sc.ALLOW)
f.add_rule(sc.LOG, "getppid")
f.load()
os.getppid()
"""


def test_seccomp_audit_turns_logged_syscalls_into_alerts(
        tmp_path: Path, start_agent: Callable[[Path | None], AgentProcess]) -> None:
    cfg, _sock, _ = _config(tmp_path, "rules: {enabled: false}\npolicies: {enabled: false}\n"
                                      "seccomp_audit: {enabled: true}")
    agent = start_agent(cfg)
    p = subprocess.Popen([sys.executable, "-c", _LOGGED])
    assert p.wait() == 0
    alert = agent.wait_alert(lambda a: a["rule"] == "Seccomp logged a syscall"
                             and a["output_fields"]["proc.pid"] == p.pid, timeout=5)
    fields = alert["output_fields"]
    assert fields["syscall.type"] == "getppid" and fields["seccomp.action"] == "SCMP_ACT_LOG"
    assert alert["source"] == "seccomp" and alert["priority"] == "Notice"
    assert agent.stop() == 0
