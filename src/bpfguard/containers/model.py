"""What a container runtime says about a container, in one shape for every runtime.

A :class:`Container` is filled from the runtime's own answer (podman's and
Docker's inspect document, containerd's container record and OCI spec) and
never guessed: what the runtime does not say stays ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Container", "Mount", "Pod", "split_image"]

# The Kubernetes labels a CRI runtime (and `podman kube play`) puts on a pod's
# containers; k8s.* fields come from them.
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"


@dataclass(frozen=True, slots=True)
class Mount:
    """One mount of a container, as Falco's ``container.mount*`` fields show it."""

    source: str
    dest: str
    mode: str = ""          # the runtime's mode text ("z", "ro", "")
    rdwr: bool = True
    propagation: str = ""   # "rprivate", "shared", ...

    def text(self) -> str:
        """Falco's ``container.mounts`` entry: ``source:dest:mode:rdwr:propagation``."""
        return f"{self.source}:{self.dest}:{self.mode}:{'true' if self.rdwr else 'false'}:" \
               f"{self.propagation}"


@dataclass(frozen=True, slots=True)
class Pod:
    """The Kubernetes pod a container belongs to (from its io.kubernetes.* labels)."""

    name: str
    namespace: str | None = None
    uid: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    # Tetragon's workload (the owning controller); a podman pod has no owner
    # and is its own; None where the runtime cannot tell (CRI)
    workload: str | None = None


@dataclass(frozen=True, slots=True)
class Container:
    """A container as its runtime describes it.

    Attributes:
        id: the full id (64 hex digits for every runtime here).
        runtime: ``podman``, ``docker``, ``containerd`` (Falco's ``container.type``).
        name: the runtime's name for it (containerd has none: its id).
        image: the image reference it was started from, as given.
        image_id: the image's id (its config digest, hex without ``sha256:``).
        image_digest: the repository digest (``sha256:...``) when the runtime knows it.
        privileged: started privileged (``--privileged``).
        mounts: bind and volume mounts.
        start_ns: when it started, ns since the epoch.
        labels: the container's labels.
        pod: its Kubernetes pod, from the labels; None outside a pod.
        pid: its first process, in the host's pid namespace.
        cgroup_id: the cgroup v2 id of that process's cgroup (0: unknown).
        sandbox: a pod's infrastructure (pause) container, not a workload.
    """

    id: str
    runtime: str
    name: str | None = None
    image: str | None = None
    image_id: str | None = None
    image_digest: str | None = None
    privileged: bool | None = None
    mounts: tuple[Mount, ...] = ()
    start_ns: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    pod: Pod | None = None
    pid: int | None = None
    cgroup_id: int = 0
    sandbox: bool = False

    @property
    def image_repository(self) -> str | None:
        return split_image(self.image)[0] if self.image else None

    @property
    def image_tag(self) -> str | None:
        return split_image(self.image)[1] if self.image else None

    @property
    def k8s_name(self) -> str | None:
        """The container's name in its pod: CRI's label, else for a podman pod
        the name in the manifest (`podman kube play` names it ``<pod>-<name>``)."""
        name = self.labels.get(CONTAINER_NAME)
        if name:
            return name
        if self.pod is not None and self.name and self.name.startswith(self.pod.name + "-"):
            return self.name[len(self.pod.name) + 1:]
        return self.name

    @property
    def repo_digest(self) -> str | None:
        """The digest the image reference pins, else the one the runtime reported."""
        pinned = split_image(self.image)[2] if self.image else None
        return pinned or self.image_digest


_DIGEST = re.compile(r"@([A-Za-z0-9_+.-]+:[0-9a-fA-F]{32,})$")


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference, as Falco splits it:
    ``localhost/ns/img:1.0`` is (``localhost/ns/img``, ``1.0``, None); a port in
    the registry host is not a tag; ``img@sha256:...`` has a digest and no tag.
    """
    digest = None
    m = _DIGEST.search(ref)
    if m:
        digest, ref = m.group(1), ref[:m.start()]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:] or None, digest
    return ref, None, digest


def pod_of(labels: Mapping[str, str], pod_labels: Mapping[str, str] | None = None,
           runtime_pod: str | None = None) -> Pod | None:
    """The pod a container belongs to: the one its io.kubernetes.* labels
    name (CRI's), else the runtime's own pod (podman's, named by
    `runtime_pod`); None outside a pod. The namespace is only ever the
    label's: podman keeps no Kubernetes namespace."""
    name = labels.get(POD_NAME) or runtime_pod
    if not name:
        return None
    return Pod(name=name, namespace=labels.get(POD_NAMESPACE) or None,
               uid=labels.get(POD_UID), labels=dict(pod_labels or {}),
               # kube play names a Deployment's pods <deployment>-pod: their
               # owner cannot be told from a bare pod's name, so none is given
               workload=runtime_pod if runtime_pod and name == runtime_pod
               and not runtime_pod.endswith("-pod") else None)


def parse_time(text: Any) -> int | None:
    """ns since the epoch of an RFC 3339 time with up to nanoseconds; None for
    a missing one or the zero time runtimes use for "never"."""
    if not isinstance(text, str) or not text or text.startswith("0001-01-01"):
        return None
    m = re.fullmatch(r"(.+?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip())
    if not m:
        return None
    try:
        base = datetime.fromisoformat(m.group(1) + (m.group(3).replace("Z", "+00:00")))
    except ValueError:
        return None
    frac = (m.group(2) or "").ljust(9, "0")[:9]
    return int(base.timestamp()) * 1_000_000_000 + int(frac or 0)


def _hex_id(text: Any) -> str | None:
    if not isinstance(text, str) or not text:
        return None
    return text.removeprefix("sha256:")


def from_inspect(doc: Mapping[str, Any], runtime: str,
                 pod: tuple[str, Mapping[str, str]] | None = None) -> Container:
    """A container from podman's (libpod) or Docker's inspect document.

    The two differ where it matters: the image reference is libpod's
    ``ImageName`` and Docker's ``Config.Image``; Docker's ``Image`` is
    ``sha256:<id>``, libpod's the bare id. `pod` is podman's pod of the
    container (its name and labels), if in one.
    """
    config = doc.get("Config") or {}
    host = doc.get("HostConfig") or {}
    state = doc.get("State") or {}
    labels = {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
    image = doc.get("ImageName") or config.get("Image") or None
    digest = doc.get("ImageDigest") or None
    mounts = tuple(
        Mount(source=str(m.get("Source") or ""), dest=str(m.get("Destination") or ""),
              mode=str(m.get("Mode") or ""), rdwr=bool(m.get("RW", True)),
              propagation=str(m.get("Propagation") or ""))
        for m in doc.get("Mounts") or ())
    privileged = host.get("Privileged")
    pid = state.get("Pid")
    return Container(
        id=str(doc["Id"]), runtime=runtime,
        name=str(doc.get("Name") or "").lstrip("/") or None,
        image=str(image) if image else None,
        image_id=_hex_id(doc.get("Image")),
        image_digest=str(digest) if digest else None,
        privileged=bool(privileged) if isinstance(privileged, bool) else None,
        mounts=mounts,
        start_ns=parse_time(state.get("StartedAt")),
        labels=labels,
        pod=pod_of(labels, pod[1], pod[0]) if pod is not None else pod_of(labels),
        pid=pid if isinstance(pid, int) and pid > 0 else None,
        sandbox=bool(doc.get("IsInfra")),
    )
