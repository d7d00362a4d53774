"""The agent's control socket and the `bpfguard policy add/list/delete/mode`
commands, over real Unix sockets with an in-memory policy handler."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bpfguard.agent import control
from bpfguard.agent.control import (
    AgentNotListening,
    ControlError,
    ControlServer,
    NotServed,
    request,
)
from bpfguard.cli import main
from bpfguard.errors import BpfguardError, UnsupportedError
from bpfguard.policy import load_policy_text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tetragon"

POLICY = """\
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: {name}
spec:
  tracepoints:
  - subsystem: syscalls
    event: sys_enter_openat
  - subsystem: syscalls
    event: sys_enter_unlinkat
"""


class FakePolicies:
    """A PolicyControl keeping policies in a dict; parses with the real loader."""

    def __init__(self) -> None:
        self.policies: dict[str, dict[str, Any]] = {}
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self.delay = 0.0

    def _enter(self) -> None:
        self.calls += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        if self.delay:
            time.sleep(self.delay)

    def add_policy(self, text: str, source: str, replace: bool = False) -> dict[str, Any]:
        self._enter()
        self.replaced = replace
        try:
            if "needs-lsm" in text:
                raise UnsupportedError(f"{source}: hook lsm/file_open needs BPF LSM; "
                                       "this kernel has none")
            if "crash-me" in text:
                raise RuntimeError("boom")
            pol = load_policy_text(source, text)
            self.policies[pol.name] = {
                "id": len(self.policies) + 1, "name": pol.name, "namespace": "",
                "state": "enabled", "mode": pol.mode, "hooks": len(pol.hooks),
                "sensors": ["generic_kprobe"], "filter_id": 3,
                "scope": "containers name=main (1 running)", "file": source,
                "counters": {"posted": 7, "actions": 1, "would_act": 0, "rate_limited": 2,
                             "signals": 1, "overrides": 0, "would_signal": 0,
                             "would_override": 0, "nopost": 0}}
            return {"name": pol.name, "mode": pol.mode, "hooks": len(pol.hooks)}
        finally:
            self.active -= 1

    def list_policies(self) -> list[dict[str, Any]]:
        self._enter()
        self.active -= 1
        return list(self.policies.values())

    def delete_policy(self, name: str) -> None:
        self._enter()
        self.active -= 1
        del self.policies[name]

    def set_policy_mode(self, name: str, mode: str) -> None:
        self._enter()
        self.active -= 1
        if mode not in ("enforce", "monitor"):
            raise ValueError(f"bad mode {mode!r}")
        self.policies[name]["mode"] = mode

    def set_policy_enabled(self, name: str, enabled: bool) -> None:
        self._enter()
        self.active -= 1
        self.policies[name]["state"] = "enabled" if enabled else "disabled"


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[Path]:
    """A socket path in tmp_path, or in a short temporary directory when
    tmp_path is too long for sun_path (108 bytes)."""
    path = tmp_path / "run" / "control.sock"
    if len(os.fsencode(path)) < 100:
        yield path
        return
    d = tempfile.mkdtemp(prefix="bpfg")
    try:
        yield Path(d) / "run" / "control.sock"
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def handler() -> FakePolicies:
    return FakePolicies()


@pytest.fixture
def server(sock_path: Path, handler: FakePolicies) -> Iterator[ControlServer]:
    with ControlServer(sock_path, handler, timeout=2.0) as srv:
        yield srv


def _raw(path: Path, data: bytes, *, shut: bool = True) -> dict[str, Any]:
    """Send raw bytes, return the decoded response line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(path))
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    result: dict[str, Any] = json.loads(buf)
    return result


# -- the server and client -------------------------------------------------


def test_round_trips(server: ControlServer, sock_path: Path, handler: FakePolicies) -> None:
    assert request("list", socket_path=sock_path) == []
    summary = request("add", socket_path=sock_path, text=POLICY.format(name="p1"),
                      source="p1.yaml")
    assert summary == {"name": "p1", "mode": "enforce", "hooks": 2}
    request("add", socket_path=sock_path, text=POLICY.format(name="p2"), source="p2.yaml")
    listed = request("list", socket_path=sock_path)
    assert [p["name"] for p in listed] == ["p1", "p2"]
    assert listed[0]["file"] == "p1.yaml" and listed[0]["counters"]["posted"] == 7
    assert request("mode", socket_path=sock_path, name="p1", mode="monitor") is None
    assert handler.policies["p1"]["mode"] == "monitor"
    assert request("delete", socket_path=sock_path, name="p2") is None
    assert list(handler.policies) == ["p1"]
    assert handler.replaced is False
    request("add", socket_path=sock_path, text=POLICY.format(name="p1"), source="p1.yaml",
            replace=True)
    assert handler.replaced is True
    with pytest.raises(ControlError, match="'replace' must be true or false"):
        request("add", socket_path=sock_path, text=POLICY.format(name="p1"), source="p1.yaml",
                replace="yes")


