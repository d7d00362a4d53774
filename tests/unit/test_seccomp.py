"""Seccomp profiles without the kernel: parsing, errors, plans, generation, diffs."""

from __future__ import annotations

import datetime as dt
import errno
import json
import tempfile
from pathlib import Path
from typing import Any

import pyseccomp
import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    resolve_for,
)
from bpfguard.seccomp.audit import parse_record
from bpfguard.seccomp.profile import Chain, libseccomp_adds, loads_profile
from bpfguard.seccomp.recorder import CLONE_NS_MASK
from bpfguard.seccomp.runtime_base import runtime_base

# Docker's default profile, copied with its LICENSE and SOURCE
DOCKER_DEFAULT = Path(__file__).resolve().parents[1] / "fixtures/seccomp/docker-default.json"
ROOT = Target("x86_64", (6, 18, 0), frozenset({"CAP_SYS_ADMIN", "CAP_SYS_PTRACE"}))
PLAIN = Target("x86_64", (6, 18, 0), frozenset({"CAP_CHOWN"}))


@pytest.fixture(scope="module")
def docker_default() -> Profile:
    return load_profile(DOCKER_DEFAULT)


def problems(data: Any) -> list[str]:
    with pytest.raises(ProfileError) as info:
        parse_profile(data, "p.json")
    return info.value.problems


# -- parsing ---------------------------------------------------------------------


def test_docker_default_round_trips_exactly(docker_default: Profile) -> None:
    assert docker_default.format == "docker"
    assert docker_default.to_json() == json.loads(DOCKER_DEFAULT.read_text())
    assert docker_default.warnings == []


def test_broken_json_names_line_and_column(tmp_path: Path) -> None:
    p = tmp_path / "p.json"
    p.write_text('{\n  "defaultAction": "SCMP_ACT_ERRNO",\n  "syscalls": [\n}\n')
    with pytest.raises(ProfileError, match=r"p\.json:4:1: invalid JSON"):
        load_profile(p)


def test_every_problem_is_reported_with_its_json_path() -> None:
    found = problems({
        "defaultAction": "SCMP_ACT_ERRNOO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"],
        "syscalls": [
            {"names": ["read", "opne"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 6, "value": 2, "op": "SCMP_CMP_EQQ"}]},
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1},
            {"names": [], "action": "SCMP_ACT_LOG"},
        ]})
    assert found[1].startswith("$.architectures[1]: unknown architecture 'SCMP_ARCH_Z80'")
    assert found[:1] + found[2:] == [
        "$.defaultAction: unknown action 'SCMP_ACT_ERRNOO' (did you mean 'SCMP_ACT_ERRNO'?)",
        "$.syscalls[0].names[1]: unknown syscall 'opne': no Linux architecture has it",
        "$.syscalls[1].args[0].index: 6 is out of range 0..5",
        "$.syscalls[1].args[0].op: unknown operator 'SCMP_CMP_EQQ' (did you mean 'SCMP_CMP_EQ'?)",
        "$.syscalls[2].errnoRet: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take errnoRet, "
        "not SCMP_ACT_ALLOW",
        "$.syscalls[3].names: empty: a rule needs at least one syscall name",
    ]


def test_architectures_and_arch_map_together_conflict() -> None:
    found = problems({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"],
                      "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]})
    assert found == ["$: both 'architectures' and 'archMap' are given: use one of them "
                     "(architectures is OCI's form, archMap Docker's)"]


def test_missing_default_action_and_wrong_types() -> None:
    assert problems([]) == ["$: expected an object, got a list"]
    found = problems({"syscalls": [{"names": "read", "action": 1}]})
    assert "$: missing 'defaultAction'" in found
    assert "$.syscalls[0].names: expected a list, got a string" in found
    assert "$.syscalls[0].action: expected a string, got an integer" in found


def test_unknown_keys_are_errors_not_an_allow_everything_profile() -> None:
    # runc ignores "syscals": the container would run with defaultAction alone
    assert problems({"defaultAction": "SCMP_ACT_ALLOW", "syscals": [
        {"names": ["mount"], "action": "SCMP_ACT_ERRNO"}]}) == [
        "$.syscals: unknown key (runc would ignore it); did you mean 'syscalls'?"]
    assert problems({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "arg": []}]}) == [
        "$.syscalls[0].arg: unknown key (runc would ignore it); did you mean 'args'?"]


