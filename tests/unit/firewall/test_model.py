"""Firewall and egress rules as users write them: addresses, ports, rules, limits."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bpfguard.firewall.model import EgressRule, Limits, Rule, parse_network, parse_port

V4 = ipaddress.IPv4Network
V6 = ipaddress.IPv6Network

# -- parse_network -------------------------------------------------------------------


def test_parse_network_bare_ipv4_address_is_a_slash_32() -> None:
    assert parse_network("198.18.0.1") == V4("198.18.0.1/32")
    assert parse_network("198.18.0.1").prefixlen == 32


def test_parse_network_bare_ipv6_address_is_a_slash_128() -> None:
    assert parse_network("2001:db8::1") == V6("2001:db8::1/128")
    assert parse_network("2001:db8::1").prefixlen == 128


def test_parse_network_keeps_a_valid_cidr_and_strips_blanks() -> None:
    assert parse_network(" 198.18.0.0/24\n") == V4("198.18.0.0/24")
    assert parse_network("2001:db8::/32") == V6("2001:db8::/32")


def test_parse_network_host_bits_set_suggests_the_network() -> None:
    with pytest.raises(ValueError, match="host bits set") as info:
        parse_network("198.18.0.1/24")
    assert "did you mean 198.18.0.0/24?" in str(info.value)
    assert "'198.18.0.1/24'" in str(info.value)


def test_parse_network_host_bits_set_ipv6_suggests_the_network() -> None:
    with pytest.raises(ValueError, match=r"did you mean 2001:db8::/32\?"):
        parse_network("2001:db8::1/32")


@pytest.mark.parametrize("text", ["not-an-address", "198.18.0.0/33", "300.1.2.3", "", "::g"])
def test_parse_network_garbage_names_the_input(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_network(text)
    msg = str(info.value)
    assert repr(text) in msg
    assert "is not an IPv4 or IPv6 address or CIDR" in msg
    assert "did you mean" not in msg


@given(st.ip_addresses(), st.data())
def test_parse_network_round_trips_through_str(addr: Any, data: st.DataObject) -> None:
    plen = data.draw(st.integers(0, addr.max_prefixlen))
    net = ipaddress.ip_network((addr, plen), strict=False)
    assert parse_network(str(net)) == net
    assert str(parse_network(str(net))) == str(net)


@given(st.ip_addresses())
def test_parse_network_of_any_address_is_its_host_network(addr: Any) -> None:
    net = parse_network(str(addr))
    assert net.prefixlen == addr.max_prefixlen
    assert net.network_address == addr


# -- parse_port ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 65536, -1, "abc", "", True, False, 80.0, None, [80]])
def test_parse_port_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="port"):
        parse_port(value)


def test_parse_port_out_of_range_message_names_the_range() -> None:
    with pytest.raises(ValueError, match="port 65536 is out of range 1-65535"):
        parse_port(65536)
    with pytest.raises(ValueError, match="port 0 is out of range"):
        parse_port("0")


def test_parse_port_not_a_number_message() -> None:
    with pytest.raises(ValueError, match="port 'abc' is not a number"):
        parse_port("abc")
    with pytest.raises(ValueError, match="port True is not a number"):
        parse_port(True)


@pytest.mark.parametrize(("value", "port"), [("80", 80), (80, 80), (1, 1), ("65535", 65535)])
def test_parse_port_accepts(value: object, port: int) -> None:
    result = parse_port(value)
    assert result == port
    assert type(result) is int


@given(st.integers(1, 65535))
def test_parse_port_accepts_every_port_as_int_or_text(port: int) -> None:
    assert parse_port(port) == port
    assert parse_port(str(port)) == port


# -- Rule ----------------------------------------------------------------------------


def test_rule_mixing_ipv4_and_ipv6_addresses_is_refused() -> None:
    with pytest.raises(ValueError, match="mixes IPv4 and IPv6"):
        Rule("drop", src=parse_network("198.18.0.0/24"), dst=parse_network("2001:db8::/32"))


def test_rule_icmp_with_an_ipv6_address_is_refused() -> None:
    with pytest.raises(ValueError, match="mixes IPv4 and IPv6"):
        Rule("drop", src=parse_network("2001:db8::/32"), proto="icmp")


def test_rule_icmpv6_with_an_ipv4_address_is_refused() -> None:
    with pytest.raises(ValueError, match="mixes IPv4 and IPv6"):
        Rule("drop", dst=parse_network("198.18.0.1"), proto="icmpv6")


@pytest.mark.parametrize("proto", ["icmp", "icmpv6"])
@pytest.mark.parametrize("port", ["sport", "dport"])
def test_rule_ports_with_icmp_are_refused(proto: str, port: str) -> None:
    with pytest.raises(ValueError, match=f"ports need protocol tcp or udp, not {proto}"):
        Rule("drop", proto=proto, **{port: 22})


@pytest.mark.parametrize("proto", [None, "tcp", "udp"])
def test_rule_icmp_type_without_icmp_is_refused(proto: str | None) -> None:
    with pytest.raises(ValueError, match="ICMP type needs protocol icmp or icmpv6"):
        Rule("drop", src=parse_network("198.18.0.0/24"), proto=proto, icmp_type=8)


@pytest.mark.parametrize("icmp_type", [-1, 256])
def test_rule_icmp_type_out_of_range_is_refused(icmp_type: int) -> None:
    with pytest.raises(ValueError, match="out of range 0-255"):
        Rule("drop", proto="icmp", icmp_type=icmp_type)


def test_rule_with_only_an_action_is_refused() -> None:
    with pytest.raises(ValueError, match="needs at least one of src, dst, proto, sport, dport"):
        Rule("drop")


def test_rule_matching_everything_by_prefix_is_not_empty() -> None:
    # 0.0.0.0/0 is given, so the rule is not the empty rule
    assert Rule("pass", src=parse_network("0.0.0.0/0")).family == 4


def test_rule_bad_action_and_protocol_are_refused() -> None:
    with pytest.raises(ValueError, match="action 'reject' is not drop or pass"):
        Rule("reject", proto="tcp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="protocol 'sctp' is not one of tcp, udp, icmp"):
        Rule("drop", proto="sctp")


@pytest.mark.parametrize(
    ("kwargs", "family"),
    [
        ({"proto": "tcp"}, 0),
        ({"dport": 53}, 0),
        ({"proto": "icmp"}, 4),
        ({"proto": "icmpv6", "icmp_type": 128}, 6),
        ({"src": "2001:db8::/32"}, 6),
        ({"dst": "198.18.0.2", "proto": "udp"}, 4),
        ({"src": "2001:db8::/32", "dst": "2001:db8:1::1", "proto": "icmpv6"}, 6),
    ],
)
def test_rule_family(kwargs: dict[str, Any], family: int) -> None:
    for k in ("src", "dst"):
        if k in kwargs:
            kwargs[k] = parse_network(kwargs[k])
    assert Rule("drop", **kwargs).family == family


def test_rule_describe_as_cli_options() -> None:
    r = Rule("drop", src=parse_network("198.18.0.0/24"), proto="tcp", dport=22)
    assert r.describe() == "--src 198.18.0.0/24 --proto tcp --dport 22 --action drop"


def test_rule_describe_every_field_in_order() -> None:
    r = Rule("pass", src=parse_network("198.18.0.0/24"), dst=parse_network("198.19.0.1"),
             proto="udp", sport=53, dport=5353)
    assert r.describe() == ("--src 198.18.0.0/24 --dst 198.19.0.1/32 --proto udp "
                            "--sport 53 --dport 5353 --action pass")
    icmp = Rule("drop", proto="icmp", icmp_type=8)
    assert icmp.describe() == "--proto icmp --icmp-type 8 --action drop"


def test_rule_fields_as_the_config_spells_them() -> None:
    r = Rule("drop", src=parse_network("198.18.0.0/24"), proto="tcp", dport=22)
    assert r.fields() == {"src": "198.18.0.0/24", "proto": "tcp", "dport": 22, "action": "drop"}
    assert list(r.fields()) == ["src", "proto", "dport", "action"]
    icmp = Rule("pass", dst=parse_network("198.18.0.2"), proto="icmp", icmp_type=0)
    assert icmp.fields() == {"dst": "198.18.0.2/32", "proto": "icmp", "icmp_type": 0,
                             "action": "pass"}


def test_rule_fields_round_trip_into_an_equal_rule() -> None:
    r = Rule("drop", src=parse_network("2001:db8::/48"), proto="udp", sport=123)
    f: dict[str, Any] = dict(r.fields())
    for k in ("src", "dst"):
        if k in f:
            f[k] = parse_network(f[k])
    assert Rule(**f) == r


def test_rule_is_frozen() -> None:
    r = Rule("drop", proto="tcp")
    with pytest.raises(AttributeError):
        r.proto = "udp"  # type: ignore[misc]


# -- Limits --------------------------------------------------------------------------


def test_limits_defaults_are_off_with_ipv6_per_64() -> None:
    lim = Limits()
    assert (lim.pps, lim.bps, lim.syn_pps, lim.ban_seconds) == (0, 0, 0, 0.0)
    assert lim.ipv6_source_prefix == 64


@pytest.mark.parametrize("name", ["pps", "burst", "bps", "burst_bytes", "syn_pps", "syn_burst",
                                  "syn_global_pps", "syn_global_burst"])
@pytest.mark.parametrize("value", [-1, True, 1.5, "10"])
def test_limits_counts_must_be_whole_numbers(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"{name} must be a whole number >= 0"):
        Limits(**{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["pps", "syn_pps", "syn_global_pps"])
def test_limits_packet_rates_above_1e9_are_refused(name: str) -> None:
    assert getattr(Limits(**{name: 10**9}), name) == 10**9
    with pytest.raises(ValueError, match=r"above 10\^9/s"):
        Limits(**{name: 10**9 + 1})


def test_limits_bps_above_1e12_is_refused() -> None:
    assert Limits(bps=10**12).bps == 10**12
    with pytest.raises(ValueError, match=r"bps 1000000000001 is above the 10\^12"):
        Limits(bps=10**12 + 1)


@pytest.mark.parametrize("plen", [0, 129, -1])
def test_limits_ipv6_source_prefix_out_of_range_is_refused(plen: int) -> None:
    with pytest.raises(ValueError, match=f"ipv6_source_prefix {plen} is not in 1-128"):
        Limits(ipv6_source_prefix=plen)


@pytest.mark.parametrize("plen", [1, 48, 128])
def test_limits_ipv6_source_prefix_in_range(plen: int) -> None:
    assert Limits(ipv6_source_prefix=plen).ipv6_source_prefix == plen


@pytest.mark.parametrize("value", [-0.5, "1"])
def test_limits_ban_seconds_must_be_a_number_ge_0(value: object) -> None:
    with pytest.raises(ValueError, match=r"ban_seconds must be from 0 to 10\^9"):
        Limits(ban_seconds=value)  # type: ignore[arg-type]


# -- EgressRule ----------------------------------------------------------------------


def test_egress_rule_refuses_other_protocols() -> None:
    with pytest.raises(ValueError, match="egress protocol 'icmp' is not tcp or udp"):
        EgressRule(parse_network("198.18.0.0/15"), proto="icmp")


def test_egress_rule_describe() -> None:
    assert EgressRule(parse_network("198.18.0.0/15")).describe() == "--dst 198.18.0.0/15"
    assert (EgressRule(parse_network("2001:2::/48"), 443, "tcp").describe()
            == "--dst 2001:2::/48 --dport 443 --proto tcp")
