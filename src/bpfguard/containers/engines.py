"""The container runtimes bpfguard asks, each through its own API and client.

- podman: the libpod REST API on podman's socket (``podman system service``,
  or the ``podman.socket`` unit), through podman-py.
- Docker: Docker's Engine API on its socket, through docker-py. podman's
  socket speaks it too.
- containerd: its gRPC API (:mod:`.containerd`).

Each engine answers three questions: what a container id is
(:meth:`Engine.inspect`), which containers run now (:meth:`Engine.running`),
and what starts and stops (:meth:`Engine.events`). None of them is asked on
the reader thread (see :class:`~bpfguard.containers.ContainerCache`).
"""

from __future__ import annotations

import json
import logging
import socket as socket_module
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from .model import Container, from_inspect

__all__ = ["DockerEngine", "Engine", "EngineError", "PodmanEngine", "Transition"]

log = logging.getLogger("bpfguard.containers")

#: How long one request to a runtime may take before it counts as failed.
REQUEST_TIMEOUT_S = 2.0
#: podman's pods (name, labels) are re-read after this long, and at most
#: this many are remembered.
POD_TTL_S = 30.0
POD_CACHE_MAX = 1024
#: The Docker Engine API version asked for: 1.41 is Docker 20.10, and what
#: podman 4 serves.
DOCKER_API_VERSION = "1.41"


class EngineError(Exception):
    """The runtime could not be asked (socket missing, refused, timed out)."""


# What an event means for the cache: ("start", id) the container (re)started
# or was created; ("stop", id) it is gone.
Transition = tuple[str, str]


class Engine(Protocol):
    name: str
    socket: str

    def inspect(self, container_id: str) -> Container | None:
        """The container, or None if this runtime has no such container.
        Raises EngineError when the runtime cannot be asked."""

    def running(self) -> list[str]:
        """Ids of the containers running now. Raises EngineError."""

    def events(self, stop: threading.Event) -> Iterator[Transition]:
        """Starts and stops until `stop` is set. Raises EngineError."""

    def close(self) -> None: ...


def _live(name: str, socket: str, stop: threading.Event,
          open_stream: Callable[[int], tuple[Iterator[Any], Callable[[], None]]]
          ) -> Iterator[Transition]:
    """Follows a Docker-shaped event stream live (podman's and Docker's
    ``/events``, which deliver each event as it happens: with an ``until``
    podman 4.3 holds them all back until then). `open_stream(since)` gives
    the decoded events and a function that closes the stream; a stop closes
    it from a watcher thread, the way to end a read that blocks. A stream
    the runtime ends is opened again from where it was, a second later;
    events of that second seen already are not repeated."""
    since = int(time.time())
    seen: set[tuple[float, Transition]] = set()
    while not stop.is_set():
        try:
            events, close = open_stream(since)
        except EngineError:
            raise
        except Exception as exc:   # the clients' errors: refused, gone, an HTTP error
            raise EngineError(f"{name} at {socket}: event stream: {exc}") from None
        done = threading.Event()

        def close_on_stop(done: threading.Event = done,
                          close: Callable[[], None] = close) -> None:
            while not done.wait(0.5):
                if stop.is_set():
                    close()
                    return

        threading.Thread(target=close_on_stop, name=f"bpfguard-{name}-events-stop",
                         daemon=True).start()
        try:
            for when, transition in _compat_transitions(events):
                if int(when) > since:
                    since = int(when)
                    seen = {(w, t) for w, t in seen if w >= since}
                if transition is None or (when, transition) in seen:
                    continue
                seen.add((when, transition))
                yield transition
        except Exception as exc:
            if stop.is_set():
                return
            raise EngineError(f"{name} at {socket}: event stream: {exc}") from None
        finally:
            done.set()
        stop.wait(1.0)


def _ask(name: str, socket: str, fn: Callable[..., Any], args: tuple[Any, ...],
         api_error: type[Exception], transport_modules: tuple[str, ...],
         client_error: type[Exception] = OSError) -> Any:
    """One request to an HTTP runtime API (podman-py's and docker-py's share
    requests underneath). An HTTP error is the runtime's answer (a 404; a 500
    for a container removed while inspected): None. No response at all
    (refused, timed out; both clients wrap it as their APIError without a
    response, or let requests' own error through) is an EngineError."""
    try:
        return fn(*args)
    except api_error as exc:
        if getattr(exc, "response", None) is None:
            raise EngineError(f"{name} at {socket}: {exc}") from None
        log.debug("%s at %s: %s", name, socket, exc)
        return None
    except (OSError, client_error) as exc:
        raise EngineError(f"{name} at {socket}: {exc}") from None
    except Exception as exc:
        if type(exc).__module__.startswith(transport_modules):
            raise EngineError(f"{name} at {socket}: {exc}") from None
        raise


def _shut(resp: Any) -> None:
    """Ends a streaming HTTP response from another thread. Closing it does not
    wake a read blocked in recv(); shutting its socket down does (docker-py's
    CancellableStream.close does the same)."""
    try:
        fp = resp.raw._fp.fp
        raw = getattr(fp, "raw", fp)
        sock = getattr(raw, "sock", None) or getattr(raw, "_sock", None)
        if sock is not None:
            sock.shutdown(socket_module.SHUT_RDWR)
    except (AttributeError, OSError):
        pass
    resp.close()


