"""Compile a validated TracingPolicy into what the in-kernel engine reads.

The engine (``bpf/lib/policy.bpf.h`` in the sensor object) interprets, per hook, a ``bg_pol_hook``
(which arguments to read and how) and up to ``BG_POL_SELECTORS``
``bg_pol_selector`` entries; strings, long integer lists and CIDRs go to
set maps addressed by a set id. This module does the whole translation in
user space, as plain data, so that a policy that cannot be served is
refused before anything is written to the kernel (all or nothing), and so
that the translation is testable without a kernel.

Semantics follow Tetragon (``bpf/process/types/basic.h``,
``pkg/selectors``): selectors OR, filters of a selector AND, values of a
filter OR. One deliberate difference: integer ``NotEqual`` matches when the
value differs from *every* value (Tetragon's BPF code accepts it when it
differs from any one, which with two values matches everything); string
``NotEqual``, ``NotPrefix``, ``NotPostfix`` and ``NotIn`` already mean
"none of them" in both.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import re2

from ..errors import BpfguardError
from ..rules.model import Context, Problem
from .cel import CelError, CelOp, compile_cel
from .digest import matching_digest
from .loader import PolicyCode, PolicyError
from .model import (
    FILE_TYPES,
    SYSCALL_LIST_TYPES,
    Action,
    Arg,
    ArgSelector,
    BinarySelector,
    Enforcer,
    FeatureSet,
    Hook,
    KProbe,
    ListSpec,
    LsmHook,
    Policy,
    Selector,
    Tracepoint,
    UProbe,
    Usdt,
    attach_requirement,
    has_feature,
    is_syscall_hook,
    overrides,
)
from .usdt import UsdtArg, UsdtError, UsdtSite, read_sites

if TYPE_CHECKING:
    from ..loader.btf import Btf

__all__ = [
    "LIMITS",
    "CompiledArg",
    "CompiledFilter",
    "CompiledHook",
    "CompiledPolicy",
    "CompiledSelector",
    "SetEntries",
    "TracepointField",
    "compile_policy",
    "host_ns_root",
    "parse_rate",
    "string_hash",
    "tracepoint_fields",
]

_M64: Final = (1 << 64) - 1
_COMPAT_BIT: Final = 1 << 31  # Tetragon marks 32-bit syscalls with bit 31


@dataclass(frozen=True)
class _Limits:
    """The engine's sizes (bpf/include/bpfguard.h); the docs quote them."""

    args: int = 5
    resolve: int = 16  # steps of a resolve path
    selectors: int = 8
    filters: int = 8
    values: int = 8
    ns_filters: int = 4
    ns_values: int = 4
    prefix: int = 256
    prefix_sets: int = 4096
    follow: int = 64  # matchBinaries/matchParentBinaries with followChildren, all policies
    string: int = 4094  # a read of 4096 bytes ending without NUL is cut: no exact match
    uprobe_targets: int = 1024  # symbols/offsets of one uprobes entry (one link each)
    cel_ops: int = 32    # instructions of one CelExpr filter
    cel_stack: int = 8   # values it holds at once
    cel_progs: int = 1024  # CelExpr filters loaded, all policies
    syscall_hooks: int = 8
    hooks: int = 512
    set_entries: int = 65536


LIMITS: Final = _Limits()

# enum values of bpf/include/bpfguard.h; checked against the object's BTF by
# the engine at load (PolicyEngine._check_abi), so a drift fails loudly.
HOOK_KIND: Final = {"SYSCALL": 1, "TRACEPOINT": 2, "RAW_TP": 3, "FUNC": 4, "UPROBE": 5,
                     "ENFORCER": 6}
PT: Final = {"NONE": 0, "INT": 1, "STRING": 2, "KSTRING": 3, "DATA_LOC": 4, "CHAR_BUF": 5,
             "FD": 6, "FILE": 7, "PATH": 8, "BINPRM": 9, "SOCKADDR": 10, "SYSCALL64": 11,
             "SOCK": 12, "CRED": 13, "CHAR_BUF_RET": 14, "DENTRY": 15, "SKB": 16,
             "SOCKADDR_UN": 17, "BYTES": 18, "CHAR_IOVEC": 19, "CHAR_IOVEC_RET": 20,
             "IOV_ITER": 21}
OP: Final = {"EQ": 1, "NEQ": 2, "PREFIX": 3, "NOT_PREFIX": 4, "POSTFIX": 5, "NOT_POSTFIX": 6,
             "GT": 7, "LT": 8, "MASK": 9, "IN_SET": 10, "NOT_IN_SET": 11, "SADDR": 12,
             "NOT_SADDR": 13, "DADDR": 14, "NOT_DADDR": 15, "SPORT": 16, "NOT_SPORT": 17,
             "DPORT": 18, "NOT_DPORT": 19, "SPORT_PRIV": 20, "NOT_SPORT_PRIV": 21,
             "DPORT_PRIV": 22, "NOT_DPORT_PRIV": 23, "PROTOCOL": 24, "FAMILY": 25, "STATE": 26,
             "STR_EQ": 27, "STR_NEQ": 28, "ACCMODE": 29, "FLAGS": 30, "SMALL_IN": 31,
             "OPEN_PATH": 32, "FD_FAMILY": 33, "IN_RANGE": 34, "NOT_IN_RANGE": 35,
             "IN_SRANGE": 36, "NOT_IN_SRANGE": 37, "FILE_TYPE": 38, "NOT_FILE_TYPE": 39,
             "SPORT_IN_SET": 40, "NOT_SPORT_IN_SET": 41, "DPORT_IN_SET": 42,
             "NOT_DPORT_IN_SET": 43, "CAPS_GAINED": 44, "CEL": 45}
ACT: Final = {"POST": 1, "NOPOST": 2, "SIGKILL": 4, "SIGNAL": 8, "OVERRIDE": 16, "IMA_HASH": 32,
              "TRACK_SOCK": 64, "UNTRACK_SOCK": 128}
PID_FLAG: Final = {"NOT_IN": 1, "NS": 2, "FOLLOW": 4}
BIN_OP: Final = {"In": 1, "NotIn": 2, "Prefix": 3, "NotPrefix": 4, "Postfix": 5, "NotPostfix": 6}
NS_KIND: Final = {"Uts": 1, "Ipc": 2, "Mnt": 3, "Pid": 4, "PidForChildren": 5, "Net": 6,
                  "Time": 7, "TimeForChildren": 8, "Cgroup": 9, "User": 10}
NS_PROC: Final = {"Uts": "uts", "Ipc": "ipc", "Mnt": "mnt", "Pid": "pid",
                   "PidForChildren": "pid_for_children", "Net": "net", "Time": "time",
                   "TimeForChildren": "time_for_children", "Cgroup": "cgroup", "User": "user"}
CAP_TYPE: Final = {"Effective": 0, "Inheritable": 1, "Permitted": 2}
RATE_SCOPE: Final = {"thread": 0, "process": 1, "global": 2}
STACK: Final = {"KERNEL": 1, "USER": 2}
RET_ARG: Final = 7

_INT_TYPES: Final = {
    "int": (4, True), "int8": (1, True), "uint8": (1, False), "int16": (2, True),
    "uint16": (2, False), "int32": (4, True), "uint32": (4, False), "int64": (8, True),
    "uint64": (8, False), "size_t": (8, False), "auto": (8, True), "capability": (4, True),
    "long": (8, True), "bpf_cmd": (4, True), "sint8": (1, True), "sint16": (2, True),
    "sint32": (4, True), "sint64": (8, True), "ulong": (8, False),
    "kernel_cap_t": (8, False), "cap_inheritable": (8, False), "cap_permitted": (8, False),
    "cap_effective": (8, False),
}
# capability sets: a kernel function passes a kernel_cap_t *, read through it
_CAP_SETS: Final = frozenset({"kernel_cap_t", "cap_inheritable", "cap_permitted",
                              "cap_effective"})
_STRING_TYPES: Final = frozenset({"STRING", "KSTRING", "DATA_LOC", "CHAR_BUF", "FD", "FILE",
                                  "PATH", "BINPRM", "DENTRY", "CHAR_IOVEC", "IOV_ITER"})
_SYSCALL_OVERRIDE: Final = (
    "Override on a syscall: bpfguard serves syscall kprobes on the syscall tracepoints, which "
    "cannot change a return value, and has no fmod_ret path for syscalls yet. Override the "
    "LSM hook or security_* function the syscall calls instead, e.g. lsmhooks path_symlink "
    "or kprobe security_path_symlink")
_NOT_SUPPORTED: Final = {
    "FollowFD": "FollowFD/UnfollowFD/CopyFD are deprecated in Tetragon; use the fd or file "
                "argument types, which bpfguard resolves at the hook",
    "UnfollowFD": "see FollowFD",
    "CopyFD": "see FollowFD",
}

_FAMILIES: Final = {"AF_UNIX": 1, "AF_LOCAL": 1, "AF_INET": 2, "AF_INET6": 10,
                    "AF_NETLINK": 16, "AF_PACKET": 17}
_PROTOCOLS: Final = {"IPPROTO_IP": 0, "IPPROTO_ICMP": 1, "IPPROTO_TCP": 6, "IPPROTO_UDP": 17,
                     "IPPROTO_ICMPV6": 58, "IPPROTO_RAW": 255}
_TCP_STATES: Final = {"TCP_ESTABLISHED": 1, "TCP_SYN_SENT": 2, "TCP_SYN_RECV": 3,
                      "TCP_FIN_WAIT1": 4, "TCP_FIN_WAIT2": 5, "TCP_TIME_WAIT": 6,
                      "TCP_CLOSE": 7, "TCP_CLOSE_WAIT": 8, "TCP_LAST_ACK": 9, "TCP_LISTEN": 10,
                      "TCP_CLOSING": 11, "TCP_NEW_SYN_RECV": 12}
_CAPS: Final = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}


# -- hashing (the kernel computes the same in bg_pol_hash) --------------------------

def _mix(h: int, w: int) -> int:
    h = ((h ^ w) * 0x9E3779B97F4A7C15) & _M64
    return h ^ (h >> 32)


def string_hash(seed: int, data: bytes) -> int:
    """bg_pol_hash: the seeded 64-bit hash exact strings are matched by."""
    h = _mix(seed, len(data))
    for i in range(0, len(data), 8):
        h = _mix(h, int.from_bytes(data[i:i + 8].ljust(8, b"\0"), "little"))
    h ^= h >> 29
    h = (h * 0xBF58476D1CE4E5B9) & _M64
    return h ^ (h >> 32)


# -- compiled data --------------------------------------------------------------------

@dataclass(frozen=True)
class CompiledArg:
    """A ``bg_pol_arg``, with the declaration it came from (for decoding)."""

    type: str       # PT key
    size: int
    is_signed: bool
    size_arg: int
    src: int
    declared: str   # the policy's type name, for the event
    label: str
    index: int      # the policy's index
    # resolve: (offset, then load the pointer there) per step; load: the value
    # is the integer at the final address
    steps: tuple[tuple[int, bool], ...] = ()
    load: bool = False
    # where the value comes from: "task" (the current task, src unused),
    # "reg" (the register at byte src of the probe's pt_regs), "const" (the
    # number `const`, a USDT operand); "": the hook's argument src
    source: str = ""
    data: bool = False   # a data entry (matchData), not an argument
    user: bool = False   # load reads user memory (a USDT operand), not the kernel's
    const: int = 0
    # BYTES: bytes copied, and the fields in them: (name, offset, size, how,
    # the enum's (value, name) pairs for how "enum")
    length: int = 0
    fields: tuple[tuple[str, int, int, str, tuple[tuple[int, str], ...]], ...] = ()


@dataclass(frozen=True)
class CompiledFilter:
    op: str
    arg: int
    ret: int = 0   # enum bg_pol_phase: 0 matchArgs, 1 matchReturnArgs, 2 the sensor's file
    set: int = 0
    vals: tuple[int, ...] = ()


@dataclass
class CompiledSelector:
    filters: list[CompiledFilter] = field(default_factory=list)
    actions: int = ACT["POST"]
    ret_actions: int = 0
    signal: int = 0
    pid_flags: int = 0
    pids: tuple[int, ...] = ()
    bin_op: int = 0
    bin_set: int = 0
    pbin_op: int = 0
    pbin_set: int = 0
    # followChildren: the filter's values (the engine matches older processes
    # against them when it installs the filter)
    bin_follow: tuple[str, ...] | None = None
    pbin_follow: tuple[str, ...] | None = None
    ns: list[tuple[int, bool, tuple[int, ...]]] = field(default_factory=list)
    cap_op: int = 0
    cap_type: int = 0
    cap_mask: int = 0
    cap_userns: int = 0   # isNamespaceCapability: the host's user namespace inode
    nsc_op: int = 0       # matchNamespaceChanges: 1 In, 2 NotIn
    nsc_mask: int = 0     # ... bit NS_KIND[kind]
    capc_op: int = 0      # matchCapabilityChanges
    capc_type: int = 0
    capc_mask: int = 0
    rate_ms: int = 0
    rate_scope: int = 0
    stacks: int = 0                   # Post kernelStackTrace/userStackTrace: STACK bits
    error: int = 0                    # Override: argError
    notify: int = 0                   # NotifyEnforcer: arm the enforcers with ...
    notify_error: int = 0             # ... argError
    notify_sig: int = 0               # ... argSig
    set_arg: int = 0                  # Set (usdts): 1 + the position of the argument written
    set_value: int = 0                # ... with this 32-bit value
    enforcing: tuple[str, ...] = ()   # action names, for events and messages
    # the same split by list: matchActions' (Tetragon's action, at the call)
    # and matchReturnActions' (its return_action, at the return)
    call_enforcing: tuple[str, ...] = ()
    ret_enforcing: tuple[str, ...] = ()
    # GetUrl/DnsLookup (action, URL or name): the agent's, at the call and at
    # the return (the selector posts so that the agent learns of the match)
    call_agent: tuple[tuple[str, str], ...] = ()
    ret_agent: tuple[tuple[str, str], ...] = ()
    # TrackSock/UntrackSock: the compiled argument argSock names, in
    # matchActions and in matchReturnActions
    sock_arg: int = 0
    ret_sock_arg: int = 0
    # the rules pushdown's task filters (no policy has them): the task's name
    # in this exact-string set, its effective uid in this integer set; 0: none
    comm_set: int = 0
    euid_set: int = 0


