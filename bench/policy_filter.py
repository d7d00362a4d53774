#!/usr/bin/env python3
"""Policy-filtering benchmark: a TracingPolicy's selectors in the kernel against
the same filter applied in user space to every event.

Run as root from the repository root::

    sudo .venv/bin/python bench/policy_filter.py            # ~65 s on a 2-vCPU VM
    sudo .venv/bin/python bench/policy_filter.py --quick    # ~20 s
    sudo .venv/bin/python bench/policy_filter.py --json

One workload: a small C program (embedded below, compiled into a temp dir)
that, per request, calls openat()+close() N times on a file in the temp dir and
then once on /etc/passwd, the rare match. Three configurations of bpfguard's
PolicyEngine, interleaved round by round in one run:

- bare: no policy loaded (the engine's syscall programs are not attached);
- in-kernel: a TracingPolicy on sys_openat whose selector is matchArgs Prefix
  "/etc/": only the rare open is posted to user space;
- user-space: the same hook with no selectors, so every openat is posted, and
  the Prefix check done in Python on each decoded PolicyEvent.

A drain thread reads SensorSet.read() and applies the Python check in every
configuration. A sample's wall time runs from the request to the point where
the loop has answered AND the drainer has decoded every event the kernel
posted for it, so it includes shipping and filtering. Ratios are per round
against the same round's bare sample; nothing is asserted.

See bench/README.md for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import (  # bench/, the script's own directory, is on sys.path
    REPO,
    BenchError,
    emit,
    ensure_object,
    foreign_links,
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

from bpfguard.policy import load_policy_text  # noqa: E402
from bpfguard.policy.engine import PolicyEngine  # noqa: E402
from bpfguard.policy.events import PolicyEvent  # noqa: E402
from bpfguard.sensors import SensorSet  # noqa: E402

RARE = "/etc/passwd"
PREFIX = "/etc/"
CONFIGS = ("bare", "kernel", "user")
LABELS = {
    "bare": "bare (no policy)",
    "kernel": "in-kernel selector",
    "user": "user-space filter",
}
# one PolicyEvent record: 408 fixed bytes + the path (~40 here) + the ring's 8-byte header
EVENT_BYTES = 460

OPENS_C = r"""
// openat loop for bench/policy_filter.py (written and compiled by it).
//   opens PATH   serve: read "N" lines from stdin; per line run N x
//                (openat(PATH) + close), then openat(RARE) + close once;
//                answer with the ns the whole request took (CLOCK_MONOTONIC).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	// on the stack, so its page is present: the policy reads it at sys_enter,
	// where a probe read cannot fault a page in
	char rare[] = "@RARE@", line[64];
	double t0, t1;
	long n, fd;

	if (argc != 2) {
		fprintf(stderr, "usage: opens PATH   (then \"N\" lines on stdin)\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		n = strtol(line, NULL, 10);
		if (n <= 0) {
			printf("error: bad request\n");
			continue;
		}
		t0 = now_ns();
		for (long i = 0; i < n; i++) {
			fd = syscall(SYS_openat, AT_FDCWD, argv[1], O_RDONLY);
			if (fd < 0)
				break;
			syscall(SYS_close, fd);
		}
		if (fd < 0) {
			printf("error: %s: %s\n", argv[1], strerror(errno));
			continue;
		}
		fd = syscall(SYS_openat, AT_FDCWD, rare, O_RDONLY);
		if (fd >= 0)
			syscall(SYS_close, fd);
		t1 = now_ns();
		printf("%.0f\n", t1 - t0);
	}
	return 0;
}
"""

POLICY = """\
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: "%(name)s"
spec:
  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 1
      type: "string"
%(selectors)s"""

SELECTORS = """\
    selectors:
    - matchArgs:
      - index: 1
        operator: "Prefix"
        values:
        - "@PREFIX@"
