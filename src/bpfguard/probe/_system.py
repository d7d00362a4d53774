"""The host plumbing the probes need: mounts, a throwaway cgroup, a throwaway
network namespace with a veth pair.

Everything here undoes itself: a context manager removes what it made, and the
network namespace belongs to one short-lived thread, so the kernel frees it
(and the veths in it) when that thread ends, even if the probe crashed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import socket
import struct
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from ..files import mounts

T = TypeVar("T")

SECURITYFS = Path("/sys/kernel/security")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]

_CLONE_NEWNET = 0x40000000
_MNT_DETACH = 2


def _os_error(what: str) -> OSError:
    err = ctypes.get_errno() or errno.EIO
    return OSError(err, f"{what}: {os.strerror(err)}")


@contextlib.contextmanager
def mounted(fstype: str, *, at: Path | None = None) -> Iterator[Path]:
    """A mount of `fstype`: the existing one (at `at` when given), otherwise a
    temporary one that is unmounted again on exit."""
    for point, kind in mounts():
        if kind == fstype and (at is None or Path(point) == at):
            yield Path(point)
            return
    made_dir = at is None
    target = at if at is not None else Path(tempfile.mkdtemp(prefix=f"bpfguard-{fstype}-"))
    try:
        if _libc.mount(fstype.encode(), os.fsencode(target), fstype.encode(), 0, None) != 0:
            raise _os_error(f"mount {fstype} at {target}")
        try:
            yield target
        finally:
            _libc.umount2(os.fsencode(target), _MNT_DETACH)
    finally:
        if made_dir:
            with contextlib.suppress(OSError):
                target.rmdir()


def read_securityfs() -> dict[str, str | None]:
    """The active LSM list and lockdown state (None when the file is absent),
    mounting securityfs for the read if nobody has."""
    with mounted("securityfs", at=SECURITYFS) as root:
        out: dict[str, str | None] = {}
        for name in ("lsm", "lockdown"):
            try:
                out[name] = (root / name).read_text().strip()
            except FileNotFoundError:
                out[name] = None
        return out


@contextlib.contextmanager
def temporary_cgroup() -> Iterator[Path]:
    """A new, empty cgroup v2 directory, removed on exit."""
    with mounted("cgroup2") as root:
        path = root / f"bpfguard-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        path.mkdir()
        try:
            yield path
        finally:
            path.rmdir()


def in_new_netns(fn: Callable[[], T]) -> T:
    """Runs fn in a fresh network namespace, on a thread of its own.

    unshare(CLONE_NEWNET) moves only the calling thread, and libbpf's netlink
    calls (XDP, tc) act in the calling thread's namespace. When the thread
    ends, the namespace loses its last reference and the kernel deletes it with
    its interfaces, so nothing leaks even if fn raised.
    """
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            if _libc.unshare(_CLONE_NEWNET) != 0:
                raise _os_error("unshare(CLONE_NEWNET)")
            result.append(fn())
        except BaseException as exc:  # re-raised on the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run, name="bpfguard-probe-netns")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]


# rtnetlink, from <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>, <linux/veth.h>
_RTM_NEWLINK, _NLMSG_ERROR = 16, 2
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_EXCL, _NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
_IFLA_IFNAME, _IFLA_LINKINFO, _IFLA_INFO_KIND, _IFLA_INFO_DATA, _VETH_INFO_PEER = 3, 18, 1, 2, 1
_IFINFOMSG = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)


def _nla(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def create_veth(name: str, peer: str) -> int:
    """Creates a veth pair in the calling thread's network namespace (one
    rtnetlink request, as `ip link add NAME type veth peer name PEER`);
    returns NAME's ifindex."""
    peer_info = _nla(_VETH_INFO_PEER, _IFINFOMSG + _nla(_IFLA_IFNAME, peer.encode() + b"\0"))
    link_info = _nla(_IFLA_LINKINFO, _nla(_IFLA_INFO_KIND, b"veth")
                     + _nla(_IFLA_INFO_DATA, peer_info))
    body = _IFINFOMSG + _nla(_IFLA_IFNAME, name.encode() + b"\0") + link_info
    flags = _NLM_F_REQUEST | _NLM_F_ACK | _NLM_F_CREATE | _NLM_F_EXCL
    msg = struct.pack("=IHHII", 16 + len(body), _RTM_NEWLINK, flags, 1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.send(msg)
        reply = sock.recv(65536)
    _, kind = struct.unpack_from("=IH", reply)
    if kind != _NLMSG_ERROR:
        raise OSError(errno.EPROTO, f"create veth {name}: unexpected netlink reply {kind}")
    (err,) = struct.unpack_from("=i", reply, 16)
    if err:
        raise OSError(-err, f"create veth {name}: {os.strerror(-err)}")
    return socket.if_nametoindex(name)


def libc_path() -> str | None:
    """The C library mapped into this process (the uprobe target)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)  # address perms offset dev inode [path]
        path = fields[5] if len(fields) == 6 else ""
        base = os.path.basename(path)
        if base.startswith("libc.so") or (base.startswith("libc-") and base.endswith(".so")):
            return path
    return None
