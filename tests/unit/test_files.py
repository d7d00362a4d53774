"""Files the agent writes are reached without following a path another user
could steer (issue 22, defect 2): symbolic links, directories others may
write, and files that are not the agent's own are refused, whatever
fs.protected_symlinks says. Another user is simulated by chown to nobody,
so these tests need root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bpfguard.errors import ConfigError
from bpfguard.files import open_in_trusted_dir, open_trusted_dir, remove_tree
from bpfguard.outputs.alert import Alert
from bpfguard.outputs.channels import FileChannel
from bpfguard.outputs.store import SqliteChannel

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")

NOBODY = 65534
APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT


def _alert(text: str = "m") -> Alert:
    return Alert(time_ns=1, rule="r", priority="Warning", source="syscall", hostname="h",
                 output=text, output_fields={})


def _users_dir(path: Path, mode: int = 0o755) -> Path:
    path.mkdir()
    os.chown(path, NOBODY, NOBODY)
    path.chmod(mode)
    return path


def _refusal(path: Path | str, **kw: bool) -> str:
    with pytest.raises(ConfigError) as exc:
        os.close(open_in_trusted_dir(path, APPEND, "test", **kw))
    return str(exc.value)


def test_a_symlinked_output_file_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("secret\n")
    (tmp_path / "alerts.json").symlink_to(victim)
    with pytest.raises(ConfigError) as exc:
        FileChannel(tmp_path / "alerts.json")
    assert "is a symbolic link; bpfguard does not follow links" in str(exc.value)
    assert victim.read_text() == "secret\n"


def test_a_link_planted_before_a_reopen_fails_the_alert_not_the_victim(tmp_path: Path) -> None:
    path, victim = tmp_path / "alerts.json", tmp_path / "victim"
    victim.write_text("")
    with FileChannel(path, keep_alive=True) as ch:
        ch.send(_alert("first"))
        assert ch.flush(timeout=3.0)
        path.unlink()
        path.symlink_to(victim)
        ch.reopen()
        ch.send(_alert("second"))
        ch.flush(timeout=3.0)
        assert ch.stats().failed == 1
    assert victim.read_text() == ""


def test_a_directory_another_user_owns_is_refused(tmp_path: Path) -> None:
    users = _users_dir(tmp_path / "home")
    assert "directory " + str(users) + " belongs to uid 65534" in _refusal(users / "a.json")
    with pytest.raises(ConfigError, match="belongs to uid 65534"):
        FileChannel(users / "deeper" / "a.json", create_dirs=True)
    assert not (users / "deeper").exists()


def test_a_link_through_a_users_directory_is_refused(tmp_path: Path) -> None:
    """The user renames their directory and puts a link to /etc in its
    place: root must not follow it."""
    users = _users_dir(tmp_path / "home")
    os.symlink("/etc", users / "logs")
    assert "belongs to uid 65534" in _refusal(users / "logs" / "ld.so.preload")


def test_links_that_only_root_could_make_are_followed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "run").symlink_to("real")      # like Debian's /var/run -> /run
    (tmp_path / "abs").symlink_to(tmp_path / "real")
    for via in ("run", "abs"):
        os.close(open_in_trusted_dir(tmp_path / via / "a.json", APPEND, "test"))
    assert (tmp_path / "real" / "a.json").is_file()


def test_a_world_writable_directory_is_refused_unless_sticky(tmp_path: Path) -> None:
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o757)
    assert "is writable by anyone (mode 0757, not sticky)" in _refusal(d / "a.json")


def test_shared_directories_pass_only_our_own_entries(tmp_path: Path) -> None:
    """A sticky /tmp, or a group-writable /var/log (Ubuntu's is root:syslog
    0775): others may put entries there, so only root's are used."""
    for mode in (0o1777, 0o775):
        shared = tmp_path / f"d{mode:o}"
        shared.mkdir()
        shared.chmod(mode)
        os.close(open_in_trusted_dir(shared / "ours.json", APPEND, "test"))
        planted = shared / "planted.json"
        planted.write_text("")
        os.chown(planted, NOBODY, NOBODY)
        assert "belongs to uid 65534; in a directory others may write" in _refusal(planted)
        users = _users_dir(shared / "theirs")
        assert f"{users} belongs to uid 65534 in {shared}, which others may write" in \
            _refusal(users / "a")
        os.symlink("/etc", shared / "link")
        os.lchown(shared / "link", NOBODY, NOBODY)
        assert "belongs to uid 65534" in _refusal(shared / "link" / "passwd")
        target = shared / "file"
        target.write_text("")
        os.link(target, shared / "alias")
        assert "has 2 hard links" in _refusal(shared / "alias")
        # SQLite names its side files itself: a shared directory is refused
        with pytest.raises(ConfigError, match="may be written by others"):
            SqliteChannel(shared / "alerts.db")


