"""RFC 5424 syslog: the message, parsed back strictly, and its three transports.

Real sockets: a UDP socket, a TCP server thread, unix sockets in tmp_path.
Synchronisation is by flush(), close() and blocking reads with a timeout.
"""

from __future__ import annotations

import os
import re
import socket
import syslog
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bpfguard.errors import ConfigError
from bpfguard.outputs.channels import (
    SD_ID,
    SD_VALUE_MAX,
    Backoff,
    ChannelStats,
    Format,
    Rfc5424SyslogChannel,
    drop_alert,
)

from .test_channels import OUTPUT, make_alert

FAST = Backoff(initial=0.001, maximum=0.004, attempts=3)
BOM = b"\xef\xbb\xbf"
PREFIX_OUT = "10:20:05.408091526: Warning "  # an output with it is the text line as is

_NAME = rb"[\x21\x23-\x3c\x3e-\x5c\x5e-\x7e]{1,32}"  # SD-NAME: PRINTUSASCII but = SP ] "
# RFC 5424 section 6, strictly: every '"', '\' and ']' in a PARAM-VALUE escaped
SYSLOG_MSG = re.compile(
    rb"<(?P<pri>0|[1-9]\d{0,2})>(?P<version>1) "
    rb"(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)) "
    rb"(?P<host>-|[!-~]{1,255}) (?P<app>-|[!-~]{1,48}) (?P<procid>-|[!-~]{1,128}) "
    rb"(?P<msgid>-|[!-~]{1,32}) "
    rb"(?P<sd>\[" + _NAME + rb"(?: " + _NAME + rb'="(?:[^"\\\]]|\\["\\\]])*")*\])'
    rb"(?: (?P<msg>.*))?\Z", re.S)
PARAM = re.compile(rb'(' + _NAME + rb')="((?:[^"\\\]]|\\["\\\]])*)"')


def parse(data: bytes) -> dict[str, Any]:
    m = SYSLOG_MSG.match(data)
    assert m is not None, data
    out: dict[str, Any] = {k: v.decode() for k, v in m.groupdict().items()
                           if k not in ("sd", "msg")}
    sd = m["sd"]
    assert sd.startswith(b"[" + SD_ID.encode() + b" ")
    out["sd"] = {k.decode(): re.sub(rb'\\(["\\\]])', rb"\1", v).decode()
                 for k, v in PARAM.findall(sd)}
    assert m["msg"].startswith(BOM)
    out["msg"] = m["msg"][len(BOM):].decode()  # strict: a split character raises
    return out


def offline(**kw: Any) -> Rfc5424SyslogChannel:
    """A channel only formatted with, never sent on: no socket, no thread."""
    return Rfc5424SyslogChannel(address="udp://127.0.0.1:9", **kw)


# -- the message -----------------------------------------------------------------


def test_message_fields() -> None:
    msg = parse(offline(facility="local3")._prepare(make_alert()))
    assert msg == {
        "pri": str(19 * 8 + 4), "version": "1", "time": "2024-05-01T10:20:05.408091Z",
        "host": "host1", "app": "bpfguard", "procid": str(os.getpid()), "msgid": "alert",
        "sd": {"rule": "Read sensitive file untrusted", "priority": "Warning",
               "source": "syscall"},
        "msg": OUTPUT}


@pytest.mark.parametrize(("facility", "priority", "pri"), [
    (syslog.LOG_KERN, "Emergency", 0), ("user", "Info", 14), ("LOCAL7", "Debug", 191),
    (syslog.LOG_DAEMON, "critical", 26)])
def test_pri_is_facility_and_level(facility: int | str, priority: str, pri: int) -> None:
    data = offline(facility=facility)._prepare(make_alert(priority=priority))
    assert parse(data)["pri"] == str(pri)


@pytest.mark.parametrize(("time", "expected"), [
    ("2024-05-01T10:20:05.408091526Z", "2024-05-01T10:20:05.408091Z"),  # cut, not rounded
    ("2024-05-01T10:20:05.999999999Z", "2024-05-01T10:20:05.999999Z"),
    ("2024-05-01T10:20:05.5+0200", "2024-05-01T10:20:05.5+02:00"),
    ("2024-05-01T10:20:05-03:30", "2024-05-01T10:20:05-03:30")])
def test_timestamp_is_the_alerts_own_in_microseconds(time: str, expected: str) -> None:
    assert parse(offline()._prepare(make_alert(time=time)))["time"] == expected


def test_drop_alert_json_app_name_and_hostnames() -> None:
    ch = offline(fmt=Format(json_output=True), app_name="guard-7")
    drop = drop_alert({"type": "loss", "count": 3, "reason": "buffer", "time_ns": 1},
                      hostname="a host\u00e9")
    msg = parse(ch._prepare(drop))
    assert (msg["msgid"], msg["app"], msg["host"]) == ("drop", "guard-7", "a_host_")
    assert msg["sd"]["source"] == "internal"
    assert '"n_drops":"3"' in msg["msg"]
    assert parse(ch._prepare(make_alert(hostname="")))["host"] == "-"
    assert parse(ch._prepare(make_alert(hostname="h" * 300)))["host"] == "h" * 255


