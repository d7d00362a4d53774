"""Names for stack addresses: the kernel's, from ``/proc/kallsyms``, and a
process's, from ``/proc/PID/maps`` and the mapped ELF file's symbols.

A policy's ``kernelStackTrace``/``userStackTrace`` give return addresses;
the event shows them as Tetragon's ``StackTraceEntry`` does (symbol, offset
into it, and for user frames the mapped file). pyelftools reads the ELF
symbol tables; the kallsyms and maps formats are the kernel's text files.
"""

from __future__ import annotations

import bisect
import os
import stat
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO, Final

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

__all__ = ["KernelSymbols", "StackFrame", "UserSymbols"]

_KALLSYMS: Final = "/proc/kallsyms"
# kallsyms gives no sizes: an address this far past the nearest symbol is in
# something loaded since the table was read (a module, a BPF program)
_FAR: Final = 1 << 20
_RELOAD_EVERY_S: Final = 2.0
_ELF_CACHE: Final = 32  # files whose symbol tables are kept


@dataclass(frozen=True)
class StackFrame:
    """One return address: in `symbol` + `offset`; `module` is the kernel
    module (``bpf`` for a BPF program; "" for the kernel itself) or the
    mapped file of a user frame. `symbol` is "" when no table names it."""

    address: int
    symbol: str = ""
    offset: int = 0
    module: str = ""


class KernelSymbols:
    """``/proc/kallsyms``, read by :meth:`load` (or the first lookup) and
    again, at most every two seconds, when an address falls past every
    symbol it had (a module or BPF program loaded since)."""

    def __init__(self, path: str = _KALLSYMS) -> None:
        self._path = path
        self._starts: list[int] = []
        self._names: list[tuple[str, str]] = []
        self._read_at = -_RELOAD_EVERY_S

    def load(self) -> None:
        """Read the table now, unless it was read already."""
        if not self._starts:
            self._read()

    def _read(self) -> None:
        rows: list[tuple[int, str, str]] = []
        with open(self._path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3 or parts[1] not in "tTwW":
                    continue  # text symbols only: return addresses are in code
                addr = int(parts[0], 16)
                if addr:  # (all zero: kptr_restrict hides them)
                    module = parts[3].strip("[]") if len(parts) > 3 else ""
                    rows.append((addr, parts[2], module))
        rows.sort()
        self._starts = [r[0] for r in rows]
        self._names = [(r[1], r[2]) for r in rows]
        self._read_at = time.monotonic()

    def frame(self, address: int) -> StackFrame:
        """The symbol holding `address` (empty when none does)."""
        for attempt in range(2):
            i = bisect.bisect_right(self._starts, address) - 1
            if i >= 0 and address - self._starts[i] < _FAR:
                name, module = self._names[i]
                return StackFrame(address, name, address - self._starts[i], module)
            if attempt or time.monotonic() - self._read_at < _RELOAD_EVERY_S:
                break
            self._read()
        return StackFrame(address)


@dataclass(frozen=True)
class _Mapping:
    start: int
    end: int
    offset: int
    path: str


class _ElfSymbols:
    """One file's function symbols, by address, and how its file offsets
    map to those addresses (its loadable segments)."""

    def __init__(self, f: BinaryIO) -> None:
        self.segments: list[tuple[int, int, int]] = []  # (file offset, vaddr, size)
        rows: list[tuple[int, int, str]] = []
        elf = ELFFile(f)  # (f: open, the caller's to close)
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_LOAD":
                self.segments.append((seg["p_offset"], seg["p_vaddr"], seg["p_filesz"]))
        for sec in elf.iter_sections():
            if not isinstance(sec, SymbolTableSection):
                continue
            for sym in sec.iter_symbols():
                if sym["st_info"]["type"] == "STT_FUNC" and sym["st_value"] and sym.name:
                    rows.append((sym["st_value"], sym["st_size"], sym.name))
        rows.sort()
        self.starts = [r[0] for r in rows]
        self.rows = rows

    def name(self, file_offset: int) -> tuple[str, int]:
        for off, vaddr, size in self.segments:
            if off <= file_offset < off + size:
                addr = file_offset - off + vaddr
                i = bisect.bisect_right(self.starts, addr) - 1
                if i >= 0:
                    start, length, name = self.rows[i]
                    if addr < start + max(length, 1):
                        return name, addr - start
                break
        return "", 0


class UserSymbols:
    """Names for a process's user addresses: its ``/proc/PID/maps`` at the
    time of the call (a process that has exited gives addresses only), and
    the symbol tables of the files mapped there, opened through
    ``/proc/PID/root`` so a container's files are its own (a stripped file
    gives the file and the offset into it)."""

    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        self._files: OrderedDict[tuple[int, int, int], _ElfSymbols | None] = OrderedDict()

    def _maps(self, pid: int) -> list[_Mapping]:
        out = []
        try:
            with open(f"{self._proc}/{pid}/maps") as f:
                for line in f:
                    parts = line.split(maxsplit=5)
                    if len(parts) < 6 or "x" not in parts[1] or not parts[5].startswith("/"):
                        continue
                    lo, hi = (int(x, 16) for x in parts[0].split("-"))
                    out.append(_Mapping(lo, hi, int(parts[2], 16), parts[5].rstrip("\n")))
        except OSError:
            pass
        return out

    def _symbols(self, path: str) -> _ElfSymbols | None:
        # the path is the traced process's to choose (a FIFO where its
        # unlinked library was): never block on it, read regular files only
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            key = (st.st_dev, st.st_ino, st.st_mtime_ns)
            if key in self._files:
                self._files.move_to_end(key)
                return self._files[key]
            try:
                syms: _ElfSymbols | None = _ElfSymbols(f)
            except (OSError, ELFError):
                syms = None
        self._files[key] = syms
        if len(self._files) > _ELF_CACHE:
            self._files.popitem(last=False)
        return syms

    def frames(self, pid: int, addresses: Iterable[int]) -> tuple[StackFrame, ...]:
        maps = self._maps(pid)
        out = []
        for addr in addresses:
            m = next((m for m in maps if m.start <= addr < m.end), None)
            if m is None:
                out.append(StackFrame(addr))
                continue
            file_offset = addr - m.start + m.offset
            # the file as the process sees it (a container's, not the host's
            # of the same name)
            syms = self._symbols(f"{self._proc}/{pid}/root{m.path}")
            name, off = syms.name(file_offset) if syms is not None else ("", 0)
            out.append(StackFrame(addr, name, off if name else file_offset, m.path))
        return tuple(out)