""".replace("@PREFIX@", PREFIX)

POLICY_NAMES = {"kernel": "bench-openat-etc-prefix", "user": "bench-openat-all"}


def policy_text(cfg: str) -> str:
    return POLICY % {"name": POLICY_NAMES[cfg],
                     "selectors": SELECTORS if cfg == "kernel" else ""}


# --------------------------------------------------------------------------- build

def build(tmp: Path) -> Path:
    """Writes and compiles the openat loop (gcc); builds the policy object if it
    is missing."""
    src = tmp / "opens.c"
    src.write_text(OPENS_C.replace("@RARE@", RARE))
    exe = tmp / "opens"
    _run(["gcc", "-O2", "-Wall", "-o", str(exe), str(src)], "compile the openat loop")
    ensure_object("sensor")
    return exe


# --------------------------------------------------------------------------- the workload

def _child_setup(cpu: int | None) -> Any:
    def setup() -> None:
        os.setpgrp()  # Ctrl-C reaches only the benchmark, which tears down in order
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
    return setup


class Opens:
    """The openat loop in serve mode: one process, one pid in scope for the whole run."""

    def __init__(self, exe: Path, target: Path, cpu: int | None) -> None:
        self.proc = subprocess.Popen([str(exe), str(target)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1,
                                     preexec_fn=_child_setup(cpu))
        self.pid = self.proc.pid

    def send(self, n: int) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()

    def answer(self) -> float:
        """The loop's own ns for the request just sent."""
        assert self.proc.stdout
        line = self.proc.stdout.readline()
        try:
            return float(line)
        except ValueError:
            raise BenchError(f"openat loop: {line.strip() or 'exited'}") from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------- other programs

