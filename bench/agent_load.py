#!/usr/bin/env python3
"""Agent load test: an event storm against `bpfguard run` for a bounded time.
Does the agent stay up, does its memory stay bounded, are drops counted and
reported, and how many events per second does it get through?

Run as root from the repository root::

    sudo .venv/bin/python bench/agent_load.py            # ~1 min
    sudo .venv/bin/python bench/agent_load.py --quick    # 3 s storms, ~40 s
    sudo .venv/bin/python bench/agent_load.py --json
    sudo .venv/bin/python bench/agent_load.py --kinds open --seconds 30 --procs 4

The storm is bench/storm.c, compiled with clang into a temp dir: N processes,
released at once, issue syscalls as fast as they can for D seconds and report
how many they made. Three kinds, each measured alone and under the agent in
the same run (processes x seconds by default: benign 1 x 5, open 1 x 3, dup
one per CPU x 10; --procs and --seconds set all):

- benign: openat(AT_FDCWD, "/etc/hostname", O_RDONLY) + close, a file no
  stock rule cares about: the rules' path tests in the kernel drop every
  one, so none should reach user space, and nothing may be lost;
- open: openat(AT_FDCWD, "/etc/shadow", O_RDONLY) + close, an alert storm.
  Each openat passes the rules' kernel filter (a sensitive file, read), so
  each reaches user space, and Falco's stock "Read sensitive file untrusted"
  alerts on each ("storm" is in no trusted list); the default
  credential-files-write policy checks each one in the kernel too. Two
  syscalls per call, one of them interesting. Every open must end as an
  alert delivered or a loss counted in the alert stream;
- dup: dup3(fd, 200, 0) onto the same fd: one syscall per call, every one
  traced and kept by the kernel filter (dup3 successes), so each reaches user
  space and is matched there; no stock rule alerts on it outside a container.
  The cheapest interesting syscall bpfguard's rules trace.

For each kind: (1) the storm alone: syscalls/s, the peer; (2) a fresh agent
(`python -m bpfguard run -c CONFIG`, waited for until it logs "running:"),
then the same storm. The temp config: stock Falco rules, pushdown on (or off,
--no-pushdown), bpfguard's default policies in monitor mode (the default
config; --no-policies: off), the kernel's BPF run-time statistics off (the
default; --bpf-stats: on), alerts to a file in the temp dir (stdout off,
no rotation), metrics on a free localhost port, the control socket in the temp
dir; everything else at its default (16 MiB ring buffer, output queues of
1000). While the storm runs, /metrics is scraped every second (RSS, CPU,
bpfguard_events_total, kernel drops, output sent/dropped/queued,
BPF program run time) and /proc/PID/status read. After it, the agent is
given until nothing moves for 2 s (drained), then checked (process alive,
/healthz 200), sent SIGTERM and waited for (exit code 0 expected). Last, the
alert file is read: alert lines, and Falco's drop alerts ("Falco internal:
syscall event drop") with the sum of their output_fields n_drops.

Rates under the agent are over the scrape window around the storm; drop % =
kernel drops / (events read + kernel drops), from the scrape before the storm
to the one after the drain. Output drops (an output's queue full: the reader
hands alerts straight to the outputs' queues) are shown apart. RSS
"first/last" are the mean RSS in the first and last fifth of the storm (at
least 1 s each): equal means bounded.
Other processes on the host make events too (a few per second when idle).
Nothing is asserted; it prints numbers and says what it saw.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (  # bench/, the script's own directory, is on sys.path
    BENCH,
    REPO,
    BenchError,
    emit,
    foreign_links,
    guarded,
    log,
    ratio,
    run,
)
from prometheus_client.parser import text_string_to_metric_families

KINDS = {
    "benign": 'openat("/etc/hostname", O_RDONLY) + close',
    "open": 'openat("/etc/shadow", O_RDONLY) + close',
    "dup": "dup3(fd, 200, 0)",
}
# storm processes (None: one per CPU) and seconds, by kind, unless given
KIND_DEFAULTS: dict[str, tuple[int | None, float]] = {
    "benign": (1, 5.0), "open": (1, 3.0), "dup": (None, 10.0)}
TARGET = 1_000_000          # interesting syscalls/s the acceptance asks for
DROP_RULE = "Falco internal: syscall event drop"
READY_TIMEOUT_S = 180.0
DRAIN_QUIET_S = 2.0
DRAIN_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
# events/s the host makes anyway (the bench's own scrapes connect, too): below it, drained
BACKGROUND_EPS = 200


# --------------------------------------------------------------------------- the storm

def compile_storm(tmp: Path) -> Path:
    exe = tmp / "storm"
    run([os.environ.get("CLANG", "clang"), "-O2", "-Wall", "-o", str(exe),
         str(BENCH / "storm.c")], "compile bench/storm.c")
    return exe


def start_storm(exe: Path, kind: str, procs: int, seconds: float) -> subprocess.Popen[str]:
    # its own process group: the children die with it on any exit
    return subprocess.Popen([str(exe), kind, str(procs), f"{seconds:g}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def kill_group(p: subprocess.Popen[Any]) -> None:
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def storm_result(p: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(p)
        raise BenchError(f"the storm did not end within {timeout:.0f} s") from None
    if p.returncode:
        raise BenchError(f"the storm failed (exit {p.returncode}): {err.strip()}")
    res: dict[str, Any] = json.loads(out)
    res["syscalls_per_s"] = res["syscalls"] / res["seconds"]
    res["interesting_per_s"] = res["interesting"] / res["seconds"]
    return res


def storm_alone(exe: Path, kind: str, procs: int, seconds: float) -> dict[str, Any]:
    p = start_storm(exe, kind, procs, seconds)
    try:
        return storm_result(p, seconds + 60)
    finally:
        kill_group(p)


# --------------------------------------------------------------------------- the agent

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text: {sample name: [(labels, value), ...]}."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            out.setdefault(smp.name, []).append((smp.labels, smp.value))
    return out


@dataclass
class Sample:
    t: float
    rss: float | None = None        # process_resident_memory_bytes
    vmrss: float | None = None      # /proc/PID/status, read by the bench
    cpu: float | None = None        # process_cpu_seconds_total
    events: float | None = None     # bpfguard_events_total, every type
    kdrops: float | None = None
    sent: float | None = None
    odropped: float | None = None
    queued: float | None = None
    matches: float | None = None
    filtered: float | None = None   # bpfguard_kernel_filtered_total, every stage
    bpf_s: float | None = None
    bpf_runs: float | None = None
    by_reason: dict[str, float] = field(default_factory=dict)


def _total(m: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float | None:
    return sum(v for _, v in m[name]) if name in m else None


class Agent:
    """`bpfguard run` on a temp config; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, tmp: Path, tag: str, *, policies: bool, pushdown: bool,
                 bpf_stats: bool) -> None:
        self.dir = tmp / f"agent-{tag}"
        self.dir.mkdir()
        self.alerts = self.dir / "alerts.json"
        self.port = free_port()
        self.config = {
            "rules": {"pushdown": pushdown},
            "policies": {"enabled": policies},
            "outputs": {"stdout": {"enabled": False},
                        "file": {"enabled": True, "path": str(self.alerts), "max_bytes": 0}},
            "control": {"socket": str(self.dir / "bpfguard.sock")},
            "metrics": {"enabled": True, "listen": f"127.0.0.1:{self.port}",
                        "bpf_stats": bpf_stats},
        }
        (self.dir / "config.yaml").write_text(json.dumps(self.config, indent=2) + "\n")
        self.proc: subprocess.Popen[str] | None = None
        self.stderr: list[str] = []
        self.ready = threading.Event()
        self.returncode: int | None = None
        self.startup_s = 0.0
        self.scrape_error = ""

    def __enter__(self) -> Agent:
        venv = REPO / ".venv" / "bin" / "python"
        cmd = [str(venv) if venv.exists() else sys.executable, "-m", "bpfguard", "run",
               "-c", str(self.dir / "config.yaml")]
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, cwd=REPO,
                                     start_new_session=True)
        threading.Thread(target=self._read_stderr, daemon=True).start()
        try:
            while not self.ready.wait(0.2):
                if self.proc.poll() is not None:
                    raise BenchError(f"the agent exited at start ({self.proc.returncode}):\n"
                                     + "\n".join(self.stderr[-15:]))
                if time.monotonic() - t0 > READY_TIMEOUT_S:
                    raise BenchError(f"the agent did not log 'running:' within "
                                     f"{READY_TIMEOUT_S:.0f} s")
        except BaseException:
            self.__exit__()
            raise
        self.startup_s = time.monotonic() - t0
        return self

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))
            if "running:" in line:
                self.ready.set()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM and the exit code; None if it had to be killed."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log(f"the agent did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM: killed")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                return None
        self.returncode = self.proc.returncode
        return self.returncode

    def _get(self, path: str, timeout: float = 10.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except (OSError, ValueError) as e:
            return 0, str(e)

    def healthz(self) -> tuple[int, str]:
        return self._get("/healthz")

    def vmrss(self, key: str = "VmRSS") -> float | None:
        assert self.proc is not None
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return None
        m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
        return float(m[1]) * 1024 if m else None

    def sample(self) -> Sample:
        s = Sample(time.monotonic(), vmrss=self.vmrss())
        code, body = self._get("/metrics")
        if code != 200:
            self.scrape_error = f"{code or 'no answer'}: {body.strip()[:200]}"
            return s
        m = parse_metrics(body)
        s.rss = _total(m, "process_resident_memory_bytes")
        s.cpu = _total(m, "process_cpu_seconds_total")
        s.events = _total(m, "bpfguard_events_total") or 0.0   # none before the first event
        s.kdrops = _total(m, "bpfguard_kernel_drops_total") or 0.0
        s.sent = _total(m, "bpfguard_output_sent_total") or 0.0
        s.odropped = _total(m, "bpfguard_output_dropped_total") or 0.0
        s.queued = _total(m, "bpfguard_output_queue_depth") or 0.0
        s.matches = _total(m, "bpfguard_rule_matches_total") or 0.0
        s.filtered = _total(m, "bpfguard_kernel_filtered_total") or 0.0
        # absent without BPF stats: "-" in the report, not a zero
        s.bpf_s = _total(m, "bpfguard_bpf_program_run_seconds_total")
        s.bpf_runs = _total(m, "bpfguard_bpf_program_runs_total")
        for labels, v in m.get("bpfguard_kernel_drops_total", []):
            key = labels.get("reason", "")
            s.by_reason[key] = s.by_reason.get(key, 0.0) + v
        return s


def read_alerts(path: Path) -> dict[str, Any]:
    """Alert lines in the file, and Falco's drop alerts with their n_drops."""
    lines = drops = n_drops = n_output_drops = bad = 0
    by_cause: dict[str, int] = {}
    marker = DROP_RULE.encode()
    if path.exists():
        with path.open("rb") as f:
            for line in f:
                lines += 1
                if marker not in line:
                    continue
                try:
                    a = json.loads(line)
                except ValueError:
                    bad += 1
                    continue
                if a.get("rule") != DROP_RULE:
                    continue
                drops += 1
                fields = a.get("output_fields") or {}
                if "n_drops_output_queue_full" in fields:  # an output's queue, not the kernel's
                    n_output_drops += int(fields.get("n_drops", 0))
                else:
                    n_drops += int(fields.get("n_drops", 0))
                for k, v in fields.items():
                    if k.startswith("n_drops_"):
                        by_cause[k[8:]] = by_cause.get(k[8:], 0) + int(v)
    return {"lines": lines, "drop_alerts": drops, "n_drops": n_drops,
            "n_output_drops": n_output_drops,
            "n_drops_by_cause": by_cause, "unparsable": bad,
            "bytes": path.stat().st_size if path.exists() else 0}


# --------------------------------------------------------------------------- one kind

def _d(a: Sample, b: Sample, attr: str) -> float | None:
    x, y = getattr(a, attr), getattr(b, attr)
    return None if x is None or y is None else y - x


def _last_good(samples: list[Sample]) -> Sample:
    good = [s for s in samples if s.events is not None]
    if not good:
        raise BenchError("no /metrics scrape succeeded")
    return good[-1]


def under_agent(tmp: Path, exe: Path, kind: str, procs: int, seconds: float,
                args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {"kind": kind}
    with Agent(tmp, kind, policies=not args.no_policies, pushdown=not args.no_pushdown,
               bpf_stats=args.bpf_stats) as ag:
        res["startup_s"] = ag.startup_s
        res["config"] = ag.config
        time.sleep(1.0)   # let the start-up's own events settle
        res["rss_before_first_scrape"] = ag.vmrss()
        ag.sample()       # the first scrape grows the agent (see the report); not counted
        time.sleep(0.5)
        before = ag.sample()
        for _ in range(3):
            if before.events is not None or not ag.alive:
                break
            time.sleep(1.0)
            before = ag.sample()
        if before.events is None:
            raise BenchError(f"the agent's /metrics did not answer before the storm "
                             f"({ag.scrape_error}); agent {'alive' if ag.alive else 'exited'}"
                             ", its stderr:\n" + "\n".join(ag.stderr[-15:]))
        samples = [before]
        storm = start_storm(exe, kind, procs, seconds)
        t_start = time.monotonic()
        try:
            next_t = t_start + 1.0
            while storm.poll() is None:
                time.sleep(max(0.0, min(next_t, t_start + seconds + 60) - time.monotonic()))
                if storm.poll() is None:
                    samples.append(ag.sample())
                    next_t += 1.0
                if time.monotonic() - t_start > seconds + 60:
                    break
            st = storm_result(storm, 10)
        finally:
            kill_group(storm)
        t_end = time.monotonic()
        after = ag.sample()
        samples.append(after)
        res["storm"] = st
        # drain: nothing moves for DRAIN_QUIET_S, the outputs' queues empty
        keys = ("kdrops", "sent", "odropped")
        quiet_since = time.monotonic()
        last = after
        drained = False
        while time.monotonic() - t_end < DRAIN_TIMEOUT_S:
            time.sleep(0.5)
            s = ag.sample()
            samples.append(s)
            if not ag.alive:
                break
            busy = s.events is None or last.events is None or s.queued or \
                any(getattr(s, k) != getattr(last, k) for k in keys) or \
                s.events - last.events > BACKGROUND_EPS * (s.t - last.t)
            if busy:
                quiet_since = s.t
            elif s.t - quiet_since >= DRAIN_QUIET_S:
                drained = True
                break
            last = s
        res["drained"] = drained
        res["drain_s"] = quiet_since - t_end if drained else None
        final = _last_good(samples)
        # does the memory go back? RSS sampled until `settle` s after the storm
        settled: list[Sample] = []
        while ag.alive and time.monotonic() - t_end < args.settle:
            time.sleep(1.0)
            settled.append(ag.sample())
        good = [x for x in settled if x.rss is not None]
        res["settle_s"] = args.settle
        res["rss_settled"] = good[-1].rss if good else None
        res["alive_after"] = ag.alive
        code, body = ag.healthz()
        res["healthz"] = code
        res["healthz_body"] = body[:300]
        res["vmhwm"] = ag.vmrss("VmHWM")
        res["exit_code"] = ag.stop()
        res["stderr_problems"] = [ln for ln in ag.stderr
                                  if re.search(r"ERROR|CRITICAL|Traceback|Error:", ln)][:10]
        warns: dict[str, int] = {}
        for ln in ag.stderr:
            if "WARNING" in ln:
                key = re.sub(r"\d+(\.\d+)?", "N", ln)
                warns[key] = warns.get(key, 0) + 1
        res["stderr_warnings"] = warns
    res["alerts"] = read_alerts(ag.alerts)
    # storm window: the scrape before the storm to the first after it
    win = after.t - before.t
    res["window_s"] = win
    for k in ("events", "kdrops", "sent", "odropped", "matches", "filtered", "bpf_s",
              "bpf_runs", "cpu"):
        d = _d(before, after, k)
        res[f"storm_{k}"] = d
        res[f"storm_{k}_per_s"] = None if d is None else d / win
        res[f"total_{k}"] = _d(before, final, k)
    ev, kd = (res["total_events"] or 0), (res["total_kdrops"] or 0)
    # what the storm window put in the ring buffer is read during the drain: the
    # kernel's offer is every event read or dropped, over the storm's own seconds
    res["offered_per_s"] = (ev + kd) / st["seconds"]
    res["read_total_per_s"] = ev / max(1e-3, (quiet_since if drained else final.t) - before.t)
    res["drop_pct"] = 100 * kd / (ev + kd) if ev + kd else 0.0
    res["kdrops_by_reason"] = {k: v - before.by_reason.get(k, 0.0)
                               for k, v in final.by_reason.items()}
    # RSS
    storm_s = [s for s in samples if t_start <= s.t <= t_end and s.rss is not None]
    edge = max(1.0, (t_end - t_start) / 5)
    first = [s.rss for s in storm_s if s.t - t_start <= edge + 0.05]
    lastw = [s.rss for s in storm_s if t_end - s.t <= edge + 0.05]
    rss_all = [s.rss for s in samples if s.rss is not None]
    res["rss_start"] = before.rss
    res["rss_peak"] = max(rss_all + [x.rss for x in settled if x.rss is not None], default=None)
    res["rss_end"] = final.rss
    res["rss_first"] = sum(first) / len(first) if first else None
    res["rss_last"] = sum(lastw) / len(lastw) if lastw else None
    res["scrapes"] = len(samples)
    res["scrapes_failed"] = sum(s.events is None for s in samples)
    res["series"] = [{"t": round(s.t - t_start, 2), "rss": s.rss, "vmrss": s.vmrss,
                      "events": s.events, "kdrops": s.kdrops,
                      "sent": s.sent, "odropped": s.odropped, "queued": s.queued,
                      "cpu": s.cpu} for s in samples]
    return res


# --------------------------------------------------------------------------- report

def si(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    a = abs(v)
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:.2f}{suf}{unit}"
    return f"{v:.0f}{unit}" if a >= 10 or v == int(v) else f"{v:.2f}{unit}"


def mib(v: float | None) -> str:
    return "-" if v is None else f"{v / 2**20:.0f} MiB"


def x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def build_rows(rep: dict[str, Any]) -> list[tuple[str, list[str]]]:
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, fn: Any) -> None:
        vals = []
        for k in rep["kinds"]:
            r = rep["results"][k]
            try:
                vals.append(fn(r["alone"], r["agent"]))
            except (KeyError, TypeError, ZeroDivisionError):
                vals.append("-")
        rows.append((label, vals))

    row("storm syscalls/s, alone (peer)", lambda a, g: si(a["syscalls_per_s"]))
    row("storm syscalls/s, under the agent", lambda a, g: si(g["storm"]["syscalls_per_s"]))
    row("  ratio under agent / alone", lambda a, g: x(ratio(g["storm"]["syscalls_per_s"],
                                                           a["syscalls_per_s"])))
    row("interesting syscalls/s, alone", lambda a, g: si(a["interesting_per_s"]))
    row("interesting syscalls/s, under the agent",
        lambda a, g: si(g["storm"]["interesting_per_s"]))
    row("kernel events/s offered (read + dropped)", lambda a, g: si(g["offered_per_s"]))
    row("events/s read and matched by the agent", lambda a, g: si(g["storm_events_per_s"]))
    row("events/s read, storm + drain", lambda a, g: si(g["read_total_per_s"]))
    row("  share of offered (storm window)",
        lambda a, g: f"{100 * g['storm_events_per_s'] / g['offered_per_s']:.1f}%")
    row("events filtered in the kernel (pushdown)", lambda a, g: si(g["total_filtered"]))
    row("kernel drops (storm + drain)", lambda a, g: si(g["total_kdrops"]))
    row("drop % kernel/(read+drops)", lambda a, g: f"{g['drop_pct']:.1f}%")
    row("alerts/s written (output sent)", lambda a, g: si(g["storm_sent_per_s"]))
    row("alerts dropped by the output queue", lambda a, g: si(g["total_odropped"]))
    row("alert lines in the file / output sent", lambda a, g: f"{si(g['alerts']['lines'])} / "
        f"{si(g['total_sent'])}")
    row("rule matches / sent + dropped - drop alerts", lambda a, g: f"{si(g['total_matches'])} / "
        f"{si(g['total_sent'] + g['total_odropped'] - g['alerts']['drop_alerts'])}")
    row("Falco drop alerts / sum n_drops", lambda a, g: f"{g['alerts']['drop_alerts']} / "
        f"{si(g['alerts']['n_drops'])}")
    row("  n_drops / metrics (kernel)", lambda a, g: x(ratio(
        g["alerts"]["n_drops"], g["total_kdrops"] or 0)))
    row("alert storm: alerts delivered + losses counted",
        lambda a, g: si(_accounted(g)) if g["kind"] in ALERTING else "-")
    row("  / interesting syscalls made (each alerts)", lambda a, g: x(ratio(
        _accounted(g), g["storm"]["interesting"])) if g["kind"] in ALERTING else "-")
    row("  output drops reported / metrics", lambda a, g: f"{si(g['alerts']['n_output_drops'])}"
        f" / {si(g['total_odropped'])}")
    row("RSS before the storm", lambda a, g: mib(g["rss_start"]))
    row("RSS peak (scrapes) / VmHWM", lambda a, g: f"{mib(g['rss_peak'])} / {mib(g['vmhwm'])}")
    row("  peak / before", lambda a, g: x(ratio(g["rss_peak"], g["rss_start"])))
    row("RSS first / last fifth of the storm", lambda a, g: f"{mib(g['rss_first'])} / "
        f"{mib(g['rss_last'])}")
    row("  last / first", lambda a, g: x(ratio(g["rss_last"], g["rss_first"])))
    row("RSS settled (s after the storm)", lambda a, g: f"{mib(g['rss_settled'])} "
        f"({g['settle_s']:g} s)" if g["settle_s"] else "-")
    row("  settled / before", lambda a, g: x(ratio(g["rss_settled"], g["rss_start"]))
        if g["settle_s"] else "-")
    row("agent CPU s (storm + drain)", lambda a, g: f"{g['total_cpu']:.1f} s")
    row("  agent CPUs busy during the storm", lambda a, g: f"{g['storm_cpu_per_s']:.2f}")
    row("BPF programs: CPUs busy during the storm", lambda a, g: f"{g['storm_bpf_s_per_s']:.2f}")
    row("  ns per BPF program run",
        lambda a, g: f"{1e9 * g['storm_bpf_s'] / g['storm_bpf_runs']:.0f}")
    row("drain after the storm", lambda a, g: "not drained" if g["drain_s"] is None
        else f"{g['drain_s']:.1f} s")
    row("alive after the storm / healthz", lambda a, g: f"{'yes' if g['alive_after'] else 'NO'} "
        f"/ {g['healthz'] or 'no answer'}")
    row("exit code after SIGTERM", lambda a, g: "killed" if g["exit_code"] is None
        else str(g["exit_code"]))
    return rows


# the kinds whose every interesting syscall raises an alert
ALERTING = ("open",)


def _accounted(g: dict[str, Any]) -> float:
    """Alerts in the file (drop alerts aside) plus every loss the drop alerts
    report, the kernel's and the outputs' queues': an alert storm leaves no
    syscall unaccounted when this is at least the syscalls that alert."""
    a = g["alerts"]
    return float(a["lines"] - a["drop_alerts"] + a["n_drops"] + a["n_output_drops"])


def print_report(rep: dict[str, Any]) -> None:
    p = rep["params"]
    print(f"bpfguard agent under an event storm, kernel {p['kernel']}, {p['cpus']} CPUs")
    print(f"agent: stock Falco rules, pushdown {'off' if p['no_pushdown'] else 'on'}, "
          f"default policies {'off' if p['no_policies'] else 'on (monitor)'}, "
          f"BPF stats {'on' if p['bpf_stats'] else 'off'}, alerts to a "
          "file, metrics scraped every 1 s")
    for k in rep["kinds"]:
        r = rep["results"][k]["alone"]
        print(f"  {k}: {KINDS[k]}, {r['procs']} process{'es' * (r['procs'] > 1)} x "
              f"{r['seconds']:.1f} s")
    print()
    rows = build_rows(rep)
    w0 = max(len(r[0]) for r in rows)
    w = max(14, *(len(v) + 2 for _, vals in rows for v in vals))
    hdr = f"{'':{w0}}" + "".join(f"{k:>{w}}" for k in rep["kinds"])
    print(hdr)
    print("-" * len(hdr))
    for label, vals in rows:
        print(f"{label:{w0}}" + "".join(f"{v:>{w}}" for v in vals))
    print()
    for k in rep["kinds"]:
        g = rep["results"][k]["agent"]
        reasons = ", ".join(f"{r} {si(v)}" for r, v in g["kdrops_by_reason"].items() if v)
        causes = ", ".join(f"{c} {si(v)}" for c, v in g["alerts"]["n_drops_by_cause"].items())
        print(f"{k}: kernel drops by reason: {reasons or 'none'}; drop alerts by cause: "
              f"{causes or 'none'}; agent start-up {g['startup_s']:.1f} s (untimed); "
              f"scrapes {g['scrapes']} ({g['scrapes_failed']} failed); RSS before the first "
              f"scrape {mib(g['rss_before_first_scrape'])}; alert file "
              f"{g['alerts']['bytes'] / 2**20:.0f} MiB")
        others = sorted(set(rep["results"][k]["alone"]["other_bpf_links"])
                        | set(g["other_bpf_links_after"]))
        if others:
            print(f"  WARNING: someone else's BPF tracing programs were attached "
                  f"({', '.join(others[:4])}): the storm ran slower in both runs")
        for ln, n in sorted(g["stderr_warnings"].items(), key=lambda kv: -kv[1])[:3]:
            print(f"  agent stderr, {n}x: {ln}")
        for ln in g["stderr_problems"]:
            print(f"  agent stderr: {ln}")
    print()
    for line in verdict(rep):
        print(line)


def verdict(rep: dict[str, Any]) -> list[str]:
    out = []
    best_alone = max(rep["results"][k]["alone"]["interesting_per_s"] for k in rep["kinds"])
    best_under = max(rep["results"][k]["agent"]["storm"]["interesting_per_s"]
                     for k in rep["kinds"])
    best_offered = max(rep["results"][k]["agent"]["offered_per_s"] for k in rep["kinds"])
    reached = "reached" if best_under >= TARGET else "NOT reached"
    out.append(f"target >= {si(TARGET)} interesting syscalls/s: {reached} under the agent "
               f"(best {si(best_under)}/s; the kernel offered {si(best_offered)} events/s; "
               f"{si(best_alone)}/s with no agent)")
    for k in rep["kinds"]:
        g = rep["results"][k]["agent"]
        lost = (g["total_kdrops"] or 0) + (g["total_odropped"] or 0)
        if k == "benign":
            opens = g["storm"]["interesting"]
            out.append(f"benign: losses (kernel, output) {si(lost)}; filtered in the "
                       f"kernel {si(g['total_filtered'])} of {si(opens)} opens: "
                       f"{'yes' if not lost and (g['total_filtered'] or 0) >= opens else 'NO'}")
        elif k == "open":
            made = g["storm"]["interesting"]
            out.append(f"open: alerts delivered + losses counted {si(_accounted(g))} >= opens "
                       f"made {si(made)}: {'yes' if _accounted(g) >= made else 'NO'}")
        up = g["alive_after"] and g["healthz"] == 200 and g["exit_code"] == 0
        grew = ratio(g["rss_last"], g["rss_first"])
        bounded = grew is not None and grew < 1.25
        reported = (g["alerts"]["drop_alerts"] > 0) == (
            (g["total_kdrops"] or 0) + (g["total_odropped"] or 0) > 0)
        out.append(f"{k}: stayed up: {'yes' if up else 'NO'}; RSS bounded: "
                   f"{'yes' if bounded else 'NO'} (last/first {x(grew)}); drops in the metrics "
                   f"and as drop alerts: {'yes' if reported else 'NO'}")
        if g["settle_s"]:
            peak, back = ratio(g["rss_peak"], g["rss_start"]), ratio(g["rss_settled"],
                                                                      g["rss_start"])
            ok = peak is not None and back is not None and peak <= 2 and abs(back - 1) <= 0.1
            out.append(f"{k}: memory: peak {x(peak)} idle (<= 2x), {g['settle_s']:g} s after "
                       f"the storm {x(back)} idle (within 10%): {'yes' if ok else 'NO'}")
    return out


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 s storms (~40 s)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--seconds", type=float,
                    help="storm length for every kind (default: per kind; quick 3)")
    ap.add_argument("--procs", type=int,
                    help="storm processes for every kind (default: per kind)")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help=f"storm kinds, comma-separated (default {','.join(KINDS)})")
    ap.add_argument("--settle", type=float, default=0.0,
                    help="after each storm, go on sampling RSS for this many seconds: does "
                         "it come back to its idle level? (default 0)")
    ap.add_argument("--memory", action="store_true",
                    help="the memory check: a 60 s open storm, then 60 s to settle; prints "
                         "peak / idle and settled / idle (idle: RSS before the storm)")
    ap.add_argument("--no-policies", action="store_true",
                    help="run the agent with policies.enabled: false")
    ap.add_argument("--no-pushdown", action="store_true",
                    help="run the agent with rules.pushdown: false")
    ap.add_argument("--bpf-stats", action="store_true",
                    help="run the agent with metrics.bpf_stats: true (per-program run "
                         "metrics, at two clock reads per BPF program run)")
    args = ap.parse_args(argv)
    if args.memory:
        args.kinds, args.seconds, args.settle = "open", args.seconds or 60.0, args.settle or 60.0
    kinds = [k for k in args.kinds.split(",") if k]
    if (args.seconds is not None and args.seconds <= 0) or \
            (args.procs is not None and args.procs < 1) or not kinds or \
            any(k not in KINDS for k in kinds):
        ap.error(f"--seconds and --procs must be positive, --kinds among {', '.join(KINDS)}")
    started = time.monotonic()
    return guarded("agent_load.py", lambda tmp: _bench(tmp, args, kinds, started),
                   interrupted="interrupted: the agent and the storm stopped")


