"""Struct layouts and enums from BTF.

The kernel/user ABI is written once, in C (``bpf/include/bpfguard.h``). The
compiled objects carry its BTF, and :class:`Btf` turns that into ctypes types
and Python enums, so user space never keeps a hand-copied twin. The same code
reads the kernel's own BTF (``/sys/kernel/btf/vmlinux``) for kernel UAPI
structs such as ``bpf_prog_info``.

Example::

    with Btf.from_file("sensor.bpf.o") as btf:
        Exec = btf.struct("bg_exec_event")
        kinds = btf.enum("bg_event_type")
"""

from __future__ import annotations

import ctypes
import struct
import threading
from collections.abc import Sequence
from typing import Any

from ..errors import KernelError
from . import _libbpf as L

__all__ = ["Btf"]

_INT, _PTR, _ARRAY, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
_VOLATILE, _CONST, _RESTRICT, _FUNC, _FUNC_PROTO, _VAR, _DATASEC = 9, 10, 11, 12, 13, 14, 15
_FLOAT, _DECL_TAG, _TYPE_TAG, _ENUM64 = 16, 17, 18, 19
_MODIFIERS = {_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG}

_INTS = {
    (1, False): ctypes.c_uint8, (1, True): ctypes.c_int8,
    (2, False): ctypes.c_uint16, (2, True): ctypes.c_int16,
    (4, False): ctypes.c_uint32, (4, True): ctypes.c_int32,
    (8, False): ctypes.c_uint64, (8, True): ctypes.c_int64,
}


