"""Named network namespaces (``ip netns``) for the calling thread.

XDP attachment, interface lookup and XDP queries act in the calling thread's
network namespace; maps and pins do not care. So only those calls run inside
:func:`entered`, and the thread returns to its own namespace afterwards.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import ConfigError

__all__ = ["NETNS_DIR", "entered"]

NETNS_DIR = "/run/netns"
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns({what}): {os.strerror(err)}")


@contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Runs the body in network namespace `name` (None: stay where we are)."""
    if name is None:
        yield
        return
    if "/" in name or name in (".", ".."):
        raise ConfigError(f"--netns {name!r}: a name as `ip netns list` shows it")
    try:
        target = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
    except FileNotFoundError:
        raise ConfigError(f"--netns {name}: no such network namespace "
                          f"(`ip netns list` shows what exists)") from None
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(target, name)
        try:
            yield
        finally:
            _setns(own, "back")
    finally:
        os.close(target)
        os.close(own)
