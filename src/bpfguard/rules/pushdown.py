"""What the kernel can check of the loaded rules, so fewer events reach Python.

For each syscall a rule can match, the condition is abstracted into what an
event *must* have for the condition to possibly hold: a result class
(success/failure), open access modes, O_DIRECTORY (Falco's fd type of an
opened file), task names (comm), effective uids, the socket family of a
dup's new fd or of a connect's fd (Falco's fd.type ipv4/ipv6/unix/netlink),
the values of integer
arguments (a socket's domain, a ptrace request: evt.arg.X by name or
evt.rawarg.X), and for opens the path tests of a
:class:`~bpfguard.sensors.PathFilter`.
The abstraction over-approximates (``and`` intersects, ``or`` unites, ``not``
gives up), so a kernel filter built from it never drops an event some rule
would have matched. Comparisons on fields bpfguard can never extract are
false, so branches built on them fall away. The per-syscall kernel filter
is the union over every rule that can match the syscall; a syscall no rule
can match is not traced at all.

Paths: an open's fd.name is the path of the file the kernel returned,
resolved at exit (symlinks and ``..`` already followed), which the kernel can
test as soundly as user space: ``fd.name`` ``=``/``in``/``startswith``/
``endswith``/``pmatch``, ``fd.directory`` and ``fd.filename`` ``=``/``in``. Of
fd.nameraw, the string the process passed, only "contains ``../``" is pushed
(the stock directory_traversal macro). A rule whose path part is none of
these puts no path test on the syscall. Where the kernel cannot compute a
value as user space will (failed opens, unlinked or cut paths), it keeps the
event.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from ..sensors import PathFilter, SyscallFilter
from ..sensors.sensors import path_key_bytes, ret_values
from ..sensors.syscall_specs import DEFAULT_SYSCALLS, SPECS
from . import ast
from .compiler import ALL_TYPES
from .engine import CompiledRule, Engine
from .event import FALCO_ARGS, NAMED_ARGS
from .extract import ABSENT_FIELDS

__all__ = ["Need", "Plan", "plan_pushdown"]

# Events of the process sensor: never filtered, the process table needs them all.
PROCESS_EVENTS = frozenset({"clone", "procexit"})
_OPENS = frozenset({"open", "openat", "openat2", "creat"})
_READ = frozenset({os.O_RDONLY, os.O_RDWR})
_WRITE = frozenset({os.O_WRONLY, os.O_RDWR})
_ACCMODE_NAMES = {os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}
# Falco's fd.typechar / fd.type of an opened file: is O_DIRECTORY among its flags
# (rules/event.py assigns them the same way)
_OPEN_TYPES = {"f": False, "file": False, "d": True, "directory": True}
_O_DIRECTORY = os.O_DIRECTORY
# the flags are an argument (openat2's in struct open_how, which the kernel reads)
_FLAGS_SYSCALLS = frozenset({"open", "openat", "openat2"})
# syscalls that change what the kernel filter checks at entry before the exit
# event is built: their euid (the set*uid family). (prctl PR_SET_NAME changes
# only the thread's name, never proc.name: the name the process was executed as.)
_CHANGES_EUID = frozenset({"setuid", "setreuid", "setresuid", "setfsuid"})
_EQUAL = frozenset({"=", "==", "in", "intersects"})
# arguments a selector reads (bg_pol_value args[] of the engine's area)
_SELECTOR_ARGS = 5
# The fd an event is about, as rules/event.py picks it: a dup's new fd (the old
# fd's file); the "fd" argument of a call returning no fd (connect, bind, ...).
# As a socket, Falco's fd.type and fd.typechar name its address family.
_DUPS = frozenset({"dup", "dup2", "dup3"})
_FD_ARGS = frozenset(name for name, spec in SPECS.items() if spec.ret == "INT"
                     and "fd" in spec.index and spec.args[spec.index["fd"]].kind == "FD")
_INET, _INET6, _UNIX, _NETLINK = (int(f) for f in (
    socket.AF_INET, socket.AF_INET6, socket.AF_UNIX, socket.AF_NETLINK))
# (no "u": a userfaultfd's fd.typechar is "u" too, and it is no socket)
_SOCKET_TYPES = {"ipv4": _INET, "4": _INET, "ipv6": _INET6, "6": _INET6,
                 "unix": _UNIX, "netlink": _NETLINK, "n": _NETLINK}
_FAMILY_NAMES = {_INET: "ipv4", _INET6: "ipv6", _UNIX: "unix", _NETLINK: "netlink"}
_DOTDOT = "../"


@dataclass(frozen=True)
class Need:
    """What an event must have for a condition to hold. None: no requirement.
    `directory`: whether an open's flags carry O_DIRECTORY (Falco's fd type of
    an opened file: 'd' with it, 'f' without). `families`: the address family
    of the socket the event's fd is (a dup's new one: a failed dup is not held
    to it; a connect's). `args`:
    (argument position, the values it may have) of integer arguments, by
    position. `path`: an open's path tests, one of which must hold."""

    results: frozenset[str] | None = None
    accmodes: frozenset[int] | None = None
    comms: frozenset[str] | None = None
    euids: frozenset[int] | None = None
    directory: frozenset[bool] | None = None
    path: PathFilter | None = None
    rets: frozenset[int] | None = None  # result values, each below ret_values()
    families: frozenset[int] | None = None
    args: tuple[tuple[int, frozenset[int]], ...] = ()

    def meet(self, o: Need) -> Need:
        def m(a: Any, b: Any) -> Any:
            return b if a is None else a if b is None else a & b
        return Need(m(self.results, o.results), m(self.accmodes, o.accmodes),
                    m(self.comms, o.comms), m(self.euids, o.euids),
                    m(self.directory, o.directory), _meet_path(self.path, o.path),
                    m(self.rets, o.rets), m(self.families, o.families),
                    _meet_args(self.args, o.args))

    def join(self, o: Need) -> Need:
        def j(a: Any, b: Any) -> Any:
            return None if a is None or b is None else a | b
        path = None if self.path is None or o.path is None else self.path.join(o.path)
        return Need(j(self.results, o.results), j(self.accmodes, o.accmodes),
                    j(self.comms, o.comms), j(self.euids, o.euids),
                    j(self.directory, o.directory), path, j(self.rets, o.rets),
                    j(self.families, o.families), _join_args(self.args, o.args))

    @property
    def impossible(self) -> bool:
        return any(v is not None and not v for v in (self.results, self.accmodes, self.comms,
                                                     self.euids, self.directory, self.rets,
                                                     self.families)) \
            or any(not values for _, values in self.args) \
            or (self.path is not None and self.path.empty)

    def describe(self) -> list[str]:
        out = []
        if self.results is not None and self.results != _BOTH:
            out.append("result " + "|".join(sorted(self.results)))
        if self.accmodes is not None:
            out.append("access mode " + "|".join(_ACCMODE_NAMES[m] for m in sorted(self.accmodes)))
        if self.directory is not None and len(self.directory) == 1:
            out.append("O_DIRECTORY " + ("set" if True in self.directory else "clear"))
        if self.comms is not None:
            out.append(f"comm in ({', '.join(sorted(self.comms))})")
        if self.euids is not None:
            out.append(f"euid in ({', '.join(map(str, sorted(self.euids)))})")
        if self.rets is not None:
            out.append(f"result in ({', '.join(map(str, sorted(self.rets)))})")
        if self.families is not None:
            out.append("fd a socket of type "
                       + "|".join(sorted(_FAMILY_NAMES[f] for f in self.families)))
        for i, values in self.args:
            out.append(f"argument {i} in ({', '.join(map(str, sorted(values)))})")
        if self.path is not None:
            out.append("path: " + self.path.describe())
        return out


