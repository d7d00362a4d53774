"""The loader: bpfguard's only gateway to libbpf.

Objects, programs, maps, links, ring buffers and BTF-derived layouts. See
:mod:`bpfguard.loader.object` for the lifecycle.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BuildError
from .btf import Btf
from .object import PIN_ROOT, BpfObject, GlobalData, Link, Map, Program, enable_run_stats
from .ringbuf import RingBuffer

__all__ = [
    "PIN_ROOT",
    "BpfObject",
    "Btf",
    "GlobalData",
    "Link",
    "Map",
    "Program",
    "RingBuffer",
    "bpf_object_path",
    "enable_run_stats",
]


def bpf_object_path(name: str) -> Path:
    """Path of the compiled sensor object `name` (e.g. "process").

    Objects are built by ``make -C bpf`` (scripts/setup runs it) into the
    package; BPFGUARD_BPF_DIR overrides the directory.
    """
    base = Path(os.environ.get("BPFGUARD_BPF_DIR") or Path(__file__).parent.parent / "_bpf")
    path = base / f"{name}.bpf.o"
    if not path.exists():
        raise BuildError(
            f"BPF object {path} is missing: build it with `make -C bpf` "
            "(or run scripts/setup, which installs the toolchain and builds)"
        )
    return path
