"""Recording which syscalls a workload makes, aggregated in the kernel.

The recording part of the sensor object (``bpf/lib/record.bpf.h``, on the
sensor's one sys_enter and lifecycle programs) marks one byte per (ABI,
syscall number) in global data for every syscall an in-scope process makes,
and collects the values of the few arguments that decide safety; user space
reads the set when it wants it. No event crosses to user space per syscall.

Example::

    with SeccompRecorder() as rec:
        pid, release = spawn_waiting(exe, argv)
        rec.scope.add_pid(pid, armed=True)   # the window opens at CMD's execve
        rec.start()
        os.write(release, b"x"); os.close(release)
        ...
        recording = rec.recording()
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..loader import Map
from ..sensors.sensors import Sensor, sensor_btf
from ..sensors.sensorset import Scope, SensorSet
from ..sensors.syscall_table import native_arches, syscall_name, syscall_number

__all__ = ["ARG_WATCHES", "CLONE_NS_MASK", "ArgWatch", "Recorder", "Recording",
           "SeccompRecorder"]

# The recorder's set reads no events and builds none (targ_process_events is
# off), so its ring buffer is the smallest the kernel allows: one page.
_RINGBUF_BYTES = resource.getpagesize()

# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET (linux/sched.h):
# the flags that create namespaces. CLONE_NEWTIME (0x80) is left out: in clone()'s
# first argument that bit belongs to the exit signal. Docker's profile uses the same mask.
CLONE_NS_MASK = 0x7E020000


@dataclass(frozen=True)
class ArgWatch:
    """An argument whose values become rules: EQ per value, or MASKED_EQ per
    masked value when ``mask`` is set."""

    index: int
    mask: int | None
    meaning: str


# Syscalls whose arguments decide what they can do (recorded with --args).
ARG_WATCHES = {
    "socket": ArgWatch(0, None, "address family"),
    "personality": ArgWatch(0, None, "execution domain"),
    "prctl": ArgWatch(0, None, "operation"),
    "clone": ArgWatch(0, CLONE_NS_MASK, "namespace flags"),
}


@dataclass
class Recording:
    """What a scope did, by OCI architecture name.

    ``arg_values`` holds, per watched syscall, the values seen (clone3's flags
    are folded into clone's). ``args_incomplete`` names syscalls of which some
    value could not be kept: they get no argument rules.
    """

    syscalls: dict[str, set[str]] = field(default_factory=dict)
    unnamed: dict[str, set[int]] = field(default_factory=dict)
    arg_values: dict[str, set[int]] = field(default_factory=dict)
    args_incomplete: set[str] = field(default_factory=set)
    out_of_range: int = 0

    def names(self) -> set[str]:
        return set().union(*self.syscalls.values()) if self.syscalls else set()


class Recorder(Sensor):
    """The recording part of a sensor set: sys_enter (no sys_exit) for every
    syscall of the scope, the scope's members kept at fork and exec.

    Args:
        args: also collect the argument values of :data:`ARG_WATCHES` (and clone3's flags).
    """

    part = "record"

    def __init__(self, *, args: bool = False) -> None:
        super().__init__()
        self.args = args

    def configure(self) -> None:
        self.obj.rodata["targ_record"] = 1
        self.obj.rodata["targ_process_events"] = 0  # nobody reads them: scope upkeep only
        if self.args:
            self._watch(sensor_btf().enum("bg_watch"))

    def _watch(self, kinds: dict[str, int]) -> None:
        watch = self.obj.rodata.var("targ_watch")
        nr_max = self.abi.nr_max
        _, compat = native_arches()
        for is_compat in (False, True) if compat else (False,):
            base = nr_max if is_compat else 0
            for name, w in ARG_WATCHES.items():
                nr = syscall_number(name, compat=is_compat)
                if nr is not None and nr < nr_max:
                    watch[base + nr] = kinds["BG_WATCH_ARG0"] + w.index
            nr = syscall_number("clone3", compat=is_compat)
            if nr is not None and nr < nr_max:
                watch[base + nr] = kinds["BG_WATCH_CLONE3"]

    def wants_syscalls(self) -> bool:
        return True

    def wants_syscall_exits(self) -> bool:
        return False  # a syscall is recorded at entry: that it was made is the fact


class SeccompRecorder:
    """The in-kernel syscall set of one scope. Use :attr:`scope` to choose what
    is recorded, then :meth:`start`.

    Args:
        args: also collect the argument values of :data:`ARG_WATCHES` (and clone3's flags).
    """

    def __init__(self, *, args: bool = False) -> None:
        self.sensors = SensorSet(syscalls=(), extra=[Recorder(args=args)],
                                 ringbuf_bytes=_RINGBUF_BYTES)
        self.obj = self.sensors.obj
        self._nr_max = self.sensors.abi.nr_max
        self._maps: dict[str, Map] = {
            n: self.obj.map(n) for n in ("scope_tgids", "argvals", "members")}
        self.scope: Scope = self.sensors.scope

    def start(self, before_syscalls: Callable[[], None] | None = None) -> None:
        """Attaches the programs: recording starts (for ARMED pids, at their execve).
        `before_syscalls`: see :meth:`SensorSet.start`."""
        self.sensors.start(before_syscalls)

    def live(self) -> int:
        """Processes in the scope's pid set now (ARMED ones included)."""
        return sum(1 for _ in self._maps["scope_tgids"].keys())  # noqa: SIM118

    def prune(self) -> None:
        """Drops pids whose process is gone or a zombie: added to the scope after
        they exited (their exit tracepoint had fired), they would never leave."""
        tgids = self._maps["scope_tgids"]
        for key in list(tgids.keys()):  # noqa: SIM118
            if _gone(int.from_bytes(key, "little")):
                tgids.delete(key)

    def members_full(self) -> int:
        """Processes that could not be remembered as members (the map was full)."""
        return int(self.obj.bss["members_full"])

    def members(self) -> set[int]:
        """Every tgid that was in the pid scope at some point, exited ones too."""
        return {int.from_bytes(k, "little") for k in self._maps["members"].keys()}  # noqa: SIM118

    def recording(self) -> Recording:
        """A snapshot of what was recorded so far."""
        native, compat = native_arches()
        seen = bytes(self.obj.bss.var("seen"))
        lost = bytes(self.obj.bss.var("argvals_lost"))
        rec = Recording(out_of_range=int(self.obj.bss["out_of_range"]))
        for idx, hit in enumerate(seen):
            if not hit:
                continue
            is_compat = idx >= self._nr_max
            arch = compat if is_compat and compat else native
            nr = idx % self._nr_max
            name = syscall_name(nr, compat=is_compat)
            if name.startswith("syscall_"):
                rec.unnamed.setdefault(arch.oci, set()).add(nr)
                continue
            rec.syscalls.setdefault(arch.oci, set()).add(name)
            if lost[idx]:
                rec.args_incomplete.add("clone" if name == "clone3" else name)
        key_type = sensor_btf().struct("bg_argval_key")
        for key, _ in self._maps["argvals"].items():
            k = key_type.from_buffer_copy(key)
            is_compat = k.idx >= self._nr_max
            name = syscall_name(k.idx % self._nr_max, compat=is_compat)
            rec.arg_values.setdefault("clone" if name == "clone3" else name, set()).add(k.value)
        return rec

    def close(self) -> None:
        self.sensors.close()

    def __enter__(self) -> SeccompRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")
