"""The XDP firewall and the cgroup egress policy on the real kernel.

Traffic only flows between two network namespaces these tests create, joined
by a veth pair, with addresses from the benchmarking ranges 198.18.0.0/15 and
2001:2::/48. The firewall sits on the receiving side (``dut``); the sender
(``gen``) has two addresses per family, so one source can be denied while the
other passes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bpfguard.errors import BpfguardError
from bpfguard.firewall import (
    Egress,
    EgressRule,
    Firewall,
    FirewallConfig,
    FirewallError,
    Limits,
    Rule,
    parse_network,
)
from bpfguard.firewall.netns import entered
from bpfguard.firewall.xdp import FIREWALL_PINS
from bpfguard.loader import BpfObject, bpf_object_path
from bpfguard.loader import _libbpf as L
from bpfguard.loader.net import XdpAttachment, xdp_program_on

pytestmark = pytest.mark.kernel
# The guest kernel run (scripts/vmtest, TCG: ~20x slower) takes the tests that
# prove the objects load and act on its verifier and kernel; the rest are
# covered on the host, where the same programs run.
host_covers = pytest.mark.host_covers

TAG = f"{os.getpid() % 100000}"
GEN, DUT = f"bgfw{TAG}g", f"bgfw{TAG}d"  # namespace and interface names alike
A1, A3, B = "198.18.0.1", "198.18.0.3", "198.18.0.2"
A1_6, A3_6, B6 = "2001:2::1", "2001:2::3", "2001:2::2"
REPO = Path(__file__).resolve().parents[2]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def lab() -> Iterator[None]:
    """Two namespaces joined by a veth pair; removed with everything in them."""
    _ip("netns", "add", GEN)
    _ip("netns", "add", DUT)
    try:
        _ip("link", "add", GEN, "type", "veth", "peer", "name", DUT)
        _ip("link", "set", GEN, "netns", GEN)
        _ip("link", "set", DUT, "netns", DUT)
        for ns, dev, addrs in ((GEN, GEN, (A1, A3, A1_6, A3_6)), (DUT, DUT, (B, B6))):
            for a in addrs:
                plen = "64" if ":" in a else "24"
                _ip("-n", ns, "addr", "add", f"{a}/{plen}", "dev", dev,
                    *(["nodad"] if ":" in a else []))
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield
    finally:
        for ns in (GEN, DUT):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@contextlib.contextmanager
def firewall(cfg: FirewallConfig, **kw: object) -> Iterator[Firewall]:
    fw = Firewall.load(DUT, cfg, netns=DUT, **kw)  # type: ignore[arg-type]
    try:
        yield fw
    finally:
        with contextlib.suppress(FirewallError):
            fw.unload()


def _sock(ns: str, family: int, kind: int) -> socket.socket:
    with entered(ns):
        return socket.socket(family, kind)


def _fam(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def tcp_ok(src: str, dst: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection from `src` (in gen) to `dst`:`port` (in dut) opens."""
    fam = _fam(dst)
    with _sock(DUT, fam, socket.SOCK_STREAM) as srv, _sock(GEN, fam, socket.SOCK_STREAM) as cli:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((dst, port))
        srv.listen(64)
        cli.bind((src, 0))
        cli.settimeout(timeout)
        try:
            cli.connect((dst, port))
            return True
        except OSError:
            return False


def udp_received(src: str, dst: str, port: int, count: int = 1, gap: float = 0.0,
                 wait: float = 1.0) -> int:
    """Datagrams of `count` sent from `src` that reached `dst`:`port`."""
    fam = _fam(dst)
    with _sock(DUT, fam, socket.SOCK_DGRAM) as rx, _sock(GEN, fam, socket.SOCK_DGRAM) as tx:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        rx.bind((dst, port))
        tx.bind((src, 0))
        for i in range(count):
            tx.sendto(i.to_bytes(4, "big"), (dst, port))
            if gap:
                time.sleep(gap)
        rx.settimeout(wait)
        got = 0
        with contextlib.suppress(TimeoutError):
            while got < count:
                rx.recv(64)
                got += 1
                rx.settimeout(0.5)
        return got


