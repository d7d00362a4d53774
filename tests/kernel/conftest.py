"""Kernel-test fixtures: the C helper programs."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

PROGS = Path(__file__).parent / "progs"


# Compiled helpers are kept here by a hash of their source and flags: the CI's
# guest stage (TCG, where gcc takes ~25 s for them all) sees the host stage's
# through the shared filesystem, and reuses them.
CACHE = Path(__file__).resolve().parents[2] / "build" / "progs"


@pytest.fixture(scope="session")
def progs() -> dict[str, str]:
    """The C helper programs, compiled once (cached in build/progs)."""
    built = {}
    gcc = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True,
                         check=True).stdout
    for src in sorted(PROGS.glob("*.c")):
        extra = {"int80_open": ["-no-pie"], "only_exit": ["-nostdlib", "-static"],
                 "open_loop": ["-static"],
                 "stack_target": ["-fno-omit-frame-pointer"]}.get(src.stem, [])
        argv = ["gcc", "-O2", "-pthread", *extra]
        key = hashlib.sha256(src.read_bytes() + "\0".join([gcc, *argv]).encode()
                             ).hexdigest()[:16]
        exe = CACHE / key / src.stem  # its own name: tests look for it by name
        if not exe.exists():
            exe.parent.mkdir(parents=True, exist_ok=True)
            tmp = exe.with_name(f"{exe.name}.{os.getpid()}")
            subprocess.run([*argv, "-o", str(tmp), str(src)], check=True)
            tmp.replace(exe)  # whole or absent, should two sessions build at once
        built[src.stem] = str(exe)
    return built
