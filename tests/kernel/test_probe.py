"""The feature probe against the real kernel: its answers, their consistency
with the loader, isolation between probes, and that it leaves nothing behind."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bpfguard.errors import ConfigError, LoadError
from bpfguard.loader import BpfObject, bpf_object_path
from bpfguard.loader.net import XdpAttachment
from bpfguard.probe import (
    FEATURE_NAMES,
    Features,
    _probes,
    _system,
    features,
    probe_features,
    render_table,
)

pytestmark = pytest.mark.kernel

# The probe program and section behind each BPF-trampoline feature.
TRAMPOLINE_PROGS = {
    "fentry": "bgp_fentry",
    "fexit": "bgp_fexit",
    "fmod_ret": "bgp_fmod_ret",
    "lsm": "bgp_lsm",
    "d_path": "bgp_d_path",
}


def _open_only(prog: str) -> BpfObject:
    """probe.bpf.o with only `prog` to load, straight through the loader."""
    obj = BpfObject.open(bpf_object_path("probe"))
    for p in obj.programs:
        p.autoload = p.name == prog
    for m in ("bgp_ring", "bgp_tstore"):
        obj.set_autocreate(m, False)
    return obj


def _cmd_json(*argv: str) -> Any:
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return json.loads(out or "[]")


def _own_bpf_fds() -> list[str]:
    kinds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("anon_inode:bpf"):
            kinds.append(target)
    return sorted(kinds)


def _leftovers() -> dict[str, Any]:
    """Everything a probe could leave behind, as seen from outside. Kernel-wide
    BPF state is narrowed to the probe's own programs (named bgp_*), since
    other tests and tools may load programs on this host meanwhile."""
    state: dict[str, Any] = {
        "threads": threading.active_count(),
        "own bpf fds": _own_bpf_fds(),
        "scratch dirs": sorted(p.name for p in Path(tempfile.gettempdir()).glob("bpfguard-*")),
        "mounts": sorted(_system.mounts()),
    }
    for point, kind in _system.mounts():
        if kind == "cgroup2":
            state[f"cgroups in {point}"] = sorted(
                p.name for p in Path(point).iterdir() if p.name.startswith("bpfguard"))
    if shutil.which("bpftool"):
        probe_progs = {p["id"]: p["name"] for p in _cmd_json("bpftool", "prog", "list", "-j")
                       if p.get("name", "").startswith("bgp_")}
        state["probe programs"] = sorted(probe_progs.values())
        state["probe links"] = sorted(probe_progs[link["prog_id"]]
                                      for link in _cmd_json("bpftool", "link", "list", "-j")
                                      if link.get("prog_id") in probe_progs)
    if shutil.which("ip"):
        state["netns"] = _cmd_json("ip", "-j", "netns", "list")
        state["links"] = sorted(link["ifname"] for link in _cmd_json("ip", "-j", "link", "show"))
    return state


def _settled(expected: dict[str, Any] | None = None) -> dict[str, Any]:
    """The state once the kernel has freed what was released: programs go
    after (RCU) grace periods, which can take seconds, so wait; a leak never
    settles. Without `expected`: wait until no probe program is left."""
    deadline = time.monotonic() + 8
    while True:
        now = _leftovers()
        done = now == expected if expected is not None else not now.get("probe programs")
        if done or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


@pytest.fixture(scope="module")
def probed() -> Iterator[tuple[Features, dict[str, Any], dict[str, Any]]]:
    """One full probe, with the host's state before and after it."""
    before = _settled()
    found = probe_features()
    yield found, before, _settled(before)


def _lockdown_word() -> str:
    text = (_system.SECURITYFS / "lockdown").read_text()
    return text[text.index("[") + 1:text.index("]")]


def test_every_feature_is_reported_with_a_reason(probed: Any) -> None:
    found: Features = probed[0]
    assert [f.name for f in found] == list(FEATURE_NAMES)
    for f in found:
        assert f.detail, f.name
        assert "probe failed" not in f.detail, f"{f.name} crashed: {f.detail}"
        if f.detail.startswith("refused:"):
            # the step, the errno by name and meaning, then what it implies
            assert re.search(r"failed with E[A-Z0-9]+ \([^)]+\)( \[verifier: [^]]+\])? — \S",
                             f.detail), f.detail


def test_sensor_prerequisites_are_available_here(probed: Any) -> None:
    found: Features = probed[0]
    for name in ("btf", "ringbuf", "raw_tp", "tp_btf", "task_storage", "tracepoint", "bpf_loop"):
        assert found.has(name), f"{name}: {found.get(name).detail}"


def test_network_hooks_on_a_veth(probed: Any) -> None:
    found: Features = probed[0]
    assert found.has("xdp_generic"), found.get("xdp_generic").detail
    assert found.has("tc"), found.get("tc").detail
    # veth has native XDP on every kernel bpfguard supports
    assert found.has("xdp_native"), found.get("xdp_native").detail
    assert found.has("cgroup"), found.get("cgroup").detail


@pytest.mark.parametrize("feature", sorted(TRAMPOLINE_PROGS))
def test_trampoline_verdict_matches_a_real_load(probed: Any, feature: str) -> None:
    """The probe's word agrees with loading the same kind of program through the loader."""
    f = probed[0].get(feature)
    with _open_only(TRAMPOLINE_PROGS[feature]) as obj:
        if f.available:
            obj.load()
            assert obj.program(TRAMPOLINE_PROGS[feature]).fd >= 0
            return
        if f.detail.startswith("refused: program load"):
            with pytest.raises(LoadError) as info:
                obj.load()
            assert _probes.errno_name(info.value.errno) in f.detail
            if info.value.errno == errno.EPERM:
                assert _probes.TRAMPOLINES_BLOCKED in f.detail


