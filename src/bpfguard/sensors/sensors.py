"""The parts of the one sensor object (``bpf/sensor.bpf.c``).

One BPF object serves an agent, whatever it runs: one program per kernel
event (one ``sys_enter``, one ``sys_exit``, one of each ``sched_process_*``),
one ring buffer, one drop counter, one scope. A :class:`Sensor` is a part of
that object: it writes its load-time knobs (``.rodata``) before the load and
its maps after it, and says whether it needs the syscall programs. The
:class:`~bpfguard.sensors.SensorSet` opens and loads the object, binds the
parts to it and attaches the programs.
"""

from __future__ import annotations

import ctypes
import functools
import posixpath
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import BpfguardError, ConfigError
from ..loader import BpfObject, Btf, Map, bpf_object_path
from ..policy.compiler import string_hash
from .events import Abi
from .syscall_specs import DEFAULT_SYSCALLS, spec_for
from .syscall_table import native_arches, syscall_number

if TYPE_CHECKING:
    from .sensorset import SensorSet

__all__ = ["SENSOR_OBJECT", "SENSOR_OBJECT_NO_POLICY", "SENSOR_OBJECT_NO_SYSCALLS",
           "SHARED_MAPS", "PathFilter",
           "ProcessSensor", "Sensor", "SyscallChange", "SyscallFilter", "SyscallSensor",
           "path_key_bytes", "ret_values", "sensor_btf"]

SENSOR_OBJECT = "sensor"
# The same source built without the policy engine (-DBG_NO_POLICY): a set
# with no policy engine loads it, so kernels that verify every global
# function of a program (6.1 does) never verify the interpreter's.
SENSOR_OBJECT_NO_POLICY = "sensor-nopolicy"
# ... and without the syscall sensor, for a set of the policy engine alone
SENSOR_OBJECT_NO_SYSCALLS = "sensor-nosyscalls"
SHARED_MAPS = ("events", "drops", "scope_config", "scope_tgids", "scope_cgroups", "scope_mntns")

_schema_lock = threading.Lock()


@functools.cache
def _schema() -> BpfObject:
    # opened, never loaded: only its BTF is read (layouts, enums, limits)
    return BpfObject.open(bpf_object_path(SENSOR_OBJECT))


def sensor_btf() -> Btf:
    """The sensor object's BTF: every wire layout, enum and limit."""
    with _schema_lock:
        return _schema().btf


# The large maps of each part of the sensor object (task storage and per-CPU
# maps aside): a set without the part creates them with one entry, as its
# programs never reach them (the part's code is compiled out: targ_*).
PART_MAPS = {
    "syscalls": ("push_comms", "push_euids", "push_strs", "push_prefix", "push_suffix"),
    "policy": ("pol_hooks", "pol_selectors", "pol_routes", "pol_ints", "pol_strs",
               "pol_prefix", "pol_postfix", "pol_addrs", "pol_exe", "pol_follow",
               "pol_follow_bits", "pol_stats"),
    "record": ("argvals", "members"),
}


class Sensor:
    """A part of the sensor object: bind -> configure -> (load) -> after_load
    -> attach -> close."""

    obj: BpfObject
    # the part's name in PART_MAPS ("" for the process part, which every set has)
    part = ""
    # the exact-string hash key of a part that hashes strings into maps (None:
    # it hashes none); the sensor set makes every part's the object's one seed
    seed: int | None = None

    def __init__(self) -> None:
        self.abi = Abi(sensor_btf())

    def bind(self, sensors: SensorSet) -> None:
        """Makes this part one of `sensors`, on its object (before the load)."""
        self.obj = sensors.obj
        self._set = sensors

    def configure(self) -> None:
        """Writes load-time knobs (.rodata); subclasses override."""

    def after_load(self) -> None:
        """Writes run-time configuration (maps, .bss); subclasses override."""

    def attach(self) -> None:
        """Starts what this part attaches of its own (after the set's programs)."""

    def wants_syscalls(self) -> bool:
        """Whether the sys_enter program (and, see below, sys_exit) must run for
        this part."""
        return False

    def wants_syscall_exits(self) -> bool:
        """Whether the sys_exit program must run for this part (by default,
        whenever it wants syscalls)."""
        return self.wants_syscalls()

    def close(self) -> None:
        """Frees what this part holds beyond the shared object."""