def _meet_args(a: tuple[tuple[int, frozenset[int]], ...],
               b: tuple[tuple[int, frozenset[int]], ...]) -> tuple[tuple[int, frozenset[int]], ...]:
    """Both hold: an argument both constrain may have what both allow."""
    out = dict(a)
    for i, values in b:
        out[i] = out[i] & values if i in out else values
    return tuple(sorted(out.items()))


def _join_args(a: tuple[tuple[int, frozenset[int]], ...],
               b: tuple[tuple[int, frozenset[int]], ...]) -> tuple[tuple[int, frozenset[int]], ...]:
    """One of them holds: only an argument both constrain stays constrained."""
    other = dict(b)
    return tuple((i, values | other[i]) for i, values in a if i in other)


def _meet_path(a: PathFilter | None, b: PathFilter | None) -> PathFilter | None:
    """Both path filters must hold. Exact names are kept where the other filter
    may hold for them; otherwise either side is a sound over-approximation of
    the intersection, and the one on the resolved path is preferred (kernel
    truth, and it decides for any user string)."""
    if a is None:
        return b
    if b is None:
        return a
    for x, y in ((a, b), (b, a)):
        if x.names and x == PathFilter(names=x.names):
            return PathFilter(names=frozenset(n for n in x.names if y.holds_for(n)))
    return b if a.dotdot and not b.dotdot else a


