"""Compiling TracingPolicies into what the in-kernel engine reads
(bpfguard.policy.compiler), without a kernel: tracepoint formats come from a
fake `fields_of`, host namespaces from a tmp dir."""

from __future__ import annotations

import dataclasses
import itertools
import os
import platform
from pathlib import Path
from textwrap import dedent

import pytest

from bpfguard.policy import (
    Action,
    ArgSelector,
    PolicyCode,
    PolicyError,
    Selector,
    load_policy,
    load_policy_text,
)
from bpfguard.policy.compiler import (
    ACT,
    CAP_TYPE,
    LIMITS,
    NS_KIND,
    RET_ARG,
    STACK,
    CompiledArg,
    CompiledFilter,
    CompiledPolicy,
    TracepointField,
    compile_policy,
    parse_rate,
    string_hash,
    tracepoint_fields,
)
from bpfguard.policy.model import Policy
from bpfguard.sensors.syscall_table import machine, syscall_number

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tetragon"

HEAD = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: t\nspec:\n"

NR_MAX = 512
M64 = (1 << 64) - 1

# Tracepoint formats, as /sys/kernel/tracing/events/*/*/format gives them.
_COMMON = [
    TracepointField("unsigned short common_type", "common_type", 0, 2, False),
    TracepointField("unsigned char common_flags", "common_flags", 2, 1, False),
    TracepointField("unsigned char common_preempt_count", "common_preempt_count", 3, 1, False),
    TracepointField("int common_pid", "common_pid", 4, 4, True),
]
RAW_SYS_ENTER = [*_COMMON,
                 TracepointField("long id", "id", 8, 8, True),
                 TracepointField("unsigned long args[6]", "args", 16, 48, False)]
SYS_ENTER_OPENAT = [*_COMMON,
                    TracepointField("int __syscall_nr", "__syscall_nr", 8, 4, True),
                    TracepointField("int dfd", "dfd", 16, 8, True),
                    TracepointField("const char * filename", "filename", 24, 8, False),
                    TracepointField("int flags", "flags", 32, 8, True),
                    TracepointField("umode_t mode", "mode", 40, 8, False)]
SCHED_EXEC = [*_COMMON,
              TracepointField("__data_loc char[] filename", "filename", 8, 4, True),
              TracepointField("pid_t pid", "pid", 12, 4, True),
              TracepointField("pid_t old_pid", "old_pid", 16, 4, True)]
SCHED_SWITCH = [*_COMMON,
                TracepointField("char prev_comm[16]", "prev_comm", 8, 16, True),
                TracepointField("const char * reason", "reason", 24, 8, False),
                TracepointField("u8 odd", "odd", 0x10000, 1, False)]
FORMATS = {
    ("raw_syscalls", "sys_enter"): RAW_SYS_ENTER,
    ("syscalls", "sys_enter_openat"): SYS_ENTER_OPENAT,
    ("sched", "sched_process_exec"): SCHED_EXEC,
    ("sched", "sched_switch"): SCHED_SWITCH,
}


def fake_fields(subsys: str, event: str) -> list[TracepointField] | None:
    return FORMATS.get((subsys, event))


# -- helpers ---------------------------------------------------------------------

def _body(yaml_text: str) -> str:
    """`yaml_text` (spec keys at column 0) dedented and indented under spec."""
    return "".join("  " + line if line.strip() else line
                   for line in dedent(yaml_text).splitlines(keepends=True))


def _policy(yaml_text: str) -> Policy:
    return load_policy_text("p.yaml", HEAD + _body(yaml_text))


def _compile(yaml_text: str | Policy, **kw: object) -> CompiledPolicy:
    policy = yaml_text if isinstance(yaml_text, Policy) else _policy(yaml_text)
    kw.setdefault("fields_of", fake_fields)
    kw.setdefault("ns_root", "/nonexistent-ns-root")
    kw.setdefault("function_of", _fn)
    return compile_policy(policy, **kw)  # type: ignore[arg-type]


def _errors(yaml_text: str | Policy, **kw: object) -> list[str]:
    """Each compile problem as 'line:col message' (bpfguard's, this
    machine's or the policy's own)."""
    with pytest.raises(PolicyError) as info:
        _compile(yaml_text, **kw)
    assert {p.code for p in info.value.problems} <= {
        PolicyCode.UNSUPPORTED, PolicyCode.UNAVAILABLE, PolicyCode.BAD_VALUE,
        PolicyCode.BAD_REFERENCE}
    return [f"{p.context.line}:{p.context.column} {p.message}" for p in info.value.problems]


def _one_error(yaml_text: str | Policy, **kw: object) -> str:
    [err] = _errors(yaml_text, **kw)
    return err.split(" ", 1)[1]


def _syscall(call: str, args: str, selectors: str = "", extra: str = "") -> str:
    """A kprobes body for syscall `call`; `args` and `selectors` are YAML at
    column 0 (list items), `extra` more hook keys."""
    out = f"kprobes:\n- call: {call}\n"
    out += "".join(f"  {line}\n" for line in dedent(extra).splitlines())
    if args:
        out += "  args:\n" + "".join(f"  {line}\n" for line in dedent(args).splitlines())
    if selectors:
        out += "  selectors:\n" + "".join(f"  {line}\n"
                                         for line in dedent(selectors).splitlines())
    return out


def _filters(c: CompiledPolicy, hook: int = 0, sel: int = 0) -> list[CompiledFilter]:
    return c.hooks[hook].selectors[sel].filters


def _replace_selectors(policy: Policy, *sels: Selector) -> Policy:
    """The policy with its first kprobe's selectors replaced (to reach checks
    the loader would already refuse)."""
    kp = dataclasses.replace(policy.kprobes[0], selectors=sels)
    return dataclasses.replace(policy, kprobes=(kp, *policy.kprobes[1:]))


# hand-written reference of bg_pol_hash (bpf/include/strmatch.bpf.h), independent of the module
def _ref_mix(h: int, w: int) -> int:
    h = ((h ^ w) * 0x9E3779B97F4A7C15) % (1 << 64)
    return h ^ (h >> 32)


def _ref_hash(seed: int, data: bytes) -> int:
    h = _ref_mix(seed, len(data))
    for i in range(0, len(data), 8):
        chunk = data[i:i + 8]
        chunk += bytes(8 - len(chunk))
        w = 0
        for j, b in enumerate(chunk):
            w |= b << (8 * j)
        h = _ref_mix(h, w)
    h ^= h >> 29
    h = (h * 0xBF58476D1CE4E5B9) % (1 << 64)
    return h ^ (h >> 32)


def _nr(name: str, compat: bool = False) -> int:
    nr = syscall_number(name, compat=compat)
    assert nr is not None
    return nr


OPENAT = _nr("openat")
DUP = _nr("dup")
DUP2 = _nr("dup2")
DUP_32 = _nr("dup", compat=True)
X86_64 = platform.machine() == "x86_64"


# -- the Tetragon fixtures -----------------------------------------------------------

# What the probe finds on this host (6.18: no trampolines, no kprobes) and in
# the Debian 6.1 guest of scripts/vmtest.
HOST = {"tp_btf": True, "tracepoint": True, "raw_tp": True, "send_signal": True,
        "fentry": False, "fexit": False, "fmod_ret": False, "lsm": False, "kprobe": False,
        "uprobe": True}
GUEST = dict.fromkeys(HOST, True)
# kernel BTF prototypes the fixtures and tests hook, as 6.1 and 6.18 have them
PROTOS = {
    "fd_install": ([("fd", "unsigned int"), ("file", "struct file *")], "void"),
    "security_file_permission": ([("file", "struct file *"), ("mask", "int")], "int"),
    "security_mmap_file": ([("file", "struct file *"), ("prot", "unsigned long"),
                            ("flags", "unsigned long")], "int"),
    "security_path_truncate": ([("path", "struct path *")], "int"),  # const dropped
    "commit_creds": ([("new", "struct cred *")], "int"),
    "bpf_lsm_bprm_check_security": ([("bprm", "struct linux_binprm *")], "int"),
    "bpf_lsm_file_open": ([("file", "struct file *")], "int"),
    "bpf_lsm_path_unlink": ([("dir", "struct path *"), ("dentry", "struct dentry *")], "int"),
    "security_inode_mkdir": ([("dir", "struct inode *"), ("dentry", "struct dentry *"),
                              ("mode", "umode_t")], "int"),
    "tcp_connect": ([("sk", "struct sock *")], "int"),
    "tcp_close": ([("sk", "struct sock *"), ("timeout", "long")], "void"),
    "tcp_sendmsg": ([("sk", "struct sock *"), ("msg", "struct msghdr *"),
                     ("size", "size_t")], "int"),
    "vfs_read": ([("file", "struct file *"), ("buf", "char *"), ("count", "size_t"),
                  ("pos", "loff_t *")], "ssize_t"),
    "__x64_sys_dup": ([("regs", "const struct pt_regs *")], "long"),
}
KPROBES_MSG = "needs BPF trampolines (fentry) or kprobes; this kernel has neither"
KPROBES_RET_MSG = ("needs BPF trampolines (fentry and fexit) or kprobes; this kernel has "
                   "neither")
LSM_MSG = "needs BPF LSM; this kernel does not have it"
FMOD_RET_MSG = "needs BPF trampolines (fmod_ret); this kernel does not have it"
OVERRIDE_MSG = (
    "Override on a syscall: bpfguard serves syscall kprobes on the syscall tracepoints, which "
    "cannot change a return value, and has no fmod_ret path for syscalls yet. Override the "
    "LSM hook or security_* function the syscall calls instead, e.g. lsmhooks path_symlink "
    "or kprobe security_path_symlink")
def _no_error_injection(action: str) -> str:
    return (f"{action} changes what a syscall returns, which needs fmod_ret (or "
            "bpf_override_return) on the syscall's function: only a kernel built with "
            "CONFIG_FUNCTION_ERROR_INJECTION allows it, and this one is not")


