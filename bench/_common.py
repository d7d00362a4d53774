"""What the benchmarks share: running build steps, statistics of paired
differences, compiling the loop and the empty BPF program (the peer),
checking for other BPF programs, and the root/signal/temp-dir frame."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Container
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(cmd: list[str], what: str) -> None:
    """Runs a build step; BenchError with its output if it fails."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        raise BenchError(f"{what}: {cmd[0]} not found") from None
    if r.returncode:
        raise BenchError(f"{what} failed:\n{r.stdout}{r.stderr}")


def iqr_half(xs: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    q = statistics.quantiles(xs, n=4)
    return (q[2] - q[0]) / 2


def median_se(xs: list[float]) -> float:
    """Standard error of a median, estimated from the IQR (robust to outliers)."""
    return 0.93 * 2 * iqr_half(xs) / math.sqrt(len(xs)) if xs else 0.0


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def fmt(v: float | None, spec: str = "{:.1f}") -> str:
    return "-" if v is None else spec.format(v)


def compile_loop(tmp: Path) -> Path:
    """bench/loop.c, compiled into tmp."""
    loop = tmp / "loop"
    run(["gcc", "-O2", "-Wall", "-o", str(loop), str(BENCH / "loop.c")], "compile bench/loop.c")
    return loop


def compile_empty(tmp: Path) -> Path:
    """bench/empty.bpf.c (the empty raw_tp programs) with bpf/Makefile's flags, into tmp."""
    machine = os.uname().machine
    arch = {"x86_64": "x86", "aarch64": "arm64"}.get(machine, machine)
    empty = tmp / "empty.bpf.o"
    run([os.environ.get("CLANG", "clang"), "-O2", "-g", "-target", "bpf",
         f"-D__TARGET_ARCH_{arch}", "-Wall", "-Werror", "-Wno-unused-function",
         "-I", str(REPO / "build"), "-I", str(REPO / "bpf" / "include"),
         "-c", str(BENCH / "empty.bpf.c"), "-o", str(empty)], "compile bench/empty.bpf.c")
    return empty


def ensure_object(name: str) -> Path:
    """src/bpfguard/_bpf/NAME.bpf.o, built by `make -C bpf` when it (or
    vmlinux.h) is missing; a warning when its sources are newer."""
    obj = REPO / "src" / "bpfguard" / "_bpf" / f"{name}.bpf.o"
    if not (REPO / "build" / "vmlinux.h").exists() or not obj.exists():
        log(f"build/vmlinux.h or {obj.name} is missing: running make -C bpf")
        run(["make", "-C", str(REPO / "bpf")], "make -C bpf")
    srcs = [REPO / "bpf" / f"{name}.bpf.c", *(REPO / "bpf" / "include").glob("*.h"),
            *(REPO / "bpf" / "lib").glob("*.h")]
    newer = [s.name for s in srcs if s.stat().st_mtime > obj.stat().st_mtime]
    if newer:
        log(f"warning: {obj} is older than {', '.join(newer)}: run `make -C bpf` "
            "to measure the current source")
    return obj


def foreign_links(ours: Container[int] = ()) -> set[str] | None:
    """BPF links attached now whose program is not one of `ours`; None without
    bpftool. Someone else's program on sys_enter (another user's test run, say)
    runs for every syscall on the machine and skews every configuration."""
    exe = shutil.which("bpftool")
    if exe is None:
        return None
    r = subprocess.run([exe, "-j", "link", "show"], capture_output=True, text=True)
    try:
        links = json.loads(r.stdout) if r.returncode == 0 else []
    except ValueError:
        return None
    return {f"{ln.get('type')}:{ln.get('tp_name') or ln.get('attach_type') or ln.get('id')}"
            for ln in links if ln.get("prog_id") not in ours}


def guarded(script: str, body: Callable[[Path], int], *,
            interrupted: str = "interrupted: everything detached") -> int:
    """Runs body(tmpdir) as root, SIGTERM treated as Ctrl-C: the exit code, 1 on
    BenchError (said), 130 when interrupted, 2 when not root."""
    if os.geteuid() != 0:
        log(f"needs root (BPF): sudo .venv/bin/python bench/{script}")
        return 2

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        with tempfile.TemporaryDirectory(prefix="bpfguard-bench-") as tmpdir:
            return body(Path(tmpdir))
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        log(interrupted)
        return 130


def emit(rep: dict[str, Any], as_json: bool, print_report: Callable[[dict[str, Any]], None]) \
        -> int:
    """Prints the report (JSON, or the script's table and the run's length); exit code 0."""
    if as_json:
        print(json.dumps(rep, indent=2))
    else:
        print_report(rep)
        print(f"\n({rep['params']['elapsed_s']} s)")
    return 0
