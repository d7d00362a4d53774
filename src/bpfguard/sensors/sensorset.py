"""The sensor set: one BPF object, one ring buffer, one scope.

Every part (the process sensor, the syscall sensor, the TracingPolicy
engine) is configured into the one object of ``bpf/sensor.bpf.c``, so
whatever mix an agent runs, each kernel event has one program: one
``sys_enter``, one ``sys_exit`` (attached while some part wants syscalls),
one of each ``sched_process_*``.

Example::

    with SensorSet(syscalls=["openat", "execve"]) as sensors:
        sensors.scope.follow(pid)
        sensors.start()
        while True:
            for event in sensors.read(timeout_ms=200):
                print(event.to_dict())
"""

from __future__ import annotations

import ctypes
import os
import resource
import secrets
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files import fs_type, mounts
from ..loader import BpfObject, Link, Map, RingBuffer, bpf_object_path
from .events import Abi, Decoder, LossEvent
from .io_uring import submit_tracepoint
from .routes import SyscallRoutes
from .selectors import SelectorSets
from .sensors import (
    PART_MAPS,
    SELECTOR_MAPS,
    SENSOR_OBJECT,
    SENSOR_OBJECT_NO_POLICY,
    SENSOR_OBJECT_NO_SYSCALLS,
    SHARED_MAPS,
    ProcessSensor,
    Sensor,
    SyscallFilter,
    SyscallSensor,
    sensor_btf,
)

__all__ = ["Scope", "SensorSet"]

# the programs of the sensor object every set loads; the others are the
# policy engine's per-hook copies
_LIFECYCLE_PROGRAMS = ("bg_sched_exec", "bg_sched_fork", "bg_sched_exit")
_SYSCALL_PROGRAMS = ("bg_sys_enter", "bg_sys_exit")
# io_uring requests as syscalls (the syscall sensor's, on kernels with io_uring)
_IO_URING_PROGRAMS = ("bg_iou_submit_tp", "bg_iou_complete_tp")


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]
    except OSError:
        return "00000000"


_DESCENDANT_PASSES = 8


def start_ticks(pid: int) -> int | None:
    """A live process's start time, in /proc's unit (clock ticks since
    boot), which with its pid names it across pid reuse; None if there is
    no such process, or only its zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # fields 3 (state) and 22, counted after the parenthesised comm (which
    # may hold spaces)
    fields = stat[stat.rindex(b")") + 2:].split()
    return None if fields[0] in (b"Z", b"X") else int(fields[19])


def self_start(pid: int) -> int:
    """bg_scope_config.self_start for agent `pid`: its start time, where
    the kernel's programs can compare it (0: they compare the pid alone)."""
    if os.sysconf("SC_CLK_TCK") != 100:   # BG_NSEC_PER_CLOCK_TICK assumes USER_HZ 100
        return 0
    # in a time namespace /proc adds its boot-time offset; the kernel's
    # start_boottime has none
    try:
        offsets = Path("/proc/self/timens_offsets").read_text().split("\n")
    except OSError:
        offsets = []
    if any(line.split()[:1] == ["boottime"] and line.split()[1:] != ["0", "0"]
           for line in offsets):
        return 0
    return start_ticks(pid) or 0