# refused on both kernels: neither has the error-injection list, and bpfguard
# would still refuse on one that has it
ALWAYS_REFUSED = {
    # the enforcers: fmod_ret programs, on syscalls, which need the list
    "killer.yaml": {
        "host": [("14:5", "spec.enforcers[0]", "enforcers: __x64_sys_dup: an enforcer is an "
                  "fmod_ret program; this kernel has no BPF trampolines (fmod_ret)")],
        "guest": [("14:5", "spec.enforcers[0]", "enforcers: __x64_sys_dup: an enforcer returns "
                   "its error by fmod_ret, which this kernel allows on security_* functions "
                   "only (built without CONFIG_FUNCTION_ERROR_INJECTION)")]},
    "symlink-override.yaml": [
        ("12:5", "spec.kprobes[0]", f"sys_symlinkat: {_no_error_injection('Override')}"),
        ("12:5", "spec.kprobes[0]",
         f"sys_symlinkat: on a kernel that has it, still refused: {OVERRIDE_MSG}")],
}
# refused here, served in the guest
FIXTURE_ERRORS = {
    "lsm_bprm_check.yaml": [("8:5", "spec.lsmhooks[0]", f"bprm_check_security: {LSM_MSG}")],
    "fd_install_ns_host.yaml": [("7:5", "spec.kprobes[0]", f"fd_install: {KPROBES_MSG}")],
    "filename_monitoring.yaml": [
        ("7:5", "spec.kprobes[0]", f"security_file_permission: {KPROBES_RET_MSG}"),
        ("24:5", "spec.kprobes[1]", f"security_mmap_file: {KPROBES_RET_MSG}"),
        ("43:5", "spec.kprobes[2]", f"security_path_truncate: {KPROBES_RET_MSG}")],
    "kprobe_commit_creds.yaml": [("7:5", "spec.kprobes[0]", f"commit_creds: {KPROBES_MSG}")],
    "lsm_file_open.yaml": [("7:5", "spec.lsmhooks[0]", f"file_open: {LSM_MSG}")],
    "override-security.yaml": [("7:5", "spec.kprobes[0]",
                                f"security_inode_mkdir: {FMOD_RET_MSG}")],
    "tcp-connect-only-private-addrs.yaml": [("23:5", "spec.kprobes[0]",
                                             f"tcp_connect: {KPROBES_MSG}")],
    "tcp-connect.yaml": [("7:5", "spec.kprobes[0]", f"tcp_connect: {KPROBES_MSG}"),
                         ("12:5", "spec.kprobes[1]", f"tcp_close: {KPROBES_MSG}"),
                         ("17:5", "spec.kprobes[2]", f"tcp_sendmsg: {KPROBES_MSG}")],
}
FIXTURE_OK = {  # file -> [(kind, routes)] per hook
    "list-syscalls-tracepoint.yaml": [("TRACEPOINT", ())],
    "openat_write.yaml": [("SYSCALL", (OPENAT,))],
    "raw_syscalls.yaml": [("TRACEPOINT", ())],
    "rawtp.yaml": [("RAW_TP", ())],
    "sys_clock_settime.yaml": [("SYSCALL", (_nr("clock_settime"),))],
    "sys_mount.yaml": [("SYSCALL", (_nr("mount"),))],
    "sys_pivot_root.yaml": [("SYSCALL", (_nr("pivot_root"),))],
    "sys_ptrace.yaml": [("SYSCALL", (_nr("ptrace"),))],
    "sys_setuid.yaml": [("SYSCALL", (_nr("setuid"),))],
    "write.yaml": [("SYSCALL", (_nr("write"),))],
}
# served in the guest: the programs of each hook
GUEST_PROGRAMS = {
    "fd_install_ns_host.yaml": [("bg_pol_fentry",)],
    "filename_monitoring.yaml": [("bg_pol_fentry", "bg_pol_fexit")] * 3,
    "kprobe_commit_creds.yaml": [("bg_pol_fentry",)],
    "lsm_bprm_check.yaml": [("bg_pol_ima_bprm_a", "bg_pol_lsm", "bg_pol_ima_bprm_b")],
    "lsm_file_open.yaml": [("bg_pol_lsm",)],
    "override-security.yaml": [("bg_pol_fmod_ret",)],
    "tcp-connect-only-private-addrs.yaml": [("bg_pol_fentry",)],
    "tcp-connect.yaml": [("bg_pol_fentry",)] * 3,
}


def _fn(name: str) -> tuple[list[tuple[str, str]], str] | None:
    return PROTOS.get(name)


def _fixture(name: str, features: dict[str, bool]) -> CompiledPolicy:
    return compile_policy(load_policy(FIXTURES / name), fields_of=fake_fields,
                          function_of=_fn, features=features)


def test_every_fixture_is_classified() -> None:
    names = {p.name for p in FIXTURES.glob("*.yaml")}
    groups = (FIXTURE_ERRORS, FIXTURE_OK, ALWAYS_REFUSED)
    assert names == set().union(*groups)
    assert sum(len(g) for g in groups) == len(names)
    assert set(GUEST_PROGRAMS) == set(FIXTURE_ERRORS)


@pytest.mark.parametrize(("name", "features"),
                         [(n, HOST) for n in sorted(FIXTURE_ERRORS | ALWAYS_REFUSED)]
                         + [(n, GUEST) for n in sorted(ALWAYS_REFUSED)])
def test_fixture_refused_with_the_missing_capability_at_the_hook(
        name: str, features: dict[str, bool]) -> None:
    path = FIXTURES / name
    with pytest.raises(PolicyError) as info:
        _fixture(name, features)
    expected = (FIXTURE_ERRORS | ALWAYS_REFUSED)[name]
    if isinstance(expected, dict):
        expected = expected["guest" if features is GUEST else "host"]
    got = [(f"{p.context.line}:{p.context.column}", p.context.name, p.message)
           for p in info.value.problems]
    assert got == expected
    text = str(info.value)
    for (where, ctx_name, msg), p in zip(expected, info.value.problems, strict=True):
        # the kernel's gaps apart from bpfguard's
        code = (PolicyCode.UNSUPPORTED if "still refused" in msg else PolicyCode.UNAVAILABLE)
        assert p.code == code
        assert f"{path}:{where}: {ctx_name}: {msg} [{code}]" in text


@pytest.mark.parametrize("name", sorted(FIXTURE_OK))
def test_fixture_compiles(name: str) -> None:
    for features in (HOST, GUEST):
        c = _fixture(name, features)
        assert [(h.kind, h.syscalls) for h in c.hooks] == FIXTURE_OK[name]


@pytest.mark.parametrize("name", sorted(GUEST_PROGRAMS))
def test_fixture_served_where_the_kernel_has_the_feature(name: str) -> None:
    c = _fixture(name, GUEST)
    assert [h.programs for h in c.hooks] == GUEST_PROGRAMS[name]
    assert all(h.kind == "FUNC" for h in c.hooks)


def test_fentries_use_trampolines_only() -> None:
    body = ("fentries:\n- call: tcp_connect\n  syscall: false\n  return: true\n"
            "  args:\n  - index: 0\n    type: sock\n  returnArg:\n    index: 0\n"
            "    type: int\n")
    [h] = _compile(body, features=GUEST).hooks
    assert (h.kind, h.programs, h.function_name, h.ret) == (
        "FUNC", ("bg_pol_fentry", "bg_pol_fexit"), "tcp_connect", True)
    # where kprobes would serve a kprobes entry, a fentries entry is refused
    assert _one_error(body, features=HOST | {"kprobe": True}) == (
        "tcp_connect: needs BPF trampolines (fentry and fexit); this kernel does not have it")
    [h] = _compile("fentries:\n- call: sys_openat\n", features=HOST).hooks
    assert (h.kind, h.syscalls) == ("SYSCALL", (OPENAT,))


def test_kprobes_serve_when_trampolines_do_not() -> None:
    c = _fixture("tcp-connect.yaml", HOST | {"kprobe": True})
    assert [h.programs for h in c.hooks] == [("bg_pol_kprobe",)] * 3
    c = _fixture("filename_monitoring.yaml", HOST | {"kprobe": True})
    assert [h.programs for h in c.hooks] == [("bg_pol_kprobe", "bg_pol_kretprobe")] * 3


def test_fixture_openat_write_details() -> None:
    c = compile_policy(load_policy(FIXTURES / "openat_write.yaml"), seed=77,
                       fields_of=fake_fields)
    [h] = c.hooks
    assert (h.ret, h.ret_type) == (True, "int")
    assert h.args == [CompiledArg("INT", 4, True, 0, 0, "int", "", 0),
                      CompiledArg("STRING", 8, False, 0, 1, "string", "", 1),
                      CompiledArg("INT", 4, True, 0, 2, "int", "", 2)]
    [sel] = h.selectors
    assert sel.filters == [CompiledFilter("STR_EQ", 1, False, 1),
                           CompiledFilter("MASK", 2, False, 0, (64 | 1 | 2,)),
                           CompiledFilter("GT", 7, True, 0, (0,))]
    assert c.sets.strs == [(1, 11, _ref_hash(77, b"/etc/passwd"))]
    assert c.set_ids == [1]


def test_fixture_write_and_pid_fixtures() -> None:
    w = compile_policy(load_policy(FIXTURES / "write.yaml"), fields_of=fake_fields)
    [h] = w.hooks
    assert [(a.type, a.size, a.is_signed, a.size_arg, a.src) for a in h.args] == [
        ("INT", 4, True, 0, 0), ("CHAR_BUF", 8, False, 3, 1), ("INT", 8, False, 0, 2)]
    [sel] = h.selectors
    assert (sel.pid_flags, sel.pids) == (1 | 2 | 4, (1,))
    assert sel.filters == [CompiledFilter("EQ", 0, False, 0, (1,))]
    c = compile_policy(load_policy(FIXTURES / "sys_clock_settime.yaml"), fields_of=fake_fields)
    assert (c.hooks[0].selectors[0].pid_flags, c.hooks[0].selectors[0].pids) == (7, (0, 1))


def test_fixture_tracepoints() -> None:
    c = compile_policy(load_policy(FIXTURES / "list-syscalls-tracepoint.yaml"),
                       fields_of=fake_fields)
    [h] = c.hooks
    assert (h.subsys, h.event) == ("raw_syscalls", "sys_enter")
    # index 4 of raw_syscalls:sys_enter is `id` (common_* fields counted), at offset 8
    assert h.args == [CompiledArg("INT", 8, False, 0, 8, "uint64", "id", 0)]
    assert h.selectors[0].filters == [CompiledFilter("IN_SET", 0, False, 1)]
    assert sorted(c.sets.ints) == sorted([(1, DUP), (1, DUP2)])

    raw = compile_policy(load_policy(FIXTURES / "raw_syscalls.yaml"), fields_of=fake_fields)
    assert raw.hooks[0].args == [CompiledArg("SYSCALL64", 8, False, 0, 8, "syscall64", "id", 0)]

    rawtp = compile_policy(load_policy(FIXTURES / "rawtp.yaml"), fields_of=fake_fields)
    assert rawtp.hooks[0].args == [
        CompiledArg("BINPRM", 8, False, 0, 2, "linux_binprm", "", 0)]


def test_problems_of_all_hooks_are_collected_and_nothing_is_returned() -> None:
    body = """\
    kprobes:
    - call: sys_openat
    - call: vfs_read
      syscall: false
    - call: sys_nonexistent_call
    """
    errs = _errors(body, features=HOST)
    assert errs == [
        f"8:5 vfs_read: {KPROBES_MSG}",
        "10:5 sys_nonexistent_call: unknown syscall 'sys_nonexistent_call' on "
        f"{machine().native.name}"]


# -- syscall hooks ------------------------------------------------------------------

