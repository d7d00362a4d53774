"""bpfguard: runtime security for Linux on eBPF.

The public surface is what this module lists in ``__all__``; the modules
behind it are bpfguard's own business and may change. Everything but the
exceptions loads on first use, so ``import bpfguard`` (and the command
line's start-up) stays cheap::

    import bpfguard

    rules = bpfguard.load_rules_or_raise([bpfguard.stock_rules_path()])
    with bpfguard.Detector(bpfguard.Engine(rules.rules)) as det:
        det.scope.add_pid(1234)
        det.start()
        for item in det.alerts(timeout=1.0):
            if isinstance(item, bpfguard.Alert):
                print(item.rule, item.to_json_dict())

The parts:

* sensors: :class:`SensorSet` (one BPF object, one ring buffer),
  :class:`Scope`, and the events it decodes (:class:`ExecEvent`,
  :class:`ForkEvent`, :class:`ExitEvent`, :class:`SyscallEvent`,
  :class:`LossEvent`, with :class:`FileRef`, :class:`SockInfo`).
* the agent: :class:`Agent` (``bpfguard run``), :class:`AgentConfig`,
  :func:`load_config`; detection alone: :class:`Detector`, :class:`RuleMatcher`.
* Falco rules: :func:`load_rules`, :func:`load_rules_or_raise`
  (a :class:`LoadResult`), :class:`Engine`, :func:`stock_rules_path`.
* TracingPolicies: :class:`Policy`, :func:`load_policy`,
  :func:`load_policy_text`, :class:`PolicyEngine`, :class:`PolicyEvent`.
* alerts: :class:`Alert` (Falco's JSON alert, typed), :func:`rfc3339`.
* errors: the hierarchy :mod:`bpfguard.errors` draws, :class:`BpfguardError`
  at its root.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    AttachError,
    BpfguardError,
    BuildError,
    CommandError,
    ConfigError,
    KernelError,
    LoadError,
    UnsupportedError,
)

if TYPE_CHECKING:
    from .agent.config import AgentConfig, load_config
    from .agent.control import AgentNotListening, ControlError, NotServed
    from .agent.daemon import Agent
    from .agent.detect import Detector, RuleMatcher
    from .firewall.xdp import FirewallError
    from .outputs.alert import Alert
    from .policy.engine import PolicyEngine
    from .policy.events import PolicyEvent
    from .policy.loader import PolicyError, load_policy, load_policy_text
    from .policy.model import Policy
    from .rules import stock_rules_path
    from .rules.compiler import CompileError
    from .rules.engine import Engine
    from .rules.grammar import ConditionSyntaxError
    from .rules.loader import RulesError, load_rules, load_rules_or_raise
    from .rules.model import LoadResult
    from .seccomp.profile import ProfileError
    from .sensors.events import (
        Event,
        ExecEvent,
        ExitEvent,
        FileRef,
        ForkEvent,
        LossEvent,
        SockInfo,
        SyscallEvent,
    )
    from .sensors.sensorset import Scope, SensorSet
    from .timefmt import rfc3339

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentNotListening",
    "Alert",
    "AttachError",
    "BpfguardError",
    "BuildError",
    "CommandError",
    "CompileError",
    "ConditionSyntaxError",
    "ConfigError",
    "ControlError",
    "Detector",
    "Engine",
    "Event",
    "ExecEvent",
    "ExitEvent",
    "FileRef",
    "FirewallError",
    "ForkEvent",
    "KernelError",
    "LoadError",
    "LoadResult",
    "LossEvent",
    "NotServed",
    "Policy",
    "PolicyEngine",
    "PolicyError",
    "PolicyEvent",
    "ProfileError",
    "RuleMatcher",
    "RulesError",
    "Scope",
    "SensorSet",
    "SockInfo",
    "SyscallEvent",
    "UnsupportedError",
    "__version__",
    "load_config",
    "load_policy",
    "load_policy_text",
    "load_rules",
    "load_rules_or_raise",
    "rfc3339",
    "stock_rules_path",
]

# name -> the module that defines it, imported on first use (PEP 562)
_LAZY = {
    "Agent": ".agent.daemon",
    "AgentConfig": ".agent.config",
    "load_config": ".agent.config",
    "AgentNotListening": ".agent.control",
    "ControlError": ".agent.control",
    "NotServed": ".agent.control",
    "Detector": ".agent.detect",
    "RuleMatcher": ".agent.detect",
    "FirewallError": ".firewall.xdp",
    "Alert": ".outputs.alert",
    "PolicyEngine": ".policy.engine",
    "PolicyEvent": ".policy.events",
    "PolicyError": ".policy.loader",
    "load_policy": ".policy.loader",
    "load_policy_text": ".policy.loader",
    "Policy": ".policy.model",
    "stock_rules_path": ".rules",
    "CompileError": ".rules.compiler",
    "Engine": ".rules.engine",
    "ConditionSyntaxError": ".rules.grammar",
    "RulesError": ".rules.loader",
    "load_rules": ".rules.loader",
    "load_rules_or_raise": ".rules.loader",
    "LoadResult": ".rules.model",
    "ProfileError": ".seccomp.profile",
    "Event": ".sensors.events",
    "ExecEvent": ".sensors.events",
    "ExitEvent": ".sensors.events",
    "FileRef": ".sensors.events",
    "ForkEvent": ".sensors.events",
    "LossEvent": ".sensors.events",
    "SockInfo": ".sensors.events",
    "SyscallEvent": ".sensors.events",
    "Scope": ".sensors.sensorset",
    "SensorSet": ".sensors.sensorset",
    "rfc3339": ".timefmt",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value     # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
