"""Prometheus metrics and /healthz for the agent, over one small HTTP server.

Every value is read when Prometheus scrapes (a custom collector), from the
counters the pieces keep anyway: the kernel's per-CPU drop counters, the
engines' and outputs' own counts, the firewall's maps and the kernel's BPF
run-time statistics. Nothing is added to the event path but one dict
increment per event and per alert.

prometheus-client's own HTTP server answers every path with the metrics, so
this serves /metrics and /healthz itself on ``http.server``.

:class:`AgentMetrics` adapts a running :class:`~bpfguard.agent.daemon.Agent`
to :class:`MetricsSource`: it reads the agent's parts (pipeline, sensors,
policies, firewalls, outputs) and names them as the metrics do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ..errors import ConfigError
from . import SENSORS_LABEL
from .config import parse_listen

if TYPE_CHECKING:
    from ..outputs.channels import ChannelStats
    from .daemon import Agent

__all__ = ["AgentMetrics", "MetricsServer", "MetricsSource", "registry_for"]

log = logging.getLogger("bpfguard.metrics")


class MetricsSource(Protocol):
    """What the collector reads (the agent). Each returns a fresh snapshot."""

    def metric_events(self) -> Mapping[tuple[str, str], int]:
        """Events from the kernel by (sensor set, type: exec, fork, exit, syscall, ...)."""
        ...

    def metric_kernel_drops(self) -> Mapping[tuple[str, str], int]:
        """Kernel ring-buffer losses by (sensor set, reason), cumulative."""
        ...

    def metric_kernel_filtered(self) -> Mapping[tuple[str, str], int]:
        """Syscall events the kernel filtered because no rule could match them (the
        pushdown), by (sensor set, stage: at_entry, at_exit, by_path), cumulative."""
        ...

    def metric_handler_errors(self) -> Mapping[str, int]:
        """Events an engine failed on (counted and skipped), by sensor set."""
        ...

    def metric_rule_matches(self) -> Mapping[tuple[str, str], int]:
        """Alerts by (rule, priority)."""
        ...

    def metric_policy(self) -> Mapping[str, Mapping[str, int]]:
        """Per policy, its kernel counters (posted, actions, would_act, ...)."""
        ...

    def metric_firewall(self) -> Mapping[str, Mapping[str, Any]]:
        """Per interface, the firewall's stats()."""
        ...

    def metric_outputs(self) -> Mapping[str, Any]:
        """Per output, its ChannelStats."""
        ...

    def metric_programs(self) -> Mapping[tuple[str, str, str], Mapping[str, int]]:
        """Per (sensor set, object, program): run_cnt, run_time_ns, recursion_misses."""
        ...

    def bpf_stats_enabled(self) -> bool:
        """Whether the kernel's run count and time are being collected."""
        ...

    def metric_reloads(self) -> Mapping[str, int]:
        """Reloads by result (ok, error)."""
        ...

    def metric_containers(self) -> Mapping[str, int]:
        """The container cache's and the rules' counts: found, lookup_failures,
        not_found, lookups_dropped, runtime_events, pending (now), held_events,
        unenriched_events."""
        ...

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details) for /healthz."""
        ...


_POLICY_COUNTERS = {
    "posted": "TracingPolicy events posted to user space (the kernel's count).",
    "actions": "Events on which a policy took enforcing actions (Sigkill, Signal, "
               "Override, Set).",
    "would_act": "Events on which monitor mode held enforcing actions back.",
    "rate_limited": "Events a policy's rateLimit suppressed.",
    "no_return": "Entries whose return probe never came (the task died first).",
    "signals": "Signals (Sigkill, Signal) a policy sent.",
    "overrides": "Return values a policy's Override replaced.",
    "would_signal": "Signals monitor mode held back.",
    "would_override": "Overrides monitor mode held back.",
    "nopost": "Events a policy's NoPost kept back.",
    "notify_enforcer": "Threads NotifyEnforcer armed a policy's enforcers for.",
    "would_notify_enforcer": "NotifyEnforcer actions monitor mode held back.",
    "sets": "Values a usdt Set action wrote into the traced program.",
    "would_set": "Set actions monitor mode held back.",
    "set_failed": "Set actions whose write the kernel refused (an unmapped, read-only or "
                  "not yet faulted-in address).",
}


def _counter(name: str, doc: str, labels: list[str],
             values: Mapping[Any, float]) -> CounterMetricFamily:
    """A counter family from {label value, or a tuple of them: count}."""
    c = CounterMetricFamily(name, doc, labels=labels)
    for key, v in sorted(values.items()):
        c.add_metric(list(key) if isinstance(key, tuple) else [key], v)
    return c


class _AgentCollector(Collector):
    def __init__(self, src: MetricsSource) -> None:
        self.src = src

    def collect(self) -> Iterator[Metric]:
        s = self.src
        yield _counter("bpfguard_events", "Events read from the kernel, by sensor set and "
                       "type.", ["sensors", "type"], s.metric_events())
        yield _counter("bpfguard_kernel_drops", "Events the kernel could not hand over (ring "
                       "buffer full, and the like), by sensor set and reason; the kernel's "
                       "own per-CPU counters.", ["sensors", "reason"], s.metric_kernel_drops())
        yield _counter("bpfguard_kernel_filtered", "Syscall events the kernel filtered because "
                       "no rule could match them (rules pushdown; not losses), by sensor set "
                       "and where it decided: at_entry (task and arguments), at_exit (the "
                       "result), by_path (the resolved path).", ["sensors", "stage"],
                       s.metric_kernel_filtered())
        yield _counter("bpfguard_handler_errors", "Events an engine failed on, counted and "
                       "skipped (the log has the first of each run).", ["sensors"],
                       s.metric_handler_errors())
        yield _counter("bpfguard_rule_matches", "Falco rule alerts, by rule and priority.",
                       ["rule", "priority"], s.metric_rule_matches())
        pol = s.metric_policy()
        for counter, doc in _POLICY_COUNTERS.items():
            c = CounterMetricFamily(f"bpfguard_policy_{counter}", doc, labels=["policy"])
            for name, counters in sorted(pol.items()):
                if counter in counters:
                    c.add_metric([name], counters[counter])
            yield c
        pk = CounterMetricFamily("bpfguard_firewall_packets", "XDP firewall verdicts, by "
                                 "interface and action/reason.", labels=["interface", "action"])
        by = CounterMetricFamily("bpfguard_firewall_bytes", "XDP firewall bytes, by interface "
                                 "and action/reason.", labels=["interface", "action"])
        rp = CounterMetricFamily("bpfguard_firewall_rule_packets", "Packets each firewall "
                                 "rule matched.", labels=["interface", "rule"])
        for iface, st in sorted(s.metric_firewall().items()):
            for action, v in sorted(st.get("actions", {}).items()):
                pk.add_metric([iface, action], v["packets"])
                by.add_metric([iface, action], v["bytes"])
            for r in st.get("rules", []):
                rp.add_metric([iface, str(r["id"])], r["packets"])
        yield pk
        yield by
        yield rp
        outs = s.metric_outputs()
        depth = GaugeMetricFamily("bpfguard_output_queue_depth", "Alerts waiting in each "
                                  "output's queue.", labels=["output"])
        sent = CounterMetricFamily("bpfguard_output_sent", "Alerts delivered, by output.",
                                   labels=["output"])
        dropped = CounterMetricFamily("bpfguard_output_dropped", "Alerts an output dropped "
                                      "(queue full, or still queued at close).",
                                      labels=["output"])
        failed = CounterMetricFamily("bpfguard_output_failed", "Alerts an output gave up on "
                                     "after its retries.", labels=["output"])
        for name, st in sorted(outs.items()):
            depth.add_metric([name], st.queued)
            sent.add_metric([name], st.sent)
            dropped.add_metric([name], st.dropped)
            failed.add_metric([name], st.failed)
        yield from (depth, sent, dropped, failed)
        labels = ["sensors", "object", "program"]
        runs = CounterMetricFamily("bpfguard_bpf_program_runs", "Times each BPF program ran "
                                   "(kernel BPF statistics).", labels=labels)
        secs = CounterMetricFamily("bpfguard_bpf_program_run_seconds", "Time spent in each "
                                   "BPF program (kernel BPF statistics).", labels=labels)
        miss = CounterMetricFamily("bpfguard_bpf_program_recursion_misses", "Runs the kernel "
                                   "skipped because the program was already running on that "
                                   "CPU.", labels=labels)
        for key, st in sorted(s.metric_programs().items()):
            runs.add_metric(list(key), st["run_cnt"])
            secs.add_metric(list(key), st["run_time_ns"] / 1e9)
            miss.add_metric(list(key), st["recursion_misses"])
        if s.bpf_stats_enabled():   # otherwise the kernel counts nothing: no zeros that lie
            yield from (runs, secs)
        yield miss
        cs = s.metric_containers()
        yield _counter("bpfguard_container_lookups", "Container runtimes asked about a "
                       "container, by result: found, not_found, failed (runtime down, slow or "
                       "refusing), dropped (the lookup queue was full).", ["result"],
                       {"found": cs.get("found", 0), "not_found": cs.get("not_found", 0),
                        "failed": cs.get("lookup_failures", 0),
                        "dropped": cs.get("lookups_dropped", 0)})
        yield _counter("bpfguard_container_runtime_events", "Container start/stop events "
                       "read from the runtimes.", [], {(): cs.get("runtime_events", 0)})
        yield GaugeMetricFamily("bpfguard_container_pending", "Containers a runtime is being "
                                "asked about now.", value=cs.get("pending", 0))
        yield _counter("bpfguard_container_held_events", "Events the rules held until their "
                       "container's metadata arrived (containers.hold_ms).", [],
                       {(): cs.get("held_events", 0)})
        yield _counter("bpfguard_container_unenriched_events", "Events of a container matched "
                       "without its metadata (runtime down, slow, or not knowing it); their "
                       "alerts carry container.metadata.", [],
                       {(): cs.get("unenriched_events", 0)})
        yield _counter("bpfguard_reloads", "Configuration reloads (SIGHUP or `bpfguard "
                       "agent reload`), by result.", ["result"], s.metric_reloads())
        ok, _ = s.health()
        yield GaugeMetricFamily("bpfguard_up", "1 while every part of the agent runs.",
                                value=1 if ok else 0)


# how long a scrape waits for a firewall change under way before it answers
# with the view it has
_SCRAPE_SYNC_S = 2.0


def _event_label(cls: type) -> str:
    """ExecEvent -> "exec", PolicyEvent -> "policy"."""
    return cls.__name__.removesuffix("Event").lower() or cls.__name__


class AgentMetrics:
    """The agent as a :class:`MetricsSource`: every value read at scrape time
    from the counters its parts keep anyway."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def metric_events(self) -> dict[tuple[str, str], int]:
        p = self.agent.pipeline
        if p is None:
            return {}
        return {(SENSORS_LABEL, _event_label(k)): v for k, v in dict(p.by_type).items()}

    def metric_kernel_drops(self) -> dict[tuple[str, str], int]:
        sensors = self.agent.sensors
        if sensors is None:
            return {}
        return {(SENSORS_LABEL, reason): v for reason, v in sensors.drops().items()}

    def metric_kernel_filtered(self) -> dict[tuple[str, str], int]:
        sensors = self.agent.sensors
        if sensors is None:
            return {}
        return {(SENSORS_LABEL, stage): v for stage, v in sensors.pushed_down_by().items()}

    def metric_handler_errors(self) -> dict[str, int]:
        p = self.agent.pipeline
        return {SENSORS_LABEL: p.handler_errors} if p is not None else {}

    def metric_rule_matches(self) -> dict[tuple[str, str], int]:
        return self.agent.rule_matches()

    def metric_policy(self) -> dict[str, dict[str, int]]:
        policies = self.agent.policies
        if policies is None:
            return {}
        return {p["name"]: p["counters"] for p in policies.engine.list()}

    def metric_firewall(self) -> dict[str, dict[str, Any]]:
        return self.agent.firewalls.stats(timeout=_SCRAPE_SYNC_S)

    def metric_outputs(self) -> dict[str, ChannelStats]:
        return self.agent.channels.stats()

    def metric_programs(self) -> dict[tuple[str, str, str], dict[str, int]]:
        """Per (sensor set, object, program); a policy's hook copies count
        under object "policy-copy"."""
        from ..sensors.sensors import SENSOR_OBJECT

        out: dict[tuple[str, str, str], dict[str, int]] = {}
        sensors, policies = self.agent.sensors, self.agent.policies
        if sensors is not None:
            for prog, st in sensors.program_stats().items():
                out[(SENSORS_LABEL, SENSOR_OBJECT, prog)] = st
        if policies is not None:
            for lp in list(policies.engine.policies.values()):
                for obj in list(lp.copies):
                    for cp in obj.programs:
                        if cp.fd >= 0:
                            out[(SENSORS_LABEL, "policy-copy", f"{lp.name}/{cp.name}")] = \
                                cp.stats()
        return out

    def bpf_stats_enabled(self) -> bool:
        return self.agent.bpf_stats_enabled()

    def metric_reloads(self) -> dict[str, int]:
        return self.agent.reloads()

    def metric_containers(self) -> dict[str, int]:
        st = self.agent.containers.stats
        out = {"found": st.found, "lookup_failures": st.failures, "not_found": st.not_found,
               "lookups_dropped": st.dropped, "runtime_events": st.events,
               "pending": self.agent.containers.pending}
        held, unenriched = self.agent.hold_counts()
        out.update(held_events=held, unenriched_events=unenriched)
        return out

    def health(self) -> tuple[bool, dict[str, Any]]:
        return self.agent.health()


