"""Rule evaluation without the kernel: Falco's operator semantics, fields,
alerts, and what the pushdown planner may filter in the kernel."""

from __future__ import annotations

import copy
import os
import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bpfguard.proctable import Process, ProcessTable
from bpfguard.rules.compiler import ALL_TYPES, CompileError, compile_condition, event_types
from bpfguard.rules.event import RuleEvent
from bpfguard.rules.grammar import ConditionSyntaxError, parse_condition
from bpfguard.rules.pushdown import NEVER, Need, need
from bpfguard.sensors import PathFilter
from bpfguard.sensors.events import ExecEvent, FileRef, SockInfo, SyscallEvent
from bpfguard.sensors.sensors import path_key_bytes

T0 = 1_000_000_000_000


def _table() -> ProcessTable:
    t = ProcessTable()
    procs = [
        Process(pid=1, ppid=0, start_ns=1, exec_id="a:1:1", comm="systemd", exe="/sbin/init",
                args=["/sbin/init"]),
        Process(pid=100, ppid=1, start_ns=2, exec_id="a:2:100", comm="sshd",
                exe="/usr/sbin/sshd", args=["sshd:", "root"]),
        Process(pid=200, ppid=100, start_ns=3, exec_id="a:3:200", comm="bash",
                exe="/usr/bin/bash", args=["-bash"], sid=200, pgid=200, tty_nr=34816),
        Process(pid=300, ppid=200, start_ns=T0 - 10_000_000_000, exec_id="a:4:300",
                comm="python3", exe="/usr/bin/python3.11",
                args=["python3", "x.py", "--flag"], cwd="/dev/shm", euid=1000, egid=1000,
                loginuid=1000, sid=200, pgid=300, tty_nr=34816, exe_mode=0o100755,
                exe_uid=0, exe_gid=0, cap_effective=0,
                env=["HOME=/home/u", "PATH=/usr/bin"], cgroup="/system.slice/x.service"),
    ]
    for p in procs:
        t._put(p)
    return t


TABLE = _table()


def _open(path: str, *, ret: int = 3, flags: str = "O_RDONLY|O_CLOEXEC", user: str | None = None,
          mode: int = 0o100644) -> RuleEvent:
    f = FileRef(path=path, ino=42, dev=8, fs_magic=0xEF53, mode=mode) if ret >= 0 else None
    ev = SyscallEvent(type="syscall", ktime_ns=T0, pid=300, tid=300, uid=1000, gid=1000,
                      cgroup_id=1, comm="python3", truncated=False, syscall="openat", nr=257,
                      arch="x86_64", ret=ret, errno=None if ret >= 0 else "ENOENT",
                      latency_ns=1000, args={"dirfd": "AT_FDCWD",
                                             "pathname": {"user": user or path,
                                                          "resolved": path},
                                             "flags": flags, "mode": 0},
                      ret_file=f)
    return RuleEvent(1, "openat", ev, TABLE.get(300), TABLE, "host1")


def _connect(remote: str, port: int) -> RuleEvent:
    sock = SockInfo(family="AF_INET", type=1, protocol=6, local="10.0.0.5", local_port=40000,
                    remote=remote, remote_port=port)
    ev = SyscallEvent(type="syscall", ktime_ns=T0, pid=300, tid=300, uid=1000, gid=1000,
                      cgroup_id=1, comm="python3", truncated=False, syscall="connect", nr=42,
                      arch="x86_64", ret=0, errno=None, latency_ns=10,
                      args={"fd": {"fd": 3, "path": "socket:[1]", "ino": 1, "dev": 0,
                                   "mode": "0o140777", "sock": sock.to_dict()},
                            "addr": {"family": "AF_INET", "addr": remote, "port": port},
                            "addrlen": 16})
    return RuleEvent(2, "connect", ev, TABLE.get(300), TABLE, "host1")


def check(cond: str, e: RuleEvent) -> bool:
    return compile_condition(parse_condition(cond))(e)


OPEN = _open("/etc/shadow", user="../etc/shadow")


@pytest.mark.parametrize(("cond", "expected"), [
    ("fd.name = /etc/shadow", True),
    ("fd.name == '/etc/shadow'", True),
    ("fd.name != /etc/passwd", True),
    ("fd.name contains shad", True),
    ("fd.name icontains SHAD", True),
    ("fd.name startswith /etc/", True),
    ("fd.name endswith adow", True),
    ("fd.name glob '/etc/*'", True),
    ("fd.name glob '/e?c/[rs]hadow'", True),
    ("fd.name iglob '/ETC/*'", True),
    ("fd.name regex '/etc/sha.*'", True),
    ("fd.name regex 'sha'", False),  # RE2 anchored at both ends
    ("fd.name in (/etc/passwd, /etc/shadow)", True),
    ("fd.name intersects (/etc/shadow)", True),
    ("fd.name pmatch (/etc)", True),
    ("fd.name pmatch (/et)", False),  # a path prefix, not a string prefix
    ("fd.name bcontains 736861646f77", True),  # "shadow" in hex
    ("fd.name bstartswith 2f657463", True),
    ("fd.num >= 0", True),
    ("fd.num < 3", False),
    ("fd.num <= 3", True),
    ("fd.num > 2", True),
    ("fd.nameraw = ../etc/shadow", True),
    ("fd.directory = /etc", True),
    ("fd.filename = shadow", True),
    ("fd.typechar = f and fd.type = file", True),
    ("evt.is_open_read = true and evt.is_open_write = false", True),
    ("evt.arg.flags contains O_CLOEXEC", True),
    ("evt.arg.name = ../etc/shadow", True),
    ("evt.arg[0] = 3 and evt.arg[2] = ../etc/shadow", True),  # Falco's order: fd, dirfd, name
    ("evt.res = SUCCESS and evt.rawres = 3 and evt.failed = false", True),
    ("evt.type = openat and evt.dir = '<'", True),
    ("tolower(proc.name) = python3 and toupper(proc.name) = PYTHON3", True),
    ("len(proc.name) = 7", True),
    ("basename(fd.name) = shadow", True),
    ("b64(proc.env[ENC]) exists", False),
    ("proc.name = val(proc.name)", True),
    ("proc.name = val(proc.pname)", False),
    ("fd.name exists", True),
    ("evt.rawarg.mode = 0 and evt.rawarg.mode < 5", True),  # typed as its argument
    ("evt.rawarg.flags contains O_CLOEXEC", True),
])
def test_operators(cond: str, expected: bool) -> None:
    assert check(cond, OPEN) is expected


