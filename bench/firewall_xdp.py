#!/usr/bin/env python3
"""XDP firewall benchmark: packets dropped per second, and CPU per dropped packet,
for bpfguard's XDP enforce mode against nftables netdev ingress, iptables raw
PREROUTING and no filter at all, at 1 rule and at 10,000 rules.

Run as root from the repository root::

    sudo .venv/bin/python bench/firewall_xdp.py            # ~3 min on a 2-vCPU VM
    sudo .venv/bin/python bench/firewall_xdp.py --quick    # ~50 s
    sudo .venv/bin/python bench/firewall_xdp.py --json

Every sample gets a fresh pair of network namespaces (bgbench-gen-PID and
bgbench-dut-PID) joined by a veth pair: 198.18.0.1/24 on the generator side,
198.18.0.2/24 on the device under test (DUT), a static neighbour entry, IPv6
off. Only 198.18.0.0/15 addresses are used, and only inside those namespaces.
trafgen (netsniff-ng) on one core sends 60-byte UDP/IPv4 frames (64 on a wire,
with the FCS) 198.18.0.1:4096 -> 198.18.0.2:9 as fast as it can. Configurations,
interleaved round by round in an order rotated per round:

- none: no filter; with nothing listening on port 9 the stack drops the
  packets after the UDP socket lookup (Udp NoPorts): "through the stack";
- nftables: a `netdev` table, ingress hook on the DUT veth; 1 rule, then
  N-1 non-matching `ip saddr` rules plus the matching one last (a linear
  chain), and, separately, one rule on an interval set of the N addresses;
- iptables: raw PREROUTING `-s X -j DROP`, 1 rule and N rules (the matching
  one last), iptables-legacy when installed (the classic linear chain);
- bpfguard: `bpfguard firewall load IFACE --netns DUT --mode native` (driver
  XDP on the DUT veth), enforce mode, the same rules;
- XDP_DROP floor (reference, unless --no-floor): a program that only returns
  XDP_DROP, compiled with clang into a temp dir and attached in driver mode:
  the least any XDP drop costs on this veth.

The non-matching addresses are 198.19.0.1, .7, .13... (every 6th, so no two
can merge into a wider prefix); the matching rule is src 198.18.0.1/32. Each
sample: filter loaded (untimed), trafgen started, a warm-up, then a window of
--seconds. Its rate is the DUT veth's rx_packets over the window (read with
`ip -s link`, cheap) times the share of the run's packets the configuration's
own counter says it dropped (nft counter, iptables rule counters, bpfguard's
stats, /proc/net/snmp Udp NoPorts), read before trafgen starts and after it
stops, when nothing moves. CPU is the /proc/stat delta over the window, all
CPUs. Nothing is asserted.

See bench/README.md for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    BenchError,
    emit,  # bench/, the script's own directory, is on sys.path
    guarded,
    log,
)
from _common import fmt as _f
from _common import median_se as _median_se

GEN_IP, DUT_IP = "198.18.0.1", "198.18.0.2"
BENCH_NET = ipaddress.ip_network("198.18.0.0/15")  # RFC 2544 benchmarking; nothing else
NONMATCHING_NET = ipaddress.ip_network("198.19.0.0/16")  # inside BENCH_NET
SPORT, DPORT = 4096, 9
GEN_IF, DUT_IF = "bgb-gen", "bgb-dut"
FRAME = 60  # bytes handed to the veth; 64 on an Ethernet wire with the FCS
HZ = os.sysconf("SC_CLK_TCK")
NFT_TABLE = "bgbench"
WARMUP_S = 0.5
DRAIN_S = 0.2  # after trafgen stops, for what is still queued at the DUT

TOOLS = {  # executable -> Debian package
    "ip": "iproute2",
    "nft": "nftables",
    "iptables": "iptables",
    "iptables-restore": "iptables",
    "trafgen": "netsniff-ng",
}

NO_RULES = ("none", "floor")  # measured once, not at 1 and N rules
LABELS = {
    "none": "none (through the stack)",
    "floor": "XDP_DROP floor (empty)",
    "nft": "nftables netdev ingress",
    "nftset": "nftables ingress, set",
    "ipt": "iptables raw PREROUTING",
    "bpfguard": "bpfguard XDP enforce",
}


def _key(kind: str, rules: int) -> str:
    return kind if kind in NO_RULES else f"{kind}-{rules}"


def nonmatching(n: int) -> list[str]:
    """n addresses in 198.19.0.0/16, every 6th from 198.19.0.1: none is the
    generator's, and no two are adjacent, so nothing can merge them."""
    base = int(ipaddress.ip_address("198.19.0.1"))
    out = [str(ipaddress.ip_address(base + 6 * i)) for i in range(n)]
    if n and ipaddress.ip_address(out[-1]) not in NONMATCHING_NET:
        raise BenchError(f"--rules {n + 1}: more non-matching addresses than fit in "
                         "198.19.0.0/16 at a stride of 6 (at most 10923 rules)")
    return out


