"""Firewall and egress rules as users write them, validated.

Every constructor here raises :class:`ValueError` with a message fit for the
user (what was wrong and, when it can tell, what was meant); the CLI and the
config reader add where (the option, or file:line).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "AMPLIFICATION_PORTS",
    "PROTOCOLS",
    "Action",
    "EgressRule",
    "FirewallConfig",
    "Limits",
    "Network",
    "Rule",
    "parse_network",
    "parse_port",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Action = Literal["drop", "pass"]
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
_PROTO_FAMILY = {"icmp": 4, "icmpv6": 6}

# UDP source ports of services that answer a small spoofed request with a large
# reply (US-CERT TA14-017A and later advisories). DNS (53) and NTP (123) are
# left out on purpose: a host's own lookups and time sync get replies from
# them. Add them when the resolvers and time servers are on the allowlist.
AMPLIFICATION_PORTS = (
    17,     # QOTD
    19,     # chargen
    111,    # portmap / rpcbind
    137,    # NetBIOS name service
    161,    # SNMP
    389,    # CLDAP
    520,    # RIPv1
    1900,   # SSDP
    3283,   # Apple Remote Desktop
    3702,   # WS-Discovery
    5351,   # NAT-PMP
    10001,  # Ubiquiti discovery
    11211,  # memcached
)


def parse_network(text: str) -> Network:
    """An IPv4/IPv6 address or CIDR; a bare address is a /32 or /128."""
    text = str(text).strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not an IPv4 or IPv6 address or CIDR ({exc})") from None
        raise ValueError(f"{text!r} has host bits set; did you mean {loose}?") from None


def parse_port(value: object) -> int:
    """A TCP/UDP port, 1-65535."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"port {value!r} is not a number")
    try:
        port = int(value)
    except ValueError:
        raise ValueError(f"port {value!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1-65535")
    return port


def _family(net: Network | None) -> int:
    return 0 if net is None else net.version


@dataclass(frozen=True)
class Rule:
    """One XDP firewall rule: every given field must match; the first rule
    (lowest position) that matches decides. Ports without a protocol match
    both TCP and UDP."""

    action: Action
    src: Network | None = None
    dst: Network | None = None
    proto: str | None = None
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None

    def __post_init__(self) -> None:
        if self.action not in ("drop", "pass"):
            raise ValueError(f"action {self.action!r} is not drop or pass")
        if self.proto is not None and self.proto not in PROTOCOLS:
            raise ValueError(f"protocol {self.proto!r} is not one of {', '.join(PROTOCOLS)}")
        fams = {_family(self.src), _family(self.dst), _PROTO_FAMILY.get(self.proto or "", 0)}
        fams.discard(0)
        if len(fams) > 1:
            raise ValueError(f"mixes IPv4 and IPv6 ({self.describe()})")
        for port in (self.sport, self.dport):
            if port is not None:
                parse_port(port)
        if (self.sport or self.dport) and self.proto not in (None, "tcp", "udp"):
            raise ValueError(f"ports need protocol tcp or udp, not {self.proto}")
        if self.icmp_type is not None:
            if self.proto not in ("icmp", "icmpv6"):
                raise ValueError("an ICMP type needs protocol icmp or icmpv6")
            if not 0 <= self.icmp_type <= 255:
                raise ValueError(f"ICMP type {self.icmp_type} is out of range 0-255")
        if not any((self.src, self.dst, self.proto, self.sport, self.dport)):
            raise ValueError("a rule needs at least one of src, dst, proto, sport, dport "
                             "(the default policy covers everything else)")

    @property
    def family(self) -> int:
        """4, 6, or 0 when the rule matches both."""
        for f in (_family(self.src), _family(self.dst), _PROTO_FAMILY.get(self.proto or "", 0)):
            if f:
                return f
        return 0

    def describe(self) -> str:
        """As the CLI options would say it."""
        parts = [f"--{k.replace('_', '-')} {v}" for k, v in self.fields().items()
                 if k != "action"]
        return " ".join([*parts, f"--action {self.action}"])

    def fields(self) -> dict[str, str | int]:
        """The given fields, as the config file spells them."""
        out: dict[str, str | int] = {}
        for k in ("src", "dst", "proto", "sport", "dport", "icmp_type"):
            v = getattr(self, k)
            if v is not None:
                out[k] = str(v) if k in ("src", "dst") else v
        out["action"] = self.action
        return out


@dataclass(frozen=True)
class Limits:
    """Per-source DDoS budgets (0: off). Bursts default to one second's worth."""

    pps: int = 0
    burst: int = 0
    bps: int = 0
    burst_bytes: int = 0
    syn_pps: int = 0
    syn_burst: int = 0
    syn_global_pps: int = 0
    syn_global_burst: int = 0
    ban_seconds: float = 0.0
    ipv6_source_prefix: int = 64

    def __post_init__(self) -> None:
        for k in ("pps", "burst", "bps", "burst_bytes", "syn_pps", "syn_burst",
                  "syn_global_pps", "syn_global_burst"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{k} must be a whole number >= 0, not {v!r}")
        if self.bps > 10**12:
            raise ValueError(f"bps {self.bps} is above the 10^12 bytes/s this firewall counts")
        if self.pps > 10**9 or self.syn_pps > 10**9 or self.syn_global_pps > 10**9:
            raise ValueError("packet rates above 10^9/s cannot be budgeted in nanoseconds")
        if isinstance(self.ban_seconds, bool) or not isinstance(self.ban_seconds, (int, float)) \
                or not 0 <= self.ban_seconds <= 10**9:
            raise ValueError(f"ban_seconds must be from 0 to 10^9, not {self.ban_seconds!r}")
        if isinstance(self.ipv6_source_prefix, bool) or not isinstance(
                self.ipv6_source_prefix, int) or not 1 <= self.ipv6_source_prefix <= 128:
            raise ValueError(f"ipv6_source_prefix {self.ipv6_source_prefix} is not in 1-128")


@dataclass(frozen=True)
class EgressRule:
    """A denied destination for a cgroup: a CIDR, optionally one port, for TCP,
    UDP or both."""

    dst: Network
    port: int | None = None
    proto: str | None = None  # "tcp", "udp", or None for both

    def __post_init__(self) -> None:
        if self.proto not in (None, "tcp", "udp"):
            raise ValueError(f"egress protocol {self.proto!r} is not tcp or udp")

    def describe(self) -> str:
        s = f"--dst {self.dst}"
        if self.port:
            s += f" --dport {self.port}"
        if self.proto:
            s += f" --proto {self.proto}"
        return s


@dataclass
class FirewallConfig:
    """A whole XDP firewall, as a config file or `firewall load` options give it."""

    mode: Literal["enforce", "audit"] = "enforce"
    policy: Literal["allow", "deny"] = "allow"
    rules: list[Rule] = field(default_factory=list)
    allow: list[Network] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    amplification: bool = False
    amplification_ports: tuple[int, ...] = AMPLIFICATION_PORTS
    samples_per_second: int = 100
