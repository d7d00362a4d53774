"""Seccomp profiles: the OCI runtime-spec ``linux.seccomp`` object and Docker's format.

One model serves both. Docker's format is the OCI one plus ``archMap`` (instead
of ``architectures``), per-rule ``includes``/``excludes`` conditions and a
``comment`` per rule. Parsing collects every problem with its JSON path
(``$.syscalls[3].args[0].op``) and raises one :class:`ProfileError`;
rendering is deterministic. A valid profile may still do something else than
it reads: its warnings say what runc, crun and libseccomp really do with a key
given twice, a syscall in rules with different actions, and two conditions on
one argument of a rule.
"""

from __future__ import annotations

import difflib
import errno
import functools
import itertools
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Python's own JSON object parser and pure-Python scanner: undocumented but
# unchanged since Python 3.1, and not in typeshed
from json.decoder import JSONObject as _JSONObject  # type: ignore[attr-defined]
from json.scanner import py_make_scanner as _py_make_scanner  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

import pyseccomp
import system_calls

from ..errors import ConfigError
from ..sensors.syscall_table import ARCH_FAMILIES, LIBSECCOMP_ARCHES

__all__ = [
    "ACTIONS",
    "ARCHES",
    "CAPABILITIES",
    "DOCKER_ARCHES",
    "FLAGS",
    "OPS",
    "ArgCondition",
    "Condition",
    "Profile",
    "ProfileError",
    "SyscallRule",
    "effective_action",
    "known_syscall",
    "libseccomp_adds",
    "runc_arg_groups",
    "seccomp_knows",
    "load_profile",
    "loads_profile",
    "parse_profile",
]

#: A profile file larger is refused before it is read (Docker's default
#: profile is 20 kB).
MAX_PROFILE_BYTES = 16 << 20

ACTIONS = ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
           "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_TRACE", "SCMP_ACT_LOG",
           "SCMP_ACT_NOTIFY")
OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
       "SCMP_CMP_MASKED_EQ")
# The runtime-spec's architecture names, and any more this libseccomp knows.
ARCHES = tuple(sorted({
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K",
    "SCMP_ARCH_SH", "SCMP_ARCH_SHEB", *LIBSECCOMP_ARCHES}))
FLAGS = ("SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
         "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")
# Docker names architectures in includes/excludes as Go does (runtime.GOARCH, 386 as x86).
DOCKER_ARCHES = ("amd64", "x86", "x32", "arm", "arm64", "loong64", "mips", "mipsle", "mips64",
                 "mips64le", "mips64n32", "mips64len32", "ppc", "ppc64", "ppc64le", "riscv64",
                 "s390", "s390x", "parisc", "parisc64")
# Capability names by bit number, from linux/capability.h (UAPI: numbers never change).
# Python's standard library has no capability table, hence this copy.
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
# errno values travel in SECCOMP_RET_DATA; the kernel caps them at MAX_ERRNO.
_MAX_ERRNO = 4095
_U64 = (1 << 64) - 1
_KERNEL_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?$")
# Keys bpfguard writes itself or that are free-form by convention.
_META_KEYS = ("bpfguard", "comment")


class ProfileError(ConfigError):
    """A profile that cannot be used: every problem, each with its JSON path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + ("\n  ".join([""] + problems) if len(problems) > 1
                                           else problems[0]))


@dataclass(frozen=True)
class ArgCondition:
    """One argument comparison. For MASKED_EQ, ``value`` is the mask and
    ``value_two`` what the masked argument must equal (runc's convention)."""

    index: int
    value: int
    op: str
    value_two: int = 0

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"index": self.index, "value": self.value}
        if self.value_two:
            d["valueTwo"] = self.value_two
        d["op"] = self.op
        return d

    def describe(self) -> str:
        sym = {"SCMP_CMP_NE": "!=", "SCMP_CMP_LT": "<", "SCMP_CMP_LE": "<=", "SCMP_CMP_EQ": "==",
               "SCMP_CMP_GE": ">=", "SCMP_CMP_GT": ">"}
        if self.op == "SCMP_CMP_MASKED_EQ":
            return f"arg{self.index} & {self.value:#x} == {self.value_two:#x}"
        return f"arg{self.index} {sym[self.op]} {self.value:#x}"


@dataclass(frozen=True)
class Condition:
    """Docker's includes/excludes: capabilities, architectures, minimum kernel."""

    caps: tuple[str, ...] = ()
    arches: tuple[str, ...] = ()
    min_kernel: str | None = None

    def __bool__(self) -> bool:
        return bool(self.caps or self.arches or self.min_kernel)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.caps:
            d["caps"] = list(self.caps)
        if self.arches:
            d["arches"] = list(self.arches)
        if self.min_kernel:
            d["minKernel"] = self.min_kernel
        return d


