"""The command line: help that teaches, clear errors for bad input."""

from __future__ import annotations

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
