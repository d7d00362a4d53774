"""Tetragon TracingPolicy, as typed data, and what a policy needs from the kernel.

The model mirrors the ``cilium.io/v1alpha1`` CRD (Tetragon's
``pkg/k8s/apis/cilium.io/v1alpha1/types.go`` and
``tracing_policy_types.go``): one dataclass per Go struct, field names in
snake_case, defaults as the CRD's ``+kubebuilder:default`` markers give them
(notably ``syscall: true`` for kprobes and ``type: auto`` for arguments).
Every hook keeps the :class:`~bpfguard.rules.model.Context` it was read from,
so that whatever is said about it later (a missing kernel feature) can point
at the file and line.

:func:`requirements` says, for each hook and enforcement action, which kernel
feature bpfguard would use and whether this kernel has it. It is a pure
function of a policy and a feature map, so it is tested with fake kernels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from ..rules.model import Context, Problem

__all__ = [
    "ACTIONS",
    "ARG_OPERATORS",
    "ARG_TYPES",
    "FILE_TYPES",
    "Action",
    "attach_requirement",
    "has_feature",
    "is_syscall_hook",
    "overrides",
    "Arg",
    "ArgSelector",
    "BinarySelector",
    "CapabilitiesSelector",
    "LabelSelector",
    "Enforcer",
    "FeatureSet",
    "Hook",
    "KProbe",
    "ListSpec",
    "LsmHook",
    "NamespaceChangesSelector",
    "NamespaceSelector",
    "Option",
    "PIDSelector",
    "Policy",
    "Requirement",
    "Selector",
    "Tracepoint",
    "UProbe",
    "Usdt",
    "requirements",
]

ARG_TYPES: Final = frozenset({
    "auto", "int", "sint8", "int8", "uint8", "sint16", "int16", "uint16", "uint32", "sint32",
    "int32", "ulong", "uint64", "size_t", "long", "sint64", "int64", "char_buf", "char_iovec",
    "skb", "sock", "sockaddr", "socket", "sockaddr_un", "string", "fd", "file", "filename",
    "path", "nop", "bpf_attr", "perf_event", "bpf_map", "user_namespace", "capability",
    "kiocb", "iov_iter", "cred", "const_buf", "load_info", "module", "syscall64",
    "kernel_cap_t", "cap_inheritable", "cap_permitted", "cap_effective", "linux_binprm",
    "data_loc", "net_device", "bpf_cmd", "dentry", "bpf_prog",
})
"""Argument types: the CRD's ``KProbeArg.Type`` enum (Tetragon 4fbfe2d74)."""

ARG_OPERATORS: Final = frozenset({
    "Equal", "NotEqual", "Prefix", "NotPrefix", "Postfix", "NotPostfix", "GreaterThan",
    "LessThan", "GT", "LT", "Mask", "SPort", "NotSPort", "SPortPriv", "NotSportPriv",
    "NotSPortPriv", "DPort", "NotDPort", "DPortPriv", "NotDPortPriv", "SAddr", "NotSAddr",
    "DAddr", "NotDAddr", "Protocol", "Family", "State", "InMap", "NotInMap",
    "CapabilitiesGained", "InRange", "NotInRange", "SubString", "SubStringIgnCase",
    "CelExpr", "FileType", "NotFileType",
})
"""``matchArgs``/``matchReturnArgs`` operators (the CRD's ``ArgSelector.Operator``
enum; ``NotSportPriv`` is Tetragon's historical spelling, ``NotSPortPriv`` the
later one)."""

FILE_TYPES: Final = {"sock": 0o140000, "socket": 0o140000, "lnk": 0o120000, "link": 0o120000,
                     "reg": 0o100000, "regular": 0o100000, "blk": 0o060000,
                     "block": 0o060000, "dir": 0o040000, "chr": 0o020000, "char": 0o020000,
                     "fifo": 0o010000, "pipe": 0o010000}
"""FileType/NotFileType values, as Tetragon's fileTypeTable names them, and
the S_IFMT bits of each."""

ACTIONS: Final = frozenset({
    "Post", "FollowFD", "UnfollowFD", "Sigkill", "CopyFD", "Override", "GetUrl", "DnsLookup",
    "NoPost", "Signal", "TrackSock", "UntrackSock", "NotifyEnforcer", "Set",
})
"""``matchActions``/``matchReturnActions`` actions (``ActionSelector.Action``)."""

ENFORCING_ACTIONS: Final = frozenset({"Sigkill", "Signal", "Override", "NotifyEnforcer",
                                     "Set"})
"""Actions that change what the traced process sees; ``policy-mode: monitor``
turns them off, as in Tetragon."""


