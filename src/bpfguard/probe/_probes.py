"""One function per feature: load the tiny program from probe.bpf.c alone,
attach it, make it run, and say what happened.

A feature counts as available only when the kernel did the thing (the program
ran, the open was denied, the child died of the signal), not when a version
number or a config option suggests it would. A refusal names the step, the
errno and what it implies for bpfguard.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from ..errors import AttachError, KernelError, LoadError
from ..loader import BpfObject, Btf, Program, RingBuffer, bpf_object_path
from ..loader.net import TcAttachment, XdpAttachment, XdpMode
from ..loader.object import kernel_has_helper, kernel_has_map_type
from . import _system
from ._model import Feature

# UAPI values (include/uapi/linux/bpf.h, btf.h): stable ABI.
_MAP_RINGBUF, _MAP_TASK_STORAGE = 27, 29
_PROG_RAW_TRACEPOINT, _FUNC_LOOP = 17, 181
_BTF_KIND_STRUCT, _BTF_KIND_FUNC = 4, 12
_ENOTSUPP = 524  # kernel-internal; Python's errno module does not know it

_RING_MAGIC = (0x6270667072696E67).to_bytes(8, sys.byteorder)  # bgp_ringbuf's record
_OPTIONAL_MAPS = ("bgp_ring", "bgp_tstore")  # created only for the probe that uses one
_KPROBE_PMU = Path("/sys/bus/event_source/devices/kprobe")
_UPROBE_PMU = Path("/sys/bus/event_source/devices/uprobe")
_TRACEFS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))

TRAMPOLINES_BLOCKED = "BPF trampolines (fentry/fexit/fmod_ret/LSM) are blocked on this kernel"
_FALLBACK_ENFORCE = "enforcement falls back to cgroup hooks, seccomp or SIGKILL after the fact"


class Run:
    """What one probe run shares: a scratch file to open (and deny), and
    securityfs' view, read once."""

    def __init__(self, workdir: Path) -> None:
        self.file = workdir / "probe-target"
        self.file.write_bytes(b"bpfguard probe\n")
        self.ino = self.file.stat().st_ino
        self._security: dict[str, str | None] | None = None
        self.security_error = ""

    @property
    def security(self) -> dict[str, str | None]:
        if self._security is None:
            try:
                self._security = _system.read_securityfs()
            except OSError as exc:
                self.security_error = f"cannot mount securityfs: {exc}"
                self._security = {"lsm": None, "lockdown": None}
        return self._security

    @property
    def lsms(self) -> list[str] | None:
        text = self.security["lsm"]
        return text.split(",") if text is not None else None

    @property
    def lockdown(self) -> str:
        """The bracketed word of /sys/kernel/security/lockdown; "none" without
        the lockdown LSM, "unknown" when securityfs is out of reach."""
        text = self.security["lockdown"]
        if text is None:
            return "unknown" if self.security_error else "none"
        start, end = text.find("["), text.find("]")
        return text[start + 1:end] if 0 <= start < end else "unknown"


# -- explaining refusals -------------------------------------------------------

_GENERIC = {
    errno.EPERM: "the kernel denied it although we are root (lockdown, a security module, "
                 "or a kernel that restricts BPF)",
    errno.EACCES: "the verifier rejected the program",
    errno.EINVAL: "the kernel does not accept this program type, helper or attach point",
    errno.ENOENT: "the attach target does not exist on this kernel",
    errno.ESRCH: "the attach target is not in the kernel's BTF",
    errno.EOPNOTSUPP: "not supported by this kernel or device",
    _ENOTSUPP: "not supported by this kernel",
    errno.E2BIG: "the kernel does not know a field or flag the program uses (older kernel)",
}


def errno_name(err: int) -> str:
    return "ENOTSUPP" if err == _ENOTSUPP else errno.errorcode.get(err, f"errno {err}")