def _with_args(e: RuleEvent, syscall: str, **args: Any) -> RuleEvent:
    ev = copy.copy(e.event)
    assert isinstance(ev, SyscallEvent)
    ev.syscall, ev.args = syscall, {**ev.args, **args}
    return RuleEvent(e.num, syscall, ev, e.proc, e.table, e.hostname)


def test_is_open_exec_is_a_created_file_with_an_execute_bit() -> None:
    # Falco's mark of a dropped binary (the sandbox "Container Drift Detected
    # (open+create)"): created (O_CREAT) with an execute bit in the mode
    flags = "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC"
    assert check("evt.is_open_exec = true", _with_args(_open("/tmp/x", flags=flags), "openat",
                                                       mode=0o755))
    assert check("evt.is_open_exec = false", _with_args(_open("/tmp/x", flags=flags), "openat",
                                                        mode=0o644))
    assert check("evt.is_open_exec = false", _with_args(_open("/tmp/x"), "openat", mode=0o755))
    assert check("evt.is_open_exec = false", OPEN)   # no mode: a read open
    assert not check("evt.is_open_exec exists", _with_args(_open("/x"), "openat2", how=flags,
                                                           mode=None))


def test_a_chmod_mode_reads_as_falco_renders_it() -> None:
    e = _with_args(_open("/tmp/x"), "fchmodat", mode=0o4755)
    assert check("evt.arg.mode = '04755(S_IXOTH|S_IROTH|S_IXGRP|S_IRGRP|S_IXUSR|S_IWUSR|"
                 "S_IRUSR|S_ISUID)'", e)
    assert check("evt.arg.mode contains S_ISUID and evt.rawarg.mode = 2541", e)
    assert not check("evt.arg.mode contains S_ISGID", e)
    assert check("evt.arg.mode = '0()'", _with_args(e, "chmod", mode=0))


def test_one_argument_reads_as_in_all_of_them() -> None:
    # RuleEvent.arg decodes one argument: the same value as args has for it
    events = [OPEN, _open("/x", ret=-2), _connect("8.8.8.8", 53),
              _with_args(OPEN, "fchmodat", mode=0o4755), _with_args(OPEN, "socket", domain=17)]
    for e in events:
        names = [*e.args, "pathname", "how", "nonesuch", "res", "fd", "tuple", "addr"]
        assert {n: e.arg(n) for n in names} == {n: e.args.get(n) for n in names}, e.type


def test_absent_fields_make_every_comparison_false() -> None:
    # a container no runtime has described: its image is absent, and Falco's
    # comparisons on an absent value are false for = and != alike
    e = _dup_event("dup", 1, "AF_INET", True)
    assert not check("container.image.repository = nginx", e)
    assert not check("container.image.repository != nginx", e)
    assert check("not container.image.repository in (nginx)", e)
    assert not check("container.image.repository exists", e)
    assert not check("proc.env[NOPE] != x", OPEN)


def test_process_and_ancestry_fields() -> None:
    e = OPEN
    assert check("proc.pname = bash and proc.aname[2] = sshd and proc.aname[3] = systemd", e)
    assert check("proc.aname = sshd", e)  # no index: any ancestor
    assert check("proc.aname in (nginx, systemd)", e)
    assert not check("proc.aname = nginx", e)
    assert not check("proc.aname[9] != nginx", e)  # no such ancestor: absent
    assert check("proc.aexe[1] = -bash and proc.aexe[2] = sshd: and proc.aexe = /sbin/init", e)
    assert check("proc.aexe[0] = python3 and proc.aexepath[2] = /usr/sbin/sshd", e)
    assert not check("proc.aexe[9] exists", e)
    assert check("proc.apid[1] = 200 and proc.ppid = 200 and proc.pid = 300", e)
    assert check("proc.exe = python3 and proc.exepath = /usr/bin/python3.11", e)
    assert check("proc.cmdline = 'python3 x.py --flag' and proc.args = 'x.py --flag'", e)
    assert check("proc.pcmdline = '-bash'", e) is False  # the parent's cmdline starts with its name
    assert check("proc.pcmdline = bash", e)
    assert check("proc.cwd = /dev/shm/ and proc.cwd startswith /dev/shm/", e)  # trailing /
    assert check("proc.sid = 200 and proc.sname = bash and proc.vpgid = 300", e)
    assert check("proc.is_vpgid_leader = true and proc.is_sid_leader = false", e)
    assert check("proc.tty = 34816 and proc.tty != 0", e)
    assert check("proc.duration >= 10000000000", e)
    assert check("proc.loginshellid = 200", e)
    assert check("proc.env[HOME] = /home/u and proc.env contains 'PATH='", e)
    assert check("user.uid = 1000 and user.loginuid = 1000 and group.gid = 1000", e)
    assert check("proc.is_exe_writable = false and proc.is_exe_from_memfd = false", e)
    assert check("container.id = host and container.type = host", e)
    assert check("evt.hostname = host1 and evt.source = syscall", e)


def test_a_cut_argv_is_marked_in_every_field_that_shows_it() -> None:
    """(issue 22, defect 11) an argv longer than the kernel reads ends in
    "..." wherever it is shown, and proc.args_truncated says so."""
    import dataclasses

    from bpfguard.outputs.tetragon import process_json

    whole = OPEN.proc
    assert whole is not None and check("proc.args_truncated = false", OPEN)
    cut = dataclasses.replace(whole, args=["python3", "x.py", "--fl"], args_truncated=True)
    e = dataclasses.replace(OPEN, proc=cut)
    assert check("proc.args_truncated = true", e)
    assert check("proc.cmdline = 'python3 x.py --fl...' and proc.args = 'x.py --fl...'", e)
    assert cut.cmdline == "python3 x.py --fl..."
    assert process_json(cut, node="n")["flags"] == "execve truncArgs"
    assert process_json(whole, node="n")["flags"] == "execve"


