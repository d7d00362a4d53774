"""Alert channels: stdout, file, syslog, program and HTTP(S), as Falco has them.

An alert is an :class:`~bpfguard.outputs.alert.Alert` (or a dict in its
JSON shape: ``time``, ``rule``, ``priority``, ``source``, ``hostname``,
``output``, ``output_fields``, ``tags``). Each channel turns it into
Falco's line (:class:`Format`) and delivers it; :class:`Channels` fans one
alert out to several, through an optional
:class:`~bpfguard.outputs.ratelimit.RateLimiter`, and counts per channel
what was sent, failed, dropped and suppressed::

    from bpfguard.outputs.channels import (
        Channels, FileChannel, Format, HttpChannel, StdoutChannel)
    from bpfguard.outputs.ratelimit import Limit, RateLimiter

    with Channels(
        [StdoutChannel(Format(json_output=True)),
         FileChannel("/var/log/bpfguard/alerts.log", keep_alive=True),
         HttpChannel("http://falcosidekick:2801/", capacity=1000)],
        limiter=RateLimiter(limit=Limit(rate=1.0, burst=10), dedup_window=60),
        install_sighup=True,           # logrotate: SIGHUP reopens the file
    ) as out:
        out.send(alert)
        out.notice(loss_record)        # {"type": "loss"|"drop", ...}: Falco's drop alert
        out.tick()                     # limiter summaries due; output drops as drop alerts
        print(out.stats()["http"])     # ChannelStats(sent=..., failed=..., dropped=..., ...)

Formats, as Falco writes them (falcosecurity/falco ``userspace/engine/formats.cpp``,
``userspace/falco/falco_outputs.cpp``, libsinsp ``sinsp_utils::ts_to_string``):

* text: ``HH:MM:SS.nnnnnnnnn: Priority message`` in local time. For a rule alert
  that is its ``output`` with the prefix put before it, unless it starts with
  one already (Falco's own alerts carry it; bpfguard's engine leaves it to the
  outputs). An internal message (``source`` ``"internal"``, e.g. the drop
  alert) gets the prefix and then `` (k=v k=v)`` from ``output_fields`` in key
  order, values JSON-encoded.
* JSON: one compact object, keys in byte order (Falco's nlohmann::json object is
  a std::map), ``output`` the full text line (internal messages: the bare
  message), ``tags`` sorted and unique (a std::set), non-ASCII as UTF-8.
  ``json_include_output_property`` / ``json_include_tags_property`` drop
  ``output`` / ``tags``.

Delivery never blocks the caller: every channel owns a worker thread and a
bounded queue. When the queue is full the NEWEST alert is dropped and counted,
as Falco's outputs queue does (``try_push``) and as the kernel's ring buffer
does: what is already queued, the start of an incident, cannot be pushed out by
a flood, and what a channel delivers is a gap-free prefix of what it was given.
What a queue drops is never silent: :meth:`Channels.tick` (the agent and
``bpfguard detect`` call it at least once a second) reports it on every
channel as Falco's drop alert, with the count and the channel's name.
A channel whose delivery can fail transiently (program, HTTP) retries with
exponential backoff and jitter (:class:`Backoff`); the exponent counts
consecutive failures across alerts, so a dead endpoint is not hammered.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import errno
import gzip
import http.client
import json
import logging
import os
import random
import select
import signal
import socket
import ssl
import subprocess
import sys
import syslog
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import IO, Any, Generic, Protocol, Self, TypeVar
from urllib.parse import unquote, urlsplit

from .. import __version__
from ..errors import ConfigError
from ..files import absolute, check_output_path, open_in_trusted_dir
from ..timefmt import RFC3339_RE as _RFC3339
from ..timefmt import local_clock, parse_rfc3339, rfc3339
from .alert import DROP_RULE, Alert, drop_alert, merge_drop_alerts
from .ratelimit import RateLimiter, strip_prefix

__all__ = [
    "DEFAULT_CAPACITY",
    "OUTPUT_DROP_REASON",
    "DROP_RULE",
    "NOTICE_RESERVE",
    "PRIORITIES",
    "SD_ID",
    "SD_VALUE_MAX",
    "Alert",
    "AlertLike",
    "Backoff",
    "Channel",
    "ChannelStats",
    "Channels",
    "FileChannel",
    "Format",
    "HttpChannel",
    "ProgramChannel",
    "Rfc5424SyslogChannel",
    "StdoutChannel",
    "SyslogChannel",
    "drop_alert",
    "priority_level",
    "rfc3339",
]

log = logging.getLogger("bpfguard.outputs")

#: What the channels take: an :class:`Alert`, or a dict in its JSON shape.
AlertLike = Mapping[str, Any]

#: Falco's priorities; the index is the syslog level (LOG_EMERG .. LOG_DEBUG).
PRIORITIES = ("Emergency", "Alert", "Critical", "Error", "Warning", "Notice",
              "Informational", "Debug")

#: The ``reason`` (so the ``n_drops_<reason>`` field) of a drop alert that
#: reports alerts an output's queue dropped.
OUTPUT_DROP_REASON = "output_queue_full"

#: Alerts a channel queues by default before it drops the newest.
DEFAULT_CAPACITY = 1000
#: Queue slots past the capacity that only drop notices may use. Notices come
#: about once a second per loss reason, so the report of a loss survives a
#: quarter of an hour of full queues.
NOTICE_RESERVE = 1024


def priority_level(name: str) -> int:
    """The syslog level of a Falco priority: case-insensitive, "Info" too (as Falco)."""
    low = name.lower()
    for level, p in enumerate(PRIORITIES):
        if low == p.lower() or (low == "info" and p == "Informational"):
            return level
    raise ValueError(f"unknown priority {name!r}")


def _text_time(alert: AlertLike) -> str:
    # sinsp's %evt.time: HH:MM:SS.nnnnnnnnn in local time. (sinsp applies the
    # zone offset in force *now*; this uses the one at the alert's time, which
    # differs only for alerts that cross a DST change.)
    if isinstance(alert, Alert):
        return local_clock(alert.time_ns)
    secs, frac = parse_rfc3339(str(alert["time"]))
    return time.strftime("%H:%M:%S", time.localtime(secs)) + "." + frac


def _output(alert: AlertLike) -> str:
    """The alert's full ``output``: Falco's rule alerts carry the text prefix in it."""
    if isinstance(alert, Alert):
        out, internal, priority = alert.output, alert.source == "internal", alert.priority
    else:
        out = str(alert.get("output", ""))
        internal, priority = alert.get("source") == "internal", alert["priority"]
    if internal or strip_prefix(out) != out:
        return out
    return f"{_text_time(alert)}: {priority} {out}"


@dataclass(frozen=True)
class Format:
    """How an alert becomes a line; the fields are Falco's settings of the same names."""

    json_output: bool = False
    json_include_output_property: bool = True
    json_include_tags_property: bool = True

    def line(self, alert: AlertLike) -> str:
        """The alert as Falco prints it, without the newline."""
        return self._json(alert) if self.json_output else self._text(alert)

    def _text(self, alert: AlertLike) -> str:
        if isinstance(alert, Alert):
            if alert.source != "internal":
                return _output(alert)
            values, priority, out = alert.output_fields, alert.priority, alert.output
        else:
            if alert.get("source") != "internal":
                return _output(alert)
            values = alert.get("output_fields") or {}
            priority, out = alert["priority"], alert.get("output", "")
        # falco_outputs::handle_msg: "<time>: <Priority> <msg> (k=v k=v)"
        fields = " ".join(f"{k}={_dumps(v)}" for k, v in sorted(dict(values).items()))
        return f"{_text_time(alert)}: {priority} {out} ({fields})"

    def _json(self, alert: AlertLike) -> str:
        obj = alert.to_json_dict() if isinstance(alert, Alert) else dict(alert)
        if "output" in obj:
            obj["output"] = _output(alert)
        if not self.json_include_output_property:
            obj.pop("output", None)
        if not self.json_include_tags_property:
            obj.pop("tags", None)
        elif obj.get("tags") is not None:
            obj["tags"] = sorted(set(obj["tags"]))
        return _dumps(obj)


