"""Sampled packets to a pcap file (libpcap's classic format, Ethernet link type).

Written by hand: the format is a 24-byte header and a 16-byte header per
record, and the libraries that write it (scapy, dpkt) would be a large
dependency for that.
"""

from __future__ import annotations

import os
import struct
import time
from types import TracebackType
from typing import BinaryIO

__all__ = ["PcapWriter"]

_MAGIC = 0xA1B2C3D4  # microsecond timestamps
_LINKTYPE_ETHERNET = 1


class PcapWriter:
    """Appends (captured bytes, original length) records; flushes each one so a
    reader (tcpdump -r, wireshark) sees them while bpfguard runs."""

    def __init__(self, out: BinaryIO, snaplen: int) -> None:
        self._out = out
        out.write(struct.pack("<IHHiIII", _MAGIC, 2, 4, 0, 0, snaplen, _LINKTYPE_ETHERNET))
        out.flush()

    @classmethod
    def create(cls, path: str | os.PathLike[str], snaplen: int) -> PcapWriter:
        """A new pcap file at `path` (truncated if it exists)."""
        return cls(open(path, "wb"), snaplen)  # noqa: SIM115 - closed by close()

    def write(self, data: bytes, orig_len: int, when: float | None = None) -> None:
        t = time.time() if when is None else when
        usec = round(t * 1e6)
        self._out.write(struct.pack("<IIII", usec // 10**6, usec % 10**6, len(data), orig_len))
        self._out.write(data)
        self._out.flush()

    def close(self) -> None:
        self._out.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
