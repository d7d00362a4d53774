"""containerd through its gRPC API on ``/run/containerd/containerd.sock``.

containerd's own Python package (``containerd`` on PyPI) was last built in
2021 and does not import with a current protobuf, so bpfguard speaks the API
with grpcio itself: the messages it reads are in ``containerd.proto`` beside
this file (a subset of containerd's ``api/``), compiled at import by
grpcio-tools. Kubernetes' containers (CRI, namespace ``k8s.io``) and
``ctr``/nerdctl's are all in this API, each in a containerd namespace.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

from .engines import REQUEST_TIMEOUT_S, EngineError, Transition
from .model import CONTAINER_NAME, Container, Mount, pod_of

__all__ = ["ContainerdEngine", "is_privileged"]

_CONTAINERS = "/containerd.services.containers.v1.Containers/"
_TASKS = "/containerd.services.tasks.v1.Tasks/"
_IMAGES = "/containerd.services.images.v1.Images/"
_NAMESPACES = "/containerd.services.namespaces.v1.Namespaces/"
_EVENTS = "/containerd.services.events.v1.Events/Subscribe"
# Topics that start or end a container's life (containerd's events package);
# /tasks/exit ends it only when its process is the container's own.
_STARTS = frozenset({"/containers/create", "/tasks/start"})
_STOPS = frozenset({"/tasks/exit", "/containers/delete"})
_RUNNING = 2   # containerd.v1.types.Status


def _messages() -> Any:
    import grpc

    return grpc.protos("bpfguard/containers/containerd.proto")


def is_privileged(spec: dict[str, Any]) -> bool:
    """Whether an OCI spec is what ``--privileged`` makes (containerd's
    oci.WithPrivileged, which ``ctr``, nerdctl and CRI use), decided as
    Falco's container plugin does: no masked or read-only paths, no SELinux
    label, no AppArmor profile, no seccomp filter, and sysfs and cgroupfs
    mounted writable."""
    linux, process = spec.get("linux"), spec.get("process")
    if not isinstance(linux, dict) or not isinstance(process, dict):
        return False
    if linux.get("maskedPaths") or linux.get("readonlyPaths") or linux.get("seccomp"):
        return False
    if process.get("selinuxLabel") or process.get("apparmorProfile") not in (None, "",
                                                                              "unconfined"):
        return False
    return not any(m.get("type") in ("sysfs", "cgroup") and "ro" in (m.get("options") or ())
                   for m in spec.get("mounts") or ())


class ContainerdEngine:
    """containerd through grpcio.

    Args:
        socket: containerd's socket (``/run/containerd/containerd.sock``).
    """

    name = "containerd"

    def __init__(self, socket: str) -> None:
        self.socket = socket
        self._namespace_of: dict[str, str] = {}
        self._made: tuple[Any, Any, Any] | None = None   # grpc, messages, channel
        self._make_lock = threading.Lock()

    def _made_now(self) -> tuple[Any, Any, Any]:
        # grpcio and the compiled messages (~30 MiB) are loaded on first use,
        # paid only where containerd's socket exists; the worker and the
        # follower may race to it
        with self._make_lock:
            if self._made is None:
                import grpc

                self._made = (grpc, _messages(), grpc.insecure_channel(f"unix://{self.socket}"))
            return self._made

    @property
    def _grpc(self) -> Any:
        return self._made_now()[0]

    @property
    def _pb(self) -> Any:
        return self._made_now()[1]

    @property
    def _channel(self) -> Any:
        return self._made_now()[2]

    def _call(self, method: str, request: Any, response: Any, namespace: str = "") -> Any:
        call = self._channel.unary_unary(method, request_serializer=type(request).SerializeToString,
                                         response_deserializer=response.FromString)
        meta = (("containerd-namespace", namespace),) if namespace else None
        try:
            return call(request, timeout=REQUEST_TIMEOUT_S, metadata=meta)
        except self._grpc.RpcError as exc:
            if exc.code() == self._grpc.StatusCode.NOT_FOUND:
                return None
            raise EngineError(f"containerd at {self.socket}: {exc.code().name}: "
                              f"{exc.details()}") from None

    def _namespaces(self) -> list[str]:
        pb = self._pb
        r = self._call(_NAMESPACES + "List", pb.ListNamespacesRequest(),
                       pb.ListNamespacesResponse)
        return [n.name for n in r.namespaces] if r is not None else []

    def inspect(self, container_id: str) -> Container | None:
        pb = self._pb
        known = self._namespace_of.get(container_id)
        # the namespace it was last seen in first; then all (a delete missed)
        spaces = [known] if known else []
        spaces += [ns for ns in self._namespaces() if ns != known]
        for ns in spaces:
            r = self._call(_CONTAINERS + "Get", pb.GetContainerRequest(id=container_id),
                           pb.GetContainerResponse, ns)
            if r is not None:
                self._namespace_of[container_id] = ns
                return self._container(r.container, ns)
        self._namespace_of.pop(container_id, None)
        return None

    def _container(self, c: Any, ns: str) -> Container:
        pb = self._pb
        spec: dict[str, Any] = {}
        if c.spec.value:
            try:
                spec = json.loads(c.spec.value)
            except ValueError:
                spec = {}
        task = self._call(_TASKS + "Get", pb.GetTaskRequest(container_id=c.id),
                          pb.GetTaskResponse, ns)
        pid = task.process.pid if task is not None and task.process.status == _RUNNING else None
        digest = None
        if c.image:
            img = self._call(_IMAGES + "Get", pb.GetImageRequest(name=c.image),
                             pb.GetImageResponse, ns)
            digest = img.image.target.digest if img is not None else None
        labels = dict(c.labels)
        # a CRI pod's labels are on its sandbox (pause) container
        sandbox = c.sandbox or str((spec.get("annotations") or {}).get(
            "io.kubernetes.cri.sandbox-id") or "")
        pod_labels = None
        if sandbox and sandbox != c.id:
            r = self._call(_CONTAINERS + "Get", pb.GetContainerRequest(id=sandbox),
                           pb.GetContainerResponse, ns)
            pod_labels = dict(r.container.labels) if r is not None else None
        # Falco's container plugin: every mount of the spec, the mode its
        # mode= option, the propagation the rootfs's
        propagation = str((spec.get("linux") or {}).get("rootfsPropagation") or "")
        mounts = tuple(
            Mount(source=str(m.get("source") or ""), dest=str(m.get("destination") or ""),
                  mode=next((o[5:] for o in m.get("options") or () if o.startswith("mode=")), ""),
                  rdwr="ro" not in (m.get("options") or ()), propagation=propagation)
            for m in spec.get("mounts") or ())
        created = c.created_at.seconds * 1_000_000_000 + c.created_at.nanos \
            if c.HasField("created_at") else None
        return Container(
            id=c.id, runtime="containerd",
            # containerd has no names: Falco shows the id's first 12
            # characters; CRI keeps Kubernetes' name in a label
            name=labels.get(CONTAINER_NAME) or c.id[:12],
            image=c.image or None, image_digest=digest or None,
            privileged=is_privileged(spec) if spec else None,
            mounts=mounts, start_ns=created, labels=labels, pod=pod_of(labels, pod_labels),
            pid=pid or None,
            sandbox=labels.get("io.cri-containerd.kind") == "sandbox")

    def running(self) -> list[str]:
        """Containers whose task runs (a stopped container has no processes
        to describe)."""
        pb = self._pb
        out = []
        for ns in self._namespaces():
            r = self._call(_TASKS + "List", pb.ListTasksRequest(), pb.ListTasksResponse, ns)
            for t in r.tasks if r is not None else ():
                cid = t.container_id or t.id   # a listed task is its container's init
                if t.status == _RUNNING and cid:
                    self._namespace_of[cid] = ns
                    out.append(cid)
        return out

    def events(self, stop: threading.Event) -> Iterator[Transition]:
        pb = self._pb
        call = self._channel.unary_stream(_EVENTS, request_serializer=pb.SubscribeRequest
                                          .SerializeToString,
                                          response_deserializer=pb.Envelope.FromString)
        stream = call(pb.SubscribeRequest())
        done = threading.Event()

        def cancel_on_stop() -> None:
            # the stream blocks in the gRPC core: a stop cancels it from outside
            while not done.wait(0.5):
                if stop.is_set():
                    stream.cancel()
                    return

        watcher = threading.Thread(target=cancel_on_stop, name="bpfguard-containerd-stop",
                                   daemon=True)
        watcher.start()
        try:
            for env in stream:
                if env.topic == "/tasks/exit":
                    ex = pb.TaskExit.FromString(env.event.value)
                    if ex.id and ex.id != ex.container_id:
                        continue        # an exec'd process, not the container's own
                    cid = ex.container_id
                elif env.topic in _STARTS or env.topic in _STOPS:
                    cid = pb.ContainerEvent.FromString(env.event.value).id
                else:
                    continue
                if not cid:
                    continue
                if env.topic == "/containers/delete":
                    self._namespace_of.pop(cid, None)
                else:
                    self._namespace_of.setdefault(cid, env.namespace)
                yield ("start" if env.topic in _STARTS else "stop", cid)
        except self._grpc.RpcError as exc:
            if stop.is_set():
                return
            raise EngineError(f"containerd at {self.socket}: event stream: {exc.code().name}: "
                              f"{exc.details()}") from None
        finally:
            done.set()
            stream.cancel()

    def close(self) -> None:
        if self._made is not None:
            self._made[2].close()
