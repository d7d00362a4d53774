"""Alert channels: Falco's formats, each channel end to end, rate limiting.

Real endpoints where there can be: files, ``sh -c`` programs, a local HTTP(S)
server in a thread. Synchronisation is by events, flush() and pipes, never by
sleeping.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import random
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import syslog
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bpfguard.errors import ConfigError
from bpfguard.outputs import channels as channels_module
from bpfguard.outputs.channels import (
    DROP_RULE,
    Backoff,
    Channels,
    ChannelStats,
    FileChannel,
    Format,
    HttpChannel,
    ProgramChannel,
    StdoutChannel,
    SyslogChannel,
    drop_alert,
    priority_level,
    rfc3339,
)
from bpfguard.outputs.ratelimit import Limit, RateLimiter, TokenBucket, message_of

FAST = Backoff(initial=0.001, maximum=0.004, attempts=3)

# Falco's own example alert (falco.org, "Output Channels"), in its JSON shape
OUTPUT = ("10:20:05.408091526: Warning Sensitive file opened for reading by non-trusted "
          "program (user=root command=cat /etc/shadow file=/etc/shadow)")


def make_alert(**kw: Any) -> dict[str, Any]:
    a: dict[str, Any] = {
        "time": "2024-05-01T10:20:05.408091526Z",
        "rule": "Read sensitive file untrusted",
        "priority": "Warning",
        "source": "syscall",
        "hostname": "host1",
        "output": OUTPUT,
        "output_fields": {"user.name": "root", "proc.cmdline": "cat /etc/shadow",
                          "fd.name": "/etc/shadow", "evt.time": 1714558805408091526},
        "tags": ["filesystem", "T1555", "mitre_credential_access", "filesystem"],
    }
    a.update(kw)
    return a


@pytest.fixture
def tz() -> Iterator[Callable[[str], None]]:
    """Sets the local time zone for a test (TZ + tzset), and puts it back."""
    old = os.environ.get("TZ")

    def set_tz(zone: str) -> None:
        os.environ["TZ"] = zone
        time.tzset()

    yield set_tz
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


# -- formats --------------------------------------------------------------------


def test_text_line_of_a_rule_alert_is_its_output() -> None:
    # Falco's rule alerts carry "HH:MM:SS.nnnnnnnnn: Priority " in output already
    assert Format().line(make_alert()) == OUTPUT


def test_text_line_adds_falco_prefix_in_local_time(tz: Callable[[str], None]) -> None:
    tz("XYZ-2")  # POSIX: two hours east of UTC
    a = make_alert(output="Sensitive file opened (user=root)", priority="Critical")
    assert Format().line(a) == "12:20:05.408091526: Critical Sensitive file opened (user=root)"
    # the JSON output property is the full line too, as Falco's
    assert json.loads(Format(json_output=True).line(a))["output"] == Format().line(a)


def test_text_time_reads_offsets_and_short_fractions(tz: Callable[[str], None]) -> None:
    tz("UTC")
    a = make_alert(time="2024-05-01T12:20:05.5+02:00", output="m")
    assert Format().line(a) == "10:20:05.500000000: Warning m"


def test_json_line_matches_falco_key_order_and_tags() -> None:
    # nlohmann::json objects are std::maps (keys in byte order, nested too),
    # tags a std::set (sorted, unique), dump() compact
    assert Format(json_output=True).line(make_alert()) == (
        '{"hostname":"host1","output":"' + OUTPUT + '","output_fields":{"evt.time":'
        '1714558805408091526,"fd.name":"/etc/shadow","proc.cmdline":"cat /etc/shadow",'
        '"user.name":"root"},"priority":"Warning","rule":"Read sensitive file untrusted",'
        '"source":"syscall","tags":["T1555","filesystem","mitre_credential_access"],'
        '"time":"2024-05-01T10:20:05.408091526Z"}')


def test_json_include_properties_and_utf8() -> None:
    fmt = Format(json_output=True, json_include_output_property=False,
                 json_include_tags_property=False)
    obj = json.loads(fmt.line(make_alert()))
    assert "output" not in obj and "tags" not in obj and obj["rule"]
    line = Format(json_output=True).line(make_alert(output_fields={"user.name": "jöe\n"}))
    assert '"output_fields":{"user.name":"jöe\\n"}' in line


def test_drop_notice_is_falcos_internal_drop_alert(tz: Callable[[str], None]) -> None:
    tz("UTC")
    rec = {"type": "loss", "reason": "ringbuf_full", "count": 5, "total": 9,
           "time_ns": 1714558805_000000042}
    a = drop_alert(rec, hostname="host1")
    msg = f"{DROP_RULE}. 5 system calls dropped in last second."
    assert Format(json_output=True).line(a) == (
        '{"hostname":"host1","output":"' + msg + '","output_fields":{"ebpf_enabled":"1",'
        '"n_drops":"5","n_drops_ringbuf_full":"5"},"priority":"Debug","rule":"' + DROP_RULE
        + '","source":"internal","time":"2024-05-01T10:20:05.000000042Z"}')
    # falco_outputs::handle_msg's text: the fields after the message, values as JSON
    assert Format().line(a) == (f'10:20:05.000000042: Debug {msg} (ebpf_enabled="1" '
                                'n_drops="5" n_drops_ringbuf_full="5")')
    with pytest.raises(ValueError):
        drop_alert({"type": "exec"}, hostname="h")


def test_priority_levels_are_syslog_levels() -> None:
    assert [priority_level(p) for p in ("Emergency", "alert", "CRITICAL", "Error", "Warning",
                                        "Notice", "Informational", "info", "Debug")] == [
        syslog.LOG_EMERG, syslog.LOG_ALERT, syslog.LOG_CRIT, syslog.LOG_ERR,
        syslog.LOG_WARNING, syslog.LOG_NOTICE, syslog.LOG_INFO, syslog.LOG_INFO,
        syslog.LOG_DEBUG]
    with pytest.raises(ValueError):
        priority_level("Loud")


def test_rfc3339_keeps_nanoseconds() -> None:
    assert rfc3339(1) == "1970-01-01T00:00:00.000000001Z"
    assert rfc3339(1714558805_408091526) == "2024-05-01T10:20:05.408091526Z"


# -- stdout, file ----------------------------------------------------------------


def test_stdout_channel_writes_lines() -> None:
    buf = io.StringIO()
    with StdoutChannel(Format(json_output=True), stream=buf) as ch:
        ch.send(make_alert())
        ch.send(make_alert(rule="Other"))
        assert ch.flush(5)
        assert ch.stats() == ChannelStats(sent=2)
    rules = [json.loads(line)["rule"] for line in buf.getvalue().splitlines()]
    assert rules == ["Read sensitive file untrusted", "Other"]


def test_file_reopen_after_rotation_writes_to_the_new_file(tmp_path: Path) -> None:
    path, rotated = tmp_path / "alerts.log", tmp_path / "alerts.log.1"
    with FileChannel(path, keep_alive=True) as ch:
        ch.send(make_alert(output="m1"))
        assert ch.flush(5)
        path.rename(rotated)
        ch.send(make_alert(output="m2"))   # keep_alive: still the open, renamed file
        ch.reopen()
        ch.send(make_alert(output="m3"))
        assert ch.flush(5)
        assert ch.stats().sent == 3
    assert [line.split(": Warning ")[1] for line in rotated.read_text().splitlines()] == [
        "m1", "m2"]
    assert path.read_text().splitlines()[0].endswith(": Warning m3")


def test_file_without_keep_alive_opens_per_alert(tmp_path: Path) -> None:
    path = tmp_path / "alerts.log"
    with FileChannel(path) as ch:
        ch.send(make_alert())
        assert ch.flush(5)
        path.rename(tmp_path / "old")
        ch.send(make_alert())
        assert ch.flush(5)
    assert path.read_text() == OUTPUT + "\n"


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGUSR1])  # logrotate's, Falco's
def test_sighup_reopens_files_and_close_restores_the_handler(tmp_path: Path,
                                                             sig: signal.Signals) -> None:
    path, rotated = tmp_path / "a.log", tmp_path / "a.log.1"
    before = signal.getsignal(sig)
    out = Channels([FileChannel(path, keep_alive=True)], install_sighup=True)
    try:
        out.send(make_alert(output="m1"))
        assert out.flush(5)
        path.rename(rotated)
        # never raise the signal without our handler: the default ends the process
        assert signal.getsignal(sig) == out._on_sighup
        signal.raise_signal(sig)  # its Python handler runs before the next line
        out.send(make_alert(output="m2"))
        assert out.flush(5)
    finally:
        out.close()
    assert signal.getsignal(sig) == before
    assert rotated.read_text().endswith("m1\n") and path.read_text().endswith("m2\n")


@pytest.mark.parametrize(("buffered", "keep_alive"), [(False, True), (True, True), (True, False)])
def test_a_full_disk_never_leaves_half_a_line(tmp_path: Path, buffered: bool,
                                              keep_alive: bool) -> None:
    """A write the file system refuses midway (a full disk; here the file
    size limit, RLIMIT_FSIZE, in a child process) is cut back to the last
    whole line, and every alert that did not make it is counted failed
    (issue 22, defect 12)."""
    path = tmp_path / "alerts.json"
    script = f"""