_BOTH = frozenset({"success", "failure"})
TOP = Need()
NEVER = Need(results=frozenset())  # no event can match


def _words(node: ast.Compare) -> list[str] | None:
    r = node.right
    if isinstance(r, ast.Word):
        return [r.text]
    if isinstance(r, ast.ListValue) and all(isinstance(i, ast.Word) for i in r.items):
        return [i.text for i in r.items if isinstance(i, ast.Word)]
    return None


def _lower(words: list[str] | None) -> list[str] | None:
    return [w.lower() for w in words] if words is not None else None


def _int_words(node: ast.Compare) -> list[int] | None:
    words = _words(node)
    return _ints(words) if words is not None else None


def _ints(words: list[str]) -> list[int] | None:
    try:
        return [int(w, 0) for w in words]
    except ValueError:
        return None


def _results_of_ret(op: str, values: list[int]) -> frozenset[str] | None:
    """The result classes `ret op value` allows; None when it cannot say."""
    if op in ("=", "==", "in", "intersects"):
        return frozenset("success" if v >= 0 else "failure" for v in values)
    if len(values) != 1:
        return None
    v = values[0]
    if op in (">=",) and v >= 0 or op == ">" and v >= -1:
        return frozenset({"success"})
    if op in ("<",) and v <= 0 or op == "<=" and v < 0:
        return frozenset({"failure"})
    return None


def _path_tests(name: str, op: str, words: list[str]) -> PathFilter | None:
    """The path tests of an open that hold whenever `name op words` does; None
    when the kernel cannot express them."""
    # user space decodes paths with errors="replace": a U+FFFD in a value may
    # stand for bytes the kernel would compare differently
    if "\ufffd" in "".join(words):
        return None
    ws = frozenset(words)
    if name == "fd.nameraw":
        # the string contains the value (or starts, ends with or equals it):
        # where every value contains "../", so does the string
        if op in _EQUAL | {"contains", "startswith", "endswith"} and \
                all(_DOTDOT in w for w in words):
            return PathFilter(dotdot=True)
        return None
    if name in ("fd.directory", "fd.filename") and op in _EQUAL:
        return PathFilter(dirs=ws) if name == "fd.directory" else PathFilter(files=ws)
    if name != "fd.name":
        return None
    if op in _EQUAL:
        return PathFilter(names=ws)
    key = path_key_bytes()  # what the kernel's prefix/suffix tries compare
    if key is None or "" in ws:
        return None  # "" holds for every path: nothing to test
    if op in ("startswith", "pmatch"):
        if op == "pmatch":  # the path or below it: starts with the path, at least
            ws = frozenset(w.rstrip("/") for w in ws)
            if "" in ws:
                return None
        # a longer prefix is cut to the compared bytes: then it holds for more paths
        return PathFilter(prefixes=frozenset(w.encode()[:key].decode(errors="ignore")
                                             for w in ws))
    if op == "endswith" and all(len(w.encode()) <= key for w in ws):
        return PathFilter(suffixes=ws)
    return None


