"""From a recording to a profile: allow what was used, deny the rest.

The result is deterministic for a given syscall set: names are sorted, rules
come in a fixed order, and the only time-dependent field (when the recording
ran) follows ``SOURCE_DATE_EPOCH`` when that is set, as reproducible builds do.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import platform
from dataclasses import dataclass, replace
from typing import Any

from ..sensors.syscall_table import machine
from ..timefmt import rfc3339
from .profile import ArgCondition, Profile, SyscallRule
from .recorder import ARG_WATCHES, Recording
from .runtime_base import (
    RUNTIME_ARG_VALUES,
    RUNTIME_BASE,
    RUNTIME_BASE_COMMENT,
    runtime_base,
)

__all__ = ["RecordingInfo", "profile_from_recording"]

_CLONE3_COMMENT = ("clone3 passes its flags behind a pointer seccomp cannot read: ENOSYS makes "
                   "the C library fall back to clone, whose flags the rules check")


@dataclass
class RecordingInfo:
    """What was recorded, for the profile's metadata block."""

    source: dict[str, Any]  # {"command": [...]} or {"pid": N} or {"cgroup": path}
    started: dt.datetime
    ended: dt.datetime
    base: str | None = None


def _stamp(t: dt.datetime) -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None and epoch.isdigit():
        t = dt.datetime.fromtimestamp(int(epoch), dt.UTC)
    return rfc3339(int(t.timestamp()) * 1_000_000_000, digits=0)


def _arg_rules(rec: Recording, names: set[str]) -> tuple[list[SyscallRule], set[str]]:
    """Argument rules for watched syscalls, and the names they cover. The values
    the runtimes pass (RUNTIME_ARG_VALUES) are allowed too."""
    rules: list[SyscallRule] = []
    covered: set[str] = set()
    clone3_used = "clone3" in names
    for name in sorted(ARG_WATCHES):
        used = name in names or (name == "clone" and clone3_used)
        if not used or name in rec.args_incomplete or not rec.arg_values.get(name):
            continue
        w = ARG_WATCHES[name]
        values = rec.arg_values[name] | set(RUNTIME_ARG_VALUES.get(name, ()))
        if w.mask is None:
            conds = [ArgCondition(w.index, v, "SCMP_CMP_EQ") for v in sorted(values)]
        else:
            masked = sorted({v & w.mask for v in values})
            conds = [ArgCondition(w.index, w.mask, "SCMP_CMP_MASKED_EQ", v) for v in masked]
        rules.extend(SyscallRule((name,), "SCMP_ACT_ALLOW", args=(c,)) for c in conds)
        covered.add(name)
    if clone3_used and "clone" in covered:
        rules.append(SyscallRule(("clone3",), "SCMP_ACT_ERRNO", errno.ENOSYS,
                                 comment=_CLONE3_COMMENT))
        covered.add("clone3")
    return rules, covered


def profile_from_recording(rec: Recording, info: RecordingInfo, *,
                           base: Profile | None = None, with_args: bool = False) -> Profile:
    """The profile allowing exactly what `rec` saw (argument rules with `with_args`).
    Render it in either format with :meth:`Profile.dumps`.

    With `base`, the recording is merged into it: a syscall the base names
    under any action keeps that rule; the others are appended as ALLOW.
    """
    here = machine()
    native = here.native.oci
    names = rec.names()
    arg_rules, covered = _arg_rules(rec, names) if with_args else ([], set())
    allow = sorted(names - covered)
    # A name with argument rules keeps them (they allow the runtimes' values).
    # One the recording did not make is allowed whole, but for those whose
    # arguments decide what they may do: clone always, and with argument
    # rules prctl too, get only the runtimes' values.
    by_value = {n for n in RUNTIME_ARG_VALUES if with_args or n == "clone"} - names - covered
    base_only = sorted(runtime_base() - names - covered - by_value)
    base_rules = [SyscallRule(tuple(base_only), "SCMP_ACT_ALLOW", comment=RUNTIME_BASE_COMMENT)
                  ] if base_only else []
    for name in sorted(by_value):
        w = ARG_WATCHES[name]
        base_rules += [SyscallRule((name,), "SCMP_ACT_ALLOW", args=(
            ArgCondition(w.index, v, "SCMP_CMP_EQ") if w.mask is None else
            ArgCondition(w.index, w.mask, "SCMP_CMP_MASKED_EQ", v & w.mask),),
            comment=f"{RUNTIME_BASE_COMMENT} ({name}: the runtimes' {w.meaning} only)")
            for v in RUNTIME_ARG_VALUES[name]]
    notes = []
    for arch, nrs in sorted(rec.unnamed.items()):
        notes.append(f"{arch}: syscall numbers {sorted(nrs)} have no name in this libseccomp "
                     "and cannot be listed; the profile denies them")
    if with_args:
        for name in sorted(rec.args_incomplete & names):
            notes.append(f"{name}: not every argument value could be kept; allowed whole")
    if rec.out_of_range:
        notes.append(f"{rec.out_of_range} syscalls had numbers outside 0..511 and were not "
                     "recorded")
    meta: dict[str, Any] = {
        "comment": "Recorded by bpfguard seccomp record: the syscalls made by the recorded "
                   "processes and their descendants, everything else denied. Rules name "
                   "syscalls for every listed architecture.",
        **info.source,
        "recorded_from": _stamp(info.started),
        "recorded_until": _stamp(info.ended),
        "kernel": platform.release(),
        "syscalls": {arch: sorted(n) for arch, n in sorted(rec.syscalls.items())},
        "runtime_base": {"comment": RUNTIME_BASE_COMMENT + " (see bpfguard's "
                                    "seccomp/runtime_base.py); those not recorded are added",
                         **{k: list(v) for k, v in RUNTIME_BASE.items()},
                         "argument_values": {k: list(v) for k, v in RUNTIME_ARG_VALUES.items()}},
    }
    if with_args:
        meta["arguments"] = {n: {"index": ARG_WATCHES[n].index,
                                 "meaning": ARG_WATCHES[n].meaning,
                                 "values": sorted(rec.arg_values.get(n, ()))}
                             for n in sorted(ARG_WATCHES) if n in covered}
    if notes:
        meta["notes"] = notes
    if base is None:
        rules = ([SyscallRule(tuple(allow), "SCMP_ACT_ALLOW")] if allow else []) + arg_rules
        return Profile("SCMP_ACT_ERRNO", errno.EPERM,
                       architectures=(native, *here.sub_arches),
                       syscalls=tuple(rules + base_rules), metadata=meta)
    # A name the base profile gives a rule keeps it, even one that denies:
    # the base is the user's decision (oci-seccomp-bpf-hook's `if:` does the same).
    named = base.named()
    added = [n for n in allow if n not in named]
    extra = [r for r in arg_rules if r.names[0] not in named]
    base_added = [replace(r, names=tuple(n for n in r.names if n not in named))
                  for r in base_rules if set(r.names) - named]
    meta["base"] = info.base
    meta["added"] = sorted({*added, *(r.names[0] for r in extra)})
    rules = list(base.syscalls)
    if added:
        rules.append(SyscallRule(tuple(added), "SCMP_ACT_ALLOW",
                                 comment="added by bpfguard seccomp record"))
    rules.extend(extra)
    rules.extend(base_added)
    return replace(base, syscalls=tuple(rules), metadata=meta, warnings=[])