def test_syscalls_newer_than_libseccomp_are_accepted(docker_default: Profile) -> None:
    # mseal (6.10) is in Docker's profile and in the system-calls tables
    assert "mseal" in docker_default.named()


# -- plans: what a profile becomes on a machine ------------------------------------


def _rules_for(plan: Any, name: str) -> list[Any]:
    return [r for r in plan.rules if r.name == name]


def test_docker_default_without_sys_admin_restricts_clone(docker_default: Profile) -> None:
    plan = plan_filter(docker_default, target=PLAIN)
    assert plan.arches == ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")
    clone = _rules_for(plan, "clone")
    assert [r.args for r in clone] == [((0, "SCMP_CMP_MASKED_EQ", CLONE_NS_MASK, 0),)]
    clone3 = _rules_for(plan, "clone3")
    assert [(r.action, r.data) for r in clone3] == [("SCMP_ACT_ERRNO", errno.ENOSYS)]
    assert _rules_for(plan, "ptrace")  # minKernel 4.8 <= 6.18
    assert _rules_for(plan, "bpf") == []  # needs CAP_SYS_ADMIN or CAP_BPF
    build_filter(plan)


def test_docker_default_with_sys_admin_allows_clone_whole(docker_default: Profile) -> None:
    plan = plan_filter(docker_default, target=ROOT)
    assert [r.args for r in _rules_for(plan, "clone")] == [()]
    assert [r.action for r in _rules_for(plan, "clone3")] == ["SCMP_ACT_ALLOW"]
    assert any(r.name == "arch_prctl" for r in plan.rules)  # includes arches amd64
    assert not any(r.name == "s390_pci_mmio_read" for r in plan.rules)


def test_min_kernel_condition() -> None:
    p = parse_profile({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "6.20"}}]})
    assert plan_filter(p, target=ROOT).rules == []
    old = Target("x86_64", (7, 0, 1), ROOT.caps)
    assert [r.name for r in plan_filter(p, target=old).rules] == ["ptrace"]


def test_conditions_on_one_argument_become_separate_rules() -> None:
    p = parse_profile({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": 10, "op": "SCMP_CMP_EQ"}]},
        {"names": ["mmap"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 2, "value": 4, "op": "SCMP_CMP_MASKED_EQ", "valueTwo": 0},
                  {"index": 3, "value": 1, "op": "SCMP_CMP_NE"}]}]})
    plan = plan_filter(p, target=ROOT)
    assert [r.args for r in _rules_for(plan, "socket")] == [
        ((0, "SCMP_CMP_EQ", 1, 0),), ((0, "SCMP_CMP_EQ", 10, 0),)]
    assert [r.args for r in _rules_for(plan, "mmap")] == [
        ((2, "SCMP_CMP_MASKED_EQ", 4, 0), (3, "SCMP_CMP_NE", 1, 0))]
    build_filter(plan)


def test_errno_defaults_and_rules_equal_to_the_default() -> None:
    p = parse_profile({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"}]})
    plan = plan_filter(p, target=ROOT)
    assert (plan.default_action, plan.default_data) == ("SCMP_ACT_ERRNO", 38)
    # a rule without errnoRet answers EPERM (runc); one equal to the default is left out
    assert [(r.name, r.data) for r in plan.rules] == [("kill", errno.EPERM), ("read", None)]


def test_audit_mode_logs_instead_of_denying() -> None:
    p = parse_profile({"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"}]})
    plan = plan_filter(p, target=ROOT, audit=True)
    assert plan.default_action == "SCMP_ACT_LOG"
    assert [(r.name, r.action) for r in plan.rules] == [("read", "SCMP_ACT_ALLOW")]


