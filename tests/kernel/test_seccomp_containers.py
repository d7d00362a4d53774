"""Seccomp profiles for containers, for real: the OCI hook under podman with
runc, a running container recorded by name, and the profiles enforced by the
runtime itself (`podman run --security-opt seccomp=...`).

The image is scripts/container-images' (busybox, made offline). crun refuses
this host's cgroup v1/v2 hybrid layout, so runc is the runtime here; crun's
part of the runtime base is read from its source (seccomp/runtime_base.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.host_covers]

IMAGE = "localhost/bgtest/busybox:1.0"
# What runc does to set a container up, before the entrypoint: never in a profile
# the hook records unless the container's own command made it.
RUNC_SETUP = {"pivot_root", "mount", "umount2", "sethostname", "keyctl", "unshare", "setns",
              "mknodat", "symlinkat", "chroot"}
WORKLOAD = "mkdir -p /m && id && (echo hello)"


def _podman(*args: str, check: bool = True, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check,
                          timeout=timeout)


def _bpfguard(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "bpfguard", "seccomp", *args],
                       capture_output=True, text=True, timeout=120)
    assert not check or r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def hooks_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The hook installed into a private hooks directory, given to podman
    with --hooks-dir (so no other podman user on the machine is affected)."""
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup installs it)")
    if _podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.skip(f"{IMAGE} is missing (scripts/container-images builds it)")
    d = tmp_path_factory.mktemp("hooks.d")
    r = _bpfguard("hook", "install", "--dir", str(d))
    assert f"installed: {d}/bpfguard-seccomp.json" in r.stderr
    yield d
    r = _bpfguard("hook", "uninstall", "--dir", str(d))
    assert "removed" in r.stderr and not (d / "bpfguard-seccomp.json").exists()


def _traced(hooks: Path, annotation: str, *cmd: str, check: bool = True, rm: bool = True
            ) -> subprocess.CompletedProcess[str]:
    name = "bg" + uuid.uuid4().hex[:8]
    try:
        return _podman("--hooks-dir", str(hooks), "run", *(("--rm",) if rm else ()),
                       "--name", name, "--annotation",
                       f"io.containers.trace-syscall={annotation}", IMAGE, *cmd, check=check)
    finally:
        if not rm:
            _podman("rm", "-f", name, check=False)


def _confined(profile: Path, *cmd: str, opts: tuple[str, ...] = ()
              ) -> subprocess.CompletedProcess[str]:
    return _podman("run", "--rm", *opts, "--security-opt", f"seccomp={profile}", IMAGE, *cmd,
                   check=False)


