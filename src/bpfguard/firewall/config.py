"""The firewall's YAML config: same power as the CLI, errors at file:line.

Example (every key optional; these are the defaults but for the rules)::

    mode: enforce            # or audit: count and sample would-drops, drop nothing
    policy: allow            # what unmatched packets get: allow or deny
    rules:                   # first match wins
      - {src: 198.18.7.0/24, action: drop}
      - {dst: 198.18.0.2, proto: tcp, dport: 22, action: pass}
      - {proto: icmp, icmp_type: 8, action: drop}
    allow: [198.18.0.0/28]   # sources that bypass bans, budgets, the amplification filter
    limits:                  # per source; 0 is off
      pps: 0
      burst: 0               # packets; 0 means one second's worth
      bps: 0                 # bytes per second
      burst_bytes: 0
      syn_pps: 0
      syn_burst: 0
      syn_global_pps: 0      # all sources together
      syn_global_burst: 0
      ban_seconds: 0         # ban a source that exceeds a budget for this long
      ipv6_source_prefix: 64 # IPv6 sources share budgets and bans per /64
    amplification:
      enabled: false
      ports: [17, 19, 111, 137, 161, 389, 520, 1900, 3283, 3702, 5351, 10001, 11211]
    sampling:
      per_second: 100        # sampled would-drop events per CPU per second

The egress config (``bpfguard egress load CGROUP -c FILE``) is::

    deny:
      - {dst: 198.18.0.0/15}
      - {dst: 2001:2::/48, dport: 443, proto: tcp}
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ..errors import ConfigError
from ..inputs import GuardedLoader, InputError, read_text
from ..loader import BpfObject, bpf_object_path
from .model import (
    EgressRule,
    FirewallConfig,
    Limits,
    Rule,
    parse_network,
    parse_port,
)

__all__ = ["load_egress_config", "load_firewall_config", "load_firewall_config_text",
           "rule_from_options"]

T = TypeVar("T")
_CONSTRUCT = yaml.constructor.SafeConstructor()


#: A firewall config larger is refused before it is read (65,535 rules, the
#: most the firewall holds, take about 5 MB).
MAX_FIREWALL_CONFIG_BYTES = 16 << 20


@functools.cache
def max_rules() -> int:
    """The rules the firewall holds: its rule map's size less id 0, which
    no rule has (read from the object, not loaded)."""
    with BpfObject.open(bpf_object_path("firewall")) as obj:
        return int(obj.map("fw_rule_meta").max_entries) - 1


def _read(path: str | Path) -> str:
    try:
        return read_text(path, MAX_FIREWALL_CONFIG_BYTES)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except InputError as exc:
        raise ConfigError(f"{path}:{exc.line}: {exc}" if exc.line else f"{path}: {exc}"
                          ) from None


class _Doc:
    """A YAML document read node by node, so every error names file:line
    (`name` is the file's, for the messages)."""

    def __init__(self, name: str, text: str, *, max_items: int | None = None,
                 max_items_why: str = "") -> None:
        self.name = name
        try:
            loader = GuardedLoader(text, max_items=max_items, max_items_why=max_items_why)
            try:
                self.root = loader.get_single_node()
            finally:
                loader.dispose()
        except InputError as exc:
            raise ConfigError(f"{self.name}:{exc.line}: {exc}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{self.name}:{mark.line + 1}" if mark else self.name
            raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None

    def fail(self, node: yaml.Node | None, key: str, msg: str) -> ConfigError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return ConfigError(f"{self.name}{line}: {key}: {msg}")

    def mapping(self, node: yaml.Node | None, key: str,
                allowed: tuple[str, ...]) -> dict[str, yaml.Node]:
        if node is None or (isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null")):
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, key, "expected a mapping")
        out: dict[str, yaml.Node] = {}
        for k, v in node.value:
            name = str(k.value)
            if name not in allowed:
                raise self.fail(k, f"{key}.{name}" if key else name,
                                f"unknown key; expected one of {', '.join(allowed)}")
            if name in out:
                raise self.fail(k, f"{key}.{name}" if key else name, "given twice")
            out[name] = v
        return out

    def sequence(self, node: yaml.Node | None, key: str) -> list[yaml.Node]:
        if node is None or (isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null")):
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, key, "expected a list")
        return list(node.value)

    def scalar(self, node: yaml.Node, key: str, convert: Callable[[Any], T]) -> T:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, key, "expected a single value")
        try:
            value: Any = _CONSTRUCT.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, AttributeError) as exc:
            raise self.fail(node, key, f"cannot read {node.value!r}: {exc}") from None
        try:
            return convert(value)
        except (ValueError, TypeError) as exc:
            raise self.fail(node, key, str(exc)) from None


def _choice(*choices: str) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        if v not in choices:
            raise ValueError(f"{v!r} is not one of {', '.join(choices)}")
        return str(v)
    return conv


