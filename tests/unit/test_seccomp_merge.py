"""Merging the profiles of several runs: unions, conflicts, clone3, the command line."""

from __future__ import annotations

import datetime as dt
import errno
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from bpfguard.cli import main
from bpfguard.seccomp import (
    Profile,
    ProfileError,
    Recording,
    RecordingInfo,
    Target,
    build_filter,
    diff_profiles,
    load_profile,
    parse_profile,
    plan_filter,
    profile_from_recording,
)
from bpfguard.seccomp.merge import merge_profiles

DOCKER_DEFAULT = Path(__file__).resolve().parents[1] / "fixtures/seccomp/docker-default.json"
ROOT = Target("x86_64", (6, 18, 0), frozenset({"CAP_SYS_ADMIN"}))


def _info(start: int, end: int) -> RecordingInfo:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return RecordingInfo({"command": ["app"]}, t0 + dt.timedelta(hours=start),
                         t0 + dt.timedelta(hours=end))


def _recorded(syscalls: dict[str, set[str]], start: int = 0, end: int = 1,
              arg_values: dict[str, set[int]] | None = None) -> Profile:
    """A recorded profile; with argument rules when `arg_values` is given."""
    rec = Recording(syscalls=syscalls, arg_values=arg_values or {})
    return profile_from_recording(rec, _info(start, end), with_args=arg_values is not None)


def _p(*rules: dict[str, Any], **top: Any) -> Profile:
    return parse_profile({"defaultAction": "SCMP_ACT_ERRNO", **top, "syscalls": list(rules)})


def _allowed(p: Profile) -> set[str]:
    """The names of the unconditional ALLOW rules."""
    return {n for r in p.syscalls if r.action == "SCMP_ACT_ALLOW" and not r.args
            for n in r.names}


def _check_usable(p: Profile) -> None:
    """Renders, parses back the same, and builds with libseccomp (not loaded)."""
    for fmt in ("oci", "docker") if not p.has_conditions() else ("docker",):
        again = parse_profile(json.loads(p.dumps(fmt)))
        assert not diff_profiles(p, again)
    build_filter(plan_filter(p, target=ROOT))


def test_union_of_two_recordings() -> None:
    a = _recorded({"SCMP_ARCH_X86_64": {"read", "write", "execve"}}, start=2, end=3)
    b = _recorded({"SCMP_ARCH_X86_64": {"read", "openat"}, "SCMP_ARCH_X86": {"open"}},
                  start=1, end=5)
    b.architectures = ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_ARM")
    m = merge_profiles([a, b], ["a.json", "b.json"])
    assert _allowed(m) == _allowed(a) | _allowed(b)
    assert {"open", "openat", "execve"} <= _allowed(m)
    # what was recorded in one rule; the runtime base apart, as recorded profiles have it
    recorded, base, clone = m.syscalls
    assert recorded.names == ("execve", "open", "openat", "read", "write")
    assert base.comment.startswith("runtime base") and "rt_sigreturn" in base.names
    assert clone.names == ("clone",) and clone.args  # without namespace flags only
    assert (m.metadata or {})["runtime_base"] == (a.metadata or {})["runtime_base"]
    assert (m.default_action, m.default_errno_ret) == ("SCMP_ACT_ERRNO", errno.EPERM)
    assert m.architectures == (*a.architectures,
                               *(x for x in b.architectures if x not in a.architectures))
    meta = m.metadata or {}
    assert meta["merged_from"] == ["a.json", "b.json"]
    assert (meta["recorded_from"], meta["recorded_until"]) == ("2026-01-01T01:00:00Z",
                                                               "2026-01-01T05:00:00Z")
    assert meta["syscalls"] == {"SCMP_ARCH_X86": ["open"],
                                "SCMP_ARCH_X86_64": ["execve", "openat", "read", "write"]}
    # deterministic: the same inputs give the same text
    assert m.dumps() == merge_profiles([a, b], ["a.json", "b.json"]).dumps()
    _check_usable(m)


def test_an_unconditional_allow_wins_over_argument_rules() -> None:
    a = _p({"names": ["socket", "read"], "action": "SCMP_ACT_ALLOW"})
    b = _p({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
           {"names": ["prctl"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 15, "op": "SCMP_CMP_EQ"}]})
    m = merge_profiles([b, a], ["b.json", "a.json"])
    assert [r.to_json() for r in m.syscalls] == [
        {"names": ["read", "socket"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["prctl"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 15, "op": "SCMP_CMP_EQ"}]}]
    _check_usable(m)