@given(rule=st.text(max_size=300), source=st.text(max_size=20))
def test_structured_data_escapes_any_value(rule: str, source: str) -> None:
    data = offline()._prepare(make_alert(rule=rule, source=source))
    sd = parse(data)["sd"]
    got, want = sd["rule"].encode(), rule.encode()
    if len(want) <= SD_VALUE_MAX:
        assert got == want
    else:  # cut, on a character boundary (parse() decoded it)
        assert want.startswith(got) and SD_VALUE_MAX - 3 <= len(got) <= SD_VALUE_MAX
    assert sd["source"] == source and list(sd) == ["rule", "priority", "source"]


def test_sd_names_follow_the_grammar() -> None:
    assert re.fullmatch(_NAME, SD_ID.encode())
    assert re.fullmatch(rb"[^@]+@\d+(?:\.\d+)*", SD_ID.encode())  # RFC 5424 7.2.2


@pytest.mark.parametrize("pad", range(4))
def test_msg_is_cut_to_max_size_on_a_character(pad: int) -> None:
    ch = offline(max_size=480)
    data = ch._prepare(make_alert(output=PREFIX_OUT + "a" * pad + "😀" * 200))
    msg = parse(data)["msg"]  # decodes: no split character
    assert 480 - 3 <= len(data) <= 480
    assert (PREFIX_OUT + "a" * pad + "😀" * 200).startswith(msg)


def test_default_sizes_by_transport() -> None:
    big = make_alert(output=PREFIX_OUT + "x" * 10_000)
    assert len(offline()._prepare(big)) == 2048
    assert len(Rfc5424SyslogChannel(address="tcp://h")._prepare(big)) == 8192
    assert len(Rfc5424SyslogChannel()._prepare(big)) == 8192
    assert len(offline()._prepare(make_alert())) < 2048


def test_header_too_big_for_max_size_fails_the_alert() -> None:
    # 255 bytes of rule, each escaped: no room left in 480
    with offline(max_size=480) as ch:
        ch.send(make_alert(rule="]" * 255, hostname="h" * 255))
        assert ch.flush(5)
        assert ch.stats() == ChannelStats(failed=1)


@pytest.mark.parametrize("address", [
    "", "/dev/log", "unix://dev/log", "unix:///dev/log?x", "udp://", "udp://:514",
    "udp://h:0", "udp://h:99999", "udp://h:x", "tcp://h/path", "tcp://u@h", "http://h"])
def test_bad_address_is_a_config_error_naming_it(address: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(repr(address))):
        Rfc5424SyslogChannel(address=address)


def test_bad_settings() -> None:
    for kw in ({"facility": "nowhere"}, {"facility": 7}, {"facility": 24 * 8},
               {"app_name": ""}, {"app_name": "a b"}, {"app_name": "x" * 49},
               {"app_name": "caf\u00e9"}, {"max_size": 479}):
        with pytest.raises(ConfigError):
            offline(**kw)


# -- transports ------------------------------------------------------------------


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        yield s


def test_udp_datagram_per_alert(udp: socket.socket) -> None:
    port = udp.getsockname()[1]
    with Rfc5424SyslogChannel(address=f"udp://127.0.0.1:{port}", facility="local0") as ch:
        for rule in ("r1", "r2", "r3"):
            ch.send(make_alert(rule=rule))
        assert ch.flush(5)
        assert ch.stats() == ChannelStats(sent=3)
    got = [parse(udp.recv(65536)) for _ in range(3)]
    assert [m["sd"]["rule"] for m in got] == ["r1", "r2", "r3"]
    assert got[0]["pri"] == str(16 * 8 + 4)


def test_udp_ipv6() -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback")
        s.settimeout(5)
        with Rfc5424SyslogChannel(address=f"udp://[::1]:{s.getsockname()[1]}") as ch:
            ch.send(make_alert())
        assert parse(s.recv(65536))["msg"] == OUTPUT


def test_udp_is_fire_and_forget() -> None:
    # a port nobody listens on: the ICMP error reaches no one, nothing is retried
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Rfc5424SyslogChannel(address=f"udp://127.0.0.1:{port}", backoff=FAST) as ch:
        for _ in range(3):
            ch.send(make_alert())
        assert ch.flush(5)
        assert ch.stats() == ChannelStats(sent=3)