def refused(exc: KernelError, implies: Mapping[int, str] | str | None = None) -> str:
    """ "refused: <step> failed with <ERRNO> (<meaning>) — <what it implies>"."""
    if isinstance(exc, LoadError):
        step = "program load"
    elif isinstance(exc, AttachError):
        step = "attach"
    else:
        step = exc.what
    meaning = "not supported" if exc.errno == _ENOTSUPP else os.strerror(exc.errno)
    text = f"refused: {step} failed with {errno_name(exc.errno)} ({meaning})"
    if isinstance(exc, LoadError):
        # (not the statistics line a refusal ends with: "processed 15 insns ...")
        lines = [ln.strip() for ln in exc.log.splitlines()
                 if ln.strip() and not ln.startswith(("libbpf:", "processed "))]
        if lines:  # the verifier's own last word, e.g. "unknown func bpf_loop#181"
            text += f" [verifier: {lines[-1][:160]}]"
    if isinstance(implies, str):
        why = implies
    else:
        why = (implies or {}).get(exc.errno) or _GENERIC.get(exc.errno, "")
    return f"{text} — {why}" if why else text


# -- running one program -------------------------------------------------------

@contextlib.contextmanager
def loaded(prog: str, *, maps: tuple[str, ...] = (), **rodata: int
           ) -> Iterator[tuple[BpfObject, Program]]:
    """probe.bpf.o with only `prog` loaded (and only the optional maps in
    `maps` created), its .rodata set; closing it destroys every link on it."""
    obj = BpfObject.open(bpf_object_path("probe"))
    try:
        for p in obj.programs:
            p.autoload = p.name == prog
        for m in _OPTIONAL_MAPS:
            obj.set_autocreate(m, m in maps)
        obj.rodata["targ_tid"] = threading.get_native_id()
        for key, value in rodata.items():
            obj.rodata[key] = value
        obj.load()
        yield obj, obj.program(prog)
    finally:
        obj.close()


def _syscalls() -> None:
    for _ in range(3):
        os.getppid()


def _open(path: Path) -> int:
    """open(2)s path from this thread; 0 or the errno."""
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as exc:
        return exc.errno or errno.EIO
    return 0


def _counted(name: str, prog: str, what: str, trigger: Callable[[], object],
             implies: Mapping[int, str] | str | None = None,
             attach: Callable[[Program], object] = Program.attach) -> Feature:
    """Load, attach, trigger; available when the program counted a run."""
    try:
        with loaded(prog) as (obj, p):
            attach(p)
            trigger()
            hits = int(obj.bss["hits"])
    except KernelError as exc:
        return Feature(name, False, refused(exc, implies))
    if not hits:
        return Feature(name, False, f"loaded and attached, but never ran on {what}")
    return Feature(name, True, f"ran on {what}")


# -- the probes ----------------------------------------------------------------

def probe_btf(run: Run) -> Feature:
    path = Path("/sys/kernel/btf/vmlinux")
    if not path.exists():
        return Feature("btf", False, f"no {path}: the kernel lacks CONFIG_DEBUG_INFO_BTF, so "
                       "CO-RE sensors, tp_btf, fentry and LSM programs cannot load")
    try:
        with Btf.vmlinux() as btf:
            tid = btf.find("task_struct", _BTF_KIND_STRUCT)
    except (KernelError, KeyError) as exc:
        return Feature("btf", False, f"{path} is present but unusable: {exc}")
    return Feature("btf", True, f"{path} parsed (struct task_struct is type {tid})")


def probe_raw_tp(run: Run) -> Feature:
    return _counted("raw_tp", "bgp_raw_tp", "raw_tp/sys_enter", _syscalls)


def probe_tp_btf(run: Run) -> Feature:
    return _counted("tp_btf", "bgp_tp_btf", "tp_btf/sys_enter", _syscalls, {
        errno.EINVAL: "no BTF-typed tracepoints (needs Linux 5.5+ with BTF); the sensors "
                      "use tp_btf",
    })


def probe_tracepoint(run: Run) -> Feature:
    return _counted("tracepoint", "bgp_tracepoint", "tracepoint/raw_syscalls/sys_enter",
                    _syscalls, {errno.ENOENT: "no raw_syscalls tracepoints (tracefs missing or "
                                              "CONFIG_FTRACE_SYSCALLS off)"})


def _trampoline(feature: str, consequence: str) -> dict[int, str]:
    return {
        errno.EPERM: f"{TRAMPOLINES_BLOCKED}; {consequence}",
        errno.ESRCH: f"security_file_open is not in the kernel's BTF; {consequence}",
        errno.ENOENT: f"security_file_open is not in the kernel's BTF; {consequence}",
        errno.EINVAL: f"no BPF trampolines for {feature} on this kernel or architecture; "
                      f"{consequence}",
        _ENOTSUPP: f"no BPF trampolines on this kernel or architecture; {consequence}",
    }


_NO_FUNCTION_HOOKS = "no hooks on kernel function entry/exit, only tracepoints"


