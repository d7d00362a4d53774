"""`bpfguard run --policy`: TracingPolicies enforced in the kernel, events as
Tetragon writes them, policies managed live through the control socket.

:class:`PolicyAgent` ties the pieces: a :class:`SensorSet` (the process
sensor, for the process table) with the :class:`PolicyEngine` as an extra
sensor, a :class:`Pipeline` whose handler renders Tetragon JSON, and a
:class:`ControlServer` whose handler is the engine.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..containers import ContainerCache
from ..errors import BpfguardError, ConfigError
from ..files import yaml_files
from ..outputs.alert import Alert, policy_alert
from ..outputs.tetragon import exec_json, exit_json, exit_status_signal, policy_event_json
from ..policy import Policy, load_policy, load_policy_text
from ..policy.engine import PolicyEngine
from ..policy.events import PolicyEvent
from ..policy.model import Option
from ..proctable import ProcessTable
from ..sensors import SensorSet
from ..sensors.events import Event, ExecEvent, ExitEvent, boot_to_wall_ns
from ..sensors.sensorset import _boot_id
from . import Pipeline
from .config import AgentConfig
from .control import ControlServer

__all__ = ["PolicyAgent", "PolicySubscriber", "default_policy_files", "read_policies"]

log = logging.getLogger("bpfguard.agent")

_DEFAULTS_DIR = Path(__file__).resolve().parent.parent / "policy" / "defaults"


def default_policy_files() -> list[Path]:
    """bpfguard's default TracingPolicies, shipped with it."""
    return sorted(_DEFAULTS_DIR.glob("*.yaml"))


def _with_mode(pol: Policy, mode: str) -> Policy:
    opts = tuple(o for o in pol.options if o.name != "policy-mode")
    return dataclasses.replace(pol, options=(*opts, Option("policy-mode", mode)))


def read_policies(cfg: AgentConfig) -> dict[str, tuple[Policy, str]]:
    """The policies `cfg` asks for, parsed and validated (nothing loaded), by name."""
    out: dict[str, tuple[Policy, str]] = {}
    if not cfg["policies.enabled"]:
        return out
    wanted: list[tuple[Path, str | None]] = []
    if cfg["policies.defaults"]:
        wanted += [(p, cfg["policies.defaults_mode"]) for p in default_policy_files()]
    wanted += [(p, None) for p in yaml_files(cfg["policies.files"], "policies.files: ", "policy")]
    for path, mode in wanted:
        pol = load_policy(path)
        if mode is not None:
            pol = _with_mode(pol, mode)
        if pol.name in out:
            raise ConfigError(f"{path}: a policy named {pol.name!r} comes from "
                              f"{out[pol.name][1]} too")
        out[pol.name] = (pol, str(path))
    return out


