"""Read a Tetragon TracingPolicy YAML file into a validated :class:`Policy`.

The YAML is composed with PyYAML's node API so that every problem is given
as ``file:line:column``, the JSON path of the item (``spec.kprobes[0].
selectors[1].matchArgs[0].operator``), why it is wrong, and the source line
with a ``^`` under the spot. Reading never stops at the first problem:
everything is checked, and :class:`PolicyError` lists every problem found.
Loading is all or nothing.

The checks are those of Tetragon's CRD schema (``pkg/k8s/apis/cilium.io/
v1alpha1/types.go``: keys, enums, minimums, ``MaxItems=16`` tags, 256-char
messages) and of its sensors, which reject at load time what the schema
lets through: argument indexes a selector refers to must exist, ``list:``
names must be defined, values must parse for their operator (integers for
``GT``/``LT``/``Mask``, CIDRs for ``SAddr``/``DAddr``, ports for
``SPort``/``DPort``), at most 5 selectors per hook and 5 arguments (index
0-4) per kprobe, prefix and postfix strings at most 256 bytes (Tetragon: 256 and 127).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Final, TypeVar

import yaml

from ..errors import ConfigError
from ..inputs import GuardedLoader, InputError, read_text
from ..rules.model import Context, Problem
from .digest import digest_problem
from .model import (
    ACTIONS,
    ARG_OPERATORS,
    ARG_TYPES,
    FILE_TYPES,
    Action,
    Arg,
    ArgSelector,
    BinarySelector,
    CapabilitiesSelector,
    Enforcer,
    KProbe,
    LabelSelector,
    ListSpec,
    LsmHook,
    NamespaceChangesSelector,
    NamespaceSelector,
    Option,
    PIDSelector,
    Policy,
    Selector,
    Tracepoint,
    UProbe,
    Usdt,
)

__all__ = ["MAX_POLICY_BYTES", "PolicyCode", "PolicyError", "load_policy", "load_policy_text",
           "render_problem"]

#: A policy file larger is refused before it is read (Kubernetes keeps an
#: object, a TracingPolicy CRD among them, to 1.5 MiB).
MAX_POLICY_BYTES: Final = 4 << 20

T = TypeVar("T")

API_VERSION: Final = "cilium.io/v1alpha1"
KINDS: Final = ("TracingPolicy", "TracingPolicyNamespaced")
_LABEL_OPERATORS: Final = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})
# Tetragon's containerSelector matches a container's name and image repository.
_CONTAINER_SELECTOR_KEYS: Final = frozenset({"name", "repo"})

MAX_SELECTORS: Final = 5
"""Selectors per hook that Tetragon's BPF programs evaluate."""
MAX_KPROBE_ARG_INDEX: Final = 4
"""Tetragon reads the first five arguments of a function (index 0-4)."""
MAX_TAGS: Final = 16
MAX_MESSAGE: Final = 256
MAX_PREFIX: Final = 256
MAX_POSTFIX: Final = 256  # Tetragon: 127; bpfguard's tries hold 256 both ways
MAX_SIGNAL: Final = 64

_SELECTOR_OPS: Final = frozenset({"In", "NotIn"})
_BINARY_OPS: Final = frozenset({"In", "NotIn", "Prefix", "NotPrefix", "Postfix", "NotPostfix"})
_NAMESPACES: Final = frozenset({"Uts", "Ipc", "Mnt", "Pid", "PidForChildren", "Net", "Time",
                                "TimeForChildren", "Cgroup", "User"})
_CAP_TYPES: Final = frozenset({"Effective", "Inheritable", "Permitted"})
_CAPABILITIES: Final = frozenset(f"CAP_{n}" for n in (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
))
"""Linux capability names, in the kernel's order (CAP_CHOWN is 0)."""
_LIST_TYPES: Final = frozenset({"syscalls", "generated_syscalls", "generated_ftrace"})
_RETURN_ARG_ACTIONS: Final = frozenset({"TrackSock", "UntrackSock"})
_RATE_LIMIT_SCOPES: Final = frozenset({"thread", "process", "global"})
_OPTIONS: Final[Mapping[str, frozenset[str]]] = {
    "policy-mode": frozenset({"enforce", "monitor"}),
    "disable-kprobe-multi": frozenset({"true", "false", "1", "0"}),
    "disable-uprobe-multi": frozenset({"true", "false", "1", "0"}),
    "override-method": frozenset({"fmod-ret", "override-return"}),
}
_METADATA_KEYS: Final = ("name", "namespace", "labels", "annotations", "uid", "generation",
                         "resourceVersion", "creationTimestamp", "generateName",
                         "managedFields", "finalizers", "ownerReferences")

# Operator families, and the argument types each may filter (Tetragon's
# pkg/selectors checks these when it writes the selector maps).
_INT_TYPES: Final = frozenset({"int", "int8", "uint8", "int16", "uint16", "uint32", "int32",
                               "uint64", "int64", "size_t", "fd", "syscall64", "kernel_cap_t",
                               "cap_inheritable", "cap_permitted", "cap_effective", "long",
                               "ulong", "sint8", "sint16", "sint32", "sint64", "bpf_cmd",
                               "capability"})
_STRING_TYPES: Final = frozenset({"string", "char_buf", "char_iovec", "filename", "file",
                                  "path", "fd", "dentry", "linux_binprm", "data_loc",
                                  "net_device", "sockaddr_un"})
_NET_TYPES: Final = frozenset({"sock", "skb", "sockaddr", "socket", "sockaddr_un"})
_STRING_OPS: Final = frozenset({"Prefix", "NotPrefix", "Postfix", "NotPostfix"})
_NUMBER_OPS: Final = frozenset({"GreaterThan", "LessThan", "GT", "LT", "Mask"})
_ADDR_OPS: Final = frozenset({"SAddr", "NotSAddr", "DAddr", "NotDAddr"})
_PORT_OPS: Final = frozenset({"SPort", "NotSPort", "DPort", "NotDPort"})
_PRIV_OPS: Final = frozenset({"SPortPriv", "NotSportPriv", "NotSPortPriv", "DPortPriv",
                              "NotDPortPriv"})
_NET_OPS: Final = _ADDR_OPS | _PORT_OPS | _PRIV_OPS | {"Protocol", "Family", "State"}
_MAP_OPS: Final = frozenset({"InMap", "NotInMap"})
_RANGE_OPS: Final = frozenset({"InRange", "NotInRange"})
_FILE_TYPE_OPS: Final = frozenset({"FileType", "NotFileType"})

_NAME_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_RATE_RE: Final = re.compile(r"\d+[smh]?")
_INT_TAG: Final = "tag:yaml.org,2002:int"
_BOOL_TAG: Final = "tag:yaml.org,2002:bool"
_STR_TAG: Final = "tag:yaml.org,2002:str"
_NULL_TAG: Final = "tag:yaml.org,2002:null"


