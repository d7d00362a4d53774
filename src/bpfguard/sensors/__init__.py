"""Kernel sensors and their decoded events.

- :class:`SensorSet`: the one sensor object (``bpf/sensor.bpf.c``) and its
  parts (process events, the syscall sensor, and the policy engine or the
  seccomp recorder when given), one ordered event stream, one in-kernel scope.
- :mod:`.events`: the event types, decoded with layouts from BTF.
"""

from .events import (
    Event,
    ExecEvent,
    ExitEvent,
    FileRef,
    ForkEvent,
    LossEvent,
    SockInfo,
    SyscallEvent,
)
from .sensors import PathFilter, ProcessSensor, Sensor, SyscallFilter, SyscallSensor
from .sensorset import Scope, SensorSet
from .syscall_specs import DEFAULT_SYSCALLS

__all__ = [
    "DEFAULT_SYSCALLS",
    "Event",
    "ExecEvent",
    "ExitEvent",
    "FileRef",
    "ForkEvent",
    "LossEvent",
    "PathFilter",
    "ProcessSensor",
    "Scope",
    "Sensor",
    "SensorSet",
    "SockInfo",
    "SyscallEvent",
    "SyscallFilter",
    "SyscallSensor",
]
