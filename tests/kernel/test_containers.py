"""Containers and pods for real: podman and containerd started here, the agent
as a process, Falco's stock rules and TracingPolicies scoped to pods.

The runtimes and the image are what scripts/container-images prepares
(localhost/bgtest/busybox:1.0, made offline); podman's API service is started
by this module on a private socket, containerd is started if its socket does
not answer. The 6.1 guest has no container runtime: these run on the host.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bpfguard.rules import stock_rules_path

from .test_agent import READY, AgentProcess, _config, _metric, _metrics

pytestmark = [pytest.mark.kernel, pytest.mark.host_covers]

IMAGE = "localhost/bgtest/busybox:1.0"
CONTAINERD = "/run/containerd/containerd.sock"
REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check,
                          timeout=timeout)


def _answers(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """podman's API on a private socket and containerd, with the test image in both."""
    for tool in ("podman", "ctr", "containerd", "runc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup installs it)")
    if not _answers(["podman", "image", "exists", IMAGE]):
        pytest.skip(f"{IMAGE} is missing (scripts/container-images builds it)")
    with contextlib.ExitStack() as stack:
        if not _answers(["ctr", "--connect-timeout", "2s", "version"]):
            log = open(tmp_path_factory.mktemp("containerd") / "log", "w")  # noqa: SIM115
            stack.callback(log.close)
            proc = subprocess.Popen(["containerd"], stdout=log, stderr=log,
                                    start_new_session=True)
            stack.callback(lambda: (proc.terminate(), proc.wait(30)))
            deadline = time.monotonic() + 20
            while not _answers(["ctr", "--connect-timeout", "2s", "version"]):
                assert time.monotonic() < deadline, "containerd did not start"
                time.sleep(0.2)
        if not _answers(["ctr", "-n", "default", "images", "check", f"name=={IMAGE}"]) or \
                IMAGE not in _run("ctr", "-n", "default", "images", "ls", "-q").stdout:
            pytest.skip(f"{IMAGE} is missing in containerd (scripts/container-images)")
        sock = tmp_path_factory.mktemp("podman") / "podman.sock"
        service = subprocess.Popen(["podman", "system", "service", "--time=0",
                                    f"unix://{sock}"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        stack.callback(lambda: (service.terminate(), service.wait(30)))
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert time.monotonic() < deadline, "podman system service did not start"
            time.sleep(0.1)
        # its first answer opens the storage (seconds, cold); a service that
        # has run for a while answers in milliseconds, as the tests assume
        _run("podman", "--url", f"unix://{sock}", "ps")
        yield {"podman": str(sock), "containerd": CONTAINERD}


@pytest.fixture
def agent_with(tmp_path: Path, runtimes: dict[str, str]
               ) -> Iterator[Callable[..., tuple[AgentProcess, Path, int]]]:
    started: list[AgentProcess] = []

    def start(*, podman: str | None = None, rules: list[str] | None = None,
              policies: list[str] = (), extra: str = "") -> tuple[AgentProcess, Path, int]:
        pol_dir = tmp_path / "policies"
        pol_dir.mkdir(exist_ok=True)
        for i, text in enumerate(policies):
            (pol_dir / f"p{i}.yaml").write_text(text)
        files = json.dumps(rules or [str(stock_rules_path())])
        policy_files = json.dumps([str(pol_dir)] if policies else [])
        text = (f"containers:\n  podman: {podman or runtimes['podman']}\n  docker: ''\n"
                f"  containerd: {runtimes['containerd']}\n"
                f"rules:\n  files: {files}\n"
                f"policies:\n  defaults: false\n  files: {policy_files}\n{extra}")
        path, sock, port = _config(tmp_path, text)
        agent = AgentProcess(path)
        started.append(agent)
        agent.wait_log(READY)
        return agent, sock, port

    yield start
    for a in started:
        try:
            a.stop()
        except subprocess.TimeoutExpired:
            a.proc.kill()
            a.stop()


def _name() -> str:
    return "bg" + uuid.uuid4().hex[:8]


def _fields(a: dict[str, Any]) -> dict[str, Any]:
    return a.get("output_fields", {})


# Falco users append fields to a stock rule's output with an override; the
# suggested fields (container, image, pod) are appended by bpfguard as by Falco.
SHADOW_OVERRIDE = """
- rule: Read sensitive file untrusted
  output: Sensitive file opened for reading by non-trusted program | file=%fd.name
    process=%proc.name privileged=%container.privileged image=%container.image
  override:
    output: replace
"""


def test_alerts_name_the_podman_and_containerd_container(
        agent_with: Callable[..., tuple[AgentProcess, Path, int]], tmp_path: Path) -> None:
    override = tmp_path / "override.yaml"
    override.write_text(SHADOW_OVERRIDE)
    agent, _, _ = agent_with(rules=[str(stock_rules_path()), str(override)])
    started: dict[str, bool] = {}
    for privileged in (False, True):
        name = _name()
        flags = ["--privileged"] if privileged else []
        _run("podman", "run", "--rm", *flags, "--name", name, IMAGE, "cat", "/etc/shadow")
        started[name] = privileged
        cname = _name()
        _run("ctr", "-n", "default", "run", "--rm", *flags, IMAGE, cname, "cat", "/etc/shadow")
        started[cname] = privileged
    for name, privileged in started.items():
        try:
            a = agent.wait_alert(lambda a, n=name: _fields(a).get("container.name") == n,
                                 timeout=15)
        except AssertionError:
            print(name, [(_fields(x), x["output"]) for x in agent.seen], agent.log)
            raise
        f = _fields(a)
        assert a["rule"] == "Read sensitive file untrusted"
        assert f["container.image.repository"] == "localhost/bgtest/busybox"
        assert f["container.image.tag"] == "1.0"
        assert f["container.image"] == IMAGE
        assert f["container.privileged"] is privileged, (name, f)
        assert f"container_name={name} " in a["output"]
        assert "container.metadata" not in f


def test_docker_api_and_containerd_engines_read_the_runtime(runtimes: dict[str, str]) -> None:
    """Docker's Engine API through podman's socket (it speaks it), and
    containerd's gRPC API, asked directly."""
    from bpfguard.containers.containerd import ContainerdEngine
    from bpfguard.containers.engines import DockerEngine

    name, cname = _name(), _name()
    cid = _run("podman", "run", "-d", "--name", name, "-v", "/etc:/hostetc:ro", IMAGE,
               "sleep", "60").stdout.strip()
    _run("ctr", "-n", "default", "run", "-d", IMAGE, cname, "sleep", "60")
    try:
        docker = DockerEngine(runtimes["podman"])
        c = docker.inspect(cid)
        assert c is not None and (c.name, c.image, c.privileged) == (name, IMAGE, False)
        assert c.pid and c.start_ns and cid in docker.running()
        assert [m.text() for m in c.mounts] == ["/etc:/hostetc::false:rprivate"]
        ctrd = ContainerdEngine(runtimes["containerd"])
        k = ctrd.inspect(cname)
        assert k is not None and (k.name, k.image, k.privileged) == (cname, IMAGE, False)
        assert k.image_digest and k.image_digest.startswith("sha256:") and k.pid
        assert cname in ctrd.running() and ctrd.inspect("no-such-container") is None
        # an exec'd process exiting (kubectl exec) is no stop of the container;
        # its own task exiting is
        stop, seen = threading.Event(), []
        follower = threading.Thread(target=lambda: seen.extend(ctrd.events(stop)), daemon=True)
        follower.start()
        time.sleep(0.5)
        _run("ctr", "-n", "default", "task", "exec", "--exec-id", "e1", cname, "true")
        time.sleep(1)
        assert ("stop", cname) not in seen
        _run("ctr", "-n", "default", "task", "kill", "-s", "9", cname)
        deadline = time.monotonic() + 10
        while ("stop", cname) not in seen:
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
        stop.set()
        follower.join(5)
        assert not follower.is_alive()
        docker.close()
        ctrd.close()
    finally:
        _run("podman", "rm", "-f", "-t", "0", name, check=False)
        _run("ctr", "-n", "default", "task", "kill", "-s", "9", cname, check=False)
        deadline = time.monotonic() + 10
        while _run("ctr", "-n", "default", "containers", "rm", cname, check=False).returncode:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)


def test_falcos_container_rules_fire_in_containers_and_not_on_the_host(
        agent_with: Callable[..., tuple[AgentProcess, Path, int]], tmp_path: Path) -> None:
    agent, _, _ = agent_with()
    # event-generator's triggers: debugfs run in a privileged container (here the
    # host's static busybox bound in under that name: not an upper-layer file), and
    # a binary written into the container's overlay upper layer, then executed
    busybox = os.path.realpath(shutil.which("busybox") or "/bin/busybox")
    debug, drop = _name(), _name()
    _run("podman", "run", "--rm", "--privileged", "--name", debug,
         "-v", f"{busybox}:/usr/sbin/debugfs:ro", IMAGE, "/usr/sbin/debugfs", "-V", check=False)
    # (busybox under a name that is no applet exits 127: it was executed all the same)
    # it stays a second: one removed (--rm) within milliseconds may be gone
    # before a loaded machine's runtime answers its lookup, and its alert is then
    # marked container.metadata=unknown (a limit the README states; this test
    # is about the rule)
    _run("podman", "run", "--rm", "--name", drop, IMAGE, "sh", "-c",
         "cp /bin/busybox /tmp/dropped && /tmp/dropped; sleep 1", check=False)
    a = agent.wait_alert(lambda a: a["rule"] == "Debugfs Launched in Privileged Container",
                         timeout=15)
    assert _fields(a)["container.name"] == debug
    a = agent.wait_alert(lambda a: a["rule"] == "Drop and execute new binary in container",
                         timeout=15)
    assert f"container_name={drop} " in a["output"]
    # the same on the host: no container, no alert
    host_debugfs = tmp_path / "debugfs"
    host_debugfs.symlink_to(busybox)
    subprocess.run([str(host_debugfs), "-V"], capture_output=True, check=False)
    dropped = tmp_path / "dropped"
    shutil.copy2(busybox, dropped)
    subprocess.run([str(dropped)], capture_output=True, check=False)
    time.sleep(2)
    rules = [a["rule"] for a in agent.seen if _fields(a).get("container.id") == "host"]
    assert "Debugfs Launched in Privileged Container" not in rules
    assert "Drop and execute new binary in container" not in rules


def test_the_seccomp_audit_names_the_container(
        agent_with: Callable[..., tuple[AgentProcess, Path, int]], tmp_path: Path) -> None:
    agent, _, _ = agent_with(extra="seccomp_audit:\n  enabled: true\n")
    profile = tmp_path / "log-uname.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["uname"], "action": "SCMP_ACT_LOG"}]}))
    name = _name()
    _run("podman", "run", "--rm", "--name", name, "--security-opt", f"seccomp={profile}",
         IMAGE, "uname")
    a = agent.wait_alert(lambda a: a["rule"] == "Seccomp logged a syscall"
                         and _fields(a).get("syscall.type") == "uname", timeout=15)
    f = _fields(a)
    assert f["container.name"] == name, (f, agent.log)
    assert f["container.image.repository"] == "localhost/bgtest/busybox"
    assert f"container_name={name} " in a["output"]


def _pod_manifest(pod: str, labels: dict[str, str], containers: list[str]) -> str:
    # podman 4.3's kube play keeps no Kubernetes namespace: the manifest's
    # labels carry it as CRI sets it on a pod's containers
    labels = {**labels, "io.kubernetes.pod.namespace": "bgns"}
    label_lines = "".join(f"    {k}: {v}\n" for k, v in labels.items())
    ctrs = "".join(f"  - name: {c}\n    image: {IMAGE}\n    command: [sleep, '300']\n"
                   for c in containers)
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  labels:\n{label_lines}"
            f"spec:\n  restartPolicy: Never\n  containers:\n{ctrs}")


