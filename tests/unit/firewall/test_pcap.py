"""Sampled packets to pcap: the global header and records, read back with struct."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bpfguard.firewall.pcap import PcapWriter

GLOBAL = "<IHHiIII"
RECORD = "<IIII"


def read_pcap(raw: bytes) -> tuple[tuple[int, ...], list[tuple[int, int, int, int, bytes]]]:
    header = struct.unpack_from(GLOBAL, raw, 0)
    records = []
    off = struct.calcsize(GLOBAL)
    while off < len(raw):
        sec, usec, incl, orig = struct.unpack_from(RECORD, raw, off)
        off += struct.calcsize(RECORD)
        records.append((sec, usec, incl, orig, raw[off:off + incl]))
        off += incl
    assert off == len(raw)
    return header, records


def test_global_header_is_24_bytes_of_classic_pcap() -> None:
    buf = io.BytesIO()
    PcapWriter(buf, 128)
    raw = buf.getvalue()
    assert len(raw) == 24
    assert raw[:4] == b"\xd4\xc3\xb2\xa1"  # little-endian, microsecond timestamps
    magic, major, minor, thiszone, sigfigs, snaplen, linktype = struct.unpack(GLOBAL, raw)
    assert magic == 0xA1B2C3D4
    assert (major, minor) == (2, 4)
    assert (thiszone, sigfigs) == (0, 0)
    assert snaplen == 128
    assert linktype == 1  # Ethernet


def test_records_read_back() -> None:
    buf = io.BytesIO()
    w = PcapWriter(buf, 64)
    frame = bytes(range(60))
    w.write(frame, 1514, when=1_700_000_000.25)
    w.write(b"\xaa" * 14, 14, when=1_700_000_001.5)
    header, records = read_pcap(buf.getvalue())
    assert header[5] == 64
    assert records == [
        (1_700_000_000, 250_000, 60, 1514, frame),
        (1_700_000_001, 500_000, 14, 14, b"\xaa" * 14),
    ]


def test_record_default_time_is_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bpfguard.firewall.pcap.time.time", lambda: 42.75)
    buf = io.BytesIO()
    PcapWriter(buf, 128).write(b"x", 1)
    _, records = read_pcap(buf.getvalue())
    assert records == [(42, 750_000, 1, 1, b"x")]


def test_empty_record() -> None:
    buf = io.BytesIO()
    PcapWriter(buf, 128).write(b"", 0, when=0.0)
    _, records = read_pcap(buf.getvalue())
    assert records == [(0, 0, 0, 0, b"")]


@given(st.lists(st.tuples(st.binary(max_size=128), st.integers(0, 65535),
                          st.integers(0, 2**31), st.sampled_from([0, 0.5, 0.125, 0.0625])),
                max_size=8))
def test_any_records_read_back(recs: list[tuple[bytes, int, int, float]]) -> None:
    buf = io.BytesIO()
    w = PcapWriter(buf, 128)
    for data, extra, sec, frac in recs:
        w.write(data, len(data) + extra, when=sec + frac)
    _, records = read_pcap(buf.getvalue())
    assert records == [(sec, int(frac * 1_000_000), len(data), len(data) + extra, data)
                       for data, extra, sec, frac in recs]


def test_create_writes_a_file_and_truncates(tmp_path: Path) -> None:
    p = tmp_path / "drops.pcap"
    p.write_bytes(b"old contents that must go" * 10)
    with PcapWriter.create(p, 128) as w:
        w.write(b"\x01\x02\x03", 90, when=10.0)
        # flushed per record: a reader sees it while the writer is open
        header, records = read_pcap(p.read_bytes())
        assert header[0] == 0xA1B2C3D4
        assert records == [(10, 0, 3, 90, b"\x01\x02\x03")]
    assert len(p.read_bytes()) == 24 + 16 + 3


def test_create_accepts_a_str_path_and_close_closes(tmp_path: Path) -> None:
    p = tmp_path / "s.pcap"
    w = PcapWriter.create(str(p), 256)
    w.close()
    header, records = read_pcap(p.read_bytes())
    assert header[5] == 256
    assert records == []


def test_context_manager_closes_the_stream() -> None:
    buf = io.BytesIO()
    with PcapWriter(buf, 128) as w:
        assert isinstance(w, PcapWriter)
    assert buf.closed


def test_timestamps_keep_their_microseconds() -> None:
    buf = io.BytesIO()
    PcapWriter(buf, 128).write(b"x", 1, when=1.000001)
    assert struct.unpack_from("<II", buf.getvalue(), 24) == (1, 1)
