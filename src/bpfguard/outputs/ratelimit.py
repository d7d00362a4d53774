"""Per-rule rate limiting and deduplication of alerts, with nothing lost silently.

A noisy rule must not drown the others, nor a webhook: :class:`RateLimiter`
gives every rule a token bucket (``rate`` alerts a second, bursts of up to
``burst``) and, optionally, a dedup window that holds back alerts identical to
one already sent (same rule, same output message) for ``dedup_window`` seconds.

What it holds back is counted, never just dropped: when a dedup window ends,
or when a rate-limited rule has a token again, :meth:`RateLimiter.poll` returns
ONE summary alert standing for all that was suppressed. A summary is the last
suppressed alert itself, its ``output`` extended with how many were held back
and between which times, and its ``output_fields`` with ``bpfguard.suppressed``
(the count), ``bpfguard.suppressed_by`` (``"dedup"`` or ``"rate_limit"``) and
``bpfguard.suppressed_first`` (the time of the first one). :meth:`RateLimiter.drain`
returns every pending summary at once, for shutdown.

The limiter is pure bookkeeping, thread-safe, and reads time only from the
injected ``clock`` (monotonic seconds), so tests drive it deterministically::

    clock = FakeClock()                      # any () -> float
    lim = RateLimiter(limit=Limit(rate=1.0, burst=2), dedup_window=60, clock=clock)
    if lim.admit(alert):                     # False: held back and counted
        deliver(alert)
    for summary in lim.poll():               # call often (the fan-out does)
        deliver(summary)
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError
from .alert import Alert

__all__ = ["Limit", "RateLimiter", "TokenBucket", "message_of", "strip_prefix"]

# Falco's rule alerts carry the text line's prefix in `output`
# ("13:53:31.726060287: Critical ..." or the ISO 8601 variant): identical alerts
# differ there, so the dedup key leaves it out.
_PREFIX = re.compile(
    r"(?:\d{2}:\d{2}:\d{2}|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.\d{9}(?:[+-]\d{4})?: \S+ ")


def strip_prefix(out: str) -> str:
    """`out` without Falco's ``time: Priority`` prefix, if it has one."""
    m = _PREFIX.match(out)
    return out[m.end():] if m else out


def message_of(alert: Mapping[str, Any]) -> str:
    """The alert's ``output`` without Falco's ``time: Priority`` prefix."""
    out = alert.output if isinstance(alert, Alert) else str(alert.get("output", ""))
    return strip_prefix(out)


