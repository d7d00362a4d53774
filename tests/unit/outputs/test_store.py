"""The SQLite alert store: the channel, query_alerts, and `bpfguard alerts`.

Real databases in tmp_path; synchronisation by flush(), close() and
SQLite's own locks, never by sleeping.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from bpfguard.cli.alerts import alerts, parse_when
from bpfguard.errors import ConfigError
from bpfguard.outputs.channels import rfc3339
from bpfguard.outputs.store import SCHEMA_VERSION, SqliteChannel, alert_counts, query_alerts

T0 = 1_714_558_805_000_000_000  # 2024-05-01T10:20:05Z
SEC = 1_000_000_000


def make_alert(i: int = 0, *, t: int | None = None, rule: str = "Read sensitive file untrusted",
               priority: str = "Warning", proc: str | None = "cat", pid: Any = 4242,
               container: str | None = "host") -> dict[str, Any]:
    fields: dict[str, Any] = {"fd.name": "/etc/shadow", "user.name": "root"}
    if proc is not None:
        fields["proc.name"] = proc
    if pid is not None:
        fields["proc.pid"] = pid
    if container is not None:
        fields["container.id"] = container
    return {
        "time": rfc3339(T0 + i * SEC if t is None else t),
        "rule": rule,
        "priority": priority,
        "source": "syscall",
        "hostname": "host1",
        "output": f"Sensitive file opened (n={i} user=root file=/etc/shadow)",
        "output_fields": fields,
        "tags": ["filesystem", "mitre_credential_access"],
    }


def store(path: Path, alerts_: list[dict[str, Any]], **kw: Any) -> SqliteChannel:
    """A closed channel that stored `alerts_`."""
    with SqliteChannel(path, capacity=len(alerts_) + 1, **kw) as ch:
        for a in alerts_:
            ch.send(a)
    return ch


def ns(alert: dict[str, Any]) -> int:
    return parse_when(alert["time"])


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A store with a mix of rules, priorities, processes and times."""
    path = tmp_path / "alerts.db"
    ch = store(path, [
        make_alert(0, rule="Read sensitive file untrusted", priority="Warning", proc="cat"),
        make_alert(1, rule="Terminal shell in container", priority="Notice", proc="bash",
                   pid=100),
        make_alert(2, rule="Read sensitive file trusted after startup", priority="Warning",
                   proc="nginx", pid="200"),
        make_alert(3, rule="Drop and execute new binary in container", priority="Critical",
                   proc="x", pid=300),
        make_alert(4, rule="Terminal shell in container", priority="Notice", proc=None,
                   pid=None, container=None),
        make_alert(5, rule="Read sensitive file untrusted", priority="Error", proc="cat",
                   pid=4243),
    ])
    assert ch.stats().sent == 6 and ch.stats().failed == 0
    return path


def ids(found: list[dict[str, Any]]) -> list[int]:
    """The `n` of each alert, from its output."""
    return [int(a["output"].split("n=")[1].split()[0]) for a in found]


# -- channel and query_alerts -------------------------------------------------------


def test_query_returns_the_stored_alerts_newest_first(db: Path) -> None:
    found = query_alerts(db)
    assert ids(found) == [5, 4, 3, 2, 1, 0]
    assert found[-1] == make_alert(0)  # the whole alert, as sent
    assert ids(query_alerts(db, limit=2)) == [5, 4]


def test_query_by_time(db: Path) -> None:
    assert ids(query_alerts(db, since_ns=T0 + 2 * SEC)) == [5, 4, 3, 2]
    assert ids(query_alerts(db, until_ns=T0 + 2 * SEC)) == [2, 1, 0]
    assert ids(query_alerts(db, since_ns=T0 + SEC, until_ns=T0 + 3 * SEC - 1)) == [2, 1]
    assert query_alerts(db, since_ns=T0 + 6 * SEC) == []


def test_query_by_rule_exact_and_glob(db: Path) -> None:
    assert ids(query_alerts(db, rule="Read sensitive file untrusted")) == [5, 0]
    assert query_alerts(db, rule="Read sensitive file") == []  # exact, not a prefix
    assert ids(query_alerts(db, rule="Read sensitive*")) == [5, 2, 0]
    assert ids(query_alerts(db, rule="*in container")) == [4, 3, 1]
    assert ids(query_alerts(db, rule="Terminal shell in containe?")) == [4, 1]
    assert query_alerts(db, rule="read sensitive*") == []  # case-sensitive, as rule names


