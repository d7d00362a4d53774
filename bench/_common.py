"""What the benchmarks share: running build steps, statistics of paired
differences, and compiling the loop and the empty BPF program (the peer)."""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

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