# --------------------------------------------------------------------------- commands

def _cmd(cmd: list[str], what: str, *, inp: str | None = None,
         timeout: float = 120) -> str:
    """stdout of cmd; BenchError with its output if it fails."""
    try:
        r = subprocess.run(cmd, input=inp, capture_output=True, text=True, timeout=timeout,
                           cwd=REPO)
    except FileNotFoundError:
        raise BenchError(f"{what}: {cmd[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what}: no answer within {timeout:.0f} s") from None
    if r.returncode:
        raise BenchError(f"{what} failed ({' '.join(cmd[:6])}...):\n"
                         f"{(r.stdout + r.stderr).strip()}")
    return r.stdout


def in_ns(ns: str, cmd: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def check_tools() -> dict[str, Any]:
    """The executables the benchmark needs (BenchError naming the Debian package
    of the first missing one), and which iptables it will use."""
    for exe, pkg in TOOLS.items():
        if shutil.which(exe) is None:
            raise BenchError(f"{exe} not found: apt-get install -y {pkg}")
    legacy = shutil.which("iptables-legacy") and shutil.which("iptables-legacy-restore")
    ipt = "iptables-legacy" if legacy else "iptables"
    version = subprocess.run([ipt, "-V"], capture_output=True, text=True).stdout.strip()
    default = subprocess.run(["iptables", "-V"], capture_output=True, text=True).stdout.strip()
    tg = subprocess.run(["trafgen", "-v"], capture_output=True, text=True)
    m = re.search(r"trafgen\s+(\S+)", tg.stdout + tg.stderr)
    return {"iptables": ipt, "iptables_restore": f"{ipt}-restore",
            "iptables_version": version, "iptables_default": default,
            "iptables_is_nft": "nf_tables" in version,
            "trafgen_version": m.group(1).rstrip(",") if m else None}


def bpfguard_cmd() -> list[str]:
    venv = REPO / ".venv" / "bin" / "python"
    return [str(venv) if venv.exists() else sys.executable, "-m", "bpfguard"]


def bpfguard_available() -> str | None:
    """None when `bpfguard firewall --help` works, else why not."""
    try:
        r = subprocess.run([*bpfguard_cmd(), "firewall", "--help"], capture_output=True,
                           text=True, timeout=60, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if r.returncode:
        lines = (r.stderr or r.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit {r.returncode}"
    return None


# --------------------------------------------------------------------------- the namespaces

class Net:
    """A generator and a DUT namespace joined by a veth pair, deleted on exit."""

    def __init__(self, tmp: Path) -> None:
        pid = os.getpid()
        self.gen, self.dut = f"bgbench-gen-{pid}", f"bgbench-dut-{pid}"
        self.tmp = tmp
        self.made: list[str] = []
        self.dut_mac = self.gen_mac = ""

    def __enter__(self) -> Net:
        try:
            for ns in (self.gen, self.dut):
                _cmd(["ip", "netns", "add", ns], f"ip netns add {ns}")
                self.made.append(ns)
                _cmd(in_ns(ns, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                                "net.ipv6.conf.default.disable_ipv6=1"]), "disable IPv6")
                _cmd(["ip", "-n", ns, "link", "set", "lo", "up"], "lo up")
            # created directly in the namespaces: nothing appears in the caller's
            _cmd(["ip", "link", "add", GEN_IF, "netns", self.gen, "type", "veth",
                  "peer", "name", DUT_IF, "netns", self.dut], "create the veth pair")
            _cmd(["ip", "-n", self.gen, "addr", "add", f"{GEN_IP}/24", "dev", GEN_IF], "addr")
            _cmd(["ip", "-n", self.dut, "addr", "add", f"{DUT_IP}/24", "dev", DUT_IF], "addr")
            for ns, dev in ((self.gen, GEN_IF), (self.dut, DUT_IF)):
                _cmd(["ip", "-n", ns, "link", "set", dev, "up"], f"{dev} up")
            self.dut_mac = self._mac(self.dut, DUT_IF)
            self.gen_mac = self._mac(self.gen, GEN_IF)
            _cmd(["ip", "-n", self.gen, "neigh", "replace", DUT_IP, "lladdr", self.dut_mac,
                  "dev", GEN_IF, "nud", "permanent"], "static neighbour")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        while self.made:
            ns = self.made.pop()
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    @staticmethod
    def _mac(ns: str, dev: str) -> str:
        out = _cmd(["ip", "-n", ns, "-j", "link", "show", "dev", dev], f"MAC of {dev}")
        return str(json.loads(out)[0]["address"])

    def dut_link(self) -> dict[str, int]:
        """The DUT veth's rx packets and rx drops. On veth these count what the
        generator's side handed over: rx_packets == the generator veth's tx_packets."""
        out = _cmd(["ip", "-n", self.dut, "-s", "-j", "link", "show", "dev", DUT_IF],
                   "DUT link stats")
        rx = json.loads(out)[0]["stats64"]["rx"]
        return {"rx": int(rx["packets"]), "rx_dropped": int(rx["dropped"])}

    def trafgen_conf(self) -> Path:
        conf = self.tmp / "udp.trafgen"
        pad = FRAME - 14 - 20 - 8
        # header functions: trafgen fills in lengths and a correct IPv4 header
        # checksum when it compiles the packet, so the packet is static (no
        # per-packet rewrite). UDP checksum 0: none, allowed over IPv4.
        conf.write_text(
            "/* bench/firewall_xdp.py: UDP/IPv4 to the discard port, one static frame */\n"
            "{\n"
            f"  eth(da={self.dut_mac}, sa={self.gen_mac}),\n"
            f"  ipv4(sa={GEN_IP}, da={DUT_IP}, ttl=64, df),\n"
            f"  udp(sport={SPORT}, dport={DPORT}, csum=0),\n"
            f"  fill(0x00, {pad})\n"
            "}\n")
        return conf


class Trafgen:
    """trafgen on one core in the generator namespace, in its own process group
    (Ctrl-C reaches only the benchmark). Stopped with SIGINT, so it prints its
    packet count."""

    def __init__(self, net: Net) -> None:
        conf = net.trafgen_conf()
        # --no-sock-mem: leave net.core.[rw]mem_* alone; -Q: no IRQ affinity
        # changes; no -q: the default qdisc bypass (packet_direct_xmit)
        self.cmd = in_ns(net.gen, ["trafgen", "--dev", GEN_IF, "--conf", str(conf),
                                   "--cpus", "1", "--no-sock-mem", "-Q"])
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     preexec_fn=os.setpgrp)
        self.output = ""

    def check(self) -> None:
        if self.proc.poll() is not None:
            out = self.proc.communicate()[0]
            raise BenchError(f"trafgen exited ({self.proc.returncode}):\n{out.strip()}")

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.output = self.proc.communicate(timeout=5)[0]
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.output = self.proc.communicate()[0]
        elif not self.output and self.proc.stdout:
            self.output = self.proc.stdout.read()
        sent = re.search(r"(\d+) packets outgoing", self.output)
        cpu = re.search(r"on CPU(\d+)", self.output)
        return {"sent": int(sent.group(1)) if sent else None,
                "cpu": int(cpu.group(1)) if cpu else None}


# --------------------------------------------------------------------------- configurations

class Config:
    """One configuration: load (untimed), count (the tool's own dropped counter),
    unload. `count` is read while traffic runs, so it should be cheap."""

    kind = ""

    def __init__(self, net: Net, rules: int, tools: dict[str, Any], tmp: Path) -> None:
        self.net, self.rules, self.tools, self.tmp = net, rules, tools, tmp

    def load(self) -> None:
        pass

    def count(self) -> int:
        raise NotImplementedError

    def unload(self) -> None:
        pass


class NoFilter(Config):
    kind = "none"

    def count(self) -> int:
        snmp = _cmd(in_ns(self.net.dut, ["cat", "/proc/net/snmp"]), "DUT /proc/net/snmp")
        rows = [ln.split()[1:] for ln in snmp.splitlines() if ln.startswith("Udp: ")]
        return int(dict(zip(rows[0], rows[1], strict=True))["NoPorts"])


class Nft(Config):
    """A linear chain: rules-1 non-matching `ip saddr X drop` rules, the matching
    one last, counting into a named counter (cheap to read while traffic runs)."""

    kind = "nft"

    def body(self) -> list[str]:
        lines = [f"    ip saddr {a} drop" for a in nonmatching(self.rules - 1)]
        return [*lines, f'    ip saddr {GEN_IP} counter name "bgdrop" drop']

    def text(self) -> str:
        return "\n".join([
            f"table netdev {NFT_TABLE} {{",
            "  counter bgdrop { }",
            *self.sets(),
            "  chain ingress {",
            f'    type filter hook ingress device "{DUT_IF}" priority 0; policy accept;',
            *self.body(),
            "  }",
            "}", ""])

    def sets(self) -> list[str]:
        return []

    def load(self) -> None:
        f = self.tmp / f"{self.kind}-{self.rules}.nft"
        f.write_text(self.text())
        _cmd(in_ns(self.net.dut, ["nft", "-f", str(f)]), f"nft -f ({self.rules} rules)")

    def count(self) -> int:
        out = _cmd(in_ns(self.net.dut, ["nft", "-j", "list", "counter", "netdev", NFT_TABLE,
                                        "bgdrop"]), "nft list counter")
        for item in json.loads(out)["nftables"]:
            if "counter" in item:
                return int(item["counter"]["packets"])
        raise BenchError(f"nft list counter: no counter in {out[:200]}")

    def unload(self) -> None:
        subprocess.run(in_ns(self.net.dut, ["nft", "delete", "table", "netdev", NFT_TABLE]),
                       capture_output=True)


class NftSet(Nft):
    """One rule on an interval set holding all the addresses: what an nftables
    user would write for a block list."""

    kind = "nftset"

    def sets(self) -> list[str]:
        els = [*nonmatching(self.rules - 1), GEN_IP]
        return ["  set blocked {", "    type ipv4_addr; flags interval;",
                "    elements = { " + ", ".join(els) + " }", "  }"]

    def body(self) -> list[str]:
        return ['    ip saddr @blocked counter name "bgdrop" drop']


class Ipt(Config):
    """raw PREROUTING, loaded with iptables-restore: rules-1 non-matching -s X
    DROP rules, the matching one last. Every rule counts; the drops are their sum."""

    kind = "ipt"

    def load(self) -> None:
        lines = ["*raw", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
                 *(f"-A PREROUTING -s {a}/32 -j DROP" for a in nonmatching(self.rules - 1)),
                 f"-A PREROUTING -s {GEN_IP}/32 -j DROP", "COMMIT", ""]
        _cmd(in_ns(self.net.dut, [self.tools["iptables_restore"]]),
             f"{self.tools['iptables_restore']} ({self.rules} rules)", inp="\n".join(lines))

    def count(self) -> int:
        out = _cmd(in_ns(self.net.dut, [self.tools["iptables"], "-t", "raw", "-L", "PREROUTING",
                                        "-v", "-x", "-n"]), "iptables -L")
        return sum(int(ln.split()[0]) for ln in out.splitlines()[2:] if ln.strip())

    # no unload: the namespace goes, and its raw table (whose hooks would stay
    # registered in that namespace after a flush) with it


class Bpfguard(Config):
    kind = "bpfguard"

    def load(self) -> None:
        cfg = self.tmp / f"bpfguard-{self.rules}.yaml"
        rules = [f"  - {{src: {a}/32, action: drop}}" for a in nonmatching(self.rules - 1)]
        cfg.write_text("\n".join(["mode: enforce", "policy: allow", "rules:", *rules,
                                  f"  - {{src: {GEN_IP}/32, action: drop}}", ""]))
        self.loaded = False
        _cmd([*bpfguard_cmd(), "firewall", "load", DUT_IF, "--netns", self.net.dut,
              "--mode", "native", "-c", str(cfg)], f"bpfguard firewall load ({self.rules} rules)")
        self.loaded = True

    def count(self) -> int:
        out = _cmd([*bpfguard_cmd(), "firewall", "stats", DUT_IF, "--netns", self.net.dut,
                    "--json"], "bpfguard firewall stats")
        try:
            actions = json.loads(out)["actions"]
            # drop_rule, drop_default and any other drop_* reason (audit_* are would-drops)
            return sum(int(v["packets"]) for k, v in actions.items() if k.startswith("drop"))
        except (ValueError, KeyError, TypeError) as exc:
            raise BenchError(f"bpfguard firewall stats: unexpected output ({exc!r}): "
                             f"{out[:300]}") from None

    def unload(self) -> None:
        if getattr(self, "loaded", False):
            subprocess.run([*bpfguard_cmd(), "firewall", "unload", DUT_IF, "--netns",
                            self.net.dut], capture_output=True, cwd=REPO)


class XdpFloor(Config):
    """The reference: a program that returns XDP_DROP and does nothing else,
    attached in driver mode (`ip link set dev DUT xdpdrv`). What any XDP drop on
    this veth costs. It drops everything the veth receives, so its counter is
    the veth's rx_packets."""

    kind = "floor"

    def load(self) -> None:
        _cmd(["ip", "-n", self.net.dut, "link", "set", "dev", DUT_IF, "xdpdrv", "obj",
              str(self.tools["floor_obj"]), "sec", "xdp"], "attach the XDP_DROP floor")

    def count(self) -> int:
        return self.net.dut_link()["rx"]

    # no unload: the veth goes with the namespace


CLASSES: dict[str, type[Config]] = {"none": NoFilter, "floor": XdpFloor, "nft": Nft,
                                    "nftset": NftSet, "ipt": Ipt, "bpfguard": Bpfguard}

FLOOR_C = """\
/* bench/firewall_xdp.py's reference: drop every packet, count nothing (written and
 * compiled by it) */
#define SEC(name) __attribute__((section(name), used))

SEC("xdp") int bgbench_xdp_drop(void *ctx)
{
\treturn 1; /* XDP_DROP */
}

char LICENSE[] SEC("license") = "GPL";
"""


def compile_floor(tmp: Path) -> tuple[Path | None, str | None]:
    """The XDP_DROP program, compiled with clang into tmp; (None, why) without clang."""
    clang = os.environ.get("CLANG", "clang")
    if shutil.which(clang) is None:
        return None, f"{clang} not found (apt-get install -y clang)"
    src, obj = tmp / "xdp_drop.bpf.c", tmp / "xdp_drop.bpf.o"
    src.write_text(FLOOR_C)
    r = subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-Wall", "-c", str(src), "-o",
                        str(obj)], capture_output=True, text=True)
    if r.returncode:
        return None, f"clang failed: {(r.stdout + r.stderr).strip()}"
    return obj, None


