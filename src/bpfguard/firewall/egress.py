"""Egress policy per cgroup: connect() and unconnected sendmsg() to a denied
destination fail with EPERM, and the denial is reported.

One copy of bpf/egress.bpf.c per cgroup, its four links (connect4/6,
sendmsg4/6) and its maps pinned under
``/sys/fs/bpf/bpfguard/egress/<cgroup inode>/``; it covers the cgroup's
descendants too. Rules are a deny list of (CIDR, optional port, TCP/UDP/both).

The kernel looks a destination up in an LPM trie, which returns only the
longest matching prefix; so each prefix's entry carries the port entries of
every prefix that covers it (:func:`flatten`), at most BG_EG_ENTRIES.
IPv4-mapped IPv6 destinations (``::ffff:a.b.c.d``) meet the IPv4 rules.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
from pathlib import Path
from typing import Any

from ..errors import BpfguardError
from ..files import check_trusted_dir, remove_tree
from ..loader import PIN_ROOT, BpfObject, Map, RingBuffer, bpf_object_path
from ..loader.net import detach_pinned_link
from .abi import abi, lpm_key
from .model import EgressRule, Network
from .xdp import FirewallError

__all__ = ["EGRESS_PINS", "PROTO_BITS", "Egress", "flatten", "loaded_egress"]

EGRESS_PINS = PIN_ROOT / "egress"
_PROGRAMS = ("bg_eg_connect4", "bg_eg_connect6", "bg_eg_sendmsg4", "bg_eg_sendmsg6")
_MAPS = ("eg_deny4", "eg_deny6", "eg_rules", "eg_stats", "eg_events")
_CGROUP_ROOTS = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")


def _cgroup_dir(cgroup: str | os.PathLike[str]) -> Path:
    """A cgroup v2 directory: an absolute path, or one relative to the v2 root."""
    p = Path(cgroup)
    candidates = [p] if p.is_absolute() else [Path(r) / p for r in _CGROUP_ROOTS]
    for c in candidates:
        if (c / "cgroup.controllers").exists():  # only cgroup v2 has it
            return c.resolve()
    raise FirewallError(f"{cgroup}: not a cgroup v2 directory (try a path under "
                        f"{' or '.join(_CGROUP_ROOTS)})")


def loaded_egress() -> list[Path]:
    """Pin directories of every egress policy."""
    if not EGRESS_PINS.is_dir():
        return []
    return sorted(d for d in EGRESS_PINS.iterdir() if (d / _PROGRAMS[0]).exists())


# enum bg_eg_proto_bit per protocol, None for both (checked against the object's BTF)
PROTO_BITS: dict[str | None, int] = {"tcp": 1, "udp": 2, None: 3}


def flatten(rules: dict[int, EgressRule], limit: int) -> dict[Network, list[tuple[int, int, int]]]:
    """Per denied prefix, the (rule id, port, protocol bits) entries of every
    rule whose prefix covers it, most specific first. FirewallError when one
    would exceed `limit`."""
    by_net: dict[Network, list[int]] = {}
    for rid in sorted(rules):
        by_net.setdefault(rules[rid].dst, []).append(rid)
    out: dict[Network, list[tuple[int, int, int]]] = {}
    for net in by_net:
        covering = [rid for plen in range(net.prefixlen, -1, -1)
                    for rid in by_net.get(net.supernet(new_prefix=plen), ())]
        if len(covering) > limit:
            raise FirewallError(f"{net}: {len(covering)} rules cover it (with those of covering "
                                f"prefixes); at most {limit} fit per destination prefix")
        out[net] = [(rid, rules[rid].port or 0, PROTO_BITS[rules[rid].proto])
                    for rid in covering]
    return out


class Egress:
    """The pinned egress policy of one cgroup."""

    def __init__(self, cgroup: Path, pins: Path, maps: dict[str, Map]) -> None:
        self.cgroup = cgroup
        self.pin_dir = pins
        self._maps = maps
        a = abi("egress")
        self._t = a.structs
        self._hooks = {v: k for k, v in a.enum("bg_eg_hook", "BG_EG_").items()}
        if a.enum("bg_eg_proto_bit", "BG_EG_") != {"tcp": 1, "udp": 2}:
            raise BpfguardError("egress.bpf.o and egress.py disagree on bg_eg_proto_bit; "
                                "rebuild the BPF objects (make -C bpf)")
        self._limit = len(self._t["bg_eg_deny"]().e)
        self._rules: dict[int, EgressRule] = {}
        rule_t = self._t["bg_eg_rule"]
        for k, v in maps["eg_rules"].lookup_batch():
            r = rule_t.from_buffer_copy(v)
            if r.used:
                width = 4 if r.family == 4 else 16
                net = ipaddress.ip_network((bytes(r.addr)[:width], r.plen))
                proto = next((p for p, b in PROTO_BITS.items() if b == r.protos), None)
                self._rules[int.from_bytes(k, "little")] = EgressRule(net, r.port or None, proto)

    @staticmethod
    def _pins_for(cgroup: Path) -> Path:
        return EGRESS_PINS / str(cgroup.stat().st_ino)

    @classmethod
    def load(cls, cgroup: str | os.PathLike[str], rules: list[EgressRule]) -> Egress:
        """Attaches the policy to `cgroup`, all or nothing."""
        cg = _cgroup_dir(cgroup)
        pins = cls._pins_for(cg)
        if (pins / _PROGRAMS[0]).exists():
            raise FirewallError(f"{cg}: already has a bpfguard egress policy (pinned at {pins}); "
                                "change its rules live, or unload it first")
        limit = len(abi("egress").structs["bg_eg_deny"]().e)
        flatten(dict(enumerate(rules, 1)), limit)  # refuse before touching the kernel
        # through a parent root owns (/sys/fs/bpf may be world-writable)
        check_trusted_dir(pins.parent, f"egress pins {pins}", create=True)
        remove_tree(pins, f"egress pins {pins}")
        obj = BpfObject.open(bpf_object_path("egress"))
        try:
            obj.load()
            maps = {n: obj.map(n) for n in _MAPS}
            eg = cls(cg, pins, maps)
            eg.add_all(rules)
            for n in _MAPS:
                maps[n].pin(pins / n)
            for p in _PROGRAMS:
                obj.program(p).attach_cgroup(cg).pin(pins / p, lasting=True)
        except BaseException:
            remove_tree(pins, f"egress pins {pins}")
            obj.close()
            raise
        eg._maps = {n: Map.from_pin(pins / n) for n in _MAPS}
        obj.close()
        return eg

    @classmethod
    def open(cls, cgroup: str | os.PathLike[str]) -> Egress:
        cg = _cgroup_dir(cgroup)
        pins = cls._pins_for(cg)
        if not (pins / _PROGRAMS[0]).exists():
            raise FirewallError(f"{cg}: no bpfguard egress policy "
                                f"(`bpfguard egress load {cgroup}` attaches one)")
        return cls(cg, pins, {n: Map.from_pin(pins / n) for n in _MAPS})

    def unload(self) -> None:
        """Detaches the four programs and removes every pin."""
        for p in _PROGRAMS:
            if (self.pin_dir / p).exists():
                detach_pinned_link(self.pin_dir / p)
        self.close()
        remove_tree(self.pin_dir, f"egress pins {self.pin_dir}")
        with contextlib.suppress(OSError):
            EGRESS_PINS.rmdir()

    def close(self) -> None:
        for m in self._maps.values():
            m.close()

    def __enter__(self) -> Egress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def rules(self) -> list[tuple[int, EgressRule]]:
        return sorted(self._rules.items())

    def add(self, rule: EgressRule) -> int:
        """Adds a denied destination, live; its id."""
        return self.add_all([rule])[0]

    def add_all(self, rules: list[EgressRule]) -> list[int]:
        """Adds denied destinations, live, all or none; their ids."""
        top = max(self._rules, default=0)
        ids = list(range(top + 1, top + 1 + len(rules)))
        if ids and ids[-1] >= self._maps["eg_rules"].max_entries:
            raise FirewallError(f"at most {self._maps['eg_rules'].max_entries - 1} egress rules")
        trial = {**self._rules, **dict(zip(ids, rules, strict=True))}
        flat = flatten(trial, self._limit)
        stats = self._maps["eg_stats"]
        for rid, rule in zip(ids, rules, strict=True):
            r = self._t["bg_eg_rule"]()
            r.used, r.family, r.plen = 1, rule.dst.version, rule.dst.prefixlen
            r.port, r.protos = rule.port or 0, PROTO_BITS[rule.proto]
            ctypes.memmove(r.addr, rule.dst.network_address.packed, rule.dst.max_prefixlen // 8)
            stats.update(ctypes.c_uint32(rid), [bytes(8)] * stats.cpus)
            self._maps["eg_rules"].update(ctypes.c_uint32(rid), r)
        self._rules = trial
        self._write(flat, {n for n in flat if any(n.version == r.dst.version for r in rules)})
        return ids

    def delete(self, rid: int) -> EgressRule:
        if rid not in self._rules:
            raise FirewallError(f"no egress rule {rid} on {self.cgroup}")
        rule = self._rules.pop(rid)
        flat = flatten(self._rules, self._limit)
        self._write(flat, {n for n in flat if n.version == rule.dst.version})
        if rule.dst not in flat:
            m, k = self._lpm(rule.dst)
            m.delete(k)
        self._maps["eg_rules"].update(ctypes.c_uint32(rid), bytes(self._t["bg_eg_rule"]()))
        return rule

    def find(self, rule: EgressRule) -> int:
        for rid, r in self.rules:
            if r == rule:
                return rid
        raise FirewallError(f"no egress rule `{rule.describe()}` on {self.cgroup}")

    def _lpm(self, net: Network) -> tuple[Map, Any]:
        return self._maps["eg_deny4" if net.version == 4 else "eg_deny6"], lpm_key(self._t, net)

    def _write(self, flat: dict[Network, list[tuple[int, int, int]]], nets: set[Network]) -> None:
        for net in nets:
            d = self._t["bg_eg_deny"]()
            d.n = len(flat[net])
            for i, (rid, port, protos) in enumerate(flat[net]):
                d.e[i].rule, d.e[i].port, d.e[i].protos = rid, port, protos
            m, k = self._lpm(net)
            m.update(k, d)

    def stats(self) -> dict[str, Any]:
        m = self._maps["eg_stats"]
        return {"cgroup": str(self.cgroup), "pinned": str(self.pin_dir),
                "rules": [{"id": rid, "denied": m.sum_percpu_u64(ctypes.c_uint32(rid)),
                           "dst": str(r.dst), "dport": r.port, "proto": r.proto}
                          for rid, r in self.rules]}

    def decode(self, raw: bytes) -> dict[str, Any]:
        e = self._t["bg_eg_event"].from_buffer_copy(raw)
        width = 4 if e.family == 4 else 16
        return {"type": "egress_denied", "cgroup": str(self.cgroup), "cgroup_id": e.cgroup_id,
                "ktime_ns": e.ktime_ns, "pid": e.tgid, "uid": e.uid,
                "comm": bytes(e.comm).split(b"\0", 1)[0].decode(errors="replace"),
                "hook": self._hooks.get(e.hook, str(e.hook)), "rule": e.rule,
                "proto": {6: "tcp", 17: "udp"}.get(e.proto, e.proto),
                "dst": str(ipaddress.ip_address(bytes(e.addr)[:width])), "dport": e.port,
                "errno": "EPERM"}

    def events(self) -> RingBuffer:
        """A consumer of the denial events (decode with :meth:`decode`)."""
        return RingBuffer(self._maps["eg_events"])