def _compare(node: ast.Compare, syscall: str) -> Need:
    left = node.left
    if not isinstance(left, ast.FieldRef):
        return TOP
    name, op = left.name, node.op
    if name in ABSENT_FIELDS and op != "exists":
        return NEVER  # never extracted: the comparison is false
    if name in ("fd.name", "fd.directory", "fd.filename", "fd.nameraw"):
        words = _words(node)
        if syscall not in _OPENS or words is None:
            return TOP
        path = _path_tests(name, op, words)
        return TOP if path is None else Need(path=path)
    positive = op in ("=", "==", "in", "intersects")
    if name == "evt.type" and positive:
        words = _words(node)
        return TOP if words is None or syscall in words else NEVER
    if name == "proc.name" and positive \
            and (words := _words(node)) is not None:
        return Need(comms=frozenset(w[:15] for w in words))
    if name == "user.uid" and positive and syscall not in _CHANGES_EUID \
            and (nums := _int_words(node)) is not None:
        return Need(euids=frozenset(nums))
    if name in ("evt.is_open_read", "evt.is_open_write"):
        if not (op in ("=", "==") and _lower(_words(node)) == ["true"]):
            return TOP
        if syscall not in _OPENS:
            return NEVER  # false for anything but an open
        if syscall in _FLAGS_SYSCALLS:
            return Need(accmodes=_READ if name.endswith("read") else _WRITE)
        return TOP
    if name in ("evt.arg", "evt.rawarg") and left.arg is not None:
        return _int_arg(syscall, name, left.arg, op, _words(node))
    if name in ("fd.typechar", "fd.type") and syscall in _DUPS | _FD_ARGS and positive:
        words = _words(node)
        if words is not None and all(w in _SOCKET_TYPES for w in words):
            return Need(families=frozenset(_SOCKET_TYPES[w] for w in words))
        return TOP
    if name in ("fd.typechar", "fd.type") and syscall in _FLAGS_SYSCALLS and positive:
        words = _words(node)
        if words is not None and all(w in _OPEN_TYPES for w in words):
            return Need(directory=frozenset(_OPEN_TYPES[w] for w in words))
        return TOP
    # fd.num is the result only for opens (elsewhere it may be an fd argument)
    if name == "evt.rawres" or (name == "fd.num" and syscall in _OPENS):
        nums = _int_words(node)
        if nums is not None and (res := _results_of_ret(op, nums)) is not None:
            # a few small results (a dup onto 0, 1 or 2) the kernel checks bit by bit
            room = ret_values()
            small = positive and room is not None and all(0 <= v < room for v in nums)
            return Need(results=res, rets=frozenset(nums) if small else None)
        return TOP
    if name == "evt.res" and (words := _words(node)) is not None:
        if op in ("=", "==", "in"):
            return Need(results=frozenset("success" if w == "SUCCESS" else "failure"
                                          for w in words))
        if op == "!=" and words == ["SUCCESS"]:
            return Need(results=frozenset({"failure"}))
        if op == "startswith" and words[0][:1] == "E":
            return Need(results=frozenset({"failure"}))
        return TOP
    if name == "evt.failed" and op in ("=", "==") and (words := _words(node)) is not None:
        if _lower(words) not in (["true"], ["false"]):
            return TOP
        return Need(results=frozenset({"failure" if _lower(words) == ["true"] else "success"}))
    return TOP


def _int_arg(syscall: str, field: str, arg: str, op: str, words: list[str] | None) -> Need:
    """evt.rawarg.X (the number) or evt.arg.X (as Falco renders it: a name from
    NAMED_ARGS, else the number) of an integer argument: the numbers the test
    allows, when it can tell them."""
    spec = SPECS.get(syscall)
    ours = FALCO_ARGS.get(syscall, {}).get(arg, arg)
    if spec is None or words is None or ours not in spec.index:
        return TOP
    i = spec.index[ours]
    if spec.args[i].kind not in ("INT", "U32", "LONG") or i >= _SELECTOR_ARGS:
        return TOP
    names = NAMED_ARGS.get(syscall, {}).get(ours)
    if field == "evt.rawarg" or names is None:
        # the number itself (rendered as one): =, in
        numbers = _ints(words)
        if op not in _EQUAL or numbers is None:
            return TOP
        return Need(args=((i, frozenset(numbers)),))
    # the name: a number without one renders as its digits, which a word with a
    # letter in it can never equal or be part of
    if any(not any(c.isalpha() for c in w) for w in words):
        return TOP
    if op in _EQUAL:
        allowed = {v for v, n in names.items() if n in words}
    elif op in ("contains", "startswith", "endswith"):
        test = {"contains": str.__contains__, "startswith": str.startswith,
                "endswith": str.endswith}[op]
        allowed = {v for v, n in names.items() if any(test(n, w) for w in words)}
    else:
        return TOP
    return Need(args=((i, frozenset(allowed)),))


def need(node: ast.Condition, syscall: str) -> Need:
    """What an event of `syscall` must have for `node` to hold."""
    if isinstance(node, ast.And):
        out = TOP
        for i in node.items:
            out = out.meet(need(i, syscall))
        return out
    if isinstance(node, ast.Or):
        parts = [n for n in (need(i, syscall) for i in node.items) if not n.impossible]
        if not parts:
            return NEVER
        out = parts[0]
        for n in parts[1:]:
            out = out.join(n)
        return out
    if isinstance(node, ast.Compare):
        return _compare(node, syscall)
    return TOP  # not: the abstraction cannot follow a negation


