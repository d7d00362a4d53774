"""Test policy.

Kernel tests (marked ``kernel``) need root, BTF and the built BPF objects.
Where those are missing they skip with the reason, unless
BPFGUARD_REQUIRE_KERNEL=1 (CI sets it): then a missing prerequisite fails the
test, and any skip at all fails the run, so kernel coverage can never vanish
silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REQUIRE_KERNEL = os.environ.get("BPFGUARD_REQUIRE_KERNEL") == "1"
def _kernel_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "kernel has no BTF"
    try:
        from bpfguard.loader import bpf_object_path

        bpf_object_path("process")
        bpf_object_path("syscalls")
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


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REQUIRE_KERNEL and _skipped:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    if REQUIRE_KERNEL and _skipped:
        terminalreporter.write_line(
            f"BPFGUARD_REQUIRE_KERNEL=1: {len(_skipped)} skipped test(s) count as failures: "
            + ", ".join(_skipped), red=True)
