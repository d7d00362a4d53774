"""The alert: one typed value in Falco's JSON alert shape, built in one place per source.

Every alert bpfguard raises, whatever raised it, is an :class:`Alert`: a
Falco rule's (:func:`bpfguard.rules.engine.alert`), a TracingPolicy event's
(:func:`policy_alert`), a syscall seccomp logged (:func:`seccomp_alert`) and
the report of a loss, Falco's ``Falco internal: syscall event drop``
(:func:`drop_alert`). The output channels take it as it is; its time stays
nanoseconds until a channel writes it (:func:`~bpfguard.timefmt.rfc3339`,
the one formatter)::

    a = Alert(time_ns=time.time_ns(), rule="My rule", priority="Warning",
              source="syscall", hostname="host1", output="something happened",
              output_fields={"proc.name": "cat"}, tags=("filesystem",))
    a.to_json_dict()   # {"hostname": ..., "output": ..., ..., "time": "2024-...Z"}
    a["rule"]          # the same JSON, read as a Mapping (for code that reads dicts)

``to_json_dict()`` is Falco's JSON alert, keys in the order bpfguard always
wrote them: ``hostname``, ``output``, ``output_fields``, ``priority``,
``rule``, ``source``, ``tags`` (absent when :attr:`Alert.tags` is None, as in
Falco's internal drop alert), ``time``, then the :attr:`Alert.extra` keys
(a policy alert's ``tetragon``). Channels write the keys sorted, as Falco does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..rules.fields import SUGGESTED_FIELDS
from ..timefmt import rfc3339

if TYPE_CHECKING:
    from ..containers import Container
    from ..policy.events import PolicyEvent

__all__ = ["DROP_RULE", "Alert", "drop_alert", "merge_drop_alerts", "policy_alert", "rfc3339",
           "seccomp_alert"]

#: The rule of Falco's event-drop alert (``syscall_event_drops.actions: [alert]``).
DROP_RULE = "Falco internal: syscall event drop"

_BASE_KEYS = ("hostname", "output", "output_fields", "priority", "rule", "source")


@dataclass(frozen=True, slots=True, eq=False)
class Alert(Mapping[str, Any]):
    """One alert, with Falco's JSON alert's fields typed.

    Attributes:
        time_ns: when it happened, wall-clock ns since the epoch (``time``).
        rule: the rule (or policy) name.
        priority: Falco's priority name (``Warning``, ``Critical``, ...).
        source: ``syscall`` (Falco rules), ``tetragon`` (policies),
            ``seccomp``, ``internal`` (drop alerts).
        hostname: the host it happened on.
        output: the message, without Falco's ``time: Priority`` prefix (the
            channels put it there).
        output_fields: the values of the output's fields, JSON-ready.
        tags: the rule's tags; None: no ``tags`` key at all.
        extra: more top-level keys, after ``time`` (``{"tetragon": event}``).

    It is also a read-only Mapping of its JSON form (``alert["time"]`` is
    the RFC 3339 text), equal to a dict with the same JSON.
    """

    time_ns: int
    rule: str
    priority: str
    source: str
    hostname: str
    output: str
    output_fields: Mapping[str, Any]
    tags: tuple[str, ...] | None = ()
    extra: Mapping[str, Any] | None = None

    @property
    def time(self) -> str:
        """``time``: RFC 3339 in UTC, nanoseconds."""
        return rfc3339(self.time_ns)

    def to_json_dict(self) -> dict[str, Any]:
        """Falco's JSON alert as a dict (see the module's notes for the keys)."""
        d: dict[str, Any] = {
            "hostname": self.hostname,
            "output": self.output,
            "output_fields": self.output_fields,
            "priority": self.priority,
            "rule": self.rule,
            "source": self.source,
        }
        if self.tags is not None:
            d["tags"] = list(self.tags)
        d["time"] = rfc3339(self.time_ns)
        if self.extra:
            d.update(self.extra)
        return d

    # -- the Mapping view -----------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        if key == "time":
            return rfc3339(self.time_ns)
        if key == "tags":
            if self.tags is None:
                raise KeyError(key)
            return list(self.tags)
        if key in _BASE_KEYS:
            return getattr(self, key)
        if self.extra is not None and key in self.extra:
            return self.extra[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from _BASE_KEYS
        if self.tags is not None:
            yield "tags"
        yield "time"
        if self.extra:
            yield from self.extra

    def __len__(self) -> int:
        return len(_BASE_KEYS) + (self.tags is not None) + 1 + len(self.extra or ())

    def __repr__(self) -> str:
        return (f"Alert(time_ns={self.time_ns}, rule={self.rule!r}, "
                f"priority={self.priority!r}, source={self.source!r}, output={self.output!r})")


def drop_alert(record: Mapping[str, Any], *, hostname: str) -> Alert:
    """Falco's event-drop alert for a bpfguard drop notice.

    `record` is a loss record (``{"type": "loss" or "drop", "count", "reason",
    "time_ns", ...}``). Falco's ``syscall_event_drops`` "alert" action emits
    an internal message: rule :data:`DROP_RULE`, priority ``Debug`` (Falco
    before 0.33 said ``Critical``), source ``internal``, no tags, string-valued
    ``output_fields`` (``n_drops`` and one ``n_drops_<cause>``). A record
    with an ``output`` (a channel that dropped alerts from its queue) says
    so: the message counts alerts, and ``bpfguard.output`` names the channel.
    """
    if record.get("type") not in ("drop", "loss"):
        raise ValueError(f"not a drop notice: {record!r}")
    n = int(record["count"])
    fields = {"n_drops": str(n), "ebpf_enabled": "1"}
    if record.get("reason"):
        fields[f"n_drops_{record['reason']}"] = str(n)
    channel = record.get("output")
    if channel:
        fields["bpfguard.output"] = str(channel)
        message = f"{DROP_RULE}. {n} alerts dropped by output {channel} in last second."
    else:
        message = f"{DROP_RULE}. {n} system calls dropped in last second."
    return Alert(time_ns=int(record.get("time_ns") or time.time_ns()), rule=DROP_RULE,
                 priority="Debug", source="internal", hostname=hostname, output=message,
                 output_fields=fields, tags=None)


def merge_drop_alerts(first: Alert, then: Alert) -> Alert:
    """One drop alert for two of the same kind (the same output, or both the
    kernel's): the counts added (``n_drops`` and each ``n_drops_<cause>``),
    the later time. For a notice an output could not queue: it is held and
    merged, never dropped, so every counted loss reaches the stream."""
    fields = {k: str(v) for k, v in first.output_fields.items()}
    for k, v in then.output_fields.items():
        fields[k] = str(int(fields.get(k, 0)) + int(v)) if k.startswith("n_drops") else str(v)
    n = int(fields["n_drops"])
    channel = fields.get("bpfguard.output")
    what = f"alerts dropped by output {channel}" if channel else "system calls dropped"
    return Alert(time_ns=then.time_ns, rule=DROP_RULE, priority="Debug",
                 source="internal", hostname=then.hostname,
                 output=f"{DROP_RULE}. {n} {what} (reported late: this output's queue was "
                        "full).",
                 output_fields=fields, tags=None)


# -- policies -------------------------------------------------------------------

_PRIORITY_DONE = "Critical"     # an enforcing action was taken
_PRIORITY_WOULD = "Warning"     # monitor mode held one back
_PRIORITY_POST = "Notice"


def policy_alert(ev: PolicyEvent, event: dict[str, Any], hostname: str) -> Alert:
    """A policy event as an alert in Falco's shape, the Tetragon event inside
    (``tetragon``, from :func:`bpfguard.outputs.tetragon.policy_event_json`)."""
    kind = next(iter(k for k in event if k.startswith("process_")), "process_kprobe")
    body = event.get(kind, {})
    proc = body.get("process", {})
    what = ev.function_name or ev.symbol or f"{ev.subsys}/{ev.event}"
    args = " ".join(_short_arg(a) for a in body.get("args", []))
    if any(e.done for e in ev.enforcement):
        prio, did = _PRIORITY_DONE, ", ".join(f"{e.action} done"
                                              + ("" if e.before_operation else
                                                 " (after the operation)")
                                              for e in ev.enforcement if e.done)
    elif ev.enforcement:
        prio, did = _PRIORITY_WOULD, ", ".join(f"{e.action} not done ({e.mode} mode)"
                                               for e in ev.enforcement)
    else:
        prio, did = _PRIORITY_POST, "posted"
    output = (f"TracingPolicy {ev.policy_name}: {what}({args}) by {proc.get('binary', '?')} "
              f"(pid {ev.pid}, uid {ev.uid}): {did}")
    return Alert(
        time_ns=ev.time_ns, rule=ev.policy_name, priority=prio, source="tetragon",
        hostname=hostname, output=output,
        output_fields={"evt.time": ev.time_ns, "policy.name": ev.policy_name,
                       "policy.action": ev.action, "policy.function": what,
                       "proc.pid": ev.pid, "proc.name": ev.comm,
                       "proc.exepath": proc.get("binary"), "user.uid": ev.uid},
        tags=("tracing_policy", *ev.tags), extra={"tetragon": event})


def _short_arg(a: Mapping[str, Any]) -> str:
    for k, v in a.items():
        if k != "label":
            text = v.get("path", v) if isinstance(v, dict) else v
            return str(text)[:120]
    return "?"


# -- seccomp --------------------------------------------------------------------

_SECCOMP_PRIORITY = {"SCMP_ACT_LOG": "Notice", "SCMP_ACT_ERRNO": "Warning",
                     "SCMP_ACT_TRAP": "Warning", "SCMP_ACT_KILL_THREAD": "Critical",
                     "SCMP_ACT_KILL_PROCESS": "Critical"}


def seccomp_alert(rec: Any, hostname: str, *,
                  container: tuple[str, Container | None] | None = None) -> Alert:
    """A syscall seccomp logged (a ``bpfguard.seccomp.audit`` record), as an alert.

    `container` is (full id, what its runtime said) of the container the
    process runs in, ("host", None) on the host, None when that could not be
    found out (the process was gone): then the container fields are absent.
    Like the rules' alerts, it names the container and pod in the output.
    """
    ns = time.time_ns()
    fields: dict[str, Any] = {"evt.time": ns, "proc.pid": rec.pid, "proc.name": rec.comm,
                              "proc.exepath": rec.exe, "syscall.type": rec.syscall,
                              "seccomp.action": rec.action, "seccomp.arch": rec.arch}
    cid, info = container if container is not None else (None, None)
    host = cid == "host"
    pod = info.pod if info is not None else None
    fields.update({
        "container.id": cid if host or cid is None else cid[:12],
        "container.name": "host" if host else (info.name if info else None),
        "container.image.repository": info.image_repository if info else None,
        "container.image.tag": info.image_tag if info else None,
        "k8s.pod.name": pod.name if pod else None,
        "k8s.ns.name": pod.namespace if pod else None})
    suffix = "".join(f" {k.replace('.', '_')}={'<NA>' if fields[k] is None else fields[k]}"
                     for k in SUGGESTED_FIELDS)
    return Alert(
        time_ns=ns, rule="Seccomp logged a syscall",
        priority=_SECCOMP_PRIORITY.get(rec.action, "Warning"), source="seccomp",
        hostname=hostname,
        output=f"Seccomp {rec.action} on {rec.syscall} by {rec.exe} (pid {rec.pid}, "
               f"comm {rec.comm}, {rec.arch}){suffix}",
        output_fields=fields, tags=("seccomp",))