# --------------------------------------------------------------------------- one sample

def proc_stat() -> dict[str, list[int]]:
    """cpu lines of /proc/stat: user nice system idle iowait irq softirq steal ..."""
    out = {}
    for ln in Path("/proc/stat").read_text().splitlines():
        if ln.startswith("cpu"):
            name, *vals = ln.split()
            out[name] = [int(v) for v in vals]
    return out


def _busy(v: list[int]) -> int:
    user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
    return user + nice + system + irq + softirq + steal


def snap(net: Net) -> dict[str, Any]:
    t0 = time.monotonic()
    link = net.dut_link()
    t1 = time.monotonic()
    return {"t": (t0 + t1) / 2, "stat": proc_stat(), **link}


def sample(kind: str, rules: int, tools: dict[str, Any], tmp: Path,
           seconds: float) -> dict[str, Any]:
    """One window of `kind` at `rules` rules, in fresh namespaces. The window is
    delimited by the DUT veth's rx_packets (cheap to read); the configuration's own
    counter is read while no traffic flows, before trafgen starts and after it has
    stopped and the veth has drained, so how long a read takes does not matter."""
    with Net(tmp) as net:
        cfg = CLASSES[kind](net, rules, tools, tmp)
        try:
            t_load = time.monotonic()
            cfg.load()
            load_s = time.monotonic() - t_load
            c0, r0 = cfg.count(), net.dut_link()["rx"]
            gen = Trafgen(net)
            try:
                time.sleep(WARMUP_S)
                gen.check()
                s1 = snap(net)
                time.sleep(seconds)
                s2 = snap(net)
                gen.check()
            finally:
                tg = gen.stop()
            time.sleep(DRAIN_S)
            r1, c1 = net.dut_link()["rx"], cfg.count()
        finally:
            cfg.unload()
    dt = s2["t"] - s1["t"]
    rx_win = s2["rx"] - s1["rx"]
    rx_run = r1 - r0  # every packet of the run, warm-up and tail included
    counted = (c1 - c0) / rx_run if rx_run > 0 else None
    dropped = rx_win * counted if counted is not None else None
    st1, st2 = s1["stat"], s2["stat"]
    per_cpu = {c: _busy(st2[c]) - _busy(st1[c]) for c in st1 if c != "cpu" and c in st2}
    busy = _busy(st2["cpu"]) - _busy(st1["cpu"])
    softirq = st2["cpu"][6] - st1["cpu"][6]
    tick_ns = 1e9 / HZ
    gcpu = tg["cpu"] if tg["cpu"] is not None else 0
    others = [v for c, v in per_cpu.items() if c != f"cpu{gcpu}"]
    return {
        "window_s": dt, "rx": rx_win, "rx_pps": rx_win / dt,
        "rx_dropped": s2["rx_dropped"] - s1["rx_dropped"],
        "counter_delta": c1 - c0, "rx_run": rx_run, "counted": counted,
        "dropped": dropped, "pps": dropped / dt if dropped is not None else None,
        "busy_ticks": busy, "softirq_ticks": softirq,
        "busy_pct": 100 * busy / (HZ * dt * len(per_cpu)) if per_cpu else None,
        "other_cpus_busy_pct": (100 * sum(others) / (HZ * dt * len(others))
                                if others else None),
        "busy_ns_per_pkt": busy * tick_ns / dropped if dropped else None,
        "softirq_ns_per_pkt": softirq * tick_ns / dropped if dropped else None,
        "per_cpu_busy_ticks": per_cpu, "trafgen_sent": tg["sent"], "trafgen_cpu": tg["cpu"],
        "load_s": load_s,
    }