class Btf:
    """A parsed BTF blob: types by name, converted to ctypes on demand."""

    def __init__(self, handle: int, *, owned: bool) -> None:
        self._h = handle
        self._owned = owned
        self._ctypes: dict[int, Any] = {}
        # one record is cached before its fields are set (so that it can refer
        # to itself): another thread must not see it half-built
        self._ctypes_lock = threading.RLock()

    @classmethod
    def from_file(cls, path: str) -> Btf:
        """Parses the BTF of an ELF object (or a raw BTF file)."""
        h = L.check_ptr(L.btf__parse(path.encode(), None), f"parse BTF of {path}")
        return cls(h, owned=True)

    @classmethod
    def vmlinux(cls) -> Btf:
        """The running kernel's BTF."""
        return cls(L.check_ptr(L.btf__load_vmlinux_btf(), "load kernel BTF"), owned=True)

    @classmethod
    def module(cls, name: str, base: Btf) -> Btf:
        """A loaded kernel module's BTF (``/sys/kernel/btf/NAME``), split
        over `base`, the kernel's: its types see the kernel's. `base` must
        outlive it."""
        path = f"/sys/kernel/btf/{name}"
        return cls(L.check_ptr(L.btf__parse_split(path.encode(), base._h),
                               f"parse BTF of module {name} ({path})"), owned=True)

    def close(self) -> None:
        if self._owned and self._h:
            L.btf__free(self._h)
        self._h = 0

    def __enter__(self) -> Btf:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw access ----------------------------------------------------------

    def _type(self, tid: int) -> L.BtfType:
        t = L.btf__type_by_id(self._h, tid)
        if not t:
            raise KernelError(f"BTF type {tid}", 2)
        contents: L.BtfType = t.contents
        return contents

    @staticmethod
    def _kind(t: L.BtfType) -> int:
        return int(t.info >> 24) & 0x1F

    @staticmethod
    def _vlen(t: L.BtfType) -> int:
        return int(t.info) & 0xFFFF

    def _name(self, off: int) -> str:
        n = L.btf__name_by_offset(self._h, off)
        return n.decode() if n else ""

    def _tail(self, t: L.BtfType, kind: Any, count: int) -> Any:
        """The records that follow a btf_type (members, enum values, ...)."""
        addr = ctypes.addressof(t) + ctypes.sizeof(L.BtfType)
        return (kind * count).from_address(addr)

    def find(self, name: str, kind: int) -> int:
        tid = L.btf__find_by_name_kind(self._h, name.encode(), kind)
        if tid < 0:
            raise KeyError(f"no BTF type {name!r} (kind {kind})")
        return int(tid)

    def _strip(self, tid: int) -> int:
        while True:
            t = self._type(tid)
            if self._kind(t) not in _MODIFIERS:
                return tid
            tid = int(t.size_or_type)

    # -- conversion ----------------------------------------------------------

    def struct(self, name: str) -> Any:
        """The ctypes Structure for ``struct name``."""
        return self.ctype(self.find(name, _STRUCT))

    def enum(self, name: str) -> dict[str, int]:
        """The values of ``enum name``, by enumerator name."""
        t = self._type(self.find(name, _ENUM))
        return {self._name(e.name_off): e.val for e in self._tail(t, L.BtfEnum, self._vlen(t))}

    def function(self, name: str) -> tuple[list[tuple[str, str]], str]:
        """Parameters (name, C type) and return type of function `name`,
        e.g. ``([("fd", "unsigned int"), ("file", "struct file *")], "void")``
        for the kernel's fd_install. KeyError if BTF has no such function."""
        func = self._type(self.find(name, _FUNC))
        proto = self._type(int(func.size_or_type))
        params = self._tail(proto, L.BtfEnum, self._vlen(proto))  # (name_off, type): one layout
        return ([(self._name(p.name_off), self.type_name(p.val)) for p in params],
                self.type_name(int(proto.size_or_type)))

    def function_ids(self, name: str) -> tuple[list[tuple[str, int]], int]:
        """Like :meth:`function`, with BTF type ids instead of spellings."""
        func = self._type(self.find(name, _FUNC))
        proto = self._type(int(func.size_or_type))
        params = self._tail(proto, L.BtfEnum, self._vlen(proto))
        return ([(self._name(p.name_off), int(p.val) & 0xFFFFFFFF) for p in params],
                int(proto.size_or_type))

    def named_type(self, name: str) -> int:
        """The id of the struct, union or typedef called `name` (``struct
        sockaddr_in`` or ``sockaddr_in``). KeyError if there is none."""
        bare = name.removeprefix("struct ").removeprefix("union ").strip()
        kinds = {"struct": (_STRUCT,), "union": (_UNION,)}.get(name.split()[0],
                                                               (_STRUCT, _UNION, _TYPEDEF))
        for kind in kinds:
            tid = L.btf__find_by_name_kind(self._h, bare.encode(), kind)
            if tid > 0:
                return int(tid)
        raise KeyError(f"no struct, union or typedef {bare!r} in BTF")

    def shape(self, tid: int) -> tuple[str, int, bool, int]:
        """What a value of type `tid` is, qualifiers and typedefs dropped:
        (kind, size, signed, inner) with kind one of ``int`` (enums too),
        ``char`` (char, signed char, unsigned char: text), ``ptr``, ``array``, ``struct`` (unions
        too), ``void``, ``other``; `inner` is a pointer's or array's element
        type id."""
        tid = self._strip(tid)
        if tid == 0:
            return ("void", 0, False, 0)
        t = self._type(tid)
        kind = self._kind(t)
        if kind == _INT:
            enc = int(self._tail(t, ctypes.c_uint32, 1)[0])
            size = int(t.size_or_type)
            if size == 1 and (enc >> 24 & 2 or self._name(t.name_off).endswith("char")):
                return ("char", 1, bool(enc >> 24 & 1), 0)
            return ("int", size, bool(enc >> 24 & 1), 0)
        if kind in (_ENUM, _ENUM64):
            return ("int", int(t.size_or_type), False, 0)
        if kind == _PTR:
            return ("ptr", 8, False, int(t.size_or_type))
        if kind == _ARRAY:
            arr = self._tail(t, L.BtfArray, 1)[0]
            elem = self.shape(arr.type)[1]
            return ("array", elem * int(arr.nelems), False, int(arr.type))
        if kind in (_STRUCT, _UNION):
            return ("struct", int(t.size_or_type), False, 0)
        return ("other", 0, False, 0)

    def member(self, tid: int, name: str) -> tuple[int, int] | None:
        """(byte offset, type id) of member `name` of struct or union `tid`,
        looked for inside anonymous members too; None if it has none.
        ValueError for a bitfield, which has no byte address."""
        t = self._type(self._strip(tid))
        kflag = t.info >> 31
        for m in self._tail(t, L.BtfMember, self._vlen(t)):
            bit_off = m.offset & 0xFFFFFF if kflag else m.offset
            mname = self._name(m.name_off)
            if mname == name:
                inner = self._type(self._strip(m.type))
                if (kflag and m.offset >> 24) or bit_off % 8 or (
                        self._kind(inner) == _INT
                        and self._int_bits(m.type) != int(inner.size_or_type) * 8):
                    raise ValueError(f"{name} is a bitfield")
                return bit_off // 8, int(m.type)
            if not mname and self._kind(self._type(self._strip(m.type))) in (_STRUCT, _UNION):
                found = self.member(m.type, name)
                if found is not None:
                    return bit_off // 8 + found[0], found[1]
        return None

    def type_name(self, tid: int) -> str:
        """A C spelling of type `tid`, qualifiers dropped: ``struct file *``."""
        if tid == 0:
            return "void"
        t = self._type(tid)
        kind = self._kind(t)
        if kind == _PTR:
            return self.type_name(int(t.size_or_type)) + " *"
        if kind in (_VOLATILE, _CONST, _RESTRICT, _TYPE_TAG):
            return self.type_name(int(t.size_or_type))
        if kind == _ARRAY:
            arr = self._tail(t, L.BtfArray, 1)[0]
            return f"{self.type_name(arr.type)}[{arr.nelems}]"
        tag = {_STRUCT: "struct ", _UNION: "union ", _ENUM: "enum ", _ENUM64: "enum "}.get(kind, "")
        if kind == _FWD:
            tag = "union " if t.info >> 31 else "struct "
        return tag + (self._name(t.name_off) or "<anonymous>")

    def datasec(self, name: str) -> dict[str, tuple[int, Any]]:
        """Variables of a data section (``.rodata``, ``.bss``): name -> (offset, ctype)."""
        t = self._type(self.find(name, _DATASEC))
        out: dict[str, tuple[int, Any]] = {}
        for v in self._tail(t, L.BtfVarSecinfo, self._vlen(t)):
            var = self._type(v.type)
            out[self._name(var.name_off)] = (v.offset, self.ctype(var.size_or_type))
        return out

    def ctype(self, tid: int) -> Any:
        """Converts BTF type `tid` to a ctypes type (cached; thread-safe)."""
        with self._ctypes_lock:
            return self._ctype(tid)

    def _ctype(self, tid: int) -> Any:
        tid = self._strip(tid)
        if tid in self._ctypes:
            return self._ctypes[tid]
        t = self._type(tid)
        kind = self._kind(t)
        ct: Any
        if kind == _INT:
            enc = self._tail(t, ctypes.c_uint32, 1)[0]
            size, signed = t.size_or_type, bool((enc >> 24) & 1)
            is_char = (enc >> 24) & 2 or self._name(t.name_off) == "char"
            ct = ctypes.c_char if size == 1 and is_char else _INTS[(size, signed)]
        elif kind == _PTR:
            ct = ctypes.c_uint64
        elif kind in (_ENUM, _ENUM64):
            ct = _INTS[(t.size_or_type, False)]
        elif kind == _ARRAY:
            arr = self._tail(t, L.BtfArray, 1)[0]
            ct = self.ctype(arr.type) * arr.nelems
        elif kind in (_STRUCT, _UNION):
            try:
                ct = self._record(tid, t, kind == _UNION)
            except BaseException:
                self._ctypes.pop(tid, None)   # not the half-built class it cached
                raise
        else:
            raise TypeError(f"BTF kind {kind} of type {tid} has no ctypes equivalent")
        self._ctypes[tid] = ct
        return ct

    def _record(self, tid: int, t: L.BtfType, union: bool) -> Any:
        """A Structure whose field offsets equal BTF's, padding made explicit.

        Bitfields are left as padding bytes: the ABI headers have none, and
        the kernel structs read through here only need their whole fields.
        """
        name = self._name(t.name_off) or f"anon_{tid}"
        size = t.size_or_type
        kflag = t.info >> 31
        base: Any = ctypes.Union if union else ctypes.Structure
        cls: Any = type(name, (base,), {"_pack_": 1})
        self._ctypes[tid] = cls  # self-referencing records resolve to it
        fields: list[tuple[str, Any]] = []
        anonymous: list[str] = []
        at = 0
        for i, m in enumerate(self._tail(t, L.BtfMember, self._vlen(t))):
            bit_off = m.offset & 0xFFFFFF if kflag else m.offset
            bitfield = (m.offset >> 24) if kflag else 0
            mtype = self.ctype(m.type)
            if bitfield or bit_off % 8 or (
                not kflag and self._kind(self._type(self._strip(m.type))) == _INT
                and ctypes.sizeof(mtype) * 8 != self._int_bits(m.type)
            ):
                continue
            off = bit_off // 8
            if union:
                at = 0
            elif off < at:
                continue
            elif off > at:
                fields.append((f"_pad{i}", ctypes.c_uint8 * (off - at)))
            mname = self._name(m.name_off)
            if not mname:
                mname = f"_anon{i}"
                anonymous.append(mname)
            fields.append((mname, mtype))
            at = off + ctypes.sizeof(mtype)
        if not union and at < size:
            fields.append(("_pad_end", ctypes.c_uint8 * (size - at)))
        if anonymous:
            cls._anonymous_ = anonymous
        cls._fields_ = fields
        if ctypes.sizeof(cls) != size:
            raise TypeError(f"layout of {name}: ctypes {ctypes.sizeof(cls)} != BTF {size}")
        return cls

    def _int_bits(self, tid: int) -> int:
        t = self._type(self._strip(tid))
        return int(self._tail(t, ctypes.c_uint32, 1)[0] & 0xFF)


