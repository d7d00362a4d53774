"""Tetragon TracingPolicy support: load a policy unmodified, validate it as
Tetragon would, and say what it needs from this kernel.

Example::

    from bpfguard.policy import load_policy, requirements
    from bpfguard.probe import features

    policy = load_policy("fd_install.yaml")        # PolicyError lists every problem
    for req in requirements(policy, features()):
        if not req.available:
            print(req.context, req.message)
"""

from __future__ import annotations

from .loader import PolicyCode, PolicyError, load_policy, load_policy_text, render_problem
from .model import (
    Action,
    Arg,
    ArgSelector,
    BinarySelector,
    CapabilitiesSelector,
    Enforcer,
    FeatureSet,
    Hook,
    KProbe,
    ListSpec,
    LsmHook,
    NamespaceChangesSelector,
    NamespaceSelector,
    Option,
    PIDSelector,
    Policy,
    Requirement,
    Selector,
    Tracepoint,
    UProbe,
    Usdt,
    requirements,
)

__all__ = [
    "Action",
    "Arg",
    "ArgSelector",
    "BinarySelector",
    "CapabilitiesSelector",
    "Enforcer",
    "FeatureSet",
    "Hook",
    "KProbe",
    "ListSpec",
    "LsmHook",
    "NamespaceChangesSelector",
    "NamespaceSelector",
    "Option",
    "PIDSelector",
    "Policy",
    "PolicyCode",
    "PolicyError",
    "Requirement",
    "Selector",
    "Tracepoint",
    "UProbe",
    "Usdt",
    "load_policy",
    "load_policy_text",
    "render_problem",
    "requirements",
]