class PolicyCode(StrEnum):
    """Problem codes of the policy loader."""

    FILE_READ = "POLICY_FILE_READ"
    YAML_PARSE = "POLICY_YAML_PARSE"
    UNKNOWN_KEY = "POLICY_UNKNOWN_KEY"
    MISSING_KEY = "POLICY_MISSING_KEY"
    WRONG_TYPE = "POLICY_WRONG_TYPE"
    BAD_VALUE = "POLICY_BAD_VALUE"
    BAD_REFERENCE = "POLICY_BAD_REFERENCE"
    LIMIT = "POLICY_LIMIT"
    UNSUPPORTED = "POLICY_UNSUPPORTED"  # valid, but bpfguard does not serve it (yet)
    UNAVAILABLE = "POLICY_UNAVAILABLE"  # valid, but this machine lacks what it needs
    NOT_APPLICABLE = "POLICY_NOT_APPLICABLE"


def render_problem(p: Problem) -> str:
    """``file:line:col: path: message [CODE]`` and the marked source line."""
    where = f"{p.context}: {p.context.name}: " if p.context.name else f"{p.context}: "
    snippet = p.snippet()
    text = f"{where}{p.message} [{p.code}]"
    return f"{text}\n{snippet.rstrip()}" if snippet else text


class PolicyError(ConfigError):
    """A policy did not load. `problems` lists every error, in file order."""

    def __init__(self, name: str, problems: Iterable[Problem]) -> None:
        self.name = name
        self.problems = tuple(problems)
        n = len(self.problems)
        body = "\n".join(render_problem(p) for p in self.problems)
        super().__init__(f"{name}: {n} problem{'s' if n != 1 else ''}\n{body}")


def load_policy(path: str | Path) -> Policy:
    """Load and validate the TracingPolicy in the YAML file at `path`.
    Raises PolicyError (a ConfigError) listing every problem."""
    name = str(path)
    try:
        text = read_text(path, MAX_POLICY_BYTES)
    except OSError as exc:
        ctx = Context(name, 0, 0, "policy", "")
        raise PolicyError(name, [Problem(PolicyCode.FILE_READ, str(exc), ctx)]) from None
    except InputError as exc:
        ctx = Context(name, exc.line, exc.column, "policy", "")
        raise PolicyError(name, [Problem(PolicyCode.FILE_READ, str(exc), ctx)]) from None
    return load_policy_text(name, text)


def load_policy_text(name: str, text: str) -> Policy:
    """Load and validate a TracingPolicy from YAML `text`; `name` is used as
    the file name in messages. Raises PolicyError listing every problem."""
    return _Reader(name, text).read()


# -- reading ---------------------------------------------------------------------

_Where = tuple[str | int, ...]


def _path_text(path: _Where) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


@dataclass
class _Map:
    """A YAML mapping's keys (after the unknown ones were reported)."""

    node: yaml.MappingNode
    path: _Where
    items: dict[str, tuple[yaml.Node, yaml.Node]]

    def get(self, key: str) -> yaml.Node | None:
        item = self.items.get(key)
        return item[1] if item else None


