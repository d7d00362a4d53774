"""Detection: the Falco rules as a subscriber of the event pipeline.

The loaded rules decide what the kernel reports (the pushdown plan: which
syscalls, and what may be dropped before user space); every event is matched
on the reader thread right after the process table has applied it, so a rule
sees the process as it was at that event. Alerts (:class:`~bpfguard.outputs.alert.Alert`)
go to a `sink` that must not block (the output channels, which queue), or
without one to the pipeline's bounded queue, read with :meth:`Detector.alerts`.

:class:`RuleMatcher` is the subscriber (the agent puts it on its one
pipeline beside the policy engine); :class:`Detector` is a sensor set, a
process table and a pipeline around one, for `bpfguard detect`.

Example::

    rules = load_rules_or_raise([stock_rules_path()])
    with Detector(Engine(rules.rules)) as det:
        det.start()
        for item in det.alerts():          # until stop()
            channels.send(item) if isinstance(item, Alert) else channels.notice(item)

    # or straight from the reader thread, with no queue of its own:
    Detector(engine, sink=lambda item: ...)
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from ..containers import ContainerCache, engines_at
from ..errors import ConfigError
from ..outputs.alert import Alert
from ..proctable import ProcessTable
from ..rules.compiler import fields_used
from ..rules.engine import Engine
from ..rules.event import RuleEvent, from_event
from ..rules.pushdown import Plan, plan_pushdown
from ..sensors import SensorSet
from ..sensors.events import Event, SyscallEvent
from ..sensors.sensorset import _boot_id
from . import Pipeline
from .config import AgentConfig

__all__ = ["ENV_BYTES", "HOLD_MAX", "Detector", "RuleMatcher", "build_containers", "build_engine"]

log = logging.getLogger("bpfguard.agent")

_EXECS = ("execve", "execveat")
# environment bytes read at exec while some rule uses proc.env
ENV_BYTES = 2048
#: Events held at most at once for containers the runtime is being asked
#: about; more are matched at once, without waiting.
HOLD_MAX = 4096


class RuleMatcher:
    """Compiled Falco rules, matched against each event of a pipeline.

    Args:
        engine: the compiled rules.
        table: the process table the pipeline keeps (read, never written).
        hostname: for the alerts.
        pushdown: filter in the kernel what no rule can match (default on).
        hold_ns: how long an event of a container its runtime is still being
            asked about waits, so that the rules see the container's name,
            image and pod (0: never). Events of other processes are not held.

    An event that waited its `hold_ns` out is matched without the container's
    metadata; its alerts say so (``container.metadata``: ``pending``), and it
    is counted in :attr:`unenriched`.
    """

    def __init__(self, engine: Engine, table: ProcessTable, hostname: str, *,
                 pushdown: bool = True, hold_ns: int = 0) -> None:
        self.engine = engine
        self.plan: Plan = plan_pushdown(engine, enabled=pushdown)
        self.table = table
        self.hostname = hostname
        self.uses_env = any("proc.env" in fields_used(c.rule.condition)  # type: ignore[arg-type]
                            or any(f.startswith("proc.env") for f in c.output.fields)
                            for c in engine.compiled)
        self.hold_ns = hold_ns
        self._num = 0
        self.syscall_events = 0  # syscall events that reached user space
        self.evaluated = 0
        self.matched = 0
        self.held = 0           # events that waited for their container's metadata
        self.unenriched = 0     # ... and were matched without it
        # container id -> (deadline, events) in arrival order
        self._held: dict[str, tuple[int, list[RuleEvent]]] = {}
        self._nheld = 0

    def handle(self, ev: Event) -> Iterable[Alert]:
        """The alerts `ev` raises (after the table has applied it), and those
        of held events whose container is now known or whose time is up."""
        out = self.release() if self._held else []
        if isinstance(ev, SyscallEvent):
            self.syscall_events += 1
            if ev.syscall in _EXECS and ev.ret >= 0:
                return out  # the process sensor's exec event stands for it, with the new image
        self._num += 1
        e = from_event(ev, self._num, self.table, self.hostname)
        if e is None:
            return out
        if self.hold_ns and e.proc is not None:
            c = e.proc.container
            if c is not None and self._hold(e, c):
                return out
        out.extend(self._match(e))
        return out

    def _hold(self, e: RuleEvent, container: tuple[str, str]) -> bool:
        runtime, cid = container
        cache = self.table.containers
        if cache.get(cid, runtime) is not None or cache.state(cid) != "pending" \
                or self._nheld >= HOLD_MAX:
            return False
        entry = self._held.get(cid)
        if entry is None:
            entry = self._held[cid] = (time.monotonic_ns() + self.hold_ns, [])
        # the ancestry as it is now: by the time the event is matched a parent
        # may have exec'd or gone (the event's own process is its own object)
        e.ancestors  # noqa: B018 - computed and kept by the event
        entry[1].append(e)
        self._nheld += 1
        self.held += 1
        return True

    def release(self, *, everything: bool = False) -> list[Alert]:
        """Matches the held events whose container is known now, or whose
        time is up, or all of them (the pipeline calls this when idle, too)."""
        out: list[Alert] = []
        if not self._held:
            return out
        now = time.monotonic_ns()
        cache = self.table.containers
        for cid, (deadline, events) in list(self._held.items()):
            if not everything and cache.state(cid) == "pending" and now < deadline:
                continue
            del self._held[cid]
            self._nheld -= len(events)
            for e in events:
                out.extend(self._match(e))
        return out

    def _match(self, e: RuleEvent) -> list[Alert]:
        self.evaluated += 1
        alerts = self.engine.process(e)
        self.matched += len(alerts)
        c = e.proc.container if e.proc is not None else None
        if c is not None and self.table.containers.get(c[1], c[0]) is None:
            self.unenriched += 1
            state = self.table.containers.state(c[1])
            return [replace(a, output_fields={**a.output_fields, "container.metadata": state})
                    for a in alerts]
        return alerts


class Detector:
    """A sensor set, a process table and a pipeline around a :class:`RuleMatcher`.

    Args:
        engine: the compiled rules.
        pushdown: filter in the kernel what no rule can match (default on).
        ringbuf_bytes, str_max, args_max: as for :class:`SensorSet`.
        queue_size: the pipeline's queue, without a `sink`.
        sink: where alerts and loss records go, on the reader thread; it
            must not block (the output channels). None: the pipeline's queue.
        containers: the runtimes to ask about containers (started with the
            pipeline, stopped by :meth:`close`); None: none asked.
        hold_ns: see :class:`RuleMatcher`.
    """

    def __init__(self, engine: Engine, *, pushdown: bool = True, ringbuf_bytes: int = 16 << 20,
                 str_max: int = 4096, args_max: int = 4095, queue_size: int = 65536,
                 sink: Callable[[Mapping[str, Any]], None] | None = None,
                 containers: ContainerCache | None = None, hold_ns: int = 0) -> None:
        self.table = ProcessTable(boot_id=_boot_id(), containers=containers)
        self.matcher = RuleMatcher(engine, self.table, socket.gethostname(), pushdown=pushdown,
                                   hold_ns=hold_ns)
        self.engine, self.plan = engine, self.matcher.plan
        self.sensors = SensorSet(syscalls=self.plan.syscalls, str_max=str_max,
                                 args_max=args_max, ringbuf_bytes=ringbuf_bytes,
                                 filters=self.plan.filters,
                                 env_max=ENV_BYTES if self.matcher.uses_env else 0)
        try:
            self.table.seed_from_proc()
            self.pipeline = Pipeline(self.sensors, self.table, queue_size=queue_size,
                                     handler=self.matcher.handle, sink=sink,
                                     idle=self.matcher.release)
        except BaseException:
            self.sensors.close()
            raise

    @property
    def scope(self) -> Any:
        return self.sensors.scope

    @property
    def syscall_events(self) -> int:
        return self.matcher.syscall_events

    @property
    def evaluated(self) -> int:
        return self.matcher.evaluated

    @property
    def matched(self) -> int:
        return self.matcher.matched

    def start(self) -> None:
        self.table.containers.start()
        self.pipeline.start()

    def alerts(self, timeout: float = 0.1) -> Iterator[Mapping[str, Any]]:
        """Alerts and loss notices ({"type": "loss"}) as they come; stops yielding
        (for this call) after `timeout` seconds without one."""
        while (item := self.pipeline.get(timeout)) is not None:
            yield item

    def stop(self) -> list[Mapping[str, Any]]:
        """Stops reading; returns what was still queued."""
        self.pipeline.stop()
        return self.pipeline.pending()

    def close(self) -> None:
        self.table.containers.stop()
        self.sensors.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_containers(cfg: AgentConfig) -> ContainerCache:
    """The container cache over the runtimes `cfg` names (not started)."""
    return ContainerCache(list(engines_at(cfg["containers.podman"], cfg["containers.docker"],
                                          cfg["containers.containerd"])))


def build_engine(cfg: AgentConfig) -> Engine:
    """The compiled Falco rules `cfg` asks for (ConfigError/RulesError if they are bad)."""
    from ..rules import rule_files
    from ..rules.engine import Engine
    from ..rules.loader import load_rules_or_raise
    from ..rules.model import Priority

    result = load_rules_or_raise(rule_files(cfg["rules.files"], what="rules.files: "))
    for w in result.warnings:
        log.warning("%s", w)
    engine = Engine(result.rules, min_priority=Priority.parse(cfg["rules.priority"]),
                    rule_matching=cfg["rules.rule_matching"],
                    disable_rules=cfg["rules.disable_rules"],
                    disable_tags=cfg["rules.disable_tags"],
                    enable_tags=cfg["rules.enable_tags"] or None,
                    suggested_output=cfg["rules.suggested_output"])
    if not engine.compiled:
        raise ConfigError("rules: no rule is enabled (check rules.priority, the tags and "
                          "the files' `enabled` keys), or set rules.enabled: false")
    return engine
