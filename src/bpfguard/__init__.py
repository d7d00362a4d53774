"""bpfguard: runtime security for Linux on eBPF.

Packages: :mod:`bpfguard.loader` (the only libbpf user), :mod:`bpfguard.sensors`
(kernel sensors and their events), :mod:`bpfguard.proctable`,
:mod:`bpfguard.agent` (the event pipeline), :mod:`bpfguard.outputs`,
:mod:`bpfguard.probe` (kernel feature probe), :mod:`bpfguard.cli`.
"""

__version__ = "0.1.0"
