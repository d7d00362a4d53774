"""Network security: the XDP firewall with DDoS budgets, and egress policy per cgroup.

- :class:`Firewall` (:mod:`.xdp`): rules, allowlist, budgets, bans, audit and
  enforce modes on one interface, pinned so it outlives bpfguard.
- :class:`Egress` (:mod:`.egress`): EPERM for connect()/sendmsg() to denied
  destinations from one cgroup.
- :mod:`.config`: the YAML configs; :mod:`.model`: validated rules.
- :mod:`.changes`: the live changes `bpfguard firewall` makes, directly or
  through the agent.
"""

from .config import load_egress_config, load_firewall_config, rule_from_options
from .egress import Egress, loaded_egress
from .model import EgressRule, FirewallConfig, Limits, Rule, parse_network, parse_port
from .pcap import PcapWriter
from .xdp import Firewall, FirewallError, loaded_firewalls

__all__ = [
    "Egress",
    "EgressRule",
    "Firewall",
    "FirewallConfig",
    "FirewallError",
    "Limits",
    "PcapWriter",
    "Rule",
    "load_egress_config",
    "load_firewall_config",
    "loaded_egress",
    "loaded_firewalls",
    "parse_network",
    "parse_port",
    "rule_from_options",
]