def test_exec_name_thread_name_io_uring_and_link_count_fields() -> None:
    """proc.name is the exec-time name the kernel gives (the header's comm);
    thread.comm the thread's own; an io_uring open into a file slot has the
    slot for its fd; fd.nlink counts the inode's links."""
    import dataclasses

    sc = OPEN.syscall
    assert sc is not None and sc.ret_file is not None
    renamed = dataclasses.replace(sc, thread_comm="sshd",
                                  ret_file=dataclasses.replace(sc.ret_file, nlink=2))
    e = dataclasses.replace(OPEN, event=renamed)
    assert check("proc.name = python3 and thread.comm = sshd and fd.nlink = 2", e)
    assert check("evt.is_io_uring = false", e)
    slot = dataclasses.replace(sc, ret=0, ret_file=None, io_uring=True, fixed_result=True)
    e = dataclasses.replace(OPEN, event=slot)
    assert check("evt.is_io_uring = true and fd.num = 0 and fd.name = /etc/shadow", e)
    # a connect that posts no completion: its socket is still its fd argument's
    conn = _connect("93.184.216.34", 443)
    assert conn.syscall is not None
    quiet = dataclasses.replace(conn.syscall, io_uring=True, fixed_result=True,
                                no_completion=True)
    e = dataclasses.replace(conn, event=quiet)
    assert check("fd.typechar = 4 and fd.sip = 93.184.216.34 and fd.sport = 443", e)


@pytest.mark.parametrize(("comm", "exe", "want"), [
    ("python3", "/usr/bin/python3.11", "python3"),          # a symlink's name: believed
    ("sshd", "/usr/bin/python3.11", "python3.11"),          # a rename: not believed
    ("", "/usr/bin/python3.11", "python3.11"),
    ("a_very_long_pro", "/opt/a_very_long_program_name", "a_very_long_pro"),
    ("x", "/memfd:payload (deleted)", "memfd:payload"),
    ("kworker/0:1", None, "kworker/0:1"),                  # a kernel thread
])
def test_a_process_seen_before_its_exec_is_named_by_its_executable(
        comm: str, exe: str | None, want: str) -> None:
    from bpfguard.proctable import exec_name

    assert exec_name(comm, exe) == want


def test_failed_open_describes_the_file_it_tried() -> None:
    e = _open("/etc/nope", ret=-2)
    assert check("fd.num = -1 and fd.typechar = f and fd.name = /etc/nope", e)
    assert check("evt.res startswith E and evt.res = ENOENT and evt.failed = true", e)


def test_network_fields_and_cidr_membership() -> None:
    e = _connect("93.184.216.34", 443)
    assert check("fd.sip = 93.184.216.34 and fd.sport = 443 and fd.cport = 40000", e)
    assert check("fd.rip = 93.184.216.34 and fd.lip = 10.0.0.5 and fd.lport = 40000", e)
    assert check("fd.l4proto = tcp and fd.typechar = 4 and fd.sockfamily = ip", e)
    assert check("fd.name = '10.0.0.5:40000->93.184.216.34:443'", e)
    assert check("not fd.snet in ('10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16')", e)
    assert check("fd.net = '10.0.0.0/8'", e)  # either end: the local one is private
    assert check("fd.ip != '0.0.0.0' and fd.net != '127.0.0.0/8'", e)
    assert check("fd.sport in (80, 443)", e)
    assert check("evt.arg.tuple = '93.184.216.34:443'", e)
    assert check("fd.connected = true", e)


def test_type_errors_are_compile_errors() -> None:
    for cond, msg in [("fd.num = abc", "not a number"),
                      ("fd.num contains 1", "applies to strings"),
                      ("proc.name regex '('", "bad regex"),
                      ("fd.sip = nothost", "not an IP"),
                      ("evt.failed = maybe", "true or false"),
                      ("proc.name = val(fd.num)", "compares a string field")]:
        with pytest.raises(CompileError, match=msg):
            compile_condition(parse_condition(cond))


def test_event_types_of_a_condition() -> None:
    types = event_types(parse_condition("evt.type in (open, openat) and fd.num >= 0"))
    assert types == {"open", "openat"}
    assert event_types(parse_condition("evt.type = open or evt.type = ptrace")) == \
        {"open", "ptrace"}
    assert event_types(parse_condition("proc.name = sh")) is ALL_TYPES
    assert event_types(parse_condition("not evt.type = open")) is ALL_TYPES


# -- pushdown: what the kernel may check -------------------------------------------------


def _need(cond: str, syscall: str) -> Need:
    return need(parse_condition(cond), syscall)


def test_pushdown_abstraction() -> None:
    open_read = ("evt.type in (open, openat, openat2) and evt.is_open_read = true and "
                 "fd.typechar = f and fd.num >= 0")
    failed = "evt.type in (open, openat, openat2) and fd.num = -1 and evt.res startswith E"
    n = _need(f"({open_read} or {failed}) and proc.name in (cat, python3)", "openat")
    assert n.results == {"success", "failure"}
    assert n.accmodes is None  # the failed branch accepts any mode
    assert n.comms == {"cat", "python3"}
    r = _need(open_read, "openat")
    assert r.results == {"success"} and r.accmodes == {os.O_RDONLY, os.O_RDWR}
    assert _need(open_read, "ptrace").impossible  # evt.type says no
    assert _need("evt.type = ptrace and user.uid in (0, 1000)", "ptrace").euids == {0, 1000}
    # a negation is not followed; an absent field never holds
    assert _need("not proc.name = sh", "openat") == Need()
    assert _need("fd.sip.name = x", "openat") == NEVER
    assert _need("proc.name = check-new-releases", "openat").comms == {"check-new-relea"}
    # execve exit of a failed exec: the result fields describe it
    assert _need("evt.rawres < 0", "execve").results == {"failure"}


def _path(cond: str, syscall: str = "openat") -> PathFilter | None:
    return _need(f"evt.type in (open, openat, dup) and {cond}", syscall).path


