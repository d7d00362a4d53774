"""Stack addresses named: kallsyms, a process's mappings and ELF symbols,
and the BPF frames a policy's kernel stack starts with."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from bpfguard.policy.engine import _without_bpf_frames
from bpfguard.symbols import KernelSymbols, StackFrame, UserSymbols

KALLSYMS = """\
ffffffff81000000 T _stext
ffffffff81001000 t do_sys_openat2
ffffffff81001400 T do_syscall_64
ffffffff81001800 D some_data
ffffffffc0000000 t bpf_prog_1234_bg_pol_run\t[bpf]
ffffffffc0100000 t nft_do_chain\t[nf_tables]
"""


def test_kernel_addresses_are_named_by_the_nearest_text_symbol(tmp_path: Path) -> None:
    table = tmp_path / "kallsyms"
    table.write_text(KALLSYMS)
    k = KernelSymbols(str(table))
    assert k.frame(0xffffffff81001410) == StackFrame(0xffffffff81001410, "do_syscall_64", 0x10)
    # data symbols are not code: the address stays in the function before
    assert k.frame(0xffffffff81001810).symbol == "do_syscall_64"
    assert k.frame(0xffffffffc0000020).module == "bpf"
    assert k.frame(0xffffffffc0100004) == StackFrame(0xffffffffc0100004, "nft_do_chain", 4,
                                                     "nf_tables")
    # past every symbol by far: something loaded since; unnamed until reread
    assert k.frame(0xffffffffc8000000).symbol == ""


def test_bpfguards_own_frames_and_the_dispatch_are_cut() -> None:
    frames = [StackFrame(1, "__bpf_get_stack"), StackFrame(2, "bpf_get_task_stack"),
              StackFrame(3, "bpf_prog_1_bg_pol_stacks", module="bpf"),
              StackFrame(4, "bpf_prog_2_bg_pol_run", module="bpf"),
              StackFrame(5, "bpf_trampoline_6442", module="bpf"),
              StackFrame(6, "bpf_trace_run2"), StackFrame(7, "__bpf_trace_sys_enter"),
              StackFrame(8, "syscall_trace_enter"), StackFrame(9, "do_syscall_64")]
    assert [f.symbol for f in _without_bpf_frames(frames)] == [
        "syscall_trace_enter", "do_syscall_64"]
    # no BPF frame found (a table read before the program loaded): kept whole
    plain = [StackFrame(8, "syscall_trace_enter")]
    assert _without_bpf_frames(plain) == plain


def test_user_addresses_are_named_from_the_mapped_files_symbols() -> None:
    # this interpreter's own mappings: the address of a libc function
    libc = ctypes.CDLL(None)
    addr = ctypes.cast(libc.getpid, ctypes.c_void_p).value
    assert addr is not None
    [frame] = UserSymbols().frames(os.getpid(), [addr + 1])
    assert frame.symbol.endswith("getpid") and frame.offset == 1
    assert "libc" in frame.module


def test_a_process_gone_leaves_addresses_alone(tmp_path: Path) -> None:
    assert UserSymbols(str(tmp_path)).frames(123, [0x401000]) == (StackFrame(0x401000),)