@dataclass(frozen=True)
class SyscallRule:
    """Names that share one action and, optionally, argument conditions (ANDed)."""

    names: tuple[str, ...]
    action: str
    errno_ret: int | None = None
    args: tuple[ArgCondition, ...] = ()
    comment: str = ""
    includes: Condition = field(default_factory=Condition)
    excludes: Condition = field(default_factory=Condition)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"names": list(self.names), "action": self.action}
        if self.errno_ret is not None:
            d["errnoRet"] = self.errno_ret
        if self.args:
            d["args"] = [a.to_json() for a in self.args]
        if self.comment:
            d["comment"] = self.comment
        if self.includes:
            d["includes"] = self.includes.to_json()
        if self.excludes:
            d["excludes"] = self.excludes.to_json()
        return d

    def describe(self) -> str:
        act = self.action + (f"({self.errno_ret})" if self.errno_ret is not None else "")
        parts = [act]
        if self.args:
            parts.append("if " + " and ".join(a.describe() for a in self.args))
        for label, cond in (("includes", self.includes), ("excludes", self.excludes)):
            if cond:
                parts.append(f"{label} {json.dumps(cond.to_json(), sort_keys=True)}")
        return " ".join(parts)


@dataclass
class Profile:
    """A seccomp profile in either format.

    ``arch_map`` non-empty means Docker's format; otherwise ``architectures``
    (OCI). ``metadata`` is bpfguard's own block (what was recorded, and when).
    """

    default_action: str
    default_errno_ret: int | None = None
    architectures: tuple[str, ...] = ()
    arch_map: tuple[tuple[str, tuple[str, ...]], ...] = ()
    syscalls: tuple[SyscallRule, ...] = ()
    flags: tuple[str, ...] = ()
    listener_path: str | None = None
    listener_metadata: str | None = None
    metadata: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list, compare=False)

    @property
    def format(self) -> str:
        """ "docker" when it uses Docker's additions (archMap, includes/excludes)."""
        return "docker" if self.arch_map or self.has_conditions() else "oci"

    def has_conditions(self) -> bool:
        return any(r.includes or r.excludes for r in self.syscalls)

    def named(self) -> set[str]:
        """Every syscall name some rule mentions, under any action."""
        return {n for r in self.syscalls for n in r.names}

    def to_json(self, fmt: str | None = None) -> dict[str, Any]:
        """The profile as JSON data in `fmt` ("oci" or "docker"; default: its own)."""
        fmt = fmt or self.format
        if fmt == "oci" and self.has_conditions():
            # runc ignores keys it does not know: a capability-gated rule would allow for all
            raise ConfigError("OCI profiles have no includes/excludes: resolve them for the "
                              "target machine first (seccomp.enforce.resolve_for)")
        d: dict[str, Any] = {}
        if self.metadata is not None:
            d["bpfguard"] = self.metadata
        d["defaultAction"] = self.default_action
        if self.default_errno_ret is not None:
            d["defaultErrnoRet"] = self.default_errno_ret
        if fmt == "docker":
            arch_map = self.arch_map or _arch_map_from(self.architectures)
            # null, not [], for none: as Docker writes it
            d["archMap"] = [{"architecture": a, "subArchitectures": list(subs) or None}
                            for a, subs in arch_map]
        else:
            d["architectures"] = list(self.architectures or _arches_from(self.arch_map))
        if self.flags:
            d["flags"] = list(self.flags)
        if self.listener_path is not None:
            d["listenerPath"] = self.listener_path
        if self.listener_metadata is not None:
            d["listenerMetadata"] = self.listener_metadata
        d["syscalls"] = [r.to_json() for r in self.syscalls]
        return d

    def dumps(self, fmt: str | None = None) -> str:
        """Deterministic JSON text (two-space indent, trailing newline)."""
        return json.dumps(self.to_json(fmt), indent=2) + "\n"


def _arches_from(arch_map: Iterable[tuple[str, tuple[str, ...]]]) -> tuple[str, ...]:
    out: list[str] = []
    for arch, subs in arch_map:
        for a in (arch, *subs):
            if a not in out:
                out.append(a)
    return tuple(out)


