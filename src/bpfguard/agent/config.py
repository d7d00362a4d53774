"""The agent's configuration: one YAML file, every key typed, documented and
defaulted in :data:`SCHEMA`.

The schema is the single source of the keys: validation, the embedded default
(:func:`default_config`: Falco's stock rules, bpfguard's default policies in
monitor mode, JSON alerts on stdout, metrics on localhost) and the reference
that ``bpfguard config default`` prints (:func:`render_reference`) all come
from it. A file only names what it changes::

    rules:
      files: [/etc/falco/falco_rules.yaml, /etc/bpfguard/rules.d]
    outputs:
      file: {enabled: true, path: /var/log/bpfguard/alerts.json}

Errors carry the file, the line and the dotted path of the key, and every
error in a file is reported at once (``bpfguard config check``).
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import logging
import resource
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..inputs import GuardedLoader, InputError, read_text

__all__ = ["SCHEMA", "AgentConfig", "Key", "ListOf", "default_config", "load_config",
           "parse_config", "parse_listen", "render_reference"]

#: A configuration file larger is refused before it is read.
MAX_CONFIG_BYTES = 1 << 20

_MODES = ("enforce", "monitor")


@dataclass(frozen=True)
class Key:
    """One leaf of the schema.

    `kind` is bool, int, float, str or list (of str); `choices` limits a
    str; `check` returns why a value is wrong (None when it is fine).
    """

    kind: type
    default: Any
    doc: str
    choices: tuple[str, ...] = ()
    check: Callable[[Any], str | None] | None = None


@dataclass(frozen=True)
class ListOf:
    """A list of mappings, each validated against `item` (missing keys get defaults)."""

    item: Mapping[str, Key]
    doc: str
    required: tuple[str, ...] = ()
    default: list[Any] = field(default_factory=list)


Node = Mapping[str, "Key | ListOf | Node"]


def _at_least(n: int) -> Callable[[Any], str | None]:
    return lambda v: None if v >= n else f"must be at least {n}"


def _power_of_two_kib(v: int) -> str | None:
    page_kib = resource.getpagesize() // 1024   # the kernel's least ring buffer: a page
    if v < page_kib or v & (v - 1):
        return f"must be a power of two, at least the page size ({page_kib} KiB)"
    if v > _RINGBUF_MAX_KIB:
        return (f"at most {_RINGBUF_MAX_KIB} KiB (2 GiB: the kernel's map size is a 32-bit "
                "count of bytes)")
    return None


_RINGBUF_MAX_KIB = 1 << 21


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as (host, port); ValueError says why."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected HOST:PORT, such as 127.0.0.1:9376")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"{host!r} is not an IP address (or localhost)") from None
    return host, int(port)


def _listen(v: str) -> str | None:
    if not v:
        return None
    try:
        parse_listen(v)
    except ValueError as exc:
        return str(exc)
    return None


_PRIORITIES = ("emergency", "alert", "critical", "error", "warning", "notice",
               "informational", "info", "debug")

SCHEMA: Node = {
    "sensors": {
        "ringbuf_kb": Key(int, 16384, "Kernel ring buffer shared by the sensors, in KiB (a "
                                      "power of two). Events that do not fit are dropped "
                                      "and counted (metric bpfguard_kernel_drops_total).",
                          check=_power_of_two_kib),
        "str_max": Key(int, 4096, "Bytes read per path or string argument (1..4096).",
                       check=lambda v: None if 1 <= v <= 4096 else "must be within 1..4096"),
        "args_max": Key(int, 4095, "argv bytes read at exec (1..4095).",
                        check=lambda v: None if 1 <= v <= 4095 else "must be within 1..4095"),
    },
    "rules": {
        "enabled": Key(bool, True, "Run Falco rules on the syscall and process sensors."),
        "files": Key(list, [], "Falco rules files or directories, in load order (later "
                               "override earlier, as in Falco); stock:stable, "
                               "stock:incubating, stock:sandbox name the rulesets shipped "
                               "with bpfguard (stable first, as in Falco). Empty: "
                               "stock:stable."),
        "priority": Key(str, "debug", "Rules below this priority are not run.",
                        choices=_PRIORITIES),
        "rule_matching": Key(str, "first", "first: the first matching rule alerts (Falco's "
                                           "default); all: every one.",
                             choices=("first", "all")),
        "disable_rules": Key(list, [], "Rule names to turn off (Falco's -D)."),
        "disable_tags": Key(list, [], "Tags whose rules are turned off (Falco's -T)."),
        "enable_tags": Key(list, [], "If set, only rules with one of these tags run "
                                     "(Falco's -t)."),
        "pushdown": Key(bool, True, "Filter in the kernel what no rule can match."),
        "suggested_output": Key(bool, True, "Append the container and pod to every rule's "
                                            "output, as Falco's append_output: "
                                            "suggested_output does (container_id=... "
                                            "container_name=... k8s_ns_name=...)."),
    },
    "containers": {
        "podman": Key(str, "/run/podman/podman.sock",
                      "podman's API socket (podman system service, or the podman.socket "
                      "unit); empty: podman is not asked."),
        "docker": Key(str, "/var/run/docker.sock",
                      "Docker's API socket; empty: Docker is not asked."),
        "containerd": Key(str, "/run/containerd/containerd.sock",
                          "containerd's socket (every containerd namespace is asked: ctr, "
                          "nerdctl and Kubernetes' k8s.io); empty: containerd is not asked."),
        "hold_ms": Key(int, 500, "How long the rules hold the events of a container the "
                                 "runtime is still being asked about, so they are matched "
                                 "with its name, image and pod; then they are matched without "
                                 "and counted (bpfguard_container_unenriched_events_total). "
                                 "0: never hold.", check=_at_least(0)),
    },
    "policies": {
        "enabled": Key(bool, True, "Enforce Tetragon TracingPolicies."),
        "defaults": Key(bool, True, "Load bpfguard's default policies (kernel module "
                                    "loads, ptrace attach, writes to credential files)."),
        "defaults_mode": Key(str, "monitor", "Mode of the default policies: monitor counts "
                                             "and reports what they would do; enforce does "
                                             "it (SIGKILL).", choices=_MODES),
        "files": Key(list, [], "TracingPolicy files or directories (their *.yaml), each "
                               "in the mode its spec.options say."),
        "cgroup": Key(str, "", "Limit the policies of `files` to this cgroup v2 directory "
                               "and below (a container, outside Kubernetes). Empty: all."),
        "pin_dir": Key(str, "/sys/fs/bpf/bpfguard/policies",
                       "Where, while an enforce-mode policy is loaded, the agent pins its "
                       "programs (on a BPF filesystem, in a directory only root controls), so "
                       "that a crash (kill -9, the OOM killer) leaves them enforcing; the next "
                       "agent adopts them, and `bpfguard policy list` reads them when no agent "
                       "runs. A stop (SIGTERM) removes them. Read at start. Empty: nothing is "
                       "pinned; enforcement ends with the agent, however it ends."),
    },
    "seccomp_audit": {
        "enabled": Key(bool, False, "Report the syscalls seccomp filters log (SCMP_ACT_LOG, "
                                    "and denials of filters with the log flag), read from "
                                    "the kernel audit log (needs CONFIG_AUDIT)."),
    },
    "firewall": {
        "interfaces": ListOf({
            "interface": Key(str, "", "Network interface to protect."),
            "netns": Key(str, "", "Named network namespace of the interface (ip netns)."),
            "config": Key(str, "", "Firewall YAML (see `bpfguard firewall load --help`); "
                                   "empty: allow everything, count, no DDoS budgets."),
            "force": Key(bool, False, "Replace another XDP program on the interface."),
        }, "XDP firewalls the agent loads at start. Their state is pinned, so they keep "
           "protecting when the agent stops; one already pinned on the interface is adopted "
           "as it is (change it live with `bpfguard firewall`).", required=("interface",)),
    },
    "outputs": {
        "json": Key(bool, True, "Falco's JSON alert lines (json_output); false: its text "
                                "lines."),
        "json_include_output_property": Key(bool, True, "Keep `output` in JSON alerts."),
        "json_include_tags_property": Key(bool, True, "Keep `tags` in JSON alerts."),
        "queue_size": Key(int, 1000, "Alerts each output queues before it drops the newest "
                                     "(counted per output).", check=_at_least(1)),
        "rate_limit": {
            "rate": Key(float, 0.0, "Alerts per second per rule; 0: unlimited."),
            "burst": Key(int, 10, "Alerts a rule may send at once before the rate applies.",
                         check=_at_least(1)),
            "dedup_window": Key(float, 0.0, "Seconds during which an identical alert is "
                                            "counted, not repeated; 0: off."),
        },
        "stdout": {
            "enabled": Key(bool, True, "Alerts on standard output."),
        },
        "file": {
            "enabled": Key(bool, False, "Alerts appended to a file."),
            "path": Key(str, "/var/log/bpfguard/alerts.json", "The file."),
            "max_bytes": Key(int, 100 << 20, "Rotate when the file would exceed this; 0: "
                                             "never.", check=_at_least(0)),
            "backups": Key(int, 5, "Rotated files kept (path.1 is the newest).",
                           check=_at_least(0)),
        },
        "syslog": {
            "enabled": Key(bool, False, "Alerts as RFC 5424 syslog messages."),
            "address": Key(str, "unix:///dev/log", "unix:///PATH, udp://HOST[:514] or "
                                                   "tcp://HOST[:601] (octet-counted)."),
            "facility": Key(str, "daemon", "Syslog facility.",
                            choices=("kern", "user", "mail", "daemon", "auth", "syslog", "lpr",
                                     "news", "uucp", "cron", "authpriv", "local0", "local1",
                                     "local2", "local3", "local4", "local5", "local6",
                                     "local7")),
        },
        "webhook": {
            "enabled": Key(bool, False, "Alerts POSTed as JSON (falcosidekick accepts them)."),
            "url": Key(str, "", "http:// or https:// URL."),
            "insecure": Key(bool, False, "Skip TLS certificate checks."),
            "ca_cert": Key(str, "", "CA bundle for https (default: the system's)."),
            "compress": Key(bool, False, "gzip the bodies."),
        },
        "sqlite": {
            "enabled": Key(bool, False, "Keep alerts in an SQLite store (WAL) for "
                                        "`bpfguard alerts query`."),
            "path": Key(str, "/var/lib/bpfguard/alerts.db", "The database."),
            "max_rows": Key(int, 1_000_000, "Oldest alerts are deleted beyond this.",
                            check=_at_least(1)),
        },
    },
    "control": {
        "socket": Key(str, "/run/bpfguard/bpfguard.sock", "Unix control socket (0600, root "
                                                          "peers only) for `bpfguard policy`, "
                                                          "`rules` and `agent` commands; "
                                                          "empty: none."),
        "tcp_listen": Key(str, "", "HOST:PORT of a TCP control endpoint; empty: none. Needs "
                                   "a token.", check=_listen),
        "tcp_token_file": Key(str, "", "File holding the TCP endpoint's token (at least 16 "
                                       "characters); requests without it are refused."),
    },
    "metrics": {
        "enabled": Key(bool, True, "Serve Prometheus metrics and /healthz over HTTP."),
        "listen": Key(str, "127.0.0.1:9376", "HOST:PORT to serve them on ([::1]:PORT for "
                                             "IPv6).", check=lambda v: _listen(v or ":")),
        "bpf_stats": Key(bool, False, "Enable the kernel's BPF run-time statistics while "
                                      "the agent runs, for per-program run count and time "
                                      "in the metrics. Off by default: they cost every BPF "
                                      "program on the host two clock reads per run, which "
                                      "made an untraced syscall 7-9x dearer than an empty "
                                      "enter+exit pair under this project's paravirtual "
                                      "clock (see bench/README.md). Turn on to profile."),
    },
}


def default_config() -> dict[str, Any]:
    """Every key at its default: the embedded configuration."""

    def walk(node: Node) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in node.items():
            if isinstance(v, Key | ListOf):
                out[k] = copy.deepcopy(v.default)
            else:
                out[k] = walk(v)
        return out

    return walk(SCHEMA)


@dataclass
class AgentConfig:
    """A validated configuration: `data` mirrors :data:`SCHEMA`, every key set."""

    data: dict[str, Any]
    source: str = "<embedded default>"

    def __getitem__(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            node = node[part]
        return node


log = logging.getLogger("bpfguard.agent")

# Keys earlier versions had, and why they are gone: a file that still names
# one loads, with a warning, rather than stopping the agent at an upgrade.
RETIRED_KEYS = {
    "sensors.queue_size": "no longer used: the reader hands alerts straight to the outputs, "
                          "each behind its own queue (outputs.queue_size)",
}


class _Errors:
    def __init__(self, name: str) -> None:
        self.name = name
        self.items: list[str] = []

    def _where(self, node: yaml.Node | None, path: str) -> str:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return f"{self.name}{line}: {path}"

    def add(self, node: yaml.Node | None, path: str, msg: str) -> None:
        self.items.append(f"{self._where(node, path)}: {msg}")

    def warn(self, node: yaml.Node | None, path: str, msg: str) -> None:
        log.warning("%s: %s", self._where(node, path), msg)


_CONSTRUCT = yaml.constructor.SafeConstructor()
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
               list: "a list of strings"}


def _is_kind(value: Any, kind: type) -> bool:
    # bool is an int to Python, never to a config file
    return isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))


def _scalar(node: yaml.Node, key: Key, path: str, errs: _Errors) -> Any:
    if key.kind is list:
        if not isinstance(node, yaml.SequenceNode):
            if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
                return []
            errs.add(node, path, f"expected {_TYPE_NAMES[list]}")
            return None
        out = []
        for i, item in enumerate(node.value):
            v = _CONSTRUCT.construct_object(item) if isinstance(item, yaml.ScalarNode) else None
            if not isinstance(v, str) or not v:
                errs.add(item, f"{path}[{i}]", "expected a non-empty string")
                return None
            out.append(v)
        return out
    if not isinstance(node, yaml.ScalarNode):
        errs.add(node, path, f"expected {_TYPE_NAMES[key.kind]}, not a "
                             f"{'list' if isinstance(node, yaml.SequenceNode) else 'mapping'}")
        return None
    value: Any = _CONSTRUCT.construct_object(node)
    if key.kind is str and value is None:
        value = ""
    if key.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not _is_kind(value, key.kind):
        errs.add(node, path, f"expected {_TYPE_NAMES[key.kind]}, not {value!r}")
        return None
    if key.choices and str(value).lower() not in key.choices:
        errs.add(node, path, f"{value!r} is not one of: {', '.join(key.choices)}")
        return None
    if key.kind in (int, float) and value < 0:
        errs.add(node, path, f"must not be negative, got {value}")
        return None
    if key.check is not None and (why := key.check(value)) is not None:
        errs.add(node, path, why)
        return None
    return value.lower() if key.choices else value


def _mapping(node: yaml.Node, schema: Node, path: str, errs: _Errors,
             out: dict[str, Any]) -> None:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return
    if not isinstance(node, yaml.MappingNode):
        errs.add(node, path or "(top)", "expected a mapping of keys")
        return
    seen: set[str] = set()
    for knode, vnode in node.value:
        k = knode.value if isinstance(knode, yaml.ScalarNode) else str(knode)
        sub = f"{path}.{k}" if path else k
        if k in seen:
            errs.add(knode, sub, "given twice")
            continue
        seen.add(k)
        spec = schema.get(k)
        if spec is None and sub in RETIRED_KEYS:
            errs.warn(knode, sub, RETIRED_KEYS[sub])
        elif spec is None:
            near = difflib.get_close_matches(k, list(schema), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else \
                f"; known keys here: {', '.join(schema)}"
            errs.add(knode, sub, f"unknown key{hint}")
        elif isinstance(spec, Key):
            value = _scalar(vnode, spec, sub, errs)
            if value is not None:
                out[k] = value
        elif isinstance(spec, ListOf):
            out[k] = _list_of(vnode, spec, sub, errs)
        else:
            _mapping(vnode, spec, sub, errs, out[k])


def _list_of(node: yaml.Node, spec: ListOf, path: str, errs: _Errors) -> list[dict[str, Any]]:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return []
    if not isinstance(node, yaml.SequenceNode):
        errs.add(node, path, "expected a list of mappings")
        return []
    items = []
    for i, item in enumerate(node.value):
        entry = {k: copy.deepcopy(v.default) for k, v in spec.item.items()}
        before = len(errs.items)
        _mapping(item, spec.item, f"{path}[{i}]", errs, entry)
        for req in spec.required:
            if not entry[req] and len(errs.items) == before:
                errs.add(item, f"{path}[{i}].{req}", "required")
        items.append(entry)
    return items


def _cross_checks(data: dict[str, Any], root: yaml.Node | None, errs: _Errors) -> None:
    """Rules that span keys."""
    ctl = data["control"]
    if ctl["tcp_listen"] and not ctl["tcp_token_file"]:
        errs.add(root, "control.tcp_token_file",
                 "a TCP control endpoint needs a token: set control.tcp_token_file")
    out = data["outputs"]
    if out["webhook"]["enabled"] and not out["webhook"]["url"].startswith(("http://",
                                                                           "https://")):
        errs.add(root, "outputs.webhook.url", "an enabled webhook needs an http(s):// URL")
    names = [(f["interface"], f["netns"]) for f in data["firewall"]["interfaces"]]
    for dup in {n for n in names if names.count(n) > 1}:
        errs.add(root, "firewall.interfaces", f"{dup[0]} is listed twice")


def parse_config(text: str, name: str) -> AgentConfig:
    """Validates YAML `text` (from `name`, for messages) over the defaults.

    Raises ConfigError listing every problem, one per line."""
    errs = _Errors(name)
    data = default_config()
    root: yaml.Node | None = None
    try:
        root = yaml.compose(text, Loader=GuardedLoader)
    except InputError as exc:
        raise ConfigError(f"{name}:{exc.line}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if root is not None:
        _mapping(root, SCHEMA, "", errs, data)
    if not errs.items:
        _cross_checks(data, root, errs)
    if errs.items:
        raise ConfigError("\n".join(errs.items))
    return AgentConfig(data, name)


def load_config(path: str | Path | None) -> AgentConfig:
    """The configuration in `path`, or the embedded default for None."""
    if path is None:
        return AgentConfig(default_config())
    p = Path(path)
    try:
        text = read_text(p, MAX_CONFIG_BYTES)
    except OSError as exc:
        raise ConfigError(f"{p}: {exc.strerror}") from None
    except InputError as exc:
        raise ConfigError(f"{p}:{exc.line}: {exc}" if exc.line else f"{p}: {exc}") from None
    return parse_config(text, str(p))


def _comment(pad: str, text: str) -> Iterator[str]:
    for line in textwrap.wrap(text, 88 - len(pad)):
        yield f"{pad}# {line}"


def _walk_docs(node: Node, indent: int) -> Iterator[str]:
    pad = "  " * indent
    for k, v in node.items():
        if isinstance(v, Key):
            yield from _comment(pad, v.doc)
            if v.choices:
                yield f"{pad}# One of: {', '.join(c for c in v.choices if c != 'info')}."
            yield f"{pad}{k}: {_yaml_value(v.default)}"
        elif isinstance(v, ListOf):
            yield from _comment(pad, f"{v.doc} Each entry:")
            for ik, iv in v.item.items():
                req = " (required)" if ik in v.required else f" (default {_yaml_value(iv.default)})"
                yield from _comment(pad + "  ", f"{ik}{req}: {iv.doc}")
            yield f"{pad}{k}: []"
        else:
            yield f"{pad}{k}:"
            yield from _walk_docs(v, indent + 1)


def _yaml_value(v: Any) -> str:
    if isinstance(v, list):
        return "[]" if not v else "[" + ", ".join(v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v or '""'
    return str(v)


def render_reference() -> str:
    """Every key, documented, at its default: a valid config file."""
    head = ["# bpfguard agent configuration: every key at its default.",
            "# `bpfguard run` without -c runs exactly this; a file names only what it "
            "changes.", ""]
    return "\n".join(head + list(_walk_docs(SCHEMA, 0))) + "\n"
