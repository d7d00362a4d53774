"""Which containers a policy applies to: podSelector, containerSelector and
TracingPolicyNamespaced, as Tetragon reads them.

A scoped policy applies only inside the containers it selects, never on the
host. The kernel decides it (``pol_scope``: the cgroup ids of the selected
containers, per policy; a task is in scope when its cgroup or an ancestor is
in the set). User space writes the set as the container runtimes report
containers starting and stopping (:class:`ScopeTracker`), so a policy applies
to a container from the moment its runtime has reported it: a process that
runs before that (the first milliseconds of a container) is not covered.

Tetragon's semantics, outside Kubernetes:

- Only containers in a pod are selected (Kubernetes' through CRI, podman's
  from ``podman kube play`` or ``podman pod``); a plain ``podman run`` or
  ``docker run`` container is not (scope those with ``--cgroup``).
- ``podSelector`` matches the pod's labels plus
  ``k8s:io.kubernetes.pod.namespace`` (the pod's namespace).
- ``containerSelector`` matches ``name`` (the container's Kubernetes name:
  ``io.kubernetes.container.name``, or for ``podman kube play`` the name in
  the manifest) and ``repo`` (the image repository).
- Only one of the two given: the other is ``{}`` (everything).
- ``TracingPolicyNamespaced``: only pods of its ``metadata.namespace``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..containers import Container
from .model import LabelSelector, Policy

__all__ = ["PolicyScope", "ScopeTracker", "scope_of"]

log = logging.getLogger("bpfguard.policy")

#: The label Tetragon adds to a pod's for podSelector: its namespace.
NAMESPACE_LABEL = "k8s:io.kubernetes.pod.namespace"


@dataclass(frozen=True)
class PolicyScope:
    """The containers a policy applies to."""

    pods: LabelSelector
    containers: LabelSelector
    namespace: str | None = None   # a TracingPolicyNamespaced's

    def matches(self, c: Container) -> bool:
        if c.pod is None:
            return False
        pod_ns = c.pod.namespace
        if self.namespace is not None and pod_ns != self.namespace:
            return False
        labels = dict(c.pod.labels)
        if pod_ns is not None:
            labels[NAMESPACE_LABEL] = pod_ns
        if not self.pods.matches(labels):
            return False
        attrs = {}
        if (name := c.k8s_name) is not None:
            attrs["name"] = name
        if (repo := c.image_repository) is not None:
            attrs["repo"] = repo
        return self.containers.matches(attrs)

    def describe(self) -> str:
        parts = []
        if self.namespace is not None:
            parts.append(f"namespace {self.namespace}")
        if self.pods != LabelSelector():
            parts.append(f"pods {self.pods.describe()}")
        if self.containers != LabelSelector():
            parts.append(f"containers {self.containers.describe()}")
        return "; ".join(parts) or "every container"


def scope_of(policy: Policy) -> PolicyScope | None:
    """The policy's scope; None: the host and every container."""
    pods, containers = policy.pod_selector, policy.container_selector
    namespaced = policy.kind == "TracingPolicyNamespaced"
    if pods is None and containers is None and not namespaced:
        return None
    return PolicyScope(pods=pods or LabelSelector(), containers=containers or LabelSelector(),
                       namespace=policy.namespace if namespaced else None)


class ScopeTracker:
    """Keeps each scoped policy's cgroup set equal to the running containers
    it selects.

    Args:
        write: adds (True) or removes (False) a (scope id, cgroup id) pair in
            the kernel's set; returns False when it could not (the set is full).
        containers: what is known now (for a policy added later).
    """

    def __init__(self, write: Callable[[int, int, bool], bool],
                 containers: Callable[[], Iterable[Container]]) -> None:
        self._write = write
        self._containers = containers
        self._scopes: dict[int, PolicyScope] = {}
        self._members: dict[int, set[int]] = {}     # scope id -> cgroup ids written
        self._lock = threading.Lock()

    def add(self, scope_id: int, scope: PolicyScope) -> None:
        with self._lock:
            self._scopes[scope_id] = scope
            self._members[scope_id] = set()
            for c in self._containers():
                self._apply(scope_id, scope, c, True)

    def remove(self, scope_id: int) -> None:
        with self._lock:
            self._scopes.pop(scope_id, None)
            for cg in self._members.pop(scope_id, set()):
                self._write(scope_id, cg, False)

    def members(self, scope_id: int) -> set[int]:
        with self._lock:
            return set(self._members.get(scope_id, ()))

    def container_changed(self, c: Container, present: bool) -> None:
        """The cache's on_change: a container started (or was refreshed) or stopped."""
        with self._lock:
            for scope_id, scope in self._scopes.items():
                self._apply(scope_id, scope, c, present)

    def _apply(self, scope_id: int, scope: PolicyScope, c: Container, present: bool) -> None:
        if not c.cgroup_id:
            return
        members = self._members[scope_id]
        # a pod's pause container runs no workload: Tetragon leaves it out too
        want = present and not c.sandbox and scope.matches(c)
        if want and c.cgroup_id not in members:
            if not self._write(scope_id, c.cgroup_id, True):
                return   # not in the kernel's set: not counted, tried again at its next change
            members.add(c.cgroup_id)
            log.info("policy scope %d: container %s (%s) added", scope_id, c.name, c.id[:12])
        elif not want and c.cgroup_id in members:
            self._write(scope_id, c.cgroup_id, False)
            members.discard(c.cgroup_id)
