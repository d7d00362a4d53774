"""Sampled packets to a pcap file (libpcap's classic format, Ethernet link type).

Written by hand: the format is a 24-byte header and a 16-byte header per
record, and the libraries that write it (scapy, dpkt) would be a large
dependency for that.
"""

from __future__ import annotations

import errno
import os
import struct
import time
from types import TracebackType
from typing import BinaryIO

from ..errors import ConfigError

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
        """A new pcap file at `path` (truncated if it exists). A symbolic link
        there is refused, not followed: root would truncate whatever it
        points to (ConfigError, as for any file it cannot make)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                         | os.O_NOCTTY | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            why = ("is a symbolic link; name the file itself" if exc.errno == errno.ELOOP
                   else exc.strerror)
            raise ConfigError(f"pcap file {os.fspath(path)}: {why}") from None
        out = os.fdopen(fd, "wb")
        try:
            return cls(out, snaplen)
        except BaseException:
            out.close()
            raise

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
