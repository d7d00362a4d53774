"""The OCI hook's inputs: the annotation, the runtime's state, the hooks.d entry."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bpfguard.cli import main
from bpfguard.errors import ConfigError
from bpfguard.seccomp.hook import (
    ANNOTATION,
    HOOK_FILE,
    OciState,
    TraceRequest,
    hook_config,
    install,
    parse_annotation,
    uninstall,
)


def test_annotation_syntax_is_oci_seccomp_bpf_hooks() -> None:
    assert parse_annotation("of:/tmp/p.json") == TraceRequest(Path("/tmp/p.json"))
    assert parse_annotation("if:/b.json;of:/o.json") == TraceRequest(Path("/o.json"),
                                                                      Path("/b.json"))
    assert parse_annotation(" of:/o.json ; if:/b.json") == TraceRequest(Path("/o.json"),
                                                                         Path("/b.json"))


@pytest.mark.parametrize(("text", "says"), [
    ("", "is neither 'of:PATH'"),
    ("if:/b.json", "no 'of:PATH'"),
    ("of:p.json", "of:p.json is not an absolute path"),
    ("of:/a;of:/b", "'of:' is given twice"),
    ("of:/a;if:/b;x", "more than one ';'"),
    ("out:/a", "'out:/a' is neither"),
])
def test_bad_annotations_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        parse_annotation(text)


def test_oci_state_is_checked() -> None:
    state = OciState.parse(json.dumps({"ociVersion": "1.0.2", "id": "abc", "status": "creating",
                                       "pid": 42, "bundle": "/b",
                                       "annotations": {ANNOTATION: "of:/x"}}))
    assert (state.id, state.pid, state.annotations[ANNOTATION]) == ("abc", 42, "of:/x")
    assert OciState.parse('{"id": "abc", "status": "stopped"}').pid is None
    with pytest.raises(ConfigError, match="invalid JSON at 1:1"):
        OciState.parse("nope")
    with pytest.raises(ConfigError, match="'pid' is -1.*'annotations' is not an object"):
        OciState.parse('{"id": "a", "status": "x", "pid": -1, "annotations": []}')
    with pytest.raises(ConfigError, match="is not a container id"):
        OciState.parse('{"id": "../../etc/x", "status": "creating", "pid": 1}')


def test_the_entry_runs_this_python_at_prestart_and_poststop() -> None:
    entry = hook_config("/opt/venv/bin/python")
    assert entry["hook"]["path"] == "/opt/venv/bin/python"
    # -I: root imports nothing from the working directory or the environment
    assert entry["hook"]["args"][:4] == ["/opt/venv/bin/python", "-I", "-m", "bpfguard"]
    assert entry["stages"] == ["prestart", "poststop"]
    (pattern,) = entry["when"]["annotations"]
    assert re.match(pattern, ANNOTATION) and not re.match(pattern, ANNOTATION + "x")


def test_install_and_uninstall(tmp_path: Path) -> None:
    (tmp_path / "oci-seccomp-bpf-hook.json").write_text("{}")
    path, notes = install(tmp_path / "hooks.d")
    assert path == tmp_path / "hooks.d" / HOOK_FILE and not notes
    assert json.loads(path.read_text())["hook"]["path"] == sys.executable
    _, notes = install(tmp_path)
    assert any("oci-seccomp-bpf-hook.json is installed too" in n for n in notes)
    _, notes = install(tmp_path)
    assert any("replaced" in n for n in notes)
    assert uninstall(tmp_path) == tmp_path / HOOK_FILE
    assert uninstall(tmp_path) is None


def test_cli_install_prints_where_it_went(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["seccomp", "hook", "install", "--dir", str(tmp_path)])
    assert r.exit_code == 0 and f"installed: {tmp_path / HOOK_FILE}" in r.output
    r = CliRunner().invoke(main, ["seccomp", "hook", "uninstall", "--dir", str(tmp_path)])
    assert r.exit_code == 0 and "removed" in r.output
    r = CliRunner().invoke(main, ["seccomp", "hook", "uninstall", "--dir", str(tmp_path)])
    assert r.exit_code == 0 and "not installed" in r.output


def test_poststop_without_a_recorder_says_nothing(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["seccomp", "hook", "run"],
                           input='{"id": "nosuchcontainer", "status": "stopped"}')
    assert r.exit_code == 0 and r.output == ""


def test_poststop_reports_a_recorder_that_died(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import bpfguard.seccomp.hook as hook

    monkeypatch.setattr(hook, "STATE_DIR", tmp_path)
    (tmp_path / "c1.lock").write_text("")  # its lock is free: the recorder is gone
    said = hook.finish_recording(OciState("c1", "stopped", None, ""), timeout=1)
    assert said is not None and said.startswith("error:") and "without a word" in said
    assert not (tmp_path / "c1.lock").exists()
    (tmp_path / "c2.lock").write_text("")
    (tmp_path / "c2.log").write_text("recorded 12 syscalls of container c2 -> /tmp/p.json\n")
    assert hook.finish_recording(OciState("c2", "stopped", None, ""), timeout=1) == \
        "recorded 12 syscalls of container c2 -> /tmp/p.json"


def test_poststop_gives_up_on_a_recorder_that_does_not_finish(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    import bpfguard.seccomp.hook as hook
    from bpfguard.errors import BpfguardError

    monkeypatch.setattr(hook, "STATE_DIR", tmp_path)
    with open(tmp_path / "c3.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as the recorder holds it while it records
        with pytest.raises(BpfguardError, match="still recording 0 s after it stopped"):
            hook.finish_recording(OciState("c3", "stopped", None, ""), timeout=0.2)
    assert (tmp_path / "c3.lock").exists()  # left for the recorder


def _state(annotation: str) -> OciState:
    return OciState("c9", "creating", 4242, "/b", {ANNOTATION: annotation})


def test_the_annotation_cannot_make_root_replace_or_read_what_it_should_not(
        tmp_path: Path) -> None:
    from bpfguard.seccomp.hook import start_recording

    (tmp_path / "link").symlink_to("/dev/null")
    (tmp_path / "big.json").write_bytes(b" " * (2 << 20))
    allowed = tmp_path / "profiles"
    allowed.mkdir()
    for annotation, says in [
        ("of:/dev/null", "of:/dev/null: not a regular file"),
        (f"of:{tmp_path}/link", "link: not a regular file"),
        (f"of:{tmp_path}", "not a regular file"),
        (f"if:{tmp_path}/big.json;of:{tmp_path}/o.json", "a base profile is at most"),
        (f"if:{tmp_path}/none.json;of:{tmp_path}/o.json", "none.json: does not exist"),
        (f"if:/dev/zero;of:{tmp_path}/o.json", "if:/dev/zero: not a regular file"),
        ("of:/nonexistent-dir/o.json", "directory /nonexistent-dir: does not exist"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(says)):
            start_recording(_state(annotation))
    (tmp_path / "base.json").write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    (allowed / "base.json").symlink_to(tmp_path / "base.json")  # a link out of it
    for annotation in (f"of:{tmp_path}/o.json", f"of:{allowed}/../o.json",
                       f"if:{tmp_path}/big.json;of:{allowed}/o.json",
                       f"if:{allowed}/base.json;of:{allowed}/o.json"):
        with pytest.raises(ConfigError, match="outside the directories the hook was installed"):
            start_recording(_state(annotation), allowed=[allowed])


def test_install_writes_the_allowed_directories_into_the_entry(tmp_path: Path) -> None:
    path, _ = install(tmp_path, [tmp_path])
    assert json.loads(path.read_text())["hook"]["args"][-2:] == ["--allow-dir", str(tmp_path)]
    with pytest.raises(ConfigError, match="not an absolute path to a directory"):
        install(tmp_path, [Path("relative")])


def test_the_profile_goes_where_prestart_checked_even_if_the_path_changes(
        tmp_path: Path) -> None:
    from bpfguard.files import write_in_dir
    from bpfguard.seccomp.hook import _open_output

    allowed, elsewhere = tmp_path / "profiles", tmp_path / "etc"
    (allowed / "d").mkdir(parents=True)
    elsewhere.mkdir()
    out = _open_output(allowed / "d" / "p.json", [allowed])
    try:
        # between the container's start and its end, the directory is swapped
        (allowed / "d").rename(allowed / "d.old")
        (allowed / "d").symlink_to(elsewhere)
        write_in_dir(out.dir_fd, out.name, "{}\n", "of:")
    finally:
        os.close(out.dir_fd)
    assert (allowed / "d.old" / "p.json").read_text() == "{}\n"
    assert not (elsewhere / "p.json").exists()
    assert [p.name for p in (allowed / "d.old").iterdir()] == ["p.json"]  # no temp left