_STRUCT_CODES = {ctypes.c_uint8: "B", ctypes.c_int8: "b", ctypes.c_uint16: "H",
                 ctypes.c_int16: "h", ctypes.c_uint32: "I", ctypes.c_int32: "i",
                 ctypes.c_uint64: "Q", ctypes.c_int64: "q", ctypes.c_char: "c"}


def field_offset(cls: Any, path: str) -> tuple[int, Any]:
    """Offset and ctype of the field `path` ("hdr.tgid", "arg_file.2.flags",
    "args.0") of a structure :meth:`Btf.struct` made."""
    off, t = 0, cls
    for part in path.split("."):
        if part.isdigit():
            t = t._type_
            off += int(part) * ctypes.sizeof(t)
        else:
            off += getattr(t, part).offset
            t = dict(t._fields_)[part]
    return off, t


def unpacker(cls: Any, paths: Sequence[str]) -> tuple[struct.Struct, dict[str, int]]:
    """A struct.Struct reading just the scalar fields `paths` of a structure
    :meth:`Btf.struct` made (little-endian, as the BPF target writes them), and
    each path's index in the tuple it unpacks. One C call per record, where
    reading the same fields through ctypes costs a Python object per access:
    the decoder's hot path. char arrays read as bytes."""
    leaves = sorted((*field_offset(cls, p), p) for p in paths)
    fmt, pos, index = "<", 0, {}
    for i, (off, t, p) in enumerate(leaves):
        if off < pos:
            raise ValueError(f"{cls.__name__}.{p} overlaps the field before it")
        if off > pos:
            fmt += f"{off - pos}x"
        if isinstance(t, type) and issubclass(t, ctypes.Array) \
                and getattr(t, "_type_", None) is ctypes.c_char:
            fmt += f"{t._length_}s"
        else:
            fmt += _STRUCT_CODES[t]
        pos = off + ctypes.sizeof(t)
        index[p] = i
    return struct.Struct(fmt), index
