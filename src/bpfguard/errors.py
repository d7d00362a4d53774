"""bpfguard's exceptions.

::

    BpfguardError
    ├── KernelError              a kernel or libbpf call failed (errno, strerror)
    │   ├── LoadError            an object or program failed to load (verifier log tail)
    │   └── AttachError          a program could not be attached
    ├── UnsupportedError         the running kernel lacks a needed feature (names it)
    ├── BuildError               the BPF objects are missing or stale
    ├── ConfigError              bad user input (where, and what was wrong)
    │   ├── CommandError         the command to run cannot be (exit 127 or 126, as shells)
    │   ├── RulesError           rules files did not load; `result` has every problem,
    │   │                        each with file:line:column (rules.loader)
    │   ├── ConditionSyntaxError a condition is not Falco syntax (rules.grammar)
    │   ├── CompileError         a condition parses but cannot be evaluated (rules.compiler)
    │   ├── PolicyError          a TracingPolicy did not load; `problems`, each with
    │   │                        file:line:column and a stable code (policy.loader)
    │   ├── ProfileError         a seccomp profile cannot be used (seccomp.profile)
    │   └── FirewallError        a firewall request that cannot be done (firewall.xdp)
    └── ControlError             a control-socket request failed (agent.control)
        ├── AgentNotListening    nothing listens on the socket
        └── NotServed            the agent there does not serve that request

Only the first level lives here; the others are defined next to what raises
them, and all are importable from :mod:`bpfguard`.
"""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "AttachError",
    "BpfguardError",
    "BuildError",
    "CommandError",
    "ConfigError",
    "KernelError",
    "LoadError",
    "UnsupportedError",
]


class BpfguardError(Exception):
    """Base of every error bpfguard raises on purpose."""


class KernelError(BpfguardError):
    """A kernel or libbpf call failed.

    Attributes:
        errno: the positive errno value.
        strerror: its text.
        what: the operation that failed.
    """

    def __init__(self, what: str, err: int, detail: str = "") -> None:
        self.what = what
        self.errno = abs(err)
        self.strerror = os.strerror(self.errno)
        self.detail = detail
        name = _errno.errorcode.get(self.errno, str(self.errno))
        msg = f"{what}: {name} ({self.strerror})"
        if detail:
            msg += f"\n{detail}"
        super().__init__(msg)


class LoadError(KernelError):
    """Loading a BPF object failed.

    Attributes:
        program: the program the kernel refused, when known.
        log: the tail of the verifier log for it.
    """

    def __init__(self, what: str, err: int, program: str | None, log: str) -> None:
        self.program = program
        self.log = log
        where = f"{what}: program '{program}'" if program else what
        detail = f"verifier log (tail):\n{log}" if log else ""
        super().__init__(where, err, detail)


class AttachError(KernelError):
    """Attaching a loaded program failed."""


class UnsupportedError(BpfguardError):
    """The running kernel cannot provide a feature; the message names it and why."""


class BuildError(BpfguardError):
    """The compiled BPF objects are missing."""


class ConfigError(BpfguardError):
    """Bad user input: the message says where and what was wrong."""


class CommandError(ConfigError):
    """The command given after `--` cannot be run. `exit_code` is what a shell
    would exit with: 127 not found, 126 found but not executable."""

    def __init__(self, message: str, exit_code: int) -> None:
        self.exit_code = exit_code
        super().__init__(message)