def test_glob_brackets_are_literal(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store(path, [make_alert(0, rule="Write [etc]"), make_alert(1, rule="Write e")])
    assert ids(query_alerts(path, rule="Write [etc]*")) == [0]
    assert ids(query_alerts(path, rule="Write ?")) == [1]


def test_query_by_min_priority(db: Path) -> None:
    assert ids(query_alerts(db, min_priority="Critical")) == [3]
    assert ids(query_alerts(db, min_priority="error")) == [5, 3]
    assert ids(query_alerts(db, min_priority="Warning")) == [5, 3, 2, 0]
    assert ids(query_alerts(db, min_priority="info")) == [5, 4, 3, 2, 1, 0]
    with pytest.raises(ConfigError, match="unknown priority 'loud'"):
        query_alerts(db, min_priority="loud")


def test_query_by_process_name_or_pid(db: Path) -> None:
    assert ids(query_alerts(db, proc="cat")) == [5, 0]
    assert ids(query_alerts(db, proc="4242")) == [0]
    assert ids(query_alerts(db, proc="200")) == [2]  # a pid Falco gave as a string
    assert ids(query_alerts(db, proc="bash", rule="Terminal*")) == [1]
    assert query_alerts(db, proc="sshd") == []


def test_columns_hold_the_fields_missing_ones_null(db: Path) -> None:
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT time_ns, time, priority_level, proc_name, pid, "
                            "container_id, output FROM alerts ORDER BY id").fetchall()
    assert rows[0] == (T0, "2024-05-01T10:20:05.000000000Z", 4, "cat", 4242, "host",
                       "Sensitive file opened (n=0 user=root file=/etc/shadow)")
    assert rows[3][2:5] == (2, "x", 300)
    assert rows[4][3:6] == (None, None, None)


def test_falco_prefix_stays_in_the_alert_not_the_output_column(tmp_path: Path) -> None:
    a = make_alert(0)
    a["output"] = "10:20:05.000000000: Warning Sensitive file opened (n=0)"
    path = tmp_path / "a.db"
    store(path, [a])
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT output FROM alerts").fetchone() == (
            "Sensitive file opened (n=0)",)
    assert query_alerts(path)[0]["output"] == a["output"]


def test_bad_limit(db: Path) -> None:
    with pytest.raises(ConfigError, match="limit"):
        query_alerts(db, limit=0)


