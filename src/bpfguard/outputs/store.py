"""An embedded SQLite alert store: look back at alerts without a SIEM.

:class:`SqliteChannel` is one more channel for
:class:`~bpfguard.outputs.channels.Channels`; :func:`query_alerts` and
:func:`alert_counts` read the store (``bpfguard alerts query|stats``)::

    with Channels([StdoutChannel(), SqliteChannel("/var/lib/bpfguard/alerts.db")]) as out:
        out.send(alert)
    query_alerts("/var/lib/bpfguard/alerts.db", rule="Read sensitive*", min_priority="Warning")

Design:

* WAL journal: the agent writes while ``bpfguard alerts query`` reads, from
  another process. With WAL a reader reads a snapshot and never blocks the
  writer, nor the writer it; with the default rollback journal a reader's
  lock would hold the agent's commits up, and a commit would fail readers.
  ``synchronous=NORMAL``: a commit survives a crash of the agent; a power
  loss may lose the last commits but never corrupts the file, and alerts do
  not need an fsync each.
* Transactions: the worker buffers rows and inserts them in one transaction
  when its queue has drained or ``batch`` rows are waiting. A burst costs
  one commit per batch, a lone alert is stored at once, and when
  :meth:`~SqliteChannel.flush` returns, what was sent is committed.
  :meth:`~SqliteChannel.close` and :meth:`~SqliteChannel.reopen` commit
  what is buffered.
* Retention: at most ``max_rows`` rows. Once there are more than 10% over,
  the oldest (in insertion order) go in one ``DELETE`` in the same
  transaction: a bulk delete now and then, not one every insert. Freed
  pages are reused, so the file stops growing but does not shrink.
* Readers open the file read-only (``mode=ro``): a query can neither change
  the store nor take its write lock.
* The file is created 0600 (SQLite gives its ``-wal`` and ``-shm`` the same
  mode) and a missing parent directory 0700: alerts hold command lines.

Limits: one writing agent per file (each keeps its own row count);
an alert counts as sent when buffered, and when its transaction fails the
whole batch counts as failed; rows are roughly 1-2 KB with the indexes, so
the default 1,000,000 rows take 1-2 GB.

Schema (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`)::

    alerts(id INTEGER PRIMARY KEY,       -- insertion order
           time_ns INTEGER NOT NULL,     -- the alert's time, ns since the epoch (UTC)
           time TEXT,                    -- the same, RFC 3339 as Falco's `time`
           rule TEXT, priority TEXT,
           priority_level INTEGER,       -- syslog level: 0 Emergency .. 7 Debug
           source TEXT, hostname TEXT,
           proc_name TEXT, pid INTEGER, container_id TEXT,   -- from output_fields
           output TEXT,                  -- the message, without Falco's "time: Priority "
           alert TEXT)                   -- the whole alert as received, JSON
    indexes: (time_ns), (rule, time_ns), (priority_level, time_ns), (proc_name, time_ns)
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..errors import ConfigError
from ..files import absolute, check_output_path, open_in_trusted_dir
from ..timefmt import parse_rfc3339
from .alert import Alert
from .channels import (
    _NO_RETRY,
    DEFAULT_CAPACITY,
    PRIORITIES,
    AlertLike,
    _dumps,
    _QueuedChannel,
    priority_level,
    rfc3339,
)
from .ratelimit import message_of

__all__ = ["DEFAULT_STORE", "SCHEMA_VERSION", "AlertCounts", "SqliteChannel", "alert_counts",
           "query_alerts"]

#: Where the agent keeps its alert store unless configured otherwise.
DEFAULT_STORE = "/var/lib/bpfguard/alerts.db"

#: The schema this code writes and reads (``PRAGMA user_version``).
SCHEMA_VERSION = 1

_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    time_ns INTEGER NOT NULL,
    time TEXT,
    rule TEXT,
    priority TEXT,
    priority_level INTEGER,
    source TEXT,
    hostname TEXT,
    proc_name TEXT,
    pid INTEGER,
    container_id TEXT,
    output TEXT,
    alert TEXT
);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts (time_ns);
CREATE INDEX IF NOT EXISTS alerts_rule ON alerts (rule, time_ns);
CREATE INDEX IF NOT EXISTS alerts_priority ON alerts (priority_level, time_ns);
CREATE INDEX IF NOT EXISTS alerts_proc ON alerts (proc_name, time_ns);
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""

_INSERT = ("INSERT INTO alerts (time_ns, time, rule, priority, priority_level, source, "
           "hostname, proc_name, pid, container_id, output, alert) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")

_Row = tuple[int, str, str, str, int, str | None, str | None, str | None, int | None,
             str | None, str, str]

# seconds a statement waits for another connection's lock before failing
_BUSY_TIMEOUT = 5.0


def _row(alert: AlertLike) -> _Row:
    if isinstance(alert, Alert):
        ns = alert.time_ns
        whole: Any = alert.to_json_dict()
    else:
        secs, frac = parse_rfc3339(str(alert["time"]))
        ns = secs * 1_000_000_000 + int(frac)
        whole = alert
    priority = str(alert["priority"])
    fields = alert.get("output_fields") or {}
    name, pid, cid = fields.get("proc.name"), fields.get("proc.pid"), fields.get("container.id")
    return (ns, rfc3339(ns), str(alert["rule"]), priority, priority_level(priority),
            _opt_str(alert.get("source")), _opt_str(alert.get("hostname")), _opt_str(name),
            _opt_int(pid), _opt_str(cid), message_of(alert), _dumps(whole))


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    # Falco writes "<NA>" where a field has no value
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class SqliteChannel(_QueuedChannel[_Row]):
    """Stores every alert in the SQLite database at `path` (see the module's notes).

    Args:
        max_rows: rows kept; the oldest are deleted in bulk once there are
            more than 10% over.
        batch: rows inserted in one transaction at most.
        capacity: the bounded queue; the newest alert is dropped when full.

    Raises ConfigError when `path` cannot be a database: its directory cannot
    be made or written, or it is a directory or some other kind of file.
    """

    def __init__(self, path: str | os.PathLike[str], *, name: str = "sqlite",
                 capacity: int = DEFAULT_CAPACITY, max_rows: int = 1_000_000,
                 batch: int = 256) -> None:
        super().__init__(name, capacity=capacity, backoff=_NO_RETRY)
        if max_rows < 1 or batch < 1:
            raise ConfigError(f"{name} channel: max_rows and batch must be >= 1, "
                              f"got {max_rows} and {batch}")
        self.path = absolute(path)
        _check_path(name, self.path)
        self._max_rows = max_rows
        self._batch = batch
        # worker only, like everything the worker opens
        self._conn: sqlite3.Connection | None = None
        self._rows: list[_Row] = []  # delivered, not yet committed
        self._count = 0  # rows in the table, as of the last commit

    def _prepare(self, alert: AlertLike) -> _Row:
        return _row(alert)

    def _deliver(self, item: _Row) -> None:
        self._rows.append(item)
        with self._cv:
            more = bool(self._q)
        # what is queued joins this transaction; an empty queue commits now,
        # so flush() returning means committed
        if not more or len(self._rows) >= self._batch:
            # the rows before this one were counted as sent when delivered
            self._write(counted=len(self._rows) - 1)

    def _write(self, counted: int) -> None:
        """Inserts the buffered rows in one transaction, trimming if due. `counted`
        of them were counted as sent already: if it fails, they count as failed."""
        rows, self._rows = self._rows, []
        if not rows:
            return
        try:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT, rows)
                count = self._count + len(rows)
                if count > self._max_rows + self._max_rows // 10:
                    count -= self._trim(conn)
                conn.execute("COMMIT")
                self._count = count
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise
        except Exception:
            with self._cv:
                self._sent -= counted
                self._failed += counted
            self._disconnect()  # start afresh next time (a replaced or repaired file)
            raise

    def _trim(self, conn: sqlite3.Connection) -> int:
        """Deletes all but the newest `max_rows` rows; returns how many went."""
        cut = conn.execute("SELECT id FROM alerts ORDER BY id DESC LIMIT 1 OFFSET ?",
                           (self._max_rows,)).fetchone()
        if cut is None:
            return 0
        return conn.execute("DELETE FROM alerts WHERE id <= ?", cut).rowcount

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        # created here, not by SQLite, to get 0600 (the -wal and -shm follow
        # it), and checked again: the directory may have changed since
        os.close(open_in_trusted_dir(self.path, os.O_RDWR | os.O_CREAT,
                                     f"{self.name} channel {self.path}", mode=0o600,
                                     shared=False))
        # autocommit: _write's BEGIN IMMEDIATE takes the write lock up front
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT, isolation_level=None)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise RuntimeError(f"{self.path}: SQLite cannot use WAL here (journal mode "
                                   f"{mode}); put the store on a local file system")
            conn.execute("PRAGMA synchronous=NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                conn.executescript(_SCHEMA)
            elif version != SCHEMA_VERSION:
                raise RuntimeError(f"{self.path}: alert store schema {version}, this bpfguard "
                                   f"writes {SCHEMA_VERSION}")
            self._count = conn.execute("SELECT count(*) FROM alerts").fetchone()[0]
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _close(self) -> None:
        try:
            self._write(counted=len(self._rows))
        finally:
            self._disconnect()

    # a reopen commits and closes; the next alert opens the file at `path` anew
    _reopen = _close
    _shutdown = _close


def _check_path(name: str, path: str) -> None:
    """ConfigError unless the worker will be able to open a database at
    `path`, in a directory only root (or this user) can change: SQLite
    opens the database and its -wal and -shm files there by name, so a
    user who could write there could point them at another file (see
    :func:`bpfguard.files.open_in_trusted_dir`)."""
    where = f"{name} channel {path}"
    check_output_path(path, where, missing="make", dir_mode=0o700, shared=False)
    if not os.path.lexists(path):
        return  # (made at the first alert)
    fd = open_in_trusted_dir(path, os.O_RDONLY, where, shared=False)
    try:
        head = os.pread(fd, 16, 0)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it: {exc.strerror}") from None
    finally:
        os.close(fd)
    if head and head != b"SQLite format 3\x00":
        raise ConfigError(f"{name} channel: {path} exists and is not an SQLite database")


@contextlib.contextmanager
def _reader(path: str | os.PathLike[str]) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the store at `path`; ConfigError for what is wrong."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"no alert store at {path}; enable outputs.sqlite in the agent's "
                          "config")
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT, isolation_level=None)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open the alert store {path}: {exc}") from None
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise ConfigError(
                f"{path}: not a bpfguard alert store" if version == 0 else
                f"{path}: alert store schema {version}, this bpfguard reads {SCHEMA_VERSION}")
        yield conn
    except sqlite3.DatabaseError as exc:  # e.g. "file is not a database"
        raise ConfigError(f"cannot read the alert store {path}: {exc}") from None
    finally:
        conn.close()


def query_alerts(path: str | os.PathLike[str], *, since_ns: int | None = None,
                 until_ns: int | None = None, rule: str | None = None,
                 min_priority: str | None = None, proc: str | None = None,
                 limit: int = 100) -> list[dict[str, Any]]:
    """The stored alerts that match, newest first, at most `limit`.

    Args:
        since_ns, until_ns: the alert's time is within these (inclusive),
            in ns since the epoch.
        rule: the rule's exact name, or a glob when it has ``*`` or ``?``
            (case-sensitive; ``[`` is literal).
        min_priority: a Falco priority: alerts at it or more severe.
        proc: a process name, or a pid when all digits.
    """
    if limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    where: list[str] = []
    args: list[Any] = []
    if since_ns is not None:
        where.append("time_ns >= ?")
        args.append(since_ns)
    if until_ns is not None:
        where.append("time_ns <= ?")
        args.append(until_ns)
    if rule is not None:
        if "*" in rule or "?" in rule:
            where.append("rule GLOB ?")
            args.append(rule.replace("[", "[[]"))  # GLOB's character classes: not ours
        else:
            where.append("rule = ?")
            args.append(rule)
    if min_priority is not None:
        try:
            level = priority_level(min_priority)
        except ValueError:
            raise ConfigError(f"unknown priority {min_priority!r}; one of "
                              f"{', '.join(PRIORITIES)}") from None
        where.append("priority_level <= ?")
        args.append(level)
    if proc is not None:
        where.append("pid = ?" if proc.isdecimal() else "proc_name = ?")
        args.append(int(proc) if proc.isdecimal() else proc)
    sql = "SELECT alert FROM alerts"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY time_ns DESC, id DESC LIMIT ?"
    with _reader(path) as conn:
        return [json.loads(text) for (text,) in conn.execute(sql, [*args, limit])]


@dataclass(frozen=True)
class AlertCounts:
    """What the store holds.

    total: rows. first_ns, last_ns: the oldest and newest alert's time (None
    when empty). by_rule: (priority, rule, count), most severe first, then
    most frequent.
    """

    total: int
    first_ns: int | None
    last_ns: int | None
    by_rule: list[tuple[str, str, int]]


def alert_counts(path: str | os.PathLike[str]) -> AlertCounts:
    """Counts of the stored alerts by rule and priority."""
    with _reader(path) as conn:
        conn.execute("BEGIN")  # one snapshot for both queries, the agent writing meanwhile
        total, first, last = conn.execute(
            "SELECT count(*), min(time_ns), max(time_ns) FROM alerts").fetchone()
        by_rule = conn.execute(
            "SELECT priority, rule, count(*) FROM alerts GROUP BY priority_level, priority, rule "
            "ORDER BY priority_level, count(*) DESC, rule").fetchall()
        conn.execute("ROLLBACK")
    return AlertCounts(total=total, first_ns=first, last_ns=last,
                       by_rule=[(p, r, n) for p, r, n in by_rule])