def test_policy_error_text_reaches_the_client(server: ControlServer, sock_path: Path) -> None:
    bad = POLICY.format(name="bad").replace("tracepoints", "tracepointz")
    with pytest.raises(ControlError) as info:
        request("add", socket_path=sock_path, text=bad, source="bad.yaml")
    msg = str(info.value)
    assert msg.startswith("bad.yaml: ")
    assert "tracepointz" in msg
    # a kernel refusal too; and the server still serves
    with pytest.raises(ControlError, match="needs BPF LSM"):
        request("add", socket_path=sock_path, text="# needs-lsm", source="lsm.yaml")
    assert request("list", socket_path=sock_path) == []


def test_errors_keep_the_server_serving(server: ControlServer, sock_path: Path,
                                        handler: FakePolicies) -> None:
    request("add", socket_path=sock_path, text=POLICY.format(name="p"), source="p.yaml")
    with pytest.raises(ControlError, match="no policy named 'nope'"):
        request("delete", socket_path=sock_path, name="nope")
    with pytest.raises(ControlError, match="no policy named 'nope'"):
        request("mode", socket_path=sock_path, name="nope", mode="monitor")
    with pytest.raises(ControlError, match="mode must be 'enforce' or 'monitor', not 'off'"):
        request("mode", socket_path=sock_path, name="p", mode="off")
    with pytest.raises(ControlError, match="unknown op 'frobnicate'"):
        request("frobnicate", socket_path=sock_path)
    with pytest.raises(ControlError, match="'name' must be a string"):
        request("delete", socket_path=sock_path, name=3)
    with pytest.raises(ControlError, match="internal error in the agent: RuntimeError: boom"):
        request("add", socket_path=sock_path, text="crash-me", source="x.yaml")
    assert [p["name"] for p in request("list", socket_path=sock_path)] == ["p"]


def test_malformed_json_is_an_error(server: ControlServer, sock_path: Path) -> None:
    resp = _raw(sock_path, b"{not json\n")
    assert resp["ok"] is False and "not JSON" in resp["error"]
    resp = _raw(sock_path, b"[1, 2]\n")
    assert resp == {"ok": False, "error": "bad request: expected a JSON object"}
    # a request without a newline, ended by EOF, is still read
    assert _raw(sock_path, b'{"op": "list"}') == {"ok": True, "result": []}
    assert request("list", socket_path=sock_path) == []


def test_oversize_request_is_refused(sock_path: Path, handler: FakePolicies) -> None:
    with ControlServer(sock_path, handler, max_request=1024) as srv:
        assert srv.max_request == 1024
        with pytest.raises(ControlError, match="request too large"):
            request("add", socket_path=sock_path, text="x" * 100_000, source="big.yaml")
        assert handler.calls == 0
        assert request("list", socket_path=sock_path) == []


def test_default_limit_is_4_mib(server: ControlServer, sock_path: Path,
                                handler: FakePolicies) -> None:
    assert control.MAX_REQUEST == 4 * 1024 * 1024
    with pytest.raises(ControlError, match="request too large"):
        request("add", socket_path=sock_path, text="x" * (5 * 1024 * 1024), source="b.yaml")
    assert handler.calls == 0
    assert request("list", socket_path=sock_path) == []


def test_stuck_client_times_out_and_others_are_served(sock_path: Path,
                                                      handler: FakePolicies) -> None:
    with ControlServer(sock_path, handler, timeout=1.0), \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stuck:
        stuck.connect(str(sock_path))
        stuck.sendall(b'{"op": "li')             # and then nothing
        t0 = time.monotonic()
        assert request("list", socket_path=sock_path) == []
        assert time.monotonic() - t0 < 0.8       # not queued behind the stuck one
        stuck.settimeout(5)
        resp = json.loads(stuck.recv(65536))
        assert resp["ok"] is False and "no complete request" in resp["error"]