def test_notify_is_refused_with_the_reason() -> None:
    p = parse_profile({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
                       "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}]})
    with pytest.raises(Exception, match="seccomp agent"):
        plan_filter(p, target=ROOT)


# -- traps: what runtimes really do with a valid profile ------------------------------

_ARG0 = {"index": 0, "op": "SCMP_CMP_EQ"}
_ALLOW_UNIX = {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [_ARG0 | {"value": 1}]}


def test_key_given_twice_says_which_one_runtimes_use(tmp_path: Path) -> None:
    p = tmp_path / "p.json"
    p.write_text('{\n  "defaultAction": "SCMP_ACT_ERRNO",\n  "syscalls": [\n'
                 '    {"names": ["kill"], "action": "SCMP_ACT_ALLOW",\n'
                 '     "action": "SCMP_ACT_LOG"}\n  ]\n}\n')
    profile = load_profile(p)
    assert profile.syscalls[0].action == "SCMP_ACT_LOG"
    assert profile.warnings == [
        '$.syscalls[0].action: given twice (lines 4 and 5): the last one is used: the first '
        '("SCMP_ACT_ALLOW") is ignored, by runc, podman and containerd (Go\'s encoding/json) as '
        "by bpfguard; crun, reading it in a config.json, uses the first instead"]
    # parse_profile's own data has no duplicates to tell
    assert parse_profile(json.loads(p.read_text())).warnings == []


def test_object_given_twice_is_merged_as_go_does(tmp_path: Path) -> None:
    # Go decodes the second "syscalls" into the first's elements: what the
    # second rule lacks (errnoRet) stays from the first
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"})[:-1] +
                 ', "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]'
                 ', "syscalls": [{"names": ["umount2"], "action": "SCMP_ACT_ERRNO"}]}')
    profile = load_profile(p)
    assert [(r.names, r.errno_ret) for r in profile.syscalls] == [(("umount2",), 1)]
    [warning] = profile.warnings
    assert warning.startswith("$.syscalls: given twice (line 1): runc, podman and containerd "
                              "(Go's encoding/json) decode the last over the first, so what the "
                              "last lacks keeps the first's value ($.syscalls[0].errnoRet)")


def test_conflicting_rules_say_what_libseccomp_does() -> None:
    def warnings(*rules: dict[str, Any], default: str = "SCMP_ACT_ERRNO") -> list[str]:
        return parse_profile({"defaultAction": default, "syscalls": list(rules)}).warnings

    assert warnings({"names": ["kill", "read"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}) == [
        "$.syscalls[1]: kill: also in $.syscalls[0], with SCMP_ACT_ALLOW there and "
        "SCMP_ACT_ERRNO(38) here: the first rule wins: libseccomp keeps the unconditional rule "
        "of $.syscalls[0] and silently ignores this one, so every call gets SCMP_ACT_ALLOW"]
    assert warnings(_ALLOW_UNIX, {"names": ["socket"], "action": "SCMP_ACT_KILL_PROCESS"}) == [
        "$.syscalls[1]: socket: also in $.syscalls[0], with SCMP_ACT_ALLOW there and "
        "SCMP_ACT_KILL_PROCESS here: the unconditional rule wins, whatever the order: "
        "libseccomp drops the argument rules of $.syscalls[0], so every call gets "
        "SCMP_ACT_KILL_PROCESS"]
    # the exception a reader expects is not what runc makes of it
    assert warnings({"names": ["socket"], "action": "SCMP_ACT_ERRNO"}, _ALLOW_UNIX,
                    default="SCMP_ACT_ALLOW") == [
        "$.syscalls[1]: socket: also in $.syscalls[0], with SCMP_ACT_ERRNO(1) there and "
        "SCMP_ACT_ALLOW here: runc and crun leave out $.syscalls[1] (its action is the default "
        "action), so every call gets SCMP_ACT_ERRNO(1)"]
    same = [_ALLOW_UNIX, _ALLOW_UNIX | {"action": "SCMP_ACT_LOG"}]
    assert warnings(*same) == [
        "$.syscalls[1]: socket: also in $.syscalls[0], with SCMP_ACT_ALLOW there and "
        "SCMP_ACT_LOG here: runc and crun fail to start the container: libseccomp refuses this "
        'rule (EEXIST, "file exists"): $.syscalls[0] has one with another action for the same '
        "conditions"]
    # and so does bpfguard
    with pytest.raises(Exception, match=r"\$\.syscalls\[1\]: socket: libseccomp refused the rule"):
        build_filter(plan_filter(parse_profile({"defaultAction": "SCMP_ACT_ERRNO",
                                                "syscalls": same}), target=ROOT))
    # no trap: different arguments, or never on one machine for one container
    assert warnings(_ALLOW_UNIX, {"names": ["socket"], "action": "SCMP_ACT_LOG",
                                  "args": [_ARG0 | {"value": 10}]}) == []
    assert warnings({"names": ["bpf"], "action": "SCMP_ACT_ALLOW",
                     "includes": {"caps": ["CAP_BPF"]}},
                    {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                     "excludes": {"caps": ["CAP_BPF"]}}) == []


def test_docker_default_names_syscalls_twice_without_traps(docker_default: Profile) -> None:
    actions: dict[str, set[str]] = {}
    for r in docker_default.syscalls:
        for n in r.names:
            actions.setdefault(n, set()).add(r.action)
    # clone3: ALLOW with CAP_SYS_ADMIN, ENOSYS without: never both
    assert actions["clone3"] == {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO"}
    assert docker_default.warnings == []


def test_two_conditions_on_one_argument_are_ored() -> None:
    p = parse_profile({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
         "args": [_ARG0 | {"value": 1}, _ARG0 | {"value": 10},
                  {"index": 2, "value": 0, "op": "SCMP_CMP_EQ"}]}]})
    assert p.warnings == [
        "$.syscalls[1]: socket: two conditions on argument 0 (arg0 == 0x1, arg0 == 0xa): runc "
        "and crun apply each condition as a rule of its own (the condition on argument 2 too), "
        "so this ALLOWs socket when ANY holds, not when all do"]
    assert [r.args for r in plan_filter(p, target=ROOT).rules if r.name == "socket"] == [
        ((0, "SCMP_CMP_EQ", 1, 0),), ((0, "SCMP_CMP_EQ", 10, 0),), ((2, "SCMP_CMP_EQ", 0, 0),)]


def test_audit_mode_reports_what_the_rule_libseccomp_keeps_denies() -> None:
    p = parse_profile({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        {"names": ["kill", "read"], "action": "SCMP_ACT_ALLOW"}]})
    enforce = plan_filter(p, target=ROOT)
    assert [(r.name, r.data) for r in enforce.rules] == [("kill", 38), ("read", None)]
    assert enforce.skipped == ["$.syscalls[1] (kill): libseccomp ignores it for the rule of "
                               "$.syscalls[0]"]
    # the ERRNO rule becomes LOG, the default: kill must not be left to the ALLOW rule
    audit = plan_filter(p, target=ROOT, audit=True)
    assert [r.name for r in audit.rules] == ["read"]
    assert audit.action_for("kill") == ("SCMP_ACT_LOG", "")


