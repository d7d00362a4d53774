"""Live changes to pinned XDP firewalls: one implementation for the CLI and the agent.

Every state-changing `bpfguard firewall` command is a :class:`Change`: an
action and JSON-ready arguments, which is also what the agent's control
socket carries in a ``firewall`` request. :func:`parse_change` checks one
(the CLI's options or a client's request alike) and :func:`apply_change`
makes it on the pinned maps under one lock file, whoever runs it, so the
CLI acting directly and the agent never interleave.

Example::

    change = parse_change({"action": "rule-add", "iface": "eth0",
                           "rule": {"src": "198.18.7.0/24", "action": "drop"}})
    message, fw = apply_change(change)  # "rule 3: --src 198.18.7.0/24 --action drop"
    if fw is not None:
        fw.close()
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import BpfguardError, ConfigError
from ..files import open_in_trusted_dir
from ..loader.net import XdpMode
from .config import load_firewall_config_text, rule_from_options
from .model import FirewallConfig, Limits, parse_network
from .xdp import Firewall

__all__ = ["ACTIONS", "LOCK", "Change", "apply_change", "locked", "parse_change"]

LOCK = Path("/run/bpfguard/firewall.lock")

# each action's arguments besides iface and netns, with the JSON type each
# takes (float: any number; null or absent: not given)
_ARGS: dict[str, dict[str, type]] = {
    "load": {"xdp_mode": str, "policy": str, "audit": bool, "force": bool,
             "text": str, "source": str},
    "unload": {},
    "mode": {"mode": str},
    "limits": {**{f.name: int for f in dataclasses.fields(Limits)},
               "ban_seconds": float, "amplification": bool},
    "rule-add": {"rule": dict},
    "rule-del": {"rule": dict, "id": int},
    "allow-add": {"cidr": str},
    "allow-del": {"cidr": str},
    "ban-add": {"address": str, "seconds": float},
    "ban-del": {"address": str},
}
ACTIONS = tuple(_ARGS)
_REQUIRED = {"load": ("iface",), "unload": ("iface",), "mode": ("iface", "mode"),
             "rule-add": ("rule",), "allow-add": ("cidr",), "allow-del": ("cidr",),
             "ban-add": ("address", "seconds"), "ban-del": ("address",)}
_CHOICES = {"xdp_mode": ("native", "generic"), "policy": ("allow", "deny"),
            "mode": ("audit", "enforce")}
# a rule as the config file (and Rule.fields()) spells it
_RULE: dict[str, type] = {"src": str, "dst": str, "proto": str, "sport": int, "dport": int,
                          "icmp_type": int, "action": str}
_MAX_BAN_S = 10**9     # as Limits.ban_seconds: a ban's expiry stays a u64 of ns
_KINDS = {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
          dict: "an object"}


@contextlib.contextmanager
def locked(timeout: float | None = None) -> Iterator[bool]:
    """Serialises changes across processes: the pinned maps are shared state,
    and a rule's class and hash entries are written in several steps. Waits
    for the lock, or at most `timeout` seconds: then yields False, without
    it (flock has no timeout of its own: polled)."""
    if os.geteuid() != 0:
        raise BpfguardError("needs root: the firewall's pinned maps are root-only")
    fd = open_in_trusted_dir(LOCK, os.O_WRONLY | os.O_CREAT, f"firewall lock {LOCK}",
                             create_dirs=True)
    with os.fdopen(fd, "w") as f:
        if timeout is None:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield True
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.02)
            else:
                yield True
                return


@dataclasses.dataclass(frozen=True)
class Change:
    """One state-changing firewall command, its arguments checked for shape
    (values such as CIDRs are checked when it is applied)."""

    action: str
    iface: str | None
    netns: str | None
    args: dict[str, Any]

    def as_request(self) -> dict[str, Any]:
        """The control socket's ``firewall`` request for it, without "op"."""
        return {"action": self.action, "iface": self.iface, "netns": self.netns, **self.args}


def _typed(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, (int, float) if kind is float else kind)


def _checked(what: str, given: Mapping[str, Any], spec: Mapping[str, type]) -> dict[str, Any]:
    """`given` without its nulls; ConfigError for an unknown key or a wrong type."""
    out = {}
    for key, value in given.items():
        if key not in spec:
            raise ConfigError(f"{what}: unknown argument {key!r} (expected: "
                              f"{', '.join(spec) or 'none'})")
        if value is None:
            continue
        if not _typed(value, spec[key]):
            raise ConfigError(f"{what}: {key!r} must be {_KINDS[spec[key]]}, not {value!r}")
        if value not in _CHOICES.get(key, (value,)):
            raise ConfigError(f"{what}: {key!r} must be one of {', '.join(_CHOICES[key])}, "
                              f"not {value!r}")
        out[key] = value
    return out