def _compat_transitions(stream: Iterator[Any]) -> Iterator[tuple[float, Transition | None]]:
    """(event time, transition) of each Docker-shaped event (Docker's and
    libpod's streams both are): ``Action`` and ``Actor.ID``."""
    for ev in stream:
        if not isinstance(ev, dict) or ev.get("Type", "container") != "container":
            continue
        action = str(ev.get("Action") or ev.get("status") or "")
        cid = str((ev.get("Actor") or {}).get("ID") or ev.get("id") or "")
        when = float(ev.get("timeNano", 0)) / 1e9 or float(ev.get("time", 0))
        if not cid:
            yield when, None
        elif action in ("create", "init", "start", "restart"):
            yield when, ("start", cid)
        elif action in ("died", "die", "remove", "destroy", "cleanup"):
            yield when, ("stop", cid)
        else:
            yield when, None


class PodmanEngine:
    """podman through podman-py.

    Args:
        socket: path of podman's API socket (``/run/podman/podman.sock``).
    """

    name = "podman"

    def __init__(self, socket: str) -> None:
        self.socket = socket
        # pod id -> (when read, name, labels); re-read after POD_TTL_S
        self._pods: dict[str, tuple[float, str, dict[str, str]]] = {}
        self._made: Any = None
        self._make_lock = threading.Lock()

    @property
    def _client(self) -> Any:
        # made on first use (the worker and the follower may race to it):
        # podman-py costs ~20 MiB, paid only where podman's socket exists
        with self._make_lock:
            if self._made is None:
                from podman import PodmanClient

                self._made = PodmanClient(base_url=f"unix://{self.socket}",
                                          timeout=REQUEST_TIMEOUT_S)
            return self._made

    def _call(self, fn: Any, *args: Any) -> Any:
        from podman.errors import APIError

        return _ask(self.name, self.socket, fn, args, APIError, ("requests", "urllib3", "podman"))

    def _pod(self, pod_id: str) -> tuple[str, dict[str, str]] | None:
        """(name, labels) of a podman pod (`podman kube play` makes one per
        Pod manifest: its name, and the manifest's labels)."""
        now = time.monotonic()
        cached = self._pods.get(pod_id)
        if cached is None or now - cached[0] > POD_TTL_S:
            pod = self._call(self._client.pods.get, pod_id)
            if pod is None:
                self._pods.pop(pod_id, None)
                return None
            labels = pod.attrs.get("Labels") or {}
            if len(self._pods) >= POD_CACHE_MAX:
                self._pods.clear()
            cached = self._pods[pod_id] = (now, str(pod.attrs.get("Name") or ""),
                                           {str(k): str(v) for k, v in labels.items()})
        return cached[1], cached[2]

    def inspect(self, container_id: str) -> Container | None:
        c = self._call(self._client.containers.get, container_id)
        if c is None:
            return None
        doc = c.attrs
        pod_id = doc.get("Pod") or ""
        return from_inspect(doc, "podman", self._pod(pod_id) if pod_id else None)

    def running(self) -> list[str]:
        out = self._call(self._client.containers.list) or []
        return [str(c.id) for c in out]

    def events(self, stop: threading.Event) -> Iterator[Transition]:
        from podman import PodmanClient, api

        # no read timeout: the stream waits for the next event as long as it takes
        with PodmanClient(base_url=f"unix://{self.socket}") as client:
            def open_stream(since: int) -> tuple[Iterator[Any], Callable[[], None]]:
                resp = client.api.get("/events", params={
                    "stream": True, "since": since,
                    "filters": api.prepare_filters({"type": "container"})}, stream=True)
                resp.raise_for_status()
                lines = (json.loads(line) for line in resp.iter_lines() if line)
                return lines, lambda: _shut(resp)

            yield from _live("podman", self.socket, stop, open_stream)

    def close(self) -> None:
        if self._made is not None:
            self._made.close()


class DockerEngine:
    """Docker (or anything speaking its Engine API) through docker-py.

    Args:
        socket: path of the API socket (``/var/run/docker.sock``).
    """

    name = "docker"

    def __init__(self, socket: str) -> None:
        self.socket = socket
        self._made: Any = None
        self._make_lock = threading.Lock()

    @property
    def _api(self) -> Any:
        with self._make_lock:   # on first use, as podman-py
            if self._made is None:
                import docker

                # a fixed API version: "auto" would ask the daemon at construction
                self._made = docker.APIClient(base_url=f"unix://{self.socket}",
                                              version=DOCKER_API_VERSION,
                                              timeout=REQUEST_TIMEOUT_S)
            return self._made

    def _call(self, fn: Any, *args: Any) -> Any:
        from docker.errors import APIError, DockerException

        return _ask(self.name, self.socket, fn, args, APIError, ("requests", "urllib3"),
                    DockerException)

    def inspect(self, container_id: str) -> Container | None:
        doc = self._call(self._api.inspect_container, container_id)
        return from_inspect(doc, "docker") if doc else None

    def running(self) -> list[str]:
        return [str(c["Id"]) for c in self._call(self._api.containers) or ()]

    def events(self, stop: threading.Event) -> Iterator[Transition]:
        def open_stream(since: int) -> tuple[Iterator[Any], Callable[[], None]]:
            # docker-py's stream has no read timeout and can be closed from outside
            stream = self._api.events(since=since, filters={"type": "container"}, decode=True)
            return iter(stream), stream.close

        yield from _live("docker", self.socket, stop, open_stream)

    def close(self) -> None:
        if self._made is not None:
            self._made.close()
