"""The XDP firewall of one interface, whose whole state is its pinned maps.

``Firewall.load`` attaches bpf/firewall.bpf.c through a bpf_link pinned with
every map under ``/sys/fs/bpf/bpfguard/firewall/<ifname>[@<netns>]/``, so the
protection outlives bpfguard; ``Firewall.open`` takes it back over (a later
command, a restarted agent) and changes rules, mode and limits live by map
updates, never by reloading the program. ``unload`` detaches and removes every
pin.

Example::

    cfg = FirewallConfig(policy="allow", rules=[Rule("drop", src=parse_network("198.18.9.0/24"))])
    with Firewall.load("eth0", cfg) as fw:
        fw.add_rule(Rule("drop", proto="udp", dport=11211))
        print(fw.stats()["actions"]["drop_rule"])
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import socket
import time
from pathlib import Path
from typing import Any

from ..errors import BpfguardError, ConfigError, KernelError
from ..files import check_trusted_dir, remove_tree
from ..loader import PIN_ROOT, BpfObject, Map, RingBuffer, bpf_object_path
from ..loader import _libbpf as L
from ..loader.net import (
    XDP_FLAGS_DRV_MODE,
    XDP_FLAGS_SKB_MODE,
    XdpMode,
    XdpProgram,
    detach_pinned_link,
    pin_xdp_link,
    xdp_program_on,
)
from . import netns as _netns
from .abi import abi, lpm_key
from .config import max_rules
from .model import PROTOCOLS, FirewallConfig, Limits, Network, Rule
from .tss import F_DPORT, F_ICMP_TYPE, F_PROTO, F_SPORT, MatchKey, Shape, match_keys, shape_of

__all__ = ["FIREWALL_PINS", "Firewall", "FirewallError", "loaded_firewalls"]

FIREWALL_PINS = PIN_ROOT / "firewall"
_LINK = "link"
_CONFIG_MAP = "fw_config"
_MAPS = ("fw_config", "fw_classes", "fw_rules4", "fw_rules6", "fw_rule_meta", "fw_rule_stats",
         "fw_actions", "fw_allow4", "fw_allow6", "fw_buckets", "fw_global", "fw_bans",
         "fw_amp_ports", "fw_sample_budget", "fw_samples", "fw_flows")
_PROTO_NAMES = {n: name for name, n in PROTOCOLS.items()}


class FirewallError(ConfigError):
    """A firewall request that cannot be done (nothing was changed)."""


def _pin_dir(ifname: str, netns: str | None) -> Path:
    return FIREWALL_PINS / (f"{ifname}@{netns}" if netns else ifname)


def loaded_firewalls() -> list[tuple[str, str | None]]:
    """(interface, netns) of every pinned firewall."""
    if not FIREWALL_PINS.is_dir():
        return []
    out = []
    for d in sorted(FIREWALL_PINS.iterdir()):
        if (d / _LINK).exists():
            name, _, ns = d.name.partition("@")
            out.append((name, ns or None))
    return out


def _ifindex(ifname: str, netns: str | None) -> int:
    with _netns.entered(netns):
        try:
            return socket.if_nametoindex(ifname)
        except OSError:
            names = ", ".join(n for _, n in socket.if_nameindex())
    where = f" in netns {netns}" if netns else ""
    raise FirewallError(f"no interface {ifname!r}{where} (there are: {names})")


def _detach_foreign(ifname: str, ifindex: int, prog: XdpProgram) -> None:
    flags = XDP_FLAGS_SKB_MODE if prog.mode == "generic" else XDP_FLAGS_DRV_MODE
    ret = L.bpf_xdp_detach(ifindex, flags, None)
    if ret < 0:
        raise KernelError(f"{ifname}: remove XDP program '{prog.name}' (id {prog.id}; "
                          "attached through a bpf_link, only its owner can remove it)", -ret)


def _u64_interval(rate: int, unit: float) -> int:
    return round(unit / rate) if rate else 0


def _bytes16(net: Network) -> bytes:
    return net.network_address.packed.ljust(16, b"\0")


def _masked(shape: Shape, mk: MatchKey) -> MatchKey:
    """`mk` as its class's hash key: the addresses under the shape's masks."""
    def m(a: bytes, mask: bytes) -> bytes:
        return bytes(x & y for x, y in zip(a, mask, strict=True))
    return MatchKey(mk.family, mk.proto, mk.icmp_type, mk.sport, mk.dport,
                    m(mk.src, shape.src_mask), m(mk.dst, shape.dst_mask))


def _check_fits(obj: BpfObject, config: FirewallConfig) -> None:
    """The object's own sizes (read from it, not loaded) against `config`."""
    max_classes = obj.map("fw_classes").max_entries
    if len(config.rules) > max_rules():
        raise FirewallError(f"{len(config.rules):,} rules: at most {max_rules():,} fit")
    shapes = {shape_of(r) for r in config.rules}
    if len(shapes) > max_classes:
        raise FirewallError(f"the rules have {len(shapes)} distinct shapes (family, prefix "
                            f"lengths, L4 fields); at most {max_classes} fit")
    for v6, table in ((False, "fw_rules4"), (True, "fw_rules6")):
        keys = {(shape, _masked(shape, mk)) for r in config.rules
                for shape in (shape_of(r),) for mk in match_keys(r) if (mk.family == 6) == v6}
        room = obj.map(table).max_entries
        if len(keys) > room:
            raise FirewallError(f"the rules need {len(keys):,} IPv{6 if v6 else 4} match keys "
                                f"(one per protocol and address each covers); {room:,} fit")


