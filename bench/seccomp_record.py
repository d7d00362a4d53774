#!/usr/bin/env python3
"""Seccomp-recording benchmark: what recording a workload's syscalls costs it.

Run as root from the repository root::

    sudo .venv/bin/python bench/seccomp_record.py            # ~1.5-2 min (8 cycles)
    sudo .venv/bin/python bench/seccomp_record.py --quick    # ~25 s (2 cycles)
    sudo .venv/bin/python bench/seccomp_record.py --json

Three configurations of the same workload, in one run: bare; `bpfguard seccomp
record -o PROFILE -- WORKLOAD` (an eBPF sys_enter program marking one byte per
syscall in the kernel, no event per syscall); `strace -f -c -o FILE WORKLOAD`
(ptrace: two stops per syscall). Two workloads: tar of /usr/include and
/usr/share/zoneinfo piped through cat (realistic, syscall-heavy, two processes)
and bench/loop.c doing N getppid() (the worst case: nothing but syscalls).

The workload times itself (bash's $EPOCHREALTIME around it), so each tool's
start-up (bpfguard loads its BPF object before it releases the command) is left
out the same way for every configuration. Configurations are interleaved run by
run in rounds (bare, bpfguard, and in one round per cycle strace), in an order
rotated per round, and a configuration's added cost is the median over rounds
of its run minus the same round's bare run. It also compares the syscall names
in bpfguard's profile with those strace counted. It prints numbers; nothing is
asserted.

See bench/README.md for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (  # bench/, the script's own directory, is on sys.path
    REPO,
    BenchError,
    compile_empty,
    compile_loop,
    emit,
    ensure_object,
    foreign_links,
    guarded,
    log,
)
from _common import fmt as _f
from _common import median_se as _median_se
from _common import ratio as _ratio

BPFGUARD = REPO / ".venv" / "bin" / "bpfguard"

CONFIGS = ("bare", "empty", "bpfguard", "strace")
LABELS = {
    "bare": "bare",
    "empty": "empty sys_enter (floor)",
    "bpfguard": "bpfguard seccomp record",
    "strace": "strace -f -c",
}
TARGET_WORKLOAD = "tar"
TARGET_PCT = 5.0  # the product's stated limit for recording a realistic workload
# Profile names a tar of files cannot do without: a sanity check on the profile.
MUST_RECORD = ("read", "write", "openat")
# strace -c counts a syscall when it returns; these never return to the caller.
NEVER_RETURN = {"exit", "exit_group"}

# The workload between two reads of bash's $EPOCHREALTIME: a builtin, so taking
# the time forks nothing that a tracer would then have to follow. It is the
# realtime clock, but NTP slews it by ppm at most, far below what is measured.
# $1: the file that gets "start end status"; pipefail: a failing tar is seen.
TIMED = ('set -o pipefail; s=$EPOCHREALTIME; {cmd}; rc=$?; e=$EPOCHREALTIME; '
         'echo "$s $e $rc" >"$1"')


@dataclass(frozen=True)
class Workload:
    name: str
    what: str
    cmd: str  # shell snippet, timed by TIMED

    def argv(self, timefile: Path) -> list[str]:
        return ["bash", "-c", TIMED.format(cmd=self.cmd), "seccomp-bench", str(timefile)]


def workloads(loop: Path, iterations: int) -> dict[str, Workload]:
    # Piped through cat, not written to /dev/null: GNU tar notices an archive that
    # is /dev/null and then skips reading the files. -C / keeps its stderr quiet.
    tar = "tar -C / -cf - usr/include usr/share/zoneinfo | cat >/dev/null"
    return {
        "tar": Workload("tar", tar, tar),
        "getppid": Workload("getppid", f"bench/loop.c: {iterations} x getppid()",
                            f"{shlex.quote(str(loop))} getppid {iterations}"),
    }


@dataclass
class Run:
    """One run of one workload under one configuration."""

    wall_ms: float  # as the workload timed itself
    cmd_ms: float  # the whole command as the benchmark saw it, tool start-up included
    stdout: str
    names: set[str] = field(default_factory=set)  # profile's (bpfguard) or strace's
    calls: int | None = None  # strace's total


Round = dict[str, Run]  # config -> its run; always has "bare"


# --------------------------------------------------------------------------- setup

def check_tools() -> str:
    """Returns strace's path; raises with what to do when something is missing."""
    strace = shutil.which("strace")
    if strace is None:
        raise BenchError("strace not found: install it (`apt-get install -y strace`, or "
                         "./scripts/setup)")
    if not os.access(BPFGUARD, os.X_OK):
        raise BenchError(f"{BPFGUARD} missing: run ./scripts/setup")
    ensure_object("sensor")
    return strace


