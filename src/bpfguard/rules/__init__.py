"""Falco-compatible detection: rules files, conditions, fields, the engine."""