@pytest.fixture(scope="module")
def recorded(hooks_dir: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("profiles") / "p.json"
    run = _traced(hooks_dir, f"of:{out}", "sh", "-c", WORKLOAD)
    # written when podman returns (the poststop stage waits for it); --rm here,
    # test_if_extends_a_base_profile runs without
    assert out.exists(), run.stderr
    return out, run


def test_the_hook_records_the_entrypoint_not_runcs_setup(
        recorded: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, run = recorded
    assert run.stdout.splitlines()[-1] == "hello"
    profile = json.loads(out.read_text())
    seen = set(profile["bpfguard"]["syscalls"]["SCMP_ARCH_X86_64"])
    assert {"mkdir", "getuid", "wait4", "execve"} <= seen  # the workload's own
    assert not seen & RUNC_SETUP
    allowed = {n for r in profile["syscalls"] if r["action"] == "SCMP_ACT_ALLOW"
               for n in r["names"]}
    assert not allowed & RUNC_SETUP
    assert {"exit_group", "exit", "rt_sigreturn", "capset", "futex"} <= allowed  # the base
    assert profile["bpfguard"]["container"]["annotation"].startswith("of:")


def test_the_recorded_profile_starts_the_container_thirty_times_of_thirty(
        recorded: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, run = recorded
    results = [_confined(out, "sh", "-c", WORKLOAD) for _ in range(30)]
    failed = [(r.returncode, r.stderr) for r in results if r.returncode or r.stdout != run.stdout]
    assert not failed, failed[:3]


def test_mount_and_unshare_get_eperm_even_with_sys_admin(
        recorded: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = recorded
    script = "mkdir -p /m; mount -t tmpfs none /m; echo mount=$?; unshare -m true; echo unshare=$?"
    bare = _confined(Path("unconfined"), "sh", "-c", script, opts=("--cap-add", "SYS_ADMIN"))
    assert bare.stdout.split() == ["mount=0", "unshare=0"], bare.stderr
    r = _confined(out, "sh", "-c", script, opts=("--cap-add", "SYS_ADMIN"))
    assert r.stdout.split() == ["mount=1", "unshare=1"], r.stderr
    # busybox words mount's EPERM so; unshare prints strerror
    assert "mount: permission denied" in r.stderr
    assert "unshare(0x20000): Operation not permitted" in r.stderr


def test_if_extends_a_base_profile(hooks_dir: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.json"
    base.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ERRNO", "archMap": [{"architecture": "SCMP_ARCH_X86_64"}],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                      "comment": "no new directories"},
                     {"names": ["uname"], "action": "SCMP_ACT_ALLOW"}]}))
    out = tmp_path / "ext.json"
    _traced(hooks_dir, f"if:{base};of:{out}", "sh", "-c", WORKLOAD, rm=False)  # no --rm here
    profile = json.loads(out.read_text())
    assert "archMap" in profile  # the base's format
    assert profile["syscalls"][:2] == json.loads(base.read_text())["syscalls"]
    assert profile["bpfguard"]["base"] == str(base)
    assert "mkdir" not in profile["bpfguard"]["added"] and "wait4" in profile["bpfguard"]["added"]
    r = _confined(out, "sh", "-c", "mkdir /n; echo $?")
    assert r.stdout == "1\n" and "Permission denied" in r.stderr  # the base's EACCES holds


def test_a_bad_annotation_stops_the_container_with_the_reason(hooks_dir: Path) -> None:
    r = _traced(hooks_dir, "of:relative.json", "true", check=False)
    assert r.returncode != 0
    assert "of:relative.json is not an absolute path" in r.stderr
    r = _traced(hooks_dir, f"of:/nonexistent-{uuid.uuid4().hex}/p.json", "true", check=False)
    assert r.returncode != 0 and "does not exist" in r.stderr


@pytest.fixture(scope="module")
def podman_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """podman's API service on a private socket."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (scripts/setup installs it)")
    sock = tmp_path_factory.mktemp("podman") / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert time.monotonic() < deadline, "podman system service did not start"
            time.sleep(0.1)
        yield str(sock)
    finally:
        service.terminate()
        service.wait(30)


def test_record_a_running_container_by_name_with_its_execs(podman_api: str,
                                                           tmp_path: Path) -> None:
    name = "bg" + uuid.uuid4().hex[:8]
    _podman("run", "-d", "--name", name, IMAGE, "sh", "-c",
            "while [ ! -e /tmp/go ]; do sleep 0.1; done; mkdir /made")
    out = tmp_path / "c.json"
    try:
        rec = subprocess.Popen([sys.executable, "-m", "bpfguard", "seccomp", "record",
                                "--container", name, "--socket", f"podman={podman_api}",
                                "--socket", "docker=", "-o", str(out)],
                               stderr=subprocess.PIPE, text=True)
        assert rec.stderr is not None
        assert "recording" in rec.stderr.readline()
        _podman("exec", name, "touch", "/tmp/go")  # joins the container: recorded too
        _, err = rec.communicate(timeout=60)  # ends when the container stops
        assert rec.returncode == 0, err
    finally:
        _podman("rm", "-f", name, check=False)
    profile = json.loads(out.read_text())
    (c,) = profile["bpfguard"]["containers"]
    assert (c["name"], c["runtime"], c["image"]) == (name, "podman", IMAGE)
    seen = set(profile["bpfguard"]["syscalls"]["SCMP_ARCH_X86_64"])
    assert "mkdir" in seen  # the container's own command
    assert "utimensat" in seen  # only the exec'd touch makes it
    # runc's setup of the exec (it enters the namespace, then joins a session
    # keyring, sets capabilities and installs the filter) is left out
    assert not seen & (RUNC_SETUP | {"seccomp"}), seen & (RUNC_SETUP | {"seccomp"})


def test_record_container_errors_name_the_runtimes(podman_api: str, tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "bpfguard", "seccomp", "record", "--container",
                        "no-such-container", "--socket", f"podman={podman_api}", "--socket",
                        "docker=", "--socket", "containerd=/nonexistent.sock", "-o",
                        str(tmp_path / "x.json")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "container 'no-such-container' not found (podman: no such container; " \
           "containerd at /nonexistent.sock" in r.stderr
