"""BPF objects, programs, maps and links over libbpf.

Lifecycle: :meth:`BpfObject.open` -> configure (``rodata``, map sizes,
``reuse_map``, autoload) -> :meth:`BpfObject.load` -> attach -> close. Closing
an object destroys its links first; every class is a context manager so tests
and the agent detach deterministically.

Example::

    with BpfObject.open(bpf_object_path("sensor")) as obj:
        for prog in obj.programs:       # the policy hooks' copies need targets
            prog.autoload = prog.name.startswith("bg_sched_")
        obj.rodata["targ_args_max"] = 1024
        obj.load()
        with obj.program("bg_sched_exec").attach():
            ...
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import AttachError, KernelError, LoadError
from ..files import check_trusted_dir
from . import _libbpf as L
from .btf import Btf

__all__ = [
    "PIN_ROOT",
    "BpfObject",
    "GlobalData",
    "Link",
    "Map",
    "Program",
    "kernel_has_helper",
    "kernel_has_map_type",
]

log = logging.getLogger("bpfguard.loader")

PIN_ROOT = Path("/sys/fs/bpf/bpfguard")
# verifier log room per program being loaded; allocated for the load only
# (136 programs of 1 MiB each cost the probe 136 MiB of RSS when they lived
# as long as the object)
_LOG_SIZE = 1 << 20
_LOG_TAIL_LINES = 40

BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2
_ENOTSUPP = 524  # the kernel's internal "operation not supported"; Python's errno lacks it
_PERCPU_TYPES = {5, 6, 10}  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH


def _possible_cpus() -> int:
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += (int(hi) if hi else int(lo)) - int(lo) + 1
    return n


class Link:
    """An attachment of a program. Destroying it detaches it, unless it was
    pinned `lasting`."""

    def __init__(self, handle: int, description: str) -> None:
        self._h = handle
        self.description = description
        self.pinned: Path | None = None   # a pin that destroy() removes

    @property
    def fd(self) -> int:
        return int(L.bpf_link__fd(self._h))

    def pin(self, path: str | os.PathLike[str], *, lasting: bool = False) -> None:
        """Pins the link so the attachment outlives this process if it dies
        without destroying it (a crash); `lasting`: however it ends (a
        firewall, whose whole state is its pins)."""
        check_trusted_dir(Path(path).parent, f"pin {path}", create=True)
        L.check(L.bpf_link__pin(self._h, os.fsencode(path)), f"pin link at {path}")
        if not lasting:
            self.pinned = Path(path)

    def unpin(self) -> None:
        if self.pinned is not None:
            L.check(L.bpf_link__unpin(self._h), f"unpin link at {self.pinned}")
            self.pinned = None

    def destroy(self) -> None:
        if self._h:
            # the pin first: a pin left behind would keep the program attached
            try:
                self.unpin()
            except KernelError as exc:
                log.error("%s stays attached: %s", self.description, exc)
            L.bpf_link__destroy(self._h)
            self._h = 0

    @property
    def alive(self) -> bool:
        return bool(self._h)

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return f"<Link {self.description}{'' if self._h else ' (destroyed)'}>"


class Program:
    """One program of an object."""

    def __init__(self, obj: BpfObject, handle: int) -> None:
        self._obj = obj
        self._h = handle
        self.name: str = L.bpf_program__name(handle).decode()
        self.section: str = (L.bpf_program__section_name(handle) or b"").decode()
        self._log: ctypes.Array[ctypes.c_char] | None = None  # during load() only

    @property
    def fd(self) -> int:
        return int(L.bpf_program__fd(self._h))

    @property
    def autoload(self) -> bool:
        return bool(L.bpf_program__autoload(self._h))

    @autoload.setter
    def autoload(self, on: bool) -> None:
        L.check(L.bpf_program__set_autoload(self._h, on), f"set autoload of {self.name}")

    def set_attach_target(self, function: str) -> None:
        """Retargets an fentry/fexit/fmod_ret/lsm program before load."""
        L.check(
            L.bpf_program__set_attach_target(self._h, 0, function.encode()),
            f"set attach target of {self.name}",
        )

    def _link(self, ptr: int | None, how: str) -> Link:
        if not ptr:
            err = L.errno_now()
            raise AttachError(f"attach program '{self.name}' ({how})", err)
        link = Link(ptr, f"{self.name} {how}")
        self._obj._links.append(link)
        return link

    def attach(self) -> Link:
        """Attaches as the section name says (tp_btf/..., raw_tp/..., lsm/..., ...)."""
        return self._link(L.bpf_program__attach(self._h), self.section)

    def attach_raw_tracepoint(self, name: str) -> Link:
        return self._link(L.bpf_program__attach_raw_tracepoint(self._h, name.encode()),
                          f"raw_tp/{name}")

    def attach_tracepoint(self, category: str, name: str) -> Link:
        return self._link(
            L.bpf_program__attach_tracepoint(self._h, category.encode(), name.encode()),
            f"tracepoint/{category}/{name}",
        )

    def attach_kprobe(self, function: str, *, retprobe: bool = False) -> Link:
        return self._link(
            L.bpf_program__attach_kprobe(self._h, retprobe, function.encode()),
            f"{'kretprobe' if retprobe else 'kprobe'}/{function}",
        )

    def attach_uprobe(self, binary: str, function: str = "", *, offset: int = 0,
                      pid: int = -1, retprobe: bool = False, ref_ctr_offset: int = 0,
                      cookie: int = 0) -> Link:
        """A uprobe at `function` (+ `offset`) in `binary`, or at file offset
        `offset` when `function` is empty; `cookie` is what
        bpf_get_attach_cookie() returns in the program."""
        opts = L.UprobeOpts(sz=ctypes.sizeof(L.UprobeOpts), retprobe=retprobe,
                            func_name=function.encode() or None,
                            ref_ctr_offset=ref_ctr_offset, bpf_cookie=cookie)
        where = f"{function}+{offset:#x}" if function and offset else function or f"{offset:#x}"
        return self._link(
            L.bpf_program__attach_uprobe_opts(self._h, pid, binary.encode(), offset,
                                              ctypes.byref(opts)),
            f"uprobe/{binary}:{where}",
        )

    def attach_cgroup(self, cgroup_path: str | os.PathLike[str]) -> Link:
        fd = os.open(cgroup_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return self._link(L.bpf_program__attach_cgroup(self._h, fd), f"cgroup {cgroup_path}")
        finally:
            os.close(fd)

    def attach_xdp(self, ifindex: int) -> Link:
        """XDP through a bpf_link (driver mode when the driver has it, else generic)."""
        return self._link(L.bpf_program__attach_xdp(self._h, ifindex), f"xdp ifindex {ifindex}")

    def stats(self) -> dict[str, int]:
        """Kernel run statistics: run_cnt, run_time_ns (with BPF stats enabled) and
        recursion_misses (runs the kernel skipped: events lost before the program)."""
        info_t = self._obj.kernel_btf().struct("bpf_prog_info")
        info = info_t()
        size = ctypes.c_uint32(ctypes.sizeof(info))
        L.check(L.bpf_obj_get_info_by_fd(self.fd, ctypes.byref(info), ctypes.byref(size)),
                f"info of program {self.name}")
        return {k: int(getattr(info, k)) for k in ("run_cnt", "run_time_ns", "recursion_misses")}

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The end of the verifier log of a failed load ("" when there is none)."""
        if self._log is None:
            return ""
        text = self._log.value.decode(errors="replace").rstrip()
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"<Program {self.name} ({self.section})>"


