"""GetUrl and DnsLookup: done off the event path, never a request storm,
every outcome counted."""

from __future__ import annotations

import time

from bpfguard.policy.agent_actions import AgentActions


def _settle(actions: AgentActions, n: int) -> dict[str, int]:
    deadline = time.monotonic() + 10
    while sum(actions.counts.values()) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return actions.for_policy("p")


def test_outcomes_are_counted_per_policy() -> None:
    actions = AgentActions(timeout=2)
    try:
        assert actions.submit("p", "DnsLookup", "localhost")
        assert actions.submit("p", "GetUrl", "http://127.0.0.1:1/")  # nothing listens
        assert _settle(actions, 2) == {"DnsLookup ok": 1, "GetUrl failed": 1}
        assert actions.for_policy("other") == {}
    finally:
        actions.close()


def test_a_target_is_requested_at_most_once_per_interval() -> None:
    actions = AgentActions(interval=60)
    try:
        assert actions.submit("p", "DnsLookup", "localhost")
        assert not actions.submit("p", "DnsLookup", "localhost")
        assert actions.submit("p", "DnsLookup", "127.0.0.1")  # another target
        assert _settle(actions, 3) == {"DnsLookup ok": 2, "DnsLookup skipped": 1}
    finally:
        actions.close()


def test_a_full_queue_skips() -> None:
    actions = AgentActions(queue=0)
    try:
        assert not actions.submit("p", "GetUrl", "http://127.0.0.1:1/")
        assert actions.for_policy("p") == {"GetUrl skipped": 1}
    finally:
        actions.close()