def _arch_map_from(arches: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Groups a flat architecture list into archMap entries by machine family."""
    out: list[tuple[str, tuple[str, ...]]] = []
    grouped: set[str] = set()
    for a in arches:
        if a in ARCH_FAMILIES:
            subs = tuple(s for s in ARCH_FAMILIES[a] if s in arches)
            out.append((a, subs))
            grouped.update((a, *subs))
    out += [(a, ()) for a in arches if a not in grouped]
    return tuple(out)


# Every syscall name of every Linux architecture, from the system-calls tables
# (newer than the system's libseccomp, which may lack recent syscalls).
_LINUX_SYSCALLS = frozenset(system_calls.syscalls().names())


def _resolvable(token: int, name: str) -> bool:
    try:
        return int(pyseccomp.resolve_syscall(token, name)) >= 0
    except ValueError:
        return False


@functools.lru_cache(maxsize=4096)
def seccomp_knows(name: str) -> bool:
    """Whether this machine's libseccomp can name `name` on some architecture."""
    return any(_resolvable(t, name) for t in LIBSECCOMP_ARCHES.values())


def known_syscall(name: str) -> bool:
    """Whether `name` is a Linux syscall on some architecture."""
    return name in _LINUX_SYSCALLS or seccomp_knows(name)


# -- how runc, crun and libseccomp apply rules --------------------------------------

Verdict = tuple[str, int | None]
# libseccomp conditions of one rule: (index, op, value, valueTwo)
Chain = tuple[tuple[int, str, int, int], ...]


def effective_action(action: str, errno_ret: int | None) -> Verdict:
    """An action as the kernel gets it from runc: ERRNO and TRACE without a value
    answer EPERM, and KILL is KILL_THREAD (runc seccomp_linux.go, getAction)."""
    if action in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        return action, errno.EPERM if errno_ret is None else errno_ret
    return ("SCMP_ACT_KILL_THREAD" if action == "SCMP_ACT_KILL" else action), None


def runc_arg_groups(args: tuple[ArgCondition, ...]) -> list[tuple[ArgCondition, ...]]:
    """The libseccomp rules runc and crun make of one rule's conditions: one rule
    with all of them (ANDed) or, as soon as an argument has two, one rule per
    condition (ORed), conditions on other arguments included: libseccomp cannot
    AND two comparisons of one argument (runc seccomp_linux.go matchCall,
    "revert to old behavior"; crun seccomp.c, multiple_args)."""
    if len({a.index for a in args}) < len(args):
        return [(a,) for a in args]
    return [args]


def _chain(conds: Chain) -> Chain:
    # libseccomp orders a rule's comparisons by argument and ignores valueTwo
    # but for MASKED_EQ (db.c, _db_rule_gen_64)
    return tuple(sorted((i, op, v, v2 if op == "SCMP_CMP_MASKED_EQ" else 0)
                        for i, op, v, v2 in conds))


def libseccomp_adds(rules: Sequence[tuple[Verdict, Chain]]) -> list[tuple[str, int | None]]:
    """What libseccomp makes of `rules` added for one syscall, in this order, as
    runc and crun add them (seccomp_rule_add; src/db.c, db_rule_add and
    _db_tree_add). For each rule: ("kept", None); ("dropped", k), silently left
    out or removed because of rule k; ("refused", k), adding it fails with
    EEXIST because of rule k, and runc and crun then fail to start the
    container; ("not added", k), after rule k was refused.

    - A rule without conditions takes the whole syscall, whatever the actions:
      later rules are dropped, earlier argument rules removed.
    - Argument rules stand side by side, but a rule whose conditions extend
      (or equal) an earlier rule's is dropped, as the earlier one decides; and
      one with another action whose conditions equal, or are extended by, an
      earlier rule's is refused.
    """
    fates: list[tuple[str, int | None]] = [("kept", None)] * len(rules)
    whole: int | None = None
    kept: list[int] = []
    for k, (verdict, conds) in enumerate(rules):
        chain = _chain(conds)
        if whole is not None:
            fates[k] = ("dropped", whole)
            continue
        if not chain:
            for c in kept:
                fates[c] = ("dropped", k)
            kept, whole = [], k
            continue
        for c in kept:
            other = _chain(rules[c][1])
            # an earlier rule whose conditions start this one's decides its calls
            # (_db_tree_add: "existing tree is shorter"); with the same action,
            # one whose conditions are all among this one's (_db_tree_prune)
            if chain[:len(other)] == other or (rules[c][0] == verdict
                                                and set(other) <= set(chain)):
                differs = other == chain and rules[c][0] != verdict
                fates[k] = ("refused", c) if differs else ("dropped", c)
                break
        else:
            # earlier rules whose conditions this one's start: replaced if all
            # have its action, else refused (_db_tree_act_check). Other ways a
            # later rule covers earlier ones of its action depend on the shape
            # of libseccomp's tree and are not modelled: the fates are exact
            # for the rules of two profile rules, as runc makes them
            under = [c for c in kept if _chain(rules[c][1])[:len(chain)] == chain]
            other_action = [c for c in under if rules[c][0] != verdict]
            if other_action:
                fates[k] = ("refused", other_action[0])
            for c in under if not other_action else ():
                fates[c] = ("dropped", k)
                kept.remove(c)
        if fates[k][0] == "refused":
            fates[k + 1:] = [("not added", k)] * (len(rules) - k - 1)
            return fates
        if fates[k][0] == "kept":
            kept.append(k)
    return fates


# -- parsing -----------------------------------------------------------------------


class _Checker:
    """Collects problems while converting JSON data into the model."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def bad(self, path: str, msg: str) -> None:
        self.problems.append(f"{path}: {msg}")

    def typed(self, path: str, value: Any, kind: type | tuple[type, ...], what: str) -> bool:
        if isinstance(value, bool) or not isinstance(value, kind):
            self.bad(path, f"expected {what}, got {_kind(value)}")
            return False
        return True

    def choice(self, path: str, value: Any, allowed: tuple[str, ...], what: str) -> str | None:
        if not self.typed(path, value, str, "a string"):
            return None
        if value not in allowed:
            hint = _closest(value, allowed)
            self.bad(path, f"unknown {what} {value!r}" +
                     (f" (did you mean {hint!r}?)" if hint else f" (one of {', '.join(allowed)})"))
            return None
        return str(value)

    def integer(self, path: str, value: Any, lo: int, hi: int) -> int | None:
        if not self.typed(path, value, int, "an integer"):
            return None
        if not lo <= value <= hi:
            self.bad(path, f"{value} is out of range {lo}..{hi}")
            return None
        return int(value)

    def str_list(self, path: str, value: Any, allowed: tuple[str, ...] | None,
                 what: str) -> tuple[str, ...]:
        if not self.typed(path, value, list, "a list"):
            return ()
        out = []
        for i, v in enumerate(value):
            p = f"{path}[{i}]"
            if allowed is None:
                if self.typed(p, v, str, "a string"):
                    out.append(v)
            elif (c := self.choice(p, v, allowed, what)) is not None:
                out.append(c)
        return tuple(out)

    def unknown_keys(self, path: str, obj: dict[str, Any], known: tuple[str, ...]) -> None:
        """An unknown key is an error: runc and crun ignore one, so a typo
        (``syscals``, ``arg``) would silently drop the rules or the conditions
        it was meant to hold, and the profile would allow what it meant to deny."""
        for k in obj:
            if k not in known:
                hint = _closest(k, known)
                self.bad(f"{path}.{k}", "unknown key (runc would ignore it)" +
                         (f"; did you mean {hint!r}?" if hint else ""))


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _closest(word: str, choices: Iterable[str]) -> str | None:
    m = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return m[0] if m else None


def _condition(c: _Checker, path: str, value: Any) -> Condition:
    if value is None:
        return Condition()
    if not c.typed(path, value, dict, "an object"):
        return Condition()
    c.unknown_keys(path, value, ("caps", "arches", "minKernel"))
    caps = c.str_list(f"{path}.caps", value.get("caps", []), CAPABILITIES, "capability")
    arches = c.str_list(f"{path}.arches", value.get("arches", []), DOCKER_ARCHES,
                        "architecture")
    mk = value.get("minKernel")
    if mk is not None and c.typed(f"{path}.minKernel", mk, str, "a string like \"4.8\"") \
            and not _KERNEL_VERSION.match(mk):
        c.bad(f"{path}.minKernel", f"{mk!r} is not a kernel version like \"4.8\"")
        mk = None
    return Condition(caps, arches, mk)


def _arg(c: _Checker, path: str, value: Any) -> ArgCondition | None:
    if not c.typed(path, value, dict, "an object"):
        return None
    c.unknown_keys(path, value, ("index", "value", "valueTwo", "op"))
    for k in ("index", "value", "op"):
        if k not in value:
            c.bad(path, f"missing {k!r}")
    idx = c.integer(f"{path}.index", value.get("index"), 0, 5) if "index" in value else None
    val = c.integer(f"{path}.value", value.get("value"), 0, _U64) if "value" in value else None
    two = c.integer(f"{path}.valueTwo", value.get("valueTwo", 0), 0, _U64)
    op = c.choice(f"{path}.op", value.get("op"), OPS, "operator") if "op" in value else None
    if idx is None or val is None or two is None or op is None:
        return None
    return ArgCondition(idx, val, op, two)


def _rule(c: _Checker, path: str, value: Any) -> SyscallRule | None:
    if not c.typed(path, value, dict, "an object"):
        return None
    c.unknown_keys(path, value, ("names", "name", "action", "errnoRet", "args", "comment",
                                 "includes", "excludes"))
    names: tuple[str, ...] = ()
    if "names" in value:
        names = c.str_list(f"{path}.names", value["names"], None, "syscall")
        if isinstance(value["names"], list) and not value["names"]:
            c.bad(f"{path}.names", "empty: a rule needs at least one syscall name")
    elif "name" in value:  # Docker's older single-name form
        if c.typed(f"{path}.name", value["name"], str, "a string"):
            names = (value["name"],)
    else:
        c.bad(path, "missing 'names'")
    key = "names" if "names" in value else "name"
    for i, n in enumerate(names):
        if not known_syscall(n):
            c.bad(f"{path}.{key}[{i}]" if key == "names" else f"{path}.name",
                  f"unknown syscall {n!r}: no Linux architecture has it")
    action = None
    if "action" not in value:
        c.bad(path, "missing 'action'")
    else:
        action = c.choice(f"{path}.action", value["action"], ACTIONS, "action")
    errno_ret = None
    if "errnoRet" in value:
        errno_ret = c.integer(f"{path}.errnoRet", value["errnoRet"], 0, _MAX_ERRNO)
        if action is not None and action not in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
            c.bad(f"{path}.errnoRet", f"only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take errnoRet, "
                                      f"not {action}")
    args: list[ArgCondition] = []
    if value.get("args") is not None and c.typed(f"{path}.args", value["args"], list, "a list"):
        for i, a in enumerate(value["args"]):
            if (ac := _arg(c, f"{path}.args[{i}]", a)) is not None:
                args.append(ac)
    comment = value.get("comment", "")
    if not isinstance(comment, str):
        c.bad(f"{path}.comment", f"expected a string, got {_kind(comment)}")
        comment = ""
    includes = _condition(c, f"{path}.includes", value.get("includes"))
    excludes = _condition(c, f"{path}.excludes", value.get("excludes"))
    if action is None or not names:
        return None
    return SyscallRule(names, action, errno_ret, tuple(args), comment, includes, excludes)


# -- traps: valid rules that do something else than they seem to ---------------------


def _label(v: Verdict) -> str:
    return v[0] + (f"({v[1]})" if v[1] is not None else "")


def _does(v: Verdict, names: str) -> str:
    """What action `v` does to the syscalls `names`, as a verb phrase."""
    return {"SCMP_ACT_ALLOW": f"ALLOWs {names}", "SCMP_ACT_LOG": f"LOGs {names}",
            "SCMP_ACT_ERRNO": f"denies {names} with errno {v[1]}",
            "SCMP_ACT_TRACE": f"TRACEs {names}", "SCMP_ACT_TRAP": f"TRAPs {names}",
            "SCMP_ACT_KILL_THREAD": f"kills the thread calling {names}",
            "SCMP_ACT_KILL_PROCESS": f"kills the process calling {names}",
            "SCMP_ACT_NOTIFY": f"hands {names} to the seccomp agent"}[v[0]]


_COUNTS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def _same_argument_warnings(default: Verdict, rules: Sequence[SyscallRule]) -> list[str]:
    """A rule with two conditions on one argument: runc and crun OR all its conditions."""
    out = []
    for i, r in enumerate(rules):
        verdict = effective_action(r.action, r.errno_ret)
        # a rule with the default action is left out whole (runc matchCall)
        if len(runc_arg_groups(r.args)) < 2 or verdict == default:
            continue
        by_arg: dict[int, list[ArgCondition]] = {}
        for a in r.args:
            by_arg.setdefault(a.index, []).append(a)
        shared = [f"{_COUNTS.get(len(cs), str(len(cs)))} conditions on argument {ix} "
                  f"({', '.join(c.describe() for c in cs)})"
                  for ix, cs in by_arg.items() if len(cs) > 1]
        alone = [str(ix) for ix, cs in by_arg.items() if len(cs) == 1]
        also = (f" (the condition{'s' if len(alone) > 1 else ''} on argument"
                f"{'s' if len(alone) > 1 else ''} {', '.join(alone)} too)" if alone else "")
        names = ", ".join(r.names)
        # crun copies at most six conditions of a rule (seccomp.c: k < 6)
        six = "; crun adds only the first six" if len(r.args) > 6 else ""
        out.append(f"$.syscalls[{i}]: {names}: {' and '.join(shared)}: runc and crun apply "
                   f"each condition as a rule of its own{also}, so this {_does(verdict, names)} "
                   f"when ANY holds, not when all do{six}")
    return out


def _interval(c: ArgCondition) -> tuple[int, int] | None:
    """The argument values `c` accepts, for the operators that make an interval."""
    return {"SCMP_CMP_EQ": (c.value, c.value), "SCMP_CMP_LT": (0, c.value - 1),
            "SCMP_CMP_LE": (0, c.value), "SCMP_CMP_GT": (c.value + 1, _U64),
            "SCMP_CMP_GE": (c.value, _U64)}.get(c.op)


def _accepts(c: ArgCondition, x: int) -> bool:
    span = _interval(c)
    if span is not None:
        return span[0] <= x <= span[1]
    return x & c.value == c.value_two if c.op == "SCMP_CMP_MASKED_EQ" else x != c.value


def _exclusive(a: ArgCondition, b: ArgCondition) -> bool:
    """Whether no value of one argument meets both conditions (where that is
    easy to prove; otherwise they are taken to overlap)."""
    sa, sb = _interval(a), _interval(b)
    if sa is not None and sb is not None:
        return max(sa[0], sb[0]) > min(sa[1], sb[1])
    for span, other in ((sa, b), (sb, a)):
        if span is not None and span[0] == span[1]:
            return not _accepts(other, span[0])
    if a.op == b.op == "SCMP_CMP_MASKED_EQ":
        both = a.value & b.value
        return a.value_two & both != b.value_two & both
    return False


def _may_overlap(x: tuple[ArgCondition, ...], y: tuple[ArgCondition, ...]) -> bool:
    """Whether one call can meet both sets of (ANDed) conditions."""
    return not any(a.index == b.index and _exclusive(a, b) for a in x for b in y)


def _arches(r: SyscallRule) -> set[str]:
    return (set(r.includes.arches) or set(DOCKER_ARCHES)) - set(r.excludes.arches)


def _kernel(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _together(a: SyscallRule, b: SyscallRule) -> bool:
    """Whether Docker's includes/excludes let both rules apply at once, on one
    machine to one container (moby profiles/seccomp, setupSeccomp): a rule that
    needs a capability and one that excludes it never do."""
    if not _arches(a) & _arches(b):
        return False
    if {*a.includes.caps, *b.includes.caps} & {*a.excludes.caps, *b.excludes.caps}:
        return False
    low = [_kernel(k) for k in (a.includes.min_kernel, b.includes.min_kernel) if k]
    high = [_kernel(k) for k in (a.excludes.min_kernel, b.excludes.min_kernel) if k]
    return not (low and high and max(low) >= min(high))


def _chain_of(group: tuple[ArgCondition, ...]) -> Chain:
    return tuple((a.index, a.op, a.value, a.value_two) for a in group)


def _conflict(default: Verdict, rules: Sequence[SyscallRule], named: list[int], i: int,
              j: int) -> str | None:
    """What the kernel does with one syscall that rules i < j both name, with
    different actions; None when that is no trap (the rules never apply to the
    same call, or the outcome is what they say)."""
    a, b = rules[i], rules[j]
    va, vb = effective_action(a.action, a.errno_ret), effective_action(b.action, b.errno_ret)
    if va == vb or not _together(a, b) or not any(
            _may_overlap(x, y) for x in runc_arg_groups(a.args) for y in runc_arg_groups(b.args)):
        return None
    # what libseccomp gets for the syscall where both rules apply: runc and crun
    # add the rules in order, each of runc_arg_groups, leaving out those with the
    # default action (runc matchCall; crun seccomp.c, action == default_action)
    entries = [(k, g) for k in named
               if (k in (i, j) or _together(rules[k], a) and _together(rules[k], b))
               and effective_action(rules[k].action, rules[k].errno_ret) != default
               for g in runc_arg_groups(rules[k].args)]
    fates = libseccomp_adds([(effective_action(rules[k].action, rules[k].errno_ret),
                              _chain_of(g)) for k, g in entries])

    # each libseccomp rule of a profile rule: its conditions, its fate and the
    # (profile rule, conditions) that caused it
    def of(rule: int) -> list[tuple[tuple[ArgCondition, ...], str,
                                    tuple[int, tuple[ArgCondition, ...]] | None]]:
        return [(g, kind, None if by is None else entries[by])
                for (k, g), (kind, by) in zip(entries, fates, strict=True) if k == rule]

    skipped = "runc and crun leave out $.syscalls[{}] (its action is the default action)"
    if default in (va, vb):
        d, keep, vk = (i, j, vb) if va == default else (j, i, va)
        if all(kind != "kept" for _, kind, _ in of(keep)):
            return None  # a third rule decides; that pair has its warning
        if not rules[keep].args:
            return f"{skipped.format(d)}, so every call gets {_label(vk)}"
        if not rules[d].args:
            return None  # argument rules as exceptions to the default: as they read
        return f"{skipped.format(d)}, so calls matching both get {_label(vk)}"
    for g, kind, by in of(j):
        if by is None or by[0] != i:
            continue
        cause = by[1]
        if kind == "refused":
            return (f"runc and crun fail to start the container: libseccomp refuses this rule "
                    f"(EEXIST, \"file exists\"): $.syscalls[{i}] has one with another action "
                    + ("for the same conditions" if _chain(_chain_of(cause)) ==
                       _chain(_chain_of(g)) else "whose conditions include all of this one's"))
        if kind == "dropped" and not cause:
            return ((f"the first rule wins: libseccomp keeps the unconditional rule of "
                     f"$.syscalls[{i}] and silently ignores this one" if not g else
                     f"the unconditional rule wins, whatever the order: libseccomp keeps "
                     f"$.syscalls[{i}] and silently ignores this one's argument rules")
                    + f", so every call gets {_label(va)}")
        if kind == "dropped":
            return (f"libseccomp silently ignores this rule: the conditions of $.syscalls[{i}] "
                    f"({' and '.join(c.describe() for c in cause)}) are part of its own and "
                    f"decide, so calls matching it get {_label(va)}")
    if any(kind == "dropped" and by is not None and by[0] == j for _, kind, by in of(i)):
        return (f"the unconditional rule wins, whatever the order: libseccomp drops the "
                f"argument rules of $.syscalls[{i}], so every call gets {_label(vb)}")
    if any(ka == kb == "kept" and _may_overlap(ga, gb)
           for ga, ka, _ in of(i) for gb, kb, _ in of(j)):
        return ("when a call matches both, libseccomp's order of the comparisons (by argument, "
                "operator and value), not the order of the rules, decides which action it gets")
    return None


def _conflict_warnings(default: Verdict, rules: Sequence[SyscallRule]) -> list[str]:
    """One syscall in several rules with different actions, where they can meet."""
    # a rule that repeats an earlier one for a syscall (the same action,
    # conditions and scope) meets the others as that one does: only the
    # first of each kind is paired, so 80k repeats are not 3.2 billion pairs
    kinds: dict[int, tuple[object, ...]] = {
        i: (effective_action(r.action, r.errno_ret),
            tuple(_chain_of(g) for g in runc_arg_groups(r.args)),
            repr(r.includes), repr(r.excludes))
        for i, r in enumerate(rules)}
    named: dict[str, dict[tuple[object, ...], int]] = {}
    for i, r in enumerate(rules):
        for n in dict.fromkeys(r.names):
            named.setdefault(n, {}).setdefault(kinds[i], i)
    found: dict[tuple[int, int, str], list[str]] = {}
    for name, first in named.items():
        idx = sorted(first.values())
        if len({kinds[i][0] for i in idx}) < 2:
            continue  # one action for the syscall: nothing to meet
        for i, j in itertools.combinations(idx, 2):
            if (outcome := _conflict(default, rules, idx, i, j)) is not None:
                found.setdefault((j, i, outcome), []).append(name)
    out = []
    for (j, i, outcome), names in sorted(found.items()):
        va = effective_action(rules[i].action, rules[i].errno_ret)
        vb = effective_action(rules[j].action, rules[j].errno_ret)
        out.append(f"$.syscalls[{j}]: {', '.join(names)}: also in $.syscalls[{i}], with "
                   f"{_label(va)} there and {_label(vb)} here: {outcome}")
    return out


# -- keys given twice ---------------------------------------------------------------


class _JsonObject(dict[str, Any]):
    """A JSON object as load_profile reads it. A key given more than once holds
    what Go's encoding/json makes of all its values (_go_over), and
    ``duplicates`` keeps them: key -> [(line, value), ...]."""

    duplicates: dict[str, list[tuple[int, Any]]]


class _Decoder(json.JSONDecoder):
    """json.loads that keeps track of keys given twice (Python's own keeps the last
    silently). Python's scanner, not the C one: only it lets an object's parser
    see where each value starts (its parse_object, JSONObject)."""

    def __init__(self) -> None:
        super().__init__()
        self.parse_object = self._object
        self.scan_once = _py_make_scanner(self)

    @staticmethod
    def _object(s_and_end: tuple[str, int], strict: bool, scan_once: Any, object_hook: Any,
                object_pairs_hook: Any, memo: Any) -> tuple[_JsonObject, int]:
        starts: list[int] = []

        def scan(s: str, idx: int) -> Any:
            starts.append(idx)
            return scan_once(s, idx)

        pairs, end = _JSONObject(s_and_end, strict, scan, None, list, memo)
        given: dict[str, list[tuple[int, Any]]] = {}
        for (key, value), start in zip(pairs, starts, strict=True):
            given.setdefault(key, []).append((start, value))
        obj = _JsonObject({k: functools.reduce(_go_over, [v for _, v in vs])
                           for k, vs in given.items()})
        text = s_and_end[0]
        obj.duplicates = {k: [(text.count("\n", 0, at) + 1, v) for at, v in vs]
                          for k, vs in given.items() if len(vs) > 1}
        return obj, end


def _go_over(old: Any, new: Any) -> Any:
    """What Go's encoding/json leaves when it decodes `new` over `old`, as for a
    key given twice: objects merge key by key (a struct is not cleared first)
    and arrays reuse their elements; anything else is replaced. runc, podman
    and containerd read profiles with it (see golang/go#21092)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **{k: _go_over(old[k], v) if k in old else v for k, v in new.items()}}
    if isinstance(old, list) and isinstance(new, list):
        return [_go_over(o, n) for o, n in zip(old, new, strict=False)] + new[len(old):]
    return new


def _inherited(old: Any, new: Any, path: str) -> list[str]:
    """Where `new` decoded over `old` (_go_over) keeps something of `old`."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [f"{path}.{k}" for k in old if k not in new] + [
            p for k in new if k in old for p in _inherited(old[k], new[k], f"{path}.{k}")]
    if isinstance(old, list) and isinstance(new, list):
        return [p for i, (o, n) in enumerate(zip(old, new, strict=False))
                for p in _inherited(o, n, f"{path}[{i}]")]
    return []


def _duplicate_key(path: str, given: list[tuple[int, Any]]) -> str:
    lines = list(dict.fromkeys(str(line) for line, _ in given))
    at = f"lines {', '.join(lines[:-1])} and {lines[-1]}" if len(lines) > 1 else f"line {lines[0]}"
    where = f"given {'twice' if len(given) == 2 else f'{len(given)} times'} ({at})"
    values = [v for _, v in given]
    # crun reads config.json with libocispec, whose yajl_tree_get takes the first
    crun = "crun, reading it in a config.json, uses the first instead"
    kept = _inherited(functools.reduce(_go_over, values[:-1]), values[-1], path)
    if kept:
        return (f"{path}: {where}: runc, podman and containerd (Go's encoding/json) decode the "
                f"last over the first, so what the last lacks keeps the first's value "
                f"({', '.join(kept)}); bpfguard reads it as they do; {crun}")
    shown = [json.dumps(v) for v in values[:-1]]
    shown = [s if len(s) <= 40 else s[:37] + "..." for s in shown]
    ignored = (f"the first ({shown[0]}) is ignored" if len(shown) == 1 else
               f"the earlier ones ({', '.join(shown)}) are ignored")
    return (f"{path}: {where}: the last one is used: {ignored}, by runc, podman and containerd "
            f"(Go's encoding/json) as by bpfguard; {crun}")


def _duplicate_key_warnings(data: Any, path: str = "$") -> list[str]:
    """Keys given twice, where they matter to a runtime (not in comments, nor in
    bpfguard's own block), and whose values differ."""
    out: list[str] = []
    if isinstance(data, dict):
        for key, given in getattr(data, "duplicates", {}).items():
            if key not in _META_KEYS and any(v != given[0][1] for _, v in given):
                out.append(_duplicate_key(f"{path}.{key}", given))
        for key, value in data.items():
            if key not in _META_KEYS:
                out += _duplicate_key_warnings(value, f"{path}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += _duplicate_key_warnings(value, f"{path}[{i}]")
    return out


def parse_profile(data: Any, source: str = "<profile>") -> Profile:
    """Builds a Profile from JSON data; raises ProfileError listing every problem.
    Its warnings name rules that do something else than they seem to, and (for
    data from load_profile, which keeps track of them) keys given twice."""
    c = _Checker()
    if not isinstance(data, dict):
        raise ProfileError(source, [f"$: expected an object, got {_kind(data)}"])
    c.unknown_keys("$", data, ("defaultAction", "defaultErrnoRet", "architectures", "archMap",
                               "flags", "listenerPath", "listenerMetadata", "syscalls",
                               *_META_KEYS))
    default = None
    if "defaultAction" not in data:
        c.bad("$", "missing 'defaultAction'")
    else:
        default = c.choice("$.defaultAction", data["defaultAction"], ACTIONS, "action")
    default_errno = None
    if "defaultErrnoRet" in data:
        default_errno = c.integer("$.defaultErrnoRet", data["defaultErrnoRet"], 0, _MAX_ERRNO)
    arches: tuple[str, ...] = ()
    arch_map: list[tuple[str, tuple[str, ...]]] = []
    if "architectures" in data and "archMap" in data:
        c.bad("$", "both 'architectures' and 'archMap' are given: use one of them "
                   "(architectures is OCI's form, archMap Docker's)")
    elif "architectures" in data:
        arches = c.str_list("$.architectures", data["architectures"], ARCHES, "architecture")
    elif "archMap" in data and c.typed("$.archMap", data["archMap"], list, "a list"):
        seen: dict[str, str] = {}
        for i, entry in enumerate(data["archMap"]):
            p = f"$.archMap[{i}]"
            if not c.typed(p, entry, dict, "an object"):
                continue
            c.unknown_keys(p, entry, ("architecture", "subArchitectures"))
            if "architecture" not in entry:
                c.bad(p, "missing 'architecture'")
                continue
            arch = c.choice(f"{p}.architecture", entry["architecture"], ARCHES, "architecture")
            subs = c.str_list(f"{p}.subArchitectures", entry.get("subArchitectures") or [],
                              ARCHES, "architecture")
            if arch is None:
                continue
            # the entry whose architecture is the machine's own applies: it must be unique
            # (sub-architectures may recur: Docker's own profile maps MIPS ones twice)
            if arch in seen:
                c.bad(f"{p}.architecture", f"{arch} is already an archMap entry at {seen[arch]}")
            seen[arch] = p
            arch_map.append((arch, subs))
    flags = c.str_list("$.flags", data.get("flags", []), FLAGS, "flag")
    listener = {}
    for k in ("listenerPath", "listenerMetadata"):
        if k in data and c.typed(f"$.{k}", data[k], str, "a string"):
            listener[k] = data[k]
    rules: list[SyscallRule] = []
    if data.get("syscalls") is not None and c.typed("$.syscalls", data["syscalls"], list,
                                                      "a list"):
        for i, r in enumerate(data["syscalls"]):
            if (rule := _rule(c, f"$.syscalls[{i}]", r)) is not None:
                rules.append(rule)
    meta = data.get("bpfguard")
    if c.problems or default is None:
        # a key given twice may be what made a value wrong: say so with the problems
        raise ProfileError(source, c.problems + _duplicate_key_warnings(data))
    default_verdict = effective_action(default, default_errno)
    c.warnings += (_duplicate_key_warnings(data) + _same_argument_warnings(default_verdict, rules)
                   + _conflict_warnings(default_verdict, rules))
    return Profile(default, default_errno, arches, tuple(arch_map), tuple(rules), flags,
                   listener.get("listenerPath"), listener.get("listenerMetadata"),
                   meta if isinstance(meta, dict) else None, c.warnings)


def load_profile(path: str | Path) -> Profile:
    """Reads and validates a profile file (either format)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_PROFILE_BYTES:
                raise ProfileError(str(p), [f"{size:,} bytes: larger than the "
                                            f"{MAX_PROFILE_BYTES:,} a profile may have"])
            raw = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{p}: {exc.strerror}") from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise ProfileError(str(p), [f"larger than the {MAX_PROFILE_BYTES:,} bytes a profile "
                                    "may have"])
    return loads_profile(raw, str(p))


def loads_profile(raw: bytes, source: str) -> Profile:
    """Validates a profile's bytes, as read from `source` (a file name for errors)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise ProfileError(source, [f"not UTF-8 text (byte {exc.start}): JSON must be UTF-8"]
                           ) from None
    try:
        data = _Decoder().decode(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{source}:{exc.lineno}:{exc.colno}", [f"invalid JSON: {exc.msg}"]
                           ) from None
    except RecursionError:
        raise ProfileError(source, ["invalid JSON: nested too deeply"]) from None
    return parse_profile(data, source)
