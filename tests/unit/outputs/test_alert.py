"""The typed Alert: Falco's JSON exactly as before, one RFC 3339 formatter, and
no loss in an output's queue going unreported."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bpfguard.outputs.alert import DROP_RULE, Alert, drop_alert, policy_alert, seccomp_alert
from bpfguard.outputs.channels import (
    OUTPUT_DROP_REASON,
    Channels,
    FileChannel,
    Format,
    StdoutChannel,
)
from bpfguard.outputs.ratelimit import Limit, RateLimiter
from bpfguard.outputs.tetragon import policy_event_json
from bpfguard.rules.engine import Engine, alert
from bpfguard.rules.loader import load_rules_or_raise
from bpfguard.timefmt import parse_rfc3339, rfc3339

from ..test_rules_engine import OPEN
from .test_tetragon import family, kprobe

NS = 1714558805_408091526
KEYS = ["hostname", "output", "output_fields", "priority", "rule", "source", "tags", "time"]


def make(**kw: Any) -> Alert:
    base: dict[str, Any] = dict(time_ns=NS, rule="r", priority="Warning", source="syscall",
                                hostname="h", output="m", output_fields={"proc.name": "cat"},
                                tags=("b", "a"))
    base.update(kw)
    return Alert(**base)


# -- the formatter ----------------------------------------------------------------


@pytest.mark.parametrize(("ns", "digits", "text"), [
    (NS, 9, "2024-05-01T10:20:05.408091526Z"),
    (NS, 6, "2024-05-01T10:20:05.408091Z"),       # cut, never rounded
    (NS + 999, 6, "2024-05-01T10:20:05.408092Z"),
    (NS, 3, "2024-05-01T10:20:05.408Z"),
    (NS, 0, "2024-05-01T10:20:05Z"),
    (1, 9, "1970-01-01T00:00:00.000000001Z"),
    (NS - 408091526, None, "2024-05-01T10:20:05Z"),
    (NS - 91526, None, "2024-05-01T10:20:05.408Z"),
    (NS - 526, None, "2024-05-01T10:20:05.408091Z"),
    (NS, None, "2024-05-01T10:20:05.408091526Z"),
])
def test_rfc3339_digits(ns: int, digits: int | None, text: str) -> None:
    assert rfc3339(ns, digits=digits) == text


def test_rfc3339_cache_follows_the_second() -> None:
    # a burst shares its second's text; the next second must not reuse it
    assert [rfc3339(NS + i * 400_000_000) for i in range(4)] == [
        "2024-05-01T10:20:05.408091526Z", "2024-05-01T10:20:05.808091526Z",
        "2024-05-01T10:20:06.208091526Z", "2024-05-01T10:20:06.608091526Z"]
    secs, frac = parse_rfc3339(rfc3339(NS))
    assert secs * 1_000_000_000 + int(frac) == NS
    with pytest.raises(ValueError):
        rfc3339(NS, digits=10)


# -- the alert's JSON, as each builder wrote it before ----------------------------


def test_rule_alert_is_falcos_json(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text("- rule: Shadow read\n  desc: d\n  condition: evt.type = openat and "
                     "fd.name = /etc/shadow\n  output: file=%fd.name by %proc.name\n"
                     "  priority: WARNING\n  tags: [zeta, alpha]\n")
    engine = Engine(load_rules_or_raise([str(rules)]).rules)
    [c] = engine.match(OPEN)
    a = alert(c, OPEN)
    assert isinstance(a, Alert) and engine.process(OPEN) == [a]
    d = a.to_json_dict()
    ns = OPEN.event.time_ns
    assert list(d) == KEYS
    # Falco 0.41's suggested output: the container and pod, on the host too
    suggested = {"container.id": "host", "container.name": "host",
                 "container.image.repository": None, "container.image.tag": None,
                 "k8s.pod.name": None, "k8s.ns.name": None}
    assert d == {"hostname": OPEN.hostname,
                 "output": "file=/etc/shadow by python3 container_id=host container_name=host "
                           "container_image_repository=<NA> container_image_tag=<NA> "
                           "k8s_pod_name=<NA> k8s_ns_name=<NA>",
                 "output_fields": {"evt.time": ns, "fd.name": "/etc/shadow",
                                   "proc.name": "python3", **suggested},
                 "priority": "Warning", "rule": "Shadow read", "source": "syscall",
                 "tags": ["alpha", "zeta"], "time": rfc3339(ns)}
    # the Mapping view is the same JSON
    assert dict(a) == d and a == d and a["time"] == d["time"] and a.get("type") is None


def test_policy_alert_carries_the_tetragon_event() -> None:
    ev = kprobe()
    event = policy_event_json(ev, family(), node="h")
    a = policy_alert(ev, event, "h")
    d = a.to_json_dict()
    assert list(d) == [*KEYS, "tetragon"] and d["tetragon"] is event
    assert (d["rule"], d["source"], d["priority"], d["tags"]) == (
        "files", "tetragon", "Notice", ["tracing_policy"])
    assert d["time"] == rfc3339(ev.time_ns)
    assert d["output"] == ("TracingPolicy files: __x64_sys_openat(-100 /etc/shadow) by "
                           "/bin/cat (pid 300, uid 0): posted")
    assert list(d["output_fields"]) == ["evt.time", "policy.name", "policy.action",
                                        "policy.function", "proc.pid", "proc.name",
                                        "proc.exepath", "user.uid"]
    # Falco's JSON line: keys sorted, the Tetragon event inside
    assert json.loads(Format(json_output=True).line(a))["tetragon"] == \
        json.loads(json.dumps(event))


def test_seccomp_and_drop_alerts() -> None:
    rec = SimpleNamespace(action="SCMP_ACT_ERRNO", syscall="ptrace", exe="/usr/bin/gdb",
                          pid=7, comm="gdb", arch="x86_64")
    d = seccomp_alert(rec, "h", container=("host", None)).to_json_dict()
    assert list(d) == KEYS and d["priority"] == "Warning" and d["tags"] == ["seccomp"]
    assert d["output"] == "Seccomp SCMP_ACT_ERRNO on ptrace by /usr/bin/gdb (pid 7, comm gdb, " \
        "x86_64) container_id=host container_name=host container_image_repository=<NA> " \
        "container_image_tag=<NA> k8s_pod_name=<NA> k8s_ns_name=<NA>"
    # in a container: named as the rules' alerts name it
    from bpfguard.containers import Container, Pod

    info = Container(id="ab" * 32, runtime="podman", name="web", image="localhost/ns/img:2",
                     pod=Pod(name="p", namespace="prod"))
    f = seccomp_alert(rec, "h", container=("ab" * 32, info)).output_fields
    assert (f["container.id"], f["container.name"], f["container.image.repository"],
            f["container.image.tag"], f["k8s.pod.name"], f["k8s.ns.name"]) == \
        ("ab" * 6, "web", "localhost/ns/img", "2", "p", "prod")
    # the process was gone before it could be placed: absent, not "host"
    assert seccomp_alert(rec, "h").output_fields["container.id"] is None
    drop = drop_alert({"type": "loss", "reason": "ringbuf_full", "count": 5, "time_ns": NS},
                      hostname="h")
    assert drop == {"hostname": "h",
                    "output": f"{DROP_RULE}. 5 system calls dropped in last second.",
                    "output_fields": {"n_drops": "5", "ebpf_enabled": "1",
                                      "n_drops_ringbuf_full": "5"},
                    "priority": "Debug", "rule": DROP_RULE, "source": "internal",
                    "time": "2024-05-01T10:20:05.408091526Z"}
    assert "tags" not in drop and len(drop) == 7


def test_alert_and_its_dict_format_alike() -> None:
    a = make()
    for fmt in (Format(), Format(json_output=True),
                Format(json_output=True, json_include_output_property=False,
                       json_include_tags_property=False)):
        assert fmt.line(a) == fmt.line(a.to_json_dict())
    internal = drop_alert({"type": "drop", "count": 2, "time_ns": NS}, hostname="h")
    assert Format().line(internal) == Format().line(internal.to_json_dict())


def test_rate_limit_summary_of_alerts_is_an_alert() -> None:
    t = [0.0]
    lim = RateLimiter(limit=Limit(rate=1.0, burst=1), clock=lambda: t[0])
    assert lim.admit(make()) and not lim.admit(make(output="m2"))
    t[0] += 1.0
    [summary] = lim.poll()
    assert isinstance(summary, Alert)
    assert summary.output_fields["bpfguard.suppressed"] == 1 and summary.rule == "r"


# -- no silent loss in the outputs ------------------------------------------------


class _GatedStream(io.StringIO):
    """A stdout that blocks its first write until released: the queue fills."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.started = threading.Event()

    def write(self, s: str) -> int:
        self.started.set()
        self.gate.wait(10)
        return super().write(s)


