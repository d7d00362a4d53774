"""The reader pipeline keeps going when an engine fails on one event."""

from __future__ import annotations

import time
from typing import Any

from bpfguard.agent import Pipeline


class FakeSensors:
    def __init__(self, batches: list[list[Any]]) -> None:
        self.batches = batches

    def start(self) -> None:
        pass

    def read_raw(self, timeout_ms: int = 100) -> list[Any]:
        if self.batches:
            return self.batches.pop(0)
        time.sleep(timeout_ms / 1000)
        return []

    def decode(self, rec: Any) -> Any:
        return rec

    def losses(self) -> list[Any]:
        return []


class FakeTable:
    def apply(self, ev: Any) -> None:
        pass


def test_a_failing_event_is_counted_and_skipped() -> None:
    def handler(ev: int) -> list[dict[str, Any]]:
        if ev == 2:
            raise ValueError("odd event")
        return [{"n": ev}]

    pipe = Pipeline(FakeSensors([[1, 2, 3]]), FakeTable(), handler=handler)  # type: ignore[arg-type]
    pipe.start()
    got = [pipe.get(timeout=2.0), pipe.get(timeout=2.0)]
    pipe.stop()
    assert got == [{"n": 1}, {"n": 3}]
    assert pipe.handler_errors == 1 and pipe.error is None
    assert pipe.by_type == {int: 3}