def test_syscall_hook_routes_and_function_name() -> None:
    c = _compile(_syscall("sys_openat", "- index: 1\n  type: string\n  label: path\n"))
    [h] = c.hooks
    assert h.kind == "SYSCALL"
    assert h.syscalls == (OPENAT,)
    assert h.args == [CompiledArg("STRING", 8, False, 0, 1, "string", "path", 1)]
    assert h.selectors[0].actions == 1 and h.selectors[0].filters == []
    if X86_64:
        assert h.function_name == "__x64_sys_openat"


def test_syscall_hook_prefixed_names() -> None:
    c = _compile(_syscall("__x64_sys_openat", ""))
    assert c.hooks[0].syscalls == (OPENAT,)
    assert c.hooks[0].function_name == "__x64_sys_openat"
    c = _compile(_syscall("__ia32_sys_dup", ""))
    assert c.hooks[0].syscalls == (DUP_32 + NR_MAX,)
    assert c.hooks[0].function_name == "__ia32_sys_dup"
    c = _compile(_syscall("__ia32_sys_dup", ""), nr_max=1024)
    assert c.hooks[0].syscalls == (DUP_32 + 1024,)


def test_syscall_hook_on_a_list() -> None:
    body = dedent("""\
    lists:
    - name: dups
      type: syscalls
      values: [sys_dup, sys_dup2, __ia32_sys_dup, sys_dup]
    """) + _syscall("list:dups", "- index: 0\n  type: int\n")
    c = _compile(body)
    [h] = c.hooks
    assert h.syscalls == (DUP, DUP2, DUP_32 + NR_MAX)  # in order, without duplicates


def test_list_hook_function_name_is_left_to_the_event() -> None:
    body = dedent("""\
    lists:
    - name: dups
      type: syscalls
      values: [sys_dup, sys_dup2]
    """) + _syscall("list:dups", "")
    assert _compile(body).hooks[0].function_name == ""


def test_generated_syscalls_is_every_syscall_whose_entry_is_in_btf() -> None:
    body = dedent("""\
    lists:
    - name: all
      type: generated_syscalls
    """) + _syscall("list:all", "")
    known = {"__x64_sys_dup", "__x64_sys_dup2", "__x64_sys_openat"}
    [h] = _compile(body, function_of=lambda n: ([], "long") if n in known else None).hooks
    assert h.syscalls == (DUP, DUP2, syscall_number("openat"))
    assert _one_error(body, function_of=lambda n: None) == (
        "list:all: a generated_syscalls list: this kernel's BTF has none of the syscall "
        "entry functions")