def probe_fentry(run: Run) -> Feature:
    return _counted("fentry", "bgp_fentry", "fentry/security_file_open",
                    lambda: _open(run.file), _trampoline("fentry", _NO_FUNCTION_HOOKS))


def probe_fexit(run: Run) -> Feature:
    return _counted("fexit", "bgp_fexit", "fexit/security_file_open",
                    lambda: _open(run.file), _trampoline("fexit", _NO_FUNCTION_HOOKS))


def _deny_test(name: str, prog: str, section: str, run: Run,
               implies: Mapping[int, str]) -> tuple[Feature | None, str]:
    """Loads a program that denies open(2) of run.file to this thread only.
    Returns (refusal, "") or (None, outcome) with outcome "" when it denied."""
    try:
        with loaded(prog, targ_deny_ino=run.ino) as (obj, p):
            p.attach()
            err = _open(run.file)
            hits = int(obj.bss["hits"])
    except KernelError as exc:
        return Feature(name, False, refused(exc, implies)), ""
    if err == errno.EPERM and hits:
        return None, ""
    got = errno_name(err) if err else "success"
    return None, f"loaded and attached {section}, but open(2) of the test file gave {got}, " \
                 f"not EPERM ({hits} runs)"


def probe_fmod_ret(run: Run) -> Feature:
    section = "fmod_ret/security_file_open"
    fail, outcome = _deny_test("fmod_ret", "bgp_fmod_ret", section, run,
                               _trampoline("fmod_ret", f"no fmod_ret deny: {_FALLBACK_ENFORCE}"))
    if fail:
        return fail
    if outcome:
        return Feature("fmod_ret", False, outcome)
    return Feature("fmod_ret", True, f"{section} denied an open(2) with EPERM before it happened")


def probe_lsm(run: Run) -> Feature:
    lsms = run.lsms
    listed = lsms is not None and "bpf" in lsms
    if lsms is None:
        state = f"the active LSM list is unreadable ({run.security_error or 'no securityfs lsm'})"
    else:
        state = f"'bpf' is {'' if listed else 'NOT '}in the active LSM list ({','.join(lsms)})"
    fail, outcome = _deny_test("lsm", "bgp_lsm", "lsm/file_open", run,
                               _trampoline("lsm", f"no LSM deny: {_FALLBACK_ENFORCE}"))
    if fail:
        return Feature("lsm", False, f"{fail.detail}; {state}")
    if outcome:
        hint = "" if listed else "; boot with lsm=...,bpf to activate BPF LSM"
        return Feature("lsm", False, f"{outcome}; {state}{hint}")
    return Feature("lsm", True, f"lsm/file_open denied an open(2) with EPERM; {state}")


def probe_d_path(run: Run) -> Feature:
    implies = _trampoline("d_path", "bpf_d_path is allowed only in fentry/LSM programs, so "
                                    "paths come from the sensors' own dentry walk")
    try:
        with loaded("bgp_d_path") as (obj, p):
            p.attach()
            _open(run.file)
            n = int(obj.bss["path_len"])
            got = bytes(obj.bss["path"]).decode(errors="replace")
    except KernelError as exc:
        return Feature("d_path", False, refused(exc, implies))
    want = os.path.realpath(run.file)
    if n <= 0:
        why = f"returned {errno_name(-n)}" if n < 0 else "never ran"
        return Feature("d_path", False, f"loaded and attached, but bpf_d_path {why}")
    if got != want:
        return Feature("d_path", False, f"bpf_d_path gave {got!r}, expected {want!r}")
    return Feature("d_path", True, "bpf_d_path resolved an opened file (fentry/security_file_open)")


def _kprobe_target() -> str:
    """A kernel function open(2) calls, present in this kernel's BTF when that is known."""
    candidates = ("security_file_open", "vfs_open", "do_sys_openat2")
    try:
        with Btf.vmlinux() as btf:
            for fn in candidates:
                with contextlib.suppress(KeyError):
                    btf.find(fn, _BTF_KIND_FUNC)
                    return fn
    except KernelError:
        pass
    return candidates[0]


def _has_events(pmu: Path, legacy: str) -> bool:
    return pmu.exists() or any((t / legacy).exists() for t in _TRACEFS)


