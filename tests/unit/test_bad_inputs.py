"""No bad input ends in a traceback (issue 22, defect 7): every entry point
that reads what a user hands bpfguard (rules, policies, the agent's config,
firewall configs, seccomp profiles, the OCI hook's state, control-socket
requests) answers with its own error, naming where, for arbitrary bytes,
YAML-ish noise and nesting far past what a parser's recursion survives."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfguard.agent import control
from bpfguard.agent.config import load_config
from bpfguard.agent.control import ControlServer
from bpfguard.errors import BpfguardError
from bpfguard.firewall.config import load_firewall_config
from bpfguard.policy import load_policy
from bpfguard.rules.loader import load_rules
from bpfguard.seccomp.hook import OciState
from bpfguard.seccomp.profile import load_profile

_YAMLISH = st.text(alphabet="[]{}:-,\n '\"&*!%|>#?abc01\t\\", max_size=400)


@st.composite
def _nested(draw: st.DrawFn) -> bytes:
    """Brackets or block sequences far deeper than any parser recursion."""
    depth = draw(st.integers(min_value=100, max_value=30_000))
    kind = draw(st.sampled_from(["flow", "block", "map", "json"]))
    if kind == "flow":
        return ("[" * depth + "x" + "]" * depth + "\n").encode()
    if kind == "block":
        return ("- " * depth + "x\n").encode()
    if kind == "map":
        return ("{a: " * depth + "1" + "}" * depth + "\n").encode()
    return ('{"a":' * depth + "1" + "}" * depth).encode()


@st.composite
def _chained(draw: st.DrawFn) -> bytes:
    """What a loader takes but its consumers may recurse on or expand: YAML
    aliases (cycles, chains that double), long macro and list chains, an
    unclosed JSON string full of escapes."""
    n = draw(st.integers(min_value=2, max_value=3000))
    kind = draw(st.sampled_from(["cycle", "laughs", "macros", "lists", "string"]))
    if kind == "cycle":
        return b"- list: l\n  items: &a [x, *a]\n"
    if kind == "laughs":
        levels = min(n, 40)
        lines = ["- list: l0", "  items: &a0 [x, x]"]
        lines += [f"- list: l{i}\n  items: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, levels)]
        return ("\n".join(lines) + "\n").encode()
    if kind in ("macros", "lists"):
        k = kind[:-1]
        body = "condition" if k == "macro" else "items"
        first = "evt.type = open" if k == "macro" else "[x]"
        lines = [f"- {k}: m0\n  {body}: {first}"]
        lines += [f"- {k}: m{i}\n  {body}: {'m' + str(i - 1) if k == 'macro' else [f'm{i - 1}']}"
                  for i in range(1, n)]
        return ("\n".join(lines) + "\n").encode()
    return b'{"op": "' + b'\\"' * n


INPUTS = st.one_of(st.binary(max_size=600), _YAMLISH.map(str.encode), _nested(), _chained(),
                   st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
EXAMPLES = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _rules(path: Path) -> None:
    load_rules([path])  # never raises: the problems are in its result


ENTRY_POINTS: dict[str, Callable[[Path], object]] = {
    "rules": _rules,
    "policy": load_policy,
    "config": load_config,
    "firewall": load_firewall_config,
    "seccomp profile": load_profile,
    "OCI state": lambda p: OciState.parse(p.read_bytes().decode("utf-8", "replace")),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_files_of_any_bytes_are_refused_with_an_error_never_a_traceback(entry: str) -> None:
    read = ENTRY_POINTS[entry]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "input.yaml"

        @EXAMPLES
        @given(INPUTS)
        def check(data: bytes) -> None:
            path.write_bytes(data)
            try:
                read(path)
            except BpfguardError as exc:
                assert str(exc)  # a message, saying what was wrong
        check()


def test_control_requests_of_any_bytes_get_an_answer(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    class NoPolicies:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"a bad request reached the handler: {name}")

    # as root, whatever runs the test: a refused peer would never reach the parser
    monkeypatch.setattr(control, "peer_uid", lambda conn: 0)
    sock_path = Path(tempfile.mkdtemp(prefix="bpfg")) / "c.sock"
    with ControlServer(sock_path, NoPolicies(), timeout=2.0, max_request=1 << 20):
        lock = threading.Lock()

        @EXAMPLES
        @given(INPUTS)
        def check(data: bytes) -> None:
            line = data.replace(b"\n", b" ") + b"\n"
            with lock, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.settimeout(10)
                c.connect(str(sock_path))
                c.sendall(line)
                c.shutdown(socket.SHUT_WR)
                answer = b""
                while chunk := c.recv(65536):
                    answer += chunk
            if not line.strip():
                return  # an empty line is no request, and gets no answer
            reply = json.loads(answer)
            assert reply["ok"] is False and reply["error"]
        check()
