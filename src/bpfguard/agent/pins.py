"""Pinned enforcement: the kernel keeps enforcing when the agent dies.

While an enforce-mode policy is loaded, every link of the agent's sensor
set (the process lifecycle programs, sys_enter/sys_exit, each policy hook's
program) is pinned under ``policies.pin_dir``, in a directory of this
agent's own (``<pid>-<start time>``), beside the policies' counters map and
a ``state`` map that describes the policies. Killed (kill -9, the OOM
killer, a crash), the agent leaves them attached: the kernel goes on
killing, overriding and counting as the policies say. Its events find no
reader; the ring buffer fills and further ones are dropped.

The next agent adopts them. It loads its own policies (its configuration's,
plus those the dead agent had been given through the control socket, read
back from the state), attaches them, and only then removes the dead
agent's pins: enforcement never lapses. The two run side by side from the
new agent's load until it runs (a second or two), and the dead agent's
programs spare the new agent's pid from its first step on, not the dead
one's, which the kernel may have given to another process. Between the
crash and the next start, that reuse is the hole: a process given the dead
agent's pid is spared. The adopted policies keep their counters.

A stop (SIGTERM, `bpfguard agent stop`) destroys the links, which removes
their pins: a stopped agent enforces nothing. With no enforce-mode policy
loaded nothing is pinned (monitor-mode policies only count and report,
which needs the agent).

What a dead agent's pins do not keep doing: following new containers for
pod/container-scoped policies (the agent writes their cgroups as they
start), GetUrl/DnsLookup (the agent makes the requests), and the events.

``bpfguard policy list`` reads the pins when no agent answers.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BpfguardError, ConfigError, KernelError
from ..files import check_trusted_dir, fs_type, remove_tree
from ..loader import PIN_ROOT, Map
from ..policy.engine import PolicyEngine
from ..sensors import SensorSet
from ..sensors.events import Abi
from ..sensors.sensors import sensor_btf
from ..sensors.sensorset import self_start, start_ticks

__all__ = ["POLICY_PINS", "AgentPins", "PinnedAgent", "check_pin_dir", "pinned_agents",
           "previous_agents"]

log = logging.getLogger("bpfguard.agent")

POLICY_PINS = PIN_ROOT / "policies"
_STATE, _STATS, _SCOPE = "state", "stats", "scope"
_ARRAY = 2   # BPF_MAP_TYPE_ARRAY
# an array map's value is kmalloc'ed: the kernel refuses values over
# KMALLOC_MAX_SIZE (4 MiB with 4 KiB pages); compressed policies stay far below
_STATE_MAX = 4 << 20
_FORMAT = 1


@dataclass(frozen=True)
class PinnedAgent:
    """The pins of one agent, read back: its policies as `policy list` shows
    them, with their counters from the pinned counters map."""

    path: Path
    pid: int
    alive: bool
    policies: list[dict[str, Any]]

    def exempt(self, pid: int) -> None:
        """Makes the dead agent's programs spare process `pid` (the agent
        adopting them) instead of the dead agent's pid, which the kernel
        may give to any process meanwhile."""
        try:
            m = Map.from_pin(self.path / _SCOPE)
        except (KernelError, ConfigError) as exc:
            log.warning("%s: its programs' exemption not moved to this agent: %s",
                        self.path, exc)
            return
        try:
            cfg = Abi(sensor_btf()).scope_config()
            old = m.lookup(ctypes.c_uint32(0))
            if not isinstance(old, bytes) or len(old) != ctypes.sizeof(cfg):
                raise ValueError(f"its scope_config holds {len(old or b'')} bytes, this "
                                 f"bpfguard's {ctypes.sizeof(cfg)} (another version's pins)")
            ctypes.memmove(ctypes.addressof(cfg), old, len(old))
            cfg.self_tgid, cfg.self_start = pid, self_start(pid)
            m.update(ctypes.c_uint32(0), cfg)
        except (BpfguardError, ValueError) as exc:
            log.warning("%s: its programs' exemption not moved to this agent: %s",
                        self.path, exc)
        finally:
            m.close()

    def release(self) -> None:
        """Removes the pins: the links go, and with them the programs."""
        remove_tree(self.path, f"policies.pin_dir {self.path}")
        if self.path.exists():   # (remove_tree ignores what it could not remove)
            raise ConfigError(f"{self.path}: could not remove every pin; what is left stays "
                              "attached (remove it with rm -r)")


def _read_state(path: Path) -> dict[str, Any]:
    m = Map.from_pin(path)
    try:
        raw = m.lookup(ctypes.c_uint32(0))
    finally:
        m.close()
    assert isinstance(raw, bytes)
    n = int.from_bytes(raw[:4], "little")
    state: dict[str, Any] = json.loads(zlib.decompress(raw[4:4 + n]))
    return state


def _counters(stats_pin: Path, state: dict[str, Any], slots: list[int]) -> dict[str, int]:
    names: dict[str, int] = state["stats"]
    nstats: int = state["nstats"]
    out = dict.fromkeys(names, 0)
    try:
        stats = Map.from_pin(stats_pin)
    except (KernelError, ConfigError):
        return out
    try:
        for slot in slots:
            for key, i in names.items():
                out[key] += stats.sum_percpu_u64(ctypes.c_uint32(slot * nstats + i))
    finally:
        stats.close()
    return out


def check_pin_dir(pin_dir: Path) -> None:
    """What a start needs of ``policies.pin_dir``: on a BPF filesystem, in
    directories only root controls (ConfigError otherwise)."""
    if not pin_dir.is_absolute():
        raise ConfigError(f"policies.pin_dir {pin_dir}: must be an absolute path")
    fstype = fs_type(pin_dir)
    if fstype != "bpf":
        raise ConfigError(f"policies.pin_dir {pin_dir}: is on a {fstype or 'unknown'} "
                          "filesystem; pins live on a BPF filesystem (mount -t bpf bpf "
                          "/sys/fs/bpf)")
    if pin_dir.exists():
        check_trusted_dir(pin_dir, f"policies.pin_dir {pin_dir}")
        return
    # to be made: what exists of it must lead there unsteered (a sticky
    # /sys/fs/bpf others may write is passed through to a directory root makes)
    parent = pin_dir.parent
    while not parent.exists():
        parent = parent.parent
    check_trusted_dir(parent, f"policies.pin_dir {pin_dir}", shared=True)


def pinned_agents(pin_dir: Path = POLICY_PINS) -> list[PinnedAgent]:
    """Every agent's pins under `pin_dir`, oldest first. ConfigError when
    `pin_dir` is not a directory only root controls. An agent is taken for
    alive while a process of its pid and start time runs in this pid
    namespace: agents run in the host's (as Tetragon's, hostPID)."""
    if not pin_dir.exists():
        return []
    check_trusted_dir(pin_dir, f"policies.pin_dir {pin_dir}")
    out = []
    for entry in pin_dir.iterdir():
        pid_s, _, start_s = entry.name.partition("-")
        if not (entry.is_dir() and pid_s.isdigit() and start_s.isdigit()):
            continue
        pid = int(pid_s)
        alive = start_ticks(pid) == int(start_s)
        policies: list[dict[str, Any]] = []
        try:
            state = _read_state(entry / _STATE)
            for p in state["policies"]:
                # the kernel's counts since this agent loaded it, and what it
                # had counted before (adopted, or disabled meanwhile)
                before = p.pop("counted", {})
                counted = _counters(entry / _STATS, state, p.pop("slots"))
                p["counters"] = {k: v + int(before.get(k, 0)) for k, v in counted.items()}
                policies.append(p)
        except (BpfguardError, OSError, ValueError, KeyError, zlib.error) as exc:
            # links pinned before the first state was: what they enforce is
            # unknown, but they are released all the same
            log.warning("%s: no readable state (%s)", entry, exc)
        out.append(PinnedAgent(entry, pid, alive, policies))
    return sorted(out, key=lambda a: int(a.path.name.partition("-")[2]))


def previous_agents(pin_dir: Path, pid: int) -> list[PinnedAgent]:
    """The pins dead agents left under `pin_dir`, for agent `pid` to adopt;
    their programs spare `pid` from here on. ConfigError if a live agent
    pins there: two agents would each enforce, and take the other's pins
    for a dead one's. Call before loading anything."""
    if not pin_dir.exists():
        return []
    found = [a for a in pinned_agents(pin_dir) if a.pid != pid]
    for a in found:
        if a.alive:
            raise ConfigError(f"policies.pin_dir {pin_dir}: agent pid {a.pid} is running and "
                              "pins its policies there; stop it, or give this agent another "
                              "policies.pin_dir")
    for a in found:
        a.exempt(pid)
    return found


