#!/usr/bin/env python3
"""Syscall-overhead benchmark: what bpfguard adds to a syscall.

Run as root from the repository root::

    sudo .venv/bin/python bench/syscall_overhead.py            # ~60-90 s
    sudo .venv/bin/python bench/syscall_overhead.py --quick    # ~15 s
    sudo .venv/bin/python bench/syscall_overhead.py --json

Two workloads, timed by a tiny C loop (bench/loop.c) around the loop only:
getppid (a syscall the sensor does not care about: one bitmap test at entry
and one at exit) and openat+close (both reported: scoped, captured, emitted).
Six configurations, all in one run: bare; an empty raw_tp program on
sys_enter only (reference); empty raw_tp programs on sys_enter and sys_exit
(the fair peer: bpfguard attaches both); the agent as a user gets it
(`bpfguard run` on its embedded default: Falco's stock rules, the default
policies in monitor mode, JSON alerts to stdout, here /dev/null), in this
process; bpfguard's SensorSet(syscalls=["openat", "close"]) scoped to the
loop, with a consumer thread decoding events (every openat and close
reported); an equivalent bpftrace program. The target is the agent's added
cost per getppid against the peer's.

Noise on a small VM drifts over seconds, so configurations are interleaved
sample by sample: every cycle attaches each configuration in turn (rotated
order) for one short sample, and a configuration's added cost is the median
over cycles of its sample minus the bare sample of the same cycle. It prints
ns added per syscall and ratios; timings are never asserted.

See bench/README.md for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    BenchError,
    compile_empty,
    compile_loop,
    emit,  # bench/, the script's own directory, is on sys.path
    guarded,
    log,
)
from _common import fmt as _f
from _common import iqr_half as _iqr_half
from _common import median_se as _median_se
from _common import ratio as _ratio
from _common import run as _run

try:
    import bpfguard  # noqa: F401
except ImportError:  # a Python without the editable install
    sys.path.insert(0, str(REPO / "src"))

from bpfguard.errors import KernelError  # noqa: E402
from bpfguard.loader import BpfObject, bpf_object_path  # noqa: E402
from bpfguard.sensors import SensorSet  # noqa: E402
from bpfguard.sensors.syscall_table import syscall_number  # noqa: E402

WORKLOADS = {
    # name: (what one iteration is, syscalls per iteration)
    "getppid": ("getppid()", 1),
    "openat": ('openat("/etc/hostname") + close()', 2),
}
PEER = "rawtp_both"
LABELS = {
    "bare": "bare",
    "rawtp_enter": "empty raw_tp, sys_enter only",
    "rawtp_both": "empty raw_tp, enter+exit (peer)",
    "agent": "bpfguard run, default config",
    "bpfguard": "bpfguard sensor, openat+close",
    "bpftrace": "bpftrace equivalent",
}
TARGET_RATIO = 1.2
RINGBUF_BYTES = 16 << 20  # SensorSet's default
# 2 events per openat iteration, at most ~1 KiB each with this path; 1.1x for the
# warm-up; keep a quarter of the ring spare
OPENAT_CAP = int(RINGBUF_BYTES * 0.75 / (2 * 1024 * 1.1))
# bpftrace's perf buffer, pages per CPU (its default is 64): room for a sample's lines
BPFTRACE_PAGES = 1024
STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
PHASE = {"config": ""}  # what is attached now, for diagnostics from other threads


# --------------------------------------------------------------------------- build

def build(tmp: Path) -> tuple[Path, Path]:
    """Compiles the loop (gcc) and the empty raw_tp object (clang) into tmp."""
    loop = compile_loop(tmp)
    if not (REPO / "build" / "vmlinux.h").exists() or not _sensor_objects_exist():
        log("build/vmlinux.h or the sensor objects are missing: running make -C bpf")
        _run(["make", "-C", str(REPO / "bpf")], "make -C bpf")
    _warn_if_stale()
    return loop, compile_empty(tmp)


def _sensor_objects_exist() -> bool:
    try:
        bpf_object_path("sensor")
    except Exception:
        return False
    return True


def _warn_if_stale() -> None:
    obj = bpf_object_path("sensor")
    srcs = [REPO / "bpf" / "sensor.bpf.c", *(REPO / "bpf" / "include").glob("*.h"),
            *(REPO / "bpf" / "lib").glob("*.h")]
    newer = [s.name for s in srcs if s.stat().st_mtime > obj.stat().st_mtime]
    if newer:
        log(f"warning: {obj} is older than {', '.join(newer)}: run `make -C bpf` "
            "to measure the current source")


# --------------------------------------------------------------------------- the loop

def _child_setup(cpu: int | None) -> Any:
    def setup() -> None:
        os.setpgrp()  # Ctrl-C reaches only the benchmark, which tears down in order
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # even if our shell ignored it
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
    return setup


class Loop:
    """bench/loop.c in serve mode: one process, one pid to scope, for the whole run."""

    def __init__(self, exe: Path, cpu: int | None) -> None:
        self.proc = subprocess.Popen([str(exe), "-s"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1,
                                     preexec_fn=_child_setup(cpu))
        self.pid = self.proc.pid
        self.iterations = {w: 0 for w in WORKLOADS}

    def run(self, mode: str, n: int) -> float:
        """Runs n iterations; returns the loop's own ns per iteration."""
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(f"{mode} {n}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        try:
            value = float(line)
        except ValueError:
            raise BenchError(f"loop {mode} {n}: {line.strip() or 'exited'}") from None
        self.iterations[mode] += n
        return value

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------- configurations

class Config:
    """open/close bracket the whole run (loading); attach/detach bracket each sample."""

    name = ""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.openat_iters = 0  # openat iterations run while attached
        self._mark = 0

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def attach(self) -> None:
        pass

    def detach(self) -> None:
        pass

    def settle(self) -> None:
        """Before detaching: waits for what must be read while still attached."""

    def quiesce(self) -> None:
        """After detaching: waits until user space has caught up, so no consumer work
        spills into the next configuration's sample."""

    def prog_stats(self) -> dict[str, tuple[int, int]]:
        """program -> (run_cnt, run_time_ns), cumulative; only while attached."""
        return {}

    def observed(self) -> dict[str, Any]:
        return {}

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        self._mark = self.loop.iterations["openat"]
        PHASE["config"] = self.name
        try:
            self.attach()
            yield
            self.settle()
        finally:
            self.detach()
            self.openat_iters += self.loop.iterations["openat"] - self._mark


class Bare(Config):
    name = "bare"


class EmptyRawTp(Config):
    def __init__(self, loop: Loop, obj: BpfObject, name: str, progs: tuple[str, ...]) -> None:
        super().__init__(loop)
        self.obj, self.name, self.progs = obj, name, progs
        self.links: list[Any] = []

    def attach(self) -> None:
        for p in self.progs:
            self.links.append(self.obj.program(p).attach())

    def detach(self) -> None:
        for link in reversed(self.links):
            link.destroy()
        self.links.clear()

    def prog_stats(self) -> dict[str, tuple[int, int]]:
        out = {}
        for p in self.progs:
            st = self.obj.program(p).stats()
            out[p] = (st["run_cnt"], st["run_time_ns"])
        return out


class Bpfguard(Config):
    """SensorSet(syscalls=["openat", "close"]) loaded once, the loop's pid in scope, a
    consumer thread decoding events as an agent does; its links come and go per sample."""

    name = "bpfguard"

    def __init__(self, loop: Loop) -> None:
        super().__init__(loop)
        self.sensors: SensorSet | None = None
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()
        self.idle = threading.Event()
        self.events = 0
        self.error: BaseException | None = None
        self.drops: dict[str, int] = {}
        self.eintr: list[str] = []

    def open(self) -> None:
        self.sensors = SensorSet(syscalls=["openat", "close"], ringbuf_bytes=RINGBUF_BYTES)
        self.sensors.scope.add_pid(self.loop.pid, follow=False, children=False)
        self.sensors.start()
        self.detach()
        self.thread = threading.Thread(target=self._consume, name="bpfguard-consumer",
                                       daemon=True)
        self.thread.start()

    def _consume(self) -> None:
        assert self.sensors is not None
        empty = 0
        try:
            while not self.stop.is_set():
                try:
                    got = sum(1 for e in self.sensors.read(timeout_ms=20)
                              if e.type == "syscall")
                except KernelError as exc:
                    # ring_buffer__poll returns -EINTR when a signal interrupts its
                    # epoll_wait; SensorSet.read raises it. Counted, then retried.
                    if exc.errno != errno.EINTR:
                        raise
                    self.eintr.append(PHASE["config"])
                    continue
                self.events += got
                empty = 0 if got else empty + 1
                if empty >= 2:
                    self.idle.set()
        except BaseException as exc:  # reported, not swallowed
            self.error = exc
            self.idle.set()

    def attach(self) -> None:
        assert self.sensors is not None
        _attach_loaded(self.sensors.obj)

    def detach(self) -> None:
        if self.sensors is not None:
            self.sensors.obj.detach_all()

    def quiesce(self) -> None:
        self.idle.clear()
        self.idle.wait(timeout=10)

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
        if self.sensors is not None:
            with contextlib.suppress(Exception):
                self.drops = {k: v for k, v in self.sensors.drops().items() if v}
            self.sensors.close()
            self.sensors = None

    def prog_stats(self) -> dict[str, tuple[int, int]]:
        assert self.sensors is not None
        return {name: (st["run_cnt"], st["run_time_ns"])
                for name, st in self.sensors.program_stats().items()
                if name.startswith("bg_sys_")}

    def observed(self) -> dict[str, Any]:
        return {"events": self.events, "expected": 2 * self.openat_iters, "drops": self.drops,
                "consumer_error": repr(self.error) if self.error else None,
                "eintr_retries": len(self.eintr),
                "eintr_while": sorted(set(self.eintr))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _attach_loaded(obj: BpfObject) -> None:
    """Attaches every program the object loaded (the sensor's lifecycle and
    syscall programs; the policy copies' programs are not loaded in it)."""
    for p in obj.programs:
        if p.fd >= 0:
            p.attach()


class DefaultAgent(Config):
    """The agent on its embedded default configuration, built in this process as
    `bpfguard run` builds it (only the control socket and the metrics port are
    private, so a running agent does not clash; neither is on the data path).
    Its reader thread runs throughout; its program links come and go per sample."""

    name = "agent"

    def __init__(self, loop: Loop, tmp: Path) -> None:
        super().__init__(loop)
        self.tmp = tmp
        self.agent: Any = None
        self.devnull: Any = None

    def open(self) -> None:
        from bpfguard.agent.config import AgentConfig, default_config
        from bpfguard.agent.daemon import Agent

        data = default_config()
        data["control"]["socket"] = str(self.tmp / "agent.sock")
        data["metrics"]["listen"] = f"127.0.0.1:{_free_port()}"
        self.devnull = open(os.devnull, "w")  # noqa: SIM115 - closed in close()
        self.agent = Agent(AgentConfig(data), stdout=self.devnull)
        self.agent.start()
        self.detach()

    def attach(self) -> None:
        _attach_loaded(self.agent.sensors.obj)

    def detach(self) -> None:
        if self.agent is not None and self.agent.sensors is not None:
            self.agent.sensors.obj.detach_all()

    def close(self) -> None:
        if self.agent is not None:
            self.agent.close()
            self.agent = None
        if self.devnull is not None:
            self.devnull.close()
            self.devnull = None

    def prog_stats(self) -> dict[str, tuple[int, int]]:
        return {name: (st["run_cnt"], st["run_time_ns"])
                for name, st in self.agent.sensors.program_stats().items()
                if name.startswith("bg_sys_")}


BPFTRACE_PROG = r"""
tracepoint:raw_syscalls:sys_enter /(args->id == %(openat)d || args->id == %(close)d) && pid == $1/
{
	@nr[tid] = args->id;
	@ts[tid] = nsecs;
	@a0[tid] = args->args[0];
	if (args->id == %(openat)d) {
		@path[tid] = str(args->args[1]);
	}
}

tracepoint:raw_syscalls:sys_exit /(args->id == %(openat)d || args->id == %(close)d) && pid == $1/
{
	if (@nr[tid] == args->id) {
		printf("%%d %%d %%s uid=%%d gid=%%d cg=%%lld nr=%%d a0=%%lld ret=%%d lat=%%lld path=%%s\n",
			pid, tid, comm, uid, gid, cgroup, args->id, @a0[tid], args->ret,
			nsecs - @ts[tid], @path[tid]);
	}
	delete(@nr[tid]);
	delete(@ts[tid]);
	delete(@a0[tid]);
	delete(@path[tid]);
}
"""


class Bpftrace(Config):
    """bpftrace doing comparable work: filter on the syscall id, then the pid; stash the
    id, entry time, first argument and (openat) the path string at entry; print one line
    per completed syscall at exit. Started per sample (it attaches in well under a
    second); its output is drained and thrown away."""

    name = "bpftrace"

    def __init__(self, loop: Loop, exe: str, script: Path, tmp: Path) -> None:
        super().__init__(loop)
        self.exe, self.script, self.tmp = exe, script, tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self.thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.lines = 0
        self.lost = 0
        self.starts = 0
        self.prog_ids: list[int] = []
        self.stderr: Any = None

    def attach(self) -> None:
        self.ready.clear()
        self.stderr = open(self.tmp / "bpftrace.stderr", "w+b")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [self.exe, str(self.script), str(self.loop.pid)], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=self.stderr, preexec_fn=_child_setup(None),
            env=dict(os.environ, BPFTRACE_PERF_RB_PAGES=str(BPFTRACE_PAGES)))
        self.thread = threading.Thread(target=self._drain, args=(self.proc,),
                                       name="bpftrace-drain", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while True:
            if self.ready.is_set():
                # "Attaching 2 probes..." is printed just before it loads and attaches
                self.prog_ids = _prog_ids_of(self.proc.pid)
                if len(self.prog_ids) >= 2:
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stderr.seek(0)
                err = self.stderr.read().decode(errors="replace").strip()
                raise BenchError(f"bpftrace did not attach (exit {self.proc.returncode}):\n{err}")
            time.sleep(0.005)
        time.sleep(0.02)
        self.starts += 1

    def settle(self) -> None:
        """bpftrace drops what its perf buffer still holds when it is stopped: let it
        print everything first (its output stops growing for 100 ms)."""
        deadline = time.monotonic() + 20
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            if self.lines != last:
                last, since = self.lines, time.monotonic()
            elif time.monotonic() - since >= 0.1:
                return
            time.sleep(0.01)

    def _drain(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout
        fd = proc.stdout.fileno()
        carry = b""
        started = False
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            done, carry = data[:cut], data[cut:]
            if not started:
                at = done.find(b"Attaching")
                if at < 0:
                    continue
                done = done[done.index(b"\n", at) + 1:]
                started = True
                self.ready.set()
            self.lines += done.count(b" nr=")  # the event lines, not the exit-time map dump
            if b"Lost " in done:
                for m in re.finditer(rb"^Lost (\d+) events", done, re.M):
                    self.lost += int(m.group(1))

    def detach(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.thread is not None:
            self.thread.join(timeout=5)
            self.thread = None
        if proc is not None and proc.stdout:
            proc.stdout.close()
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None

    def prog_stats(self) -> dict[str, tuple[int, int]]:
        out = {}
        for pid in self.prog_ids:
            r = subprocess.run(["bpftool", "prog", "show", "id", str(pid), "--json"],
                               capture_output=True, text=True)
            if r.returncode:
                continue
            info = json.loads(r.stdout)
            out[str(info.get("name", f"prog#{pid}"))] = (int(info.get("run_cnt", 0)),
                                                         int(info.get("run_time_ns", 0)))
        return out

    def observed(self) -> dict[str, Any]:
        return {"events": self.lines, "expected": 2 * self.openat_iters, "lost": self.lost,
                "starts": self.starts}


def _prog_ids_of(pid: int) -> list[int]:
    """The BPF programs a process holds, from /proc/PID/fdinfo."""
    ids = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fdinfo").iterdir():
            with contextlib.suppress(OSError):
                m = re.search(r"^prog_id:\s*(\d+)", fd.read_text(), re.M)
                if m:
                    ids.add(int(m.group(1)))
    return sorted(ids)


# --------------------------------------------------------------------------- measurement

def calibrate(loop: Loop, sample_s: float) -> dict[str, int]:
    """Iterations per sample so that a bare sample takes about sample_s; openat
    samples are capped so that one sample's events (and its warm-up's) fit in
    bpfguard's ring buffer: every event is committed, none dropped, so the cost
    measured is the whole path, not a mix with the cheaper drop path."""
    n = {}
    for w in WORKLOADS:
        loop.run(w, 20000)
        ns = statistics.median(loop.run(w, 30000) for _ in range(5))
        n[w] = max(1000, int(sample_s * 1e9 / ns))
    n["openat"] = min(n["openat"], OPENAT_CAP)
    return n


def sample(cfg: Config, loop: Loop, n: dict[str, int]) -> dict[str, float]:
    """One attachment, one sample of each workload. getppid goes first: no consumer is
    busy with the openat events yet. Then detach and wait for the consumer to finish."""
    out = {}
    with cfg.attached():
        for w in WORKLOADS:
            loop.run(w, max(1, n[w] // 10))  # warm-up: caches, task storage, predictors
            out[w] = loop.run(w, n[w])
    cfg.quiesce()
    return out


def timing(configs: dict[str, Config], loop: Loop, n: dict[str, int], cycles: int,
           started: float) -> dict[str, dict[str, list[float]]]:
    """samples[w][c][k]: cycle k's sample; within a cycle every configuration is
    attached once, in an order rotated from cycle to cycle."""
    names = list(configs)
    out = {w: {c: [] for c in names} for w in WORKLOADS}  # type: dict[str, dict[str, list[float]]]
    next_log = time.monotonic() + 10
    for k in range(cycles):
        rot = k % len(names)
        for c in names[rot:] + names[:rot]:
            for w, v in sample(configs[c], loop, n).items():
                out[w][c].append(v)
        if time.monotonic() >= next_log or k + 1 == cycles:
            log(f"cycle {k + 1}/{cycles} ({time.monotonic() - started:.0f} s)")
            next_log = time.monotonic() + 10
    return out


@contextlib.contextmanager
def bpf_stats_enabled() -> Iterator[str]:
    """kernel.bpf_stats_enabled=1 for the duration, then back to what it was."""
    old = STATS_SYSCTL.read_text().strip()
    STATS_SYSCTL.write_text("1\n")
    try:
        yield old
    finally:
        STATS_SYSCTL.write_text(old + "\n")


def stats_pass(configs: dict[str, Config], loop: Loop, n: dict[str, int],
               reps: int) -> dict[str, Any]:
    """A separate pass with kernel.bpf_stats_enabled=1 (off while timing: the accounting
    itself costs two clock reads per program run), interleaved `reps` times. Counts are
    for all CPUs."""
    names = [c for c in (PEER, "agent", "bpfguard", "bpftrace") if c in configs]
    acc: dict[tuple[str, str, str], list[int]] = {}
    with bpf_stats_enabled() as old:
        for _ in range(reps):
            for c in names:
                cfg = configs[c]
                with cfg.attached():
                    for w in WORKLOADS:
                        loop.run(w, max(1, n[w] // 10))
                        before = cfg.prog_stats()
                        loop.run(w, n[w])
                        after = cfg.prog_stats()
                        for prog, (cnt, ns) in after.items():
                            b_cnt, b_ns = before.get(prog, (0, 0))
                            a = acc.setdefault((w, c, prog), [0, 0])
                            a[0] += cnt - b_cnt
                            a[1] += ns - b_ns
                cfg.quiesce()
    rows = []
    for (w, c, prog), (runs, t) in sorted(acc.items(), key=lambda kv: (
            list(WORKLOADS).index(kv[0][0]), names.index(kv[0][1]), kv[0][2])):
        rows.append({"workload": w, "config": c, "program": prog, "run_cnt": runs,
                     "run_time_ns": t, "runs_per_iteration": runs / (n[w] * reps),
                     "ns_per_run": t / runs if runs else None})
    out: dict[str, Any] = {"iterations": n, "reps": reps, "restored_to": old,
                           "programs": rows, "agent_vs_peer": {}}
    for w in WORKLOADS:
        total = {c: sum(t for (w2, c2, _), (_, t) in acc.items() if (w2, c2) == (w, c))
                 for c in names}
        out["agent_vs_peer"][w] = _ratio(total.get("agent"), total.get(PEER))
    return out


# --------------------------------------------------------------------------- report

def build_report(samples: dict[str, dict[str, list[float]]], observed: dict[str, Any],
                 stats: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    rep: dict[str, Any] = {"params": params, "workloads": {}, "observed": observed,
                           "bpf_stats": stats}
    for w, per_cfg in samples.items():
        what, per_iter = WORKLOADS[w]
        bare = per_cfg["bare"]
        rows: dict[str, dict[str, Any]] = {}
        for c, xs in per_cfg.items():
            diffs = [x - b for x, b in zip(xs, bare, strict=True)]
            row: dict[str, Any] = {"median_ns": statistics.median(xs),
                                   "iqr_half_ns": _iqr_half(xs), "samples": xs}
            if c != "bare":
                added = statistics.median(diffs)
                # standard error of a median, from the IQR of the paired differences
                se = _median_se(diffs)
                row.update(added_ns=added, added_se_ns=se,
                           added_ns_per_syscall=added / per_iter,
                           paired_diffs=diffs)
            rows[c] = row
        peer = rows.get(PEER, {}).get("added_ns")
        bt = rows.get("bpftrace", {}).get("added_ns")
        for c, row in rows.items():
            if c != "bare":
                row["ratio_vs_peer"] = _ratio(row["added_ns"], peer)
                row["ratio_vs_bpftrace"] = _ratio(row["added_ns"], bt)
        rep["workloads"][w] = {"iteration": what, "syscalls_per_iteration": per_iter,
                               "configs": rows}
    g = rep["workloads"]["getppid"]["configs"]
    ratio = g.get("agent", {}).get("ratio_vs_peer")
    bg, peer = g.get("agent"), g.get(PEER)
    rel_err = None
    if ratio is not None and bg and peer and bg["added_ns"] > 0:
        rel_err = math.hypot(bg["added_se_ns"] / bg["added_ns"],
                             peer["added_se_ns"] / peer["added_ns"])
    rep["target"] = {
        "what": "the default agent's added ns per uninteresting syscall / the empty "
                "raw_tp (enter+exit) peer's",
        "ratio": ratio, "ratio_rel_error": rel_err, "limit": TARGET_RATIO,
        "within": None if ratio is None else ratio <= TARGET_RATIO,
    }
    return rep


def print_report(rep: dict[str, Any]) -> None:
    p = rep["params"]
    print(f"syscall overhead, kernel {p['kernel']}, {p['cpus']} CPUs, loop pinned to CPU "
          f"{p['loop_cpu']}: {p['cycles']} interleaved cycles, one ~{p['sample_ms']:.0f} ms "
          f"sample per configuration and workload per cycle")
    print("added = median over cycles of (sample - same cycle's bare sample); "
          "±: its standard error")
    for w, data in rep["workloads"].items():
        per = data["syscalls_per_iteration"]
        unit = "ns/syscall" if per == 1 else "ns/iter"
        print()
        print(f"== {w}: {data['iteration']} per iteration ({per} syscall{'s' * (per > 1)}), "
              f"{p['iterations'][w]} iterations per sample")
        hdr = (f"{'config':32} {unit:>10} {'added':>7} {'±':>5} {'added/sc':>8} "
               f"{'x peer':>7} {'x bpftrace':>10}")
        print(hdr)
        print("-" * len(hdr))
        for c, r in data["configs"].items():
            bare = c == "bare"
            print(f"{LABELS[c]:32} {r['median_ns']:10.1f} "
                  f"{_f(None if bare else r['added_ns']):>7} "
                  f"{_f(None if bare else r['added_se_ns']):>5} "
                  f"{_f(None if bare else r['added_ns_per_syscall']):>8} "
                  f"{_f(r.get('ratio_vs_peer'), '{:.2f}x'):>7} "
                  f"{_f(r.get('ratio_vs_bpftrace'), '{:.2f}x'):>10}")
    obs = rep["observed"]
    print()
    if "bpfguard" in obs:
        o = obs["bpfguard"]
        print(f"bpfguard: {o['events']} syscall events decoded of {o['expected']} produced "
              f"(2 per openat iteration while attached); kernel drops: "
              f"{o['drops'] or 'none'}"
              + (f"; consumer error: {o['consumer_error']}" if o["consumer_error"] else "")
              + (f"; read() raised EINTR {o['eintr_retries']} times (retried; while "
                 f"{', '.join(o['eintr_while'])} was attached)" if o["eintr_retries"] else ""))
    if "bpftrace" in obs:
        o = obs["bpftrace"]
        print(f"bpftrace: {o['events']} lines printed of {o['expected']} produced "
              f"({BPFTRACE_PAGES}-page perf buffer); lost: {o['lost']}; "
              f"started {o['starts']} times")
    st = rep["bpf_stats"]
    if st.get("programs"):
        print()
        print(f"kernel bpf stats (separate pass, {st['reps']}x interleaved, with "
              f"kernel.bpf_stats_enabled=1, restored to {st['restored_to']}): "
              "time inside each program; runs on all CPUs")
        hdr = f"{'workload':9} {'config':32} {'program':16} {'runs/iter':>9} {'ns/run':>7}"
        print(hdr)
        print("-" * len(hdr))
        for r in st["programs"]:
            print(f"{r['workload']:9} {LABELS[r['config']]:32} {r['program']:16} "
                  f"{r['runs_per_iteration']:9.2f} {_f(r['ns_per_run']):>7}")
        for w, ratio in st["agent_vs_peer"].items():
            print(f"  {w}: the default agent's in-program time / the empty peer's: "
                  f"{_f(ratio, '{:.2f}x')}")
    elif st.get("skipped"):
        print(f"kernel bpf stats: skipped ({st['skipped']})")
    t = rep["target"]
    verdict = ("n/a" if t["within"] is None else
               "within target" if t["within"] else "above target")
    err = "" if t["ratio_rel_error"] is None else f" ± {t['ratio_rel_error'] * t['ratio']:.2f}"
    print()
    print(f"target: {t['what']} <= {t['limit']}x: {_f(t['ratio'], '{:.2f}x')}{err} ({verdict})")


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter cycles (~15 s)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--cycles", type=int, help="interleaved cycles (default 40; quick 7)")
    ap.add_argument("--sample-ms", type=float,
                    help="bare duration of one sample (default 40; quick 30)")
    ap.add_argument("--no-bpftrace", action="store_true", help="skip the bpftrace configuration")
    ap.add_argument("--no-bpf-stats", action="store_true",
                    help="skip the pass with kernel.bpf_stats_enabled=1")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the loop to one CPU")
    args = ap.parse_args(argv)
    cycles = args.cycles or (7 if args.quick else 40)
    sample_s = (args.sample_ms or (30 if args.quick else 40)) / 1000
    if cycles < 1 or sample_s <= 0:
        ap.error("--cycles and --sample-ms must be positive")
    bpftrace = None if args.no_bpftrace else shutil.which("bpftrace")
    if not args.no_bpftrace and bpftrace is None:
        log("bpftrace not found: skipping that configuration")
    started = time.monotonic()
    return guarded("syscall_overhead.py",
                   lambda tmp: _bench(tmp, args, cycles, sample_s, bpftrace, started))


def _bench(tmp: Path, args: argparse.Namespace, cycles: int, sample_s: float,
           bpftrace: str | None, started: float) -> int:
    loop_exe, empty_path = build(tmp)
    cpus = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cpus) >= 2
    loop_cpu = cpus[-1] if pin else None
    if STATS_SYSCTL.exists() and STATS_SYSCTL.read_text().strip() != "0":
        log("warning: kernel.bpf_stats_enabled is already on: every BPF configuration "
            "pays for the accounting while timed")
    script = tmp / "equivalent.bt"
    script.write_text(BPFTRACE_PROG % {"openat": syscall_number("openat"),
                                       "close": syscall_number("close")})
    loop = Loop(loop_exe, loop_cpu)
    if pin:  # the benchmark, its consumer thread and bpftrace stay off the loop's CPU
        os.sched_setaffinity(0, set(cpus[:-1]))
    stats: dict[str, Any] = {}
    try:
        with contextlib.ExitStack() as stack:
            empty = stack.enter_context(BpfObject.open(empty_path))
            empty.load()
            configs: dict[str, Config] = {
                "bare": Bare(loop),
                "rawtp_enter": EmptyRawTp(loop, empty, "rawtp_enter", ("empty_sys_enter",)),
                "rawtp_both": EmptyRawTp(loop, empty, "rawtp_both",
                                         ("empty_sys_enter", "empty_sys_exit")),
                "agent": DefaultAgent(loop, tmp),
                "bpfguard": Bpfguard(loop),
            }
            if bpftrace:
                configs["bpftrace"] = Bpftrace(loop, bpftrace, script, tmp)
            for cfg in configs.values():
                stack.callback(cfg.close)
                stack.callback(cfg.detach)
                cfg.open()
            n = calibrate(loop, sample_s)
            log(f"iterations per sample: {n}; {cycles} cycles x {len(configs)} configurations")
            samples = timing(configs, loop, n, cycles, started)
            if args.no_bpf_stats:
                stats["skipped"] = "--no-bpf-stats"
            elif not STATS_SYSCTL.exists():
                stats["skipped"] = f"{STATS_SYSCTL} missing"
            else:
                log("bpf stats pass")
                stats = stats_pass(configs, loop, {"getppid": 2 * n["getppid"],
                                                   "openat": n["openat"]},
                                   1 if args.quick else 3)
        observed = {c: cfg.observed() for c, cfg in configs.items() if cfg.observed()}
    finally:
        loop.close()
    params = {"cycles": cycles, "iterations": n, "sample_ms": sample_s * 1000,
              "loop_cpu": loop_cpu, "kernel": os.uname().release, "cpus": len(cpus),
              "bpftrace": bpftrace, "elapsed_s": round(time.monotonic() - started, 1)}
    rep = build_report(samples, observed, stats, params)
    return emit(rep, args.json, print_report)


if __name__ == "__main__":
    sys.exit(main())
