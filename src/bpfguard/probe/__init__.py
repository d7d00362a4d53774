"""What this kernel can do, found by trying: the engine behind ``bpfguard probe``.

Each feature is tried for real: a tiny program from ``bpf/probe.bpf.c`` is
loaded alone, attached and made to run, because kernels refuse things their
version and config say they have (BPF trampolines blocked, lockdown, a
security module). Enforcement and sensors pick their backends from the
answer, e.g. LSM or fmod_ret deny when available, otherwise SIGKILL after.

Example::

    from bpfguard.probe import features

    f = features()                      # probed once per process
    if not f.has("lsm"):
        print(f.get("lsm").detail)      # why, e.g. "refused: program load failed with EPERM ..."
"""

from __future__ import annotations

import functools
import platform
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from ..errors import ConfigError
from ._model import FEATURE_NAMES, Feature, Features, render_table
from ._probes import NET_FEATURES, PROBES, Run, guard, probe_net

__all__ = [
    "FEATURE_NAMES",
    "Feature",
    "Features",
    "features",
    "probe_features",
    "render_table",
]


def probe_features(*, only: Iterable[str] | None = None) -> Features:
    """Probes the running kernel (needs root).

    Each probe is isolated: one that fails or crashes never stops the others,
    and everything a probe creates (programs, links, a cgroup, a network
    namespace with a veth pair, a scratch file) is gone when it returns.

    Parameters:
        only: feature names to probe (default: all of FEATURE_NAMES).

    Returns:
        Features in FEATURE_NAMES order, with the kernel release and lockdown mode.

    Raises:
        ConfigError: `only` names an unknown feature.

    Example::

        f = probe_features(only=["ringbuf", "lsm"])
        f.has("ringbuf"), f.get("lsm").detail
    """
    wanted = set(FEATURE_NAMES if only is None else only)
    unknown = sorted(wanted - set(FEATURE_NAMES))
    if unknown:
        raise ConfigError(f"unknown feature(s) {', '.join(unknown)}; known: "
                          f"{', '.join(FEATURE_NAMES)}")
    names = [n for n in FEATURE_NAMES if n in wanted]
    found: dict[str, Feature] = {}
    with tempfile.TemporaryDirectory(prefix="bpfguard-probe-") as tmp:
        run = Run(Path(tmp))
        net = [n for n in names if n in NET_FEATURES]
        if net:
            try:
                found.update((f.name, f) for f in probe_net(run, net))
            except Exception as exc:  # isolation, as in guard()
                found.update((n, Feature(n, False, f"probe failed: {type(exc).__name__}: {exc}"))
                             for n in net)
        for name in names:
            if name not in NET_FEATURES:
                found[name] = guard(name, functools.partial(PROBES[name], run))
        lockdown = run.lockdown
    return Features([found[n] for n in names], kernel=platform.release(), lockdown=lockdown)


_cached: Features | None = None
_lock = threading.Lock()


def features() -> Features:
    """The full probe, run once per process and shared (later calls are free)."""
    global _cached
    with _lock:
        if _cached is None:
            _cached = probe_features()
        return _cached