@contextlib.contextmanager
def _pods(tmp_path: Path, *pods: tuple[str, dict[str, str], list[str]]) -> Iterator[None]:
    files = []
    try:
        for pod, labels, containers in pods:
            f = tmp_path / f"{pod}.yaml"
            f.write_text(_pod_manifest(pod, labels, containers))
            files.append(f)
            _run("podman", "kube", "play", str(f))
        yield
    finally:
        for f in files:
            _run("podman", "kube", "down", str(f), check=False)


KILL_SHADOW = """
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {{name: {name}}}
spec:
  {selector}
  kprobes:
  - call: sys_openat
    syscall: true
    args: [{{index: 1, type: string}}]
    selectors:
    - matchArgs: [{{index: 1, operator: Equal, values: ["/etc/shadow"]}}]
      matchActions: [{{action: Sigkill}}]
"""


def _scopes(sock: Path) -> dict[str, str]:
    r = _run(str(REPO / ".venv/bin/bpfguard") if (REPO / ".venv/bin/bpfguard").exists()
             else "bpfguard", "policy", "list", "--json", "--socket", str(sock))
    return {p["name"]: p["scope"] for p in json.loads(r.stdout)}


def _wait_scope(sock: Path, name: str, running: int) -> None:
    deadline = time.monotonic() + 20
    while (scope := _scopes(sock)[name]).find(f"({running} running)") < 0:
        assert time.monotonic() < deadline, f"{name}: scope {scope!r}"
        time.sleep(0.2)