@dataclass
class Plan:
    """The kernel side of a loaded ruleset."""

    syscalls: list[str]  # traced by the syscall sensor
    filters: dict[str, SyscallFilter]
    per_rule: dict[str, dict[str, Need]] = field(default_factory=dict)
    untraceable: dict[str, list[str]] = field(default_factory=dict)  # rule -> types
    all_types_rules: list[str] = field(default_factory=list)

    def explain(self) -> str:
        """Per rule: the syscalls it needs and what the kernel checks for it; then
        the resulting per-syscall kernel filters."""
        lines = []
        for rule, per in self.per_rule.items():
            lines.append(f"{rule}:")
            for sc, n in per.items():
                if sc == "execve":
                    lines.append("  execve: program starts from the process sensor (all of "
                                 "them: the process table needs them); failed execve from "
                                 "the syscall sensor")
                    continue
                if n.impossible:
                    lines.append(f"  {sc}: the condition cannot hold for it (not traced for "
                                 "this rule)")
                    continue
                pushed = n.describe()
                lines.append(f"  {sc}: kernel checks " + ("; ".join(pushed) if pushed
                                                           else "nothing beyond the syscall"))
            for t in self.untraceable.get(rule, []):
                lines.append(f"  {t}: bpfguard has no sensor for it; never matches")
        if self.all_types_rules:
            lines.append("rules matching every event type (every syscall traced for them): "
                         + ", ".join(self.all_types_rules))
        lines.append("kernel filters per syscall (the union over the rules that need it):")
        for sc in self.syscalls:
            f = self.filters.get(sc)
            n = TOP
            if f:
                directory = frozenset({False}) if f.without_flags else \
                    frozenset({True}) if f.with_flags else None
                n = Need(f.results, f.accmodes, f.comms, f.euids, directory, f.path, f.rets,
                         f.families, f.args)
            lines.append(f"  {sc}: " + ("; ".join(n.describe()) or "every event"))
        return "\n".join(lines)


def plan_pushdown(engine: Engine, *, enabled: bool = True) -> Plan:
    """The syscalls to trace and their in-kernel filters for `engine`'s rules.
    With enabled=False: the same syscalls, no filters (for comparison)."""
    wanted: dict[str, Need] = {}
    plan = Plan([], {})
    for c in engine.compiled:
        types = _types_of(c)
        if types is None:
            plan.all_types_rules.append(c.name)
            # what `trace` watches by default: the reads and writes only
            # when a rule names them
            types = list(DEFAULT_SYSCALLS)
        per: dict[str, Need] = {}
        for t in sorted(types):
            if t in PROCESS_EVENTS:
                continue
            if t not in SPECS:
                plan.untraceable.setdefault(c.name, []).append(t)
                continue
            assert c.rule.condition is not None  # compiled rules have one
            n = need(c.rule.condition, t)
            if t in ("execve", "execveat"):  # successes come from the process sensor
                n = n.meet(Need(results=frozenset({"failure"})))
            per[t] = n
            if not n.impossible:
                wanted[t] = wanted[t].join(n) if t in wanted else n
        plan.per_rule[c.name] = per
    plan.syscalls = sorted(wanted)
    if enabled:
        for sc, n in wanted.items():
            directory = n.directory if sc in _FLAGS_SYSCALLS and n.directory and \
                len(n.directory) == 1 else None
            f = SyscallFilter(
                n.results if n.results != _BOTH else None,
                n.accmodes if sc in _FLAGS_SYSCALLS else None, n.comms, n.euids,
                without_flags=_O_DIRECTORY if directory == frozenset({False}) else 0,
                with_flags=_O_DIRECTORY if directory == frozenset({True}) else 0,
                path=n.path if sc in _OPENS else None, rets=n.rets,
                families=n.families if sc in _DUPS | _FD_ARGS else None, args=n.args)
            if f != SyscallFilter():
                plan.filters[sc] = f
    else:  # not a pushdown: program starts that succeeded come from the process sensor
        plan.filters = {sc: SyscallFilter(results=frozenset({"failure"}))
                        for sc in ("execve", "execveat") if sc in wanted}
    return plan


def _types_of(c: CompiledRule) -> list[str] | None:
    return None if c.types is ALL_TYPES else list(c.types)
