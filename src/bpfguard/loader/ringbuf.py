"""Ring buffer consumption.

Records are copied out inside libbpf's callback and handed over as a batch,
so decoding runs after the poll returns, not per record in the callback.

Example::

    with RingBuffer(obj.map("events")) as rb:
        for record in rb.poll(timeout_ms=100):
            ...
"""

from __future__ import annotations

import ctypes
import errno

from . import _libbpf as L
from .object import Map

__all__ = ["RingBuffer"]


class RingBuffer:
    """Consumer of one BPF_MAP_TYPE_RINGBUF map."""

    def __init__(self, ring: Map) -> None:
        self._batch: list[bytes] = []
        batch = self._batch

        def _sample(_ctx: int, data: int, size: int) -> int:
            batch.append(ctypes.string_at(data, size))
            return 0

        self._cb = L.RingSampleFn(_sample)  # referenced for the ring's lifetime
        self._h = L.check_ptr(L.ring_buffer__new(ring.fd, self._cb, None, None),
                              f"ring buffer on map {ring.name}")

    @property
    def epoll_fd(self) -> int:
        return int(L.ring_buffer__epoll_fd(self._h))

    def poll(self, timeout_ms: int = 100) -> list[bytes]:
        """Waits up to timeout_ms for records and returns all that are ready.

        A signal arriving during the wait (SIGCHLD from a traced command, for
        one) ends the wait early with what was collected so far, as a timeout
        would; it is not an error.
        """
        self._collect(L.ring_buffer__poll(self._h, timeout_ms), "poll ring buffer")
        return self._take()

    def drain(self) -> list[bytes]:
        """Returns what is ready without waiting."""
        self._collect(L.ring_buffer__consume(self._h), "consume ring buffer")
        return self._take()

    @staticmethod
    def _collect(ret: int, what: str) -> None:
        if ret != -errno.EINTR:
            L.check(ret, what)

    def _take(self) -> list[bytes]:
        out = self._batch[:]
        self._batch.clear()
        return out

    def close(self) -> None:
        if self._h:
            L.ring_buffer__free(self._h)
            self._h = 0

    def __enter__(self) -> RingBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