def test_lsm_refusal_says_why(probed: Any) -> None:
    found: Features = probed[0]
    lsm = found.get("lsm")
    active = (_system.SECURITYFS / "lsm").read_text().strip().split(",")
    if lsm.available:
        assert "bpf" in active
        return
    assert "LSM list" in lsm.detail
    assert ("'bpf' is in" in lsm.detail) == ("bpf" in active)
    if lsm.detail.startswith("refused:"):
        assert "failed with E" in lsm.detail


def test_d_path_needs_a_trampoline(probed: Any) -> None:
    found: Features = probed[0]
    if not found.has("fentry"):
        assert not found.has("d_path")
        assert "fentry/LSM" in found.get("d_path").detail


def test_kprobe_verdict_matches_the_pmu(probed: Any) -> None:
    kprobe = probed[0].get("kprobe")
    pmu = Path("/sys/bus/event_source/devices/kprobe").exists()
    legacy = Path("/sys/kernel/tracing/kprobe_events").exists()
    if kprobe.available:
        assert pmu or legacy
    elif not (pmu or legacy):
        assert "CONFIG_KPROBES is off" in kprobe.detail


def test_error_injection_verdict_matches_the_kernel_config(probed: Any) -> None:
    import gzip
    import os
    import re

    found = probed[0].get("error_injection")
    listed = Path("/sys/kernel/debug/error_injection/list").exists()
    config = ""
    for path in ("/proc/config.gz", f"/boot/config-{os.uname().release}"):
        if Path(path).exists():
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as f:  # type: ignore[operator]
                config = f.read()
            break
    built = bool(re.search(r"^CONFIG_FUNCTION_ERROR_INJECTION=y$", config, re.M))
    assert found.available == (listed or built)
    if not found.available and config:
        assert "CONFIG_FUNCTION_ERROR_INJECTION" in found.detail


def test_lockdown_is_the_bracketed_mode(probed: Any) -> None:
    found: Features = probed[0]
    word = _lockdown_word()
    assert found.lockdown == word
    assert found.has("lockdown")
    assert found.get("lockdown").detail.startswith(word)


def test_send_signal_really_kills(probed: Any) -> None:
    """Independently of the probe: the same program kills a child at its next syscall."""
    assert probed[0].has("send_signal"), probed[0].get("send_signal").detail
    child = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             bufsize=0)
    assert child.stdin is not None
    try:
        with _open_only("bgp_send_signal") as obj:
            obj.rodata["targ_kill_tgid"] = child.pid
            obj.rodata["targ_signal"] = int(signal.SIGKILL)
            obj.load()
            with obj.program("bgp_send_signal").attach():
                with contextlib.suppress(BrokenPipeError):
                    child.stdin.write(b"x\n")
                status = child.wait(timeout=5)
        assert status == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdin.close()


def test_write_user_follows_lockdown(probed: Any) -> None:
    """bpf_probe_write_user (usdt Set) works exactly where lockdown allows it."""
    found: Features = probed[0]
    locked = _lockdown_word() in ("integrity", "confidentiality")
    assert found.has("write_user") is not locked, found.get("write_user").detail
    if locked:
        assert "lockdown" in found.get("write_user").detail


def test_probing_leaves_nothing_behind(probed: Any) -> None:
    _, before, after = probed
    assert after == before


def test_to_dict_is_json_with_kernel_and_lockdown(probed: Any) -> None:
    found: Features = probed[0]
    data = json.loads(json.dumps(found.to_dict()))
    assert data["kernel"] == platform.release()
    assert data["lockdown"] == found.lockdown
    assert list(data["features"]) == list(FEATURE_NAMES)
    assert data["features"]["raw_tp"]["available"] is True


def test_table_shows_every_row_verbatim(probed: Any) -> None:
    found: Features = probed[0]
    console = Console(record=True, width=1000)
    console.print(render_table(found))
    text = console.export_text()
    assert f"lockdown: {found.lockdown}" in text
    for f in found:
        assert f.name in text
        assert f.detail in text  # brackets in details are not taken for markup


def test_only_probes_the_named_features_in_canonical_order() -> None:
    found = probe_features(only=["lockdown", "raw_tp"])
    assert [f.name for f in found] == ["raw_tp", "lockdown"]
    with pytest.raises(KeyError):
        found.get("ringbuf")
    assert not found.has("ringbuf")
    with pytest.raises(ConfigError, match="nope"):
        probe_features(only=["raw_tp", "nope"])


def test_a_crashing_probe_does_not_stop_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(run: Any) -> Any:
        raise RuntimeError("synthetic failure")

    monkeypatch.setitem(_probes.PROBES, "raw_tp", boom)
    found = probe_features(only=["raw_tp", "ringbuf"])
    assert not found.has("raw_tp")
    assert "RuntimeError: synthetic failure" in found.get("raw_tp").detail
    assert found.has("ringbuf")


def test_a_failing_attach_cleans_up_and_spares_its_neighbours(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def flaky(prog: Any, ifindex: int, mode: Any) -> Any:
        if mode == "native":
            raise RuntimeError("synthetic attach failure")
        return XdpAttachment(prog, ifindex, mode)

    monkeypatch.setattr("bpfguard.probe._probes.XdpAttachment", flaky)
    before = _settled()
    found = probe_features(only=["xdp_native", "xdp_generic", "tc", "cgroup"])
    assert "synthetic attach failure" in found.get("xdp_native").detail
    assert found.has("xdp_generic") and found.has("tc") and found.has("cgroup")
    assert _settled(before) == before


def test_features_is_probed_once_per_process() -> None:
    first = features()
    assert features() is first
    assert [f.name for f in first] == list(FEATURE_NAMES)
    assert os.geteuid() == 0