def _dumps(value: Any) -> str:
    # nlohmann::json::dump(): compact, object keys sorted, UTF-8 kept as is
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class Backoff:
    """Retry policy: up to `attempts` tries an alert, waiting between them.

    The wait before retry ``n`` (0-based, counting consecutive failures) is
    ``d = min(maximum, initial * 2**n)``, jittered uniformly in ``[d/2, d]``:
    a fleet of agents does not retry in lockstep, yet each still backs off.
    """

    initial: float = 0.5
    maximum: float = 30.0
    attempts: int = 5

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.initial < 0 or self.maximum < self.initial:
            raise ConfigError(f"bad backoff {self}")

    def delay(self, n: int, rng: random.Random) -> float:
        """Seconds to wait before retry `n`."""
        d = min(self.maximum, self.initial * 2.0 ** min(n, 64))
        return d / 2 + rng.uniform(0, d / 2)


_NO_RETRY = Backoff(attempts=1)


@dataclass(frozen=True)
class ChannelStats:
    """A channel's counters since it was made.

    sent: alerts delivered. failed: alerts given up on after their attempts.
    dropped: alerts never tried (queue full, or still queued at close).
    suppressed: alerts the fan-out's limiter held back from this channel.
    queued: alerts waiting now.
    failing: its last delivery failed (a syslog daemon down, a full disk):
        true until one succeeds.
    """

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    suppressed: int = 0
    queued: int = 0
    failing: bool = field(default=False, compare=False)  # (a state, not a counter)


