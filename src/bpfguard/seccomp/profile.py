"""Seccomp profiles: the OCI runtime-spec ``linux.seccomp`` object and Docker's format.

One model serves both. Docker's format is the OCI one plus ``archMap`` (instead
of ``architectures``), per-rule ``includes``/``excludes`` conditions and a
``comment`` per rule. Parsing collects every problem with its JSON path
(``$.syscalls[3].args[0].op``) and raises one :class:`ProfileError`;
rendering is deterministic.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
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
    "known_syscall",
    "seccomp_knows",
    "load_profile",
    "parse_profile",
]

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


def parse_profile(data: Any, source: str = "<profile>") -> Profile:
    """Builds a Profile from JSON data; raises ProfileError listing every problem."""
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
        raise ProfileError(source, c.problems)
    return Profile(default, default_errno, arches, tuple(arch_map), tuple(rules), flags,
                   listener.get("listenerPath"), listener.get("listenerMetadata"),
                   meta if isinstance(meta, dict) else None, c.warnings)


def load_profile(path: str | Path) -> Profile:
    """Reads and validates a profile file (either format)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ProfileError(str(p), [f"not UTF-8 text (byte {exc.start}): JSON must be UTF-8"]
                           ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{p}:{exc.lineno}:{exc.colno}", [f"invalid JSON: {exc.msg}"]) from None
    except RecursionError:
        raise ProfileError(str(p), ["invalid JSON: nested too deeply"]) from None
    return parse_profile(data, str(p))
