"""`python -m bpfguard`: the same as the `bpfguard` command."""

from .cli import main

main(prog_name="bpfguard")