# --------------------------------------------------------------------------- one run

def run_once(config: str, wl: Workload, tmp: Path, strace: str) -> Run:
    timefile, profile, counts = tmp / "time", tmp / "profile.json", tmp / "strace.txt"
    for f in (timefile, profile, counts):
        f.unlink(missing_ok=True)
    argv = wl.argv(timefile)
    if config == "empty":
        with _floor_attached():
            out, err, rc, cmd_ms = _spawn(argv)
    if config == "bpfguard":
        argv = [str(BPFGUARD), "seccomp", "record", "-o", str(profile), "--", *argv]
    elif config == "strace":
        argv = [strace, "-f", "-c", "-o", str(counts), "--", *argv]
    if config != "empty":
        out, err, rc, cmd_ms = _spawn(argv)
    if rc != 0 or not timefile.exists():
        raise BenchError(f"{config} {wl.name}: exit {rc}:\n{' '.join(argv)}\n{err.strip()}")
    start, end, status = timefile.read_text().split()
    if status != "0":
        raise BenchError(f"{config} {wl.name}: the workload exited {status}:\n{err.strip()}")
    run = Run(wall_ms=(_usec(end) - _usec(start)) / 1000, cmd_ms=cmd_ms, stdout=out)
    if config == "bpfguard":
        run.names = profile_names(profile)
    elif config == "strace":
        run.names, run.calls = strace_counts(counts)
    return run


# The floor of any recorder on sys_enter: bench/empty.bpf.c's raw_tp/sys_enter program,
# which returns at once, attached for the run alone (loaded once, in main).
_FLOOR: Any = None


def _floor_attached() -> Any:
    return _FLOOR.program("empty_sys_enter").attach()  # a Link: detached on exit


def _load_floor(tmp: Path) -> Any:
    from bpfguard.loader import BpfObject

    obj = BpfObject.open(str(compile_empty(tmp)))
    obj.load()
    return obj


def _spawn(argv: list[str]) -> tuple[str, str, int, float]:
    """Runs argv in its own session: Ctrl-C reaches only the benchmark, which then
    kills the whole group (the tool and the workload it started) before leaving."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, LC_ALL="C"))  # a "." in $EPOCHREALTIME
    try:
        out, err = proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return out, err, proc.returncode, (time.monotonic() - t0) * 1000


def _usec(stamp: str) -> int:
    sec, _, frac = stamp.partition(".")
    return int(sec) * 1_000_000 + int(frac.ljust(6, "0")[:6])


def profile_names(path: Path) -> set[str]:
    """Syscalls the profile allows (OCI format, bpfguard's default)."""
    try:
        prof = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"bpfguard's profile {path}: {exc}") from None
    names = {n for rule in prof.get("syscalls", []) if rule.get("action") == "SCMP_ACT_ALLOW"
             for n in rule.get("names", [])}
    if not names:
        raise BenchError(f"bpfguard's profile {path} allows no syscall")
    return names


_STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$")


