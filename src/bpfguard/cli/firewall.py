"""`bpfguard firewall` (XDP) and `bpfguard egress` (cgroup connect/sendmsg)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..agent.control import DEFAULT_SOCKET, AgentNotListening, ControlError, NotServed, request
from ..errors import ConfigError
from ..timefmt import rfc3339

__all__ = ["egress", "firewall"]

_CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _netns_option(f: Any) -> Any:
    return click.option("--netns", metavar="NAME", default=None,
                        help="The interface is in this named network namespace (`ip netns`).")(f)


def _iface_option(f: Any) -> Any:
    return click.option("--iface", "-i", metavar="IFACE", default=None,
                        help="The firewall's interface (needed when more than one is loaded).")(f)


def _agent_options(f: Any) -> Any:
    f = click.option("--direct", is_flag=True,
                     help="Change the pinned maps here, without asking the running agent.")(f)
    return click.option(
        "--socket", "socket_path", default=DEFAULT_SOCKET, show_default=True, metavar="PATH",
        help="The running agent's control socket, or tcp://HOST:PORT for its TCP endpoint "
             "(token in $BPFGUARD_CONTROL_TOKEN). With no agent listening on a Unix socket, "
             "the change is made on the pinned maps directly.")(f)


def _change(action: str, iface: str | None, netns: str | None, socket_path: str,
            direct: bool, **args: Any) -> None:
    """Makes a change through the running agent, so that its view and metrics
    follow at once; with no agent on the local socket (or one that does not
    manage firewalls), or with --direct, on the pinned maps from here."""
    from ..firewall.changes import apply_change, parse_change

    change = parse_change({"action": action, "iface": iface, "netns": netns, **args})
    if not direct:
        try:
            result = request("firewall", socket_path=socket_path, **change.as_request())
        except ControlError as exc:
            # an agent from before firewall changes went through it answers
            # "unknown op" (no "unsupported" flag): it does not serve them either
            old = str(exc).startswith("unknown op 'firewall'")
            if not isinstance(exc, (AgentNotListening, NotServed)) and not old:
                raise
            if socket_path.startswith("tcp://"):
                raise   # that agent may be on another host: acting here would be wrong
        else:
            if not isinstance(result, dict) or not isinstance(result.get("message"), str):
                raise ControlError(f"{socket_path}: the agent's answer is malformed")
            click.echo(result["message"])
            return
    message, fw = apply_change(change)
    if fw is not None:
        fw.close()
    click.echo(message)


def _locked() -> Any:
    from ..firewall.changes import locked

    return locked()


def _open(iface: str | None, netns: str | None) -> Any:
    from ..firewall import Firewall

    return Firewall.open(iface, netns)


_rule_options = [
    click.option("--src", metavar="CIDR", help="Source address or prefix (IPv4 or IPv6)."),
    click.option("--dst", metavar="CIDR", help="Destination address or prefix."),
    click.option("--proto", type=click.Choice(["tcp", "udp", "icmp", "icmpv6"]),
                 help="Protocol. Ports without it match TCP and UDP."),
    click.option("--sport", type=click.IntRange(1, 65535), metavar="N", help="Source port."),
    click.option("--dport", type=click.IntRange(1, 65535), metavar="N",
                 help="Destination port."),
    click.option("--icmp-type", type=click.IntRange(0, 255), metavar="N",
                 help="ICMP or ICMPv6 type (with --proto icmp or icmpv6)."),
]


def _with_rule_options(f: Any) -> Any:
    for opt in reversed(_rule_options):
        f = opt(f)
    return f


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2))


@click.group(context_settings=_CTX)
def firewall() -> None:
    """The XDP firewall: rules, DDoS budgets, audit and enforce modes.

    \b
    Packets meet, in order: the allowlist (which skips the next three), bans,
    the UDP amplification filter, per-source packet/byte/SYN budgets, then
    the rules (first match wins: CIDRs, protocol, ports, ICMP type), then the
    default policy. In audit mode nothing is dropped: would-drops are counted
    per rule and per reason and sampled as events.

    \b
      bpfguard firewall load eth0 --policy allow                  attach (native XDP)
      bpfguard firewall load eth0 -c firewall.yaml --audit        from a config, audit first
      bpfguard firewall rule add --src 198.18.7.0/24 --action drop
      bpfguard firewall rule add --dst 198.18.0.2 --proto tcp --dport 22 --action pass
      bpfguard firewall mode eth0 enforce                         live, no reload
      bpfguard firewall stats --watch                             counters per action and rule
      bpfguard firewall events --pcap drops.pcap                  sampled dropped packets
      bpfguard firewall unload eth0                               detach, remove every pin

    \b
    The firewall is pinned under /sys/fs/bpf/bpfguard/firewall/: it keeps
    protecting when bpfguard exits. Changes (load, unload, mode, limits,
    rule add|del, allow add|del, ban add|del) go through the running agent's
    control socket (--socket), so its metrics and status cover them at once;
    with no agent listening there, or with --direct, they are made on the
    pinned state directly, under the same lock. status, stats, rule list,
    ban list and events always read the pinned state directly.

    \b
    Limits: 65,535 rules in at most 64 shapes (a shape is family + prefix
    lengths + which L4 fields), 65,536 tracked sources and bans (LRU), 16,384
    allowlist prefixes per family, 64 amplification ports. The config file
    format is in `bpfguard firewall load --help`.
    """


@firewall.command(context_settings=_CTX)
@click.argument("iface")
@click.option("--mode", "xdp_mode", type=click.Choice(["native", "generic"]), default="native",
              show_default=True, help="Driver XDP, or the generic (skb) hook any driver has.")
@click.option("--policy", type=click.Choice(["allow", "deny"]), default=None,
              help="What packets no rule matches get [config's, else allow]. With deny, IPv6 "
                   "neighbour discovery still passes unless a rule drops it.")
@click.option("--audit", is_flag=True, help="Start in audit mode: drop nothing, count and sample.")
@click.option("-c", "--config", "config_file", metavar="FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A YAML config (below).")
@click.option("--force", is_flag=True,
              help="Replace another XDP program already on IFACE (it is named when refused).")
@_netns_option
@_agent_options
def load(iface: str, xdp_mode: str, policy: str | None, audit: bool, config_file: Path | None,
         force: bool, netns: str | None, socket_path: str, direct: bool) -> None:
    """Attach the firewall to IFACE (nothing is attached if anything is wrong).

    A running agent loads it (the file's text is sent, not its path) and
    exports its counters from then on.

    \b
    Config file (every key optional):
      mode: enforce              # or audit
      policy: allow              # or deny
      rules:                     # first match wins
        - {src: 198.18.7.0/24, action: drop}
        - {dst: 198.18.0.2, proto: tcp, dport: 22, action: pass}
        - {proto: icmp, icmp_type: 8, action: drop}
      allow: [198.18.0.0/28]     # bypass bans, budgets, amplification filter
      limits:                    # per source; 0 = off
        pps: 0                   # packets per second
        burst: 0                 # packets; 0 = one second's worth
        bps: 0                   # bytes per second
        burst_bytes: 0
        syn_pps: 0               # TCP SYNs per second
        syn_burst: 0
        syn_global_pps: 0        # SYNs per second from all sources together
        syn_global_burst: 0
        ban_seconds: 0           # ban a source that goes over a budget
        ipv6_source_prefix: 64   # IPv6 sources share budgets and bans per /64
      amplification:
        enabled: false           # drop UDP from these source ports:
        ports: [17, 19, 111, 137, 161, 389, 520, 1900, 3283, 3702, 5351, 10001, 11211]
      sampling:
        per_second: 100          # sampled would-drop events per CPU per second
    """
    from ..firewall.config import MAX_FIREWALL_CONFIG_BYTES
    from ..inputs import InputError, read_text

    text = None
    if config_file is not None:
        try:
            text = read_text(config_file, MAX_FIREWALL_CONFIG_BYTES)
        except InputError as exc:
            raise ConfigError(f"{config_file}:{exc.line}: {exc}" if exc.line else
                              f"{config_file}: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{config_file}: {exc.strerror}") from None
    _change("load", iface, netns, socket_path, direct, xdp_mode=xdp_mode, policy=policy,
            audit=audit, force=force, text=text, source=str(config_file) if config_file else None)


@firewall.command(context_settings=_CTX)
@click.argument("iface")
@_netns_option
@_agent_options
def unload(iface: str, netns: str | None, socket_path: str, direct: bool) -> None:
    """Detach the firewall from IFACE and remove every pinned map and link."""
    _change("unload", iface, netns, socket_path, direct)


@firewall.command(context_settings=_CTX)
@click.argument("iface", required=False)
@_netns_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per firewall.")
def status(iface: str | None, netns: str | None, as_json: bool) -> None:
    """Loaded firewalls: program, mode, policy, rules, allowlist, limits, bans."""
    from ..firewall import Firewall, loaded_firewalls

    targets = [(iface, netns)] if iface else loaded_firewalls()
    out = []
    for name, ns in targets:
        with Firewall.open(name, ns) as fw:
            out.append(fw.status())
    if as_json:
        _echo_json(out[0] if iface else out)
        return
    if not out:
        click.echo("no firewall loaded (`bpfguard firewall load IFACE`)")
    for s in out:
        prog = s["program"]
        where = f"{s['iface']}@{s['netns']}" if s["netns"] else s["iface"]
        click.echo(f"{where}: {s['mode']} mode, policy {s['policy']}, "
                   + (f"XDP {prog['xdp_mode']} (program {prog['name']} id {prog['id']})"
                      if prog else "NOT ATTACHED"))
        click.echo(f"  pinned at {s['pinned']}")
        click.echo(f"  rules ({len(s['rules'])}, {s['classes']} shape(s)):")
        for r in s["rules"][:50]:
            fields = " ".join(f"{k}={v}" for k, v in r.items() if k not in ("id", "action"))
            click.echo(f"    {r['id']:>5}  {r['action']:<4}  {fields}")
        if len(s["rules"]) > 50:
            click.echo(f"    ... {len(s['rules']) - 50} more (--json lists all)")
        click.echo(f"  allowlist: {', '.join(s['allow']) or '-'}")
        lim = ", ".join(f"{k}={v}" for k, v in s["limits"].items())
        click.echo(f"  limits: {lim}")
        amp = s["amplification"]
        click.echo(f"  amplification filter: {'on' if amp['enabled'] else 'off'} "
                   f"(ports {', '.join(map(str, amp['ports']))})")
        click.echo(f"  bans: {len(s['bans'])} active; samples/s per CPU: "
                   f"{s['samples_per_second']}")


@firewall.command(context_settings=_CTX)
@click.argument("iface")
@click.argument("mode", type=click.Choice(["audit", "enforce"]))
@_netns_option
@_agent_options
def mode(iface: str, mode: str, netns: str | None, socket_path: str, direct: bool) -> None:
    """Switch IFACE between audit and enforce, live."""
    _change("mode", iface, netns, socket_path, direct, mode=mode)


@firewall.command(context_settings=_CTX)
@_iface_option
@_netns_option
@click.option("--pps", type=click.IntRange(0), help="Packets per second per source.")
@click.option("--burst", type=click.IntRange(0), help="Packet burst (0: one second's worth).")
@click.option("--bps", type=click.IntRange(0), help="Bytes per second per source.")
@click.option("--burst-bytes", type=click.IntRange(0), help="Byte burst.")
@click.option("--syn-pps", type=click.IntRange(0), help="TCP SYNs per second per source.")
@click.option("--syn-burst", type=click.IntRange(0))
@click.option("--syn-global-pps", type=click.IntRange(0), help="SYNs per second, all sources.")
@click.option("--syn-global-burst", type=click.IntRange(0))
@click.option("--ban-seconds", type=click.FloatRange(0), help="Ban a source over budget this long.")
@click.option("--ipv6-source-prefix", type=click.IntRange(1, 128))
@click.option("--amplification/--no-amplification", default=None,
              help="The UDP amplification source-port filter.")
@_agent_options
def limits(iface: str | None, netns: str | None, socket_path: str, direct: bool,
           **given: Any) -> None:
    """Change DDoS budgets live; options not given keep their value."""
    _change("limits", iface, netns, socket_path, direct, **given)


@firewall.group(context_settings=_CTX)
def rule() -> None:
    """Add, delete and list rules, live (no reload; counters keep running)."""


@rule.command("add", context_settings=_CTX)
@_with_rule_options
@click.option("--action", type=click.Choice(["drop", "pass"]), required=True)
@_iface_option
@_netns_option
@_agent_options
def rule_add(action: str, iface: str | None, netns: str | None, socket_path: str, direct: bool,
             **fields: Any) -> None:
    """Append a rule (it matches after the existing ones); prints its id.

    \b
      bpfguard firewall rule add --src 198.18.7.0/24 --action drop
      bpfguard firewall rule add --src 2001:2::/48 --proto udp --dport 53 --action drop
      bpfguard firewall rule add --proto icmp --icmp-type 8 --action drop
    """
    _change("rule-add", iface, netns, socket_path, direct, rule={**fields, "action": action})


@rule.command("del", context_settings=_CTX)
@_with_rule_options
@click.option("--action", type=click.Choice(["drop", "pass"]))
@click.option("--id", "rid", type=click.IntRange(1), help="Delete by id (see `rule list`).")
@_iface_option
@_netns_option
@_agent_options
def rule_del(action: str | None, rid: int | None, iface: str | None, netns: str | None,
             socket_path: str, direct: bool, **fields: Any) -> None:
    """Delete a rule: by --id, or by the same options it was added with."""
    _change("rule-del", iface, netns, socket_path, direct, id=rid,
            rule={**fields, "action": action})


@rule.command("list", context_settings=_CTX)
@_iface_option
@_netns_option
@click.option("--json", "as_json", is_flag=True)
def rule_list(iface: str | None, netns: str | None, as_json: bool) -> None:
    """Rules in match order with their counters."""
    with _open(iface, netns) as fw:
        rules = fw.stats()["rules"]
    if as_json:
        _echo_json(rules)
        return
    for r in rules:
        fields = " ".join(f"{k}={v}" for k, v in r["rule"].items() if k != "action")
        click.echo(f"{r['id']:>5}  {r['rule']['action']:<4}  {r['packets']:>12} pkts  {fields}")


@firewall.group(context_settings=_CTX)
def allow() -> None:
    """The allowlist: sources that bypass bans, budgets and the amplification filter
    (the rules still apply)."""


@allow.command("add", context_settings=_CTX)
@click.argument("cidr")
@_iface_option
@_netns_option
@_agent_options
def allow_add(cidr: str, iface: str | None, netns: str | None, socket_path: str,
              direct: bool) -> None:
    """Allowlist a source address or prefix."""
    _change("allow-add", iface, netns, socket_path, direct, cidr=cidr)


@allow.command("del", context_settings=_CTX)
@click.argument("cidr")
@_iface_option
@_netns_option
@_agent_options
def allow_del(cidr: str, iface: str | None, netns: str | None, socket_path: str,
              direct: bool) -> None:
    """Remove a prefix from the allowlist (as it was added)."""
    _change("allow-del", iface, netns, socket_path, direct, cidr=cidr)


@firewall.group(context_settings=_CTX)
def ban() -> None:
    """Temporary bans of sources (IPv6: per /64, or the configured prefix)."""


@ban.command("add", context_settings=_CTX)
@click.argument("address")
@click.option("--seconds", type=click.FloatRange(0, min_open=True), default=600,
              show_default=True)
@_iface_option
@_netns_option
@_agent_options
def ban_add(address: str, seconds: float, iface: str | None, netns: str | None,
            socket_path: str, direct: bool) -> None:
    """Ban a source address for a while."""
    _change("ban-add", iface, netns, socket_path, direct, address=address, seconds=seconds)


@ban.command("del", context_settings=_CTX)
@click.argument("address")
@_iface_option
@_netns_option
@_agent_options
def ban_del(address: str, iface: str | None, netns: str | None, socket_path: str,
            direct: bool) -> None:
    """Lift a ban."""
    _change("ban-del", iface, netns, socket_path, direct, address=address)


@ban.command("list", context_settings=_CTX)
@_iface_option
@_netns_option
@click.option("--json", "as_json", is_flag=True)
def ban_list(iface: str | None, netns: str | None, as_json: bool) -> None:
    with _open(iface, netns) as fw:
        bans = fw.bans()
    if as_json:
        _echo_json(bans)
        return
    for b in bans:
        click.echo(f"{b['source']:<40} {b['seconds_left']:>8.1f} s  ({b['why']})")


@firewall.command(context_settings=_CTX)
@click.argument("iface", required=False)
@_netns_option
@click.option("--watch", "-w", "interval", type=float, default=None, is_flag=False,
              flag_value=1.0, metavar="[SECONDS]",
              help="Repeat every SECONDS (default 1) with rates, until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="JSON (one line per sample with --watch).")
def stats(iface: str | None, netns: str | None, interval: float | None, as_json: bool) -> None:
    """Counters per action (and audit would-drops) and per rule, summed over CPUs."""
    with _open(iface, netns) as fw:
        prev: dict[str, Any] | None = None
        while True:
            s = fw.stats()
            if as_json:
                click.echo(json.dumps(s, indent=None if interval else 2))
            else:
                _print_stats(s, prev, interval)
            if interval is None:
                return
            prev = s
            try:
                time.sleep(interval)
            except KeyboardInterrupt:
                return


def _print_stats(s: dict[str, Any], prev: dict[str, Any] | None, interval: float | None) -> None:
    click.echo(f"{s['iface']}: {s['mode']} mode")
    for name, c in s["actions"].items():
        if not c["packets"] and not name.startswith(("pass_default", "drop_rule")):
            continue
        rate = ""
        if prev and interval:
            rate = f"  {(c['packets'] - prev['actions'][name]['packets']) / interval:>12.0f} pps"
        click.echo(f"  {name:<24} {c['packets']:>14} pkts {c['bytes']:>16} bytes{rate}")
    for r in s["rules"][:20]:
        fields = " ".join(f"{k}={v}" for k, v in r["rule"].items() if k != "action")
        click.echo(f"  rule {r['id']:>5} {r['rule']['action']:<4} {r['packets']:>12} pkts  "
                   f"{fields}")


@firewall.command(context_settings=_CTX)
@click.argument("iface", required=False)
@_netns_option
@click.option("--pcap", "pcap_file", metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the sampled packets (first 128 bytes) to FILE in pcap format.")
@click.option("--count", "-n", type=click.IntRange(1), help="Stop after N events.")
@click.option("--timeout", type=float, help="Stop after this many seconds.")
def events(iface: str | None, netns: str | None, pcap_file: Path | None, count: int | None,
           timeout: float | None) -> None:
    """Sampled dropped (or, in audit mode, would-drop) packets as JSON lines.

    Sampling is bounded per CPU per second (`sampling.per_second`), so a flood
    cannot flood this output; samples the ring buffer had no room for are
    counted as `sample_lost` in `stats`. One reader at a time.
    """
    from ..firewall import PcapWriter

    deadline = time.monotonic() + timeout if timeout else None
    seen = 0
    with _open(iface, netns) as fw, contextlib.ExitStack() as stack:
        pcap = stack.enter_context(PcapWriter.create(pcap_file, 128)) if pcap_file else None
        rb = stack.enter_context(fw.samples())
        # the samples' ktime is CLOCK_MONOTONIC (bpf_ktime_get_ns)
        boot_offset_ns = time.time_ns() - time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        try:
            while deadline is None or time.monotonic() < deadline:
                for raw in rb.poll(200):
                    e = fw.decode(raw)
                    pkt = e.pop("packet")
                    when_ns = boot_offset_ns + e["ktime_ns"]
                    when = when_ns / 1e9
                    e["time"] = rfc3339(when_ns, digits=6)
                    e["headers"] = pkt[:64].hex()
                    if pcap is not None:
                        pcap.write(pkt, e["len"], when)
                    click.echo(json.dumps(e))
                    seen += 1
                    if count is not None and seen >= count:
                        return
        except KeyboardInterrupt:
            pass
        finally:
            sys.stdout.flush()


# -- egress ---------------------------------------------------------------------------


@click.group(context_settings=_CTX)
def egress() -> None:
    """Egress policy per cgroup: connect() and sendmsg() to denied destinations
    fail with EPERM, before any packet leaves.

    \b
      bpfguard egress load /sys/fs/cgroup/system.slice/web.service -c egress.yaml
      bpfguard egress deny add web.slice --dst 198.18.0.0/15
      bpfguard egress deny add web.slice --dst 2001:2::/48 --dport 443 --proto tcp
      bpfguard egress events web.slice                 denials as JSON lines
      bpfguard egress status
      bpfguard egress unload web.slice

    \b
    CGROUP is a cgroup v2 directory (absolute, or relative to the v2 root);
    the policy covers its descendants. It is pinned under
    /sys/fs/bpf/bpfguard/egress/ and outlives bpfguard. TCP connect(), UDP
    connect() and unconnected UDP sendmsg() are checked, IPv4 and IPv6; an
    IPv4-mapped IPv6 destination meets the IPv4 rules. Limits: 16,383 rules;
    at most 16 rules may cover one destination prefix (its own and its
    covering prefixes'). Config file:
      deny:
        - {dst: 198.18.0.0/15}
        - {dst: 2001:2::/48, dport: 443, proto: tcp}
    """


@egress.command("load", context_settings=_CTX)
@click.argument("cgroup")
@click.option("-c", "--config", "config_file", metavar="FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path))
def egress_load(cgroup: str, config_file: Path | None) -> None:
    """Attach an egress policy to CGROUP (nothing attached if anything is wrong)."""
    from ..firewall import Egress, load_egress_config

    rules = load_egress_config(config_file) if config_file else []
    with _locked():
        eg = Egress.load(cgroup, rules)
    with eg:
        click.echo(f"egress policy on {eg.cgroup}: {len(rules)} rule(s); pinned at {eg.pin_dir}")


@egress.command("unload", context_settings=_CTX)
@click.argument("cgroup")
def egress_unload(cgroup: str) -> None:
    """Detach CGROUP's egress policy and remove its pins."""
    from ..firewall import Egress

    with _locked():
        eg = Egress.open(cgroup)
        eg.unload()
    click.echo(f"egress policy removed from {eg.cgroup}")


@egress.group("deny", context_settings=_CTX)
def egress_deny() -> None:
    """Add or delete denied destinations, live."""


def _egress_rule(dst: str, dport: int | None, proto: str | None) -> Any:
    from ..firewall import EgressRule, parse_network

    try:
        return EgressRule(parse_network(dst), dport, proto)
    except ValueError as exc:
        raise ConfigError(f"--dst: {exc}") from None


_egress_rule_options = [
    click.argument("cgroup"),
    click.option("--dst", metavar="CIDR", required=True),
    click.option("--dport", type=click.IntRange(1, 65535), metavar="N"),
    click.option("--proto", type=click.Choice(["tcp", "udp"]), help="Default: both."),
]


def _with_egress_rule(f: Any) -> Any:
    for opt in reversed(_egress_rule_options):
        f = opt(f)
    return f


@egress_deny.command("add", context_settings=_CTX)
@_with_egress_rule
def egress_deny_add(cgroup: str, dst: str, dport: int | None, proto: str | None) -> None:
    from ..firewall import Egress

    r = _egress_rule(dst, dport, proto)
    with _locked(), Egress.open(cgroup) as eg:
        rid = eg.add(r)
    click.echo(f"egress rule {rid}: deny {r.describe()}")


@egress_deny.command("del", context_settings=_CTX)
@_with_egress_rule
def egress_deny_del(cgroup: str, dst: str, dport: int | None, proto: str | None) -> None:
    from ..firewall import Egress

    r = _egress_rule(dst, dport, proto)
    with _locked(), Egress.open(cgroup) as eg:
        eg.delete(eg.find(r))
    click.echo(f"deleted egress rule: deny {r.describe()}")


@egress.command("status", context_settings=_CTX)
@click.option("--json", "as_json", is_flag=True)
def egress_status(as_json: bool) -> None:
    """Every egress policy: its cgroup, rules and denials per rule."""
    from ..firewall import Egress, loaded_egress

    out: list[dict[str, Any]] = []
    for pins in loaded_egress():
        cg = _cgroup_of_pins(pins)
        if cg is None:
            out.append({"pinned": str(pins), "cgroup": None, "rules": []})
            continue
        with Egress.open(cg) as eg:
            out.append(eg.stats())
    if as_json:
        _echo_json(out)
        return
    if not out:
        click.echo("no egress policy loaded (`bpfguard egress load CGROUP`)")
    for s in out:
        click.echo(f"{s['cgroup'] or '(cgroup gone)'}: pinned at {s['pinned']}")
        for r in s["rules"]:
            extra = "".join(f" --{k} {r[k]}" for k in ("dport", "proto") if r[k])
            click.echo(f"  {r['id']:>5}  deny --dst {r['dst']}{extra}   {r['denied']} denied")


def _cgroup_of_pins(pins: Path) -> str | None:
    """The cgroup directory whose inode names `pins`."""
    ino = int(pins.name)
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        for d, _, _ in os.walk(root):
            with contextlib.suppress(OSError):
                if os.stat(d).st_ino == ino and os.path.exists(os.path.join(d, "cgroup.procs")):
                    return d
    return None


@egress.command("events", context_settings=_CTX)
@click.argument("cgroup")
@click.option("--count", "-n", type=click.IntRange(1), help="Stop after N events.")
@click.option("--timeout", type=float, help="Stop after this many seconds.")
def egress_events(cgroup: str, count: int | None, timeout: float | None) -> None:
    """Denied connect()/sendmsg() calls as JSON lines (pid, comm, destination, rule)."""
    from ..firewall import Egress

    deadline = time.monotonic() + timeout if timeout else None
    seen = 0
    with Egress.open(cgroup) as eg, eg.events() as rb:
        try:
            while deadline is None or time.monotonic() < deadline:
                for raw in rb.poll(200):
                    click.echo(json.dumps(eg.decode(raw)))
                    seen += 1
                    if count is not None and seen >= count:
                        return
        except KeyboardInterrupt:
            pass