def _prog_id(fd: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
            if line.startswith("prog_id:"):
                return int(line.split()[1])
    return None


def our_prog_ids(sensors: SensorSet) -> set[int]:
    ids = (_prog_id(p.fd) for p in sensors.obj.programs if p.fd >= 0)
    return {i for i in ids if i is not None}


# --------------------------------------------------------------------------- the drainer

class Drainer:
    """Reads every event, as an agent does, and applies the Prefix check in Python to
    each PolicyEvent. Cumulative counts; the main thread waits on `cond`."""

    def __init__(self, sensors: SensorSet) -> None:
        self.sensors = sensors
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.seen = 0        # PolicyEvents decoded
        self.matched = 0     # of which the Python Prefix check kept
        self.other = 0       # anything else read (process events; none expected)
        self.found: list[str] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="policy-drainer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                evs = self.sensors.read(timeout_ms=50)
                if not evs:
                    continue
                seen = matched = other = 0
                found = []
                for ev in evs:
                    if not isinstance(ev, PolicyEvent):
                        other += 1
                        continue
                    seen += 1
                    v = ev.args[0].value if ev.args else None
                    if isinstance(v, str) and v.startswith(PREFIX):
                        matched += 1
                        found.append(v)
                with self.cond:
                    self.seen += seen
                    self.matched += matched
                    self.other += other
                    self.found.extend(found)
                    self.cond.notify_all()
        except BaseException as exc:  # reported, not swallowed
            with self.cond:
                self.error = exc
                self.cond.notify_all()

    def counts(self) -> tuple[int, int, int]:
        with self.cond:
            return self.seen, self.matched, self.other

    def wait_seen(self, target: int, timeout: float) -> bool:
        with self.cond:
            ok = self.cond.wait_for(lambda: self.seen >= target or self.error is not None,
                                    timeout)
            if self.error is not None:
                raise BenchError(f"drainer failed: {self.error!r}")
            return bool(ok)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


# --------------------------------------------------------------------------- one sample

class Bench:
    """The engine loaded once; a configuration's policy is added before its sample and
    deleted after it (untimed), once the drainer has caught up."""

    def __init__(self, sensors: SensorSet, engine: PolicyEngine, drainer: Drainer,
                 opens: Opens) -> None:
        self.sensors, self.engine, self.drainer, self.opens = sensors, engine, drainer, opens
        self.policies = {c: load_policy_text(f"{POLICY_NAMES[c]}.yaml", policy_text(c))
                         for c in POLICY_NAMES}
        self.counter_problems: list[str] = []

    @contextlib.contextmanager
    def configured(self, cfg: str) -> Iterator[None]:
        if cfg not in self.policies:
            yield
            return
        name = POLICY_NAMES[cfg]
        self.engine.add(self.policies[cfg])
        try:
            yield
        finally:
            self.engine.delete(name)

    def posted(self, cfg: str) -> int:
        return self.engine.counters(POLICY_NAMES[cfg])["posted"] if cfg in POLICY_NAMES else 0

    def sample(self, cfg: str, n: int, timeout: float) -> dict[str, Any]:
        """One request of n iterations (+1 rare open) under `cfg`. wall: request sent ->
        loop answered and drainer caught up with everything the kernel posted."""
        with self.configured(cfg):
            posted0 = self.posted(cfg)
            if posted0:
                self.counter_problems.append(
                    f"{POLICY_NAMES[cfg]}: counters() said posted={posted0} right after "
                    "add(), before its first event")
            self.sensors.losses()  # reset the loss baseline
            seen0, matched0, other0 = self.drainer.counts()
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            self.opens.send(n)
            loop_ns = self.opens.answer()
            t_loop = time.perf_counter()
            posted = self.posted(cfg) - posted0
            caught_up = self.drainer.wait_seen(seen0 + posted, timeout)
            t1 = time.perf_counter()
            cpu1 = time.process_time()
            losses = {lo.reason: lo.count for lo in self.sensors.losses()}
            if not caught_up:
                raise BenchError(f"{cfg}: the drainer saw {self.drainer.counts()[0] - seen0} "
                                 f"of {posted} posted events within {timeout:.0f} s")
            time.sleep(0.02)  # anything beyond what was counted as posted shows up here
            seen, matched, other = self.drainer.counts()
        return {"wall_s": t1 - t0, "loop_s": loop_ns / 1e9, "drain_tail_s": t1 - t_loop,
                "cpu_s": cpu1 - cpu0, "posted": posted, "seen": seen - seen0,
                "matched": matched - matched0, "other": other - other0, "losses": losses}


def timing(bench: Bench, n: int, rounds: int, timeout: float, started: float,
           foreign: set[str] | None) -> dict[str, list[dict[str, Any]]]:
    """samples[c][k]: round k's sample of configuration c; the order is rotated per round.
    Between rounds (no policy loaded), other programs' links are added to `foreign`."""
    out: dict[str, list[dict[str, Any]]] = {c: [] for c in CONFIGS}
    ours = our_prog_ids(bench.sensors)
    next_log = time.monotonic() + 10
    for k in range(rounds):
        rot = k % len(CONFIGS)
        for c in CONFIGS[rot:] + CONFIGS[:rot]:
            out[c].append(bench.sample(c, n, timeout))
        if foreign is not None:
            foreign |= foreign_links(ours) or set()
        if time.monotonic() >= next_log or k + 1 == rounds:
            log(f"round {k + 1}/{rounds} ({time.monotonic() - started:.0f} s)")
            next_log = time.monotonic() + 10
    return out


# --------------------------------------------------------------------------- report

def _paired(num: list[float], den: list[float]) -> dict[str, Any]:
    rs = [a / b for a, b in zip(num, den, strict=True) if b > 0]
    if not rs:
        return {"ratio": None, "se": None}
    return {"ratio": statistics.median(rs), "se": _median_se(rs), "per_round": rs}


def build_report(samples: dict[str, list[dict[str, Any]]], params: dict[str, Any],
                 drainer: Drainer, counter_problems: list[str]) -> dict[str, Any]:
    n, rounds = params["iterations"], params["rounds"]
    syscalls = 2 * (n + 1)  # openat + close, N times and once for the rare path
    rows: dict[str, dict[str, Any]] = {}
    for c, xs in samples.items():
        wall = [x["wall_s"] * 1e3 for x in xs]
        loop = [x["loop_s"] * 1e3 for x in xs]
        losses: dict[str, int] = {}
        for x in xs:
            for reason, cnt in x["losses"].items():
                losses[reason] = losses.get(reason, 0) + cnt
        posted = sum(x["posted"] for x in xs)
        seen = sum(x["seen"] for x in xs)
        rows[c] = {
            "wall_ms": statistics.median(wall), "wall_iqr_half_ms": _iqr_half(wall),
            "loop_ms": statistics.median(loop),
            "drain_tail_ms": statistics.median(x["drain_tail_s"] * 1e3 for x in xs),
            "cpu_ms": statistics.median(x["cpu_s"] * 1e3 for x in xs),
            "posted": posted, "seen": seen,
            "matched": sum(x["matched"] for x in xs), "other": sum(x["other"] for x in xs),
            "expected_matches": 0 if c == "bare" else rounds,
            "posted_per_m_syscalls": posted / (rounds * syscalls) * 1e6,
            "seen_per_m_syscalls": seen / (rounds * syscalls) * 1e6,
            "losses": losses, "samples": xs,
        }
    bare_wall = [x["wall_s"] for x in samples["bare"]]
    bare_loop = [x["loop_s"] for x in samples["bare"]]
    for c in ("kernel", "user"):
        rows[c]["wall_vs_bare"] = _paired([x["wall_s"] for x in samples[c]], bare_wall)
        rows[c]["loop_vs_bare"] = _paired([x["loop_s"] for x in samples[c]], bare_loop)
    rows["user"]["wall_vs_kernel"] = _paired([x["wall_s"] for x in samples["user"]],
                                             [x["wall_s"] for x in samples["kernel"]])
    k, u = rows["kernel"], rows["user"]
    return {
        "params": params, "syscalls_per_sample": syscalls, "configs": rows,
        "summary": {
            "wall_kernel_over_bare": k["wall_vs_bare"]["ratio"],
            "wall_user_over_bare": u["wall_vs_bare"]["ratio"],
            "wall_user_over_kernel": u["wall_vs_kernel"]["ratio"],
            "events_per_m_syscalls": {c: rows[c]["seen_per_m_syscalls"] for c in CONFIGS},
            "shipped_user_over_kernel": _ratio(u["seen"], k["seen"]),
            "rare_match_found": {c: rows[c]["matched"] == rows[c]["expected_matches"]
                                 for c in ("kernel", "user")},
        },
        "found_paths": sorted(set(drainer.found)),
        "counter_problems": counter_problems,
    }


def _ratio_cell(r: dict[str, Any] | None) -> str:
    if not r or r.get("ratio") is None:
        return "-"
    return f"{r['ratio']:.2f}x ±{r['se']:.2f}"


def print_report(rep: dict[str, Any]) -> None:
    p = rep["params"]
    pin = f"loop pinned to CPU {p['loop_cpu']}" if p["loop_cpu"] is not None else "no pinning"
    print(f"policy filtering, kernel {p['kernel']}, {p['cpus']} CPUs, {pin}: "
          f"{p['rounds']} interleaved rounds; per sample {p['iterations']} x "
          f"(openat {p['target']} + close) and 1 x (openat {RARE} + close) = "
          f"{rep['syscalls_per_sample']} syscalls; ring {p['ringbuf_mib']} MiB")
    print("wall = request sent -> loop done and every posted event decoded and filtered; "
          "x bare = median over rounds of (sample / same round's bare), ± its standard error")
    print()
    hdr = (f"{'config':20} {'wall ms':>8} {'x bare':>12} {'loop ms':>8} {'x bare':>12} "
           f"{'tail ms':>8} {'cpu ms':>7} {'events/Msc':>10} {'/etc':>6} {'lost':>5}")
    print(hdr)
    print("-" * len(hdr))
    for c, r in rep["configs"].items():
        lost = sum(r["losses"].values())
        print(f"{LABELS[c]:20} {r['wall_ms']:8.1f} {_ratio_cell(r.get('wall_vs_bare')):>12} "
              f"{r['loop_ms']:8.1f} {_ratio_cell(r.get('loop_vs_bare')):>12} "
              f"{r['drain_tail_ms']:8.1f} {r['cpu_ms']:7.1f} "
              f"{r['seen_per_m_syscalls']:10.1f} "
              f"{r['matched']:>3}/{r['expected_matches']:<2} {lost:>5}")
    s = rep["summary"]
    u = rep["configs"]["user"]
    print()
    print(f"user-space filter / in-kernel selector, wall: {_ratio_cell(u['wall_vs_kernel'])}")
    for c in ("kernel", "user"):
        r = rep["configs"][c]
        print(f"{LABELS[c]}: posted by the kernel {r['posted']}, decoded by the drainer "
              f"{r['seen']}, kept by the Python Prefix check {r['matched']} "
              f"(expected {r['expected_matches']}: one {RARE} per sample)"
              + (f"; lost: {r['losses']}" if r["losses"] else "; lost: none"))
    print("events reaching user space per million syscalls: "
          + ", ".join(f"{LABELS[c]} {_f(v, '{:.1f}')}"
                      for c, v in s["events_per_m_syscalls"].items())
          + f" (user-space ships {_f(s['shipped_user_over_kernel'], '{:.0f}')}x more)")
    found = ", ".join(rep["found_paths"]) or "none"
    print(f"paths kept by the Python check: {found}")
    other = p["other_bpf_links"]
    print("other BPF links seen between rounds: " + (
        "not checked (no bpftool)" if other is None else
        "none" if not other else f"{', '.join(other)}: every configuration paid for them"))
    probs = rep["counter_problems"]
    if probs:
        print(f"engine: {probs[0]}" + (f" (and {len(probs) - 1} more adds like it)"
                                        if len(probs) > 1 else "")
              + "; the benchmark uses per-sample differences")


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds, shorter samples (~20 s)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 20; quick 10)")
    ap.add_argument("--iterations", type=int,
                    help="openat+close per sample (default 200000; quick 100000)")
    ap.add_argument("--ringbuf-mib", type=int,
                    help="ring buffer size, a power of two (default: room for one sample's "
                         "events)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the loop to one CPU")
    args = ap.parse_args(argv)
    rounds = args.rounds or (10 if args.quick else 20)
    n = args.iterations or (100_000 if args.quick else 200_000)
    if rounds < 1 or n < 1:
        ap.error("--rounds and --iterations must be positive")
    mib = args.ringbuf_mib or max(16, 1 << ((n + 1) * EVENT_BYTES - 1).bit_length() >> 20)
    if mib & (mib - 1):
        ap.error("--ringbuf-mib must be a power of two")
    started = time.monotonic()
    return guarded("policy_filter.py", lambda tmp: _bench(tmp, args, rounds, n, mib, started))


