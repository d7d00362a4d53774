"""bpfguard events as Tetragon's JSON export (``tetra getevents -o json``).

Each function returns one ``GetEventsResponse`` as Tetragon's exporter writes
it: ``protojson`` with the proto field names (``UseProtoNames``), one object a
line (:class:`bpfguard.outputs.channels.JsonLines` writes them). protojson's
rules are kept so Tetragon tooling reads these unchanged:

* unset and default fields are left out (``""``, ``0``, ``[]``, enum 0), but a
  field wrapped in ``google.protobuf.UInt32Value`` (``pid``, ``uid``, ``auid``,
  ``tid``) shows even when 0, and a set ``oneof`` member shows even when 0;
* 64-bit integers (``long_arg``, ``size_arg``, ``cookie``, ...) are JSON
  strings;
* ``bytes`` are standard base64; timestamps are RFC 3339 in UTC with 0, 3, 6
  or 9 fractional digits and ``Z``.

bpfguard adds one field Tetragon does not have, ``enforcement`` in
``process_kprobe``/``process_tracepoint``: what an enforcing action really did
(see :class:`bpfguard.policy.events.Enforcement`). Consumers of Tetragon's
JSON ignore fields they do not know.

Example::

    out = JsonLines(sys.stdout)
    out.write(exec_json(proc, table.get(proc.ppid), node="n1", time_ns=ev.time_ns))
    out.write(policy_event_json(pev, table, node="n1"))
"""

from __future__ import annotations

import base64
import errno
import platform
import signal as _signal
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..containers import Container, ContainerCache
from ..policy.events import Enforcement, PolicyArg, PolicyEvent
from ..proctable import Process, ProcessTable
from ..sensors.events import ExitEvent, boot_to_wall_ns
from ..symbols import StackFrame
from ..timefmt import rfc3339 as _rfc3339

__all__ = [
    "arg_json",
    "exec_json",
    "exit_json",
    "exit_status_signal",
    "pod_json",
    "policy_event_json",
    "process_json",
    "rfc3339",
]

JSON = dict[str, Any]

# Tetragon's procevents.BpfContainerIdLength: `docker` holds this many
# characters of the container id.
_DOCKER_ID_LEN = 31
# Compat (32-bit) syscall marks in a syscall64 value: bit 63 is bpfguard's
# (PolicyArg's contract), bit 31 is Tetragon's own (Is32Bit = 0x80000000).
# Syscall numbers never reach 2**31, so both can be honoured.
_COMPAT_BITS = (1 << 63) | (1 << 31)
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF

# Tetragon's KprobeArgument oneof member for each declared argument type whose
# value is a plain number: (field, bits, signed). 64-bit ones are strings.
_INT_ARGS: dict[str, tuple[str, int, bool]] = {
    "int": ("int_arg", 32, True), "int32": ("int_arg", 32, True),
    "int16": ("int_arg", 32, True), "int8": ("int_arg", 32, True),
    "uint32": ("uint_arg", 32, False), "uint16": ("uint_arg", 32, False),
    "uint8": ("uint_arg", 32, False),
    "int64": ("long_arg", 64, True),
    "uint64": ("size_arg", 64, False), "size_t": ("size_arg", 64, False),
}
_STRING_TYPES = frozenset({"string", "filename", "data_loc"})
_BYTES_TYPES = frozenset({"char_buf", "char_iovec", "iov_iter"})
_FILE_TYPES = {"fd": "file_arg", "file": "file_arg", "kiocb": "file_arg",
               "path": "path_arg", "dentry": "path_arg",
               "linux_binprm": "linux_binprm_arg"}
_CAP_HEX_TYPES = {"kernel_cap_t": "kernel_cap_t_arg", "cap_inheritable": "cap_inheritable_arg",
                  "cap_permitted": "cap_permitted_arg", "cap_effective": "cap_effective_arg"}
# Dict-valued types passed through under their oneof member; the dict's keys
# must be the proto message's field names.
_PASSTHROUGH = {"bpf_attr": "bpf_attr_arg", "bpf_map": "bpf_map_arg",
                "perf_event": "perf_event_arg", "user_namespace": "user_ns_arg",
                "module": "module_arg", "load_info": "module_arg"}
# uint64 fields of those messages, which protojson writes as strings.
_U64_FIELDS = frozenset({"Config", "ProbeOffset"})

