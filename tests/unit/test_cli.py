"""The command line: help that teaches, clear errors for bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bpfguard.cli import main


def test_help_lists_commands() -> None:
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    for cmd in ("trace", "run", "probe"):
        assert cmd in r.output


def test_trace_help_has_examples() -> None:
    r = CliRunner().invoke(main, ["trace", "--help"])
    assert r.exit_code == 0
    assert "bpfguard trace -- curl" in r.output
    assert "--cgroup" in r.output and "--pid" in r.output


def test_trace_unknown_command_is_reported() -> None:
    # exit codes as a shell's: 127 not found, 126 not executable
    r = CliRunner().invoke(main, ["trace", "--", "/nonexistent/binary-xyz"])
    assert r.exit_code == 127
    assert "command not found" in r.output
    for cmd in ("detect", "trace"):
        r = CliRunner().invoke(main, [cmd, "--", "/etc/passwd"])
        assert r.exit_code == 126 and "/etc/passwd: not executable" in r.output


def test_str_max_is_bounded() -> None:
    r = CliRunner().invoke(main, ["trace", "--str-max", "9999", "--", "true"])
    assert r.exit_code == 2
    assert "--str-max" in r.output


def test_seccomp_help_teaches_the_workflow() -> None:
    r = CliRunner().invoke(main, ["seccomp", "--help"])
    assert r.exit_code == 0
    for cmd in ("record", "run", "check", "diff", "learn, then audit, then enforce"):
        assert cmd in r.output


def test_seccomp_check_and_diff(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]}))
    r = CliRunner().invoke(main, ["seccomp", "check", str(good)])
    assert r.exit_code == 0, r.output
    assert "ok (oci format): 1 rules naming 2 syscalls, default SCMP_ACT_ERRNO" in r.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALOW"}))
    r = CliRunner().invoke(main, ["seccomp", "check", str(bad)])
    assert r.exit_code == 1
    assert "$.defaultAction: unknown action 'SCMP_ACT_ALOW' (did you mean" in r.output
    more = tmp_path / "more.json"
    more.write_text(json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read", "write", "socket"], "action": "SCMP_ACT_ALLOW"}]}))
    r = CliRunner().invoke(main, ["seccomp", "diff", str(good), str(more)])
    assert r.exit_code == 1 and "+ socket: SCMP_ACT_ALLOW" in r.output
    assert CliRunner().invoke(main, ["seccomp", "diff", str(good), str(good)]).exit_code == 0
    assert CliRunner().invoke(main, ["seccomp", "diff", str(good), str(bad)]).exit_code == 2


def test_seccomp_check_warns_about_traps_and_exits_0(tmp_path: Path) -> None:
    p = tmp_path / "traps.json"
    p.write_text('{"defaultAction": "SCMP_ACT_ERRNO", "defaultAction": "SCMP_ACT_KILL",\n'
                 ' "syscalls": [{"names": ["read", "kill"], "action": "SCMP_ACT_ALLOW"},\n'
                 '  {"names": ["kill"], "action": "SCMP_ACT_LOG"},\n'
                 '  {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [\n'
                 '    {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},\n'
                 '    {"index": 0, "value": 10, "op": "SCMP_CMP_EQ"}]}]}\n')
    r = CliRunner().invoke(main, ["seccomp", "check", str(p)])
    assert r.exit_code == 0, r.output
    assert f"warning: {p}: $.defaultAction: given twice (line 1): the last one is used" in r.output
    assert (f"warning: {p}: $.syscalls[1]: kill: also in $.syscalls[0], with SCMP_ACT_ALLOW "
            "there and SCMP_ACT_LOG here: the first rule wins") in r.output
    assert (f"warning: {p}: $.syscalls[2]: socket: two conditions on argument 0 (arg0 == 0x1, "
            "arg0 == 0xa)") in r.output
    assert "default SCMP_ACT_KILL; 3 warning(s) above" in r.output
    r = CliRunner().invoke(main, ["seccomp", "check", "--help"])
    assert "unknown keys are warnings" not in r.output and "a key given twice" in r.output


def test_seccomp_record_needs_exactly_one_source(tmp_path: Path) -> None:
    out = str(tmp_path / "p.json")
    r = CliRunner().invoke(main, ["seccomp", "record", "-o", out])
    assert r.exit_code == 1 and "nothing to record" in r.output
    r = CliRunner().invoke(main, ["seccomp", "record", "-o", out, "--pid", "1", "--", "true"])
    assert r.exit_code == 1 and "not both" in r.output


def test_rules_validate_reports_file_line_and_text(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- rule: r1\n  desc: d\n  condition: evt.type = open and proc.nme = x\n"
                   "  output: o\n  priority: WARNING\n")
    r = CliRunner().invoke(main, ["rules", "validate", str(bad)])
    assert r.exit_code == 1, r.output
    assert f"{bad}:3:" in r.output and "proc.nme" in r.output
    good = tmp_path / "good.yaml"
    good.write_text("- list: shells\n  items: [sh, bash]\n"
                    "- rule: r1\n  desc: d\n  condition: evt.type = execve and proc.name in "
                    "(shells)\n  output: shell %proc.name\n  priority: NOTICE\n")
    r = CliRunner().invoke(main, ["rules", "validate", str(good)])
    assert r.exit_code == 0 and "ok: 1 rules" in r.output


def test_rules_validate_names_each_refused_rule_and_its_field() -> None:
    files = ["stock:stable", "stock:incubating", "stock:sandbox"]
    r = CliRunner().invoke(main, ["rules", "validate", *files])
    assert r.exit_code == 0, r.output
    assert r.output.rstrip().endswith(f"{', '.join(files)}: ok: 89 rules, 4 refused")
    assert "falco-sandbox_rules.yaml:1676:9)\n------\n    and evt.buffer bcontains" in r.output
    assert "falco-sandbox_rules.yaml:1670:3: refused: rule 'Java Process Class File " \
           "Download' needs evt.buffer, which bpfguard cannot provide" in r.output
    r = CliRunner().invoke(main, ["rules", "validate", "--json", *files])
    data = json.loads(r.output)
    assert data["successful"] and len(data["warnings"]) == len(data["refused_rules"]) == 4
    java = data["refused_rules"][-1]
    assert java["rule"] == "Java Process Class File Download"
    assert java["fields"] == ["evt.buffer"] and java["position"]["line"] == 1670
    r = CliRunner().invoke(main, ["rules", "list", "-r", "stock:sandbox"])
    assert r.exit_code == 0
    assert "Java Process Class File Download\n    Critical, refused (needs evt.buffer)" in r.output
    r = CliRunner().invoke(main, ["rules", "explain", "-r", "stock:stable", "-r", "stock:nope"])
    assert r.exit_code == 1
    assert "-r stock:nope: no such stock ruleset; known: stock:stable, stock:incubating, " \
           "stock:sandbox" in r.output


def test_rules_list_and_explain_on_the_stock_ruleset() -> None:
    r = CliRunner().invoke(main, ["rules", "list"])
    assert r.exit_code == 0 and "Read sensitive file untrusted" in r.output
    assert "Warning, enabled, open,openat,openat2" in r.output
    r = CliRunner().invoke(main, ["rules", "explain"])
    assert r.exit_code == 0, r.output
    assert "Read sensitive file untrusted:" in r.output
    assert "openat: kernel checks result success; access mode O_RDONLY|O_RDWR" in r.output
    assert "sendto: bpfguard has no sensor for it; never matches" in r.output


def test_detect_rejects_bad_options() -> None:
    r = CliRunner().invoke(main, ["detect", "-o", "nope=1"])
    assert r.exit_code == 1 and "unknown option" in r.output
    r = CliRunner().invoke(main, ["detect", "-o", "priority=loud"])
    assert r.exit_code == 1 and "unknown priority" in r.output
    r = CliRunner().invoke(main, ["detect", "-D", "No such rule"])
    assert r.exit_code == 1 and "no rule named" in r.output


def test_detect_refuses_what_would_watch_nothing(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["detect", "-r", str(tmp_path)])
    assert r.exit_code == 1 and "no .yaml or .yml rules file" in r.output
    r = CliRunner().invoke(main, ["detect", "-t", "no-such-tag"])
    assert r.exit_code == 1 and "no rule is enabled" in r.output
    r = CliRunner().invoke(main, ["detect", "-p", "999999999"])
    assert r.exit_code == 1 and "--pid 999999999: no such process" in r.output
    r = CliRunner().invoke(main, ["detect", "-o", "rate_limit.rate=-1"])
    assert r.exit_code == 1 and "must not be negative" in r.output
    r = CliRunner().invoke(main, ["rules", "validate", str(tmp_path / "missing.yaml")])
    assert r.exit_code == 1 and "-r " not in r.output and "no such file" in r.output


def test_seccomp_outputs_are_checked_before_the_command_runs(tmp_path: Path) -> None:
    ro = Path("/proc/self")  # a directory nobody can create files in
    r = CliRunner().invoke(main, ["seccomp", "record", "-o", str(ro / "p.json"), "--", "true"])
    assert r.exit_code == 1 and "-o /proc/self/p.json" in r.output


def test_policy_check_names_what_this_kernel_lacks(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # as root, on a kernel like this host's: no BPF LSM, no bpf_send_signal
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr("bpfguard.probe.features", lambda: {
        "tp_btf": True, "tracepoint": True, "raw_tp": True, "send_signal": False})
    lsm = Path(__file__).resolve().parents[1] / "fixtures" / "tetragon" / "lsm_file_open.yaml"
    r = CliRunner().invoke(main, ["policy", "check", str(lsm)])
    assert r.exit_code == 1, r.output
    assert f"{lsm}:7:5: spec.lsmhooks[0]: file_open: needs BPF LSM" in r.output
    assert "MISSING file_open needs BPF LSM" in r.output
    assert "  1 for what this machine lacks (POLICY_UNAVAILABLE)" in r.output
    r = CliRunner().invoke(main, ["policy", "check", "--json", str(lsm)])
    [entry] = json.loads(r.stdout)
    [p] = entry["problems"]
    assert (p["line"], p["column"], p["code"], p["whose"]) == (
        7, 5, "POLICY_UNAVAILABLE", "machine")
    rc = tmp_path / "rc.yaml"  # a problem only the compiler finds
    rc.write_text("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n"
                  "  name: rc\nspec:\n  kprobes:\n  - call: sys_read\n    return: true\n"
                  "    returnArg: {index: 0, type: int}\n"
                  "    args: [{index: 1, type: char_buf, returnCopy: true}]\n"
                  "    selectors: [{matchArgs: [{index: 1, operator: Prefix, values: [x]}]}]\n")
    r = CliRunner().invoke(main, ["policy", "check", str(rc)])
    assert r.exit_code == 1 and "returnCopy bytes exist only at return" in r.output
    kill = tmp_path / "kill.yaml"  # compiles, but its Sigkill needs what is missing
    kill.write_text("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n"
                    "  name: kill\nspec:\n  kprobes:\n  - call: sys_read\n"
                    "    selectors: [{matchActions: [{action: Sigkill}]}]\n")
    r = CliRunner().invoke(main, ["policy", "check", str(kill)])
    assert r.exit_code == 1 and "cannot load on this kernel" in r.output
    assert "MISSING Sigkill on sys_read needs bpf_send_signal" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n"
                   "  name: bad\nspec:\n  kprobes:\n  - call: fd_install\n    syscal: false\n")
    r = CliRunner().invoke(main, ["policy", "check", str(bad)])
    assert r.exit_code == 1 and f"{bad}:8:" in r.output and "syscall" in r.output
    assert "  1 in the policy itself" in r.output
    usdt = tmp_path / "usdt.yaml"  # the helper Set needs, named even where the binary is missing
    usdt.write_text("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n"
                    "  name: u\nspec:\n  usdts:\n  - {path: /nonexistent, provider: p, "
                    "name: n, selectors: [{matchActions: [{action: Set}]}]}\n")
    monkeypatch.setattr("bpfguard.probe.features", lambda: {"uprobe": True})
    r = CliRunner().invoke(main, ["policy", "check", str(usdt)])
    assert r.exit_code == 1 and "2 for what this machine lacks (POLICY_UNAVAILABLE)" in r.output
    assert "MISSING Set on /nonexistent:p:n needs bpf_probe_write_user" in r.output
    gap = tmp_path / "gap.yaml"  # bpfguard's own gap: on a kernel that could, still refused
    gap.write_text("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n"
                   "  name: g\nspec:\n  kprobes:\n  - call: sys_openat\n    syscall: true\n"
                   "    selectors: [{matchActions: [{action: Override, argError: -1}]}]\n")
    monkeypatch.setattr("bpfguard.probe.features",
                        lambda: {"tp_btf": True, "error_injection": True})
    r = CliRunner().invoke(main, ["policy", "check", str(gap)])
    assert r.exit_code == 1 and "1 bpfguard does not serve yet (POLICY_UNSUPPORTED)" in r.output