class Map:
    """A BPF map: element access by bytes or ctypes values.

    Keys and values may be ``bytes`` or ctypes instances; lookups return
    ``bytes`` (per-CPU maps: a list with one entry per possible CPU).
    """

    def __init__(self, name: str, fd: int, map_type: int, key_size: int, value_size: int,
                 max_entries: int, *, owned_fd: bool = False) -> None:
        self.name = name
        self._fd = fd
        self.type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self._owned_fd = owned_fd
        self.percpu = map_type in _PERCPU_TYPES
        self._ncpu = _possible_cpus() if self.percpu else 1
        # per-CPU values are laid out in 8-byte aligned slots
        self._slot = (value_size + 7) & ~7 if self.percpu else value_size

    @classmethod
    def from_pin(cls, path: str | os.PathLike[str]) -> Map:
        """Opens a pinned map (the caller owns the fd; close() releases it),
        in a directory only root can change."""
        check_trusted_dir(Path(path).parent, f"pinned map {path}")
        fd = L.bpf_obj_get(os.fsencode(path))
        if fd < 0:
            raise KernelError(f"open pinned map {path}", L.errno_now())
        info = _map_info(fd)
        return cls(Path(path).name, fd, info["type"], info["key_size"], info["value_size"],
                   info["max_entries"], owned_fd=True)

    @classmethod
    def create(cls, name: str, map_type: int, key_size: int, value_size: int,
               max_entries: int, *, flags: int = 0) -> Map:
        """A new map not tied to an object (an inner map of a map-in-map, say);
        the caller owns it: close() releases it."""
        opts = L.MapCreateOpts(sz=ctypes.sizeof(L.MapCreateOpts), map_flags=flags)
        fd = L.bpf_map_create(map_type, name.encode()[:15], key_size, value_size, max_entries,
                              ctypes.byref(opts))
        if fd < 0:
            raise KernelError(f"create map {name}", L.errno_now())
        return cls(name, fd, map_type, key_size, value_size, max_entries, owned_fd=True)

    @property
    def fd(self) -> int:
        return self._fd

    @property
    def cpus(self) -> int:
        """Values per key: the possible CPUs for a per-CPU map, else 1."""
        return self._ncpu

    def close(self) -> None:
        if self._owned_fd and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Map:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _buf(self, data: Any, size: int, what: str) -> Any:
        if isinstance(data, (bytes, bytearray)):
            if len(data) != size:
                raise ValueError(f"map {self.name}: {what} is {len(data)} bytes, want {size}")
            return ctypes.create_string_buffer(bytes(data), size)
        if ctypes.sizeof(data) != size:
            raise ValueError(f"map {self.name}: {what} is {ctypes.sizeof(data)} bytes, want {size}")
        return data

    def _vbuf(self, value: Any) -> Any:
        if self.percpu and isinstance(value, list):
            blob = b"".join(bytes(v).ljust(self._slot, b"\0") for v in value)
            return self._buf(blob, self._slot * self._ncpu, "value")
        return self._buf(value, self._slot * self._ncpu if self.percpu else self.value_size,
                         "value")

    def lookup(self, key: Any) -> bytes | list[bytes] | None:
        """The value at key, or None when absent."""
        out = ctypes.create_string_buffer(self._slot * self._ncpu)
        k = self._buf(key, self.key_size, "key")
        if L.bpf_map_lookup_elem(self._fd, ctypes.byref(k), out) < 0:
            err = L.errno_now()
            if err == errno.ENOENT:
                return None
            raise KernelError(f"lookup in map {self.name}", err)
        raw = out.raw
        if self.percpu:
            return [raw[i * self._slot: i * self._slot + self.value_size]
                    for i in range(self._ncpu)]
        return raw

    def update(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        k = self._buf(key, self.key_size, "key")
        v = self._vbuf(value)
        L.check(L.bpf_map_update_elem(self._fd, ctypes.byref(k), ctypes.byref(v), flags),
                f"update map {self.name}")

    def delete(self, key: Any) -> bool:
        """Deletes key; False when it was absent."""
        k = self._buf(key, self.key_size, "key")
        if L.bpf_map_delete_elem(self._fd, ctypes.byref(k)) < 0:
            err = L.errno_now()
            if err == errno.ENOENT:
                return False
            raise KernelError(f"delete from map {self.name}", err)
        return True

    def keys(self) -> Iterator[bytes]:
        key = ctypes.create_string_buffer(self.key_size)
        nxt = ctypes.create_string_buffer(self.key_size)
        prev = None
        while True:
            if L.bpf_map_get_next_key(self._fd, prev, nxt) < 0:
                err = L.errno_now()
                if err == errno.ENOENT:
                    return
                raise KernelError(f"iterate map {self.name}", err)
            yield nxt.raw
            ctypes.memmove(key, nxt, self.key_size)
            prev = key

    def items(self) -> Iterator[tuple[bytes, bytes | list[bytes]]]:
        for k in self.keys():
            v = self.lookup(k)
            if v is not None:
                yield k, v

    def lookup_batch(self, count: int | None = None) -> list[tuple[bytes, bytes]]:
        """All entries in kernel batches (one syscall per batch); falls back to
        iteration on kernels or map types without batch support."""
        count = count or max(1, min(self.max_entries, 4096))
        keys = ctypes.create_string_buffer(self.key_size * count)
        vals = ctypes.create_string_buffer(self._slot * self._ncpu * count)
        opts = L.MapBatchOpts(sz=ctypes.sizeof(L.MapBatchOpts))
        token_in: Any = None
        token_out = ctypes.create_string_buffer(max(self.key_size, 8))
        out: list[tuple[bytes, bytes]] = []
        while True:
            n = ctypes.c_uint32(count)
            ret = L.bpf_map_lookup_batch(self._fd, token_in, token_out, keys, vals,
                                         ctypes.byref(n), ctypes.byref(opts))
            err = L.errno_now() if ret < 0 else 0
            if ret < 0 and err not in (errno.ENOENT,):
                if err in (errno.EINVAL, _ENOTSUPP, errno.EOPNOTSUPP) and not out:
                    return [(k, v) for k, v in self.items() if isinstance(v, bytes)]
                raise KernelError(f"batch lookup in map {self.name}", err)
            vs = self._slot * self._ncpu
            for i in range(n.value):
                out.append((keys.raw[i * self.key_size:(i + 1) * self.key_size],
                            vals.raw[i * vs:(i + 1) * vs]))
            if ret < 0:  # ENOENT: that was the last batch
                return out
            token_in = ctypes.create_string_buffer(token_out.raw, len(token_out))

    def clear(self) -> None:
        for k in list(self.keys()):
            self.delete(k)

    def sum_percpu_u64(self, key: Any) -> int:
        """For per-CPU counters: the sum over CPUs of the u64 at key."""
        vals = self.lookup(key)
        if vals is None:
            return 0
        items = vals if isinstance(vals, list) else [vals]
        return sum(int.from_bytes(v[:8], "little") for v in items)

    def pin(self, path: str | os.PathLike[str]) -> None:
        # (bpffs at /sys/fs/bpf may be world-writable: a directory another
        # user made or could rename must not hold what bpfguard pins)
        check_trusted_dir(Path(path).parent, f"pin {path}", create=True)
        L.check(L.bpf_obj_pin(self._fd, os.fsencode(path)), f"pin map {self.name} at {path}")

    def __repr__(self) -> str:
        return f"<Map {self.name} fd={self._fd}>"


def _map_info(fd: int) -> dict[str, int]:
    with Btf.vmlinux() as btf:
        info_t = btf.struct("bpf_map_info")
        info = info_t()
        size = ctypes.c_uint32(ctypes.sizeof(info))
        L.check(L.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)),
                "map info")
        return {k: int(getattr(info, k)) for k in ("type", "key_size", "value_size",
                                                    "max_entries")}


