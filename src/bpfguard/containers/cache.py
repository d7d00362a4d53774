"""The container cache: what the runtimes said, asked off the reader thread.

The reader thread only reads a dict (:meth:`ContainerCache.get`); a
container it has not seen is queued for a worker thread, which asks the
runtimes. Each runtime's event stream keeps the cache fresh: a container
created or started is looked up before its first process runs, most of the
time, and a container gone is dropped. Until the answer comes a container is
*pending*; the rules hold its events for a moment (see
:class:`~bpfguard.agent.detect.RuleMatcher`) and mark them if it does not come.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from ..errors import ConfigError
from .cgroups import cgroup_paths, container_of
from .engines import Engine, EngineError
from .model import Container

__all__ = ["CacheStats", "ContainerCache", "LookupState", "cgroup2_root", "cgroup_id_of_pid",
           "engines_at"]

log = logging.getLogger("bpfguard.containers")

LookupState = Literal["known", "pending", "unknown"]

#: After a runtime could not be asked, it is not asked again for this long.
RETRY_S = 5.0
#: A container no runtime knows is asked about again after this long.
NEGATIVE_S = 30.0
#: A container gone stays known this long: its last processes' events
#: (exits, a shell's last writes) still name it.
GONE_GRACE_S = 10.0
#: Containers looked up at most at once (queued ids); more are dropped and counted.
QUEUE_MAX = 4096

# Runtimes by the name the cgroup path gives (Process.container), to ask first.
_ENGINE_FOR = {"podman": "podman", "docker": "docker", "containerd": "containerd"}


def cgroup2_root() -> str | None:
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup`` on a v2
    host, ``/sys/fs/cgroup/unified`` on a hybrid one); None without one."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return left.split(" ")[4]
    except OSError:
        pass
    return None


def cgroup_id_of_pid(pid: int, root: str | None, container_id: str) -> int:
    """The cgroup v2 id (the kernel's bpf_get_current_cgroup_id) of a
    container's process's cgroup; 0 when it cannot be read, or when that
    cgroup is not the container's (the pid was reused, or the runtime left
    the process in a v2 cgroup of the host's): a scoped policy must never
    take a host cgroup for a container."""
    if root is None:
        return 0
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            path = cgroup_paths(f.read())[0]
        found = container_of(path) if path else None
        if path is None or found is None or found[1] != container_id:
            return 0
        return os.stat(root + path).st_ino
    except OSError:
        return 0


@dataclass
class CacheStats:
    lookups: int = 0        # runtime asked about a container
    found: int = 0          # ... and it answered with the container
    failures: int = 0       # ... and could not answer (down, slow, refused)
    not_found: int = 0      # no runtime knows the container
    dropped: int = 0        # lookups not queued: the queue was full
    events: int = 0         # start/stop events from the runtimes


class ContainerCache:
    """Container metadata by full id, from the runtimes in `engines`.

    Args:
        engines: the runtimes to ask (see :mod:`.engines`).
        on_change: called on the worker thread with each container learnt or
            refreshed (present=True) and each one gone (present=False).

    ``get`` and ``state`` never block (the reader thread's, and the seccomp
    audit's); ``lookup`` asks the runtimes on the calling thread. Counters
    in `stats` are written by the worker and follower threads without a lock:
    a lost increment under contention is possible, a wrong state is not.
    """

    def __init__(self, engines: Sequence[Engine] = (), *,
                 on_change: Callable[[Container, bool], None] | None = None) -> None:
        self.engines = list(engines)
        self.on_change = on_change
        self.stats = CacheStats()
        self._known: dict[str, Container] = {}
        self._pending: set[str] = set()
        self._absent: dict[str, float] = {}     # id -> when to ask again
        self._expire: dict[str, float] = {}     # id of a container gone -> when to drop it
        self._forgotten: dict[str, float] = {}  # id -> when its stop was heard
        self._down: dict[str, float] = {}       # engine name -> when to ask again
        self._q: queue.Queue[tuple[str, str]] = queue.Queue(maxsize=QUEUE_MAX)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cgroup2 = cgroup2_root()
        self._lock = threading.Lock()            # _known/_pending between threads

    # -- the reader's side ------------------------------------------------------

    def get(self, container_id: str, runtime: str = "") -> Container | None:
        """The container if known; else None, and a lookup is queued (once)."""
        c = self._known.get(container_id)
        if c is None and self.engines:
            self._want(container_id, runtime)
        return c

    def state(self, container_id: str) -> LookupState:
        if container_id in self._known:
            return "known"
        return "pending" if container_id in self._pending else "unknown"

    def _want(self, container_id: str, runtime: str) -> None:
        if container_id in self._pending:
            return
        again = self._absent.get(container_id)
        if again is not None and time.monotonic() < again:
            return
        if all(self._is_down(e) for e in self.engines):
            return
        with self._lock:
            self._pending.add(container_id)
        try:
            self._q.put_nowait((container_id, runtime))
        except queue.Full:
            with self._lock:
                self._pending.discard(container_id)
            self.stats.dropped += 1

    @property
    def pending(self) -> int:
        return len(self._pending)

    def containers(self) -> list[Container]:
        return list(self._known.values())

    # -- the worker's side ------------------------------------------------------

    def _is_down(self, engine: Engine) -> bool:
        again = self._down.get(engine.name)
        return again is not None and time.monotonic() < again

    def _ordered(self, runtime: str) -> list[Engine]:
        first = _ENGINE_FOR.get(runtime)
        return sorted(self.engines, key=lambda e: e.name != first)

    def lookup(self, container_id: str, runtime: str = "") -> Container | None:
        """Asks the runtimes now (on the calling thread) and caches the answer."""
        try:
            return self._lookup(container_id, runtime)
        finally:
            with self._lock:
                self._pending.discard(container_id)

    def _lookup(self, container_id: str, runtime: str) -> Container | None:
        found = None
        failed = False
        asked_at = time.monotonic()
        for engine in self._ordered(runtime):
            if not os.path.exists(engine.socket):
                continue
            if self._is_down(engine):
                failed = True   # not asked: it failed a moment ago (no "not found")
                continue
            self.stats.lookups += 1
            try:
                found = engine.inspect(container_id)
            except EngineError as exc:
                self.stats.failures += 1
                failed = True
                self._down[engine.name] = time.monotonic() + RETRY_S
                log.warning("container %s: %s (not asked again for %.0f s)",
                            container_id[:12], exc, RETRY_S)
                continue
            except Exception:   # a runtime's odd answer must not stop the worker
                self.stats.failures += 1
                failed = True
                log.exception("container %s: %s's answer could not be read",
                              container_id[:12], engine.name)
                continue
            if found is not None:
                break
        if found is not None:
            self.stats.found += 1
            if found.pid and not found.cgroup_id:
                found = replace(found, cgroup_id=cgroup_id_of_pid(found.pid, self._cgroup2,
                                                                  found.id))
            with self._lock:
                if self._forgotten.get(found.id, -1.0) > asked_at:
                    # it stopped while it was being asked about: the answer is
                    # older than the stop, and must not bring it back
                    return self._known.get(found.id)
                old = self._known.get(found.id)
                if not found.cgroup_id and old is not None and old.cgroup_id:
                    # a refresh between its stop and the stop event has no pid
                    found = replace(found, cgroup_id=old.cgroup_id)
                self._known[found.id] = found
                self._absent.pop(container_id, None)
                self._expire.pop(found.id, None)
                self._forgotten.pop(found.id, None)
            self._notify(found, True)
            return found
        if not failed:
            self.stats.not_found += 1
        # not asked again for a while: no runtime knows it, or one failed
        self._absent[container_id] = time.monotonic() + (RETRY_S if failed else NEGATIVE_S)
        return None

    def forget(self, container_id: str) -> None:
        """The container is gone: `on_change` hears it now; its metadata
        stays for GONE_GRACE_S, for the events still on their way."""
        with self._lock:
            now = time.monotonic()
            self._forgotten[container_id] = now
            gone = self._known.get(container_id)
            if gone is None:
                return
            self._expire[container_id] = now + GONE_GRACE_S
        self._notify(gone, False)

    def _notify(self, c: Container, present: bool) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(c, present)
        except Exception:   # a listener's failure must not stop the worker
            log.exception("container %s: a listener failed", c.id[:12])

    def _expire_gone(self) -> None:
        now = time.monotonic()
        with self._lock:
            for cid, when in list(self._expire.items()):
                if when <= now:
                    self._expire.pop(cid, None)
                    self._known.pop(cid, None)
            for cid, when in list(self._absent.items()):
                if when <= now:
                    self._absent.pop(cid, None)
            for cid, when in list(self._forgotten.items()):
                if when + GONE_GRACE_S * 3 <= now:   # long past any answer in flight
                    self._forgotten.pop(cid, None)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                self._expire_gone()
                try:
                    cid, runtime = self._q.get(timeout=0.5)
                except queue.Empty:
                    continue
                self.lookup(cid, runtime)
            except Exception:   # the worker must outlive any one lookup
                log.exception("container lookup failed")

    def _follow(self, engine: Engine) -> None:
        """Follows one runtime's events; reconnects after RETRY_S when it fails."""
        while not self._stop.is_set():
            if not os.path.exists(engine.socket):
                self._stop.wait(RETRY_S)
                continue
            try:
                # stops missed while the stream was down: what was known before
                # asking, and is no longer running (one created since is spared)
                before = [c.id for c in self.containers() if c.runtime == engine.name]
                running = set(engine.running())
                for cid in running:
                    self.lookup(cid, engine.name)
                for cid in before:
                    if cid not in running and cid not in self._expire:
                        self.forget(cid)
                for action, cid in engine.events(self._stop):
                    self.stats.events += 1
                    if action == "start":
                        self.lookup(cid, engine.name)
                    else:
                        self.forget(cid)
            except EngineError as exc:
                log.warning("%s events: %s (reconnecting in %.0f s)", engine.name, exc, RETRY_S)
            except Exception:
                log.exception("%s events stopped unexpectedly (reconnecting in %.0f s)",
                              engine.name, RETRY_S)
            self._stop.wait(RETRY_S)

    def start(self) -> None:
        """Starts the worker and one event follower per runtime."""
        if self._threads or not self.engines:
            return
        self._threads.append(threading.Thread(target=self._work, daemon=True,
                                              name="bpfguard-containers"))
        for engine in self.engines:
            self._threads.append(threading.Thread(target=self._follow, args=(engine,),
                                                  daemon=True,
                                                  name=f"bpfguard-{engine.name}-events"))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5.0)
        for engine in self.engines:
            engine.close()


def engines_at(podman: str | None, docker: str | None, containerd: str | None
               ) -> Iterable[Engine]:
    """The engines for the sockets given (None or "": that runtime is not asked)."""
    if podman:
        from .engines import PodmanEngine

        yield PodmanEngine(podman)
    if docker:
        from .engines import DockerEngine

        yield DockerEngine(docker)
    if containerd:
        from .containerd import ContainerdEngine

        yield ContainerdEngine(containerd)


def find_container(ref: str, engines: Iterable[Engine]) -> Container:
    """The container `ref` names (its name or id; podman and Docker also take
    an id prefix), asked of every runtime: one that several know is refused
    as ambiguous. Raises ConfigError saying which runtimes were asked and
    what they answered."""
    asked, found = [], []
    for engine in engines:
        try:
            c = engine.inspect(ref)
        except EngineError as exc:
            asked.append(str(exc))
            continue
        if c is None:
            asked.append(f"{engine.name}: no such container")
        else:
            found.append(c)
    # Docker's containers are containerd's too (namespace moby, the same id):
    # one container, named by the runtime its user knows; then a running one
    # before a stopped one of the same name
    by_id: dict[str, Container] = {}
    for c in sorted(found, key=lambda c: c.runtime == "containerd"):
        by_id.setdefault(c.id, c)
    found = list(by_id.values())
    if len(found) > 1 and len(running := [c for c in found if c.pid]) == 1:
        found = running
    if len(found) == 1:
        return found[0]
    if found:
        raise ConfigError(f"container {ref!r} is ambiguous: " + "; ".join(
            f"{c.runtime} has {c.name or c.id} ({c.id[:12]})" for c in found) +
            "; give its full id, or --socket RUNTIME= to leave a runtime out")
    raise ConfigError(f"container {ref!r} not found (" + "; ".join(asked) + ")")