class ProcessSensor(Sensor):
    """exec / fork / exit, with kernel-truth exe, argv, cwd, creds, namespaces, cgroup.

    Args:
        args_max: argv bytes read at exec.
        env_max: environment bytes read at exec (0: not read).
    """

    def __init__(self, *, args_max: int = 4095, env_max: int = 0) -> None:
        super().__init__()
        if not 0 <= env_max <= 4095:
            raise ConfigError(f"env_max must be within 0..4095, not {env_max}")
        self.args_max = args_max
        self.env_max = env_max

    def configure(self) -> None:
        self.obj.rodata["targ_args_max"] = self.args_max

    def after_load(self) -> None:
        self.set_env_max(self.env_max)

    def set_env_max(self, env_max: int) -> None:
        """Environment bytes read at each exec from now on (0: not read)."""
        if not 0 <= env_max <= 4095:
            raise ConfigError(f"env_max must be within 0..4095, not {env_max}")
        self.env_max = env_max
        self.obj.bss["env_max"] = env_max


@dataclass(frozen=True)
class PathFilter:
    """The path tests of an open (rules pushdown): the kernel keeps the event when
    one holds, or when it cannot compute the value as user space will (a failed
    open, an unlinked, pseudo or cut path: see enum bg_push_path). An empty
    filter holds for nothing.

    Attributes:
        names: values of Falco's fd.name (the returned file's path).
        dirs: values of fd.directory (posixpath.dirname of fd.name).
        files: values of fd.filename (its basename).
        prefixes: strings fd.name may start with (at most :func:`path_key_bytes`
            bytes each).
        suffixes: strings fd.name may end with (likewise).
        dotdot: fd.nameraw, the string the process passed, may contain "../".
    """

    names: frozenset[str] = field(default_factory=frozenset)
    dirs: frozenset[str] = field(default_factory=frozenset)
    files: frozenset[str] = field(default_factory=frozenset)
    prefixes: frozenset[str] = field(default_factory=frozenset)
    suffixes: frozenset[str] = field(default_factory=frozenset)
    dotdot: bool = False

    @property
    def empty(self) -> bool:
        return not (self.names or self.dirs or self.files or self.prefixes or self.suffixes
                    or self.dotdot)

    def holds_for(self, name: str) -> bool:
        """Whether a test holds for an event whose fd.name is `name` (its fd.nameraw
        unknown, so the fd.nameraw test counts as holding)."""
        return (self.dotdot or name in self.names or posixpath.dirname(name) in self.dirs
                or posixpath.basename(name) in self.files
                or any(name.startswith(p) for p in self.prefixes)
                or any(name.endswith(x) for x in self.suffixes))

    def join(self, o: PathFilter) -> PathFilter:
        return PathFilter(self.names | o.names, self.dirs | o.dirs, self.files | o.files,
                          self.prefixes | o.prefixes, self.suffixes | o.suffixes,
                          self.dotdot or o.dotdot)

    def describe(self) -> str:
        def words(ws: frozenset[str]) -> str:
            return ", ".join(sorted(ws))
        parts = [f"fd.{what} {op} ({words(ws)})" for what, op, ws in (
            ("name", "in", self.names), ("directory", "in", self.dirs),
            ("filename", "in", self.files), ("name", "startswith", self.prefixes),
            ("name", "endswith", self.suffixes)) if ws]
        if self.dotdot:
            parts.append("fd.nameraw contains ../")
        return " or ".join(parts) if parts else "nothing (no path can hold)"


@functools.cache
def ret_values() -> int | None:
    """How many result values (0, 1, ...) a filter can keep one by one: the bits
    of bg_syscall_spec.ret_mask, from the object's BTF; None when it cannot be read."""
    try:
        spec = sensor_btf().struct("bg_syscall_spec")
        return 8 * ctypes.sizeof(dict(spec._fields_)["ret_mask"])
    except (BpfguardError, OSError, KeyError):
        return None


