"""Containers and pods: what the runtime that started a container says about it.

A process's container id comes from its cgroup path (see
:func:`bpfguard.proctable.container_of`); everything else about the
container (name, image, privileged, mounts, its Kubernetes pod) comes from
the runtime, asked off the event path by a :class:`ContainerCache`::

    cache = ContainerCache(engines_at(podman="/run/podman/podman.sock",
                                      docker=None,
                                      containerd="/run/containerd/containerd.sock"))
    cache.start()
    cache.get(full_id)   # a Container, or None while the runtime is asked
"""

from .cache import (
    ContainerCache,
    LookupState,
    cgroup2_root,
    cgroup_id_of_pid,
    engines_at,
    find_container,
)
from .engines import Engine, EngineError
from .model import Container, Mount, Pod, split_image

__all__ = ["Container", "ContainerCache", "Engine", "EngineError", "LookupState", "Mount", "Pod",
           "cgroup2_root", "cgroup_id_of_pid", "engines_at", "find_container", "split_image"]