class _TcpServer:
    """Accepts connections one after another and reads octet-counted frames.

    `hang_up_after` frames, it closes the connection it is on.
    """

    def __init__(self, listener: socket.socket, hang_up_after: int = 0) -> None:
        self.listener = listener
        self.frames: list[bytes] = []
        self.connections = 0
        self.hung_up = threading.Event()
        self._hang_up_after = hang_up_after
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.listener.listen()
        self._thread.start()

    def stop(self, frames: int) -> list[bytes]:
        """Waits for `frames` frames, then stops; what was received."""
        with self._cv:
            assert self._cv.wait_for(lambda: len(self.frames) >= frames, 5), self.frames
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._thread.join(5)
        assert not self._thread.is_alive()
        return self.frames

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # stop()
            self.connections += 1
            with conn, conn.makefile("rb") as f:
                while (frame := self._frame(f)) is not None:
                    with self._cv:
                        self.frames.append(frame)
                        self._cv.notify_all()
                    if len(self.frames) == self._hang_up_after:
                        break
            if self._hang_up_after and len(self.frames) == self._hang_up_after:
                self.hung_up.set()

    @staticmethod
    def _frame(f: Any) -> bytes | None:
        # RFC 6587 3.4.1: MSG-LEN SP SYSLOG-MSG, MSG-LEN a NONZERO-DIGIT *DIGIT
        head = b""
        while (c := f.read(1)) != b" ":
            if not c:
                assert head == b"", head  # EOF only between frames
                return None
            head += c
        assert re.fullmatch(rb"[1-9]\d*", head), head
        data: bytes = f.read(int(head))
        assert len(data) == int(head)
        return data


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    s.bind(("127.0.0.1", 0))
    yield s
    s.close()


def test_tcp_octet_counting(listener: socket.socket) -> None:
    server = _TcpServer(listener)
    server.start()
    port = listener.getsockname()[1]
    with Rfc5424SyslogChannel(address=f"tcp://127.0.0.1:{port}") as ch:
        ch.send(make_alert(output=PREFIX_OUT + "two\nlines"))  # framing, not newlines
        ch.send(make_alert(output=PREFIX_OUT + "€" * 2000))
        assert ch.flush(5)
    assert [parse(f)["msg"] for f in server.stop(2)] == [
        PREFIX_OUT + "two\nlines", PREFIX_OUT + "€" * 2000]
    assert server.connections == 1


def test_tcp_reconnects_at_once_when_the_server_hung_up(listener: socket.socket) -> None:
    server = _TcpServer(listener, hang_up_after=1)
    server.start()
    port = listener.getsockname()[1]
    slow = Backoff(initial=60, maximum=60, attempts=2)  # a backoff would time the test out
    with Rfc5424SyslogChannel(address=f"tcp://127.0.0.1:{port}", backoff=slow) as ch:
        ch.send(make_alert(rule="r1"))
        assert server.hung_up.wait(5)
        ch.send(make_alert(rule="r2"))
        assert ch.flush(5)
        assert ch.stats() == ChannelStats(sent=2)
    assert [parse(f)["sd"]["rule"] for f in server.stop(2)] == ["r1", "r2"]
    assert server.connections == 2


def test_tcp_refused_is_retried_then_recovers(listener: socket.socket) -> None:
    port = listener.getsockname()[1]  # bound, not listening: connections are refused
    with Rfc5424SyslogChannel(address=f"tcp://127.0.0.1:{port}", backoff=FAST) as ch:
        ch.send(make_alert(rule="lost"))
        assert ch.flush(5)
        assert ch.stats() == ChannelStats(failed=1)
        server = _TcpServer(listener)
        server.start()
        ch.send(make_alert(rule="r1"))
        assert ch.flush(5)
        assert ch.stats() == ChannelStats(sent=1, failed=1)
    assert [parse(f)["sd"]["rule"] for f in server.stop(1)] == ["r1"]


def _unix_dgram(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(5)
    return s


def test_unix_datagram_and_a_restarted_daemon(tmp_path: Path) -> None:
    path = tmp_path / "log"
    slow = Backoff(initial=60, maximum=60, attempts=2)
    daemon = _unix_dgram(path)
    try:
        with Rfc5424SyslogChannel(address=f"unix://{path}", backoff=slow) as ch:
            ch.send(make_alert(rule="r1"))
            assert ch.flush(5)
            assert parse(daemon.recv(65536))["sd"]["rule"] == "r1"
            daemon.close()        # the log daemon restarts on a new socket
            path.unlink()
            daemon = _unix_dgram(path)
            ch.send(make_alert(rule="r2"))
            assert ch.flush(5)
            assert ch.stats() == ChannelStats(sent=2)
        assert parse(daemon.recv(65536))["sd"]["rule"] == "r2"
    finally:
        daemon.close()


def test_unix_stream_socket_gets_nul_terminated_messages(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as daemon:
        daemon.bind(str(path))
        daemon.listen()
        daemon.settimeout(5)
        with Rfc5424SyslogChannel(address=f"unix://{path}") as ch:
            ch.send(make_alert(rule="r1"))
            ch.send(make_alert(rule="r2"))
            assert ch.flush(5)
            conn, _ = daemon.accept()
        with conn, conn.makefile("rb") as f:
            data = f.read()  # to EOF: close() hung up
    *messages, rest = data.split(b"\0")
    assert rest == b""
    assert [parse(m)["sd"]["rule"] for m in messages] == ["r1", "r2"]


def test_unix_socket_missing_is_retried_and_fails(tmp_path: Path) -> None:
    with Rfc5424SyslogChannel(address=f"unix://{tmp_path}/none", backoff=FAST) as ch:
        ch.send(make_alert())
        assert ch.flush(5)
        assert ch.stats() == ChannelStats(failed=1)
        assert ch.stats().failing  # what /healthz reports as degraded
