"""Container metadata: the runtimes' answers parsed, the cache, the fields, the hold."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bpfguard.agent.detect import RuleMatcher
from bpfguard.containers import Container, ContainerCache, EngineError, Mount, Pod, split_image
from bpfguard.containers.containerd import is_privileged
from bpfguard.containers.model import from_inspect, parse_time
from bpfguard.proctable import Process, ProcessTable, container_of
from bpfguard.rules.compiler import compile_condition
from bpfguard.rules.engine import Engine
from bpfguard.rules.event import RuleEvent
from bpfguard.rules.grammar import parse_condition
from bpfguard.rules.loader import load_rules_or_raise
from bpfguard.sensors.events import FileRef, SyscallEvent

CID = "ab" * 32
T0 = 1_000_000_000_000


@pytest.mark.parametrize(("ref", "split"), [
    ("localhost/bgtest/busybox:1.0", ("localhost/bgtest/busybox", "1.0", None)),
    ("busybox", ("busybox", None, None)),
    ("reg:5000/foo/bar", ("reg:5000/foo/bar", None, None)),       # a port is not a tag
    ("reg:5000/foo/bar@sha256:" + "0" * 64, ("reg:5000/foo/bar", None, "sha256:" + "0" * 64)),
    ("foo/bar:latest@sha256:" + "1" * 64, ("foo/bar", "latest", "sha256:" + "1" * 64)),
])
def test_image_references_split_as_falco_does(ref: str, split: tuple[Any, ...]) -> None:
    assert split_image(ref) == split


@pytest.mark.parametrize(("path", "found"), [
    ("/libpod_parent/libpod-" + CID, ("podman", CID)),
    ("/libpod_parent/" + "cd" * 32 + "/libpod-" + CID, ("podman", CID)),   # kube play's pods
    ("/machine.slice/libpod-" + CID + ".scope/container", ("podman", CID)),
    ("/default/bgctr1", ("containerd", "bgctr1")),                         # ctr run
    ("/k8s.io/" + CID, ("containerd", CID)),
    ("/libpod_parent/conmon", None),
    ("/default/cron.service", None),
    ("/user.slice/user-0.slice", None),
    ("/", None),
])
def test_container_ids_from_cgroup_paths(path: str, found: tuple[str, str] | None) -> None:
    assert container_of(path) == found


def test_podman_and_docker_inspect_documents() -> None:
    doc = {"Id": CID, "Name": "web", "ImageName": "localhost/ns/img:2", "Image": "f" * 64,
           "ImageDigest": "sha256:" + "e" * 64,
           "HostConfig": {"Privileged": True},
           "State": {"StartedAt": "2026-12-06T08:05:39.053034949Z", "Pid": 705},
           "Config": {"Labels": {"app": "x"}},
           "Mounts": [{"Source": "/srv", "Destination": "/data", "Mode": "z", "RW": False,
                       "Propagation": "rprivate"}]}
    c = from_inspect(doc, "podman", ("bgpod", {"app": "x"}))
    assert (c.name, c.image_repository, c.image_tag, c.image_id, c.privileged, c.pid) == \
        ("web", "localhost/ns/img", "2", "f" * 64, True, 705)
    assert c.start_ns == parse_time("2026-12-06T08:05:39.053034949Z")
    assert c.start_ns is not None and c.start_ns % 1_000_000_000 == 53034949
    assert c.mounts == (Mount("/srv", "/data", "z", False, "rprivate"),)
    assert c.mounts[0].text() == "/srv:/data:z:false:rprivate"
    # podman keeps no Kubernetes namespace: the pod is podman's, its namespace absent
    assert c.pod == Pod(name="bgpod", namespace=None, labels={"app": "x"}, workload="bgpod")
    docker = from_inspect({"Id": CID, "Name": "/web", "Image": "sha256:" + "f" * 64,
                           "Config": {"Image": "nginx:1.25", "Labels": {
                               "io.kubernetes.pod.name": "p", "io.kubernetes.pod.namespace": "ns",
                               "io.kubernetes.pod.uid": "u-1"}},
                           "HostConfig": {}, "State": {"StartedAt": "0001-01-01T00:00:00Z"}},
                          "docker")
    assert (docker.name, docker.image, docker.image_id, docker.privileged, docker.start_ns) == \
        ("web", "nginx:1.25", "f" * 64, None, None)
    assert docker.pod == Pod(name="p", namespace="ns", uid="u-1", labels={})


def test_containerd_privileged_is_what_with_privileged_makes() -> None:
    base = {"process": {"capabilities": {"bounding": ["CAP_CHOWN"]}},
            "linux": {"maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
                      "seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}},
            "mounts": [{"type": "sysfs", "destination": "/sys", "options": ["ro"]}]}
    assert not is_privileged(base)
    priv = {"process": {"capabilities": {"bounding": ["CAP_SYS_ADMIN"]}}, "linux": {},
            "mounts": [{"type": "sysfs", "destination": "/sys", "options": ["rw"]}]}
    assert is_privileged(priv)
    assert not is_privileged({**priv, "process": {"apparmorProfile": "docker-default"}})
    assert not is_privileged({})


class FakeEngine:
    """An engine whose answers the test gives; `gate` holds inspect() back."""

    name = "podman"
    socket = "/"

    def __init__(self, known: dict[str, Container], *, fail: bool = False) -> None:
        self.known, self.fail = known, fail
        self.gate = threading.Event()
        self.gate.set()
        self.asked: list[str] = []

    def inspect(self, container_id: str) -> Container | None:
        self.asked.append(container_id)
        self.gate.wait(5)
        if self.fail:
            raise EngineError("podman at /x: connection refused")
        return self.known.get(container_id)

    def running(self) -> list[str]:
        return []

    def events(self, stop: threading.Event) -> Iterator[tuple[str, str]]:
        stop.wait()
        return iter(())

    def close(self) -> None:
        pass


WEB = Container(id=CID, runtime="podman", name="web", image="localhost/ns/img:2",
                privileged=False, labels={"app": "x", "io.kubernetes.pod.name": "p"},
                pod=Pod(name="p", namespace="prod", uid="u-1", labels={"app": "x"}),
                mounts=(Mount("/srv", "/data", "", True, "rprivate"),))


def test_cache_asks_once_and_never_blocks_the_reader() -> None:
    engine = FakeEngine({CID: WEB})
    engine.gate.clear()
    seen: list[tuple[str, bool]] = []
    cache = ContainerCache([engine], on_change=lambda c, up: seen.append((c.id, up)))
    # the lookup worker only: the runtime's event follower is not under test
    threading.Thread(target=cache._work, daemon=True).start()
    try:
        t = time.monotonic()
        assert cache.get(CID, "podman") is None          # queued, not waited for
        assert cache.get(CID, "podman") is None
        assert time.monotonic() - t < 0.1
        assert cache.state(CID) == "pending"
        engine.gate.set()
        deadline = time.monotonic() + 5
        while cache.state(CID) != "known" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cache.get(CID) == WEB and engine.asked == [CID] and seen == [(CID, True)]
        cache.forget(CID)           # gone: listeners hear it, late events still see it
        assert seen[-1] == (CID, False) and cache.get(CID) == WEB
    finally:
        cache.stop()


def test_cache_with_the_runtime_down_counts_and_does_not_retry_at_once() -> None:
    engine = FakeEngine({}, fail=True)
    cache = ContainerCache([engine])
    assert cache.lookup(CID, "podman") is None
    assert cache.stats.failures == 1 and cache.state(CID) == "unknown"
    assert cache.get("cd" * 32) is None and cache.state("cd" * 32) == "unknown"  # down: not queued
    assert engine.asked == [CID]


def _open_in_container(table: ProcessTable, path: str = "/etc/shadow") -> SyscallEvent:
    table._put(Process(pid=500, ppid=1, start_ns=5, exec_id="a:5:500", comm="cat",
                       exe="/bin/cat", args=["cat", path], cgroup="/libpod_parent/libpod-" + CID))
    return SyscallEvent(type="syscall", ktime_ns=T0, pid=500, tid=500, uid=0, gid=0,
                        cgroup_id=1, comm="cat", truncated=False, syscall="openat", nr=257,
                        arch="x86_64", ret=3, errno=None, latency_ns=1,
                        args={"dirfd": "AT_FDCWD", "pathname": {"user": path, "resolved": path},
                              "flags": "O_RDONLY", "mode": 0},
                        ret_file=FileRef(path=path, ino=1, dev=1, fs_magic=0xEF53,
                                         mode=0o100640))


def test_fields_come_from_the_runtime() -> None:
    cache = ContainerCache([FakeEngine({CID: WEB})])
    table = ProcessTable(containers=cache)
    ev = _open_in_container(table)
    e = RuleEvent(1, "openat", ev, table.get(500), table, "h")

    def check(cond: str) -> bool:
        return compile_condition(parse_condition(cond))(e)

    assert not check("container.name = web")        # not known yet: absent
    cache.lookup(CID, "podman")
    assert check("container.name = web and container.image.repository = localhost/ns/img "
                 "and container.image.tag = 2 and container.privileged = false")
    assert check("k8s.pod.name = p and k8s.ns.name = prod and k8s.pod.uid = u-1 "
                 "and k8s.pod.label[app] = x and k8s.pod.labels = app:x")
    assert check("container.mounts = /srv:/data::true:rprivate "
                 "and container.mount.dest[/srv] = /data and container.mount.dest[0] = /data "
                 "and container.mount.source[/data] = /srv and container.mount.rdwr[/srv] = true "
                 "and container.mount[0] = /srv:/data::true:rprivate")
    assert not check("container.mount.dest[/nope] exists")
    assert check("container.mount.dest[/sr*] = /data")   # a glob, as Falco's sensitive_mount
    assert check("container.label[app] = x and container.labels = app:x")  # io.kubernetes.* hidden


def _matcher(cache: ContainerCache, hold_ms: int) -> tuple[RuleMatcher, ProcessTable]:
    rules = load_rules_or_raise([("r.yaml", (
        "- rule: Shadow in container\n  desc: d\n  condition: evt.type = openat and "
        "fd.name = /etc/shadow and container.id != host\n  output: read by %proc.name\n"
        "  priority: WARNING\n"))])
    table = ProcessTable(containers=cache)
    return RuleMatcher(Engine(rules.rules), table, "h", hold_ns=hold_ms * 1_000_000), table


@pytest.fixture
def gated() -> Iterator[tuple[FakeEngine, ContainerCache]]:
    """A started cache over a runtime that answers only when its gate opens."""
    engine = FakeEngine({CID: WEB})
    engine.gate.clear()
    cache = ContainerCache([engine])
    cache.start()
    yield engine, cache
    engine.gate.set()
    cache.stop()


def test_a_new_containers_events_wait_for_its_metadata(
        gated: tuple[FakeEngine, ContainerCache]) -> None:
    engine, cache = gated
    m, table = _matcher(cache, 5000)
    assert list(m.handle(_open_in_container(table))) == []    # held
    assert m.held == 1
    engine.gate.set()
    deadline = time.monotonic() + 5
    out: list[Any] = []
    while not out and time.monotonic() < deadline:
        out = m.release()
        time.sleep(0.01)
    [a] = out
    assert a.output.endswith("container_id=" + CID[:12] + " container_name=web "
                             "container_image_repository=localhost/ns/img "
                             "container_image_tag=2 k8s_pod_name=p k8s_ns_name=prod")
    assert "container.metadata" not in a.output_fields and m.unenriched == 0


def test_a_runtime_too_slow_leaves_alerts_marked_pending(
        gated: tuple[FakeEngine, ContainerCache]) -> None:
    _, cache = gated
    m, table = _matcher(cache, 50)
    assert list(m.handle(_open_in_container(table))) == []
    time.sleep(0.1)
    [a] = m.release()
    assert a.output_fields["container.name"] is None
    assert a.output_fields["container.metadata"] == "pending"
    assert m.unenriched == 1


def test_tetragon_process_pod() -> None:
    from bpfguard.outputs.tetragon import process_json

    cache = ContainerCache([FakeEngine({CID: WEB})])
    cache.lookup(CID, "podman")
    p = Process(pid=500, ppid=1, start_ns=5, exec_id="a:5:500", comm="cat", exe="/bin/cat",
                args=["cat"], cgroup="/libpod_parent/libpod-" + CID)
    d = process_json(p, node="n", containers=cache)
    assert d["docker"] == CID[:31]
    assert d["pod"] == {"namespace": "prod", "name": "p", "uid": "u-1",
                        "container": {"id": "podman://" + CID, "name": "web",
                                      "image": {"name": "localhost/ns/img:2"}},
                        "pod_labels": {"app": "x"}}   # CRI's: the owner is not known
    # no pod: no "pod" (Tetragon's for a plain container or the host)
    assert "pod" not in process_json(p, node="n")


def test_event_streams_reopen_without_repeating_and_fail_as_engine_errors() -> None:
    from bpfguard.containers.engines import _live

    stop = threading.Event()
    opened: list[int] = []
    closed: list[int] = []
    now = int(time.time())
    ev = {"Type": "container", "Action": "start", "Actor": {"ID": CID}, "time": now}
    died = {**ev, "Action": "died"}

    def open_stream(since: int) -> tuple[Iterator[Any], Callable[[], None]]:
        opened.append(since)
        if len(opened) == 3:
            raise ConnectionError("socket closed")
        # the runtime ends the stream; reopened from `since`, it replays that second
        return iter([ev, died] if len(opened) == 1 else [ev, died, {**ev, "time": now + 1}]), \
            lambda: closed.append(1)

    got = []
    with pytest.raises(EngineError, match="podman at /s: event stream: socket closed"):
        for t in _live("podman", "/s", stop, open_stream):
            got.append(t)
    assert got == [("start", CID), ("stop", CID), ("start", CID)]
    assert opened == [now, now, now + 1]


def test_a_stop_closes_a_stream_that_blocks() -> None:
    from bpfguard.containers.engines import _live

    stop, released = threading.Event(), threading.Event()

    def blocking() -> Iterator[Any]:
        released.wait(10)
        raise OSError("closed")
        yield {}   # pragma: no cover - a generator

    def open_stream(since: int) -> tuple[Iterator[Any], Callable[[], None]]:
        return blocking(), released.set

    follower = threading.Thread(target=lambda: list(_live("podman", "/s", stop, open_stream)))
    follower.start()
    time.sleep(0.1)
    stop.set()
    follower.join(5)
    assert not follower.is_alive() and released.is_set()


def test_a_host_cgroup_is_never_taken_for_a_containers() -> None:
    import os

    from bpfguard.containers import cgroup2_root, cgroup_id_of_pid

    # this process runs in a host cgroup: whatever id is asked for, no cgroup
    assert cgroup_id_of_pid(os.getpid(), cgroup2_root() or "/sys/fs/cgroup", CID) == 0


def test_an_answer_older_than_the_stop_does_not_bring_the_container_back() -> None:
    from dataclasses import replace

    engine = FakeEngine({CID: WEB})
    seen: list[tuple[str, bool]] = []
    cache = ContainerCache([engine], on_change=lambda c, up: seen.append((c.id, up)))
    engine.gate.clear()
    asking = threading.Thread(target=cache.lookup, args=(CID, "podman"))
    asking.start()
    time.sleep(0.05)
    cache.forget(CID)             # the stop event overtakes the answer
    engine.gate.set()
    asking.join(5)
    assert CID not in {c.id for c in cache.containers()} and seen == []
    # a refresh with no pid (between the stop and its event) keeps the cgroup
    engine.known[CID] = replace(WEB, cgroup_id=7)
    time.sleep(0.01)
    assert cache.lookup(CID, "podman") is not None          # a later start: known again
    engine.known[CID] = WEB
    assert cache.lookup(CID, "podman").cgroup_id == 7       # type: ignore[union-attr]


def test_find_container_asks_every_runtime() -> None:
    from bpfguard.containers import find_container
    from bpfguard.errors import ConfigError

    down = FakeEngine({}, fail=True)
    assert find_container("web", [FakeEngine({"web": WEB}), down]) is WEB
    with pytest.raises(ConfigError, match=r"'db' not found \(podman: no such container; "
                                          r"podman at /x: connection refused\)"):
        find_container("db", [FakeEngine({}), down])
    other = Container(id="f" * 64, runtime="containerd", name="web")
    with pytest.raises(ConfigError, match="'web' is ambiguous: podman has web .*; "
                                          "containerd has web"):
        find_container("web", [FakeEngine({"web": WEB}), FakeEngine({"web": other})])


def test_find_container_takes_dockers_view_of_a_container_containerd_also_lists() -> None:
    from bpfguard.containers import find_container

    docker = Container(id=CID, runtime="docker", name="web", pid=10)
    moby = Container(id=CID, runtime="containerd", name=CID, pid=10)
    assert find_container(CID, [FakeEngine({CID: moby}), FakeEngine({CID: docker})]) is docker
    stopped = Container(id="e" * 64, runtime="containerd", name="web")
    assert find_container("web", [FakeEngine({"web": stopped}),
                                  FakeEngine({"web": docker})]) is docker
