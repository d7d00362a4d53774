"""io_uring requests the syscall sensor reports as the syscalls they stand for
(bpf/lib/io_uring.bpf.h): an ``IORING_OP_OPENAT`` is an ``openat`` event
flagged as io_uring-submitted, so the rules watching openat see it.

Opcode numbers are read from the kernel's BTF (``enum io_uring_op``), syscall
numbers from libseccomp: neither is copied here.
"""

from __future__ import annotations

from ..loader.btf import Btf
from .syscall_table import syscall_number

__all__ = ["IO_URING_SYSCALLS", "opcode_syscalls", "submit_tracepoint"]

# IORING_OP_<name> -> the syscall it is reported as. The reads and writes of
# registered buffers (READ_FIXED, WRITE_FIXED) are reads and writes. The
# kernel side reads each opcode's arguments itself (bg_iou_args): an opcode
# mapped here that it does not know is not reported.
IO_URING_SYSCALLS: dict[str, str] = {
    "OPENAT": "openat", "OPENAT2": "openat2",
    "READ": "read", "READ_FIXED": "read", "READV": "readv",
    "WRITE": "write", "WRITE_FIXED": "write", "WRITEV": "writev",
    "CONNECT": "connect", "ACCEPT": "accept4",
    "UNLINKAT": "unlinkat", "RENAMEAT": "renameat2", "MKDIRAT": "mkdirat",
    "LINKAT": "linkat", "SYMLINKAT": "symlinkat", "SOCKET": "socket",
}


def opcode_syscalls(kernel: Btf, slots: int, none: int) -> list[int]:
    """The syscall number each of the first `slots` opcodes is reported as
    (`none`: not reported), for the sensor's ``targ_iou_nr``."""
    table = [none] * slots
    try:
        ops = kernel.enum("io_uring_op")
    except KeyError:  # a kernel without io_uring
        return table
    for op, name in IO_URING_SYSCALLS.items():
        code = ops.get(f"IORING_OP_{op}")
        nr = syscall_number(name)
        if code is not None and code < slots and nr is not None:
            table[code] = nr
    return table


def submit_tracepoint(kernel: Btf) -> str | None:
    """The tracepoint a request's submission fires on this kernel (renamed in
    6.4), or None for a kernel without io_uring's tracepoints."""
    for name in ("io_uring_submit_req", "io_uring_submit_sqe"):
        try:
            kernel.named_type(f"btf_trace_{name}")
        except KeyError:
            continue
        return name
    return None
