"""XDP and tc attachments by ifindex (netlink), with explicit modes.

Link-based XDP (:meth:`Program.attach_xdp`) lets the kernel pick driver or
generic mode; the feature probe and the firewall need to ask for one, which
only the netlink interface offers. Both attachments act in the calling
thread's network namespace.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import AttachError, KernelError
from ..files import check_trusted_dir
from . import _libbpf as L
from .btf import Btf
from .object import Program

__all__ = ["TcAttachment", "XdpAttachment", "XdpProgram", "pin_xdp_link", "xdp_program_on",
           "detach_pinned_link"]

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
BPF_TC_INGRESS, BPF_TC_EGRESS = 1 << 0, 1 << 1

XdpMode = Literal["native", "generic"]
_XDP_ATTACHED = {1: "native", 2: "generic", 3: "offload", 4: "multi"}


@dataclass(frozen=True)
class XdpProgram:
    """The XDP program an interface runs: kernel id, name and mode."""

    id: int
    name: str
    mode: str


def xdp_program_on(ifindex: int) -> XdpProgram | None:
    """What XDP program interface `ifindex` runs, if any (netlink, in the
    calling thread's network namespace)."""
    opts = L.XdpQueryOpts(sz=ctypes.sizeof(L.XdpQueryOpts))
    L.check(L.bpf_xdp_query(ifindex, 0, ctypes.byref(opts)), f"query XDP of ifindex {ifindex}")
    if not opts.prog_id:
        return None
    name = "?"
    fd = L.bpf_prog_get_fd_by_id(opts.prog_id)
    if fd >= 0:
        try:
            name = _prog_name(fd)
        finally:
            os.close(fd)
    return XdpProgram(int(opts.prog_id), name, _XDP_ATTACHED.get(opts.attach_mode, "?"))


def _prog_name(fd: int) -> str:
    with Btf.vmlinux() as btf:
        info = btf.struct("bpf_prog_info")()
        size = ctypes.c_uint32(ctypes.sizeof(info))
        L.check(L.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)),
                "program info")
        return bytes(info.name).rstrip(b"\0").decode(errors="replace")


def pin_xdp_link(prog: Program, ifindex: int, mode: XdpMode, path: str | os.PathLike[str]) -> None:
    """Attaches `prog` to `ifindex` in `mode` through a bpf_link pinned at
    `path`: the attachment outlives this process until the pin is removed
    (:func:`detach_pinned_link`). The kernel refuses (EBUSY) an interface that
    already runs an XDP program."""
    with Btf.vmlinux() as btf:
        attach_type = btf.enum("bpf_attach_type")["BPF_XDP"]
    opts = L.LinkCreateOpts(sz=ctypes.sizeof(L.LinkCreateOpts),
                            flags=XDP_FLAGS_DRV_MODE if mode == "native" else XDP_FLAGS_SKB_MODE)
    fd = L.bpf_link_create(prog.fd, ifindex, attach_type, ctypes.byref(opts))
    if fd < 0:
        raise AttachError(f"attach XDP program '{prog.name}' ({mode}) to ifindex {ifindex}",
                          L.errno_now())
    try:
        check_trusted_dir(Path(path).parent, f"pin {path}", create=True)
        L.check(L.bpf_obj_pin(fd, os.fsencode(path)), f"pin XDP link at {path}")
    finally:
        os.close(fd)


def detach_pinned_link(path: str | os.PathLike[str]) -> None:
    """Detaches the link pinned at `path` now (even if some process still holds
    it) and removes the pin."""
    check_trusted_dir(Path(path).parent, f"pinned link {path}")
    fd = L.bpf_obj_get(os.fsencode(path))
    if fd < 0:
        raise KernelError(f"open pinned link {path}", L.errno_now())
    try:
        L.check(L.bpf_link_detach(fd), f"detach link {path}")
    finally:
        os.close(fd)
    os.unlink(path)


class XdpAttachment:
    """An XDP program on an interface in native (driver) or generic (skb) mode."""

    def __init__(self, prog: Program, ifindex: int, mode: XdpMode) -> None:
        self.ifindex = ifindex
        self._flags = XDP_FLAGS_UPDATE_IF_NOEXIST | (
            XDP_FLAGS_DRV_MODE if mode == "native" else XDP_FLAGS_SKB_MODE)
        L.check(L.bpf_xdp_attach(ifindex, prog.fd, self._flags, None),
                f"attach XDP program '{prog.name}' ({mode}) to ifindex {ifindex}")
        self._attached = True

    def detach(self) -> None:
        if self._attached:
            L.bpf_xdp_detach(self.ifindex, self._flags & ~XDP_FLAGS_UPDATE_IF_NOEXIST, None)
            self._attached = False

    def __enter__(self) -> XdpAttachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()


class TcAttachment:
    """A tc (clsact) classifier on an interface's ingress or egress."""

    def __init__(self, prog: Program, ifindex: int, *, ingress: bool = True) -> None:
        self._hook = L.TcHook(sz=ctypes.sizeof(L.TcHook), ifindex=ifindex,
                              attach_point=BPF_TC_INGRESS if ingress else BPF_TC_EGRESS)
        ret = L.bpf_tc_hook_create(ctypes.byref(self._hook))
        if ret < 0 and ret != -17:  # EEXIST: the clsact qdisc is already there
            L.check(ret, f"create clsact hook on ifindex {ifindex}")
        self._opts = L.TcOpts(sz=ctypes.sizeof(L.TcOpts), prog_fd=prog.fd)
        L.check(L.bpf_tc_attach(ctypes.byref(self._hook), ctypes.byref(self._opts)),
                f"attach tc program '{prog.name}' to ifindex {ifindex}")
        self._attached = True

    def detach(self) -> None:
        if self._attached:
            opts = L.TcOpts(sz=ctypes.sizeof(L.TcOpts), handle=self._opts.handle,
                            priority=self._opts.priority)
            L.bpf_tc_detach(ctypes.byref(self._hook), ctypes.byref(opts))
            self._attached = False

    def __enter__(self) -> TcAttachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()