def strace_counts(path: Path) -> tuple[set[str], int]:
    """Names and total calls from strace -c's table (one per personality, if several)."""
    names, calls = set(), 0
    for line in path.read_text().splitlines():
        m = _STRACE_ROW.match(line)
        if m and m.group(2) != "total":
            names.add(m.group(2))
            calls += int(m.group(1))
    if not names:
        raise BenchError(f"no syscall in strace's summary {path}")
    return names, calls


# --------------------------------------------------------------------------- measurement

def warm_up(wls: dict[str, Workload], tmp: Path, strace: str) -> None:
    """tar twice bare, so it reads the page cache, not the disk; then every
    configuration once on the cheap workload, so the tools' own files are cached."""
    for _ in range(2):
        run_once("bare", wls["tar"], tmp, strace)
    for c in CONFIGS:
        run_once(c, wls["getppid"], tmp, strace)


def timing(wls: dict[str, Workload], cycles: int, rounds: int, tmp: Path, strace: str,
           started: float, foreign: list[str]) -> dict[str, list[Round]]:
    """rounds[w]: every round of workload w, in the order run. A round runs bare and
    bpfguard, and in one round per cycle strace too, in an order rotated from round to
    round, so slow drift of the VM hits all configurations alike. strace runs once per
    cycle only: one strace tar lasts as long as ~20 rounds of the others, and its added
    cost is so large that a few samples pin it down, while bpfguard's is within the
    noise of one run and needs many pairs."""
    out: dict[str, list[Round]] = {w: [] for w in wls}
    next_log = time.monotonic() + 10
    n = 0
    for k in range(cycles + 1):
        seen = foreign_links() or set()
        if seen - set(foreign):
            log(f"warning: other BPF links attached: {', '.join(sorted(seen))}")
            foreign.extend(sorted(seen - set(foreign)))
        if k == cycles:
            break  # the last check covers the last cycle
        for w, wl in wls.items():
            for j in range(rounds):
                configs = CONFIGS if j == k % rounds else CONFIGS[:3]
                rot = n % len(configs)
                n += 1
                out[w].append({c: run_once(c, wl, tmp, strace)
                               for c in configs[rot:] + configs[:rot]})
        if time.monotonic() >= next_log or k + 1 == cycles:
            log(f"cycle {k + 1}/{cycles} ({time.monotonic() - started:.0f} s)")
            next_log = time.monotonic() + 10
    return out


# --------------------------------------------------------------------------- report

def _loop_ns(run: Run) -> float | None:
    """bench/loop.c prints its own ns per iteration (the loop alone, no exec)."""
    try:
        return float(run.stdout.split()[-1])
    except (IndexError, ValueError):
        return None


