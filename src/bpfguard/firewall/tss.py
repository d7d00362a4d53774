"""Rules to hash-table entries by tuple-space search (as Open vSwitch does).

Rules of one shape (family, source and destination prefix lengths, which L4
fields) form a class; each class masks a packet's fields the same way, so one
hash lookup per class finds every rule of that class the packet matches. The
per-packet cost grows with the classes in use (at most BG_FW_CLASSES), not the
rules: 10,000 /32 deny entries are one class and one lookup.

Pure functions over :class:`~bpfguard.firewall.model.Rule`; the kernel
layouts are applied by :mod:`bpfguard.firewall.xdp`.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from .model import PROTOCOLS, Network, Rule

__all__ = ["F_DPORT", "F_ICMP_TYPE", "F_PROTO", "F_SPORT", "MatchKey", "Shape", "match_keys",
           "prefix_mask",
           "shape_of"]

# enum bg_fw_field (checked against the object's BTF in xdp.py)
F_PROTO, F_SPORT, F_DPORT, F_ICMP_TYPE = 1, 2, 4, 8


@dataclass(frozen=True, order=True)
class Shape:
    """A class: what its rules match and how a packet is masked for it."""

    family: int      # 4, 6, or 0 (either)
    src_plen: int    # 0 with no source
    dst_plen: int
    fields: int      # F_* bits

    @property
    def src_mask(self) -> bytes:
        return prefix_mask(self.family, self.src_plen)

    @property
    def dst_mask(self) -> bytes:
        return prefix_mask(self.family, self.dst_plen)


def prefix_mask(family: int, plen: int) -> bytes:
    """16 mask bytes for a /plen of `family` (IPv4 fills the first 4)."""
    width = 4 if family == 4 else 16
    bits = ((1 << plen) - 1) << (width * 8 - plen) if plen else 0
    return bits.to_bytes(width, "big").ljust(16, b"\0")


def shape_of(rule: Rule) -> Shape:
    fields = 0
    if rule.proto or rule.sport or rule.dport:
        fields |= F_PROTO
    if rule.sport:
        fields |= F_SPORT
    if rule.dport:
        fields |= F_DPORT
    if rule.icmp_type is not None:
        fields |= F_ICMP_TYPE
    return Shape(rule.family, rule.src.prefixlen if rule.src else 0,
                 rule.dst.prefixlen if rule.dst else 0, fields)


@dataclass(frozen=True)
class MatchKey:
    """A rule's masked fields: a key of the rules hash once its class is known.
    Ports are in host order here."""

    family: int
    proto: int
    icmp_type: int
    sport: int
    dport: int
    src: bytes  # 16, masked
    dst: bytes


def _addr(net: Network | None) -> bytes:
    return b"\0" * 16 if net is None else net.network_address.packed.ljust(16, b"\0")


def match_keys(rule: Rule) -> list[MatchKey]:
    """The hash keys of a rule: one, or two (TCP and UDP) for ports without a
    protocol."""
    shape = shape_of(rule)
    protos = [PROTOCOLS[rule.proto]] if rule.proto else (
        [socket.IPPROTO_TCP, socket.IPPROTO_UDP] if shape.fields & F_PROTO else [0])
    return [MatchKey(shape.family, p, rule.icmp_type or 0, rule.sport or 0, rule.dport or 0,
                     _addr(rule.src), _addr(rule.dst)) for p in protos]