def _pfc(rules: list[tuple[str, Chain]]) -> tuple[int | None, str]:
    """libseccomp's own filter for `rules` added to socket in order (not loaded):
    the index of the rule it refused, if any, and the filter in its PFC text."""
    actions = {"SCMP_ACT_ALLOW": pyseccomp.ALLOW, "SCMP_ACT_LOG": pyseccomp.LOG,
               "SCMP_ACT_ERRNO": pyseccomp.ERRNO(38)}
    ops = {"SCMP_CMP_EQ": pyseccomp.EQ, "SCMP_CMP_MASKED_EQ": pyseccomp.MASKED_EQ}
    f = pyseccomp.SyscallFilter(pyseccomp.ERRNO(1))
    refused = None
    for n, (action, chain) in enumerate(rules):
        try:
            f.add_rule(actions[action], "socket",
                       *[pyseccomp.Arg(i, ops[op], v, v2) for i, op, v, v2 in chain])
        except FileExistsError:
            refused = n
            break
    with tempfile.TemporaryFile("w+") as out:
        f.export_pfc(out)
        out.seek(0)
        return refused, "".join(line for line in out if not line.lstrip().startswith("#"))


_COND = st.one_of(st.tuples(st.just("SCMP_CMP_EQ"), st.integers(1, 2), st.just(0)),
                  st.tuples(st.just("SCMP_CMP_MASKED_EQ"), st.just(3), st.integers(1, 2)))