def parse_change(req: Mapping[str, Any]) -> Change:
    """The change a ``firewall`` request (or the CLI) asks for: ``action``,
    ``iface`` and ``netns`` (strings or null), and the action's arguments.
    ConfigError naming what is wrong ("op" and the TCP "token" are ignored)."""
    action = req.get("action")
    if not isinstance(action, str) or action not in _ARGS:
        raise ConfigError(f"unknown firewall action {action!r} (expected one of: "
                          f"{', '.join(ACTIONS)})")
    what = f"firewall {action}"
    where = _checked(what, {k: req.get(k) for k in ("iface", "netns")},
                     {"iface": str, "netns": str})
    args = _checked(what, {k: v for k, v in req.items()
                           if k not in ("op", "token", "action", "iface", "netns")},
                    _ARGS[action])
    if "rule" in args:
        args["rule"] = _checked(f"{what}: rule", args["rule"], _RULE)
    for key in _REQUIRED.get(action, ()):
        if key not in where and key not in args:
            raise ConfigError(f"{what}: {key!r} is required")
    for key, name in where.items():    # both become part of the pin directory's name
        if not name or "/" in name or "@" in name or name in (".", ".."):
            raise ConfigError(f"{what}: {name!r} is not "
                              f"{'an interface' if key == 'iface' else 'a namespace'} name")
    seconds = args.get("seconds")
    if seconds is not None and not 0 < seconds <= _MAX_BAN_S:
        raise ConfigError(f"{what}: 'seconds' must be more than 0 and at most {_MAX_BAN_S:,}, "
                          f"not {seconds!r}")
    if action == "rule-add" and "action" not in args["rule"]:
        raise ConfigError(f"{what}: the rule needs an action (drop or pass)")
    if action == "rule-del" and "id" not in args and "action" not in args.get("rule", {}):
        raise ConfigError("give --id, or the rule's options including --action")
    return Change(action, where.get("iface"), where.get("netns"), args)


def apply_change(change: Change) -> tuple[str, Firewall | None]:
    """Makes `change` on the pinned firewall, under the lock file.

    Returns what the CLI prints, and the firewall as it is now, open (the
    caller closes or keeps it; None after an unload). Raises BpfguardError
    (ConfigError, FirewallError, KernelError) when it cannot be made; a load
    that fails leaves nothing attached.
    """
    if change.action == "load":
        return _load(change)
    with locked():
        fw = Firewall.open(change.iface, change.netns)
        try:
            if change.action == "unload":
                fw.unload()
                return f"firewall removed from {fw.ifname}", None
            return _APPLY[change.action](fw, change.args), fw
        except BaseException:
            fw.close()
            raise


def _load(change: Change) -> tuple[str, Firewall]:
    a = change.args
    assert change.iface is not None     # required by parse_change
    cfg = (load_firewall_config_text(a.get("source") or "<control socket>", a["text"])
           if "text" in a else FirewallConfig())
    if "policy" in a:
        cfg.policy = "deny" if a["policy"] == "deny" else "allow"
    if a.get("audit"):
        cfg.mode = "audit"
    xdp_mode: XdpMode = "generic" if a.get("xdp_mode") == "generic" else "native"
    with locked():
        fw = Firewall.load(change.iface, cfg, xdp_mode=xdp_mode, netns=change.netns,
                           force=a.get("force", False))
    return (f"firewall on {change.iface}: {cfg.mode} mode, policy {cfg.policy}, "
            f"{len(cfg.rules)} rule(s), {xdp_mode} XDP; pinned at {fw.pin_dir}"), fw


def _mode(fw: Firewall, a: dict[str, Any]) -> str:
    fw.set_mode(a["mode"])
    return f"firewall on {fw.ifname}: {a['mode']} mode"


def _limits(fw: Firewall, a: dict[str, Any]) -> str:
    try:
        new = dataclasses.replace(fw.limits(), **{k: v for k, v in a.items()
                                                  if k != "amplification"})
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    fw.set_limits(new)
    if "amplification" in a:
        fw.set_amplification(a["amplification"])
    return ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(fw.limits()).items())


def _rule_add(fw: Firewall, a: dict[str, Any]) -> str:
    r = rule_from_options(**a["rule"])
    rid = fw.add_rule(r)
    return f"rule {rid}: {r.describe()}"


def _rule_del(fw: Firewall, a: dict[str, Any]) -> str:
    rid = a["id"] if "id" in a else fw.find_rule(rule_from_options(**a["rule"]))
    r = fw.delete_rule(rid)
    return f"deleted rule {rid}: {r.describe()}"


def _network(cidr: str) -> Any:
    try:
        return parse_network(cidr)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _allow_add(fw: Firewall, a: dict[str, Any]) -> str:
    net = _network(a["cidr"])
    fw.allow(net)
    return f"allowlisted {net}"


def _allow_del(fw: Firewall, a: dict[str, Any]) -> str:
    net = _network(a["cidr"])
    if not fw.disallow(net):
        raise ConfigError(f"{net} is not on the allowlist")
    return f"removed {net} from the allowlist"


def _ban_add(fw: Firewall, a: dict[str, Any]) -> str:
    fw.ban(a["address"], a["seconds"])
    return f"banned {a['address']} for {a['seconds']:g} s"


def _ban_del(fw: Firewall, a: dict[str, Any]) -> str:
    if not fw.unban(a["address"]):
        raise ConfigError(f"{a['address']} is not banned")
    return f"lifted the ban on {a['address']}"


_APPLY: dict[str, Callable[[Firewall, dict[str, Any]], str]] = {
    "mode": _mode, "limits": _limits, "rule-add": _rule_add, "rule-del": _rule_del,
    "allow-add": _allow_add, "allow-del": _allow_del, "ban-add": _ban_add, "ban-del": _ban_del,
}
