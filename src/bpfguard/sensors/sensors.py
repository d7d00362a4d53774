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
import itertools
import posixpath
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import BpfguardError, ConfigError
from ..loader import BpfObject, Btf, Link, bpf_object_path
from ..policy.compiler import (
    LIMITS,
    RET_ARG,
    CompiledFilter,
    CompiledSelector,
    SetEntries,
    string_hash,
)
from .events import Abi
from .io_uring import opcode_syscalls
from .selectors import SelectorSets, encode_selector
from .syscall_specs import DEFAULT_SYSCALLS, SyscallSpec, spec_for
from .syscall_table import native_arches, syscall_number

if TYPE_CHECKING:
    from .sensorset import SensorSet

__all__ = ["SENSOR_OBJECT", "SENSOR_OBJECT_NO_POLICY", "SENSOR_OBJECT_NO_SYSCALLS",
           "SELECTOR_MAPS", "SHARED_MAPS", "PathFilter",
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
_M64 = (1 << 64) - 1


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
    "policy": ("pol_hooks", "pol_exe", "pol_follow", "pol_follow_bits", "pol_stats"),
    "record": ("argvals", "members"),
}
# The selector engine's (bpf/lib/selectors.bpf.h): the policy engine and the
# syscall sensor's pushdown both use them; a set with neither shrinks them.
SELECTOR_MAPS = ("pol_selectors", "pol_ints", "pol_strs", "pol_prefix", "pol_postfix",
                 "pol_addrs")


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

    def links(self) -> list[Link]:
        """The attachments this part holds beyond the shared object's."""
        return []

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
    of a selector filter's value word (BG_OP_SMALL_IN), from the object's BTF;
    None when it cannot be read."""
    try:
        filt = sensor_btf().struct("bg_pol_filter")
        return 8 * ctypes.sizeof(dict(filt._fields_)["vals"]._type_)
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
        families: address families (socket.AF_*) of the socket the returned fd
            (else the "fd" argument) must be, at exit; at most as many as a
            selector filter holds values. A failed call returning an fd is kept.
        args: (position, values to keep) of integer arguments (a C int is
            compared on its low 32 bits, as the syscall sees it), decided at
            entry; positions below the selector's argument count.
    """

    results: frozenset[str] | None = None
    accmodes: frozenset[int] | None = None
    comms: frozenset[str] | None = None
    euids: frozenset[int] | None = None
    without_flags: int = 0
    with_flags: int = 0
    path: PathFilter | None = None
    rets: frozenset[int] | None = None
    families: frozenset[int] | None = None
    args: tuple[tuple[int, frozenset[int]], ...] = ()


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
        # exact-string hash key; the sensor set makes it the object's one seed
        self.seed = seed if seed is not None else secrets.randbits(64)
        self.syscalls = tuple(syscalls) if syscalls is not None else DEFAULT_SYSCALLS
        self.filters = dict(filters or {})
        unknown = sorted(set(self.filters) - set(self.syscalls))
        if unknown:
            raise ConfigError(f"filters for syscalls not traced: {', '.join(unknown)}")
        # syscall index -> its name (native and compat numbers share one
        # selector value: argument positions are the name's) and filter
        self._filtered: dict[int, tuple[str, SyscallFilter]] = {}
        # how many selector sets each filtered name needs, and the sets this
        # sensor holds once written (see _write_selectors)
        self._need: dict[str, int] = {}
        self._set_ids: list[int] = []
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
                # checked now; compiled with real set ids when written
                self._need[name] = len(self._compile(name, filt, itertools.count(1).__next__)[2])
                enc.filtered = 1
            found = False
            for is_compat, base in ((False, 0), (True, nr_max)):
                if is_compat and compat is None:
                    continue
                nr = syscall_number(name, compat=is_compat)
                if nr is not None and nr < nr_max:
                    out[base + nr] = enc
                    found = True
                    if filt is not None:
                        self._filtered[base + nr] = (name, filt)
            if not found:
                raise ConfigError(f"unknown syscall {name!r} on {native.name}")
        return out

    def _compile(self, name: str, filt: SyscallFilter, new_set: Callable[[], int]
                 ) -> tuple[CompiledSelector, SetEntries, list[int]]:
        """The selector of `name` that keeps what `filt` keeps, the entries of
        its sets, and their ids (from `new_set`). ConfigError for a filter the
        syscall cannot have."""
        spec = spec_for(name)
        sel = CompiledSelector(actions=0)
        sets = SetEntries()
        ids: list[int] = []

        def new() -> int:
            ids.append(new_set())
            return ids[-1]

        def add(op: str, arg: int, phase: str, *vals: int, set_id: int = 0) -> None:
            sel.filters.append(CompiledFilter(op, arg, self.abi.pol_phase[phase], set_id, vals))

        if filt.results is not None:
            if not filt.results:  # no result kept: the syscall is not wanted at all
                raise ConfigError(f"{name}: a filter keeping no result; leave the syscall out")
            if filt.results == {"success"}:
                add("GT", RET_ARG, "RETURN", _M64)  # ret > -1
            elif filt.results == {"failure"}:
                add("LT", RET_ARG, "RETURN", 0)
        if filt.accmodes is not None or filt.without_flags or filt.with_flags:
            idx = [i for i, a in enumerate(spec.args) if a.decoder == "open_flags"]
            if not idx or idx[0] >= LIMITS.args:
                raise ConfigError(f"{name}: no open-flags argument to filter on")
            if filt.accmodes is not None:
                add("ACCMODE", idx[0], "ENTRY", sum(1 << m for m in filt.accmodes))
            if filt.without_flags or filt.with_flags:
                add("FLAGS", idx[0], "ENTRY", filt.without_flags, filt.with_flags)
        if filt.comms is not None:
            sel.comm_set = new()
            sets.strs += [(sel.comm_set, len(b), string_hash(self.seed, b))
                          for b in {c.encode()[:15] for c in filt.comms}]
        if filt.euids is not None:
            sel.euid_set = new()
            sets.ints += [(sel.euid_set, u) for u in filt.euids]
        if filt.rets is not None:
            room = ret_values() or 0
            if not all(0 <= r < room for r in filt.rets):
                raise ConfigError(f"{name}: result values to keep must be within "
                                  f"0..{room - 1}")
            add("SMALL_IN", RET_ARG, "RETURN", sum(1 << r for r in filt.rets))
        if filt.families is not None:
            # the fd the event is about: the result, else the "fd" argument
            fd = RET_ARG if spec.ret == "FD" else spec.index.get("fd")
            if fd is None or (fd != RET_ARG and spec.args[fd].kind != "FD"):
                raise ConfigError(f"{name}: socket families need an fd result or argument")
            if len(filt.families) > LIMITS.values:
                raise ConfigError(f"{name}: more than {LIMITS.values} socket families")
            add("FD_FAMILY", fd, "RETURN", *sorted(filt.families))
        for i, values in filt.args:
            kind = spec.args[i].kind if i < len(spec.args) else ""
            if i >= LIMITS.args or kind not in ("INT", "U32", "LONG"):
                raise ConfigError(f"{name}: argument {i} is not an integer a selector reads")
            # what the filter sees (bg_push_args); a LONG is compared whole (the
            # kernel sign-extends a compat call's 32 bits, as user space does)
            if kind == "INT":
                values = frozenset(((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31) for v in values)
            elif kind == "U32":
                values = frozenset(v & 0xFFFFFFFF for v in values)
            signed = sorted(v & _M64 for v in values)
            if len(signed) <= LIMITS.values:
                add("EQ", i, "ENTRY", *signed)
            else:
                set_id = new()
                sets.ints += [(set_id, v) for v in signed]
                add("IN_SET", i, "ENTRY", set_id=set_id)
        if filt.path is not None:
            self._compile_path(name, filt.path, spec, sets, new, add)
        return sel, sets, ids

    def _compile_path(self, name: str, path: PathFilter, spec: SyscallSpec, sets: SetEntries,
                      new: Callable[[], int], add: Callable[..., None]) -> None:
        """The path tests of an open: one BG_OP_OPEN_PATH filter, decided after
        the others (its encoding is at the op in bpf/include/bpfguard.h)."""
        raw = [i for i, a in enumerate(spec.args) if a.kind in ("PATH", "PATH_AT")]
        if spec.ret != "FD" or not raw:
            raise ConfigError(f"{name}: path tests need a path argument and an fd result")
        key_bytes = path_key_bytes() or 0
        if any(len(x.encode()) > key_bytes for x in path.prefixes | path.suffixes):
            raise ConfigError(f"{name}: a path prefix or suffix longer than the {key_bytes} "
                              "bytes the kernel compares")
        bits = self.abi.push_path
        want = (bits["NAME"] if path.names else 0) | (bits["DIR"] if path.dirs else 0) \
            | (bits["FILE"] if path.files else 0) | (bits["PREFIX"] if path.prefixes else 0) \
            | (bits["SUFFIX"] if path.suffixes else 0) | (bits["DOTDOT"] if path.dotdot else 0)
        if path.suffixes and not any("/" in x for x in path.suffixes):
            want |= bits["SUFFIX_LEAF"]
        exact = []
        for values in (path.names, path.dirs, path.files):
            set_id = new() if values else 0
            exact.append(set_id)
            sets.strs += [(set_id, len(b), string_hash(self.seed, b))
                          for b in (v.encode() for v in values)]
        prefix = new() if path.prefixes else 0
        sets.prefixes += [(prefix, v.encode()) for v in path.prefixes]
        suffix = new() if path.suffixes else 0
        sets.postfixes += [(suffix, v.encode()[::-1]) for v in path.suffixes]
        add("OPEN_PATH", raw[0], "FILE", want, exact[1], exact[2], prefix, suffix,
            set_id=exact[0])

    def configure(self) -> None:
        self.obj.rodata["targ_syscalls"] = 1
        self.obj.rodata["targ_str_max"] = self.str_max
        iou = self.obj.rodata.var("targ_iou_nr")
        iou[:] = opcode_syscalls(self.obj.kernel_btf(), len(iou), self.abi.nr_max)

    def _check_room(self, sets: SelectorSets, *, freed: int = 0) -> None:
        """Room for this sensor's selector sets beside the policies' (after
        it gives back the `freed` ids it holds)."""
        total = 0
        for name in self._need:
            filt = self.filters[name]
            p = filt.path
            sizes = [len(filt.comms or ()), len(filt.euids or ())]
            if p is not None:
                sizes += [len(p.names), len(p.dirs), len(p.files), len(p.prefixes),
                          len(p.suffixes)]
            if max(sizes) > sets.set_entries:
                raise ConfigError(f"pushdown: a set of {max(sizes)} values, more than the "
                                  f"{sets.set_entries} a kernel set holds; run detect with "
                                  "--no-pushdown")
            total += sum(sizes) + sum(len(v) for _, v in filt.args if len(v) > LIMITS.values)
        if total > sets.set_entries:  # the string and integer maps hold all sets' values
            raise ConfigError(f"pushdown: {total} values in its sets, more than the "
                              f"{sets.set_entries} the kernel's set maps hold; run detect with "
                              "--no-pushdown")
        need, free = sum(self._need.values()), sets.available + freed
        if need > free:
            raise ConfigError(f"pushdown: {need} selector sets, but only {free} are free (the "
                              "policies hold the others); run detect with --no-pushdown")

    def wants_syscalls(self) -> bool:
        return True

    def after_load(self) -> None:
        self._check_room(self._set.selector_sets)
        self._write_selectors()
        for idx, enc in self._table.items():
            self._set.routes.set_spec(idx, enc)
        self._write_interest(self._table)

    def _write_selectors(self) -> None:
        """Each filtered syscall's selector and its sets, written before the
        specs that turn them on:
        written into a running sensor (a reload), a spec never filters on a
        selector or a set not yet complete."""
        sets = self._set.selector_sets
        sels = self.obj.map("pol_selectors")
        base = sels.max_entries - 2 * self.abi.nr_max  # BG_SYSCALL_SELECTORS
        t = sensor_btf().struct("bg_pol_selector")
        done: dict[str, Any] = {}
        new: list[int] = []
        try:
            for idx, (name, filt) in self._filtered.items():
                enc = done.get(name)
                if enc is None:
                    sel, entries, ids = self._compile(name, filt, sets.new_set)
                    new += ids
                    sets.write(entries)
                    enc = done[name] = encode_selector(t, sel, self.abi.pol_op)
                sels.update(ctypes.c_uint32(base + idx), enc)
        except BaseException:
            sets.release(new)  # only this write's: no spec turned them on yet
            raise
        self._set_ids += new

    def release_sets(self) -> None:
        """Gives back the selector sets this sensor holds (once no spec of its
        filters on them)."""
        ids, self._set_ids = self._set_ids, []
        self._set.selector_sets.release(ids)

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
        fresh = SyscallSensor(syscalls=syscalls, str_max=self.str_max, filters=filters,
                              seed=self.seed)
        fresh.obj, fresh._set = self.obj, self._set
        # the new sets are written once the old ones are given back (narrow)
        fresh._check_room(self._set.selector_sets, freed=len(self._set_ids))
        # a syscall traced before and after keeps its enablement (calls in
        # flight across the reload report); one that comes (back) gets a new one
        fresh._enablements = self._enablements + 1
        for idx, enc in fresh._table.items():
            enc.gen = self._table[idx].gen if idx in self._table else fresh._enablements
        return SyscallChange(self, fresh)

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
    :meth:`rollback`, after widen, restores the old configuration instead;
    a failed :meth:`narrow` leaves the new set's syscalls unfiltered.
    """

    def __init__(self, sensor: SyscallSensor, fresh: SyscallSensor) -> None:
        self.sensor, self.fresh = sensor, fresh

    def widen(self) -> None:
        routes = self.sensor._set.routes
        for idx, enc in self.fresh._table.items():
            wide = type(enc).from_buffer_copy(enc)
            wide.filtered = 0
            routes.set_spec(idx, wide)
        self.sensor._write_interest({*self.sensor._table, *self.fresh._table})

    def rollback(self) -> None:
        """Back to the old configuration: its selectors and sets are still in
        place (widen left them), so only the specs and the interest change."""
        s, routes = self.sensor, self.sensor._set.routes
        off = s.abi.spec()  # enabled = 0
        for idx in set(self.fresh._table) - set(s._table):
            routes.set_spec(idx, off)
        for idx, enc in s._table.items():
            routes.set_spec(idx, enc)
        s._write_interest(s._table)

    def narrow(self) -> None:
        try:
            self._leave_out(self.sensor, self.fresh)
        except BaseException:
            # nothing may filter on a set given back: every syscall of the new
            # set stays unfiltered (as widen left it) until the next reload
            routes = self.fresh._set.routes
            for idx, enc in self.fresh._table.items():
                wide = type(enc).from_buffer_copy(enc)
                wide.filtered = 0
                routes.set_spec(idx, wide)
            self.fresh.release_sets()
            raise
        s, f = self.sensor, self.fresh
        s.syscalls, s.filters = f.syscalls, f.filters
        s._table, s._filtered, s._need, s._set_ids = f._table, f._filtered, f._need, f._set_ids
        s._enablements = f._enablements

    @staticmethod
    def _leave_out(old: SyscallSensor, new: SyscallSensor) -> None:
        """Turns off what only `old` traces, gives back `old`'s selector sets,
        then writes `new` in full. Safe in this order: every syscall of `new`
        is unfiltered (widen) until its own spec is written, after its
        selector and sets."""
        off = old.abi.spec()  # enabled = 0
        for idx in set(old._table) - set(new._table):
            old._set.routes.set_spec(idx, off)
        old.release_sets()
        new.after_load()