class Scope:
    """Which processes the sensors report, enforced in the kernel.

    With nothing added, every process except bpfguard itself is in scope.
    Criteria combine with OR: a tgid (and, with follow, its descendants), a
    cgroup v2 directory (and everything below it), a mount namespace.
    """

    def __init__(self, maps: dict[str, Map], abi: Abi) -> None:
        self._maps = maps
        self._abi = abi
        self._flags = 0
        self.self_tgid = os.getpid()

    def _write_config(self) -> None:
        cfg = self._abi.scope_config()
        cfg.flags = self._flags
        cfg.self_tgid = self.self_tgid
        cfg.self_start = self_start(self.self_tgid)
        self._maps["scope_config"].update(ctypes.c_uint32(0), cfg)

    def _set_flag(self, name: str) -> None:
        self._flags |= self._abi.scope_flags[name]
        self._write_config()

    def add_pid(self, pid: int, *, follow: bool = True, armed: bool = False,
                children: bool = True) -> None:
        """Puts process `pid` in scope. follow: its future children join.
        armed: it joins only at its next execve (the window of `trace -- CMD`).
        children: existing descendants join too (found through /proc)."""
        state = self._abi.scope_state["ARMED" if armed else "ACTIVE"]
        tgids = self._maps["scope_tgids"]
        tgids.update(ctypes.c_uint32(pid), ctypes.c_uint8(state))
        if children and not armed:
            self._join_found(lambda: _descendants(pid), state)
        if follow:
            self._flags |= self._abi.scope_flags["FOLLOW"]
        self._set_flag("TGIDS")

    def add_cgroup(self, path: str | os.PathLike[str]) -> int:
        """Puts a cgroup v2 directory (and its sub-cgroups) in scope; returns its id."""
        p = Path(path)
        try:
            cgid = os.stat(p).st_ino  # a cgroup v2 id is its directory's inode number
        except OSError as exc:
            raise ConfigError(f"--cgroup {path}: {exc.strerror}") from None
        if not _is_cgroup2(p):
            raise ConfigError(f"--cgroup {path}: not a cgroup v2 directory")
        self._maps["scope_cgroups"].update(ctypes.c_uint64(cgid), ctypes.c_uint8(1))
        self._set_flag("CGROUPS")
        return cgid

    def add_mntns(self, inode: int, *, at_exec: bool = False) -> None:
        """Puts the mount namespace `inode` in scope. at_exec: its processes are
        not in scope by the namespace alone; a process joins the pid scope when
        it execs there (a container's `exec` after the runtime's setup), with
        its future children. Those in it now join with :meth:`join_mntns`."""
        self._maps["scope_mntns"].update(ctypes.c_uint32(inode), ctypes.c_uint8(1))
        if at_exec:
            self._flags |= self._abi.scope_flags["MNTNS_AT_EXEC"] | \
                self._abi.scope_flags["FOLLOW"]
            # the pid scope is on: without any pid in it yet, nothing is in scope
            self._flags |= self._abi.scope_flags["TGIDS"]
        self._set_flag("MNTNS")

    def join_mntns(self, inode: int) -> None:
        """Puts the processes of mount namespace `inode` in the pid scope now
        (call it once forks are followed: see :meth:`SensorSet.start`)."""
        self._join_found(lambda: _in_mntns(inode), self._abi.scope_state["ACTIVE"])

    def _join_found(self, find: Callable[[], list[int]], state: int) -> None:
        """Puts the pids `find` reads from /proc in the pid scope, again until
        nothing new turns up: a process not yet in scope may fork while /proc
        is read, and only the next pass sees that child. (Once the fork
        program runs, children of pids in scope join by themselves; the bound
        stops a tree that forks without pause.)"""
        tgids = self._maps["scope_tgids"]
        added: set[int] = set()
        for _ in range(_DESCENDANT_PASSES):
            fresh = set(find()) - added
            if not fresh:
                break
            for pid in fresh:
                tgids.update(ctypes.c_uint32(pid), ctypes.c_uint8(state))
            added |= fresh

    def apply(self) -> None:
        self._write_config()


def _is_cgroup2(p: Path) -> bool:
    return fs_type(p) == "cgroup2"


def cgroup2_problem(path: str | os.PathLike[str]) -> str | None:
    """Why `path` is not a cgroup v2 directory a scope can name; None if it is."""
    p = Path(path)
    if not p.is_dir():
        return "no such directory" if not p.exists() else "not a directory"
    if not _is_cgroup2(p):
        at = [point for point, kind in mounts() if kind == "cgroup2"]
        return ("not on the cgroup v2 filesystem (on this host it is mounted at "
                + (", ".join(at) or "no place") + ")")
    return None