class GlobalData:
    """Named variables of a data section (.rodata, .data, .bss), laid out by BTF.

    Before load, variables live in libbpf's initial image (``.rodata`` can only
    be set then). After load, ``.data``/``.bss`` are the kernel map itself,
    mmap'd here: writes are seen by the programs at once. ``.rodata`` is frozen
    after load and reads return a copy.
    """

    def __init__(self, obj: BpfObject, section: str) -> None:
        self._obj = obj
        self.section = section
        self._vars = obj.btf.datasec(section)
        self._map = obj._map_handle(section)
        self._mm: mmap.mmap | None = None

    def _initial_base(self) -> int:
        size = ctypes.c_size_t(0)
        ptr = L.bpf_map__initial_value(self._map, ctypes.byref(size))
        if not ptr:
            raise KernelError(f"{self.section} of {self._obj.name} is not mapped", errno.EINVAL)
        return int(ptr)

    def _live_base(self) -> int:
        # libbpf 1.1 maps .bss/.data into the kernel map only for skeletons,
        # so the live view is mmap'd here from the map fd.
        if self._mm is None:
            size = int(L.bpf_map__value_size(self._map))
            length = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
            self._mm = mmap.mmap(int(L.bpf_map__fd(self._map)), length, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        return ctypes.addressof(ctypes.c_char.from_buffer(self._mm))

    def var(self, name: str) -> Any:
        """The ctypes object for variable `name`, living in the section's memory
        (a copy for .rodata after load)."""
        if name not in self._vars:
            raise KeyError(f"{self._obj.name}: no variable {name!r} in {self.section}")
        off, ctype = self._vars[name]
        if not self._obj.loaded:
            return ctype.from_address(self._initial_base() + off)
        if self.section == ".rodata":
            raw = self._obj.map(self.section).lookup(ctypes.c_uint32(0))
            assert isinstance(raw, bytes)
            return ctype.from_buffer_copy(raw, off)
        return ctype.from_address(self._live_base() + off)

    def close(self) -> None:
        if self._mm is not None:
            # a var() view may still reference it; the GC then unmaps it
            with contextlib.suppress(BufferError):
                self._mm.close()
            self._mm = None

    def __getitem__(self, name: str) -> Any:
        v = self.var(name)
        return v.value if hasattr(v, "value") else v

    def __setitem__(self, name: str, value: Any) -> None:
        if self.section == ".rodata" and self._obj.loaded:
            raise KernelError(f"{self._obj.name}: .rodata is frozen after load", errno.EPERM)
        v = self.var(name)
        if hasattr(v, "value"):
            v.value = value
        else:
            ctypes.memmove(ctypes.addressof(v), ctypes.addressof(value), ctypes.sizeof(v))

    def __contains__(self, name: str) -> bool:
        return name in self._vars


class BpfObject:
    """An opened (and later loaded) BPF ELF object."""

    def __init__(self, path: str, handle: int) -> None:
        self.path = path
        self.name = Path(path).name.removesuffix(".bpf.o")
        self._h = handle
        self._links: list[Link] = []
        self.loaded = False
        self._programs: dict[str, Program] = {}
        prog = L.bpf_object__next_program(handle, None)
        while prog:
            p = Program(self, prog)
            self._programs[p.name] = p
            prog = L.bpf_object__next_program(handle, prog)
        self._maps: dict[str, int] = {}
        m = L.bpf_object__next_map(handle, None)
        while m:
            self._maps[L.bpf_map__name(m).decode()] = m
            m = L.bpf_object__next_map(handle, m)
        self.btf = Btf(L.check_ptr(L.bpf_object__btf(handle), f"BTF of {path}"), owned=False)
        self._kernel_btf: Btf | None = None
        self._sections: dict[str, GlobalData] = {}

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> BpfObject:
        """Opens an object file (nothing is loaded into the kernel yet)."""
        p = os.fspath(path)
        if not os.path.exists(p):
            raise KernelError(f"open BPF object {p}", errno.ENOENT)
        with L.capture_messages() as msgs:
            h = L.bpf_object__open_file(p.encode(), None)
        if not h:
            raise KernelError(f"open BPF object {p}", L.errno_now(), "\n".join(msgs))
        return cls(p, h)

    # -- configuration before load -------------------------------------------

    def _map_handle(self, name: str) -> int:
        if name in self._maps:
            return self._maps[name]
        for full, h in self._maps.items():  # internal maps: "<obj>.rodata" in old libbpf
            if full.endswith(name):
                return h
        raise KeyError(f"{self.name}: no map {name!r}")

    @property
    def rodata(self) -> GlobalData:
        return self.section(".rodata")

    @property
    def bss(self) -> GlobalData:
        return self.section(".bss")

    def section(self, name: str) -> GlobalData:
        if name not in self._sections:
            self._sections[name] = GlobalData(self, name)
        return self._sections[name]

    def set_max_entries(self, map_name: str, n: int) -> None:
        L.check(L.bpf_map__set_max_entries(self._map_handle(map_name), n),
                f"resize map {map_name}")

    def set_autocreate(self, map_name: str, on: bool) -> None:
        """Whether load creates this map (off: no program loaded may use it)."""
        L.check(L.bpf_map__set_autocreate(self._map_handle(map_name), on),
                f"set autocreate of map {map_name}")

    @property
    def map_names(self) -> list[str]:
        return list(self._maps)

    def reuse_map(self, map_name: str, fd: int) -> None:
        """Makes this object use an existing map (shared with another object)."""
        L.check(L.bpf_map__reuse_fd(self._map_handle(map_name), fd), f"reuse map {map_name}")

    def program(self, name: str) -> Program:
        try:
            return self._programs[name]
        except KeyError:
            raise KeyError(f"{self.name}: no program {name!r}") from None

    @property
    def programs(self) -> list[Program]:
        return list(self._programs.values())

    def map(self, name: str) -> Map:
        h = self._map_handle(name)
        return Map(name, int(L.bpf_map__fd(h)), int(L.bpf_map__type(h)),
                   int(L.bpf_map__key_size(h)), int(L.bpf_map__value_size(h)),
                   int(L.bpf_map__max_entries(h)))

    def inner_map(self, name: str) -> Map:
        """The template of a map-in-map's inner maps (type, sizes, max_entries as the
        C declares them; no fd): what a map user space creates for it must match."""
        h = L.bpf_map__inner_map(self._map_handle(name))
        if not h:
            raise KeyError(f"{self.name}: map {name!r} has no inner map")
        return Map(f"{name}.inner", -1, int(L.bpf_map__type(h)), int(L.bpf_map__key_size(h)),
                   int(L.bpf_map__value_size(h)), int(L.bpf_map__max_entries(h)))

    # -- load -----------------------------------------------------------------

    def load(self) -> None:
        """Loads every autoload program; on failure names the program and shows
        the tail of its verifier log."""
        for p in self._programs.values():
            if p.autoload:
                p._log = ctypes.create_string_buffer(_LOG_SIZE)
                L.check(L.bpf_program__set_log_buf(p._h, p._log, _LOG_SIZE), "set log buffer")
        with L.capture_messages() as msgs:
            ret = L.bpf_object__load(self._h)
        if ret < 0:
            failed = next((p for p in self._programs.values()
                           if p.autoload and p.fd < 0 and p._log is not None and p._log.value),
                          None)
            if failed is None:
                failed = next((p for p in self._programs.values()
                               if p.autoload and any(f"'{p.name}'" in m for m in msgs)), None)
            log = failed.log_tail() if failed else ""
            if not log:
                log = "\n".join(msgs[-_LOG_TAIL_LINES:])
            raise LoadError(f"load {self.path}", -ret, failed.name if failed else None, log)
        self.loaded = True
        for p in self._programs.values():
            p._log = None  # libbpf reads it only while loading

    def kernel_btf(self) -> Btf:
        if self._kernel_btf is None:
            self._kernel_btf = Btf.vmlinux()
        return self._kernel_btf

    # -- teardown --------------------------------------------------------------

    @property
    def links(self) -> list[Link]:
        return [link for link in self._links if link.alive]

    def detach_all(self) -> None:
        for link in reversed(self._links):
            link.destroy()
        self._links.clear()

    def close(self) -> None:
        """Detaches every link, then frees the object (maps and programs)."""
        if not self._h:
            return
        self.detach_all()
        for section in self._sections.values():
            section.close()
        self._sections.clear()
        L.bpf_object__close(self._h)
        self._h = 0
        if self._kernel_btf is not None:
            self._kernel_btf.close()
            self._kernel_btf = None

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BpfObject {self.path}{' loaded' if self.loaded else ''}>"


def kernel_has_map_type(map_type: int) -> bool:
    """libbpf's probe: whether this kernel can create a map of `map_type`
    (enum bpf_map_type). Explains a refusal a real load would only report as EINVAL."""
    return L.check(L.libbpf_probe_bpf_map_type(map_type, None), f"probe map type {map_type}") == 1


def kernel_has_helper(prog_type: int, helper_id: int) -> bool:
    """libbpf's probe: whether programs of `prog_type` may call helper `helper_id`."""
    return L.check(L.libbpf_probe_bpf_helper(prog_type, helper_id, None),
                   f"probe helper {helper_id} for program type {prog_type}") == 1


def enable_run_stats() -> int:
    """Turns on the kernel's BPF run-time statistics (run_cnt, run_time_ns of
    every program) until the returned fd is closed; the kernel counts the
    holders, so another tool's ``bpftool prog profile`` or sysctl is unaffected."""
    return L.check(L.bpf_enable_stats(0), "enable BPF statistics")  # BPF_STATS_RUN_TIME
