"""io_uring requests reported as the syscalls they stand for: each operation
uring_ops (progs/uring_ops.c) submits, through io_uring only, is an event
flagged io_uring with its files resolved from kernel objects, and the stock
rules that watch the equivalent syscall fire on it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from bpfguard.rules import stock_rules_path
from bpfguard.rules.engine import Engine
from bpfguard.rules.loader import load_rules_or_raise

from .helpers import trace
from .test_detect import detect, rules_of

pytestmark = pytest.mark.kernel

_OPS = ["openat", "read", "write", "connect", "unlinkat", "renameat2", "mkdirat", "linkat",
        "symlinkat", "socket", "io_uring_setup", "io_uring_enter"]


def _events(t: Any, pid: int) -> list[dict[str, Any]]:
    return [r for r in t.records if r.get("type") == "syscall" and r["pid"] == pid]


def test_io_uring_operations_are_events_with_kernel_resolved_files(
        progs: dict[str, str], tmp_path: Path) -> None:
    d = tmp_path
    t = trace([progs["uring_ops"],
               "read", "/etc/hostname",
               "slot-read", "/etc/hostname",
               "quiet-read", "/etc/hosts",
               "async-read", "/etc/os-release",
               "socket",
               "create", str(d / "x"),
               "mkdir", str(d / "sub"),
               "rename", str(d / "x"), str(d / "y"),
               "link", str(d / "y"), str(d / "z"),
               "symlink", "/etc", str(d / "s"),
               "unlink", str(d / "z"),
               "connect", "127.0.0.1", "1"], syscalls=_OPS)
    evs = _events(t, t.pid)
    uring = [e for e in evs if e.get("io_uring")]
    by = {}
    for e in uring:
        by.setdefault(e["syscall"], []).append(e)
    # the ring itself is set up by syscalls, never flagged
    assert {e["syscall"] for e in evs if not e.get("io_uring")} >= {"io_uring_setup",
                                                                   "io_uring_enter"}
    opens = by["openat"]
    # the open that posts no completion is reported at its submission, before
    # the ones submitted earlier complete... in order here: one at a time
    assert sorted(o["args"]["pathname"]["user"] for o in opens) == sorted([
        "/etc/hostname", "/etc/hostname", "/etc/hosts", "/etc/os-release", str(d / "x")])
    quiet = next(o for o in opens if o["args"]["pathname"]["user"] == "/etc/hosts")
    worker = next(o for o in opens if o["args"]["pathname"]["user"] == "/etc/os-release")
    plain, slot, create = (o for o in opens if o is not quiet and o is not worker)
    # run by an io-wq worker thread: the submitter named, the file resolved
    # in the fd table they share
    assert worker["tid"] == t.pid and worker["thread_comm"] == "uring_ops"
    assert worker["ret_file"]["path"] == os.path.realpath("/etc/os-release")
    assert plain["ret"] >= 0 and plain["ret_file"]["path"] == "/etc/hostname"
    assert not plain.get("fixed_result")
    # into a registered file slot: no fd to resolve, the slot is the result
    assert slot["fixed_result"] and slot["ret"] == 0 and slot.get("ret_file") is None
    # IOSQE_CQE_SKIP_SUCCESS: no completion to wait for, reported at submission
    assert quiet["no_completion"] and quiet["ret"] == 0
    assert quiet["args"]["pathname"]["resolved"] == "/etc/hosts"
    assert "O_CREAT" in create["args"]["flags"]
    reads = by["read"]
    assert [r["args"]["fd"]["path"] for r in reads] == [
        "/etc/hostname", "/etc/hostname", "/etc/hosts", os.path.realpath("/etc/os-release")]
    assert not reads[0].get("fixed_file") and reads[1]["fixed_file"]
    assert reads[1]["args"]["fd"]["fd"] == 0  # the registered file's index
    assert by["write"][0]["args"]["fd"]["path"] == str(d / "x")
    assert by["mkdirat"][0]["args"]["pathname"]["resolved"] == str(d / "sub")
    ren = by["renameat2"][0]["args"]
    assert (ren["oldpath"]["resolved"], ren["newpath"]["resolved"]) == (str(d / "x"),
                                                                      str(d / "y"))
    ln = by["linkat"][0]["args"]
    assert (ln["oldpath"]["resolved"], ln["newpath"]["resolved"]) == (str(d / "y"), str(d / "z"))
    sl = by["symlinkat"][0]["args"]
    assert (sl["target"], sl["linkpath"]["resolved"]) == ("/etc", str(d / "s"))
    assert by["unlinkat"][0]["args"]["pathname"]["resolved"] == str(d / "z")
    sock = by["socket"][0]
    assert sock["args"]["domain"] == 2 and sock["ret"] >= 0  # AF_INET
    assert sock["ret_file"]["path"].startswith("socket:")
    conn = by["connect"][0]
    assert conn["errno"] == "ECONNREFUSED"
    assert conn["args"]["addr"]["port"] == 1 and conn["args"]["fd"]["path"].startswith("socket:")
    # each reported in the process's name (exec-time), whichever thread ran it
    assert {e["comm"] for e in uring} == {"uring_ops"}


# the guest verifies the same programs in the test above; the rules' kernel
# filters on io_uring requests run here
@pytest.mark.host_covers
def test_an_io_uring_read_of_etc_shadow_raises_the_stock_rule(progs: dict[str, str],
                                                            tmp_path: Path) -> None:
    exe = tmp_path / "uring_reader"  # a name no stock list trusts
    shutil.copy(progs["uring_ops"], exe)
    engine = Engine(load_rules_or_raise([str(stock_rules_path())]).rules, rule_matching="all")
    # an open whose success posts no completion raises it as well
    alerts = detect(engine, [str(exe), "read", "/etc/shadow", "quiet-read", "/etc/shadow"])
    hit = [a for a in alerts if a["rule"] == "Read sensitive file untrusted"]
    assert len(hit) == 2, rules_of(alerts)
    for a in hit:
        f = a["output_fields"]
        assert f["fd.name"] == "/etc/shadow" and f["proc.name"] == "uring_reader"
        assert f["evt.type"] == "openat"
