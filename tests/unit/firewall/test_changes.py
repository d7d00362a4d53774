"""Live firewall changes as the CLI and the agent's control socket describe them:
what a request may say, and what each action does to a firewall (a fake one
here; tests/kernel/test_firewall.py and test_agent.py use the real one)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bpfguard.errors import ConfigError
from bpfguard.firewall import changes
from bpfguard.firewall.changes import ACTIONS, Change, apply_change, parse_change
from bpfguard.firewall.model import FirewallConfig, Limits, Network, Rule
from bpfguard.firewall.xdp import FirewallError

_LOCKED = changes.locked   # the real one: the autouse fixture below fakes it


def test_every_state_changing_command_is_an_action() -> None:
    assert ACTIONS == ("load", "unload", "mode", "limits", "rule-add", "rule-del",
                       "allow-add", "allow-del", "ban-add", "ban-del")


def test_a_request_parses_and_round_trips() -> None:
    req = {"op": "firewall", "action": "rule-add", "iface": "eth0", "netns": None,
           "rule": {"src": "198.18.7.0/24", "dport": None, "action": "drop"}}
    change = parse_change(req)
    assert change == Change("rule-add", "eth0", None,
                            {"rule": {"src": "198.18.7.0/24", "action": "drop"}})
    assert parse_change(change.as_request()) == change
    assert change.as_request() == {"action": "rule-add", "iface": "eth0", "netns": None,
                                   "rule": {"src": "198.18.7.0/24", "action": "drop"}}


def test_nulls_are_not_given_and_the_token_is_ignored() -> None:
    change = parse_change({"action": "limits", "pps": 10, "bps": None, "ban_seconds": 2,
                           "amplification": None, "token": "x" * 20})
    assert change == Change("limits", None, None, {"pps": 10, "ban_seconds": 2})


@pytest.mark.parametrize(("req", "message"), [
    ({"action": "frob"}, "unknown firewall action 'frob' (expected one of: load, unload, "),
    ({}, "unknown firewall action None"),
    ({"action": ["load"]}, "unknown firewall action ['load']"),
    ({"action": "unload"}, "firewall unload: 'iface' is required"),
    ({"action": "load", "netns": "ns1"}, "firewall load: 'iface' is required"),
    ({"action": "mode", "iface": "eth0"}, "firewall mode: 'mode' is required"),
    ({"action": "mode", "iface": "eth0", "mode": "off"},
     "firewall mode: 'mode' must be one of audit, enforce, not 'off'"),
    ({"action": "load", "iface": "eth0", "xdp_mode": "offload"},
     "firewall load: 'xdp_mode' must be one of native, generic, not 'offload'"),
    ({"action": "unload", "iface": 3}, "firewall unload: 'iface' must be a string, not 3"),
    ({"action": "limits", "pps": "10"}, "firewall limits: 'pps' must be a whole number"),
    ({"action": "limits", "pps": 1.5}, "firewall limits: 'pps' must be a whole number"),
    ({"action": "limits", "pps": True}, "firewall limits: 'pps' must be a whole number"),
    ({"action": "limits", "amplification": 1},
     "firewall limits: 'amplification' must be true or false, not 1"),
    ({"action": "limits", "bogus": 1}, "firewall limits: unknown argument 'bogus' (expected: "
                                       "pps, burst,"),
    ({"action": "unload", "iface": "eth0", "force": True},
     "firewall unload: unknown argument 'force' (expected: none)"),
    ({"action": "rule-add"}, "firewall rule-add: 'rule' is required"),
    ({"action": "rule-add", "rule": "drop all"}, "firewall rule-add: 'rule' must be an object"),
    ({"action": "rule-add", "rule": {"src": "198.18.0.1"}},
     "firewall rule-add: the rule needs an action (drop or pass)"),
    ({"action": "rule-add", "rule": {"dport": "22", "action": "drop"}},
     "firewall rule-add: rule: 'dport' must be a whole number, not '22'"),
    ({"action": "rule-add", "rule": {"port": 22, "action": "drop"}},
     "firewall rule-add: rule: unknown argument 'port'"),
    ({"action": "rule-del", "rule": {"src": "198.18.0.1"}},
     "give --id, or the rule's options including --action"),
    ({"action": "allow-add"}, "firewall allow-add: 'cidr' is required"),
    ({"action": "ban-add", "address": "198.18.0.1"}, "firewall ban-add: 'seconds' is required"),
    ({"action": "ban-add", "address": "198.18.0.1", "seconds": "1"},
     "firewall ban-add: 'seconds' must be a number"),
    ({"action": "ban-add", "address": "198.18.0.1", "seconds": float("inf")},
     "firewall ban-add: 'seconds' must be more than 0 and at most 1,000,000,000, not inf"),
    ({"action": "ban-add", "address": "198.18.0.1", "seconds": float("nan")},
     "firewall ban-add: 'seconds' must be more than 0"),
    ({"action": "ban-add", "address": "198.18.0.1", "seconds": 0},
     "firewall ban-add: 'seconds' must be more than 0"),
    ({"action": "unload", "iface": "../../x"},
     "firewall unload: '../../x' is not an interface name"),
    ({"action": "unload", "iface": ".."}, "firewall unload: '..' is not an interface name"),
    ({"action": "unload", "iface": "a@b"}, "firewall unload: 'a@b' is not an interface name"),
    ({"action": "mode", "iface": "eth0", "netns": "x/../..", "mode": "audit"},
     "firewall mode: 'x/../..' is not a namespace name"),
    ({"action": "unload", "iface": "eth0", "netns": ""},
     "firewall unload: '' is not a namespace name"),
])
def test_bad_requests_say_what_is_wrong(req: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_change(req)
    assert str(info.value).startswith(message)


# -- applying changes ------------------------------------------------------------------


class FakeFirewall:
    """What apply_change uses of Firewall, in memory: one firewall, on eth0,
    which every open() returns (as the pins would)."""

    def __init__(self, ifname: str, netns: str | None) -> None:
        self.ifname, self.netns = ifname, netns
        self.pin_dir = Path("/sys/fs/bpf/bpfguard/firewall") / ifname
        self.closed = self.unloaded = False
        self.mode = "enforce"
        self.amplification = False
        self._limits = Limits()
        self.rules: dict[int, Rule] = {}
        self.allowed: set[Network] = set()
        self.banned: dict[str, float] = {}
        self.loaded: dict[str, Any] = {}

    @classmethod
    def open(cls, ifname: str | None = None, netns: str | None = None) -> FakeFirewall:
        if ifname not in (None, "eth0"):
            raise FirewallError(f"no bpfguard firewall on {ifname}")
        fw = ETH0[0]
        fw.closed = False
        OPENED.append(fw)
        return fw

    @classmethod
    def load(cls, ifname: str, config: FirewallConfig, **kw: Any) -> FakeFirewall:
        fw = cls(ifname, kw["netns"])
        fw.loaded = {"config": config, **kw}
        return fw

    def close(self) -> None:
        self.closed = True

    def unload(self) -> None:
        self.unloaded = self.closed = True

    def set_mode(self, mode: str) -> None:
        self.mode = mode

    def limits(self) -> Limits:
        return self._limits

    def set_limits(self, lim: Limits) -> None:
        self._limits = lim

    def set_amplification(self, enabled: bool) -> None:
        self.amplification = enabled

    def add_rule(self, rule: Rule) -> int:
        rid = max(self.rules, default=0) + 1
        self.rules[rid] = rule
        return rid

    def find_rule(self, rule: Rule) -> int:
        for rid, r in self.rules.items():
            if r == rule:
                return rid
        raise FirewallError(f"no rule `{rule.describe()}` on {self.ifname}")

    def delete_rule(self, rid: int) -> Rule:
        if rid not in self.rules:
            raise FirewallError(f"no rule {rid} on {self.ifname}")
        return self.rules.pop(rid)

    def allow(self, net: Network) -> None:
        self.allowed.add(net)

    def disallow(self, net: Network) -> bool:
        gone = net in self.allowed
        self.allowed.discard(net)
        return gone

    def ban(self, addr: str, seconds: float) -> None:
        self.banned[addr] = seconds

    def unban(self, addr: str) -> bool:
        return self.banned.pop(addr, None) is not None


ETH0: list[FakeFirewall] = []
OPENED: list[FakeFirewall] = []


@pytest.fixture(autouse=True)
def fake_firewall(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(changes, "Firewall", FakeFirewall)
    monkeypatch.setattr(changes, "locked", contextlib.nullcontext)  # no root, no /run here
    ETH0[:] = [FakeFirewall("eth0", None)]
    OPENED.clear()
    yield


def apply(**req: Any) -> tuple[str, Any]:
    return apply_change(parse_change(req))


def test_rule_add_and_del_print_what_the_cli_always_printed() -> None:
    msg, fw = apply(action="rule-add", iface="eth0",
                    rule={"src": "198.18.7.0/24", "proto": "udp", "dport": 53, "action": "drop"})
    assert msg == "rule 1: --src 198.18.7.0/24 --proto udp --dport 53 --action drop"
    assert fw is OPENED[0] and not fw.closed          # the caller's to keep or close
    msg, _ = apply(action="rule-del", rule={"src": "198.18.7.0/24", "proto": "udp", "dport": 53,
                                            "action": "drop"})
    assert msg == "deleted rule 1: --src 198.18.7.0/24 --proto udp --dport 53 --action drop"


def test_errors_close_the_firewall_and_keep_the_cli_messages() -> None:
    with pytest.raises(ConfigError, match=r"^--src: '198.18.0.1/24' has host bits set; "
                                          r"did you mean 198.18.0.0/24\?$"):
        apply(action="rule-add", rule={"src": "198.18.0.1/24", "action": "drop"})
    assert OPENED[-1].closed
    with pytest.raises(FirewallError, match="^no rule 7 on eth0$"):
        apply(action="rule-del", id=7)
    assert OPENED[-1].closed
    with pytest.raises(FirewallError, match="^no bpfguard firewall on eth9$"):
        apply(action="mode", iface="eth9", mode="audit")
    with pytest.raises(ConfigError, match=r"^198\.18\.0\.0/24 is not on the allowlist$"):
        apply(action="allow-del", cidr="198.18.0.0/24")
    with pytest.raises(ConfigError, match=r"^198\.18\.0\.9 is not banned$"):
        apply(action="ban-del", address="198.18.0.9")
    with pytest.raises(ConfigError, match="is not an IPv4 or IPv6 address"):
        apply(action="allow-add", cidr="nope")
    with pytest.raises(ConfigError, match="^ipv6_source_prefix 129 is not in 1-128$"):
        apply(action="limits", ipv6_source_prefix=129)


def test_mode_allow_ban_and_limits() -> None:
    assert apply(action="mode", iface="eth0", mode="audit")[0] == "firewall on eth0: audit mode"
    assert OPENED[-1].mode == "audit"
    assert apply(action="allow-add", cidr="2001:2::/48")[0] == "allowlisted 2001:2::/48"
    assert apply(action="ban-add", address="198.18.0.9", seconds=600.0)[0] == \
        "banned 198.18.0.9 for 600 s"
    assert OPENED[-1].banned == {"198.18.0.9": 600.0}
    msg, fw = apply(action="limits", pps=100, ban_seconds=2, amplification=True)
    assert msg.startswith("pps=100, burst=0, bps=0, ") and "ban_seconds=2" in msg
    assert fw.amplification is True


def test_unload_returns_no_firewall() -> None:
    msg, fw = apply(action="unload", iface="eth0", netns="ns1")
    assert (msg, fw) == ("firewall removed from eth0", None)
    assert OPENED[-1].unloaded


def test_load_reads_the_config_text_and_names_its_source_in_errors() -> None:
    text = "mode: audit\nrules:\n  - {src: 198.18.0.1, action: drop}\n"
    msg, fw = apply(action="load", iface="eth1", netns="ns1", text=text, source="fw.yaml",
                    policy="deny", xdp_mode="generic", force=True)
    assert msg == ("firewall on eth1: audit mode, policy deny, 1 rule(s), generic XDP; "
                   "pinned at /sys/fs/bpf/bpfguard/firewall/eth1")
    assert fw.loaded["xdp_mode"] == "generic" and fw.loaded["force"] is True
    assert fw.loaded["netns"] == "ns1"
    msg, _ = apply(action="load", iface="eth1")
    assert msg.startswith("firewall on eth1: enforce mode, policy allow, 0 rule(s), native XDP")
    bad = "rules:\n  - {src: 198.18.0.1, action: drop}\n  - {dst: 198.18.0.300, action: drop}\n"
    with pytest.raises(ConfigError, match=r"^fw\.yaml:3: rules\[1\]\.dst: '198\.18\.0\.300'"):
        apply(action="load", iface="eth1", text=bad, source="fw.yaml")


@pytest.mark.skipif(os.geteuid() != 0, reason="the lock is root's (the pinned maps are)")
def test_the_lock_waits_at_most_its_timeout(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setattr(changes, "LOCK", tmp_path / "firewall.lock")
    monkeypatch.setattr(changes, "locked", _LOCKED)
    with changes.locked() as got:
        assert got
        with open(changes.LOCK) as other:   # another open file: flock excludes it
            assert not _try_flock(other)
        t0 = time.monotonic()
        with changes.locked(0.2) as again:
            assert again is False
        assert 0.2 <= time.monotonic() - t0 < 2
    with changes.locked(0) as got:
        assert got


def _try_flock(f: Any) -> bool:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
