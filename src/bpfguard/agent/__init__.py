"""The event pipeline: sensors -> process table -> subscribers -> records.

A reader thread drains the ring buffer in batches, updates the process
table and hands each event to the handler (the subscribers: the Falco rules,
the policy engine). What the handler returns goes to a `sink` that never
blocks (the agent's output channels, each behind its own bounded queue), or,
without one, into a bounded queue the caller reads with :meth:`Pipeline.get`.
When that queue is full the record is dropped and counted, and the loss is
reported like a kernel loss.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..outputs import record
from ..proctable import ProcessTable
from ..sensors import SensorSet
from ..sensors.events import Event, LossEvent

__all__ = ["SENSORS_LABEL", "Pipeline"]

#: What the metrics and status call the agent's one sensor set (``sensors`` label).
SENSORS_LABEL = "sensor"

log = logging.getLogger("bpfguard.pipeline")

_LOSS_CHECK_S = 1.0


class Pipeline:
    """Runs the reader thread; the caller takes records with :meth:`get`.

    Args:
        sensors: a loaded SensorSet (started by :meth:`start`).
        table: the process table to keep up to date.
        queue_size: records buffered between the reader and the outputs.
        handler: what an event becomes, after the table has applied it (default:
            its record; the detector gives alerts). Runs on the reader thread.
        sink: where records go, on the reader thread; it must not block.
            None: into the bounded queue :meth:`get` reads.
        idle: called on the reader thread after each batch (at least every
            100 ms): what events the handler held back became (the rules
            hold a new container's events while its runtime is asked).
    """

    def __init__(self, sensors: SensorSet, table: ProcessTable, *,
                 queue_size: int = 65536,
                 handler: Callable[[Event], Iterable[Mapping[str, Any]]] | None = None,
                 sink: Callable[[Mapping[str, Any]], None] | None = None,
                 idle: Callable[[], Iterable[Mapping[str, Any]]] | None = None) -> None:
        self.sensors = sensors
        self._idle = idle
        self.table = table
        self._handle = handler or (lambda ev: (record(ev, table),))
        self._sink = sink
        self._q: queue.Queue[Mapping[str, Any]] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bpfguard-reader", daemon=True)
        self.queue_drops = 0
        self._queue_drops_reported = 0
        self.events = 0
        self.by_type: dict[type, int] = {}   # events by class, for metrics
        self.handler_errors = 0
        self.error: BaseException | None = None

    def start(self) -> None:
        self.sensors.start()
        self._thread.start()

    def _put(self, rec: Mapping[str, Any]) -> None:
        if self._sink is not None:
            self._sink(rec)
            return
        try:
            self._q.put_nowait(rec)
        except queue.Full:
            self.queue_drops += 1

    def _report_losses(self) -> None:
        for loss in self.sensors.losses():
            self._put(record(loss))
        delta = self.queue_drops - self._queue_drops_reported
        if delta:
            self._queue_drops_reported = self.queue_drops
            self._put(record(LossEvent(reason="userspace_queue_full", count=delta,
                                       total=self.queue_drops)))

    def _handle_one(self, ev: Event) -> None:
        try:
            for rec in self._handle(ev):
                self._put(rec)
        except Exception:  # one odd event must not stop the reader, nor enforcement with it
            self.handler_errors += 1
            if self.handler_errors == 1:
                log.exception("an event could not be handled (counted and skipped from now "
                              "on): %r", ev)

    def _run_idle(self, idle: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        try:
            for rec in idle():
                self._put(rec)
        except Exception:
            self.handler_errors += 1
            if self.handler_errors == 1:
                log.exception("held events could not be handled (counted and skipped from "
                              "now on)")

    def _consume(self, records: list[bytes]) -> None:
        """Decodes and handles the records one at a time: under a storm a batch
        is a full ring buffer, and only its raw bytes are held at once, not
        every event decoded from them."""
        decode, counts = self.sensors.decode, self.by_type
        for rec in records:
            ev = decode(rec)
            if ev is None:
                continue
            kind = type(ev)
            counts[kind] = counts.get(kind, 0) + 1
            self.events += 1
            self.table.apply(ev)
            self._handle_one(ev)

    def _run(self) -> None:
        next_check = time.monotonic() + _LOSS_CHECK_S
        try:
            while not self._stop.is_set():
                self._consume(self.sensors.read_raw(timeout_ms=100))
                if self._idle is not None:
                    self._run_idle(self._idle)
                if time.monotonic() >= next_check:
                    self._report_losses()
                    next_check = time.monotonic() + _LOSS_CHECK_S
            # what arrived before stop() is still delivered
            self._consume(self.sensors.read_raw(timeout_ms=0))
            if self._idle is not None:
                self._run_idle(self._idle)
            self._report_losses()
        except BaseException as exc:  # surfaced to the caller by get()
            self.error = exc

    def get(self, timeout: float = 0.1) -> Mapping[str, Any] | None:
        """The next record, or None after `timeout` seconds without one."""
        if self.error is not None:
            raise self.error
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    @property
    def alive(self) -> bool:
        """The reader thread runs (False before start and after stop or an error)."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stops reading after a final drain; records already queued stay readable."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def pending(self) -> list[Mapping[str, Any]]:
        out = []
        while True:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                return out
