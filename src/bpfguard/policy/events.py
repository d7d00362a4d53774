"""Events of loaded TracingPolicies, decoded from the kernel, before formatting.

A :class:`PolicyEvent` is what one selector match produced: the hook, the
arguments as the policy declared them (resolved paths, parsed socket
addresses), the return value for ``return: true`` hooks, and what bpfguard
really did about it. :mod:`bpfguard.outputs.tetragon` renders it as
Tetragon's ``process_kprobe``, ``process_tracepoint``, ``process_lsm``,
``process_uprobe`` or ``process_usdt`` JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..symbols import StackFrame

__all__ = ["Enforcement", "PolicyArg", "PolicyEvent"]


@dataclass(frozen=True)
class PolicyArg:
    """One argument as the policy declared it.

    `value` by type: int for the integer family and ``syscall64`` (bit 31 set
    for a 32-bit compat syscall, as Tetragon does); str for ``string``,
    ``data_loc`` and path-like types (``fd``, ``file``, ``path``,
    ``linux_binprm``: the path resolved from kernel objects); bytes for
    ``char_buf``; dict for ``sockaddr`` ({"family", "addr", "port"}) and
    ``sock`` ({"family", "type", "protocol", "saddr", "daddr", "sport",
    "dport", "state"}); None when it could not be read.
    """

    type: str
    value: int | str | bytes | dict[str, Any] | None
    label: str = ""
    truncated: bool = False


@dataclass(frozen=True)
class Enforcement:
    """What an enforcing action (Sigkill, Signal, Override) did, in truth.

    `done` is False in monitor mode (the action is only counted) and when the
    kernel refused it. `before_operation` says whether the operation was
    stopped: an Override (fmod_ret skips the function, a BPF LSM hook denies)
    stops it; a signal alone does not, since the syscall or function it was
    sent from completes before the signal is delivered. The exception is a
    uprobe: its SIGKILL lands before the user function runs.
    """

    action: str            # "Sigkill" | "Signal" | "Override"
    done: bool
    mode: Literal["enforce", "monitor"]
    backend: str           # "bpf_send_signal" | "fmod_ret" | "bpf_lsm"
    before_operation: bool
    signal: int = 0
    note: str = ""


@dataclass(frozen=True)
class PolicyEvent:
    """One selector match, ready to format.

    `kind` picks the Tetragon event: ``kprobe`` (``kprobes`` hooks, including
    syscalls served by the syscall tracepoints), ``tracepoint`` or ``lsm``
    (``lsmhooks``; `function_name` is the hook, e.g. ``file_open``) or
    ``uprobe`` (`path` is the binary, `symbol` the function, `offset` the
    offset past it, or into the file when `symbol` is empty) or ``usdt``
    (`path`, and the probe's `provider` and name `probe`).
    `function_name` is the kprobe's function as Tetragon names it (for
    syscalls, ``__x64_sys_openat`` style); `subsys`/`event` name a tracepoint.
    `action` is Tetragon's KprobeAction name of what happened
    (``KPROBE_ACTION_POST``, ``KPROBE_ACTION_SIGKILL``, ...): in monitor mode
    it stays ``KPROBE_ACTION_POST`` and `enforcement` says what would have
    been done.
    """

    kind: Literal["kprobe", "tracepoint", "lsm", "uprobe", "usdt"]
    policy_name: str
    pid: int
    tid: int
    time_ns: int                 # wall clock, ns since the epoch
    ktime_ns: int                # CLOCK_BOOTTIME, for ordering
    args: tuple[PolicyArg, ...]
    action: str = "KPROBE_ACTION_POST"
    function_name: str = ""
    subsys: str = ""
    event: str = ""
    path: str = ""
    symbol: str = ""
    offset: int = 0
    provider: str = ""
    probe: str = ""
    return_value: PolicyArg | None = None
    return_action: str = ""
    data: tuple[PolicyArg, ...] = ()  # the hook's data entries (source: current_task, ...)
    enforcement: tuple[Enforcement, ...] = ()
    message: str = ""
    tags: tuple[str, ...] = ()
    ima_hash: str = ""           # imaHash: "sha256:<hex>" of the hook's file
    ima_error: int = 0           # imaHash: the errno the kernel's hash failed with
    # Post kernelStackTrace/userStackTrace: the call's stacks, innermost first
    kernel_stack: tuple[StackFrame, ...] = ()
    user_stack: tuple[StackFrame, ...] = ()
    selector: int = 0
    uid: int = 0
    comm: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