# --------------------------------------------------------------------------- rounds

def plan(big: int, bpf_error: str | None, floor: bool) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = [("none", 0)] + ([("floor", 0)] if floor else [])
    for kind in ("nft", "ipt", "bpfguard"):
        if kind == "bpfguard" and bpf_error:
            continue
        out += [(kind, 1), (kind, big)]
        if kind == "nft":
            out.append(("nftset", big))
    return out


def timing(configs: list[tuple[str, int]], rounds: int, seconds: float,
           tools: dict[str, Any], tmp: Path, started: float,
           errors: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """samples[key][k]: round k's sample; order rotated per round. A bpfguard
    configuration that fails is reported and not run again (its list stops short,
    so its first samples still pair with the same rounds' peers); a peer that
    fails stops the run."""
    out: dict[str, list[dict[str, Any]]] = {_key(*c): [] for c in configs}
    for k in range(rounds):
        rot = k % len(configs)
        for kind, n in configs[rot:] + configs[:rot]:
            key = _key(kind, n)
            if key in errors:
                continue
            try:
                out[key].append(sample(kind, n, tools, tmp, seconds))
            except BenchError as exc:
                if kind != "bpfguard":
                    raise
                errors[key] = str(exc)
                log(f"{key}: {exc}")
        log(f"round {k + 1}/{rounds} ({time.monotonic() - started:.0f} s)")
    return out


# --------------------------------------------------------------------------- report

def _med(xs: list[float | None]) -> dict[str, Any]:
    ys = [x for x in xs if x is not None]
    if not ys:
        return {"median": None, "se": None}
    return {"median": statistics.median(ys), "se": _median_se(ys)}


def _paired(num: list[dict[str, Any]], den: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over rounds of num's rate / den's rate in the same round."""
    rs = [a["pps"] / b["pps"] for a, b in zip(num, den, strict=False)
          if a.get("pps") is not None and b.get("pps")]
    if not rs:
        return {"ratio": None, "se": None}
    return {"ratio": statistics.median(rs), "se": _median_se(rs), "per_round": rs}


def build_report(samples: dict[str, list[dict[str, Any]]], configs: list[tuple[str, int]],
                 big: int, params: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for kind, n in configs:
        key = _key(kind, n)
        xs = samples.get(key, [])
        rows[key] = {
            "kind": kind, "rules": None if kind in NO_RULES else n, "label": LABELS[kind],
            "mpps": _med([x["pps"] / 1e6 if x["pps"] is not None else None for x in xs]),
            "rx_mpps": _med([x["rx_pps"] / 1e6 for x in xs]),
            "busy_ns_per_pkt": _med([x["busy_ns_per_pkt"] for x in xs]),
            "softirq_ns_per_pkt": _med([x["softirq_ns_per_pkt"] for x in xs]),
            "counted": _med([x["counted"] for x in xs]),
            "other_cpus_busy_pct": _med([x["other_cpus_busy_pct"] for x in xs]),
            "rx_dropped": sum(x["rx_dropped"] for x in xs),
            "rx_run": sum(x["rx_run"] for x in xs),
            "trafgen_sent": sum(x["trafgen_sent"] or 0 for x in xs),
            "load_s": _med([x["load_s"] for x in xs]),
            "error": errors.get(key), "samples": xs,
        }

    def pair(a: str, b: str) -> dict[str, Any]:
        if a not in rows or b not in rows:
            return {"ratio": None, "se": None}
        return _paired(rows[a]["samples"], rows[b]["samples"])

    ref1, ipt_big = "nft-1", f"ipt-{big}"
    for key, r in rows.items():
        r["x_nft1"] = pair(key, ref1)
        own1 = f"{r['kind']}-1" if r["kind"] != "nftset" else ref1
        r["x_own1"] = pair(key, own1) if r["rules"] == big else {"ratio": None, "se": None}
        r["x_ipt_big"] = pair(key, ipt_big) if r["rules"] == big else {"ratio": None, "se": None}
    targets = [
        {"what": "bpfguard 1 rule / nftables ingress 1 rule", "min": 0.9,
         **pair("bpfguard-1", ref1)},
        {"what": f"bpfguard {big} rules / bpfguard 1 rule", "min": 0.9,
         **pair(f"bpfguard-{big}", "bpfguard-1")},
        {"what": f"bpfguard {big} rules / iptables {big} rules", "min": 1.0, "strict": True,
         **pair(f"bpfguard-{big}", ipt_big)},
    ]
    floor = {"bpfguard 1 rule / XDP_DROP floor": pair("bpfguard-1", "floor"),
             f"bpfguard {big} rules / XDP_DROP floor": pair(f"bpfguard-{big}", "floor"),
             "XDP_DROP floor / nftables ingress 1 rule": pair("floor", ref1)}
    return {"params": params, "configs": rows, "targets": targets,
            "vs_floor": {k: v for k, v in floor.items() if v["ratio"] is not None},
            "errors": errors}


def _pm(m: dict[str, Any], spec: str) -> str:
    if m.get("median") is None:
        return "-"
    return f"{spec.format(m['median'])} ±{spec.format(m['se'])}"


def _rcell(r: dict[str, Any]) -> str:
    return "-" if r.get("ratio") is None else f"{r['ratio']:.2f}x"


def print_report(rep: dict[str, Any]) -> None:
    p = rep["params"]
    print(f"XDP firewall, kernel {p['kernel']}, {p['cpus']} CPUs; trafgen {p['trafgen_version']} "
          f"on one core, {FRAME}-byte UDP frames {GEN_IP} -> {DUT_IP}:{DPORT} over veth; "
          f"{p['rounds']} interleaved rounds, {p['seconds']:g} s windows")
    print(f"iptables: {p['iptables_version']} (`iptables` here: {p['iptables_default']})")
    print("Mpps = packets the configuration's own counter dropped per second (median ± its "
          "standard error); CPU ns/pkt = /proc/stat busy (all CPUs) or softirq time over the "
          "window / packets dropped; ratios: median over rounds of the same round's rates")
    print()
    hdr = (f"{'config':26} {'rules':>6} {'Mpps dropped':>15} {'busy ns/pkt':>14} "
           f"{'softirq ns/pkt':>15} {'counted':>8} {'x nft 1':>8} {'x own 1':>8} "
           f"{'x ipt N':>8}")
    print(hdr)
    print("-" * len(hdr))
    for r in rep["configs"].values():
        rules = "-" if r["rules"] is None else str(r["rules"])
        if r["error"] and not r["samples"]:
            print(f"{r['label']:26} {rules:>6} unavailable: {r['error'].splitlines()[-1]}")
            continue
        cnt = r["counted"]["median"]
        print(f"{r['label']:26} {rules:>6} {_pm(r['mpps'], '{:.3f}'):>15} "
              f"{_pm(r['busy_ns_per_pkt'], '{:.0f}'):>14} "
              f"{_pm(r['softirq_ns_per_pkt'], '{:.0f}'):>15} "
              f"{_f(None if cnt is None else 100 * cnt, '{:.1f}%'):>8} "
              f"{_rcell(r['x_nft1']):>8} {_rcell(r['x_own1']):>8} {_rcell(r['x_ipt_big']):>8}")
    print()
    for key, msg in rep["errors"].items():
        if key not in rep["configs"] or rep["configs"][key]["samples"]:
            print(f"{key}: {msg.splitlines()[-1]}")
    if p.get("bpfguard_unavailable"):
        print(f"bpfguard firewall unavailable: {p['bpfguard_unavailable']}")
    print("targets:")
    for t in rep["targets"]:
        if t["ratio"] is None:
            print(f"  {t['what']}: not measured")
            continue
        ok = t["ratio"] > t["min"] if t.get("strict") else t["ratio"] >= t["min"]
        rel = ">" if t.get("strict") else ">="
        print(f"  {t['what']} {rel} {t['min']:.1f}x: {t['ratio']:.2f}x ±{t['se']:.2f} "
              f"({'within target' if ok else 'misses target'})")
    if rep["vs_floor"]:
        print("against the XDP_DROP floor: " + "; ".join(
            f"{k} {v['ratio']:.2f}x ±{v['se']:.2f}" for k, v in rep["vs_floor"].items()))
    lost = {k: r["rx_dropped"] for k, r in rep["configs"].items() if r["rx_dropped"]}
    print("packets the veth dropped before any filter (backlog or ring full): "
          + (", ".join(f"{k} {v}" for k, v in lost.items()) if lost else "none"))
    sent = sum(r["trafgen_sent"] for r in rep["configs"].values())
    rx = sum(r["rx_run"] for r in rep["configs"].values())
    print(f"packets trafgen says it sent: {sent}; the DUT veth received: {rx}")
    other = [r["other_cpus_busy_pct"]["median"] for r in rep["configs"].values()
             if r["other_cpus_busy_pct"]["median"] is not None]
    if other:
        print(f"CPUs other than trafgen's: {min(other):.0f}-{max(other):.0f}% busy "
              "(median per configuration; anything but this run's softirq spill-over "
              "is someone else's load, counted in busy ns/pkt)")
    loads = ", ".join(f"{k} {r['load_s']['median']:.2f} s" for k, r in rep["configs"].items()
                      if r["load_s"]["median"] is not None and r["rules"] and r["rules"] > 1)
    if loads:
        print(f"load times (untimed): {loads}")


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="2 rounds of 1 s windows (~50 s)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 4; quick 2)")
    ap.add_argument("--seconds", type=float, help="window per sample (default 3; quick 1)")
    ap.add_argument("--rules", type=int, default=10_000,
                    help="rules in the large configurations (default 10000)")
    ap.add_argument("--no-floor", action="store_true",
                    help="leave out the reference XDP_DROP program (needs clang)")
    args = ap.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 4)
    seconds = args.seconds or (1.0 if args.quick else 3.0)
    if rounds < 1 or seconds <= 0 or args.rules < 2:
        ap.error("--rounds and --seconds must be positive, --rules at least 2")
    started = time.monotonic()
    return guarded("firewall_xdp.py", lambda tmp: _bench(tmp, args, rounds, seconds, started),
                   interrupted="interrupted: namespaces deleted")


def _bench(tmp: Path, args: argparse.Namespace, rounds: int, seconds: float,
           started: float) -> int:
    tools = check_tools()
    nonmatching(args.rules - 1)  # the range check, before anything is set up
    stale = [ln.split()[0] for ln in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                    text=True).stdout.splitlines()
             if ln.startswith("bgbench-")]
    if stale:
        log(f"note: other bgbench namespaces exist (another run, or one that was killed): "
            f"{', '.join(stale)}")
    bpf_error = bpfguard_available()
    if bpf_error:
        log(f"bpfguard firewall unavailable: {bpf_error}")
    floor_why = "--no-floor"
    if not args.no_floor:
        tools["floor_obj"], floor_why = compile_floor(tmp)
        if floor_why:
            log(f"no XDP_DROP floor: {floor_why}")
    configs = plan(args.rules, bpf_error, not floor_why)
    errors: dict[str, str] = {}
    if bpf_error:
        for n in (1, args.rules):
            errors[_key("bpfguard", n)] = bpf_error
    log(f"{rounds} rounds x {len(configs)} configurations, {seconds:g} s windows; iptables: "
        f"{tools['iptables_version']}")
    samples = timing(configs, rounds, seconds, tools, tmp, started, errors)
    all_configs = configs + ([("bpfguard", 1), ("bpfguard", args.rules)] if bpf_error else [])
    params = {"rounds": rounds, "seconds": seconds, "rules": args.rules, "warmup_s": WARMUP_S,
              "frame_bytes": FRAME, "flow": f"{GEN_IP}:{SPORT} -> {DUT_IP}:{DPORT} udp",
              "kernel": os.uname().release, "cpus": os.cpu_count(), "user_hz": HZ,
              **{k: str(v) if isinstance(v, Path) else v for k, v in tools.items()},
              "floor_unavailable": floor_why, "bpfguard_unavailable": bpf_error,
              "elapsed_s": round(time.monotonic() - started, 1)}
    rep = build_report(samples, all_configs, args.rules, params, errors)
    return emit(rep, args.json, print_report)


if __name__ == "__main__":
    sys.exit(main())