def ping_ok(src: str, dst: str) -> bool:
    r = subprocess.run(["ip", "netns", "exec", GEN, "ping", "-c", "2", "-i", "0.2", "-W", "1",
                        "-I", src, dst], capture_output=True)
    return r.returncode == 0


def drops(fw: Firewall, reason: str) -> int:
    return int(fw.stats()["actions"][reason]["packets"])


def rule_packets(fw: Firewall, rid: int) -> int:
    return next(r["packets"] for r in fw.stats()["rules"] if r["id"] == rid)


def test_denied_cidr_stops_ping_tcp_udp_while_others_pass(lab: None) -> None:
    cfg = FirewallConfig(rules=[Rule("drop", src=parse_network("198.18.0.0/31"))])
    with firewall(cfg) as fw:
        assert not ping_ok(A1, B)
        assert not tcp_ok(A1, B, 8080)
        assert udp_received(A1, B, 9000, count=3) == 0
        assert ping_ok(A3, B)
        assert tcp_ok(A3, B, 8080)
        assert udp_received(A3, B, 9000, count=3) == 3
        assert rule_packets(fw, 1) >= 6  # 2 pings, >= 1 SYN, 3 datagrams
        assert drops(fw, "drop_rule") == rule_packets(fw, 1)
        assert fw.stats()["actions"]["pass_default"]["packets"] > 0


@host_covers
def test_port_and_ip_port_rules(lab: None) -> None:
    cfg = FirewallConfig(rules=[
        Rule("drop", proto="tcp", dport=8081),                            # a port, any source
        Rule("drop", src=parse_network(A1), proto="udp", dport=9001),     # IP + port
        Rule("drop", src=parse_network(A1), dport=7001),                  # port, TCP and UDP
    ])
    with firewall(cfg) as fw:
        assert not tcp_ok(A1, B, 8081)
        assert not tcp_ok(A3, B, 8081)
        assert tcp_ok(A1, B, 8080)
        assert udp_received(A1, B, 9001) == 0
        assert udp_received(A3, B, 9001) == 1
        assert udp_received(A1, B, 9002) == 1
        assert not tcp_ok(A1, B, 7001)
        assert udp_received(A1, B, 7001) == 0
        assert tcp_ok(A3, B, 7001)
        counts = {r["id"]: r["packets"] for r in fw.stats()["rules"]}
        assert counts[1] >= 2 and counts[2] == 1 and counts[3] >= 2


@host_covers
def test_ipv6_rules_and_neighbour_discovery_under_default_deny(lab: None) -> None:
    cfg = FirewallConfig(policy="deny", rules=[
        Rule("drop", src=parse_network(A1_6)),
        Rule("pass", src=parse_network("2001:2::/64"), proto="tcp"),
    ])
    for ns in (GEN, DUT):
        subprocess.run(["ip", "-n", ns, "neigh", "flush", "all"], capture_output=True)
    with firewall(cfg) as fw:
        # the passing source first: rule 1 also drops A1_6's neighbour solicitations
        assert tcp_ok(A3_6, B6, 8080)  # needs neighbour discovery, which no rule passes
        assert fw.stats()["actions"]["pass_nd"]["packets"] >= 1
        assert not ping_ok(A3_6, B6)  # echo requests meet the default
        assert udp_received(A3_6, B6, 9000) == 0
        assert drops(fw, "drop_default") >= 3
        assert not tcp_ok(A1_6, B6, 8080)
        assert rule_packets(fw, 1) >= 1
        # IPv4 meets the default too (ARP is not IP: it passes)
        assert not tcp_ok(A3, B, 8080)


