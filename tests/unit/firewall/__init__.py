"""Tests of bpfguard.firewall without the kernel: rules, configs, classes, egress, pcap."""
