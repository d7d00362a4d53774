"""What changed between two profiles: by syscall, and by rule."""

from __future__ import annotations

import errno
from dataclasses import dataclass, field, replace
from typing import Any

from .profile import Profile

__all__ = ["ProfileDiff", "diff_profiles"]


def _arches(p: Profile) -> list[str]:
    if p.architectures:
        return list(p.architectures)
    return [a for arch, subs in p.arch_map for a in (arch, *subs)]


def _errno(action: str, value: int | None) -> int | None:
    # runc: ERRNO and TRACE without a value mean EPERM; other actions take none
    if action in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        return errno.EPERM if value is None else value
    return None


def _default(p: Profile) -> str:
    e = _errno(p.default_action, p.default_errno_ret)
    return p.default_action + (f"({e})" if e is not None else "")


def _by_name(p: Profile) -> dict[str, set[str]]:
    """Each syscall's rules, described with errno values made explicit."""
    out: dict[str, set[str]] = {}
    for r in p.syscalls:
        action = "SCMP_ACT_KILL_THREAD" if r.action == "SCMP_ACT_KILL" else r.action
        desc = replace(r, action=action, errno_ret=_errno(r.action, r.errno_ret)).describe()
        for n in r.names:
            out.setdefault(n, set()).add(desc)
    return out


@dataclass
class ProfileDiff:
    """Differences from profile A to profile B. Empty (falsy) when they mean the same."""

    default_action: tuple[str, str] | None = None
    arches_added: list[str] = field(default_factory=list)
    arches_removed: list[str] = field(default_factory=list)
    flags_added: list[str] = field(default_factory=list)
    flags_removed: list[str] = field(default_factory=list)
    syscalls_added: dict[str, list[str]] = field(default_factory=dict)
    syscalls_removed: dict[str, list[str]] = field(default_factory=dict)
    # name -> (rules only A has for it, rules only B has)
    syscalls_changed: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any((self.default_action, self.arches_added, self.arches_removed,
                    self.flags_added, self.flags_removed, self.syscalls_added,
                    self.syscalls_removed, self.syscalls_changed))

    def to_json(self) -> dict[str, Any]:
        return {
            "default_action": list(self.default_action) if self.default_action else None,
            "architectures": {"added": self.arches_added, "removed": self.arches_removed},
            "flags": {"added": self.flags_added, "removed": self.flags_removed},
            "syscalls": {"added": self.syscalls_added, "removed": self.syscalls_removed,
                         "changed": {n: {"rules_removed": a, "rules_added": b}
                                     for n, (a, b) in self.syscalls_changed.items()}},
        }

    def render(self) -> str:
        """diff-like text: + for what B adds, - for what it drops, ~ for a syscall
        whose rules changed (its rules that went, then those that came)."""
        lines = []
        if self.default_action:
            lines.append(f"default action: {self.default_action[0]} -> {self.default_action[1]}")
        lines += [f"+ architecture {arch}" for arch in self.arches_added]
        lines += [f"- architecture {arch}" for arch in self.arches_removed]
        lines += [f"+ flag {flag}" for flag in self.flags_added]
        lines += [f"- flag {flag}" for flag in self.flags_removed]
        for n, rules in self.syscalls_added.items():
            lines.append(f"+ {n}: {'; '.join(rules)}")
        for n, rules in self.syscalls_removed.items():
            lines.append(f"- {n}: {'; '.join(rules)}")
        for n, (gone, came) in self.syscalls_changed.items():
            lines.append(f"~ {n}:")
            lines += [f"    - {r}" for r in gone]
            lines += [f"    + {r}" for r in came]
        return "\n".join(lines)


def diff_profiles(a: Profile, b: Profile) -> ProfileDiff:
    """Compares meaning, not text: format, how names are grouped into rules, rule
    order, comments, metadata and implicit EPERM values do not count."""
    d = ProfileDiff()
    da, db = _default(a), _default(b)
    if da != db:
        d.default_action = (da, db)
    aa, ab = _arches(a), _arches(b)
    d.arches_added = [x for x in ab if x not in aa]
    d.arches_removed = [x for x in aa if x not in ab]
    d.flags_added = sorted(set(b.flags) - set(a.flags))
    d.flags_removed = sorted(set(a.flags) - set(b.flags))
    na, nb = _by_name(a), _by_name(b)
    d.syscalls_added = {n: sorted(nb[n]) for n in sorted(nb.keys() - na.keys())}
    d.syscalls_removed = {n: sorted(na[n]) for n in sorted(na.keys() - nb.keys())}
    d.syscalls_changed = {n: (sorted(na[n] - nb[n]), sorted(nb[n] - na[n]))
                          for n in sorted(na.keys() & nb.keys()) if na[n] != nb[n]}
    return d