def probe_kprobe(run: Run) -> Feature:
    target = _kprobe_target()
    implies: dict[int, str] = {}
    if not _has_events(_KPROBE_PMU, "kprobe_events"):
        why = f"CONFIG_KPROBES is off (no kprobe PMU at {_KPROBE_PMU}, no kprobe_events in tracefs)"
        implies = dict.fromkeys((errno.ENOENT, errno.EINVAL, errno.EOPNOTSUPP, _ENOTSUPP), why)
    return _counted("kprobe", "bgp_kprobe", f"kprobe/{target}", lambda: _open(run.file),
                    implies, attach=lambda p: p.attach_kprobe(target))


def probe_uprobe(run: Run) -> Feature:
    libc = _system.libc_path()
    if libc is None:
        return Feature("uprobe", False, "no C library mapped in this process to probe")
    implies: dict[int, str] = {}
    if not _has_events(_UPROBE_PMU, "uprobe_events"):
        why = f"CONFIG_UPROBES is off (no uprobe PMU at {_UPROBE_PMU}, no uprobe_events in tracefs)"
        implies = dict.fromkeys((errno.ENOENT, errno.EINVAL, errno.EOPNOTSUPP, _ENOTSUPP), why)
    return _counted("uprobe", "bgp_uprobe", f"uprobe {libc}:getpid", os.getpid, implies,
                    attach=lambda p: p.attach_uprobe(libc, "getpid", pid=os.getpid()))


def probe_write_user(run: Run) -> Feature:
    """Whether bpf_probe_write_user works: a uprobe on getpid writes a value
    into this process's memory, and the value must be there after. (Where
    it loads, the kernel logs that such a program "may corrupt user
    memory": it says so once per load, for every program with the helper.)"""
    libc = _system.libc_path()
    if libc is None:
        return Feature("write_user", False, "no C library mapped in this process to probe")
    cell = ctypes.c_uint32(0)
    value = 0x62677721  # any value the cell cannot hold by chance
    try:
        with loaded("bgp_write_user", targ_write_addr=ctypes.addressof(cell),
                    targ_write_value=value) as (obj, p):
            p.attach_uprobe(libc, "getpid", pid=os.getpid())
            os.getpid()
            hits = int(obj.bss["hits"])
    except LoadError as exc:
        why = (f"lockdown={run.lockdown} refuses bpf_probe_write_user to every program"
               if run.lockdown in ("integrity", "confidentiality") else None)
        return Feature("write_user", False, refused(exc, why))
    except KernelError as exc:
        return Feature("write_user", False, refused(exc))
    if not hits or cell.value != value:
        return Feature("write_user", False, f"loaded and attached, but the write did not land "
                       f"(runs {hits}, cell {cell.value:#x})")
    return Feature("write_user", True, "a uprobe wrote 4 bytes into the probing process")


def probe_cgroup(run: Run) -> Feature:
    try:
        with _system.temporary_cgroup() as cgroup, loaded("bgp_cgroup") as (_, p):
            p.attach_cgroup(cgroup)
    except OSError as exc:
        return Feature("cgroup", False, f"cannot make a cgroup v2 directory to attach to: {exc}")
    except KernelError as exc:
        return Feature("cgroup", False, refused(exc, "no cgroup BPF hooks: cgroup-level "
                                                    "enforcement is unavailable"))
    return Feature("cgroup", True, "cgroup/connect4 attached to a new cgroup v2 directory")


def _xdp(mode: XdpMode, ifindex: int) -> Feature:
    name = f"xdp_{mode}"
    implies = {
        errno.EOPNOTSUPP: "the veth driver has no native XDP here" if mode == "native"
        else "no generic XDP",
        errno.EINVAL: "the kernel refused this XDP mode",
    }
    try:
        with loaded("bgp_xdp") as (_, p), XdpAttachment(p, ifindex, mode):
            pass
    except KernelError as exc:
        return Feature(name, False, refused(exc, implies))
    how = "native (driver)" if mode == "native" else "generic (skb)"
    return Feature(name, True, f"attached in {how} mode to a veth in a scratch netns")


def _tc(ifindex: int) -> Feature:
    try:
        with loaded("bgp_tc") as (_, p), TcAttachment(p, ifindex):
            pass
    except KernelError as exc:
        return Feature("tc", False, refused(exc, "no tc BPF classifier (clsact)"))
    return Feature("tc", True, "attached to clsact ingress of a veth in a scratch netns")


NET_FEATURES = ("xdp_native", "xdp_generic", "tc")