def test_pushdown_path_tests_of_opens() -> None:
    assert _path("fd.name in (/etc/a, /etc/b)") == PathFilter(names=frozenset({"/etc/a",
                                                                                "/etc/b"}))
    assert _path("fd.name = /etc/a") == PathFilter(names=frozenset({"/etc/a"}))
    assert _path("fd.directory in (/etc, /var/log)") == PathFilter(
        dirs=frozenset({"/etc", "/var/log"}))
    assert _path("fd.filename = syslog") == PathFilter(files=frozenset({"syslog"}))
    assert _path("fd.name startswith /etc/") == PathFilter(prefixes=frozenset({"/etc/"}))
    assert _path("fd.name endswith release_agent") == PathFilter(
        suffixes=frozenset({"release_agent"}))
    assert _path("fd.name pmatch (/etc/, /root)") == PathFilter(
        prefixes=frozenset({"/etc", "/root"}))
    # the stock directory_traversal macro: the string passed contains "../"
    assert _path("fd.nameraw contains '../' and fd.nameraw glob '*../*../*'") == \
        PathFilter(dotdot=True)
    # a union over or; a branch without a path test leaves none
    assert _path("(fd.name = /a or fd.directory = /b or fd.name endswith .key)") == \
        PathFilter(names=frozenset({"/a"}), dirs=frozenset({"/b"}),
                   suffixes=frozenset({".key"}))
    assert _path("(fd.name = /a or proc.name = cat)") is None
    # and: exact names are kept where the other side may hold
    assert _path("fd.name in (/etc/a, /tmp/b, /etc/x/c) and fd.directory = /etc") == \
        PathFilter(names=frozenset({"/etc/a"}))
    assert _need("evt.type = openat and fd.name = /a and fd.name = /b", "openat").impossible
    assert _path("fd.name startswith /etc/ and fd.nameraw contains ../") == PathFilter(
        prefixes=frozenset({"/etc/"}))  # the resolved path, preferred


def test_pushdown_path_tests_left_to_user_space() -> None:
    for cond in ("fd.name contains shadow", "fd.name glob '/etc/*'", "fd.name != /etc/a",
                 "fd.name startswith ''", "fd.name endswith ''", "not fd.name = /etc/a",
                 "fd.nameraw contains etc", "fd.name pmatch (/)", "fd.name = val(proc.exe)",
                 "fd.directory startswith /etc", "fd.name = '/etc/\ufffd'",
                 f"fd.name endswith {'x' * (_KEY_BYTES + 1)}"):
        assert _path(cond) is None, cond
    # only opens: elsewhere fd.name is not the returned file's path
    assert _path("fd.name = /etc/a", "dup") is None
    # a prefix longer than the kernel compares is cut: it then holds for more paths
    long = "/" + "p" * 300
    p = _path(f"fd.name startswith {long}")
    assert p is not None and p.prefixes == {long[:_KEY_BYTES]}


def test_pushdown_plan_of_the_stock_rules_tests_paths() -> None:
    from bpfguard.rules import stock_rules_path
    from bpfguard.rules.engine import Engine
    from bpfguard.rules.loader import load_rules_or_raise
    from bpfguard.rules.pushdown import plan_pushdown

    plan = plan_pushdown(Engine(load_rules_or_raise([str(stock_rules_path())]).rules))
    for sc in ("open", "openat", "openat2"):
        p = plan.filters[sc].path
        assert p is not None and p.dotdot and "/etc/shadow" in p.names
        assert {"/etc/pam.d", "/var/log"} <= p.dirs and "syslog" in p.files
        assert p.suffixes == {"release_agent"} and not p.prefixes
        # fd.nameraw aside (holds_for cannot know it), nothing holds for /etc/hostname
        assert not PathFilter(p.names, p.dirs, p.files, p.prefixes, p.suffixes).holds_for(
            "/etc/hostname")
    text = plan.explain()
    assert "Read sensitive file untrusted:\n  open: kernel checks result success; access " \
        "mode O_RDONLY|O_RDWR; O_DIRECTORY clear; path: fd.name in (/etc/pam.conf" in text
    assert "  openat: O_DIRECTORY clear; path: fd.name in (" in text
    assert "fd.nameraw contains ../" in text


def test_path_filters_compile_into_the_syscalls_selector() -> None:
    import itertools

    from bpfguard.policy.compiler import string_hash
    from bpfguard.sensors import SyscallFilter, SyscallSensor

    p = PathFilter(names=frozenset({"/etc/shadow"}), suffixes=frozenset({"release_agent"}),
                   dotdot=True)
    q = PathFilter(prefixes=frozenset({"/etc/"}), suffixes=frozenset({"/x"}))
    sensor = SyscallSensor(syscalls=["open", "openat", "creat"], filters={
        "open": SyscallFilter(path=p), "openat": SyscallFilter(path=p),
        "creat": SyscallFilter(path=q)})
    bits = sensor.abi.push_path
    ids = itertools.count(1)
    sel, sets, used = sensor._compile("openat", SyscallFilter(path=p), ids.__next__)
    (f,) = sel.filters
    assert (f.op, f.ret, f.arg) == ("OPEN_PATH", sensor.abi.pol_phase["FILE"], 1)  # after the dirfd
    want, dirs, files, prefix, suffix = f.vals
    assert want == bits["NAME"] | bits["SUFFIX"] | bits["SUFFIX_LEAF"] | bits["DOTDOT"]
    assert dirs == files == prefix == 0 and sorted(used) == sorted([f.set, suffix])
    assert sets.strs == [(f.set, 11, string_hash(sensor.seed, b"/etc/shadow"))]
    assert sets.postfixes == [(suffix, b"tnega_esaeler")]   # reversed, as postfix sets are
    sel, sets, used = sensor._compile("creat", SyscallFilter(path=q), ids.__next__)
    (g,) = sel.filters
    assert g.arg == 0 and g.vals[0] == bits["PREFIX"] | bits["SUFFIX"]  # "/x": the whole path
    assert set(used).isdisjoint({f.set, suffix})
    assert all(sensor._table[_syscall_number(n)].filtered for n in ("open", "openat", "creat"))
    assert sensor._need == {"open": 2, "openat": 2, "creat": 2}


def _syscall_number(name: str) -> int:
    from bpfguard.sensors.syscall_table import syscall_number

    n = syscall_number(name)
    assert n is not None
    return n


def test_output_fields_and_alert_shape() -> None:
    from bpfguard.rules.engine import OutputFormat

    fmt = OutputFormat("file=%fd.name gp=%proc.aname[2] img=%container.image.repository "
                       "flags=%evt.arg.flags (%proc.name)")
    text, values = fmt.format(OPEN)
    assert text == ("file=/etc/shadow gp=sshd img=<NA> flags=O_RDONLY|O_CLOEXEC (python3)")
    assert values == {"fd.name": "/etc/shadow", "proc.aname[2]": "sshd",
                      "container.image.repository": None, "evt.arg.flags": "O_RDONLY|O_CLOEXEC",
                      "proc.name": "python3"}
    with pytest.raises(CompileError, match="unknown field"):
        OutputFormat("x=%proc.nope")