class Channel(Protocol):
    """What :class:`Channels` fans out to."""

    name: str

    def send(self, alert: AlertLike, *, notice: bool = False) -> None:
        """Queues `alert`; never blocks for long, never raises for delivery.
        A `notice` (a drop alert) may use :data:`NOTICE_RESERVE` slots past
        the capacity."""

    def reopen(self) -> None:
        """Reopens what the channel writes to (log rotation), after what is queued."""

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until the queue is empty; False if `timeout` passed first."""

    def close(self, timeout: float = 5.0) -> None:
        """Delivers what is queued, within `timeout`, and frees the channel."""

    def stats(self) -> ChannelStats:
        """The counters."""


class _Transient(Exception):
    """A delivery failure worth retrying."""


class _Reopen(enum.Enum):
    REOPEN = enum.auto()


_T = TypeVar("_T")


class _QueuedChannel(Generic[_T]):
    """A bounded queue and the worker thread that drains it into `_deliver`.

    Subclasses turn an alert into an item in the caller's thread (`_prepare`:
    cheap, and later changes to the dict do not matter) and deliver it in the
    worker (`_deliver`, raising `_Transient` for what a retry could fix). The
    resources they open live in the worker only: `_reopen` and `_shutdown`
    run there too, so nothing is shared but the queue (`_interrupt` is the
    exception: close() calls it from its own thread to unblock the worker).
    """

    def __init__(self, name: str, *, capacity: int, backoff: Backoff,
                 rng: random.Random | None = None) -> None:
        if capacity < 1:
            raise ConfigError(f"{name} channel: capacity must be >= 1, got {capacity}")
        self.name = name
        self._capacity = capacity
        self._backoff = backoff
        self._rng = rng or random.Random()
        self._q: deque[_T | _Reopen] = deque()
        # reentrant: reopen() may run in a signal handler, on top of a main
        # thread that holds this lock in send()
        self._cv = threading.Condition(threading.RLock())
        self._thread: threading.Thread | None = None
        self._closing = False
        self._busy = False
        self._abort = threading.Event()
        self._sent = self._failed = self._dropped = 0
        self._reopens = 0  # reopen markers in the queue (not alerts)
        # drop notices that found even the reserve full, merged by the output
        # they report ("": the kernel's losses): queued as room comes
        self._held: dict[str, Alert] = {}
        self._drops_logged = 0
        self._failures = 0  # consecutive transient failures: the backoff exponent
        self._failing = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- caller side ----------------------------------------------------------

    def send(self, alert: AlertLike, *, notice: bool = False) -> None:
        """Queues `alert` (dropped and counted if the queue is full)."""
        try:
            item = self._prepare(alert)
        except Exception:
            log.exception("%s: cannot format alert %r", self.name, alert)
            with self._cv:
                self._failed += 1
            return
        with self._cv:
            if not self._closing and notice and isinstance(alert, Alert) and \
                    len(self._q) >= self._capacity + NOTICE_RESERVE:
                # past the reserve too: held and merged, not dropped, so the
                # counts it carries still reach the stream (the worker queues
                # it when there is room)
                key = str(alert.output_fields.get("bpfguard.output", ""))
                held = self._held.get(key)
                self._held[key] = alert if held is None else merge_drop_alerts(held, alert)
                return
            if self._closing or \
                    len(self._q) >= self._capacity + (NOTICE_RESERVE if notice else 0):
                self._dropped += 1
                return
            if notice:
                self._queue_held()  # (older counts first)
            self._push(item)

    def reopen(self) -> None:
        """Queues a reopen, done in order with the alerts around it."""
        with self._cv:
            if not self._closing:
                self._push(_Reopen.REOPEN)

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until all that was queued has been handled."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._q and not self._busy and not self._held,
                                     timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Delivers what is queued within `timeout`, then drops the rest."""
        with self._cv:
            if self._closing:
                return
            self._closing = True
            self._cv.notify_all()
            thread = self._thread
        if thread is None:
            self._shutdown()
            return
        thread.join(timeout)
        if thread.is_alive():
            log.warning("%s: still busy after %.1fs, dropping what is queued", self.name, timeout)
            self._abort.set()
            self._interrupt()
            # the worker leaves at its next step; a blocking call may hold it
            # up to its own timeout, and it is a daemon thread meanwhile
            thread.join(min(timeout, 1.0))

    def stats(self) -> ChannelStats:
        with self._cv:
            return ChannelStats(sent=self._sent, failed=self._failed, dropped=self._dropped,
                                queued=len(self._q) - self._reopens + len(self._held),
                                failing=self._failing_now())

    def _push(self, item: _T | _Reopen) -> None:
        if item is _Reopen.REOPEN:
            self._reopens += 1
        self._q.append(item)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"bpfguard-{self.name}",
                                            daemon=True)
            self._thread.start()
        self._cv.notify_all()

    # -- worker side ----------------------------------------------------------

    def _queue_held(self) -> None:
        """Queues the held drop notices the reserve has room for (lock held)."""
        while self._held and len(self._q) < self._capacity + NOTICE_RESERVE:
            key = next(iter(self._held))
            notice = self._held.pop(key)
            try:
                self._q.append(self._prepare(notice))
            except Exception:
                log.exception("%s: cannot format alert %r", self.name, notice)
                self._failed += 1

    def _run(self) -> None:
        while True:
            with self._cv:
                self._queue_held()
                idle = not self._q and not self._closing
            if idle:
                self._idle()  # (outside the lock: it may write)
            with self._cv:
                self._queue_held()
                while not self._q and not self._closing:
                    self._cv.wait()
                    self._queue_held()
                if not self._q or self._abort.is_set():
                    break
                item = self._q.popleft()
                if item is _Reopen.REOPEN:
                    self._reopens -= 1
                self._busy = True
            try:
                self._handle(item)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()
            self._log_drops()
        with self._cv:
            self._dropped += len(self._q) - self._reopens + len(self._held)
            self._held.clear()
            self._q.clear()
            self._reopens = 0
            self._cv.notify_all()
        self._log_drops()
        try:
            self._shutdown()
        except Exception:
            log.exception("%s: closing failed", self.name)

    def _handle(self, item: _T | _Reopen) -> None:
        if item is _Reopen.REOPEN:
            try:
                self._reopen()
            except Exception as exc:
                log.warning("%s: reopen failed: %s", self.name, exc)
            return
        tries = 0
        while True:
            try:
                self._deliver(item)
            except _Transient as exc:
                tries += 1
                self._failures += 1
                if tries >= self._backoff.attempts or self._abort.wait(
                        self._backoff.delay(self._failures - 1, self._rng)):
                    self._give_up(exc)
                    return
                continue
            except Exception as exc:
                self._give_up(exc)
                return
            with self._cv:
                self._sent += 1
            self._failures = 0
            if self._failing:
                self._failing = False
                log.info("%s: delivering again", self.name)
            return

    def _give_up(self, exc: BaseException) -> None:
        with self._cv:
            self._failed += 1
        # one line when a channel starts failing, not one an alert
        if not self._failing:
            self._failing = True
            log.warning("%s: alert not delivered: %s", self.name, exc)

    def _log_drops(self) -> None:
        with self._cv:
            new = self._dropped - self._drops_logged
            self._drops_logged = self._dropped
        if new:
            log.warning("%s: dropped %d alert(s): queue full (capacity %d)",
                        self.name, new, self._capacity)

    # -- for subclasses -------------------------------------------------------

    def _prepare(self, alert: AlertLike) -> _T:
        raise NotImplementedError

    def _deliver(self, item: _T) -> None:
        raise NotImplementedError

    def _idle(self) -> None:
        """The queue is empty: write out what is buffered (worker thread)."""

    def _failing_now(self) -> bool:
        """Whether deliveries fail now (stats' `failing`; lock held)."""
        return self._failing

    def _reopen(self) -> None:
        """Closes what is open; the next alert opens it anew."""

    def _shutdown(self) -> None:
        """Frees what is open."""

    def _interrupt(self) -> None:
        """Called from close() to unblock a worker stuck in `_deliver`."""


class StdoutChannel(_QueuedChannel[str]):
    """Falco's ``stdout_output``: a line an alert.

    Args:
        fmt: text (default) or JSON.
        stream: where to write (default: ``sys.stdout`` as it is now).
        buffered: Falco's ``buffered_outputs``: lines are written 64 KiB at a
            time, and whenever the queue is empty (and at reopen and close);
            False writes every line at once.
    """

    def __init__(self, fmt: Format = Format(), *, stream: IO[str] | None = None,
                 buffered: bool = False, name: str = "stdout",
                 capacity: int = DEFAULT_CAPACITY) -> None:
        super().__init__(name, capacity=capacity, backoff=_NO_RETRY)
        self._fmt = fmt
        self._stream = stream if stream is not None else sys.stdout
        self._buffered = buffered

    def _prepare(self, alert: AlertLike) -> str:
        return self._fmt.line(alert) + "\n"

    def _deliver(self, item: str) -> None:
        self._stream.write(item)
        if not self._buffered:
            self._stream.flush()

    def _shutdown(self) -> None:
        self._stream.flush()


_FILE_BUFFER = 64 << 10  # buffered file output: bytes held before a write (or an idle queue)


