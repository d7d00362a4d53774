"""RFC 3339 timestamps: the one formatter every UTC timestamp bpfguard writes uses.

:func:`rfc3339` writes wall-clock nanoseconds since the epoch in UTC with a
``Z``: nine fraction digits by default, as Falco's alert ``time`` has them;
fewer where a format wants fewer (RFC 5424 allows six; profiles stamp whole
seconds); or, with ``digits=None``, the fewest of 0, 3, 6 or 9 that keep the
value, as protojson writes a Timestamp (Tetragon's events)::

    >>> rfc3339(1714558805_408091526)
    '2024-05-01T10:20:05.408091526Z'
    >>> rfc3339(1714558805_408091526, digits=6)
    '2024-05-01T10:20:05.408091Z'
    >>> rfc3339(1714558805_120000000, digits=None)
    '2024-05-01T10:20:05.120Z'

A fraction is cut, never rounded: a time never moves into the next second.
:func:`parse_rfc3339` reads any RFC 3339 time back (offsets, 0-9 digits).
:func:`local_clock` writes the local time of day Falco's text alerts start with.

Leaf module (standard library only): the agent's hot path and the CLI's
start-up both import it.
"""

from __future__ import annotations

import calendar
import re
import time

__all__ = ["local_clock", "parse_rfc3339", "rfc3339"]

_NS = 1_000_000_000

# The last second formatted, and its text: alerts come in bursts within one
# second, and time.strftime(gmtime()) is most of the cost of a timestamp. One
# tuple, replaced whole, so concurrent callers see a consistent pair.
_last: tuple[int, str] = (-1, "")


def rfc3339(ns: int, *, digits: int | None = 9) -> str:
    """``ns`` (wall clock, since the epoch) as ``YYYY-MM-DDTHH:MM:SS[.f]Z`` in UTC.

    Parameters:
        ns: nanoseconds since the epoch.
        digits: fraction digits, 0 to 9 (cut, not rounded); None: the fewest
            of 0, 3, 6 or 9 that keep the value (protojson's Timestamp).

    Returns:
        The timestamp text.

    Example: ``rfc3339(time.time_ns())``.
    """
    global _last
    sec, frac = divmod(ns, _NS)
    last = _last
    if last[0] == sec:
        base = last[1]
    else:
        base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _last = (sec, base)
    if digits == 9:
        return f"{base}.{frac:09d}Z"
    if digits is None:
        if frac == 0:
            return base + "Z"
        if frac % 1_000_000 == 0:
            return f"{base}.{frac // 1_000_000:03d}Z"
        if frac % 1_000 == 0:
            return f"{base}.{frac // 1_000:06d}Z"
        return f"{base}.{frac:09d}Z"
    if not 0 <= digits <= 9:
        raise ValueError(f"digits must be 0 to 9 or None, got {digits}")
    if digits == 0:
        return base + "Z"
    return f"{base}.{frac // 10 ** (9 - digits):0{digits}d}Z"


# The same for local_clock(), keyed by the zone too: tzset() may change it.
_last_clock: tuple[tuple[int, int, tuple[str, str]], str] = ((-1, 0, ("", "")), "")


def local_clock(ns: int) -> str:
    """``ns`` (wall clock, since the epoch) as the local ``HH:MM:SS.nnnnnnnnn``
    Falco's text alerts start with."""
    global _last_clock
    secs, frac = divmod(ns, _NS)
    key = (secs, time.timezone, time.tzname)
    last = _last_clock
    if last[0] == key:
        base = last[1]
    else:
        base = time.strftime("%H:%M:%S", time.localtime(secs))
        _last_clock = (key, base)
    return f"{base}.{frac:09d}"


RFC3339_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})\Z")


def parse_rfc3339(text: str) -> tuple[int, str]:
    """Seconds since the epoch and the 9-digit fraction of an RFC 3339 time.

    Raises:
        ValueError: `text` is not one.
    """
    m = RFC3339_RE.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    secs = calendar.timegm(time.strptime(m[1], "%Y-%m-%dT%H:%M:%S"))
    if m[3] != "Z":
        sign = 1 if m[3][0] == "+" else -1
        hh, mm = int(m[3][1:3]), int(m[3][-2:])
        secs -= sign * (hh * 3600 + mm * 60)
    return secs, (m[2] or "").ljust(9, "0")