def _bench(tmp: Path, args: argparse.Namespace, rounds: int, n: int, mib: int,
           started: float) -> int:
    exe = build(tmp)
    target = tmp / "target"
    target.write_text("bpfguard policy_filter benchmark\n")
    cpus = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cpus) >= 2
    loop_cpu = cpus[-1] if pin else None
    opens = Opens(exe, target, loop_cpu)
    if pin:  # the benchmark and its drainer stay off the loop's CPU
        os.sched_setaffinity(0, set(cpus[:-1]))
    timeout = max(30.0, n * 1e-4)
    try:
        engine = PolicyEngine()
        with SensorSet(syscalls=(), extra=[engine], ringbuf_bytes=mib << 20) as sensors:
            sensors.scope.add_pid(opens.pid, follow=False, children=False)
            sensors.start()
            drainer = Drainer(sensors)
            drainer.start()
            try:
                bench = Bench(sensors, engine, drainer, opens)
                for c in CONFIGS:  # warm-up: caches, task storage, the drainer's code paths
                    bench.sample(c, max(1, n // 10), timeout)
                log(f"{n} iterations per sample; {rounds} rounds x {len(CONFIGS)} "
                    f"configurations")
                foreign = foreign_links(our_prog_ids(sensors))
                samples = timing(bench, n, rounds, timeout, started, foreign)
            finally:
                drainer.close()
    finally:
        opens.close()
    params = {"rounds": rounds, "iterations": n, "ringbuf_mib": mib, "target": str(target),
              "rare": RARE, "prefix": PREFIX, "loop_cpu": loop_cpu,
              "kernel": os.uname().release, "cpus": len(cpus),
              "policies": {c: policy_text(c) for c in POLICY_NAMES},
              "other_bpf_links": None if foreign is None else sorted(foreign),
              "elapsed_s": round(time.monotonic() - started, 1)}
    rep = build_report(samples, params, drainer, bench.counter_problems)
    return emit(rep, args.json, print_report)


if __name__ == "__main__":
    sys.exit(main())