def probe_net(run: Run, names: list[str]) -> list[Feature]:
    """XDP (both modes) and tc on a veth pair in a network namespace that
    dies with the thread that made it."""

    def inside() -> list[Feature]:
        ifindex = _system.create_veth("bgp0", "bgp1")
        probes: dict[str, Callable[[], Feature]] = {
            "xdp_native": lambda: _xdp("native", ifindex),
            "xdp_generic": lambda: _xdp("generic", ifindex),
            "tc": lambda: _tc(ifindex),
        }
        return [guard(n, probes[n]) for n in names]

    try:
        return _system.in_new_netns(inside)
    except OSError as exc:
        detail = f"cannot set up a scratch network namespace with a veth pair: {exc}"
        return [Feature(n, False, detail) for n in names]


def probe_send_signal(run: Run) -> Feature:
    # A child blocked reading stdin: released after attach, its next syscall
    # (write) meets the program, which SIGKILLs it.
    cat = shutil.which("cat")
    argv = [cat] if cat else [sys.executable, "-c", "import sys; sys.stdin.buffer.read(1)"]
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, bufsize=0)
    assert child.stdin is not None
    status: int | None = None
    try:
        with loaded("bgp_send_signal", targ_kill_tgid=child.pid,
                    targ_signal=int(signal.SIGKILL)) as (obj, p):
            p.attach()
            with contextlib.suppress(BrokenPipeError):
                child.stdin.write(b"go\n")
            with contextlib.suppress(subprocess.TimeoutExpired):
                status = child.wait(timeout=2)
            hits = int(obj.bss["hits"])
    except KernelError as exc:
        return Feature("send_signal", False, refused(exc, {
            errno.EINVAL: "no bpf_send_signal helper (Linux 5.3+): SIGKILL enforcement "
                          "must come from user space, later",
        }))
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        with contextlib.suppress(BrokenPipeError):
            child.stdin.close()
    if status == -signal.SIGKILL and hits:
        return Feature("send_signal", True, "a raw_tp program SIGKILLed a child at its next "
                       "syscall; the child died of SIGKILL")
    seen = "still running after 2 s" if status is None else f"exit status {status}"
    return Feature("send_signal", False, f"loaded and attached, but the child was not killed "
                   f"({seen}, {hits} signals sent)")


def probe_ringbuf(run: Run) -> Feature:
    if not kernel_has_map_type(_MAP_RINGBUF):
        return Feature("ringbuf", False, "no BPF_MAP_TYPE_RINGBUF (Linux 5.8+): the sensors "
                       "cannot deliver events")
    try:
        with loaded("bgp_ringbuf", maps=("bgp_ring",)) as (obj, p), \
                RingBuffer(obj.map("bgp_ring")) as ring:
            p.attach()
            _syscalls()
            records = ring.drain()
    except KernelError as exc:
        return Feature("ringbuf", False, refused(exc))
    if _RING_MAGIC not in records:
        return Feature("ringbuf", False, f"map created and program attached, but no record "
                       f"arrived ({len(records)} records)")
    return Feature("ringbuf", True, "map created; a raw_tp program's record was consumed")


def probe_task_storage(run: Run) -> Feature:
    if not kernel_has_map_type(_MAP_TASK_STORAGE):
        return Feature("task_storage", False, "no BPF_MAP_TYPE_TASK_STORAGE (Linux 5.11+): "
                       "the syscall sensor cannot stash arguments between entry and exit")
    try:
        with loaded("bgp_tstorage", maps=("bgp_tstore",)) as (obj, p):
            p.attach()
            _syscalls()
            count = int(obj.bss["storage_count"])
    except KernelError as exc:
        return Feature("task_storage", False, refused(exc, {
            errno.EINVAL: "task storage is not usable from tp_btf programs here; the syscall "
                          "sensor needs it",
        }))
    if count < 2:
        return Feature("task_storage", False, f"map created and program attached, but the "
                       f"value did not persist across syscalls (count {count})")
    return Feature("task_storage", True, "a tp_btf program kept a per-thread value across "
                   "syscalls")