# Tetragon's pkg/reader/network names.
_SOCK_TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 4: "SOCK_RDM",
               5: "SOCK_SEQPACKET", 6: "SOCK_DCCP", 7: "SOCK_PACKET"}
_PROTOCOLS = {0: "IPPROTO_IP", 1: "IPPROTO_ICMP", 2: "IPPROTO_IGMP", 4: "IPPROTO_IPIP",
              6: "IPPROTO_TCP", 8: "IPPROTO_EGP", 12: "IPPROTO_PUP", 17: "IPPROTO_UDP",
              22: "IPPROTO_IDP", 29: "IPPROTO_TP", 33: "IPPROTO_DCCP", 41: "IPPROTO_IPV6",
              46: "IPPROTO_RSVP", 47: "IPPROTO_GRE", 50: "IPPROTO_ESP", 51: "IPPROTO_AH",
              92: "IPPROTO_MTP", 94: "IPPROTO_BEETPH", 98: "IPPROTO_ENCAP", 103: "IPPROTO_PIM",
              108: "IPPROTO_COMP", 132: "IPPROTO_SCTP", 136: "IPPROTO_UDPLITE",
              137: "IPPROTO_MPLS", 143: "IPPROTO_ETHERNET", 255: "IPPROTO_RAW",
              262: "IPPROTO_MPTCP"}
_TCP_STATES = {1: "TCP_ESTABLISHED", 2: "TCP_SYN_SENT", 3: "TCP_SYN_RECV", 4: "TCP_FIN_WAIT1",
               5: "TCP_FIN_WAIT2", 6: "TCP_TIME_WAIT", 7: "TCP_CLOSE", 8: "TCP_CLOSE_WAIT",
               9: "TCP_LAST_ACK", 10: "TCP_LISTEN", 11: "TCP_CLOSING", 12: "TCP_NEW_SYN_RECV"}
# Tetragon's capability names (pkg/reader/caps; 1 really is "DAC_OVERRIDE").
_CAPS = ("CAP_CHOWN", "DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
         "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
         "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
         "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
         "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
         "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
         "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
         "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
         "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE")
_SIGNALS = {s.value: s.name for s in _signal.Signals}
_CRED_IDS = ("uid", "gid", "euid", "egid", "suid", "sgid", "fsuid", "fsgid")


def _abis(machine: str) -> tuple[str, str]:
    """(native, compat) syscall ABI names as Tetragon reports them per arch."""
    m = machine.lower()
    if m in ("x86_64", "amd64"):
        return "x64", "i386"
    if m in ("aarch64", "arm64"):
        return "arm64", "arm32"
    return "unknown", "unknown"


_HOST_MACHINE = platform.machine()


# -- scalars -------------------------------------------------------------------


def rfc3339(ns: int) -> str:
    """Wall-clock ns since the epoch as protojson writes a Timestamp.

    UTC with ``Z``; the fraction has 0, 3, 6 or 9 digits, the fewest that
    keep the value (``...:05Z``, ``...:05.120Z``, ``...:05.000000001Z``):
    :func:`bpfguard.timefmt.rfc3339` with ``digits=None``.
    """
    return _rfc3339(ns, digits=None)


def _wrap(v: int, bits: int, signed: bool) -> int:
    """`v` as the C integer of that width would hold it (what Tetragon reads)."""
    mask = (1 << bits) - 1
    v &= mask
    if signed and v >> (bits - 1):
        v -= 1 << bits
    return v


def _name(v: Any, names: Mapping[int, str]) -> Any:
    """A number as Tetragon names it (its decimal string when unnamed); strings pass."""
    if isinstance(v, int) and not isinstance(v, bool):
        return names.get(v, str(v))
    return v


def _family(v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool):
        try:
            return socket.AddressFamily(v).name
        except ValueError:
            return str(v)
    return v


def _put(d: JSON, key: str, value: Any) -> None:
    """Sets `key` unless `value` is what protojson leaves out (None, "", 0, [])."""
    if value is None or value == "" or value == [] or value == {}:
        return
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return
    if value is False:
        return
    d[key] = value


def _arguments(argv: Sequence[str]) -> str:
    """argv[1:] as Tetragon's ArgsDecoder joins it.

    Arguments with a space are double-quoted, and, as Tetragon does, a quoted
    one always gets a space before it (even when it comes first).
    """
    out = ""
    for a in argv[1:]:
        if " " in a:
            out += f' "{a}"'
        elif out == "":
            out = a
        else:
            out += " " + a
    return out