class FileChannel(_QueuedChannel[bytes]):
    """Falco's ``file_output``: appends a line an alert to `path`.

    Args:
        keep_alive: False (Falco's default) opens, appends and closes for every
            alert, so a rotated file is left at once; True opens once and keeps
            writing to the same open file until :meth:`reopen` (SIGHUP through
            :class:`Channels`), which moves to a new file at `path`.
        buffered: Falco's ``buffered_outputs``; False flushes every line.
        max_bytes: rotate when the next line would take the file past this
            size, as Python's ``RotatingFileHandler``: ``path.{backups-1}`` becomes
            ``path.{backups}`` (the oldest is deleted) ... ``path`` becomes
            ``path.1``, and the line starts a new ``path``. A line is never
            split, so a line longer than `max_bytes` gets a file of its own.
            0 (the default): never rotate.
        backups: how many rotated files to keep. 0 with a `max_bytes`: the full
            file is deleted and a new one started, nothing kept (where
            ``RotatingFileHandler`` would never rotate).

    The file is opened without following a symbolic link, in a directory
    reached from / through directories only root (or this user) can
    change (see :func:`bpfguard.files.open_in_trusted_dir`): a user who can
    write there could otherwise point root's appends at any file. A
    refusal is a ConfigError at construction and a failed alert later.
    New files get mode 0644 less the umask, as Falco's.

    A line is written whole or not at all: a write that fails (a full disk)
    is cut back to the last newline, and the lines lost are counted as
    failed.

    The size is the file's on opening plus the bytes written since; another
    writer to the same file goes uncounted until the next open. A rotation that
    fails (say, a read-only directory) is logged and the line appended anyway:
    an alert is worth more than a size limit.
    """

    def __init__(self, path: str | os.PathLike[str], fmt: Format = Format(), *,
                 keep_alive: bool = False, buffered: bool = False, max_bytes: int = 0,
                 backups: int = 5, name: str = "file",
                 capacity: int = DEFAULT_CAPACITY, create_dirs: bool = False) -> None:
        super().__init__(name, capacity=capacity, backoff=_NO_RETRY)
        self.path = absolute(path)
        # checked now (config check, start) and at every open: the
        # directory may change in between
        check_output_path(self.path, self._where, missing="make" if create_dirs else "fail")
        if max_bytes < 0 or backups < 0:
            raise ConfigError(f"file channel: max_bytes and backups must be >= 0, "
                              f"got {max_bytes} and {backups}")
        self._fmt = fmt
        self._keep_alive = keep_alive
        self._buffered = buffered
        self._max_bytes = max_bytes
        self._backups = backups
        self._fd = -1
        self._pending = bytearray()  # lines not written yet (buffered)
        self._pending_lines = 0
        self._write_failing = False  # the last write failed (a buffered line may not say)
        self._size = 0
        self._rotate_failing = False

    def _prepare(self, alert: AlertLike) -> bytes:
        # encoded here, once: the size to count is the bytes written.
        # "replace": one unencodable string (a lone surrogate) must not cost the alert
        return (self._fmt.line(alert) + "\n").encode("utf-8", "replace")

    def _deliver(self, item: bytes) -> None:
        if self._fd < 0:
            self._open()
        if self._max_bytes and self._size and self._size + len(item) > self._max_bytes:
            self._rotate()
        self._pending += item
        self._pending_lines += 1
        self._size += len(item)
        if not self._buffered or not self._keep_alive or len(self._pending) >= _FILE_BUFFER:
            self._write_out(in_hand=1)
        if not self._keep_alive:
            self._close_file()

    def _idle(self) -> None:
        # buffered lines are not held once the queue is empty: a crash then
        # loses nothing counted sent
        if self._pending and self._fd >= 0:
            try:
                self._write_out()
            except OSError as exc:
                log.warning("%s: alerts not written: %s", self.name, exc)

    def _write_out(self, in_hand: int = 0) -> None:
        """Writes what is pending. On a failure (a full disk, a vanished
        mount) cuts what was written of a line back off, counts the lines
        not written as failed, not sent (but `in_hand`, the last, which is
        the caller's to count), and closes: the next alert starts afresh."""
        data, lines = bytes(self._pending), self._pending_lines
        self._pending.clear()
        self._pending_lines = 0
        start = os.fstat(self._fd).st_size  # (O_APPEND: ours go at the end)
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, memoryview(data)[written:])
        except OSError:
            self._write_failing = True
            self._cut_torn_line(start, data[:written])
            os.close(self._fd)
            self._fd = -1
            with self._cv:  # (buffered lines were counted sent when they were taken)
                lost = lines - data[:written].count(b"\n") - in_hand
                self._sent -= lost
                self._failed += lost
            raise
        self._write_failing = False

    def _cut_torn_line(self, start: int, written: bytes) -> None:
        """After a failed write of `written` at `start`: its part line off
        again, so that a reader (a log shipper, jq) never meets half a line.
        Only when the file is as this write left it: another writer's
        lines are not ours to cut."""
        keep = start + written.rfind(b"\n") + 1
        with contextlib.suppress(OSError):
            if os.fstat(self._fd).st_size == start + len(written) and keep < start + len(written):
                os.ftruncate(self._fd, keep)
                self._size = keep

    def _failing_now(self) -> bool:
        return self._failing or self._write_failing

    @property
    def _where(self) -> str:
        return f"file channel {self.path}"

    def _open(self) -> None:
        # read too: a torn line is found by reading the file's end
        self._fd = open_in_trusted_dir(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT,
                                       self._where)
        self._size = os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        self._close_file()
        try:
            if self._backups == 0:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            for i in range(self._backups - 1, -1, -1):
                # os.replace onto path.{backups} deletes the oldest; a missing
                # file is a gap (fewer rotations so far, or someone removed it)
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{self.path}.{i}" if i else self.path, f"{self.path}.{i + 1}")
        except OSError as exc:
            if not self._rotate_failing:
                log.warning("%s: cannot rotate %s, appending to it: %s", self.name, self.path, exc)
            self._rotate_failing = True
        else:
            self._rotate_failing = False
        self._open()

    def _close_file(self) -> None:
        if self._fd < 0:
            return
        try:
            if self._pending:
                self._write_out()
        finally:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    _reopen = _close_file
    _shutdown = _close_file


_FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp",
               "cron", "authpriv", "local0", "local1", "local2", "local3", "local4",
               "local5", "local6", "local7")


def _facility(channel: str, facility: int | str) -> int:
    """A ``syslog.LOG_*`` facility value, from itself or its name (``"local0"``)."""
    if isinstance(facility, int):
        return facility
    if facility.lower() not in _FACILITIES:
        raise ConfigError(f"{channel} channel: unknown facility {facility!r}")
    return int(getattr(syslog, f"LOG_{facility.upper()}"))


class SyslogChannel(_QueuedChannel[tuple[int, str]]):
    """Falco's ``syslog_output``: ``syslog(3)`` a message an alert.

    The level is the alert's priority (:func:`priority_level`: Emergency is
    LOG_EMERG ... Debug is LOG_DEBUG, as Falco); the message is the same line
    as on stdout. `facility` is a ``syslog.LOG_*`` value or its name
    (``"local0"``). `ident` is process-wide in syslog(3): the last
    SyslogChannel made sets it.

    Runs in a worker like the others: syslog(3) blocks when the log daemon's
    socket is full. :class:`Rfc5424SyslogChannel` speaks RFC 5424 itself.
    """

    def __init__(self, fmt: Format = Format(), *, ident: str = "bpfguard",
                 facility: int | str = syslog.LOG_USER, name: str = "syslog",
                 capacity: int = DEFAULT_CAPACITY) -> None:
        super().__init__(name, capacity=capacity, backoff=_NO_RETRY)
        self._fmt = fmt
        self._facility = _facility("syslog", facility)
        syslog.openlog(ident, 0, self._facility)

    def _prepare(self, alert: AlertLike) -> tuple[int, str]:
        return priority_level(str(alert["priority"])), self._fmt.line(alert)

    def _deliver(self, item: tuple[int, str]) -> None:
        level, line = item
        syslog.syslog(self._facility | level, line)


#: The SD-ID of :class:`Rfc5424SyslogChannel`'s structured data. 32473 is the
#: enterprise number IANA reserves for documentation and examples (RFC 5612):
#: a registered private enterprise number for bpfguard would replace it here.
SD_ID = "bpfguard@32473"

#: The most UTF-8 bytes of one structured-data value (``rule``, ``priority``,
#: ``source``), before escaping: bounds the header, so a ``max_size`` of 2048
#: or more always leaves room for the message.
SD_VALUE_MAX = 255

_BOM = b"\xef\xbb\xbf"  # RFC 5424 6.4: a UTF-8 MSG starts with it
_MIN_SIZE = 480  # RFC 5426 3.2: what every IPv4 receiver must accept
_DEFAULT_PORTS = {"udp": 514, "tcp": 601}  # RFC 5426, RFC 6587 (syslog-conn)


def _utf8_prefix(data: bytes, limit: int) -> bytes:
    """The longest prefix of UTF-8 `data` within `limit` bytes that ends on a character."""
    if len(data) <= limit:
        return data
    end = limit
    while end > 0 and data[end] & 0xC0 == 0x80:  # a continuation byte: mid-character
        end -= 1
    return data[:end]


def _sd_value(text: str) -> bytes:
    value = _utf8_prefix(text.encode("utf-8", "replace"), SD_VALUE_MAX)
    # RFC 5424 6.3.3: '"', '\' and ']' are escaped in a PARAM-VALUE, and nothing else
    return value.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"]", b"\\]")


def _header_field(text: str, limit: int) -> bytes:
    """An RFC 5424 header field: 1 to `limit` PRINTUSASCII (``!`` to ``~``), or ``-``."""
    out = "".join(c if "!" <= c <= "~" else "_" for c in text[:limit])
    return (out or "-").encode("ascii")


def _rfc5424_time(text: str) -> bytes:
    # RFC 5424 6.2.3: at most 6 fractional digits (cut, so never in the next
    # second), and a numeric offset with its colon
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    frac = f".{m[2][:6]}" if m[2] else ""
    zone = m[3] if m[3] == "Z" else f"{m[3][:3]}:{m[3][-2:]}"
    return f"{m[1]}{frac}{zone}".encode("ascii")


def _syslog_address(address: str) -> tuple[str, str, int]:
    """``(transport, host or socket path, port)`` of a syslog channel's address."""
    bad = ConfigError(f"syslog channel: bad address {address!r}: want unix:///path, "
                      "udp://host[:port] or tcp://host[:port]")
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        raise bad from None
    if parts.query or parts.fragment or parts.username is not None:
        raise bad
    if parts.scheme == "unix" and not parts.netloc and parts.path.startswith("/"):
        return "unix", parts.path, 0
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname \
            or parts.path not in ("", "/") or port == 0:
        raise bad
    return parts.scheme, parts.hostname, _DEFAULT_PORTS[parts.scheme] if port is None else port