@dataclass
class CompiledHook:
    """One hook, ready for the maps. `syscalls` are route indexes (syscall
    number, + nr_max for compat) for syscall hooks."""

    hook: Hook
    kind: str
    args: list[CompiledArg]
    selectors: list[CompiledSelector]
    ret: bool = False
    reports_return: bool = True  # False: posted at the return for returnCopy only
    ret_type: str = "int"
    # returnArg of a type other than an integer: how the engine reads it
    retarg: CompiledArg | None = None
    ret_sock: str = ""  # returnArgAction: TrackSock or UntrackSock on the returned sock
    syscalls: tuple[int, ...] = ()
    subsys: str = ""
    event: str = ""
    function_name: str = ""
    # FUNC hooks: function_name is what the programs attach to (an LSM hook's
    # name without bpf_lsm_); its parameter count; the programs of the sensor object
    nparams: int = 0
    programs: tuple[str, ...] = ()
    # UPROBE hooks: the binary, and per link (symbol or "", offset, refCtrOffset);
    # a link's cookie is its position here, which the event carries back
    binary: str = ""
    targets: tuple[tuple[str, int, int], ...] = ()
    digests: tuple[str, ...] = ()  # binaryDigests: the engine attaches only to such a file


@dataclass
class SetEntries:
    """Set map entries: integer (set, value), exact-string (set, len, hash),
    prefix/postfix (set, bytes; postfix already reversed), address (set,
    prefix bits of the 128-bit address, 16 bytes)."""

    ints: list[tuple[int, int]] = field(default_factory=list)
    strs: list[tuple[int, int, int]] = field(default_factory=list)
    prefixes: list[tuple[int, bytes]] = field(default_factory=list)
    postfixes: list[tuple[int, bytes]] = field(default_factory=list)
    addrs: list[tuple[int, int, bytes]] = field(default_factory=list)
    # CelExpr programs: (set, ((code, operand), ...)); operand: an ARG's
    # compiled argument, a CONST's value
    cel: list[tuple[int, tuple[tuple[str, int], ...]]] = field(default_factory=list)


@dataclass
class CompiledPolicy:
    policy: Policy
    hooks: list[CompiledHook]
    sets: SetEntries
    set_ids: list[int]
    # what loads but may not read what the author meant (as Tetragon warns)
    warnings: list[Problem] = field(default_factory=list)


# -- tracepoint formats ------------------------------------------------------------

@dataclass(frozen=True)
class TracepointField:
    """One ``field:`` line of a tracepoint's format file."""

    decl: str
    name: str
    offset: int
    size: int
    signed: bool

    @property
    def is_data_loc(self) -> bool:
        return self.decl.startswith("__data_loc")

    @property
    def is_char_ptr(self) -> bool:
        return bool(re.search(r"\bchar\s*\*", self.decl))


_TRACEFS: Final = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_FIELD_RE: Final = re.compile(
    r"field:(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);\s*signed:(?P<s>\d)")


def tracepoint_fields(subsys: str, event: str,
                      roots: tuple[str, ...] = _TRACEFS) -> list[TracepointField] | None:
    """The fields of tracepoint subsys:event in format-file order, common_*
    fields included (Tetragon's ``index`` counts them); None if it does not exist."""
    if any(c in name for name in (subsys, event) for c in "/\0") or \
            subsys.startswith(".") or event.startswith("."):
        return None
    for root in roots:
        p = Path(root, "events", subsys, event, "format")
        try:
            text = p.read_text()
        except OSError:
            continue
        out = []
        for m in _FIELD_RE.finditer(text):
            decl = m.group("decl").strip()
            name = re.sub(r"\[.*\]$", "", decl.split()[-1]).lstrip("*")
            out.append(TracepointField(decl, name, int(m.group("off")), int(m.group("size")),
                                       m.group("s") == "1"))
        return out
    return None


FunctionProto = tuple[list[tuple[str, str]], str]  # (parameter name, C type)..., return type


# backend feature -> program of the sensor object (a kprobe backend brings its kretprobe)
_PROGRAMS: Final = {"fentry": "bg_pol_fentry", "fexit": "bg_pol_fexit", "kprobe": "bg_pol_kprobe",
                    "fmod_ret": "bg_pol_fmod_ret", "lsm": "bg_pol_lsm"}
_EM_X86_64: Final = 62
# imaHash: the BTF type of an LSM hook's first parameter -> the bg_pol_ima_* programs
_IMA_OBJECT: Final = {"struct file *": "file", "struct linux_binprm *": "bprm"}
# kernel-function argument types -> (PT kind, the struct the parameter must point to)
_FUNC_POINTER_ARGS: Final = {
    "file": ("FILE", "struct file *"), "path": ("PATH", "struct path *"),
    "linux_binprm": ("BINPRM", "struct linux_binprm *"), "sock": ("SOCK", "struct sock *"),
    "cred": ("CRED", "struct cred *"), "string": ("KSTRING", "char *"),
    "dentry": ("DENTRY", "struct dentry *"), "skb": ("SKB", "struct sk_buff *"),
    "sockaddr": ("SOCKADDR", "struct sockaddr *"),
    "sockaddr_un": ("SOCKADDR_UN", "struct sockaddr_un *"),
    "iov_iter": ("IOV_ITER", "struct iov_iter *"),
}
# Kernel objects shown field by field as Tetragon's Kprobe* messages: the
# struct, and per field its name in the message ("ns.inum": nested), its
# member path and how it reads (u: unsigned, s: signed, str: a char array,
# bool, enum:NAME: the name of a value of the kernel's enum NAME). The engine
# copies the span of the struct that holds them; a member this kernel lacks
# (sig_ok without CONFIG_MODULE_SIG) is left out of the event.
_STRUCT_ARGS: Final = {
    "bpf_attr": ("union bpf_attr", (("ProgType", "prog_type", "enum:bpf_prog_type"),
                                    ("InsnCnt", "insn_cnt", "u"),
                                    ("ProgName", "prog_name", "str"))),
    "bpf_map": ("struct bpf_map", (("MapType", "map_type", "enum:bpf_map_type"),
                                   ("KeySize", "key_size", "u"),
                                   ("ValueSize", "value_size", "u"),
                                   ("MaxEntries", "max_entries", "u"),
                                   ("MapName", "name", "str"))),
    "perf_event": ("struct perf_event", (("Type", "attr.type", "u"),
                                         ("Config", "attr.config", "u"),
                                         ("ProbeOffset", "attr.config2", "u"))),
    "user_namespace": ("struct user_namespace", (("level", "level", "s"),
                                                 ("owner", "owner.val", "u"),
                                                 ("group", "group.val", "u"),
                                                 ("ns.inum", "ns.inum", "u"))),
    "module": ("struct module", (("name", "name", "str"), ("signature_ok", "sig_ok", "bool"),
                                 ("tainted", "taints", "u"))),
}
# types read through a member of what the parameter points to (Tetragon reads
# a socket's sock, a net_device's name): (the type read, its resolve path, the struct)
_FUNC_MEMBER_ARGS: Final = {
    "socket": ("sock", "sk", "struct socket *"),
    "net_device": ("string", "name", "struct net_device *"),
    "kiocb": ("file", "ki_filp", "struct kiocb *"),  # its file, as Tetragon reads it
}


_RESOLVE_PART: Final = re.compile(r"(?P<name>[A-Za-z_]\w*)?(?P<idx>(?:\[\d+\])*)")


def resolve_path(btf: Btf, tid: int, path: str, *, pointee: bool = False
                 ) -> tuple[list[tuple[int, bool]], int, int, bool]:
    """Walks Tetragon's ``resolve`` path (``mm.owner.comm``, ``sa_data[0]``,
    ``[1]``) from a value of BTF type `tid` (with `pointee`: a value that
    points to a `tid`). Returns (steps, type, offset, addressed): the steps
    (offset, then load the pointer there) that reach the object, its type,
    and the offset of the object from the last address reached; addressed
    is False for an empty path (the value itself). Raises _Fail naming the
    component that does not fit."""
    steps: list[tuple[int, bool]] = []
    cur, off, addressed = tid, 0, pointee
    for comp in (c for c in path.split(".") if c) if path else ():
        m = _RESOLVE_PART.fullmatch(comp)
        if m is None or not (m.group("name") or m.group("idx")):
            raise _Fail(f"resolve {path!r}: {comp!r} is not a field name or [index]",
                        code=PolicyCode.BAD_VALUE)
        ops: list[str | int] = [m.group("name")] if m.group("name") else []
        ops += [int(i) for i in re.findall(r"\d+", m.group("idx"))]
        for op in ops:
            kind, size, _, inner = btf.shape(cur)
            if isinstance(op, int):
                if addressed and kind == "array":
                    esize = btf.shape(inner)[1]
                    if size and op * esize >= size:
                        raise _Fail(f"resolve {path!r}: [{op}] is past the end of "
                                    f"{btf.type_name(cur)} ({size // max(esize, 1)} elements)",
                                    code=PolicyCode.BAD_VALUE)
                    cur, off = inner, off + op * esize
                elif kind == "ptr":  # the op-th element of what it points to
                    if addressed:
                        steps.append((off, True))
                    cur, off, addressed = inner, op * btf.shape(inner)[1], True
                else:
                    raise _Fail(f"resolve {path!r}: [{op}] indexes {btf.type_name(cur)}, "
                                "not an array or pointer", code=PolicyCode.BAD_VALUE)
                continue
            # a member: through pointers (a struct cred ** too) to the struct
            while kind == "ptr" or not addressed:
                if kind != "ptr":
                    raise _Fail(f"resolve {path!r}: at {comp!r} the value is "
                                f"{btf.type_name(cur)}, not a pointer to follow",
                                code=PolicyCode.BAD_VALUE)
                if addressed:
                    steps.append((off, True))
                cur, off, addressed = inner, 0, True
                kind, _, _, inner = btf.shape(cur)
            if kind != "struct":
                raise _Fail(f"resolve {path!r}: {btf.type_name(cur)} has no member {op!r}",
                            code=PolicyCode.BAD_VALUE)
            try:
                found = btf.member(cur, op)
            except ValueError as exc:
                raise _Fail(f"resolve {path!r}: {exc}; it has no address to read",
                            code=PolicyCode.BAD_VALUE) from None
            if found is None:  # struct layouts change between kernels
                raise _Fail(f"resolve {path!r}: {btf.type_name(cur)} has no member {op!r} "
                            "in this kernel", code=PolicyCode.UNAVAILABLE)
            off, cur = off + found[0], found[1]
    return steps, cur, off, addressed


_ERROR_INJECTION_LIST: Final = "/sys/kernel/debug/error_injection/list"
# the functions ftrace (so kprobes and fentry) can attach to: generated_ftrace lists
_AVAILABLE_FUNCTIONS: Final = ("/sys/kernel/tracing/available_filter_functions",
                               "/sys/kernel/debug/tracing/available_filter_functions")



def _one_of_types(kinds: Mapping[str, str]) -> str:
    return "integer, " + ", ".join(sorted(kinds))