@functools.cache
def path_key_bytes() -> int | None:
    """Bytes a prefix or suffix test compares (the data of struct bg_pol_lpm_key,
    from the syscall sensor's BTF); None when the object cannot be read."""
    try:
        return int(sensor_btf().struct("bg_pol_lpm_key").data.size)
    except (BpfguardError, OSError, KeyError):
        return None


@dataclass(frozen=True)
class SyscallFilter:
    """What the kernel may drop of one syscall's events because nothing wants them
    (rules pushdown). None in a field means no condition on it.

    Attributes:
        results: "success" (ret >= 0) and/or "failure" (ret < 0) to keep.
        accmodes: open(2) access modes to keep (os.O_RDONLY, O_WRONLY, O_RDWR); only
            for syscalls with an open-flags argument.
        comms: task names (comm, at most 15 bytes) to keep.
        euids: effective uids to keep.
        without_flags / with_flags: open(2) flags that must all be clear / all be set
            (0: no condition); only for syscalls with an open-flags argument.
        rets: result values to keep, each below :func:`ret_values` (a dup's new fd);
        path: the path tests (see PathFilter), checked at exit after the others;
            only for syscalls returning an fd from a path argument (the opens).
    """

    results: frozenset[str] | None = None
    accmodes: frozenset[int] | None = None
    comms: frozenset[str] | None = None
    euids: frozenset[int] | None = None
    without_flags: int = 0
    with_flags: int = 0
    path: PathFilter | None = None
    rets: frozenset[int] | None = None