def test_store_is_wal_with_a_schema_version(db: Path) -> None:
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        indexes = {r[0] for r in conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index'")}
    assert {i.split(" ON ")[1] for i in indexes} == {
        "alerts (time_ns)", "alerts (rule, time_ns)", "alerts (priority_level, time_ns)",
        "alerts (proc_name, time_ns)"}


def test_file_is_private_and_a_missing_directory_made_0700(tmp_path: Path) -> None:
    path = tmp_path / "new" / "alerts.db"
    store(path, [make_alert()])
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_reader_holding_a_snapshot_does_not_block_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store(path, [make_alert(0)])
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM alerts").fetchone() == (1,)
        with SqliteChannel(path) as ch:
            for i in range(1, 50):
                ch.send(make_alert(i))
            # a rollback journal would make the commit wait for the reader's lock
            assert ch.flush(timeout=3.0)
            assert ch.stats().sent == 49 and ch.stats().failed == 0
            # committed, and visible to a new reader while the old snapshot stands
            assert len(query_alerts(path, limit=1000)) == 50
            assert reader.execute("SELECT count(*) FROM alerts").fetchone() == (1,)
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM alerts").fetchone() == (50,)
    finally:
        reader.close()


def test_concurrent_queries_while_the_writer_works(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store(path, [make_alert(0)])
    n = 3000
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                seen.append(len(query_alerts(path, limit=n + 1)))
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    with SqliteChannel(path, capacity=n, batch=50) as ch:
        reader.start()
        for i in range(1, n + 1):
            ch.send(make_alert(i))
        assert ch.flush(timeout=30)
        done.set()
        reader.join()
    assert errors == []
    assert seen and seen == sorted(seen)  # whole transactions, never going back
    assert len(query_alerts(path, limit=n + 1)) == n + 1


def test_close_commits_everything_sent(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    ch = SqliteChannel(path, capacity=5000, batch=10_000)
    for i in range(5000):
        ch.send(make_alert(i))
    ch.close()
    assert ch.stats().sent == 5000 and ch.stats().dropped == 0
    assert len(query_alerts(path, limit=10_000)) == 5000


def test_reopen_commits_what_is_buffered(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with SqliteChannel(path, batch=1000) as ch:
        for i in range(20):
            ch.send(make_alert(i))
        # the queued reopen keeps the last alerts buffered until the reopen commits them
        ch.reopen()
        assert ch.flush(timeout=5)
        assert len(query_alerts(path)) == 20
        ch.send(make_alert(20))  # and the next alert opens the store again
        assert ch.flush(timeout=5)
        assert ids(query_alerts(path, limit=1)) == [20]


def test_retention_deletes_the_oldest_in_bulk(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    ch = store(path, [make_alert(i) for i in range(100)], max_rows=20, batch=7)
    assert ch.stats().sent == 100
    left = ids(query_alerts(path, limit=1000))
    assert 20 <= len(left) <= 22  # deletes once over by more than 10%
    assert left == list(range(99, 99 - len(left), -1))  # the newest


def test_retention_counts_rows_already_in_the_store(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store(path, [make_alert(i) for i in range(30)])
    store(path, [make_alert(30)], max_rows=10)
    assert ids(query_alerts(path)) == list(range(30, 20, -1))


def test_an_alert_without_a_time_fails_and_the_rest_are_stored(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    bad = make_alert(1)
    del bad["time"]
    ch = store(path, [make_alert(0), bad, make_alert(2)])
    assert (ch.stats().sent, ch.stats().failed) == (2, 1)
    assert ids(query_alerts(path)) == [2, 0]


def test_a_failed_transaction_counts_its_whole_batch_as_failed(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store(path, [make_alert(0)])
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("CREATE TRIGGER full BEFORE INSERT ON alerts "
                     "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        with SqliteChannel(path) as ch:
            # the write lock holds the worker at its first transaction, so the
            # alerts sent meanwhile queue up and go in one transaction after it
            conn.execute("BEGIN IMMEDIATE")
            for i in range(1, 5):
                ch.send(make_alert(i))
            conn.execute("ROLLBACK")
            assert ch.flush(timeout=5)
            assert (ch.stats().sent, ch.stats().failed) == (0, 4)
    assert ids(query_alerts(path)) == [0]


def test_a_newer_schema_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store(path, [make_alert(0)])
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 99")
    ch = store(path, [make_alert(1)])
    assert (ch.stats().sent, ch.stats().failed) == (0, 1)
    with pytest.raises(ConfigError, match="alert store schema 99, this bpfguard reads 1"):
        query_alerts(path)


@pytest.mark.parametrize("where", ["file/alerts.db", "dir", "text"])
def test_bad_paths_are_config_errors(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("")
    (tmp_path / "dir").mkdir()
    (tmp_path / "text").write_text("not a database\n")
    with pytest.raises(ConfigError, match="sqlite channel"):
        SqliteChannel(tmp_path / where)


def test_bad_sizes_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_rows"):
        SqliteChannel(tmp_path / "a.db", max_rows=0)
    with pytest.raises(ConfigError, match="batch"):
        SqliteChannel(tmp_path / "a.db", batch=0)


def test_query_errors_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no alert store at .*nope\.db; enable "
                                          r"outputs\.sqlite in the agent's config"):
        query_alerts(tmp_path / "nope.db")
    (tmp_path / "text").write_text("not a database, but long enough to look at\n" * 100)
    with pytest.raises(ConfigError, match="cannot read the alert store"):
        query_alerts(tmp_path / "text")
    (tmp_path / "empty.db").write_bytes(b"")  # SQLite's empty database, no schema
    with pytest.raises(ConfigError, match="not a bpfguard alert store"):
        query_alerts(tmp_path / "empty.db")


def test_queries_do_not_change_the_store(db: Path) -> None:
    before = db.read_bytes()
    query_alerts(db, rule="Read*")
    alert_counts(db)
    assert db.read_bytes() == before
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn, \
            pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("DELETE FROM alerts")


def test_alert_counts(db: Path) -> None:
    c = alert_counts(db)
    assert (c.total, c.first_ns, c.last_ns) == (6, T0, T0 + 5 * SEC)
    assert c.by_rule == [
        ("Critical", "Drop and execute new binary in container", 1),
        ("Error", "Read sensitive file untrusted", 1),
        ("Warning", "Read sensitive file trusted after startup", 1),
        ("Warning", "Read sensitive file untrusted", 1),
        ("Notice", "Terminal shell in container", 2),
    ]


# -- parse_when -------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=2**62))
def test_parse_when_reads_falco_times_to_the_nanosecond(t: int) -> None:
    assert parse_when(rfc3339(t)) == t


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from("smhd"))
def test_parse_when_durations_are_ago(n: int, unit: str) -> None:
    secs = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert parse_when(f"{n}{unit}", now_ns=T0) == T0 - n * secs * SEC


def test_parse_when_iso_forms_default_to_utc() -> None:
    assert parse_when("2024-05-01T10:20:05") == T0
    assert parse_when("2024-05-01 10:20:05.5") == T0 + SEC // 2
    assert parse_when("2024-05-01T12:20:05+02:00") == T0
    assert parse_when("2024-05-01") == T0 - (10 * 3600 + 20 * 60 + 5) * SEC
    for bad in ("yesterday", "2h ago", "-2h", "2024-13-01", "5y", ""):
        with pytest.raises(ValueError, match="neither a time"):
            parse_when(bad)


# -- bpfguard alerts ---------------------------------------------------------------


def run(*args: str) -> Any:
    return CliRunner().invoke(alerts, list(args))


def test_cli_query_text_lines(db: Path) -> None:
    res = run("query", "--db", str(db), "--rule", "Read*", "--limit", "2")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == [
        "2024-05-01T10:20:10.000000000Z Error Read sensitive file untrusted: "
        "Sensitive file opened (n=5 user=root file=/etc/shadow)",
        "2024-05-01T10:20:07.000000000Z Warning Read sensitive file trusted after startup: "
        "Sensitive file opened (n=2 user=root file=/etc/shadow)",
    ]


def test_cli_query_json_lines_are_the_stored_alerts(db: Path) -> None:
    res = run("query", "--db", str(db), "--json", "--priority", "error", "--proc", "cat")
    assert res.exit_code == 0, res.output
    assert [json.loads(line) for line in res.stdout.splitlines()] == [make_alert(
        5, rule="Read sensitive file untrusted", priority="Error", proc="cat", pid=4243)]


def test_cli_query_time_options(db: Path) -> None:
    res = run("query", "--db", str(db), "--json", "--since", "2024-05-01T10:20:08",
              "--until", "2024-05-01 10:20:09Z")
    assert res.exit_code == 0, res.output
    assert ids([json.loads(x) for x in res.stdout.splitlines()]) == [4, 3]


def test_cli_query_relative_since(tmp_path: Path) -> None:
    now = time.time_ns()
    path = tmp_path / "a.db"
    store(path, [make_alert(0, t=now - 3 * 3600 * SEC), make_alert(1, t=now - 3600 * SEC),
                 make_alert(2, t=now - 60 * SEC)])
    for since, want in (("2h", [2, 1]), ("90m", [2, 1]), ("300s", [2]), ("1d", [2, 1, 0])):
        res = run("query", "--db", str(path), "--json", "--since", since)
        assert res.exit_code == 0, res.output
        assert ids([json.loads(x) for x in res.stdout.splitlines()]) == want, since
    res = run("query", "--db", str(path), "--json", "--since", "4h", "--until", "2h")
    assert ids([json.loads(x) for x in res.stdout.splitlines()]) == [0]


def test_cli_says_when_nothing_matches(db: Path) -> None:
    res = run("query", "--db", str(db), "--rule", "nope")
    assert res.exit_code == 0 and res.stdout == ""
    assert "no alert matches" in res.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "yesterday"], "--since yesterday: 'yesterday' is neither a time"),
    (["--until", "2024-05-01T25:00:00"], "--until 2024-05-01T25:00:00: "),
    (["--since", "1h", "--until", "2h"], "--since 1h is after --until 2h"),
    (["--priority", "loud"], "--priority loud: not a Falco priority; one of emergency"),
])
def test_cli_bad_options_are_config_errors(db: Path, args: list[str], message: str) -> None:
    res = run("query", "--db", str(db), *args)
    assert isinstance(res.exception, ConfigError)
    assert str(res.exception).startswith(message)


def test_cli_bad_limit_is_a_usage_error(db: Path) -> None:
    res = run("query", "--db", str(db), "--limit", "0")
    assert res.exit_code == 2 and "--limit" in res.stderr


def test_cli_missing_store(tmp_path: Path) -> None:
    res = run("query", "--db", str(tmp_path / "none.db"))
    assert isinstance(res.exception, ConfigError)
    assert "enable outputs.sqlite" in str(res.exception)


def test_cli_stats(db: Path) -> None:
    res = run("stats", "--db", str(db))
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == (f"{db}: 6 alerts from 2024-05-01T10:20:05.000000000Z to "
                        "2024-05-01T10:20:10.000000000Z")
    assert lines[1].split() == ["COUNT", "PRIORITY", "RULE"]
    assert lines[2].split(None, 2) == ["1", "Critical", "Drop and execute new binary in container"]
    assert lines[6].split(None, 2) == ["2", "Notice", "Terminal shell in container"]
    assert lines[7] == "by priority: Critical 1, Error 1, Warning 2, Notice 2"


def test_cli_stats_of_an_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store(path, [make_alert()], max_rows=1)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DELETE FROM alerts")
        conn.commit()
    res = run("stats", "--db", str(path))
    assert res.exit_code == 0 and res.stdout == f"{path}: no alerts\n"
