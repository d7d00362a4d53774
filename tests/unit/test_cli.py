"""The command line: help that teaches, clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

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
    r = CliRunner().invoke(main, ["trace", "--", "/nonexistent/binary-xyz"])
    assert r.exit_code == 1
    assert "command not found" in r.output


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


def test_seccomp_record_needs_exactly_one_source(tmp_path: Path) -> None:
    out = str(tmp_path / "p.json")
    r = CliRunner().invoke(main, ["seccomp", "record", "-o", out])
    assert r.exit_code == 1 and "nothing to record" in r.output
    r = CliRunner().invoke(main, ["seccomp", "record", "-o", out, "--pid", "1", "--", "true"])
    assert r.exit_code == 1 and "not both" in r.output