def test_argument_rules_are_unioned_once_each() -> None:
    def socket(*families: int) -> list[dict[str, Any]]:
        return [{"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": f, "op": "SCMP_CMP_EQ"}]} for f in families]

    a = _recorded({"SCMP_ARCH_X86_64": {"socket", "read"}}, arg_values={"socket": {1, 2}})
    b = _p(*socket(10, 1), {"names": ["read"], "action": "SCMP_ACT_ALLOW"})
    m = merge_profiles([a, b], ["a.json", "b.json"])
    values = [r.args[0].value for r in m.syscalls if r.names == ("socket",)]
    assert values == [1, 2, 10]
    assert "socket" not in _allowed(m)
    _check_usable(m)


def test_every_conflict_is_reported_with_file_and_path() -> None:
    a = _p({"names": ["read", "ptrace"], "action": "SCMP_ACT_ALLOW"},
           {"names": ["kill"], "action": "SCMP_ACT_ERRNO"})
    b = _p({"names": ["read"], "action": "SCMP_ACT_ALLOW"},
           {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"},
           {"names": ["kill", "mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES})
    c = _p({"names": ["mount"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 3, "value": 1, "op": "SCMP_CMP_MASKED_EQ"}]},
           {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1})
    with pytest.raises(ProfileError) as info:
        merge_profiles([a, b, c], ["a.json", "b.json", "c.json"])
    assert info.value.problems == [
        "kill: conflicting actions: a.json $.syscalls[1].names[0]: SCMP_ACT_ERRNO; "
        "b.json $.syscalls[2].names[0]: SCMP_ACT_ERRNO(13); "
        "c.json $.syscalls[1].names[0]: SCMP_ACT_ERRNO(1)",
        "mount: conflicting actions: b.json $.syscalls[2].names[1]: SCMP_ACT_ERRNO(13); "
        "c.json $.syscalls[0].names[0]: SCMP_ACT_ALLOW if arg3 & 0x1 == 0x0",
        "ptrace: conflicting actions: a.json $.syscalls[0].names[1]: SCMP_ACT_ALLOW; "
        "b.json $.syscalls[1].names[0]: SCMP_ACT_KILL_PROCESS",
    ]
    assert str(info.value).startswith("cannot merge: \n  kill: ")


def test_same_non_allow_rules_by_meaning_do_not_conflict() -> None:
    # ERRNO without errnoRet is EPERM; KILL is KILL_THREAD
    a = _p({"names": ["kill"], "action": "SCMP_ACT_ERRNO"},
           {"names": ["reboot"], "action": "SCMP_ACT_KILL"})
    b = _p({"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
           {"names": ["reboot"], "action": "SCMP_ACT_KILL_THREAD"})
    m = merge_profiles([a, b], ["a.json", "b.json"])
    assert [r.to_json() for r in m.syscalls] == [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["reboot"], "action": "SCMP_ACT_KILL"}]


def test_identical_rule_sets_never_conflict() -> None:
    # Docker's profile allows clone3 with CAP_SYS_ADMIN and answers ENOSYS without:
    # within one input (or two alike) that is no conflict
    docker = load_profile(DOCKER_DEFAULT)
    m = merge_profiles([docker, docker], ["a.json", "b.json"])
    assert not diff_profiles(docker, m)
    assert m.arch_map == docker.arch_map and m.format == "docker"
    _check_usable(m)


def test_default_action_must_match() -> None:
    a = _p()
    b = _p(defaultErrnoRet=errno.ENOSYS)
    c = parse_profile({"defaultAction": "SCMP_ACT_LOG"})
    with pytest.raises(ProfileError) as info:
        merge_profiles([a, b, c], ["a.json", "b.json", "c.json"])
    assert info.value.problems == ["$.defaultAction: inputs differ: a.json SCMP_ACT_ERRNO(1), "
                                   "b.json SCMP_ACT_ERRNO(38), c.json SCMP_ACT_LOG"]
    # an implicit EPERM is EPERM
    assert merge_profiles([a, _p(defaultErrnoRet=1)], ["a", "b"]).default_errno_ret is None


def test_listeners_must_match_and_flags_are_unioned() -> None:
    a = _p(flags=["SECCOMP_FILTER_FLAG_LOG"], listenerPath="/run/a.sock")
    b = _p(flags=["SECCOMP_FILTER_FLAG_SPEC_ALLOW"], listenerPath="/run/b.sock")
    with pytest.raises(ProfileError, match=r"\$.listenerPath: inputs differ: a.json "
                                           r"'/run/a.sock', b.json '/run/b.sock'"):
        merge_profiles([a, b], ["a.json", "b.json"])
    m = merge_profiles([a, _p(flags=["SECCOMP_FILTER_FLAG_SPEC_ALLOW"])], ["a", "b"])
    assert m.flags == ("SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW")
    assert m.listener_path == "/run/a.sock"
    assert any(n.startswith("flags differ") for n in (m.metadata or {})["notes"])


def test_arch_map_entries_are_unioned() -> None:
    a = parse_profile({"defaultAction": "SCMP_ACT_ERRNO", "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}]})
    b = parse_profile({"defaultAction": "SCMP_ACT_ERRNO", "archMap": [
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X32"]}]})
    # an OCI input's list is grouped by family, as --format docker writes it
    c = _p(architectures=["SCMP_ARCH_S390X", "SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
    m = merge_profiles([a, b, c], ["a", "b", "c"])
    assert m.arch_map == (("SCMP_ARCH_X86_64", ("SCMP_ARCH_X86", "SCMP_ARCH_X32")),
                          ("SCMP_ARCH_AARCH64", ("SCMP_ARCH_ARM",)),
                          ("SCMP_ARCH_S390X", ()))
    assert json.loads(m.dumps())["archMap"][2] == {"architecture": "SCMP_ARCH_S390X",
                                                   "subArchitectures": None}


def test_clone3_allowed_unconditionally_wins_over_bpfguards_enosys() -> None:
    used = {"SCMP_ARCH_X86_64": {"clone", "clone3", "read"}}
    strict = _recorded(used, arg_values={"clone": {0x3D0F00}})
    assert any(r.names == ("clone3",) and r.errno_ret == errno.ENOSYS for r in strict.syscalls)
    plain = _recorded(used)
    m = merge_profiles([strict, plain], ["strict.json", "plain.json"])
    assert "clone3" in _allowed(m)
    assert not any(r.action != "SCMP_ACT_ALLOW" for r in m.syscalls)
    # clone's argument rules are redundant too: plain allows clone whole
    assert not any(r.args for r in m.syscalls)
    [note] = [n for n in (m.metadata or {})["notes"] if n.startswith("clone3")]
    assert "plain.json allows it unconditionally" in note and "strict.json" in note
    _check_usable(m)
    # two --args recordings keep it; a KILL for clone3 elsewhere is still a conflict
    again = merge_profiles([strict, strict], ["a", "b"])
    assert any(r.names == ("clone3",) and r.errno_ret == errno.ENOSYS for r in again.syscalls)
    kill = _p({"names": ["clone3"], "action": "SCMP_ACT_KILL_PROCESS"},
              {"names": ["clone3", "read"], "action": "SCMP_ACT_ALLOW"})
    with pytest.raises(ProfileError, match="clone3: conflicting actions"):
        merge_profiles([strict, plain, kill], ["strict", "plain", "kill"])


def test_a_docker_enosys_rule_for_clone3_is_not_bpfguards() -> None:
    docker = _p({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS})
    plain = _p({"names": ["clone3"], "action": "SCMP_ACT_ALLOW"})
    with pytest.raises(ProfileError, match="clone3: conflicting actions"):
        merge_profiles([docker, plain], ["docker.json", "plain.json"])


# -- the command line -----------------------------------------------------------------------


def _write(path: Path, p: Profile, fmt: str = "oci") -> str:
    path.write_text(p.dumps(fmt))
    return str(path)


def test_cli_merge(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.json", _recorded({"SCMP_ARCH_X86_64": {"read", "write"}}))
    b = _write(tmp_path / "b.json", _recorded({"SCMP_ARCH_X86_64": {"read", "openat"}}), "docker")
    out = tmp_path / "m.json"
    r = CliRunner().invoke(main, ["seccomp", "merge", a, b, "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "2 profiles" in r.output and f"-> {out} (oci)" in r.output
    m = load_profile(out)
    assert {"read", "write", "openat"} <= _allowed(m) and m.format == "oci"
    assert (m.metadata or {})["merged_from"] == [a, b]
    r = CliRunner().invoke(main, ["seccomp", "check", str(out)])
    assert r.exit_code == 0, r.output
    # --format spo
    r = CliRunner().invoke(main, ["seccomp", "merge", a, b, "--format", "spo", "--name", "web",
                                  "-o", str(tmp_path / "web.yaml")])
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load((tmp_path / "web.yaml").read_text())
    assert doc["metadata"]["name"] == "web"
    assert json.loads(doc["metadata"]["annotations"]["bpfguard.io/merged-from"]) == [a, b]
    # the first input's format is the default
    r = CliRunner().invoke(main, ["seccomp", "merge", b, a, "-o", str(out)])
    assert r.exit_code == 0 and "(docker)" in r.output and load_profile(out).format == "docker"


def test_cli_merge_errors(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.json", _p({"names": ["ptrace"], "action": "SCMP_ACT_ALLOW"}))
    b = _write(tmp_path / "b.json", _p({"names": ["ptrace"], "action": "SCMP_ACT_KILL"}))
    out = tmp_path / "m.json"
    r = CliRunner().invoke(main, ["seccomp", "merge", a, b, "-o", str(out)])
    assert r.exit_code == 1
    assert (f"cannot merge: ptrace: conflicting actions: {a} $.syscalls[0].names[0]: "
            f"SCMP_ACT_ALLOW; {b} $.syscalls[0].names[0]: SCMP_ACT_KILL") in r.output
    assert not out.exists()
    docker = str(DOCKER_DEFAULT)
    for fmt in ("oci", "spo"):
        r = CliRunner().invoke(main, ["seccomp", "merge", docker, a, "--format", fmt,
                                      "-o", str(tmp_path / "d.out")])
        assert r.exit_code == 1 and f"{docker}: Docker's includes/excludes cannot be written " \
            f"as {fmt}" in r.output
    r = CliRunner().invoke(main, ["seccomp", "merge", docker, docker, "-o", str(out)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["seccomp", "merge", "-o", str(out)])
    assert r.exit_code == 2 and "Missing argument" in r.output


def test_seccomp_help_shows_merge() -> None:
    r = CliRunner().invoke(main, ["seccomp", "--help"])
    assert r.exit_code == 0 and "bpfguard seccomp merge run1.json run2.json" in r.output
    r = CliRunner().invoke(main, ["seccomp", "merge", "--help"])
    assert r.exit_code == 0
    for text in ("unconditionally", "conflict", "clone3", "--format [oci|docker|spo]"):
        assert text in r.output


def test_a_profile_in_kubelets_directory_is_named_as_a_localhost_profile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = sys.modules["bpfguard.cli.seccomp"]  # the package exports the group by this name
    kubelet = tmp_path / "kubelet" / "seccomp"
    (kubelet / "profiles").mkdir(parents=True)
    monkeypatch.setattr(cli, "_KUBELET_SECCOMP", kubelet)
    a = _write(tmp_path / "a.json", _recorded({"SCMP_ARCH_X86_64": {"read"}}))
    r = CliRunner().invoke(main, ["seccomp", "merge", a, "-o",
                                  str(kubelet / "profiles" / "web.json")])
    assert r.exit_code == 0, r.output
    assert "localhostProfile: profiles/web.json" in r.output
    r = CliRunner().invoke(main, ["seccomp", "merge", a, "-o", str(tmp_path / "web.json")])
    assert r.exit_code == 0 and "Localhost" not in r.output


def test_the_runtime_base_stays_with_conditional_rules_and_foreign_profiles() -> None:
    a = _recorded({"SCMP_ARCH_X86_64": {"read"}})
    foreign = _p({"names": ["futex", "write"], "action": "SCMP_ACT_ALLOW"})
    m = merge_profiles([a, foreign], ["a.json", "f.json"])
    # f.json allows futex itself: not relabelled as the base's
    assert not any(r.comment.startswith("runtime base") and "futex" in r.names
                   for r in m.syscalls)
    assert "futex" in _allowed(m)