class _GatedFile(FileChannel):
    """A file output whose first write waits until released."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.gate = threading.Event()
        self.started = threading.Event()

    def _deliver(self, item: bytes) -> None:
        self.started.set()
        self.gate.wait(10)
        super()._deliver(item)


def _count(lines: list[str]) -> tuple[int, int, int]:
    """(alerts, output-drop alerts, alerts those report dropped)."""
    alerts = notices = dropped = 0
    for line in lines:
        obj = json.loads(line)
        if obj["rule"] != DROP_RULE:
            alerts += 1
            continue
        fields = obj["output_fields"]
        if f"n_drops_{OUTPUT_DROP_REASON}" in fields:
            notices += 1
            dropped += int(fields["n_drops"])
    return alerts, notices, dropped


@pytest.mark.parametrize("kind", ["stdout", "file"])
def test_what_a_full_queue_drops_is_reported_in_the_stream(kind: str, tmp_path: Path) -> None:
    sent = 200
    stream = _GatedStream()
    fmt = Format(json_output=True)
    ch: Any = StdoutChannel(fmt, stream=stream, capacity=5) if kind == "stdout" else \
        _GatedFile(tmp_path / "alerts.json", fmt, keep_alive=True, capacity=5)
    gated = stream if kind == "stdout" else ch
    out = Channels([ch], hostname="h", tick_interval=None)
    try:
        out.send(make(output="m0"))
        assert gated.started.wait(5)   # the worker is stuck on m0: the queue fills
        for i in range(1, sent // 2):
            out.send(make(output=f"m{i}"))
        out.tick()                     # a report while the storm goes on
        for i in range(sent // 2, sent):
            out.send(make(output=f"m{i}"))
    finally:
        gated.gate.set()
        out.close()                    # the last report, then everything is written
    text = stream.getvalue() if kind == "stdout" else (tmp_path / "alerts.json").read_text()
    alerts, notices, dropped = _count(text.splitlines())
    st = ch.stats()
    assert dropped == st.dropped > 0 and notices >= 1
    assert alerts == st.sent - notices
    assert alerts + dropped == sent


def test_report_drops_names_the_channel_and_reports_once() -> None:
    buf = io.StringIO()
    full = StdoutChannel(Format(json_output=True), stream=_GatedStream(), capacity=1,
                         name="slow")
    ok = StdoutChannel(Format(json_output=True), stream=buf, name="fast")
    out = Channels([full, ok], hostname="h", tick_interval=None)
    try:
        for i in range(4):
            out.send(make(output=f"m{i}"))
        deadline = time.monotonic() + 5
        while full.stats().dropped < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        n = full.stats().dropped
        assert out.report_drops() == n and out.report_drops() == 0
        assert ok.flush(5)
    finally:
        full._stream.gate.set()  # type: ignore[attr-defined]
        out.close()
    notices = [json.loads(line) for line in buf.getvalue().splitlines()
               if DROP_RULE in line]
    assert [x["output_fields"]["bpfguard.output"] for x in notices] == ["slow"]
    assert notices[0]["output_fields"]["n_drops"] == str(n)
    assert notices[0]["output"] == f"{DROP_RULE}. {n} alerts dropped by output slow in last " \
        "second."
