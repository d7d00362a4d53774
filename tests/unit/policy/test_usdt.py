"""USDT notes: the operands SystemTap's <sys/sdt.h> writes, and refusals."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from bpfguard.policy.usdt import UsdtArg, UsdtError, parse_arg, read_sites


@pytest.mark.parametrize(("text", "want"), [
    ("-4@%esi", UsdtArg(4, True, "reg", reg="esi", text="-4@%esi")),
    ("8@%rax", UsdtArg(8, False, "reg", reg="rax", text="8@%rax")),
    ("-1@%sil", UsdtArg(1, True, "reg", reg="sil", text="-1@%sil")),
    ("-4@$-9", UsdtArg(4, True, "const", value=-9, text="-4@$-9")),
    ("8@$0x10", UsdtArg(8, False, "const", value=16, text="8@$0x10")),
    ("-8@-8(%rbp)", UsdtArg(8, True, "deref", reg="rbp", value=-8, text="-8@-8(%rbp)")),
    ("8@(%rbx)", UsdtArg(8, False, "deref", reg="rbx", value=0, text="8@(%rbx)")),
])
def test_operands(text: str, want: UsdtArg) -> None:
    assert parse_arg(text) == want


def test_a_global_is_read_relative_to_the_probe_site() -> None:
    # at the probe, the uprobe's ip is the site: the global is its distance away
    got = parse_arg("-8@counter+8(%rip)", {"counter": 0x4020}, site=0x1085)
    assert (got.kind, got.reg, got.value) == ("deref", "rip", 0x4028 - 0x1085)


@pytest.mark.parametrize(("text", "why"), [
    ("%eax", "not SIZE@OPERAND"),
    ("3@%eax", "size 3"),
    ("8@(%rax,%rdx,8)", "not this one"),
    ("8@nowhere(%rip)", "'nowhere' is not in the binary's symbol table"),
])
def test_operands_bpfguard_cannot_read_say_why(text: str, why: str) -> None:
    with pytest.raises(UsdtError, match=why.replace("(", r"\(")):
        parse_arg(text, {})


def test_a_file_that_is_not_elf_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"#!/bin/sh\n" + struct.pack("<Q", 0) * 8)
    with pytest.raises(UsdtError, match="not a readable ELF object"):
        read_sites(junk)
    with pytest.raises(UsdtError, match="No such file"):
        read_sites(tmp_path / "missing")