class AgentPins:
    """This agent's pins (see the module docstring).

    Args:
        pin_dir: where every agent pins (``policies.pin_dir``).
        sensors: the agent's sensor set, whose links are pinned.
        engine: its policy engine: what is loaded, in which mode.
        describe: a policy name's origin ("config" or "control") and, for
            the control socket's, its YAML text.
    """

    def __init__(self, pin_dir: Path, sensors: SensorSet, engine: PolicyEngine,
                 describe: Callable[[str], tuple[str, str | None]]) -> None:
        self.pin_dir = pin_dir
        self.sensors = sensors
        self.engine = engine
        self.describe = describe
        pid = os.getpid()
        start = start_ticks(pid)
        if start is None:
            raise ConfigError("policies.pin_dir: /proc/self/stat is not readable; the pins "
                              "are named by the agent's pid and start time")
        self.path = pin_dir / f"{pid}-{start}"
        self._seq = 0
        self.pinned = False

    def _wanted(self) -> bool:
        return any(lp.enabled and lp.mode == "enforce" for lp in self.engine.policies.values())

    def sync(self) -> None:
        """Pins what is attached while an enforce-mode policy is loaded (and
        rewrites the state), unpins all when none is. Call after every
        change to the policies."""
        if not self._wanted():
            self.unpin()
            return
        if not self.pinned:
            check_pin_dir(self.pin_dir)
            check_trusted_dir(self.pin_dir, f"policies.pin_dir {self.pin_dir}", create=True)
            check_trusted_dir(self.path, f"policies.pin_dir {self.path}", create=True)
            self.pinned = True
            self.engine.obj.map("pol_stats").pin(self.path / _STATS)
            self.engine.obj.map("scope_config").pin(self.path / _SCOPE)
        for link in self.sensors.links():
            if link.pinned is None:
                link.pin(self.path / f"link-{self._seq}")
                self._seq += 1
        self._write_state()

    def _write_state(self) -> None:
        policies = []
        for p in self.engine.list():
            origin, text = self.describe(p["name"])
            lp = self.engine.policies[p["name"]]
            policies.append({k: v for k, v in p.items() if k not in ("counters", "agent_actions")}
                            | {"origin": origin, "text": text, "slots": list(lp.slots),
                               "counted": dict(lp.counted)})
        blob = zlib.compress(json.dumps({
            "format": _FORMAT, "nstats": self.engine.nstats, "stats": self.engine.stat_index,
            "policies": policies}).encode())
        if len(blob) + 4 > _STATE_MAX:
            raise ConfigError(f"the policies' state for {self.path} is {len(blob)} bytes "
                              f"compressed; at most {_STATE_MAX - 4} fit in a pinned map")
        size = (len(blob) + 4 + 7) & ~7
        m = Map.create("bg_pin_state", _ARRAY, 4, size, 1)
        try:
            m.update(ctypes.c_uint32(0), len(blob).to_bytes(4, "little") + blob
                     + bytes(size - 4 - len(blob)))
            # pinned beside, then renamed over the old one: a reader (or the
            # next agent) sees the old state or the new, never none
            tmp = self.path / f"{_STATE}-new"   # (bpffs refuses names with a dot)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            m.pin(tmp)
            tmp.rename(self.path / _STATE)
        finally:
            m.close()

    def unpin(self) -> None:
        """Removes this agent's pins (its links stay attached while it runs)."""
        if not self.pinned:
            return
        for link in self.sensors.links():
            try:
                link.unpin()
            except KernelError as exc:
                log.warning("%s", exc)
        self._seq = 0
        remove_tree(self.path, f"policies.pin_dir {self.path}")
        self.pinned = False

    @staticmethod
    def adopt(previous: list[PinnedAgent]) -> None:
        """After this agent's own programs are attached (and pinned): the
        dead agents' pins go."""
        for a in previous:
            try:
                a.release()
            except (BpfguardError, OSError) as exc:
                log.error("the pins agent pid %d left could not all be removed, and what is "
                          "left enforces beside this agent: %s", a.pid, exc)
                continue
            log.info("adopted the policies agent pid %d pinned (%s): %s", a.pid, a.path,
                     ", ".join(p["name"] for p in a.policies) or "none readable")
