#!/usr/bin/env python3
"""Detection benchmark: how much of a workload's syscalls reach user space with
and without the rules pushdown, and how fast the stock ruleset is evaluated.

Run as root from the repository root::

    sudo .venv/bin/python bench/rules_eval.py          # ~30 s
    sudo .venv/bin/python bench/rules_eval.py --json
    sudo .venv/bin/python bench/rules_eval.py --rulesets   # + Falco's three rulesets

One workload (tar of /usr/include piped through cat, a find over /usr/share,
ls -R /etc, a Python program opening and stat'ing files), measured in one run:

1. every syscall it makes, counted by ``strace -f -c`` (what an unfiltered
   tracer would hand to user space: the peer);
2. the syscall events that reach bpfguard's user space when only the rules'
   syscalls are traced, with no in-kernel filter (``--no-pushdown``);
3. the same with the pushdown on (the default);
4. the rate of the agent's whole user-space path over the records of run 2
   (the ring buffer's bytes, replayed in order on one thread: decode, the
   process table applying each event, the stock rules matching it, as the
   reader thread does), against the rate at which the workload produced them;
5. the rate at which the alerts of that replay are formatted (Falco's JSON)
   and written to a file, as the agent's file output does;
6. with ``--rulesets``: Falco's stable, incubating and sandbox rulesets
   loaded together against the stable one alone, in the same run, over the
   same records (the workload's events for every syscall either set traces,
   captured without kernel filters): the whole path's rate and the rules'
   own time per event (the matcher's share of it), and their ratios.

Nothing is asserted; it prints numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from bpfguard.agent.config import AgentConfig, default_config  # noqa: E402
from bpfguard.agent.detect import Detector, RuleMatcher  # noqa: E402
from bpfguard.agent.launch import spawn_waiting  # noqa: E402
from bpfguard.agent.outputs import build_channels  # noqa: E402
from bpfguard.proctable import ProcessTable  # noqa: E402
from bpfguard.rules import stock_rules_path  # noqa: E402
from bpfguard.rules.engine import Engine  # noqa: E402
from bpfguard.rules.loader import load_rules_or_raise  # noqa: E402
from bpfguard.sensors import SensorSet  # noqa: E402

WORKLOAD = (
    "tar -C / -cf - usr/include/linux | cat >/dev/null; "
    "find /usr/share/doc -maxdepth 3 >/dev/null; "
    "ls -R /etc >/dev/null 2>&1; "
    f"{sys.executable} -I -S -c \"import os; "
    "[os.stat('/usr/bin/' + n) for n in os.listdir('/usr/bin')]; "
    "[open(p).close() for p in ('/etc/hostname', '/etc/passwd', '/etc/os-release')]\"; "
    "cat /etc/shadow >/dev/null"  # one alert (Read sensitive file untrusted)
)


def count_syscalls(tmp: Path) -> int:
    out = tmp / "strace.txt"
    subprocess.run(["strace", "-f", "-c", "-o", str(out), "sh", "-c", WORKLOAD], check=True,
                   stdout=subprocess.DEVNULL)
    for line in out.read_text().splitlines():
        if line.strip().endswith("total"):
            return int(line.split()[3])  # % time, seconds, usecs/call, calls, [errors,] total
    raise RuntimeError("no total line in strace -c output")


def run_detect(engine: Engine, *, pushdown: bool, capture: list[bytes] | None
               ) -> dict[str, Any]:
    with Detector(engine, pushdown=pushdown) as det:
        if capture is not None:
            read_raw = det.sensors.read_raw

            def keep(timeout_ms: int = 100) -> list[bytes]:
                recs = read_raw(timeout_ms)
                capture.extend(recs)
                return recs
            det.sensors.read_raw = keep  # type: ignore[method-assign]
        child, release = spawn_waiting("/bin/sh", ["sh", "-c", WORKLOAD])
        det.scope.add_pid(child, armed=True)
        det.start()
        t0 = time.monotonic()
        os.write(release, b"x")
        os.close(release)
        alerts = 0
        while True:
            alerts += sum(1 for a in det.alerts(timeout=0.05) if a.get("type") != "loss")
            if os.waitpid(child, os.WNOHANG)[0]:
                break
        elapsed = time.monotonic() - t0
        alerts += sum(1 for a in det.stop() if a.get("type") != "loss")
        return {"syscall_events": det.syscall_events, "pushed_down": det.sensors.pushed_down(),
                "kernel_losses": sum(det.sensors.drops().values()), "alerts": alerts,
                "wall_s": elapsed, "traced_syscalls": len(det.plan.syscalls),
                "filtered_syscalls": len(det.plan.filters)}


def pipeline_rate(engine: Engine, sensors: SensorSet, records: list[bytes], passes: int,
                  tmp: Path) -> dict[str, Any]:
    """The reader thread's work per record, replayed in order: decode, the process
    table, the rules (every event sees the state of its moment). Then the alerts
    of one pass, formatted and written by a file output."""
    rates = []
    alerts: list[dict[str, Any]] = []
    for _ in range(passes):
        table = ProcessTable()
        table.seed_from_proc()
        matcher = RuleMatcher(engine, table, "bench")
        decode, apply, handle = sensors.decode, table.apply, matcher.handle
        alerts = []
        t0 = time.perf_counter()
        for rec in records:
            ev = decode(rec)
            if ev is None:
                continue
            apply(ev)
            alerts.extend(handle(ev))
        rates.append(len(records) / (time.perf_counter() - t0))
    # alerts out: many copies of this replay's, as an alert storm would bring
    batch = (alerts or [{}]) * max(1, 20000 // max(1, len(alerts)))
    data = default_config()   # the agent's file output as configured by default, but on
    data["outputs"]["stdout"]["enabled"] = False
    data["outputs"]["file"].update(enabled=True, path=str(tmp / "alerts.json"))
    data["outputs"]["queue_size"] = len(batch) + 1   # and room for the whole batch
    (chan,) = build_channels(AgentConfig(data))
    t0 = time.perf_counter()
    for a in batch:
        chan.send(a)
    chan.close()   # waits until every queued alert is written
    written = len(batch) / (time.perf_counter() - t0)
    return {"records": len(records), "alerts_per_pass": len(alerts),
            "median_events_per_s": statistics.median(rates),
            "us_per_event": 1e6 / statistics.median(rates),
            "alerts_written_per_s": written if alerts else None}


def rules_share(engine: Engine, sensors: SensorSet, records: list[bytes]
                ) -> tuple[float, float]:
    """One pass of the reader thread's path over `records` (as pipeline_rate),
    timing the rules' part of it apart: its events/s, and the matcher's
    microseconds per event."""
    clock = time.perf_counter
    table = ProcessTable()
    table.seed_from_proc()
    matcher = RuleMatcher(engine, table, "bench")
    decode, apply, handle = sensors.decode, table.apply, matcher.handle
    in_rules = 0.0
    t0 = clock()
    for rec in records:
        ev = decode(rec)
        if ev is None:
            continue
        apply(ev)
        t = clock()
        handle(ev)
        in_rules += clock() - t
    return len(records) / (clock() - t0), 1e6 * in_rules / len(records)


def compare_rulesets(stable: Engine, passes: int) -> dict[str, Any]:
    """Item 6 of the module's docstring. The two alternate pass by pass, and
    each ratio is the median of the passes' own: a machine whose load
    changes during the run moves both sides of a ratio alike."""
    files = [str(stock_rules_path(n)) for n in ("stable", "incubating", "sandbox")]
    every = Engine(load_rules_or_raise(files).rules)
    captured: list[bytes] = []
    run = run_detect(every, pushdown=False, capture=captured)
    pairs = []
    with SensorSet(syscalls=()) as decoder:
        for _ in range(passes):
            pairs.append((rules_share(stable, decoder, captured),
                          rules_share(every, decoder, captured)))
    med = statistics.median
    return {"records": len(captured), "traced_syscalls": run["traced_syscalls"],
            "passes": passes,
            "rules": {"stable": len(stable.compiled), "three": len(every.compiled)},
            **{name: {"events_per_s": med(p[k][0] for p in pairs),
                      "rules_us_per_event": med(p[k][1] for p in pairs)}
               for k, name in enumerate(("stable", "three"))},
            "rate_ratio": med(a[0] / b[0] for a, b in pairs),
            "rules_time_ratio": med(b[1] / a[1] for a, b in pairs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--rulesets", action="store_true",
                    help="also: the three stock rulesets against stable alone (item 6)")
    ap.add_argument("--ruleset-passes", type=int, default=21,
                    help="passes of each, alternating, for --rulesets")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    if shutil.which("strace") is None:
        print("needs strace (apt-get install strace; scripts/setup installs it)",
              file=sys.stderr)
        return 2
    engine = Engine(load_rules_or_raise([str(stock_rules_path())]).rules)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["sh", "-c", WORKLOAD], stdout=subprocess.DEVNULL)  # warm the cache
        total = count_syscalls(Path(tmp))
    captured: list[bytes] = []
    off = run_detect(engine, pushdown=False, capture=captured)
    on = run_detect(engine, pushdown=True, capture=None)
    with SensorSet(syscalls=()) as decoder, tempfile.TemporaryDirectory() as tmp:
        rate = pipeline_rate(engine, decoder, captured, args.passes, Path(tmp))
    arrival = off["syscall_events"] / off["wall_s"]
    report = {
        "workload": WORKLOAD, "kernel": os.uname().release,
        "all_syscalls": total,
        "pushdown_off": {**off, "fraction": off["syscall_events"] / total},
        "pushdown_on": {**on, "fraction": on["syscall_events"] / total},
        "evaluation": {**rate, "arrival_events_per_s": arrival,
                       "headroom": rate["median_events_per_s"] / arrival},
    }
    if args.rulesets:
        report["rulesets"] = compare_rulesets(engine, args.ruleset_passes)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"detection on Falco's stock ruleset ({len(engine.compiled)} rules), kernel "
          f"{report['kernel']}")
    print(f"workload: {WORKLOAD}")
    print(f"  every syscall it makes (strace -f -c, the peer):  {total:>9}  100.00%")
    for name, r in (("rules' syscalls, no kernel filter", off), ("pushdown on", on)):
        print(f"  reach user space, {name:<32} {r['syscall_events']:>9}  "
              f"{100 * r['syscall_events'] / total:6.2f}%   ({r['traced_syscalls']} syscalls "
              f"traced, {r['filtered_syscalls']} filtered; {r['pushed_down']} dropped in the "
              f"kernel; alerts {r['alerts']}; losses {r['kernel_losses']})")
    if on["syscall_events"]:
        print(f"  pushdown on delivers 1/{total / on['syscall_events']:.0f} of the syscalls; "
              f"{off['syscall_events'] / on['syscall_events']:.2f}x fewer events than "
              "without its filters")
    e = report["evaluation"]
    print(f"user space, one thread (decode + process table + rules): "
          f"{e['median_events_per_s']:,.0f} events/s ({e['us_per_event']:.1f} us/event, median "
          f"of {args.passes} passes over {e['records']} records)")
    print(f"  the workload produced {e['arrival_events_per_s']:,.0f} events/s: headroom "
          f"{e['headroom']:.1f}x")
    if e["alerts_written_per_s"] is not None:
        print(f"alerts formatted (JSON) and written to a file: "
              f"{e['alerts_written_per_s']:,.0f}/s ({e['alerts_per_pass']} alerts per pass, "
              "replayed many times)")
    if args.rulesets:
        c = report["rulesets"]
        print(f"stable + incubating + sandbox ({c['rules']['three']} rules) against stable "
              f"alone ({c['rules']['stable']}), the same {c['records']} records (the "
              f"{c['traced_syscalls']} syscalls the three trace, no kernel filter), median of "
              f"{c['passes']} alternating passes:")
        for name in ("stable", "three"):
            r = c[name]
            print(f"  {name:<7} {r['events_per_s']:>9,.0f} events/s; rules "
                  f"{r['rules_us_per_event']:.2f} us/event")
        print(f"  three / stable: {c['rate_ratio']:.2f}x the whole path's time, "
              f"{c['rules_time_ratio']:.2f}x the rules' time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
