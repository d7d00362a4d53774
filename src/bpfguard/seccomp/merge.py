"""One profile from the recordings of several runs or replicas: their union.

A single recording sees only the code paths its run took; replicas, test
suites and rare jobs are recorded apart and merged. The union allows what any
input allows, and refuses to guess where inputs disagree on what to do with a
syscall:

- every input must have the same default action (and errno): that is what the
  union of "everything else" means;
- architectures, and archMap entries, are unioned in first-seen order;
- a syscall some input allows unconditionally is allowed unconditionally: the
  ALLOW rules other inputs give it with conditions are redundant and dropped;
- other ALLOW rules (argument or Docker conditions) are unioned;
- rules with other actions are kept, but a syscall that gets different
  non-ALLOW actions, or ALLOW in one input and another action in another, is
  a conflict: every one is reported with file and JSON path. Inputs whose rules
  for a syscall are all the same never conflict (two recordings on one base).
  The exception is bpfguard's clone3 rule (ENOSYS, from ``record --args``):
  where an input allows clone3 unconditionally, that allow wins, with a note.

Rule order and grouping are deterministic, as in generate.py: one ALLOW rule
with the sorted names, then the conditioned ALLOW rules, then the others.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from ..timefmt import parse_rfc3339
from .generate import _CLONE3_COMMENT
from .profile import ArgCondition, Profile, ProfileError, SyscallRule, _arch_map_from
from .runtime_base import RUNTIME_BASE_COMMENT, runtime_base

__all__ = ["merge_profiles"]

_ALLOW = "SCMP_ACT_ALLOW"


@dataclass(frozen=True)
class _Use:
    """One syscall name in one rule of one input."""

    input: int
    source: str
    path: str  # $.syscalls[i].names[k]
    rule: SyscallRule  # the rule, for this name alone


def _verdict(action: str, errno_ret: int | None) -> tuple[str, int | None]:
    """An action by meaning: runc's EPERM for ERRNO/TRACE without a value, and
    KILL is KILL_THREAD."""
    if action in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        return action, errno.EPERM if errno_ret is None else errno_ret
    return ("SCMP_ACT_KILL_THREAD" if action == "SCMP_ACT_KILL" else action), None


def _label(action: str, errno_ret: int | None) -> str:
    act, data = _verdict(action, errno_ret)
    return act + (f"({data})" if data is not None else "")


def _arg_key(a: ArgCondition) -> tuple[int, str, int, int]:
    return a.index, a.op, a.value, a.value_two


def _meaning(r: SyscallRule) -> tuple[Any, ...]:
    """What a rule does, for deduplication: comments and condition order do not count."""
    return (_verdict(r.action, r.errno_ret), tuple(sorted(map(_arg_key, r.args))),
            r.includes, r.excludes)


def _unconditional(r: SyscallRule) -> bool:
    return r.action == _ALLOW and not (r.args or r.includes or r.excludes)


def _bpfguard_clone3(r: SyscallRule) -> bool:
    return (r.action == "SCMP_ACT_ERRNO" and r.errno_ret == errno.ENOSYS and r.comment ==
            _CLONE3_COMMENT and not (r.args or r.includes or r.excludes))


def _conflicts(uses: list[_Use]) -> bool:
    """ALLOW in one input and another action in another, or two inputs with
    different non-ALLOW actions."""
    for a in uses:
        for b in uses:
            if a.input == b.input or a.rule.action == _ALLOW:
                continue
            if b.rule.action == _ALLOW or (_verdict(a.rule.action, a.rule.errno_ret)
                                           != _verdict(b.rule.action, b.rule.errno_ret)):
                return True
    return False


def _union(lists: Iterable[Iterable[str]]) -> list[str]:
    return list(dict.fromkeys(x for lst in lists for x in lst))


def _arches(profiles: list[Profile]) -> dict[str, Any]:
    """Architectures, or archMap entries if any input has them (an OCI input's
    list grouped as --format docker groups it), unioned in first-seen order."""
    if not any(p.arch_map for p in profiles):
        return {"architectures": tuple(_union(p.architectures for p in profiles))}
    subs: dict[str, list[str]] = {}
    for p in profiles:
        for arch, more in p.arch_map or _arch_map_from(p.architectures):
            have = subs.setdefault(arch, [])
            have += [s for s in more if s not in have]
    return {"arch_map": tuple((arch, tuple(s)) for arch, s in subs.items())}


def _same(values: list[tuple[str, Any]], what: str, problems: list[str]) -> None:
    """Inputs must agree on `what`: a problem naming each file and value if not."""
    if len({v for _, v in values}) > 1:
        problems.append(f"{what}: inputs differ: " +
                        ", ".join(f"{src} {v}" for src, v in values))


def _rules(profiles: list[Profile], sources: list[str], problems: list[str],
           notes: list[str]) -> tuple[SyscallRule, ...]:
    uses: dict[str, list[_Use]] = {}
    for n, (p, src) in enumerate(zip(profiles, sources, strict=True)):
        for i, r in enumerate(p.syscalls):
            for k, name in enumerate(r.names):
                uses.setdefault(name, []).append(
                    _Use(n, src, f"$.syscalls[{i}].names[{k}]", replace(r, names=(name,))))
    allow: list[str] = []
    kept: dict[SyscallRule, list[str]] = {}  # a rule without its names -> the names
    for name in sorted(uses):
        mine = uses[name]
        unconditional = [u for u in mine if _unconditional(u.rule)]
        if name == "clone3" and unconditional:
            clone3 = [u for u in mine if _bpfguard_clone3(u.rule)]
            if clone3:
                notes.append(
                    f"clone3: allowed, as {unconditional[0].source} allows it unconditionally; "
                    f"the ENOSYS rule of {', '.join(u.source for u in clone3)} (libc falls "
                    "back to clone, whose namespace flags the rules check) is dropped, so "
                    "clone3 creates namespaces unchecked")
                mine = [u for u in mine if u not in clone3]
        per_input: dict[int, set[tuple[Any, ...]]] = {}
        for u in mine:
            per_input.setdefault(u.input, set()).add(_meaning(u.rule))
        if len({frozenset(m) for m in per_input.values()}) > 1 and _conflicts(mine):
            problems.append(f"{name}: conflicting actions: " + "; ".join(
                f"{u.source} {u.path}: {u.rule.describe()}" for u in mine))
            continue
        if unconditional:
            allow.append(name)
            mine = [u for u in mine if u.rule.action != _ALLOW]
        seen: set[tuple[Any, ...]] = set()
        for u in mine:
            if (m := _meaning(u.rule)) not in seen:
                seen.add(m)
                kept.setdefault(replace(u.rule, names=()), []).append(name)
    others = sorted((replace(r, names=tuple(sorted(names))) for r, names in kept.items()),
                    key=lambda r: (r.action != _ALLOW, r.names, r.action,
                                   -1 if r.errno_ret is None else r.errno_ret,
                                   tuple(map(_arg_key, r.args)),
                                   repr((r.includes, r.excludes, r.comment))))
    return (*([SyscallRule(tuple(allow), _ALLOW)] if allow else []), *others)


def _metadata(profiles: list[Profile], sources: list[str], notes: list[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "comment": "Merged by bpfguard seccomp merge: what any of the inputs allows is "
                   "allowed, everything else gets their shared default action.",
        "merged_from": list(sources),
    }
    metas = [(src, p.metadata or {}) for p, src in zip(profiles, sources, strict=True)]
    for key, pick in (("recorded_from", min), ("recorded_until", max)):
        stamps = []
        for _, m in metas:
            # compared as times (offsets, fractions), written as the input has it;
            # an input not recorded by bpfguard has none
            with contextlib.suppress(KeyError, TypeError, ValueError):
                stamps.append((parse_rfc3339(m[key]), m[key]))
        if stamps:
            meta[key] = pick(stamps)[1]
    recorded = [(src, m["syscalls"]) for src, m in metas if isinstance(m.get("syscalls"), dict)]
    if recorded:
        union: dict[str, set[str]] = {}
        for _, per_arch in recorded:
            for arch, names in per_arch.items():
                union.setdefault(arch, set()).update(names)
        meta["syscalls"] = {arch: sorted(n) for arch, n in sorted(union.items())}
        if missing := [src for src, m in metas if not isinstance(m.get("syscalls"), dict)]:
            notes.append(f"syscalls lists what {', '.join(src for src, _ in recorded)} "
                         f"recorded; {', '.join(missing)} have no record of theirs")
    for src, m in metas:  # the inputs' own notes still hold for what they bring
        if isinstance(m.get("notes"), list):
            notes += [f"{src}: {note}" for note in m["notes"]]
    if notes:
        meta["notes"] = notes
    return meta


def _runtime_base_apart(rules: tuple[SyscallRule, ...], profiles: list[Profile],
                        meta: dict[str, Any]) -> tuple[SyscallRule, ...]:
    """Recorded inputs keep the runtime base in a rule of its own and list it
    in their metadata: so does their union. A base name some input recorded
    stays with the recorded ones."""
    base_meta = next((m["runtime_base"] for p in profiles
                      if isinstance(m := p.metadata or {}, dict) and "runtime_base" in m), None)
    first = rules[0] if rules else None
    # only when every input was recorded (a name another profile allows is not
    # the base's), and the first rule is the unconditional allow
    if base_meta is None or first is None or first.args or first.includes or first.excludes \
            or first.action != _ALLOW or any("syscalls" not in (p.metadata or {})
                                              for p in profiles):
        return rules
    meta["runtime_base"] = base_meta
    recorded = {n for names in meta["syscalls"].values() for n in names}
    apart = sorted(n for n in rules[0].names if n in runtime_base() and n not in recorded)
    if not apart:
        return rules
    rest = tuple(n for n in rules[0].names if n not in apart)
    base_rule = SyscallRule(tuple(apart), _ALLOW, comment=RUNTIME_BASE_COMMENT)
    return (*([replace(rules[0], names=rest)] if rest else []), base_rule, *rules[1:])


def merge_profiles(profiles: list[Profile], sources: list[str]) -> Profile:
    """The union of `profiles` (see the module docstring for what that means).

    Parameters:
        profiles: the inputs, in order: the first one's default action and
            errno spelling are kept, and first-seen order decides architectures.
        sources: their file names, one each, for errors and ``merged_from``.

    Returns:
        A profile whose ``bpfguard`` block has ``merged_from``, the earliest
        ``recorded_from``, the latest ``recorded_until``, the union of the
        recorded ``syscalls`` and the notes.

    Raises:
        ProfileError: every disagreement (default action, listener, conflicting
            rules), each naming the files and JSON paths.

    Example::

        merged = merge_profiles([load_profile(f) for f in files], files)
    """
    if not profiles or len(profiles) != len(sources):
        raise ValueError("merge_profiles: one source name per profile, and at least one")
    problems: list[str] = []
    notes: list[str] = []
    _same([(s, _label(p.default_action, p.default_errno_ret))
           for p, s in zip(profiles, sources, strict=True)], "$.defaultAction", problems)
    for key, attr in (("$.listenerPath", "listener_path"),
                      ("$.listenerMetadata", "listener_metadata")):
        _same([(s, repr(v)) for p, s in zip(profiles, sources, strict=True)
               if (v := getattr(p, attr)) is not None], key, problems)
    flags = _union(p.flags for p in profiles)
    if any(set(p.flags) != set(flags) for p in profiles):
        notes.append(f"flags differ between the inputs: the union is kept ({', '.join(flags)})")
    rules = _rules(profiles, sources, problems, notes)
    if problems:
        raise ProfileError("cannot merge", problems)
    meta = _metadata(profiles, sources, notes)
    rules = _runtime_base_apart(rules, profiles, meta)
    first = profiles[0]
    return Profile(first.default_action, first.default_errno_ret, **_arches(profiles),
                   syscalls=rules, flags=tuple(flags),
                   listener_path=next((p.listener_path for p in profiles
                                       if p.listener_path is not None), None),
                   listener_metadata=next((p.listener_metadata for p in profiles
                                           if p.listener_metadata is not None), None),
                   metadata=meta)
