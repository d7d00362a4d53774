"""The firewall and egress YAML configs, and CLI options: values, and errors at file:line."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from bpfguard.errors import ConfigError
from bpfguard.firewall.config import (
    load_egress_config,
    load_firewall_config,
    rule_from_options,
)
from bpfguard.firewall.model import (
    AMPLIFICATION_PORTS,
    EgressRule,
    FirewallConfig,
    Limits,
    Rule,
    parse_network,
)

FULL = """\
mode: audit
policy: deny
rules:
  - {src: 198.18.7.0/24, action: drop}
  - {dst: 198.18.0.2, proto: tcp, dport: 22, action: pass}
  - {proto: icmp, icmp_type: 8, action: drop}
  - src: 2001:db8::/32
    proto: udp
    sport: "53"
    action: pass
allow: [198.18.0.0/28, "2001:db8:1::1"]
limits:
  pps: 1000
  burst: 2000
  bps: 1000000
  burst_bytes: 3000000
  syn_pps: 50
  syn_burst: 100
  syn_global_pps: 10000
  syn_global_burst: 20000
  ban_seconds: 2.5
  ipv6_source_prefix: 56
amplification:
  enabled: true
  ports: [19, 11211]
sampling:
  per_second: 7
"""


def write(tmp_path: Path, text: str, name: str = "fw.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def error(tmp_path: Path, text: str, name: str = "fw.yaml") -> str:
    p = write(tmp_path, text, name)
    with pytest.raises(ConfigError) as info:
        load_firewall_config(p)
    return str(info.value)


def egress_error(tmp_path: Path, text: str) -> str:
    p = write(tmp_path, text, "egress.yaml")
    with pytest.raises(ConfigError) as info:
        load_egress_config(p)
    return str(info.value)


# -- a full firewall config ----------------------------------------------------------


def test_full_config_round_trips_into_firewall_config(tmp_path: Path) -> None:
    cfg = load_firewall_config(write(tmp_path, FULL))
    assert isinstance(cfg, FirewallConfig)
    assert cfg.mode == "audit"
    assert cfg.policy == "deny"
    assert cfg.rules == [
        Rule("drop", src=parse_network("198.18.7.0/24")),
        Rule("pass", dst=parse_network("198.18.0.2/32"), proto="tcp", dport=22),
        Rule("drop", proto="icmp", icmp_type=8),
        Rule("pass", src=parse_network("2001:db8::/32"), proto="udp", sport=53),
    ]
    assert cfg.allow == [ipaddress.ip_network("198.18.0.0/28"),
                         ipaddress.ip_network("2001:db8:1::1/128")]
    assert cfg.limits == Limits(pps=1000, burst=2000, bps=1_000_000, burst_bytes=3_000_000,
                                syn_pps=50, syn_burst=100, syn_global_pps=10000,
                                syn_global_burst=20000, ban_seconds=2.5, ipv6_source_prefix=56)
    assert cfg.amplification is True
    assert cfg.amplification_ports == (19, 11211)
    assert cfg.samples_per_second == 7


def test_full_config_accepts_a_str_path(tmp_path: Path) -> None:
    assert load_firewall_config(str(write(tmp_path, FULL))).mode == "audit"


def test_empty_config_is_the_defaults(tmp_path: Path) -> None:
    cfg = load_firewall_config(write(tmp_path, ""))
    assert cfg == FirewallConfig()
    assert cfg.mode == "enforce" and cfg.policy == "allow"
    assert cfg.rules == [] and cfg.allow == []
    assert cfg.limits == Limits()
    assert cfg.amplification is False
    assert cfg.amplification_ports == AMPLIFICATION_PORTS
    assert cfg.samples_per_second == 100


def test_empty_mapping_sections_are_the_defaults(tmp_path: Path) -> None:
    cfg = load_firewall_config(write(tmp_path, "limits:\namplification: ~\nsampling: null\n"))
    assert cfg == FirewallConfig()


def test_ban_seconds_integer_becomes_float(tmp_path: Path) -> None:
    cfg = load_firewall_config(write(tmp_path, "limits:\n  ban_seconds: 60\n"))
    assert cfg.limits.ban_seconds == 60.0
    assert isinstance(cfg.limits.ban_seconds, float)


# -- firewall config errors ----------------------------------------------------------


def test_unknown_top_level_key_lists_the_expected_keys(tmp_path: Path) -> None:
    msg = error(tmp_path, "mode: enforce\npolicy: allow\nrulez: []\n")
    assert msg.startswith(f"{tmp_path / 'fw.yaml'}:3: rulez: unknown key; expected one of ")
    assert msg.endswith("mode, policy, rules, allow, limits, amplification, sampling")


def test_unknown_rule_key(tmp_path: Path) -> None:
    msg = error(tmp_path, "rules:\n  - {src: 198.18.0.0/24, action: drop}\n"
                          "  - {src: 198.18.1.0/24, port: 22, action: drop}\n")
    assert msg.startswith(f"{tmp_path / 'fw.yaml'}:3: rules[1].port: unknown key; expected one of")
    assert "dport" in msg and "icmp_type" in msg


def test_bad_cidr_on_line_3_names_rules_1_dst(tmp_path: Path) -> None:
    msg = error(tmp_path, "rules:\n  - {src: 198.18.0.0/24, action: drop}\n"
                          "  - {dst: 198.18.0.1/24, action: pass}\n")
    assert msg == (f"{tmp_path / 'fw.yaml'}:3: rules[1].dst: '198.18.0.1/24' has host bits set; "
                   "did you mean 198.18.0.0/24?")


def test_garbage_address_in_block_mapping_names_its_own_line(tmp_path: Path) -> None:
    msg = error(tmp_path, "rules:\n  - action: drop\n    proto: tcp\n    src: example.com\n")
    assert re.match(rf"{re.escape(str(tmp_path / 'fw.yaml'))}:4: rules\[0\]\.src: "
                    r"'example\.com' is not an IPv4 or IPv6 address", msg)


def test_missing_action(tmp_path: Path) -> None:
    msg = error(tmp_path, "mode: audit\nrules:\n  - {src: 198.18.0.0/24}\n")
    assert msg == f"{tmp_path / 'fw.yaml'}:3: rules[0]: a rule needs an action (drop or pass)"


def test_rule_model_errors_name_the_rule(tmp_path: Path) -> None:
    msg = error(tmp_path, "rules:\n  - {src: 2001:db8::/32, dst: 198.18.0.1, action: drop}\n")
    assert msg.startswith(f"{tmp_path / 'fw.yaml'}:2: rules[0]: mixes IPv4 and IPv6")


def test_rules_not_a_list(tmp_path: Path) -> None:
    msg = error(tmp_path, "policy: deny\nrules: {src: 198.18.0.0/24, action: drop}\n")
    assert msg == f"{tmp_path / 'fw.yaml'}:2: rules: expected a list"


def test_string_where_a_number_is_expected_in_limits(tmp_path: Path) -> None:
    msg = error(tmp_path, "limits:\n  pps: 100\n  bps: lots\n")
    assert msg == f"{tmp_path / 'fw.yaml'}:3: limits.bps: 'lots' is not a whole number >= 0"


def test_quoted_number_in_limits_is_refused(tmp_path: Path) -> None:
    msg = error(tmp_path, "limits:\n  syn_pps: '100'\n")
    assert msg.startswith(f"{tmp_path / 'fw.yaml'}:2: limits.syn_pps: '100' is not a whole")


def test_limits_out_of_range_names_the_limits_section(tmp_path: Path) -> None:
    msg = error(tmp_path, "mode: enforce\nlimits:\n  ipv6_source_prefix: 129\n")
    assert msg == f"{tmp_path / 'fw.yaml'}:3: limits: ipv6_source_prefix 129 is not in 1-128"


def test_unknown_limit_key(tmp_path: Path) -> None:
    msg = error(tmp_path, "limits:\n  ppps: 1\n")
    assert msg.startswith(f"{tmp_path / 'fw.yaml'}:2: limits.ppps: unknown key; expected one of "
                          "pps, burst, bps")


def test_bad_mode_and_policy(tmp_path: Path) -> None:
    assert error(tmp_path, "mode: learn\n") == (
        f"{tmp_path / 'fw.yaml'}:1: mode: 'learn' is not one of enforce, audit")
    assert error(tmp_path, "\npolicy: block\n") == (
        f"{tmp_path / 'fw.yaml'}:2: policy: 'block' is not one of allow, deny")


def test_amplification_enabled_must_be_a_boolean(tmp_path: Path) -> None:
    msg = error(tmp_path, "amplification:\n  enabled: yes please\n")
    assert msg.startswith(f"{tmp_path / 'fw.yaml'}:2: amplification.enabled: ")
    assert "is not true or false" in msg


def test_amplification_bad_port(tmp_path: Path) -> None:
    msg = error(tmp_path, "amplification:\n  ports:\n    - 19\n    - 70000\n")
    assert msg == (f"{tmp_path / 'fw.yaml'}:4: amplification.ports[1]: "
                   "port 70000 is out of range 1-65535")


def test_amplification_at_most_64_ports(tmp_path: Path) -> None:
    ok = load_firewall_config(write(tmp_path, f"amplification: {{ports: {list(range(1, 65))}}}\n"))
    assert len(ok.amplification_ports) == 64
    msg = error(tmp_path, f"amplification:\n  ports: {list(range(1, 66))}\n")
    assert msg == f"{tmp_path / 'fw.yaml'}:2: amplification.ports: at most 64 ports"


def test_allow_entry_error_names_the_index(tmp_path: Path) -> None:
    msg = error(tmp_path, "allow:\n  - 198.18.0.0/28\n  - nonsense\n")
    assert msg.startswith(f"{tmp_path / 'fw.yaml'}:3: allow[1]: 'nonsense' is not an IPv4")


def test_key_given_twice(tmp_path: Path) -> None:
    msg = error(tmp_path, "mode: audit\nmode: enforce\n")
    assert msg == f"{tmp_path / 'fw.yaml'}:2: mode: given twice"


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    msg = error(tmp_path, "- mode: audit\n")
    assert msg == f"{tmp_path / 'fw.yaml'}:1: : expected a mapping"


def test_list_where_a_value_is_expected(tmp_path: Path) -> None:
    msg = error(tmp_path, "mode: [audit]\n")
    assert msg == f"{tmp_path / 'fw.yaml'}:1: mode: expected a single value"


def test_bad_yaml_syntax_names_the_line(tmp_path: Path) -> None:
    msg = error(tmp_path, "mode: audit\npolicy: deny\nrules:\n"
                          "  - {src: 198.18.0.0/24, action: drop\nallow: []\n")
    # the unclosed flow mapping of line 4 is noticed at line 5's ':'
    assert msg == (f"{tmp_path / 'fw.yaml'}:5: not valid YAML: "
                   "expected ',' or '}', but got ':'")


def test_bad_yaml_indentation_names_the_line(tmp_path: Path) -> None:
    msg = error(tmp_path, "mode: audit\n  policy: deny\n")
    assert msg == f"{tmp_path / 'fw.yaml'}:2: not valid YAML: mapping values are not allowed here"


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_firewall_config(p)
    assert str(info.value) == f"{p}: No such file or directory"


def test_config_error_is_a_config_error_not_a_value_error(tmp_path: Path) -> None:
    p = write(tmp_path, "rules:\n  - {dport: 0, action: drop}\n")
    with pytest.raises(ConfigError, match=r":2: rules\[0\]\.dport: port 0 is out of range"):
        load_firewall_config(p)


# -- egress config -------------------------------------------------------------------


def test_egress_config_parses(tmp_path: Path) -> None:
    p = write(tmp_path, "deny:\n  - {dst: 198.18.0.0/15}\n"
                        "  - {dst: 2001:2::/48, dport: 443, proto: tcp}\n"
                        "  - {dst: 198.18.0.53, dport: '53', proto: udp}\n", "egress.yaml")
    assert load_egress_config(p) == [
        EgressRule(parse_network("198.18.0.0/15")),
        EgressRule(parse_network("2001:2::/48"), 443, "tcp"),
        EgressRule(parse_network("198.18.0.53/32"), 53, "udp"),
    ]


def test_egress_config_empty_is_no_rules(tmp_path: Path) -> None:
    assert load_egress_config(write(tmp_path, "", "egress.yaml")) == []
    assert load_egress_config(write(tmp_path, "deny: []\n", "egress.yaml")) == []


def test_egress_rule_needs_dst(tmp_path: Path) -> None:
    msg = egress_error(tmp_path, "deny:\n  - {dport: 443, proto: tcp}\n")
    assert msg == f"{tmp_path / 'egress.yaml'}:2: deny[0]: needs dst (a CIDR)"


def test_egress_bad_proto(tmp_path: Path) -> None:
    msg = egress_error(tmp_path, "deny:\n  - {dst: 198.18.0.0/15}\n"
                                 "  - {dst: 198.18.0.0/16, proto: icmp}\n")
    assert msg == f"{tmp_path / 'egress.yaml'}:3: deny[1].proto: 'icmp' is not one of tcp, udp"


def test_egress_bad_cidr_and_port(tmp_path: Path) -> None:
    msg = egress_error(tmp_path, "deny:\n  - {dst: 198.18.0.1/15}\n")
    assert msg.startswith(f"{tmp_path / 'egress.yaml'}:2: deny[0].dst: ")
    assert "did you mean 198.18.0.0/15?" in msg
    msg = egress_error(tmp_path, "deny:\n  - {dst: 198.18.0.0/15, dport: 0}\n")
    assert msg == f"{tmp_path / 'egress.yaml'}:2: deny[0].dport: port 0 is out of range 1-65535"


def test_egress_unknown_keys(tmp_path: Path) -> None:
    msg = egress_error(tmp_path, "allow: []\n")
    assert msg == f"{tmp_path / 'egress.yaml'}:1: allow: unknown key; expected one of deny"
    msg = egress_error(tmp_path, "deny:\n  - {dst: 198.18.0.0/15, action: drop}\n")
    assert msg == (f"{tmp_path / 'egress.yaml'}:2: deny[0].action: unknown key; "
                   "expected one of dst, dport, proto")


def test_egress_deny_not_a_list(tmp_path: Path) -> None:
    msg = egress_error(tmp_path, "deny: 198.18.0.0/15\n")
    assert msg == f"{tmp_path / 'egress.yaml'}:1: deny: expected a list"


def test_egress_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match=r"absent\.yaml: No such file or directory"):
        load_egress_config(p)


# -- rule_from_options ---------------------------------------------------------------


def test_rule_from_options_builds_the_rule() -> None:
    r = rule_from_options(action="drop", src="198.18.0.0/24", proto="tcp", dport=22)
    assert r == Rule("drop", src=parse_network("198.18.0.0/24"), proto="tcp", dport=22)
    assert r.describe() == "--src 198.18.0.0/24 --proto tcp --dport 22 --action drop"


def test_rule_from_options_bare_address_is_a_host() -> None:
    r = rule_from_options(action="pass", dst="2001:db8::1")
    assert r.dst == ipaddress.ip_network("2001:db8::1/128")


def test_rule_from_options_bad_src_names_the_option() -> None:
    with pytest.raises(ConfigError) as info:
        rule_from_options(action="drop", src="198.18.0.1/24")
    assert str(info.value) == ("--src: '198.18.0.1/24' has host bits set; "
                               "did you mean 198.18.0.0/24?")


def test_rule_from_options_bad_dst_names_the_option() -> None:
    with pytest.raises(ConfigError, match=r"^--dst: 'bogus' is not an IPv4 or IPv6 address"):
        rule_from_options(action="drop", src="198.18.0.0/24", dst="bogus")


def test_rule_from_options_rule_errors_say_rule() -> None:
    with pytest.raises(ConfigError, match=r"^rule: mixes IPv4 and IPv6"):
        rule_from_options(action="drop", src="198.18.0.0/24", dst="2001:db8::/32")
    with pytest.raises(ConfigError, match=r"^rule: a rule needs at least one of"):
        rule_from_options(action="drop")
    with pytest.raises(ConfigError, match=r"^rule: an ICMP type needs protocol icmp"):
        rule_from_options(action="drop", proto="udp", icmp_type=3)


@pytest.mark.parametrize(("text", "where"), [
    ("mode: !foo enforce\n", ":1: mode: cannot read 'enforce'"),
    ("rules:\n  - {dport: !!int abc, action: drop}\n", ":2: rules[0].dport: cannot read 'abc'"),
    ("limits: {ban_seconds: .inf}\n", ":1: limits.ban_seconds: inf is not a number of seconds"),
    ("limits: {ban_seconds: .nan}\n", ":1: limits.ban_seconds: nan is not a number of seconds"),
])
def test_values_yaml_cannot_construct_are_config_errors_at_their_line(
        tmp_path: Path, text: str, where: str) -> None:
    f = tmp_path / "fw.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_firewall_config(f)
    assert str(exc.value).startswith(f"{f}{where}")


def test_an_empty_rules_list_is_no_rules(tmp_path: Path) -> None:
    f = tmp_path / "fw.yaml"
    f.write_text("rules:\n  # - {src: 198.18.0.1, action: drop}\nallow:\n")
    cfg = load_firewall_config(f)
    assert cfg.rules == [] and cfg.allow == []


def test_more_rules_than_the_firewall_holds_are_refused_at_the_first_too_many(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """(issue 22, defect 8) 400k rules took 79 s and 1.7 GB before "at most
    65,535 fit"; the list is refused where it passes the firewall's size,
    before the rest is composed."""
    import bpfguard.firewall.config as config

    assert config.max_rules() == 65_535   # (read from the object)
    monkeypatch.setattr(config, "max_rules", lambda: 2)
    text = "rules:\n" + "".join(f"- {{action: drop, src: 10.0.0.{i}/32}}\n" for i in range(4)) \
        + "- [unclosed\n"
    with pytest.raises(ConfigError, match=r"^fw.yaml:4: a list of more than 2 items: no list "
                                          r"of a firewall config may be longer than the 2 "
                                          r"rules the firewall holds$"):
        config.load_firewall_config_text("fw.yaml", text)