@dataclass(frozen=True)
class Arg:
    """A hook argument to read (``KProbeArg``). `size_arg_index` is 1-based
    (0: none), as in Tetragon: ``sizeArgIndex: 3`` names the third argument."""

    index: int
    type: str = "auto"
    label: str = ""
    size_arg_index: int = 0
    return_copy: bool = False
    max_data: bool = False
    resolve: str = ""  # a field path read through the argument (Tetragon's resolve)
    btf_type: str = ""  # the struct the argument points to, for resolve (btfType)
    btf_type_module: str = ""  # the kernel module whose BTF has btf_type (btfTypeModule)
    # a data entry's source: current_task (resolve from the task), pt_regs
    # (resolve names a register); "" for an argument
    source: str = ""


@dataclass(frozen=True)
class ArgSelector:
    """A ``matchArgs``/``matchReturnArgs`` filter of one argument. `index`
    names it as Tetragon does: for kprobes, LSM hooks and uprobes the first
    argument with that ``index``, for tracepoints the position in the hook's
    ``args`` list. ``args`` (later Tetragon releases) gives the position
    instead, for every hook kind; Tetragon reads its first entry only."""

    operator: str
    values: tuple[str, ...] = ()
    index: int = 0
    args: tuple[int, ...] = ()


@dataclass(frozen=True)
class PIDSelector:
    """A ``matchPIDs`` filter."""

    operator: str
    values: tuple[int, ...]
    is_namespace_pid: bool = False
    follow_forks: bool = False


@dataclass(frozen=True)
class BinarySelector:
    """A ``matchBinaries``/``matchParentBinaries`` filter."""

    operator: str
    values: tuple[str, ...]
    follow_children: bool = False


@dataclass(frozen=True)
class NamespaceSelector:
    """A ``matchNamespaces`` filter: namespace IDs, or ``host_ns``."""

    namespace: str
    operator: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class NamespaceChangesSelector:
    """A ``matchNamespaceChanges`` filter: namespace kinds (``Mnt``, ``Pid``...)."""

    operator: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class CapabilitiesSelector:
    """A ``matchCapabilities``/``matchCapabilityChanges`` filter."""

    operator: str
    values: tuple[str, ...]
    type: str = "Effective"
    is_namespace_capability: bool = False


@dataclass(frozen=True)
class Action:
    """A ``matchActions``/``matchReturnActions`` entry. Integer arguments are
    None when not given, so that "Override without argError" is visible."""

    action: str
    arg_error: int | None = None
    arg_sig: int | None = None
    arg_fd: int | None = None
    arg_name: int | None = None
    arg_sock: int | None = None
    arg_url: str = ""
    arg_fqdn: str = ""
    arg_index: int = 0   # Set: the USDT argument written ...
    arg_value: int = 0   # ... with this 32-bit value
    rate_limit: str = ""
    rate_limit_scope: str = ""
    kernel_stack_trace: bool = False
    user_stack_trace: bool = False
    ima_hash: bool = False


@dataclass(frozen=True)
class Selector:
    """One selector: its filters are ANDed; a hook's selectors are ORed."""

    match_pids: tuple[PIDSelector, ...] = ()
    match_args: tuple[ArgSelector, ...] = ()
    match_return_args: tuple[ArgSelector, ...] = ()
    match_binaries: tuple[BinarySelector, ...] = ()
    match_parent_binaries: tuple[BinarySelector, ...] = ()
    match_namespaces: tuple[NamespaceSelector, ...] = ()
    match_namespace_changes: tuple[NamespaceChangesSelector, ...] = ()
    match_capabilities: tuple[CapabilitiesSelector, ...] = ()
    match_capability_changes: tuple[CapabilitiesSelector, ...] = ()
    match_actions: tuple[Action, ...] = ()
    match_return_actions: tuple[Action, ...] = ()
    match_data: tuple[ArgSelector, ...] = ()  # on the hook's data entries, by position

    @property
    def actions(self) -> tuple[Action, ...]:
        """Every action, on entry and on return."""
        return self.match_actions + self.match_return_actions


@dataclass(frozen=True)
class KProbe:
    """A ``kprobes`` entry: a kernel function, or a syscall (``syscall``,
    true by default as in the CRD). `call` may be ``list:NAME``."""

    call: str
    context: Context = field(compare=False, repr=False)
    syscall: bool = True
    return_: bool = False
    message: str = ""
    args: tuple[Arg, ...] = ()
    return_arg: Arg | None = None
    return_arg_action: str = ""
    data: tuple[Arg, ...] = ()  # values read beside the arguments (source: ...)
    selectors: tuple[Selector, ...] = ()
    tags: tuple[str, ...] = ()
    ignore_call_not_found: bool = False
    fentry: bool = False  # from ``fentries``: BPF trampolines only, no kprobe fallback

    @property
    def name(self) -> str:
        """What the hook attaches to, for messages."""
        return self.call