def test_pod_and_container_selectors_kill_only_in_the_selected_containers(
        agent_with: Callable[..., tuple[AgentProcess, Path, int]], tmp_path: Path) -> None:
    a_pod, b_pod = _name(), _name()
    by_pod = KILL_SHADOW.format(name="by-pod", selector="podSelector: {matchLabels: "
                                "{app: bigsecret}}")
    by_name = KILL_SHADOW.format(name="by-name", selector="containerSelector: "
                                 "{matchExpressions: [{key: name, operator: In, "
                                 "values: [vault]}]}")
    with _pods(tmp_path, (a_pod, {"app": "bigsecret"}, ["main"]),
               (b_pod, {"app": "other"}, ["main", "vault"])):
        agent, sock, _ = agent_with(policies=[by_pod, by_name])
        _wait_scope(sock, "by-pod", 1)
        _wait_scope(sock, "by-name", 1)
        scopes = _scopes(sock)
        assert scopes["by-pod"] == "pods app=bigsecret (1 running)"
        assert scopes["by-name"] == "containers name in (vault) (1 running)"

        def cat(container: str) -> int:
            return _run("podman", "exec", container, "cat", "/etc/shadow",
                        check=False).returncode

        assert cat(f"{a_pod}-main") == 137           # podSelector's pod: killed
        assert cat(f"{b_pod}-vault") == 137          # containerSelector's container: killed
        assert cat(f"{b_pod}-main") == 0             # the neighbour, in the same pod
        assert subprocess.run(["cat", "/etc/shadow"], capture_output=True).returncode == 0
        # the pods' names and namespace, in every alert of theirs
        a = agent.wait_alert(lambda a: _fields(a).get("k8s.pod.name") == a_pod, timeout=15)
        assert _fields(a)["k8s.ns.name"] == "bgns"
        assert "k8s_pod_name=" + a_pod in a["output"]
        pol = agent.wait_alert(lambda a: a["source"] == "tetragon" and a["rule"] == "by-pod",
                               timeout=15)
        pod = pol["tetragon"]["process_kprobe"]["process"]["pod"]
        assert (pod["name"], pod["namespace"], pod["workload"]) == (a_pod, "bgns", a_pod)
        assert pod["pod_labels"]["app"] == "bigsecret"
        assert pod["container"]["name"] == "main"
        assert pod["container"]["image"]["name"] == IMAGE
        assert pol["tetragon"]["process_kprobe"]["process"]["docker"]
    # the pods are gone: nothing left in the policies' sets
    _wait_scope(sock, "by-pod", 0)