def build_report(runs: dict[str, list[Round]], wls: dict[str, Workload],
                 params: dict[str, Any]) -> dict[str, Any]:
    rep: dict[str, Any] = {"params": params, "workloads": {}}
    for w, rounds in runs.items():
        per_cfg = {c: [r[c] for r in rounds if c in r] for c in CONFIGS}
        calls = [r.calls for r in per_cfg["strace"] if r.calls is not None]
        syscalls = statistics.median(calls) if calls else None
        rows: dict[str, dict[str, Any]] = {}
        for c, rs in per_cfg.items():
            xs = [r.wall_ms for r in rs]
            row: dict[str, Any] = {"runs": len(rs), "median_ms": statistics.median(xs),
                                   "cmd_median_ms": statistics.median(r.cmd_ms for r in rs),
                                   "wall_ms": xs}
            loop_ns = [v for v in map(_loop_ns, rs) if v is not None]
            if w == "getppid" and loop_ns:
                row["loop_ns_per_call"] = statistics.median(loop_ns)
            if c != "bare":
                # paired with the bare run of the same round
                pairs = [(r[c].wall_ms, r["bare"].wall_ms) for r in rounds if c in r]
                diffs = [x - b for x, b in pairs]
                rel = [100 * (x - b) / b for x, b in pairs]
                added = statistics.median(diffs)
                row.update(added_ms=added, added_se_ms=_median_se(diffs),
                           added_pct=statistics.median(rel), added_pct_se=_median_se(rel),
                           added_ns_per_syscall=added * 1e6 / syscalls if syscalls else None)
            rows[c] = row
        st = rows["strace"]
        for c, row in rows.items():
            if c != "bare":
                row["ratio_vs_strace"] = _ratio(row["added_ms"], st["added_ms"])
        bg_names = [r.names for r in per_cfg["bpfguard"]]
        st_names = [r.names for r in per_cfg["strace"]]
        bg_all, st_all = set().union(*bg_names), set().union(*st_names)
        rep["workloads"][w] = {
            "what": wls[w].what, "strace_calls": syscalls, "configs": rows,
            "strace_wall_over_bpfguard_wall": _ratio(st["median_ms"],
                                                     rows["bpfguard"]["median_ms"]),
            "names": {
                "bpfguard": sorted(bg_all), "strace": sorted(st_all),
                "bpfguard_stable": all(n == bg_names[0] for n in bg_names),
                "strace_stable": all(n == st_names[0] for n in st_names),
                "only_bpfguard": sorted(bg_all - st_all),
                "only_strace": sorted(st_all - bg_all),
                "missing_in_profile": [n for n in MUST_RECORD if n not in bg_all]
                if w == "tar" else [],
            },
        }
    t = rep["workloads"][TARGET_WORKLOAD]["configs"]["bpfguard"]
    f = rep["workloads"][TARGET_WORKLOAD]["configs"]["empty"]
    rep["target"] = {"what": f"bpfguard recording's added wall time on {TARGET_WORKLOAD}",
                     "added_pct": t["added_pct"], "added_pct_se": t["added_pct_se"],
                     "floor_pct": f["added_pct"], "floor_pct_se": f["added_pct_se"],
                     "limit_pct": TARGET_PCT, "within": t["added_pct"] < TARGET_PCT}
    return rep


