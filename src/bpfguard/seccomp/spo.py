"""Profiles as the Kubernetes Security Profiles Operator's ``SeccompProfile``.

The operator (SPO) installs a ``SeccompProfile`` resource on every node as an
OCI profile, so a cluster can use what ``bpfguard seccomp record`` learned.
Its spec is the OCI ``linux.seccomp`` object with less in it (the CRD is
``tests/fixtures/spo/seccompprofile.yaml``), and the API server prunes what
its schema lacks, silently. So each difference is decided here, never left
to the pruning:

- left out, with a note, where leaving it out changes nothing: bpfguard's
  ``bpfguard`` block (a summary goes to ``metadata.annotations`` instead),
  rule comments, duplicates in what the CRD makes sets (architectures, flags,
  a rule's names), and ``defaultErrnoRet`` when it is EPERM
  (what runtimes answer without it);
- refused, with the JSON path, where the cluster would enforce something else
  than the profile says: any other ``defaultErrnoRet`` (the spec has none),
  ``errnoRet`` 0 (the operator drops a zero, so it would become EPERM),
  argument values above int64 (the CRD's type), architectures outside the
  CRD's enum, a ``listenerPath`` outside the operator's directory, more than
  six conditions in a rule, and Docker's ``includes``/``excludes`` (resolve
  them for the target machine first: :func:`~bpfguard.seccomp.resolve_for`).

Example::

    spo = to_spo(load_profile("app.json"), name="app")
    Path("app.yaml").write_text(spo.dumps())   # kubectl apply -f app.yaml
"""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import ConfigError
from .profile import Profile, ProfileError

__all__ = [
    "ANNOTATION_PREFIX",
    "API_VERSION",
    "KIND",
    "SPO_ARCHES",
    "SpoProfile",
    "check_name",
    "name_from",
    "to_spo",
]

# v1beta1, not v1: the operator serves v1beta1 both before its v1 graduation
# (2026) and after it (converting), so one file suits older clusters too.
API_VERSION = "security-profiles-operator.x-k8s.io/v1beta1"
KIND = "SeccompProfile"
ANNOTATION_PREFIX = "bpfguard.io/"
# The CRD's architecture enum (less SCMP_ARCH_NATIVE, which bpfguard never
# writes). Its action, operator and flag enums equal bpfguard's own ACTIONS,
# OPS and FLAGS; tests/unit/test_seccomp_spo.py checks all four against the CRD.
SPO_ARCHES = ("SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
              "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
              "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
              "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
              "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64")
# The CRD's pattern: the operator's agent socket directory only.
_LISTENER_PATH = re.compile(r"/var/run/security-profiles-operator/[a-zA-Z0-9_\-.]+")
# metadata.name: a DNS-1123 subdomain (Kubernetes' IsDNS1123Subdomain).
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*")
_NAME_MAX = 253
# The CRD types argument values int64 (minimum 0): the top bit cannot be set.
_INT64_MAX = (1 << 63) - 1
_MAX_ARGS = 6
# bpfguard block key -> annotation name; lists and objects are written as JSON.
_ANNOTATED = (("command", "command"), ("pids", "pids"), ("cgroups", "cgroups"),
              ("container", "container"), ("containers", "containers"),
              ("merged_from", "merged-from"), ("base", "base"),
              ("recorded_from", "recorded-from"), ("recorded_until", "recorded-until"),
              ("kernel", "kernel"))


@dataclass
class SpoProfile:
    """A ``SeccompProfile`` resource (JSON data), and notes on what the
    conversion left out because leaving it out changes nothing."""

    document: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def dumps(self) -> str:
        """Deterministic YAML: block style, keys in the order Profile.dumps has them."""
        return yaml.dump(self.document, Dumper=_Dumper, sort_keys=False,
                         default_flow_style=False, allow_unicode=True)


