"""The loader against the real kernel: load errors, config, maps, pins, links."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from bpfguard.errors import KernelError, LoadError
from bpfguard.loader import PIN_ROOT, BpfObject, Map, RingBuffer, bpf_object_path

pytestmark = pytest.mark.kernel


def _lifecycle_object() -> BpfObject:
    """The sensor object with only its three process-lifecycle programs to load
    (the others are the policy engine's per-hook copies, which need targets)."""
    obj = BpfObject.open(bpf_object_path("sensor"))
    for p in obj.programs:
        p.autoload = p.name.startswith("bg_sched_")
    return obj


@pytest.fixture(scope="module")
def bad_object(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("bpf") / "bad.bpf.o"
    src = Path(__file__).parent / "bpf" / "bad.bpf.c"
    vmlinux_dir = Path(__file__).resolve().parents[2] / "build"  # made by bpf/Makefile
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", f"-I{vmlinux_dir}", "-c", str(src),
                    "-o", str(out)], check=True)
    return str(out)


def test_load_failure_names_program_with_verifier_log(bad_object: str) -> None:
    with BpfObject.open(bad_object) as obj, pytest.raises(LoadError) as info:
        obj.load()
    err = info.value
    assert err.program == "bad_prog"
    assert "bad_prog" in str(err)
    assert "map_value_or_null" in err.log  # the verifier's reason, from its log tail
    assert err.errno != 0 and err.strerror


def test_program_left_out_by_autoload_lets_the_rest_load(bad_object: str) -> None:
    with BpfObject.open(bad_object) as obj:
        obj.program("bad_prog").autoload = False
        obj.load()
        assert obj.program("good_prog").fd >= 0
        with obj.program("good_prog").attach() as link:
            assert link.fd >= 0
        assert not obj.links


def test_missing_object_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KernelError, match="ENOENT"):
        BpfObject.open(tmp_path / "nope.bpf.o")


def test_rodata_is_set_before_load_and_frozen_after() -> None:
    with _lifecycle_object() as obj:
        assert obj.rodata["targ_args_max"] == 4096
        obj.rodata["targ_args_max"] = 321
        obj.load()
        assert obj.rodata["targ_args_max"] == 321  # read back from the kernel map
        with pytest.raises(KernelError, match="frozen"):
            obj.rodata["targ_args_max"] = 1


def test_map_operations() -> None:
    with _lifecycle_object() as obj:
        obj.load()
        tgids = obj.map("scope_tgids")
        for pid in range(100, 150):
            tgids.update(ctypes.c_uint32(pid), ctypes.c_uint8(pid % 2 + 1))
        assert tgids.lookup(ctypes.c_uint32(101)) == b"\x02"
        assert tgids.lookup(ctypes.c_uint32(99)) is None
        keys = sorted(int.from_bytes(k, "little") for k in tgids.keys())  # noqa: SIM118
        assert keys == list(range(100, 150))
        batch = tgids.lookup_batch(count=16)  # several batches
        assert sorted(int.from_bytes(k, "little") for k, _ in batch) == keys
        assert tgids.delete(ctypes.c_uint32(100)) is True
        assert tgids.delete(ctypes.c_uint32(100)) is False
        with pytest.raises(ValueError):
            tgids.update(b"\x00", b"\x01")  # wrong key size is refused before the kernel
        drops = obj.map("drops")  # per-CPU
        assert drops.percpu
        ncpu = len(drops.lookup(ctypes.c_uint32(0)))  # type: ignore[arg-type]
        drops.update(ctypes.c_uint32(1), [ctypes.c_uint64(3)] * ncpu)
        assert drops.sum_percpu_u64(ctypes.c_uint32(1)) == 3 * ncpu


def test_pinning_under_bpffs() -> None:
    pin_dir = PIN_ROOT / f"test-{os.getpid()}"
    try:
        with _lifecycle_object() as obj:
            obj.load()
            tgids = obj.map("scope_tgids")
            tgids.update(ctypes.c_uint32(4242), ctypes.c_uint8(1))
            tgids.pin(pin_dir / "scope_tgids")
            link = obj.program("bg_sched_exit").attach()
            link.pin(pin_dir / "exit_link")
            assert (pin_dir / "exit_link").exists()
            link.unpin()
            assert not (pin_dir / "exit_link").exists()
        # the pinned map outlives the object
        with Map.from_pin(pin_dir / "scope_tgids") as pinned:
            assert pinned.lookup(ctypes.c_uint32(4242)) == b"\x01"
            assert pinned.key_size == 4 and pinned.value_size == 1
    finally:
        shutil.rmtree(pin_dir, ignore_errors=True)


def test_close_detaches_everything() -> None:
    with _lifecycle_object() as obj:
        obj.load()
        ids = []
        for p in obj.programs:
            if p.autoload:
                p.attach()
                ids.append(p.name)
        assert len(obj.links) == 3
    assert not obj.links
    listing = subprocess.run(["bpftool", "link", "list"], capture_output=True, text=True).stdout
    assert f"pid {os.getpid()}" not in listing


def test_program_stats() -> None:
    with _lifecycle_object() as obj:
        obj.load()
        st = obj.program("bg_sched_exec").stats()
        assert set(st) == {"run_cnt", "run_time_ns", "recursion_misses"}


def test_ring_buffer_wait_ended_by_a_signal_is_not_an_error() -> None:
    # A traced command's SIGCHLD lands in the agent's poll; it must read as "nothing yet".
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, _frame: fired.append(signum))
    try:
        with _lifecycle_object() as obj:
            obj.load()
            with RingBuffer(obj.map("events")) as ring:
                signal.setitimer(signal.ITIMER_REAL, 0.05)
                assert ring.poll(timeout_ms=5000) == []
                assert fired == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
