"""Tracing a command for real, for kernel tests."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bpfguard.agent import Pipeline
from bpfguard.agent.detect import Detector
from bpfguard.agent.launch import spawn_waiting, stream
from bpfguard.files import mounts
from bpfguard.proctable import ProcessTable
from bpfguard.sensors import SensorSet


class Collect:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)

    def flush(self) -> None:
        pass


@dataclass
class Traced:
    records: list[dict[str, Any]]
    table: ProcessTable
    status: int | None
    pid: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        assert self.status is not None
        return os.waitstatus_to_exitcode(self.status)

    def of_type(self, t: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["type"] == t]

    def syscalls(self, name: str, pid: int | None = None) -> list[dict[str, Any]]:
        return [r for r in self.of_type("syscall") if r["syscall"] == name
                and (pid is None or r["pid"] == pid)]


def trace(argv: list[str], *, syscalls: list[str] | None = None, cwd: str | None = None,
          during: Any = None, **sensor_kw: Any) -> Traced:
    """Runs argv under a SensorSet scoped to it (from its exec) and returns
    every record the pipeline emitted until it exited. `during(pid)` runs
    while the traced command runs."""
    exe = shutil.which(argv[0])
    assert exe, argv[0]
    with SensorSet(syscalls=syscalls, **sensor_kw) as sensors:
        pid, release = spawn_waiting(exe, argv, cwd=cwd)
        sensors.scope.add_pid(pid, armed=True)
        table = ProcessTable()
        table.seed_from_proc()
        pipe = Pipeline(sensors, table)
        out = Collect()
        pipe.start()
        os.write(release, b"x")
        os.close(release)
        extra = during(pid) if during else None
        status = stream(pipe, out, pid)
    return Traced(out.records, table, status, pid, {"during": extra})


def start_watched(det: Detector, exe: str, argv: list[str], *, cwd: str | None = None) -> int:
    """Starts `det` watching argv from its exec on (nothing of the launch
    shows) and lets it run; its pid."""
    child, release = spawn_waiting(exe, argv, cwd=cwd)
    det.scope.add_pid(child, armed=True)
    det.start()
    os.write(release, b"x")
    os.close(release)
    return child


def mounts_crossed(path: Path) -> int:
    """Mounts the kernel's walk up from `path` crosses, each a step as a name
    is: every mount on `path` or above it but the root (stacked ones each
    count), from the mount table (os.path.ismount misses a bind mount of
    the same filesystem and takes a btrfs subvolume for one)."""
    points = [point for point, _ in mounts()]
    real = Path(os.path.realpath(path))
    return sum(1 for p in points if p != "/" and (real == Path(p) or Path(p) in real.parents))