class Rfc5424SyslogChannel(_QueuedChannel[bytes]):
    """RFC 5424 syslog, sent by the channel itself rather than syslog(3).

    Each alert is one message::

        <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] BOM MSG

    PRI is facility * 8 + :func:`priority_level`; TIMESTAMP the alert's
    ``time`` cut to microseconds; HOSTNAME its ``hostname``; PROCID this
    process; MSGID ``drop`` for an internal alert (``source`` ``internal``:
    the drop alert), else ``alert``; SD ``[bpfguard@32473 rule=".." priority=".."
    source=".."]`` (:data:`SD_ID`; values cut to :data:`SD_VALUE_MAX` bytes);
    MSG the :class:`Format` line in UTF-8. Header fields lose what RFC 5424
    does not allow there: characters outside ``!`` .. ``~`` become ``_``.

    Args:
        address: ``unix:///dev/log`` (default; a datagram socket, or a stream
            one where the socket is that, each message NUL-terminated as
            syslog(3) does: a kernel string cannot hold a NUL),
            ``udp://host[:port]`` (RFC 5426, port 514) or ``tcp://host[:port]``
            (RFC 6587 octet counting, ``LEN SP MSG``; port 601).
        facility: a ``syslog.LOG_*`` value or its name (``"local0"``).
        app_name: APP-NAME, 1 to 48 of ``!`` .. ``~``.
        max_size: the most bytes of a message (framing aside); MSG is cut to
            fit, on a character boundary. Default 2048 for UDP (what RFC 5426
            says every receiver should take), 8192 otherwise; at least 480.
            Below 2048 a header with a huge hostname or rule name may leave no
            room: that alert fails.
        timeout: seconds for connecting and for each send.
        backoff, rng: retries of unix and tcp sends, each after a reconnect.
            UDP is fire-and-forget: an error fails the alert, no retry.

    A reused unix or tcp socket that fails is replaced at once, before any
    backoff: a restarted log daemon is not an outage.
    """

    def __init__(self, fmt: Format = Format(), *, address: str = "unix:///dev/log",
                 facility: int | str = syslog.LOG_USER, app_name: str = "bpfguard",
                 max_size: int | None = None, timeout: float = 5.0,
                 name: str = "syslog5424", capacity: int = DEFAULT_CAPACITY,
                 backoff: Backoff = Backoff(), rng: random.Random | None = None) -> None:
        super().__init__(name, capacity=capacity, backoff=backoff, rng=rng)
        self.address = address
        self._transport, self._host, self._port = _syslog_address(address)
        self._facility = _facility("syslog", facility)
        if self._facility % 8 or not 0 <= self._facility < 24 * 8:
            raise ConfigError(f"syslog channel: bad facility {facility!r}")
        if _header_field(app_name, 48) != app_name.encode():
            raise ConfigError(f"syslog channel: bad app_name {app_name!r}: "
                              "1 to 48 printable ASCII characters, no space")
        if max_size is None:
            max_size = 2048 if self._transport == "udp" else 8192
        if max_size < _MIN_SIZE:
            raise ConfigError(f"syslog channel: max_size must be >= {_MIN_SIZE}, got {max_size}")
        self._fmt = fmt
        self._app = app_name.encode("ascii")
        self._max_size = max_size
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._udp_addr: tuple[Any, ...] = ()

    def _prepare(self, alert: AlertLike) -> bytes:
        pri = self._facility + priority_level(str(alert["priority"]))
        internal = alert.get("source") == "internal"
        sd = b'[%s rule="%s" priority="%s" source="%s"]' % (
            SD_ID.encode(), _sd_value(str(alert.get("rule", ""))),
            _sd_value(str(alert["priority"])), _sd_value(str(alert.get("source", ""))))
        head = b"<%d>1 %s %s %s %d %s %s " % (
            pri, rfc3339(alert.time_ns, digits=6).encode("ascii") if isinstance(alert, Alert)
            else _rfc5424_time(str(alert["time"])),
            _header_field(str(alert.get("hostname") or ""), 255), self._app, os.getpid(),
            b"drop" if internal else b"alert", sd)
        room = self._max_size - len(head)
        if room < len(_BOM):
            raise ValueError(f"header and structured data alone exceed max_size "
                             f"{self._max_size}")
        return head + _utf8_prefix(_BOM + self._fmt.line(alert).encode("utf-8", "replace"), room)

    def _deliver(self, item: bytes) -> None:
        if self._transport == "udp":
            self._send_udp(item)
            return
        sock = self._sock
        if sock is not None and sock.type == socket.SOCK_STREAM and _readable(sock):
            # a receiver never writes: a readable stream is one it has closed, and
            # what we sent now would be lost without an error
            self._disconnect()
        reused = self._sock is not None
        try:
            self._send_connected(item)
        except OSError as exc:
            self._disconnect()
            if not reused or isinstance(exc, TimeoutError):
                raise _Transient(f"{self.address}: {exc}") from exc
            # a socket that worked before and fails at once: the daemon restarted
            # (ECONNREFUSED, EPIPE); a new one, without waiting for the backoff
            try:
                self._send_connected(item)
            except OSError as again:
                self._disconnect()
                raise _Transient(f"{self.address}: {again}") from again

    def _send_udp(self, item: bytes) -> None:
        if self._sock is None:
            # unconnected, so an ICMP error about one datagram cannot fail the next
            family, kind, proto, _, addr = socket.getaddrinfo(
                self._host, self._port, type=socket.SOCK_DGRAM)[0]
            self._sock = socket.socket(family, kind, proto)
            self._udp_addr = addr
        try:
            self._sock.sendto(item, self._udp_addr)
        except OSError:
            self._disconnect()  # resolve again next time: the name may point elsewhere
            raise

    def _send_connected(self, item: bytes) -> None:
        if self._sock is None:
            self._sock = self._connect()
        if self._transport == "tcp":
            self._sock.sendall(b"%d %s" % (len(item), item))
        elif self._sock.type == socket.SOCK_STREAM:
            self._sock.sendall(item + b"\0")
        else:
            self._sock.send(item)

    def _connect(self) -> socket.socket:
        if self._transport == "tcp":
            return socket.create_connection((self._host, self._port), timeout=self._timeout)
        try:
            return self._connect_unix(socket.SOCK_DGRAM)
        except OSError as exc:
            if exc.errno != errno.EPROTOTYPE:  # EPROTOTYPE: the daemon listens on a stream
                raise
        return self._connect_unix(socket.SOCK_STREAM)

    def _connect_unix(self, kind: socket.SocketKind) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, kind)
        sock.settimeout(self._timeout)
        try:
            sock.connect(self._host)
        except OSError:
            sock.close()
            raise
        return sock

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    _reopen = _disconnect
    _shutdown = _disconnect

    def _interrupt(self) -> None:
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _readable(sock: socket.socket) -> bool:
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    return bool(poll.poll(0))