class SyscallSensor(Sensor):
    """raw_syscalls enter/exit, filtered in the kernel by an interest set and the scope.

    Args:
        syscalls: names to report (default: :data:`DEFAULT_SYSCALLS`).
        str_max: bytes read per user string argument (paths), at most 4096.
        filters: per syscall name, what the kernel may drop (see SyscallFilter).
    """

    part = "syscalls"
    seed: int

    def __init__(self, *, syscalls: Iterable[str] | None = None, str_max: int = 4096,
                 filters: dict[str, SyscallFilter] | None = None,
                 seed: int | None = None) -> None:
        super().__init__()
        if not 1 <= str_max <= 4096:
            raise ConfigError(f"str_max must be within 1..4096, not {str_max}")
        self.str_max = str_max
        # exact-path hash key; the sensor set makes it the object's one seed
        self.seed = seed if seed is not None else secrets.randbits(64)
        # path filters, equal ones shared: filter -> its number (tries, string sets)
        self._paths: dict[PathFilter, int] = {}
        self._tries: list[Map] = []
        self._trie: Map | None = None  # the shape of a trie (configure reads it)
        self.syscalls = tuple(syscalls) if syscalls is not None else DEFAULT_SYSCALLS
        self.filters = dict(filters or {})
        unknown = sorted(set(self.filters) - set(self.syscalls))
        if unknown:
            raise ConfigError(f"filters for syscalls not traced: {', '.join(unknown)}")
        self._comms: list[tuple[int, bytes]] = []
        self._euids: list[tuple[int, int]] = []
        self._table = self._resolve(self.syscalls)
        # enablements handed out so far (bg_syscall_spec.gen): a syscall a
        # reload brings back gets a new one, so a stash left from before is stale
        self._enablements = 0

    def _resolve(self, names: Iterable[str]) -> dict[int, Any]:
        """Index (native nr, or compat nr + NR_MAX) -> encoded bg_syscall_spec."""
        native, compat = native_arches()
        nr_max = self.abi.nr_max
        kinds, rets = self.abi.arg_kind, self.abi.ret_kind
        out: dict[int, Any] = {}
        for name in names:
            spec = spec_for(name)
            enc = self.abi.spec()
            enc.enabled = 1
            enc.ret = rets[spec.ret]
            for i, a in enumerate(spec.args):
                enc.arg[i] = kinds[a.kind]
            filt = self.filters.get(name)
            if filt is not None:
                self._encode_filter(name, filt, spec, enc)
            found = False
            for is_compat, base in ((False, 0), (True, nr_max)):
                if is_compat and compat is None:
                    continue
                nr = syscall_number(name, compat=is_compat)
                if nr is not None and nr < nr_max:
                    out[base + nr] = enc
                    found = True
                    if filt is not None:
                        self._comms += [(base + nr, c.encode()[:15]) for c in filt.comms or ()]
                        self._euids += [(base + nr, u) for u in filt.euids or ()]
            if not found:
                raise ConfigError(f"unknown syscall {name!r} on {native.name}")
        return out

    def _encode_filter(self, name: str, filt: SyscallFilter, spec: Any, enc: Any) -> None:
        push = self.abi.push_flags
        flags = 0
        if filt.results is not None:
            flags |= push["SUCCESS"] if "success" in filt.results else 0
            flags |= push["FAILURE"] if "failure" in filt.results else 0
            if not filt.results:  # no result kept: the syscall is not wanted at all
                raise ConfigError(f"{name}: a filter keeping no result; leave the syscall out")
        if filt.accmodes is not None or filt.without_flags or filt.with_flags:
            idx = [i for i, a in enumerate(spec.args) if a.decoder == "open_flags"]
            if not idx:
                raise ConfigError(f"{name}: no open-flags argument to filter on")
            enc.flags_arg = idx[0]
            if filt.accmodes is not None:
                flags |= push["ACCMODE"]
                enc.accmodes = sum(1 << m for m in filt.accmodes)
            if filt.without_flags or filt.with_flags:
                flags |= push["FLAGS"]
                enc.flags_none, enc.flags_all = filt.without_flags, filt.with_flags
        if filt.comms is not None:
            flags |= push["COMM"]
        if filt.euids is not None:
            flags |= push["EUID"]
        if filt.path is not None:
            flags |= push["PATH"]
            self._encode_path(name, filt.path, spec, enc)
        if filt.rets is not None:
            room = ret_values() or 0
            if not all(0 <= r < room for r in filt.rets):
                raise ConfigError(f"{name}: result values to keep must be within "
                                  f"0..{room - 1}")
            flags |= push["RETS"]
            enc.ret_mask = sum(1 << r for r in filt.rets)
        enc.push = flags

    def _encode_path(self, name: str, path: PathFilter, spec: Any, enc: Any) -> None:
        raw = [i for i, a in enumerate(spec.args) if a.kind in ("PATH", "PATH_AT")]
        if spec.ret != "FD" or not raw:
            raise ConfigError(f"{name}: path tests need a path argument and an fd result")
        key_bytes = self.abi.lpm_key.data.size
        if any(len(x.encode()) > key_bytes for x in path.prefixes | path.suffixes):
            raise ConfigError(f"{name}: a path prefix or suffix longer than the {key_bytes} "
                              "bytes the kernel compares")
        bits = self.abi.push_path
        n = self._paths.setdefault(path, len(self._paths) + 1)  # 0: unused
        enc.path = (bits["NAME"] if path.names else 0) | (bits["DIR"] if path.dirs else 0) \
            | (bits["FILE"] if path.files else 0) | (bits["PREFIX"] if path.prefixes else 0) \
            | (bits["SUFFIX"] if path.suffixes else 0) | (bits["DOTDOT"] if path.dotdot else 0)
        if path.suffixes and not any("/" in x for x in path.suffixes):
            enc.path |= bits["SUFFIX_LEAF"]
        enc.path_arg = raw[0]
        enc.path_trie = n
        enc.name_set, enc.dir_set, enc.file_set = 3 * n, 3 * n + 1, 3 * n + 2

    def configure(self) -> None:
        self.obj.rodata["targ_syscalls"] = 1
        self.obj.rodata["targ_str_max"] = self.str_max
        # libbpf frees the inner-map template at load: its shape is read now
        self._trie = self.obj.inner_map("push_prefix")
        self._check_room()

    def _check_room(self) -> None:
        for what, pairs, name in (("comms", self._comms, "push_comms"),
                                  ("euids", self._euids, "push_euids")):
            room = self.obj.map(name).max_entries
            if len(pairs) > room:
                raise ConfigError(f"pushdown: {len(pairs)} (syscall, {what[:-1]}) pairs, more "
                                  f"than the {room} the kernel map holds; filter fewer syscalls "
                                  "(or run detect with --no-pushdown)")
        # the sizes are the C's (bpf/include/bpfguard.h), read from the object
        sets = self.obj.map("push_prefix").max_entries
        assert self._trie is not None
        strs = sum(len(p.names) + len(p.dirs) + len(p.files) for p in self._paths)
        per_trie = max((len(x) for p in self._paths for x in (p.prefixes, p.suffixes)),
                       default=0)
        if len(self._paths) >= sets or strs > self.obj.map("push_strs").max_entries \
                or per_trie > self._trie.max_entries:
            raise ConfigError(f"pushdown: {len(self._paths)} path filters with {strs} strings "
                              f"and up to {per_trie} prefixes or suffixes each, more than the "
                              "kernel maps hold; run detect with --no-pushdown")

    def wants_syscalls(self) -> bool:
        return True

    def after_load(self) -> None:
        comms, euids = self.obj.map("push_comms"), self.obj.map("push_euids")
        comm_key, euid_key = self.abi.push_comm_key, self.abi.push_euid_key
        # the sets before the specs that consult them: written into a running
        # sensor (a reload), a spec never filters on a set not yet complete
        for idx, comm in self._comms:
            k = comm_key()
            k.idx, k.comm = idx, comm
            comms.update(k, ctypes.c_uint8(1))
        for idx, euid in self._euids:
            k = euid_key()
            k.idx, k.euid = idx, euid
            euids.update(k, ctypes.c_uint8(1))
        self._write_paths()
        specs = self.obj.map("specs")
        for idx, enc in self._table.items():
            specs.update(ctypes.c_uint32(idx), enc)
        self._write_interest(self._table)

    def _write_interest(self, table: Iterable[int]) -> None:
        interest = self.obj.bss.var("interest")
        words = [0] * len(interest)
        for idx in table:
            nr = idx % self.abi.nr_max
            words[nr // 64] |= 1 << (nr % 64)
        for i, w in enumerate(words):
            interest[i] = w

    def prepare(self, *, syscalls: Iterable[str],
                filters: dict[str, SyscallFilter] | None) -> SyscallChange:
        """A change of what the running sensor traces and drops (a rules
        reload), validated (ConfigError) with nothing written yet."""
        fresh = SyscallSensor(syscalls=syscalls, str_max=self.str_max, filters=filters)
        fresh.obj, fresh._set = self.obj, self._set
        fresh.seed, fresh._trie = self.seed, self._trie
        fresh._check_room()
        # a syscall traced before and after keeps its enablement (calls in
        # flight across the reload report); one that comes (back) gets a new one
        fresh._enablements = self._enablements + 1
        for idx, enc in fresh._table.items():
            enc.gen = self._table[idx].gen if idx in self._table else fresh._enablements
        return SyscallChange(self, fresh)

    _LPM_TRIE = 11  # BPF_MAP_TYPE_LPM_TRIE
    _NO_PREALLOC = 1  # BPF_F_NO_PREALLOC, which LPM tries require

    def _path_strings(self) -> set[tuple[int, bytes]]:
        """(set id, value) of every exact path string (see _encode_path)."""
        return {(3 * n + k, v.encode()) for path, n in self._paths.items()
                for k, values in enumerate((path.names, path.dirs, path.files)) for v in values}

    def _write_paths(self) -> None:
        """push_strs and the tries of every path filter (see _encode_path); the
        tries it replaces are closed (the outer maps held their own references)."""
        stale, self._tries = self._tries, []
        strs = self.obj.map("push_strs")
        key_t, lpm_t = self.abi.str_key, self.abi.lpm_key
        inner = self._trie
        assert inner is not None  # configure() ran before load
        one = ctypes.c_uint8(1)
        for path, n in self._paths.items():
            for set_id, values in ((3 * n, path.names), (3 * n + 1, path.dirs),
                                   (3 * n + 2, path.files)):
                for v in values:
                    b = v.encode()
                    k = key_t()
                    k.set, k.len, k.hash = set_id, len(b), string_hash(self.seed, b)
                    strs.update(k, one)
            for outer, values, rev in (("push_prefix", path.prefixes, False),
                                       ("push_suffix", path.suffixes, True)):
                if not values:
                    continue
                trie = Map.create(f"bg_push_trie{n}", self._LPM_TRIE, inner.key_size,
                                  inner.value_size, inner.max_entries, flags=self._NO_PREALLOC)
                self._tries.append(trie)
                for v in values:
                    b = v.encode()[::-1] if rev else v.encode()
                    lk = lpm_t()
                    lk.prefixlen = 8 * len(b)
                    ctypes.memmove(lk.data, b, len(b))
                    trie.update(lk, one)
                self.obj.map(outer).update(ctypes.c_uint32(n), ctypes.c_uint32(trie.fd))
        for trie in stale:
            trie.close()

    def close(self) -> None:
        super().close()
        for trie in self._tries:  # the outer maps held their own references
            trie.close()
        self._tries.clear()

    @property
    def numbers(self) -> list[int]:
        return sorted(self._table)


class SyscallChange:
    """Changes a running :class:`SyscallSensor` in two steps, so that while
    the rules change the kernel keeps at least what either set wants.

    :meth:`widen` traces every syscall of the new set unfiltered (syscalls
    only the old set traces keep their old filters, which keep what the old
    rules want); :meth:`narrow`, once user space matches with the new rules,
    leaves out what only the old set had and writes the new filters.
    :meth:`rollback`, after widen, restores the old configuration instead.
    """

    def __init__(self, sensor: SyscallSensor, fresh: SyscallSensor) -> None:
        self.sensor, self.fresh = sensor, fresh

    def widen(self) -> None:
        specs = self.sensor.obj.map("specs")
        for idx, enc in self.fresh._table.items():
            wide = type(enc).from_buffer_copy(enc)
            wide.push = 0
            specs.update(ctypes.c_uint32(idx), wide)
        self.sensor._write_interest({*self.sensor._table, *self.fresh._table})

    def rollback(self) -> None:
        self._leave_out(self.fresh, self.sensor)
        self.fresh.close()

    def narrow(self) -> None:
        try:
            self._leave_out(self.sensor, self.fresh)
        except BaseException:
            self.fresh.close()
            raise
        s, f = self.sensor, self.fresh
        replaced = s._tries
        s.syscalls, s.filters = f.syscalls, f.filters
        s._table, s._comms, s._euids = f._table, f._comms, f._euids
        s._paths, s._tries = f._paths, f._tries
        s._enablements = f._enablements
        for trie in replaced:
            trie.close()

    @staticmethod
    def _leave_out(old: SyscallSensor, new: SyscallSensor) -> None:
        """Clears what only `old` had, then writes `new` in full. Clearing
        first keeps the maps within the sizes `new` was checked against;
        it narrows nothing `new` wants: every syscall of `new` is unfiltered
        (widen) until its own spec is written, sets before specs."""
        obj, abi = old.obj, old.abi
        specs = obj.map("specs")
        off = abi.spec()  # enabled = 0
        for idx in set(old._table) - set(new._table):
            specs.update(ctypes.c_uint32(idx), off)
        for idx, comm in set(old._comms) - set(new._comms):
            k = abi.push_comm_key()
            k.idx, k.comm = idx, comm
            obj.map("push_comms").delete(k)
        for idx, euid in set(old._euids) - set(new._euids):
            k = abi.push_euid_key()
            k.idx, k.euid = idx, euid
            obj.map("push_euids").delete(k)
        for set_id, b in old._path_strings() - new._path_strings():
            k = abi.str_key()
            k.set, k.len, k.hash = set_id, len(b), string_hash(old.seed, b)
            obj.map("push_strs").delete(k)
        # a trie number the new filters do not use for that kind of test
        for outer, kind in (("push_prefix", "prefixes"), ("push_suffix", "suffixes")):
            keep = {n for p, n in new._paths.items() if getattr(p, kind)}
            for p, n in old._paths.items():
                if getattr(p, kind) and n not in keep:
                    obj.map(outer).delete(ctypes.c_uint32(n))
        new.after_load()
