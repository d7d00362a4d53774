"""Syscall names and numbers for the running architecture, from libseccomp.

No hand-typed number table: libseccomp (through pyseccomp) is the maintained
source, and it knows the compat (32-bit) ABI as its own architecture, so a
compat ``open`` (5 on i386) is never misnamed ``fstat`` (5 on x86_64).
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass

import pyseccomp

__all__ = ["Arch", "native_arches", "syscall_name", "syscall_number"]


@dataclass(frozen=True)
class Arch:
    """One syscall ABI: its name (as in events), libseccomp token and OCI name."""

    name: str
    token: int
    oci: str


_ARCHES: dict[str, tuple[Arch, Arch | None]] = {
    "x86_64": (Arch("x86_64", pyseccomp.Arch.X86_64, "SCMP_ARCH_X86_64"),
               Arch("i386", pyseccomp.Arch.X86, "SCMP_ARCH_X86")),
    "aarch64": (Arch("aarch64", pyseccomp.Arch.AARCH64, "SCMP_ARCH_AARCH64"),
                Arch("arm", pyseccomp.Arch.ARM, "SCMP_ARCH_ARM")),
}


def native_arches() -> tuple[Arch, Arch | None]:
    """(native ABI, compat ABI or None) for this machine."""
    machine = platform.machine()
    if machine not in _ARCHES:
        raise RuntimeError(f"unsupported architecture {machine}")
    return _ARCHES[machine]


@functools.lru_cache(maxsize=4096)
def syscall_name(nr: int, *, compat: bool = False) -> str:
    """Name of syscall `nr` in the native (or compat) ABI; "syscall_<nr>" if unknown."""
    native, comp = native_arches()
    arch = comp if compat and comp else native
    try:
        return str(pyseccomp.resolve_syscall(arch.token, nr).decode())
    except ValueError:
        return f"syscall_{nr}"


@functools.lru_cache(maxsize=4096)
def syscall_number(name: str, *, compat: bool = False) -> int | None:
    """Number of syscall `name` in the native (or compat) ABI, None if it has none."""
    native, comp = native_arches()
    arch = comp if compat else native
    if arch is None:
        return None
    try:
        nr = int(pyseccomp.resolve_syscall(arch.token, name))
    except ValueError:
        return None
    return nr if nr >= 0 else None