@dataclass(frozen=True)
class Tracepoint:
    """A ``tracepoints`` entry; `raw` asks for a BTF raw tracepoint."""

    subsystem: str
    event: str
    context: Context = field(compare=False, repr=False)
    raw: bool = False
    message: str = ""
    args: tuple[Arg, ...] = ()
    selectors: tuple[Selector, ...] = ()
    tags: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """``subsystem:event``, for messages."""
        return f"{self.subsystem}:{self.event}"


@dataclass(frozen=True)
class LsmHook:
    """An ``lsmhooks`` entry: a BPF LSM hook (``file_open``, without the
    ``security_`` prefix)."""

    hook: str
    context: Context = field(compare=False, repr=False)
    message: str = ""
    args: tuple[Arg, ...] = ()
    selectors: tuple[Selector, ...] = ()
    tags: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The hook, for messages."""
        return self.hook


@dataclass(frozen=True)
class UProbe:
    """A ``uprobes`` entry: symbols (or offsets) in the binary at `path`."""

    path: str
    context: Context = field(compare=False, repr=False)
    symbols: tuple[str, ...] = ()
    offsets: tuple[int, ...] = ()
    ref_ctr_offsets: tuple[int, ...] = ()
    message: str = ""
    args: tuple[Arg, ...] = ()
    selectors: tuple[Selector, ...] = ()
    tags: tuple[str, ...] = ()
    return_: bool = False  # also at the function's return (a uretprobe)
    return_arg: Arg | None = None
    data: tuple[Arg, ...] = ()  # values read beside the arguments (source: ...)
    # binaryDigests: "<algo>:<hex>"; the uprobe attaches only to a binary
    # with one of them; ignore.digestVerificationFailure: else skip it
    binary_digests: tuple[str, ...] = ()
    ignore_digest_failure: bool = False

    @property
    def name(self) -> str:
        """``path:symbol,...``, for messages."""
        return f"{self.path}:{','.join(self.symbols) or 'offsets'}"


@dataclass(frozen=True)
class Usdt:
    """A ``usdts`` entry: the USDT probe `provider`:`probe` of the binary
    at `path` (every site of it). The CRD's ``name`` is `probe` here, since
    every hook's `name` is the text messages call it by."""

    path: str
    provider: str
    probe: str
    context: Context = field(compare=False, repr=False)
    message: str = ""
    args: tuple[Arg, ...] = ()   # index: the probe's argument, 0-based
    selectors: tuple[Selector, ...] = ()
    tags: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """``path:provider:name``, for messages."""
        return f"{self.path}:{self.provider}:{self.probe}"


Hook = KProbe | Tracepoint | LsmHook | UProbe | Usdt


@dataclass(frozen=True)
class ListSpec:
    """A named list (``lists``), referred to as ``list:NAME`` from a
    kprobe's `call`, an enforcer's calls or an ``InMap`` value."""

    name: str
    type: str = ""
    values: tuple[str, ...] = ()
    pattern: str | None = None


@dataclass(frozen=True)
class Option:
    """An ``options`` entry (``policy-mode`` and the like)."""

    name: str
    value: str = ""


