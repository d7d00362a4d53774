"""ctypes declarations for the system libbpf (libbpf.so.1).

This module is the only place in bpfguard that touches libbpf. Every function
that returns a pointer declares ``restype``: ctypes' default ``int`` would cut
64-bit pointers in half and make libbpf crash later.

libbpf 1.x returns NULL and sets errno on failure for pointer-returning calls,
and a negative errno for int-returning ones; :func:`check` and :func:`check_ptr`
turn both into :class:`~bpfguard.errors.KernelError`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char,
    c_char_p,
    c_int,
    c_long,
    c_size_t,
    c_ssize_t,
    c_uint,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Any

from ..errors import KernelError

log = logging.getLogger("bpfguard.libbpf")

LIBBPF_PATH = "libbpf.so.1"

try:
    lib = ctypes.CDLL(LIBBPF_PATH, use_errno=True)
except OSError as exc:  # pragma: no cover - depends on the host
    raise ImportError(
        f"cannot load {LIBBPF_PATH} ({exc}); install Debian's libbpf1 (scripts/setup does)"
    ) from exc

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
_libc.vsnprintf.restype = c_int

obj_p = c_void_p
prog_p = c_void_p
map_p = c_void_p
link_p = c_void_p
btf_p = c_void_p
rb_p = c_void_p


def _fn(name: str, restype: Any, *argtypes: Any) -> Any:
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


# struct btf_type and friends: kernel UAPI (include/uapi/linux/btf.h), stable.
class BtfType(Structure):
    _fields_ = [("name_off", c_uint32), ("info", c_uint32), ("size_or_type", c_uint32)]


class BtfMember(Structure):
    _fields_ = [("name_off", c_uint32), ("type", c_uint32), ("offset", c_uint32)]


class BtfEnum(Structure):
    _fields_ = [("name_off", c_uint32), ("val", ctypes.c_int32)]


class BtfArray(Structure):
    _fields_ = [("type", c_uint32), ("index_type", c_uint32), ("nelems", c_uint32)]


class BtfVarSecinfo(Structure):
    _fields_ = [("type", c_uint32), ("offset", c_uint32), ("size", c_uint32)]


# libbpf option structs, as declared in libbpf 1.1's <bpf/libbpf.h>; each
# starts with `sz` so older and newer libbpf versions accept it.
class UprobeOpts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("ref_ctr_offset", c_size_t),
        ("bpf_cookie", c_uint64),
        ("retprobe", c_bool),
        ("func_name", c_char_p),
    ]


class MapCreateOpts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("btf_fd", c_uint32),
        ("btf_key_type_id", c_uint32),
        ("btf_value_type_id", c_uint32),
        ("btf_vmlinux_value_type_id", c_uint32),
        ("inner_map_fd", c_uint32),
        ("map_flags", c_uint32),
        ("map_extra", c_uint64),
        ("numa_node", c_uint32),
        ("map_ifindex", c_uint32),
    ]


class TcHook(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("ifindex", c_int),
        ("attach_point", c_int),
        ("parent", c_uint32),
    ]


class TcOpts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("prog_fd", c_int),
        ("flags", c_uint32),
        ("prog_id", c_uint32),
        ("handle", c_uint32),
        ("priority", c_uint32),
    ]


class MapBatchOpts(Structure):
    _fields_ = [("sz", c_size_t), ("elem_flags", c_uint64), ("flags", c_uint64)]


class LinkCreateOpts(Structure):
    _fields_ = [("sz", c_size_t), ("flags", c_uint32)]


class XdpQueryOpts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("prog_id", c_uint32),
        ("drv_prog_id", c_uint32),
        ("hw_prog_id", c_uint32),
        ("skb_prog_id", c_uint32),
        ("attach_mode", c_uint8),
    ]


# object
bpf_object__open_file = _fn("bpf_object__open_file", obj_p, c_char_p, c_void_p)
bpf_object__load = _fn("bpf_object__load", c_int, obj_p)
bpf_object__close = _fn("bpf_object__close", None, obj_p)
bpf_object__next_program = _fn("bpf_object__next_program", prog_p, obj_p, prog_p)
bpf_object__next_map = _fn("bpf_object__next_map", map_p, obj_p, map_p)
bpf_object__btf = _fn("bpf_object__btf", btf_p, obj_p)

# program
bpf_program__name = _fn("bpf_program__name", c_char_p, prog_p)
bpf_program__section_name = _fn("bpf_program__section_name", c_char_p, prog_p)
bpf_program__fd = _fn("bpf_program__fd", c_int, prog_p)
bpf_program__set_autoload = _fn("bpf_program__set_autoload", c_int, prog_p, c_bool)
bpf_program__autoload = _fn("bpf_program__autoload", c_bool, prog_p)
bpf_program__set_log_buf = _fn("bpf_program__set_log_buf", c_int, prog_p, c_void_p, c_size_t)
bpf_program__set_attach_target = _fn(
    "bpf_program__set_attach_target", c_int, prog_p, c_int, c_char_p
)
bpf_program__attach = _fn("bpf_program__attach", link_p, prog_p)
bpf_program__attach_raw_tracepoint = _fn(
    "bpf_program__attach_raw_tracepoint", link_p, prog_p, c_char_p
)
bpf_program__attach_tracepoint = _fn(
    "bpf_program__attach_tracepoint", link_p, prog_p, c_char_p, c_char_p
)
bpf_program__attach_trace = _fn("bpf_program__attach_trace", link_p, prog_p)
bpf_program__attach_lsm = _fn("bpf_program__attach_lsm", link_p, prog_p)
bpf_program__attach_kprobe = _fn("bpf_program__attach_kprobe", link_p, prog_p, c_bool, c_char_p)
bpf_program__attach_uprobe_opts = _fn(
    "bpf_program__attach_uprobe_opts", link_p, prog_p, c_int, c_char_p, c_size_t,
    POINTER(UprobeOpts),
)
bpf_program__attach_cgroup = _fn("bpf_program__attach_cgroup", link_p, prog_p, c_int)
bpf_program__attach_xdp = _fn("bpf_program__attach_xdp", link_p, prog_p, c_int)

# tc (clsact) and XDP by ifindex
bpf_tc_hook_create = _fn("bpf_tc_hook_create", c_int, POINTER(TcHook))
bpf_tc_hook_destroy = _fn("bpf_tc_hook_destroy", c_int, POINTER(TcHook))
bpf_tc_attach = _fn("bpf_tc_attach", c_int, POINTER(TcHook), POINTER(TcOpts))
bpf_tc_detach = _fn("bpf_tc_detach", c_int, POINTER(TcHook), POINTER(TcOpts))
bpf_xdp_attach = _fn("bpf_xdp_attach", c_int, c_int, c_int, c_uint32, c_void_p)
bpf_xdp_detach = _fn("bpf_xdp_detach", c_int, c_int, c_uint32, c_void_p)
bpf_xdp_query = _fn("bpf_xdp_query", c_int, c_int, c_int, POINTER(XdpQueryOpts))
bpf_link_create = _fn("bpf_link_create", c_int, c_int, c_int, c_int, POINTER(LinkCreateOpts))
bpf_link_detach = _fn("bpf_link_detach", c_int, c_int)
bpf_prog_get_fd_by_id = _fn("bpf_prog_get_fd_by_id", c_int, c_uint32)
bpf_map_get_fd_by_id = _fn("bpf_map_get_fd_by_id", c_int, c_uint32)

# link
bpf_link__destroy = _fn("bpf_link__destroy", c_int, link_p)
bpf_link__fd = _fn("bpf_link__fd", c_int, link_p)
bpf_link__pin = _fn("bpf_link__pin", c_int, link_p, c_char_p)
bpf_link__unpin = _fn("bpf_link__unpin", c_int, link_p)
bpf_link__open = _fn("bpf_link__open", link_p, c_char_p)

# map (object side)
bpf_map__name = _fn("bpf_map__name", c_char_p, map_p)
bpf_map__fd = _fn("bpf_map__fd", c_int, map_p)
bpf_map__type = _fn("bpf_map__type", c_int, map_p)
bpf_map__key_size = _fn("bpf_map__key_size", c_uint32, map_p)
bpf_map__value_size = _fn("bpf_map__value_size", c_uint32, map_p)
bpf_map__max_entries = _fn("bpf_map__max_entries", c_uint32, map_p)
bpf_map__inner_map = _fn("bpf_map__inner_map", map_p, map_p)
bpf_map__set_max_entries = _fn("bpf_map__set_max_entries", c_int, map_p, c_uint32)
bpf_map__reuse_fd = _fn("bpf_map__reuse_fd", c_int, map_p, c_int)
bpf_map__set_autocreate = _fn("bpf_map__set_autocreate", c_int, map_p, c_bool)
bpf_map__initial_value = _fn("bpf_map__initial_value", c_void_p, map_p, POINTER(c_size_t))
bpf_map__btf_value_type_id = _fn("bpf_map__btf_value_type_id", c_uint32, map_p)

# map (fd side)
bpf_map_lookup_elem = _fn("bpf_map_lookup_elem", c_int, c_int, c_void_p, c_void_p)
bpf_map_update_elem = _fn("bpf_map_update_elem", c_int, c_int, c_void_p, c_void_p, c_uint64)
bpf_map_delete_elem = _fn("bpf_map_delete_elem", c_int, c_int, c_void_p)
bpf_map_get_next_key = _fn("bpf_map_get_next_key", c_int, c_int, c_void_p, c_void_p)
bpf_map_lookup_batch = _fn(
    "bpf_map_lookup_batch", c_int, c_int, c_void_p, c_void_p, c_void_p, c_void_p,
    POINTER(c_uint32), POINTER(MapBatchOpts),
)
bpf_map_update_batch = _fn(
    "bpf_map_update_batch", c_int, c_int, c_void_p, c_void_p, POINTER(c_uint32),
    POINTER(MapBatchOpts),
)
bpf_obj_pin = _fn("bpf_obj_pin", c_int, c_int, c_char_p)
bpf_obj_get = _fn("bpf_obj_get", c_int, c_char_p)
bpf_map_create = _fn("bpf_map_create", c_int, c_int, c_char_p, c_uint32, c_uint32, c_uint32,
                     POINTER(MapCreateOpts))
bpf_obj_get_info_by_fd = _fn("bpf_obj_get_info_by_fd", c_int, c_int, c_void_p, POINTER(c_uint32))
bpf_enable_stats = _fn("bpf_enable_stats", c_int, c_int)

# ring buffer
RingSampleFn = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)
ring_buffer__new = _fn("ring_buffer__new", rb_p, c_int, RingSampleFn, c_void_p, c_void_p)
ring_buffer__poll = _fn("ring_buffer__poll", c_int, rb_p, c_int)
ring_buffer__consume = _fn("ring_buffer__consume", c_int, rb_p)
ring_buffer__free = _fn("ring_buffer__free", None, rb_p)
ring_buffer__epoll_fd = _fn("ring_buffer__epoll_fd", c_int, rb_p)

# BTF
btf__parse = _fn("btf__parse", btf_p, c_char_p, c_void_p)
btf__parse_split = _fn("btf__parse_split", btf_p, c_char_p, c_void_p)
btf__load_vmlinux_btf = _fn("btf__load_vmlinux_btf", btf_p)
btf__free = _fn("btf__free", None, btf_p)
btf__type_cnt = _fn("btf__type_cnt", c_uint32, btf_p)
btf__type_by_id = _fn("btf__type_by_id", POINTER(BtfType), btf_p, c_uint32)
btf__name_by_offset = _fn("btf__name_by_offset", c_char_p, btf_p, c_uint32)
btf__find_by_name_kind = _fn("btf__find_by_name_kind", c_int, btf_p, c_char_p, c_uint32)
btf__resolve_size = _fn("btf__resolve_size", c_ssize_t, btf_p, c_uint32)

# feature probes
libbpf_probe_bpf_prog_type = _fn("libbpf_probe_bpf_prog_type", c_int, c_int, c_void_p)
libbpf_probe_bpf_map_type = _fn("libbpf_probe_bpf_map_type", c_int, c_int, c_void_p)
libbpf_probe_bpf_helper = _fn("libbpf_probe_bpf_helper", c_int, c_int, c_int, c_void_p)

# logging: libbpf prints through a callback taking a va_list
PrintFn = CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
libbpf_set_print = _fn("libbpf_set_print", c_void_p, PrintFn)

LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2

_capture = threading.local()


def _print(level: int, fmt: bytes, args: int) -> int:
    buf = ctypes.create_string_buffer(4096)
    _libc.vsnprintf(buf, len(buf), fmt, args)
    text = buf.value.decode(errors="replace").rstrip("\n")
    lines = getattr(_capture, "lines", None)
    if lines is not None and level <= LIBBPF_INFO:
        lines.append(text)
    if level == LIBBPF_WARN:
        log.debug("%s", text)
    return 0


_print_cb = PrintFn(_print)  # kept referenced: libbpf holds the pointer forever
libbpf_set_print(_print_cb)


class capture_messages:
    """Collects libbpf's warnings on this thread while the block runs."""

    def __enter__(self) -> list[str]:
        self.lines: list[str] = []
        _capture.lines = self.lines
        return self.lines

    def __exit__(self, *exc: object) -> None:
        _capture.lines = None


def errno_now() -> int:
    return ctypes.get_errno() or 1


def check(ret: int, what: str) -> int:
    """Raises KernelError for libbpf's negative-errno convention."""
    if ret < 0:
        raise KernelError(what, -ret)
    return ret


def check_ptr(ptr: int | None, what: str) -> int:
    """Raises KernelError for libbpf's NULL-and-errno convention."""
    if not ptr:
        raise KernelError(what, errno_now())
    return ptr


__all__ = [
    "BtfArray",
    "BtfEnum",
    "BtfMember",
    "BtfType",
    "BtfVarSecinfo",
    "LinkCreateOpts",
    "MapBatchOpts",
    "TcHook",
    "TcOpts",
    "UprobeOpts",
    "XdpQueryOpts",
    "capture_messages",
    "check",
    "check_ptr",
    "c_char",
    "c_long",
    "c_uint",
    "c_uint16",
    "lib",
]
