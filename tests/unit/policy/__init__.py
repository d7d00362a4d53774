"""Tests of bpfguard.policy: Tetragon TracingPolicy loading and requirements."""
