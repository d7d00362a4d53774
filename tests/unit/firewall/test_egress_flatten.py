"""Egress rules flattened for the LPM trie: each prefix carries its covering rules."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bpfguard.firewall.egress import flatten
from bpfguard.firewall.model import EgressRule, parse_network
from bpfguard.firewall.xdp import FirewallError

TCP, UDP, BOTH = 1, 2, 3


def rule(dst: str, port: int | None = None, proto: str | None = None) -> EgressRule:
    return EgressRule(parse_network(dst), port, proto)


def test_slash_24_entry_lists_its_rule_then_the_covering_slash_16() -> None:
    flat = flatten({1: rule("198.18.0.0/16"), 2: rule("198.18.5.0/24", 443, "tcp")}, 16)
    assert flat == {
        ipaddress.ip_network("198.18.0.0/16"): [(1, 0, BOTH)],
        ipaddress.ip_network("198.18.5.0/24"): [(2, 443, TCP), (1, 0, BOTH)],
    }


def test_most_specific_first_whatever_the_rule_ids() -> None:
    flat = flatten({1: rule("198.18.5.7"), 2: rule("198.18.5.0/24", 53, "udp"),
                    3: rule("198.0.0.0/8")}, 16)
    assert flat[ipaddress.ip_network("198.18.5.7/32")] == [(1, 0, BOTH), (2, 53, UDP),
                                                            (3, 0, BOTH)]
    assert flat[ipaddress.ip_network("198.18.5.0/24")] == [(2, 53, UDP), (3, 0, BOTH)]
    assert flat[ipaddress.ip_network("198.0.0.0/8")] == [(3, 0, BOTH)]


def test_rules_of_one_prefix_share_its_entry_by_rule_id() -> None:
    flat = flatten({5: rule("198.18.0.0/15", 443, "tcp"), 2: rule("198.18.0.0/15", 53)}, 16)
    assert flat == {ipaddress.ip_network("198.18.0.0/15"): [(2, 53, BOTH), (5, 443, TCP)]}


def test_disjoint_prefixes_do_not_cover_each_other() -> None:
    flat = flatten({1: rule("198.18.0.0/24"), 2: rule("198.18.1.0/24")}, 16)
    assert flat[ipaddress.ip_network("198.18.0.0/24")] == [(1, 0, BOTH)]
    assert flat[ipaddress.ip_network("198.18.1.0/24")] == [(2, 0, BOTH)]


def test_ipv4_and_ipv6_do_not_mix() -> None:
    flat = flatten({1: rule("0.0.0.0/0"), 2: rule("::/0"), 3: rule("2001:db8::/32", 22, "tcp"),
                    4: rule("198.18.0.0/16", 80)}, 16)
    assert flat == {
        ipaddress.ip_network("0.0.0.0/0"): [(1, 0, BOTH)],
        ipaddress.ip_network("::/0"): [(2, 0, BOTH)],
        ipaddress.ip_network("2001:db8::/32"): [(3, 22, TCP), (2, 0, BOTH)],
        ipaddress.ip_network("198.18.0.0/16"): [(4, 80, BOTH), (1, 0, BOTH)],
    }


def test_no_rules_no_entries() -> None:
    assert flatten({}, 16) == {}


def test_exactly_the_limit_fits() -> None:
    rules = {i: rule("198.18.0.0/16", i) for i in range(1, 17)}
    flat = flatten(rules, 16)
    assert len(flat[ipaddress.ip_network("198.18.0.0/16")]) == 16


def test_17_covering_rules_with_limit_16_raise_naming_the_prefix_and_limit() -> None:
    rules = {i: rule("198.18.0.0/16", 1000 + i) for i in range(1, 17)}
    rules[17] = rule("198.18.7.0/24")
    with pytest.raises(FirewallError) as info:
        flatten(rules, 16)
    msg = str(info.value)
    assert "198.18.7.0/24" in msg
    assert "17 rules cover it" in msg
    assert "at most 16 fit" in msg


def test_limit_is_per_prefix_not_overall() -> None:
    rules = {i: rule(f"198.18.{i}.0/24") for i in range(1, 21)}
    rules.update({100 + i: rule(f"2001:db8:{i:x}::/48") for i in range(1, 21)})
    flat = flatten(rules, 1)
    assert len(flat) == 40
    assert all(len(entries) == 1 for entries in flat.values())


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(8, 32)), min_size=1,
                max_size=12))
def test_each_entry_is_exactly_its_covering_rules_most_specific_first(
        specs: list[tuple[int, int]]) -> None:
    rules = {i: EgressRule(ipaddress.ip_network((addr, plen), strict=False))
             for i, (addr, plen) in enumerate(specs, 1)}
    flat = flatten(rules, 64)
    assert set(flat) == {r.dst for r in rules.values()}
    for net, entries in flat.items():
        ids = [rid for rid, _, _ in entries]
        assert sorted(ids) == sorted(rid for rid, r in rules.items() if net.subnet_of(r.dst))
        plens = [rules[rid].dst.prefixlen for rid in ids]
        assert plens == sorted(plens, reverse=True)
        assert ids[0] in {rid for rid, r in rules.items() if r.dst == net}
