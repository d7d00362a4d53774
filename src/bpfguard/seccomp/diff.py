"""What changed between two profiles: by syscall, and by rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .profile import Profile, SyscallRule

__all__ = ["ProfileDiff", "diff_profiles"]


def _arches(p: Profile) -> list[str]:
    if p.architectures:
        return list(p.architectures)
    return [a for arch, subs in p.arch_map for a in (arch, *subs)]


def _default(p: Profile) -> str:
    e = p.default_errno_ret
    return p.default_action + (f"({e})" if e is not None else "")


def _by_name(p: Profile) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in p.syscalls:
        for n in r.names:
            out.setdefault(n, set()).add(r.describe())
    return out


def _rule_key(r: SyscallRule) -> tuple[Any, ...]:
    return (tuple(sorted(r.names)), r.describe())


@dataclass
class ProfileDiff:
    """Differences from profile A to profile B. Empty (falsy) when they mean the same."""

    default_action: tuple[str, str] | None = None
    arches_added: list[str] = field(default_factory=list)
    arches_removed: list[str] = field(default_factory=list)
    syscalls_added: dict[str, list[str]] = field(default_factory=dict)
    syscalls_removed: dict[str, list[str]] = field(default_factory=dict)
    syscalls_changed: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    rules_added: list[SyscallRule] = field(default_factory=list)
    rules_removed: list[SyscallRule] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.default_action, self.arches_added, self.arches_removed,
                    self.syscalls_added, self.syscalls_removed, self.syscalls_changed,
                    self.rules_added, self.rules_removed))

    def to_json(self) -> dict[str, Any]:
        return {
            "default_action": list(self.default_action) if self.default_action else None,
            "architectures": {"added": self.arches_added, "removed": self.arches_removed},
            "syscalls": {"added": self.syscalls_added, "removed": self.syscalls_removed,
                         "changed": {n: {"from": a, "to": b}
                                     for n, (a, b) in self.syscalls_changed.items()}},
            "rules": {"added": [r.to_json() for r in self.rules_added],
                      "removed": [r.to_json() for r in self.rules_removed]},
        }

    def render(self) -> str:
        """diff-like text: + for what B adds, - for what it drops."""
        lines = []
        if self.default_action:
            lines.append(f"default action: {self.default_action[0]} -> {self.default_action[1]}")
        lines += [f"+ architecture {arch}" for arch in self.arches_added]
        lines += [f"- architecture {arch}" for arch in self.arches_removed]
        for n, rules in self.syscalls_added.items():
            lines.append(f"+ {n}: {'; '.join(rules)}")
        for n, rules in self.syscalls_removed.items():
            lines.append(f"- {n}: {'; '.join(rules)}")
        for n, (before, after) in self.syscalls_changed.items():
            lines.append(f"~ {n}: {'; '.join(before)} -> {'; '.join(after)}")
        if self.rules_added or self.rules_removed:
            lines.append("rules:")
            lines += [f"+ {', '.join(r.names)}: {r.describe()}" for r in self.rules_added]
            lines += [f"- {', '.join(r.names)}: {r.describe()}" for r in self.rules_removed]
        return "\n".join(lines)


def diff_profiles(a: Profile, b: Profile) -> ProfileDiff:
    """Compares meaning, not text: formats, rule order, comments and metadata don't count."""
    d = ProfileDiff()
    da, db = _default(a), _default(b)
    if da != db:
        d.default_action = (da, db)
    aa, ab = _arches(a), _arches(b)
    d.arches_added = [x for x in ab if x not in aa]
    d.arches_removed = [x for x in aa if x not in ab]
    na, nb = _by_name(a), _by_name(b)
    d.syscalls_added = {n: sorted(nb[n]) for n in sorted(nb.keys() - na.keys())}
    d.syscalls_removed = {n: sorted(na[n]) for n in sorted(na.keys() - nb.keys())}
    d.syscalls_changed = {n: (sorted(na[n]), sorted(nb[n]))
                          for n in sorted(na.keys() & nb.keys()) if na[n] != nb[n]}
    ka = {_rule_key(r): r for r in a.syscalls}
    kb = {_rule_key(r): r for r in b.syscalls}
    d.rules_added = [kb[k] for k in sorted(kb.keys() - ka.keys())]
    d.rules_removed = [ka[k] for k in sorted(ka.keys() - kb.keys())]
    return d