def parse_rate(text: str) -> int | None:
    """rateLimit ("30", "30s", "5m", "1h") in milliseconds; None if malformed."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhSMH]?)\s*", text)
    if not m:
        return None
    mult = {"": 1000, "s": 1000, "m": 60_000, "h": 3_600_000}[m.group(2).lower()]
    return min(int(m.group(1)) * mult, 0xFFFFFFFF)


# -- the compiler -----------------------------------------------------------------

def _set_position(hook: Usdt, action: Action) -> int:
    """The position, among the compiled (non-nop) arguments, of the argument a
    Set action writes: its argIndex counts entries of the policy's args list,
    as in Tetragon."""
    if action.arg_index >= len(hook.args):
        raise _Fail(f"Set argIndex {action.arg_index}: the probe's args list has "
                    f"{len(hook.args)} entries (argIndex counts from 0)",
                    code=PolicyCode.BAD_VALUE)
    target = hook.args[action.arg_index]
    if target.type == "nop":
        raise _Fail(f"Set argIndex {action.arg_index}: that entry's type is nop; give the "
                    "operand an integer type (int32)", code=PolicyCode.BAD_VALUE)
    return [a for a in hook.args if a.type != "nop"].index(target)


def _btf_name(hook: KProbe | LsmHook) -> str:
    """The BTF function a kernel-function or LSM hook attaches to."""
    return "bpf_lsm_" + hook.hook if isinstance(hook, LsmHook) else hook.call


class _Fail(Exception):
    """One problem; collected, not raised out of compile_policy.

    `code`: UNSUPPORTED for what bpfguard does not serve, UNAVAILABLE for
    what this machine lacks (a kernel feature, function, struct member,
    tracepoint, syscall or binary), BAD_VALUE for what no kernel could serve
    (a resolve path through a field that is not a pointer); `beyond`: a
    problem that remains on a kernel that has what this one lacks."""

    def __init__(self, message: str, beyond: _Fail | None = None, *,
                 code: PolicyCode = PolicyCode.UNSUPPORTED) -> None:
        super().__init__(message)
        self.beyond = beyond
        self.code = code


def _int(text: str) -> int:
    """An integer as Go's ParseInt(s, 0, 64) reads it, as Tetragon does: a
    leading 0 means octal ("0100" is O_CREAT)."""
    t = text.strip().replace("_", "")
    try:
        if re.fullmatch(r"[+-]?0[0-7]+", t):
            return int(t, 8)
        return int(t, 0)
    except ValueError:
        raise _Fail(f"{text!r} is not an integer") from None


_ARCH_PREFIX: Final = {"x86_64": "__x64_", "aarch64": "__arm64_"}


def _function_name(call: str) -> str:
    """The kernel's name for a syscall's entry, as Tetragon reports it."""
    if call.startswith("__"):
        return call
    from ..sensors.syscall_table import native_arches  # not at the top: see _syscall_ids

    prefix = _ARCH_PREFIX.get(native_arches()[0].name, "__")
    return prefix + (call if call.startswith("sys_") else f"sys_{call}")


def _syscall_ids(name: str, nr_max: int) -> list[tuple[int, bool]]:
    """(number, compat) of a syscall as Tetragon names it: ``sys_openat`` and
    ``__x64_sys_openat`` the native one, ``__ia32_sys_openat`` the 32-bit one."""
    compat = False
    n = name
    for prefix, is_compat in (("__ia32_compat_sys_", True), ("__ia32_sys_", True),
                              ("__x64_sys_", False), ("__arm64_sys_", False),
                              ("__se_sys_", False), ("sys_", False)):
        if n.startswith(prefix):
            n, compat = n[len(prefix):], is_compat
            break
    # imported here: the sensors package imports this module, and a module-level
    # import of its syscall_table made `import bpfguard.policy.compiler` fail
    from ..sensors.syscall_table import native_arches, syscall_number

    native, compat_arch = native_arches()
    if compat and compat_arch is None:
        raise _Fail(f"{name}: this machine has no 32-bit syscall ABI", code=PolicyCode.UNAVAILABLE)
    nr = syscall_number(n, compat=compat)
    if nr is None or nr >= nr_max:
        raise _Fail(f"unknown syscall {name!r} on {native.name}", code=PolicyCode.UNAVAILABLE)
    return [(nr, compat)]


class _Compiler:
    def __init__(self, policy: Policy, *, nr_max: int, seed: int,
                 next_set: Callable[[], int],
                 fields_of: Callable[[str, str], list[TracepointField] | None],
                 ns_root: str, function_of: Callable[[str], FunctionProto | None] | None,
                 btf_of: Callable[[], Btf],
                 features: FeatureSet | Mapping[str, bool] | None) -> None:
        self.policy = policy
        # kernel function prototypes: from the compile's one BTF unless given
        self.function_of = function_of or self._kernel_function
        self.features = features
        self.nr_max = nr_max
        self.seed = seed
        self.next_set = next_set
        self.fields_of = fields_of
        self.ns_root = ns_root
        self.sets = SetEntries()
        self.set_ids: list[int] = []
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.btf_of = btf_of
        self._btf: Btf | None = None
        self._module_btf: dict[str, Btf] = {}
        self.lists = {lst.name: lst for lst in policy.lists}

    def warn(self, hook: Hook, msg: str) -> None:
        self.warnings.append(Problem(PolicyCode.BAD_VALUE, f"{hook.name}: {msg}",
                                     hook.context))

    def module_btf(self, name: str) -> Btf:
        """A loaded module's BTF over this kernel's (btfTypeModule)."""
        if name not in self._module_btf:
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise _Fail(f"btfTypeModule {name!r} is not a module name",
                            code=PolicyCode.BAD_VALUE)
            if not os.path.exists(f"/sys/kernel/btf/{name}"):
                raise _Fail(f"btfTypeModule {name!r}: the module is not loaded, or this "
                            f"kernel has no BTF for modules (no /sys/kernel/btf/{name})",
                            code=PolicyCode.UNAVAILABLE)
            from ..loader.btf import Btf

            try:
                self._module_btf[name] = Btf.module(name, self.btf())
            except BpfguardError as exc:
                raise _Fail(f"btfTypeModule {name!r}: {exc}",
                            code=PolicyCode.UNAVAILABLE) from None
        return self._module_btf[name]

    def btf(self) -> Btf:
        """This kernel's BTF, opened once per compile: parsing it is most of
        a compile's time (tenfold under TCG)."""
        if self._btf is None:
            self._btf = self.btf_of()
        return self._btf

    def _kernel_function(self, name: str) -> FunctionProto | None:
        try:
            return self.btf().function(name)
        except KeyError:
            return None

    def modifiable(self, function: str) -> bool | None:
        """Whether the kernel lets fmod_ret change `function`'s return value:
        security_* functions, and those on the error-injection list. None
        when this kernel has no such list (no CONFIG_FUNCTION_ERROR_INJECTION);
        True when the list is not readable (debugfs unmounted: the load
        decides)."""
        if function.startswith("security_"):
            return True
        if self.features is not None and not has_feature(self.features, "error_injection"):
            return None
        try:
            with open(_ERROR_INJECTION_LIST) as f:
                return any(line.split("\t", 1)[0] == function for line in f)
        except OSError:
            return True

    def syscall_override(self, action: str, gap: str) -> _Fail:
        """The refusal of an action that changes what a syscall returns: on a
        kernel without the error-injection list no BPF program may (fmod_ret
        reaches security_* functions only), which is the kernel's gap; on
        one with it, bpfguard's."""
        if self.features is not None and not has_feature(self.features, "error_injection"):
            return _Fail(f"{action} changes what a syscall returns, which needs fmod_ret (or "
                         "bpf_override_return) on the syscall's function: only a kernel built "
                         "with CONFIG_FUNCTION_ERROR_INJECTION allows it, and this one is not",
                         beyond=_Fail(gap), code=PolicyCode.UNAVAILABLE)
        return _Fail(gap)

    def fail(self, ctx: Context, msg: str, code: PolicyCode = PolicyCode.UNSUPPORTED) -> None:
        self.problems.append(Problem(code, msg, ctx))

    def new_set(self) -> int:
        s = self.next_set()
        self.set_ids.append(s)
        return s

    # -- hooks --

    def compile(self) -> CompiledPolicy:
        try:
            return self._compile()
        finally:
            for module in self._module_btf.values():  # (split over the kernel's: first)
                module.close()
            if self._btf is not None:
                self._btf.close()

    def _compile(self) -> CompiledPolicy:
        hooks: list[CompiledHook] = []
        for hook in self.policy.hooks:
            try:
                hooks.extend(self.hook(hook))
            except _Fail as exc:
                self.fail(hook.context, f"{hook.name}: {exc}", exc.code)
                if exc.beyond:
                    self.fail(hook.context, f"{hook.name}: on a kernel that has it, still "
                                            f"refused: {exc.beyond}",
                              exc.beyond.code)
        method = next((o.value for o in self.policy.options if o.name == "override-method"),
                      "fmod-ret")
        if method == "override-return" and (self.policy.enforcers or any(
                overrides(h) for h in self.policy.hooks)):
            self.fail(self.policy.context, "override-method override-return: bpfguard "
                      "overrides return values by fmod_ret only (bpf_override_return on "
                      "kprobes is not served)", PolicyCode.UNSUPPORTED)
        for enf in self.policy.enforcers:
            try:
                hooks.extend(self.enforcer_hooks(enf))
            except _Fail as exc:
                self.fail(enf.context, f"enforcers: {exc}", exc.code)
        if len(hooks) > LIMITS.hooks:
            self.fail(self.policy.context, f"{len(hooks)} hooks; the engine holds {LIMITS.hooks}")
        for what, n in (("integer set", len(self.sets.ints)), ("string set", len(self.sets.strs)),
                        ("address set", len(self.sets.addrs)),
                        ("prefix set", len(self.sets.prefixes)),
                        ("postfix set", len(self.sets.postfixes))):
            if n > LIMITS.set_entries:
                self.fail(self.policy.context, f"{n} {what} entries; the engine holds "
                          f"{LIMITS.set_entries}")
        if self.problems:
            raise PolicyError(self.policy.context.file, self.problems)
        return CompiledPolicy(self.policy, hooks, self.sets, self.set_ids, self.warnings)

    def enforcer_hooks(self, enf: Enforcer) -> list[CompiledHook]:
        """An enforcers entry: an fmod_ret program on each of its functions,
        which NotifyEnforcer arms for a thread (a syscalls list or ``sys_``
        name means the syscall's entry function)."""
        functions: list[str] = []
        for call in enf.calls:
            if call.startswith("list:"):
                lst = self.lists.get(call[5:])
                if lst is None:
                    raise _Fail(f"no list named {call[5:]!r}", code=PolicyCode.BAD_REFERENCE)
                names = (self.every_syscall() if lst.type == "generated_syscalls"
                         else list(self.list_functions(lst)) if lst.type not in
                         SYSCALL_LIST_TYPES else list(lst.values))
                syscalls = lst.type in SYSCALL_LIST_TYPES
            else:
                names, syscalls = [call], call.startswith(("sys_", "__x64_sys_", "__ia32_sys_",
                                                            "__arm64_sys_"))
            functions += [_function_name(n) if syscalls else n for n in names]
        out = []
        for fn in dict.fromkeys(functions):
            carrier = KProbe(call=fn, context=enf.context, syscall=False)
            req = attach_requirement(dataclasses.replace(
                carrier, selectors=(Selector(match_actions=(Action("Override", arg_error=-1),)),)),
                self.features)
            if req.backend is None:
                raise _Fail(f"{fn}: an enforcer is an fmod_ret program; this kernel has no "
                            "BPF trampolines (fmod_ret)", code=PolicyCode.UNAVAILABLE)
            proto = self.function_of(fn)
            if proto is None:
                raise _Fail(f"{fn}: this kernel's BTF has no such function",
                            code=PolicyCode.UNAVAILABLE)
            if proto[1] == "void":
                raise _Fail(f"{fn} returns void: an enforcer has no return value to "
                            "replace", code=PolicyCode.BAD_VALUE)
            listed = self.modifiable(fn)
            if listed is False:
                raise _Fail(f"{fn}: fmod_ret works on security_* functions and on the "
                            f"kernel's error-injection list ({_ERROR_INJECTION_LIST}), and {fn} "
                            "is on neither", code=PolicyCode.BAD_VALUE)
            if listed is None:
                raise _Fail(f"{fn}: an enforcer returns its error by fmod_ret, which this "
                            "kernel allows on security_* functions only (built without "
                            "CONFIG_FUNCTION_ERROR_INJECTION)", code=PolicyCode.UNAVAILABLE)
            out.append(CompiledHook(carrier, "ENFORCER", [], [], programs=("bg_pol_enforce",),
                                    function_name=fn, nparams=len(proto[0])))
        return out

    def hook(self, hook: Hook) -> list[CompiledHook]:
        if isinstance(hook, KProbe):
            if is_syscall_hook(hook, self.lists):
                return [self.syscall_hook(hook)]
            lst = self.lists.get(hook.call[5:]) if hook.call.startswith("list:") else None
            if lst is not None:  # a list of kernel functions: a hook each
                return [self.function_hook(dataclasses.replace(hook, call=fn, syscall=False))
                        for fn in self.list_functions(lst)]
            return [self.function_hook(hook)]
        if isinstance(hook, Tracepoint):
            return [self.tracepoint_hook(hook)]
        if isinstance(hook, LsmHook):
            return [self.function_hook(hook)]
        if isinstance(hook, Usdt):
            return self.usdt_hooks(hook)
        return self.uprobe_hook(hook)

    def list_functions(self, lst: ListSpec) -> list[str]:
        """The kernel functions of a list a kprobe calls: its values, or for
        generated_ftrace the functions ftrace can trace whose names match
        its pattern (an RE2 regular expression, searched as Go's
        MatchString does) and that this kernel's BTF describes."""
        if lst.type != "generated_ftrace":
            return list(lst.values)
        text, why = None, "no such file (no CONFIG_DYNAMIC_FTRACE, or tracefs not mounted)"
        for path in _AVAILABLE_FUNCTIONS:
            try:
                with open(path) as f:
                    text = f.read()
                break
            except FileNotFoundError:
                continue
            except OSError as exc:
                why = f"{path}: {exc.strerror}"
                break
        if text is None:
            raise _Fail(f"list {lst.name!r}: generated_ftrace reads the functions ftrace can "
                        f"trace ({' or '.join(_AVAILABLE_FUNCTIONS)}): {why}",
                        code=PolicyCode.UNAVAILABLE)
        try:
            pattern = re2.compile(lst.pattern or "")
        except re2.error as exc:
            raise _Fail(f"list {lst.name!r}: pattern {lst.pattern!r} is not a regular "
                        f"expression ({exc})", code=PolicyCode.BAD_VALUE) from None
        names = dict.fromkeys(line.split(maxsplit=1)[0] for line in text.splitlines()
                              if line.strip())
        out = [n for n in names if pattern.search(n) and self.function_of(n) is not None]
        if not out:
            raise _Fail(f"list {lst.name!r}: no traceable function of this kernel matches "
                        f"{lst.pattern!r}", code=PolicyCode.UNAVAILABLE)
        if len(out) > LIMITS.hooks:
            raise _Fail(f"list {lst.name!r}: {len(out)} functions match {lst.pattern!r}; the "
                        f"engine holds {LIMITS.hooks} hooks", code=PolicyCode.LIMIT)
        return out

    def usdt_hooks(self, hook: Usdt) -> list[CompiledHook]:
        """A USDT probe: a uprobe link per site of it in the binary (with
        its semaphore as the reference counter), the arguments read as the
        site's operands say. Sites whose operands differ (the compiler
        placed the values differently) are separate hooks. A Set needs
        bpf_probe_write_user whatever the mode (as Override needs fmod_ret:
        monitor can become enforce live); without it the hook is still
        compiled, so that the refusal also names what else is wrong."""
        sets = [a for sel in hook.selectors for a in sel.match_actions if a.action == "Set"]
        if not sets or self.features is None or has_feature(self.features, "write_user"):
            return self._usdt_hooks(hook, sets)
        lacking = ("Set writes into the traced program with bpf_probe_write_user, which this "
                   "kernel refuses (kernel lockdown, integrity or confidentiality, refuses it; "
                   "`bpfguard probe` says why here)")
        saved = dataclasses.replace(self.sets, **{k: list(v) for k, v in vars(self.sets).items()})
        try:
            self._usdt_hooks(hook, sets)
        except _Fail as exc:
            raise _Fail(lacking, beyond=exc, code=PolicyCode.UNAVAILABLE) from None
        finally:
            self.sets = saved  # what the refused hook would have added does not count
        raise _Fail(lacking, code=PolicyCode.UNAVAILABLE)

    def _usdt_hooks(self, hook: Usdt, sets: list[Action]) -> list[CompiledHook]:
        req = attach_requirement(hook, self.features)
        if req.backend is None:
            raise _Fail(req.message.removeprefix(f"{hook.name} "), code=PolicyCode.UNAVAILABLE)
        binary = Path(hook.path)
        if not binary.is_file():
            raise _Fail(f"path {hook.path}: no such file", code=PolicyCode.UNAVAILABLE)
        if not binary.is_absolute():
            raise _Fail(f"path {hook.path!r}: give the binary's absolute path (the agent's "
                        "working directory is no place to find it)", code=PolicyCode.BAD_VALUE)
        try:
            sites = [s for s in read_sites(binary)
                     if s.provider == hook.provider and s.name == hook.probe]
        except UsdtError as exc:
            raise _Fail(str(exc), code=PolicyCode.BAD_VALUE) from exc
        if not sites:
            raise _Fail(f"{hook.path} has no USDT probe {hook.provider}:{hook.probe} "
                        "(readelf -n lists a binary's probes)", code=PolicyCode.UNAVAILABLE)
        if len(sites) > LIMITS.uprobe_targets:
            raise _Fail(f"{len(sites)} sites of the probe; bpfguard attaches at most "
                        f"{LIMITS.uprobe_targets} per hook", code=PolicyCode.LIMIT)
        args = [a for a in hook.args if a.type != "nop"]
        if len(args) > LIMITS.args:
            raise _Fail(f"{len(args)} arguments; at most {LIMITS.args}", code=PolicyCode.LIMIT)
        for a in args:
            if a.resolve or a.btf_type:
                raise _Fail(f"argument {a.index}: resolve/btfType walk kernel types; a USDT "
                            "argument is a user value", code=PolicyCode.BAD_VALUE)
        # Set argIndex -> the position in `args` of the argument it writes
        written = {a.arg_index: _set_position(hook, a) for a in sets}
        groups: dict[tuple[UsdtArg, ...], list[UsdtSite]] = {}
        for site in sites:
            if site.problem:
                raise _Fail(f"probe site at file offset {site.offset:#x}: {site.problem}",
                            code=PolicyCode.UNSUPPORTED)
            for a in args:
                if a.index >= len(site.args):
                    raise _Fail(f"argument {a.index}: probe {hook.provider}:{hook.probe} has "
                                f"{len(site.args)} arguments (index counts from 0)",
                                code=PolicyCode.BAD_VALUE)
            for index, pos in written.items():
                op = site.args[args[pos].index]
                if op.kind != "deref" or op.size != 4:
                    # Tetragon's rule: the program reads the value back from memory
                    raise _Fail(f"Set argIndex {index}: the probe's "
                                f"argument {args[pos].index} is {op.text!r} at file offset "
                                f"{site.offset:#x}; Set writes only a 4-byte memory operand "
                                "(like -4@-4(%rbp))", code=PolicyCode.BAD_VALUE)
            groups.setdefault(tuple(site.args[a.index] for a in args), []).append(site)
        out = []
        for operands, group in groups.items():
            compiled = [self.usdt_arg(a, op) for a, op in zip(args, operands, strict=True)]
            sels = self.selectors(hook, hook.selectors, compiled, index_is_position=False)
            # (only a Set's program holds bpf_probe_write_user: lockdown refuses it)
            program = "bg_pol_usdt_set" if sets else "bg_pol_uprobe"
            out.append(CompiledHook(hook, "UPROBE", compiled, sels, programs=(program,),
                                    binary=hook.path,
                                    targets=tuple(("", s.offset, s.semaphore) for s in group)))
        return out

    def usdt_arg(self, arg: Arg, op: UsdtArg) -> CompiledArg:
        """One USDT argument: the operand's value (read at its own size and
        sign, as libbpf's bpf_usdt_arg does), an integer or a user string's
        pointer."""
        label = arg.label
        if arg.type in _INT_TYPES:
            pt = "INT"
        elif arg.type == "string":
            pt = "STRING"
            if op.size != 8:
                raise _Fail(f"argument {arg.index} of type string: the probe's operand "
                            f"{op.text!r} is {op.size} bytes, not a pointer",
                            code=PolicyCode.BAD_VALUE)
        else:
            raise _Fail(f"argument {arg.index} of type {arg.type!r}: a USDT argument is a "
                        "user value (use int types or string)", code=PolicyCode.BAD_VALUE)
        base = CompiledArg(pt, op.size, op.signed, 0, arg.index, arg.type, label, arg.index)
        if op.kind == "const":
            return dataclasses.replace(base, source="const", const=op.value)
        try:
            off, _ = self.register(op.reg)
        except _Fail as exc:
            raise _Fail(f"argument {arg.index}: operand {op.text!r}: {exc}",
                        code=exc.code) from exc
        reg = dataclasses.replace(base, source="reg", src=off)
        if op.kind == "reg":
            return reg
        return dataclasses.replace(reg, steps=((op.value, False),), load=True, user=True)

    def uprobe_hook(self, hook: UProbe) -> list[CompiledHook]:
        """User functions of one binary: a uprobe link per symbol (plus its
        offset) or, without symbols, per file offset. With binaryDigests,
        none when the binary has none of them and the policy says to
        ignore that."""
        req = attach_requirement(hook, self.features)
        if req.backend is None:
            raise _Fail(req.message.removeprefix(f"{hook.name} "), code=PolicyCode.UNAVAILABLE)
        binary = Path(hook.path)
        if not binary.is_absolute():
            raise _Fail(f"path {hook.path!r}: give the binary's absolute path")
        if not binary.is_file():
            raise _Fail(f"path {hook.path}: no such file", code=PolicyCode.UNAVAILABLE)
        with binary.open("rb") as f:
            head = f.read(20)
        if len(head) < 20 or head[:4] != b"\x7fELF":
            raise _Fail(f"path {hook.path}: not an ELF binary or library")
        # the arguments are read from x86-64 registers
        if head[4] != 2 or int.from_bytes(head[18:20], "little") != _EM_X86_64:
            raise _Fail(f"path {hook.path}: not an x86-64 ELF object; bpfguard reads uprobe "
                        "arguments by the x86-64 calling convention")
        if hook.binary_digests:
            # told here (policy check); the engine verifies again when it
            # attaches, through the descriptor it attaches by
            fd = os.open(binary, os.O_RDONLY | os.O_CLOEXEC)
            try:
                found, has = matching_digest(fd, hook.binary_digests)
            finally:
                os.close(fd)
            if found is None:
                msg = (f"{hook.path} has none of binaryDigests (it has {has})")
                if not hook.ignore_digest_failure:
                    raise _Fail(msg, code=PolicyCode.UNAVAILABLE)
                self.warn(hook, f"{msg}: not attached (ignore.digestVerificationFailure)")
                return []
        n = len(hook.symbols) or len(hook.offsets)
        for key, vals in (("offsets", hook.offsets), ("refCtrOffsets", hook.ref_ctr_offsets)):
            if vals and len(vals) != n:
                what = f"{len(hook.symbols)} symbols" if hook.symbols else f"{n} offsets"
                raise _Fail(f"{key} has {len(vals)} entries for {what}; give one per "
                            "symbol (or none)")
        if n > LIMITS.uprobe_targets:
            raise _Fail(f"{n} symbols; one uprobes entry attaches at most "
                        f"{LIMITS.uprobe_targets} (split it into several entries)")
        targets = tuple((hook.symbols[i] if hook.symbols else "",
                         hook.offsets[i] if hook.offsets else 0,
                         hook.ref_ctr_offsets[i] if hook.ref_ctr_offsets else 0)
                        for i in range(n))
        self.no_resolve(hook, "uprobes: user memory")
        args = [self.uprobe_arg(a.index, a.type, a.size_arg_index, a.label)
                for a in hook.args if a.type != "nop"]
        if len(args) > LIMITS.args:
            raise _Fail(f"{len(args)} arguments; at most {LIMITS.args}")
        args += self.data_args(hook, len(args))
        retarg = self.return_arg(hook, {"string": "STRING"})
        sels = self.selectors(hook, hook.selectors, args, index_is_position=False,
                              retarg=retarg)
        programs = ("bg_pol_uprobe", "bg_pol_uretprobe") if hook.return_ else ("bg_pol_uprobe",)
        return [CompiledHook(hook, "UPROBE", args, sels, ret=hook.return_,
                             ret_type=hook.return_arg.type if hook.return_arg else "int",
                             retarg=retarg, programs=programs, binary=hook.path,
                             targets=targets, digests=hook.binary_digests)]

    def return_arg(self, hook: KProbe | UProbe, kinds: Mapping[str, str]) -> CompiledArg | None:
        """How the engine reads a returnArg that is not an integer (`kinds`:
        the types the hook kind returns, as PT kinds); None for an integer,
        which the event carries as it is."""
        if not hook.return_ or hook.return_arg is None:
            return None
        type_ = hook.return_arg.type
        if type_ in _INT_TYPES or type_ == "fd":
            return None
        if type_ not in kinds:
            raise _Fail(f"returnArg type {type_!r}: bpfguard reads {_one_of_types(kinds)} "
                        "return values here")
        return CompiledArg(kinds[type_], 8, False, 0, RET_ARG, type_, hook.return_arg.label,
                           RET_ARG)

    def uprobe_arg(self, index: int, type_: str, size_arg: int, label: str) -> CompiledArg:
        # read from the registers of the first integer/pointer parameters (the
        # loader keeps index within them)
        return self.user_arg(index, type_, size_arg, label,
                             {"string": "STRING", "char_buf": "CHAR_BUF"},
                             "a user function's argument is a user value (use int types, "
                             "string or char_buf)")

    def user_arg(self, index: int, type_: str, size_arg: int, label: str,
                 kinds: Mapping[str, str], refusal: str) -> CompiledArg:
        """An argument that is a user value: an integer, or a pointer read as
        one of `kinds` (policy type -> PT kind); `refusal` says what else."""
        if type_ in _INT_TYPES:
            size, signed = _INT_TYPES[type_]
            return CompiledArg("INT", size, signed, 0, index, type_, label, index)
        if type_ not in kinds:
            raise _Fail(f"argument {index} of type {type_!r}: {refusal}")
        if type_ == "char_buf" and not size_arg:
            raise _Fail(f"argument {index}: char_buf needs sizeArgIndex")
        return CompiledArg(kinds[type_], 8, False, size_arg, index, type_, label, index)

    def function_hook(self, hook: KProbe | LsmHook) -> CompiledHook:
        """A kernel function (kprobe) or LSM hook, on the programs the probe
        allows: fentry or kprobe, fmod_ret when it may Override, lsm.

        On a kernel without those programs, the hook is still compiled for
        one that has them, so a refusal also names what bpfguard itself would
        still refuse there."""
        req = attach_requirement(hook, self.features)
        if req.backend is not None:
            return self._function_hook(hook, req.backend)
        # the message leads with the hook's name; _Fail's gets it
        lacking = req.message.removeprefix(f"{hook.name} ")
        best = attach_requirement(hook, None).backend
        sets = dataclasses.replace(self.sets, **{k: list(v) for k, v in vars(self.sets).items()})
        try:
            # only where this kernel's BTF can tell (not an LSM hook without BPF LSM)
            if best is not None and self.function_of(_btf_name(hook)) is not None:
                self._function_hook(hook, best)
        except _Fail as exc:
            raise _Fail(lacking, beyond=exc, code=PolicyCode.UNAVAILABLE) from None
        except (BpfguardError, OSError):
            pass  # no BTF to read: the kernel's gap is all there is to say
        finally:
            self.sets = sets  # what the refused hook would have added does not count
        raise _Fail(lacking, code=PolicyCode.UNAVAILABLE)

    def _function_hook(self, hook: KProbe | LsmHook, backend: str) -> CompiledHook:
        lsm = isinstance(hook, LsmHook)
        name = hook.hook if isinstance(hook, LsmHook) else hook.call
        proto = self.function_of(_btf_name(hook))
        if proto is None:
            what = f"LSM hook {name!r}" if lsm else f"kernel function {name!r}"
            raise _Fail(f"this kernel's BTF has no {what} (misspelt, inlined, or not "
                        "in this kernel version)", code=PolicyCode.UNAVAILABLE)
        params, ret_c = proto
        ret = isinstance(hook, KProbe) and hook.return_
        if "fmod_ret" in backend and isinstance(hook, KProbe):
            listed = self.modifiable(name)
            if listed is False:  # the list was read: the policy's error
                raise _Fail(f"Override on {name}: fmod_ret works on security_* functions and "
                            f"on the kernel's error-injection list ({_ERROR_INJECTION_LIST}), "
                            f"and {name} is on neither", code=PolicyCode.BAD_VALUE)
            if listed is None:  # this kernel has no list: another one may
                raise _Fail(f"Override on {name}: fmod_ret works on security_* functions "
                            "only on this kernel, built without the error-injection list "
                            "(CONFIG_FUNCTION_ERROR_INJECTION)", code=PolicyCode.UNAVAILABLE)
        if "fmod_ret" in backend and ret_c == "void":
            raise _Fail(f"Override: {name} returns void, so there is no return value to "
                        "override")
        args = [self.function_arg(hook, name, params, a) for a in hook.args if a.type != "nop"]
        if len(args) > LIMITS.args:
            raise _Fail(f"{len(args)} arguments; at most {LIMITS.args}")
        if isinstance(hook, KProbe):
            args += self.data_args(hook, len(args))
        ret_type = "int"
        retarg = None
        if isinstance(hook, KProbe) and hook.return_arg:
            ret_type = hook.return_arg.type
            retarg = self.return_arg(hook, {"string": "KSTRING", **{
                t: kind for t, (kind, _) in _FUNC_POINTER_ARGS.items()}})
        sels = self.selectors(hook, hook.selectors, args, index_is_position=False,
                              retarg=retarg)
        programs = [_PROGRAMS[b] for b in backend.split("+")]
        if backend == "kprobe" and ret:
            programs.append("bg_pol_kretprobe")
        if any(s.actions & ACT["IMA_HASH"] for s in sels):
            first = params[0][1] if params else ""
            hashed = _IMA_OBJECT.get(first)
            if hashed is None:
                raise _Fail(f"imaHash hashes the file of the hook's first parameter, a "
                            f"struct file * or struct linux_binprm *; {name}'s is "
                            f"{first or 'absent'}")
            # one sleepable copy on each side of bg_pol_lsm (see bg_pol_ima)
            programs = [f"bg_pol_ima_{hashed}_a", *programs, f"bg_pol_ima_{hashed}_b"]
        ret_sock = ""
        if isinstance(hook, KProbe) and hook.return_arg_action:
            if ret_type != "sock":
                raise _Fail(f"returnArgAction {hook.return_arg_action} acts on a returned sock; "
                            f"the returnArg is a {ret_type}", code=PolicyCode.BAD_VALUE)
            ret_sock = hook.return_arg_action
        return CompiledHook(hook, "FUNC", args, sels, ret=ret, ret_type=ret_type, retarg=retarg,
                            ret_sock=ret_sock,
                            function_name=name, nparams=len(params),
                            programs=tuple(programs))

    def function_arg(self, hook: KProbe | LsmHook, fn: str, params: list[tuple[str, str]],
                     arg: Arg) -> CompiledArg:
        index, type_ = arg.index, arg.type
        top = min(len(params), LIMITS.args)
        if not 0 <= index < top:
            # (a function's parameters change between kernels: tty_write's did)
            raise _Fail(f"argument index {index}: {fn} has {len(params)} parameters in this "
                        f"kernel; bpfguard reads the first {LIMITS.args} (0-{top - 1})",
                        code=PolicyCode.UNAVAILABLE if index < LIMITS.args
                        else PolicyCode.UNSUPPORTED)
        pname, ctype = params[index]
        label = arg.label or pname
        if arg.resolve or arg.btf_type:
            start = self.btf().function_ids(_btf_name(hook))[0][index][1]
            return self.resolved_arg(start, arg, label)
        if type_ in _CAP_SETS and ctype.endswith("*"):
            return CompiledArg("INT", 8, False, 0, index, type_, label, index, load=True)
        if type_ in _INT_TYPES or type_ == "fd":
            if ctype.endswith("*"):
                self.warn(hook, f"argument {index} of {fn} is a pointer ({ctype} {pname}); "
                                f"type {type_!r} reads the address itself, as Tetragon does "
                                "(resolve: reads what it points to)")
            if type_ == "fd":
                return CompiledArg("FD", 4, False, 0, index, type_, label, index)
            size, signed = _INT_TYPES[type_]
            return CompiledArg("INT", size, signed, 0, index, type_, label, index)
        if type_ in _STRUCT_ARGS:
            return self.struct_arg(hook, fn, pname, ctype, arg, label)
        if type_ in _FUNC_MEMBER_ARGS:
            read, member, want = _FUNC_MEMBER_ARGS[type_]
            if ctype != want:
                self.warn(hook, f"argument {index} of {fn} is {ctype} {pname}; type "
                                f"{type_!r} reads it as a {want}, as Tetragon does")
            start = self.btf().named_type(want.removesuffix(" *"))
            return dataclasses.replace(self.resolved_arg(
                start, dataclasses.replace(arg, type=read, resolve=member, btf_type=""),
                label, pointee=True), declared=type_)
        if type_ == "char_buf":
            if not arg.size_arg_index:
                raise _Fail(f"argument {index}: char_buf needs sizeArgIndex")
            return CompiledArg("CHAR_BUF", 8, False, arg.size_arg_index, index, type_, label,
                               index)
        if type_ not in _FUNC_POINTER_ARGS:
            raise _Fail(f"argument {index} of type {type_!r} is not read from kernel "
                        "functions by bpfguard (int types, fd, string, char_buf, file, "
                        "path, dentry, linux_binprm, sock, socket, skb, sockaddr, "
                        "sockaddr_un, net_device, cred, kiocb, iov_iter)")
        kind, want = _FUNC_POINTER_ARGS[type_]
        if ctype != want and not (type_ == "sockaddr_un" and ctype == "struct sockaddr *"):
            self.warn(hook, f"argument {index} of {fn} is {ctype} {pname}; type {type_!r} "
                            f"reads it as a {want}, as Tetragon does")
        return CompiledArg(kind, 8, False, 0, index, type_, label, index)

    def struct_arg(self, hook: KProbe | LsmHook, fn: str, pname: str, ctype: str, arg: Arg,
                   label: str) -> CompiledArg:
        """A kernel object shown field by field (_STRUCT_ARGS): the span of
        it that holds the fields, laid out from this kernel's BTF."""
        struct, spec = _STRUCT_ARGS[arg.type]
        if ctype != f"{struct} *":
            self.warn(hook, f"argument {arg.index} of {fn} is {ctype} {pname}; type "
                            f"{arg.type!r} reads it as a {struct} *, as Tetragon does")
        btf = self.btf()
        start = btf.named_type(struct)
        found = []
        for name, path, how in spec:
            try:
                steps, cur, off, _ = resolve_path(btf, start, path, pointee=True)
            except _Fail:
                continue  # not in this kernel's struct: not in its events
            assert not steps, path  # fields inside the struct, no pointer followed
            names: tuple[tuple[int, str], ...] = ()
            if how.startswith("enum:"):
                names = tuple((v, k) for k, v in btf.enum(how[5:]).items())
            found.append((name, off, btf.shape(cur)[1], how, names))
        if not found:
            raise _Fail(f"argument {arg.index}: this kernel's {struct} has none of the fields "
                        f"a {arg.type} argument shows", code=PolicyCode.UNAVAILABLE)
        lo = min(off for _, off, _, _, _ in found)
        hi = max(off + size for _, off, size, _, _ in found)
        if hi - lo > LIMITS.string + 2:  # what the engine copies at most (BG_STR_MAX)
            raise _Fail(f"argument {arg.index}: the fields of this kernel's {struct} span "
                        f"{hi - lo} bytes; the engine copies {LIMITS.string + 2}")
        fields = tuple((n, off - lo, size, how, names) for n, off, size, how, names in found)
        return CompiledArg("BYTES", 8, False, 0, arg.index, arg.type, label, arg.index,
                           steps=((lo, False),), length=hi - lo, fields=fields)

    def resolved_arg(self, start: int, arg: Arg, label: str, *,
                     pointee: bool = False) -> CompiledArg:
        """An argument of BTF type `start` (with `pointee`: that points to a
        `start`) read through its ``resolve`` path (and ``btfType`` cast),
        walked in this kernel's BTF."""
        btf = self.btf()
        index = arg.index
        if arg.btf_type_module:
            btf = self.module_btf(arg.btf_type_module)
        if arg.btf_type:
            try:
                start, pointee = btf.named_type(arg.btf_type), True
            except KeyError:
                where = (f"module {arg.btf_type_module}'s BTF" if arg.btf_type_module
                         else "this kernel's BTF")
                raise _Fail(f"argument {index}: btfType {arg.btf_type!r}: {where} has no such "
                            "struct", code=PolicyCode.UNAVAILABLE) from None
        try:
            steps, cur, off, addressed = resolve_path(btf, start, arg.resolve, pointee=pointee)
        except _Fail as exc:
            raise _Fail(f"argument {index}: {exc}", code=exc.code) from None
        kind, size, _, inner = btf.shape(cur)
        if not addressed:  # no path: the value itself, as without resolve
            kind = "value"
        inner_kind = btf.shape(inner)[0] if kind in ("ptr", "array") else ""
        type_ = arg.type
        if type_ == "auto":
            type_ = "string" if inner_kind == "char" else "uint64" if kind == "ptr" else "int64"
        what = f"argument {index}: resolve {arg.resolve!r} ends at {btf.type_name(cur)}"
        if type_ in _INT_TYPES or type_ == "fd":
            size, signed = _INT_TYPES.get(type_, (4, False))
            if kind == "value":
                return CompiledArg("FD" if type_ == "fd" else "INT", size, signed, 0, index,
                                   type_, label, index)
            # (a small struct too: kernel_cap_t is { u32 cap[2] } or { u64 val })
            if kind not in ("int", "char", "ptr") and not (kind in ("struct", "array")
                                                          and 0 < size <= 8):
                raise _Fail(f"{what}, not an integer", code=PolicyCode.BAD_VALUE)
            steps.append((off, False))
            pt = "FD" if type_ == "fd" else "INT"
            return self._resolved(pt, size, signed, arg, type_, label, steps, True)
        if type_ in ("string", "filename"):
            if kind == "array" and inner_kind == "char":
                steps.append((off, False))
            elif kind == "ptr" and inner_kind == "char":
                steps.append((off, True))
            elif kind != "value":
                raise _Fail(f"{what}; type {type_!r} reads a char array or char *",
                            code=PolicyCode.BAD_VALUE)
            return self._resolved("KSTRING", 8, False, arg, type_, label, steps, False)
        if type_ in _FUNC_POINTER_ARGS:
            pt, want = _FUNC_POINTER_ARGS[type_]
            target = want.removesuffix(" *")
            if kind == "ptr" and btf.type_name(inner) == target:
                steps.append((off, True))
            elif kind == "struct" and btf.type_name(cur) == target:
                steps.append((off, False))
            elif kind != "value":
                raise _Fail(f"{what}; type {type_!r} reads a {want} (or a {target} in place)",
                            code=PolicyCode.BAD_VALUE)
            return self._resolved(pt, 8, False, arg, type_, label, steps, False)
        raise _Fail(f"argument {index} of type {type_!r}: bpfguard resolves integer, fd, "
                    "string, file, path, linux_binprm, sock and cred arguments")

    @staticmethod
    def no_resolve(hook: Hook, where: str) -> None:
        """Refuses resolve and btfType where bpfguard does not walk them yet,
        rather than report the argument itself as if resolved."""
        for a in hook.args:
            if a.resolve or a.btf_type:
                raise _Fail(f"argument {a.index}: resolve/btfType are not served by bpfguard "
                            f"on {where}; kernel functions, LSM hooks and raw tracepoints "
                            "take them")

    def data_args(self, hook: KProbe | UProbe, nargs: int) -> list[CompiledArg]:
        """The hook's data entries, read after its arguments (matchData
        filters them by position)."""
        out = []
        for d in hook.data:
            label = d.label or d.resolve
            if d.source == "current_task":
                task = self.btf().named_type("struct task_struct")
                out.append(dataclasses.replace(
                    self.resolved_arg(task, dataclasses.replace(d, btf_type=""), label,
                                      pointee=True), source="task", data=True))
                continue
            if overrides(hook):
                raise _Fail(f"data {d.resolve!r}: pt_regs data need a kprobe, and a hook that "
                            "may Override runs as fmod_ret, which has no pt_regs")
            # pt_regs: a register by its x86-64 name: a kprobe's or uprobe's,
            # for a syscall hook the task's user registers at the syscall (as
            # Tetragon's kprobe on the syscall wrapper reads them)
            off, size = self.register(d.resolve)
            if d.type not in _INT_TYPES:
                raise _Fail(f"data {d.resolve!r}: a register is an integer, not {d.type!r}",
                            code=PolicyCode.BAD_VALUE)
            isize, signed = _INT_TYPES[d.type]
            out.append(CompiledArg("INT", min(isize, size), signed, 0, off, d.type, label,
                                   d.index, source="reg", data=True))
        if nargs + len(out) > LIMITS.args:
            raise _Fail(f"{nargs} arguments and {len(out)} data entries; the engine reads "
                        f"{LIMITS.args} in all")
        return out

    def register(self, name: str) -> tuple[int, int]:
        """(offset in struct pt_regs, size) of an x86-64 register named as
        Tetragon's asm.RegOffsetSize does: rax, eax, ax, al, r8, r8d, ..."""
        n = name.strip().lower().removeprefix("%")
        m = re.fullmatch(r"r(\d+)([dwb]?)", n)
        if m and 8 <= int(m.group(1)) <= 15:
            member, size = f"r{m.group(1)}", {"": 8, "d": 4, "w": 2, "b": 1}[m.group(2)]
        else:
            legacy = {"ax": "ax", "bx": "bx", "cx": "cx", "dx": "dx", "si": "si", "di": "di",
                      "bp": "bp", "sp": "sp", "ip": "ip"}
            base = n[1:] if n[:1] in ("r", "e") and n[1:] in legacy else n
            size = 8 if n[:1] == "r" else 4 if n[:1] == "e" else 2
            if base not in legacy and len(n) == 2 and n[1] == "l" and n[0] in "abcd":
                base, size = n[0] + "x", 1
            elif n in ("sil", "dil", "bpl", "spl"):  # the low bytes gcc's USDT operands use
                base, size = n[:2], 1
            if base not in legacy:
                raise _Fail(f"data {name!r}: not an x86-64 register name (rax, eax, r8, ...)",
                            code=PolicyCode.BAD_VALUE)
            member = legacy[base]
        btf = self.btf()
        found = btf.member(btf.named_type("struct pt_regs"), member)
        if found is None:
            raise _Fail(f"data {name!r}: this kernel's struct pt_regs has no {member}",
                        code=PolicyCode.UNAVAILABLE)
        return found[0], size

    def _resolved(self, pt: str, size: int, signed: bool, arg: Arg, type_: str, label: str,
                  steps: list[tuple[int, bool]], load: bool) -> CompiledArg:
        if len(steps) > LIMITS.resolve:
            raise _Fail(f"argument {arg.index}: resolve {arg.resolve!r} takes {len(steps)} "
                        f"steps (pointers followed); the engine follows {LIMITS.resolve}")
        return CompiledArg(pt, size, signed, 0, arg.index, type_, label, arg.index,
                           steps=tuple(steps), load=load)

    def _calls(self, call: str) -> list[str]:
        if call.startswith("list:"):
            lst = self.lists.get(call[5:])
            if lst is None:
                raise _Fail(f"no list named {call[5:]!r}")
            if lst.type not in ("syscalls", "generated_syscalls"):
                raise _Fail(f"list {lst.name!r} is of type {lst.type or 'none'}; syscall "
                            "hooks take lists of type syscalls")
            if lst.type == "generated_syscalls":
                return self.every_syscall()
            return list(lst.values)
        return [call]

    def every_syscall(self) -> list[str]:
        """A generated_syscalls list, as Tetragon generates it: every syscall
        of the native ABI whose entry function (``__x64_sys_NAME``) is in
        this kernel's BTF."""
        from ..sensors.syscall_table import syscall_name  # not at the top: see _syscall_ids

        names = [syscall_name(nr) for nr in range(self.nr_max)]
        out = [n for n in names if not n.startswith("syscall_")
               and self.function_of(_function_name(n)) is not None]
        if not out:
            raise _Fail("a generated_syscalls list: this kernel's BTF has none of the syscall "
                        "entry functions", code=PolicyCode.UNAVAILABLE)
        return out

    def syscall_hook(self, hook: KProbe) -> CompiledHook:
        routes: list[int] = []
        for name in self._calls(hook.call):
            for nr, compat in _syscall_ids(name, self.nr_max):
                routes.append(nr + (self.nr_max if compat else 0))
        self.no_resolve(hook, "syscall arguments: user memory")
        args = [self.syscall_arg(a.index, a.type, a.size_arg_index, a.label, a.return_copy)
                for a in hook.args if a.type != "nop"]
        if len(args) > LIMITS.args:
            raise _Fail(f"{len(args)} arguments; at most {LIMITS.args}")
        args += self.data_args(hook, len(args))
        ret_type = hook.return_arg.type if hook.return_arg else "int"
        if hook.return_ and ret_type not in _INT_TYPES and ret_type != "fd":
            raise _Fail(f"returnArg type {ret_type!r}: syscall hooks return integers")
        sels = self.selectors(hook, hook.selectors, args, index_is_position=False)
        # a list's events name the syscall that ran (the engine fills it per event)
        fn = "" if hook.call.startswith("list:") else _function_name(hook.call)
        # returnCopy bytes exist at the return: the event waits for it, as
        # Tetragon's retprobe does, but shows a return value only with return: true
        copies = any(a.type in ("CHAR_BUF_RET", "CHAR_IOVEC_RET") for a in args)
        return CompiledHook(hook, "SYSCALL", args, sels, ret=hook.return_ or copies,
                            reports_return=hook.return_, ret_type=ret_type,
                            syscalls=tuple(dict.fromkeys(routes)), function_name=fn)

    def syscall_arg(self, index: int, type_: str, size_arg: int, label: str,
                    return_copy: bool) -> CompiledArg:
        if not 0 <= index < 6:
            raise _Fail(f"argument index {index}: syscalls have 6 arguments (0-5)")
        if return_copy and type_ == "char_iovec":
            if not size_arg:
                raise _Fail(f"argument {index}: char_iovec needs sizeArgIndex (the count)")
            return CompiledArg("CHAR_IOVEC_RET", 8, False, size_arg, index, type_, label, index)
        if return_copy:
            if type_ != "char_buf":
                raise _Fail(f"argument {index}: returnCopy reads char_buf or char_iovec, not "
                            f"{type_}")
            # as many bytes as the call returned: sizeArgIndex is not needed
            return CompiledArg("CHAR_BUF_RET", 8, False, 0, index, type_, label, index)
        if type_ == "char_iovec" and not size_arg:
            raise _Fail(f"argument {index}: char_iovec needs sizeArgIndex (the count)")
        return self.user_arg(index, type_, size_arg, label,
                             {"string": "STRING", "filename": "STRING", "char_buf": "CHAR_BUF",
                              "char_iovec": "CHAR_IOVEC", "fd": "FD", "sockaddr": "SOCKADDR",
                              "syscall64": "SYSCALL64"},
                             "a syscall argument is a user value (use int, string, char_buf, "
                             "fd or sockaddr)")

    def tracepoint_hook(self, hook: Tracepoint) -> CompiledHook:
        # A tracepoint's matchArgs index is the position in its args list
        # (Tetragon remaps it so), which CompiledArg.index records.
        if hook.raw:
            args = [self.raw_arg(hook, a, pos) for pos, a in enumerate(hook.args)
                    if a.type != "nop"]
            kind = "RAW_TP"
        else:
            self.no_resolve(hook, "tracepoint fields (raw: true reads the arguments, which "
                                  "resolve walks)")
            fields = self.fields_of(hook.subsystem, hook.event)
            if fields is None:
                raise _Fail(f"no tracepoint {hook.subsystem}:{hook.event} on this kernel "
                            "(see /sys/kernel/tracing/events)", code=PolicyCode.UNAVAILABLE)
            args = [self.tp_arg(hook, fields, a.index, a.type, a.label, pos)
                    for pos, a in enumerate(hook.args) if a.type != "nop"]
            kind = "TRACEPOINT"
        if len(args) > LIMITS.args:
            raise _Fail(f"{len(args)} arguments; at most {LIMITS.args}")
        sels = self.selectors(hook, hook.selectors, args, index_is_position=True)
        return CompiledHook(hook, kind, args, sels, subsys=hook.subsystem, event=hook.event)

    def raw_arg(self, hook: Tracepoint, arg: Arg, pos: int) -> CompiledArg:
        index, type_, label = arg.index, arg.type, arg.label
        if not 0 <= index < LIMITS.args:
            raise _Fail(f"argument index {index}: raw tracepoints pass at most "
                        f"{LIMITS.args} arguments (0-{LIMITS.args - 1})")
        if arg.resolve or arg.btf_type:
            # the raw arguments' types: the tracepoint's BTF trace function,
            # whose first parameter is the probe's data (as Tetragon reads them)
            fn = f"__bpf_trace_{hook.event}"
            try:
                params = self.btf().function_ids(fn)[0][1:]
            except KeyError:
                raise _Fail(f"argument {index}: resolve needs the argument's type, and this "
                            f"kernel's BTF has no {fn}", code=PolicyCode.UNAVAILABLE) from None
            if index >= len(params):
                raise _Fail(f"argument index {index}: {hook.name} has {len(params)} "
                            "arguments in this kernel", code=PolicyCode.UNAVAILABLE)
            return dataclasses.replace(self.resolved_arg(params[index][1], arg, label),
                                       src=index, index=pos)
        if type_ in _INT_TYPES:
            size, signed = _INT_TYPES[type_]
            return CompiledArg("INT", size, signed, 0, index, type_, label, pos)
        kinds = {"string": "KSTRING", "file": "FILE", "path": "PATH",
                 "linux_binprm": "BINPRM", "syscall64": "SYSCALL64"}
        if type_ not in kinds:
            raise _Fail(f"argument {index} of type {type_!r} is not read from raw "
                        "tracepoints by bpfguard (int types, string, file, path, "
                        "linux_binprm, syscall64)")
        return CompiledArg(kinds[type_], 8, False, 0, index, type_, label, pos)

    def tp_arg(self, hook: Tracepoint, fields: list[TracepointField], index: int, type_: str,
               label: str, pos: int) -> CompiledArg:
        if not 0 <= index < len(fields):
            raise _Fail(f"argument index {index}: {hook.name} has {len(fields)} fields "
                        f"(0-{len(fields) - 1}, common_* fields included)")
        f = fields[index]
        if f.offset > 0xFFFF:
            raise _Fail(f"field {f.name} at offset {f.offset}")
        size = f.size if f.size in (1, 2, 4, 8) else 8
        user = hook.subsystem == "syscalls"
        if type_ == "auto":
            if f.is_data_loc:
                type_ = "data_loc"
            elif f.is_char_ptr:
                type_ = "string"
            else:
                return CompiledArg("INT", size, f.signed, 0, f.offset, "int64" if f.signed
                                   else "uint64", label or f.name, pos)
        if type_ in _INT_TYPES:
            isize, signed = _INT_TYPES[type_]
            return CompiledArg("INT", min(isize, size), signed, 0, f.offset, type_,
                               label or f.name, pos)
        if type_ in ("string", "filename"):
            return CompiledArg("STRING" if user else "KSTRING", 8, False, 0, f.offset, type_,
                               label or f.name, pos)
        if type_ == "data_loc":
            return CompiledArg("DATA_LOC", 4, False, 0, f.offset, type_, label or f.name, pos)
        if type_ == "syscall64":
            return CompiledArg("SYSCALL64", 8, False, 0, f.offset, type_, label or f.name,
                               pos)
        if type_ == "fd":
            return CompiledArg("FD", size, False, 0, f.offset, type_, label or f.name, pos)
        raise _Fail(f"argument {index} ({f.decl}) of type {type_!r} is not read from "
                    "tracepoints by bpfguard (int types, string, data_loc, fd, syscall64)")

    # -- selectors --

    def selectors(self, hook: Hook, sels: tuple[Selector, ...], args: list[CompiledArg],
                  *, index_is_position: bool, retarg: CompiledArg | None = None
                  ) -> list[CompiledSelector]:
        if len(sels) > LIMITS.selectors:
            raise _Fail(f"{len(sels)} selectors; the engine evaluates {LIMITS.selectors}")
        if not sels:
            return [CompiledSelector()]
        return [self.selector(hook, s, args, index_is_position, retarg) for s in sels]

    def _position(self, args: list[CompiledArg], index: int, positional: bool) -> int:
        for k, a in enumerate(args):
            if a.index == index:
                return k
        what = "position" if positional else "index"
        raise _Fail(f"a filter on argument {what} {index}, which the hook does not read "
                    "(declare it under args)")

    @staticmethod
    def _at_position(hook: Hook, position: int) -> int:
        """The compiled argument of the policy's args entry at `position`
        (nop entries are not read, so they have none)."""
        if position >= len(hook.args) or hook.args[position].type == "nop":
            raise _Fail(f"a filter on args position {position}, which the hook does not "
                        "read", code=PolicyCode.BAD_REFERENCE)
        return sum(1 for a in hook.args[:position] if a.type != "nop")

    def selector(self, hook: Hook, sel: Selector, args: list[CompiledArg],
                 positional: bool, retarg: CompiledArg | None = None) -> CompiledSelector:
        out = CompiledSelector()
        for f in sel.match_args:
            if f.operator == "CelExpr":
                out.filters.append(self.cel_filter(hook, f, args))
                continue
            k = (self._at_position(hook, f.args[0]) if f.args
                 else self._position(args, f.index, positional))
            if f.operator == "CapabilitiesGained":
                out.filters.append(self.caps_gained(hook, f, args, k))
                continue
            out.filters.append(self.arg_filter(f, args[k], k, ret=False))
        data = [k for k, a in enumerate(args) if a.data]  # after the arguments
        for f in sel.match_data:
            pos = f.args[0] if f.args else f.index
            if pos >= len(data):
                raise _Fail(f"matchData on data position {pos}; the hook has {len(data)} "
                            "data entries", code=PolicyCode.BAD_REFERENCE)
            out.filters.append(self.arg_filter(f, args[data[pos]], data[pos], ret=False))
        for f in sel.match_return_args:
            if not isinstance(hook, (KProbe, UProbe)) or not hook.return_:
                raise _Fail("matchReturnArgs needs return: true")
            ret_type = hook.return_arg.type if hook.return_arg else "int"
            out.filters.append(self.arg_filter(f, retarg, RET_ARG, ret=True) if retarg
                               else self.int_filter(f, RET_ARG, ret=True, ret_type=ret_type,
                                                    signed=_INT_TYPES.get(ret_type,
                                                                          (8, True))[1]))
        if len(out.filters) > LIMITS.filters:
            raise _Fail(f"{len(out.filters)} argument filters in one selector; the engine "
                        f"evaluates {LIMITS.filters}")
        self.pids(sel, out)
        self.binaries(sel, out)
        self.namespaces(sel, out)
        self.capabilities(sel, out)
        self.changes(sel, out)
        self.actions(hook, sel, out, args)
        return out

    def cel_filter(self, hook: Hook, f: ArgSelector, args: list[CompiledArg]
                   ) -> CompiledFilter:
        """CelExpr: each value an expression over the args entries (argN is
        entry N); any one true matches, so they are ORed into one program,
        which the engine keeps under a set id of its own."""
        def arg_type(n: int) -> Literal["int", "uint", "int32", "uint32"] | None:
            # integers only, as Tetragon (an fd's or syscall id's upper bits
            # are the caller's to set: a filter on them could be evaded)
            if n >= len(hook.args) or hook.args[n].type == "nop":
                return None
            a = args[self._at_position(hook, n)]
            if a.type != "INT":
                raise CelError(f"arg{n} is {hook.args[n].type!r}: CelExpr reads integer "
                               "arguments (not fd or syscall64, as Tetragon)")
            if a.size <= 4:
                return "int32" if a.is_signed else "uint32"
            return "int" if a.is_signed else "uint"

        ops: list[CelOp] = []
        depth = 0
        for i, text in enumerate(f.values):
            try:
                code, need = compile_cel(text, arg_type)
            except CelError as exc:
                raise _Fail(f"CelExpr: {exc}", code=PolicyCode.BAD_VALUE) from None
            # (ORed after the first: the first result waits under the next one)
            depth = max(depth, need + (1 if i else 0))
            ops += code + ([CelOp("OR")] if i else [])
        if len(self.sets.cel) >= LIMITS.cel_progs:
            raise _Fail(f"CelExpr: more than {LIMITS.cel_progs} CelExpr filters in one policy; "
                        "the engine holds that many in all", code=PolicyCode.LIMIT)
        if len(ops) > LIMITS.cel_ops or depth > LIMITS.cel_stack:
            raise _Fail(f"CelExpr: {len(ops)} instructions and {depth} values at once; the "
                        f"engine runs {LIMITS.cel_ops} and holds {LIMITS.cel_stack}",
                        code=PolicyCode.LIMIT)
        s = self.new_set()
        compiled = []
        for op in ops:
            operand = self._at_position(hook, op.operand) if op.code == "ARG" else op.operand
            compiled.append((op.code, operand))
        self.sets.cel.append((s, tuple(compiled)))
        return CompiledFilter("CEL", 0, False, s)

    def int_filter(self, f: ArgSelector, k: int, *, ret: bool, ret_type: str,
                   signed: bool = True) -> CompiledFilter:
        op = f.operator
        if op in ("InMap", "NotInMap"):
            s = self.new_set()
            for v in f.values:
                for value in self.map_values(v):
                    self.sets.ints.append((s, value))
            return CompiledFilter("IN_SET" if op == "InMap" else "NOT_IN_SET", k, ret, s)
        if op in ("InRange", "NotInRange"):
            return self.range_filter(f, k, ret=ret, signed=signed)
        vals = [_int(v) & _M64 for v in f.values]
        if op in ("Equal", "NotEqual"):
            if len(vals) > LIMITS.values:
                s = self.new_set()
                self.sets.ints.extend((s, v) for v in vals)
                return CompiledFilter("IN_SET" if op == "Equal" else "NOT_IN_SET", k, ret, s)
            return CompiledFilter("EQ" if op == "Equal" else "NEQ", k, ret, 0, tuple(vals))
        if op in ("GT", "GreaterThan", "LT", "LessThan"):
            if len(vals) != 1:
                raise _Fail(f"{op} takes one value, not {len(vals)}")
            return CompiledFilter("GT" if op in ("GT", "GreaterThan") else "LT", k, ret, 0,
                                  tuple(vals))
        if op == "Mask":
            mask = 0
            for value in vals:  # any (x & v) != 0  ==  (x & (v1|v2|...)) != 0
                mask |= value
            return CompiledFilter("MASK", k, ret, 0, (mask,))
        raise _Fail(f"operator {op} does not apply to an integer ({ret_type})")

    def caps_gained(self, hook: Hook, f: ArgSelector, args: list[CompiledArg],
                    k: int) -> CompiledFilter:
        """CapabilitiesGained: args gives the old capability set, then the
        new (Tetragon's order); it holds when the new one has a capability
        the old lacks. `values`, which Tetragon does not read, narrows that
        to the capabilities listed (bpfguard's)."""
        if len(f.args) != 2:
            raise _Fail("CapabilitiesGained compares two arguments: give both in args "
                        "(the old set, then the new)", code=PolicyCode.BAD_VALUE)
        new = self._at_position(hook, f.args[1])
        for a in (args[k], args[new]):
            if a.declared not in _CAP_SETS:
                raise _Fail(f"CapabilitiesGained compares capability sets "
                            f"({', '.join(sorted(_CAP_SETS))}), not {a.declared}",
                            code=PolicyCode.BAD_VALUE)
        mask = 0 if f.values else _M64
        for v in f.values:
            if v not in _CAPS:
                raise _Fail(f"unknown capability {v!r}", code=PolicyCode.BAD_VALUE)
            mask |= 1 << _CAPS[v]
        return CompiledFilter("CAPS_GAINED", k, 0, 0, (new, mask))

    def range_filter(self, f: ArgSelector, k: int, *, ret: bool,
                     signed: bool) -> CompiledFilter:
        """InRange/NotInRange: inclusive ranges ``low:high`` (or one value),
        compared as the argument's type is signed or not; more ranges than
        fit inline become an integer set when they hold few values."""
        pairs = []
        for v in f.values:
            lo_text, sep, hi_text = v.partition(":")
            lo, hi = _int(lo_text), _int(hi_text) if sep else _int(lo_text)
            if hi < lo:
                raise _Fail(f"range {v!r}: the low end comes first", code=PolicyCode.BAD_VALUE)
            pairs.append((lo, hi))
        inside = f.operator == "InRange"
        if len(pairs) * 2 <= LIMITS.values:
            name = ("IN_" if inside else "NOT_IN_") + ("SRANGE" if signed else "RANGE")
            return CompiledFilter(name, k, ret, 0, tuple(x & _M64 for p in pairs for x in p))
        if sum(hi - lo + 1 for lo, hi in pairs) > 65536:
            raise _Fail(f"{len(pairs)} ranges of {f.operator}: the engine holds "
                        f"{LIMITS.values // 2} ranges, or ranges of 65536 values in all",
                        code=PolicyCode.LIMIT)
        s = self.new_set()
        self.sets.ints.extend((s, x & _M64) for lo, hi in pairs for x in range(lo, hi + 1))
        return CompiledFilter("IN_SET" if inside else "NOT_IN_SET", k, ret, s)

    def map_values(self, v: str) -> list[int]:
        if v.startswith("list:"):
            lst = self.lists.get(v[5:])
            if lst is None:
                raise _Fail(f"no list named {v[5:]!r}")
            if lst.type not in ("syscalls",):
                raise _Fail(f"InMap on list {lst.name!r} of type {lst.type or 'none'}: "
                            "bpfguard takes syscalls lists here")
            out = []
            for name in lst.values:
                for nr, compat in _syscall_ids(name, self.nr_max):
                    out.append(nr | (_COMPAT_BIT if compat else 0))
            return out
        if ":" in v:
            lo, hi = (_int(x) for x in v.split(":", 1))
            if hi < lo or hi - lo > 65535:
                raise _Fail(f"range {v!r}: at most 65536 values, low first")
            return [x & _M64 for x in range(lo, hi + 1)]
        return [_int(v) & _M64]

    def arg_filter(self, f: ArgSelector, a: CompiledArg, k: int, *, ret: bool) -> CompiledFilter:
        op = f.operator
        if op in ("SubString", "SubStringIgnCase"):
            raise _Fail(f"operator {op} is not served by bpfguard yet")
        if op == "CelExpr":  # (matchArgs' are compiled by cel_filter)
            raise _Fail("CelExpr is served in matchArgs; in matchReturnArgs and matchData "
                        "not by bpfguard yet")
        if op == "CapabilitiesGained":
            raise _Fail("CapabilitiesGained compares two arguments: give both in args "
                        "(the old set, then the new)", code=PolicyCode.BAD_VALUE)
        if a.type in ("INT", "SYSCALL64"):
            return self.int_filter(f, k, ret=ret, ret_type=a.declared, signed=a.is_signed)
        if op in ("FileType", "NotFileType"):
            if a.type not in ("FILE", "PATH", "FD", "BINPRM"):
                raise _Fail(f"{op} filters file and path arguments, not {a.declared}",
                            code=PolicyCode.BAD_VALUE)
            types = tuple(dict.fromkeys(FILE_TYPES[v] for v in f.values))
            return CompiledFilter("FILE_TYPE" if op == "FileType" else "NOT_FILE_TYPE", k,
                                  int(ret), 0, types)
        if a.type == "SOCKADDR_UN":  # the family, and sun_path as a string
            filt = (self.sock_filter(f, k) if op == "Family" else self.string_filter(f, k))
            return dataclasses.replace(filt, ret=int(ret))
        if a.type in _STRING_TYPES:
            return dataclasses.replace(self.string_filter(f, k), ret=int(ret))
        if a.type in ("SOCKADDR", "SOCK", "SKB"):  # sockaddr: the one address is both ends
            return dataclasses.replace(self.sock_filter(f, k), ret=int(ret))
        if a.type in ("CHAR_BUF_RET", "CHAR_IOVEC_RET"):
            raise _Fail(f"matchArgs on argument {a.index}: its returnCopy bytes exist only at "
                        "return, and bpfguard filters arguments at entry")
        raise _Fail(f"operator {op} on a {a.declared} argument")

    def string_filter(self, f: ArgSelector, k: int) -> CompiledFilter:
        op = f.operator
        s = self.new_set()
        vals = [v.encode() for v in f.values]
        if op in ("Equal", "NotEqual"):
            for v in vals:
                if len(v) > LIMITS.string:
                    raise _Fail(f"a value of {len(v)} bytes; strings match up to "
                                f"{LIMITS.string}")
                self.sets.strs.append((s, len(v), string_hash(self.seed, v)))
            return CompiledFilter("STR_EQ" if op == "Equal" else "STR_NEQ", k, False, s)
        if op in ("Prefix", "NotPrefix", "Postfix", "NotPostfix"):
            post = "Postfix" in op
            for v in vals:
                if len(v) > LIMITS.prefix:
                    raise _Fail(f"{op} value of {len(v)} bytes; at most {LIMITS.prefix}")
                if post:
                    self.sets.postfixes.append((s, v[::-1]))
                else:
                    self.sets.prefixes.append((s, v))
            name = ("NOT_" if op.startswith("Not") else "") + ("POSTFIX" if post else "PREFIX")
            return CompiledFilter(name, k, False, s)
        raise _Fail(f"operator {op} does not apply to a string or path")

    def sock_filter(self, f: ArgSelector, k: int) -> CompiledFilter:
        op = f.operator
        if op in ("SAddr", "NotSAddr", "DAddr", "NotDAddr"):
            s = self.new_set()
            for v in f.values:
                try:
                    net = ipaddress.ip_network(v.strip(), strict=False)
                except ValueError:
                    raise _Fail(f"{v!r} is not an address or CIDR") from None
                if net.version == 4:
                    addr = b"\0" * 10 + b"\xff\xff" + net.network_address.packed
                    bits = 96 + net.prefixlen
                else:
                    addr, bits = net.network_address.packed, net.prefixlen
                self.sets.addrs.append((s, bits, addr))
            name = {"SAddr": "SADDR", "NotSAddr": "NOT_SADDR", "DAddr": "DADDR",
                    "NotDAddr": "NOT_DADDR"}[op]
            return CompiledFilter(name, k, False, s)
        if op in ("SPort", "NotSPort", "DPort", "NotDPort") and (
                len(f.values) > LIMITS.values or any(":" in v for v in f.values)):
            # ranges (a:b) and long lists: an integer set of the ports
            s = self.new_set()
            for v in f.values:
                lo, _, hi = v.partition(":")
                self.sets.ints.extend((s, p) for p in range(_int(lo), _int(hi or lo) + 1))
            name = {"SPort": "SPORT_IN_SET", "NotSPort": "NOT_SPORT_IN_SET",
                    "DPort": "DPORT_IN_SET", "NotDPort": "NOT_DPORT_IN_SET"}[op]
            return CompiledFilter(name, k, False, s)
        simple = {"SPort": "SPORT", "NotSPort": "NOT_SPORT", "DPort": "DPORT",
                  "NotDPort": "NOT_DPORT", "Protocol": "PROTOCOL", "Family": "FAMILY",
                  "State": "STATE"}
        if op in simple:
            table = {"Protocol": _PROTOCOLS, "Family": _FAMILIES, "State": _TCP_STATES}.get(op, {})
            vals = tuple(table[v] if v in table else _int(v) for v in f.values)
            if len(vals) > LIMITS.values:
                raise _Fail(f"{len(vals)} values; {op} takes at most {LIMITS.values}")
            return CompiledFilter(simple[op], k, False, 0, vals)
        priv = {"SPortPriv": "SPORT_PRIV", "NotSPortPriv": "NOT_SPORT_PRIV",
                "NotSportPriv": "NOT_SPORT_PRIV", "DPortPriv": "DPORT_PRIV",
                "NotDPortPriv": "NOT_DPORT_PRIV"}
        if op in priv:
            return CompiledFilter(priv[op], k)
        raise _Fail(f"operator {op} does not apply to a socket address")

    def pids(self, sel: Selector, out: CompiledSelector) -> None:
        if not sel.match_pids:
            return
        flags = set()
        pids: set[int] | None = None
        for p in sel.match_pids:
            f = (PID_FLAG["NOT_IN"] if p.operator == "NotIn" else 0) | \
                (PID_FLAG["NS"] if p.is_namespace_pid else 0) | \
                (PID_FLAG["FOLLOW"] if p.follow_forks else 0)
            flags.add(f)
            vals = set(p.values)
            # AND of NotIn filters: not in the union; AND of In filters: in the intersection
            if pids is None:
                pids = vals
            elif f & PID_FLAG["NOT_IN"]:
                pids = pids | vals
            else:
                pids = pids & vals
        if len(flags) > 1:
            raise _Fail("matchPIDs filters with different operators or flags in one "
                        "selector; bpfguard evaluates one (Tetragon only the first)")
        assert pids is not None
        if len(pids) > LIMITS.values:
            raise _Fail(f"{len(pids)} pids in matchPIDs; at most {LIMITS.values}")
        out.pid_flags = flags.pop()
        out.pids = tuple(sorted(pids))
        if not out.pids and not out.pid_flags & PID_FLAG["NOT_IN"]:
            raise _Fail("matchPIDs In filters with no pid in common match nothing")

    def _binaries(self, filters: tuple[BinarySelector, ...], what: str
                  ) -> tuple[int, int, tuple[str, ...] | None]:
        if not filters:
            return 0, 0, None
        if len(filters) > 1:
            raise _Fail(f"{len(filters)} {what} filters; Tetragon and bpfguard take one")
        f = filters[0]
        s = self.new_set()
        for v in f.values:
            b = v.encode()
            if f.operator in ("In", "NotIn"):
                self.sets.strs.append((s, len(b), string_hash(self.seed, b)))
            elif len(b) > LIMITS.prefix:
                raise _Fail(f"{what} {f.operator} value of {len(b)} bytes; at most "
                            f"{LIMITS.prefix}")
            elif "Postfix" in f.operator:
                self.sets.postfixes.append((s, b[::-1]))
            else:
                self.sets.prefixes.append((s, b))
        return BIN_OP[f.operator], s, f.values if f.follow_children else None

    def binaries(self, sel: Selector, out: CompiledSelector) -> None:
        out.bin_op, out.bin_set, out.bin_follow = self._binaries(sel.match_binaries,
                                                                 "matchBinaries")
        out.pbin_op, out.pbin_set, out.pbin_follow = self._binaries(
            sel.match_parent_binaries, "matchParentBinaries")

    def namespaces(self, sel: Selector, out: CompiledSelector) -> None:
        if len(sel.match_namespaces) > LIMITS.ns_filters:
            raise _Fail(f"{len(sel.match_namespaces)} matchNamespaces filters; at most "
                        f"{LIMITS.ns_filters}")
        for f in sel.match_namespaces:
            if f.namespace not in NS_KIND:
                raise _Fail(f"namespace {f.namespace!r}")
            vals = []
            for v in f.values:
                if v == "host_ns":
                    try:
                        vals.append(os.stat(f"{self.ns_root}/{NS_PROC[f.namespace]}").st_ino)
                    except OSError as exc:
                        raise _Fail(f"host_ns for {f.namespace}: {exc.strerror}") from None
                else:
                    vals.append(_int(v))
            if len(vals) > LIMITS.ns_values:
                raise _Fail(f"{len(vals)} values in matchNamespaces; at most "
                            f"{LIMITS.ns_values}")
            out.ns.append((NS_KIND[f.namespace], f.operator == "NotIn", tuple(vals)))

    def capabilities(self, sel: Selector, out: CompiledSelector) -> None:
        if not sel.match_capabilities:
            return
        if len(sel.match_capabilities) > 1:
            raise _Fail("more than one matchCapabilities filter in a selector")
        f = sel.match_capabilities[0]
        out.cap_op = 1 if f.operator == "In" else 2
        out.cap_type = CAP_TYPE.get(f.type, 0)
        out.cap_mask = self.cap_mask(f.values)
        out.cap_userns = self.host_userns() if f.is_namespace_capability else 0

    @staticmethod
    def cap_mask(values: tuple[str, ...]) -> int:
        mask = 0
        for v in values:
            if v not in _CAPS:
                raise _Fail(f"unknown capability {v!r}")
            mask |= 1 << _CAPS[v]
        return mask

    def host_userns(self) -> int:
        """isNamespaceCapability: the host's user namespace (Tetragon's
        /proc/1/ns/user), where the filter does not match."""
        try:
            return os.stat(f"{self.ns_root}/user").st_ino
        except OSError as exc:
            raise _Fail(f"isNamespaceCapability: the host's user namespace "
                        f"({self.ns_root}/user): {exc.strerror}",
                        code=PolicyCode.UNAVAILABLE) from None

    def changes(self, sel: Selector, out: CompiledSelector) -> None:
        """matchNamespaceChanges and matchCapabilityChanges: compared with
        what the process had at exec (the engine records it then)."""
        for key, filters in (("matchNamespaceChanges", sel.match_namespace_changes),
                             ("matchCapabilityChanges", sel.match_capability_changes)):
            if len(filters) > 1:
                raise _Fail(f"more than one {key} filter in a selector (as in Tetragon)",
                            code=PolicyCode.BAD_VALUE)
        if sel.match_namespace_changes:
            n = sel.match_namespace_changes[0]
            out.nsc_op = 1 if n.operator == "In" else 2
            out.nsc_mask = sum(1 << NS_KIND[v] for v in dict.fromkeys(n.values))
        if sel.match_capability_changes:
            c = sel.match_capability_changes[0]
            out.capc_op = 1 if c.operator == "In" else 2
            out.capc_type = CAP_TYPE.get(c.type, 0)
            out.capc_mask = self.cap_mask(c.values)
            userns = self.host_userns() if c.is_namespace_capability else 0
            if out.cap_op and userns != out.cap_userns:
                raise _Fail("matchCapabilities and matchCapabilityChanges of one selector "
                            "with different isNamespaceCapability: bpfguard checks the "
                            "user namespace once per selector; split them into two "
                            "selectors")
            out.cap_userns = userns

    def actions(self, hook: Hook, sel: Selector, out: CompiledSelector,
                args: list[CompiledArg]) -> None:
        enforcing: list[str] = []
        agent: list[tuple[str, str]] = []
        sock_args: list[int] = []

        def bits(acts: tuple[Action, ...]) -> int:
            del enforcing[:]  # the names of this list of actions only
            del agent[:]
            del sock_args[:]
            b = 0
            for a in acts:
                if a.action == "NotifyEnforcer":
                    if not self.policy.enforcers:
                        raise _Fail("NotifyEnforcer arms the policy's enforcers, and it has "
                                    "none (spec.enforcers)", code=PolicyCode.BAD_VALUE)
                    out.notify = 1
                    out.notify_error = a.arg_error or 0
                    out.notify_sig = a.arg_sig or 0
                    enforcing.append("NotifyEnforcer")
                    continue
                if a.action in _NOT_SUPPORTED:
                    raise _Fail(f"{a.action}: {_NOT_SUPPORTED[a.action]}")
                if a.kernel_stack_trace or a.user_stack_trace:
                    if not isinstance(hook, KProbe):
                        # the loader allows them with Post only
                        raise _Fail("kernelStackTrace/userStackTrace: Tetragon's events carry "
                                    "stack traces on kprobes only (process_kprobe)",
                                    code=PolicyCode.BAD_VALUE)
                    out.stacks |= ((STACK["KERNEL"] if a.kernel_stack_trace else 0)
                                   | (STACK["USER"] if a.user_stack_trace else 0))
                if a.ima_hash and not isinstance(hook, LsmHook):
                    raise _Fail("imaHash: bpfguard hashes files on lsmhooks hooks (the hash "
                                "is taken in a sleepable BPF LSM program)")
                if a.action == "Post":
                    b |= ACT["POST"] | (ACT["IMA_HASH"] if a.ima_hash else 0)
                    if a.rate_limit:
                        ms = parse_rate(a.rate_limit)
                        if ms is None:
                            raise _Fail(f"rateLimit {a.rate_limit!r}: a number with s, m or h")
                        out.rate_ms = ms
                        out.rate_scope = RATE_SCOPE.get(a.rate_limit_scope or "thread", 0)
                elif a.action == "NoPost":
                    b |= ACT["NOPOST"]
                elif a.action in ("TrackSock", "UntrackSock"):
                    # argSock: a position in args (Tetragon's argsoff[socki])
                    k = self._at_position(hook, a.arg_sock or 0)
                    if args[k].type != "SOCK":
                        raise _Fail(f"{a.action}: argSock {a.arg_sock or 0} is a "
                                    f"{args[k].declared}, not a sock or socket",
                                    code=PolicyCode.BAD_VALUE)
                    b |= ACT["POST"] | ACT["TRACK_SOCK" if a.action == "TrackSock"
                                           else "UNTRACK_SOCK"]
                    sock_args.append(k)
                elif a.action in ("GetUrl", "DnsLookup"):
                    b |= ACT["POST"]
                    agent.append((a.action, a.arg_url if a.action == "GetUrl" else a.arg_fqdn))
                elif a.action == "Set":  # (usdt_hooks checked its argument)
                    if not isinstance(hook, Usdt):  # (a Policy built without the loader)
                        raise _Fail("Set writes a USDT probe's argument: usdts only",
                                    code=PolicyCode.BAD_VALUE)
                    if out.set_arg:
                        raise _Fail("two Set actions in one selector: bpfguard writes one "
                                    "argument per match; use one Set per selector")
                    out.set_arg = 1 + _set_position(hook, a)
                    out.set_value = a.arg_value
                    enforcing.append("Set")
                elif a.action == "Sigkill":
                    b |= ACT["SIGKILL"]
                    enforcing.append("Sigkill")
                elif a.action == "Signal":
                    if a.arg_sig is None or not 0 < a.arg_sig < 65:
                        raise _Fail("Signal needs argSig (1-64)")
                    b |= ACT["SIGNAL"]
                    out.signal = a.arg_sig
                    enforcing.append("Signal")
                elif a.action == "Override":
                    if isinstance(hook, KProbe) and hook.syscall:
                        raise self.syscall_override(a.action, _SYSCALL_OVERRIDE)
                    if not isinstance(hook, (KProbe, LsmHook)):
                        raise _Fail("Override changes a function's return value: it needs a "
                                    "kprobe on a kernel function or an lsmhooks hook")
                    if not a.arg_error:
                        # 0 is what fmod_ret and LSM programs return to change nothing
                        raise _Fail("Override needs a nonzero argError: the value the "
                                    "function returns instead (a negative errno, or a "
                                    "value its callers read, like 1 from "
                                    "security_inode_copy_up_xattr)")
                    b |= ACT["OVERRIDE"]
                    out.error = a.arg_error
                    enforcing.append("Override")
            return b

        entry = bits(sel.match_actions)
        entry_enforcing, out.call_agent = list(enforcing), tuple(agent)
        out.sock_arg = sock_args[-1] if sock_args else 0
        ret = bits(sel.match_return_actions)
        ret_enforcing, out.ret_agent = list(enforcing), tuple(agent)
        out.ret_sock_arg = sock_args[-1] if sock_args else 0
        if ret & ACT["OVERRIDE"]:
            raise _Fail("Override in matchReturnActions: the function has returned by then; "
                        "use matchActions")
        if "NotifyEnforcer" in ret_enforcing:
            raise _Fail("NotifyEnforcer in matchReturnActions: bpfguard arms the enforcers at "
                        "the call; use matchActions")
        if sel.match_return_actions and not (isinstance(hook, (KProbe, UProbe))
                                             and hook.return_):
            raise _Fail("matchReturnActions needs return: true")
        out.actions = entry if sel.match_actions else ACT["POST"]
        out.ret_actions = ret
        out.enforcing = tuple(dict.fromkeys(entry_enforcing + ret_enforcing))
        out.call_enforcing = tuple(dict.fromkeys(entry_enforcing))
        out.ret_enforcing = tuple(dict.fromkeys(ret_enforcing))


