"""The agent's firewalls: load the configured ones, follow the pins, change them live.

The pins are the truth: `bpfguard firewall` changes them through the agent
(:meth:`Firewalls.change`, from the control socket) or without it
(``--direct``, or while the agent was down). :meth:`Firewalls.sync` makes
the agent's view the bpfguard firewalls pinned on the host, each as its
pins are now; metric scrapes and ``agent status`` call it, so a firewall
loaded elsewhere is taken up, one changed or replaced is re-read, and one
unloaded leaves the view. Firewalls outlive the agent: :meth:`Firewalls.close`
only closes the agent's handles, unless a failed start asks to unload what
it loaded itself.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from ..errors import BpfguardError

__all__ = ["Firewalls", "firewall_label"]

log = logging.getLogger("bpfguard.agent")


def firewall_label(iface: str, netns: str | None) -> str:
    """How the agent names a firewall (metrics, logs): IFACE or IFACE@NETNS."""
    return f"{iface}@{netns}" if netns else iface


class Firewalls:
    """The bpfguard firewalls pinned on this host, as the agent sees them.

    Thread-safe: the control socket, metric scrapes and the main thread use
    it at once. Every read of the pins happens under the changes' lock
    (``bpfguard.firewall.changes.locked``), so no half-made change is seen.
    """

    def __init__(self) -> None:
        self._by_label: dict[str, Any] = {}      # label -> an open Firewall
        # the ones load() attached, by label: a failed start unloads them
        self._loaded: dict[str, tuple[str, str | None]] = {}
        self._closed = False                     # after close(): no sync adds any back
        self._lock = threading.Lock()            # _by_label, against metric scrapes

    def labels(self) -> list[str]:
        """The firewalls in the view, by label."""
        with self._lock:
            return list(self._by_label)

    def load(self, interfaces: Iterable[Mapping[str, Any]]) -> None:
        """Loads the configured firewalls (``firewall.interfaces`` entries)
        that are not pinned yet, then takes up every pinned one."""
        from ..firewall import Firewall, FirewallConfig
        from ..firewall.changes import locked
        from ..firewall.config import load_firewall_config

        for entry in interfaces:
            iface, netns = entry["interface"], entry["netns"] or None
            label = firewall_label(iface, netns)
            with locked():
                try:
                    Firewall.open(iface, netns).close()
                except BpfguardError:
                    cfg = (load_firewall_config(entry["config"]) if entry["config"]
                           else FirewallConfig())
                    Firewall.load(iface, cfg, netns=netns, force=entry["force"]).close()
                    self._loaded[label] = (iface, netns)
                    log.info("firewall on %s: loaded", label)
        self.sync(announced=self._loaded)

    def sync(self, *, timeout: float | None = None, announced: Collection[str] = (),
             opened: Any = None) -> None:
        """Makes the view the bpfguard firewalls pinned on this host, each as
        its pins are now. When the changes' lock stays taken `timeout`
        seconds, the view stays as it is. A firewall found that is not in
        `announced` (already logged) is logged as adopted. `opened`: one the
        caller has just read from its pins, taken (or closed) here instead of
        being read again."""
        from ..firewall import Firewall, loaded_firewalls
        from ..firewall.changes import locked
        from ..firewall.xdp import FIREWALL_PINS

        spare = opened
        try:
            if not self._by_label and not FIREWALL_PINS.is_dir():
                return      # no firewall here, now or before: no lock file either
            with locked(timeout) as got, self._lock:
                if not got or self._closed:
                    return
                held, now = dict(self._by_label), {}
                for iface, netns in loaded_firewalls():
                    label = firewall_label(iface, netns)
                    fw = held.pop(label, None)
                    try:
                        if fw is None or fw.outdated():
                            if spare is not None and (spare.ifname, spare.netns) == (iface, netns) \
                                    and not spare.outdated():
                                new, spare = spare, None
                            else:
                                new = Firewall.open(iface, netns)
                            if fw is not None:
                                fw.close()
                            elif label not in announced:
                                log.info("firewall on %s: adopted the pinned one", label)
                            fw = new
                    except Exception as exc:  # noqa: BLE001 - one unreadable firewall must not hide the others
                        log.warning("firewall on %s: cannot read its pins: %s", label, exc)
                        if fw is None:
                            continue
                    now[label] = fw
                for label, fw in held.items():
                    log.info("firewall on %s: unloaded", label)
                    fw.close()
                self._by_label = now
        finally:
            if spare is not None:
                spare.close()

    def change(self, change: Any) -> dict[str, Any]:
        """Makes a live firewall change (a ``bpfguard.firewall.changes.Change``)
        as `bpfguard firewall` would, then brings the view (and so the metrics
        and status) in line with the pins at once."""
        from ..firewall.changes import apply_change

        message, fw = apply_change(change)
        if fw is not None:
            iface, netns = fw.ifname, fw.netns
        else:                   # an unload, which names its interface
            assert change.iface is not None
            iface, netns = change.iface, change.netns
        label = firewall_label(iface, netns)
        log.info("firewall on %s, changed through the control socket: %s", label, message)
        try:
            self.sync(announced=(label,), opened=fw)
        except Exception:  # the change is made: say so; the next scrape syncs again
            log.exception("firewall on %s: changed, but the agent's view was not updated",
                          label)
        return {"iface": iface, "netns": netns, "message": message}

    def stats(self, *, timeout: float | None = None) -> dict[str, dict[str, Any]]:
        """Each firewall's ``stats()``, by label, after a :meth:`sync`."""
        self.sync(timeout=timeout)
        out = {}
        with self._lock:     # a sync closes the objects it replaces
            for label, fw in self._by_label.items():
                with contextlib.suppress(BpfguardError):
                    out[label] = fw.stats()
        return out

    def close(self, *, unload_loaded: bool = False) -> None:
        """Closes the agent's handles; the firewalls stay pinned unless
        `unload_loaded` (a failed start: only those :meth:`load` attached)."""
        with self._lock:
            self._closed = True
            for fw in self._by_label.values():
                fw.close()
            self._by_label = {}
        if unload_loaded:
            self._unload_loaded()

    def _unload_loaded(self) -> None:
        from ..firewall import Firewall
        from ..firewall.changes import locked

        for label, (iface, netns) in self._loaded.items():
            try:
                with locked():
                    Firewall.open(iface, netns).unload()
            except BpfguardError as exc:
                log.warning("firewall on %s: could not unload it: %s", label, exc)
        self._loaded = {}