class _Reader:
    """One policy file: reads it into the model, collecting problems."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.root = Context(name, 0, 0, "policy", "", None, 0, text)
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self.lists: dict[str, ListSpec] = {}

    # -- problems and positions

    def ctx(self, node: yaml.Node, path: _Where) -> Context:
        mark = node.start_mark
        return Context(self.name, mark.line + 1, mark.column + 1, "policy item",
                       _path_text(path), self.root, mark.index, self.text)

    def error(self, code: PolicyCode, node: yaml.Node, path: _Where, message: str) -> None:
        self.errors.append(Problem(code, message, self.ctx(node, path)))

    # -- the document

    def read(self) -> Policy:
        try:
            docs = [d for d in yaml.compose_all(self.text, Loader=GuardedLoader)
                    if d is not None]
        except InputError as exc:
            ctx = Context(self.name, exc.line, exc.column, "policy", "", self.root, exc.offset,
                          self.text)
            raise PolicyError(self.name, [Problem(PolicyCode.YAML_PARSE, str(exc), ctx)]) \
                from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line, col, off = (mark.line + 1, mark.column + 1, mark.index) if mark else (0, 0, 0)
            ctx = Context(self.name, line, col, "policy", "", self.root, off, self.text)
            raise PolicyError(self.name, [Problem(PolicyCode.YAML_PARSE, str(exc), ctx)]) \
                from None
        if len(docs) != 1:
            ctx = self.ctx(docs[1], ()) if docs else self.root
            what = "is empty" if not docs else f"has {len(docs)} documents"
            raise PolicyError(self.name, [Problem(
                PolicyCode.WRONG_TYPE, f"expected one TracingPolicy document; the file {what}",
                ctx)])
        policy = self._policy(docs[0])
        if self.errors or policy is None:
            raise PolicyError(self.name, self.errors)
        return policy

    def _policy(self, node: yaml.Node) -> Policy | None:
        top = self.mapping(node, (), ("apiVersion", "kind", "metadata", "spec"),
                           required=("apiVersion", "kind", "metadata", "spec"))
        if top is None:
            return None
        api = self.string(top, "apiVersion")
        if api is not None and api != API_VERSION:
            self.error(PolicyCode.BAD_VALUE, top.get("apiVersion") or node, ("apiVersion",),
                       f"apiVersion is {api!r}; a TracingPolicy is {API_VERSION!r}")
        kind = self.enum(top, "kind", frozenset(KINDS)) or "TracingPolicy"
        name, namespace = self._metadata(top)
        spec = self.mapping(top.get("spec"), ("spec",), (
            "kprobes", "fentries", "tracepoints", "lsmhooks", "uprobes", "usdts", "lists",
            "options",
            "enforcers", "loader", "podSelector", "containerSelector"))
        if spec is None:
            return None
        # Lists first: hooks and enforcers refer to them wherever they are.
        lists = self.seq(spec, "lists", self._list)
        for spec_list in lists:
            self.lists.setdefault(spec_list.name, spec_list)
        if kind == "TracingPolicyNamespaced":
            if not namespace:
                self.error(PolicyCode.MISSING_KEY, top.get("metadata") or node,
                           ("metadata", "namespace"),
                           "a TracingPolicyNamespaced needs metadata.namespace: it applies to "
                           "the pods of that Kubernetes namespace")
            for key in ("uprobes", "usdts"):
                if (hooks := spec.get(key)) is not None:
                    self.error(PolicyCode.BAD_VALUE, hooks, ("spec", key),
                               f"a TracingPolicyNamespaced cannot have {key} (as in Tetragon: "
                               "they are not scoped to a namespace)")
        return Policy(
            kind="TracingPolicyNamespaced" if kind == "TracingPolicyNamespaced"
            else "TracingPolicy",
            name=name, context=self.ctx(node, ()), namespace=namespace,
            kprobes=self.seq(spec, "kprobes", self._kprobe),
            fentries=tuple(replace(k, fentry=True)
                           for k in self.seq(spec, "fentries", self._kprobe)),
            tracepoints=self.seq(spec, "tracepoints", self._tracepoint),
            lsmhooks=self.seq(spec, "lsmhooks", self._lsmhook),
            uprobes=self.seq(spec, "uprobes", self._uprobe),
            usdts=self.seq(spec, "usdts", self._usdt),
            lists=lists,
            options=self.seq(spec, "options", self._option),
            enforcers=self.seq(spec, "enforcers", self._enforcer),
            loader=self.boolean(spec, "loader"),
            pod_selector=self.label_selector(spec, "podSelector", None),
            container_selector=self.label_selector(spec, "containerSelector",
                                                   _CONTAINER_SELECTOR_KEYS),
            warnings=tuple(self.warnings),
        )

    def _metadata(self, top: _Map) -> tuple[str, str]:
        meta = self.mapping(top.get("metadata"), ("metadata",), _METADATA_KEYS,
                            required=("name",))
        if meta is None:
            return "", ""
        given = self.string(meta, "name")   # None: absent or not a string (said already)
        name = given or ""
        if given == "":
            self.error(PolicyCode.BAD_VALUE, meta.get("name") or meta.node, ("metadata", "name"),
                       "the name is empty; every policy needs one (it is how bpfguard policy "
                       "delete and the events name it)")
        elif name and (len(name) > 253 or not _NAME_RE.fullmatch(name)):
            self.error(PolicyCode.BAD_VALUE, meta.get("name") or meta.node, ("metadata", "name"),
                       f"{name!r} is not a valid Kubernetes object name (lower-case letters, "
                       "digits, '-' and '.', at most 253 characters)")
        return name, self.string(meta, "namespace") or ""

    # -- spec items

    def _list(self, node: yaml.Node, path: _Where) -> ListSpec | None:
        m = self.mapping(node, path, ("name", "type", "values", "pattern", "validated"),
                         required=("name",))
        if m is None:
            return None
        name = self.string(m, "name") or ""
        if name in self.lists:
            self.error(PolicyCode.BAD_VALUE, m.get("name") or node, (*path, "name"),
                       f"list {name!r} is defined twice")
        kind = self.enum(m, "type", _LIST_TYPES) or ""
        values = self.strings(m, "values")
        pattern = self.string(m, "pattern")
        if kind.startswith("generated") and values:
            self.error(PolicyCode.BAD_VALUE, m.get("values") or node, (*path, "values"),
                       f"a {kind} list is generated: it takes no values")
        if kind == "generated_ftrace" and not pattern:
            self.error(PolicyCode.MISSING_KEY, node, path,
                       "a generated_ftrace list needs a pattern (a regular expression)")
        if pattern is not None and kind != "generated_ftrace":
            self.error(PolicyCode.BAD_VALUE, m.get("pattern") or node, (*path, "pattern"),
                       "pattern is only used by generated_ftrace lists")
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                self.error(PolicyCode.BAD_VALUE, m.get("pattern") or node, (*path, "pattern"),
                           f"pattern is not a regular expression: {exc}")
        if not kind.startswith("generated") and not values:
            self.error(PolicyCode.MISSING_KEY, node, path, f"list {name!r} has no values")
        return ListSpec(name, kind, values, pattern)

    def _option(self, node: yaml.Node, path: _Where) -> Option | None:
        m = self.mapping(node, path, ("name", "value"), required=("name",))
        if m is None:
            return None
        name = self.string(m, "name") or ""
        value = self.string(m, "value") or ""
        allowed = _OPTIONS.get(name)
        if allowed is None:
            self.error(PolicyCode.BAD_VALUE, m.get("name") or node, (*path, "name"),
                       f"unknown option {name!r}{_hint(name, _OPTIONS)}")
        elif value not in allowed:
            self.error(PolicyCode.BAD_VALUE, m.get("value") or node, (*path, "value"),
                       f"option {name} takes {_one_of(allowed)}, not {value!r}")
        return Option(name, value)

    def _enforcer(self, node: yaml.Node, path: _Where) -> Enforcer | None:
        m = self.mapping(node, path, ("calls",), required=("calls",))
        if m is None:
            return None
        calls = self.strings(m, "calls")
        calls_node = m.get("calls")
        if isinstance(calls_node, yaml.SequenceNode):
            for i, (call, item) in enumerate(zip(calls, calls_node.value, strict=False)):
                self.check_list_ref(call, item, (*path, "calls", i))
        return Enforcer(calls, self.ctx(node, path))

    def check_list_ref(self, value: str, node: yaml.Node, path: _Where) -> None:
        if value.startswith("list:") and value[5:] not in self.lists:
            self.error(PolicyCode.BAD_REFERENCE, node, path,
                       f"list {value[5:]!r} is not defined in spec.lists"
                       f"{_hint(value[5:], self.lists)}")

    def _kprobe(self, node: yaml.Node, path: _Where) -> KProbe | None:
        m = self.mapping(node, path, ("call", "syscall", "return", "message", "args",
                                      "returnArg", "returnArgAction", "selectors", "tags",
                                      "ignore", "data"), required=("call",))
        if m is None:
            return None
        call = self.string(m, "call") or ""
        call_node = m.get("call") or node
        if not call:
            self.error(PolicyCode.BAD_VALUE, call_node, (*path, "call"), "call is empty")
        self.check_list_ref(call, call_node, (*path, "call"))
        args = self.args(m, path, MAX_KPROBE_ARG_INDEX)
        return_, return_arg = self.returns(m, node, path)
        action = self.enum(m, "returnArgAction", _RETURN_ARG_ACTIONS | {"Post"}) or ""
        if action == "Post":  # Tetragon: TestKprobeValidationReturnArgActionPost
            self.error(PolicyCode.BAD_VALUE, m.get("returnArgAction") or node,
                       (*path, "returnArgAction"), "returnArgAction Post: omit "
                       "returnArgAction or use 'TrackSock'/'UntrackSock', as Tetragon says")
        elif action and not return_:
            self.error(PolicyCode.BAD_VALUE, m.get("returnArgAction") or node,
                       (*path, "returnArgAction"), "returnArgAction needs return: true")
        ignore = False
        if (ig := m.get("ignore")) is not None:
            im = self.mapping(ig, (*path, "ignore"), ("callNotFound",))
            ignore = im is not None and self.boolean(im, "callNotFound")
        data = self.data(m, path)
        hook = _HookShape("kprobe", args, return_arg, by_position=False, data=data)
        selectors = self.selectors(m, path, hook, returns=return_)
        return KProbe(call=call, context=self.ctx(node, path),
                      syscall=self.boolean(m, "syscall", default=True), return_=return_,
                      message=self.message(m, path), args=args, return_arg=return_arg,
                      return_arg_action=action, selectors=selectors, tags=self.tags(m, path),
                      ignore_call_not_found=ignore, data=data)

    def returns(self, m: _Map, node: yaml.Node, path: _Where) -> tuple[bool, Arg | None]:
        """``return`` and ``returnArg`` of a kprobe or uprobe."""
        return_ = self.boolean(m, "return")
        return_arg = None
        if (ra := m.get("returnArg")) is not None:
            return_arg = self._arg(ra, (*path, "returnArg"), None)
            if not return_:
                # Tetragon reads returnArg only with return: true, and takes the
                # policy: so does bpfguard, saying so
                self.warnings.append(Problem(
                    PolicyCode.BAD_VALUE, "returnArg is ignored without return: true",
                    self.ctx(ra, (*path, "returnArg"))))
                return_arg = None
        elif return_:
            # Tetragon refuses it: "ReturnArg not specified with Return=true"
            self.error(PolicyCode.BAD_VALUE, m.get("return") or node, (*path, "return"),
                       "return: true needs returnArg (index 0 and the type of the "
                       "return value), as Tetragon requires")
        return return_, return_arg

    def _tracepoint(self, node: yaml.Node, path: _Where) -> Tracepoint | None:
        m = self.mapping(node, path, ("subsystem", "event", "raw", "message", "args",
                                      "selectors", "tags"), required=("subsystem", "event"))
        if m is None:
            return None
        args = self.args(m, path, None)
        hook = _HookShape("tracepoint", args, None, by_position=True)
        return Tracepoint(subsystem=self.string(m, "subsystem") or "",
                          event=self.string(m, "event") or "", context=self.ctx(node, path),
                          raw=self.boolean(m, "raw"), message=self.message(m, path), args=args,
                          selectors=self.selectors(m, path, hook, returns=False),
                          tags=self.tags(m, path))

    def _lsmhook(self, node: yaml.Node, path: _Where) -> LsmHook | None:
        m = self.mapping(node, path, ("hook", "message", "args", "selectors", "tags"),
                         required=("hook",))
        if m is None:
            return None
        args = self.args(m, path, MAX_KPROBE_ARG_INDEX)
        hook = _HookShape("lsmhook", args, None, by_position=False)
        return LsmHook(hook=self.string(m, "hook") or "", context=self.ctx(node, path),
                       message=self.message(m, path), args=args,
                       selectors=self.selectors(m, path, hook, returns=False),
                       tags=self.tags(m, path))

    def _uprobe(self, node: yaml.Node, path: _Where) -> UProbe | None:
        m = self.mapping(node, path, ("path", "symbol", "symbols", "offsets", "refCtrOffsets",
                                      "message", "args", "selectors", "tags", "return",
                                      "returnArg", "data", "binaryDigests", "ignore"),
                         required=("path",))
        if m is None:
            return None
        # `symbol` (one) is what Tetragon's releases before `symbols` took
        symbols = self.strings(m, "symbols")
        one = self.string(m, "symbol")
        if one is not None:
            symbols = (one, *symbols)
        offsets = self.ints(m, "offsets")
        if not symbols and not offsets:
            self.error(PolicyCode.MISSING_KEY, node, path, "a uprobe needs symbols or offsets")
        args = self.args(m, path, MAX_KPROBE_ARG_INDEX)
        return_, return_arg = self.returns(m, node, path)
        data = self.data(m, path)
        hook = _HookShape("uprobe", args, return_arg, by_position=False, data=data)
        digests = self.strings(m, "binaryDigests")
        for i, d in enumerate(digests):
            if (why := digest_problem(d)) is not None:
                item = m.get("binaryDigests")
                node_i = item.value[i] if isinstance(item, yaml.SequenceNode) else node
                self.error(PolicyCode.BAD_VALUE, node_i, (*path, "binaryDigests", i), why)
        ignore = self.mapping(m.get("ignore"), (*path, "ignore"),
                              ("digestVerificationFailure",)) \
            if m.get("ignore") is not None else None
        return UProbe(path=self.string(m, "path") or "", context=self.ctx(node, path),
                      binary_digests=digests,
                      ignore_digest_failure=ignore is not None and self.boolean(
                          ignore, "digestVerificationFailure"),
                      symbols=symbols, offsets=offsets,
                      ref_ctr_offsets=self.ints(m, "refCtrOffsets"),
                      message=self.message(m, path), args=args,
                      selectors=self.selectors(m, path, hook, returns=return_),
                      tags=self.tags(m, path), return_=return_, return_arg=return_arg,
                      data=data)

    def _usdt(self, node: yaml.Node, path: _Where) -> Usdt | None:
        m = self.mapping(node, path, ("path", "btfPath", "provider", "name", "message", "args",
                                      "selectors", "tags"),
                         required=("path", "provider", "name"))
        if m is None:
            return None
        if (btf := m.get("btfPath")) is not None:
            self.error(PolicyCode.UNSUPPORTED, btf, (*path, "btfPath"),
                       "btfPath (a BTF file for resolve in a user binary) is not served by "
                       "bpfguard yet")
        # (the probe's own argument count bounds index: the compiler checks)
        args = self.args(m, path, None)
        hook = _HookShape("usdt", args, None, by_position=False)
        return Usdt(path=self.string(m, "path") or "", provider=self.string(m, "provider") or "",
                    probe=self.string(m, "name") or "", context=self.ctx(node, path),
                    message=self.message(m, path), args=args,
                    selectors=self.selectors(m, path, hook, returns=False),
                    tags=self.tags(m, path))

    # -- arguments

    def args(self, m: _Map, path: _Where, max_index: int | None) -> tuple[Arg, ...]:
        def one(node: yaml.Node, p: _Where) -> Arg | None:
            a = self._arg(node, p, max_index)
            if a is not None and a.source:
                self.error(PolicyCode.BAD_VALUE, node, p, "source is for data entries, not args")
            return a

        return self.seq(m, "args", one)

    def data(self, m: _Map, path: _Where) -> tuple[Arg, ...]:
        """``data``: values read beside the arguments, from the current
        task's fields (source: current_task) or a register (pt_regs)."""
        def one(node: yaml.Node, p: _Where) -> Arg | None:
            d = self._arg(node, p, None)
            if d is None or not isinstance(node, yaml.MappingNode):
                return d
            keys = {k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
            if "source" not in keys:
                self.error(PolicyCode.MISSING_KEY, node, p,
                           f"a data entry needs source ({_one_of(_DATA_SOURCES)})")
            elif not d.resolve:
                self.error(PolicyCode.MISSING_KEY, node, p,
                           "a data entry needs resolve: a field path of the task "
                           "(current_task) or a register name (pt_regs)")
            return d

        return self.seq(m, "data", one)

    def _arg(self, node: yaml.Node, path: _Where, max_index: int | None) -> Arg | None:
        m = self.mapping(node, path, ("index", "type", "label", "sizeArgIndex", "returnCopy",
                                      "maxData", "resolve", "btfType", "btfTypeModule",
                                      "source"),
                         required=("index",))
        if m is None:
            return None
        index = self.integer(m, "index", 0, 2**32 - 1) or 0
        if max_index is not None and index > max_index:
            self.error(PolicyCode.LIMIT, m.get("index") or node, (*path, "index"),
                       f"argument index {index} is out of range: Tetragon reads arguments "
                       f"0-{max_index}")
        typ = self.enum(m, "type", ARG_TYPES) or "auto"
        size = self.integer(m, "sizeArgIndex", 0, MAX_KPROBE_ARG_INDEX + 1) or 0
        for key, types in (("sizeArgIndex", ("char_buf", "char_iovec")),
                           ("returnCopy", ("char_buf", "char_iovec")),
                           ("maxData", ("char_buf", "char_iovec", "iov_iter"))):
            if (v := m.get(key)) is not None and typ not in types and _truthy(v):
                self.error(PolicyCode.BAD_VALUE, v, (*path, key),
                           f"{key} is only used with {', '.join(types[:-1])} and "
                           f"{types[-1]} arguments, not {typ}")
        module = self.string(m, "btfTypeModule") or ""
        if module and not m.get("btfType"):
            self.error(PolicyCode.MISSING_KEY, m.get("btfTypeModule") or node,
                       (*path, "btfTypeModule"), "btfTypeModule names the module of btfType: "
                       "give btfType too")
        return Arg(index=index, type=typ, label=self.string(m, "label") or "",
                   size_arg_index=size, return_copy=self.boolean(m, "returnCopy"),
                   max_data=self.boolean(m, "maxData"), resolve=self.string(m, "resolve") or "",
                   btf_type=self.string(m, "btfType") or "", btf_type_module=module,
                   source=self.enum(m, "source", _DATA_SOURCES) or "")

    def message(self, m: _Map, path: _Where) -> str:
        msg = self.string(m, "message") or ""
        if len(msg) > MAX_MESSAGE:
            self.error(PolicyCode.LIMIT, m.get("message") or m.node, (*path, "message"),
                       f"message has {len(msg)} characters; at most {MAX_MESSAGE}")
        return msg

    def tags(self, m: _Map, path: _Where) -> tuple[str, ...]:
        tags = self.strings(m, "tags")
        if len(tags) > MAX_TAGS:
            self.error(PolicyCode.LIMIT, m.get("tags") or m.node, (*path, "tags"),
                       f"{len(tags)} tags; at most {MAX_TAGS}")
        return tags

    # -- selectors

    def selectors(self, m: _Map, path: _Where, hook: _HookShape,
                  returns: bool) -> tuple[Selector, ...]:
        sels = self.seq(m, "selectors", lambda n, p: self._selector(n, p, hook, returns))
        node = m.get("selectors")
        if node is not None and len(sels) > MAX_SELECTORS:
            self.error(PolicyCode.LIMIT, node, (*path, "selectors"),
                       f"{len(sels)} selectors; Tetragon evaluates at most {MAX_SELECTORS} "
                       "per hook")
        return sels

    def _selector(self, node: yaml.Node, path: _Where, hook: _HookShape,
                  returns: bool) -> Selector | None:
        m = self.mapping(node, path, (
            "matchPIDs", "matchArgs", "matchReturnArgs", "matchBinaries",
            "matchParentBinaries", "matchNamespaces", "matchNamespaceChanges",
            "matchCapabilities", "matchCapabilityChanges", "matchActions",
            "matchReturnActions", "matchData"))
        if m is None:
            return None
        for key in ("matchReturnArgs", "matchReturnActions"):
            if (v := m.get(key)) is not None and not returns:
                self.error(PolicyCode.BAD_VALUE, v, (*path, key),
                           f"{key} needs a kprobe with return: true")
        return Selector(
            match_pids=self.seq(m, "matchPIDs", self._pids),
            match_args=self.seq(m, "matchArgs", lambda n, p: self._arg_sel(n, p, hook, False)),
            match_return_args=self.seq(m, "matchReturnArgs",
                                       lambda n, p: self._arg_sel(n, p, hook, True)),
            match_binaries=self.seq(m, "matchBinaries", self._binaries),
            match_parent_binaries=self.seq(m, "matchParentBinaries", self._binaries),
            match_namespaces=self.seq(m, "matchNamespaces", self._namespaces),
            match_namespace_changes=self.seq(m, "matchNamespaceChanges", self._ns_changes),
            match_capabilities=self.seq(m, "matchCapabilities", self._caps),
            match_capability_changes=self.seq(m, "matchCapabilityChanges", self._caps),
            match_actions=self.seq(m, "matchActions", lambda n, p: self._action(n, p, hook)),
            match_return_actions=self.seq(m, "matchReturnActions",
                                          lambda n, p: self._action(n, p, hook)),
            match_data=self.seq(m, "matchData", lambda n, p: self._arg_sel(
                n, p, _HookShape("data", hook.data, None, by_position=True), False)),
        )

    def _arg_sel(self, node: yaml.Node, path: _Where, hook: _HookShape,
                 is_return: bool) -> ArgSelector | None:
        m = self.mapping(node, path, ("index", "args", "operator", "values"),
                         required=("operator",))
        if m is None:
            return None
        op = self.enum(m, "operator", ARG_OPERATORS)
        index = self.integer(m, "index", 0, 2**32 - 1) or 0
        arg_idx = self.ints(m, "args")
        values = self.strings(m, "values")
        if op is None:
            return None
        sel = ArgSelector(op, values, index, arg_idx)
        types: list[str] = []
        if op == "CelExpr":  # its expressions name the arguments (argN); no index
            if not values:
                self.error(PolicyCode.MISSING_KEY, node, path,
                           "CelExpr needs values: the expressions (any one true matches)")
            return sel
        if arg_idx:
            where = m.get("args") or node
            if len(arg_idx) > 1 and op != "CapabilitiesGained":  # (it compares two)
                self.warnings.append(Problem(
                    PolicyCode.BAD_VALUE, f"args lists {len(arg_idx)} positions; this "
                    f"operator filters one, and Tetragon reads the first ({arg_idx[0]})",
                    self.ctx(where, (*path, "args"))))
            typ = hook.type_at(arg_idx[0], is_return)
            if typ is None:
                self.error(PolicyCode.BAD_REFERENCE, where, (*path, "args"),
                           f"args: position {arg_idx[0]} is out of range: "
                           f"{'the returnArg is position 0' if is_return else ''}"
                           f"{'' if is_return else f'the hook has {len(hook.args)} args'}")
            else:
                types.append(typ)
        else:
            typ = hook.type_of(index, is_return)
            if typ is None:
                self.error(PolicyCode.BAD_REFERENCE, m.get("index") or node, (*path, "index"),
                           hook.missing(index, is_return))
            else:
                types.append(typ)
        for typ in types:
            self._op_fits_type(op, typ, m.get("operator") or node, (*path, "operator"))
        self._values(op, values, m, path, types)
        return sel

    def _op_fits_type(self, op: str, typ: str, node: yaml.Node, path: _Where) -> None:
        family: frozenset[str] | None = None
        if op in _NET_OPS:
            family, what = _NET_TYPES, "sock, skb, sockaddr or socket"
        elif op in _NUMBER_OPS:
            family, what = _INT_TYPES, "integer"
        elif op in _STRING_OPS:
            family, what = _STRING_TYPES, "string or file"
        elif op in _MAP_OPS or op in _RANGE_OPS:
            family, what = _INT_TYPES, "integer"
        elif op in _FILE_TYPE_OPS:
            family, what = frozenset({"file", "path", "fd", "linux_binprm"}), "file or path"
        if family is not None and typ != "auto" and typ not in family:
            self.error(PolicyCode.BAD_VALUE, node, path,
                       f"{op} filters {what} arguments; this argument is {typ}")

    def _values(self, op: str, values: tuple[str, ...], m: _Map, path: _Where,
                types: list[str]) -> None:
        vnode = m.get("values")
        items: list[yaml.Node] = vnode.value if isinstance(vnode, yaml.SequenceNode) else []
        if op in _PRIV_OPS:
            if values:
                self.error(PolicyCode.BAD_VALUE, vnode or m.node, (*path, "values"),
                           f"{op} takes no values")
            return
        if not values:
            if op != "CapabilitiesGained":  # (any capability gained, as in Tetragon)
                self.error(PolicyCode.MISSING_KEY, vnode or m.node, path, f"{op} needs values")
            return
        # an fd is compared as the path of its file (Tetragon: GenericFdType
        # is among the string types of Equal and Prefix)
        numeric = bool(types) and all(t in _INT_TYPES and t != "fd" for t in types)
        for i, (value, item) in enumerate(zip(values, items, strict=False)):
            why = _bad_value(op, value, numeric)
            if why is None and op in _MAP_OPS:
                self.check_list_ref(value, item, (*path, "values", i))
            elif why is not None:
                self.error(PolicyCode.BAD_VALUE, item, (*path, "values", i), why)

    def _pids(self, node: yaml.Node, path: _Where) -> PIDSelector | None:
        m = self.mapping(node, path, ("operator", "values", "isNamespacePID", "followForks"),
                         required=("operator", "values"))
        if m is None:
            return None
        return PIDSelector(self.enum(m, "operator", _SELECTOR_OPS) or "",
                           self.ints(m, "values", 2**32 - 1),
                           self.boolean(m, "isNamespacePID"), self.boolean(m, "followForks"))

    def _binaries(self, node: yaml.Node, path: _Where) -> BinarySelector | None:
        m = self.mapping(node, path, ("operator", "values", "followChildren"),
                         required=("operator", "values"))
        if m is None:
            return None
        op = self.enum(m, "operator", _BINARY_OPS) or ""
        values = self.strings(m, "values")
        if not values:
            self.error(PolicyCode.MISSING_KEY, m.get("values") or node, (*path, "values"),
                       "matchBinaries needs values")
        return BinarySelector(op, values, self.boolean(m, "followChildren"))

    def _namespaces(self, node: yaml.Node, path: _Where) -> NamespaceSelector | None:
        m = self.mapping(node, path, ("namespace", "operator", "values"),
                         required=("namespace", "operator", "values"))
        if m is None:
            return None
        values = self.strings(m, "values")
        vnode = m.get("values")
        items = vnode.value if isinstance(vnode, yaml.SequenceNode) else []
        for i, (value, item) in enumerate(zip(values, items, strict=False)):
            if value != "host_ns" and _go_int(value) is None:
                self.error(PolicyCode.BAD_VALUE, item, (*path, "values", i),
                           f"{value!r} is neither a namespace inode number nor host_ns")
        return NamespaceSelector(self.enum(m, "namespace", _NAMESPACES) or "",
                                 self.enum(m, "operator", _SELECTOR_OPS) or "", values)

    def _ns_changes(self, node: yaml.Node, path: _Where) -> NamespaceChangesSelector | None:
        m = self.mapping(node, path, ("operator", "values"), required=("operator", "values"))
        if m is None:
            return None
        return NamespaceChangesSelector(self.enum(m, "operator", _SELECTOR_OPS) or "",
                                        self.enum_list(m, "values", _NAMESPACES, path))

    def _caps(self, node: yaml.Node, path: _Where) -> CapabilitiesSelector | None:
        m = self.mapping(node, path, ("type", "operator", "isNamespaceCapability", "values"),
                         required=("operator", "values"))
        if m is None:
            return None
        return CapabilitiesSelector(self.enum(m, "operator", _SELECTOR_OPS) or "",
                                    self.enum_list(m, "values", _CAPABILITIES, path),
                                    self.enum(m, "type", _CAP_TYPES) or "Effective",
                                    self.boolean(m, "isNamespaceCapability"))

    def _action(self, node: yaml.Node, path: _Where, hook: _HookShape) -> Action | None:
        m = self.mapping(node, path, ("action", "argError", "argSig", "argFd", "argName",
                                      "argSock", "argUrl", "argFqdn", "argIndex", "argValue",
                                      "rateLimit", "rateLimitScope", "kernelStackTrace",
                                      "userStackTrace", "imaHash"), required=("action",))
        if m is None:
            return None
        act = self.enum(m, "action", ACTIONS)
        if act is None:
            return None
        a = Action(
            action=act, arg_error=self.integer(m, "argError", -(2**31), 2**31 - 1),
            arg_sig=self.integer(m, "argSig", 1, MAX_SIGNAL),
            arg_fd=self.integer(m, "argFd", 0, 2**32 - 1),
            arg_name=self.integer(m, "argName", 0, 2**32 - 1),
            arg_sock=self.integer(m, "argSock", 0, 2**32 - 1),
            arg_url=self.string(m, "argUrl") or "", arg_fqdn=self.string(m, "argFqdn") or "",
            arg_index=self.integer(m, "argIndex", 0, 2**32 - 1) or 0,
            arg_value=self.integer(m, "argValue", 0, 2**32 - 1) or 0,
            rate_limit=self.string(m, "rateLimit") or "",
            rate_limit_scope=self.enum(m, "rateLimitScope", _RATE_LIMIT_SCOPES) or "",
            kernel_stack_trace=self.boolean(m, "kernelStackTrace"),
            user_stack_trace=self.boolean(m, "userStackTrace"),
            ima_hash=self.boolean(m, "imaHash"))
        need = {"Override": "argError", "Signal": "argSig", "FollowFD": "argFd",
                "CopyFD": "argFd", "UnfollowFD": "argFd", "GetUrl": "argUrl",
                "DnsLookup": "argFqdn"}  # (argSock defaults to 0, as in Tetragon)
        if (key := need.get(act)) is not None and m.get(key) is None:
            self.error(PolicyCode.MISSING_KEY, node, path, f"{act} needs {key}")
        if act == "NotifyEnforcer" and m.get("argError") is None and m.get("argSig") is None:
            self.error(PolicyCode.MISSING_KEY, node, path,
                       "NotifyEnforcer needs argError, argSig or both")
        if act == "Set" and hook.kind != "usdt":
            self.error(PolicyCode.BAD_VALUE, m.get("action") or node, (*path, "action"),
                       "Set writes a USDT probe's argument: usdts only (as in Tetragon)")
        if act in ("GetUrl", "DnsLookup") and hook.kind == "uprobe":
            self.error(PolicyCode.BAD_VALUE, m.get("action") or node, (*path, "action"),
                       "GetUrl and DnsLookup actions are not supported on uprobes (as in "
                       "Tetragon)")
        if act == "GetUrl" and a.arg_url and not a.arg_url.startswith(("http://", "https://")):
            self.error(PolicyCode.BAD_VALUE, m.get("argUrl") or node, (*path, "argUrl"),
                       f"argUrl {a.arg_url!r} is not an http:// or https:// URL")
        if act == "Override" and hook.kind == "tracepoint":
            self.error(PolicyCode.BAD_VALUE, m.get("action") or node, (*path, "action"),
                       "Override changes a function's return value: kprobes and lsmhooks "
                       "only, not tracepoints")
        elif act == "Override" and hook.kind == "uprobe":  # Tetragon sets registers there
            self.error(PolicyCode.UNSUPPORTED, m.get("action") or node, (*path, "action"),
                       "Override on a uprobe is not served by bpfguard yet")
        for key in ("rateLimit", "rateLimitScope", "kernelStackTrace", "userStackTrace",
                    "imaHash"):
            if (v := m.get(key)) is not None and act != "Post" and _truthy(v):
                self.error(PolicyCode.BAD_VALUE, v, (*path, key),
                           f"{key} is only valid with the Post action")
        if a.rate_limit and not _RATE_RE.fullmatch(a.rate_limit):
            self.error(PolicyCode.BAD_VALUE, m.get("rateLimit") or node, (*path, "rateLimit"),
                       f"rateLimit {a.rate_limit!r} is not a duration (e.g. 30, 30s, 5m, 1h)")
        if a.rate_limit_scope and not a.rate_limit:
            self.error(PolicyCode.BAD_VALUE, m.get("rateLimitScope") or node,
                       (*path, "rateLimitScope"), "rateLimitScope needs rateLimit")
        for key, idx in (("argFd", a.arg_fd), ("argName", a.arg_name), ("argSock", a.arg_sock)):
            if idx is not None and hook.type_of(idx, False) is None:
                self.error(PolicyCode.BAD_REFERENCE, m.get(key) or node, (*path, key),
                           hook.missing(idx, False))
        return a

    # -- typed access to mapping values

    def mapping(self, node: yaml.Node | None, path: _Where, keys: Iterable[str],
                required: Iterable[str] = ()) -> _Map | None:
        if node is None:
            return None
        if not isinstance(node, yaml.MappingNode):
            self.error(PolicyCode.WRONG_TYPE, node, path,
                       f"expected a mapping, found {_kind(node)}")
            return None
        allowed = tuple(keys)
        items: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                self.error(PolicyCode.WRONG_TYPE, key, path, "keys must be strings")
            elif key.value in items:
                self.error(PolicyCode.BAD_VALUE, key, (*path, key.value),
                           f"key {key.value!r} appears twice")
            elif key.value not in allowed:
                self.error(PolicyCode.UNKNOWN_KEY, key, (*path, key.value),
                           f"unknown key {key.value!r}{_hint(key.value, allowed)}")
            else:
                items[key.value] = (key, value)
        for key in required:
            if key not in items:
                self.error(PolicyCode.MISSING_KEY, node, path, f"missing required key {key!r}")
        return _Map(node, path, items)

    def seq(self, m: _Map, key: str,
            read: Callable[[yaml.Node, _Where], T | None]) -> tuple[T, ...]:
        node = m.get(key)
        if node is None or _is_null(node):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            self.error(PolicyCode.WRONG_TYPE, node, (*m.path, key),
                       f"{key} must be a list, found {_kind(node)}")
            return ()
        out = (read(item, (*m.path, key, i)) for i, item in enumerate(node.value))
        return tuple(x for x in out if x is not None)

    def scalar(self, node: yaml.Node, path: _Where) -> yaml.ScalarNode | None:
        if isinstance(node, yaml.ScalarNode) and not _is_null(node):
            return node
        self.error(PolicyCode.WRONG_TYPE, node, path, f"expected a scalar, found {_kind(node)}")
        return None

    def string(self, m: _Map, key: str) -> str | None:
        node = m.get(key)
        if node is None:
            return None
        s = self.scalar(node, (*m.path, key))
        return None if s is None else s.value

    def strings(self, m: _Map, key: str) -> tuple[str, ...]:
        return self.seq(m, key, self.scalar_value)

    def scalar_value(self, node: yaml.Node, path: _Where) -> str | None:
        s = self.scalar(node, path)
        return None if s is None else s.value

    def enum(self, m: _Map, key: str, allowed: frozenset[str]) -> str | None:
        value = self.string(m, key)
        if value is not None and value not in allowed:
            self.error(PolicyCode.BAD_VALUE, m.get(key) or m.node, (*m.path, key),
                       f"{key} {value!r} is not one of {_one_of(allowed)}"
                       f"{_hint(value, allowed)}")
            return None
        return value

    def enum_list(self, m: _Map, key: str, allowed: frozenset[str],
                  path: _Where) -> tuple[str, ...]:
        def one(node: yaml.Node, p: _Where) -> str | None:
            value = self.scalar_value(node, p)
            if value is not None and value not in allowed:
                self.error(PolicyCode.BAD_VALUE, node, p,
                           f"{value!r} is not one of {_one_of(allowed)}{_hint(value, allowed)}")
                return None
            return value
        return self.seq(m, key, one)

    def boolean(self, m: _Map, key: str, default: bool = False) -> bool:
        node = m.get(key)
        if node is None:
            return default
        if not (isinstance(node, yaml.ScalarNode) and node.tag == _BOOL_TAG):
            self.error(PolicyCode.WRONG_TYPE, node, (*m.path, key),
                       f"{key} must be true or false, found {_kind(node)}")
            return default
        return bool(_CONSTRUCT.construct_object(node))

    def integer(self, m: _Map, key: str, lo: int, hi: int) -> int | None:
        node = m.get(key)
        return None if node is None else self.int_node(node, (*m.path, key), lo, hi)

    def int_node(self, node: yaml.Node, path: _Where, lo: int, hi: int) -> int | None:
        if not (isinstance(node, yaml.ScalarNode) and node.tag == _INT_TAG):
            self.error(PolicyCode.WRONG_TYPE, node, path,
                       f"expected an integer, found {_kind(node)}")
            return None
        value = _CONSTRUCT.construct_object(node)
        assert isinstance(value, int)
        if not lo <= value <= hi:
            self.error(PolicyCode.BAD_VALUE, node, path,
                       f"{value} is out of range [{lo}, {hi}]")
            return None
        return value

    def ints(self, m: _Map, key: str, hi: int = 2**64 - 1) -> tuple[int, ...]:
        return self.seq(m, key, lambda n, p: self.int_node(n, p, 0, hi))

    def label_selector(self, m: _Map, key: str,
                       keys: frozenset[str] | None) -> LabelSelector | None:
        """A Kubernetes LabelSelector (`keys`: the only label keys allowed)."""
        node = m.get(key)
        if node is None:
            return None
        path = (*m.path, key)
        if _is_null(node):
            return LabelSelector()
        sel = self.mapping(node, path, ("matchLabels", "matchExpressions"))
        if sel is None:
            return None
        labels: dict[str, str] = {}
        ml = sel.get("matchLabels")
        if ml is not None and not _is_null(ml):
            if not isinstance(ml, yaml.MappingNode):
                self.error(PolicyCode.WRONG_TYPE, ml, (*path, "matchLabels"),
                           f"matchLabels must be a mapping of label to value, found {_kind(ml)}")
            else:
                for k, v in ml.value:
                    kv = self.scalar_value(k, (*path, "matchLabels"))
                    vv = self.scalar_value(v, (*path, "matchLabels", str(k.value)))
                    if kv is not None and vv is not None:
                        self._label_key(kv, keys, k, (*path, "matchLabels", kv))
                        labels[kv] = vv
        exprs = self.seq(sel, "matchExpressions",
                         lambda n, p: self._requirement(n, p, keys))
        return LabelSelector(labels, exprs)

    def _label_key(self, key: str, keys: frozenset[str] | None, node: yaml.Node,
                   path: _Where) -> None:
        if keys is not None and key not in keys:
            self.error(PolicyCode.BAD_VALUE, node, path,
                       f"label {key!r}: a containerSelector selects by {_one_of(keys)}")

    def _requirement(self, node: yaml.Node, path: _Where, keys: frozenset[str] | None
                     ) -> tuple[str, str, tuple[str, ...]] | None:
        r = self.mapping(node, path, ("key", "operator", "values"), required=("key", "operator"))
        if r is None:
            return None
        key = self.string(r, "key")
        op = self.enum(r, "operator", _LABEL_OPERATORS)
        values = self.strings(r, "values")
        if key is not None:
            self._label_key(key, keys, r.get("key") or node, (*path, "key"))
        if op in ("In", "NotIn") and not values:
            self.error(PolicyCode.BAD_VALUE, node, (*path, "values"),
                       f"operator {op} needs values")
        if op in ("Exists", "DoesNotExist") and values:
            self.error(PolicyCode.BAD_VALUE, r.get("values") or node, (*path, "values"),
                       f"operator {op} takes no values")
        if key is None or op is None:
            return None
        return key, op, values


@dataclass(frozen=True)
class _HookShape:
    """What selectors of a hook can refer to: its arguments by `index`
    (kprobes, LSM hooks, uprobes), or by position in ``args``
    (tracepoints), and the return argument."""

    kind: str
    args: tuple[Arg, ...]
    return_arg: Arg | None
    by_position: bool
    data: tuple[Arg, ...] = ()

    def type_of(self, index: int, is_return: bool) -> str | None:
        if is_return:
            ok = self.return_arg is not None and self.return_arg.index == index
            return self.return_arg.type if ok and self.return_arg else None
        if self.by_position:
            return self.args[index].type if index < len(self.args) else None
        return next((a.type for a in self.args if a.index == index), None)

    def type_at(self, position: int, is_return: bool) -> str | None:
        """The type of the argument at `position` in args (the returnArg:
        position 0 of matchReturnArgs)."""
        if is_return:
            return self.return_arg.type if self.return_arg and position == 0 else None
        return self.args[position].type if position < len(self.args) else None

    def missing(self, index: int, is_return: bool) -> str:
        if is_return:
            if self.return_arg is None:
                return "the kprobe has no returnArg to filter"
            return f"index {index} is not the returnArg's index ({self.return_arg.index})"
        if self.kind == "data":
            return (f"index {index} is out of range: a matchData index is a position in "
                    f"the hook's data, which has {len(self.args)}")
        if self.by_position:
            return (f"index {index} is out of range: a tracepoint selector's index is a "
                    f"position in its args, which has {len(self.args)}")
        have = ", ".join(str(a.index) for a in self.args) or "none"
        return f"no argument with index {index} in args (indexes: {have})"


_CONSTRUCT: Final = yaml.constructor.SafeConstructor()
_DATA_SOURCES: Final = frozenset({"current_task", "pt_regs"})


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG


def _truthy(node: yaml.Node) -> bool:
    """A set value: anything but false, 0 and null (``maxData: false`` is fine)."""
    return not (isinstance(node, yaml.ScalarNode)
                and node.value.lower() in ("false", "0", "", "null", "~", "no", "off"))


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if _is_null(node):
        return "nothing"
    return f"{node.value!r}"


def _one_of(allowed: Iterable[str]) -> str:
    return ", ".join(sorted(allowed))


def _hint(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _go_int(text: str) -> int | None:
    """`text` as Go's ``strconv.ParseInt(text, 0, 64)`` reads it (0x, 0o, 0b,
    and a leading 0 for octal), or None."""
    t = text.strip().replace("_", "")
    sign = -1 if t.startswith("-") else 1
    t = t.lstrip("+-")
    try:
        if len(t) > 1 and t[0] == "0" and t[1].isdigit():
            return sign * int(t, 8)
        return sign * int(t, 0)
    except ValueError:
        return None


def _port(text: str) -> bool:
    n = _go_int(text)
    return n is not None and 0 <= n <= 65535


def _bad_value(op: str, value: str, numeric: bool) -> str | None:
    """Why `value` is not a value of operator `op` (None if it is)."""
    if op in _ADDR_OPS:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"{value!r} is not an IP address or CIDR (like 10.0.0.0/8)"
    elif op in _PORT_OPS:
        lo, sep, hi = value.partition(":")
        if not (_port(lo) and (not sep or _port(hi))):
            return f"{value!r} is not a port (0-65535) or a port range (1000:2000)"
    elif op in _NUMBER_OPS:
        if _go_int(value) is None:
            return f"{op} compares integers; {value!r} is not one"
    elif op == "Protocol":
        if _go_int(value) is None and not value.startswith("IPPROTO_"):
            return f"{value!r} is neither a protocol number nor an IPPROTO_ name"
    elif op == "Family":
        if _go_int(value) is None and not value.startswith("AF_"):
            return f"{value!r} is neither an address family number nor an AF_ name"
    elif op == "State":
        if _go_int(value) is None and not value.startswith("TCP_"):
            return f"{value!r} is neither a socket state number nor a TCP_ name"
    elif op in _MAP_OPS:
        if not value.startswith("list:") and _go_int(value) is None:
            lo, sep, hi = value.partition(":")
            if not (sep and _go_int(lo) is not None and _go_int(hi) is not None):
                return f"{value!r} is neither an integer, a range (a:b) nor list:NAME"
    elif op in _RANGE_OPS:
        lo, sep, hi = value.partition(":")
        if _go_int(lo) is None or (sep and _go_int(hi) is None):
            return f"{value!r} is neither an integer nor a range (low:high)"
    elif op in _FILE_TYPE_OPS:
        if value not in FILE_TYPES:
            return f"{value!r} is not a file type ({_one_of(FILE_TYPES)})"
    elif op in ("Prefix", "NotPrefix") and len(value.encode()) > MAX_PREFIX:
        return f"a prefix is at most {MAX_PREFIX} bytes; this one is {len(value.encode())}"
    elif op in ("Postfix", "NotPostfix") and len(value.encode()) > MAX_POSTFIX:
        return f"a postfix is at most {MAX_POSTFIX} bytes; this one is {len(value.encode())}"
    elif op in ("Equal", "NotEqual") and numeric and _go_int(value) is None:
        return f"the argument is an integer; {value!r} is not one"
    return None