def print_report(rep: dict[str, Any]) -> None:
    p = rep["params"]
    print(f"seccomp recording cost, kernel {p['kernel']}, {p['cpus']} CPUs: {p['cycles']} "
          f"cycles; per cycle and workload {p['rounds']} rounds of bare + bpfguard, strace "
          "in one of them; order rotated per round")
    print("wall = the workload timed by itself (bash $EPOCHREALTIME around it, tool start-up "
          "excluded); cmd = the whole command, tool start-up and exit included")
    print("added = median over rounds of (run - same round's bare run); ±: its standard error")
    for w, data in rep["workloads"].items():
        print()
        calls = data["strace_calls"]
        print(f"== {w}: {data['what']} ({_f(calls, '{:.0f}')} syscalls per run, "
              "counted by strace)")
        hdr = (f"{'config':24} {'runs':>4} {'wall ms':>9} {'added ms':>9} {'±':>6} {'added %':>8} "
               f"{'±':>6} {'ns/syscall':>10} {'x strace':>8} {'cmd ms':>8}")
        print(hdr)
        print("-" * len(hdr))
        for c, r in data["configs"].items():
            print(f"{LABELS[c]:24} {r['runs']:4} {r['median_ms']:9.1f} {_f(r.get('added_ms')):>9} "
                  f"{_f(r.get('added_se_ms')):>6} {_f(r.get('added_pct'), '{:+.1f}%'):>8} "
                  f"{_f(r.get('added_pct_se')):>6} {_f(r.get('added_ns_per_syscall')):>10} "
                  f"{_f(r.get('ratio_vs_strace'), '{:.4f}x'):>8} {r['cmd_median_ms']:8.0f}")
        bg, st = data["configs"]["bpfguard"], data["configs"]["strace"]
        floor = data["configs"]["empty"]
        print(f"  bpfguard adds {_f(_ratio(bg['added_ms'], floor['added_ms']), '{:.2f}x')} "
              "what an empty sys_enter program adds (the floor of any recorder there)")
        print(f"  strace adds {_f(_ratio(st['added_ms'], bg['added_ms']), '{:.0f}x')} "
              f"what bpfguard adds; strace's wall time / bpfguard's: "
              f"{_f(data['strace_wall_over_bpfguard_wall'], '{:.1f}x')}")
        if "loop_ns_per_call" in data["configs"]["bare"]:
            ns = {c: r.get("loop_ns_per_call") for c, r in data["configs"].items()}
            print("  loop's own clock, ns per getppid: " + ", ".join(
                f"{c} {_f(v)}" + ("" if c == "bare" or v is None or ns["bare"] is None
                                   else f" (+{v - ns['bare']:.1f})")
                for c, v in ns.items()))
        n = data["names"]
        print(f"  syscall names: bpfguard's profile {len(n['bpfguard'])}"
              f"{'' if n['bpfguard_stable'] else ' (union; not the same in every run)'}, "
              f"strace {len(n['strace'])}"
              f"{'' if n['strace_stable'] else ' (union; not the same in every run)'}")
        for side in ("only_bpfguard", "only_strace"):
            if n[side]:
                why = [f"{s} (never returns: strace -c counts at return)"
                       if s in NEVER_RETURN else s for s in n[side]]
                print(f"    {side.replace('_', ' in ')}: {', '.join(why)}")
        if not n["only_bpfguard"] and not n["only_strace"]:
            print("    same names")
        if w == "tar":
            missing = n["missing_in_profile"]
            print(f"    profile has {', '.join(MUST_RECORD)}: "
                  f"{'yes' if not missing else 'NO, missing ' + ', '.join(missing)}")
    other = p["other_bpf_links"]
    print()
    print("other BPF links seen between cycles: " + (
        "not checked (no bpftool)" if other is None else
        "none" if not other else f"{', '.join(other)}: every configuration paid for them"))
    t = rep["target"]
    print(f"target: {t['what']} < {t['limit_pct']:.0f}%: {t['added_pct']:+.1f}% "
          f"± {t['added_pct_se']:.1f} ({'within' if t['within'] else 'above'} target); "
          f"the empty sys_enter floor: {t['floor_pct']:+.1f}% ± {t['floor_pct_se']:.1f}")


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 cycles (~25 s)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--cycles", type=int, help="cycles (default 8; quick 2)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of bare and bpfguard per cycle and workload; strace runs "
                         "in one of them (default 3)")
    ap.add_argument("--iterations", type=int, default=10000,
                    help="getppid() calls per loop run (default 10000: ~1 s under strace)")
    args = ap.parse_args(argv)
    cycles = args.cycles or (2 if args.quick else 8)
    if min(cycles, args.rounds, args.iterations) < 1:
        ap.error("--cycles, --rounds and --iterations must be positive")
    started = time.monotonic()
    return guarded("seccomp_record.py", lambda tmp: _bench(tmp, args, cycles, started),
                   interrupted="interrupted: the running command was killed")


def _bench(tmp: Path, args: argparse.Namespace, cycles: int, started: float) -> int:
    strace = check_tools()
    wls = workloads(compile_loop(tmp), args.iterations)
    global _FLOOR
    _FLOOR = _load_floor(tmp)
    log(f"warming up; then {cycles} cycles x {len(wls)} workloads x {args.rounds} rounds")
    warm_up(wls, tmp, strace)
    foreign: list[str] = []
    runs = timing(wls, cycles, args.rounds, tmp, strace, started, foreign)
    params = {"cycles": cycles, "rounds": args.rounds, "iterations": args.iterations,
              "kernel": os.uname().release,
              "cpus": os.cpu_count(), "strace": strace,
              "other_bpf_links": None if shutil.which("bpftool") is None else foreign,
              "elapsed_s": round(time.monotonic() - started, 1)}
    rep = build_report(runs, wls, params)
    return emit(rep, args.json, print_report)

if __name__ == "__main__":
    sys.exit(main())