def _in_mntns(inode: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.stat(d / "ns" / "mnt").st_ino == inode:
                    out.append(int(d.name))
            except OSError:
                continue
    return out


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class SensorSet:
    """The process sensor plus, unless disabled, the syscall sensor, plus
    `extra` parts (the policy engine), all in one BPF object.

    Args:
        syscalls: syscall names to report; None for the default set, () for none.
        str_max: bytes read per user string argument.
        args_max: argv bytes read at exec.
        ringbuf_bytes: size of the ring buffer (power of two).
        filters: per syscall, what the kernel may drop (rules pushdown).
        env_max: environment bytes read at exec (0: not read).
        extra: further parts of the object (the policy engine); each decodes
            the records of its `event_type` with `decode(rec)`.
    """

    def __init__(self, *, syscalls: Iterable[str] | None = None, str_max: int = 4096,
                 args_max: int = 4095, ringbuf_bytes: int = 16 << 20,
                 filters: dict[str, SyscallFilter] | None = None, env_max: int = 0,
                 extra: Iterable[Sensor] = ()) -> None:
        page = resource.getpagesize()
        if ringbuf_bytes & (ringbuf_bytes - 1) or ringbuf_bytes < page:
            raise ConfigError(f"ringbuf_bytes must be a power of two of at least the page size "
                              f"({page}), not {ringbuf_bytes}")
        self.maps: dict[str, Map] = {}
        self.sensors: list[Sensor] = []
        self._rb: RingBuffer | None = None
        self._started = False
        self._links: list[Link] = []
        self._syscall_links: dict[str, Link] = {}
        self._links_lock = threading.RLock()
        self._selector_sets: SelectorSets | None = None
        # the parts are known before the object: a set without a policy engine,
        # or with one and no syscall sensor, loads the variant built without
        # the part it lacks
        extra = list(extra)
        with_policy = any(s.part == "policy" for s in extra)
        names = None if syscalls is None else list(syscalls)
        with_syscalls = names is None or bool(names)
        self.obj = BpfObject.open(bpf_object_path(
            SENSOR_OBJECT_NO_POLICY if not with_policy else
            SENSOR_OBJECT if with_syscalls else SENSOR_OBJECT_NO_SYSCALLS))
        try:
            submit = submit_tracepoint(self.obj.kernel_btf()) if with_syscalls else None
            self._io_uring = _IO_URING_PROGRAMS if submit else ()
            for prog in self.obj.programs:
                prog.autoload = prog.name in (_LIFECYCLE_PROGRAMS + _SYSCALL_PROGRAMS
                                              + self._io_uring)
            if submit:
                self.obj.program(_IO_URING_PROGRAMS[0]).set_attach_target(submit)
            self.process = ProcessSensor(args_max=args_max, env_max=env_max)
            self.sensors.append(self.process)
            self.syscalls: SyscallSensor | None = None
            if names is None or names:
                self.syscalls = SyscallSensor(syscalls=names, str_max=str_max, filters=filters)
                self.sensors.append(self.syscalls)
            self.extra = extra
            self.sensors.extend(self.extra)
            self.obj.set_max_entries("events", ringbuf_bytes)
            present = {s.part for s in self.sensors}
            shrink = [m for part, part_maps in PART_MAPS.items() if part not in present
                      for m in part_maps]
            if not present & {"policy", "syscalls"}:
                shrink += SELECTOR_MAPS
            for name in shrink:
                if name in self.obj.map_names:  # the variant may lack them
                    self.obj.set_max_entries(name, 1)
            # one exact-string hash key for the object: the rules' path sets and
            # the policies' string sets are hashed with it (a part given one
            # explicitly, the policy engine first, sets it)
            self.seed = next((s.seed for s in [*self.extra, *self.sensors]
                              if s.seed is not None), None) or secrets.randbits(64)
            self.obj.rodata["targ_seed"] = self.seed
            for s in self.sensors:
                if s.seed is not None:
                    s.seed = self.seed
                s.bind(self)
            for s in self.sensors:
                s.configure()
            self.obj.load()
            self.maps = {name: self.obj.map(name) for name in SHARED_MAPS}
            # the one selector engine's sets, for every part that compiles selectors
            self._selector_sets = SelectorSets(self.obj, sensor_btf())
            # the one per-syscall table, each part writing its half
            self.routes = SyscallRoutes(self.obj, sensor_btf())
            for s in self.sensors:
                s.after_load()
        except BaseException:
            self.close()
            raise
        self.abi = self.process.abi
        self._decoder = Decoder(self.abi, _boot_id(), env_read=env_max > 0)
        self._extra_decoders = {s.event_type: s.decode for s in self.extra  # type: ignore[attr-defined]
                                if hasattr(s, "decode")}
        self._hsize = ctypes.sizeof(self.abi.header)
        self._type_off = self.abi.header.type.offset
        self.scope = Scope(self.maps, self.abi)
        self.scope.apply()
        self._reported: dict[str, int] = {}

    @property
    def selector_sets(self) -> SelectorSets:
        """The selector engine's sets of this object (after the load)."""
        assert self._selector_sets is not None, "the object is not loaded"
        return self._selector_sets

    def start(self, before_syscalls: Callable[[], None] | None = None) -> None:
        """Attaches every program; events flow from here on.

        `before_syscalls` runs once the fork/exec/exit programs follow the
        scope and before any syscall is traced: pids put in scope there miss
        no syscall of theirs nor of a child they fork meanwhile.
        """
        self._rb = RingBuffer(self.maps["events"])
        with self._links_lock:
            self._links = [self.obj.program(n).attach()
                           for n in _LIFECYCLE_PROGRAMS + self._io_uring]
            for s in self.sensors:
                s.attach()
            if before_syscalls is not None:
                before_syscalls()
            self._started = True
            self.sync_syscall_programs()

    def set_env_max(self, env_max: int) -> None:
        """Environment bytes read at each exec from now on (0: not read)."""
        self.process.set_env_max(env_max)
        self._decoder.env_read = env_max > 0

    def sync_syscall_programs(self) -> None:
        """Attaches sys_enter (sys_exit) while some part wants syscalls (their
        exits), and detaches them when none does: with nothing to trace,
        syscalls run with no BPF program at all."""
        with self._links_lock:
            if not self._started:
                return
            enter, exit_ = _SYSCALL_PROGRAMS
            wanted = {enter: any(s.wants_syscalls() for s in self.sensors),
                      exit_: any(s.wants_syscall_exits() for s in self.sensors)}
            for name, want in wanted.items():
                if want and name not in self._syscall_links:
                    self._syscall_links[name] = self.obj.program(name).attach()
                elif not want and name in self._syscall_links:
                    self._syscall_links.pop(name).destroy()

    def links(self) -> list[Link]:
        """Every attachment of the set: its programs' and its parts' own."""
        with self._links_lock:
            own = self.obj.links
        return own + [link for s in self.sensors for link in s.links()]

    def program_stats(self) -> dict[str, dict[str, int]]:
        """Run counts and times of the object's loaded programs (BPF stats on)."""
        return {p.name: p.stats() for p in self.obj.programs if p.fd >= 0}

    def read(self, timeout_ms: int = 100) -> list[Any]:
        """Waits up to timeout_ms and returns the decoded events that are ready
        (Events, and whatever extra sensors decode)."""
        decode = self.decode
        return [ev for rec in self.read_raw(timeout_ms) if (ev := decode(rec)) is not None]

    def read_raw(self, timeout_ms: int = 100) -> list[bytes]:
        """Waits up to timeout_ms and returns the records that are ready, undecoded."""
        assert self._rb is not None, "start() first"
        return self._rb.poll(timeout_ms)

    def decode(self, rec: bytes) -> Any:
        """One record as an Event (or what an extra sensor decodes); None for a
        record nobody decodes (a removed policy hook's)."""
        ev: Any = self._decoder.decode(rec)
        if ev is None and self._extra_decoders and len(rec) >= self._hsize:
            dec = self._extra_decoders.get(
                int.from_bytes(rec[self._type_off:self._type_off + 2], "little"))
            ev = dec(rec) if dec else None
        return ev

    def drops(self) -> dict[str, int]:
        """Events lost in the kernel, by reason (cumulative since load)."""
        drops = self.maps["drops"]
        out = {reason.lower(): drops.sum_percpu_u64(ctypes.c_uint32(v))
               for reason, v in self.abi.drop_reason.items() if reason != "MAX"}
        out["recursion_miss"] = sum(st["recursion_misses"]
                                    for st in self.program_stats().values())
        return out

    def pushed_down(self) -> int:
        """Syscall events the kernel dropped because no rule could want them."""
        return sum(self.pushed_down_by().values())

    def pushed_down_by(self) -> dict[str, int]:
        """The same, by where the kernel decided (enum bg_push_stat): "at_entry",
        "at_exit" (the result), "by_path" (the path tests, at exit)."""
        if self.syscalls is None:
            return {}
        stats = self.obj.map("push_stats")
        return {k.lower(): stats.sum_percpu_u64(ctypes.c_uint32(v))
                for k, v in self.abi.push_stat.items() if k != "MAX"}

    def losses(self) -> list[LossEvent]:
        """Loss events for what was dropped since the last call."""
        out = []
        for reason, total in self.drops().items():
            delta = total - self._reported.get(reason, 0)
            if delta > 0:
                out.append(LossEvent(reason=reason, count=delta, total=total))
                self._reported[reason] = total
        return out

    def close(self) -> None:
        """Detaches all programs and frees the object; idempotent."""
        if self._rb is not None:
            self._rb.close()
            self._rb = None
        with self._links_lock:
            self._started = False
            for link in [*self._syscall_links.values(), *self._links]:
                link.destroy()
            self._syscall_links, self._links = {}, []
        for s in reversed(self.sensors):
            s.close()
        self.sensors.clear()
        if self._selector_sets is not None:
            self._selector_sets.close()
            self._selector_sets = None
        self.obj.close()

    def __enter__(self) -> SensorSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
