"""What the probe found: one :class:`Feature` per name, collected in :class:`Features`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table
from rich.text import Text

__all__ = ["FEATURE_NAMES", "Feature", "Features", "render_table"]

# Stable names: backends and sensors ask for these.
FEATURE_NAMES: tuple[str, ...] = (
    "btf", "ringbuf", "raw_tp", "tp_btf", "tracepoint", "fentry", "fexit", "fmod_ret", "lsm",
    "kprobe", "uprobe", "cgroup", "xdp_native", "xdp_generic", "tc", "send_signal", "d_path",
    "task_storage", "bpf_loop", "lockdown", "error_injection", "write_user",
)


@dataclass(frozen=True)
class Feature:
    """One kernel capability, tried for real.

    Attributes:
        name: one of FEATURE_NAMES.
        available: the program loaded, attached and (where the probe can tell) ran.
        detail: what was shown to work, or why it is refused and what that implies.
    """

    name: str
    available: bool
    detail: str


@dataclass(frozen=True)
class Features:
    """The probe's result for one kernel.

    Attributes:
        features: in FEATURE_NAMES order (only the probed ones).
        kernel: the kernel release (uname -r).
        lockdown: the lockdown mode ("none", "integrity", "confidentiality"),
            or "unknown" when it could not be read.
    """

    features: list[Feature]
    kernel: str
    lockdown: str
    _by_name: dict[str, Feature] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {f.name: f for f in self.features})

    def get(self, name: str) -> Feature:
        """The feature `name`; KeyError when it was not probed (or is misspelt)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"feature {name!r} was not probed") from None

    def has(self, name: str) -> bool:
        """Whether `name` was probed and is available."""
        f = self._by_name.get(name)
        return f is not None and f.available

    def __iter__(self) -> Iterator[Feature]:
        return iter(self.features)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: kernel, lockdown, and each feature's availability and detail."""
        return {
            "kernel": self.kernel,
            "lockdown": self.lockdown,
            "features": {f.name: {"available": f.available, "detail": f.detail}
                         for f in self.features},
        }


def render_table(f: Features) -> Table:
    """A rich table of the result, one row per feature, refusals in red."""
    table = Table(title=f"Kernel {f.kernel} (lockdown: {f.lockdown})", title_justify="left")
    table.add_column("feature", style="bold", no_wrap=True)
    table.add_column("available", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for feat in f.features:
        mark = Text("yes", style="green") if feat.available else Text("no", style="red")
        table.add_row(feat.name, mark, Text(feat.detail))  # Text: details hold brackets
    return table