def _cap_names(mask: int) -> list[str]:
    return [_CAPS[i] if i < len(_CAPS) else str(i) for i in range(64) if mask >> i & 1]


# -- processes -----------------------------------------------------------------


def process_json(p: Process, *, node: str, tid: int | None = None,
                 containers: ContainerCache | None = None) -> JSON:
    """Tetragon's ``Process`` message for `p`.

    `node` is accepted so every renderer takes the same arguments; Tetragon
    builds node-unique exec ids, bpfguard's (already unique) are used as they
    are. `tid` is the thread the event came from (Tetragon reports it per
    event); it defaults to the pid, as for exec and exit. `uid` is the
    effective uid, which the proto documents it to be. `flags` is ``execve``
    or ``procFS`` (seeded from /proc), with ``truncArgs`` when the kernel cut
    argv and ``rootcwd`` when the cwd is "/".
    `containers` gives ``pod`` (Tetragon's Pod) for a process in a pod.
    """
    del node
    flags = ["procFS" if p.from_proc else "execve"]
    if p.args_truncated:
        flags.append("truncArgs")   # Tetragon's flag for an argv it cut
    if p.cwd == "/":
        flags.append("rootcwd")
    container = p.container
    d: JSON = {}
    _put(d, "exec_id", p.exec_id)
    d["pid"] = p.pid
    d["uid"] = p.euid & _U32
    _put(d, "cwd", p.cwd)
    _put(d, "binary", p.exe)
    _put(d, "arguments", _arguments(p.args))
    d["flags"] = " ".join(flags)
    d["start_time"] = rfc3339(boot_to_wall_ns(p.start_ns))
    d["auid"] = p.loginuid & _U32  # -1 (unset) is 4294967295, as the kernel shows it
    if container is not None:
        d["docker"] = container[1][:_DOCKER_ID_LEN]
        info = containers.get(container[1], container[0]) if containers is not None else None
        if info is not None and info.pod is not None:
            d["pod"] = pod_json(info)
    _put(d, "parent_exec_id", p.parent_exec_id)
    d["tid"] = p.pid if tid is None else tid
    return d


def pod_json(c: Container) -> JSON:
    """Tetragon's ``Pod`` message for a container in a pod (``process.pod``):
    what Tetragon reads from the Kubernetes API, here from the runtime. The
    workload is known for podman's pods (no owner: a pod is its own), absent
    for CRI's (the owner is in the Kubernetes API only)."""
    assert c.pod is not None
    image: JSON = {}
    _put(image, "id", c.image_id)
    _put(image, "name", c.image)
    cont: JSON = {"id": f"{c.runtime}://{c.id}"}
    _put(cont, "name", c.k8s_name)
    _put(cont, "image", image)
    if c.start_ns:
        cont["start_time"] = rfc3339(c.start_ns)
    if c.privileged:
        cont["security_context"] = {"privileged": True}
    d: JSON = {}
    _put(d, "namespace", c.pod.namespace)
    _put(d, "name", c.pod.name)
    _put(d, "uid", c.pod.uid)
    d["container"] = cont
    _put(d, "pod_labels", dict(c.pod.labels))
    _put(d, "workload", c.pod.workload)
    return d


def _unknown_process(pid: int, tid: int, uid: int) -> JSON:
    """What is known of a process the table could not find.

    Tetragon marks such processes with the flag ``unknown``.
    """
    return {"pid": pid, "uid": uid & _U32, "flags": "unknown", "tid": tid}


def _response(kind: str, event: JSON, *, node: str, time_ns: int) -> JSON:
    d: JSON = {kind: event}
    _put(d, "node_name", node)
    d["time"] = rfc3339(time_ns)
    return d


def exec_json(p: Process, parent: Process | None, *, node: str, time_ns: int,
              ancestors: Iterable[Process] = (),
              containers: ContainerCache | None = None) -> JSON:
    """A ``process_exec`` event; `ancestors` are the parent's parent upward."""
    ev: JSON = {"process": process_json(p, node=node, containers=containers)}
    if parent is not None:
        ev["parent"] = process_json(parent, node=node, containers=containers)
    _put(ev, "ancestors", [process_json(a, node=node, containers=containers)
                           for a in ancestors])
    return _response("process_exec", ev, node=node, time_ns=time_ns)


