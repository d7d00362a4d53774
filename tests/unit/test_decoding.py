"""Decoding helpers and the ABI as BTF describes it."""

from __future__ import annotations

import ctypes
import os
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bpfguard.errors import BuildError
from bpfguard.sensors.events import FLAG_DECODERS, decode_sockaddr
from bpfguard.sensors.syscall_specs import SPECS, spec_for
from bpfguard.sensors.syscall_table import native_arches, syscall_name, syscall_number


def test_open_flags_decode() -> None:
    dec = FLAG_DECODERS["open_flags"]
    assert dec(os.O_RDONLY) == "O_RDONLY"
    assert dec(os.O_WRONLY | os.O_CREAT | os.O_TRUNC) == "O_WRONLY|O_CREAT|O_TRUNC"
    assert "O_TMPFILE" in dec(os.O_RDWR | os.O_TMPFILE)


def test_sockaddr_decode() -> None:
    v4 = struct.pack("<H", socket.AF_INET) + struct.pack(">H", 443) + socket.inet_aton("10.1.2.3")
    assert decode_sockaddr(v4 + b"\0" * 8) == {"family": "AF_INET", "port": 443,
                                               "addr": "10.1.2.3"}
    v6 = (struct.pack("<H", socket.AF_INET6) + struct.pack(">H", 53) + b"\0" * 4
          + socket.inet_pton(socket.AF_INET6, "::1") + b"\0" * 4)
    assert decode_sockaddr(v6)["addr"] == "::1"
    un = struct.pack("<H", socket.AF_UNIX) + b"/run/x.sock\0"
    assert decode_sockaddr(un)["path"] == "/run/x.sock"
    abstract = struct.pack("<H", socket.AF_UNIX) + b"\0name"
    assert decode_sockaddr(abstract)["path"] == "@name"


@pytest.mark.skipif(native_arches()[0].name != "x86_64", reason="x86_64 numbers")
def test_compat_numbers_are_not_confused() -> None:
    assert syscall_name(5) == "fstat"
    assert syscall_name(5, compat=True) == "open"
    assert syscall_number("openat") == 257
    assert syscall_number("openat", compat=True) == 295
    assert syscall_name(100000).startswith("syscall_")


def test_every_spec_names_a_real_syscall() -> None:
    native, compat = native_arches()
    for name, spec in SPECS.items():
        known = syscall_number(name) is not None or (
            compat is not None and syscall_number(name, compat=True) is not None)
        assert known, f"{name} is not a syscall on {native.name}"
        assert len(spec.args) <= 6
        kinds = [a.kind for a in spec.args]
        for i, k in enumerate(kinds):
            if k == "PATH_AT":
                assert i > 0 and kinds[i - 1] == "DIRFD", name  # the kernel relies on it
            if k == "SOCKADDR":
                assert i + 1 < len(kinds), name  # its length is the next argument
    assert [a.name for a in spec_for("nosuch").args] == [f"arg{i}" for i in range(6)]


def _btf():  # type: ignore[no-untyped-def]
    from bpfguard.loader import Btf, bpf_object_path

    try:
        return Btf.from_file(str(bpf_object_path("sensor")))
    except BuildError as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("struct_name", [
    "bg_event_header", "bg_exec_event", "bg_fork_event", "bg_exit_event",
    "bg_syscall_event", "bg_file", "bg_sock", "bg_syscall_spec", "bg_scope_config",
])
def test_layouts_from_btf_match_btf_sizes(struct_name: str) -> None:
    from bpfguard.loader import _libbpf as L

    with _btf() as btf:
        ct = btf.struct(struct_name)
        tid = btf.find(struct_name, 4)
        assert ctypes.sizeof(ct) == L.btf__resolve_size(btf._h, tid)
        # fixed-width wire structs: no member is lost to padding
        names = [f[0] for f in ct._fields_ if not f[0].startswith("_pad")]
        assert names, struct_name


def test_a_record_is_never_seen_half_built(monkeypatch: pytest.MonkeyPatch) -> None:
    # a record is cached before its fields are set; a second thread asking for
    # it then (a metrics scrape and a reader, both reading program stats) must
    # wait for the fields, not get a class without them
    import threading

    from bpfguard.loader.btf import Btf

    with _btf() as btf:
        building, go_on = threading.Event(), threading.Event()
        tail = Btf._tail

        def slow_tail(self: Btf, *args: object) -> object:
            if threading.current_thread().name == "first":
                building.set()
                go_on.wait(5)
            return tail(self, *args)

        monkeypatch.setattr(Btf, "_tail", slow_tail)
        first = threading.Thread(target=btf.struct, args=("bg_file",), name="first")
        first.start()
        assert building.wait(5)
        fields: list[list[str]] = []   # as the second thread saw them, at once
        second = threading.Thread(target=lambda: fields.append(
            [f[0] for f in vars(btf.struct("bg_file")).get("_fields_", [])]))
        second.start()
        second.join(0.2)
        go_on.set()
        first.join(5)
        second.join(5)
        assert fields[0][:2] == ["ino", "dev"]


def test_abi_enums_come_from_btf() -> None:
    with _btf() as btf:
        kinds = btf.enum("bg_arg_kind")
        assert kinds["BG_ARG_PATH_AT"] != kinds["BG_ARG_PATH"]
        assert set(btf.enum("bg_event_type")) == {
            "BG_EVENT_EXEC", "BG_EVENT_FORK", "BG_EVENT_EXIT", "BG_EVENT_SYSCALL",
                "BG_EVENT_POLICY"}


_O_NAMES = {n: getattr(os, n) for n in dir(os) if n.startswith("O_") and getattr(os, n)}


@given(st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_open_flags_names_or_back_to_the_value(value: int) -> None:
    text = FLAG_DECODERS["open_flags"](value)
    total = 0
    for part in text.split("|"):
        if part.startswith("0x"):
            total |= int(part, 16)
        elif part != "O_RDONLY":
            total |= _O_NAMES[part]
    assert total == value