class Firewall:
    """A pinned XDP firewall on one interface."""

    def __init__(self, ifname: str, netns: str | None, maps: dict[str, Map], *,
                 fresh: bool = False) -> None:
        self.ifname = ifname
        self.netns = netns
        self.pin_dir = _pin_dir(ifname, netns)
        self._maps = maps
        a = abi("firewall")
        self._t = a.structs
        self._reasons = {k: v for k, v in a.enum("bg_fw_reason", "BG_FW_R_").items()
                         if k != "bg_fw_reasons"}
        self._nreasons = a.enums["bg_fw_reason"]["BG_FW_REASONS"]
        self._modes = a.enum("bg_fw_mode", "BG_FW_MODE_")        # enforce, audit
        self._actions = a.enum("bg_fw_action", "BG_FW_ACT_")     # pass, drop
        fields = a.enum("bg_fw_field", "BG_FW_F_")
        if fields != {"proto": F_PROTO, "sport": F_SPORT, "dport": F_DPORT,
                      "icmp_type": F_ICMP_TYPE}:
            raise BpfguardError("firewall.bpf.o and tss.py disagree on bg_fw_field; "
                                "rebuild the BPF objects (make -C bpf)")
        self._max_rules = maps["fw_rule_meta"].max_entries
        self._max_classes = maps["fw_classes"].max_entries
        self._rules: dict[int, tuple[int, Rule]] = {}
        # (shape, masked key) -> {rule id: priority}: which rules share a hash key
        self._index: dict[tuple[Shape, MatchKey], dict[int, int]] = {}
        self._classes: dict[Shape, int] = {}
        # what this object's view is of: the rule tables' generation, and the
        # pinned instance (a new load pins new files: another inode)
        self._generation = 0 if fresh else self.config().generation
        self._pinned = 0
        if not fresh:  # a new object's maps are empty
            self._read_state()
        self._next_prio = max((p for p, _ in self._rules.values()), default=0) + 1
        self._top_id = max(self._rules, default=0)

    # -- lifecycle -------------------------------------------------------------

    @staticmethod
    def check_fits(config: FirewallConfig) -> None:
        """FirewallError when `config` needs more than the firewall holds
        (rules, distinct rule shapes, match keys): what load would refuse,
        told without a kernel (config check)."""
        obj = BpfObject.open(bpf_object_path("firewall"))
        try:
            _check_fits(obj, config)
        finally:
            obj.close()

    @classmethod
    def load(cls, ifname: str, config: FirewallConfig, *, xdp_mode: XdpMode = "native",
             netns: str | None = None, force: bool = False) -> Firewall:
        """Attaches a firewall with `config` to `ifname` (in `netns`), all or
        nothing: on any error nothing stays attached or pinned."""
        ifindex = _ifindex(ifname, netns)
        pins = _pin_dir(ifname, netns)
        if (pins / _LINK).exists():
            raise FirewallError(f"{ifname}: a bpfguard firewall is already loaded (pinned at "
                                f"{pins}); change it live, or `bpfguard firewall unload "
                                f"{ifname}` first")
        with _netns.entered(netns):
            present = xdp_program_on(ifindex)
        if present is not None and not force:
            raise FirewallError(
                f"{ifname} already runs XDP program '{present.name}' (id {present.id}, "
                f"{present.mode}); bpfguard will not replace it without --force")
        obj = BpfObject.open(bpf_object_path("firewall"))
        try:
            _check_fits(obj, config)  # before anything reaches the kernel
            # leftovers of an interrupted load; removed through a parent root owns
            # (/sys/fs/bpf may be world-writable: a user's directory there is refused)
            check_trusted_dir(pins.parent, f"firewall pins {pins}", create=True)
            remove_tree(pins, f"firewall pins {pins}")
            obj.load()
            maps = {n: obj.map(n) for n in _MAPS}
            fw = cls(ifname, netns, maps, fresh=True)
            fw._write_config(config, ifindex)
            for net in config.allow:
                fw.allow(net)
            for r in config.rules:
                fw.add_rule(r)
            for n in _MAPS:
                maps[n].pin(pins / n)
            with _netns.entered(netns):
                if present is not None:  # --force: replaced only once ours is ready
                    _detach_foreign(ifname, ifindex, present)
                pin_xdp_link(obj.program("bg_fw_xdp"), ifindex, xdp_mode, pins / _LINK)
        except BaseException as exc:
            with contextlib.suppress(ConfigError):  # (refused: nothing of ours is there)
                remove_tree(pins, f"firewall pins {pins}")
            obj.close()
            if isinstance(exc, KernelError) and exc.errno == errno.EOPNOTSUPP \
                    and xdp_mode == "native":
                raise FirewallError(f"{ifname}: its driver has no native XDP; use --mode "
                                    "generic") from None
            raise
        # the pins hold maps and program; this process's object can go
        maps_by_pin = {n: Map.from_pin(pins / n) for n in _MAPS}
        obj.close()
        fw._maps = maps_by_pin
        fw._pinned = (pins / _CONFIG_MAP).stat().st_ino
        return fw

    @classmethod
    def open(cls, ifname: str | None = None, netns: str | None = None) -> Firewall:
        """The pinned firewall of `ifname` (or the only one loaded)."""
        if ifname is None:
            here = [(i, n) for i, n in loaded_firewalls() if netns is None or n == netns]
            if len(here) != 1:
                names = ", ".join(f"{i}@{n}" if n else i for i, n in here) or "none"
                raise FirewallError(f"name the interface (--iface); loaded: {names}")
            ifname, netns = here[0]
        pins = _pin_dir(ifname, netns)
        if not (pins / _LINK).exists():
            where = f" in netns {netns}" if netns else ""
            raise FirewallError(f"no bpfguard firewall on {ifname}{where} "
                                f"(`bpfguard firewall load {ifname}` attaches one)")
        maps: dict[str, Map] = {}
        try:
            for n in _MAPS:
                maps[n] = Map.from_pin(pins / n)
            fw = cls(ifname, netns, maps)
            fw._pinned = (pins / _CONFIG_MAP).stat().st_ino
        except BaseException:
            for m in maps.values():
                m.close()
            raise
        return fw

    def unload(self) -> None:
        """Detaches the program and removes every pin."""
        link = self.pin_dir / _LINK
        if link.exists():
            detach_pinned_link(link)
        self.close()
        remove_tree(self.pin_dir, f"firewall pins {self.pin_dir}")
        with contextlib.suppress(OSError):
            FIREWALL_PINS.rmdir()

    def close(self) -> None:
        for m in self._maps.values():
            m.close()

    def outdated(self) -> bool:
        """True when this object no longer shows the pinned firewall: another
        process changed its rules, or unloaded it (and maybe loaded a new one
        on the interface). :meth:`open` a fresh one to see it."""
        try:
            pinned = (self.pin_dir / _CONFIG_MAP).stat().st_ino
        except FileNotFoundError:
            return True
        return pinned != self._pinned or bool(self.config().generation != self._generation)

    def __enter__(self) -> Firewall:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state kept in the maps -------------------------------------------------

    def _read_state(self) -> None:
        rule_t, cls_t = self._t["bg_fw_rule"], self._t["bg_fw_class"]
        for k, v in self._maps["fw_rule_meta"].lookup_batch():
            meta = rule_t.from_buffer_copy(v)
            if meta.prio:
                rid = int.from_bytes(k, "little")
                rule = self._rule_of(meta)
                self._rules[rid] = (meta.prio, rule)
                for ik in self._index_keys(rule):
                    self._index.setdefault(ik, {})[rid] = meta.prio
        for k, v in self._maps["fw_classes"].lookup_batch():
            c = cls_t.from_buffer_copy(v)
            if c.used:
                slot = int.from_bytes(k, "little")
                mask = bytes(c.src_mask)
                dmask = bytes(c.dst_mask)
                self._classes[Shape(c.family, _plen(mask), _plen(dmask), c.fields)] = slot

    def _rule_of(self, m: Any) -> Rule:
        fam = m.family
        width = 4 if fam == 4 else 16

        def net(has: int, raw: Any, plen: int) -> Network | None:
            if not has:
                return None
            return ipaddress.ip_network((bytes(raw)[:width], plen))

        return Rule("drop" if m.action == self._actions["drop"] else "pass",
                    net(m.has_src, m.src, m.src_plen), net(m.has_dst, m.dst, m.dst_plen),
                    _PROTO_NAMES.get(m.proto) if m.proto else None, m.sport or None,
                    m.dport or None,
                    m.icmp_type if m.fields & F_ICMP_TYPE else None)

    def config(self) -> Any:
        raw = self._maps["fw_config"].lookup(ctypes.c_uint32(0))
        assert isinstance(raw, bytes)
        return self._t["bg_fw_config"].from_buffer_copy(raw)

    def _store_config(self, c: Any) -> None:
        bans = next(self._maps["fw_bans"].keys(), None) is not None
        c.ddos = int(bool(c.pkt_interval_ns or c.byte_interval_ps or c.syn_interval_ns
                          or c.gsyn_interval_ns or c.amp_filter or bans))
        self._maps["fw_config"].update(ctypes.c_uint32(0), c)

    def _write_config(self, cfg: FirewallConfig, ifindex: int) -> None:
        c = self._t["bg_fw_config"]()
        c.mode = self._modes[cfg.mode]
        c.default_action = self._actions["drop" if cfg.policy == "deny" else "pass"]
        c.sample_per_sec = cfg.samples_per_second
        c.generation = 1
        self._store_config(c)
        self._generation = 1
        self.set_limits(cfg.limits)
        self.set_amplification(cfg.amplification, cfg.amplification_ports)

    @property
    def mode(self) -> str:
        return "audit" if self.config().mode == self._modes["audit"] else "enforce"

    def set_mode(self, mode: str) -> None:
        """enforce or audit, live."""
        if mode not in ("enforce", "audit"):
            raise FirewallError(f"mode {mode!r} is not enforce or audit")
        c = self.config()
        c.mode = self._modes[mode]
        self._store_config(c)

    def set_policy(self, policy: str) -> None:
        """The default for unmatched packets, allow or deny, live."""
        if policy not in ("allow", "deny"):
            raise FirewallError(f"policy {policy!r} is not allow or deny")
        c = self.config()
        c.default_action = self._actions["drop" if policy == "deny" else "pass"]
        self._store_config(c)

    def set_limits(self, lim: Limits) -> None:
        """Per-source budgets and bans, live (GCRA intervals and tolerances)."""
        c = self.config()
        c.pkt_interval_ns = _u64_interval(lim.pps, 1e9)
        c.pkt_tolerance_ns = c.pkt_interval_ns * max(0, (lim.burst or lim.pps) - 1)
        c.byte_interval_ps = _u64_interval(lim.bps, 1e12)
        c.byte_tolerance_ns = round((lim.burst_bytes or lim.bps) * 1e9 / lim.bps) if lim.bps else 0
        c.syn_interval_ns = _u64_interval(lim.syn_pps, 1e9)
        c.syn_tolerance_ns = c.syn_interval_ns * max(0, (lim.syn_burst or lim.syn_pps) - 1)
        c.gsyn_interval_ns = _u64_interval(lim.syn_global_pps, 1e9)
        c.gsyn_tolerance_ns = c.gsyn_interval_ns * max(
            0, (lim.syn_global_burst or lim.syn_global_pps) - 1)
        c.ban_ns = round(lim.ban_seconds * 1e9)
        c.v6_source_plen = lim.ipv6_source_prefix
        mask = (((1 << lim.ipv6_source_prefix) - 1) << (128 - lim.ipv6_source_prefix))
        ctypes.memmove(c.v6_source_mask, mask.to_bytes(16, "big"), 16)
        self._store_config(c)

    def limits(self) -> Limits:
        c = self.config()

        def rate(interval: int, unit: float) -> int:
            return round(unit / interval) if interval else 0

        def burst(tol: int, interval: int) -> int:
            return tol // interval + 1 if interval else 0

        bps = rate(c.byte_interval_ps, 1e12)
        return Limits(
            pps=rate(c.pkt_interval_ns, 1e9), burst=burst(c.pkt_tolerance_ns, c.pkt_interval_ns),
            bps=bps, burst_bytes=round(c.byte_tolerance_ns * bps / 1e9) if bps else 0,
            syn_pps=rate(c.syn_interval_ns, 1e9),
            syn_burst=burst(c.syn_tolerance_ns, c.syn_interval_ns),
            syn_global_pps=rate(c.gsyn_interval_ns, 1e9),
            syn_global_burst=burst(c.gsyn_tolerance_ns, c.gsyn_interval_ns),
            ban_seconds=c.ban_ns / 1e9, ipv6_source_prefix=c.v6_source_plen or 64)

    def set_amplification(self, enabled: bool, ports: tuple[int, ...] | None = None) -> None:
        """The UDP amplification source-port filter, live."""
        m = self._maps["fw_amp_ports"]
        if ports is not None:
            if len(ports) > m.max_entries:
                raise FirewallError(f"at most {m.max_entries} amplification ports")
            m.clear()
            for p in ports:
                m.update(ctypes.c_uint16(socket.htons(p)), ctypes.c_uint8(1))
        c = self.config()
        c.amp_filter = int(enabled)
        self._store_config(c)

    def amplification_ports(self) -> list[int]:
        return sorted(socket.ntohs(int.from_bytes(k, "little"))
                      for k, _ in self._maps["fw_amp_ports"].items())  # noqa: SIM118 (a Map, not a dict)

    # -- rules -----------------------------------------------------------------

    @property
    def rules(self) -> list[tuple[int, Rule]]:
        """(id, rule) in match order."""
        return [(i, r) for i, (_, r) in sorted(self._rules.items(), key=lambda x: x[1][0])]

    def _key(self, slot: int, mk: MatchKey) -> tuple[Map, Any]:
        """The rule table and key for a masked match in class `slot`."""
        v6 = mk.family == 6
        k = self._t["bg_fw_key6" if v6 else "bg_fw_key4"]()
        k.cls = slot
        k.family = mk.family
        k.proto = mk.proto
        k.icmp_type = mk.icmp_type
        k.sport = socket.htons(mk.sport)
        k.dport = socket.htons(mk.dport)
        width = 16 if v6 else 4
        ctypes.memmove(k.src, mk.src, width)
        ctypes.memmove(k.dst, mk.dst, width)
        return self._maps["fw_rules6" if v6 else "fw_rules4"], k

    def _masked(self, shape: Shape, mk: MatchKey) -> MatchKey:
        return _masked(shape, mk)

    def _class_slot(self, shape: Shape) -> int:
        if shape in self._classes:
            return self._classes[shape]
        used = set(self._classes.values())
        slot = next((i for i in range(self._max_classes) if i not in used), None)
        if slot is None:
            raise FirewallError(f"the rules would need more than {self._max_classes} distinct "
                                "shapes (family, prefix lengths, L4 fields)")
        c = self._t["bg_fw_class"]()
        c.used = 1
        c.family = shape.family
        c.fields = shape.fields
        ctypes.memmove(c.src_mask, shape.src_mask, 16)
        ctypes.memmove(c.dst_mask, shape.dst_mask, 16)
        self._maps["fw_classes"].update(ctypes.c_uint32(slot), c)
        self._classes[shape] = slot
        self._sync_nclasses()
        return slot

    def _sync_nclasses(self) -> None:
        c = self.config()
        c.nclasses = max(self._classes.values(), default=-1) + 1
        self._store_config(c)

    def add_rule(self, rule: Rule) -> int:
        """Appends `rule` (it matches after every existing rule); its id.
        All or nothing: the room it needs (an id, a class, a hash key per
        protocol and address) is checked before any map is written, and a
        write the kernel still refuses undoes the ones before it."""
        rid = self._top_id + 1
        if rid >= self._max_rules:  # the top id is taken: reuse a freed one
            rid = next((i for i in range(1, self._max_rules) if i not in self._rules), 0)
            if not rid:
                raise FirewallError(f"the firewall holds at most {self._max_rules - 1} rules")
        shape = shape_of(rule)
        keys = self._index_keys(rule)
        self._check_room(rule, shape, keys)
        before = (self._top_id, self._next_prio)
        prio = self._next_prio
        self._next_prio += 1
        self._top_id = max(self._top_id, rid)
        self._rules[rid] = (prio, rule)
        try:
            slot = self._class_slot(shape)
            self._maps["fw_rule_stats"].update(ctypes.c_uint32(rid),
                                               [bytes(16)] * self._maps["fw_rule_stats"].cpus)
            self._maps["fw_rule_meta"].update(ctypes.c_uint32(rid), self._meta(rule, prio))
            for ik in keys:
                self._index.setdefault(ik, {})[rid] = prio
                self._install(slot, ik)
        except BaseException:
            self._undo_add(rid, shape, keys)
            self._top_id, self._next_prio = before
            raise
        self._new_generation()
        return rid

    def _undo_add(self, rid: int, shape: Shape, keys: list[tuple[Shape, MatchKey]]) -> None:
        """Takes back what a failed add_rule of `rid` wrote, whatever step it
        failed at; each step on its own, so one that fails does not keep the
        others from being undone."""
        self._rules.pop(rid, None)
        slot = self._classes.get(shape)
        for ik in keys:
            if (holders := self._index.get(ik)) is not None:
                holders.pop(rid, None)
            if slot is not None:
                with contextlib.suppress(BpfguardError):
                    self._install(slot, ik)  # (back to the rule before, or removed)
        with contextlib.suppress(BpfguardError):
            self._maps["fw_rule_meta"].update(ctypes.c_uint32(rid),
                                              bytes(self._t["bg_fw_rule"]()))
        if slot is not None and not any(shape_of(r) == shape for _, r in self._rules.values()):
            del self._classes[shape]
            with contextlib.suppress(BpfguardError):
                self._maps["fw_classes"].update(ctypes.c_uint32(slot),
                                                bytes(self._t["bg_fw_class"]()))
            with contextlib.suppress(BpfguardError):
                self._sync_nclasses()
        with contextlib.suppress(BpfguardError):
            # a packet that met the half-installed rule cached its verdict
            self._new_generation()

    def _check_room(self, rule: Rule, shape: Shape, keys: list[tuple[Shape, MatchKey]]) -> None:
        """FirewallError, before any write, when `rule` cannot fit: its shape
        needs a class slot none is free for, or its new hash keys (one per
        protocol and address it covers, fewer where other rules share them)
        more than the rule table has left."""
        if shape not in self._classes and len(self._classes) >= self._max_classes:
            raise FirewallError(f"`{rule.describe()}` needs a new shape (family, prefix "
                                f"lengths, L4 fields) and all {self._max_classes} are in use")
        for v6, family, table in ((False, 4, "fw_rules4"), (True, 6, "fw_rules6")):
            # (a key of either family, 0, lives in the IPv4 table: see _key)
            new = sum(1 for ik in dict.fromkeys(keys)
                      if (ik[1].family == 6) == v6 and ik not in self._index)
            if not new:
                continue
            used = sum(1 for ik in self._index if (ik[1].family == 6) == v6)
            room = self._maps[table].max_entries - used
            if new > room:
                raise FirewallError(f"`{rule.describe()}` needs {new} more IPv{family} match "
                                    f"keys and the table has room for {room} (of "
                                    f"{self._maps[table].max_entries}); nothing was changed")

    def _new_generation(self) -> None:
        """Invalidates the kernel's per-CPU flow caches: call after the rule
        tables changed (a packet that read the old number caches nothing
        later packets use)."""
        c = self.config()
        c.generation = c.generation % 0xFFFFFFFF + 1  # never 0, the empty slot's
        self._store_config(c)
        self._generation = c.generation

    def _index_keys(self, rule: Rule) -> list[tuple[Shape, MatchKey]]:
        shape = shape_of(rule)
        return [(shape, self._masked(shape, mk)) for mk in match_keys(rule)]

    def _install(self, slot: int, ik: tuple[Shape, MatchKey]) -> None:
        """Points the hash key at the first rule (lowest priority) that has it,
        or removes it when none does."""
        holders = self._index.get(ik)
        table, key = self._key(slot, ik[1])
        if not holders:
            self._index.pop(ik, None)
            table.delete(key)
            return
        rid = min(holders, key=holders.__getitem__)
        v = self._t["bg_fw_match"]()
        v.prio, v.rule = holders[rid], rid
        v.action = self._actions[self._rules[rid][1].action]
        table.update(key, v)

    def _meta(self, rule: Rule, prio: int) -> Any:
        m = self._t["bg_fw_rule"]()
        m.prio = prio
        m.action = self._actions[rule.action]
        m.family = rule.family
        m.proto = PROTOCOLS.get(rule.proto or "", 0)
        m.icmp_type = rule.icmp_type or 0
        m.fields = shape_of(rule).fields
        m.sport = rule.sport or 0
        m.dport = rule.dport or 0
        if rule.src is not None:
            m.has_src, m.src_plen = 1, rule.src.prefixlen
            ctypes.memmove(m.src, _bytes16(rule.src), 16)
        if rule.dst is not None:
            m.has_dst, m.dst_plen = 1, rule.dst.prefixlen
            ctypes.memmove(m.dst, _bytes16(rule.dst), 16)
        return m

    def delete_rule(self, rid: int) -> Rule:
        """Deletes rule `rid`; the rule it was."""
        if rid not in self._rules:
            raise FirewallError(f"no rule {rid} on {self.ifname}")
        _, rule = self._rules.pop(rid)
        shape = shape_of(rule)
        slot = self._classes[shape]
        for ik in self._index_keys(rule):
            self._index.get(ik, {}).pop(rid, None)
            self._install(slot, ik)
        self._maps["fw_rule_meta"].update(ctypes.c_uint32(rid), bytes(self._t["bg_fw_rule"]()))
        if not any(shape_of(r) == shape for _, r in self._rules.values()):
            del self._classes[shape]
            self._maps["fw_classes"].update(ctypes.c_uint32(slot),
                                            bytes(self._t["bg_fw_class"]()))
            self._sync_nclasses()
        self._new_generation()
        return rule

    def find_rule(self, rule: Rule) -> int:
        """The id of the first rule equal to `rule`."""
        for rid, r in self.rules:
            if r == rule:
                return rid
        raise FirewallError(f"no rule `{rule.describe()}` on {self.ifname}")

    # -- allowlist and bans ------------------------------------------------------

    def _lpm(self, net: Network) -> tuple[Map, Any]:
        return self._maps["fw_allow4" if net.version == 4 else "fw_allow6"], lpm_key(self._t, net)

    def allow(self, net: Network) -> None:
        """Adds a source prefix that bypasses bans, budgets and the amplification filter."""
        m, k = self._lpm(net)
        m.update(k, ctypes.c_uint32(1))

    def disallow(self, net: Network) -> bool:
        m, k = self._lpm(net)
        return m.delete(k)

    def allowlist(self) -> list[Network]:
        out: list[Network] = []
        for name, width in (("fw_allow4", 4), ("fw_allow6", 16)):
            for k, _ in self._maps[name].items():  # noqa: SIM118 (a Map, not a dict)
                plen = int.from_bytes(k[:4], "little")
                out.append(ipaddress.ip_network((k[4:4 + width], plen)))
        return out

    def _source(self, addr: str) -> Any:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError as exc:
            raise FirewallError(str(exc)) from None
        s = self._t["bg_fw_source"]()
        s.family = ip.version
        raw = ip.packed.ljust(16, b"\0")
        if ip.version == 6:
            mask = bytes(self.config().v6_source_mask)
            raw = bytes(a & b for a, b in zip(raw, mask, strict=True))
        ctypes.memmove(s.addr, raw, 16)
        return s

    def ban(self, addr: str, seconds: float) -> None:
        """Bans source `addr` (IPv6: its /64, or the configured prefix) for `seconds`."""
        if seconds <= 0:
            raise FirewallError("a ban needs a duration > 0 seconds")
        b = self._t["bg_fw_ban"]()
        b.until_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + round(seconds * 1e9)
        b.manual = 1
        self._maps["fw_bans"].update(self._source(addr), b)
        self._store_config(self.config())  # turns the DDoS stage on

    def unban(self, addr: str) -> bool:
        gone = self._maps["fw_bans"].delete(self._source(addr))
        self._store_config(self.config())
        return gone

    def bans(self) -> list[dict[str, Any]]:
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        src_t, ban_t = self._t["bg_fw_source"], self._t["bg_fw_ban"]
        reasons = {v: k for k, v in self._reasons.items()}
        out = []
        for k, v in self._maps["fw_bans"].items():
            assert isinstance(v, bytes)
            s, b = src_t.from_buffer_copy(k), ban_t.from_buffer_copy(v)
            if b.until_ns <= now:
                continue
            raw = bytes(s.addr)
            addr = ipaddress.ip_address(raw[:4] if s.family == 4 else raw)
            out.append({"source": str(addr), "seconds_left": round((b.until_ns - now) / 1e9, 1),
                        "why": "manual" if b.manual else reasons.get(b.reason, "?")})
        return out

    # -- reporting -------------------------------------------------------------------

    def _counter(self, m: Map, i: int) -> dict[str, int]:
        vals = m.lookup(ctypes.c_uint32(i))
        items = vals if isinstance(vals, list) else [vals] if vals else []
        return {"packets": sum(int.from_bytes(v[:8], "little") for v in items),
                "bytes": sum(int.from_bytes(v[8:16], "little") for v in items)}

    def stats(self) -> dict[str, Any]:
        """Counters summed over CPUs: per action (reason), would-drops in audit
        mode (``audit_<reason>``), and per rule."""
        m = self._maps["fw_actions"]
        actions: dict[str, dict[str, int]] = {}
        for name, i in self._reasons.items():
            actions[name] = self._counter(m, i)
            if name.startswith("drop"):
                actions[f"audit_{name}"] = self._counter(m, i + self._nreasons)
        rules = [{"id": rid, "rule": r.fields(), **self._counter(self._maps["fw_rule_stats"], rid)}
                 for rid, r in self.rules]
        return {"iface": self.ifname, "netns": self.netns, "mode": self.mode,
                "actions": actions, "rules": rules}

    def status(self) -> dict[str, Any]:
        c = self.config()
        with _netns.entered(self.netns):
            try:
                prog = xdp_program_on(socket.if_nametoindex(self.ifname))
            except OSError:
                prog = None
        lim = self.limits()
        return {
            "iface": self.ifname, "netns": self.netns, "pinned": str(self.pin_dir),
            "program": None if prog is None else {"id": prog.id, "name": prog.name,
                                                  "xdp_mode": prog.mode},
            "mode": self.mode,
            "policy": "deny" if c.default_action == self._actions["drop"] else "allow",
            "rules": [{"id": rid, **r.fields()} for rid, r in self.rules],
            "classes": len(self._classes),
            "allow": [str(n) for n in self.allowlist()],
            "limits": {k: getattr(lim, k) for k in Limits.__dataclass_fields__},
            "amplification": {"enabled": bool(c.amp_filter),
                              "ports": self.amplification_ports()},
            "samples_per_second": c.sample_per_sec,
            "bans": self.bans(),
            "capacity": {"rules": self._max_rules - 1, "classes": self._max_classes,
                         "tracked_sources": self._maps["fw_buckets"].max_entries,
                         "bans": self._maps["fw_bans"].max_entries},
        }

    def samples(self) -> RingBuffer:
        """A consumer of the sampled would-drop events (decode with :meth:`decode`)."""
        return RingBuffer(self._maps["fw_samples"])

    def decode(self, raw: bytes) -> dict[str, Any]:
        """A sampled event as JSON-ready fields; ``packet`` holds the captured bytes."""
        e = self._t["bg_fw_event"].from_buffer_copy(raw)
        t = e.tuple
        width = 4 if t.family == 4 else 16
        reasons = {v: k for k, v in self._reasons.items()}
        out: dict[str, Any] = {
            "type": "firewall_drop", "iface": self.ifname, "ktime_ns": e.ktime_ns,
            "reason": reasons.get(e.reason, str(e.reason)),
            "action": "audit" if e.audit else "drop", "rule": e.rule or None,
            "family": t.family, "proto": _PROTO_NAMES.get(t.proto, t.proto),
            "src": str(ipaddress.ip_address(bytes(t.src)[:width])),
            "dst": str(ipaddress.ip_address(bytes(t.dst)[:width])),
            "len": e.pkt_len,
        }
        if t.proto in (6, 17):
            out["sport"], out["dport"] = socket.ntohs(t.sport), socket.ntohs(t.dport)
        elif t.proto in (1, 58):
            out["icmp_type"] = t.icmp_type
        out["packet"] = bytes(e.data)[:e.cap_len]
        return out


def _plen(mask: bytes) -> int:
    return bin(int.from_bytes(mask, "big")).count("1")