class _Dumper(yaml.SafeDumper):
    """SafeDumper writing multi-line strings (the notes annotation) as literal
    blocks, one note a line, instead of folded single-quoted text."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text,
                                   style="|" if "\n" in text else None)


_Dumper.add_representer(str, _str)


def check_name(name: str) -> str:
    """`name` if the API server takes it as ``metadata.name`` (a DNS-1123
    subdomain); ConfigError saying what a name must be otherwise."""
    if len(name) <= _NAME_MAX and _DNS1123_SUBDOMAIN.fullmatch(name):
        return name
    raise ConfigError(f"{name!r} is not a valid Kubernetes object name: lowercase letters, "
                      "digits, '-' and '.', starting and ending with a letter or digit, "
                      f"at most {_NAME_MAX} characters")


def name_from(text: str) -> str | None:
    """A valid ``metadata.name`` made from `text` (a file's stem): lowercased,
    each run of other characters made one '-'. None when `text` has no letter
    or digit to make one of."""
    labels = (re.sub(r"[^a-z0-9]+", "-", part).strip("-") for part in text.lower().split("."))
    name = ".".join(label for label in labels if label)[:_NAME_MAX].rstrip("-.")
    return name or None


def _unique(values: Iterable[str]) -> list[str]:
    # the CRD makes these lists sets: the API server rejects a duplicate
    return list(dict.fromkeys(values))


def _annotations(meta: dict[str, Any] | None, notes: list[str]) -> dict[str, str]:
    """A short summary of bpfguard's block: what was recorded and when (the
    block itself would be pruned: the spec has no field for it)."""
    meta = meta or {}
    out = {f"{ANNOTATION_PREFIX}{key}": v if isinstance(v, str) else json.dumps(v)
           for k, key in _ANNOTATED if (v := meta.get(k)) is not None}
    if isinstance(meta.get("syscalls"), dict):
        out[f"{ANNOTATION_PREFIX}recorded-syscalls"] = json.dumps(
            {arch: len(names) for arch, names in meta["syscalls"].items()})
    recorded = meta.get("notes")
    all_notes = [*(recorded if isinstance(recorded, list) else []), *notes]
    if all_notes:
        out[f"{ANNOTATION_PREFIX}notes"] = "\n".join(map(str, all_notes))
    return out


def _rule(path: str, rule: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"names": _unique(rule["names"]), "action": rule["action"]}
    if "errnoRet" in rule:
        if rule["errnoRet"] == 0:
            problems.append(f"{path}.errnoRet: 0 cannot be expressed: the operator drops a "
                            "zero errnoRet, and the runtime would then answer EPERM instead "
                            "of success")
        out["errnoRet"] = rule["errnoRet"]
    args = rule.get("args", [])
    if len(args) > _MAX_ARGS:
        problems.append(f"{path}.args: {len(args)} conditions; the CRD allows at most "
                        f"{_MAX_ARGS} per rule")
    for j, arg in enumerate(args):
        for key in ("value", "valueTwo"):
            if arg.get(key, 0) > _INT64_MAX:
                problems.append(f"{path}.args[{j}].{key}: {arg[key]:#x} cannot be expressed: "
                                "the CRD types argument values int64")
    if args:
        out["args"] = args
    return out


def to_spo(profile: Profile, *, name: str) -> SpoProfile:
    """The ``SeccompProfile`` named `name` that enforces what `profile` does.

    Raises ProfileError listing, with JSON paths, everything the CRD cannot
    express (see the module docstring), and ConfigError for an invalid name.
    """
    check_name(name)
    if profile.has_conditions():
        paths = [f"$.syscalls[{i}]" for i, r in enumerate(profile.syscalls)
                 if r.includes or r.excludes]
        raise ProfileError(f"SeccompProfile {name}", [
            f"{', '.join(paths)}: includes/excludes (Docker's conditions on capabilities, "
            "architecture and kernel) cannot be expressed: the CRD has no such fields. "
            "Resolve the profile for the machine it is for first"])
    data = profile.to_json("oci")
    problems: list[str] = []
    notes: list[str] = []
    spec: dict[str, Any] = {"defaultAction": profile.default_action}
    default_errno = profile.default_errno_ret
    if default_errno is not None:
        if profile.default_action not in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
            notes.append(f"defaultErrnoRet {default_errno} left out: "
                         f"{profile.default_action} takes no errno")
        elif default_errno == errno.EPERM:
            notes.append("defaultErrnoRet 1 (EPERM) left out: the CRD has no defaultErrnoRet, "
                         "and EPERM is what runtimes answer without one")
        else:
            problems.append(f"$.defaultErrnoRet: {default_errno} cannot be expressed: the CRD "
                            "has no defaultErrnoRet, so the default would answer EPERM")
    if profile.arch_map:
        notes.append("archMap flattened into architectures (the CRD has no archMap): every "
                     "entry's architectures are in the filter on every machine")
    arches = _unique(data["architectures"])
    problems += [f"$.architectures[{i}]: {a} is not in the CRD's architecture enum"
                 for i, a in enumerate(arches) if a not in SPO_ARCHES]
    if arches:
        spec["architectures"] = arches
    if "flags" in data:
        spec["flags"] = _unique(data["flags"])
    if "listenerPath" in data:
        if not _LISTENER_PATH.fullmatch(data["listenerPath"]):
            problems.append(f"$.listenerPath: {data['listenerPath']!r} cannot be expressed: the "
                            "CRD takes only sockets in /var/run/security-profiles-operator/")
        spec["listenerPath"] = data["listenerPath"]
    if "listenerMetadata" in data:
        spec["listenerMetadata"] = data["listenerMetadata"]
    rules = [_rule(f"$.syscalls[{i}]", r, problems) for i, r in enumerate(data["syscalls"])]
    if rules:
        spec["syscalls"] = rules
    if problems:
        raise ProfileError(f"SeccompProfile {name}", problems)
    if (len(arches) < len(data["architectures"]) or len(spec.get("flags", ())) < len(profile.flags)
            or any(len(r["names"]) < len(o.names) for r, o in zip(rules, profile.syscalls,
                                                                    strict=True))):
        notes.append("duplicate architectures, flags or names in a rule written once (the CRD "
                     "makes these lists sets)")
    if commented := sum(1 for r in profile.syscalls if r.comment):
        notes.append(f"{commented} rule comment(s) left out: the CRD's syscall entries have "
                     "no comment field")
    metadata: dict[str, Any] = {"name": name}
    if annotations := _annotations(profile.metadata, notes):
        metadata["annotations"] = annotations
    return SpoProfile({"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata,
                       "spec": spec}, notes)