def test_exec_event_fields() -> None:
    ev = ExecEvent(type="exec", ktime_ns=T0, pid=300, tid=300, uid=1000, gid=1000, cgroup_id=1,
                   comm="python3", truncated=False, ppid=200, start_ns=T0, exec_id="x",
                   exe=None, filename="/usr/bin/python3", args=["python3", "x.py"],
                   args_truncated=False, cwd=None, euid=1000, egid=1000, loginuid=1000,
                   sessionid=1, cap_effective=0, cap_permitted=0, mntns=1, pidns=1, netns=1,
                   userns=1, cgroupns=1, cgroup="/", tty=None)
    e = RuleEvent(3, "execve", ev, TABLE.get(300), TABLE, "host1")
    assert check("evt.type = execve and evt.res = SUCCESS and evt.arg.exe = python3", e)
    assert check("evt.arg.flags = 0", e)  # not writable, not from a memfd


def test_pushdown_open_type_is_the_o_directory_flag() -> None:
    # Falco types an opened fd by its flags: 'd' with O_DIRECTORY, 'f' without, failed too
    open_read = ("evt.type in (open, openat) and evt.is_open_read = true and "
                 "fd.typechar = f and fd.num >= 0")
    failed = "evt.type in (open, openat) and fd.typechar = f and fd.num = -1"
    n = _need(f"{open_read} or {failed}", "openat")
    assert n.results == {"success", "failure"} and n.directory == {False}
    assert _need("evt.type = openat and fd.typechar in (f, d)", "openat").directory == \
        {False, True}  # either: nothing to check
    assert _need("evt.type = openat and fd.type = directory", "openat").directory == {True}
    d = _open("/etc", flags="O_RDONLY|O_DIRECTORY", mode=0o40755)
    assert check("fd.typechar = d and fd.type = directory", d)
    t = _open("/tmp/x", flags="O_RDWR|O_TMPFILE")
    assert check("fd.typechar = d", t)  # O_TMPFILE carries O_DIRECTORY's bit


def test_pushdown_leaves_what_the_syscall_itself_changes() -> None:
    # the kernel checks euid at entry; these syscalls change it before the exit
    assert _need("evt.type = setresuid and user.uid = 0", "setresuid").euids is None
    # prctl(PR_SET_NAME) changes the thread's name, never proc.name: pushed
    assert _need("evt.type = prctl and proc.name = renamed", "prctl").comms == {"renamed"}
    assert _need("evt.type = openat and evt.failed = true", "openat").results == {"failure"}


def test_the_socket_type_of_the_events_fd_is_pushed_as_its_family() -> None:
    both = frozenset({socket.AF_INET, socket.AF_INET6})
    assert _need("evt.type = dup2 and fd.type in (ipv4, ipv6)", "dup2").families == both
    assert _need("evt.type = dup2 and fd.type = unix", "dup2").families == {socket.AF_UNIX}
    assert _need("evt.type = connect and (fd.typechar = 4 or fd.typechar = 6)",
                 "connect").families == both
    for cond, sc in (("evt.type = dup2 and fd.type in (ipv4, file)", "dup2"),  # not a socket
                     ("evt.type = dup2 and fd.typechar = u", "dup2"),  # a userfaultfd's too
                     ("evt.type = dup2 and not fd.type = ipv4", "dup2"),       # a negation
                     ("evt.type = accept and fd.type = ipv4", "accept"),       # fd: result or arg
                     ("evt.type = sendto and fd.type = ipv4", "sendto")):      # no fd spec
        assert _need(cond, sc).families is None, cond


def test_integer_arguments_are_pushed_by_number_or_by_falcos_name() -> None:
    packet = frozenset({socket.AF_PACKET})
    assert _need("evt.type = socket and evt.arg.domain contains AF_PACKET", "socket").args \
        == ((0, packet),)
    assert _need("evt.type = socket and evt.rawarg.domain = 17", "socket").args == ((0, packet),)
    assert _need("evt.type = kill and evt.arg.sig in (9, 15)", "kill").args \
        == ((1, frozenset({9, 15})),)
    # PTRACE_SETREGSET contains PTRACE_SETREGS: Falco's text test holds for both
    assert _need("evt.type = ptrace and evt.arg.request contains PTRACE_SETREGS",
                 "ptrace").args == ((0, frozenset({13, 0x4205})),)
    # and within one rule, both must hold; across rules, either
    both = _need("evt.type = socket and evt.arg.domain in (AF_INET, AF_PACKET) and "
                 "evt.rawarg.domain = 2", "socket")
    assert both.args == ((0, frozenset({socket.AF_INET})),)
    assert _need("evt.type = socket and (evt.rawarg.domain = 2 or proc.name = x)",
                 "socket").args == ()
    for cond in ("evt.type = socket and evt.arg.domain contains 1",     # digits: any number
                 "evt.type = socket and not evt.arg.domain = AF_PACKET",  # a negation
                 "evt.type = socket and evt.arg.domain glob AF_*",        # not decided
                 "evt.type = socket and evt.arg.type = 3 and evt.arg.proto = 0"):
        n = _need(cond, "socket")
        assert all(i != 0 for i, _ in n.args), cond


def test_is_exe_upper_layer_is_the_kernels_answer_on_overlayfs_only() -> None:
    from bpfguard.rules.ast import FieldRef
    from bpfguard.rules.extract import field_function

    fn, arg = field_function(FieldRef("proc.is_exe_upper_layer"))
    overlay, ext4 = 0x794C7630, 0xEF53
    got = []
    for magic, upper in ((overlay, True), (overlay, False), (overlay, None), (ext4, None),
                         (None, None)):
        p = copy.copy(TABLE.get(300))
        assert p is not None
        p.exe_fs_magic, p.exe_upper_layer = magic, upper
        got.append(fn(RuleEvent(1, "execve", OPEN.event, p, TABLE, "h"), arg))
    # told by the kernel; unknown on overlayfs without its answer; false off it
    assert got == [True, False, None, False, None]


