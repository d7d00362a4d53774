"""`bpfguard run`: the agent, composed from one configuration.

::

    kernel: sensor object ── ring buffer ── reader ── process table ─┬─ Falco rules ──────┐
            (one program per kernel event)                           └─ TracingPolicies ──┤
            audit netlink ──────────────── reader ── seccomp log ─────────────────────────┤
            XDP firewalls (pinned: they outlive the agent)                                 │
                                          alerts ── outputs (bounded queues: stdout, file, ┘
                                                             syslog, webhook, sqlite)
    control socket (policy / rules / reload / status /   metrics + /healthz (HTTP, localhost)
                    firewall changes)

One sensor set serves the rules and the policies: one BPF object, one ring
buffer, one reader thread, one process table; the Falco rules and the policy
engine are subscribers of that one pipeline, and the reader hands their
alerts straight to the output channels (which queue, and never block).
Every alert, whatever made it, has Falco's JSON alert shape, so one set of
outputs, one alert store and one set of metrics serves all: a policy event
is an alert whose ``rule`` is the policy's name, ``source`` ``tetragon``,
with the whole Tetragon event under ``tetragon``.

Start-up is all or nothing (:meth:`Agent.__init__` raises and leaves nothing
attached; a firewall it loaded is unloaded again). SIGHUP (or the control
socket's ``reload``) re-reads the configuration and reloads rules and
policies atomically: everything new is built first, and if any of it fails
before the new rules take over, the running set stays and the reason is
logged, counted and shown in /healthz (should only the kernel's filters then
fail to narrow, the reload says so: they keep what the old rules wanted too,
more events and none missed). New rules change the running sensor in two steps (the kernel
first keeps what old and new rules want, then, once the new rules match in
user space, only what they want), so nothing is missed while they change.
SIGTERM and SIGINT stop it: the reader drains, the outputs flush, every
program is detached, and only the firewalls' pinned state remains.

This module is the composition root: :class:`Agent` builds the parts from
the configuration and wires them; the parts live next to it —
:mod:`.firewalls` (the pinned firewalls), :mod:`.metrics` (Prometheus, with
:class:`~bpfguard.agent.metrics.AgentMetrics` reading the agent),
:mod:`.detect` (the Falco rules subscriber, and the rules from the
configuration), :mod:`.policy` (the policy subscriber, and the policies from
the configuration), :mod:`.outputs` (the channels and the rate limiter),
:mod:`.control` (the socket and its token) and :mod:`bpfguard.outputs.alert`
(every alert, policy and seccomp ones too).
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from ..containers import Container
from ..errors import BpfguardError, ConfigError
from ..outputs.alert import Alert, seccomp_alert
from ..outputs.channels import (
    Channels,
)
from ..policy import load_policy_text
from ..policy.engine import PolicyEngine
from ..policy.events import PolicyEvent
from ..proctable import ProcessTable, read_proc
from ..sensors import SensorSet
from ..sensors.events import Event
from ..sensors.sensors import SyscallChange
from ..sensors.sensorset import _boot_id
from . import SENSORS_LABEL, Pipeline
from .config import AgentConfig, load_config
from .control import ControlServer, TcpControlServer, read_token
from .detect import ENV_BYTES, RuleMatcher, build_containers, build_engine
from .firewalls import Firewalls
from .outputs import build_channels, build_limiter
from .pins import AgentPins, PinnedAgent, previous_agents
from .policy import PolicySubscriber, read_policies

__all__ = ["Agent"]

log = logging.getLogger("bpfguard.agent")

# configuration sections a reload cannot change in a running agent
_RESTART_SECTIONS = ("sensors", "outputs", "control", "metrics", "firewall", "seccomp_audit",
                     "containers")

# how long a status waits for a firewall change under way before it answers
# with the view it has
_STATUS_SYNC_S = 2.0
# how long the seccomp audit waits for the process table to learn a process
# that was gone from /proc before its audit record was read
_AUDIT_PLACE_S = 0.5
# ... and for the runtime's answer about its container (a request's timeout)
_AUDIT_LOOKUP_S = 2.5
# a pid not placed is not waited for again for this long
_AUDIT_UNPLACED_S = 10.0


def _freeze_heap() -> None:
    """Moves what start-up (or a reload) built into the collector's permanent
    generation. The rules, policies and tables live as long as the agent; left
    in the collected generations, every full collection under an event storm
    walks all of them again (a fifth of the reader's time in a profile)."""
    gc.unfreeze()    # what an earlier freeze kept and a reload replaced can go now
    gc.collect()
    gc.freeze()


# a storm: more events than this per second read at its peak; over once the
# rate has stayed under a quarter of that peak for _CALM_S (what the host
# reads in its normal run is no storm, however high, and a rate hovering
# near the floor does not trim over and over)
_STORM_EVENTS_PER_S = 1000
_CALM_S = 5.0


def _malloc_trim() -> None:
    """glibc's malloc_trim(0): freed heap memory back to the kernel. Python
    frees its small-object arenas itself, but glibc keeps the pages of the
    larger blocks (event and alert buffers) a storm freed, and RSS stays
    at the storm's level for as long as the process lives."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):   # not glibc
        return
    trim(0)


class Agent:
    """The composed agent.

    Args:
        config: the validated configuration.
        config_path: the file it came from (re-read on reload); None for the
            embedded default.
        stdout: where the stdout output writes (default: sys.stdout).
        features: the probe's Features (None: probe now, if policies are on).
    """

    def __init__(self, config: AgentConfig, *, config_path: str | None = None,
                 stdout: TextIO | None = None, features: Any = None) -> None:
        self.cfg = config
        self.config_path = config_path
        self.hostname = socket.gethostname()
        self._send_lock = threading.Lock()
        self._reload_lock = threading.RLock()   # reloads and live policy changes
        self._matches: dict[tuple[str, str], int] = {}
        self._reloads = {"ok": 0, "error": 0}
        self.last_reload_error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._signals: list[int] = []
        self.sensors: SensorSet | None = None   # None: neither rules nor policies
        self.containers = build_containers(config)
        self.table = ProcessTable(boot_id=_boot_id(), containers=self.containers)
        self.pipeline: Pipeline | None = None
        self.matcher: RuleMatcher | None = None  # the Falco rules (replaced by a reload)
        self._retired: list[RuleMatcher] = []    # replaced rules, until the reader empties them
        self.retired_holds = [0, 0]   # held and unenriched counts of replaced rules (metrics)
        self._retire_lock = threading.Lock()
        self._unplaced: dict[int, float] = {}   # audit pids not placed in a container, until
        self.policies: PolicySubscriber | None = None
        self.pins: AgentPins | None = None   # policies.pin_dir: enforcement outlives a crash
        self._pins_live = False   # from start() on, policy changes update the pins
        self._pin_error: str | None = None   # the last pin update's failure, for /healthz
        self._previous: list[PinnedAgent] = []   # dead agents' pins, released once we run
        self._texts: dict[str, str] = {}   # the YAML of policies added through the socket
        self.firewalls = Firewalls()
        self.audit: Any = None
        self._audit_thread: threading.Thread | None = None
        self.control: list[ControlServer] = []
        self.metrics: Any = None
        self._stats_fd = -1
        self._started = False
        self._fatal: str | None = None
        # events read and when, last second's; the peak rate since the last
        # trim; since when the rate has been calm
        self._storm = (0, 0.0, 0.0, 0.0)
        data = config.data
        self.channels = Channels([], hostname=self.hostname)
        try:
            self.channels = Channels(build_channels(config, stdout), limiter=build_limiter(config),
                                     hostname=self.hostname)
            if data["rules"]["enabled"]:
                self.matcher = RuleMatcher(build_engine(config), self.table, self.hostname,
                                           pushdown=config["rules.pushdown"],
                                           hold_ns=config["containers.hold_ms"] * 1_000_000)
            wanted = read_policies(config)
            if data["policies"]["pin_dir"]:
                # before anything loads: no second agent beside a live one's pins
                self._previous = previous_agents(Path(data["policies"]["pin_dir"]), os.getpid())
            if data["policies"]["enabled"]:
                from ..probe import features as probe_features

                self.policies = PolicySubscriber(features if features is not None
                                          else probe_features(), self.table, self.hostname)
                self.policies.engine.follow_containers(self.containers)
            if self.matcher is not None or self.policies is not None:
                self._make_sensors()
            if self.policies is not None:
                self.policies.apply(wanted, data["policies"]["cgroup"] or None)
            if data["policies"]["pin_dir"] and self.policies is not None:
                assert self.sensors is not None
                self.pins = AgentPins(Path(data["policies"]["pin_dir"]), self.sensors,
                                      self.policies.engine, self._policy_origin)
            self._adopt_policies()
            self.firewalls.load(data["firewall"]["interfaces"])
            if data["seccomp_audit"]["enabled"]:
                from ..seccomp.audit import AuditReader

                self.audit = AuditReader()
            if data["metrics"]["enabled"] and data["metrics"]["bpf_stats"]:
                from ..loader import enable_run_stats

                self._stats_fd = enable_run_stats()
            self._make_control()
            if data["metrics"]["enabled"]:
                from .metrics import AgentMetrics, MetricsServer, registry_for

                self.metrics = MetricsServer(data["metrics"]["listen"],
                                             registry_for(AgentMetrics(self)), self.health)
        except BaseException:
            self.close(unload_firewalls=True)
            raise

    # -- construction ------------------------------------------------------

    def _make_sensors(self) -> None:
        """The one sensor set: the syscalls the rules need, the policy engine."""
        s = self.cfg.data["sensors"]
        plan = self.matcher.plan if self.matcher is not None else None
        self.sensors = SensorSet(
            syscalls=plan.syscalls if plan is not None else (),
            filters=plan.filters if plan is not None else None,
            str_max=s["str_max"], args_max=s["args_max"], ringbuf_bytes=s["ringbuf_kb"] * 1024,
            env_max=ENV_BYTES if self.matcher is not None and self.matcher.uses_env else 0,
            extra=[self.policies.engine] if self.policies is not None else ())
        self.table.seed_from_proc()
        self.pipeline = Pipeline(self.sensors, self.table, handler=self._handle, idle=self._idle,
                                 sink=self._deliver)

    def _handle(self, ev: Event | PolicyEvent) -> Iterable[Alert]:
        """Each event to its subscribers, on the reader thread."""
        if isinstance(ev, PolicyEvent):
            return self.policies.handle(ev) if self.policies is not None else ()
        matcher = self.matcher   # one read: a reload may swap it meanwhile
        return matcher.handle(ev) if matcher is not None else ()

    def _idle(self) -> Iterable[Alert]:
        """What the rules held back and may match now (see RuleMatcher.release)."""
        out: list[Alert] = []
        while self._retired:   # rules a reload replaced: what they held, as they would
            old = self._retired[-1]
            out.extend(old.release(everything=True))
            with self._retire_lock:   # counted once, by the metrics, at every moment
                self._retired.pop()
                self.retired_holds[0] += old.held
                self.retired_holds[1] += old.unenriched
        matcher = self.matcher
        if matcher is not None:
            out.extend(matcher.release())
        return out

    def hold_counts(self) -> tuple[int, int]:
        """Events the rules held for their container's metadata, and events
        matched without it, over every rule set this agent has run."""
        with self._retire_lock:
            held, unenriched = self.retired_holds
            for m in [self.matcher, *self._retired]:
                if m is not None:
                    held, unenriched = held + m.held, unenriched + m.unenriched
        return held, unenriched

    def _adopt_policies(self) -> None:
        """The policies dead agents pinned: those they had been given
        through the control socket are loaded again (the configuration's
        are the configuration's now), and every one keeps its counters."""
        if self.policies is None:
            if any(a.policies for a in self._previous):
                log.warning("policies are off: the pinned ones of %s go once this agent runs",
                            ", ".join(str(a.path) for a in self._previous))
            return
        engine = self.policies.engine
        for prev in self._previous:
            for p in prev.policies:
                name = p["name"]
                if p.get("origin") == "control" and isinstance(p.get("text"), str):
                    if name in engine.policies:
                        log.warning("policy %s, added through the control socket of agent "
                                    "pid %d, is not loaded again: one of that name is (%s)",
                                    name, prev.pid, engine.policies[name].source)
                        continue
                    try:
                        engine.add(load_policy_text(p["file"], p["text"]), source=p["file"],
                                   mode=p["mode"])
                    except BpfguardError as exc:
                        raise ConfigError(
                            f"policy {name}, pinned by agent pid {prev.pid} at {prev.path}, "
                            f"does not load again: {exc}\n(`rm -r {prev.path}` ends the "
                            "enforcement of what that agent pinned)") from None
                    self._texts[name] = p["text"]
                    if p.get("state") == "disabled":
                        engine.disable(name)
                lp = engine.policies.get(name)
                if lp is not None:
                    for k, v in p["counters"].items():
                        lp.counted[k] = lp.counted.get(k, 0) + v

    def _policy_origin(self, name: str) -> tuple[str, str | None]:
        """Where a loaded policy came from, and the YAML of one that came
        through the control socket (the pins keep it, to load again)."""
        if self.policies is not None and name in self.policies.from_config:
            return "config", None
        return "control", self._texts.get(name)

    def _sync_pins(self) -> None:
        """The pins follow a policy change (see agent.pins). A failure leaves
        the change in force and is logged: it only weakens what a crash
        would leave behind."""
        if self.pins is None or not self._pins_live:
            return
        try:
            self.pins.sync()
            self._pin_error = None
        except Exception as exc:  # noqa: BLE001 - the change itself is made; say, go on
            self._pin_error = str(exc) if isinstance(exc, BpfguardError) else \
                f"{type(exc).__name__}: {exc}"
            log.error("the policies' pins could not be updated (a crash now would leave "
                      "what was pinned before, or nothing, enforcing): %s", self._pin_error)

    def _make_control(self) -> None:
        ctl = self.cfg.data["control"]
        if ctl["socket"]:
            self.control.append(ControlServer(ctl["socket"], self))
        if ctl["tcp_listen"]:
            token = read_token(ctl["tcp_token_file"])
            self.control.append(TcpControlServer(ctl["tcp_listen"], self, token=token))

    # -- running -----------------------------------------------------------

    def start(self) -> None:
        """Attaches everything and starts the threads; alerts flow from here on."""
        self.containers.start()
        if self.pipeline is not None:
            self.pipeline.start()
        self._pins_live = True
        self._sync_pins()   # (a failure is logged and shown by /healthz: enforcement runs)
        if self.audit is not None:
            self._audit_thread = threading.Thread(target=self._audit_loop,
                                                  name="bpfguard-seccomp-audit", daemon=True)
            self._audit_thread.start()
        for c in self.control:
            c.start()
        if self.metrics is not None:
            self.metrics.start()
        # last, once nothing can fail the start: ours attached and pinned
        # before the dead agents' go, so enforcement never lapses
        AgentPins.adopt(self._previous)
        self._previous = []
        self._started = True

    def _check_reader(self) -> None:
        """The reader died: the agent must not go on silently."""
        p = self.pipeline
        if p is not None and p.error is not None and self._fatal is None:
            self._fatal = f"reader failed: {type(p.error).__name__}: {p.error}"
            log.error("%s", self._fatal)
            self.request_stop()

    def _audit_loop(self) -> None:
        assert self.audit is not None
        try:
            while not self._stop.is_set():
                for rec in self.audit.read(timeout=0.5):
                    self._deliver(seccomp_alert(rec, self.hostname,
                                                container=self._container_of(rec.pid)))
        except BaseException as exc:
            self._fatal = f"seccomp audit reader failed: {type(exc).__name__}: {exc}"
            log.error("%s", self._fatal)
            self.request_stop()

    def _container_of(self, pid: int) -> tuple[str, Container | None] | None:
        """(full id or "host", its runtime's answer) of a process's container,
        from the process table, else /proc; None if the process is gone and
        the table has not heard of it. Runs on the audit thread, which may
        wait: for the reader to catch up with the exec (the audit record can
        come first), and for the runtime."""
        now = time.monotonic()
        # a pid that could not be placed is waited for once: a burst of its
        # records must not hold the audit thread (the audit socket drops
        # what is not read)
        self._unplaced = {k: v for k, v in self._unplaced.items() if v > now}
        deadline = now if pid in self._unplaced else now + _AUDIT_PLACE_S
        while True:
            # the table, else /proc (read_proc does not add it: the table is the reader's)
            p = self.table.get(pid) or read_proc(pid, boot_id=self.table.boot_id)
            if p is not None:
                ref = p.container
                break
            if time.monotonic() >= deadline:
                self._unplaced[pid] = time.monotonic() + _AUDIT_UNPLACED_S
                return None
            time.sleep(0.02)
        if ref is None:
            return "host", None
        cache = self.containers
        info = cache.get(ref[1], ref[0])
        # the reader asked about the container at its first event; a short-lived
        # container (`podman run --rm`) may be gone by now, so that answer is
        # the one to wait for rather than asking again
        deadline = time.monotonic() + _AUDIT_LOOKUP_S
        while info is None and cache.state(ref[1]) == "pending" \
                and time.monotonic() < deadline:
            time.sleep(0.02)
            info = cache.get(ref[1], ref[0])
        return ref[1], info

    def _deliver(self, rec: Mapping[str, Any]) -> None:
        """The pipeline's sink: an alert to the outputs, a loss record as
        Falco's drop alert."""
        with self._send_lock:
            if not isinstance(rec, Alert):
                self.channels.notice(rec)    # {"type": "loss", ...}
                return
            key = (rec.rule, rec.priority)
            self._matches[key] = self._matches.get(key, 0) + 1
            self.channels.send(rec)

    def run(self) -> int:
        """Runs until SIGTERM or SIGINT (SIGHUP reloads); returns the exit code.
        Call from the main thread."""
        handlers = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            if not self._started:
                try:
                    self.start()
                except BaseException:   # nothing half-started stays, firewalls included
                    self.close(unload_firewalls=True)
                    raise
            _freeze_heap()
            log.info("running: %s", self.describe())
            while not self._stop.is_set():
                self._wake.wait(0.5)
                self._wake.clear()
                while self._signals:
                    sig = self._signals.pop(0)
                    if sig == signal.SIGHUP:
                        self.reload()
                    else:
                        log.info("%s: stopping", signal.Signals(sig).name)
                        self._stop.set()
                self._check_reader()
                self.channels.tick()
                self._after_storm()
        finally:
            self.close()   # under our handlers: a second Ctrl-C cannot cut the flush short
            for sig, old in handlers.items():
                signal.signal(sig, old)
        return 1 if self._fatal else 0

    def _after_storm(self) -> None:
        """Once a storm of events is over, the memory it grew goes back: a
        full collection, then malloc_trim (the agent's RSS then returns to
        within a few percent of its idle level; see bench/agent_load.py
        --memory)."""
        p = self.pipeline
        if p is None:
            return
        events, at, peak, calm_since = self._storm
        now = time.monotonic()
        if now - at < 1.0:
            return
        rate = (p.events - events) / (now - at)
        peak = max(peak, rate)
        if rate >= peak / 4:
            calm_since = now
        elif peak > _STORM_EVENTS_PER_S and now - calm_since >= _CALM_S:
            gc.collect()
            _malloc_trim()
            peak = rate
        self._storm = (p.events, now, peak, calm_since)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)
        self._wake.set()

    def request_stop(self) -> None:
        """Makes :meth:`run` return (from any thread)."""
        self._stop.set()
        self._wake.set()

    def describe(self) -> str:
        parts = []
        if self.matcher is not None:
            parts.append(f"{len(self.matcher.engine.compiled)} Falco rules on "
                         f"{len(self.matcher.plan.syscalls)} syscalls")
        if self.policies is not None:
            modes = [lp.mode for lp in self.policies.engine.policies.values()]
            parts.append(f"{len(modes)} policies ({modes.count('monitor')} in monitor mode)")
        firewalls = self.firewalls.labels()
        if firewalls:
            parts.append(f"firewall on {', '.join(firewalls)}")
        if self.audit is not None:
            parts.append("seccomp audit")
        parts.append("outputs " + ", ".join(c.name for c in self.channels.channels))
        if self.metrics is not None:
            host, port = self.metrics.address[:2]
            parts.append(f"metrics on http://{host}:{port}/metrics")
        parts += [f"control on {c.path}" for c in self.control]
        return "; ".join(parts)

    # -- reload ------------------------------------------------------------

    def reload(self) -> dict[str, Any]:
        """Re-reads the configuration; replaces rules and policies all or
        nothing. On failure the running set stays; the result says why.
        Either way the outputs are reopened (log rotation sends SIGHUP too)."""
        with self._reload_lock:
            try:
                result = self._reload()
            except Exception as exc:  # noqa: BLE001 - a reload must never take the agent down
                why = str(exc) if isinstance(exc, BpfguardError) else \
                    f"internal error: {type(exc).__name__}: {exc}"
                self._reloads["error"] += 1
                self.last_reload_error = why
                log.error("reload failed, the running configuration stays: %s", why)
                return {"ok": False, "error": why}
            finally:
                self.channels.reopen()
            self._reloads["ok"] += 1
            self.last_reload_error = None
            _freeze_heap()
            log.info("reloaded: %s", self.describe())
            return {"ok": True, **result}

    def _reload(self) -> dict[str, Any]:
        old_cfg = self.cfg
        new = load_config(self.config_path) if self.config_path else old_cfg
        # what only a restart applies keeps its running value, so status and
        # later reloads keep telling the truth
        data = copy.deepcopy(new.data)
        fixed = [s for s in _RESTART_SECTIONS if data[s] != old_cfg.data[s]]
        for s in _RESTART_SECTIONS:
            data[s] = old_cfg.data[s]
        for s, key in (("rules", "enabled"), ("policies", "enabled"), ("policies", "pin_dir")):
            if data[s][key] != old_cfg.data[s][key]:
                fixed.append(f"{s}.{key}")
                data[s][key] = old_cfg.data[s][key]
        merged = AgentConfig(data, new.source)
        # everything new is built and validated before anything changes
        matcher: RuleMatcher | None = None
        change: SyscallChange | None = None
        if self.matcher is not None:
            matcher = RuleMatcher(build_engine(merged), self.table, self.hostname,
                                  pushdown=merged["rules.pushdown"],
                                  hold_ns=merged["containers.hold_ms"] * 1_000_000)
            change = self._syscall_change(matcher)
        wanted = read_policies(merged)
        cgroup = data["policies"]["cgroup"] or None
        # make before break: first the kernel keeps what the old and the new
        # rules want, then the policies change (all or nothing), then the new
        # rules match in user space, and only then does the kernel narrow to
        # what they want; an event in the overlap is matched by one rule set
        # or the other, never lost. A failure before the rules swap undoes
        # what was done: the running configuration stays whole.
        self.cfg = merged
        try:
            if change is not None:
                change.widen()
            try:
                if self.policies is not None:
                    try:
                        self.policies.apply(wanted, cgroup)
                    finally:   # (a rollback also loads anew what it restores)
                        self._sync_pins()
            except BaseException:
                if change is not None:
                    change.rollback()
                raise
        except BaseException:
            self.cfg = old_cfg
            raise
        if matcher is not None:
            assert self.sensors is not None
            if matcher.uses_env:
                self.sensors.set_env_max(ENV_BYTES)
            old = self.matcher
            self.matcher = matcher
            if old is not None:
                # after the swap: the reader takes no new event to the old
                # rules, and _idle matches what they still hold
                with self._retire_lock:
                    self._retired.append(old)
            if not matcher.uses_env:
                self.sensors.set_env_max(0)
            if change is not None:
                try:
                    change.narrow()
                except BpfguardError as exc:
                    # the new rules run; their syscalls reach user space
                    # unfiltered (more events, none missed): say so
                    raise BpfguardError(f"the new rules run, but the kernel filters could not "
                                        f"be narrowed to them ({exc}); their syscalls reach "
                                        "user space unfiltered until the next reload") from exc
        if fixed:
            log.warning("reload: changes to %s take effect at the next start",
                        ", ".join(fixed))
        return {"needs_restart": fixed}

    def _syscall_change(self, matcher: RuleMatcher) -> SyscallChange | None:
        assert self.sensors is not None
        plan = matcher.plan
        if self.sensors.syscalls is None:
            if plan.syscalls:
                raise ConfigError("the running agent traces no syscalls (its rules needed "
                                  "none); restart it to load rules that do")
            return None
        return self.sensors.syscalls.prepare(syscalls=plan.syscalls, filters=plan.filters)

    # -- shutdown ----------------------------------------------------------

    def close(self, *, unload_firewalls: bool = False) -> None:
        """Drains the readers, flushes the outputs, detaches every program.
        Firewalls stay pinned unless `unload_firewalls` (a failed start:
        only those this agent loaded). Idempotent."""
        self._stop.set()
        for c in self.control:
            with contextlib.suppress(Exception):
                c.close()
        self.control = []
        if self.pipeline is not None:
            self.pipeline.stop()     # a last drain, delivered
        self.containers.stop()
        if self._audit_thread is not None:
            self._audit_thread.join()
            self._audit_thread = None
        with self._send_lock:
            self.channels.close()
        if self.pins is not None:
            self._pins_live = False
            with contextlib.suppress(Exception):   # destroying the links unpins them too
                self.pins.unpin()
        if self.sensors is not None:
            self.sensors.close()
        if self.audit is not None:
            self.audit.close()
            self.audit = None
        self.firewalls.close(unload_loaded=unload_firewalls)
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if self._stats_fd >= 0:
            os.close(self._stats_fd)
            self._stats_fd = -1

    # -- control socket (PolicyControl and the agent's own requests) ----------

    def _engine(self) -> PolicyEngine:
        if self.policies is None:
            raise ConfigError("policies are off in this agent's configuration "
                              "(policies.enabled: false)")
        return self.policies.engine

    # live changes wait for a reload in progress, which reads the same policies

    def add_policy(self, text: str, source: str, replace: bool = False) -> dict[str, Any]:
        pol = load_policy_text(source, text)
        with self._reload_lock:
            engine = self._engine()
            if replace and pol.name in engine.policies:
                if self.policies is not None and pol.name in self.policies.from_config:
                    raise ConfigError(
                        f"policy {pol.name!r} comes from the configuration "
                        f"({self.policies.from_config[pol.name][1]}); change that file and "
                        "reload (SIGHUP or bpfguard agent reload), which replaces it make "
                        "before break too")
                old = engine.policies[pol.name]   # make before break, in the old one's scope
                lp = engine.replace(pol, source=source, cgroup=old.cgroup_path)
            else:
                lp = engine.add(pol, source=source)
            self._texts[lp.name] = text
            self._sync_pins()
        return {"name": lp.name, "mode": lp.mode, "hooks": len(lp.slots)}

    def list_policies(self) -> list[dict[str, Any]]:
        return self._engine().list()

    def delete_policy(self, name: str) -> None:
        with self._reload_lock:
            self._engine().delete(name)
            if self.policies is not None:
                self.policies.from_config.pop(name, None)
            self._texts.pop(name, None)
            self._sync_pins()

    def set_policy_mode(self, name: str, mode: str) -> None:
        with self._reload_lock:
            self._engine().set_mode(name, mode)
            self._sync_pins()

    def set_policy_enabled(self, name: str, enabled: bool) -> None:
        with self._reload_lock:
            engine = self._engine()
            (engine.enable if enabled else engine.disable)(name)
            self._sync_pins()

    def list_rules(self) -> list[dict[str, Any]]:
        matcher = self.matcher
        if matcher is None:
            raise ConfigError("rules are off in this agent's configuration "
                              "(rules.enabled: false)")
        counts: dict[str, int] = {}
        for (rule, _prio), n in dict(self._matches).items():
            counts[rule] = counts.get(rule, 0) + n
        return [{"name": c.name, "priority": str(c.rule.priority), "alerts": counts.get(c.name, 0),
                 "errors": matcher.engine.errors.get(c.name, 0)}
                for c in matcher.engine.compiled]

    def change_firewall(self, change: Any) -> dict[str, Any]:
        """Makes a live firewall change (a ``bpfguard.firewall.changes.Change``)
        as `bpfguard firewall` would; metrics and status follow at once."""
        return self.firewalls.change(change)

    def status(self) -> dict[str, Any]:
        self.firewalls.sync(timeout=_STATUS_SYNC_S)
        ok, details = self.health()
        return {"healthy": ok, **details, "running": self.describe(),
                "config": self.cfg.source}

    # -- what the metrics read (AgentMetrics) ---------------------------------

    def rule_matches(self) -> dict[tuple[str, str], int]:
        """Alerts delivered, by (rule, priority)."""
        return dict(self._matches)   # a C-level copy: safe against the reader thread

    def reloads(self) -> dict[str, int]:
        """Reloads by result (ok, error)."""
        return dict(self._reloads)

    def bpf_stats_enabled(self) -> bool:
        """Whether the kernel's BPF run-time statistics are on (metrics.bpf_stats)."""
        return self._stats_fd >= 0

    def health(self) -> tuple[bool, dict[str, Any]]:
        problems = []
        if self._fatal:
            problems.append(self._fatal)
        p = self.pipeline
        if p is not None and self._started and not p.alive and not self._stop.is_set():
            problems.append("the reader stopped")
        details: dict[str, Any] = {"readers": [SENSORS_LABEL] if p is not None else []}
        if self.last_reload_error:
            details["last_reload_error"] = self.last_reload_error
        # an output that fails leaves the agent up and enforcing: degraded,
        # not unhealthy (a liveness probe must not restart it for a syslog down)
        failing = sorted(name for name, st in self.channels.stats().items() if st.failing)
        degraded = [f"output {name} is failing (see the log and "
                    "bpfguard_output_failed_total)" for name in failing]
        if self._pin_error:
            degraded.append(f"the policies are not pinned: a crash would end their "
                            f"enforcement ({self._pin_error})")
        if degraded:
            details["degraded"] = degraded
        if problems:
            details["problems"] = problems
        return not problems, details