# what runc makes of one profile rule: its conditions ANDed (one per argument),
# or each alone when an argument has two
_RUNC_RULE = st.one_of(
    st.dictionaries(st.integers(0, 2), _COND, max_size=3).map(
        lambda d: [tuple((i, op, v, v2) for i, (op, v, v2) in sorted(d.items()))]),
    st.lists(st.tuples(st.integers(0, 2), _COND).map(lambda c: ((c[0], *c[1]),)),
             min_size=2, max_size=3))


@given(_RUNC_RULE, _RUNC_RULE,
       st.permutations(["SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_ERRNO"]))
def test_libseccomp_model_matches_libseccomp(first: list[Chain], second: list[Chain],
                                             actions: list[str]) -> None:
    # two profile rules with two actions, each made of one or more libseccomp
    # rules: what the warnings are decided on. (NE and the ordering operators
    # are left out: with them libseccomp 2.5.4 can loop forever adding a rule.)
    rules = [(actions[0], c) for c in first] + [(actions[1], c) for c in second]
    fates = libseccomp_adds([((a, 38 if a == "SCMP_ACT_ERRNO" else None), c) for a, c in rules])
    refused, whole = _pfc(rules)
    assert refused == next((n for n, (kind, _) in enumerate(fates) if kind == "refused"), None)
    if refused is None:
        kept = [r for r, (kind, _) in zip(rules, fates, strict=True) if kind == "kept"]
        assert _pfc(kept)[1] == whole


# -- generation ------------------------------------------------------------------------


def _recording(**kw: Any) -> Recording:
    rec = Recording(syscalls={"SCMP_ARCH_X86_64": {"write", "read", "socket", "exit_group",
                                                   "clone3", "execve"},
                              "SCMP_ARCH_X86": {"open"}})
    for k, v in kw.items():
        setattr(rec, k, v)
    return rec


INFO = RecordingInfo({"command": ["app"]}, dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                     dt.datetime(2026, 1, 1, 0, 0, 5, tzinfo=dt.UTC))


