"""Test policy.

Kernel tests (marked ``kernel``) need root, BTF and the built BPF objects.
Where those are missing they skip with the reason, unless
BPFGUARD_REQUIRE_KERNEL=1 (CI sets it): then a missing prerequisite fails the
test, and any skip at all fails the run, so kernel coverage can never vanish
silently.

Tests marked ``needs("lsm", ...)`` use kernel features that only some kernels
have (BPF LSM, trampolines, kprobes). Where the probe says the feature is
missing they are deselected, and the summary says which and why, unless
BPFGUARD_REQUIRE_FEATURES names the feature (scripts/vmtest sets it for the
guest kernel): then a missing feature fails the run instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REQUIRE_KERNEL = os.environ.get("BPFGUARD_REQUIRE_KERNEL") == "1"
REQUIRE_FEATURES = frozenset(f for f in os.environ.get("BPFGUARD_REQUIRE_FEATURES", "").split(",")
                             if f)

def _kernel_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "kernel has no BTF"
    try:
        from bpfguard.loader import bpf_object_path

        bpf_object_path("sensor")
        bpf_object_path("sensor-nopolicy")
        bpf_object_path("sensor-nosyscalls")
    except Exception as exc:  # BuildError with the how-to-build message
        return str(exc)
    return None


_REASON = _kernel_unavailable()


def _bpf_link_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:bpf_link":
                n += 1
        except OSError:
            pass
    return n


@pytest.fixture(autouse=True)
def _kernel_gate(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Gates kernel tests and checks that none leaves a BPF link behind."""
    if request.node.get_closest_marker("kernel") is None:
        yield
        return
    if _REASON is not None:
        if REQUIRE_KERNEL:
            pytest.fail(f"kernel test cannot run: {_REASON}")
        pytest.skip(_REASON)
    before = _bpf_link_fds()
    yield
    after = _bpf_link_fds()
    assert after <= before, f"test leaked {after - before} BPF link(s)"


_skipped: list[str] = []
_deselected: list[str] = []  # tests needing features the probe did not find, with why


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REQUIRE_KERNEL and _skipped:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    if _deselected:
        terminalreporter.write_line(
            f"{len(_deselected)} test(s) need kernel features the probe did not find here; "
            "scripts/vmtest runs them in a guest kernel that has them:")
        for line in _deselected:
            terminalreporter.write_line(f"  {line}")
    if REQUIRE_KERNEL and _skipped:
        terminalreporter.write_line(
            f"BPFGUARD_REQUIRE_KERNEL=1: {len(_skipped)} skipped test(s) count as failures: "
            + ", ".join(_skipped), red=True)



def _missing_features(names: set[str]) -> dict[str, str]:
    """Probe verdicts for `names`: feature -> why it is missing."""
    from bpfguard.probe import features

    found = features()
    return {n: found.get(n).detail for n in sorted(names) if not found.has(n)}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = {f for it in items for m in it.iter_markers("needs") for f in m.args}
    if not wanted and not REQUIRE_FEATURES:
        return
    if os.geteuid() != 0:
        return  # the kernel gate skips (or fails) these tests with its reason
    missing = _missing_features(wanted | REQUIRE_FEATURES)
    required = {f: why for f, why in missing.items() if f in REQUIRE_FEATURES}
    if required:
        raise pytest.UsageError(
            "BPFGUARD_REQUIRE_FEATURES: this kernel lacks "
            + "; ".join(f"{f} ({why})" for f, why in required.items()))
    keep, drop = [], []
    for it in items:
        lacks = [f for m in it.iter_markers("needs") for f in m.args if f in missing]
        if lacks:
            drop.append(it)
            _deselected.append(f"{it.nodeid} (kernel lacks {', '.join(lacks)})")
        else:
            keep.append(it)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
