"""Kernel-test fixtures: the C helper programs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

PROGS = Path(__file__).parent / "progs"


@pytest.fixture(scope="session")
def progs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The C helper programs, compiled once per session."""
    out = tmp_path_factory.mktemp("progs")
    built = {}
    for src in sorted(PROGS.glob("*.c")):
        exe = out / src.stem
        extra = {"int80_open": ["-no-pie"], "only_exit": ["-nostdlib", "-static"],
                 "open_loop": ["-static"],
                 "stack_target": ["-fno-omit-frame-pointer"]}.get(src.stem, [])
        subprocess.run(["gcc", "-O2", "-pthread", *extra, "-o", str(exe), str(src)], check=True)
        built[src.stem] = str(exe)
    return built