@pytest.mark.host_covers  # the firewall program the guest's drop tests run
def test_audit_mode_passes_everything_but_counts_and_samples(lab: None) -> None:
    cfg = FirewallConfig(mode="audit", rules=[Rule("drop", src=parse_network(A1))])
    with firewall(cfg) as fw, fw.samples() as rb:
        assert ping_ok(A1, B)
        assert udp_received(A1, B, 9000, count=5) == 5
        assert drops(fw, "drop_rule") == 0
        would = drops(fw, "audit_drop_rule")
        assert would == 7  # 2 echo requests, 5 datagrams
        assert rule_packets(fw, 1) == would
        samples = [fw.decode(r) for r in rb.drain()]
        assert len(samples) == would
        udp = [s for s in samples if s["proto"] == "udp"]
        assert {(s["src"], s["dst"], s["dport"], s["action"], s["reason"], s["rule"])
                for s in udp} == {(A1, B, 9000, "audit", "drop_rule", 1)}
        # the sampled bytes are the frame: IPv4 after the Ethernet header
        assert udp[0]["packet"][12:14] == b"\x08\x00" and udp[0]["packet"][26:30] == \
            socket.inet_aton(A1)
        fw.set_mode("enforce")
        assert udp_received(A1, B, 9000, count=2) == 0
        assert drops(fw, "drop_rule") == 2
        fw.set_mode("audit")
        assert udp_received(A1, B, 9000, count=2) == 2


@host_covers
def test_rules_change_live_without_reloading(lab: None) -> None:
    with firewall(FirewallConfig()) as fw:
        prog = fw.status()["program"]["id"]
        assert udp_received(A1, B, 9000) == 1
        rid = fw.add_rule(Rule("drop", src=parse_network(A1), proto="udp"))
        assert udp_received(A1, B, 9000) == 0
        fw.delete_rule(rid)
        assert udp_received(A1, B, 9000) == 1
        assert fw.status()["program"]["id"] == prog
        # first match wins, across classes: a pass before a broader drop
        fw.add_rule(Rule("pass", src=parse_network(A1), proto="udp", dport=9000))
        fw.add_rule(Rule("drop", src=parse_network("198.18.0.0/24")))
        assert udp_received(A1, B, 9000) == 1
        assert udp_received(A1, B, 9001) == 0


@host_covers
def test_rate_limit_drops_above_the_threshold_and_passes_below(lab: None) -> None:
    cfg = FirewallConfig(limits=Limits(pps=20, burst=5), allow=[parse_network(A3)])
    with firewall(cfg) as fw:
        # below: 10 datagrams at 10 per second all arrive
        assert udp_received(A1, B, 9000, count=10, gap=0.1) == 10
        assert drops(fw, "drop_rate") == 0
        time.sleep(0.3)  # the budget refills
        t0 = time.monotonic()
        got = udp_received(A1, B, 9000, count=300, wait=0.3)
        elapsed = time.monotonic() - t0
        assert got <= 5 + 20 * elapsed + 1, (got, elapsed)
        assert got >= 5  # the burst
        # every datagram is accounted for: delivered or dropped by the budget
        assert drops(fw, "drop_rate") == 300 - got
        # the allowlisted source is not budgeted
        assert udp_received(A3, B, 9000, count=300, wait=0.3) == 300


@host_covers
def test_ban_after_exceeding_a_budget_and_manual_bans(lab: None) -> None:
    cfg = FirewallConfig(limits=Limits(pps=10, burst=2, ban_seconds=30))
    with firewall(cfg) as fw:
        udp_received(A1, B, 9000, count=20, wait=0.2)
        bans = fw.bans()
        assert [b["source"] for b in bans] == [A1] and bans[0]["why"] == "drop_rate"
        time.sleep(0.5)  # the budget alone would let this through
        assert udp_received(A1, B, 9000) == 0
        assert drops(fw, "drop_ban") >= 1
        assert fw.unban(A1)
        assert udp_received(A1, B, 9000) == 1
        fw.ban(A3, 30)
        assert udp_received(A3, B, 9000) == 0
        fw.ban(A3_6, 30)  # IPv6 bans cover the source's /64
        assert udp_received(A1_6, B6, 9000) == 0


