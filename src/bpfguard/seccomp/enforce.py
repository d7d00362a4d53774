"""Turning a profile into a libseccomp filter for this machine.

The semantics follow runc (the OCI runtime) and Docker, so a profile behaves
here as it does in a container:

- Docker's ``archMap``: the entry of the native architecture gives the filter's
  architectures; ``architectures`` (OCI) is taken as listed.
- ``includes``/``excludes`` are decided against this machine (Docker's arch
  name, kernel version) and the capabilities the command will hold.
- A rule whose action equals the default action is left out (libseccomp
  refuses it, and it changes nothing); a name the local libseccomp cannot
  resolve is left out with a note (the kernel may not have it either).
- Several conditions on the same argument make one rule each (ORed), as
  libseccomp cannot AND two conditions on one argument; otherwise the
  conditions of a rule are ANDed.
- Rules go to libseccomp in the profile's order. Where it would silently
  ignore a rule for another of the syscall with another action (one without
  conditions takes the whole syscall, and the first such one wins), the plan
  leaves it out with a note: the filter is the same, and audit mode reports
  what enforcing denies.
- ``errnoRet`` absent means EPERM for a rule, ``defaultErrnoRet`` for the default.

Audit mode turns every action but ALLOW into LOG: nothing is denied, and the
kernel logs what would have been.
"""

from __future__ import annotations

import errno
import platform
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyseccomp

from ..errors import ConfigError
from ..sensors.syscall_table import LIBSECCOMP_ARCHES, machine
from .profile import (
    CAPABILITIES,
    Condition,
    Profile,
    SyscallRule,
    effective_action,
    libseccomp_adds,
    runc_arg_groups,
    seccomp_knows,
)

__all__ = [
    "FilterPlan",
    "PlannedRule",
    "Target",
    "build_filter",
    "plan_filter",
    "resolve_for",
]

_OPS = {"SCMP_CMP_NE": pyseccomp.NE, "SCMP_CMP_LT": pyseccomp.LT, "SCMP_CMP_LE": pyseccomp.LE,
        "SCMP_CMP_EQ": pyseccomp.EQ, "SCMP_CMP_GE": pyseccomp.GE, "SCMP_CMP_GT": pyseccomp.GT,
        "SCMP_CMP_MASKED_EQ": pyseccomp.MASKED_EQ}
@dataclass(frozen=True)
class Target:
    """What includes/excludes are decided against."""

    machine: str
    kernel: tuple[int, ...]
    caps: frozenset[str]

    @classmethod
    def current(cls) -> Target:
        """This machine, and the effective capabilities of this process (which a
        command it execs keeps)."""
        return cls(platform.machine(), _version(platform.release()), _effective_caps())

    @property
    def docker_arch(self) -> str:
        return machine(self.machine).docker

    @property
    def native(self) -> str:
        return machine(self.machine).native.oci


