"""The sensor object's one per-syscall table (``routes``, struct
bg_syscall_route in bpf/include/bpfguard.h): for each syscall index (its
number, + the table's half for the compat ABI), the syscall sensor's spec
and the policy engine's hooks. The kernel finds both with one lookup at
entry; user space writes each part's half here, so that neither erases the
other's.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

from ..loader import BpfObject, Btf

__all__ = ["SyscallRoutes"]


class SyscallRoutes:
    """Writes rows of the route table, each part its own half."""

    def __init__(self, obj: BpfObject, btf: Btf) -> None:
        self._map = obj.map("routes")
        self._t = btf.struct("bg_syscall_route")
        self._rows: dict[int, Any] = {}
        self._lock = threading.Lock()

    def set_spec(self, idx: int, spec: Any) -> None:
        """The syscall sensor's half of row `idx` (a struct bg_syscall_spec)."""
        with self._lock:
            row = self._row(idx)
            row.spec = spec
            self._map.update(ctypes.c_uint32(idx), row)

    def set_hooks(self, idx: int, route: Any) -> None:
        """The policy engine's half of row `idx` (a struct bg_pol_route)."""
        with self._lock:
            row = self._row(idx)
            row.pol = route
            self._map.update(ctypes.c_uint32(idx), row)

    def _row(self, idx: int) -> Any:
        row = self._rows.get(idx)
        if row is None:
            row = self._rows[idx] = self._t()
        return row
