"""Seccomp's own verdicts, read from the kernel audit log.

A filter with SECCOMP_FILTER_FLAG_LOG (or an SCMP_ACT_LOG action) makes the
kernel write one AUDIT_SECCOMP record per logged syscall: the process, the
syscall and the action taken. bpfguard reads them from the audit netlink
multicast group, which works beside auditd (or without it) and needs only
CAP_AUDIT_READ; nothing is simulated.

pyroute2 has no NETLINK_AUDIT support, and the protocol here is one header
and a text line, so this reads the socket directly.
"""

from __future__ import annotations

import errno
import os
import re
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyseccomp

from ..errors import UnsupportedError
from ..sensors.syscall_table import LIBSECCOMP_ARCHES

__all__ = ["ACTION_NAMES", "AuditReader", "SeccompRecord", "kernel_lost"]

_NETLINK_AUDIT = 9
_AUDIT_NLGRP_READLOG = 1
_AUDIT_GET = 1000
_AUDIT_SECCOMP = 1326
_NLM_F_REQUEST = 1
_NLMSG_HDR = struct.Struct("=IHHII")
_SECCOMP_RET_ACTION_FULL = 0xFFFF0000
_X32_SYSCALL_BIT = 0x40000000
# linux/seccomp.h return values -> profile action names
ACTION_NAMES = {0x80000000: "SCMP_ACT_KILL_PROCESS", 0x00000000: "SCMP_ACT_KILL_THREAD",
                0x00030000: "SCMP_ACT_TRAP", 0x00050000: "SCMP_ACT_ERRNO",
                0x7FC00000: "SCMP_ACT_NOTIFY", 0x7FF00000: "SCMP_ACT_TRACE",
                0x7FFC0000: "SCMP_ACT_LOG", 0x7FFF0000: "SCMP_ACT_ALLOW"}
# libseccomp's architecture tokens are the kernel's AUDIT_ARCH_* values
_ARCH_BY_AUDIT = {tok: name for name, tok in LIBSECCOMP_ARCHES.items() if name != "SCMP_ARCH_X32"}
_FIELD = re.compile(r'(\w+)=("[^"]*"|\S+)')


@dataclass(frozen=True)
class SeccompRecord:
    """One syscall seccomp logged: who made it and what the filter did."""

    pid: int
    comm: str
    exe: str
    arch: str
    syscall: str
    nr: int
    action: str  # the action only: the kernel does not log its data (the errno)


def _untrusted(value: str) -> str:
    """audit_log_untrustedstring: quoted, or hex when the text has odd bytes."""
    if value.startswith('"'):
        return value.strip('"')
    try:
        return bytes.fromhex(value).decode(errors="replace")
    except ValueError:
        return value


def _syscall_name(arch: str, nr: int) -> str:
    token = LIBSECCOMP_ARCHES.get(arch)
    if token is None:
        return f"syscall_{nr}"
    try:
        return str(pyseccomp.resolve_syscall(token, nr).decode())
    except ValueError:
        return f"syscall_{nr}"


def parse_record(text: str) -> SeccompRecord | None:
    """Parses an AUDIT_SECCOMP record's text; None when it is not one."""
    f = dict(_FIELD.findall(text))
    try:
        audit_arch = int(f["arch"], 16)
        nr = int(f["syscall"])
        code = int(f["code"], 16)
        pid = int(f["pid"])
    except (KeyError, ValueError):
        return None
    arch = _ARCH_BY_AUDIT.get(audit_arch, f"AUDIT_ARCH_{audit_arch:#x}")
    if arch == "SCMP_ARCH_X86_64" and nr & _X32_SYSCALL_BIT:
        arch, nr = "SCMP_ARCH_X32", nr & ~_X32_SYSCALL_BIT
    return SeccompRecord(pid=pid, comm=_untrusted(f.get("comm", "")),
                         exe=_untrusted(f.get("exe", "")), arch=arch,
                         syscall=_syscall_name(arch, nr), nr=nr,
                         action=ACTION_NAMES.get(code & _SECCOMP_RET_ACTION_FULL, hex(code)))


def kernel_lost() -> int | None:
    """Records the kernel's audit subsystem dropped since boot (backlog or rate
    limit), from AUDIT_GET; None where it cannot be asked (needs CAP_AUDIT_CONTROL)."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_AUDIT) as sock:
            sock.settimeout(1.0)
            sock.sendto(_NLMSG_HDR.pack(_NLMSG_HDR.size, _AUDIT_GET, _NLM_F_REQUEST, 1, 0), (0, 0))
            while True:
                msg = sock.recv(1 << 16)
                if _NLMSG_HDR.unpack_from(msg)[1] == _AUDIT_GET:
                    # struct audit_status: mask, enabled, failure, pid, rate_limit,
                    # backlog_limit, lost, ...
                    return int(struct.unpack_from("=7I", msg, _NLMSG_HDR.size)[6])
                if _NLMSG_HDR.unpack_from(msg)[1] == 2:  # NLMSG_ERROR: refused
                    return None
    except OSError:
        return None


class AuditReader:
    """Subscriber to the kernel's audit multicast, keeping seccomp records.

    ``lost`` counts overflows of the socket buffer (ENOBUFS): records the kernel
    sent that were dropped before they could be read.
    """

    def __init__(self, rcvbuf: int = 8 << 20) -> None:
        try:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_AUDIT)
            self._sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE
            self._sock.bind((0, _AUDIT_NLGRP_READLOG))
        except OSError as exc:
            raise UnsupportedError(f"cannot read the kernel audit log (netlink audit "
                                   f"multicast): {exc.strerror}; needs CAP_AUDIT_READ and "
                                   f"CONFIG_AUDIT") from None
        self.lost = 0

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self, timeout: float = 0.0) -> list[SeccompRecord]:
        """Records that are ready, waiting up to `timeout` seconds for the first."""
        out: list[SeccompRecord] = []
        wait = timeout
        while select.select([self._sock], [], [], wait)[0]:
            wait = 0
            try:
                msg = self._sock.recv(1 << 16)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped records for us
                    self.lost += 1
                    continue
                raise
            if len(msg) < _NLMSG_HDR.size:
                continue
            length, kind = _NLMSG_HDR.unpack_from(msg)[:2]
            if kind != _AUDIT_SECCOMP:
                continue
            rec = parse_record(msg[_NLMSG_HDR.size:length].rstrip(b"\0").decode(errors="replace"))
            if rec is not None:
                out.append(rec)
        return out

    def barrier(self, sink: Callable[[SeccompRecord], None], timeout: float = 2.0) -> bool:
        """Hands every record logged before this call to `sink`; False if the
        kernel did not deliver the barrier's own record within `timeout`.

        The kernel queues audit records in order; a child that logs one marked
        syscall after everything else proves the queue drained up to it.
        """
        pid = os.fork()
        if pid == 0:
            try:
                f = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
                f.add_rule(pyseccomp.LOG, "getppid")
                f.load()
                os.getppid()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            for rec in self.read(left):
                if rec.pid == pid and rec.syscall == "getppid":
                    return True
                sink(rec)
        return False

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> AuditReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
