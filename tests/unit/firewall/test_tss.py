"""Tuple-space search: rule shapes (classes), hash keys, prefix masks."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bpfguard.firewall.model import Rule, parse_network
from bpfguard.firewall.tss import (
    F_DPORT,
    F_ICMP_TYPE,
    F_PROTO,
    F_SPORT,
    MatchKey,
    Shape,
    match_keys,
    prefix_mask,
    shape_of,
)


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return parse_network(text)


def padded(packed: bytes) -> bytes:
    return packed.ljust(16, b"\0")


# -- shape_of ------------------------------------------------------------------------


def test_field_bits_are_distinct_single_bits() -> None:
    bits = [F_PROTO, F_SPORT, F_DPORT, F_ICMP_TYPE]
    assert bits == [1, 2, 4, 8]


def test_shape_of_source_prefix_only() -> None:
    assert shape_of(Rule("drop", src=net("198.18.7.0/24"))) == Shape(4, 24, 0, 0)


def test_shape_of_host_destination_tcp_port() -> None:
    r = Rule("pass", dst=net("198.18.0.2"), proto="tcp", dport=22)
    assert shape_of(r) == Shape(4, 0, 32, F_PROTO | F_DPORT)


def test_shape_of_icmp_type() -> None:
    assert shape_of(Rule("drop", proto="icmp", icmp_type=8)) == Shape(4, 0, 0,
                                                                     F_PROTO | F_ICMP_TYPE)


def test_shape_of_icmp_type_zero_still_matches_the_type() -> None:
    # echo reply is type 0: the field is given even though it is falsy
    assert shape_of(Rule("drop", proto="icmp", icmp_type=0)).fields == F_PROTO | F_ICMP_TYPE


def test_shape_of_ports_without_protocol_match_the_protocol_field() -> None:
    r = Rule("drop", sport=123, dport=456)
    assert shape_of(r) == Shape(0, 0, 0, F_PROTO | F_SPORT | F_DPORT)


def test_shape_of_protocol_only_has_either_family() -> None:
    assert shape_of(Rule("drop", proto="udp")) == Shape(0, 0, 0, F_PROTO)


def test_shape_of_ipv6_both_prefixes() -> None:
    r = Rule("drop", src=net("2001:db8::/32"), dst=net("2001:db8:1::1"), proto="udp", sport=53)
    assert shape_of(r) == Shape(6, 32, 128, F_PROTO | F_SPORT)


def test_rules_of_one_shape_share_a_class() -> None:
    shapes = {shape_of(Rule("drop", src=net(f"198.18.{i}.{j}"))) for i in range(4)
              for j in range(4)}
    assert shapes == {Shape(4, 32, 0, 0)}


def test_shape_masks() -> None:
    s = Shape(4, 24, 16, 0)
    assert s.src_mask == b"\xff\xff\xff\x00" + bytes(12)
    assert s.dst_mask == b"\xff\xff\x00\x00" + bytes(12)
    assert Shape(6, 0, 64, 0).dst_mask == b"\xff" * 8 + bytes(8)


# -- match_keys ----------------------------------------------------------------------


def test_match_keys_ports_without_protocol_become_tcp_and_udp() -> None:
    r = Rule("drop", dst=net("198.18.0.0/24"), dport=53)
    keys = match_keys(r)
    assert [k.proto for k in keys] == [6, 17]
    for k in keys:
        assert (k.family, k.icmp_type, k.sport, k.dport) == (4, 0, 0, 53)
        assert k.src == bytes(16)
        assert k.dst == padded(bytes([198, 18, 0, 0]))


def test_match_keys_one_key_with_a_protocol() -> None:
    r = Rule("pass", src=net("2001:db8::/32"), proto="udp", sport=53)
    assert match_keys(r) == [MatchKey(6, 17, 0, 53, 0,
                                      ipaddress.ip_address("2001:db8::").packed, bytes(16))]


def test_match_keys_icmp_protocol_numbers_and_type() -> None:
    [k4] = match_keys(Rule("drop", proto="icmp", icmp_type=8))
    assert (k4.family, k4.proto, k4.icmp_type) == (4, 1, 8)
    [k6] = match_keys(Rule("drop", proto="icmpv6", icmp_type=128))
    assert (k6.family, k6.proto, k6.icmp_type) == (6, 58, 128)


def test_match_keys_address_only_rule_has_protocol_zero() -> None:
    [k] = match_keys(Rule("drop", src=net("198.18.7.0/24")))
    assert (k.family, k.proto, k.sport, k.dport) == (4, 0, 0, 0)
    assert k.src == padded(bytes([198, 18, 7, 0]))
    assert k.dst == bytes(16)


def test_match_keys_addresses_are_16_bytes() -> None:
    for r in (Rule("drop", src=net("198.18.0.1"), dst=net("198.19.0.0/16"), proto="tcp"),
              Rule("drop", src=net("2001:db8::1"), dst=net("::/0"))):
        for k in match_keys(r):
            assert len(k.src) == 16 and len(k.dst) == 16


# -- prefix_mask ---------------------------------------------------------------------


def test_prefix_mask_ipv4_24() -> None:
    assert prefix_mask(4, 24) == b"\xff\xff\xff\x00" + b"\x00" * 12


def test_prefix_mask_zero_length_is_all_zero() -> None:
    assert prefix_mask(6, 0) == bytes(16)
    assert prefix_mask(4, 0) == bytes(16)


@pytest.mark.parametrize(("family", "plen", "mask"), [
    (4, 32, b"\xff" * 4 + bytes(12)),
    (4, 1, b"\x80" + bytes(15)),
    (6, 128, b"\xff" * 16),
    (6, 65, b"\xff" * 8 + b"\x80" + bytes(7)),
])
def test_prefix_mask_edges(family: int, plen: int, mask: bytes) -> None:
    assert prefix_mask(family, plen) == mask


@given(st.sampled_from([4, 6]), st.data())
def test_prefix_mask_is_the_netmask_padded_to_16(family: int, data: st.DataObject) -> None:
    width = 32 if family == 4 else 128
    plen = data.draw(st.integers(0, width))
    netmask = ipaddress.ip_network(("0.0.0.0" if family == 4 else "::", plen)).netmask
    mask = prefix_mask(family, plen)
    assert len(mask) == 16
    assert mask == netmask.packed.ljust(16, b"\0")