@dataclass(frozen=True)
class Enforcer:
    """An ``enforcers`` entry: the calls (functions or ``list:NAME``) whose
    return value ``NotifyEnforcer`` changes."""

    calls: tuple[str, ...]
    context: Context = field(compare=False, repr=False)


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes ``LabelSelector``: every ``matchLabels`` pair and every
    ``matchExpressions`` requirement must hold; an empty one selects all."""

    match_labels: Mapping[str, str] = field(default_factory=dict)
    # (key, operator In/NotIn/Exists/DoesNotExist, values)
    match_expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for key, op, values in self.match_expressions:
            present = key in labels
            if op == "In" and not (present and labels[key] in values):
                return False
            if op == "NotIn" and present and labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
        return True

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for key, op, values in self.match_expressions:
            vals = ",".join(values)
            parts.append({"In": f"{key} in ({vals})", "NotIn": f"{key} notin ({vals})",
                          "Exists": key, "DoesNotExist": f"!{key}"}[op])
        return ", ".join(parts) or "all"


@dataclass(frozen=True)
class Policy:
    """A loaded and validated TracingPolicy or TracingPolicyNamespaced.

    `pod_selector` and `container_selector` select the containers the policy
    applies to, as Tetragon's do (see :mod:`bpfguard.policy.scope`); None:
    not given.
    """

    kind: Literal["TracingPolicy", "TracingPolicyNamespaced"]
    name: str
    context: Context = field(compare=False, repr=False)
    namespace: str = ""
    kprobes: tuple[KProbe, ...] = ()
    fentries: tuple[KProbe, ...] = ()
    tracepoints: tuple[Tracepoint, ...] = ()
    lsmhooks: tuple[LsmHook, ...] = ()
    uprobes: tuple[UProbe, ...] = ()
    usdts: tuple[Usdt, ...] = ()
    lists: tuple[ListSpec, ...] = ()
    options: tuple[Option, ...] = ()
    enforcers: tuple[Enforcer, ...] = ()
    loader: bool = False
    pod_selector: LabelSelector | None = field(default=None, compare=False, hash=False)
    container_selector: LabelSelector | None = field(default=None, compare=False, hash=False)
    warnings: tuple[Problem, ...] = field(default=(), compare=False)

    @property
    def hooks(self) -> tuple[Hook, ...]:
        """Every hook, kprobes first, in file order within each kind."""
        return (*self.kprobes, *self.fentries, *self.tracepoints, *self.lsmhooks,
                *self.uprobes, *self.usdts)

    @property
    def mode(self) -> Literal["enforce", "monitor"]:
        """The ``policy-mode`` option; ``enforce`` when not given, as in Tetragon."""
        for opt in self.options:
            if opt.name == "policy-mode" and opt.value == "monitor":
                return "monitor"
        return "enforce"


# -- what a policy needs from the kernel ---------------------------------------

class FeatureSet(Protocol):
    """What :func:`requirements` needs to know of a kernel: the probe's
    :class:`~bpfguard.probe.Features` has it."""

    def has(self, name: str) -> bool:
        """True if the feature named `name` (a probe feature name) works."""
        ...


_FEATURE_TEXT: Final[Mapping[str, str]] = {
    "kprobe": "kprobes",
    "fentry": "BPF trampolines (fentry)",
    "fentry+fexit": "BPF trampolines (fentry and fexit)",
    "fmod_ret+fexit": "BPF trampolines (fmod_ret and fexit)",
    "tp_btf": "BTF tracepoints (tp_btf)",
    "tracepoint": "tracepoints",
    "raw_tp": "raw tracepoints",
    "lsm": "BPF LSM",
    "fmod_ret": "BPF trampolines (fmod_ret)",
    "uprobe": "uprobes",
    "send_signal": "bpf_send_signal",
    "write_user": "bpf_probe_write_user",
}


@dataclass(frozen=True)
class Requirement:
    """What one hook, or one action of it, needs from the kernel.

    `candidates` are the backends bpfguard can use, best first; each is a
    ``+``-joined set of probe feature names that must all work
    (``fentry+fexit``). `backend` is the first candidate this kernel has,
    None when it has none; `message` then names what is missing.
    `purpose` is ``attach`` for the hook itself, else the action's name.
    """

    hook: str
    purpose: str
    candidates: tuple[str, ...]
    backend: str | None
    message: str
    context: Context = field(compare=False, repr=False)

    @property
    def available(self) -> bool:
        """True when some candidate backend works on this kernel."""
        return self.backend is not None


def has_feature(features: FeatureSet | Mapping[str, bool], name: str) -> bool:
    """Whether `features` has every ``+``-joined part of `name`."""
    if isinstance(features, Mapping):
        return all(bool(features.get(part, False)) for part in name.split("+"))
    return all(features.has(part) for part in name.split("+"))


def _describe(candidates: tuple[str, ...]) -> str:
    words = [_FEATURE_TEXT.get(c, c) for c in candidates]
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _choose(hook: Hook, purpose: str, candidates: tuple[str, ...],
            features: FeatureSet | Mapping[str, bool]) -> Requirement:
    return _choose_for(hook.name, hook.context, purpose, candidates, features)


def _choose_for(name: str, context: Context, purpose: str, candidates: tuple[str, ...],
                features: FeatureSet | Mapping[str, bool]) -> Requirement:
    subject = name if purpose == "attach" else f"{purpose} on {name}"
    for cand in candidates:
        if has_feature(features, cand):
            return Requirement(name, purpose, candidates, cand,
                               f"{subject} uses {_FEATURE_TEXT.get(cand, cand)}", context)
    lack = {1: "does not have it", 2: "has neither"}.get(len(candidates), "has none of them")
    return Requirement(name, purpose, candidates, None,
                       f"{subject} needs {_describe(candidates)}; this kernel {lack}", context)


def overrides(hook: Hook) -> bool:
    """True when a selector of `hook` may Override its return value."""
    return any(a.action == "Override" for sel in hook.selectors
               for a in sel.actions)


SYSCALL_LIST_TYPES: Final = frozenset({"syscalls", "generated_syscalls"})


def is_syscall_hook(hook: KProbe, lists: Mapping[str, ListSpec]) -> bool:
    """Whether a kprobe hooks syscalls: its `syscall` flag, but for a
    ``list:`` call the list's type decides, as in Tetragon (a syscalls
    list's calls are syscalls, any other list's kernel functions)."""
    if hook.call.startswith("list:") and (lst := lists.get(hook.call[5:])) is not None:
        return lst.type in SYSCALL_LIST_TYPES
    return hook.syscall


def _attach_candidates(hook: Hook, lists: Mapping[str, ListSpec] | None = None
                       ) -> tuple[str, ...]:
    if isinstance(hook, KProbe):
        if is_syscall_hook(hook, lists or {}):
            return ("tp_btf",)
        if overrides(hook):  # whatever the mode: monitor can become enforce live
            return ("fmod_ret+fexit" if hook.return_ else "fmod_ret",)
        if any(d.source == "pt_regs" for d in hook.data):  # registers: a kprobe's
            return ("kprobe",)
        if hook.fentry:
            return ("fentry+fexit" if hook.return_ else "fentry",)
        return ("fentry+fexit" if hook.return_ else "fentry", "kprobe")
    if isinstance(hook, Tracepoint):
        return ("raw_tp",) if hook.raw else ("tracepoint",)
    if isinstance(hook, LsmHook):
        return ("lsm",)
    return ("uprobe",)


def attach_requirement(hook: Hook,
                       features: FeatureSet | Mapping[str, bool] | None) -> Requirement:
    """How `hook` attaches on a kernel with `features`: its `backend`
    (``+``-joined probe features), None with a `message` naming what is
    missing. With features None, every backend counts as available."""
    cands = _attach_candidates(hook)
    return _choose(hook, "attach", cands, features if features is not None
                   else dict.fromkeys(_FEATURE_TEXT.keys() | {"fexit"}, True))


def requirements(policy: Policy,
                 features: FeatureSet | Mapping[str, bool]) -> list[Requirement]:
    """What each hook of `policy` needs from the kernel, and what bpfguard
    would use on one with `features` (probe feature names to availability,
    or the probe's Features).

    Backends, best first:

    * kprobe with ``syscall: true``: the syscall tracepoints (tp_btf), which
      see the same arguments and return value as a kprobe on the syscall;
    * kprobe on a kernel function: fentry, else kprobe (fexit or kretprobe
      too when ``return: true``); fmod_ret when a selector may Override;
      ``fentries`` entries: the same without the kprobe fallback;
    * tracepoint: tracepoint; with ``raw: true``, a raw tracepoint;
    * lsmhook: BPF LSM (which also serves its Override action);
    * uprobe and usdt: uprobe;
    * Sigkill and Signal: bpf_send_signal;
    * Set (usdts): bpf_probe_write_user;
    * each ``enforcers`` entry: fmod_ret on its functions (whatever the
      mode, as Override); NotifyEnforcer with argSig: bpf_send_signal.

    Enforcing actions need nothing in ``policy-mode: monitor``, which
    turns them off, but Set, like Override, needs its helper whatever the
    mode: the program that may write must be loaded for a live switch to
    enforce. Each (hook, purpose) is listed once, in policy order.
    """
    out: list[Requirement] = []
    enforce = policy.mode == "enforce"
    lists = {lst.name: lst for lst in policy.lists}
    for hook in policy.hooks:
        out.append(_choose(hook, "attach", _attach_candidates(hook, lists), features))
        if any(a.action == "Set" for sel in hook.selectors for a in sel.actions):
            out.append(_choose(hook, "Set", ("write_user",), features))
        if not enforce:
            continue
        seen: set[str] = set()
        for sel in hook.selectors:
            for act in sel.actions:
                if act.action in ("Sigkill", "Signal") and act.action not in seen:
                    seen.add(act.action)
                    out.append(_choose(hook, act.action, ("send_signal",), features))
                if (act.action == "NotifyEnforcer" and act.arg_sig
                        and "NotifyEnforcer" not in seen):
                    seen.add("NotifyEnforcer")
                    out.append(_choose(hook, "NotifyEnforcer argSig", ("send_signal",),
                                       features))
    for enf in policy.enforcers:
        out.append(_choose_for("enforcers " + ", ".join(enf.calls), enf.context, "attach",
                               ("fmod_ret",), features))
    return out