def shape(kind: str, args: argparse.Namespace) -> tuple[int, float]:
    """Storm processes and seconds for `kind`."""
    procs, seconds = KIND_DEFAULTS[kind]
    return (args.procs or procs or os.cpu_count() or 1,
            args.seconds or (3.0 if args.quick else seconds))


def other_tracing() -> list[str]:
    """Tracing BPF links of someone else (another agent, a test run): they run on
    the storm's syscalls and slow it, alone and under the agent alike."""
    links = foreign_links() or set()
    return sorted(ln for ln in links if not ln.startswith(("xdp", "tcx", "netfilter", "netkit")))


def _bench(tmp: Path, args: argparse.Namespace, kinds: list[str], started: float) -> int:
    exe = compile_storm(tmp)
    results: dict[str, Any] = {}
    for k in kinds:
        procs, seconds = shape(k, args)
        log(f"{k}: storm alone, {procs} x {seconds:g} s")
        others = other_tracing()
        if others:
            log(f"warning: someone else's BPF programs are attached ({', '.join(others[:4])}"
                f"{', ...' if len(others) > 4 else ''}): they slow the storm; numbers skewed")
        alone = storm_alone(exe, k, procs, seconds)
        alone["other_bpf_links"] = others
        log(f"{k}: {si(alone['syscalls_per_s'])} syscalls/s; now under the agent")
        agent = under_agent(tmp, exe, k, procs, seconds, args)
        agent["other_bpf_links_after"] = other_tracing()
        log(f"{k}: {si(agent['storm']['syscalls_per_s'])} syscalls/s under the agent, "
            f"{si(agent['storm_events_per_s'])} events/s read")
        results[k] = {"alone": alone, "agent": agent}
    params = {"kernel": os.uname().release, "cpus": os.cpu_count(),
              "no_policies": args.no_policies,
              "no_pushdown": args.no_pushdown, "bpf_stats": args.bpf_stats,
              "elapsed_s": round(time.monotonic() - started, 1)}
    rep = {"params": params, "kinds": kinds, "results": results}
    return emit(rep, args.json, print_report)


if __name__ == "__main__":
    sys.exit(main())