def registry_for(src: MetricsSource) -> CollectorRegistry:
    """A registry with the agent's metrics and its process's CPU and RSS
    (process_cpu_seconds_total, process_resident_memory_bytes, ...)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_AgentCollector(src))
    ProcessCollector(registry=reg)
    return reg


class MetricsServer:
    """Serves ``/metrics`` and ``/healthz`` on `listen` (``HOST:PORT``) in a thread."""

    def __init__(self, listen: str, registry: CollectorRegistry,
                 health: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        try:
            host, port = parse_listen(listen)
        except ValueError as exc:
            raise ConfigError(f"metrics.listen {listen!r}: {exc}") from None
        reg = registry

        class Handler(BaseHTTPRequestHandler):
            timeout = 10   # a client that stalls loses its connection, not a thread forever

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, ctype, code = generate_latest(reg), CONTENT_TYPE_LATEST, 200
                elif path == "/healthz":
                    ok, details = health()
                    status = ("unhealthy" if not ok else
                              "degraded" if details.get("degraded") else "ok")
                    body = json.dumps({"status": status, **details}).encode()
                    ctype, code = "application/json", 200 if ok else 503
                else:
                    body, ctype, code = b"see /metrics and /healthz\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("metrics: " + format, *args)

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        try:
            self._server = Server((host, port), Handler)
        except OSError as exc:
            raise ConfigError(f"metrics.listen {listen}: cannot listen: {exc.strerror}") \
                from None
        self._server.daemon_threads = True
        self.address = self._server.server_address
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="bpfguard-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._thread.is_alive():
                self._server.shutdown()
        self._server.server_close()