import json, resource, signal
from bpfguard.outputs.channels import FileChannel, Format
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
ch = FileChannel({str(path)!r}, Format(json_output=True), keep_alive={keep_alive},
                 buffered={buffered})
for i in range(40):
    ch.send({{"time": "2024-01-01T00:00:00.000000000Z", "rule": "r", "priority": "Warning",
              "output": "x" * 60, "hostname": "h", "output_fields": {{"n": i}}}})
ch.close()
s = ch.stats()
print(json.dumps([s.sent, s.failed]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    sent, failed = json.loads(out.stdout)
    data = path.read_bytes()
    assert 0 < len(data) <= 1000 and data.endswith(b"\n")
    lines = data.decode().splitlines()
    assert all(json.loads(line)["rule"] == "r" for line in lines)
    assert sent + failed == 40 and failed > 0
    assert len(lines) == sent  # every line written counted sent, every other failed


def test_file_channel_needs_its_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        FileChannel(tmp_path / "nope" / "alerts.log")


# -- file rotation ---------------------------------------------------------------

PREFIX = "10:20:05.408091526: Warning "  # an output with Falco's prefix is the line as is


def numbered(i: int) -> dict[str, Any]:
    """An alert whose text line is 33 bytes with its newline."""
    return make_alert(output=f"{PREFIX}{i:04d}")


def lines_of(path: Path) -> list[str]:
    return [line.removeprefix(PREFIX) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("keep_alive", [False, True])
def test_file_rotates_by_size_keeping_backups(tmp_path: Path, keep_alive: bool) -> None:
    path = tmp_path / "alerts.log"
    with FileChannel(path, keep_alive=keep_alive, max_bytes=100, backups=2) as ch:
        for i in range(10):
            ch.send(numbered(i))
        assert ch.flush(5)
        assert ch.stats() == ChannelStats(sent=10)
    # 3 lines (99 bytes) a file; 0000-0002 went with the oldest backup
    assert lines_of(path) == ["0009"]
    assert lines_of(tmp_path / "alerts.log.1") == ["0006", "0007", "0008"]
    assert lines_of(tmp_path / "alerts.log.2") == ["0003", "0004", "0005"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "alerts.log", "alerts.log.1", "alerts.log.2"]


@pytest.mark.parametrize("keep_alive", [False, True])
def test_file_rotation_loses_and_splits_no_line(tmp_path: Path, keep_alive: bool) -> None:
    rng = random.Random(5424)
    # multi-byte characters: the limit is in bytes, not characters
    sent = ["".join(rng.choice("aé€😀") for _ in range(rng.randrange(40))) for _ in range(120)]
    path = tmp_path / "alerts.log"
    with FileChannel(path, keep_alive=keep_alive, max_bytes=200, backups=100) as ch:
        for text in sent:
            ch.send(make_alert(output=PREFIX + text))
        assert ch.flush(5)
    files = sorted(tmp_path.iterdir(), key=lambda p: -int(p.name[len("alerts.log."):] or 0))
    assert 20 < len(files) <= 100  # none deleted yet
    got: list[str] = []
    for f in files:
        data = f.read_bytes()
        assert 0 < len(data) <= 200 and data.endswith(b"\n")
        got += lines_of(f)
    assert got == sent


def test_file_rotation_gives_a_long_line_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "alerts.log"
    with FileChannel(path, keep_alive=True, max_bytes=50) as ch:
        for text in ("short", "long" * 30, "after"):
            ch.send(make_alert(output=PREFIX + text))
        assert ch.flush(5)
    assert [lines_of(tmp_path / n) for n in ("alerts.log.2", "alerts.log.1", "alerts.log")] == [
        ["short"], ["long" * 30], ["after"]]


@pytest.mark.parametrize("keep_alive", [False, True])
def test_file_rotation_counts_what_the_file_held_when_opened(tmp_path: Path,
                                                             keep_alive: bool) -> None:
    path = tmp_path / "alerts.log"
    path.write_text("x" * 89 + "\n")
    with FileChannel(path, keep_alive=keep_alive, max_bytes=100) as ch:
        ch.send(numbered(1))
        assert ch.flush(5)
    assert (tmp_path / "alerts.log.1").read_text() == "x" * 89 + "\n"
    assert lines_of(path) == ["0001"]


def test_file_reopen_restarts_the_count_and_rotation_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "alerts.log"
    with FileChannel(path, keep_alive=True, max_bytes=100, backups=1) as ch:
        ch.send(numbered(0))
        ch.send(numbered(1))
        assert ch.flush(5)
        path.rename(tmp_path / "moved")   # logrotate, then SIGHUP
        ch.reopen()
        for i in range(2, 5):             # 99 bytes: the new file's own size counts
            ch.send(numbered(i))
        assert ch.flush(5)
        assert not (tmp_path / "alerts.log.1").exists()
        ch.send(numbered(5))
        assert ch.flush(5)
    assert lines_of(tmp_path / "moved") == ["0000", "0001"]
    assert lines_of(tmp_path / "alerts.log.1") == ["0002", "0003", "0004"]
    assert lines_of(path) == ["0005"]


@pytest.mark.parametrize("keep_alive", [False, True])
def test_file_rotation_without_backups_starts_afresh(tmp_path: Path, keep_alive: bool) -> None:
    path = tmp_path / "alerts.log"
    with FileChannel(path, keep_alive=keep_alive, max_bytes=70, backups=0) as ch:
        for i in range(5):
            ch.send(numbered(i))
        assert ch.flush(5)
    assert [p.name for p in tmp_path.iterdir()] == ["alerts.log"]
    assert lines_of(path) == ["0004"]


def test_file_rotation_failure_appends_anyway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    def refuse(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied", src)

    monkeypatch.setattr(os, "replace", refuse)
    path = tmp_path / "alerts.log"
    with FileChannel(path, keep_alive=True, max_bytes=40) as ch:
        for i in range(3):
            ch.send(numbered(i))
        assert ch.flush(5)
        assert ch.stats() == ChannelStats(sent=3)
    assert lines_of(path) == ["0000", "0001", "0002"]
    # logged once, not once an alert
    assert [r.message.startswith(f"file: cannot rotate {path}, appending to it: [Errno 13]")
            for r in caplog.records] == [True]


def test_file_rotation_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_bytes"):
        FileChannel(tmp_path / "a.log", max_bytes=-1)
    with pytest.raises(ConfigError, match="backups"):
        FileChannel(tmp_path / "a.log", max_bytes=10, backups=-1)


# -- syslog ----------------------------------------------------------------------


def test_syslog_channel_maps_priority_and_facility(monkeypatch: pytest.MonkeyPatch) -> None:
    # syslog(3) always talks to /dev/log: check the calls the channel makes
    calls: list[tuple[Any, ...]] = []
    done = threading.Event()
    monkeypatch.setattr(syslog, "openlog", lambda *a: calls.append(("openlog", *a)))

    def fake_syslog(prio: int, msg: str) -> None:
        calls.append(("syslog", prio, msg))
        done.set()

    monkeypatch.setattr(syslog, "syslog", fake_syslog)
    with SyslogChannel(ident="bpfguard-test", facility="local3") as ch:
        ch.send(make_alert(priority="Critical"))
        assert done.wait(5) and ch.flush(5)
        ch.send(make_alert(priority="Bogus"))  # cannot be mapped: counted, not raised
        assert ch.flush(5)
        assert ch.stats() == ChannelStats(sent=1, failed=1)
    assert calls == [("openlog", "bpfguard-test", 0, syslog.LOG_LOCAL3),
                     ("syslog", syslog.LOG_LOCAL3 | syslog.LOG_CRIT, OUTPUT)]
    with pytest.raises(ConfigError):
        SyslogChannel(facility="nowhere")


# -- program ---------------------------------------------------------------------


def test_program_per_alert_receives_lines(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with ProgramChannel(f"cat >> {out}", Format(json_output=True)) as ch:
        ch.send(make_alert(rule="r1"))
        ch.send(make_alert(rule="r2"))
        assert ch.flush(5)   # each run is waited for: the lines are in the file
        assert [json.loads(line)["rule"] for line in out.read_text().splitlines()] == [
            "r1", "r2"]
        assert ch.stats().sent == 2


def test_program_keep_alive_receives_lines(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ch = ProgramChannel(f"cat >> {out}", keep_alive=True)
    for i in range(3):
        ch.send(make_alert(output=f"m{i}"))
    ch.close()  # EOF to cat, which is waited for
    assert [line.split(": Warning ")[1] for line in out.read_text().splitlines()] == [
        "m0", "m1", "m2"]
    assert ch.stats() == ChannelStats(sent=3)


def test_program_failure_is_not_retried(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with ProgramChannel(f"cat >> {out}; exit 3", backoff=FAST) as ch:
        ch.send(make_alert())
        assert ch.flush(5)
        assert ch.stats() == ChannelStats(failed=1)
    assert out.read_text() == OUTPUT + "\n"  # it ran once: a retry would repeat it


class _Fifo:
    """Lines a program writes to a FIFO, read with a timeout."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        # our own writer end: with none, a closed writer reads as EOF forever
        self._keep = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        self._buf = b""

    def line(self, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            ready, _, _ = select.select([self.fd], [], [], deadline - time.monotonic())
            assert ready, "no line from the program"
            self._buf += os.read(self.fd, 4096)
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def close(self) -> None:
        os.close(self.fd)
        os.close(self._keep)


def _wait_exit(pid: int) -> None:
    fd = os.pidfd_open(pid)  # readable once the process has ended (not reaped)
    try:
        assert select.select([fd], [], [], 5)[0], f"{pid} did not die"
    finally:
        os.close(fd)


def test_program_keep_alive_restarts_a_dead_program(tmp_path: Path) -> None:
    out, fifo = tmp_path / "out", _Fifo(tmp_path / "sync")
    # says its pid, then acknowledges each line once it is in the file
    prog = (f'echo $$ > {tmp_path / "sync"}; while IFS= read -r l; do '
            f'printf "%s\\n" "$l" >> {out}; echo ok > {tmp_path / "sync"}; done')
    ch = ProgramChannel(prog, keep_alive=True, backoff=FAST)
    try:
        ch.send(make_alert(output="m1"))
        pid1 = int(fifo.line())
        assert fifo.line() == "ok"
        os.kill(pid1, signal.SIGKILL)
        _wait_exit(pid1)
        ch.send(make_alert(output="m2"))
        pid2 = int(fifo.line())
        assert fifo.line() == "ok"
        assert pid2 != pid1
    finally:
        ch.close()
        fifo.close()
    assert [line.split(": Warning ")[1] for line in out.read_text().splitlines()] == [
        "m1", "m2"]
    assert ch.stats() == ChannelStats(sent=2)


# -- HTTP ------------------------------------------------------------------------


@dataclass
class _Request:
    path: str
    headers: dict[str, str]
    body: bytes


class _Server:
    """A local HTTP(S) server recording POSTs and answering from a script."""

    def __init__(self, statuses: tuple[int, ...] = (), gate: threading.Event | None = None,
                 tls: ssl.SSLContext | None = None, hang_up: bool = False) -> None:
        self.requests: list[_Request] = []
        self.cond = threading.Condition()
        script = list(statuses)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the channel uses it

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with server.cond:
                    server.requests.append(_Request(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    status = script.pop(0) if script else 200
                    server.cond.notify_all()
                if gate is not None:
                    gate.wait(10)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                # hang_up: close the connection without saying so, as a server
                # does to an idle keep-alive connection
                self.close_connection = hang_up

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        # poll_interval: how soon serve_forever() notices shutdown()
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,),
                                        daemon=True)
        self._thread.start()

    def url(self, scheme: str = "http", path: str = "/alerts") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def wait_requests(self, n: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.requests) >= n, 5)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()


@pytest.fixture
def serve() -> Iterator[Callable[..., _Server]]:
    servers: list[_Server] = []

    def make(*args: Any, **kw: Any) -> _Server:
        servers.append(_Server(*args, **kw))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_http_retries_5xx_with_backoff(serve: Callable[..., _Server]) -> None:
    srv = serve((500, 503, 200))
    with HttpChannel(srv.url(), headers={"X-Token": "t"}, backoff=FAST) as ch:
        ch.send(make_alert())
        assert ch.flush(5)
        assert ch.stats() == ChannelStats(sent=1)
    assert len(srv.requests) == 3
    req = srv.requests[0]
    assert req.path == "/alerts"
    assert req.body == Format(json_output=True).line(make_alert()).encode()
    assert req.headers["content-type"] == "application/json"
    assert req.headers["user-agent"].startswith("bpfguard/")
    assert req.headers["x-token"] == "t"


def test_http_does_not_retry_4xx(serve: Callable[..., _Server]) -> None:
    srv = serve((400, 200))
    with HttpChannel(srv.url(), backoff=FAST) as ch:
        ch.send(make_alert())
        assert ch.flush(5)
        assert ch.stats() == ChannelStats(failed=1)
    assert len(srv.requests) == 1


def test_http_retries_429(serve: Callable[..., _Server]) -> None:
    srv = serve((429, 200))
    with HttpChannel(srv.url(), backoff=FAST) as ch:
        ch.send(make_alert())
        assert ch.flush(5)
        assert ch.stats() == ChannelStats(sent=1)
    assert len(srv.requests) == 2


def test_http_slow_server_never_blocks_the_caller(serve: Callable[..., _Server]) -> None:
    gate = threading.Event()
    srv = serve(gate=gate)
    ch = HttpChannel(srv.url(), capacity=2, backoff=FAST)
    try:
        ch.send(make_alert(rule="r0"))
        srv.wait_requests(1)          # r0 is in flight, the server holds it
        t0 = time.monotonic()
        for i in range(1, 10):
            ch.send(make_alert(rule=f"r{i}"))
        assert time.monotonic() - t0 < 0.5
        assert ch.stats() == ChannelStats(dropped=7, queued=2)
        gate.set()
        assert ch.flush(5)
        assert ch.stats() == ChannelStats(sent=3, dropped=7)
    finally:
        gate.set()
        ch.close()
    # the newest were dropped: what was delivered is the start, without gaps
    assert [json.loads(r.body)["rule"] for r in srv.requests] == ["r0", "r1", "r2"]


@contextlib.contextmanager
def _full_http_queue(serve: Callable[..., _Server]
                     ) -> Iterator[tuple[_Server, HttpChannel, Channels, threading.Event]]:
    """An HTTP channel of capacity 1 whose server holds r0 in flight, r1
    queued: the queue is full until the gate opens."""
    gate = threading.Event()
    srv = serve(gate=gate)
    ch = HttpChannel(srv.url(), capacity=1, backoff=FAST)
    out = Channels([ch], hostname="h")
    try:
        out.send(make_alert(rule="r0"))
        srv.wait_requests(1)
        out.send(make_alert(rule="r1"))
        yield srv, ch, out, gate
    finally:
        gate.set()
        out.close()


def test_drop_notices_get_through_a_full_queue(serve: Callable[..., _Server]) -> None:
    with _full_http_queue(serve) as (srv, ch, out, gate):
        out.send(make_alert(rule="r2"))  # the queue is full: dropped
        for n in (1, 2):
            out.notice({"type": "loss", "reason": "ringbuf_full", "count": n, "total": n})
        assert ch.stats() == ChannelStats(dropped=1, queued=3)
        gate.set()
        assert ch.flush(5)
    bodies = [json.loads(r.body) for r in srv.requests]
    assert [b["rule"] for b in bodies] == ["r0", "r1", DROP_RULE, DROP_RULE, DROP_RULE]
    # and close() reported r2, which the full queue dropped: no loss goes unreported
    assert bodies[-1]["output_fields"] == {"bpfguard.output": "http", "ebpf_enabled": "1",
                                           "n_drops": "1", "n_drops_output_queue_full": "1"}


def test_drop_notices_past_the_reserve_are_merged_not_lost(
        serve: Callable[..., _Server], monkeypatch: pytest.MonkeyPatch) -> None:
    """Even the reserve full (issue 22, defect 4): the notices that find no
    room are held and merged, so the counts they carry all arrive."""
    monkeypatch.setattr(channels_module, "NOTICE_RESERVE", 1)
    with _full_http_queue(serve) as (srv, ch, out, gate):
        for n in (1, 2, 3, 4):           # one in the reserve, three held as one
            out.notice({"type": "loss", "reason": "ringbuf_full", "count": n, "total": n})
        out.notice({"type": "loss", "reason": "queue_full", "count": 5, "total": 5})
        assert ch.stats() == ChannelStats(queued=3)
        gate.set()
        assert ch.flush(5)
    drops = [json.loads(r.body)["output_fields"] for r in srv.requests
             if json.loads(r.body)["rule"] == DROP_RULE]
    assert drops == [
        {"ebpf_enabled": "1", "n_drops": "1", "n_drops_ringbuf_full": "1"},
        {"ebpf_enabled": "1", "n_drops": "14", "n_drops_ringbuf_full": "9",
         "n_drops_queue_full": "5"}]


def test_http_reconnects_at_once_when_the_server_hung_up(
        serve: Callable[..., _Server]) -> None:
    srv = serve(hang_up=True)
    # a retry after a backoff would take >= 1 s
    with HttpChannel(srv.url(), backoff=Backoff(initial=2, attempts=2)) as ch:
        t0 = time.monotonic()
        for i in range(3):
            ch.send(make_alert(rule=f"r{i}"))
        assert ch.flush(5)
        assert time.monotonic() - t0 < 1
        assert ch.stats() == ChannelStats(sent=3)
    assert [json.loads(r.body)["rule"] for r in srv.requests] == ["r0", "r1", "r2"]


def test_http_gzip_and_basic_auth(serve: Callable[..., _Server]) -> None:
    srv = serve()
    url = f"http://us%40er:p%3Ass@127.0.0.1:{srv.port}/hook?x=1"
    with HttpChannel(url, Format(), compress=True) as ch:
        ch.send(make_alert())
        assert ch.flush(5)
    req = srv.requests[0]
    assert req.path == "/hook?x=1"
    assert req.headers["content-encoding"] == "gzip"
    assert req.headers["content-type"] == "text/plain"
    assert req.headers["authorization"] == "Basic dXNAZXI6cDpzcw=="  # "us@er:p:ss"
    assert gzip.decompress(req.body) == OUTPUT.encode()


def test_http_connection_refused_fails_after_retries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with HttpChannel(f"http://127.0.0.1:{port}/", backoff=FAST) as ch:
        ch.send(make_alert())
        assert ch.flush(5)
        assert ch.stats() == ChannelStats(failed=1)


def test_http_config_errors() -> None:
    with pytest.raises(ConfigError):
        HttpChannel("ftp://example.org/")
    with pytest.raises(ConfigError):
        HttpChannel("http://example.org/", ca_cert="/ca.pem")
    with pytest.raises(ConfigError):
        HttpChannel("https://example.org/", ca_cert="/nonexistent/ca.pem")


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    crt, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", crt], check=True, capture_output=True)
    return crt, key


def test_https_ca_cert_insecure_and_untrusted(serve: Callable[..., _Server],
                                              cert: tuple[str, str]) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)
    srv = serve(tls=ctx)
    with HttpChannel(srv.url("https"), ca_cert=cert[0], name="ca") as ch:
        ch.send(make_alert())
        assert ch.flush(5) and ch.stats().sent == 1
    with HttpChannel(srv.url("https"), insecure=True, name="insecure") as ch:
        ch.send(make_alert())
        assert ch.flush(5) and ch.stats().sent == 1
    # untrusted: given up at once, although a retry would wait >= 1 s
    with HttpChannel(srv.url("https"), backoff=Backoff(initial=2, attempts=3)) as ch:
        t0 = time.monotonic()
        ch.send(make_alert())
        assert ch.flush(5)
        assert time.monotonic() - t0 < 1
        assert ch.stats() == ChannelStats(failed=1)
    assert len(srv.requests) == 2


def test_backoff_is_exponential_capped_and_jittered() -> None:
    b = Backoff(initial=1.0, maximum=8.0)
    rng = random.Random(7)
    delays = [b.delay(n, rng) for n in range(6)]
    for n, d in enumerate(delays):
        full = min(8.0, 2.0 ** n)
        assert full / 2 <= d <= full
    again = random.Random(7)
    assert delays == [b.delay(n, again) for n in range(6)]  # seeded: deterministic
    assert b.delay(10_000, rng) <= 8.0  # no overflow after a long outage


# -- rate limiting ---------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_message_of_strips_falcos_prefix() -> None:
    assert message_of(make_alert()) == OUTPUT.split(": Warning ", 1)[1]
    iso = make_alert(output="2024-05-01T10:20:05.408091526+0000: Notice x y")
    assert message_of(iso) == "x y"
    assert message_of(make_alert(output="plain")) == "plain"


def test_token_bucket() -> None:
    b = TokenBucket(Limit(rate=2.0, burst=2), now=0.0)
    assert [b.take(0.0), b.take(0.0), b.take(0.0), b.take(0.5), b.take(0.5)] == [
        True, True, False, True, False]
    assert b.take(10.0) and b.take(10.0) and not b.take(10.0)  # capped at burst
    with pytest.raises(ConfigError):
        Limit(rate=0, burst=1)


def test_rate_limit_summarises_what_it_held_back() -> None:
    clock = FakeClock()
    lim = RateLimiter(limit=Limit(rate=1.0, burst=2), clock=clock)
    alerts = [make_alert(output=f"m{i}", time=f"2024-05-01T10:20:0{i}.000000000Z")
              for i in range(5)]
    assert [lim.admit(a) for a in alerts] == [True, True, False, False, False]
    assert lim.suppressed == 3 and lim.poll() == []
    clock.t += 1.0
    [summary] = lim.poll()
    assert summary["rule"] == alerts[4]["rule"] and summary["priority"] == "Warning"
    assert summary["output"] == (
        "m4 (suppressed: 3 alerts of this rule by rate limit from "
        "2024-05-01T10:20:02.000000000Z to 2024-05-01T10:20:04.000000000Z)")
    assert summary["output_fields"]["bpfguard.suppressed"] == 3
    assert summary["output_fields"]["bpfguard.suppressed_by"] == "rate_limit"
    assert summary["output_fields"]["user.name"] == "root"
    assert lim.poll() == []
    # the summary took the token
    assert not lim.admit(make_alert(output="m5"))


def test_rate_limit_is_per_rule_with_overrides() -> None:
    clock = FakeClock()
    lim = RateLimiter(limit=Limit(rate=1.0, burst=1),
                      per_rule={"noisy": Limit(rate=0.001, burst=3)}, clock=clock)
    assert [lim.admit(make_alert(rule="a")), lim.admit(make_alert(rule="a")),
            lim.admit(make_alert(rule="b"))] == [True, False, True]
    assert [lim.admit(make_alert(rule="noisy", output=str(i))) for i in range(4)] == [
        True, True, True, False]


def test_dedup_window_emits_one_summary() -> None:
    clock = FakeClock()
    lim = RateLimiter(dedup_window=10, clock=clock)
    first = make_alert()
    # same rule and message; Falco's prefix (the time) differs
    dups = [make_alert(output=OUTPUT.replace("10:20:05", f"10:20:0{6 + i}"),
                       time=f"2024-05-01T10:20:0{6 + i}.408091526Z") for i in range(3)]
    assert lim.admit(first)
    assert [lim.admit(d) for d in dups] == [False, False, False]
    assert lim.admit(make_alert(output="different")) and lim.admit(make_alert(rule="other"))
    clock.t += 9.9
    assert lim.poll() == []
    clock.t += 0.1
    [summary] = lim.poll()
    assert summary["output"] == dups[-1]["output"] + (
        " (suppressed: 3 identical alerts from 2024-05-01T10:20:06.408091526Z "
        "to 2024-05-01T10:20:08.408091526Z)")
    assert summary["output_fields"]["bpfguard.suppressed_by"] == "dedup"
    assert summary["output_fields"]["bpfguard.suppressed_first"] == dups[0]["time"]
    assert lim.admit(first)  # a new window


def test_dedup_summary_survives_a_late_poll() -> None:
    clock = FakeClock()
    lim = RateLimiter(dedup_window=5, clock=clock)
    assert lim.admit(make_alert()) and not lim.admit(make_alert())
    clock.t += 6
    assert lim.admit(make_alert())  # the window ended unpolled: a new one starts
    [summary] = lim.poll()
    assert summary["output_fields"]["bpfguard.suppressed"] == 1
    assert not lim.admit(make_alert())
    [summary] = lim.drain()  # shutdown: all that is pending, due or not
    assert summary["output_fields"]["bpfguard.suppressed"] == 1
    assert lim.drain() == [] and lim.suppressed == 2


def test_drop_notices_pass_the_rate_limiter() -> None:
    buf = io.StringIO()
    lim = RateLimiter(limit=Limit(rate=1.0, burst=1), dedup_window=30, clock=FakeClock())
    with Channels([StdoutChannel(stream=buf)], limiter=lim, hostname="h",
                  tick_interval=None) as out:
        for n in (1, 2, 2):     # past the rule's burst, and identical
            out.notice({"type": "loss", "reason": "ringbuf_full", "count": n, "total": n,
                        "time_ns": 1})
        assert out.flush(5)
    assert [ln.count("n_drops=") for ln in buf.getvalue().splitlines()] == [1, 1, 1]


def test_channels_fan_out_limit_and_count(tmp_path: Path, tz: Callable[[str], None]) -> None:
    tz("UTC")
    clock = FakeClock()
    buf = io.StringIO()
    lim = RateLimiter(limit=Limit(rate=1.0, burst=1), dedup_window=30, clock=clock)
    out = Channels([StdoutChannel(stream=buf), FileChannel(tmp_path / "a.log")],
                   limiter=lim, hostname="host1", tick_interval=None)
    with out:
        out.send(make_alert())
        out.send(make_alert())            # dedup
        out.send(make_alert(output="x"))  # rate limit
        out.notice({"type": "loss", "reason": "ringbuf_full", "count": 2, "total": 2,
                    "time_ns": 1})
        assert out.flush(5)
        stats = out.stats()
        assert stats["stdout"] == ChannelStats(sent=2, suppressed=2)
        assert stats["file"] == stats["stdout"]
        clock.t += 1
        out.tick()                        # the rate-limit summary has a token now
        assert out.flush(5)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 4  # alert, drop notice, rate summary, dedup summary at close
    t = "2024-05-01T10:20:05.408091526Z"
    assert lines == [
        OUTPUT,
        '00:00:00.000000001: Debug Falco internal: syscall event drop. 2 system calls '
        'dropped in last second. (ebpf_enabled="1" n_drops="2" n_drops_ringbuf_full="2")',
        f"10:20:05.408091526: Warning x (suppressed: 1 alert of this rule by rate limit "
        f"from {t} to {t})",
        f"{OUTPUT} (suppressed: 1 identical alert from {t} to {t})",
    ]
    assert (tmp_path / "a.log").read_text().splitlines() == lines


def test_channels_need_distinct_names() -> None:
    a, b = StdoutChannel(stream=io.StringIO()), StdoutChannel(stream=io.StringIO())
    with pytest.raises(ConfigError):
        Channels([a, b])
    a.close()
    b.close()


def test_send_after_close_is_counted_as_dropped() -> None:
    ch = StdoutChannel(stream=io.StringIO())
    ch.close()
    ch.send(make_alert())
    assert ch.stats() == ChannelStats(dropped=1)
