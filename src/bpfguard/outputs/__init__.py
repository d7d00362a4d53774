"""Event records and where they go.

:func:`record` turns a decoded event plus the process table into the JSON
shape bpfguard emits; :class:`JsonLines` and :class:`TextLines` write records.
"""

from __future__ import annotations

import json
import time
from typing import IO, Any, Protocol

from ..proctable import ProcessTable
from ..sensors.events import Event, ExecEvent, LossEvent

__all__ = ["JsonLines", "Output", "TextLines", "record"]


def record(ev: Event | LossEvent, table: ProcessTable | None = None) -> dict[str, Any]:
    """The output record of `ev`, with the process and (for exec) its ancestry."""
    rec = ev.to_dict()
    if table is None or isinstance(ev, LossEvent):
        return rec
    proc = table.get(ev.pid)
    if proc is not None:
        rec["process"] = proc.summary()
        rec["process"]["container_id"] = proc.container_id
    if isinstance(ev, ExecEvent):
        rec["ancestors"] = [p.summary() for p in table.ancestors(ev.pid)]
    return rec


class Output(Protocol):
    def write(self, rec: dict[str, Any]) -> None: ...
    def flush(self) -> None: ...


class JsonLines:
    """One JSON object per line."""

    def __init__(self, stream: IO[str]) -> None:
        self._s = stream

    def write(self, rec: dict[str, Any]) -> None:
        self._s.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def flush(self) -> None:
        self._s.flush()


def _ts(ns: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ns / 1e9)) + f".{ns // 1_000_000 % 1000:03d}"


def _arg(v: Any) -> str:
    if isinstance(v, dict):
        if "user" in v:
            user, res = v["user"], v.get("resolved")
            late = " (read at exit)" if v.get("read_at_exit") else ""
            return json.dumps(user) + (f"→{res}" if res and res != user else "") + late
        if "fd" in v:
            return f"{v['fd']}<{v['path']}>" if "path" in v else str(v["fd"])
        return ",".join(f"{k}={x}" for k, x in v.items())
    return json.dumps(v) if isinstance(v, str) and not v.isupper() else str(v)


class TextLines:
    """A human-readable line per event (the default of `bpfguard trace`)."""

    def __init__(self, stream: IO[str]) -> None:
        self._s = stream
        self._s.write(f"{'TIME':12} {'PID':>7} {'TID':>7} {'COMM':16} EVENT\n")

    def write(self, rec: dict[str, Any]) -> None:
        t = rec.get("type")
        if t == "loss":
            self._s.write(f"{_ts(rec['time_ns'])} LOST {rec['count']} events "
                          f"({rec['reason']}, {rec['total']} in all)\n")
            return
        head = f"{_ts(rec['time_ns'])} {rec['pid']:>7} {rec['tid']:>7} {rec['comm']:16} "
        if t == "exec":
            exe = (rec.get("exe") or {}).get("path")
            detail = f"exec {exe} {json.dumps(rec['args'])} ppid={rec['ppid']}"
            if rec.get("cwd"):
                detail += f" cwd={rec['cwd']['path']}"
        elif t == "fork":
            detail = f"fork ppid={rec['ppid']}"
        elif t == "exit":
            detail = (f"exit signal={rec['signal']}" if rec.get("signal")
                      else f"exit code={rec['exit_code']}")
        elif t == "syscall":
            args = ", ".join(_arg(v) for v in rec["args"].values())
            res = f"{rec['ret']} {rec['errno']}" if rec.get("errno") else str(rec["ret"])
            detail = f"{rec['syscall']}({args}) = {res}"
            if rec.get("ret_file"):
                detail += f" <{rec['ret_file']['path']}>"
            if rec["arch"] not in ("x86_64", "aarch64"):
                detail += f" [{rec['arch']}]"
        else:
            detail = t or "?"
        self._s.write(head + detail + "\n")

    def flush(self) -> None:
        self._s.flush()
