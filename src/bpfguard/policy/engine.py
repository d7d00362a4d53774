"""The policy engine: TracingPolicies compiled into the kernel, live.

A :class:`PolicyEngine` is the policy part of the sensor object
(``bpf/sensor.bpf.c`` over ``bpf/lib/policy.bpf.h``): it shares the set's
one sys_enter/sys_exit pair (serving every syscall hook) and lifecycle
programs (the executable tracker behind matchBinaries), and loads one small
copy of the object per tracepoint, kernel-function, LSM or uprobe hook.
Adding a policy validates and compiles it completely, then writes sets,
selectors and hooks, loads its hook copies, and only
then routes syscalls to it; any failure undoes what was written. Deleting
a policy unroutes it, detaches its copies and clears its map entries; the
set keeps the syscall programs attached only while some part wants them.

Example::

    with SensorSet(syscalls=(), extra=[PolicyEngine()]) as sensors:
        engine = sensors.extra[0]
        engine.add(load_policy("openat.yaml"))
        sensors.start()
        for ev in sensors.read():
            ...   # PolicyEvent among ExecEvent/ExitEvent
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import logging
import os
import re
import resource
import secrets
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from ..containers import ContainerCache
from ..errors import BpfguardError, ConfigError, KernelError
from ..loader import BpfObject, Link
from ..loader.object import BPF_EXIST
from ..probe import Features
from ..proctable import exec_name
from ..rules.model import Problem
from ..sensors.events import boot_to_wall_ns
from ..sensors.selectors import SelectorSets, encode_selector
from ..sensors.sensors import Sensor, sensor_btf
from ..sensors.sensorset import cgroup2_problem
from ..symbols import KernelSymbols, StackFrame, UserSymbols
from .agent_actions import AgentActions
from .cel import CEL_OPS
from .compiler import (
    ACT,
    BIN_OP,
    CAP_TYPE,
    HOOK_KIND,
    LIMITS,
    NS_KIND,
    NS_PROC,
    OP,
    PID_FLAG,
    PT,
    RATE_SCOPE,
    STACK,
    CompiledArg,
    CompiledHook,
    CompiledPolicy,
    compile_policy,
    string_hash,
)
from .digest import matching_digest
from .events import Enforcement, PolicyArg, PolicyEvent
from .loader import PolicyCode, PolicyError, render_problem
from .model import LsmHook, Policy, Usdt, requirements
from .scope import PolicyScope, ScopeTracker, scope_of

__all__ = ["LoadedPolicy", "PolicyEngine"]

log = logging.getLogger("bpfguard.policy")

# counter names for `bpfguard policy list`, by enum bg_pol_stat name
_STAT_NAMES = {"POSTED": "posted", "ACTED": "actions", "WOULD": "would_act",
               "RATE_LIMITED": "rate_limited", "NO_RETURN": "no_return",
               "SIGNALS": "signals", "OVERRIDES": "overrides", "WOULD_SIGNAL": "would_signal",
               "WOULD_OVERRIDE": "would_override", "NOPOST": "nopost",
               "NOTIFIED": "notify_enforcer", "WOULD_NOTIFY": "would_notify_enforcer",
               "SETS": "sets", "WOULD_SET": "would_set", "SET_FAILED": "set_failed"}
# programs loaded only in per-hook copies of the object
_IMA_PROGRAMS = ("bg_pol_ima_bprm_a", "bg_pol_ima_bprm_b", "bg_pol_ima_file_a",
                 "bg_pol_ima_file_b")
_TRAMPOLINE_PROGRAMS = ("bg_pol_fentry", "bg_pol_fexit", "bg_pol_fmod_ret", "bg_pol_lsm",
                        "bg_pol_enforce", *_IMA_PROGRAMS)
# what really happens for each program of an Override hook
_OVERRIDE_BACKEND = {"bg_pol_fmod_ret": "fmod_ret", "bg_pol_lsm": "bpf_lsm"}
_BIN_OP_NAME = {v: k for k, v in BIN_OP.items()}
# digest bytes of the kernel's IMA hash algorithms (enum hash_algo, lowercased)
_DIGEST_SIZE = {"md4": 16, "md5": 16, "sha1": 20, "ripe_md_160": 20, "sha256": 32,
                "sha384": 48, "sha512": 64, "sha224": 28, "ripe_md_128": 16,
                "ripe_md_256": 32, "ripe_md_320": 40, "wp_256": 32, "wp_384": 48,
                "wp_512": 64, "tgr_128": 16, "tgr_160": 20, "tgr_192": 24, "sm3_256": 32,
                "streebog_256": 32, "streebog_512": 64}
# maps each hook copy keeps for itself (besides global data): per-CPU scratch
_PRIVATE_MAPS = ("scratch", "pol_lpm_keys")
_TETRAGON_ACTION = {"Sigkill": "KPROBE_ACTION_SIGKILL", "Signal": "KPROBE_ACTION_SIGNAL",
                    "Override": "KPROBE_ACTION_OVERRIDE", "GetUrl": "KPROBE_ACTION_GETURL",
                    "DnsLookup": "KPROBE_ACTION_DNSLOOKUP",
                    "NotifyEnforcer": "KPROBE_ACTION_NOTIFYENFORCER", "Set": "KPROBE_ACTION_SET"}
_FAMILY = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6"}
# argument types whose value is a path the kernel walked (enum bg_pol_type)
_PATH_TYPES = ("FD", "FILE", "PATH", "BINPRM", "DENTRY")


class _NoOverlap(ConfigError):
    """A new version does not fit beside the one it replaces (replace())."""


@dataclass
class LoadedPolicy:
    """A policy in the kernel: its hook slots, sets and tracepoint copies."""

    policy: Policy
    compiled: CompiledPolicy
    source: str
    mode: Literal["enforce", "monitor"]
    slots: list[int] = field(default_factory=list)
    copies: list[BpfObject] = field(default_factory=list)
    cgroup: int = 0
    cgroup_path: str | None = None    # what `add` was given, to load it again (enable)
    enabled: bool = True              # False: disabled, kept without hooks
    id: int = 0                       # in load order, as Tetragon numbers policies
    kernel_id: int = 0                # this load's, which its hooks and enforcers share
    counted: dict[str, int] = field(default_factory=dict)  # counters before a disable
    scope: PolicyScope | None = None  # its pods/containers; None: host and all containers
    scope_id: int = 0                 # its set in pol_scope (0: unscoped)
    # its followChildren slots, by (hook slot, selector, "bin" or "pbin")
    follow: dict[tuple[int, int, str], int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.policy.name


class PolicyEngine(Sensor):
    """TracingPolicies evaluated in the kernel (see the module docstring).

    Args:
        features: what the kernel can do (the probe); decides which hooks
            and actions can be served, and the messages when not.
        seed: exact-string hash key; random by default.
    """

    seed: int
    part = "policy"

    def __init__(self, *, features: Features | None = None, seed: int | None = None) -> None:
        super().__init__()
        self.features = features
        self.seed = seed if seed is not None else secrets.randbits(64)
        self.policies: dict[str, LoadedPolicy] = {}
        self._slots: dict[int, tuple[LoadedPolicy, CompiledHook]] = {}
        self._gens: dict[int, int] = {}  # slot -> generation of the hook in it
        self._gen = 0
        self._free_follow = list(range(LIMITS.follow))  # reused oldest first
        self._lock = threading.RLock()
        self.agent_actions = AgentActions()  # GetUrl, DnsLookup
        self._tracking = False  # a policy tracks sockets: events look their owners up
        self._replacing: LoadedPolicy | None = None  # the old version, during replace()
        self._has_syscall_hooks = False  # kept by _write_routes
        self._routed: set[int] = set()  # syscall indexes with hooks (_write_routes)
        btf = sensor_btf()
        self._t = {n: btf.struct(n) for n in (
            "bg_pol_hook", "bg_pol_selector", "bg_pol_route", "bg_pol_int_key",
            "bg_pol_str_key", "bg_pol_lpm_key", "bg_pol_addr_key", "bg_pol_exe", "bg_pol_follow",
            "bg_policy_event", "bg_pol_cred", "bg_pol_scope_key", "bg_pol_sock_owner")}
        # which containers each scoped policy applies to (follow_containers)
        self.scopes = ScopeTracker(self._write_scope, lambda: ())
        self._cred_size = ctypes.sizeof(self._t["bg_pol_cred"])
        self._nr_max = self.abi.nr_max
        self._hash_algos: dict[int, str] | None = None
        self._ksyms = KernelSymbols()  # read by the first policy that takes kernel stacks
        self._loaded = 0  # policies loaded so far: their ids
        self._usyms = UserSymbols()
        self._event_type = self.abi.event_type["POLICY"]
        self._check_abi()

    def _check_abi(self) -> None:
        """The compiler's copies of the engine's enums must equal the object's
        (one source of truth: the C); the engine's own come from BTF."""
        btf = sensor_btf()

        def enum(name: str, prefix: str) -> dict[str, int]:
            return {k.removeprefix(prefix): v for k, v in btf.enum(name).items()}

        for name, prefix, table in (
                ("bg_pol_hook_kind", "BG_HOOK_", HOOK_KIND), ("bg_pol_type", "BG_PT_", PT),
                ("bg_pol_op", "BG_OP_", OP), ("bg_pol_action", "BG_ACT_", ACT),
                ("bg_pol_pid_flags", "BG_PID_", PID_FLAG), ("bg_pol_str_op", "BG_BIN_", BIN_OP),
                ("bg_pol_ns_kind", "BG_NS_", NS_KIND), ("bg_pol_cap_type", "BG_CAP_", CAP_TYPE),
                ("bg_pol_rate_scope", "BG_RATE_", RATE_SCOPE),
                ("bg_pol_stack", "BG_STACK_", STACK),
                ("bg_pol_cel_code", "BG_CEL_", CEL_OPS)):
            # the compiler keys some tables by Tetragon's spelling: NotIn, PidForChildren
            spelled = {re.sub(r"(?<=[a-z])(?=[A-Z])", "_", k).upper(): v for k, v in table.items()}
            if enum(name, prefix) != spelled:
                raise BpfguardError(f"policy compiler and {name} in sensor.bpf.o disagree; "
                                    "rebuild the BPF objects (make -C bpf)")
        cel_t, area_t = btf.struct("bg_pol_cel"), btf.struct("bg_pol_area")
        for what, compiler_has, object_has in (
                ("BG_POL_CEL_OPS", LIMITS.cel_ops, cel_t.ops.size // ctypes.sizeof(
                    btf.struct("bg_pol_cel_op"))),
                ("BG_POL_CEL_STACK", LIMITS.cel_stack, area_t.cel.size // 8)):
            if compiler_has != object_has:
                raise BpfguardError(f"policy compiler ({compiler_has}) and {what} in "
                                    f"sensor.bpf.o ({object_has}) disagree; rebuild the BPF "
                                    "objects (make -C bpf)")
        self._mode = enum("bg_pol_mode", "BG_MODE_")
        self._vflags = enum("bg_pol_value_flags", "BG_PV_")
        self._set_result = enum("bg_pol_set_result", "BG_SET_")
        self._arg_flags = enum("bg_pol_arg_flags", "BG_PA_")
        stats = enum("bg_pol_stat", "BG_PST_")
        self._nstats = stats.pop("MAX")
        self._stats = {_STAT_NAMES[k]: v for k, v in stats.items()}

    # -- Sensor --

    def configure(self) -> None:
        self.obj.rodata["targ_policy"] = 1  # the lifecycle programs track executables

    def after_load(self) -> None:
        progs = self.obj.map("pol_cel").max_entries
        if progs != LIMITS.cel_progs:
            raise BpfguardError(f"policy compiler ({LIMITS.cel_progs}) and BG_POL_CEL_PROGS in "
                                f"sensor.bpf.o ({progs}) disagree; rebuild the BPF objects "
                                "(make -C bpf)")
        self._seed_executables()

    def links(self) -> list[Link]:
        with self._lock:
            return [link for lp in self.policies.values() for c in lp.copies
                    for link in c.links]

    def wants_syscalls(self) -> bool:
        # a flag, not a walk under self._lock: the set asks while holding its
        # links lock, and the engine calls the set while holding its own
        return self._has_syscall_hooks

    def _seed_executables(self) -> None:
        """pol_exe for processes that exec'd before the engine: from /proc,
        with the namespaces and capabilities they have now (what
        matchNamespaceChanges/matchCapabilityChanges compare with)."""
        exe_map = self.obj.map("pol_exe")
        for pid, (_, exe) in _processes().items():
            e = self._exe_entry(os.fsencode(exe))
            for kind, k in NS_KIND.items():
                with contextlib.suppress(OSError):
                    e.ns[k] = os.stat(f"/proc/{pid}/ns/{NS_PROC[kind]}").st_ino
            with contextlib.suppress(OSError, ValueError):
                status = dict(line.split(":", 1) for line in
                              Path(f"/proc/{pid}/status").read_text().splitlines()
                              if ":" in line)
                for name, t in (("CapEff", "Effective"), ("CapInh", "Inheritable"),
                                ("CapPrm", "Permitted")):
                    e.caps[CAP_TYPE[t]] = int(status[name], 16)
            exe_map.update(ctypes.c_uint32(pid), e)

    def _exe_entry(self, path: bytes) -> Any:
        e = self._t["bg_pol_exe"]()
        e.len = len(path)
        e.hash = string_hash(self.seed, path)
        n = min(len(path), LIMITS.prefix)
        ctypes.memmove(e.head, path[:n], n)
        tail = path[::-1][:n]
        ctypes.memmove(e.tail, tail, n)
        return e

    # -- adding and removing policies --

    def add(self, policy: Policy, *, source: str = "", cgroup: str | None = None,
            mode: Literal["enforce", "monitor"] | None = None) -> LoadedPolicy:
        """Validate, compile and load `policy`; all or nothing.

        Raises PolicyError (hooks or actions this kernel or bpfguard cannot
        serve, with file:line) or ConfigError (name taken, no room).
        `cgroup` limits the policy to a cgroup v2 directory and its
        descendants (a container outside Kubernetes).
        """
        with self._lock:
            if policy.name in self.policies:
                raise ConfigError(f"a policy named {policy.name!r} is loaded already; delete "
                                  "it first (bpfguard policy delete NAME)")
            lacking = self._missing_features(policy)
            allocated: list[int] = []

            def next_set() -> int:
                allocated.append(self._sets.new_set())
                return allocated[-1]

            try:
                try:
                    compiled = compile_policy(policy, nr_max=self._nr_max, seed=self.seed,
                                              next_set=next_set, features=self.features)
                except PolicyError as exc:  # every problem at once, in file order
                    raise PolicyError(exc.name, sorted(
                        (*lacking, *exc.problems),
                        key=lambda p: (p.context.line, p.context.column))) from None
                if lacking:
                    raise PolicyError(policy.context.file, lacking)
                for w in compiled.warnings:  # loads, but may not do what the author meant
                    log.warning("%s", render_problem(w))
                if any(s.stacks & STACK["KERNEL"] for h in compiled.hooks for s in h.selectors):
                    # before the events: kallsyms is long, and the first
                    # event's reader should not be the one to wait for it
                    self._ksyms.load()
                lp = self._add(policy, compiled, source, cgroup, mode or policy.mode)
                self._tracking = self._tracks_sockets()
                return lp
            except BaseException:
                if policy.name not in self.policies:  # (ids _unload gave back stay free)
                    self._sets.release(allocated)
                raise

    @property
    def _sets(self) -> SelectorSets:
        """The object's sets, shared with the rules pushdown."""
        return self._set.selector_sets

    def _add(self, policy: Policy, compiled: CompiledPolicy, source: str,
             cgroup: str | None, mode: Literal["enforce", "monitor"]) -> LoadedPolicy:
        with self._lock:
            free = [s for s in range(LIMITS.hooks) if s not in self._slots]
            if len(compiled.hooks) > len(free):
                raise (ConfigError if self._replacing is None else _NoOverlap)(
                    f"{policy.name}: {len(compiled.hooks)} hooks, but only {len(free)} of "
                    f"{LIMITS.hooks} hook slots are free")
            self._check_routes(policy, compiled, self._replacing)
            lp = LoadedPolicy(policy, compiled, source or policy.context.file, mode,
                              cgroup_path=cgroup)
            self._loaded += 1
            lp.id = lp.kernel_id = self._loaded  # (enable keeps the id, not the kernel's)
            lp.scope = scope_of(policy)
            if lp.scope is not None and free:
                lp.scope_id = free[0] + 1   # its first slot's: unique while it is loaded
            if cgroup is not None:
                why = cgroup2_problem(cgroup)
                try:
                    if why is None:
                        lp.cgroup = os.stat(cgroup).st_ino
                except OSError as exc:
                    why = exc.strerror
                if why is not None:
                    raise ConfigError(f"cgroup {cgroup}: {why}")
            try:
                self._sets.write(compiled.sets)
                for h in compiled.hooks:
                    slot = free.pop(0)
                    lp.slots.append(slot)
                    self._slots[slot] = (lp, h)
                    self._gen = self._gen % 0xFFFF + 1
                    self._gens[slot] = self._gen
                    self._write_hook(slot, lp, h)
                    if h.kind != "SYSCALL":
                        lp.copies.append(self._load_copy(slot, h))
                self.policies[policy.name] = lp
                self._write_routes()
                if lp.scope is not None and lp.scope_id:
                    self.scopes.add(lp.scope_id, lp.scope)
            except BaseException:
                self.policies.pop(policy.name, None)
                self._unload(lp)
                self._write_routes()
                raise
            return lp

    def _check_routes(self, policy: Policy, compiled: CompiledPolicy,
                      replacing: LoadedPolicy | None = None) -> None:
        """Room on every syscall the policy hooks, counting its own hooks too;
        and one return: true hook per syscall (the kernel stashes one pending
        event per thread), but for the version it is `replacing`, whose hooks
        overlap its own for the moment of the swap."""
        users: dict[int, int] = {}
        returns: dict[int, str] = {}
        fail = ConfigError if replacing is None else _NoOverlap
        for lp_, other in self._slots.values():
            for idx in other.syscalls:
                users[idx] = users.get(idx, 0) + 1
                if other.ret:
                    returns[idx] = lp_.name
        for h in compiled.hooks:
            for idx in h.syscalls:
                users[idx] = users.get(idx, 0) + 1
                name = _syscall_fn(idx, self._nr_max)
                if users[idx] > LIMITS.syscall_hooks:
                    raise fail(f"{policy.name}: more than {LIMITS.syscall_hooks} hooks "
                                      f"on {name}, all policies together; the engine routes "
                                      f"at most {LIMITS.syscall_hooks} per syscall")
                if h.ret:
                    if idx in returns:
                        raise fail(
                            f"{policy.name}: {name} already has a return: true hook (policy "
                            f"{returns[idx]!r}); the engine keeps one pending event per thread,"
                            " so one return hook per syscall")
                    returns[idx] = policy.name

    def _missing_features(self, policy: Policy) -> list[Problem]:
        """What the policy's actions need from this kernel and it lacks
        (a hook's own program type is the compiler's to report)."""
        if self.features is None:
            return []
        return [Problem(PolicyCode.UNAVAILABLE, r.message, r.context)
                for r in requirements(policy, self.features)
                if not r.available and r.purpose != "attach"]

    def replace(self, policy: Policy, *, source: str = "", cgroup: str | None = None,
                mode: Literal["enforce", "monitor"] | None = None) -> LoadedPolicy:
        """Load `policy` in place of the loaded policy of its name, make
        before break: the new version's hooks are attached before the old
        one's are detached, so its enforcement never lapses (for that moment
        an event may be reported by both). It keeps the old one's id and
        counters. All or nothing: a new version that does not load leaves
        the old one as it was. Where both cannot be loaded at once (hook
        slots, hooks on one syscall, a return: true hook on the same
        syscall: the kernel keeps one pending return per thread), the old
        one goes first, with a warning that the swap had a gap."""
        with self._lock:
            old = self.policies.pop(policy.name)  # (KeyError: none of that name)
            self._replacing = old if old.enabled else None
            try:
                lp = self.add(policy, source=source, cgroup=cgroup, mode=mode)
            except _NoOverlap as exc:
                self._replacing = None
                log.warning("policy %s: replaced with a gap, the old version first: %s",
                            policy.name, exc)
                return self._replace_with_gap(old, policy, source, cgroup, mode)
            except BaseException:
                self.policies[policy.name] = old
                raise
            finally:
                self._replacing = None
            counted = self.counters_of(old)
            try:
                self._write_routes()
            finally:
                self._unload(old)
            lp.id, lp.counted = old.id, counted
            self._tracking = self._tracks_sockets()
            return lp

    def _replace_with_gap(self, old: LoadedPolicy, policy: Policy, source: str,
                          cgroup: str | None, mode: Literal["enforce", "monitor"] | None
                          ) -> LoadedPolicy:
        """replace() where both versions do not fit: the old one out, then
        the new one in; if that fails, the old one again."""
        counted = self.counters_of(old)
        self._write_routes()
        self._unload(old)
        try:
            lp = self.add(policy, source=source, cgroup=cgroup, mode=mode)
        except BaseException:
            try:
                back = self.add(old.policy, source=old.source, cgroup=old.cgroup_path,
                                mode=old.mode)
                back.id, back.counted = old.id, counted
            except BpfguardError as exc:  # (it loaded before: not expected)
                log.error("policy %s could not be restored: %s", policy.name, exc)
            raise
        lp.id, lp.counted = old.id, counted
        self._tracking = self._tracks_sockets()
        return lp

    def delete(self, name: str) -> None:
        """Detach and remove the policy called `name` (KeyError if none)."""
        with self._lock:
            lp = self.policies.pop(name)
            self._write_routes()
            self._unload(lp)  # (a disabled one has nothing left to give back)
            self._tracking = self._tracks_sockets()

    def disable(self, name: str) -> None:
        """Detach a policy's hooks but keep it, its mode and its counters,
        to enable later (Tetragon's `tetra tracingpolicy disable`)."""
        with self._lock:
            lp = self.policies[name]
            if not lp.enabled:
                raise ConfigError(f"policy {name!r} is disabled already")
            lp.counted = self.counters(name)
            del self.policies[name]  # its syscall routes go first, as in delete
            self._write_routes()
            self._unload(lp)
            # what _unload gave back is no longer the policy's (delete must not
            # give it back again: another policy may hold it by then)
            lp.compiled.set_ids.clear()
            lp.scope_id = 0
            lp.enabled = False
            self.policies[name] = lp
            self._tracking = self._tracks_sockets()

    def enable(self, name: str) -> None:
        """Load a disabled policy again, compiled afresh for this kernel;
        all or nothing (a failure leaves it disabled)."""
        with self._lock:
            old = self.policies[name]
            if old.enabled:
                raise ConfigError(f"policy {name!r} is enabled already")
            del self.policies[name]
            try:  # in the mode it had: its hooks must never act in another
                lp = self.add(old.policy, source=old.source, cgroup=old.cgroup_path,
                              mode=old.mode)
            except BaseException:
                self.policies[name] = old
                raise
            lp.id, lp.counted = old.id, old.counted

    def set_mode(self, name: str, mode: str) -> None:
        """Switch a loaded policy between enforce and monitor, live."""
        if mode not in ("enforce", "monitor"):
            raise ValueError(f"mode must be enforce or monitor, not {mode!r}")
        with self._lock:
            lp = self.policies[name]
            lp.mode = mode  # type: ignore[assignment]
            for slot in lp.slots:  # (none while disabled: enable writes the mode)
                self._write_hook(slot, lp, self._slots[slot][1])

    @property
    def nstats(self) -> int:
        """Counters per hook slot in pol_stats (enum bg_pol_stat)."""
        return self._nstats

    @property
    def stat_index(self) -> dict[str, int]:
        """Each counter's index within a slot's."""
        return dict(self._stats)

    def counters(self, name: str) -> dict[str, int]:
        """Per-policy totals: posted, actions and would_act (events acted on,
        or that would have been in monitor mode), rate_limited, no_return,
        and per action signals, overrides, would_signal, would_override,
        nopost."""
        return self.counters_of(self.policies[name])

    def counters_of(self, lp: LoadedPolicy) -> dict[str, int]:
        """:meth:`counters` of a loaded policy object."""
        stats = self.obj.map("pol_stats")
        out = dict.fromkeys(self._stats, 0) | lp.counted
        for slot in lp.slots:
            for key, i in self._stats.items():
                out[key] += stats.sum_percpu_u64(ctypes.c_uint32(slot * self._nstats + i))
        return out

    def list(self) -> list[dict[str, Any]]:
        """Loaded policies with their counters, for `bpfguard policy list`."""
        with self._lock:
            return [{"id": lp.id, "name": lp.name, "namespace": lp.policy.namespace,
                     "state": "enabled" if lp.enabled else "disabled", "mode": lp.mode,
                     "hooks": len(lp.slots), "sensors": self._sensors(lp),
                     "filter_id": lp.scope_id, "scope": self.scope_text(lp),
                     "file": lp.source, "counters": self.counters(lp.name),
                     "agent_actions": self.agent_actions.for_policy(lp.name)}
                    for lp in self.policies.values()]

    @staticmethod
    def _sensors(lp: LoadedPolicy) -> tuple[str, ...]:
        """Tetragon's names for the sensors the policy's hooks need."""
        p = lp.policy
        kinds = (("generic_kprobe", p.kprobes or p.fentries), ("generic_tracepoint", p.tracepoints),
                 ("generic_lsm", p.lsmhooks), ("generic_uprobe", p.uprobes),
                 ("generic_usdt", p.usdts))
        return tuple(name for name, hooks in kinds if hooks)

    def scope_text(self, lp: LoadedPolicy) -> str:
        """Where the policy applies, for `bpfguard policy list`."""
        if lp.scope is None:
            where = "host and every container"
        elif not lp.enabled:
            where = lp.scope.describe()
        else:
            n = len(self.scopes.members(lp.scope_id))
            where = f"{lp.scope.describe()} ({n} running)"
        return where + (f"; cgroup {lp.cgroup}" if lp.cgroup else "")

    def follow_containers(self, cache: ContainerCache) -> None:
        """Scoped policies apply to the containers `cache` reports, from now on."""
        self.scopes = ScopeTracker(self._write_scope, cache.containers)
        cache.on_change = self.scopes.container_changed
        with self._lock:
            for lp in self.policies.values():
                if lp.scope is not None and lp.scope_id:
                    self.scopes.add(lp.scope_id, lp.scope)

    def _write_scope(self, scope_id: int, cgroup_id: int, add: bool) -> bool:
        """Adds or removes a (scope, cgroup) pair; False if the set is full."""
        key = self._t["bg_pol_scope_key"]()
        key.scope, key.cgroup = scope_id, cgroup_id
        m = self.obj.map("pol_scope")
        if add:
            try:
                m.update(key, ctypes.c_uint8(1))
            except KernelError as exc:
                log.error("policy scope %d: cgroup %d not added (%s; pol_scope holds %d "
                          "entries)", scope_id, cgroup_id, exc, m.max_entries)
                return False
        else:
            m.delete(key)
        return True

    def close(self) -> None:
        self.agent_actions.close()
        with self._lock:
            for lp in list(self.policies.values()):
                for c in lp.copies:
                    c.close()
            self.policies.clear()

    # -- map writing --

    def _follow_slot(self, lp: LoadedPolicy, h: CompiledHook, key: tuple[int, int, str],
                     op: int, set_id: int, values: tuple[str, ...]) -> int:
        """The followChildren slot of a filter, installed on first use: the
        kernel marks each exec that passes it, the mark passes to children at
        fork, and processes already running are marked here from /proc
        (themselves or a live ancestor)."""
        if key in lp.follow:
            return lp.follow[key]
        if not self._free_follow:
            raise PolicyError(h.hook.context.file, [Problem(
                PolicyCode.LIMIT, f"{h.hook.name}: more than {LIMITS.follow} followChildren "
                "filters loaded at once", h.hook.context)])
        slot = self._free_follow.pop(0)
        lp.follow[key] = slot
        self._clear_follow_bits(slot)  # a fork racing the last clear may have kept some
        positive = _BIN_OP_NAME[op].removeprefix("Not")
        f = self._t["bg_pol_follow"]()
        f.op, f.set = BIN_OP[positive], set_id
        self.obj.map("pol_follow").update(ctypes.c_uint32(slot), f)

        def passes(exe: str) -> bool:
            if positive == "In":
                return exe in values
            if positive == "Prefix":
                return any(exe.startswith(v) for v in values)
            return any(exe.endswith(v) for v in values)

        procs = _processes()
        bits = self.obj.map("pol_follow_bits")
        for pid in procs:
            seen, p = set(), pid
            while p in procs and p not in seen:
                seen.add(p)
                if passes(procs[p][1]):
                    old = bits.lookup(ctypes.c_uint32(pid))
                    mask = int.from_bytes(old, "little") if isinstance(old, bytes) else 0
                    bits.update(ctypes.c_uint32(pid), ctypes.c_uint64(mask | 1 << slot))
                    if not os.path.exists(f"/proc/{pid}"):  # gone meanwhile: no stale entry
                        bits.delete(ctypes.c_uint32(pid))
                    break
                p = procs[p][0]
        return slot

    def _clear_follow_bits(self, slot: int) -> None:
        # read-modify-write: a bit of another slot set by an exec in between is
        # lost for that process; its next exec sets it again
        bits = self.obj.map("pol_follow_bits")
        for key, val in list(bits.items()):
            assert isinstance(val, bytes)
            mask = int.from_bytes(val, "little")
            if mask >> slot & 1:
                with contextlib.suppress(BpfguardError):  # the process exited meanwhile
                    bits.update(key, ctypes.c_uint64(mask & ~(1 << slot)), BPF_EXIST)

    def _drop_follow(self, lp: LoadedPolicy) -> None:
        for slot in lp.follow.values():
            self.obj.map("pol_follow").update(ctypes.c_uint32(slot), self._t["bg_pol_follow"]())
            self._clear_follow_bits(slot)
            self._free_follow.append(slot)
        lp.follow.clear()

    def _write_hook(self, slot: int, lp: LoadedPolicy, h: CompiledHook) -> None:
        t = self._t
        enc = t["bg_pol_hook"]()
        enc.kind = HOOK_KIND[h.kind]
        enc.nargs = len(h.args)
        enc.nsel = len(h.selectors)
        enc.ret = int(h.ret)
        enc.ret_sock = ACT[{"TrackSock": "TRACK_SOCK", "UntrackSock": "UNTRACK_SOCK"}[
            h.ret_sock]] if h.ret_sock else 0
        enc.mode = self._mode[lp.mode.upper()]
        enc.gen = self._gens[slot]
        enc.cgroup = lp.cgroup
        enc.scope = lp.scope_id
        enc.policy = lp.kernel_id
        for i, a in enumerate(h.args):
            self._encode_arg(enc.args[i], a)
        if h.retarg is not None:
            self._encode_arg(enc.retarg, h.retarg)
        sels = self.obj.map("pol_selectors")
        for i, s in enumerate(h.selectors):
            e = encode_selector(t["bg_pol_selector"], s, OP)
            if s.bin_follow is not None:
                e.bin_follow = 1 + self._follow_slot(lp, h, (slot, i, "bin"), s.bin_op,
                                                     s.bin_set, s.bin_follow)
            if s.pbin_follow is not None:
                e.pbin_follow = 1 + self._follow_slot(lp, h, (slot, i, "pbin"), s.pbin_op,
                                                      s.pbin_set, s.pbin_follow)
            sels.update(ctypes.c_uint32(slot * LIMITS.selectors + i), e)
        self.obj.map("pol_hooks").update(ctypes.c_uint32(slot), enc)

    def _write_routes(self) -> None:
        """Routes and interest bitmaps from the loaded syscall hooks; programs
        attach when the first syscall hook arrives and detach with the last."""
        routes: dict[int, list[int]] = {}
        ret_nrs: set[int] = set()
        # (a version being replaced stays routed until its successor is)
        for lp in [*self.policies.values(), *filter(None, [self._replacing])]:
            for slot in lp.slots:
                h = self._slots[slot][1]
                for idx in h.syscalls:
                    routes.setdefault(idx, []).append(slot)
                    if h.ret:
                        ret_nrs.add(idx % self._nr_max)
        for idx in set(routes) | self._routed:  # rows that have, or had, hooks
            r = self._t["bg_pol_route"]()
            slots = routes.get(idx, [])
            r.n = len(slots)
            for i, s in enumerate(slots):
                r.hooks[i] = s
            self._set.routes.set_hooks(idx, r)
        self._routed = set(routes)
        for var, nrs in (("pol_interest", {i % self._nr_max for i in routes}),
                         ("pol_ret_interest", ret_nrs)):
            words = self.obj.bss.var(var)
            bits = [0] * len(words)
            for nr in nrs:
                bits[nr // 64] |= 1 << (nr % 64)
            for i, w in enumerate(bits):
                words[i] = w
        self._has_syscall_hooks = bool(routes)
        self._set.sync_syscall_programs()

    def _load_copy(self, slot: int, h: CompiledHook) -> BpfObject:
        """A copy of the object serving one tracepoint, kernel function or LSM
        hook, sharing every map."""
        copy = BpfObject.open(self.obj.path)   # the variant of the set's own object
        try:
            want = (h.programs if h.kind in ("FUNC", "UPROBE", "ENFORCER") else
                    ("bg_pol_raw_tp",) if h.kind == "RAW_TP" else ("bg_pol_tp",))
            for p in copy.programs:
                p.autoload = p.name in want
                if p.autoload and p.name in _TRAMPOLINE_PROGRAMS:
                    p.set_attach_target(h.function_name)
            for name in copy.map_names:
                if "." in name or name in _PRIVATE_MAPS:  # global data: obj.rodata, obj.bss
                    continue
                copy.reuse_map(name, self.obj.map(name).fd)
            copy.rodata["targ_hook"] = slot
            copy.rodata["targ_seed"] = self.seed
            copy.rodata["targ_nargs"] = h.nparams
            copy.rodata["targ_ima"] = int(any(p in _IMA_PROGRAMS for p in want))
            copy.rodata["targ_write_user"] = int(any(s.set_arg for s in h.selectors))
            copy.load()
            for name in want:
                prog = copy.program(name)
                if h.kind == "RAW_TP":
                    prog.attach_raw_tracepoint(h.event)
                elif h.kind == "TRACEPOINT":
                    prog.attach_tracepoint(h.subsys, h.event)
                elif h.kind == "UPROBE":
                    _room_for_fds(len(h.targets))  # a perf event fd per link
                    with _verified_binary(h) as binary:
                        for cookie, (symbol, offset, ref_ctr) in enumerate(h.targets):
                            prog.attach_uprobe(binary, symbol, offset=offset,
                                               ref_ctr_offset=ref_ctr, cookie=cookie,
                                               retprobe=name == "bg_pol_uretprobe")
                elif name in ("bg_pol_kprobe", "bg_pol_kretprobe"):
                    prog.attach_kprobe(h.function_name, retprobe=name == "bg_pol_kretprobe")
                else:  # trampolines and LSM: the target was set before the load
                    prog.attach()
            return copy
        except BpfguardError as exc:
            copy.close()
            hint = ("; imaHash runs a sleepable BPF LSM program, which the kernel allows on "
                    "some hooks only (bprm_check_security, file_open, mmap_file, ...)"
                    if any(p in _IMA_PROGRAMS for p in h.programs) else
                    "; fmod_ret (Override) works on security_* functions and on the "
                    "kernel's error-injection list only"
                    if "bg_pol_fmod_ret" in h.programs or "bg_pol_enforce" in h.programs
                    else "")
            raise PolicyError(h.hook.context.file, [Problem(
                PolicyCode.NOT_APPLICABLE, f"{h.hook.name}: cannot attach: {exc}{hint}",
                h.hook.context)]) from None
        except BaseException:
            copy.close()
            raise

    def _tracks_sockets(self) -> bool:
        """Whether a loaded policy tracks sockets (TrackSock, returnArgAction)."""
        bits = ACT["TRACK_SOCK"] | ACT["UNTRACK_SOCK"]
        return any(h.ret_sock or any((sel.actions | sel.ret_actions) & bits
                                     for sel in h.selectors)
                   for lp in self.policies.values() if lp.enabled for h in lp.compiled.hooks)

    def _sock_owner(self, h: CompiledHook, e: Any) -> tuple[int, int] | None:
        """(pid, tid) of the task that owns the event's first tracked sock
        argument (TrackSock), looked up in the kernel's map of them."""
        if not self._tracking:
            return None
        socks = self.obj.map("pol_socks")
        for i, a in enumerate(h.args):
            if a.type != "SOCK" or not e.args[i].value:
                continue
            found = socks.lookup(ctypes.c_uint64(e.args[i].value))
            if isinstance(found, bytes):
                o = self._t["bg_pol_sock_owner"].from_buffer_copy(found)
                return int(o.tgid), int(o.tid)
        return None

    def _encode_arg(self, dst: Any, a: CompiledArg) -> None:
        """A bg_pol_arg."""
        dst.type = PT[a.type]
        dst.size = a.size
        dst.is_signed = int(a.is_signed)
        dst.size_arg = a.size_arg
        dst.src = a.src
        dst.nsteps = len(a.steps)
        f = self._arg_flags
        dst.flags = ((f["LOAD"] if a.load else 0) | (f["USER"] if a.user else 0)
                     | {"task": f["TASK"], "reg": f["REG"], "const": f["CONST"]}.get(a.source, 0))
        dst.deref = sum(1 << k for k, (_, deref) in enumerate(a.steps) if deref)
        for k, (off, _) in enumerate(a.steps):
            dst.off[k] = off & 0xFFFFFFFF  # the kernel adds it as signed (a USDT disp(%reg))
        if a.source == "const":  # the 64-bit constant, in the first two steps' room
            dst.off[0], dst.off[1] = a.const & 0xFFFFFFFF, (a.const >> 32) & 0xFFFFFFFF
        dst.len = a.length

    def _unload(self, lp: LoadedPolicy) -> None:
        if lp.scope_id:
            self.scopes.remove(lp.scope_id)
        hooks, sels = self.obj.map("pol_hooks"), self.obj.map("pol_selectors")
        stats = self.obj.map("pol_stats")
        zero = [ctypes.c_uint64(0)] * stats.cpus
        for c in lp.copies:
            c.close()
        lp.copies.clear()
        for slot in lp.slots:
            hooks.update(ctypes.c_uint32(slot), self._t["bg_pol_hook"]())
            for i in range(LIMITS.selectors):
                sels.update(ctypes.c_uint32(slot * LIMITS.selectors + i),
                            self._t["bg_pol_selector"]())
            self._slots.pop(slot, None)
            self._gens.pop(slot, None)
            for i in range(self._nstats):  # the slot's next hook starts from zero
                stats.update(ctypes.c_uint32(slot * self._nstats + i), zero)
        if any(h.kind == "ENFORCER" for h in lp.compiled.hooks):  # threads it armed
            enforce = self.obj.map("pol_enforce")
            for key in list(enforce.keys()):
                if int.from_bytes(key[8:12], "little") == lp.kernel_id:
                    enforce.delete(key)
        socks = self.obj.map("pol_socks")  # the sockets its TrackSock recorded
        gone = set(lp.slots)
        owner_t = self._t["bg_pol_sock_owner"]
        for key in list(socks.keys()):
            value = socks.lookup(key)
            if value is not None and owner_t.from_buffer_copy(value).hook in gone:
                socks.delete(key)
        lp.slots.clear()
        self._drop_follow(lp)
        self._sets.release(lp.compiled.set_ids)

    # -- events --

    @property
    def event_type(self) -> int:
        return self._event_type

    def decode(self, rec: bytes) -> PolicyEvent | None:
        """A policy event record as a PolicyEvent; None for a hook since removed
        (records still in the ring buffer when its policy was deleted)."""
        t = self._t["bg_policy_event"]
        size = ctypes.sizeof(t)
        e = t.from_buffer_copy(rec[:size].ljust(size, b"\0"))
        found = self._slots.get(e.hook)
        if found is None or self._gens.get(e.hook) != e.gen:
            return None  # the hook was removed (its slot may serve another now)
        lp, h = found
        data = rec[t.data.offset:]
        sel = h.selectors[e.selector] if e.selector < len(h.selectors) else h.selectors[0]
        values = [self._arg(a, e.args[i], data) for i, a in enumerate(h.args)]
        args = tuple(v for v, a in zip(values, h.args, strict=True) if not a.data)
        extra_data = tuple(v for v, a in zip(values, h.args, strict=True) if a.data)
        enforcement = self._enforcement(e, h, sel.enforcing, sel.signal)
        # as Tetragon: `action` is what matchActions did at the call,
        # `return_action` what matchReturnActions did at the return
        action = "KPROBE_ACTION_POST"
        shows_return = e.has_ret and h.reports_return
        return_action = "KPROBE_ACTION_POST" if shows_return else ""
        for en in enforcement:
            if not en.done:
                continue
            if en.action in sel.ret_enforcing and e.has_ret:
                return_action = _TETRAGON_ACTION[en.action]
            if en.action in sel.call_enforcing:
                action = _TETRAGON_ACTION[en.action]
        # GetUrl/DnsLookup: the agent's to do, once per event it decodes
        for agent, at_return in ((sel.call_agent, False), (sel.ret_agent, True)):
            if at_return and not e.has_ret:
                continue
            for act, target in agent:
                self.agent_actions.submit(lp.name, act, target)
                if at_return and return_action == "KPROBE_ACTION_POST":
                    return_action = _TETRAGON_ACTION[act]
                elif not at_return and action == "KPROBE_ACTION_POST":
                    action = _TETRAGON_ACTION[act]
        ret = None
        if shows_return and h.retarg is not None:  # a string, a socket, ...
            ret = self._arg(h.retarg, e.retv, data)
        elif shows_return:  # a returned fd is shown as the number it is
            ret = PolicyArg("int" if h.ret_type == "fd" else h.ret_type, int(e.ret))
        stacks = self._stacks(e, data, h)
        common = dict(policy_name=lp.name, pid=e.hdr.tgid, tid=e.hdr.tid,
                      time_ns=boot_to_wall_ns(e.hdr.ktime_ns), ktime_ns=e.hdr.ktime_ns,
                      args=args, data=extra_data, action=action, return_value=ret,
                      return_action=return_action,
                      enforcement=enforcement, message=h.hook.message, tags=h.hook.tags,
                      selector=e.selector, uid=e.hdr.euid,
                      comm=bytes(e.hdr.comm).split(b"\0", 1)[0].decode(errors="replace"),
                      kernel_stack=stacks[0], user_stack=stacks[1])
        owner = self._sock_owner(h, e)
        if owner is not None:  # a tracked socket's owner, not the task that ran
            common["pid"], common["tid"] = owner
            common["comm"], common["uid"] = _identity(owner[0], common["comm"],
                                                      common["uid"])
        if h.kind == "SYSCALL":
            return PolicyEvent(kind="kprobe", function_name=h.function_name or _syscall_fn(
                e.nr, self._nr_max), **common)
        if h.kind == "FUNC":
            if e.ima_len:
                algo = self._hash_algo(e.ima_algo)
                size = _DIGEST_SIZE.get(algo, e.ima_len)
                common["ima_hash"] = f"{algo}:{data[e.ima_off:e.ima_off + size].hex()}"
            elif e.ima_err:
                common["ima_error"] = -e.ima_err
            return PolicyEvent(kind="lsm" if isinstance(h.hook, LsmHook) else "kprobe",
                               function_name=h.function_name, **common)
        if isinstance(h.hook, Usdt):
            return PolicyEvent(kind="usdt", path=h.binary, provider=h.hook.provider,
                               probe=h.hook.probe, **common)
        if h.kind == "UPROBE":
            symbol, offset, _ = h.targets[min(e.nr, len(h.targets) - 1)]
            return PolicyEvent(kind="uprobe", path=h.binary, symbol=symbol, offset=offset,
                               **common)
        return PolicyEvent(kind="tracepoint", subsys=h.subsys, event=h.event,
                           **common)

    def _stacks(self, e: Any, data: bytes, h: CompiledHook
                ) -> tuple[tuple[StackFrame, ...], tuple[StackFrame, ...]]:
        """The event's kernel and user stacks, named; the kernel's without
        the frames of bpfguard's program and the kernel's BPF dispatch,
        which sit on top of the hooked call's (see bg_pol_stacks)."""
        def addresses(off: int, size: int) -> list[int]:
            raw = data[off:off + size]
            return [a for a in struct.unpack(f"<{len(raw) // 8}Q", raw[:len(raw) // 8 * 8]) if a]

        kernel: tuple[StackFrame, ...] = ()
        user: tuple[StackFrame, ...] = ()
        if e.kstack_len:
            frames = _without_bpf_frames(
                [self._ksyms.frame(a) for a in addresses(e.kstack_off, e.kstack_len)])
            # a kernel function's stack starts at it: what is left above it
            # is dispatch kallsyms cannot name (6.1 lists no trampolines)
            top = [f.symbol for f in frames[:_DISPATCH_DEPTH]]
            if h.kind == "FUNC" and h.function_name in top:
                frames = frames[top.index(h.function_name):]
            kernel = tuple(frames)
        if e.ustack_len:
            user = self._usyms.frames(e.hdr.tgid, addresses(e.ustack_off, e.ustack_len))
        return kernel, user

    def _hash_algo(self, algo: int) -> str:
        """The kernel's name for an IMA hash algorithm (its BTF enum hash_algo)."""
        if self._hash_algos is None:
            self._hash_algos = {v: k.removeprefix("HASH_ALGO_").lower() for k, v in
                                self.obj.kernel_btf().enum("hash_algo").items()}
        return self._hash_algos.get(algo, f"algo{algo}")

    def _enforcement(self, e: Any, h: CompiledHook, names: tuple[str, ...], signal: int
                     ) -> tuple[Enforcement, ...]:
        out = []
        override = next((_OVERRIDE_BACKEND[p] for p in h.programs if p in _OVERRIDE_BACKEND), "")
        prevented = bool(e.done & ACT["OVERRIDE"])
        for name in names:
            if name == "NotifyEnforcer":
                if e.notified:
                    armed = e.notified == 1
                    out.append(Enforcement(
                        action=name, done=armed, mode="enforce" if armed else "monitor",
                        backend="fmod_ret", before_operation=False,
                        note="the policy's enforcers act on this thread's next call of one of "
                             "them (its error, its signal)" if armed else
                             "monitor mode: counted, the enforcers not armed"))
                continue
            if name == "Set":
                if e.set:
                    written = e.set == self._set_result["WRITTEN"]
                    monitor = e.set == self._set_result["WOULD"]
                    out.append(Enforcement(
                        action=name, done=written, mode="monitor" if monitor else "enforce",
                        backend="bpf_probe_write_user", before_operation=written,
                        note="written at the probe: the program reads the new value after it"
                        if written else "monitor mode: counted, not written" if monitor else
                        "the operand's address was unreadable or not writable"))
                continue
            bit = ACT[name.upper()]
            if not (e.done | e.would | e.failed) & bit:
                continue
            done = bool(e.done & bit)
            monitor = bool(e.would & bit)
            if name == "Override":
                note = ("monitor mode: counted, not done" if monitor else
                        "the hooked function was not run: it returned the error"
                        if done and override == "fmod_ret" else
                        "denied by the LSM hook before the operation" if done else
                        "no fmod_ret or BPF LSM program served this hook")
                out.append(Enforcement(action=name, done=done,
                                       mode="monitor" if monitor else "enforce",
                                       backend=override, before_operation=done, note=note))
                continue
            # a uprobe's signal is delivered as the task leaves the probe's
            # trap, before the function's first instruction: SIGKILL stops it
            killed_first = h.kind == "UPROBE" and name == "Sigkill" and done
            note = ("monitor mode: counted, not done" if monitor else
                    "the kernel refused to send the signal" if e.failed & bit else
                    "signal sent at the hook; the Override stopped the operation" if prevented
                    else "killed at the probe, before the user function ran" if killed_first
                    else "signal sent at the hook; the operation itself was not prevented "
                    "(it completes before the signal is delivered)" if h.kind != "UPROBE"
                    else "signal delivered before the user function ran; the function runs "
                    "if the signal does not end the process")
            out.append(Enforcement(action=name, done=done,
                                   mode="monitor" if monitor else "enforce",
                                   backend="bpf_send_signal",
                                   before_operation=prevented or killed_first,
                                   signal=9 if name == "Sigkill" else signal, note=note))
        return tuple(out)

    def _arg(self, a: Any, v: Any, data: bytes) -> PolicyArg:
        flags = v.flags
        vf = self._vflags
        truncated = bool(flags & (vf["TRUNCATED"] | vf["DEEP"]))   # its end, or its start
        if flags & vf["UNREADABLE"]:
            return PolicyArg(a.declared, None, a.label, truncated)
        if a.type in ("INT", "SYSCALL64"):
            value = int(v.value)
            if a.is_signed and value >= 1 << 63:
                value -= 1 << 64
            return PolicyArg(a.declared, value, a.label)
        if a.type == "SOCKADDR":
            if not flags & vf["SOCK"]:
                return PolicyArg(a.declared, None, a.label)
            s = v.sock
            fam = int(s.family)
            return PolicyArg(a.declared, {"family": _FAMILY.get(fam, str(fam)),
                                          "addr": _addr(fam, bytes(s.raddr)),
                                          "port": int(s.rport)}, a.label)
        if a.type == "SOCKADDR_UN":
            if not flags & vf["SOCK"]:
                return PolicyArg(a.declared, None, a.label)
            path = (data[v.data.off:v.data.off + v.data.len].split(b"\0", 1)[0]
                    if flags & vf["DATA"] else b"")
            fam = int(v.sock.family)
            return PolicyArg(a.declared, {"family": _FAMILY.get(fam, str(fam)),
                                          "path": path.decode(errors="surrogateescape")},
                             a.label, truncated)
        if a.type in ("SOCK", "SKB"):
            if not flags & vf["SOCK"]:
                return PolicyArg(a.declared, None, a.label)
            s = v.sock
            fam = int(s.family)
            return PolicyArg(a.declared, {
                "family": fam, "type": int(s.type), "protocol": int(s.protocol),
                "state": int(s.state), "saddr": _addr(fam, bytes(s.laddr)),
                "daddr": _addr(fam, bytes(s.raddr)), "sport": int(s.lport),
                "dport": int(s.rport)}, a.label)
        if not flags & vf["DATA"]:
            return PolicyArg(a.declared, None, a.label, truncated)
        raw = data[v.data.off:v.data.off + v.data.len]
        if a.type == "BYTES":
            return PolicyArg(a.declared, _struct_value(a, raw), a.label)
        if a.type == "CRED":
            c = self._t["bg_pol_cred"].from_buffer_copy(raw.ljust(self._cred_size, b"\0"))
            ids = {k: int(getattr(c, k)) for k in ("uid", "gid", "euid", "egid", "suid",
                                                    "sgid", "fsuid", "fsgid", "securebits")}
            return PolicyArg(a.declared, {**ids, "caps": {
                "permitted": int(c.cap_permitted), "effective": int(c.cap_effective),
                "inheritable": int(c.cap_inheritable)}}, a.label)
        if a.type in ("CHAR_BUF", "CHAR_BUF_RET", "CHAR_IOVEC", "CHAR_IOVEC_RET", "IOV_ITER"):
            return PolicyArg(a.declared, raw, a.label, truncated)
        text = raw.split(b"\0", 1)[0].decode(errors="surrogateescape")
        if truncated and a.type in _PATH_TYPES:
            if flags & vf["DEEP"]:
                # the innermost names of a path deeper than the walk (the
                # kernel wrote '.' for its first '/'): never shown as if it
                # were absolute, as the sensors' paths
                text = ".../" + text[1:]
            else:   # the end did not fit
                text += "..."
        return PolicyArg(a.declared, text, a.label, truncated)


def _identity(pid: int, comm: Any, uid: Any) -> tuple[Any, Any]:
    """The name (as the sensor names a process it did not see exec) and
    effective uid of process `pid` from /proc; `comm` and `uid` when it is
    gone."""
    try:
        try:
            exe: str | None = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = None
        name = exec_name(Path(f"/proc/{pid}/comm").read_text().rstrip("\n"), exe)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return name, int(line.split()[2])
        return name, uid
    except (OSError, ValueError, IndexError):
        return comm, uid


def _struct_value(a: CompiledArg, raw: bytes) -> dict[str, Any]:
    """The fields of a bpf_attr, bpf_map, module, ... argument, as Tetragon's
    Kprobe* message names them ("ns.inum" nests)."""
    out: dict[str, Any] = {}
    for name, off, size, how, names in a.fields:
        b = raw[off:off + size]
        value: Any
        if how == "str":
            value = b.split(b"\0", 1)[0].decode(errors="surrogateescape")
        else:
            n = int.from_bytes(b, "little", signed=how == "s")
            value = (bool(n) if how == "bool" else dict(names).get(n, str(n))
                     if how.startswith("enum:") else n)
        where = out
        *outer, leaf = name.split(".")
        for part in outer:
            where = where.setdefault(part, {})
        where[leaf] = value
    return out


# the kernel's code that runs a BPF program for a hook, between the hooked
# call's frames and the program's own (module "bpf"): tracepoint, kprobe,
# uprobe and trampoline dispatch
_BPF_DISPATCH: Final = re.compile(
    r"bpf_trace_run\d+|__bpf_trace_\w+|__traceiter_\w+|trace_call_bpf|perf_trace_run_bpf_submit|"
    r"perf_trace_\w+|perf_syscall_(enter|exit)|kprobe_perf_func|kretprobe_perf_func|"
    r"kprobe_dispatcher|kretprobe_dispatcher|__uprobe_perf_func|uprobe_dispatcher|"
    r"__bpf_prog_(enter|exit)\w*|bpf_prog_run\w*|_*bpf_prog_run\d*|__bpf_get_stack|"
    r"__bpf_get_task_stack|bpf_get_task_stack\w*|kprobe_ftrace_handler|"
    r"arch_ftrace_ops_list_func|ftrace_\w*trampoline\w*|ftrace_regs_caller\w*|"
    r"ftrace_caller\w*|kprobe_int3_handler|exc_int3|asm_exc_int3|pre_handler_kretprobe|"
    r"kretprobe_trampoline\w*|__kretprobe_trampoline\w*|arch_rethook_\w+|rethook_\w+")
# frames a hooked function's own may follow, unnamed or misnamed dispatch
_DISPATCH_DEPTH: Final = 4
# frames in these "modules" are dispatch too: ftrace's trampolines
_DISPATCH_MODULES: Final = frozenset({"__builtin__ftrace", "__builtin__kprobes"})


def _without_bpf_frames(frames: list[StackFrame]) -> list[StackFrame]:
    """`frames` from the hooked call outward: bg_pol_stacks took the stack
    inside bpfguard's program, so the helper, the program (module ``bpf``:
    JITed programs and trampolines) and the kernel's dispatch to it (the
    tracepoint's, ftrace's or kprobe's) come first. What is left starts at
    the hooked function, as Tetragon's stacks do (a syscall tracepoint's at
    syscall_trace_enter)."""
    last = max((i for i, f in enumerate(frames) if f.module == "bpf"), default=-1)
    rest = frames[last + 1:]
    while rest and (_BPF_DISPATCH.fullmatch(rest[0].symbol)
                    or rest[0].module in _DISPATCH_MODULES):
        rest = rest[1:]
    return rest


@contextlib.contextmanager
def _verified_binary(h: CompiledHook) -> Iterator[str]:
    """The path to attach a uprobe hook by: with binaryDigests, the file
    opened and found to have one of them, by its descriptor, so that what
    is attached is what was verified (a binary replaced since is refused)."""
    if not h.digests:
        yield h.binary
        return
    fd = os.open(h.binary, os.O_RDONLY | os.O_CLOEXEC)
    try:
        found, has = matching_digest(fd, h.digests)
        if found is None:
            raise ConfigError(f"{h.binary} has none of binaryDigests (it has {has}); it "
                              "changed since the policy was compiled")
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _room_for_fds(n: int) -> None:
    """Raises the soft open-file limit, within the hard one, to leave `n` more
    descriptors than are open now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = len(os.listdir("/proc/self/fd")) + n + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, executable path) of every process in /proc."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            exe = os.readlink(d / "exe").removesuffix(" (deleted)")
            stat = (d / "stat").read_text()
        except OSError:
            continue
        out[int(d.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), exe)
    return out


def _addr(family: int, raw: bytes) -> str:
    """An address of bg_sock (IPv4 in the first 4 bytes) as text."""
    return (".".join(str(b) for b in raw[:4]) if family == 2 else
            str(ipaddress.IPv6Address(raw[:16])) if family == 10 else "")


def _syscall_fn(idx: int, nr_max: int) -> str:
    from ..sensors.syscall_table import syscall_name

    compat = idx >= nr_max
    return ("__ia32_sys_" if compat else "__x64_sys_") + syscall_name(idx % nr_max,
                                                                      compat=compat)