def test_generated_profile_is_sorted_and_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a = profile_from_recording(_recording(), INFO).dumps("oci")
    b = profile_from_recording(_recording(), INFO).dumps("oci")
    assert a == b
    data = json.loads(a)
    recorded = ["clone3", "execve", "exit_group", "open", "read", "socket", "write"]
    assert data["syscalls"][0] == {"names": recorded, "action": "SCMP_ACT_ALLOW"}
    # the runtime base, less what was recorded, in a rule of its own; clone
    # (not recorded here) only without namespace flags
    assert data["syscalls"][1]["names"] == sorted(runtime_base() - set(recorded) - {"clone"})
    assert data["syscalls"][1]["comment"].startswith("runtime base")
    assert data["syscalls"][2]["names"] == ["clone"]
    assert data["syscalls"][2]["args"] == [{"index": 0, "value": CLONE_NS_MASK, "op":
                                            "SCMP_CMP_MASKED_EQ"}]
    assert len(data["syscalls"]) == 3
    assert data["bpfguard"]["runtime_base"]["exit"] == ["exit", "exit_group", "rt_sigreturn"]
    assert data["defaultAction"] == "SCMP_ACT_ERRNO" and data["defaultErrnoRet"] == 1
    assert data["bpfguard"]["recorded_from"] == "2023-11-14T22:13:20Z"
    assert data["bpfguard"]["syscalls"]["SCMP_ARCH_X86"] == ["open"]
    docker = json.loads(profile_from_recording(_recording(), INFO).dumps("docker"))
    assert docker["archMap"] == [{"architecture": "SCMP_ARCH_X86_64",
                                  "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}]
    assert parse_profile(docker).format == "docker"


def test_args_rules_replace_blanket_allows() -> None:
    rec = _recording(arg_values={"socket": {1, 10}, "clone": {0x3D0F00, 0x3D0F00 | 0x20000}})
    p = profile_from_recording(rec, INFO, with_args=True)
    rules = {(r.names, r.action, r.errno_ret, r.args) for r in p.syscalls}
    assert "socket" not in p.syscalls[0].names and "clone3" not in p.syscalls[0].names
    eq = "SCMP_CMP_EQ"
    assert {r[3][0].value for r in rules if r[0] == ("socket",)} == {1, 10}
    assert all(r[3][0].op == eq for r in rules if r[0] == ("socket",))
    clone = sorted(r[3][0].value_two for r in rules if r[0] == ("clone",))
    assert clone == [0, 0x20000]  # only the namespace bits count
    assert (("clone3",), "SCMP_ACT_ERRNO", errno.ENOSYS, ()) in rules


def test_args_incomplete_falls_back_to_blanket_allow() -> None:
    rec = _recording(arg_values={"socket": {1}}, args_incomplete={"socket", "clone"})
    p = profile_from_recording(rec, INFO, with_args=True)
    assert {"socket", "clone3"} <= set(p.syscalls[0].names)
    assert any("socket" in n for n in (p.metadata or {})["notes"])


def test_base_merge_keeps_what_the_base_names() -> None:
    base = parse_profile({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97},
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"}]})
    p = profile_from_recording(_recording(), INFO, base=base)
    assert p.syscalls[:2] == base.syscalls
    assert p.syscalls[2].names == ("clone3", "execve", "exit_group", "open", "write")
    assert (p.metadata or {})["added"] == ["clone3", "execve", "exit_group", "open", "write"]


# -- diff -------------------------------------------------------------------------------


def test_diff_by_meaning() -> None:
    a = parse_profile({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                       "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                                    {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW"}]})
    same = parse_profile({"defaultAction": "SCMP_ACT_ERRNO",
                          "archMap": [{"architecture": "SCMP_ARCH_X86_64"}],
                          "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ALLOW",
                                        "comment": "moved"},
                                       {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]})
    assert not diff_profiles(a, same)
    b = parse_profile({"defaultAction": "SCMP_ACT_LOG", "architectures": ["SCMP_ARCH_X86_64"],
                       "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                                    {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                                     "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]})
    d = diff_profiles(a, b)
    assert d.default_action == ("SCMP_ACT_ERRNO(1)", "SCMP_ACT_LOG")
    assert d.syscalls_added == {"socket": ["SCMP_ACT_ALLOW if arg0 == 0x1"]}
    assert d.syscalls_removed == {"ptrace": ["SCMP_ACT_ALLOW"]}
    text = d.render()
    assert "+ socket: SCMP_ACT_ALLOW if arg0 == 0x1" in text and "- ptrace" in text


