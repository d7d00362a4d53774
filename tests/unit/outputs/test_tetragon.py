"""Tetragon JSON export: exact shapes of processes, arguments and event envelopes."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bpfguard.outputs import tetragon
from bpfguard.outputs.tetragon import (
    arg_json,
    exec_json,
    exit_json,
    exit_status_signal,
    policy_event_json,
    process_json,
    rfc3339,
)
from bpfguard.policy.events import Enforcement, PolicyArg, PolicyEvent
from bpfguard.proctable import Process, ProcessTable
from bpfguard.sensors.events import ExecEvent, ExitEvent, FileRef
from bpfguard.symbols import StackFrame

# 2023-11-14T22:13:20Z: boot time 0 maps here, so times below are exact.
BOOT = 1_700_000_000 * 10**9
CID = "0123456789abcdef" * 4
GONE_PID = 99_999_999  # above any pid_max: /proc never has it


@pytest.fixture(autouse=True)
def _fixed_boot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tetragon, "boot_to_wall_ns", lambda ns: BOOT + ns)


def proc(**kw: Any) -> Process:
    base: dict[str, Any] = dict(pid=4242, ppid=1, start_ns=5 * 10**9, exec_id="b:5:4242",
                                comm="curl")
    base.update(kw)
    return Process(**base)


def _file(path: str) -> FileRef:
    return FileRef(path=path, ino=1, dev=1, fs_magic=0, mode=0o100755)


def exec_ev(pid: int, ppid: int, exe: str, start: int, *, args: list[str] | None = None,
            uid: int = 1000, euid: int = 1000, cwd: str = "/home/u") -> ExecEvent:
    return ExecEvent(type="exec", ktime_ns=start, pid=pid, tid=pid, uid=uid, gid=uid,
                     cgroup_id=1, comm=exe.rsplit("/", 1)[-1], truncated=False, ppid=ppid,
                     start_ns=start, exec_id=f"b:{start}:{pid}", exe=_file(exe), filename=exe,
                     args=args if args is not None else [exe], args_truncated=False,
                     cwd=_file(cwd), euid=euid, egid=uid, loginuid=uid, sessionid=1,
                     cap_effective=0, cap_permitted=0, mntns=0, pidns=0, netns=0, userns=0,
                     cgroupns=0, cgroup="/user.slice", tty=None)


def family() -> ProcessTable:
    """init-less chain: bash(100) -> sh(200) -> cat(300)."""
    t = ProcessTable()
    t.apply(exec_ev(100, 0, "/bin/bash", 10))
    t.apply(exec_ev(200, 100, "/bin/sh", 20, args=["sh", "-c", "cat x"]))
    t.apply(exec_ev(300, 200, "/bin/cat", 30, args=["cat", "/etc/shadow"], euid=0))
    return t


def kprobe(**kw: Any) -> PolicyEvent:
    base: dict[str, Any] = dict(kind="kprobe", policy_name="files", pid=300, tid=301,
                                time_ns=BOOT + 123_456_789, ktime_ns=40,
                                args=(PolicyArg("int", -100, label="dfd"),
                                      PolicyArg("string", "/etc/shadow")),
                                function_name="__x64_sys_openat")
    base.update(kw)
    return PolicyEvent(**base)


# -- time ----------------------------------------------------------------------


@pytest.mark.parametrize(("ns", "text"), [
    (0, "1970-01-01T00:00:00Z"),
    (BOOT, "2023-11-14T22:13:20Z"),
    (BOOT + 120_000_000, "2023-11-14T22:13:20.120Z"),
    (BOOT + 123_456_000, "2023-11-14T22:13:20.123456Z"),
    (BOOT + 1, "2023-11-14T22:13:20.000000001Z"),
    (BOOT + 999_999_999, "2023-11-14T22:13:20.999999999Z"),
])
def test_rfc3339_uses_protojson_fraction_widths(ns: int, text: str) -> None:
    assert rfc3339(ns) == text


@given(st.integers(min_value=0, max_value=4_102_444_800 * 10**9))
def test_rfc3339_is_exact_and_minimal(ns: int) -> None:
    text = rfc3339(ns)
    m = re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d+))?Z", text)
    assert m is not None
    frac = m.group(1) or ""
    assert len(frac) in (0, 3, 6, 9)
    assert int(frac.ljust(9, "0") or "0") == ns % 10**9
    if frac:  # no shorter width would have kept the value
        assert not frac.endswith("000")


# -- processes -----------------------------------------------------------------


def test_process_json_for_an_exec_in_a_container() -> None:
    p = proc(exe="/usr/bin/curl", args=["curl", "-s", "http://x"], cwd="/tmp", uid=1000,
             euid=0, loginuid=1000, cgroup=f"/system.slice/docker-{CID}.scope",
             parent_exec_id="b:1:1")
    assert process_json(p, node="n1") == {
        "exec_id": "b:5:4242",
        "pid": 4242,
        "uid": 0,  # effective uid, as Tetragon documents the field
        "cwd": "/tmp",
        "binary": "/usr/bin/curl",
        "arguments": "-s http://x",
        "flags": "execve",
        "start_time": "2023-11-14T22:13:25Z",
        "auid": 1000,
        "docker": CID[:31],
        "parent_exec_id": "b:1:1",
        "tid": 4242,
    }


def test_process_json_from_proc_keeps_zero_ids_and_omits_the_unknown() -> None:
    p = proc(pid=0, exec_id="b:0:0", start_ns=1_500, args=["swapper"], cwd="/",
             loginuid=-1, cgroup="/", from_proc=True)
    d = process_json(p, node="n1")
    assert d == {"exec_id": "b:0:0", "pid": 0, "uid": 0, "cwd": "/",
                 "flags": "procFS rootcwd", "start_time": "2023-11-14T22:13:20.000001500Z",
                 "auid": 4294967295, "tid": 0}
    for absent in ("binary", "arguments", "docker", "parent_exec_id", "refcnt",
                   "in_init_tree"):
        assert absent not in d


def test_process_json_key_order_follows_the_proto() -> None:
    d = process_json(proc(exe="/x", args=["x", "y"], cwd="/", cgroup=f"/docker/{CID}",
                          parent_exec_id="p"), node="n")
    assert list(d) == ["exec_id", "pid", "uid", "cwd", "binary", "arguments", "flags",
                       "start_time", "auid", "docker", "parent_exec_id", "tid"]


@pytest.mark.parametrize(("argv", "arguments"), [
    (["sh", "-c", "echo hi"], '-c "echo hi"'),
    (["p", "a b", "c"], ' "a b" c'),  # Tetragon's ArgsDecoder: leading space kept
    (["ls", "-l", "/"], "-l /"),
])
def test_arguments_are_joined_and_quoted_like_tetragon(argv: list[str], arguments: str) -> None:
    assert process_json(proc(args=argv), node="n")["arguments"] == arguments


def test_process_json_tid_is_the_events_thread() -> None:
    assert process_json(proc(), node="n", tid=4250)["tid"] == 4250


# -- exec / exit ---------------------------------------------------------------


def test_exec_json_envelope() -> None:
    child, parent = proc(exe="/bin/cat"), proc(pid=1, ppid=0, exec_id="b:1:1", exe="/sbin/init")
    d = exec_json(child, parent, node="node-a", time_ns=BOOT + 7_000_000)
    assert d == {
        "process_exec": {"process": process_json(child, node="node-a"),
                         "parent": process_json(parent, node="node-a")},
        "node_name": "node-a",
        "time": "2023-11-14T22:13:20.007Z",
    }
    assert d["process_exec"]["parent"]["binary"] == "/sbin/init"


def test_exec_json_without_parent_or_node_omits_them() -> None:
    d = exec_json(proc(), None, node="", time_ns=BOOT)
    assert d == {"process_exec": {"process": process_json(proc(), node="")},
                 "time": "2023-11-14T22:13:20Z"}


def test_exec_json_ancestors() -> None:
    gp = proc(pid=7, exec_id="b:0:7")
    d = exec_json(proc(), proc(pid=1), node="n", time_ns=BOOT, ancestors=[gp])
    assert [a["pid"] for a in d["process_exec"]["ancestors"]] == [7]


def test_exit_json_killed_by_signal() -> None:
    d = exit_json(proc(), None, node="n", time_ns=BOOT + 5, status=0, signal="SIGKILL")
    assert d == {"process_exit": {"process": process_json(proc(), node="n"),
                                  "signal": "SIGKILL",
                                  "time": "2023-11-14T22:13:20.000000005Z"},
                 "node_name": "n", "time": "2023-11-14T22:13:20.000000005Z"}


def test_exit_json_exit_code_and_no_signal() -> None:
    ev = exit_json(proc(), proc(pid=1), node="n", time_ns=BOOT, status=3,
                   signal="")["process_exit"]
    assert ev["status"] == 3
    assert "signal" not in ev
    assert list(ev) == ["process", "parent", "status", "time"]


def _exit_event(status: int, exit_code: int | None, sig: int | None) -> ExitEvent:
    return ExitEvent(type="exit", ktime_ns=1, pid=5, tid=5, uid=0, gid=0, cgroup_id=1,
                     comm="x", truncated=False, ppid=1, start_ns=0, status=status,
                     exit_code=exit_code, signal=sig)


@pytest.mark.parametrize(("ev", "expected"), [
    (_exit_event(9, None, 9), (0, "SIGKILL")),
    (_exit_event(0x300, 3, None), (3, "")),
    (_exit_event(0x86, None, 6), (0, "SIGABRT")),  # core dumped
    (_exit_event(0, 0, None), (0, "")),
])
def test_exit_status_signal(ev: ExitEvent, expected: tuple[int, str]) -> None:
    assert exit_status_signal(ev) == expected


# -- arguments -----------------------------------------------------------------


SOCK = {"family": 2, "type": 1, "protocol": 6, "saddr": "10.0.0.2", "daddr": "1.1.1.1",
        "sport": 40000, "dport": 443, "state": 1}


@pytest.mark.parametrize(("arg", "expected"), [
    (PolicyArg("int", -5), {"int_arg": -5}),
    (PolicyArg("int32", 0), {"int_arg": 0}),  # a set oneof member shows even at 0
    (PolicyArg("int8", -1), {"int_arg": -1}),
    (PolicyArg("int16", 300), {"int_arg": 300}),
    (PolicyArg("uint32", 4294967295), {"uint_arg": 4294967295}),
    (PolicyArg("uint8", 255), {"uint_arg": 255}),
    (PolicyArg("uint16", 0), {"uint_arg": 0}),
    (PolicyArg("int64", -2), {"long_arg": "-2"}),
    (PolicyArg("int64", 2**40), {"long_arg": "1099511627776"}),
    (PolicyArg("uint64", 2**64 - 1), {"size_arg": "18446744073709551615"}),
    (PolicyArg("uint64", -1), {"size_arg": "18446744073709551615"}),
    (PolicyArg("size_t", 4096), {"size_arg": "4096"}),
    (PolicyArg("string", "/etc/shadow"), {"string_arg": "/etc/shadow"}),
    (PolicyArg("string", ""), {"string_arg": ""}),
    (PolicyArg("filename", "a"), {"string_arg": "a"}),
    (PolicyArg("data_loc", "eth0"), {"string_arg": "eth0"}),
    (PolicyArg("char_buf", b"\x00\xffhi"), {"bytes_arg": "AP9oaQ=="}),
    (PolicyArg("char_buf", b"abcd", truncated=True),
     {"truncated_bytes_arg": {"bytes_arg": "YWJjZA=="}}),
    (PolicyArg("fd", "/etc/passwd"), {"file_arg": {"path": "/etc/passwd"}}),
    (PolicyArg("file", "/bin/sh"), {"file_arg": {"path": "/bin/sh"}}),
    (PolicyArg("path", "/root"), {"path_arg": {"path": "/root"}}),
    (PolicyArg("dentry", "/root"), {"path_arg": {"path": "/root"}}),
    (PolicyArg("linux_binprm", "/usr/bin/id"), {"linux_binprm_arg": {"path": "/usr/bin/id"}}),
    (PolicyArg("sockaddr", {"family": "AF_INET", "addr": "10.0.0.1", "port": 443}),
     {"sockaddr_arg": {"family": "AF_INET", "addr": "10.0.0.1", "port": 443}}),
    (PolicyArg("sockaddr", {"family": 10, "addr": "::1", "port": 0}),
     {"sockaddr_arg": {"family": "AF_INET6", "addr": "::1"}}),
    (PolicyArg("sock", SOCK),
     {"sock_arg": {"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP",
                   "saddr": "10.0.0.2", "daddr": "1.1.1.1", "sport": 40000, "dport": 443,
                   "state": "TCP_ESTABLISHED"}}),
    (PolicyArg("sock", {"family": "AF_INET", "type": 99, "protocol": 17, "state": 0,
                        "cookie": 2**63}),
     {"sock_arg": {"family": "AF_INET", "type": "99", "protocol": "IPPROTO_UDP",
                   "cookie": "9223372036854775808", "state": "0"}}),
    (PolicyArg("capability", 21), {"capability_arg": {"value": 21, "name": "CAP_SYS_ADMIN"}}),
    (PolicyArg("capability", 1), {"capability_arg": {"value": 1, "name": "DAC_OVERRIDE"}}),
    (PolicyArg("kernel_cap_t", 0x1FFFFFFFFF), {"kernel_cap_t_arg": "0000001fffffffff"}),
    (PolicyArg("cap_effective", 0), {"cap_effective_arg": "0000000000000000"}),
    (PolicyArg("cred", {"uid": 1000, "euid": 0, "caps": {"effective": (1 << 21) | 1}}),
     {"process_credentials_arg": {"uid": 1000, "euid": 0,
                                  "caps": {"effective": ["CAP_CHOWN", "CAP_SYS_ADMIN"]}}}),
    (PolicyArg("perf_event", {"KprobeFunc": "f", "Type": "", "Config": 2**63}),
     {"perf_event_arg": {"KprobeFunc": "f", "Config": "9223372036854775808"}}),
])
def test_arg_json_shapes(arg: PolicyArg, expected: dict[str, Any]) -> None:
    assert arg_json(arg, machine="x86_64") == expected


@pytest.mark.parametrize(("value", "machine", "expected"), [
    (59, "x86_64", {"id": 59, "abi": "x64"}),
    ((1 << 63) | 11, "x86_64", {"id": 11, "abi": "i386"}),  # bpfguard's compat bit
    (0x80000000 | 11, "x86_64", {"id": 11, "abi": "i386"}),  # Tetragon's Is32Bit
    (0, "x86_64", {"abi": "x64"}),  # read(2): id 0 is protojson's default
    (221, "aarch64", {"id": 221, "abi": "arm64"}),
    ((1 << 63) | 11, "aarch64", {"id": 11, "abi": "arm32"}),
    (5, "riscv64", {"id": 5, "abi": "unknown"}),
])
def test_syscall64(value: int, machine: str, expected: dict[str, Any]) -> None:
    assert arg_json(PolicyArg("syscall64", value), machine=machine) == {"syscall_id": expected}


def test_label_and_unreadable_values() -> None:
    assert arg_json(PolicyArg("string", "x", label="pathname")) == \
        {"string_arg": "x", "label": "pathname"}
    assert arg_json(PolicyArg("fd", None)) == {}
    assert arg_json(PolicyArg("fd", None, label="f")) == {"label": "f"}
    assert arg_json(PolicyArg("fd", 3)) == {}  # an unresolved fd is not a path
    assert arg_json(PolicyArg("skb", "nonsense")) == {}


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_int_arg_keeps_every_int32(v: int) -> None:
    assert arg_json(PolicyArg("int", v)) == {"int_arg": v}


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_64_bit_args_are_strings_of_the_c_value(v: int) -> None:
    size = arg_json(PolicyArg("uint64", v))["size_arg"]
    long = arg_json(PolicyArg("int64", v))["long_arg"]
    assert isinstance(size, str) and isinstance(long, str)
    assert int(size) == v % 2**64
    assert -(2**63) <= int(long) < 2**63 and (int(long) - v) % 2**64 == 0


@given(st.binary(max_size=64))
def test_bytes_arg_is_standard_base64(raw: bytes) -> None:
    assert base64.b64decode(arg_json(PolicyArg("char_buf", raw))["bytes_arg"]) == raw


# -- policy events -------------------------------------------------------------


def test_kprobe_envelope() -> None:
    t = family()
    ev = kprobe(return_value=PolicyArg("int", -13), action="KPROBE_ACTION_POST",
                return_action="KPROBE_ACTION_POST", message="shadow read", tags=("creds",))
    d = policy_event_json(ev, t, node="n1", ancestors=True, machine="x86_64")
    assert list(d) == ["process_kprobe", "node_name", "time"]
    assert d["node_name"] == "n1"
    assert d["time"] == "2023-11-14T22:13:20.123456789Z"
    body = d["process_kprobe"]
    assert list(body) == ["process", "parent", "function_name", "args", "return", "action",
                          "policy_name", "return_action", "message", "tags", "ancestors"]
    assert body["process"]["binary"] == "/bin/cat"
    assert body["process"]["arguments"] == "/etc/shadow"
    assert body["process"]["tid"] == 301
    assert body["process"]["uid"] == 0
    assert body["process"]["parent_exec_id"] == "b:20:200"
    assert body["parent"]["binary"] == "/bin/sh"
    assert body["parent"]["tid"] == 200
    assert body["function_name"] == "__x64_sys_openat"
    assert body["args"] == [{"int_arg": -100, "label": "dfd"}, {"string_arg": "/etc/shadow"}]
    assert body["return"] == {"int_arg": -13}
    assert body["action"] == "KPROBE_ACTION_POST"
    assert body["policy_name"] == "files"
    assert body["message"] == "shadow read"
    assert body["tags"] == ["creds"]
    assert [a["binary"] for a in body["ancestors"]] == ["/bin/bash"]
    assert "enforcement" not in body
    json.dumps(d)  # plain JSON all the way down


def test_tracepoint_envelope() -> None:
    ev = PolicyEvent(kind="tracepoint", policy_name="tp", pid=200, tid=200, time_ns=BOOT,
                     ktime_ns=1, args=(PolicyArg("syscall64", 59), PolicyArg("uint64", 7)),
                     subsys="raw_syscalls", event="sys_enter", message="m", tags=("t",))
    d = policy_event_json(ev, family(), node="n1", machine="x86_64")
    body = d["process_tracepoint"]
    assert list(d) == ["process_tracepoint", "node_name", "time"]
    assert list(body) == ["process", "parent", "subsys", "event", "args", "policy_name",
                          "action", "message", "tags"]
    assert body["process"]["binary"] == "/bin/sh"
    assert body["process"]["arguments"] == '-c "cat x"'
    assert body["parent"]["binary"] == "/bin/bash"
    assert (body["subsys"], body["event"]) == ("raw_syscalls", "sys_enter")
    assert body["args"] == [{"syscall_id": {"id": 59, "abi": "x64"}}, {"size_arg": "7"}]
    assert body["action"] == "KPROBE_ACTION_POST"
    assert "ancestors" not in body


def test_unknown_process_still_names_pid_tid_and_uid() -> None:
    ev = kprobe(pid=GONE_PID, tid=GONE_PID + 1, uid=1001)
    body = policy_event_json(ev, ProcessTable(), node="n")["process_kprobe"]
    assert body["process"] == {"pid": GONE_PID, "uid": 1001, "flags": "unknown",
                               "tid": GONE_PID + 1}
    assert "parent" not in body


def test_monitor_mode_enforcement_extension() -> None:
    enf = Enforcement(action="Sigkill", done=False, mode="monitor", backend="bpf_send_signal",
                      before_operation=False, signal=9, note="policy-mode: monitor")
    body = policy_event_json(kprobe(enforcement=(enf,)), family(), node="n")["process_kprobe"]
    assert body["action"] == "KPROBE_ACTION_POST"  # nothing was done
    assert body["enforcement"] == [{"action": "Sigkill", "done": False, "mode": "monitor",
                                    "backend": "bpf_send_signal", "before_operation": False,
                                    "signal": 9, "note": "policy-mode: monitor"}]
    assert list(body)[-1] == "enforcement"


def test_enforced_sigkill_extension_on_a_tracepoint() -> None:
    enf = Enforcement(action="Sigkill", done=True, mode="enforce", backend="bpf_send_signal",
                      before_operation=True)
    ev = PolicyEvent(kind="tracepoint", policy_name="p", pid=300, tid=300, time_ns=BOOT,
                     ktime_ns=1, args=(), subsys="syscalls", event="sys_enter_openat",
                     action="KPROBE_ACTION_SIGKILL", enforcement=(enf,))
    body = policy_event_json(ev, family(), node="n")["process_tracepoint"]
    assert body["action"] == "KPROBE_ACTION_SIGKILL"
    assert body["enforcement"][0]["done"] is True
    assert body["enforcement"][0]["signal"] == 0


def test_defaults_are_omitted() -> None:
    # sh(200) has a parent but nothing above it: the empty ancestors list goes too
    ev = kprobe(pid=200, policy_name="", args=(), action="KPROBE_ACTION_UNKNOWN",
                function_name="f")
    d = policy_event_json(ev, family(), node="", ancestors=True)
    assert list(d) == ["process_kprobe", "time"]
    assert list(d["process_kprobe"]) == ["process", "parent", "function_name"]


def test_parent_with_a_reused_pid_is_not_reported() -> None:
    t = family()
    # pid 200 exits and a younger process takes the pid: cat's parent is gone
    t.apply(ExitEvent(type="exit", ktime_ns=50, pid=200, tid=200, uid=0, gid=0, cgroup_id=1,
                      comm="sh", truncated=False, ppid=100, start_ns=20, status=0))
    t.apply(exec_ev(200, 100, "/usr/bin/other", 60))
    body = policy_event_json(kprobe(), t, node="n", ancestors=True)["process_kprobe"]
    assert "parent" not in body and "ancestors" not in body
    assert body["process"]["binary"] == "/bin/cat"


def test_lsm_envelope_with_an_override() -> None:
    enf = Enforcement(action="Override", done=True, mode="enforce", backend="bpf_lsm",
                      before_operation=True, note="denied by the LSM hook before the operation")
    ev = PolicyEvent(kind="lsm", policy_name="lsm-file-open", pid=300, tid=300, time_ns=BOOT,
                     ktime_ns=1, args=(PolicyArg("file", "/etc/passwd"),),
                     function_name="file_open", action="KPROBE_ACTION_OVERRIDE",
                     enforcement=(enf,))
    d = policy_event_json(ev, family(), node="n1")
    body = d["process_lsm"]
    assert list(d) == ["process_lsm", "node_name", "time"]
    assert list(body) == ["process", "parent", "function_name", "policy_name", "args",
                          "action", "enforcement"]
    assert body["function_name"] == "file_open"
    assert body["args"] == [{"file_arg": {"path": "/etc/passwd"}}]
    assert body["action"] == "KPROBE_ACTION_OVERRIDE"
    assert body["enforcement"][0]["before_operation"] is True


def test_uprobe_envelope_names_the_binary_and_symbol() -> None:
    ev = PolicyEvent(kind="uprobe", policy_name="guard", pid=300, tid=300, time_ns=BOOT,
                     ktime_ns=1, args=(PolicyArg("int", 7),), path="/usr/bin/bash",
                     symbol="readline")
    d = policy_event_json(ev, family(), node="n1")
    body = d["process_uprobe"]
    assert list(d) == ["process_uprobe", "node_name", "time"]
    assert list(body) == ["process", "parent", "path", "symbol", "policy_name", "args",
                          "action"]
    assert (body["path"], body["symbol"]) == ("/usr/bin/bash", "readline")
    assert body["args"] == [{"int_arg": 7}]
    off = PolicyEvent(kind="uprobe", policy_name="guard", pid=300, tid=300, time_ns=BOOT,
                      ktime_ns=1, args=(), path="/usr/bin/bash", offset=0x1234)
    body = policy_event_json(off, family(), node="n1")["process_uprobe"]
    assert "symbol" not in body and body["offset"] == 0x1234


def test_usdt_envelope_names_the_binary_provider_and_probe() -> None:
    ev = PolicyEvent(kind="usdt", policy_name="probes", pid=300, tid=300, time_ns=BOOT,
                     ktime_ns=1, args=(PolicyArg("int32", 7), PolicyArg("string", "hi")),
                     path="/usr/bin/python3", provider="python", probe="function__entry",
                     tags=("trace",))
    d = policy_event_json(ev, family(), node="n1")
    body = d["process_usdt"]
    assert list(d) == ["process_usdt", "node_name", "time"]
    assert list(body) == ["process", "parent", "path", "provider", "name", "policy_name",
                          "args", "tags", "action"]
    assert (body["path"], body["provider"], body["name"]) == (
        "/usr/bin/python3", "python", "function__entry")
    assert body["args"] == [{"int_arg": 7}, {"string_arg": "hi"}]


def test_stack_traces_as_tetragon_writes_them() -> None:
    ev = kprobe(function_name="fd_install", kernel_stack=(
        StackFrame(0xffffffff81001010, "do_sys_openat2", 0x10),
        StackFrame(0xffffffffc0000000)),
        user_stack=(StackFrame(0x401010, "main", 0x10, "/usr/bin/cat"),
                    StackFrame(0x7f0000001000, "", 0x1000, "/usr/lib/libc.so.6")))
    body = policy_event_json(ev, family(), node="n")["process_kprobe"]
    keys = list(body)
    assert keys.index("action") < keys.index("kernel_stack_trace") < keys.index("policy_name")
    # no kernel address where a symbol names the frame (Tetragon hides them)
    assert body["kernel_stack_trace"] == [{"offset": "16", "symbol": "do_sys_openat2"},
                                          {"address": str(0xffffffffc0000000)}]
    assert body["user_stack_trace"] == [
        {"offset": "16", "symbol": "main", "module": "/usr/bin/cat"},
        {"address": str(0x7f0000001000), "offset": str(0x1000),
         "module": "/usr/lib/libc.so.6"}]


def test_sock_and_cred_arguments_of_kernel_functions() -> None:
    sock = {"family": 2, "type": 1, "protocol": 6, "state": 2, "saddr": "127.0.0.1",
            "daddr": "127.0.0.1", "sport": 40000, "dport": 80}
    cred = {"uid": 0, "gid": 4242, "euid": 0, "egid": 4242, "suid": 0, "sgid": 4242,
            "fsuid": 0, "fsgid": 4242, "securebits": 0,
            "caps": {"permitted": 1 << 21, "effective": 0, "inheritable": 0}}
    ev = kprobe(function_name="tcp_connect",
                args=(PolicyArg("sock", sock), PolicyArg("cred", cred)))
    body = policy_event_json(ev, family(), node="n")["process_kprobe"]
    s, c = body["args"][0]["sock_arg"], body["args"][1]["process_credentials_arg"]
    assert (s["family"], s["protocol"], s["state"], s["daddr"], s["dport"]) == (
        "AF_INET", "IPPROTO_TCP", "TCP_SYN_SENT", "127.0.0.1", 80)
    assert c["gid"] == 4242 and c["caps"]["permitted"] == ["CAP_SYS_ADMIN"]