def test_handler_calls_are_serialized(server: ControlServer, sock_path: Path,
                                      handler: FakePolicies) -> None:
    handler.delay = 0.05
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            request("add", socket_path=sock_path, text=POLICY.format(name=f"p{i}"),
                    source=f"p{i}.yaml")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert handler.max_active == 1
    assert len(handler.policies) == 6


def test_non_root_peer_is_refused(server: ControlServer, sock_path: Path,
                                  handler: FakePolicies,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "peer_uid", lambda conn: 1000)
    with pytest.raises(ControlError, match=r"permission denied.*uid 1000"):
        request("add", socket_path=sock_path, text=POLICY.format(name="p"), source="p.yaml")
    assert handler.calls == 0
    monkeypatch.undo()
    assert request("list", socket_path=sock_path) == []


def test_peer_uid_is_read_from_the_kernel(server: ControlServer, sock_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(sock_path))
        assert control.peer_uid(s) == os.geteuid()


def test_socket_is_0600_in_a_0700_directory(server: ControlServer, sock_path: Path) -> None:
    st = os.lstat(sock_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(sock_path.parent).st_mode) == 0o700


def test_close_unlinks_and_is_idempotent(sock_path: Path, handler: FakePolicies) -> None:
    srv = ControlServer(sock_path, handler)
    srv.start()
    assert sock_path.exists()
    srv.close()
    assert not sock_path.exists()
    srv.close()
    with pytest.raises(AgentNotListening):
        request("list", socket_path=sock_path)


def test_stale_socket_is_replaced(sock_path: Path, handler: FakePolicies) -> None:
    sock_path.parent.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()                                   # the file stays, nobody listens
    assert sock_path.exists()
    with ControlServer(sock_path, handler):
        assert request("list", socket_path=sock_path) == []


def test_second_server_on_a_live_socket_refuses(server: ControlServer, sock_path: Path,
                                                handler: FakePolicies) -> None:
    with pytest.raises(ControlError, match="another bpfguard agent is listening"):
        ControlServer(sock_path, FakePolicies()).start()
    # the first one is untouched
    assert sock_path.exists()
    request("add", socket_path=sock_path, text=POLICY.format(name="p"), source="p.yaml")
    assert "p" in handler.policies


def test_a_regular_file_is_not_removed(sock_path: Path, handler: FakePolicies) -> None:
    sock_path.parent.mkdir()
    sock_path.write_text("keep me")
    with pytest.raises(ControlError, match="exists and is not a socket"):
        ControlServer(sock_path, handler).start()
    assert sock_path.read_text() == "keep me"


def test_nothing_listening_says_how_to_start_an_agent(sock_path: Path) -> None:
    with pytest.raises(AgentNotListening) as info:
        request("list", socket_path=sock_path)
    assert str(info.value) == (
        f"no bpfguard agent is listening on {sock_path}; start one with "
        "`bpfguard run --policy FILE` (or pass --socket)")
    assert isinstance(info.value, ControlError) and isinstance(info.value, BpfguardError)


def test_close_waits_for_a_handler_call_in_progress(sock_path: Path,
                                                    handler: FakePolicies) -> None:
    handler.delay = 0.3
    srv = ControlServer(sock_path, handler)
    srv.start()
    results: list[Any] = []
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.connect(str(sock_path))                     # connected, sends nothing
    t = threading.Thread(target=lambda: results.append(request("list", socket_path=sock_path)))
    t.start()
    deadline = time.monotonic() + 5
    while handler.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    srv.close()
    assert time.monotonic() - t0 < 2                 # the idle client does not hold it
    assert handler.active == 0
    t.join()
    assert results == [[]]                           # the call in progress was answered
    idle.close()


# -- the CLI ---------------------------------------------------------------


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["policy", *args])