def test_diff_ignores_implicit_eperm_and_grouping_but_not_flags() -> None:
    a = parse_profile({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO"}]})
    b = parse_profile({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "syscalls": [
        {"names": ["write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"}]})
    assert not diff_profiles(a, b)
    c = parse_profile({"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                       "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                                    {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                                     "errnoRet": 13}]})
    d = diff_profiles(a, c)
    assert d.flags_added == ["SECCOMP_FILTER_FLAG_LOG"]
    assert d.syscalls_changed == {"kill": (["SCMP_ACT_ERRNO(1)"], ["SCMP_ACT_ERRNO(13)"])}


def test_docker_profile_as_oci_is_resolved_for_the_machine(docker_default: Profile) -> None:
    with pytest.raises(Exception, match="no includes/excludes"):
        docker_default.dumps("oci")
    oci = resolve_for(docker_default, PLAIN)
    data = json.loads(oci.dumps("oci"))
    assert data["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert not any("includes" in r or "excludes" in r for r in data["syscalls"])
    named = {n for r in data["syscalls"] for n in r["names"]}
    assert "bpf" not in named and "reboot" not in named  # capability-gated: dropped
    assert "arch_prctl" in named  # includes arches amd64: kept, unconditionally
    # and grouping a flat list back into Docker's archMap keeps families together
    again = json.loads(oci.dumps("docker"))
    assert again["archMap"] == [{"architecture": "SCMP_ARCH_X86_64",
                                 "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}]


def test_unreadable_profiles_are_clear_errors(tmp_path: Path) -> None:
    p = tmp_path / "p.json"
    p.write_bytes(b'{"defaultAction": "\xff"}')
    with pytest.raises(ProfileError, match="not UTF-8"):
        load_profile(p)
    p.write_text("[" * 100000)
    with pytest.raises(ProfileError, match="invalid JSON"):
        load_profile(p)


# -- audit records --------------------------------------------------------------------


def test_parse_seccomp_audit_record() -> None:
    rec = parse_record('audit(1795923281.416:3): auid=4294967295 uid=0 gid=0 ses=4294967295 '
                       'pid=7043 comm="python3" exe="/usr/bin/python3.11" sig=0 '
                       'arch=c000003e syscall=41 compat=0 ip=0x7f40244f34f7 code=0x50000')
    assert rec is not None
    assert (rec.pid, rec.comm, rec.syscall, rec.arch, rec.action) == (
        7043, "python3", "socket", "SCMP_ARCH_X86_64", "SCMP_ACT_ERRNO")
    # an odd comm comes hex-encoded; i386 syscall 5 is open
    rec = parse_record('pid=1 comm=6D7920617070 exe="/x" arch=40000003 syscall=5 code=0x7ffc0000')
    assert rec is not None and (rec.comm, rec.syscall, rec.arch, rec.action) == (
        "my app", "open", "SCMP_ARCH_X86", "SCMP_ACT_LOG")
    assert parse_record("type=SYSCALL msg=audit(1:2): arch=c000003e") is None


# -- properties --------------------------------------------------------------------------

_NAMES = st.sampled_from(["read", "write", "openat", "socket", "clone", "mmap", "ptrace"])
_ACTIONS = st.sampled_from(["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_LOG", "SCMP_ACT_TRAP"])
_ARG = st.fixed_dictionaries({"index": st.integers(0, 5), "value": st.integers(0, 2**64 - 1),
                              "op": st.sampled_from(["SCMP_CMP_EQ", "SCMP_CMP_GT"])})
_RULE = st.fixed_dictionaries({"names": st.lists(_NAMES, min_size=1, max_size=3, unique=True),
                               "action": _ACTIONS},
                              optional={"args": st.lists(_ARG, max_size=2)})


@given(st.lists(_RULE, max_size=6), st.sampled_from(["oci", "docker"]))
def test_render_then_parse_is_the_same_profile(rules: list[dict[str, Any]], fmt: str) -> None:
    p = parse_profile({"defaultAction": "SCMP_ACT_ERRNO",
                       "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                       "syscalls": rules})
    again = parse_profile(json.loads(p.dumps(fmt)))
    assert not diff_profiles(p, again)
    assert again.dumps(fmt) == p.dumps(fmt)


def test_every_action_and_operator_builds() -> None:
    actions = ["SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS",
               "SCMP_ACT_TRAP", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW"]
    ops = ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
           "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"]
    names = ["kill", "tkill", "tgkill", "ptrace", "mount", "umount2", "chroot", "reboot"]
    rules: list[dict[str, Any]] = [{"names": [n], "action": a}
                                   for n, a in zip(names, actions, strict=True)]
    rules += [{"names": ["socket"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": 0xFF, "op": op, "valueTwo": 1}]} for op in ops]
    p = parse_profile({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 13,
                       "syscalls": rules})
    plan = plan_filter(p, target=ROOT)
    assert len(plan.rules) == len(actions) + len(ops)
    build_filter(plan)


def test_arch_map_entries_must_be_unique() -> None:
    found = problems({"defaultAction": "SCMP_ACT_ALLOW", "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
        {"architecture": "SCMP_ARCH_X86_64"}]})
    assert found == ["$.archMap[1].architecture: SCMP_ARCH_X86_64 is already an archMap entry "
                     "at $.archMap[0]"]


def test_runtime_base_defers_to_argument_rules_and_to_the_base() -> None:
    rec = _recording(syscalls={"SCMP_ARCH_X86_64": {"clone", "prctl", "read"}},
                     arg_values={"clone": {0x3D0F00 | 0x20000}, "prctl": {15}})
    p = profile_from_recording(rec, INFO, with_args=True)
    base_rule = [r for r in p.syscalls if r.comment.startswith("runtime base")][0]
    # argument rules stay, and allow the runtimes' values too: runc's prctl
    # operations, clone without namespace flags (Go's threads)
    assert not {"clone", "prctl"} & set(base_rule.names) and "rt_sigreturn" in base_rule.names
    prctl = sorted(r.args[0].value for r in p.syscalls if r.names == ("prctl",))
    assert prctl == [8, 15, 23, 24, 38, 47]
    clone = sorted(r.args[0].value_two for r in p.syscalls if r.names == ("clone",))
    assert clone == [0, 0x20000]
    base = parse_profile({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["capset"], "action": "SCMP_ACT_ERRNO"}]})
    merged = profile_from_recording(_recording(), INFO, base=base)
    assert [r.action for r in merged.syscalls if "capset" in r.names] == ["SCMP_ACT_ERRNO"]
    assert "exit" in merged.syscalls[-2].names and merged.syscalls[-1].names == ("clone",)


def test_with_args_an_unrecorded_prctl_gets_only_the_runtimes_operations() -> None:
    rec = _recording(arg_values={"socket": {1}})  # prctl was not made
    p = profile_from_recording(rec, INFO, with_args=True)
    prctl = [r for r in p.syscalls if "prctl" in r.names]
    assert prctl and all(r.args for r in prctl)  # never whole
    assert sorted(r.args[0].value for r in prctl) == [8, 23, 24, 38, 47]
    # without --args every recorded name is allowed whole, and prctl is too
    plain = profile_from_recording(rec, INFO)
    assert any("prctl" in r.names and not r.args for r in plain.syscalls)


def test_repeated_rules_are_planned_and_paired_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """(issue 22, defect 8) repeats of a rule change nothing: the filter gets
    one libseccomp rule, and the conflict check meets each kind of rule
    once, not every pair of 2,000 repeats (which made large profiles take
    minutes)."""
    from bpfguard.seccomp import profile as profile_module

    repeats = [{"names": ["read", "read"], "action": "SCMP_ACT_ALLOW"}] * 2000
    raw = json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        *repeats, {"names": ["read"], "action": "SCMP_ACT_LOG"}]}).encode()
    pairs = []
    real = profile_module._conflict
    monkeypatch.setattr(profile_module, "_conflict",
                        lambda *a: pairs.append(a[3:]) or real(*a))
    prof = loads_profile(raw, "many.json")
    assert pairs == [(0, 2000)]
    assert any("$.syscalls[2000]: read: also in $.syscalls[0]" in w for w in prof.warnings)
    plan = plan_filter(prof)  # (libseccomp keeps the first unconditional rule of read)
    assert [(r.name, r.action) for r in plan.rules] == [("read", "SCMP_ACT_ALLOW")]
    assert any("3999 rule(s) repeating an earlier one" in s for s in plan.skipped)