def _count(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{v!r} is not a whole number >= 0")
    return v


def _seconds(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 10**9:
        raise ValueError(f"{v!r} is not a number of seconds from 0 to 10^9")
    return float(v)


def _icmp_type(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255:
        raise ValueError(f"{v!r} is not an ICMP type 0-255")
    return v


_RULE_KEYS = ("src", "dst", "proto", "sport", "dport", "icmp_type", "action")
_RULE_CONVERT: dict[str, Callable[[Any], Any]] = {
    "src": parse_network, "dst": parse_network, "proto": _choice("tcp", "udp", "icmp", "icmpv6"),
    "sport": parse_port, "dport": parse_port, "icmp_type": _icmp_type,
    "action": _choice("drop", "pass"),
}


def _rule(doc: _Doc, node: yaml.Node, key: str) -> Rule:
    m = doc.mapping(node, key, _RULE_KEYS)
    if "action" not in m:
        raise doc.fail(node, key, "a rule needs an action (drop or pass)")
    values = {k: doc.scalar(v, f"{key}.{k}", _RULE_CONVERT[k]) for k, v in m.items()}
    try:
        return Rule(**values)
    except ValueError as exc:
        raise doc.fail(node, key, str(exc)) from None


def load_firewall_config(path: str | Path) -> FirewallConfig:
    """Reads a firewall config; ConfigError (file:line: key: why) on the first problem."""
    return load_firewall_config_text(str(path), _read(path))


def load_firewall_config_text(source: str, text: str) -> FirewallConfig:
    """A firewall config from its YAML `text`; errors name `source` (its file) and line.
    The agent reads a client's config this way: the client sends the text, not a path."""
    most = max_rules()   # no list of it may be longer: refused before the rest is read
    doc = _Doc(source, text, max_items=most,
               max_items_why=f"no list of a firewall config may be longer than the {most:,} "
                             "rules the firewall holds")
    top = doc.mapping(doc.root, "", ("mode", "policy", "rules", "allow", "limits",
                                     "amplification", "sampling"))
    cfg = FirewallConfig()
    if "mode" in top:
        cfg.mode = "audit" if doc.scalar(top["mode"], "mode", _choice("enforce", "audit")) \
            == "audit" else "enforce"
    if "policy" in top:
        cfg.policy = "deny" if doc.scalar(top["policy"], "policy", _choice("allow", "deny")) \
            == "deny" else "allow"
    cfg.rules = [_rule(doc, n, f"rules[{i}]")
                 for i, n in enumerate(doc.sequence(top.get("rules"), "rules"))]
    cfg.allow = [doc.scalar(n, f"allow[{i}]", parse_network)
                 for i, n in enumerate(doc.sequence(top.get("allow"), "allow"))]
    names = tuple(f.name for f in fields(Limits))
    lim = doc.mapping(top.get("limits"), "limits", names)
    values: dict[str, Any] = {}
    for k, v in lim.items():
        conv: Callable[[Any], Any] = _seconds if k == "ban_seconds" else _count
        values[k] = doc.scalar(v, f"limits.{k}", conv)
    try:
        cfg.limits = Limits(**values)
    except ValueError as exc:
        raise doc.fail(top.get("limits"), "limits", str(exc)) from None
    amp = doc.mapping(top.get("amplification"), "amplification", ("enabled", "ports"))
    if "enabled" in amp:
        cfg.amplification = doc.scalar(amp["enabled"], "amplification.enabled", _bool)
    if "ports" in amp:
        cfg.amplification_ports = tuple(
            doc.scalar(n, f"amplification.ports[{i}]", parse_port)
            for i, n in enumerate(doc.sequence(amp["ports"], "amplification.ports")))
        if len(cfg.amplification_ports) > 64:
            raise doc.fail(amp["ports"], "amplification.ports", "at most 64 ports")
    samp = doc.mapping(top.get("sampling"), "sampling", ("per_second",))
    if "per_second" in samp:
        cfg.samples_per_second = doc.scalar(samp["per_second"], "sampling.per_second", _count)
    return cfg


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{v!r} is not true or false")
    return v


def load_egress_config(path: str | Path) -> list[EgressRule]:
    """Reads an egress config (a `deny` list); ConfigError at file:line."""
    doc = _Doc(str(path), _read(path))
    top = doc.mapping(doc.root, "", ("deny",))
    out = []
    for i, n in enumerate(doc.sequence(top.get("deny"), "deny")):
        key = f"deny[{i}]"
        m = doc.mapping(n, key, ("dst", "dport", "proto"))
        if "dst" not in m:
            raise doc.fail(n, key, "needs dst (a CIDR)")
        try:
            out.append(EgressRule(
                doc.scalar(m["dst"], f"{key}.dst", parse_network),
                doc.scalar(m["dport"], f"{key}.dport", parse_port) if "dport" in m else None,
                doc.scalar(m["proto"], f"{key}.proto", _choice("tcp", "udp"))
                if "proto" in m else None))
        except ValueError as exc:
            raise doc.fail(n, key, str(exc)) from None
    return out


def rule_from_options(*, action: str, src: str | None = None, dst: str | None = None,
                      proto: str | None = None, sport: int | None = None,
                      dport: int | None = None, icmp_type: int | None = None) -> Rule:
    """A rule from CLI option values; ConfigError naming the option."""
    try:
        s = parse_network(src) if src is not None else None
    except ValueError as exc:
        raise ConfigError(f"--src: {exc}") from None
    try:
        d = parse_network(dst) if dst is not None else None
    except ValueError as exc:
        raise ConfigError(f"--dst: {exc}") from None
    try:
        return Rule(action, s, d, proto, sport, dport, icmp_type)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(f"rule: {exc}") from None
