"""Running a command under observation, and streaming records to an output."""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable
from typing import Any

from . import Pipeline

__all__ = ["spawn_waiting", "stream"]

# Signals Python ignores at start-up (its own choice, not the caller's);
# subprocess restores them for its children, and so does spawn_waiting: a
# command started by bpfguard must die of SIGPIPE as it does bare (`yes |
# head -1` exits 141, not 1 with "Broken pipe").
_PYTHON_IGNORES = (signal.SIGPIPE, signal.SIGXFSZ)


def spawn_waiting(exe: str, argv: list[str], *, cwd: str | None = None,
                  prepare: Callable[[], None] | None = None) -> tuple[int, int]:
    """Forks a child that execs `exe` once released; returns (pid, release fd).

    Write one byte ``b"x"`` to the release fd (then close it) to let the child
    exec; closing it without writing makes the child exit 127. The child does
    nothing between fork and execve but wait (and call `prepare`, such as
    loading a seccomp filter, just before the exec), so a scope ARMED on its
    pid opens exactly at the exec. The signals Python ignores (SIGPIPE,
    SIGXFSZ) are back at their defaults in the command, as with subprocess.
    If `prepare` or the exec fails, the child says why on stderr and exits
    126 or 127.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 127
        try:
            os.close(w)
            if cwd is not None:
                os.chdir(cwd)
            for sig in _PYTHON_IGNORES:
                signal.signal(sig, signal.SIG_DFL)
            if os.read(r, 1) == b"x":
                os.close(r)
                if prepare is not None:
                    code = 126
                    prepare()
                    code = 127
                os.execv(exe, argv)
        except BaseException as exc:  # noqa: BLE001 - the child must never return
            if isinstance(exc, OSError) and exc.errno != errno.ENOENT:
                code = 126  # found but not executable, as shells say
            os.write(2, f"bpfguard: {exe}: {exc}\n".encode(errors="replace"))
        finally:
            os._exit(code)
    os.close(r)
    return pid, w


def stream(pipe: Pipeline, out: Any, child: int) -> int | None:
    """Writes records to `out` until SIGINT/SIGTERM, or, with `child` > 0, until
    the child exited and everything before its exit was written. Returns the
    child's wait status (None without a child)."""
    status: int | None = None
    stopping = False

    def _term(*_: object) -> None:
        nonlocal stopping
        stopping = True

    old = signal.signal(signal.SIGTERM, _term)
    try:
        while True:
            rec = pipe.get(timeout=0.1)
            if rec is not None:
                out.write(rec)
                continue
            out.flush()
            if child > 0 and status is None:
                done, st = os.waitpid(child, os.WNOHANG)
                if done:
                    status = st
                    break
            if stopping:
                break
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
        pipe.stop()
        for rec in pipe.pending():
            out.write(rec)
        out.flush()
        if pipe.error is not None:  # the reader died: say so, never end as if all was well
            raise pipe.error
        if child > 0 and status is None:
            try:
                os.kill(child, signal.SIGTERM)
                status = os.waitpid(child, 0)[1]
            except ChildProcessError:
                pass
    return status
