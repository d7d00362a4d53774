"""The agent gives back what a storm grew once it is over (issue 22,
defect 10): when, and how often, it trims."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from bpfguard.agent import daemon


def _run(monkeypatch: pytest.MonkeyPatch, rates: list[int]) -> list[int]:
    """Feeds one second of `rates[i]` events per call; the seconds trimmed at."""
    clock = [100.0]
    trims: list[int] = []
    monkeypatch.setattr(daemon.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(daemon, "_malloc_trim", lambda: trims.append(int(clock[0]) - 100))
    agent: Any = SimpleNamespace(pipeline=SimpleNamespace(events=0),
                                 _storm=(0, clock[0], 0.0, clock[0]))
    for r in rates:
        clock[0] += 1.0
        agent.pipeline.events += r
        daemon.Agent._after_storm(agent)
    return trims


def test_a_storm_is_trimmed_once_five_calm_seconds_after(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(monkeypatch, [10] * 3 + [200_000] * 5 + [10] * 20) == [13]


def test_a_busy_host_is_no_storm_and_hovering_near_the_floor_trims_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(monkeypatch, [5000] * 30) == []
    assert _run(monkeypatch, [900, 1100] * 15) == []
    # a storm over a busy host's normal rate, then back to it
    assert _run(monkeypatch, [5000] * 3 + [100_000] * 5 + [5000] * 10) == [13]