def exit_json(p: Process, parent: Process | None, *, node: str, time_ns: int, status: int,
              signal: str | None, containers: ContainerCache | None = None) -> JSON:
    """A ``process_exit`` event.

    `status` is the exit code (Tetragon's ``code >> 8``), `signal` the name of
    the signal that ended the process (``"SIGKILL"``), "" or None if none.
    """
    ev: JSON = {"process": process_json(p, node=node, containers=containers)}
    if parent is not None:
        ev["parent"] = process_json(parent, node=node, containers=containers)
    _put(ev, "signal", signal)
    _put(ev, "status", status & _U32)
    ev["time"] = rfc3339(time_ns)
    return _response("process_exit", ev, node=node, time_ns=time_ns)


def exit_status_signal(ev: ExitEvent) -> tuple[int, str]:
    """(status, signal) of an exit event, as :func:`exit_json` takes them.

    The signal name is "" when the process exited by itself or the number has
    no name (as Go's ``unix.SignalName``).
    """
    status = ev.exit_code if ev.exit_code is not None else 0
    return status, _SIGNALS.get(ev.signal or 0, "")


# -- arguments -----------------------------------------------------------------


def _sock(v: Mapping[str, Any]) -> JSON:
    d: JSON = {}
    _put(d, "family", _family(v.get("family")))
    _put(d, "type", _name(v.get("type"), _SOCK_TYPES))
    _put(d, "protocol", _name(v.get("protocol"), _PROTOCOLS))
    _put(d, "mark", v.get("mark"))
    _put(d, "priority", v.get("priority"))
    _put(d, "saddr", v.get("saddr"))
    _put(d, "daddr", v.get("daddr"))
    _put(d, "sport", v.get("sport"))
    _put(d, "dport", v.get("dport"))
    cookie = v.get("cookie")
    if cookie:
        d["cookie"] = str(cookie & _U64)
    _put(d, "state", _name(v.get("state"), _TCP_STATES))
    return d


def _skb(v: Mapping[str, Any]) -> JSON:
    d: JSON = {}
    for k in ("hash", "len", "priority", "mark", "saddr", "daddr", "sport", "dport", "proto",
              "sec_path_len", "sec_path_olen"):
        _put(d, k, v.get(k))
    _put(d, "protocol", _name(v.get("protocol", v.get("proto")), _PROTOCOLS))
    _put(d, "family", _family(v.get("family")))
    return d


def _cred(v: Mapping[str, Any]) -> JSON:
    """A ``ProcessCredentials`` (what Tetragon now emits for ``cred``).

    Capability sets may be given as bit masks or as lists of names.
    """
    d: JSON = {k: v[k] & _U32 for k in _CRED_IDS if isinstance(v.get(k), int)}
    caps_in = v.get("caps")
    if isinstance(caps_in, Mapping):
        caps: JSON = {}
        for k in ("permitted", "effective", "inheritable"):
            c = caps_in.get(k)
            _put(caps, k, _cap_names(c) if isinstance(c, int) else list(c or []))
        _put(d, "caps", caps)
    return d


def _syscall_id(v: int, machine: str) -> JSON:
    native, compat = _abis(machine)
    is_compat = bool(v & _COMPAT_BITS)
    d: JSON = {}
    _put(d, "id", v & ~_COMPAT_BITS & _U32)
    d["abi"] = compat if is_compat else native
    return d


# Tetragon's TaintedBitsType: a module's taint bits by name
_TAINTS = ((1, "TAINT_PROPRIETARY_MODULE"), (2, "TAINT_FORCED_MODULE"),
           (4, "TAINT_FORCED_UNLOAD_MODULE"), (1024, "TAINT_STAGED_MODULE"),
           (4096, "TAINT_OUT_OF_TREE_MODULE"), (8192, "TAINT_UNSIGNED_MODULE"),
           (32768, "TAINT_KERNEL_LIVE_PATCH_MODULE"), (262144, "TAINT_TEST_MODULE"))


def _passthrough(v: Mapping[str, Any]) -> JSON:
    d: JSON = {}
    for k, x in v.items():
        if k == "tainted" and isinstance(x, int):  # KprobeModule: the names of the bits
            x = [name for bit, name in _TAINTS if x & bit]
        elif k == "Type" and isinstance(x, int):  # KprobePerfEvent: a string
            x = str(x)
        _put(d, k, str(x & _U64) if k in _U64_FIELDS and isinstance(x, int) else x)
    return d