def test_cli_add_list_mode_delete(server: ControlServer, sock_path: Path, tmp_path: Path,
                                  handler: FakePolicies) -> None:
    f = tmp_path / "p1.yaml"
    f.write_text(POLICY.format(name="p1"))
    r = _cli("add", str(f), "--socket", str(sock_path))
    assert r.exit_code == 0, r.output
    assert r.stdout == f"added policy 'p1' (enforce mode, 2 hooks) from {f}\n"
    assert handler.policies["p1"]["file"] == str(f)

    r = _cli("list", "--socket", str(sock_path))
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    # tetra tracingpolicy list's columns first, in its order
    assert lines[0].split() == ["ID", "NAME", "DOMAIN", "STATE", "FILTERID", "NAMESPACE",
                                "SENSORS", "KERNELMEMORY", "MODE", "NPOST", "NENFORCE",
                                "NMONITOR", "HOOKS", "SCOPE", "RATE-LIMITED", "FILE"]
    assert lines[1].split() == ["1", "p1", "grpc", "enabled", "3", "(global)",
                                "generic_kprobe", "0", "B", "enforce", "7", "1", "0", "2",
                                "containers", "name=main", "(1", "running)", "2", str(f)]

    r = _cli("list", "--json", "--socket", str(sock_path))
    assert r.exit_code == 0
    assert json.loads(r.stdout)[0]["name"] == "p1"
    r = _cli("list", "-o", "json", "--socket", str(sock_path))
    assert r.exit_code == 0
    # as tetra prints Tetragon's ListTracingPoliciesResponse: protojson
    assert json.loads(r.stdout) == {"policies": [{
        "id": "1", "name": "p1", "sensors": ["generic_kprobe"], "enabled": True,
        "filter_id": "3", "state": "TP_STATE_ENABLED", "mode": "TP_MODE_ENFORCE",
        "stats": {"action_counters": {"post": "7", "signal": "1"}}, "domain": "grpc"}]}

    r = _cli("disable", "p1", "--socket", str(sock_path))
    assert (r.exit_code, r.stdout) == (0, "tracing policy 'p1' disabled\n")
    assert handler.policies["p1"]["state"] == "disabled"
    r = _cli("enable", "p1", "--socket", str(sock_path))
    assert (r.exit_code, r.stdout) == (0, "tracing policy 'p1' enabled\n")
    assert handler.policies["p1"]["state"] == "enabled"
    r = _cli("enable", "nope", "--socket", str(sock_path))
    assert r.exit_code == 1 and "no policy named 'nope'" in r.stderr

    r = _cli("mode", "p1", "monitor", "--socket", str(sock_path))
    assert r.exit_code == 0, r.output
    assert r.stdout == "policy 'p1' is now in monitor mode\n"
    assert handler.policies["p1"]["mode"] == "monitor"

    r = _cli("delete", "p1", "--socket", str(sock_path))
    assert r.exit_code == 0, r.output
    assert r.stdout == "deleted policy 'p1'\n"
    assert handler.policies == {}

    r = _cli("list", "--socket", str(sock_path))
    assert r.exit_code == 0
    assert r.stdout == ""
    assert "no policies loaded" in r.stderr


def test_cli_add_reports_each_failure(server: ControlServer, sock_path: Path,
                                      tmp_path: Path, handler: FakePolicies) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.format(name="bad").replace("kind: TracingPolicy", "kind: Nope"))
    lsm = tmp_path / "lsm.yaml"
    lsm.write_text("# needs-lsm\n")
    good = tmp_path / "good.yaml"
    good.write_text(POLICY.format(name="good"))
    r = _cli("add", str(bad), str(lsm), str(good), "--socket", str(sock_path))
    assert r.exit_code == 1
    assert f"bpfguard: error: {bad}: 1 problem" in r.stderr
    assert f"bpfguard: error: {lsm}: hook lsm/file_open needs BPF LSM" in r.stderr
    assert "added policy 'good'" in r.stdout
    assert list(handler.policies) == ["good"]


def test_cli_add_a_tetragon_example(server: ControlServer, sock_path: Path) -> None:
    r = _cli("add", str(FIXTURES / "sys_setuid.yaml"), "--socket", str(sock_path))
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("added policy ")


def test_cli_errors_exit_1_with_the_message(server: ControlServer, sock_path: Path) -> None:
    r = _cli("delete", "nope", "--socket", str(sock_path))
    assert r.exit_code == 1
    assert "bpfguard: error: no policy named 'nope'" in r.stderr
    r = _cli("mode", "nope", "enforce", "--socket", str(sock_path))
    assert r.exit_code == 1
    assert "no policy named 'nope'" in r.stderr
    r = _cli("mode", "p", "off", "--socket", str(sock_path))
    assert r.exit_code == 2                          # click's usage error