def _version(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split("-")[0].split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def _effective_caps() -> frozenset[str]:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            mask = int(line.split()[1], 16)
            return frozenset(c for i, c in enumerate(CAPABILITIES) if mask >> i & 1)
    return frozenset()


@dataclass(frozen=True)
class PlannedRule:
    """One libseccomp rule: action, syscall name, argument conditions."""

    action: str
    data: int | None
    name: str
    args: tuple[tuple[int, str, int, int], ...]  # (index, op, value, valueTwo)
    source: str  # JSON path of the profile rule it came from
    comment: str = ""


@dataclass
class FilterPlan:
    """The filter a profile makes on this machine, before libseccomp builds it."""

    default_action: str
    default_data: int | None
    arches: tuple[str, ...]
    rules: list[PlannedRule]
    log_denials: bool
    spec_allow: bool = False  # SECCOMP_FILTER_FLAG_SPEC_ALLOW: keep speculative store bypass
    no_new_privs: bool = True  # NNP; off only where CAP_SYS_ADMIN allows a filter without it
    skipped: list[str] = field(default_factory=list)

    def action_for(self, name: str) -> tuple[str, str]:
        """What the filter does with syscall `name` (ignoring argument rules when a
        blanket rule exists), and the comment of the rule that decides it."""
        rules = [r for r in self.rules if r.name == name]
        for r in rules:
            if not r.args:
                return _label(r.action, r.data), r.comment
        note = " unless its arguments match a rule" if rules else ""
        return _label(self.default_action, self.default_data) + note, ""


def _label(action: str, data: int | None) -> str:
    return action + (f"({data})" if data is not None else "")


def _applies(rule: SyscallRule, t: Target) -> bool:
    """Docker's includes/excludes (moby profiles/seccomp)."""
    ex, inc = rule.excludes, rule.includes
    if ex.arches and t.docker_arch in ex.arches:
        return False
    if ex.caps and any(c in t.caps for c in ex.caps):
        return False
    if ex.min_kernel and t.kernel >= _version(ex.min_kernel):
        return False
    if inc.arches and t.docker_arch not in inc.arches:
        return False
    if inc.caps and not all(c in t.caps for c in inc.caps):
        return False
    return not (inc.min_kernel and t.kernel < _version(inc.min_kernel))


def _arches_for(profile: Profile, t: Target) -> tuple[str, ...]:
    """Docker's archMap: the native entry's; OCI's architectures: as listed."""
    if profile.arch_map:
        entry = [subs for arch, subs in profile.arch_map if arch == t.native]
        return (t.native, *entry[0]) if entry else (t.native,)
    return profile.architectures or (t.native,)


def resolve_for(profile: Profile, target: Target | None = None) -> Profile:
    """The profile as it applies on `target`, in a form OCI can hold (as moby
    does when it writes a container's config): rules whose includes/excludes do
    not hold are dropped, the others lose their conditions, and archMap becomes
    the native entry's architectures."""
    t = target or Target.current()
    rules = tuple(replace(r, includes=Condition(), excludes=Condition())
                  for r in profile.syscalls if _applies(r, t))
    return replace(profile, architectures=_arches_for(profile, t), arch_map=(), syscalls=rules,
                   warnings=[])


def _describe(cond: Condition) -> str:
    return ", ".join(f"{k}={v}" for k, v in cond.to_json().items())


def plan_filter(profile: Profile, *, target: Target | None = None, audit: bool = False,
                log_denials: bool = True) -> FilterPlan:
    """Decides the filter for `target` (default: this machine and process).

    audit: every non-ALLOW action becomes SCMP_ACT_LOG. log_denials: the kernel
    logs denials to the audit log (SECCOMP_FILTER_FLAG_LOG), so they can be
    reported; a profile's own SECCOMP_FILTER_FLAG_LOG also turns it on.
    """
    t = target or Target.current()
    if profile.default_action == "SCMP_ACT_NOTIFY" or any(
            r.action == "SCMP_ACT_NOTIFY" for r in profile.syscalls):
        raise ConfigError("SCMP_ACT_NOTIFY hands syscalls to a seccomp agent on "
                          "listenerPath; bpfguard seccomp run is not one")
    default, default_data = profile.default_action, profile.default_errno_ret
    if audit and default != "SCMP_ACT_ALLOW":
        default, default_data = "SCMP_ACT_LOG", None
    arches = _arches_for(profile, t)
    plan = FilterPlan(default, default_data, arches, [],
                      log_denials or "SECCOMP_FILTER_FLAG_LOG" in profile.flags,
                      "SECCOMP_FILTER_FLAG_SPEC_ALLOW" in profile.flags,
                      # runc sets NNP only when asked; without CAP_SYS_ADMIN the kernel needs it
                      "CAP_SYS_ADMIN" not in t.caps)
    for a in arches:
        if a not in LIBSECCOMP_ARCHES:
            plan.skipped.append(f"architecture {a}: unknown to this libseccomp, left out")
    plan.arches = tuple(a for a in arches if a in LIBSECCOMP_ARCHES)
    # a rule libseccomp has already (the same name, action and conditions)
    # changes nothing, and it searches its rules for each one added: repeats
    # made a large profile quadratic (80k names: minutes)
    planned: set[tuple[str, int | None, str, tuple[tuple[int, str, int, int], ...]]] = set()
    repeats = 0
    for i, rule in enumerate(profile.syscalls):
        src = f"$.syscalls[{i}]"
        if not _applies(rule, t):
            why = "; ".join(f"{k} {_describe(c)}" for k, c in (("includes", rule.includes),
                                                               ("excludes", rule.excludes)) if c)
            plan.skipped.append(f"{src} ({', '.join(rule.names[:3])}"
                                f"{', ...' if len(rule.names) > 3 else ''}): not for this "
                                f"machine/capabilities ({why})")
            continue
        action, data = rule.action, rule.errno_ret
        if action in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE") and data is None:
            data = errno.EPERM
        if _same_action(action, data, profile.default_action, profile.default_errno_ret):
            continue
        groups = [tuple((a.index, a.op, a.value, a.value_two) for a in g)
                  for g in runc_arg_groups(rule.args)]
        unknown = [n for n in rule.names if not seccomp_knows(n)]
        if unknown:
            plan.skipped.append(f"{src}: left out, unknown to this libseccomp "
                                f"(the kernel may lack them too): {', '.join(unknown)}")
        for name in rule.names:
            if name in unknown:
                continue
            for g in groups:
                if (action, data, name, g) in planned:
                    repeats += 1
                    continue
                planned.add((action, data, name, g))
                plan.rules.append(PlannedRule(action, data, name, g, src, rule.comment))
    if repeats:
        plan.skipped.append(f"{repeats} rule(s) repeating an earlier one (the same syscall, "
                            "action and conditions) left out: they change nothing")
    plan.rules = _shadowed_left_out(plan)
    if audit:  # after the above, which needs the actions that enforcing has
        logged = (r if r.action == "SCMP_ACT_ALLOW" else
                  replace(r, action="SCMP_ACT_LOG", data=None) for r in plan.rules)
        plan.rules = [r for r in logged
                      if not _same_action(r.action, r.data, default, default_data)]
    return plan


def _shadowed_left_out(plan: FilterPlan) -> list[PlannedRule]:
    """The rules less those that libseccomp silently ignores for another rule of
    the syscall with another action (libseccomp_adds: a rule without conditions
    takes the whole syscall), with a note each. The filter is the same either
    way; audit mode, which makes the actions alike, needs them gone to report
    what enforcing denies."""
    by_name: dict[str, list[int]] = {}
    for n, r in enumerate(plan.rules):
        by_name.setdefault(r.name, []).append(n)
    shadowed: set[int] = set()
    for name, idx in by_name.items():
        rules = [plan.rules[n] for n in idx]
        verdicts = [effective_action(r.action, r.data) for r in rules]
        fates = libseccomp_adds(list(zip(verdicts, (r.args for r in rules), strict=True)))
        for k, (kind, by) in enumerate(fates):
            if kind == "dropped" and by is not None and verdicts[k] != verdicts[by]:
                shadowed.add(idx[k])
                plan.skipped.append(f"{rules[k].source} ({name}): libseccomp ignores it for "
                                    f"the rule of {rules[by].source}")
    return [r for n, r in enumerate(plan.rules) if n not in shadowed]


def _same_action(a: str, a_data: int | None, b: str, b_data: int | None) -> bool:
    return effective_action(a, a_data) == effective_action(b, b_data)


def _action(name: str, data: int | None) -> int:
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        ctor = pyseccomp.ERRNO if name == "SCMP_ACT_ERRNO" else pyseccomp.TRACE
        return int(ctor(errno.EPERM if data is None else data))
    return int({"SCMP_ACT_ALLOW": pyseccomp.ALLOW, "SCMP_ACT_KILL": pyseccomp.KILL_THREAD,
                "SCMP_ACT_KILL_THREAD": pyseccomp.KILL_THREAD,
                "SCMP_ACT_KILL_PROCESS": pyseccomp.KILL_PROCESS, "SCMP_ACT_TRAP": pyseccomp.TRAP,
                "SCMP_ACT_LOG": pyseccomp.LOG}[name])


def build_filter(plan: FilterPlan) -> pyseccomp.SyscallFilter:
    """Builds (does not load) the libseccomp filter; errors name the profile rule."""
    f = pyseccomp.SyscallFilter(_action(plan.default_action, plan.default_data))
    native = pyseccomp.system_arch()
    tokens = [LIBSECCOMP_ARCHES[a] for a in plan.arches]
    for tok in tokens:  # the native architecture stays in, as with runc
        if tok != native and not f.exist_arch(tok):
            f.add_arch(tok)
    if plan.log_denials:
        f.set_attr(pyseccomp.Attr.CTL_LOG, 1)
    if plan.spec_allow:
        f.set_attr(pyseccomp.Attr.CTL_SSB, 1)
    if not plan.no_new_privs:  # setuid programs keep working, as under runc
        f.set_attr(pyseccomp.Attr.CTL_NNP, 0)
    for r in plan.rules:
        args = [pyseccomp.Arg(i, _OPS[op], v, v2) for i, op, v, v2 in r.args]
        try:
            f.add_rule(_action(r.action, r.data), r.name, *args)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"{r.source}: {r.name}: libseccomp refused the rule: {exc}") from None
    return f