@dataclass(frozen=True)
class Limit:
    """A token bucket's parameters: ``rate`` tokens a second, at most ``burst`` saved."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if not self.rate > 0 or self.burst < 1:
            raise ConfigError(f"rate limit needs rate > 0 and burst >= 1, got {self}")


class TokenBucket:
    """A token bucket that starts full; time comes from the caller.

    >>> b = TokenBucket(Limit(rate=1.0, burst=2), now=0.0)
    >>> [b.take(0.0), b.take(0.0), b.take(0.0), b.take(1.0)]
    [True, True, False, True]
    """

    def __init__(self, limit: Limit, now: float) -> None:
        self.limit = limit
        self._tokens = float(limit.burst)
        self._last = now

    def take(self, now: float) -> bool:
        """Takes a token if one is there."""
        # max(): a clock that steps back must not mint negative time
        elapsed = max(0.0, now - self._last)
        self._tokens = min(float(self.limit.burst), self._tokens + elapsed * self.limit.rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class _Held:
    """What was suppressed under one key and not yet summarised."""

    __slots__ = ("count", "first", "last")

    def __init__(self) -> None:
        self.count = 0
        self.first = ""
        self.last: Mapping[str, Any] = {}

    def add(self, alert: Mapping[str, Any]) -> None:
        if not self.count:
            self.first = str(alert.get("time", ""))
        self.count += 1
        self.last = alert


class _Window:
    __slots__ = ("end", "held")

    def __init__(self, end: float) -> None:
        self.end = end
        self.held = _Held()


def _summary(held: _Held, by: str) -> Mapping[str, Any]:
    """The last alert held back, standing for all of them (an Alert for an Alert)."""
    last = held.last
    n = held.count
    what = (f"identical alert{'s' * (n != 1)}" if by == "dedup"
            else f"alert{'s' * (n != 1)} of this rule by rate limit")
    output = (f"{last.get('output', '')} (suppressed: {n} {what} "
              f"from {held.first} to {last.get('time', '')})")
    fields = dict(last.get("output_fields") or {})
    fields["bpfguard.suppressed"] = n
    fields["bpfguard.suppressed_by"] = by
    fields["bpfguard.suppressed_first"] = held.first
    if isinstance(last, Alert):
        return replace(last, output=output, output_fields=fields)
    out = dict(last)
    out["output"] = output
    out["output_fields"] = fields
    return out


class RateLimiter:
    """Per-rule token buckets plus an optional dedup window; see the module doc.

    Args:
        limit: the bucket every rule gets; ``None``: no rate limit.
        per_rule: buckets for named rules, overriding ``limit``.
        dedup_window: seconds an alert holds back its duplicates (same
            ``rule`` and :func:`message_of`); ``None``: no dedup.
        clock: monotonic seconds.

    A duplicate held back by dedup costs no token. Summaries of dedup windows
    bypass the buckets (there is at most one per alert sent); a summary of
    rate-limited alerts waits for, and takes, a token of its rule.
    """

    def __init__(self, *, limit: Limit | None = None,
                 per_rule: Mapping[str, Limit] | None = None,
                 dedup_window: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if dedup_window is not None and not dedup_window > 0:
            raise ConfigError(f"dedup window must be > 0 seconds, got {dedup_window}")
        self._limit = limit
        self._per_rule = dict(per_rule or {})
        self._window = dedup_window
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}
        self._rate_held: dict[str, _Held] = {}
        self._windows: dict[tuple[str, str], _Window] = {}
        # windows in the order they end: all have the same length and the
        # clock is monotonic, so a FIFO is a priority queue here
        self._ends: deque[tuple[tuple[str, str], _Window]] = deque()
        self._ready: list[Mapping[str, Any]] = []
        self._suppressed = 0

    @property
    def suppressed(self) -> int:
        """Alerts held back so far (each is also in exactly one summary)."""
        with self._lock:
            return self._suppressed

    def admit(self, alert: Mapping[str, Any]) -> bool:
        """Whether to deliver `alert` now; if not, it is counted for a summary."""
        rule = alert.rule if isinstance(alert, Alert) else str(alert.get("rule", ""))
        now = self._clock()
        with self._lock:
            key = (rule, message_of(alert))
            win = self._windows.get(key) if self._window is not None else None
            if win is not None and now >= win.end:
                self._close_window(key, win)
                win = None
            if win is not None:
                win.held.add(alert)
                self._suppressed += 1
                return False
            bucket = self._bucket(rule, now)
            if bucket is not None and not bucket.take(now):
                self._rate_held.setdefault(rule, _Held()).add(alert)
                self._suppressed += 1
                return False
            if self._window is not None:
                win = _Window(now + self._window)
                self._windows[key] = win
                self._ends.append((key, win))
            return True

    def poll(self) -> list[Mapping[str, Any]]:
        """Summaries now due: of dedup windows that ended, of rules with a token again."""
        now = self._clock()
        with self._lock:
            while self._ends and self._ends[0][1].end <= now:
                key, win = self._ends.popleft()
                if self._windows.get(key) is win:
                    self._close_window(key, win)
            for rule in list(self._rate_held):
                bucket = self._bucket(rule, now)
                if bucket is None or bucket.take(now):
                    self._ready.append(_summary(self._rate_held.pop(rule), "rate_limit"))
            out, self._ready = self._ready, []
            return out

    def drain(self) -> list[Mapping[str, Any]]:
        """Every pending summary, due or not (for shutdown); forgets all windows."""
        with self._lock:
            for key, win in list(self._windows.items()):
                self._close_window(key, win)
            self._ends.clear()
            self._ready.extend(_summary(h, "rate_limit") for h in self._rate_held.values())
            self._rate_held.clear()
            out, self._ready = self._ready, []
            return out

    def _bucket(self, rule: str, now: float) -> TokenBucket | None:
        bucket = self._buckets.get(rule)
        if bucket is None:
            limit = self._per_rule.get(rule, self._limit)
            if limit is None:
                return None
            bucket = self._buckets[rule] = TokenBucket(limit, now)
        return bucket

    def _close_window(self, key: tuple[str, str], win: _Window) -> None:
        del self._windows[key]
        if win.held.count:
            self._ready.append(_summary(win.held, "dedup"))
