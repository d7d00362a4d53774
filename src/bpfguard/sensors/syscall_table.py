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

from ..errors import UnsupportedError

__all__ = [
    "ARCH_FAMILIES",
    "LIBSECCOMP_ARCHES",
    "Arch",
    "Machine",
    "machine",
    "native_arches",
    "syscall_name",
    "syscall_number",
]


@dataclass(frozen=True)
class Arch:
    """One syscall ABI: its name (as in events), libseccomp token and OCI name."""

    name: str
    token: int
    oci: str


@dataclass(frozen=True)
class Machine:
    """A machine type's syscall ABIs, named as each tool names them."""

    native: Arch
    compat: Arch | None  # the 32-bit ABI bpfguard's sensors tell apart
    sub_arches: tuple[str, ...]  # OCI names of every other ABI its kernel runs (Docker's archMap)
    docker: str  # the name Docker profiles use in includes/excludes (Go's GOARCH)


_MACHINES: dict[str, Machine] = {
    "x86_64": Machine(Arch("x86_64", pyseccomp.Arch.X86_64, "SCMP_ARCH_X86_64"),
                      Arch("i386", pyseccomp.Arch.X86, "SCMP_ARCH_X86"),
                      ("SCMP_ARCH_X86", "SCMP_ARCH_X32"), "amd64"),
    "aarch64": Machine(Arch("aarch64", pyseccomp.Arch.AARCH64, "SCMP_ARCH_AARCH64"),
                       Arch("arm", pyseccomp.Arch.ARM, "SCMP_ARCH_ARM"),
                       ("SCMP_ARCH_ARM",), "arm64"),
}

# Every architecture this libseccomp knows: OCI name -> token (the kernel's AUDIT_ARCH_*).
LIBSECCOMP_ARCHES: dict[str, int] = {f"SCMP_ARCH_{n}": getattr(pyseccomp.Arch, n)
                                     for n in dir(pyseccomp.Arch)
                                     if n.isupper() and n != "NATIVE"}
# Each supported machine's native OCI architecture -> its sub-architectures.
ARCH_FAMILIES: dict[str, tuple[str, ...]] = {m.native.oci: m.sub_arches
                                             for m in _MACHINES.values()}


def machine(name: str | None = None) -> Machine:
    """The ABIs of machine type `name` (platform.machine(); default: this one)."""
    name = name or platform.machine()
    if name not in _MACHINES:
        raise UnsupportedError(f"unsupported machine type {name} "
                               f"(supported: {', '.join(_MACHINES)})")
    return _MACHINES[name]


def native_arches() -> tuple[Arch, Arch | None]:
    """(native ABI, compat ABI or None) for this machine."""
    m = machine()
    return m.native, m.compat


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
