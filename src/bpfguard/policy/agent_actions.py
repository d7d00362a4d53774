"""Tetragon's GetUrl and DnsLookup actions: requests the agent makes when a
selector matches (canary tokens: a URL or DNS name that alerts whoever
watches it).

They run off the event path, on a small thread pool, so a slow server never
holds up the ring buffer. A matching storm must not become a request storm:
one target is requested at most once per `interval` seconds and at most
`queue` requests wait; what is skipped is counted, never silent
(``bpfguard policy list`` shows the counts per policy).
"""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from time import monotonic
from typing import Final

__all__ = ["AgentActions"]

_READ_MAX: Final = 64 * 1024  # bytes of a GetUrl response read (and dropped)


class AgentActions:
    """Runs GetUrl/DnsLookup requests; `counts[(policy, action, outcome)]`
    with outcome ``ok``, ``failed`` or ``skipped`` (rate limit, full queue)."""

    def __init__(self, *, timeout: float = 5.0, interval: float = 1.0, queue: int = 64,
                 workers: int = 2) -> None:
        self.timeout = timeout
        self.interval = interval
        self.queue = queue
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self._pool = ThreadPoolExecutor(max_workers=workers,
                                        thread_name_prefix="bpfguard-agent-action")
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}
        self._pending = 0

    def submit(self, policy: str, action: str, target: str) -> bool:
        """Queue one request (`action` GetUrl: an HTTP GET of `target`, else a
        DNS lookup of it); False (and counted as skipped) when `target`
        was requested less than `interval` ago or the queue is full."""
        now = monotonic()
        with self._lock:
            last = self._last.get((action, target))
            if (last is not None and now - last < self.interval) or self._pending >= self.queue:
                self.counts[(policy, action, "skipped")] += 1
                return False
            self._last[(action, target)] = now
            self._pending += 1
        self._pool.submit(self._run, policy, action, target)
        return True

    def _run(self, policy: str, action: str, target: str) -> None:
        try:
            if action == "GetUrl":
                with urllib.request.urlopen(target, timeout=self.timeout) as resp:
                    resp.read(_READ_MAX)
            else:
                socket.getaddrinfo(target, None)
            outcome = "ok"
        except (OSError, ValueError, urllib.error.URLError):
            outcome = "failed"
        with self._lock:
            self._pending -= 1
            self.counts[(policy, action, outcome)] += 1

    def for_policy(self, policy: str) -> dict[str, int]:
        """``{"GetUrl ok": 3, ...}`` for one policy (its nonzero counts)."""
        with self._lock:
            return {f"{a} {o}": n for (p, a, o), n in sorted(self.counts.items())
                    if p == policy and n}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
