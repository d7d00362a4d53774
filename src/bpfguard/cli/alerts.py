"""`bpfguard alerts`: look back at the alerts the agent stored (outputs.sqlite)."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import click

from ..errors import ConfigError
from ..outputs.channels import PRIORITIES, priority_level
from ..outputs.ratelimit import message_of
from ..outputs.store import DEFAULT_STORE, alert_counts, query_alerts
from ..timefmt import parse_rfc3339, rfc3339

__all__ = ["alerts", "parse_when"]

_CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_AGO = re.compile(r"(\d+)([smhd])\Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_when(text: str, *, now_ns: int | None = None) -> int:
    """ns since the epoch of WHEN: ``30s``, ``15m``, ``2h``, ``7d`` ago (from
    `now_ns`, default now), or an ISO 8601 / RFC 3339 time (UTC without an
    offset). ValueError says what is wrong."""
    m = _AGO.match(text)
    if m is not None:
        now = time.time_ns() if now_ns is None else now_ns
        return now - int(m[1]) * _UNITS[m[2]] * 1_000_000_000
    try:
        # Falco's own `time`, to the nanosecond (fromisoformat stops at µs)
        secs, frac = parse_rfc3339(text)
        return secs * 1_000_000_000 + int(frac)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a time (2024-05-01T12:00:00Z, 2024-05-01) "
                         "nor a duration ago (30s, 15m, 2h, 7d)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // timedelta(microseconds=1) * 1000


def _when(option: str, text: str | None, now_ns: int) -> int | None:
    if text is None:
        return None
    try:
        return parse_when(text, now_ns=now_ns)
    except ValueError as exc:
        raise ConfigError(f"{option} {text}: {exc}") from None


@click.group(context_settings=_CTX)
def alerts() -> None:
    """Look back at the alerts the agent stored, without a SIEM.

    \b
    The agent stores its alerts in SQLite when outputs.sqlite is enabled
    (default file: /var/lib/bpfguard/alerts.db). These commands only read it,
    while the agent keeps writing.
    """


@alerts.command(context_settings=_CTX)
@click.option("--db", default=DEFAULT_STORE, show_default=True, metavar="PATH",
              help="The alert store.")
@click.option("--since", metavar="WHEN",
              help="Alerts at or after WHEN: a time (2024-05-01T12:00:00Z, 2024-05-01 12:00, "
                   "2024-05-01; UTC unless it has an offset) or a duration ago (30s, 15m, 2h, "
                   "7d).")
@click.option("--until", metavar="WHEN", help="Alerts at or before WHEN (as --since).")
@click.option("--rule", metavar="NAME|GLOB",
              help="A rule's exact name, or a glob with * and ? (case-sensitive).")
@click.option("--priority", metavar="MIN",
              help="This Falco priority or more severe: emergency, alert, critical, error, "
                   "warning, notice, informational (info), debug.")
@click.option("--proc", metavar="NAME|PID", help="A process name, or a pid (all digits).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1),
              metavar="N", help="At most N alerts, the newest.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON alert per line, as the agent stored it (Falco's JSON shape).")
def query(db: str, since: str | None, until: str | None, rule: str | None,
          priority: str | None, proc: str | None, limit: int, as_json: bool) -> None:
    """Print stored alerts, newest first: `TIME PRIORITY RULE: OUTPUT` lines.

    \b
    Examples:
      bpfguard alerts query --since 2h                      the last two hours
      bpfguard alerts query --rule 'Read sensitive*' --priority warning
      bpfguard alerts query --since 2024-05-01 --until '2024-05-02 06:00'
      bpfguard alerts query --proc nginx --limit 20
      bpfguard alerts query --proc 4242 --json | jq .output_fields
    """
    now = time.time_ns()  # one now, so --since 2h --until 1h is exactly an hour
    since_ns, until_ns = _when("--since", since, now), _when("--until", until, now)
    if since_ns is not None and until_ns is not None and since_ns > until_ns:
        raise ConfigError(f"--since {since} is after --until {until}")
    if priority is not None:
        try:
            priority_level(priority)
        except ValueError:
            raise ConfigError(f"--priority {priority}: not a Falco priority; one of "
                              f"{', '.join(p.lower() for p in PRIORITIES)}") from None
    found = query_alerts(db, since_ns=since_ns, until_ns=until_ns, rule=rule,
                         min_priority=priority, proc=proc, limit=limit)
    for a in found:
        if as_json:
            click.echo(json.dumps(a, ensure_ascii=False, separators=(",", ":"), sort_keys=True))
        else:
            click.echo(f"{a.get('time')} {a.get('priority')} {a.get('rule')}: {message_of(a)}")
    if not found:
        click.echo("no alert matches", err=True)


@alerts.command(context_settings=_CTX)
@click.option("--db", default=DEFAULT_STORE, show_default=True, metavar="PATH",
              help="The alert store.")
def stats(db: str) -> None:
    """Count the stored alerts by priority and rule, most severe first."""
    counts = alert_counts(db)
    if counts.first_ns is None or counts.last_ns is None:
        click.echo(f"{db}: no alerts")
        return
    click.echo(f"{db}: {counts.total} alerts from {rfc3339(counts.first_ns)} "
               f"to {rfc3339(counts.last_ns)}")
    width = max(len("PRIORITY"), *(len(p) for p, _r, _n in counts.by_rule))
    num = max(len("COUNT"), *(len(str(n)) for _p, _r, n in counts.by_rule))
    click.echo(f"{'COUNT':>{num}}  {'PRIORITY':{width}}  RULE")
    for p, r, n in counts.by_rule:
        click.echo(f"{n:>{num}}  {p:{width}}  {r}")
    by_priority: Counter[str] = Counter()
    for p, _r, n in counts.by_rule:
        by_priority[p] += n
    click.echo("by priority: " + ", ".join(f"{p} {n}" for p, n in by_priority.items()))
