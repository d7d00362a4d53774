"""XDP and tc attachments by ifindex (netlink), with explicit modes.

Link-based XDP (:meth:`Program.attach_xdp`) lets the kernel pick driver or
generic mode; the feature probe and the firewall need to ask for one, which
only the netlink interface offers. Both attachments act in the calling
thread's network namespace.
"""

from __future__ import annotations

import ctypes
from typing import Literal

from . import _libbpf as L
from .object import Program

__all__ = ["TcAttachment", "XdpAttachment"]

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
BPF_TC_INGRESS, BPF_TC_EGRESS = 1 << 0, 1 << 1

XdpMode = Literal["native", "generic"]


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