def probe_bpf_loop(run: Run) -> Feature:
    try:
        with loaded("bgp_bpf_loop") as (obj, p):
            p.attach()
            _syscalls()
            total = int(obj.bss["loop_sum"])
    except KernelError as exc:
        helper = "unknown"
        with contextlib.suppress(KernelError):
            helper = "present" if kernel_has_helper(_PROG_RAW_TRACEPOINT, _FUNC_LOOP) else "absent"
        if helper == "absent":
            return Feature("bpf_loop", False, refused(exc, "the kernel has no bpf_loop helper "
                           "(Linux 5.17+): loops must be bounded and unrolled"))
        return Feature("bpf_loop", False, refused(exc))
    if total != 10:
        return Feature("bpf_loop", False, f"loaded and attached, but the loop summed {total}, "
                       "not 10")
    return Feature("bpf_loop", True, "bpf_loop ran its callback 4 times in a raw_tp program")


_LOCKDOWN_MEANS = {
    "none": "nothing is locked down",
    "integrity": "bpf_probe_write_user and writes to kernel memory are blocked; reading "
                 "kernel memory is allowed",
    "confidentiality": "reading kernel memory is blocked too (bpf_probe_read_kernel and "
                       "friends): tracing sensors cannot read kernel structs",
}


def probe_lockdown(run: Run) -> Feature:
    mode = run.lockdown
    if mode == "unknown":
        why = run.security_error or f"unexpected content {run.security['lockdown']!r}"
        return Feature("lockdown", False, f"lockdown mode unreadable: {why}")
    if run.security["lockdown"] is None:
        return Feature("lockdown", False, "no /sys/kernel/security/lockdown: the kernel has no "
                       "lockdown LSM, so nothing is locked down")
    return Feature("lockdown", True, f"{mode}: {_LOCKDOWN_MEANS.get(mode, 'unrecognised mode')}")


def probe_error_injection(run: Run) -> Feature:
    """Whether fmod_ret may change functions beyond security_*: the
    error-injection list (syscalls among them), which only a kernel built
    with CONFIG_FUNCTION_ERROR_INJECTION has. Read from debugfs when it is
    mounted, else from the kernel's config (/proc/config.gz, /boot)."""
    listed = Path("/sys/kernel/debug/error_injection/list")
    if listed.exists():
        return Feature("error_injection", True, f"{listed}: fmod_ret may override the "
                       "functions listed there (syscalls among them)")
    option = _kernel_config("CONFIG_FUNCTION_ERROR_INJECTION")
    if option is None:
        return Feature("error_injection", False, "neither debugfs's error_injection/list nor "
                       "the kernel's config is readable: assumed absent")
    if option == "y":
        return Feature("error_injection", True, "CONFIG_FUNCTION_ERROR_INJECTION=y: fmod_ret "
                       "may override syscalls and the other listed functions")
    return Feature("error_injection", False, "the kernel is built without "
                   "CONFIG_FUNCTION_ERROR_INJECTION: fmod_ret may override security_* "
                   "functions only, never a syscall")


def _kernel_config(option: str) -> str | None:
    """`option`'s value in the running kernel's config ("" when not set),
    None when no config is readable."""
    release = os.uname().release
    for path in ("/proc/config.gz", f"/boot/config-{release}"):
        try:
            if path.endswith(".gz"):
                with gzip.open(path, "rt") as f:
                    text = f.read()
            else:
                text = Path(path).read_text()
        except OSError:
            continue
        m = re.search(rf"^{option}=(\S+)$", text, re.M)
        return m.group(1) if m else ""
    return None


PROBES: dict[str, Callable[[Run], Feature]] = {
    "btf": probe_btf,
    "ringbuf": probe_ringbuf,
    "raw_tp": probe_raw_tp,
    "tp_btf": probe_tp_btf,
    "tracepoint": probe_tracepoint,
    "fentry": probe_fentry,
    "fexit": probe_fexit,
    "fmod_ret": probe_fmod_ret,
    "lsm": probe_lsm,
    "kprobe": probe_kprobe,
    "uprobe": probe_uprobe,
    "write_user": probe_write_user,
    "cgroup": probe_cgroup,
    "send_signal": probe_send_signal,
    "d_path": probe_d_path,
    "task_storage": probe_task_storage,
    "bpf_loop": probe_bpf_loop,
    "lockdown": probe_lockdown,
    "error_injection": probe_error_injection,
}


def guard(name: str, probe: Callable[[], Feature]) -> Feature:
    """Runs one probe; whatever it raises becomes its own refusal, never another's."""
    try:
        return probe()
    except Exception as exc:  # isolation: a crashing probe reports, the rest still run
        return Feature(name, False, f"probe failed: {type(exc).__name__}: {exc}")