def test_a_rule_that_raises_does_not_stop_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    from bpfguard.rules import extract
    from bpfguard.rules.engine import Engine
    from bpfguard.rules.loader import load_rules_or_raise

    def broken(_e: RuleEvent, _arg: str | None) -> Any:
        raise TypeError("an extractor met data it did not expect")
    monkeypatch.setitem(extract._EXTRACT, "proc.cmdline", broken)
    rules = load_rules_or_raise([("r.yaml", """
- rule: raises
  desc: its field's extractor fails on every event
  condition: evt.type = openat and proc.cmdline = "cat /etc/shadow"
  output: never
  priority: NOTICE
- rule: fine
  desc: matches
  condition: evt.type = openat and fd.name = /etc/shadow
  output: "shadow %fd.name"
  priority: NOTICE
""")]).rules
    for matching in ("all", "first"):
        engine = Engine(rules, rule_matching=matching)
        assert [c.name for c in engine.match(OPEN)] == ["fine"]
        assert engine.errors == {"raises": 1} and "TypeError" in (engine.last_error or "")


# -- pushdown soundness: the kernel filter keeps every event some rule matches ------------

_CUSTOM = """
- rule: root opens a key
  desc: d
  condition: evt.type in (open, openat) and user.uid = 0 and fd.name endswith id_rsa
  output: o
  priority: NOTICE
- rule: failed as nobody
  desc: d
  condition: evt.type = openat and evt.failed = true and user.uid in (65534)
  output: o
  priority: NOTICE
"""


def _keeps(f: Any, e: RuleEvent, raw_flags: int) -> bool:
    """The BPF filter (bg_push_keep, bg_exit's result checks and bg_push_path_keep),
    in Python."""
    sc = e.syscall
    assert sc is not None
    if f.results is not None and ("success" if sc.ret >= 0 else "failure") not in f.results:
        return False
    if f.accmodes is not None and (raw_flags & 3) not in f.accmodes:
        return False
    if (raw_flags & f.without_flags) or (raw_flags & f.with_flags) != f.with_flags:
        return False
    if f.comms is not None and sc.comm[:15] not in f.comms:
        return False
    if f.euids is not None and sc.euid not in f.euids:
        return False
    if f.rets is not None and sc.ret not in f.rets:
        return False
    for i, values in f.args:   # integer arguments, as the syscall saw them
        from bpfguard.sensors.syscall_specs import SPECS

        if sc.args[SPECS[sc.syscall].args[i].name] not in values:
            return False
    if f.families is not None:   # BG_OP_FD_FAMILY: the returned fd, else the fd argument
        if sc.syscall.startswith("dup"):
            sock = sc.ret_file.sock if sc.ret_file else None
            held = sc.ret < 0 or (sock is not None and getattr(socket, sock.family) in f.families)
        else:
            info = sc.args["fd"].get("sock")
            held = info is not None and getattr(socket, info["family"]) in f.families
        if not held:
            return False
    return f.path is None or _path_keeps(f.path, sc)


_KEY_BYTES = 256  # struct bg_pol_lpm_key's data (checked against BTF in test_path_key_bytes)
_NAMED_BY_INODE = (0x50495045, 0x534F434B, 0x09041934)  # pipefs, sockfs, anon_inode fs


def _path_keeps(p: PathFilter, sc: SyscallEvent) -> bool:
    """bg_push_path_keep, byte for byte: the string the process passed, then the
    returned file's path as the kernel writes it forward (no " (deleted)")."""
    raw = sc.args["pathname"]["user"].encode()
    if p.dotdot and (not raw or b"../" in raw):
        return True
    if not (p.names or p.dirs or p.files or p.prefixes or p.suffixes):
        return False
    f = sc.ret_file
    if sc.ret < 0 or f is None or f.deleted or f.truncated or f.detached \
            or f.fs_magic in _NAMED_BY_INODE:
        return True
    path = f.path.encode()
    cut = path.rindex(b"/")
    directory, leaf = path[:cut] or b"/", path[cut + 1:]
    if path in {n.encode() for n in p.names} or directory in {d.encode() for d in p.dirs} \
            or leaf in {x.encode() for x in p.files}:
        return True
    if any(path[:_KEY_BYTES].startswith(x.encode()) for x in p.prefixes):
        return True
    tail = leaf if not any("/" in x for x in p.suffixes) else path
    return any(tail[-_KEY_BYTES:].endswith(x.encode()) for x in p.suffixes)


def test_path_key_bytes() -> None:
    assert path_key_bytes() == _KEY_BYTES


@pytest.fixture(scope="module", params=["stock", "stock+custom"])
def stock_plus_custom(request: pytest.FixtureRequest) -> Any:
    from bpfguard.rules import stock_rules_path
    from bpfguard.rules.engine import Engine
    from bpfguard.rules.loader import load_rules_or_raise
    from bpfguard.rules.pushdown import plan_pushdown

    # stock alone gives the tightest filters; the custom rules add comm/euid/failure needs
    files: list[Any] = [str(stock_rules_path())]
    if request.param == "stock+custom":
        files.append(("custom.yaml", _CUSTOM))
    rules = load_rules_or_raise(files).rules
    engine = Engine(rules, rule_matching="all")
    return engine, plan_pushdown(engine)


# strings a process passes (relative ones are taken from /home/u); the file it gets
# is where they resolve, or what a symlink there points to
_PATHS = ["/etc/shadow", "/etc/../../etc/shadow", "/var/log/syslog", "/tmp/x/syslog",
          "/etc/pam.d/sshd", "/root/.ssh/id_rsa", "/etc", "/tmp/a/../../etc/sudoers",
          "/etc/hostname", "/var/log", "/var/log/app/x.log", "/dev/log", "/etc/pam.d",
          "/sys/fs/cgroup/x/release_agent", "/tmp/release_agent.d/f", "release_agent",
          "../../etc/shadow", "syslog", "/", "/etc/sudoers.d/x", "/etc/sudoersX", "",
          "/root/.ssh/../../etc/passwd", "/home/u/.ssh/authorized_keys", "/tmp/..evil/x"]
_LINKS = [None, "/etc/shadow", "/etc/hostname", "/var/log/auth.log", "/home/u/notes"]


