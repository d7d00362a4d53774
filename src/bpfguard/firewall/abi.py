"""Layouts and enums of the firewall and egress objects, from their BTF.

bpf/include/firewall.h is the one definition; this module only reads it back
out of the compiled objects, so a pinned firewall can be managed by a later
bpfguard without loading anything.
"""

from __future__ import annotations

import ctypes
import functools
import ipaddress
from dataclasses import dataclass
from typing import Any

from ..loader import Btf, bpf_object_path

__all__ = ["Abi", "abi", "lpm_key"]


@dataclass(frozen=True)
class Abi:
    """The ctypes structs and enums one object defines."""

    structs: dict[str, Any]
    enums: dict[str, dict[str, int]]

    def struct(self, name: str) -> Any:
        return self.structs[name]

    def enum(self, name: str, prefix: str) -> dict[str, int]:
        """Enum `name` keyed by its member names without `prefix`, lowercased."""
        return {k.removeprefix(prefix).lower(): v for k, v in self.enums[name].items()}


_WANT = {
    "firewall": (("bg_fw_config", "bg_fw_tuple", "bg_fw_key4", "bg_fw_key6", "bg_fw_class",
                  "bg_fw_match", "bg_fw_rule", "bg_fw_counter", "bg_fw_lpm4", "bg_fw_lpm6",
                  "bg_fw_source", "bg_fw_ban", "bg_fw_event"),
                 ("bg_fw_mode", "bg_fw_action", "bg_fw_field", "bg_fw_reason")),
    "egress": (("bg_fw_lpm4", "bg_fw_lpm6", "bg_eg_entry", "bg_eg_deny", "bg_eg_rule",
                "bg_eg_event"),
               ("bg_eg_proto_bit", "bg_eg_hook")),
}


@functools.cache
def abi(obj: str) -> Abi:
    """The ABI of object `obj` ("firewall" or "egress")."""
    structs, enums = _WANT[obj]
    with Btf.from_file(str(bpf_object_path(obj))) as btf:
        return Abi({n: btf.struct(n) for n in structs}, {n: btf.enum(n) for n in enums})


def lpm_key(structs: dict[str, Any], net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Any:
    """The LPM-trie key (bg_fw_lpm4 or bg_fw_lpm6) of a prefix."""
    k = structs["bg_fw_lpm4" if net.version == 4 else "bg_fw_lpm6"]()
    k.prefixlen = net.prefixlen
    ctypes.memmove(k.addr, net.network_address.packed, net.max_prefixlen // 8)
    return k