def test_cli_without_an_agent(sock_path: Path, tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(POLICY.format(name="p"))
    for args in (["add", str(f), str(f)], ["list"], ["delete", "p"], ["mode", "p", "monitor"]):
        r = _cli(*args, "--socket", str(sock_path))
        assert r.exit_code == 1, args
        assert r.stderr == (f"bpfguard: error: no bpfguard agent is listening on {sock_path}; "
                            "start one with `bpfguard run --policy FILE` (or pass --socket)\n")


def test_cli_refused_peer(server: ControlServer, sock_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "peer_uid", lambda conn: 1000)
    r = _cli("list", "--socket", str(sock_path))
    assert r.exit_code == 1
    assert "permission denied: only root" in r.stderr


def test_cli_help_teaches() -> None:
    r = _cli("--help")
    assert r.exit_code == 0
    for text in ("bpfguard policy add", "bpfguard policy list", "bpfguard run --policy",
                 "only root", "/run/bpfguard/control.sock", "check"):
        assert text in r.output, text
    assert "next step" not in r.output
    for cmd in ("add", "list", "delete", "mode"):
        r = _cli(cmd, "--help")
        assert r.exit_code == 0
        assert "bpfguard run --policy" in r.output and "root-only" in r.output
        assert f"bpfguard policy {cmd}" in r.output
        assert "--socket" in r.output


# -- the full agent's requests, and the TCP endpoint ------------------------------


class FakeAgent(FakePolicies):
    """The agent's own requests on top of the policies."""

    def __init__(self) -> None:
        super().__init__()
        self.reloads = 0
        self.changes: list[Any] = []

    def change_firewall(self, change: Any) -> dict[str, Any]:
        self.changes.append(change)
        if change.args.get("cidr") == "198.18.0.1/24":   # as Firewall's own checks say it
            raise BpfguardError("'198.18.0.1/24' has host bits set; did you mean 198.18.0.0/24?")
        return {"iface": change.iface, "netns": change.netns,
                "message": f"agent did {change.action}"}

    def reload(self) -> dict[str, Any]:
        self.reloads += 1
        return {"ok": True, "needs_restart": []}

    def status(self) -> dict[str, Any]:
        return {"healthy": True, "running": "test", "config": "<test>"}

    def list_rules(self) -> list[dict[str, Any]]:
        return [{"name": "r", "priority": "Warning", "alerts": 3, "errors": 0}]


def test_agent_requests_reach_the_agent(sock_path: Path) -> None:
    agent = FakeAgent()
    with ControlServer(sock_path, agent):
        assert request("reload", socket_path=sock_path)["ok"]
        assert agent.reloads == 1
        assert request("status", socket_path=sock_path)["healthy"] is True
        assert request("rules", socket_path=sock_path)[0]["alerts"] == 3


def test_agent_requests_to_a_policy_only_agent_say_so(server: ControlServer,
                                                      sock_path: Path) -> None:
    with pytest.raises(ControlError, match="served by the full agent"):
        request("reload", socket_path=sock_path)


TOKEN = "s3cret-token-of-24-chars"


@pytest.fixture
def tcp_server() -> Iterator[control.TcpControlServer]:
    with socket.socket() as s:  # port 0 is refused by the config parser: find a free one
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = control.TcpControlServer(f"127.0.0.1:{port}", FakeAgent(), token=TOKEN, timeout=2.0)
    srv.start()
    yield srv
    srv.close()


def test_tcp_endpoint_serves_requests_with_the_token(tcp_server: control.TcpControlServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    addr = f"tcp://{tcp_server.listen}"
    assert request("status", socket_path=addr, token=TOKEN)["healthy"] is True
    monkeypatch.setenv("BPFGUARD_CONTROL_TOKEN", TOKEN)
    assert request("rules", socket_path=addr)[0]["name"] == "r"


@pytest.mark.parametrize("token", ["", "wrong-token-of-24-chars!", TOKEN[:-1], None])
def test_tcp_endpoint_refuses_without_the_right_token(tcp_server: control.TcpControlServer,
                                                      token: str | None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BPFGUARD_CONTROL_TOKEN", raising=False)
    params = {} if token is None else {"token": token}
    with pytest.raises(ControlError, match="valid token is required"):
        request("reload", socket_path=f"tcp://{tcp_server.listen}", **params)
    assert tcp_server.handler.reloads == 0  # type: ignore[attr-defined]


def test_tcp_endpoint_needs_a_long_token() -> None:
    with pytest.raises(ControlError, match="at least 16"):
        control.TcpControlServer("127.0.0.1:1", FakeAgent(), token="short")


def test_default_socket_is_the_documented_path() -> None:
    assert control.DEFAULT_SOCKET == "/run/bpfguard/bpfguard.sock"


# -- live firewall changes ---------------------------------------------------------


@pytest.fixture
def agent_server(sock_path: Path) -> Iterator[FakeAgent]:
    agent = FakeAgent()
    with ControlServer(sock_path, agent, timeout=2.0):
        yield agent


def test_firewall_changes_reach_the_agent_checked(agent_server: FakeAgent,
                                                 sock_path: Path) -> None:
    from bpfguard.firewall.changes import Change

    res = request("firewall", socket_path=sock_path, action="rule-add", iface="eth0",
                  netns=None, rule={"src": "198.18.7.0/24", "action": "drop"})
    assert res == {"iface": "eth0", "netns": None, "message": "agent did rule-add"}
    assert agent_server.changes == [Change("rule-add", "eth0", None,
                                           {"rule": {"src": "198.18.7.0/24",
                                                     "action": "drop"}})]


@pytest.mark.parametrize(("params", "message"), [
    ({"action": "frob"}, "unknown firewall action 'frob' (expected one of: load, unload, mode, "
                         "limits, rule-add, rule-del, allow-add, allow-del, ban-add, ban-del)"),
    ({"action": "unload"}, "firewall unload: 'iface' is required"),
    ({"action": "mode", "iface": "eth0", "mode": "off"},
     "firewall mode: 'mode' must be one of audit, enforce, not 'off'"),
    ({"action": "rule-add", "rule": {"dport": "22", "action": "drop"}},
     "firewall rule-add: rule: 'dport' must be a whole number, not '22'"),
])
def test_bad_firewall_requests_are_refused_before_the_agent(
        agent_server: FakeAgent, sock_path: Path, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ControlError) as info:
        request("firewall", socket_path=sock_path, **params)
    assert str(info.value) == message
    assert not isinstance(info.value, NotServed)
    assert agent_server.changes == []
    assert request("status", socket_path=sock_path)["healthy"]   # and it keeps serving


def test_firewall_errors_come_back_with_the_agents_message(agent_server: FakeAgent,
                                                          sock_path: Path) -> None:
    with pytest.raises(ControlError, match=r"^'198.18.0.1/24' has host bits set; did you "
                                           r"mean 198.18.0.0/24\?$"):
        request("firewall", socket_path=sock_path, action="allow-add", cidr="198.18.0.1/24")


def test_requests_a_server_does_not_serve_raise_not_served(server: ControlServer,
                                                          sock_path: Path) -> None:
    with pytest.raises(NotServed, match="'firewall' is served by the full agent"):
        request("firewall", socket_path=sock_path, action="frob")  # before any validation
    with pytest.raises(NotServed, match="unknown op 'frob'"):
        request("frob", socket_path=sock_path)
    assert _raw(sock_path, b'{"op": "reload"}\n')["unsupported"] is True
    assert "unsupported" not in _raw(sock_path, b'{"op": "delete", "name": 1}\n')


class DirectPath:
    """Records what `bpfguard firewall` does on the pinned maps itself."""

    def __init__(self) -> None:
        self.changes: list[Any] = []

    def __call__(self, change: Any) -> tuple[str, None]:
        self.changes.append(change)
        return f"direct {change.action}", None


@pytest.fixture
def direct(monkeypatch: pytest.MonkeyPatch) -> DirectPath:
    from bpfguard.firewall import changes

    fake = DirectPath()
    monkeypatch.setattr(changes, "apply_change", fake)
    return fake


def _fw(*args: str) -> Any:
    return CliRunner().invoke(main, ["firewall", *args])


def test_cli_firewall_changes_go_through_the_agent(agent_server: FakeAgent, sock_path: Path,
                                                  direct: DirectPath, tmp_path: Path) -> None:
    conf = tmp_path / "fw.yaml"
    conf.write_text("mode: audit\n")
    runs = [
        (["load", "eth1", "-c", str(conf), "--netns", "ns1"],
         {"xdp_mode": "native", "audit": False, "force": False, "text": "mode: audit\n",
          "source": str(conf)}),
        (["unload", "eth1"], {}),
        (["mode", "eth1", "audit"], {"mode": "audit"}),
        (["limits", "--pps", "100", "--no-amplification"], {"pps": 100, "amplification": False}),
        (["rule", "add", "--src", "198.18.7.0/24", "--dport", "53", "--proto", "udp",
          "--action", "drop", "-i", "eth1"],
         {"rule": {"src": "198.18.7.0/24", "proto": "udp", "dport": 53, "action": "drop"}}),
        (["rule", "del", "--id", "3"], {"id": 3, "rule": {}}),
        (["allow", "add", "198.18.0.0/28"], {"cidr": "198.18.0.0/28"}),
        (["allow", "del", "198.18.0.0/28"], {"cidr": "198.18.0.0/28"}),
        (["ban", "add", "198.18.0.9"], {"address": "198.18.0.9", "seconds": 600.0}),
        (["ban", "del", "198.18.0.9"], {"address": "198.18.0.9"}),
    ]
    for args, expected in runs:
        r = _fw(*args, "--socket", str(sock_path))
        assert r.exit_code == 0, (args, r.output)
        change = agent_server.changes[-1]
        assert r.stdout == f"agent did {change.action}\n"
        assert change.args == expected, args
    assert [c.action for c in agent_server.changes] == [
        "load", "unload", "mode", "limits", "rule-add", "rule-del", "allow-add", "allow-del",
        "ban-add", "ban-del"]
    assert (agent_server.changes[0].iface, agent_server.changes[0].netns) == ("eth1", "ns1")
    assert agent_server.changes[4].iface == "eth1"
    assert direct.changes == []


def test_cli_firewall_agent_errors_are_not_retried_directly(
        agent_server: FakeAgent, sock_path: Path, direct: DirectPath) -> None:
    r = _fw("allow", "add", "198.18.0.1/24", "--socket", str(sock_path))
    assert r.exit_code == 1
    assert r.stderr == ("bpfguard: error: '198.18.0.1/24' has host bits set; did you mean "
                        "198.18.0.0/24?\n")
    assert direct.changes == []


def test_cli_firewall_without_an_agent_changes_the_pins_itself(sock_path: Path,
                                                              direct: DirectPath) -> None:
    r = _fw("rule", "add", "--src", "198.18.7.0/24", "--action", "drop", "--socket",
            str(sock_path))
    assert r.exit_code == 0, r.output
    assert r.stdout == "direct rule-add\n"
    assert direct.changes[0].args == {"rule": {"src": "198.18.7.0/24", "action": "drop"}}


def test_cli_firewall_with_a_policy_only_agent_changes_the_pins_itself(
        server: ControlServer, sock_path: Path, direct: DirectPath) -> None:
    r = _fw("mode", "eth0", "enforce", "--socket", str(sock_path))
    assert r.exit_code == 0, r.output
    assert r.stdout == "direct mode\n"


def test_cli_firewall_direct_skips_the_agent(agent_server: FakeAgent, sock_path: Path,
                                            direct: DirectPath) -> None:
    r = _fw("ban", "del", "198.18.0.9", "--direct", "--socket", str(sock_path))
    assert r.exit_code == 0, r.output
    assert r.stdout == "direct ban-del\n"
    assert agent_server.changes == []


def test_cli_firewall_never_falls_back_from_a_tcp_endpoint(direct: DirectPath) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]            # nothing listens there once closed
    r = _fw("unload", "eth0", "--socket", f"tcp://127.0.0.1:{port}")
    assert r.exit_code == 1
    assert "no bpfguard agent is listening on tcp://127.0.0.1:" in r.stderr
    assert direct.changes == []


def test_cli_firewall_help_names_the_agent_and_the_fallback() -> None:
    r = _fw("--help")
    assert "control socket" in r.output and "--direct" in r.output
    for args in (["load"], ["unload"], ["mode"], ["limits"], ["rule", "add"], ["rule", "del"],
                 ["allow", "add"], ["allow", "del"], ["ban", "add"], ["ban", "del"]):
        r = _fw(*args, "--help")
        assert "--socket PATH" in r.output and "--direct" in r.output, args
    for args in (["status"], ["stats"], ["rule", "list"], ["ban", "list"], ["events"]):
        assert "--socket" not in _fw(*args, "--help").output, args