@host_covers
def test_syn_flood_from_one_source_is_limited_while_another_connects(lab: None) -> None:
    cfg = FirewallConfig(limits=Limits(syn_pps=5, syn_burst=5))
    with firewall(cfg) as fw, _sock(DUT, socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((B, 8443))
        srv.listen(4096)
        flood = []
        for _ in range(200):  # 200 connection attempts at once: 200 SYNs
            s = _sock(GEN, socket.AF_INET, socket.SOCK_STREAM)
            s.bind((A1, 0))
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect((B, 8443))
            flood.append(s)
        try:
            with _sock(GEN, socket.AF_INET, socket.SOCK_STREAM) as good:
                good.bind((A3, 0))
                good.settimeout(2)
                good.connect((B, 8443))  # the other source gets in at once
            time.sleep(0.2)
            limited = drops(fw, "drop_syn")
            assert limited >= 150, limited
        finally:
            for s in flood:
                s.close()


@host_covers
def test_global_syn_budget_covers_all_sources(lab: None) -> None:
    cfg = FirewallConfig(limits=Limits(syn_global_pps=2, syn_global_burst=2))
    with firewall(cfg) as fw:
        results = [tcp_ok(src, B, 8443, timeout=0.3) for src in (A1, A3, A1, A3)]
        assert results[:2] == [True, True]
        assert results[2:] == [False, False]
        assert drops(fw, "drop_syn_global") >= 2


@host_covers
def test_amplification_filter_drops_udp_from_listed_source_ports(lab: None) -> None:
    cfg = FirewallConfig(amplification=True)
    with firewall(cfg) as fw:
        with _sock(DUT, socket.AF_INET, socket.SOCK_DGRAM) as rx, \
                _sock(GEN, socket.AF_INET, socket.SOCK_DGRAM) as tx:
            rx.bind((B, 9000))
            rx.settimeout(0.5)
            tx.bind((A1, 11211))  # memcached
            tx.sendto(b"x" * 100, (B, 9000))
            with pytest.raises(TimeoutError):
                rx.recv(200)
        assert drops(fw, "drop_amp") == 1
        assert udp_received(A1, B, 9000) == 1  # an ordinary source port passes


@host_covers
def test_loading_over_another_xdp_program_is_refused_unless_forced(lab: None) -> None:
    with BpfObject.open(bpf_object_path("probe")) as obj:
        for p in obj.programs:
            p.autoload = p.name == "bgp_xdp"
        obj.load()
        with entered(DUT):
            ifindex = socket.if_nametoindex(DUT)
            att = XdpAttachment(obj.program("bgp_xdp"), ifindex, "native")
        try:
            with pytest.raises(FirewallError, match=r"already runs XDP program 'bgp_xdp' \(id \d+"):
                Firewall.load(DUT, FirewallConfig(), netns=DUT)
            assert not (FIREWALL_PINS / f"{DUT}@{DUT}").exists()
            with firewall(FirewallConfig(), force=True) as fw:
                assert fw.status()["program"]["name"] == "bg_fw_xdp"
        finally:
            with entered(DUT):
                att.detach()


@host_covers
def test_pin_directories_another_user_owns_are_refused(lab: None) -> None:
    """(issue 22, defect 6) on a host whose /sys/fs/bpf anyone may write, a
    pin directory a user made (and could later rename) is refused, for the
    firewall's pins and the agent's policy pins alike; nothing attaches."""
    from bpfguard.agent.pins import check_pin_dir
    from bpfguard.errors import ConfigError

    nobody = 65534
    made = not FIREWALL_PINS.exists()
    FIREWALL_PINS.mkdir(parents=True, exist_ok=True)
    owner = FIREWALL_PINS.stat()
    users = Path(f"/sys/fs/bpf/bpfguard-test-user-{os.getpid()}")
    users.mkdir()
    try:
        os.chown(FIREWALL_PINS, nobody, nobody)
        with pytest.raises(ConfigError, match="belongs to uid 65534"):
            Firewall.load(DUT, FirewallConfig(), netns=DUT)
        with entered(DUT):
            assert xdp_program_on(socket.if_nametoindex(DUT)) is None
        os.chown(users, nobody, nobody)
        with pytest.raises(ConfigError, match="belongs to uid 65534"):
            check_pin_dir(users / "policies")
    finally:
        os.chown(FIREWALL_PINS, owner.st_uid, owner.st_gid)
        if made:
            FIREWALL_PINS.rmdir()
        users.rmdir()


@host_covers
def test_bad_input_changes_nothing(lab: None) -> None:
    with pytest.raises(FirewallError, match="no interface 'nosuch0' in netns"):
        Firewall.load("nosuch0", FirewallConfig(), netns=DUT)
    too_many = [Rule("drop", src=parse_network(f"198.19.0.0/{n}"), dst=parse_network(
        f"198.18.0.0/{m}")) for n in range(16, 25) for m in range(16, 24)]
    with pytest.raises(FirewallError, match="72 distinct shapes"):
        Firewall.load(DUT, FirewallConfig(rules=too_many), netns=DUT)
    with entered(DUT):
        assert xdp_program_on(socket.if_nametoindex(DUT)) is None
    assert not (FIREWALL_PINS / f"{DUT}@{DUT}").exists()
    with firewall(FirewallConfig()) as fw:
        with pytest.raises(FirewallError, match="already loaded"):
            Firewall.load(DUT, FirewallConfig(), netns=DUT)
        with pytest.raises(FirewallError, match="no rule 7"):
            fw.delete_rule(7)


@host_covers
def test_a_rule_that_does_not_fit_changes_nothing(lab: None) -> None:
    """A rule without a protocol needs a TCP and a UDP key: with room for
    one, it is refused before any write (the check), and a refusal only the
    kernel sees (the table filled behind the firewall's back) undoes the
    TCP half (issue 22, defect 3)."""
    from bpfguard.firewall.tss import MatchKey

    both = Rule("drop", dst=parse_network(f"{B}/32"), dport=7777)
    with firewall(FirewallConfig(rules=[Rule("drop", proto="tcp", dport=8081)])) as fw:
        table = fw._maps["fw_rules4"]
        before = fw.rules
        full = table.max_entries
        table.max_entries = 2  # the check counts the firewall's own keys: one in use
        try:
            with pytest.raises(FirewallError, match="needs 2 more IPv4 match keys and the "
                                                    "table has room for 1"):
                fw.add_rule(both)
        finally:
            table.max_entries = full
        assert fw.rules == before and tcp_ok(A1, B, 7777)
        # fill all but one slot through the map itself, in a class no rule uses
        zero = bytes(16)
        filler = [fw._key(fw._max_classes - 1, MatchKey(4, 6, 0, i >> 16, i & 0xFFFF, zero,
                                                        zero))[1] for i in range(full - 2)]
        match = fw._t["bg_fw_match"]()
        for k in filler:
            table.update(k, match)
        with pytest.raises(BpfguardError, match="E2BIG|No space|Argument list too long"):
            fw.add_rule(both)
        assert fw.rules == before
        assert sum(1 for _ in table.keys()) == full - 1  # noqa: SIM118 (a Map): the TCP half went
        assert fw.config().nclasses == 1  # the new rule's shape took no class slot
        again = Firewall.open(DUT, DUT)  # what the pins say, read afresh
        try:
            assert again.rules == before
        finally:
            again.close()
        assert tcp_ok(A1, B, 7777) and udp_received(A1, B, 7777) == 1
        for k in filler:
            table.delete(k)
        rid = fw.add_rule(both)  # and with room, it goes in whole
        assert not tcp_ok(A1, B, 7777) and udp_received(A1, B, 7777) == 0
        assert [i for i, _ in fw.rules][-1] == rid


def _ids(kind: str, fw_dir: Path) -> list[int]:
    """Kernel ids of the pinned maps (kind "map") or the link's program."""
    from bpfguard.loader import Btf

    out = []
    with Btf.vmlinux() as btf:
        for p in sorted(fw_dir.iterdir()):
            fd = L.bpf_obj_get(os.fsencode(p))
            assert fd >= 0
            try:
                struct_name = "bpf_link_info" if p.name == "link" else "bpf_map_info"
                if (kind == "map") == (p.name == "link"):
                    continue
                info = btf.struct(struct_name)()
                size = ctypes.c_uint32(ctypes.sizeof(info))
                assert L.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)) == 0
                out.append(int(info.prog_id if p.name == "link" else info.id))
            finally:
                os.close(fd)
    return out