def _value(a: PolicyArg, machine: str) -> tuple[str, Any] | None:
    """(oneof member, JSON value) for `a`, or None when nothing can be said."""
    t, v = a.type, a.value
    if v is None:
        return None
    if t in _INT_ARGS and isinstance(v, int):
        field, bits, signed = _INT_ARGS[t]
        n = _wrap(v, bits, signed)
        return field, str(n) if bits == 64 else n
    if t == "syscall64" and isinstance(v, int):
        return "syscall_id", _syscall_id(v, machine)
    if t in _FILE_TYPES and isinstance(v, str):
        return _FILE_TYPES[t], {"path": v} if v else {}
    if t in _STRING_TYPES and isinstance(v, str):
        return "string_arg", v
    if t == "net_device" and isinstance(v, str):
        return "net_dev_arg", {"name": v}
    if t in _BYTES_TYPES and isinstance(v, bytes | str):
        raw = v.encode() if isinstance(v, str) else v
        b64 = base64.b64encode(raw).decode("ascii")
        if a.truncated:
            # orig_size is not known to bpfguard, so it stays unset
            return "truncated_bytes_arg", {"bytes_arg": b64} if raw else {}
        return "bytes_arg", b64
    if t in _CAP_HEX_TYPES and isinstance(v, int):
        return _CAP_HEX_TYPES[t], f"{v & _U64:016x}"
    if t == "capability" and isinstance(v, int):
        cap: JSON = {"value": _wrap(v, 32, True)}
        if 0 <= v < len(_CAPS):
            cap["name"] = _CAPS[v]
        return "capability_arg", cap
    if isinstance(v, Mapping):
        if t == "sockaddr":
            sa: JSON = {}
            _put(sa, "family", _family(v.get("family")))
            _put(sa, "addr", v.get("addr"))
            _put(sa, "port", v.get("port"))
            return "sockaddr_arg", sa
        if t == "sockaddr_un":
            un: JSON = {}
            _put(un, "family", _family(v.get("family")))
            _put(un, "path", v.get("path"))
            return "sockaddrun_arg", un
        if t in ("sock", "socket"):
            return "sock_arg", _sock(v)
        if t == "skb":
            return "skb_arg", _skb(v)
        if t == "cred":
            return "process_credentials_arg", _cred(v)
        if t in _PASSTHROUGH:
            return _PASSTHROUGH[t], _passthrough(v)
    return None


def arg_json(a: PolicyArg, *, machine: str = _HOST_MACHINE) -> JSON:
    """Tetragon's ``KprobeArgument`` for `a`.

    The oneof member follows Tetragon's decoding of the declared type: int,
    int32, int16, int8 -> ``int_arg``; uint32, uint16, uint8 -> ``uint_arg``;
    int64 -> ``long_arg``; uint64, size_t -> ``size_arg``; fd, file, kiocb ->
    ``file_arg``; path, dentry -> ``path_arg``; syscall64 -> ``syscall_id``
    (`machine` names its ABIs: x64/i386, arm64/arm32); cred ->
    ``process_credentials_arg``. A value that could not be read (None), or
    one of a shape the type does not have, gives an argument with no member
    set (``{}``, plus its label) rather than an invented value.
    """
    d: JSON = {}
    member = _value(a, machine)
    if member is not None:
        d[member[0]] = member[1]
    _put(d, "label", a.label)
    return d


# -- policy events -------------------------------------------------------------


def _enforcement(e: Enforcement) -> JSON:
    return {"action": e.action, "done": e.done, "mode": e.mode, "backend": e.backend,
            "before_operation": e.before_operation, "signal": e.signal, "note": e.note}


def _action(name: str) -> str:
    """A KprobeAction name, "" for the zero value protojson leaves out."""
    return "" if name == "KPROBE_ACTION_UNKNOWN" else name


def _frame(f: StackFrame) -> JSON:
    """A StackTraceEntry as Tetragon writes it: symbol and offset, and the
    file of a user frame (or the kernel module), without the address
    (Tetragon shows addresses only with --expose-stack-addresses: kernel
    ones would undo KASLR for the event's readers). A frame no symbol names
    keeps its address, and a user one's offset is into its file."""
    out: JSON = {}  # (uint64s, which protojson writes as strings)
    if not f.symbol:
        out["address"] = str(f.address)
    if f.offset:
        out["offset"] = str(f.offset)
    _put(out, "symbol", f.symbol)
    _put(out, "module", f.module)
    return out