class ProgramChannel(_QueuedChannel[bytes]):
    """Falco's ``program_output``: each alert's line to ``sh -c program``'s stdin.

    Args:
        keep_alive: False (Falco's default) runs the program for every alert
            and waits (at most `timeout`) for it to end; a non-zero exit fails
            the alert without a retry, as the program ran. True starts it once
            and writes line after line; when it has died it is restarted, with
            :class:`Backoff` between tries. A line written just before it died
            may be lost, as with any pipe.
        timeout: seconds a program may take to finish (per alert, or at close).
        backoff, rng: the retries, and the jitter's source.

    The program runs in its own session, so a Ctrl-C meant for bpfguard does
    not kill it before it got the last alerts.
    """

    def __init__(self, program: str, fmt: Format = Format(), *, keep_alive: bool = False,
                 buffered: bool = False, timeout: float = 5.0, name: str = "program",
                 capacity: int = DEFAULT_CAPACITY, backoff: Backoff = Backoff(attempts=3),
                 rng: random.Random | None = None) -> None:
        super().__init__(name, capacity=capacity, backoff=backoff, rng=rng)
        self.program = program
        self._fmt = fmt
        self._keep_alive = keep_alive
        self._buffered = buffered
        self._timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None

    def _prepare(self, alert: AlertLike) -> bytes:
        return (self._fmt.line(alert) + "\n").encode("utf-8", "replace")

    def _spawn(self) -> subprocess.Popen[bytes]:
        try:
            # what popen(3) runs, as Falco
            return subprocess.Popen(["/bin/sh", "-c", self.program], stdin=subprocess.PIPE,
                                    start_new_session=True)
        except OSError as exc:
            raise _Transient(f"cannot start {self.program!r}: {exc}") from exc

    def _deliver(self, item: bytes) -> None:
        if not self._keep_alive:
            proc = self._spawn()
            try:
                proc.communicate(item, timeout=self._timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise RuntimeError(f"{self.program!r} still running after {self._timeout}s, "
                                   "killed") from None
            if proc.returncode:
                raise RuntimeError(f"{self.program!r} exited with status {proc.returncode}")
            return
        if self._proc is not None and self._proc.poll() is not None:
            status = self._proc.returncode
            self._stop_program()
            # a retry restarts it, after the backoff: a program that dies at
            # once is not restarted in a tight loop
            raise _Transient(f"{self.program!r} exited with status {status}")
        if self._proc is None:
            self._proc = self._spawn()
        proc = self._proc
        assert proc.stdin is not None
        try:
            proc.stdin.write(item)
            if not self._buffered:
                proc.stdin.flush()
        except OSError as exc:  # EPIPE: it exited (Python ignores SIGPIPE)
            self._stop_program()
            raise _Transient(f"{self.program!r} is gone: {exc}") from exc

    def _stop_program(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        # EOF: a well-behaved program finishes and exits. OSError: it had
        # exited with data still in the pipe
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(self._timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # Falco's reopen() also restarts the program
    _reopen = _stop_program
    _shutdown = _stop_program

    def _interrupt(self) -> None:
        proc = self._proc
        if proc is not None:
            proc.kill()


# 408 and 429 ask the client to try again later: giving up on them would lose
# alerts to a receiver's throttling. Every other 4xx is final.
_RETRY_4XX = frozenset({408, 429})


class _StaleConnection(Exception):
    """A reused keep-alive connection failed before any answer."""


class HttpChannel(_QueuedChannel[bytes]):
    """Falco's ``http_output``: POSTs each alert to `url`.

    Args:
        fmt: JSON by default (the body is the JSON line, as Falco sends it,
            ``Content-Type: application/json``); text is sent as
            ``text/plain``, as Falco does.
        user_agent: the ``User-Agent``.
        headers: more headers (overriding the defaults). A ``user:password@``
            in `url` becomes Basic authorization.
        insecure: skip certificate and host name checks.
        ca_cert, ca_path: a CA bundle file, a CA directory (default: the system's).
        client_cert, client_key: mutual TLS (Falco's ``mtls``).
        compress: gzip the body (``Content-Encoding: gzip``). Falco's
            ``compress_uploads`` only asks the server to compress responses.
        echo: write the server's replies to stdout (Falco's ``echo``).
        timeout: seconds for the connection and each socket operation.
        capacity: the bounded queue; the newest alert is dropped when full.
        backoff: retries on connection errors, timeouts, 5xx, 408 and 429;
            none on other answers (4xx) or an untrusted certificate.
        rng: the jitter's source (seed it for reproducible runs).

    One connection is kept open and reused (HTTP/1.1 keep-alive).

    The standard library is enough here (http.client rather than
    urllib.request, for the reused connection): a retrying worker around
    http.client is all this needs, and a process that runs as root is better
    off without the dependencies an HTTP client library brings.
    """

    def __init__(self, url: str, fmt: Format = Format(json_output=True), *,
                 user_agent: str = f"bpfguard/{__version__}",
                 headers: Mapping[str, str] | None = None, insecure: bool = False,
                 ca_cert: str | None = None, ca_path: str | None = None,
                 client_cert: str | None = None, client_key: str | None = None,
                 compress: bool = False, echo: bool = False, timeout: float = 5.0,
                 name: str = "http", capacity: int = DEFAULT_CAPACITY,
                 backoff: Backoff = Backoff(), rng: random.Random | None = None) -> None:
        super().__init__(name, capacity=capacity, backoff=backoff, rng=rng)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"http channel: not an http(s) URL: {url!r}")
        self.url = url
        self._fmt = fmt
        self._host = parts.hostname
        self._port = parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._compress = compress
        self._echo = echo
        self._timeout = timeout
        self._headers = {
            "Content-Type": "application/json" if fmt.json_output else "text/plain",
            "User-Agent": user_agent,
        }
        if compress:
            self._headers["Content-Encoding"] = "gzip"
        if parts.username is not None:
            cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        self._headers.update(headers or {})
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = _ssl_context(insecure, ca_cert, ca_path, client_cert, client_key)
        elif client_cert or ca_cert or ca_path:
            raise ConfigError(f"http channel: TLS options given for a plain http URL {url!r}")
        self._conn: http.client.HTTPConnection | None = None

    def _prepare(self, alert: AlertLike) -> bytes:
        return self._fmt.line(alert).encode("utf-8", "replace")

    def _deliver(self, item: bytes) -> None:
        body = gzip.compress(item) if self._compress else item
        try:
            status, reply = self._exchange(body)
        except _StaleConnection:
            # servers close idle keep-alive connections whenever they like:
            # one immediate try on a new connection tells that from an outage
            status, reply = self._exchange(body)
        if self._echo and reply:
            sys.stdout.write(reply.decode("utf-8", "replace") + "\n")
        if status < 300:
            return
        if status >= 500 or status in _RETRY_4XX:
            raise _Transient(f"HTTP {status}")
        raise RuntimeError(f"HTTP {status}: {reply[:200]!r}")

    def _exchange(self, body: bytes) -> tuple[int, bytes]:
        reused = self._conn is not None
        try:
            if self._conn is None:
                self._conn = self._connect()
            self._conn.request("POST", self._target, body=body, headers=self._headers)
            resp = self._conn.getresponse()
            reply = resp.read()
        except ssl.SSLCertVerificationError:
            self._disconnect()
            raise  # no retry: waiting does not make a certificate trusted
        except (OSError, http.client.HTTPException) as exc:
            self._disconnect()
            if reused and not isinstance(exc, TimeoutError):
                raise _StaleConnection from exc
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        if resp.will_close:
            self._disconnect()
        return resp.status, reply

    def _connect(self) -> http.client.HTTPConnection:
        if self._ssl is not None:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout,
                                               context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    _shutdown = _disconnect


def _ssl_context(insecure: bool, ca_cert: str | None, ca_path: str | None,
                 client_cert: str | None, client_key: str | None) -> ssl.SSLContext:
    if client_key and not client_cert:
        raise ConfigError("http channel: client_key without client_cert")
    try:
        ctx = ssl.create_default_context(cafile=ca_cert, capath=ca_path)
        if client_cert:
            ctx.load_cert_chain(client_cert, client_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"http channel: TLS setup failed: {exc}") from exc
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Channels:
    """Fans alerts out to channels, through an optional rate limiter.

    Args:
        channels: the channels; their names must differ.
        limiter: applied once, before the fan-out; its summaries go to every
            channel. A ticker thread polls it every `tick_interval` seconds so
            a summary is not held until the next alert; ``None``: only
            :meth:`send` and :meth:`tick` poll it.
        hostname: for :meth:`notice` (default: this host's name).
        install_sighup: reopen every channel on SIGHUP or SIGUSR1 (log rotation;
            Falco's logrotate configs send SIGUSR1). Only
            from the main thread, where Python runs signal handlers;
            :meth:`close`, from the main thread too, puts the previous one back.
    """

    def __init__(self, channels: Iterable[Channel], *, limiter: RateLimiter | None = None,
                 hostname: str | None = None, install_sighup: bool = False,
                 tick_interval: float | None = 1.0) -> None:
        self._channels = list(channels)
        names = [c.name for c in self._channels]
        if len(set(names)) != len(names):
            raise ConfigError(f"channel names must differ: {names}")
        self._limiter = limiter
        self.hostname = hostname if hostname is not None else socket.gethostname()
        self._closed = False
        # what each channel had dropped at its last report (report_drops)
        self._drops_lock = threading.Lock()
        self._drops_reported: dict[str, int] = {c.name: 0 for c in self._channels}
        # SIGHUP as logrotate configs usually send; SIGUSR1 as Falco's own do
        self._old_handlers: dict[int, Any] = {}
        if install_sighup:
            if threading.current_thread() is not threading.main_thread():
                raise ConfigError("a SIGHUP handler can only be installed from the main thread")
            for sig in (signal.SIGHUP, signal.SIGUSR1):
                self._old_handlers[sig] = signal.signal(sig, self._on_sighup)
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if limiter is not None and tick_interval is not None:
            self._ticker = threading.Thread(target=self._tick_loop, args=(tick_interval,),
                                            name="bpfguard-ratelimit", daemon=True)
            self._ticker.start()

    def __enter__(self) -> Channels:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def channels(self) -> list[Channel]:
        return list(self._channels)

    def send(self, alert: AlertLike, *, notice: bool = False) -> None:
        """Queues `alert` on every channel, unless the limiter holds it back (a
        `notice`, the report of a loss, it never holds back)."""
        if self._limiter is not None:
            self._fan_out(self._limiter.poll())  # older summaries first
            if not notice and not self._limiter.admit(alert):
                return
        for ch in self._channels:
            ch.send(alert, notice=notice)

    def notice(self, record: Mapping[str, Any]) -> None:
        """Sends a drop notice (``{"type": "loss"|"drop", ...}``) as Falco's drop
        alert, past the rate limiter and on the queues' reserve: a loss is
        reported even while alerts overflow."""
        self.send(drop_alert(record, hostname=self.hostname), notice=True)

    def tick(self) -> None:
        """Sends the limiter's summaries that are due, and reports what the
        queues dropped since the last call (:meth:`report_drops`). Call it
        about once a second."""
        if self._limiter is not None:
            self._fan_out(self._limiter.poll())
        self.report_drops()

    def report_drops(self) -> int:
        """For each channel whose queue dropped alerts since the last report,
        one drop notice on every channel (reason :data:`OUTPUT_DROP_REASON`,
        the count, the channel's name as ``bpfguard.output``). Returns the
        alerts reported. A notice that finds even the reserve full is held
        and merged with the next of its kind, never dropped."""
        total = 0
        with self._drops_lock:
            for ch in self._channels:
                dropped = ch.stats().dropped   # O(1)
                n = dropped - self._drops_reported.get(ch.name, 0)
                if n <= 0:
                    continue
                self._drops_reported[ch.name] = dropped
                total += n
                self.notice({"type": "drop", "reason": OUTPUT_DROP_REASON, "count": n,
                             "total": dropped, "output": ch.name, "time_ns": time.time_ns()})
        return total

    def reopen(self) -> None:
        """Reopens every channel (after what each has queued)."""
        for ch in self._channels:
            ch.reopen()

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every channel's queue is empty; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        return all([ch.flush(None if deadline is None else max(0.0, deadline - time.monotonic()))
                    for ch in self._channels])

    def stats(self) -> dict[str, ChannelStats]:
        """Each channel's counters, by name."""
        held = self._limiter.suppressed if self._limiter is not None else 0
        return {ch.name: replace(ch.stats(), suppressed=held) for ch in self._channels}

    def close(self, timeout: float = 5.0) -> None:
        """Sends pending summaries, then closes every channel within `timeout` in all."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._limiter is not None:
            self._fan_out(self._limiter.drain())
        self.report_drops()   # the last report: after this, drops are only counted
        deadline = time.monotonic() + timeout
        for ch in self._channels:
            ch.close(max(0.0, deadline - time.monotonic()))
        for sig, old in self._old_handlers.items():
            # None: the old handler was not set from Python; the default is all we can put back
            signal.signal(sig, signal.SIG_DFL if old is None else old)

    def _fan_out(self, alerts: list[Mapping[str, Any]]) -> None:
        for alert in alerts:
            for ch in self._channels:
                ch.send(alert)

    def _on_sighup(self, signum: int, frame: FrameType | None) -> None:
        self.reopen()

    def _tick_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.tick()
            except Exception:
                log.exception("rate limiter tick failed")