@host_covers
def test_unload_leaves_no_program_or_pinned_map_behind(lab: None) -> None:
    cfg = FirewallConfig(rules=[Rule("drop", src=parse_network(A1))],
                         limits=Limits(pps=1000), allow=[parse_network(A3)])
    fw = Firewall.load(DUT, cfg, netns=DUT)
    pins = fw.pin_dir
    map_ids, prog_ids = _ids("map", pins), _ids("prog", pins)
    assert len(map_ids) == 16 and len(prog_ids) == 1
    fw.unload()
    assert not pins.exists()
    with entered(DUT):
        assert xdp_program_on(socket.if_nametoindex(DUT)) is None
    time.sleep(0.1)  # maps are freed after an RCU grace period
    for mid in map_ids:
        fd = L.bpf_map_get_fd_by_id(mid)
        assert fd < 0 and L.errno_now() == errno.ENOENT, f"map {mid} still exists"
    fd = L.bpf_prog_get_fd_by_id(prog_ids[0])
    assert fd < 0 and L.errno_now() == errno.ENOENT
    assert udp_received(A1, B, 9000) == 1


@pytest.fixture
def cgroup() -> Iterator[Path]:
    from bpfguard.probe._system import temporary_cgroup

    with temporary_cgroup() as cg:
        yield cg


