"""The agent's metrics as Prometheus sees them, /healthz, and the TCP token file."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bpfguard.agent.control import read_token
from bpfguard.agent.metrics import MetricsServer, registry_for
from bpfguard.errors import ConfigError
from bpfguard.outputs.channels import ChannelStats


class Source:
    """A MetricsSource with fixed numbers."""

    def __init__(self) -> None:
        self.stats = True
        self.healthy = True
        self.degraded: list[str] = []

    def metric_events(self) -> Mapping[tuple[str, str], int]:
        return {("detection", "syscall"): 10, ("policy", "exec"): 2}

    def metric_kernel_drops(self) -> Mapping[tuple[str, str], int]:
        return {("detection", "ringbuf_full"): 7}

    def metric_kernel_filtered(self) -> Mapping[tuple[str, str], int]:
        return {("detection", "by_path"): 9}

    def metric_handler_errors(self) -> Mapping[str, int]:
        return {"detection": 0}

    def metric_rule_matches(self) -> Mapping[tuple[str, str], int]:
        return {("Read sensitive file untrusted", "Warning"): 3}

    def metric_policy(self) -> Mapping[str, Mapping[str, int]]:
        return {"kill": {"posted": 4, "actions": 1, "would_act": 0, "rate_limited": 0,
                         "no_return": 0}}

    def metric_firewall(self) -> Mapping[str, Mapping[str, Any]]:
        return {"eth0": {"actions": {"drop_rule": {"packets": 5, "bytes": 300}},
                         "rules": [{"id": 1, "packets": 5}]}}

    def metric_outputs(self) -> Mapping[str, Any]:
        return {"stdout": ChannelStats(sent=3, queued=2, dropped=1)}

    def metric_programs(self) -> Mapping[tuple[str, str, str], Mapping[str, int]]:
        return {("detection", "syscalls", "bg_sys_enter"):
                {"run_cnt": 100, "run_time_ns": 5_000_000_000, "recursion_misses": 0}}

    def bpf_stats_enabled(self) -> bool:
        return self.stats

    def metric_reloads(self) -> Mapping[str, int]:
        return {"ok": 1, "error": 2}

    def metric_containers(self) -> Mapping[str, int]:
        return {"found": 4, "lookup_failures": 1, "pending": 2, "unenriched_events": 3}

    def health(self) -> tuple[bool, dict[str, Any]]:
        details: dict[str, Any] = {"degraded": self.degraded} if self.degraded else {}
        return self.healthy, ({**details} if self.healthy else
                              {"problems": ["the detection reader stopped"]})


def _samples(src: Source) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(registry_for(src)).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_every_required_metric_is_exposed_with_its_labels() -> None:
    got = _samples(Source())

    def v(name: str, **labels: str) -> float:
        return got[(name, frozenset(labels.items()))]

    assert v("bpfguard_events_total", sensors="detection", type="syscall") == 10
    assert v("bpfguard_kernel_drops_total", sensors="detection", reason="ringbuf_full") == 7
    assert v("bpfguard_kernel_filtered_total", sensors="detection", stage="by_path") == 9
    assert v("bpfguard_rule_matches_total", rule="Read sensitive file untrusted",
             priority="Warning") == 3
    assert v("bpfguard_policy_actions_total", policy="kill") == 1
    assert v("bpfguard_policy_posted_total", policy="kill") == 4
    assert v("bpfguard_firewall_packets_total", interface="eth0", action="drop_rule") == 5
    assert v("bpfguard_firewall_rule_packets_total", interface="eth0", rule="1") == 5
    assert v("bpfguard_output_queue_depth", output="stdout") == 2
    assert v("bpfguard_output_dropped_total", output="stdout") == 1
    assert v("bpfguard_bpf_program_runs_total", sensors="detection", object="syscalls",
             program="bg_sys_enter") == 100
    assert v("bpfguard_bpf_program_run_seconds_total", sensors="detection",
             object="syscalls", program="bg_sys_enter") == 5.0
    assert v("bpfguard_reloads_total", result="error") == 2
    assert v("bpfguard_container_lookups_total", result="found") == 4
    assert v("bpfguard_container_lookups_total", result="failed") == 1
    assert v("bpfguard_container_pending") == 2
    assert v("bpfguard_container_unenriched_events_total") == 3
    assert v("bpfguard_up") == 1
    assert any(name == "process_resident_memory_bytes" for name, _ in got)


def test_without_bpf_stats_run_counts_are_left_out_not_zero() -> None:
    src = Source()
    src.stats = False
    names = {name for name, _ in _samples(src)}
    assert "bpfguard_bpf_program_runs_total" not in names
    assert "bpfguard_bpf_program_recursion_misses_total" in names


@pytest.fixture
def server() -> Iterator[tuple[MetricsServer, Source]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = Source()
    srv = MetricsServer(f"127.0.0.1:{port}", registry_for(src), src.health)
    srv.start()
    yield srv, src
    srv.close()


def _get(srv: MetricsServer, path: str) -> tuple[int, bytes]:
    host, port = srv.address[:2]
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_healthz_and_metrics_over_http(server: tuple[MetricsServer, Source]) -> None:
    srv, src = server
    code, body = _get(srv, "/healthz")
    assert code == 200 and json.loads(body)["status"] == "ok"
    code, body = _get(srv, "/metrics")
    assert code == 200 and b"bpfguard_up 1.0" in body
    src.degraded = ["output syslog is failing"]  # up and enforcing: 200, but said
    code, body = _get(srv, "/healthz")
    assert code == 200 and json.loads(body)["status"] == "degraded"
    src.healthy = False
    code, body = _get(srv, "/healthz")
    assert code == 503 and json.loads(body)["problems"] == ["the detection reader stopped"]
    assert _get(srv, "/other")[0] == 404


def test_a_taken_port_is_a_config_error(server: tuple[MetricsServer, Source]) -> None:
    srv, src = server
    host, port = srv.address[:2]
    with pytest.raises(ConfigError, match="cannot listen"):
        MetricsServer(f"{host}:{port}", registry_for(src), src.health)


@pytest.mark.skipif(os.geteuid() != 0, reason="the token file must belong to root")
def test_the_token_file_must_be_roots_and_private(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("0123456789abcdef-long-enough\n")
    f.chmod(0o600)
    assert read_token(str(f)) == "0123456789abcdef-long-enough"
    f.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_token(str(f))
    f.chmod(0o600)
    f.write_text("short\n")
    with pytest.raises(ConfigError, match="at least 16"):
        read_token(str(f))
    with pytest.raises(ConfigError, match="No such file"):
        read_token(str(tmp_path / "none"))