def compile_policy(policy: Policy, *, nr_max: int = 512, seed: int = 0,
                   next_set: Callable[[], int] | None = None,
                   fields_of: Callable[[str, str], list[TracepointField] | None]
                   = tracepoint_fields,
                   ns_root: str | None = None,
                   function_of: Callable[[str], FunctionProto | None] | None = None,
                   btf_of: Callable[[], Btf] | None = None,
                   features: FeatureSet | Mapping[str, bool] | None = None) -> CompiledPolicy:
    """Compile `policy` for the in-kernel engine, or raise PolicyError naming
    every hook that cannot be served here and why (at the hook's line).

    `next_set` hands out set ids (the engine's allocator; a counter by
    default), `seed` is the engine's exact-string hash key, `fields_of`
    reads tracepoint formats (tracefs by default), `ns_root` is where
    ``host_ns`` namespaces are read (default: :func:`host_ns_root`),
    `function_of` reads kernel function prototypes (by default from the BTF
    `btf_of` opens),
    `btf_of` opens the BTF that ``resolve`` paths are walked in (the kernel's),
    `features` (the probe's verdicts) picks the programs of kernel-function
    and LSM hooks; None picks the best (fentry, fmod_ret, lsm).
    """
    counter = iter(range(1, 1 << 31))
    return _Compiler(policy, nr_max=nr_max, seed=seed,
                     next_set=next_set or (lambda: next(counter)), fields_of=fields_of,
                     ns_root=ns_root or host_ns_root(), function_of=function_of,
                     btf_of=btf_of or _vmlinux_btf, features=features).compile()


def _vmlinux_btf() -> Btf:
    from ..loader.btf import Btf

    return Btf.vmlinux()


def host_ns_root(proc: str = "/proc") -> str:
    """Where the host's namespaces can be read: kthreadd's (pid 2), which
    always lives in the initial namespaces, else pid 1's (a pid namespace of
    our own; also where a sandboxing init hides its namespaces from root)."""
    try:
        if Path(proc, "2", "comm").read_text().strip() == "kthreadd":
            return f"{proc}/2/ns"
    except OSError:
        pass
    return f"{proc}/1/ns"