def _open_event(syscall: str, comm: str, euid: int, flags: int, raw: str, ok: bool,
                link: str | None = None, deleted: bool = False) -> RuleEvent:
    import posixpath

    from bpfguard.sensors.events import FLAG_DECODERS

    resolved = posixpath.normpath(posixpath.join("/home/u", raw)) if raw else None
    path = (link or resolved or "/") + (" (deleted)" if deleted else "")
    f = FileRef(path=path, ino=1, dev=1, fs_magic=0, mode=0o100644, deleted=deleted) \
        if ok else None
    ev = SyscallEvent(type="syscall", ktime_ns=T0, pid=300, tid=300, uid=euid, gid=0,
                      cgroup_id=1, comm=comm, truncated=False, syscall=syscall, nr=2,
                      arch="x86_64", ret=3 if ok else -2, errno=None if ok else "ENOENT",
                      latency_ns=1, args={"pathname": {"user": raw, "resolved": resolved},
                                          "flags": FLAG_DECODERS["open_flags"](flags),
                                          "mode": 0}, ret_file=f, euid=euid, egid=0)
    return RuleEvent(1, syscall, ev, TABLE.get(300), TABLE, "host1")


def _wrongly_dropped(engine: Any, plan: Any, e: RuleEvent, flags: int) -> list[str]:
    """The rules matching `e` that the plan's kernel filter would not let see it."""
    matched = [c.name for c in engine.match(e)]
    if not matched:
        return []
    if e.type not in plan.syscalls:
        return matched
    filt = plan.filters.get(e.type)
    return [] if filt is None or _keeps(filt, e, flags) else matched


@given(comm=st.sampled_from(["cat", "python3", "sshd", "bash", "find", "nginx"]),
       euid=st.sampled_from([0, 1000, 65534]), acc=st.sampled_from([0, 1, 2]),
       extra=st.sets(st.sampled_from([os.O_CREAT, os.O_TRUNC, os.O_DIRECTORY, os.O_CLOEXEC,
                                      os.O_APPEND])),
       ok=st.booleans(), raw=st.sampled_from(_PATHS), link=st.sampled_from(_LINKS),
       deleted=st.booleans(), syscall=st.sampled_from(["open", "openat"]))
def test_pushdown_never_drops_what_a_rule_matches(stock_plus_custom: Any, comm: str, euid: int,
                                                  acc: int, extra: set[int], ok: bool, raw: str,
                                                  link: str | None, deleted: bool,
                                                  syscall: str) -> None:
    engine, plan = stock_plus_custom
    flags = acc | sum(extra)
    e = _open_event(syscall, comm, euid, flags, raw, ok, link, deleted)
    assert _wrongly_dropped(engine, plan, e, flags) == [], plan.filters.get(syscall)


def test_pushdown_never_drops_a_match_on_any_path(stock_plus_custom: Any) -> None:
    """Every path, symlink target, unlinked or not, failed or not, under the flags
    and tasks the path rules care for: exhaustive, where sampling would miss one."""
    import itertools

    engine, plan = stock_plus_custom
    flag_sets = (os.O_RDONLY, os.O_RDWR | os.O_TRUNC, os.O_WRONLY | os.O_TRUNC | os.O_CREAT)
    for raw, link, deleted, ok, flags, (comm, euid) in itertools.product(
            _PATHS, _LINKS, (False, True), (True, False), flag_sets,
            (("python3", 0), ("nginx", 0), ("cat", 65534))):
        if link and not ok:
            continue
        e = _open_event("openat", comm, euid, flags, raw, ok, link, deleted)
        assert _wrongly_dropped(engine, plan, e, flags) == [], (raw, link, deleted, ok, flags)


def test_the_soundness_check_catches_a_path_filter_that_drops_a_match() -> None:
    from dataclasses import replace

    from bpfguard.rules import stock_rules_path
    from bpfguard.rules.engine import Engine
    from bpfguard.rules.loader import load_rules_or_raise
    from bpfguard.rules.pushdown import plan_pushdown

    engine = Engine(load_rules_or_raise([str(stock_rules_path())]).rules, rule_matching="all")
    plan = plan_pushdown(engine)
    e = _open_event("openat", "python3", 0, os.O_RDONLY, "/etc/shadow", True)
    assert _wrongly_dropped(engine, plan, e, os.O_RDONLY) == []
    broken = copy.copy(plan)
    broken.filters = {**plan.filters, "openat": replace(
        plan.filters["openat"], path=PathFilter(names=frozenset({"/etc/passwd"})))}
    assert "Read sensitive file untrusted" in _wrongly_dropped(engine, broken, e, os.O_RDONLY)
    # and the real plan drops a benign read in the kernel
    benign = _open_event("openat", "python3", 0, os.O_RDONLY, "/etc/hostname", True)
    assert engine.match(benign) == []
    assert not _keeps(plan.filters["openat"], benign, os.O_RDONLY)


def _dup_event(syscall: str, ret: int, family: str, in_container: bool) -> RuleEvent:
    """A dup of a socket (or a file) onto fd `ret`, by a process in a container or not."""
    t = ProcessTable()
    cg = "/system.slice/docker-" + "ab" * 32 + ".scope" if in_container else "/user.slice"
    t._put(Process(pid=400, ppid=1, start_ns=5, exec_id="a:5:400", comm="sh", exe="/bin/sh",
                   args=["sh"], cgroup=cg))
    sock = SockInfo(family=family, type=1, protocol=6, local="10.0.0.5", local_port=40000,
                    remote="10.0.0.9", remote_port=4444) if family != "file" else None
    path = "socket:[7]" if sock else "/dev/null"
    fs_magic = 0x534F434B if sock else 0x01021994
    f = FileRef(path=path, ino=7, dev=0, fs_magic=fs_magic,
                mode=0o140777 if sock else 0o20666, sock=sock)
    args: dict[str, Any] = {"oldfd": {"fd": 5, **f.to_dict()}}
    if syscall != "dup":
        args["newfd"] = ret
    if syscall == "dup3":
        args["flags"] = "O_RDONLY"
    ev = SyscallEvent(type="syscall", ktime_ns=T0, pid=400, tid=400, uid=0, gid=0, cgroup_id=1,
                      comm="sh", truncated=False, syscall=syscall, nr=33, arch="x86_64",
                      ret=ret, errno=None if ret >= 0 else "EBADF", latency_ns=1, args=args,
                      ret_file=f if ret >= 0 else None, euid=0, egid=0)
    return RuleEvent(1, syscall, ev, t.get(400), t, "host1")