def test_a_list_of_kernel_functions_is_a_hook_each(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    funcs = tmp_path / "available_filter_functions"
    funcs.write_text("fd_install\ntcp_connect\ntcp_close [some_module]\nvfs_read\n")
    import bpfguard.policy.compiler as compiler

    monkeypatch.setattr(compiler, "_AVAILABLE_FUNCTIONS", (str(tmp_path / "none"), str(funcs)))
    generated = dedent("""\
    lists:
    - name: tcp
      type: generated_ftrace
      pattern: ^tcp_
    kprobes:
    - call: list:tcp
    """)
    hooks = _compile(generated, features=GUEST).hooks
    assert [h.function_name for h in hooks] == ["tcp_connect", "tcp_close"]
    plain = "lists:\n- name: fs\n  values: [vfs_read, fd_install]\nkprobes:\n- call: list:fs\n"
    assert [h.function_name for h in _compile(plain, features=GUEST).hooks] == [
        "vfs_read", "fd_install"]
    assert _one_error(generated.replace("^tcp_", "^udp_"), features=GUEST) == (
        "list:tcp: list 'tcp': no traceable function of this kernel matches '^udp_'")
    funcs.unlink()
    assert _one_error(generated, features=GUEST).startswith(
        "list:tcp: list 'tcp': generated_ftrace reads the functions ftrace can trace")


def test_function_name_on_aarch64(monkeypatch: pytest.MonkeyPatch) -> None:
    arm = machine("aarch64")
    import bpfguard.sensors.syscall_table as table  # where the compiler reads it, at use

    monkeypatch.setattr(table, "native_arches", lambda: (arm.native, arm.compat))
    assert _compile(_syscall("sys_openat", "")).hooks[0].function_name == "__arm64_sys_openat"


def test_syscall_hook_errors() -> None:
    native = machine().native.name
    assert _one_error(_syscall("sys_nonexistent", "")) == (
        f"sys_nonexistent: unknown syscall 'sys_nonexistent' on {native}")
    # a number beyond the engine's routing table is as unknown
    assert _one_error(_syscall("sys_openat", ""), nr_max=OPENAT) == (
        f"sys_openat: unknown syscall 'sys_openat' on {native}")
    untyped = dedent("""\
    lists:
    - name: fns
      values: [do_sys_open]
    """) + _syscall("list:fns", "")
    # a list of no type names kernel functions, whatever `syscall` says (as Tetragon)
    assert _one_error(untyped) == (
        "list:fns: this kernel's BTF has no kernel function 'do_sys_open' (misspelt, "
        "inlined, or not in this kernel version)")


def _uprobe(extra: str = "", path: str = "/bin/sh", symbols: str = "[main, exit]") -> str:
    """A uprobes entry; `extra` lines go under it, at column 2."""
    return f"uprobes:\n- path: {path}\n  symbols: {symbols}\n{extra}"


def test_uprobe_links_one_target_per_symbol() -> None:
    [h] = _compile(_uprobe("  offsets: [0, 4]\n  args:\n  - index: 0\n    type: int\n"
                           "  - index: 1\n    type: string\n  - index: 2\n"
                           "    type: char_buf\n    sizeArgIndex: 1\n"), features=HOST).hooks
    assert (h.kind, h.binary, h.programs) == ("UPROBE", "/bin/sh", ("bg_pol_uprobe",))
    assert h.targets == (("main", 0, 0), ("exit", 4, 0))
    assert [(a.type, a.src, a.size_arg) for a in h.args] == [("INT", 0, 0), ("STRING", 1, 0),
                                                             ("CHAR_BUF", 2, 1)]


def test_uprobe_symbol_singular_and_file_offsets() -> None:
    [h] = _compile("uprobes:\n- path: /bin/sh\n  symbol: main\n").hooks
    assert h.targets == (("main", 0, 0),)
    [h] = _compile("uprobes:\n- path: /bin/sh\n  offsets: [4096]\n"
                   "  refCtrOffsets: [64]\n").hooks
    assert h.targets == (("", 4096, 64),)


@pytest.mark.parametrize(("body", "message"), [
    (_uprobe(path="bin/sh"), "give the binary's absolute path"),
    (_uprobe(path="/nonexistent/bin"), "/nonexistent/bin: no such file"),
    (_uprobe(path="/etc/passwd"), "/etc/passwd: not an ELF binary or library"),
    (_uprobe("  offsets: [1]\n"), "offsets has 1 entries for 2 symbols"),
    (_uprobe("  args:\n  - index: 0\n    type: file"),
     "a user function's argument is a user value"),
    (_uprobe("  args:\n  - index: 0\n    type: char_buf"), "char_buf needs sizeArgIndex"),
])
def test_uprobe_refusals(body: str, message: str) -> None:
    assert message in _one_error(body, features=HOST)


def test_uprobe_refuses_a_32_bit_binary(tmp_path: Path) -> None:
    elf32 = tmp_path / "elf32"
    elf32.write_bytes(b"\x7fELF\x01\x01\x01" + bytes(9) + b"\x02\x00\x03\x00")
    assert "not an x86-64 ELF object" in _one_error(_uprobe(path=str(elf32)), features=HOST)
    elf32.write_bytes(b"\x7fELF")  # cut short
    assert "not an ELF binary" in _one_error(_uprobe(path=str(elf32)), features=HOST)


def test_uprobe_refused_without_uprobes() -> None:
    assert _one_error(_uprobe(), features={**HOST, "uprobe": False}).endswith(
        "needs uprobes; this kernel does not have it")


# -- argument types -------------------------------------------------------------

INT_TYPES = {  # declared type -> (size, signed)
    "int": (4, True), "int8": (1, True), "uint8": (1, False), "int16": (2, True),
    "uint16": (2, False), "int32": (4, True), "uint32": (4, False), "int64": (8, True),
    "uint64": (8, False), "size_t": (8, False), "auto": (8, True), "capability": (4, True),
    "kernel_cap_t": (8, False), "cap_inheritable": (8, False), "cap_permitted": (8, False),
    "cap_effective": (8, False),
}


@pytest.mark.parametrize("typ", sorted(INT_TYPES))
def test_syscall_int_arguments(typ: str) -> None:
    c = _compile(_syscall("sys_setuid", f"- index: 3\n  type: {typ}\n"))
    size, signed = INT_TYPES[typ]
    assert c.hooks[0].args == [CompiledArg("INT", size, signed, 0, 3, typ, "", 3)]


def test_syscall_other_arguments_and_nop() -> None:
    args = """\
    - index: 0
      type: fd
    - index: 1
      type: char_buf
      sizeArgIndex: 3
    - index: 2
      type: nop
    - index: 3
      type: sockaddr
    - index: 4
      type: filename
    """
    c = _compile(_syscall("sys_write", args))
    assert c.hooks[0].args == [
        CompiledArg("FD", 8, False, 0, 0, "fd", "", 0),
        CompiledArg("CHAR_BUF", 8, False, 3, 1, "char_buf", "", 1),
        CompiledArg("SOCKADDR", 8, False, 0, 3, "sockaddr", "", 3),
        CompiledArg("STRING", 8, False, 0, 4, "filename", "", 4),
    ]
    c = _compile(_syscall("sys_write", "- index: 0\n  type: syscall64\n"))
    assert c.hooks[0].args == [CompiledArg("SYSCALL64", 8, False, 0, 0, "syscall64", "", 0)]


def test_return_copy_reads_at_return() -> None:
    [h] = _compile(_syscall("sys_read", "- index: 1\n  type: char_buf\n  returnCopy: true\n",
                            extra="return: true\nreturnArg:\n  index: 0\n  type: int\n")
                     ).hooks
    assert [(a.type, a.src, a.size_arg) for a in h.args] == [("CHAR_BUF_RET", 1, 0)]
    assert h.ret and h.reports_return
    # without return: true the event still waits for the bytes (as Tetragon's
    # retprobe does), and shows no return value
    [h] = _compile(_syscall("sys_read", "- index: 1\n  type: char_buf\n  returnCopy: true\n")
                   ).hooks
    assert h.ret and not h.reports_return


def test_syscall_argument_errors() -> None:
    assert _one_error(_syscall("sys_write", "- index: 1\n  type: char_buf\n")) == (
        "sys_write: argument 1: char_buf needs sizeArgIndex")
    assert _one_error(_syscall("sys_write", "- index: 1\n  type: file\n")) == (
        "sys_write: argument 1 of type 'file': a syscall argument is a user value (use int, "
        "string, char_buf, fd or sockaddr)")
    six = "".join(f"- index: {i % 5}\n  type: int\n" for i in range(6))
    assert _one_error(_syscall("sys_write", six)) == "sys_write: 6 arguments; at most 5"
    assert _one_error(_syscall("sys_openat", "", extra="""\
        return: true
        returnArg:
          index: 0
          type: string
        """)) == "sys_openat: returnArg type 'string': syscall hooks return integers"


def test_return_hook_ret_type() -> None:
    c = _compile(_syscall("sys_openat", "", extra="return: true\nreturnArg:\n  index: 0\n"
                                                  "  type: fd\n"))
    assert (c.hooks[0].ret, c.hooks[0].ret_type) == (True, "fd")
    # as Tetragon: return: true needs returnArg; returnArg alone is ignored, with a warning
    with pytest.raises(PolicyError, match="return: true needs returnArg"):
        _policy(_syscall("sys_openat", "", extra="return: true\n"))
    p = _policy(_syscall("sys_openat", "", extra="returnArg:\n  index: 0\n  type: int\n"))
    assert p.hooks[0].return_arg is None  # type: ignore[union-attr]
    assert [w.message for w in p.warnings] == ["returnArg is ignored without return: true"]


def _tp(subsys: str, event: str, args: str, selectors: str = "", raw: bool = False) -> str:
    out = f"tracepoints:\n- subsystem: {subsys}\n  event: {event}\n"
    if raw:
        out += "  raw: true\n"
    out += "  args:\n" + "".join(f"  {line}\n" for line in dedent(args).splitlines())
    if selectors:
        out += "  selectors:\n" + "".join(f"  {line}\n"
                                         for line in dedent(selectors).splitlines())
    return out


def test_tracepoint_arguments_index_the_format_fields() -> None:
    args = """\
    - index: 3
      type: auto
    - index: 4
      type: int
    - index: 5
      type: nop
    - index: 6
      type: auto
    - index: 7
      type: uint16
    - index: 8
      type: fd
    """
    c = _compile(_tp("syscalls", "sys_enter_openat", args))
    [h] = c.hooks
    assert h.kind == "TRACEPOINT"
    assert (h.subsys, h.event, h.syscalls, h.function_name) == (
        "syscalls", "sys_enter_openat", (), "")
    # index -> the index-th field (common_* included); src -> its offset;
    # CompiledArg.index -> the position in the args list (nop counted)
    assert h.args == [
        CompiledArg("INT", 4, True, 0, 4, "int64", "common_pid", 0),
        CompiledArg("INT", 4, True, 0, 8, "int", "__syscall_nr", 1),
        CompiledArg("STRING", 8, False, 0, 24, "string", "filename", 3),  # user char *
        CompiledArg("INT", 2, False, 0, 32, "uint16", "flags", 4),
        CompiledArg("FD", 8, False, 0, 40, "fd", "mode", 5),
    ]


def test_tracepoint_auto_types_and_kernel_strings() -> None:
    c = _compile(_tp("sched", "sched_process_exec", """\
        - index: 4
        - index: 5
          label: the_pid
        - index: 4
          type: string
        """))
    assert c.hooks[0].args == [
        CompiledArg("DATA_LOC", 4, False, 0, 8, "data_loc", "filename", 0),
        CompiledArg("INT", 4, True, 0, 12, "int64", "the_pid", 1),
        # not a syscalls tracepoint: a char pointer there is a kernel string
        CompiledArg("KSTRING", 8, False, 0, 8, "string", "filename", 2),
    ]
    c = _compile(_tp("sched", "sched_switch", "- index: 5\n- index: 4\n  type: uint64\n"))
    assert c.hooks[0].args == [
        CompiledArg("KSTRING", 8, False, 0, 24, "string", "reason", 0),
        # a field of 16 bytes is read as 8
        CompiledArg("INT", 8, False, 0, 8, "uint64", "prev_comm", 1),
    ]
    c = _compile(_tp("raw_syscalls", "sys_enter", "- index: 5\n"))
    assert c.hooks[0].args == [CompiledArg("INT", 8, False, 0, 16, "uint64", "args", 0)]


def test_tracepoint_argument_errors() -> None:
    assert _one_error(_tp("raw_syscalls", "sys_enter", "- index: 6\n  type: int\n")) == (
        "raw_syscalls:sys_enter: argument index 6: raw_syscalls:sys_enter has 6 fields "
        "(0-5, common_* fields included)")
    assert _one_error(_tp("raw_syscalls", "sys_enter", "- index: 4\n  type: file\n")) == (
        "raw_syscalls:sys_enter: argument 4 (long id) of type 'file' is not read from "
        "tracepoints by bpfguard (int types, string, data_loc, fd, syscall64)")
    assert _one_error(_tp("nope", "missing", "- index: 4\n")) == (
        "nope:missing: no tracepoint nope:missing on this kernel "
        "(see /sys/kernel/tracing/events)")
    assert _one_error(_tp("sched", "sched_switch", "- index: 6\n  type: uint8\n")) == (
        "sched:sched_switch: field odd at offset 65536")
    many = "".join(f"- index: {i}\n  type: int\n" for i in range(6))
    assert _one_error(_tp("raw_syscalls", "sys_enter", many)) == (
        "raw_syscalls:sys_enter: 6 arguments; at most 5")


def test_tracepoint_match_args_index_is_the_position_in_args() -> None:
    args = """\
    - index: 3
      type: nop
    - index: 4
      type: int64
    - index: 3
      type: int
    """
    sels = """\
    - matchArgs:
      - index: 1
        operator: Equal
        values: ["59"]
      - index: 2
        operator: Equal
        values: ["100"]
    """
    c = _compile(_tp("raw_syscalls", "sys_enter", args, sels))
    [h] = c.hooks
    assert [(a.src, a.index) for a in h.args] == [(8, 1), (4, 2)]
    # position 1 in args is the id, compiled as the hook's argument 0
    assert _filters(c) == [CompiledFilter("EQ", 0, False, 0, (59,)),
                           CompiledFilter("EQ", 1, False, 0, (100,))]
    # a filter on a nop argument: the hook does not read it
    sels_nop = "- matchArgs:\n  - index: 0\n    operator: Equal\n    values: [\"1\"]\n"
    assert _one_error(_tp("raw_syscalls", "sys_enter", args, sels_nop)) == (
        "raw_syscalls:sys_enter: a filter on argument position 0, which the hook does not "
        "read (declare it under args)")


def test_raw_tracepoint_arguments() -> None:
    args = """\
    - index: 0
      type: int
    - index: 1
      type: string
    - index: 2
      type: linux_binprm
    - index: 3
      type: file
    - index: 4
      type: path
    """
    c = _compile(_tp("sched", "sched_process_exec", args, raw=True))
    [h] = c.hooks
    assert h.kind == "RAW_TP"
    assert h.args == [
        CompiledArg("INT", 4, True, 0, 0, "int", "", 0),
        CompiledArg("KSTRING", 8, False, 0, 1, "string", "", 1),
        CompiledArg("BINPRM", 8, False, 0, 2, "linux_binprm", "", 2),
        CompiledArg("FILE", 8, False, 0, 3, "file", "", 3),
        CompiledArg("PATH", 8, False, 0, 4, "path", "", 4),
    ]
    assert _one_error(_tp("sched", "x", "- index: 5\n  type: int\n", raw=True)) == (
        "sched:x: argument index 5: raw tracepoints pass at most 5 arguments (0-4)")
    assert _one_error(_tp("sched", "x", "- index: 1\n  type: sock\n", raw=True)) == (
        "sched:x: argument 1 of type 'sock' is not read from raw tracepoints by bpfguard "
        "(int types, string, file, path, linux_binprm, syscall64)")


# -- integer filters --------------------------------------------------------------

def _int_filter(op: str, values: list[str], typ: str = "int", **kw: object) -> CompiledPolicy:
    vals = ", ".join(f'"{v}"' for v in values)
    return _compile(_syscall("sys_openat", f"- index: 2\n  type: {typ}\n",
                             f"- matchArgs:\n  - index: 2\n    operator: {op}\n"
                             f"    values: [{vals}]\n"), **kw)


def test_equal_inline_up_to_the_limit_then_a_set() -> None:
    vals = [str(v) for v in range(1, LIMITS.values + 1)]
    c = _int_filter("Equal", vals)
    assert _filters(c) == [CompiledFilter("EQ", 0, False, 0, tuple(range(1, 9)))]
    assert c.sets.ints == [] and c.set_ids == []
    c = _int_filter("NotEqual", ["-1", "0x10"])
    assert _filters(c) == [CompiledFilter("NEQ", 0, False, 0, (M64, 16))]

    vals9 = [str(v) for v in range(LIMITS.values + 1)]
    c = _int_filter("Equal", vals9)
    assert _filters(c) == [CompiledFilter("IN_SET", 0, False, 1)]
    assert c.sets.ints == [(1, v) for v in range(9)]
    c = _int_filter("NotEqual", [*vals9[:-1], "-2"])
    assert _filters(c) == [CompiledFilter("NOT_IN_SET", 0, False, 1)]
    assert c.sets.ints == [(1, v) for v in range(8)] + [(1, M64 - 1)]


def test_gt_lt_and_mask() -> None:
    assert _filters(_int_filter("GT", ["5"])) == [CompiledFilter("GT", 0, False, 0, (5,))]
    assert _filters(_int_filter("GreaterThan", ["-5"])) == [
        CompiledFilter("GT", 0, False, 0, (M64 - 4,))]
    assert _filters(_int_filter("LT", ["0x100"])) == [CompiledFilter("LT", 0, False, 0, (256,))]
    assert _filters(_int_filter("LessThan", ["7"])) == [CompiledFilter("LT", 0, False, 0, (7,))]
    assert _one_error(_syscall("sys_openat", "- index: 2\n  type: int\n",
                               "- matchArgs:\n  - index: 2\n    operator: GT\n"
                               "    values: [\"1\", \"2\"]\n")) == (
        "sys_openat: GT takes one value, not 2")
    vals = [str(1 << i) for i in range(10)] + ["0x300"]
    assert _filters(_int_filter("Mask", vals)) == [CompiledFilter("MASK", 0, False, 0, (1023,))]


def test_octal_values_compile_as_the_loader_and_tetragon_read_them() -> None:
    assert _filters(_int_filter("Mask", ["0100", "01"])) == [
        CompiledFilter("MASK", 0, False, 0, (0o101,))]


def test_in_map_syscall_list_marks_compat_with_bit_31() -> None:
    body = dedent("""\
    lists:
    - name: dups
      type: syscalls
      values: [sys_dup, __ia32_sys_dup]
    """) + _syscall("sys_openat", "- index: 2\n  type: syscall64\n",
                   "- matchArgs:\n  - index: 2\n    operator: InMap\n"
                   "    values: [\"list:dups\", \"7\"]\n  - index: 2\n"
                   "    operator: NotInMap\n    values: [\"10:12\"]\n")
    c = _compile(body)
    assert _filters(c) == [CompiledFilter("IN_SET", 0, False, 1),
                           CompiledFilter("NOT_IN_SET", 0, False, 2)]
    assert c.sets.ints == [(1, DUP), (1, DUP_32 | 1 << 31), (1, 7),
                           (2, 10), (2, 11), (2, 12)]
    assert c.set_ids == [1, 2]


def test_in_map_errors() -> None:
    def sel(values: str) -> str:
        return ("- matchArgs:\n  - index: 2\n    operator: InMap\n"
                f"    values: [{values}]\n")
    assert _one_error(_syscall("sys_openat", "- index: 2\n  type: int\n", sel('"9:3"'))) == (
        "sys_openat: range '9:3': at most 65536 values, low first")
    assert _one_error(_syscall("sys_openat", "- index: 2\n  type: int\n",
                               sel('"0:65536"'))) == (
        "sys_openat: range '0:65536': at most 65536 values, low first")
    assert len(_compile(_syscall("sys_openat", "- index: 2\n  type: int\n",
                                 sel('"0:65535"'))).sets.ints) == 65536
    gen = dedent("""\
    lists:
    - name: g
      type: generated_syscalls
    """) + _syscall("sys_openat", "- index: 2\n  type: int\n", sel('"list:g"'))
    assert _one_error(gen) == ("sys_openat: InMap on list 'g' of type generated_syscalls: "
                               "bpfguard takes syscalls lists here")


def test_in_map_negative_range_values_are_u64() -> None:
    c = _int_filter("InMap", ["-2:-1", "-1"])
    assert c.sets.ints == [(1, M64 - 1), (1, M64), (1, M64)]


def test_more_set_entries_than_the_engine_holds_is_refused() -> None:
    with pytest.raises(PolicyError):
        _int_filter("InMap", ["0:65535", "65536:131071"])


def test_operator_that_does_not_fit_the_compiled_type() -> None:
    # fd is an integer to the loader, a path to the engine
    assert _one_error(_syscall("sys_close", "- index: 0\n  type: fd\n",
                               "- matchArgs:\n  - index: 0\n    operator: InMap\n"
                               "    values: [\"3\"]\n")) == (
        "sys_close: operator InMap does not apply to a string or path")


# -- string filters ----------------------------------------------------------------

def _str_filter(op: str, values: list[str], **kw: object) -> CompiledPolicy:
    vals = ", ".join(f'"{v}"' for v in values)
    return _compile(_syscall("sys_openat", "- index: 1\n  type: string\n",
                             f"- matchArgs:\n  - index: 1\n    operator: {op}\n"
                             f"    values: [{vals}]\n"), **kw)


def test_string_equal_is_an_exact_set_of_seeded_hashes() -> None:
    seed = 0x0123456789ABCDEF
    c = _str_filter("Equal", ["/etc/passwd", "/etc/shadow", ""], seed=seed)
    assert _filters(c) == [CompiledFilter("STR_EQ", 0, False, 1)]
    assert c.sets.strs == [(1, 11, 0x8309A5BFC01A235B),
                           (1, 11, _ref_hash(seed, b"/etc/shadow")),
                           (1, 0, _ref_hash(seed, b""))]
    c = _str_filter("NotEqual", ["/tmp/ä"])
    assert _filters(c) == [CompiledFilter("STR_NEQ", 0, False, 1)]
    assert c.sets.strs == [(1, 7, _ref_hash(0, "/tmp/ä".encode()))]


def test_string_equal_length_limit() -> None:
    # a 4096-byte read ending in NUL may be a 4095-byte string or a cut
    # longer one: exact matching stops at 4094 so that it never guesses
    ok = "a" * LIMITS.string
    assert _str_filter("Equal", [ok]).sets.strs[0][:2] == (1, 4094)
    assert _one_error(_syscall("sys_openat", "- index: 1\n  type: string\n",
                               "- matchArgs:\n  - index: 1\n    operator: Equal\n"
                               f"    values: [\"{ok}b\"]\n")) == (
        "sys_openat: a value of 4095 bytes; strings match up to 4094")


def test_prefix_and_postfix() -> None:
    c = _str_filter("Prefix", ["/etc/", "/usr/lib"])
    assert _filters(c) == [CompiledFilter("PREFIX", 0, False, 1)]
    assert c.sets.prefixes == [(1, b"/etc/"), (1, b"/usr/lib")]
    assert c.sets.postfixes == []
    c = _str_filter("NotPrefix", ["/proc"])
    assert _filters(c) == [CompiledFilter("NOT_PREFIX", 0, False, 1)]
    c = _str_filter("Postfix", [".so", "/bin/sh"])
    assert _filters(c) == [CompiledFilter("POSTFIX", 0, False, 1)]
    assert c.sets.postfixes == [(1, b"os."), (1, b"hs/nib/")]
    assert c.sets.prefixes == []
    c = _str_filter("NotPostfix", ["ab"])
    assert _filters(c) == [CompiledFilter("NOT_POSTFIX", 0, False, 1)]
    assert c.sets.postfixes == [(1, b"ba")]


def test_prefix_length_limit() -> None:
    # Tetragon's limit, which the loader enforces too: one LPM trie per set
    # leaves all 256 key bytes to the string
    assert LIMITS.prefix == 256
    ok = "p" * LIMITS.prefix
    assert _str_filter("Prefix", [ok]).sets.prefixes == [(1, ok.encode())]
    assert _str_filter("Postfix", [ok]).sets.postfixes == [(1, ok.encode())]


def test_string_operator_errors() -> None:
    policy = _policy(_syscall("sys_openat", "- index: 1\n  type: string\n",
                              "- matchArgs:\n  - index: 1\n    operator: Equal\n"
                              "    values: [\"x\"]\n"))
    bad = Selector(match_args=(ArgSelector("GT", ("1",), 1),))
    assert _one_error(_replace_selectors(policy, bad)) == (
        "sys_openat: operator GT does not apply to a string or path")


def test_set_ids_come_from_the_allocator() -> None:
    ids = itertools.count(100, 7)
    body = _syscall("sys_openat", "- index: 1\n  type: string\n- index: 2\n  type: int\n",
                    "- matchArgs:\n  - index: 1\n    operator: Prefix\n    values: [\"/a\"]\n"
                    "  - index: 2\n    operator: InMap\n    values: [\"1\"]\n")
    c = _compile(body, next_set=lambda: next(ids))
    assert [f.set for f in _filters(c)] == [100, 107]
    assert c.set_ids == [100, 107]
    assert c.sets.prefixes == [(100, b"/a")] and c.sets.ints == [(107, 1)]


# -- socket address filters -----------------------------------------------------------

def _sock_filter(op: str, values: list[str]) -> CompiledPolicy:
    vals = ", ".join(f'"{v}"' for v in values)
    body = _syscall("sys_connect", "- index: 1\n  type: sockaddr\n",
                    f"- matchArgs:\n  - index: 1\n    operator: {op}\n")
    body += f"      values: [{vals}]\n" if values else ""
    return _compile(body)


def test_address_cidrs() -> None:
    c = _sock_filter("DAddr", ["10.1.2.3/8", "192.168.1.7", "2001:db8::/32", "::1"])
    assert _filters(c) == [CompiledFilter("DADDR", 0, False, 1)]
    v4 = bytes(10) + b"\xff\xff"
    assert c.sets.addrs == [
        (1, 96 + 8, v4 + bytes([10, 0, 0, 0])),
        (1, 128, v4 + bytes([192, 168, 1, 7])),
        (1, 32, bytes.fromhex("20010db8") + bytes(12)),
        (1, 128, bytes(15) + b"\x01"),
    ]
    for op, name in (("SAddr", "SADDR"), ("NotSAddr", "NOT_SADDR"), ("NotDAddr", "NOT_DADDR")):
        assert _filters(_sock_filter(op, ["0.0.0.0/0"])) == [CompiledFilter(name, 0, False, 1)]
    assert _sock_filter("SAddr", ["0.0.0.0/0"]).sets.addrs == [(1, 96, v4 + bytes(4))]


def test_ports_protocols_families() -> None:
    assert _filters(_sock_filter("DPort", ["80", "443"])) == [
        CompiledFilter("DPORT", 0, False, 0, (80, 443))]
    assert _filters(_sock_filter("NotSPort", ["22"])) == [
        CompiledFilter("NOT_SPORT", 0, False, 0, (22,))]
    assert _filters(_sock_filter("Protocol", ["IPPROTO_TCP", "IPPROTO_UDP", "1"])) == [
        CompiledFilter("PROTOCOL", 0, False, 0, (6, 17, 1))]
    assert _filters(_sock_filter("Family", ["AF_INET", "AF_INET6", "AF_UNIX"])) == [
        CompiledFilter("FAMILY", 0, False, 0, (2, 10, 1))]
    assert _filters(_sock_filter("State", ["TCP_ESTABLISHED", "TCP_LISTEN"])) == [
        CompiledFilter("STATE", 0, False, 0, (1, 10))]
    for op, name in (("DPortPriv", "DPORT_PRIV"), ("SPortPriv", "SPORT_PRIV"),
                     ("NotSportPriv", "NOT_SPORT_PRIV"), ("NotSPortPriv", "NOT_SPORT_PRIV"),
                     ("NotDPortPriv", "NOT_DPORT_PRIV")):
        assert _filters(_sock_filter(op, [])) == [CompiledFilter(name, 0, False, 0, ())]


def test_port_ranges_and_long_port_lists_become_a_set() -> None:
    # Tetragon's a:b port ranges; more ports than fit inline
    nine = ", ".join(f'"{p}"' for p in range(1, 10))
    for values, ports in ((f"[{nine}]", set(range(1, 10))),
                          ('["9922:9932", "80"]', {*range(9922, 9933), 80})):
        compiled = _compile(_syscall("sys_connect", "- index: 1\n  type: sockaddr\n",
                                     "- matchArgs:\n  - index: 1\n    operator: NotDPort\n"
                                     f"    values: {values}\n"))
        [f] = compiled.hooks[0].selectors[0].filters
        assert f.op == "NOT_DPORT_IN_SET"
        assert {v for s, v in compiled.sets.ints if s == f.set} == ports


def test_socket_filter_errors() -> None:
    policy = _policy(_syscall("sys_connect", "- index: 1\n  type: sockaddr\n"))
    bad_addr = Selector(match_args=(ArgSelector("SAddr", ("nope",), 1),))
    assert _one_error(_replace_selectors(policy, bad_addr)) == (
        "sys_connect: 'nope' is not an address or CIDR")
    bad_op = Selector(match_args=(ArgSelector("Prefix", ("/x",), 1),))
    assert _one_error(_replace_selectors(policy, bad_op)) == (
        "sys_connect: operator Prefix does not apply to a socket address")


# -- matchPIDs, matchBinaries, matchNamespaces, matchCapabilities ------------------

def _pids(*filters: str) -> str:
    sel = "- matchPIDs:\n" + "".join(f"  - {f}\n" for f in filters)
    return _syscall("sys_setuid", "", sel)


def test_match_pids_merging() -> None:
    c = _compile(_pids("operator: NotIn\n    values: [1, 5]",
                       "operator: NotIn\n    values: [0, 5]"))
    s = c.hooks[0].selectors[0]
    assert (s.pid_flags, s.pids) == (1, (0, 1, 5))  # NotIn AND NotIn: the union
    c = _compile(_pids("operator: In\n    values: [1, 2, 3]\n    isNamespacePID: true",
                       "operator: In\n    values: [4, 3, 2]\n    isNamespacePID: true"))
    s = c.hooks[0].selectors[0]
    assert (s.pid_flags, s.pids) == (2, (2, 3))  # In AND In: the intersection
    c = _compile(_pids("operator: In\n    values: [9]\n    followForks: true"))
    s = c.hooks[0].selectors[0]
    assert (s.pid_flags, s.pids) == (4, (9,))


def test_match_pids_errors() -> None:
    assert _one_error(_pids("operator: In\n    values: [1]",
                            "operator: NotIn\n    values: [2]")) == (
        "sys_setuid: matchPIDs filters with different operators or flags in one selector; "
        "bpfguard evaluates one (Tetragon only the first)")
    assert _one_error(_pids("operator: NotIn\n    values: [1]",
                            "operator: NotIn\n    values: [2]\n    followForks: true")) == (
        "sys_setuid: matchPIDs filters with different operators or flags in one selector; "
        "bpfguard evaluates one (Tetragon only the first)")
    assert _one_error(_pids("operator: In\n    values: [1]",
                            "operator: In\n    values: [2]")) == (
        "sys_setuid: matchPIDs In filters with no pid in common match nothing")
    assert _one_error(_pids("operator: NotIn\n    values: [1, 2, 3, 4, 5, 6, 7, 8, 9]")) == (
        "sys_setuid: 9 pids in matchPIDs; at most 8")


def _binaries(key: str, op: str, values: list[str], extra: str = "") -> str:
    vals = ", ".join(f'"{v}"' for v in values)
    return _syscall("sys_setuid", "",
                    f"- {key}:\n  - operator: {op}\n    values: [{vals}]\n{extra}")


def test_match_binaries(tmp_path: Path) -> None:
    c = _compile(_binaries("matchBinaries", "In", ["/usr/bin/bash", "/bin/sh"]), seed=5)
    s = c.hooks[0].selectors[0]
    assert (s.bin_op, s.bin_set, s.pbin_op, s.pbin_set) == (1, 1, 0, 0)
    assert c.sets.strs == [(1, 13, _ref_hash(5, b"/usr/bin/bash")),
                           (1, 7, _ref_hash(5, b"/bin/sh"))]
    c = _compile(_binaries("matchBinaries", "NotIn", ["/x"]))
    assert c.hooks[0].selectors[0].bin_op == 2
    c = _compile(_binaries("matchBinaries", "Prefix", ["/usr/"]))
    assert (c.hooks[0].selectors[0].bin_op, c.sets.prefixes) == (3, [(1, b"/usr/")])
    c = _compile(_binaries("matchBinaries", "NotPrefix", ["/usr/"]))
    assert c.hooks[0].selectors[0].bin_op == 4
    c = _compile(_binaries("matchParentBinaries", "Postfix", ["/sshd"]))
    s = c.hooks[0].selectors[0]
    assert (s.bin_op, s.pbin_op, s.pbin_set, c.sets.postfixes) == (0, 5, 1, [(1, b"dhss/")])
    c = _compile(_binaries("matchParentBinaries", "NotPostfix", ["/sshd"]))
    assert c.hooks[0].selectors[0].pbin_op == 6


def test_match_binaries_follow_children_keeps_the_values() -> None:
    c = _compile(_binaries("matchBinaries", "NotIn", ["/bin/sh"], "    followChildren: true\n"))
    s = c.hooks[0].selectors[0]
    assert (s.bin_op, s.bin_follow, s.pbin_follow) == (2, ("/bin/sh",), None)
    assert _compile(_binaries("matchBinaries", "In", ["/bin/sh"])).hooks[0].selectors[
        0].bin_follow is None


def test_match_binaries_errors() -> None:
    assert _one_error(_binaries("matchBinaries", "In", ["/a"],
                                "  - operator: In\n    values: [\"/b\"]\n")) == (
        "sys_setuid: 2 matchBinaries filters; Tetragon and bpfguard take one")


def _ns_root(tmp_path: Path) -> Path:
    root = tmp_path / "ns"
    root.mkdir()
    for name in ("pid", "net", "mnt", "user", "time_for_children"):
        (root / name).write_text(name)
    return root


def test_match_namespaces(tmp_path: Path) -> None:
    root = _ns_root(tmp_path)
    sel = """\
    - matchNamespaces:
      - namespace: Pid
        operator: In
        values: [host_ns]
      - namespace: Net
        operator: NotIn
        values: ["4026531840", host_ns, "0x10"]
      - namespace: TimeForChildren
        operator: In
        values: [host_ns]
    """
    c = _compile(_syscall("sys_setuid", "", sel), ns_root=str(root))
    ino = {n: os.stat(root / n).st_ino for n in ("pid", "net", "time_for_children")}
    assert c.hooks[0].selectors[0].ns == [
        (4, False, (ino["pid"],)),
        (6, True, (4026531840, ino["net"], 16)),
        (8, False, (ino["time_for_children"],)),
    ]


def test_match_namespaces_errors(tmp_path: Path) -> None:
    root = _ns_root(tmp_path)
    missing = "- matchNamespaces:\n  - namespace: Uts\n    operator: In\n    values: [host_ns]\n"
    assert _one_error(_syscall("sys_setuid", "", missing), ns_root=str(root)) == (
        "sys_setuid: host_ns for Uts: No such file or directory")
    five = "- matchNamespaces:\n" + "".join(
        f"  - namespace: {ns}\n    operator: In\n    values: [\"1\"]\n"
        for ns in ("Pid", "Net", "Mnt", "User", "Ipc"))
    assert _one_error(_syscall("sys_setuid", "", five), ns_root=str(root)) == (
        "sys_setuid: 5 matchNamespaces filters; at most 4")
    many = ("- matchNamespaces:\n  - namespace: Pid\n    operator: In\n"
            "    values: [\"1\", \"2\", \"3\", \"4\", \"5\"]\n")
    assert _one_error(_syscall("sys_setuid", "", many), ns_root=str(root)) == (
        "sys_setuid: 5 values in matchNamespaces; at most 4")


def test_match_capabilities() -> None:
    sel = """\
    - matchCapabilities:
      - type: Permitted
        operator: NotIn
        values: [CAP_SYS_ADMIN, CAP_NET_RAW, CAP_CHECKPOINT_RESTORE]
    """
    s = _compile(_syscall("sys_setuid", "", sel)).hooks[0].selectors[0]
    assert (s.cap_op, s.cap_type, s.cap_mask) == (2, 2, (1 << 21) | (1 << 13) | (1 << 40))
    sel = "- matchCapabilities:\n  - operator: In\n    values: [CAP_CHOWN]\n"
    s = _compile(_syscall("sys_setuid", "", sel)).hooks[0].selectors[0]
    assert (s.cap_op, s.cap_type, s.cap_mask) == (1, 0, 1)
    sel = ("- matchCapabilities:\n  - type: Inheritable\n    operator: In\n"
           "    values: [CAP_KILL]\n")
    s = _compile(_syscall("sys_setuid", "", sel)).hooks[0].selectors[0]
    assert (s.cap_op, s.cap_type, s.cap_mask) == (1, 1, 1 << 5)


def test_match_capabilities_errors(tmp_path: Path) -> None:
    sel = ("- matchCapabilities:\n  - operator: In\n    isNamespaceCapability: true\n"
           "    values: [CAP_CHOWN]\n")
    assert _one_error(_syscall("sys_setuid", "", sel)) == (
        "sys_setuid: isNamespaceCapability: the host's user namespace "
        "(/nonexistent-ns-root/user): No such file or directory")
    two = ("- matchCapabilities:\n  - operator: In\n    values: [CAP_CHOWN]\n"
           "  - operator: In\n    values: [CAP_KILL]\n")
    assert _one_error(_syscall("sys_setuid", "", two)) == (
        "sys_setuid: more than one matchCapabilities filter in a selector")
    (tmp_path / "user").write_text("")
    mixed = ("- matchCapabilities:\n  - operator: In\n    values: [CAP_CHOWN]\n"
             "  matchCapabilityChanges:\n  - operator: In\n    isNamespaceCapability: true\n"
             "    values: [CAP_KILL]\n")
    assert "different isNamespaceCapability" in _one_error(
        _syscall("sys_setuid", "", mixed), ns_root=str(tmp_path))


def test_capability_and_namespace_changes(tmp_path: Path) -> None:
    (tmp_path / "user").write_text("")
    sel = ("- matchCapabilityChanges:\n  - type: Permitted\n    operator: NotIn\n"
           "    isNamespaceCapability: true\n    values: [CAP_SYS_ADMIN, CAP_KILL]\n"
           "  matchNamespaceChanges:\n  - operator: In\n    values: [Mnt, User]\n")
    [s] = _compile(_syscall("sys_setuid", "", sel), ns_root=str(tmp_path)).hooks[0].selectors
    assert (s.capc_op, s.capc_type, s.capc_mask) == (2, CAP_TYPE["Permitted"],
                                                    1 << 21 | 1 << 5)
    assert s.cap_userns == (tmp_path / "user").stat().st_ino and s.cap_op == 0
    assert (s.nsc_op, s.nsc_mask) == (1, 1 << NS_KIND["Mnt"] | 1 << NS_KIND["User"])


# -- actions ----------------------------------------------------------------------

def _actions(actions: str, extra: str = "") -> str:
    return _syscall("sys_setuid", "- index: 0\n  type: int\n",
                    "- matchActions:\n" + "".join(f"  {line}\n"
                                                  for line in dedent(actions).splitlines()),
                    extra)


def test_actions() -> None:
    s = _compile(_syscall("sys_setuid", "", "- matchPIDs:\n  - operator: In\n"
                                            "    values: [1]\n")).hooks[0].selectors[0]
    assert (s.actions, s.ret_actions, s.signal, s.enforcing) == (1, 0, 0, ())
    s = _compile(_actions("- action: NoPost")).hooks[0].selectors[0]
    assert s.actions == 2
    s = _compile(_actions("- action: Sigkill")).hooks[0].selectors[0]
    assert (s.actions, s.enforcing) == (4, ("Sigkill",))
    s = _compile(_actions("- action: Post\n- action: Signal\n  argSig: 10\n"
                          "- action: Sigkill\n- action: Signal\n  argSig: 10\n")
                 ).hooks[0].selectors[0]
    assert (s.actions, s.signal, s.enforcing) == (1 | 8 | 4, 10, ("Signal", "Sigkill"))


def test_return_actions() -> None:
    sel = ("- matchReturnArgs:\n  - index: 0\n    operator: LT\n    values: [\"0\"]\n"
           "  matchReturnActions:\n  - action: Sigkill\n")
    c = _compile(_syscall("sys_openat", "", sel, extra="return: true\nreturnArg:\n"
                                                       "  index: 0\n  type: int\n"))
    s = c.hooks[0].selectors[0]
    assert (s.actions, s.ret_actions, s.enforcing) == (1, 4, ("Sigkill",))
    assert (s.call_enforcing, s.ret_enforcing) == ((), ("Sigkill",))
    assert s.filters == [CompiledFilter("LT", 7, True, 0, (0,))]


@pytest.mark.parametrize(("text", "ms"), [
    ("30", 30_000), ("30s", 30_000), ("2m", 120_000), ("1h", 3_600_000), ("0", 0),
    (" 5M ", 300_000), ("2H", 7_200_000), ("99999999h", 0xFFFFFFFF),
])
def test_parse_rate(text: str, ms: int) -> None:
    assert parse_rate(text) == ms


@pytest.mark.parametrize("text", ["", "m", "1d", "-1", "1.5s", "1ms", "1 m s", "abc"])
def test_parse_rate_malformed(text: str) -> None:
    assert parse_rate(text) is None


def test_rate_limit_in_selectors() -> None:
    s = _compile(_actions("- action: Post\n  rateLimit: 2m\n  rateLimitScope: process\n")
                 ).hooks[0].selectors[0]
    assert (s.rate_ms, s.rate_scope) == (120_000, 1)
    s = _compile(_actions("- action: Post\n  rateLimit: \"30\"\n")).hooks[0].selectors[0]
    assert (s.rate_ms, s.rate_scope) == (30_000, 0)
    s = _compile(_actions("- action: Post\n  rateLimit: 1h\n  rateLimitScope: global\n")
                 ).hooks[0].selectors[0]
    assert (s.rate_ms, s.rate_scope) == (3_600_000, 2)
    policy = _policy(_actions("- action: Post"))
    bad = Selector(match_actions=(Action("Post", rate_limit="soon"),))
    assert _one_error(_replace_selectors(policy, bad)) == (
        "sys_setuid: rateLimit 'soon': a number with s, m or h")


def test_signal_needs_a_signal_number() -> None:
    policy = _policy(_actions("- action: Post"))
    for sig in (None, 0, 65):
        bad = Selector(match_actions=(Action("Signal", arg_sig=sig),))
        assert _one_error(_replace_selectors(policy, bad)) == (
            "sys_setuid: Signal needs argSig (1-64)")
    ok = Selector(match_actions=(Action("Signal", arg_sig=64),))
    s = _compile(_replace_selectors(policy, ok)).hooks[0].selectors[0]
    assert (s.actions, s.signal) == (8, 64)


def test_unsupported_actions() -> None:
    assert _one_error(_actions("- action: Override\n  argError: -1")) == (
        f"sys_setuid: {OVERRIDE_MSG}")
    assert _one_error(_actions("- action: NotifyEnforcer\n  argSig: 9")) == (
        "sys_setuid: NotifyEnforcer arms the policy's enforcers, and it has none "
        "(spec.enforcers)")
    assert _one_error(_actions("- action: FollowFD\n  argFd: 0\n  argName: 0")) == (
        "sys_setuid: FollowFD: FollowFD/UnfollowFD/CopyFD are deprecated in Tetragon; use "
        "the fd or file argument types, which bpfguard resolves at the hook")
    assert _one_error(_actions("- action: UnfollowFD\n  argFd: 0")) == (
        "sys_setuid: UnfollowFD: see FollowFD")
    assert _one_error(_actions("- action: Post\n  imaHash: true")) == (
        "sys_setuid: imaHash: bpfguard hashes files on lsmhooks hooks (the hash is taken in "
        "a sleepable BPF LSM program)")


def test_stack_traces_on_kprobes_only() -> None:
    [h] = _compile(_actions("- action: Post\n  kernelStackTrace: true\n"
                            "  userStackTrace: true")).hooks
    assert h.selectors[0].stacks == STACK["KERNEL"] | STACK["USER"]
    [h] = _compile(_actions("- action: Post\n  userStackTrace: true")).hooks
    assert h.selectors[0].stacks == STACK["USER"]
    tp = """
    tracepoints:
    - subsystem: syscalls
      event: sys_enter_openat
      selectors:
      - matchActions:
        - action: Post
          kernelStackTrace: true
    """
    assert _one_error(tp) == (
        "syscalls:sys_enter_openat: kernelStackTrace/userStackTrace: Tetragon's events carry "
        "stack traces on kprobes only (process_kprobe)")


def test_notify_enforcer_arms_fmod_ret_enforcers() -> None:
    body = ("enforcers:\n- calls: [security_file_permission]\n"
            + _actions("- action: NotifyEnforcer\n  argError: -1\n  argSig: 9"))
    hooks = _compile(body, features=GUEST).hooks
    assert [(h.kind, h.function_name, h.programs, h.nparams) for h in hooks[1:]] == [
        ("ENFORCER", "security_file_permission", ("bg_pol_enforce",), 2)]
    s = hooks[0].selectors[0]
    assert (s.notify, s.notify_error, s.notify_sig, s.enforcing) == (
        1, -1, 9, ("NotifyEnforcer",))
    assert _one_error(body.replace("security_file_permission", "vfs_read"),
                      features=GUEST).endswith("vfs_read: an enforcer returns its error by "
                                               "fmod_ret, which this kernel allows on "
                                               "security_* functions only (built without "
                                               "CONFIG_FUNCTION_ERROR_INJECTION)")
    at_return = ("enforcers:\n- calls: [security_file_permission]\n" + _syscall(
        "sys_setuid", "", "- matchReturnActions:\n  - action: NotifyEnforcer\n"
        "    argSig: 9\n", "return: true\nreturnArg: {index: 0, type: int}"))
    assert "NotifyEnforcer in matchReturnActions" in _errors(at_return, features=GUEST)[0]
    method = "options:\n- {name: override-method, value: override-return}\n" + body
    assert "override-method override-return: bpfguard overrides return values by fmod_ret" \
        in _one_error(method, features=GUEST)


def test_get_url_and_dns_lookup_post_for_the_agent() -> None:
    [h] = _compile(_actions("- action: GetUrl\n  argUrl: http://x\n"
                            "- action: DnsLookup\n  argFqdn: canary.example")).hooks
    [s] = h.selectors
    assert s.actions == ACT["POST"]
    assert s.call_agent == (("GetUrl", "http://x"), ("DnsLookup", "canary.example"))


def test_ima_hash_needs_a_file_or_binprm_first() -> None:
    body = ("lsmhooks:\n- hook: {hook}\n  selectors:\n  - matchActions:\n"
            "    - action: Post\n      imaHash: true\n")
    [h] = _compile(body.format(hook="file_open"), features=GUEST).hooks
    assert h.programs == ("bg_pol_ima_file_a", "bg_pol_lsm", "bg_pol_ima_file_b")
    assert h.selectors[0].actions == ACT["POST"] | ACT["IMA_HASH"]
    assert _one_error(body.format(hook="path_unlink"), features=GUEST) == (
        "path_unlink: imaHash hashes the file of the hook's first parameter, a struct file * "
        "or struct linux_binprm *; path_unlink's is struct path *")


def test_return_args_and_actions_need_return() -> None:
    policy = _policy(_syscall("sys_openat", ""))
    ret_arg = Selector(match_return_args=(ArgSelector("GT", ("0",), 0),))
    assert _one_error(_replace_selectors(policy, ret_arg)) == (
        "sys_openat: matchReturnArgs needs return: true")
    ret_act = Selector(match_return_actions=(Action("Post"),))
    assert _one_error(_replace_selectors(policy, ret_act)) == (
        "sys_openat: matchReturnActions needs return: true")
    tp = _policy(_tp("raw_syscalls", "sys_enter", "- index: 4\n"))
    hook = dataclasses.replace(tp.tracepoints[0], selectors=(ret_arg,))
    assert _one_error(dataclasses.replace(tp, tracepoints=(hook,))) == (
        "raw_syscalls:sys_enter: matchReturnArgs needs return: true")


# -- limits --------------------------------------------------------------------------

def test_selector_count_limit() -> None:
    policy = _policy(_syscall("sys_setuid", ""))
    eight = _compile(_replace_selectors(policy, *[Selector()] * LIMITS.selectors))
    assert len(eight.hooks[0].selectors) == 8
    assert _one_error(_replace_selectors(policy, *[Selector()] * (LIMITS.selectors + 1))) == (
        "sys_setuid: 9 selectors; the engine evaluates 8")


def test_filter_count_limit() -> None:
    policy = _policy(_syscall("sys_setuid", "- index: 0\n  type: int\n"))
    f = ArgSelector("Equal", ("1",), 0)
    eight = _compile(_replace_selectors(policy, Selector(match_args=(f,) * 8)))
    assert len(_filters(eight)) == 8
    assert _one_error(_replace_selectors(policy, Selector(match_args=(f,) * 9))) == (
        "sys_setuid: 9 argument filters in one selector; the engine evaluates 8")


def test_hook_count_limit() -> None:
    policy = _policy(_syscall("sys_setuid", ""))
    full = dataclasses.replace(policy, kprobes=policy.kprobes * LIMITS.hooks)
    assert len(_compile(full).hooks) == 512
    over = dataclasses.replace(policy, kprobes=policy.kprobes * (LIMITS.hooks + 1))
    assert _errors(over) == ["1:1 513 hooks; the engine holds 512"]


def test_limits_match_the_engine_header() -> None:
    header = (Path(__file__).resolve().parents[3] / "bpf" / "include" / "bpfguard.h").read_text()
    for name, value in (("BG_POL_ARGS", LIMITS.args), ("BG_POL_RESOLVE", LIMITS.resolve),
                        ("BG_POL_SELECTORS", LIMITS.selectors),
                        ("BG_POL_FILTERS", LIMITS.filters), ("BG_POL_VALUES", LIMITS.values),
                        ("BG_POL_NS_FILTERS", LIMITS.ns_filters),
                        ("BG_POL_NS_VALUES", LIMITS.ns_values),
                        ("BG_POL_PREFIX_MAX", LIMITS.prefix), ("BG_POL_HOOKS", LIMITS.hooks),
                        ("BG_POL_SYSCALL_HOOKS", LIMITS.syscall_hooks),
                        ("BG_POL_SETS", LIMITS.set_entries), ("BG_STR_MAX", LIMITS.string + 2),
                        ("BG_NR_MAX", NR_MAX), ("BG_POL_RET", RET_ARG),
                        ("BG_POL_PREFIX_SETS", LIMITS.prefix_sets)):
        assert f"#define {name} {value} " in header or f"#define {name} {value}\n" in header


# -- string_hash ------------------------------------------------------------------

@pytest.mark.parametrize(("seed", "data", "expected"), [
    (0, b"", 0),  # mix(0, 0) is 0, and the finalizer keeps 0
    (1, b"", 0x15748FBF2867D134),
    (0, b"a", 0x03BA2C655806F286),
    (0, b"/etc/passwd", 0x32B85A9D2AB5B777),
    (0x0123456789ABCDEF, b"/etc/passwd", 0x8309A5BFC01A235B),
    (0, b"12345678", 0x4B3CE1ABED21B11B),
    (0, b"123456789", 0xFC1987312F12D451),
])
def test_string_hash_fixed_values(seed: int, data: bytes, expected: int) -> None:
    assert _ref_hash(seed, data) == expected  # the reference itself is pinned
    assert string_hash(seed, data) == expected


def test_string_hash_matches_the_reference_at_every_padding() -> None:
    data = bytes(range(1, 40))
    for n in range(len(data)):
        for seed in (0, 0xDEADBEEF, M64):
            assert string_hash(seed, data[:n]) == _ref_hash(seed, data[:n])


def test_string_hash_seed_sensitivity_and_length() -> None:
    for data in (b"", b"x", b"/etc/passwd", b"a" * 100):
        hashes = {string_hash(seed, data) for seed in range(64)}
        assert len(hashes) == 64
    # zero padding is not ambiguous: the length is mixed in first
    assert string_hash(7, b"ab") != string_hash(7, b"ab\0")
    assert string_hash(7, b"") != string_hash(7, b"\0")
    assert all(0 <= string_hash(s, b"q") <= M64 for s in (0, 1, M64))


# -- tracepoint_fields ----------------------------------------------------------------

RAW_SYS_ENTER_FORMAT = """\
name: sys_enter
ID: 22
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;
\tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;

print fmt: "NR %ld (%lx, %lx, %lx, %lx, %lx, %lx)", REC->id, REC->args[0], REC->args[1]
"""

EXEC_FORMAT = """\
name: sched_process_exec
ID: 300
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:const char * name;\toffset:16;\tsize:8;\tsigned:0;

print fmt: "filename=%s pid=%d", __get_str(filename), REC->pid
"""


def _tracefs(root: Path, subsys: str, event: str, text: str) -> None:
    d = root / "events" / subsys / event
    d.mkdir(parents=True)
    (d / "format").write_text(text)


def test_tracepoint_fields_parses_a_format_file(tmp_path: Path) -> None:
    _tracefs(tmp_path, "raw_syscalls", "sys_enter", RAW_SYS_ENTER_FORMAT)
    fields = tracepoint_fields("raw_syscalls", "sys_enter", roots=(str(tmp_path),))
    assert fields == RAW_SYS_ENTER
    assert [f.is_data_loc for f in fields] == [False] * 6
    assert [f.is_char_ptr for f in fields] == [False] * 6


def test_tracepoint_fields_data_loc_and_pointers(tmp_path: Path) -> None:
    _tracefs(tmp_path, "sched", "sched_process_exec", EXEC_FORMAT)
    fields = tracepoint_fields("sched", "sched_process_exec", roots=(str(tmp_path),))
    assert fields is not None
    assert [(f.name, f.offset, f.size, f.signed) for f in fields[4:]] == [
        ("filename", 8, 4, False), ("pid", 12, 4, True), ("name", 16, 8, False)]
    assert [(f.is_data_loc, f.is_char_ptr) for f in fields[4:]] == [
        (True, False), (False, False), (False, True)]
    assert fields[4].decl == "__data_loc char[] filename"


def test_tracepoint_fields_tries_each_root(tmp_path: Path) -> None:
    second = tmp_path / "second"
    _tracefs(second, "raw_syscalls", "sys_enter", RAW_SYS_ENTER_FORMAT)
    roots = (str(tmp_path / "first"), str(second))
    assert tracepoint_fields("raw_syscalls", "sys_enter", roots=roots) == RAW_SYS_ENTER
    assert tracepoint_fields("raw_syscalls", "sys_exit", roots=roots) is None
    assert tracepoint_fields("nope", "sys_enter", roots=roots) is None


@pytest.mark.parametrize(("subsys", "event"), [
    ("..", "sys_enter"), ("raw_syscalls", ".."), ("../events/raw_syscalls", "sys_enter"),
    ("raw_syscalls", "../raw_syscalls/sys_enter"), ("a/b", "c"), ("/abs", "x"),
    ("raw_syscalls", "sys_enter/../sys_enter"),
])
def test_tracepoint_fields_refuses_paths(tmp_path: Path, subsys: str, event: str) -> None:
    _tracefs(tmp_path, "raw_syscalls", "sys_enter", RAW_SYS_ENTER_FORMAT)
    # a format file where a traversal would find one
    (tmp_path / "events" / "format").write_text(RAW_SYS_ENTER_FORMAT)
    (tmp_path / "sys_enter").mkdir()
    (tmp_path / "sys_enter" / "format").write_text(RAW_SYS_ENTER_FORMAT)
    assert tracepoint_fields(subsys, event, roots=(str(tmp_path / "x"), str(tmp_path))) is None


def test_tracepoint_with_nul_in_its_name_is_a_policy_error(tmp_path: Path) -> None:
    policy = _policy('tracepoints:\n- subsystem: "raw\\0syscalls"\n  event: sys_enter\n'
                     '  args:\n  - index: 4\n')
    assert policy.tracepoints[0].subsystem == "raw\0syscalls"
    with pytest.raises(PolicyError):
        compile_policy(policy, fields_of=lambda s, e: tracepoint_fields(
            s, e, roots=(str(tmp_path),)))


def test_a_kernel_gap_does_not_hide_what_bpfguard_would_still_refuse() -> None:
    """On a host without kprobes or fentry a function hook is refused for the
    kernel, and compiled for one that has them: what bpfguard itself cannot
    serve there is named too."""
    body = """
    kprobes:
    - call: fd_install
      syscall: false
      args:
      - index: 1
        type: load_info
    - call: fd_install
      syscall: false
      args:
      - index: 1
        type: file
    """
    errs = _errors(body, features=HOST)
    assert errs[0] == f"8:5 fd_install: {KPROBES_MSG}"
    assert errs[1].startswith("8:5 fd_install: on a kernel that has it, still refused: "
                              "argument 1 of type 'load_info' is not read")
    assert errs[2:] == [f"13:5 fd_install: {KPROBES_MSG}"]  # nothing more to say of this one
    assert _errors(body, features=GUEST)[0].startswith("8:5 fd_install: argument 1 of type "
                                                        "'load_info'")


def test_the_kernel_gap_alone_where_this_kernels_btf_cannot_tell_more() -> None:
    from bpfguard.errors import KernelError

    body = "lsmhooks:\n- hook: file_open\n  args:\n  - index: 0\n    type: file\n"
    # no bpf_lsm_file_open in BTF (a kernel without BPF LSM): nothing to add
    assert len(_errors(body, features=HOST, function_of=lambda _n: None)) == 1

    def no_btf(_name: str) -> None:
        raise KernelError("btf_load", 2)

    kprobe = "kprobes:\n- call: fd_install\n  syscall: false\n"
    assert len(_errors(kprobe, features=HOST, function_of=no_btf)) == 1


# -- matchArgs args: positions in the args list ------------------------------------

def test_match_args_args_is_a_position_not_an_index() -> None:
    # as Tetragon's argIndexType: args[0] is a position in the hook's args,
    # index names the first argument with that index
    body = _syscall("sys_lseek", """
        - {index: 2, type: int}
        - {index: 1, type: int}
        - {index: 0, type: nop}
        - {index: 1, type: int}
        """, """
        - matchArgs:
          - {args: [3], operator: Equal, values: ["7"]}
          - {index: 1, operator: Equal, values: ["8"]}
        """)
    [sel] = _compile(body).hooks[0].selectors
    # position 3 is the third argument read (the nop is not); index 1 is position 1
    assert [(f.arg, f.vals) for f in sel.filters] == [(2, (7,)), (1, (8,))]


def test_match_args_args_out_of_range_or_nop() -> None:
    with pytest.raises(PolicyError) as info:
        _policy(_syscall("sys_lseek", "- {index: 0, type: int}",
                         "- matchArgs: [{args: [1], operator: Equal, values: ['1']}]"))
    assert [p.message for p in info.value.problems] == [
        "args: position 1 is out of range: the hook has 1 args"]
    body = _syscall("sys_lseek", "- {index: 0, type: nop}\n- {index: 1, type: int}",
                    "- matchArgs: [{args: [0], operator: Equal, values: ['1']}]")
    assert _errors(body) == ["7:5 sys_lseek: a filter on args position 0, which the hook "
                             "does not read"]


def test_match_args_args_with_several_positions_warns_and_reads_the_first() -> None:
    policy = _policy(_syscall(
        "sys_lseek", "- {index: 0, type: int}\n- {index: 1, type: int}",
        "- matchArgs: [{args: [1, 0], operator: Equal, values: ['1']}]"))
    assert [w.message for w in policy.warnings] == [
        "args lists 2 positions; this operator filters one, and Tetragon reads the first (1)"]
    [sel] = _compile(policy).hooks[0].selectors
    assert [f.arg for f in sel.filters] == [1]


def test_in_range_inline_pairs_signed_as_the_argument_then_a_set() -> None:
    def filt(type_: str, values: str) -> tuple[CompiledFilter, CompiledPolicy]:
        c = _compile(_syscall("sys_setuid", f"- {{index: 0, type: {type_}}}",
                              f"- matchArgs: [{{index: 0, operator: NotInRange, "
                              f"values: {values}}}]"))
        return c.hooks[0].selectors[0].filters[0], c

    f, _ = filt("int", '["-5:-1", "7"]')
    assert (f.op, f.vals) == ("NOT_IN_SRANGE", (M64 - 4, M64, 7, 7))
    f, _ = filt("uint32", '["1:2"]')
    assert (f.op, f.vals) == ("NOT_IN_RANGE", (1, 2))
    f, c = filt("uint32", '["1:2", "4", "6", "8", "10:11"]')  # five: past the inline four
    assert f.op == "NOT_IN_SET"
    assert sorted(v for s, v in c.sets.ints if s == f.set) == [1, 2, 4, 6, 8, 10, 11]
    assert _errors(_syscall("sys_setuid", "- {index: 0, type: int}",
                            "- matchArgs: [{index: 0, operator: InRange, values: ['9:1']}]")
                   ) == ["7:5 sys_setuid: range '9:1': the low end comes first"]