def _run_in(ns: str, cg: Path | None, code: str) -> str:
    """Runs Python `code` in namespace `ns`, inside cgroup `cg` if given."""
    # the cgroup first: `ip netns exec` remounts /sys, hiding cgroup2 mounts under it
    join = f"echo $$ > {cg}/cgroup.procs && " if cg else ""
    r = subprocess.run(["sh", "-c", f"{join}exec ip netns exec {ns} {sys.executable} -c \"$0\"",
                        code], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


_CONNECT = """
import socket
def attempt(fam, kind, addr):
    s = socket.socket(fam, kind); s.settimeout(1)
    try:
        if kind == socket.SOCK_STREAM: s.connect(addr)
        else: s.sendto(b"x", addr)
        return "ok"
    except OSError as e:
        return e.errno == 1 and "EPERM" or "errno %d" % e.errno
print(attempt(socket.AF_INET, socket.SOCK_STREAM, ("198.18.0.2", 8080)),
      attempt(socket.AF_INET, socket.SOCK_DGRAM, ("198.18.0.2", 9000)),
      attempt(socket.AF_INET, socket.SOCK_STREAM, ("198.18.0.2", 8081)),
      attempt(socket.AF_INET6, socket.SOCK_STREAM, ("2001:2::2", 8080)),
      attempt(socket.AF_INET6, socket.SOCK_STREAM, ("::ffff:198.18.0.2", 8080)))
"""


def test_egress_policy_makes_connect_fail_with_eperm_for_the_cgroup_only(
        lab: None, cgroup: Path) -> None:
    servers = []
    for fam, kind, addr in ((socket.AF_INET, socket.SOCK_STREAM, (B, 8080)),
                            (socket.AF_INET, socket.SOCK_STREAM, (B, 8081)),
                            (socket.AF_INET6, socket.SOCK_STREAM, (B6, 8080))):
        s = _sock(DUT, fam, kind)
        s.bind(addr)
        s.listen(16)
        servers.append(s)
    rules = [EgressRule(parse_network("198.18.0.0/24"), 8080, "tcp"),
             EgressRule(parse_network("198.18.0.0/16"), 9000, "udp"),
             EgressRule(parse_network("2001:2::/48"))]
    eg = Egress.load(cgroup, rules)
    try:
        with eg.events() as rb:
            assert _run_in(GEN, cgroup, _CONNECT) == "EPERM EPERM ok EPERM EPERM"
            assert _run_in(GEN, None, _CONNECT) == "ok ok ok ok ok"
            events = [eg.decode(r) for r in rb.drain()]
        assert [(e["hook"], e["dst"], e["dport"], e["proto"], e["rule"]) for e in events] == [
            ("connect4", B, 8080, "tcp", 1), ("sendmsg4", B, 9000, "udp", 2),
            ("connect6", B6, 8080, "tcp", 3), ("connect6", B, 8080, "tcp", 1)]
        assert {e["cgroup_id"] for e in events} == {cgroup.stat().st_ino}
        # live: deleting the TCP rule lets the connect through
        eg.delete(1)
        assert _run_in(GEN, cgroup, _CONNECT) == "ok EPERM ok EPERM ok"
        assert [(r["id"], r["denied"]) for r in eg.stats()["rules"]] == [(2, 2), (3, 2)]
        pins = eg.pin_dir
        eg.unload()
        assert not pins.exists()
        assert _run_in(GEN, cgroup, _CONNECT) == "ok ok ok ok ok"
    finally:
        with contextlib.suppress(FirewallError):
            Egress.open(cgroup).unload()
        for s in servers:
            s.close()


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "bpfguard", *args], capture_output=True, text=True,
                       timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