def test_pushdown_never_drops_a_redirect_of_a_standard_stream(stock_plus_custom: Any) -> None:
    """The dup rule's evt.rawres in (0, 1, 2) and fd.type in (ipv4, ipv6) are
    checked in the kernel: every result, socket or not, in a container or not;
    the benign dup of the load test (onto fd 200) and a shell's redirect of a
    pipe or file onto stdout are dropped there."""
    import itertools

    engine, plan = stock_plus_custom
    hits = 0
    for syscall, ret, family, inside in itertools.product(
            ("dup", "dup2", "dup3"), (0, 1, 2, 3, 63, 64, 200, -9),
            ("AF_INET", "AF_INET6", "AF_UNIX", "file"), (True, False)):
        e = _dup_event(syscall, ret, family, inside)
        hits += bool(engine.match(e))
        assert _wrongly_dropped(engine, plan, e, 0) == [], (syscall, ret, family, inside)
    assert hits > 0   # the rule does match some of them: the check can fail
    assert plan.filters["dup3"].rets == frozenset({0, 1, 2})
    assert plan.filters["dup3"].families == frozenset({socket.AF_INET, socket.AF_INET6})
    assert not _keeps(plan.filters["dup3"], _dup_event("dup3", 200, "file", False), 0)
    for family in ("file", "AF_UNIX"):
        assert not _keeps(plan.filters["dup2"], _dup_event("dup2", 1, family, True), 0)
    assert _keeps(plan.filters["dup2"], _dup_event("dup2", 1, "AF_INET6", True), 0)


def test_pushdown_never_drops_a_packet_socket_or_a_ptrace_attach(stock_plus_custom: Any
                                                                 ) -> None:
    """socket's domain and ptrace's request are decided in the kernel by number,
    a connect by its socket's family: every rule that matches one still gets
    it; other domains, requests and unix-socket connects are dropped there."""
    engine, plan = stock_plus_custom
    hits = 0
    connects = []
    for fam in ("AF_INET", "AF_INET6", "AF_UNIX", "file"):
        f = _dup_event("dup", 3, fam, False).syscall.ret_file  # type: ignore[union-attr]
        assert f is not None
        for port in (22, 2222, 443):
            d = f.to_dict()
            if "sock" in d:
                d["sock"] = {**d["sock"], "remote": "8.8.8.8", "remote_port": port}
            connects.append(("connect", {"fd": {"fd": 3, **d},
                                         "addr": {"family": fam, "addr": "8.8.8.8"},
                                         "addrlen": 16}))
    for syscall, args in [*connects, *(("socket", {"domain": d, "type": 3, "protocol": 0})
                            for d in (1, 2, 10, 16, 17, -1, 99)),
                          *(("ptrace", {"request": r, "pid": 42, "addr": "0x0", "data": "0x0"})
                            for r in (0, 3, 4, 13, 16, 0x4205, 0x4206, 24))]:
        for inside in (True, False):
            e = _dup_event("dup", 3, "file", inside)   # a process, in a container or not
            ev = e.syscall
            assert ev is not None
            ev.syscall, ev.args, ev.ret_file = syscall, args, None
            e.type = syscall
            hits += bool(engine.match(e))
            assert _wrongly_dropped(engine, plan, e, 0) == [], (syscall, args, inside)
            wanted = args.get("domain") == socket.AF_PACKET or \
                args.get("request") in (0, 4, 13, 16, 0x4205, 0x4206) or \
                args.get("fd", {}).get("sock", {}).get("family") in ("AF_INET", "AF_INET6")
            assert _keeps(plan.filters[syscall], e, 0) == wanted, (syscall, args)
    assert hits > 0   # the rules do match some: the check can fail


# -- the generated matchers inline the common comparisons: the same answers as the checks --

_INLINED_FIELDS = ["fd.name", "fd.directory", "fd.filename", "fd.nameraw", "proc.name",
                   "proc.aname", "proc.pname", "user.uid", "evt.is_open_read", "fd.num",
                   "container.image", "fd.typechar", "evt.res", "evt.rawres"]
_INLINED_VALUES = ["/etc/shadow", "/etc", "shadow", "cat", "bash", "0", "3", "1000", "true",
                   "false", "f", "SUCCESS", "ENOENT", "init", "systemd", "../", "-2"]


@given(field=st.sampled_from(_INLINED_FIELDS),
       op=st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "contains", "startswith",
                           "endswith", "in"]),
       values=st.lists(st.sampled_from(_INLINED_VALUES), min_size=1, max_size=3),
       comm=st.sampled_from(["cat", "bash"]), euid=st.sampled_from([0, 1000]),
       ok=st.booleans(), raw=st.sampled_from(_PATHS))
def test_inlined_comparisons_decide_as_their_checks(field: str, op: str, values: list[str],
                                                    comm: str, euid: int, ok: bool,
                                                    raw: str) -> None:
    from hypothesis import assume

    from bpfguard.rules.compiler import _compare

    cond = f"{field} in ({', '.join(values)})" if op == "in" else f"{field} {op} {values[0]}"
    try:
        node = parse_condition(cond)
        reference = _compare(node)  # type: ignore[arg-type]
    except (ConditionSyntaxError, CompileError):
        assume(False)   # not a valid condition: nothing to compare
    e = _open_event("openat", comm, euid, os.O_RDONLY, raw, ok)
    try:
        want: bool | type[Exception] = bool(reference(e))
    except TypeError:
        want = TypeError   # e.g. a string ordered against a number: both must raise
    try:
        got: bool | type[Exception] = compile_condition(node)(e)
    except TypeError:
        got = TypeError
    assert got == want, cond


def test_many_conditions_are_matched_in_chunks_in_order(monkeypatch: Any) -> None:
    """(issue 22, defect 8) one generated function for 100k conditions took
    gigabytes to compile; past MATCHER_CHUNK they are split, and match the
    same: every hit, in order, or the first only."""
    import bpfguard.rules.compiler as compiler

    monkeypatch.setattr(compiler, "MATCHER_CHUNK", 3)
    names = ["nginx", "python3", "bash", "python3", "sshd", "python3", "x", "python3"]
    conds = [parse_condition(f"proc.name = {n}") for n in names]
    want = [i for i, n in enumerate(names) if n == "python3"]

    def fail(i: int, exc: Exception) -> None:
        raise AssertionError(f"condition {i}: {exc}")

    assert compiler.compile_matcher(conds, first=False)(OPEN, fail) == want
    assert compiler.compile_matcher(conds, first=True)(OPEN, fail) == want[:1]
    assert compiler.compile_matcher([], first=False)(OPEN, fail) == []
