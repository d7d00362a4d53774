"""USDT probes (SystemTap SDT notes) of an ELF binary, for ``usdts`` hooks.

A program built with ``<sys/sdt.h>`` marks each probe site with a ``nop``
and describes it in an ``.note.stapsdt`` ELF note: where the site is, the
semaphore the program tests before it fires a costly probe, and each
argument as the assembler operand that held it (``-4@%esi``: a signed
4-byte value in esi; ``8@16(%rbx)``: 8 bytes in memory at rbx+16;
``-8@counter(%rip)``: a global; ``4@$42``: a constant). bpfguard attaches a
uprobe at each site's file offset (with the semaphore as its reference
counter, so the program fires the probe only while it is watched) and reads
the arguments from the registers and user memory as the operands say.

pyelftools reads the sections, segments, notes and symbols; the note's
payload and the operands are SystemTap's format
(https://sourceware.org/systemtap/wiki/UserSpaceProbeImplementation), which
no maintained Python library parses.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection, SymbolTableSection

__all__ = ["UsdtArg", "UsdtError", "UsdtSite", "parse_arg", "read_sites"]

_NOTE_OWNER: Final = "stapsdt"
# NT_STAPSDT is 3 in the "stapsdt" namespace; pyelftools names a type by
# the GNU namespace's table whatever the owner, so 3 comes as NT_GNU_BUILD_ID
_NOTE_TYPES: Final = (3, "NT_GNU_BUILD_ID")
_BASE_SECTION: Final = ".stapsdt.base"
_PT_LOAD: Final = "PT_LOAD"


class UsdtError(ValueError):
    """The binary or one of its probe descriptions cannot be used."""


@dataclass(frozen=True)
class UsdtArg:
    """One probe argument: `size` bytes (signed when `signed`) that are
    the constant `value` (``kind`` const), the register `reg` (reg), or the
    memory at `reg` + `value` (deref). A global's ``sym(%rip)`` operand is a
    deref from ``rip``: at the probe the uprobe's ip is the site's address,
    so `value` is the symbol's distance from the site."""

    size: int
    signed: bool
    kind: Literal["const", "reg", "deref"]
    reg: str = ""
    value: int = 0
    text: str = ""


@dataclass(frozen=True)
class UsdtSite:
    """One site of a probe: its file offset (where the uprobe goes), its
    semaphore's file offset (0: none) and its arguments; `problem` says why
    bpfguard cannot read them (the arguments are then empty)."""

    provider: str
    name: str
    offset: int
    semaphore: int
    args: tuple[UsdtArg, ...]
    problem: str = ""


# (size)@(operand): %reg, $const, disp(%reg) or sym(%rip); the index forms
# disp(%base,%index,scale) are refused by parse_arg with a message
_SPEC_RE: Final = re.compile(r"(-?\d+)@(.+)")
_REG_RE: Final = re.compile(r"%([a-z0-9]+)")
_CONST_RE: Final = re.compile(r"\$(-?(?:0x[0-9a-fA-F]+|\d+))")
_DEREF_RE: Final = re.compile(r"(-?(?:0x[0-9a-fA-F]+|\d+))?\(%([a-z0-9]+)\)")
_SYMBOL_RE: Final = re.compile(r"([A-Za-z_.$][\w.$@]*)([+-](?:0x[0-9a-fA-F]+|\d+))?\(%rip\)")


def parse_arg(text: str, symbols: dict[str, int] | None = None, site: int = 0) -> UsdtArg:
    """One argument operand, as the note spells it. `symbols` (name ->
    address) and `site` (the site's address) resolve a ``sym(%rip)``
    operand."""
    m = _SPEC_RE.fullmatch(text)
    if m is None:
        raise UsdtError(f"argument {text!r} is not SIZE@OPERAND")
    size, operand = int(m.group(1)), m.group(2)
    if abs(size) not in (1, 2, 4, 8):
        raise UsdtError(f"argument {text!r}: size {abs(size)} is not 1, 2, 4 or 8 bytes")
    width, signed = abs(size), size < 0
    if (c := _CONST_RE.fullmatch(operand)) is not None:
        return UsdtArg(width, signed, "const", value=int(c.group(1), 0), text=text)
    if (r := _REG_RE.fullmatch(operand)) is not None:
        return UsdtArg(width, signed, "reg", reg=r.group(1), text=text)
    if (d := _DEREF_RE.fullmatch(operand)) is not None:
        return UsdtArg(width, signed, "deref", reg=d.group(2), value=int(d.group(1) or "0", 0),
                       text=text)
    if (s := _SYMBOL_RE.fullmatch(operand)) is not None:
        addr = (symbols or {}).get(s.group(1))
        if addr is None:
            raise UsdtError(f"argument {text!r}: symbol {s.group(1)!r} is not in the "
                            "binary's symbol table")
        return UsdtArg(width, signed, "deref", reg="rip",
                       value=addr + int(s.group(2) or "0", 0) - site, text=text)
    raise UsdtError(f"argument {text!r}: bpfguard reads %reg, $constant, disp(%reg) and "
                    "symbol(%rip) operands, not this one")


