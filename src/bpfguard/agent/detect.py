"""Detection: the sensors, configured from the rules, feeding the rule engine.

The loaded rules decide what the kernel reports (the pushdown plan: which
syscalls, and what may be dropped before user space); every event is matched
on the reader thread right after the process table has applied it, so a rule
sees the process as it was at that event; alerts go to a bounded queue and
from there to the channels, which never block.

Example::

    rules = load_rules_or_raise([stock_rules_path()])
    with Detector(Engine(rules.rules)) as det:
        det.start()
        for item in det.alerts():          # until stop()
            channels.send(item) if item.get("type") != "loss" else channels.notice(item)
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from typing import Any

from ..proctable import ProcessTable
from ..rules.compiler import fields_used
from ..rules.engine import Engine
from ..rules.event import from_event
from ..rules.pushdown import Plan, plan_pushdown
from ..sensors import SensorSet
from ..sensors.events import Event, SyscallEvent
from ..sensors.sensorset import _boot_id
from . import Pipeline

__all__ = ["Detector"]

_EXECS = ("execve", "execveat")


class Detector:
    """Sensors + process table + rule engine.

    Args:
        engine: the compiled rules.
        pushdown: filter in the kernel what no rule can match (default on).
        ringbuf_bytes, str_max, args_max: as for :class:`SensorSet`.
    """

    def __init__(self, engine: Engine, *, pushdown: bool = True, ringbuf_bytes: int = 16 << 20,
                 str_max: int = 4096, args_max: int = 4095, queue_size: int = 65536) -> None:
        self.engine = engine
        self.plan: Plan = plan_pushdown(engine, enabled=pushdown)
        self.hostname = socket.gethostname()
        uses_env = any("proc.env" in fields_used(c.rule.condition)  # type: ignore[arg-type]
                       or any(f.startswith("proc.env") for f in c.output.fields)
                       for c in engine.compiled)
        self.sensors = SensorSet(syscalls=self.plan.syscalls, str_max=str_max,
                                 args_max=args_max, ringbuf_bytes=ringbuf_bytes,
                                 filters=self.plan.filters, env_max=2048 if uses_env else 0)
        try:
            self.table = ProcessTable(boot_id=_boot_id())
            self.table.seed_from_proc()
            self._num = 0
            self.syscall_events = 0  # syscall events that reached user space
            self.evaluated = 0
            self.matched = 0
            self.pipeline = Pipeline(self.sensors, self.table, queue_size=queue_size,
                                     handler=self._handle)
        except BaseException:
            self.sensors.close()
            raise

    @property
    def scope(self) -> Any:
        return self.sensors.scope

    def _handle(self, ev: Event) -> Iterable[dict[str, Any]]:
        if isinstance(ev, SyscallEvent):
            self.syscall_events += 1
            if ev.syscall in _EXECS and ev.ret >= 0:
                return ()  # the process sensor's exec event stands for it, with the new image
        self._num += 1
        e = from_event(ev, self._num, self.table, self.hostname)
        if e is None:
            return ()
        self.evaluated += 1
        alerts = self.engine.process(e)
        self.matched += len(alerts)
        return alerts

    def start(self) -> None:
        self.pipeline.start()

    def alerts(self, timeout: float = 0.1) -> Iterator[dict[str, Any]]:
        """Alerts and loss notices ({"type": "loss"}) as they come; stops yielding
        (for this call) after `timeout` seconds without one."""
        while (item := self.pipeline.get(timeout)) is not None:
            yield item

    def stop(self) -> list[dict[str, Any]]:
        """Stops reading; returns what was still queued."""
        self.pipeline.stop()
        return self.pipeline.pending()

    def close(self) -> None:
        self.sensors.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
