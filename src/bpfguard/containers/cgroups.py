"""Which container a cgroup path belongs to, and the paths in /proc/PID/cgroup."""

from __future__ import annotations

import functools
import re

__all__ = ["cgroup_paths", "container_id_from_cgroup", "container_of"]

# Container runtimes' cgroup path patterns (Falco's container plugin's
# matchers): the id is 64 hex digits, reported with 12 as Falco and docker do,
# except containerd's own layout /<namespace>/<id>, where the id is the name
# `ctr run` was given; only containerd's usual namespaces count, so another
# two-level cgroup (podman's /libpod_parent/conmon) is not taken for one.
_CONTAINER_PATTERNS = [
    ("docker", re.compile(r"docker-([0-9a-f]{64})\.scope")),
    ("docker", re.compile(r"/docker/([0-9a-f]{64})")),
    ("containerd", re.compile(r"cri-containerd-([0-9a-f]{64})\.scope")),
    ("containerd", re.compile(r"nerdctl-([0-9a-f]{64})\.scope")),
    ("cri-o", re.compile(r"crio-(?:conmon-)?([0-9a-f]{64})\.scope")),
    ("podman", re.compile(r"libpod-(?:conmon-)?([0-9a-f]{64})\.scope")),
    # podman with cgroupfs: /libpod_parent/libpod-<id>, in a pod
    # /libpod_parent/<pod id>/libpod-<id>
    ("podman", re.compile(r"/libpod-([0-9a-f]{64})(?:/container)?$")),
    ("containerd", re.compile(r"/kubepods[^ ]*/(?:pod[0-9a-f_-]+/)?([0-9a-f]{64})$")),
    ("containerd", re.compile(r"/containerd/([0-9a-f]{64})")),
    ("containerd", re.compile(
        r"^/(?:default|k8s\.io|moby)/([A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*)$(?<!\.service)"
        r"(?<!\.slice)(?<!\.scope)")),
]


@functools.lru_cache(maxsize=4096)
def container_of(path: str) -> tuple[str, str] | None:
    """(runtime, full container id) a cgroup path belongs to; None on the host.
    Memoised: the rules ask it for every event's process, and a host has
    few distinct cgroup paths."""
    for runtime, pat in _CONTAINER_PATTERNS:
        m = pat.search(path)
        if m:
            return runtime, m.group(1)
    return None


def cgroup_paths(text: str) -> tuple[str | None, str | None]:
    """The cgroup v2 path and the pids controller's v1 path in a
    /proc/PID/cgroup text (what the process sensor reads at exec)."""
    v2 = v1 = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and not controllers:
            v2 = path
        elif "pids" in controllers.split(","):
            v1 = path
    return v2, v1


def container_id_from_cgroup(path: str) -> str:
    """The container id (12 hex digits) a cgroup path belongs to, or "host"."""
    c = container_of(path)
    return c[1][:12] if c else "host"
