"""Loading Tetragon TracingPolicy files, validating them, and choosing kernel
backends for their hooks (with fake kernels)."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from bpfguard.errors import ConfigError
from bpfguard.policy import (
    KProbe,
    PolicyCode,
    PolicyError,
    Tracepoint,
    load_policy,
    load_policy_text,
    requirements,
)

# Tetragon's example policies, copied with their LICENSE and SOURCE
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tetragon"
FIXTURE_FILES = sorted(FIXTURES.glob("*.yaml"))

# This VM: no kprobes, no BPF trampolines, no BPF LSM.
THIS_HOST = {"kprobe": False, "fentry": False, "fexit": False, "fmod_ret": False,
             "lsm": False, "tp_btf": True, "raw_tp": True, "tracepoint": True,
             "uprobe": True, "send_signal": True}
# A 6.1 guest with everything.
FULL = dict.fromkeys(THIS_HOST, True)

HEAD = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: t\nspec:\n"


def _body(yaml_text: str) -> str:
    """`yaml_text` (spec keys, written at column 0) dedented and indented under spec."""
    return "".join("  " + line if line.strip() else line
                   for line in dedent(yaml_text).splitlines(keepends=True))


def _problems(text: str) -> list[str]:
    """Each problem as 'line:col path: message' (file name dropped)."""
    with pytest.raises(PolicyError) as info:
        load_policy_text("p.yaml", text)
    return [f"{p.context.line}:{p.context.column} {p.context.name}: {p.message}"
            for p in info.value.problems]


def test_the_fixtures_are_all_there() -> None:
    assert len(FIXTURE_FILES) == 20  # Tetragon's examples, as copied


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_every_fixture_loads(path: Path) -> None:
    policy = load_policy(path)
    assert policy.hooks
    assert policy.kind == "TracingPolicy"


def test_fixture_model_details() -> None:
    write = load_policy(FIXTURES / "write.yaml")
    kp = write.kprobes[0]
    assert (kp.call, kp.syscall) == ("sys_write", True)
    assert [(a.index, a.type, a.size_arg_index) for a in kp.args] == [
        (0, "int", 0), (1, "char_buf", 3), (2, "size_t", 0)]
    assert kp.selectors[0].match_pids[0].values == (1,)
    assert kp.selectors[0].match_pids[0].is_namespace_pid

    killer = load_policy(FIXTURES / "killer.yaml")
    assert killer.lists[0].values == ("sys_dup", "sys_dup2", "__ia32_sys_dup")
    assert killer.enforcers[0].calls == ("list:dups",)
    act = killer.tracepoints[0].selectors[0].match_actions[0]
    assert (act.action, act.arg_error, act.arg_sig) == ("NotifyEnforcer", -1, 9)

    # syscall defaults to true, as in the CRD; args type to auto.
    p = load_policy_text("d.yaml", HEAD + "  kprobes:\n  - call: x\n    args:\n    - index: 0\n")
    assert p.kprobes[0].syscall is True
    assert p.kprobes[0].args[0].type == "auto"


def test_file_and_snippet_in_error_text() -> None:
    text = HEAD + "  kprobes:\n  - call: fd_install\n    selector: []\n"
    with pytest.raises(ConfigError) as info:
        load_policy_text("p.yaml", text)
    msg = str(info.value)
    assert "p.yaml:8:5: spec.kprobes[0].selector: unknown key 'selector' " \
           "(did you mean 'selectors'?) [POLICY_UNKNOWN_KEY]" in msg
    assert "    selector: []\n    ^" in msg


def test_unknown_key_with_hint() -> None:
    assert _problems(HEAD + "  kprobes:\n  - call: x\n    args:\n    - index: 0\n      typ: int\n"
                     ) == ["10:7 spec.kprobes[0].args[0].typ: unknown key 'typ' "
                           "(did you mean 'type'?)"]


def test_bad_operator() -> None:
    text = HEAD + _body("""\
      kprobes:
      - call: x
        args:
        - index: 0
          type: string
        selectors:
        - matchArgs:
          - index: 0
            operator: Equals
            values: ["/etc/passwd"]
    """)
    [p] = _problems(text)
    assert p.startswith("14:19 spec.kprobes[0].selectors[0].matchArgs[0].operator: "
                        "operator 'Equals' is not one of ")
    assert p.endswith("(did you mean 'Equal'?)")


def test_operator_must_fit_argument_type() -> None:
    text = HEAD + _body("""\
      kprobes:
      - call: x
        args:
        - index: 0
          type: string
        selectors:
        - matchArgs:
          - index: 0
            operator: DAddr
            values: ["10.0.0.0/8"]
    """)
    assert _problems(text) == [
        "14:19 spec.kprobes[0].selectors[0].matchArgs[0].operator: DAddr filters sock, skb, "
        "sockaddr or socket arguments; this argument is string"]


def test_bad_cidr_port_and_integer_values_all_reported() -> None:
    text = HEAD + _body("""\
      kprobes:
      - call: tcp_connect
        syscall: false
        args:
        - index: 0
          type: sock
        - index: 1
          type: int
        selectors:
        - matchArgs:
          - index: 0
            operator: NotDAddr
            values:
            - "10.0.0.0/8"
            - "10.0.0.0/33"
          - index: 0
            operator: DPort
            values: ["80", "70000"]
          - index: 1
            operator: GT
            values: ["ten"]
    """)
    assert _problems(text) == [
        "20:11 spec.kprobes[0].selectors[0].matchArgs[0].values[1]: '10.0.0.0/33' is not an "
        "IP address or CIDR (like 10.0.0.0/8)",
        "23:24 spec.kprobes[0].selectors[0].matchArgs[1].values[1]: '70000' is not a port "
        "(0-65535) or a port range (1000:2000)",
        "26:18 spec.kprobes[0].selectors[0].matchArgs[2].values[0]: GT compares integers; "
        "'ten' is not one",
    ]


def test_arg_index_out_of_range() -> None:
    text = HEAD + _body("""\
      kprobes:
      - call: x
        args:
        - index: 0
          type: int
        - index: 2
          type: string
        selectors:
        - matchArgs:
          - index: 1
            operator: Equal
            values: ["1"]
    """)
    assert _problems(text) == [
        "15:16 spec.kprobes[0].selectors[0].matchArgs[0].index: no argument with index 1 "
        "in args (indexes: 0, 2)"]


def test_tracepoint_selector_index_is_a_position() -> None:
    ok = HEAD + _body("""\
      tracepoints:
      - subsystem: raw_syscalls
        event: sys_enter
        args:
        - index: 4
          type: uint64
        selectors:
        - matchArgs:
          - index: 0
            operator: Equal
            values: ["59"]
    """)
    assert isinstance(load_policy_text("p.yaml", ok).tracepoints[0], Tracepoint)
    assert _problems(ok.replace("index: 0", "index: 4")) == [
        "14:16 spec.tracepoints[0].selectors[0].matchArgs[0].index: index 4 is out of "
        "range: a tracepoint selector's index is a position in its args, which has 1"]


def test_unknown_list() -> None:
    text = HEAD + _body("""\
      lists:
      - name: dups
        type: syscalls
        values: [sys_dup]
      kprobes:
      - call: "list:dup"
    """)
    assert _problems(text) == [
        "11:11 spec.kprobes[0].call: list 'dup' is not defined in spec.lists "
        "(did you mean 'dups'?)"]


def test_wrong_kind_and_api_version() -> None:
    text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: t\nspec: {}\n"
    assert _problems(text) == [
        "1:13 apiVersion: apiVersion is 'v1'; a TracingPolicy is 'cilium.io/v1alpha1'",
        "2:7 kind: kind 'Pod' is not one of TracingPolicy, TracingPolicyNamespaced",
    ]


def test_wrong_yaml_types() -> None:
    text = HEAD + "  kprobes:\n    call: x\n"
    assert _problems(text) == ["7:5 spec.kprobes: kprobes must be a list, found a mapping"]
    text = HEAD + "  kprobes:\n  - call: x\n    return: maybe\n"
    assert _problems(text) == [
        "8:13 spec.kprobes[0].return: return must be true or false, found 'maybe'"]


def test_actions_checked() -> None:
    text = HEAD + _body("""\
      tracepoints:
      - subsystem: syscalls
        event: sys_enter_openat
        selectors:
        - matchActions:
          - action: Override
            argError: -1
          - action: Signal
          - action: Sigkill
            rateLimit: 1m
    """)
    assert _problems(text) == [
        "11:17 spec.tracepoints[0].selectors[0].matchActions[0].action: Override changes a "
        "function's return value: kprobes and lsmhooks only, not tracepoints",
        "13:9 spec.tracepoints[0].selectors[0].matchActions[1]: Signal needs argSig",
        "15:20 spec.tracepoints[0].selectors[0].matchActions[2].rateLimit: rateLimit is only "
        "valid with the Post action",
    ]


def test_limits() -> None:
    sels = "".join("  - matchPIDs:\n    - operator: In\n      values: [1]\n" for _ in range(6))
    text = HEAD + "  kprobes:\n  - call: x\n    args:\n    - index: 5\n      type: int\n" \
        "    selectors:\n" + "\n".join("  " + line for line in sels.splitlines()) + "\n"
    assert _problems(text) == [
        "9:14 spec.kprobes[0].args[0].index: argument index 5 is out of range: Tetragon "
        "reads arguments 0-4",
        "12:5 spec.kprobes[0].selectors: 6 selectors; Tetragon evaluates at most 5 per hook",
    ]


def test_pod_and_container_selectors() -> None:
    from bpfguard.containers import Container, Pod
    from bpfguard.policy.model import LabelSelector
    from bpfguard.policy.scope import scope_of

    text = HEAD + ("  podSelector:\n    matchLabels:\n      app: web\n"
                   "    matchExpressions:\n    - key: tier\n      operator: NotIn\n"
                   "      values: [db]\n"
                   "  containerSelector:\n    matchExpressions:\n    - key: name\n"
                   "      operator: In\n      values: [main]\n  kprobes:\n  - call: x\n")
    policy = load_policy_text("p.yaml", text)
    assert policy.pod_selector == LabelSelector({"app": "web"}, (("tier", "NotIn", ("db",)),))
    assert policy.container_selector == LabelSelector({}, (("name", "In", ("main",)),))
    assert policy.warnings == ()
    scope = scope_of(policy)
    assert scope is not None
    assert scope.describe() == "pods app=web, tier notin (db); containers name in (main)"

    def ctr(name: str, labels: dict[str, str] | None, pod: str = "web-1") -> Container:
        return Container(id="c", runtime="podman", name=f"{pod}-{name}",
                         pod=Pod(name=pod, labels=labels) if labels is not None else None)

    assert scope.matches(ctr("main", {"app": "web"}))         # kube play's pod-name prefix
    assert not scope.matches(ctr("side", {"app": "web"}))
    assert not scope.matches(ctr("main", {"app": "web", "tier": "db"}))
    assert not scope.matches(ctr("main", None))                # not in a pod: never
    # no selector: not scoped; the host is never in a scoped policy's set
    assert scope_of(load_policy_text("p.yaml", HEAD + "  kprobes:\n  - call: x\n")) is None


def test_bad_selectors_say_where() -> None:
    text = HEAD + ("  containerSelector:\n    matchLabels:\n      image: x\n"
                   "    matchExpressions:\n    - key: name\n      operator: Like\n"
                   "  kprobes:\n  - call: x\n")
    assert _problems(text) == [
        "8:7 spec.containerSelector.matchLabels.image: label 'image': a containerSelector "
        "selects by name, repo",
        "11:17 spec.containerSelector.matchExpressions[0].operator: operator 'Like' is not "
        "one of DoesNotExist, Exists, In, NotIn",
    ]


def test_namespaced_policy_needs_its_namespace() -> None:
    text = HEAD.replace("kind: TracingPolicy", "kind: TracingPolicyNamespaced") + \
        "  kprobes:\n  - call: x\n"
    assert any("needs metadata.namespace" in p for p in _problems(text))


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    assert _problems("a: [\n")[0].startswith("2:1 : while parsing")
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "nope.yaml")
    assert info.value.problems[0].code == PolicyCode.FILE_READ


# -- requirements --------------------------------------------------------------

def _reqs(name: str, features: dict[str, bool]) -> list[tuple[str, str, str | None, str]]:
    policy = load_policy(FIXTURES / name)
    return [(r.hook, r.purpose, r.backend, r.message) for r in requirements(policy, features)]


def test_requirements_on_this_host() -> None:
    assert _reqs("fd_install_ns_host.yaml", THIS_HOST) == [
        ("fd_install", "attach", None,
         "fd_install needs BPF trampolines (fentry) or kprobes; this kernel has neither")]
    assert _reqs("filename_monitoring.yaml", THIS_HOST)[0][3] == (
        "security_file_permission needs BPF trampolines (fentry and fexit) or kprobes; "
        "this kernel has neither")
    # syscalls are served on the syscall tracepoints (their Override is the compiler's refusal)
    assert _reqs("symlink-override.yaml", THIS_HOST) == [
        ("sys_symlinkat", "attach", "tp_btf", "sys_symlinkat uses BTF tracepoints (tp_btf)")]
    assert _reqs("lsm_bprm_check.yaml", THIS_HOST) == [
        ("bprm_check_security", "attach", None,
         "bprm_check_security needs BPF LSM; this kernel does not have it")]
    # a kprobe that may Override attaches with fmod_ret, in either mode
    assert _reqs("override-security.yaml", THIS_HOST) == [
        ("security_inode_mkdir", "attach", None,
         "security_inode_mkdir needs BPF trampolines (fmod_ret); this kernel does not have it")]
    assert _reqs("tcp-connect-only-private-addrs.yaml", THIS_HOST)[1] == (
        "tcp_connect", "Sigkill", "send_signal", "Sigkill on tcp_connect uses bpf_send_signal")
    assert [r[2] for r in _reqs("rawtp.yaml", THIS_HOST)] == ["raw_tp"]
    # its enforcer is an fmod_ret program, whatever the hooks use
    assert [r[1:3] for r in _reqs("killer.yaml", THIS_HOST)] == [
        ("attach", "tracepoint"), ("NotifyEnforcer argSig", "send_signal"), ("attach", None)]


def test_requirements_on_a_full_guest() -> None:
    every = [r for f in FIXTURE_FILES
             for r in requirements(load_policy(f), FULL)]
    assert all(r.available for r in every)
    assert _reqs("fd_install_ns_host.yaml", FULL)[0][2] == "fentry"
    assert _reqs("sys_setuid.yaml", FULL)[0][2] == "tp_btf"
    assert _reqs("override-security.yaml", FULL)[0][2] == "fmod_ret"
    assert _reqs("lsm_file_open.yaml", FULL)[0][2] == "lsm"
    assert _reqs("filename_monitoring.yaml", FULL)[0][2] == "fentry+fexit"
    only_kprobes = {**THIS_HOST, "kprobe": True}
    assert _reqs("filename_monitoring.yaml", only_kprobes)[0][2] == "kprobe"
    assert _reqs("fd_install_ns_host.yaml", only_kprobes)[0][2] == "kprobe"


def test_monitor_mode_needs_no_enforcement() -> None:
    text = HEAD + _body("""\
      options:
      - name: policy-mode
        value: monitor
      kprobes:
      - call: sys_kill
        selectors:
        - matchActions:
          - action: Sigkill
    """)
    policy = load_policy_text("p.yaml", text)
    assert policy.mode == "monitor"
    assert isinstance(policy.kprobes[0], KProbe)
    assert [r.purpose for r in requirements(policy, THIS_HOST)] == ["attach"]
    assert [r.purpose for r in requirements(
        load_policy_text("p.yaml", text.replace("monitor", "enforce")), THIS_HOST)] == [
        "attach", "Sigkill"]
    assert _problems(text.replace("monitor", "monitr")) == [
        "8:12 spec.options[0].value: option policy-mode takes enforce, monitor, not 'monitr'"]


def test_enforcers_set_and_notify_signals_name_what_they_need() -> None:
    text = HEAD + _body("""\
      enforcers:
      - calls: [security_file_permission]
      kprobes:
      - call: sys_pwrite64
        syscall: true
        selectors:
        - matchActions:
          - {action: NotifyEnforcer, argError: -1, argSig: 9}
      usdts:
      - {path: /bin/true, provider: p, name: n, selectors: [{matchActions: [{action: Set}]}]}
    """)
    reqs = [(r.purpose, r.backend, r.message) for r in requirements(
        load_policy_text("p.yaml", text), THIS_HOST)]
    assert reqs == [
        ("attach", "tp_btf", "sys_pwrite64 uses BTF tracepoints (tp_btf)"),
        ("NotifyEnforcer argSig", "send_signal",
         "NotifyEnforcer argSig on sys_pwrite64 uses bpf_send_signal"),
        ("attach", "uprobe", "/bin/true:p:n uses uprobes"),
        ("Set", None, "Set on /bin/true:p:n needs bpf_probe_write_user; this kernel does not "
                      "have it"),
        ("attach", None, "enforcers security_file_permission needs BPF trampolines "
                         "(fmod_ret); this kernel does not have it")]
    assert all(r.available for r in requirements(load_policy_text("p.yaml", text),
                                                 {**FULL, "write_user": True}))


def test_data_entries_need_a_source_and_what_to_read() -> None:
    text = HEAD + _body("""\
      kprobes:
      - call: sys_prctl
        args:
        - {index: 0, type: int, source: current_task}
        data:
        - {index: 0, type: int, resolve: tgid}
        - {index: 1, type: int, source: pt_regs}
        - {index: 2, type: int, source: registers, resolve: rdi}
        selectors:
        - matchData:
          - {index: 3, operator: Equal, values: ["1"]}
    """)
    assert _problems(text) == [
        "9:7 spec.kprobes[0].args[0]: source is for data entries, not args",
        "11:7 spec.kprobes[0].data[0]: a data entry needs source (current_task, pt_regs)",
        "12:7 spec.kprobes[0].data[1]: a data entry needs resolve: a field path of the task "
        "(current_task) or a register name (pt_regs)",
        "13:37 spec.kprobes[0].data[2].source: source 'registers' is not one of "
        "current_task, pt_regs",
        "16:17 spec.kprobes[0].selectors[0].matchData[0].index: index 3 is out of range: a "
        "matchData index is a position in the hook's data, which has 3",
    ]


def test_range_file_type_and_agent_action_values() -> None:
    text = HEAD + _body("""\
      kprobes:
      - call: sys_read
        args:
        - {index: 0, type: fd}
        - {index: 2, type: size_t}
        selectors:
        - matchArgs:
          - {index: 2, operator: InRange, values: ["1:10", "x:2"]}
          - {index: 0, operator: FileType, values: [reg, socket, door]}
          - {index: 2, operator: FileType, values: [reg]}
          matchActions:
          - {action: GetUrl, argUrl: "file:///etc/shadow"}
      uprobes:
      - path: /bin/true
        symbols: [main]
        selectors:
        - matchActions:
          - {action: DnsLookup, argFqdn: example.com}
    """)
    assert _problems(text) == [
        "13:56 spec.kprobes[0].selectors[0].matchArgs[0].values[1]: 'x:2' is neither an "
        "integer nor a range (low:high)",
        "14:62 spec.kprobes[0].selectors[0].matchArgs[1].values[2]: 'door' is not a file "
        "type (blk, block, char, chr, dir, fifo, link, lnk, pipe, reg, regular, sock, "
        "socket)",
        "15:30 spec.kprobes[0].selectors[0].matchArgs[2].operator: FileType filters file or "
        "path arguments; this argument is size_t",
        "17:34 spec.kprobes[0].selectors[0].matchActions[0].argUrl: argUrl "
        "'file:///etc/shadow' is not an http:// or https:// URL",
        "23:18 spec.uprobes[0].selectors[0].matchActions[0].action: GetUrl and DnsLookup "
        "actions are not supported on uprobes (as in Tetragon)",
    ]


def test_uprobe_return_and_return_arg() -> None:
    policy = load_policy_text("p.yaml", HEAD + _body("""\
      uprobes:
      - path: /bin/true
        symbols: [main]
        return: true
        returnArg: {index: 0, type: string}
        selectors:
        - matchReturnArgs:
          - {index: 0, operator: Prefix, values: [sudo]}
    """))
    [hook] = policy.uprobes
    assert hook.return_ and hook.return_arg is not None and hook.return_arg.type == "string"
    assert _problems(HEAD + _body("""\
      uprobes:
      - path: /bin/true
        symbols: [main]
        return: true
    """)) == ["9:13 spec.uprobes[0].return: return: true needs returnArg (index 0 and the type "
              "of the return value), as Tetragon requires"]
