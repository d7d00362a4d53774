"""The selector engine in user space: its sets and selectors in the maps of
one sensor object (the kernel side is bpf/lib/selectors.bpf.h).

Two parts compile selectors: the TracingPolicy engine (a hook's selectors)
and the syscall sensor (one selector per syscall: what the Falco rules want
of it, the rules pushdown). Both take set ids from one pool and write their
set entries and selectors through this module, into the same maps, so that
one interpreter in the kernel decides both.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable
from typing import Any

from ..errors import ConfigError, KernelError
from ..loader import BpfObject, Btf, Map
from ..policy.compiler import CompiledSelector, SetEntries

__all__ = ["SelectorSets", "encode_selector"]

_LPM_TRIE = 11  # BPF_MAP_TYPE_LPM_TRIE
_NO_PREALLOC = 1  # BPF_F_NO_PREALLOC, which LPM tries require
# maps keyed by a set id: where the id sits in a key (after an LPM key's prefix length)
_KEYED_BY_SET = (("pol_ints", 0), ("pol_strs", 0), ("pol_addrs", 4), ("pol_cel", 0))


class SelectorSets:
    """The exact-string, integer, address and prefix/postfix sets of one
    sensor object. Set ids (1 .. the size of the trie arrays - 1) come from
    one pool; a set id also indexes pol_prefix / pol_postfix, whose tries are
    made here when a set first needs one."""

    def __init__(self, obj: BpfObject, btf: Btf) -> None:
        self.obj = obj
        self._t = {n: btf.struct(n) for n in (
            "bg_pol_int_key", "bg_pol_str_key", "bg_pol_lpm_key", "bg_pol_addr_key",
            "bg_pol_cel")}
        self._cel_codes = {k.removeprefix("BG_CEL_"): v
                           for k, v in btf.enum("bg_pol_cel_code").items()}
        # the sizes are the C's (bpf/include/bpfguard.h), read from the object
        self.capacity = obj.map("pol_prefix").max_entries - 1  # id 0: none
        self.set_entries = obj.map("pol_strs").max_entries
        self._free = list(range(self.capacity, 0, -1))
        self._tries: dict[tuple[str, int], Map] = {}

    @property
    def available(self) -> int:
        """Set ids not in use."""
        return len(self._free)

    def new_set(self) -> int:
        """A free set id (ConfigError when every one is in use)."""
        if not self._free:
            raise ConfigError(f"all {self.capacity} selector sets are in use (policies and "
                              "the rules pushdown together); delete a policy first")
        return self._free.pop()

    def write(self, entries: SetEntries) -> None:
        t = self._t
        one = ctypes.c_uint8(1)
        ints, strs = self.obj.map("pol_ints"), self.obj.map("pol_strs")
        addrs = self.obj.map("pol_addrs")
        for s, v in entries.ints:
            k = t["bg_pol_int_key"]()
            k.set, k.value = s, v
            ints.update(k, one)
        for s, n, h in entries.strs:
            k = t["bg_pol_str_key"]()
            k.set, k.len, k.hash = s, n, h
            strs.update(k, one)
        for outer, values in (("pol_prefix", entries.prefixes),
                              ("pol_postfix", entries.postfixes)):
            for s, data in values:
                trie = self._tries.get((outer, s))
                if trie is None:
                    trie = self._tries[(outer, s)] = Map.create(
                        f"bg_pol_trie{s}", _LPM_TRIE, ctypes.sizeof(t["bg_pol_lpm_key"]), 1,
                        self.set_entries, flags=_NO_PREALLOC)
                    self.obj.map(outer).update(ctypes.c_uint32(s), ctypes.c_uint32(trie.fd))
                k = t["bg_pol_lpm_key"]()
                k.prefixlen = 8 * len(data)
                ctypes.memmove(k.data, data, len(data))
                trie.update(k, one)
        for s, program in entries.cel:
            prog = t["bg_pol_cel"]()
            prog.n = len(program)
            for i, (code, operand) in enumerate(program):
                prog.ops[i].code = self._cel_codes[code]
                if code == "ARG":
                    prog.ops[i].arg = operand
                else:  # (as the kernel's __s64)
                    prog.ops[i].imm = operand - (1 << 64) if operand >= 1 << 63 else operand
            try:
                self.obj.map("pol_cel").update(ctypes.c_uint32(s), prog)
            except KernelError as exc:  # (E2BIG: the map is full)
                raise ConfigError(f"no room for another CelExpr filter ({exc}); delete a "
                                  "policy first") from None
        for s, bits, addr in entries.addrs:
            k = t["bg_pol_addr_key"]()
            k.prefixlen, k.set = 32 + bits, s
            ctypes.memmove(k.addr, addr, 16)
            addrs.update(k, one)

    def release(self, ids: Iterable[int]) -> None:
        """Clears the sets `ids` from every map and gives the ids back."""
        ids = set(ids)
        if not ids:
            return
        for name, off in _KEYED_BY_SET:
            m = self.obj.map(name)
            for key in list(m.keys()):
                if int.from_bytes(key[off:off + 4], "little") in ids:
                    m.delete(key)
        for outer in ("pol_prefix", "pol_postfix"):
            for s in ids:
                trie = self._tries.pop((outer, s), None)
                if trie is not None:
                    self.obj.map(outer).delete(ctypes.c_uint32(s))
                    trie.close()
        self._free.extend(sorted(ids - set(self._free), reverse=True))

    def close(self) -> None:
        for trie in self._tries.values():  # the outer maps held their own references
            trie.close()
        self._tries.clear()


def encode_selector(t: Any, s: CompiledSelector, ops: dict[str, int]) -> Any:
    """A struct bg_pol_selector (type `t`, from the object's BTF) holding `s`;
    `ops` numbers the filter operators (enum bg_pol_op). followChildren slots
    are the policy engine's to fill."""
    e = t()
    e.nfilters = len(s.filters)
    e.actions, e.ret_actions, e.signal = s.actions, s.ret_actions, s.signal
    e.pid_flags, e.npids = s.pid_flags, len(s.pids)
    for j, p in enumerate(s.pids):
        e.pids[j] = p
    e.bin_op, e.bin_set, e.pbin_op, e.pbin_set = s.bin_op, s.bin_set, s.pbin_op, s.pbin_set
    e.nns = len(s.ns)
    for j, (kind, not_in, vals) in enumerate(s.ns):
        e.ns[j].kind, e.ns[j].not_in, e.ns[j].nvals = kind, int(not_in), len(vals)
        for m, v in enumerate(vals):
            e.ns[j].vals[m] = v
    e.cap_op, e.cap_type, e.cap_mask = s.cap_op, s.cap_type, s.cap_mask
    e.cap_userns = s.cap_userns
    e.nsc_op, e.nsc_mask = s.nsc_op, s.nsc_mask
    e.capc_op, e.capc_type, e.capc_mask = s.capc_op, s.capc_type, s.capc_mask
    e.rate_ms, e.rate_scope = s.rate_ms, s.rate_scope
    e.error = s.error
    e.notify, e.notify_error, e.notify_sig = s.notify, s.notify_error, s.notify_sig
    e.set_arg, e.set_value = s.set_arg, s.set_value
    e.comm_in, e.comm_set = int(bool(s.comm_set)), s.comm_set
    e.euid_in, e.euid_set = int(bool(s.euid_set)), s.euid_set
    e.sock_arg, e.ret_sock_arg = s.sock_arg, s.ret_sock_arg
    e.stacks = s.stacks
    for j, f in enumerate(s.filters):
        e.filters[j].op = ops[f.op]
        e.filters[j].arg = f.arg
        e.filters[j].ret = int(f.ret)
        e.filters[j].set = f.set
        e.filters[j].nvals = len(f.vals)
        for m, v in enumerate(f.vals):
            e.filters[j].vals[m] = v
    return e
