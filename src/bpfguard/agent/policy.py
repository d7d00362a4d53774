"""`bpfguard run --policy`: TracingPolicies enforced in the kernel, events as
Tetragon writes them, policies managed live through the control socket.

:class:`PolicyAgent` ties the pieces: a :class:`SensorSet` (the process
sensor, for the process table) with the :class:`PolicyEngine` as an extra
sensor, a :class:`Pipeline` whose handler renders Tetragon JSON, and a
:class:`ControlServer` whose handler is the engine.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..outputs.tetragon import exec_json, exit_json, exit_status_signal, policy_event_json
from ..policy import Policy, load_policy, load_policy_text
from ..policy.engine import PolicyEngine
from ..policy.events import PolicyEvent
from ..proctable import ProcessTable
from ..sensors import SensorSet
from ..sensors.events import Event, ExecEvent, ExitEvent, boot_to_wall_ns
from ..sensors.sensorset import _boot_id
from . import Pipeline
from .control import ControlServer

__all__ = ["PolicyAgent"]


class PolicyAgent:
    """Loads `policies` (all or nothing: the first that fails raises and
    nothing stays loaded), then streams their events.

    Args:
        policies: TracingPolicy files to load at start.
        cgroup: limit the start-up policies to this cgroup v2 directory.
        socket_path: the control socket; None for none.
        process_events: also emit process_exec / process_exit, as Tetragon does.
        ancestors: add each event's ancestors (process_kprobe/tracepoint).
        features: the probe's Features (None: probe now).
    """

    def __init__(self, policies: Sequence[str | os.PathLike[str]], *,
                 cgroup: str | None = None, socket_path: str | None = None,
                 process_events: bool = True, ancestors: bool = False,
                 features: Any = None) -> None:
        from ..probe import features as probe_features

        loaded: list[Policy] = [load_policy(Path(p)) for p in policies]
        self.node = socket.gethostname()
        self.process_events = process_events
        self.ancestors = ancestors
        self.engine = PolicyEngine(features=features if features is not None
                                   else probe_features())
        self.sensors = SensorSet(syscalls=(), extra=[self.engine])
        try:
            for pol, path in zip(loaded, policies, strict=True):
                self.engine.add(pol, source=str(path), cgroup=cgroup)
            self.table = ProcessTable(boot_id=_boot_id())
            self.table.seed_from_proc()
            self.pipeline = Pipeline(self.sensors, self.table, handler=self._handle)
            self.control = ControlServer(socket_path, self) if socket_path else None
        except BaseException:
            self.sensors.close()
            raise

    def start(self) -> None:
        if self.control is not None:
            self.control.start()
        self.pipeline.start()

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
        self.pipeline.stop()
        self.sensors.close()

    def _handle(self, ev: Event | PolicyEvent) -> Iterable[dict[str, Any]]:
        if isinstance(ev, PolicyEvent):
            return (policy_event_json(ev, self.table, node=self.node, ancestors=self.ancestors),)
        if not self.process_events:
            return ()
        if isinstance(ev, ExecEvent):
            p = self.table.get(ev.pid)
            if p is not None:
                parent = self.table.get(p.ppid)
                return (exec_json(p, parent, node=self.node,
                                  time_ns=boot_to_wall_ns(ev.ktime_ns)),)
        elif isinstance(ev, ExitEvent):
            p = self.table.get(ev.pid)
            if p is not None:
                status, sig = exit_status_signal(ev)
                return (exit_json(p, self.table.get(p.ppid), node=self.node,
                                  time_ns=boot_to_wall_ns(ev.ktime_ns), status=status,
                                  signal=sig),)
        return ()

    # -- PolicyControl, for the control socket --

    def add_policy(self, text: str, source: str) -> dict[str, Any]:
        pol = load_policy_text(source, text)
        lp = self.engine.add(pol, source=source)
        return {"name": lp.name, "mode": lp.mode, "hooks": len(lp.slots)}

    def list_policies(self) -> list[dict[str, Any]]:
        return self.engine.list()

    def delete_policy(self, name: str) -> None:
        self.engine.delete(name)

    def set_policy_mode(self, name: str, mode: str) -> None:
        self.engine.set_mode(name, mode)