def _lineage(table: ProcessTable, pid: int) -> tuple[Process | None, list[Process]]:
    """The process and its ancestry, parent first, reading /proc for either."""
    p = table.lookup_or_read(pid)
    if p is None:
        return None, []
    if p.ppid > 0 and table.get(p.ppid) is None:
        table.lookup_or_read(p.ppid)
    # ancestors() rejects a parent whose pid was reused by a younger process
    return p, table.ancestors(pid)


def policy_event_json(ev: PolicyEvent, table: ProcessTable, *, node: str,
                      ancestors: bool = False, machine: str = _HOST_MACHINE) -> JSON:
    """A ``process_kprobe`` (kind "kprobe"), ``process_lsm`` (kind "lsm"),
    ``process_uprobe`` (kind "uprobe"), ``process_usdt`` (kind "usdt") or
    ``process_tracepoint`` event.

    The process is looked up in `table` (or /proc); if it is gone, the event
    still carries its pid, tid and uid. With `ancestors`, the processes above
    the parent are listed too, nearest first.
    """
    p, chain = _lineage(table, ev.pid)
    body: JSON = {}
    if p is None:
        body["process"] = _unknown_process(ev.pid, ev.tid, ev.uid)
    else:
        body["process"] = process_json(p, node=node, tid=ev.tid, containers=table.containers)
    if chain:
        body["parent"] = process_json(chain[0], node=node, containers=table.containers)
    args = [arg_json(a, machine=machine) for a in ev.args]
    if ev.kind == "kprobe":
        kind = "process_kprobe"
        _put(body, "function_name", ev.function_name)
        _put(body, "args", args)
        if ev.return_value is not None:
            body["return"] = arg_json(ev.return_value, machine=machine)
        _put(body, "action", _action(ev.action))
        _put(body, "kernel_stack_trace", [_frame(f) for f in ev.kernel_stack])
        _put(body, "policy_name", ev.policy_name)
        _put(body, "return_action", _action(ev.return_action))
        _put(body, "message", ev.message)
        _put(body, "tags", list(ev.tags))
        _put(body, "user_stack_trace", [_frame(f) for f in ev.user_stack])
        _put(body, "data", [arg_json(a, machine=machine) for a in ev.data])
    elif ev.kind == "lsm":
        kind = "process_lsm"
        _put(body, "function_name", ev.function_name)
        _put(body, "policy_name", ev.policy_name)
        _put(body, "message", ev.message)
        _put(body, "args", args)
        _put(body, "action", _action(ev.action))
        _put(body, "tags", list(ev.tags))
        _put(body, "ima_hash", ev.ima_hash)
        if ev.ima_error:  # bpfguard's: why imaHash gave no hash (EOPNOTSUPP: IMA is off)
            body["ima_hash_error"] = errno.errorcode.get(ev.ima_error, str(ev.ima_error))
    elif ev.kind == "uprobe":
        kind = "process_uprobe"
        _put(body, "path", ev.path)
        _put(body, "symbol", ev.symbol)
        if ev.offset:
            body["offset"] = ev.offset
        _put(body, "policy_name", ev.policy_name)
        _put(body, "message", ev.message)
        # ProcessUprobe has no return field: Tetragon merges the return
        # event's value after the arguments
        _put(body, "args", args + ([arg_json(ev.return_value, machine=machine)]
                                   if ev.return_value is not None else []))
        _put(body, "action", _action(ev.action))
        _put(body, "tags", list(ev.tags))
        _put(body, "data", [arg_json(a, machine=machine) for a in ev.data])
    elif ev.kind == "usdt":
        kind = "process_usdt"
        _put(body, "path", ev.path)
        _put(body, "provider", ev.provider)
        _put(body, "name", ev.probe)
        _put(body, "policy_name", ev.policy_name)
        _put(body, "message", ev.message)
        _put(body, "args", args)
        _put(body, "tags", list(ev.tags))
        _put(body, "action", _action(ev.action))
    else:
        kind = "process_tracepoint"
        _put(body, "subsys", ev.subsys)
        _put(body, "event", ev.event)
        _put(body, "args", args)
        _put(body, "policy_name", ev.policy_name)
        _put(body, "action", _action(ev.action))
        _put(body, "message", ev.message)
        _put(body, "tags", list(ev.tags))
    if ancestors:
        _put(body, "ancestors", [process_json(a, node=node, containers=table.containers)
                                 for a in chain[1:]])
    if ev.enforcement:
        body["enforcement"] = [_enforcement(e) for e in ev.enforcement]
    return _response(kind, body, node=node, time_ns=ev.time_ns)