class _SilentRuntime:
    """A unix socket that accepts and never answers: a runtime hung."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.conns.append(self.sock.accept()[0])

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.mark.parametrize("state", ["hung", "down"])
def test_a_hung_or_missing_runtime_never_stops_the_events(
        agent_with: Callable[..., tuple[AgentProcess, Path, int]], tmp_path: Path,
        state: str) -> None:
    path = tmp_path / "podman.sock"
    silent = _SilentRuntime(path) if state == "hung" else None
    try:
        agent, _, port = agent_with(podman=str(path))
        for _ in range(2):
            _run("podman", "run", "--rm", "--name", _name(), IMAGE, "cat", "/etc/shadow")
        ids: set[str] = set()
        deadline = time.monotonic() + 15
        while len(ids) < 2:
            a = agent.wait_alert(lambda a: a["rule"] == "Read sensitive file untrusted"
                                 and _fields(a).get("container.id") not in ids | {"host"},
                                 timeout=max(0.1, deadline - time.monotonic()))
            f = _fields(a)
            ids.add(f["container.id"])
            assert f["container.name"] is None     # the runtime could not say: absent
            assert f["container.metadata"] in ("pending", "unknown")
        m = _metrics(port)
        assert _metric(m, "bpfguard_container_unenriched_events_total") >= 2
        if state == "hung":   # each lookup gives up after its timeout (2 s): counted then
            deadline = time.monotonic() + 10
            while _metric(_metrics(port), "bpfguard_container_lookups_total",
                          result="failed") < 1:
                assert time.monotonic() < deadline, "no failed lookup counted"
                time.sleep(0.5)
    finally:
        if silent is not None:
            silent.close()