def test_in_a_directory_only_root_writes_any_regular_file_will_do(tmp_path: Path) -> None:
    """(logrotate's `create 0640 syslog adm` makes the file another user's)"""
    theirs = tmp_path / "alerts.json"
    theirs.write_text("")
    os.chown(theirs, NOBODY, NOBODY)
    os.link(theirs, tmp_path / "alias")
    for p in (theirs, tmp_path / "alias"):
        os.close(open_in_trusted_dir(p, APPEND, "test"))
    os.mkfifo(tmp_path / "fifo")
    assert "is not a regular file" in _refusal(tmp_path / "fifo")


def test_dot_dot_is_taken_where_the_kernel_takes_it(tmp_path: Path) -> None:
    """`a/evil/../x`: the kernel goes up from where the link evil leads, not
    back to a; so does the check (a textual clean-up would check a/x)."""
    users = _users_dir(tmp_path / "home")
    (users / "sub").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "evil").symlink_to(users / "sub")
    assert "belongs to uid 65534" in _refusal(f"{tmp_path}/a/evil/../x.json")
    os.close(open_in_trusted_dir(f"{tmp_path}/a/../a/x.json", APPEND, "test"))
    assert (tmp_path / "a" / "x.json").is_file()


def test_missing_directories_are_made_only_when_asked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        open_trusted_dir(tmp_path / "a" / "b", "test")
    os.close(open_trusted_dir(tmp_path / "a" / "b", "test", create=True, dir_mode=0o700))
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o700


def test_config_check_refuses_a_steerable_output_path_and_makes_nothing(
        tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bpfguard.cli import main

    users = _users_dir(tmp_path / "home")
    (tmp_path / "logs").symlink_to(users)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"outputs:\n  file: {{enabled: true, path: {tmp_path}/logs/new/a.json}}\n"
                   f"  sqlite: {{enabled: true, path: {tmp_path}/db/alerts.db}}\n")
    r = CliRunner().invoke(main, ["config", "check", "-c", str(cfg)])
    assert r.exit_code == 1, r.output
    assert f"outputs.file.path {tmp_path}/logs/new/a.json: directory {users} belongs to " \
           "uid 65534" in r.output
    assert not (users / "new").exists() and not (tmp_path / "db").exists()
    cfg.write_text(f"outputs:\n  file: {{enabled: true, path: {tmp_path}/new/a.json}}\n")
    r = CliRunner().invoke(main, ["config", "check", "-c", str(cfg)])
    assert r.exit_code == 0, r.output


def test_remove_tree_goes_only_through_a_parent_root_owns(tmp_path: Path) -> None:
    """A pin directory is removed through its parent: a user's directory
    (a world-writable /sys/fs/bpf lets one make `bpfguard` there) or a
    link planted in place of the tree never leads root's removal away."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("")
    users = _users_dir(tmp_path / "home")
    (users / "pins").symlink_to(victim)
    with pytest.raises(ConfigError, match="belongs to uid 65534"):
        remove_tree(users / "pins", "test")
    (tmp_path / "pins").symlink_to(victim)
    remove_tree(tmp_path / "pins", "test")  # the link itself is no tree: left alone
    assert (victim / "keep").exists()
    remove_tree(victim, "test")
    assert not victim.exists()
    remove_tree(tmp_path / "nothing" / "here", "test")  # nothing there: nothing to do
