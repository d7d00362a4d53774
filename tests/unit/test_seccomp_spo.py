"""Profiles as the Security Profiles Operator's SeccompProfile, checked against its CRD."""

from __future__ import annotations

import copy
import datetime as dt
import errno
import json
import platform
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from bpfguard.cli import main
from bpfguard.errors import ConfigError
from bpfguard.seccomp import (
    Profile,
    ProfileError,
    Recording,
    RecordingInfo,
    Target,
    load_profile,
    parse_profile,
    profile_from_recording,
    resolve_for,
)
from bpfguard.seccomp.profile import ACTIONS, FLAGS, OPS
from bpfguard.seccomp.spo import API_VERSION, SPO_ARCHES, check_name, name_from, to_spo

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# The SeccompProfile CRD, copied with its LICENSE and SOURCE
CRD = FIXTURES / "spo/seccompprofile.yaml"
PLAIN = Target("x86_64", (6, 18, 0), frozenset({"CAP_CHOWN"}))
INFO = RecordingInfo({"command": ["app", "--serve"]}, dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                     dt.datetime(2026, 1, 1, 0, 0, 5, tzinfo=dt.UTC))
# Kubernetes' qualified name (the part of an annotation key after the prefix)
_QUALIFIED = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


def _strict(schema: Any) -> Any:
    """The CRD schema as the API server applies it, in terms jsonschema knows:
    list-type set means unique items, and an object with declared properties
    takes no others (the server would prune them: here that is an error)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if schema.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if schema.get("type") == "object" and "properties" in schema:
        out.setdefault("additionalProperties", False)
    return out


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CRD.read_text())
    return data


@pytest.fixture(scope="module")
def validator(crd: dict[str, Any]) -> jsonschema.protocols.Validator:
    version = API_VERSION.rsplit("/", 1)[1]
    [schema] = [v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]
                if v["name"] == version]
    checker = jsonschema.FormatChecker()
    for fmt, bits in (("int32", 32), ("int64", 64)):
        checker.checks(fmt)(lambda v, bits=bits: not isinstance(v, int)
                            or -(1 << (bits - 1)) <= v < 1 << (bits - 1))
    return jsonschema.Draft7Validator(_strict(schema), format_checker=checker)


def _valid(validator: jsonschema.protocols.Validator, text: str) -> dict[str, Any]:
    """Checks what the API server checks of a written resource; returns it."""
    doc: dict[str, Any] = yaml.safe_load(text)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]
    assert doc["apiVersion"] == API_VERSION and doc["kind"] == "SeccompProfile"
    check_name(doc["metadata"]["name"])
    for key, value in doc["metadata"].get("annotations", {}).items():
        prefix, _, name = key.partition("/")
        assert prefix == "bpfguard.io" and _QUALIFIED.fullmatch(name) and len(name) <= 63, key
        assert isinstance(value, str), key
    return doc


def _recording(**kw: Any) -> Recording:
    rec = Recording(syscalls={"SCMP_ARCH_X86_64": {"write", "read", "socket", "exit_group",
                                                   "clone", "clone3", "execve"},
                              "SCMP_ARCH_X86": {"open"}})
    for k, v in kw.items():
        setattr(rec, k, v)
    return rec


def _enum(crd: dict[str, Any], *path: str) -> set[str]:
    node = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for key in path:
        node = node["properties"][key] if key != "[]" else node["items"]
    return set(node["enum"] if "enum" in node else node["items"]["enum"])


# -- the CRD and bpfguard agree on what there is ----------------------------------------


def test_bpfguards_enums_are_the_crds(crd: dict[str, Any]) -> None:
    # every served version has the same spec: what is checked for one holds for both
    specs = [v["schema"]["openAPIV3Schema"]["properties"]["spec"] for v in crd["spec"]["versions"]]
    assert {v["name"] for v in crd["spec"]["versions"]} >= {API_VERSION.rsplit("/", 1)[1]}
    assert all(s == specs[0] for s in specs)
    assert _enum(crd, "architectures") == {*SPO_ARCHES, "SCMP_ARCH_NATIVE"}
    assert _enum(crd, "defaultAction") == set(ACTIONS)
    assert _enum(crd, "syscalls", "[]", "action") == set(ACTIONS)
    assert _enum(crd, "syscalls", "[]", "args", "[]", "op") == set(OPS)
    assert _enum(crd, "flags") == set(FLAGS)
    # and the spec has no field for what to_spo leaves out or refuses
    assert not {"defaultErrnoRet", "archMap", "bpfguard"} & set(specs[0]["properties"])
    assert not {"comment", "includes", "excludes"} & set(
        specs[0]["properties"]["syscalls"]["items"]["properties"])


# -- what validates ---------------------------------------------------------------------------


def test_recorded_profile_validates_and_is_deterministic(
        validator: jsonschema.protocols.Validator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    profile = profile_from_recording(_recording(), INFO)
    spo = to_spo(profile, name="app")
    text = spo.dumps()
    assert text == to_spo(profile_from_recording(_recording(), INFO), name="app").dumps()
    doc = _valid(validator, text)
    assert doc == spo.document
    spec = doc["spec"]
    assert spec["defaultAction"] == "SCMP_ACT_ERRNO" and "defaultErrnoRet" not in spec
    assert spec["architectures"] == list(profile.architectures)
    assert spec["syscalls"][0]["names"] == list(profile.syscalls[0].names)
    notes = doc["metadata"]["annotations"].pop("bpfguard.io/notes")
    assert doc["metadata"]["annotations"] == {
        "bpfguard.io/command": '["app", "--serve"]',
        "bpfguard.io/recorded-from": "2023-11-14T22:13:20Z",
        "bpfguard.io/recorded-until": "2023-11-14T22:13:20Z",
        "bpfguard.io/kernel": platform.release(),
        "bpfguard.io/recorded-syscalls": '{"SCMP_ARCH_X86": 1, "SCMP_ARCH_X86_64": 7}',
    }
    assert "defaultErrnoRet 1 (EPERM) left out" in notes
    assert spo.notes[0].startswith("defaultErrnoRet 1 (EPERM) left out")


def test_args_profile_validates(validator: jsonschema.protocols.Validator) -> None:
    rec = _recording(arg_values={"socket": {1, 10}, "clone": {0x3D0F00}})
    profile = profile_from_recording(rec, INFO, with_args=True)
    spo = to_spo(profile, name="app.args")
    doc = _valid(validator, spo.dumps())
    rules = doc["spec"]["syscalls"]
    assert {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_EQ"}]} in rules
    assert {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS} in rules
    assert any(r.get("args", [{}])[0].get("op") == "SCMP_CMP_MASKED_EQ" for r in rules)
    assert any("comment(s) left out" in n for n in spo.notes)


def test_errno_flags_and_notify_profile_validates(
        validator: jsonschema.protocols.Validator) -> None:
    profile = parse_profile({
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "architectures": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "listenerPath": "/var/run/security-profiles-operator/agent.sock",
        "listenerMetadata": "web",
        "syscalls": [
            {"names": ["read", "write", "read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES},
            {"names": ["ptrace"], "action": "SCMP_ACT_TRACE", "errnoRet": 1},
            {"names": ["mount"], "action": "SCMP_ACT_NOTIFY"},
            {"names": ["mmap"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 2, "value": 4, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"},
                      {"index": 3, "value": (1 << 63) - 1, "op": "SCMP_CMP_LE"}]}]})
    spo = to_spo(profile, name="edge")
    doc = _valid(validator, spo.dumps())
    spec = doc["spec"]
    assert spec["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert spec["syscalls"][0]["names"] == ["read", "write"]
    assert spec["syscalls"][1]["errnoRet"] == errno.EACCES
    assert spec["listenerPath"] == "/var/run/security-profiles-operator/agent.sock"
    assert any(n.startswith("duplicate") for n in spo.notes)
    assert doc["metadata"]["annotations"] == {"bpfguard.io/notes": "\n".join(spo.notes)}


def test_docker_default_resolved_validates(validator: jsonschema.protocols.Validator) -> None:
    docker = load_profile(FIXTURES / "seccomp/docker-default.json")
    with pytest.raises(ProfileError, match="includes/excludes"):
        to_spo(docker, name="docker-default")
    _valid(validator, to_spo(resolve_for(docker, PLAIN), name="docker-default").dumps())


# -- the schema check can fail ----------------------------------------------------------------


@pytest.mark.parametrize("breakage", [
    lambda d: d["spec"].update(defaultAction="SCMP_ACT_ALOW"),
    lambda d: d["spec"].update(defaultErrnoRet=38),  # not in the spec: pruned
    lambda d: d["spec"]["syscalls"][0].update(comment="why"),
    lambda d: d["spec"]["syscalls"][0]["names"].append("read"),  # a set
    lambda d: d["spec"]["syscalls"][1]["args"][0].update(value=1 << 63),  # int64
    lambda d: d["spec"]["architectures"].append("SCMP_ARCH_LOONGARCH64"),
    lambda d: d["spec"].update(listenerPath="/run/agent.sock"),
    lambda d: d["spec"]["syscalls"].append({"names": [], "action": "SCMP_ACT_ALLOW"}),
    lambda d: d.pop("spec"),
], ids=["action", "defaultErrnoRet", "comment", "duplicate", "int64", "arch", "listener",
        "no-names", "no-spec"])
def test_a_broken_document_is_rejected(validator: jsonschema.protocols.Validator,
                                       breakage: Any) -> None:
    profile = parse_profile({"defaultAction": "SCMP_ACT_ERRNO",
                             "architectures": ["SCMP_ARCH_X86_64"],
                             "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                                          {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                                           "args": [{"index": 0, "value": 1,
                                                     "op": "SCMP_CMP_EQ"}]}]})
    doc = copy.deepcopy(to_spo(profile, name="p").document)
    _valid(validator, yaml.safe_dump(doc))
    breakage(doc)
    with pytest.raises(AssertionError):
        _valid(validator, yaml.safe_dump(doc))


# -- what is refused, and why -----------------------------------------------------------------


def test_what_the_crd_cannot_express_is_refused_with_paths() -> None:
    profile = parse_profile({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.ENOSYS,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_LOONGARCH64"],
        "listenerPath": "/run/agent.sock",
        "syscalls": [
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 0},
            {"names": ["mmap"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 1 << 63, "op": "SCMP_CMP_MASKED_EQ",
                       "valueTwo": 1 << 63}]},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": v, "op": "SCMP_CMP_NE"} for v in range(7)]}]})
    with pytest.raises(ProfileError) as info:
        to_spo(profile, name="p")
    assert str(info.value).startswith("SeccompProfile p: ")
    assert [p.split(":")[0] for p in info.value.problems] == [
        "$.defaultErrnoRet", "$.architectures[1]", "$.listenerPath", "$.syscalls[0].errnoRet",
        "$.syscalls[1].args[0].value", "$.syscalls[1].args[0].valueTwo", "$.syscalls[2].args"]
    assert "the default would answer EPERM" in info.value.problems[0]
    assert "runtime would then answer EPERM instead of success" in info.value.problems[3]


def test_default_errno_ret_of_other_actions_is_left_out_with_a_note() -> None:
    spo = to_spo(parse_profile({"defaultAction": "SCMP_ACT_LOG", "defaultErrnoRet": 38}),
                 name="p")
    assert spo.notes == ["defaultErrnoRet 38 left out: SCMP_ACT_LOG takes no errno"]
    assert spo.document["spec"] == {"defaultAction": "SCMP_ACT_LOG"}


def test_arch_map_without_conditions_is_flattened_with_a_note(
        validator: jsonschema.protocols.Validator) -> None:
    p = parse_profile({"defaultAction": "SCMP_ACT_ERRNO", "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}]})
    spo = to_spo(p, name="p")
    assert _valid(validator, spo.dumps())["spec"]["architectures"] == [
        "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert spo.notes[0].startswith("archMap flattened")


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["app", "web-1", "app.v2", "a" * 253, "0x"])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "My-App", "app_1", "-app", "app-", "a..b", "app.",
                                  "web server", "a" * 254, "ä"])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="not a valid Kubernetes object name"):
        check_name(name)
    with pytest.raises(ConfigError, match="not a valid Kubernetes object name"):
        to_spo(Profile("SCMP_ACT_ALLOW"), name=name)


@pytest.mark.parametrize(("stem", "name"), [
    ("app", "app"), ("My_App.v2", "my-app.v2"), ("Web Server (prod)", "web-server-prod"),
    ("-x-.-y-", "x.y"), ("app.seccomp", "app.seccomp"), ("a" * 300, "a" * 253),
    ("___", None), ("..", None)])
def test_name_from_a_file_stem(stem: str, name: str | None) -> None:
    assert name_from(stem) == name
    if name is not None:
        check_name(name)


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_cli_names_and_early_refusals(tmp_path: Path) -> None:
    prof = _write(tmp_path / "p.json", {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"}]})
    run = CliRunner().invoke
    r = run(main, ["seccomp", "merge", str(prof), "--format", "spo", "--name", "My App",
                   "-o", str(tmp_path / "out.yaml")])
    assert r.exit_code == 1 and "--name: 'My App' is not a valid Kubernetes object name" \
        in r.output
    assert not (tmp_path / "out.yaml").exists()
    r = run(main, ["seccomp", "merge", str(prof), "--name", "web", "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and "--name is only for --format spo" in r.output
    r = run(main, ["seccomp", "merge", str(prof), "--format", "spo",
                   "-o", str(tmp_path / "___.yaml")])
    assert r.exit_code == 1 and "give --name" in r.output
    r = run(main, ["seccomp", "merge", str(prof), "--format", "spo",
                   "-o", str(tmp_path / "My_Web.yaml")])
    assert r.exit_code == 0, r.output
    assert yaml.safe_load((tmp_path / "My_Web.yaml").read_text())["metadata"]["name"] == "my-web"
    # record refuses before anything runs (no root or kernel needed to get there)
    r = run(main, ["seccomp", "record", "--format", "spo", "--name", "Bad_Name",
                   "-o", str(tmp_path / "r.yaml"), "--", "true"])
    assert r.exit_code == 1 and "--name: 'Bad_Name' is not a valid" in r.output
    base = _write(tmp_path / "base.json", {"defaultAction": "SCMP_ACT_ERRNO",
                                           "defaultErrnoRet": 38})
    r = run(main, ["seccomp", "record", "--format", "spo", "--base", str(base),
                   "-o", str(tmp_path / "r.yaml"), "--", "true"])
    assert r.exit_code == 1 and "$.defaultErrnoRet: 38 cannot be expressed" in r.output
    assert not (tmp_path / "r.yaml").exists()