@host_covers
def test_cli_firewall_survives_bpfguard_and_writes_pcap(lab: None, tmp_path: Path) -> None:
    conf = tmp_path / "fw.yaml"
    conf.write_text(f"mode: enforce\npolicy: allow\nrules:\n  - {{src: {A1}, proto: udp, "
                    "action: drop}\nsampling: {per_second: 1000}\n")
    _cli("firewall", "load", DUT, "--netns", DUT, "-c", str(conf))
    try:
        # the loading process has exited; the pinned firewall still drops
        assert udp_received(A1, B, 9000) == 0
        out = _cli("firewall", "rule", "add", "--src", A3, "--proto", "udp", "--dport", "9001",
                   "--action", "drop", "--iface", DUT, "--netns", DUT).stdout
        assert out.startswith("rule 2: ")
        assert udp_received(A3, B, 9001) == 0
        st = json.loads(_cli("firewall", "status", DUT, "--netns", DUT, "--json").stdout)
        assert [r["id"] for r in st["rules"]] == [1, 2] and st["mode"] == "enforce"
        assert st["program"]["name"] == "bg_fw_xdp"
        stats = json.loads(_cli("firewall", "stats", DUT, "--netns", DUT, "--json").stdout)
        assert stats["actions"]["drop_rule"]["packets"] == 2
        pcap = tmp_path / "drops.pcap"
        reader = subprocess.Popen(
            [sys.executable, "-m", "bpfguard", "firewall", "events", DUT, "--netns", DUT,
             "--pcap", str(pcap), "--count", "4", "--timeout", "20"],
            stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)  # the reader is polling
        udp_received(A1, B, 9000, count=2)
        lines, _ = reader.communicate(timeout=30)
        evs = [json.loads(line) for line in lines.splitlines()]
        # samples wait in the ring for a reader: the two drops before it started come first
        assert [(e["src"], e["dport"], e["reason"], e["rule"]) for e in evs] == [
            (A1, 9000, "drop_rule", 1), (A3, 9001, "drop_rule", 2),
            (A1, 9000, "drop_rule", 1), (A1, 9000, "drop_rule", 1)]
        raw = pcap.read_bytes()
        magic, _, _, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", raw)
        assert (magic, snaplen, linktype) == (0xA1B2C3D4, 128, 1)
        _, _, incl, orig = struct.unpack_from("<IIII", raw, 24)
        frame = raw[40:40 + incl]
        assert incl == orig and frame[26:30] == socket.inet_aton(A1)
        assert frame.hex()[:128] == evs[0]["headers"][:128]
        _cli("firewall", "mode", DUT, "audit", "--netns", DUT)
        assert udp_received(A1, B, 9000) == 1
        bad = _cli("firewall", "rule", "add", "--src", "198.18.0.1/24", "--action", "drop",
                   "--iface", DUT, "--netns", DUT, check=False)
        assert bad.returncode == 1
        assert "has host bits set; did you mean 198.18.0.0/24?" in bad.stderr
    finally:
        _cli("firewall", "unload", DUT, "--netns", DUT)
    assert not (FIREWALL_PINS / f"{DUT}@{DUT}").exists()


@host_covers
def test_bad_config_file_names_file_and_line_and_loads_nothing(lab: None, tmp_path: Path) -> None:
    conf = tmp_path / "fw.yaml"
    conf.write_text("rules:\n  - {src: 198.18.0.1, action: drop}\n  - {dst: 198.18.0.300, "
                    "action: drop}\n")
    r = _cli("firewall", "load", DUT, "--netns", DUT, "-c", str(conf), check=False)
    assert r.returncode == 1
    assert f"{conf}:3: rules[1].dst: '198.18.0.300' is not an IPv4 or IPv6" in r.stderr
    assert not (FIREWALL_PINS / f"{DUT}@{DUT}").exists()
    with entered(DUT):
        assert xdp_program_on(socket.if_nametoindex(DUT)) is None