class PolicySubscriber:
    """The policy engine as a subscriber of the agent's pipeline."""

    def __init__(self, features: Any, table: ProcessTable, hostname: str) -> None:
        self.engine = PolicyEngine(features=features)
        self.table = table
        self.hostname = hostname
        self.from_config: dict[str, tuple[Policy, str]] = {}
        self.cgroup: str | None = None

    def handle(self, ev: PolicyEvent) -> Iterable[Alert]:
        return (policy_alert(ev, policy_event_json(ev, self.table, node=self.hostname),
                             self.hostname),)

    def apply(self, wanted: dict[str, tuple[Policy, str]], cgroup: str | None) -> None:
        """Make the config's policies `wanted`, all or nothing (policies added
        through the control socket are left alone)."""
        loaded = set(self.engine.policies)
        for name in wanted:
            if name in loaded and name not in self.from_config:
                raise ConfigError(f"policy {name!r} (from {wanted[name][1]}) is loaded already "
                                  "through the control socket; delete it first")
        moved = cgroup != self.cgroup   # a new scope reloads every config policy
        changed = [n for n in wanted if n in self.from_config
                   and (moved or wanted[n][0] != self.from_config[n][0])]
        gone = [n for n in self.from_config if n not in wanted]
        new = [n for n in wanted if n not in self.from_config]
        # make before break: a changed policy is replaced in place (the new
        # version attached before the old detaches), new ones are added,
        # and only then do removed ones go
        done: list[tuple[str, str]] = []
        try:
            for n in changed:
                pol, src = wanted[n]
                self.engine.replace(pol, source=src, cgroup=cgroup)
                done.append(("replaced", n))
            for n in new:
                pol, src = wanted[n]
                self.engine.add(pol, source=src, cgroup=cgroup)
                done.append(("added", n))
            for n in gone:
                self.engine.delete(n)
                done.append(("removed", n))
        except BaseException:
            for how, n in reversed(done):
                try:
                    if how == "added":
                        self.engine.delete(n)
                        continue
                    pol, src = self.from_config[n]
                    if how == "replaced":
                        self.engine.replace(pol, source=src, cgroup=self.cgroup)
                    else:
                        self.engine.add(pol, source=src, cgroup=self.cgroup)
                except (BpfguardError, KeyError) as exc:  # pragma: no cover - it loaded before
                    log.error("policy %s could not be restored: %s", n, exc)
            raise
        self.from_config = dict(wanted)
        self.cgroup = cgroup



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
        containers: the container runtimes, for pod and container scopes and
            the events' ``pod``; None: none asked.
    """

    def __init__(self, policies: Sequence[str | os.PathLike[str]], *,
                 cgroup: str | None = None, socket_path: str | None = None,
                 process_events: bool = True, ancestors: bool = False,
                 features: Any = None, containers: ContainerCache | None = None) -> None:
        from ..probe import features as probe_features

        loaded: list[Policy] = [load_policy(Path(p)) for p in policies]
        self.node = socket.gethostname()
        self.process_events = process_events
        self.ancestors = ancestors
        self.engine = PolicyEngine(features=features if features is not None
                                   else probe_features())
        self.sensors = SensorSet(syscalls=(), extra=[self.engine])
        self.containers = containers if containers is not None else ContainerCache()
        self.engine.follow_containers(self.containers)
        try:
            for pol, path in zip(loaded, policies, strict=True):
                self.engine.add(pol, source=str(path), cgroup=cgroup)
            self.table = ProcessTable(boot_id=_boot_id(), containers=self.containers)
            self.table.seed_from_proc()
            self.pipeline = Pipeline(self.sensors, self.table, handler=self._handle)
            self.control = ControlServer(socket_path, self) if socket_path else None
        except BaseException:
            self.sensors.close()
            raise

    def start(self) -> None:
        self.containers.start()
        self.pipeline.start()   # the sensors attached before any live change arrives
        if self.control is not None:
            self.control.start()

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
        self.pipeline.stop()
        self.containers.stop()
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
                                  time_ns=boot_to_wall_ns(ev.ktime_ns),
                                  containers=self.table.containers),)
        elif isinstance(ev, ExitEvent):
            p = self.table.get(ev.pid)
            if p is not None:
                status, sig = exit_status_signal(ev)
                return (exit_json(p, self.table.get(p.ppid), node=self.node,
                                  time_ns=boot_to_wall_ns(ev.ktime_ns), status=status,
                                  signal=sig, containers=self.table.containers),)
        return ()

    # -- PolicyControl, for the control socket --

    def add_policy(self, text: str, source: str, replace: bool = False) -> dict[str, Any]:
        pol = load_policy_text(source, text)
        old = self.engine.policies.get(pol.name) if replace else None
        lp = (self.engine.replace(pol, source=source, cgroup=old.cgroup_path) if old is not None
              else self.engine.add(pol, source=source))
        return {"name": lp.name, "mode": lp.mode, "hooks": len(lp.slots)}

    def list_policies(self) -> list[dict[str, Any]]:
        return self.engine.list()

    def delete_policy(self, name: str) -> None:
        self.engine.delete(name)

    def set_policy_mode(self, name: str, mode: str) -> None:
        self.engine.set_mode(name, mode)

    def set_policy_enabled(self, name: str, enabled: bool) -> None:
        (self.engine.enable if enabled else self.engine.disable)(name)