def _file_offset(elf: ELFFile, addr: int, what: str) -> int:
    """The file offset of a virtual address: through the loadable segment
    that maps it."""
    for seg in elf.iter_segments():
        if seg["p_type"] == _PT_LOAD and seg["p_vaddr"] <= addr < seg["p_vaddr"] + seg["p_filesz"]:
            return int(addr - seg["p_vaddr"] + seg["p_offset"])
    raise UsdtError(f"{what} address {addr:#x} is in no loadable segment")


def _section_offset(elf: ELFFile, addr: int, what: str) -> int:
    """The file offset of an address in a section's data (a semaphore, in
    ``.probes``): the uprobe's reference counter is found by it."""
    for sec in elf.iter_sections():
        if sec["sh_addr"] and sec["sh_addr"] <= addr < sec["sh_addr"] + sec["sh_size"]:
            return int(addr - sec["sh_addr"] + sec["sh_offset"])
    raise UsdtError(f"{what} address {addr:#x} is in no section")


def _symbols(elf: ELFFile) -> dict[str, int]:
    out: dict[str, int] = {}
    for sec in elf.iter_sections():
        if isinstance(sec, SymbolTableSection):
            for sym in sec.iter_symbols():
                if sym.name and sym["st_value"]:
                    out.setdefault(sym.name, int(sym["st_value"]))
    return out


def read_sites(path: str | Path) -> list[UsdtSite]:
    """Every USDT probe site of the ELF binary at `path`, in note order.

    Raises UsdtError when the file is not an ELF object or a note is
    malformed; an operand bpfguard cannot read is the site's `problem`, so
    the caller decides (only the probes a policy names matter)."""
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            if elf.elfclass != 64 or elf["e_machine"] != "EM_X86_64":
                raise UsdtError(f"{path}: not an x86-64 ELF object; bpfguard reads USDT "
                                "operands as x86-64 registers")
            base_sec = elf.get_section_by_name(_BASE_SECTION)
            base_addr = int(base_sec["sh_addr"]) if base_sec is not None else None
            symbols: dict[str, int] | None = None
            sites = []
            for sec in elf.iter_sections():
                if not isinstance(sec, NoteSection):
                    continue
                for note in sec.iter_notes():
                    if note["n_name"] != _NOTE_OWNER or note["n_type"] not in _NOTE_TYPES:
                        continue
                    raw = note["n_descdata"]  # (n_desc: decoded by the GNU type's rules)
                    if not isinstance(raw, bytes) or len(raw) < 24:
                        raise UsdtError(f"{path}: a stapsdt note too short for its addresses")
                    pc, base, sema = struct.unpack_from("<QQQ", raw)
                    strings = raw[24:].split(b"\0")
                    if len(strings) < 3:
                        raise UsdtError(f"{path}: a stapsdt note without provider, name "
                                        "and arguments")
                    provider, name, spec = (s.decode(errors="replace") for s in strings[:3])
                    # prelink moves sections; the note keeps the base's
                    # address at link time, and so do pc and sema
                    shift = base_addr - base if base_addr is not None and base else 0
                    pc += shift
                    if sema:
                        sema += shift
                    if "(%rip)" in spec and symbols is None:
                        symbols = _symbols(elf)
                    try:
                        args, problem = tuple(parse_arg(t, symbols, pc)
                                              for t in spec.split()), ""
                    except UsdtError as exc:
                        args, problem = (), str(exc)
                    sites.append(UsdtSite(
                        provider, name, _file_offset(elf, pc, f"probe {provider}:{name}"),
                        _section_offset(elf, sema, f"semaphore of {provider}:{name}")
                        if sema else 0, args, problem))
            return sites
    except ELFError as exc:
        raise UsdtError(f"{path}: not a readable ELF object ({exc})") from exc
    except OSError as exc:
        raise UsdtError(f"{path}: {exc.strerror or exc}") from exc
