"""The `bpfguard` command line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import click

from ..agent.launch import spawn_waiting, stream
from ..errors import BpfguardError, CommandError, ConfigError
from ..sensors import DEFAULT_SYSCALLS
from .detect import detect, rules
from .firewall import egress, firewall
from .policy import policy

__all__ = ["main"]

_CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BpfguardError as exc:
            click.echo(f"bpfguard: error: {exc}", err=True)
            sys.exit(getattr(exc, "exit_code", 1))


@click.group(cls=_Group, context_settings=_CTX)
@click.version_option(package_name="bpfguard")
def main() -> None:
    """Runtime security for Linux on eBPF: observe processes and syscalls in the
    kernel, filter there, and report what matters.

    \b
    Start here:
      bpfguard probe              what this kernel can do (and what it refuses)
      bpfguard trace -- CMD ...   run CMD and show what it and its children do
      bpfguard run [-c FILE]      the agent: Falco rules, policies, firewall, metrics
      bpfguard detect -r RULES    Falco rules files, alerts as Falco prints them
      bpfguard seccomp record     a seccomp profile from what a command really does
      bpfguard firewall load IF   the XDP firewall with DDoS budgets (audit or enforce)
      bpfguard egress load CG     EPERM for a cgroup's connections to denied destinations

    Needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN) and a kernel with BTF.
    """


def _require_root() -> None:
    if os.geteuid() != 0:
        raise BpfguardError("needs root: loading BPF programs requires CAP_BPF and CAP_PERFMON")


def _which(argv: Sequence[str]) -> str:
    """The executable for argv[0], or CommandError with a shell's exit code."""
    exe = shutil.which(argv[0])
    if exe is not None:
        return exe
    if os.path.exists(argv[0]) or ("/" not in argv[0] and any(
            os.path.exists(os.path.join(d, argv[0]))
            for d in os.environ.get("PATH", "").split(os.pathsep))):
        raise CommandError(f"{argv[0]}: not executable", 126)
    raise CommandError(f"command not found: {argv[0]}", 127)


def _exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + the signal."""
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def _syscalls(names: Sequence[str]) -> list[str] | None:
    out: list[str] = []
    for n in names:
        out.extend(x for x in n.split(",") if x)
    return out or None


_sensor_options = [
    click.option("--syscall", "-s", "syscalls", multiple=True, metavar="NAME",
                 help="Report this syscall (repeatable, or comma-separated). Default: the "
                      f"{len(DEFAULT_SYSCALLS)} security-relevant syscalls bpfguard knows "
                      "(open*, exec*, connect, unlink*, setuid, ptrace, bpf, ...; read and "
                      "write only when named). io_uring requests that do the same are "
                      "reported as these syscalls, with io_uring: true."),
    click.option("--no-syscalls", is_flag=True,
                 help="Only process lifecycle events (exec, fork, exit)."),
    click.option("--str-max", default=4096, show_default=True, type=click.IntRange(1, 4096),
                 help="Bytes read per string argument (paths)."),
    click.option("--args-max", default=4095, show_default=True,
                 type=click.IntRange(1, 4095), help="argv bytes read at exec."),
    click.option("--ringbuf-mb", default=16, show_default=True, type=click.IntRange(1, 1024),
                 help="Kernel ring buffer size in MiB (rounded up to a power of two)."),
]


def _with_sensor_options(f: Any) -> Any:
    for opt in reversed(_sensor_options):
        f = opt(f)
    return f


def _sensorset(syscalls: Sequence[str], no_syscalls: bool, str_max: int, args_max: int,
               ringbuf_mb: int) -> Any:
    from ..sensors import SensorSet

    names: list[str] | None = [] if no_syscalls else _syscalls(syscalls)
    size = 1 << max(12, (ringbuf_mb * 1024 * 1024 - 1).bit_length())
    return SensorSet(syscalls=names, str_max=str_max, args_max=args_max, ringbuf_bytes=size)


def _ns_inode(ns: str) -> int:
    if ns.isdigit():
        return int(ns)
    try:
        return os.stat(ns).st_ino
    except OSError as exc:
        raise ConfigError(f"--mntns {ns}: {exc.strerror}") from None


def _output(json_lines: bool) -> Any:
    from ..outputs import JsonLines, TextLines

    return JsonLines(sys.stdout) if json_lines else TextLines(sys.stdout)


def _pipeline(sensors: Any) -> Any:
    from ..agent import Pipeline
    from ..proctable import ProcessTable
    from ..sensors.sensorset import _boot_id

    table = ProcessTable(boot_id=_boot_id())
    table.seed_from_proc()
    return Pipeline(sensors, table)


@main.command(context_settings=_CTX)
@click.option("--json/--text", "json_lines", default=False,
              help="JSON lines instead of the human-readable table.")
@click.option("--pid", "-p", "pids", multiple=True, type=int, metavar="PID",
              help="Trace this process and its descendants (repeatable).")
@click.option("--cgroup", "-c", "cgroups", multiple=True, metavar="PATH",
              help="Trace processes in this cgroup v2 directory and below (repeatable).")
@click.option("--mntns", "mntns", multiple=True, metavar="NS",
              help="Trace processes in this mount namespace: an inode number, or a path "
                   "such as /proc/PID/ns/mnt (repeatable).")
@_with_sensor_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def trace(json_lines: bool, pids: tuple[int, ...], cgroups: tuple[str, ...],
          mntns: tuple[str, ...], syscalls: tuple[str, ...], no_syscalls: bool, str_max: int,
          args_max: int, ringbuf_mb: int, command: tuple[str, ...]) -> None:
    """Stream process and syscall events, filtered in the kernel.

    \b
    With `-- CMD ARGS...`, run CMD and trace exactly it and its descendants,
    from its first instruction (the window opens at its execve, so none of
    bpfguard's own setup shows), then exit with CMD's exit code.
    Without a command, trace until Ctrl-C: everything but bpfguard itself,
    or only what --pid / --cgroup select.

    \b
    Examples:
      bpfguard trace -- curl -s example.org
      bpfguard trace --json -s openat,connect -- python3 app.py
      bpfguard trace --pid 1234 -s execve
      bpfguard trace --cgroup /sys/fs/cgroup/unified/system.slice/nginx.service
      bpfguard trace --mntns /proc/4321/ns/mnt       (a container's processes)

    Paths are reported twice: the string the process passed (`user`) and what
    the kernel acted on (`resolved`, from the kernel's objects at exit).
    """
    argv = list(command)
    exe = _which(argv) if argv else None
    _require_root()
    sensors = _sensorset(syscalls, no_syscalls, str_max, args_max, ringbuf_mb)
    child = -1
    release = -1
    try:
        for pid in pids:
            if not os.path.exists(f"/proc/{pid}"):
                raise ConfigError(f"--pid {pid}: no such process")
            sensors.scope.add_pid(pid)
        for cg in cgroups:
            sensors.scope.add_cgroup(cg)
        for ns in mntns:
            sensors.scope.add_mntns(_ns_inode(ns))
        if exe is not None:
            child, release = spawn_waiting(exe, argv)
            sensors.scope.add_pid(child, armed=True)
        pipe = _pipeline(sensors)
        out = _output(json_lines)
        pipe.start()
        if release >= 0:
            os.write(release, b"x")
            os.close(release)
            release = -1
        status = stream(pipe, out, child)
    finally:
        if release >= 0:
            os.close(release)
        sensors.close()
    if child > 0 and status is not None:
        sys.exit(_exit_code(status))


@main.command(context_settings=_CTX)
@click.option("-c", "--config", "config_path", metavar="FILE",
              type=click.Path(exists=True, dir_okay=False),
              help="The agent's YAML configuration (`bpfguard config default` prints every "
                   "key). Default: the embedded configuration.")
@click.option("--events", is_flag=True,
              help="Instead of the agent: stream every process and security-relevant "
                   "syscall event (JSON lines; what `trace --json` shows, host-wide).")
@click.option("--policy", "policies", multiple=True, metavar="FILE",
              type=click.Path(exists=True, dir_okay=False),
              help="Instead of the agent: enforce these Tetragon TracingPolicies only "
                   "(repeatable), like `tetragon --tracing-policy`: their events in "
                   "Tetragon's JSON on stdout.")
@click.option("--policy-cgroup", metavar="PATH",
              help="With --policy: limit the policies to this cgroup v2 directory and "
                   "everything below it (a container, outside Kubernetes).")
@click.option("--socket", "socket_path", metavar="PATH", default=None,
              help="With --policy: the root-only control socket for `bpfguard policy "
                   "add|list|delete|mode` [default: /run/bpfguard/bpfguard.sock].")
@click.option("--no-process-events", is_flag=True,
              help="With --policy: only policy events, no process_exec/process_exit.")
@click.option("--ancestors", is_flag=True,
              help="With --policy: add each event's ancestors, as Tetragon's "
                   "--enable-ancestors does.")
@click.option("--json", "json_flag", is_flag=True,
              help="JSON lines on stdout (the default); accepted so scripts can say so.")
@_with_sensor_options
def run(config_path: str | None, events: bool, policies: tuple[str, ...],
        policy_cgroup: str | None, socket_path: str | None, no_process_events: bool,
        ancestors: bool, json_flag: bool, syscalls: tuple[str, ...], no_syscalls: bool,
        str_max: int, args_max: int, ringbuf_mb: int) -> None:
    """Run the agent: detection, policies, firewall, outputs, metrics, control.

    \b
    With no configuration it runs the embedded default: Falco's stock rules
    over every process on the host, bpfguard's default TracingPolicies in
    monitor mode (kernel module loads, ptrace attach, writes to credential
    files: reported with what they would do, nothing killed), JSON alerts on
    stdout, Prometheus metrics and /healthz on http://127.0.0.1:9376, and
    the control socket /run/bpfguard/bpfguard.sock. Lost events are
    reported as Falco's drop alerts and counted, never silently.

    \b
    Operate it:
      bpfguard config default > /etc/bpfguard/config.yaml   every key, documented
      bpfguard config check -c /etc/bpfguard/config.yaml    validate before (re)loading
      bpfguard run -c /etc/bpfguard/config.yaml
      kill -HUP <pid>  or  bpfguard agent reload             reload rules and policies
      bpfguard policy add p.yaml | list | mode NAME enforce  policies, live
      bpfguard agent status                                  health, last reload error
      bpfguard alerts query --since 1h --priority warning    with outputs.sqlite on
    SIGTERM or Ctrl-C: outputs are flushed and every program detached; only
    a configured firewall's pinned state stays. Killed (kill -9, the OOM
    killer), the agent leaves its enforce-mode policies pinned and enforcing
    (policies.pin_dir); the next agent adopts them. --policy pins nothing.

    \b
    Single-purpose modes, without the agent:
      --events           the raw event stream
      --policy FILE      TracingPolicies only, events in Tetragon's JSON
    """
    if policies:
        if config_path:
            raise ConfigError("--policy runs TracingPolicies alone and reads no configuration; "
                              "for the agent, list them under policies.files in -c FILE")
        _run_policies(policies, policy_cgroup, socket_path, not no_process_events, ancestors)
        return
    if socket_path or policy_cgroup or no_process_events or ancestors:
        raise ConfigError("--socket, --policy-cgroup, --no-process-events and --ancestors "
                          "go with --policy (the agent takes them from its configuration)")
    if not events:
        _run_agent(config_path)
        return
    if config_path:
        raise ConfigError("--events does not read a configuration; drop -c")
    _require_root()
    sensors = _sensorset(syscalls, no_syscalls, str_max, args_max, ringbuf_mb)
    try:
        pipe = _pipeline(sensors)
        pipe.start()
        stream(pipe, _output(True), -1)
        drops = sensors.drops()
    finally:
        sensors.close()
    click.echo(f"bpfguard: stopped; {pipe.events} events, kernel drops {drops}, "
               f"queue drops {pipe.queue_drops}", err=True)


def _run_agent(config_path: str | None) -> None:
    import logging

    from ..agent.config import load_config
    from ..agent.daemon import Agent

    cfg = load_config(config_path)
    _require_root()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="bpfguard: %(levelname)s: %(message)s")
    # start-up takes a while; a SIGHUP meanwhile (logrotate) must not kill us
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    agent = Agent(cfg, config_path=config_path, stdout=sys.stdout)
    sys.exit(agent.run())


def _run_policies(policies: Sequence[str], cgroup: str | None, socket_path: str | None,
                  process_events: bool, ancestors: bool) -> None:
    from ..agent.config import AgentConfig, default_config
    from ..agent.control import DEFAULT_SOCKET
    from ..agent.detect import build_containers
    from ..agent.policy import PolicyAgent
    from ..outputs import JsonLines

    _require_root()
    agent = PolicyAgent(policies, cgroup=cgroup, socket_path=socket_path or DEFAULT_SOCKET,
                        process_events=process_events, ancestors=ancestors,
                        containers=build_containers(AgentConfig(default_config())))
    try:
        agent.start()  # attaches: only now are the policies in force
        for lp in agent.engine.policies.values():
            click.echo(f"bpfguard: policy {lp.name!r} loaded ({lp.mode} mode, "
                       f"{len(lp.slots)} hook{'s' if len(lp.slots) != 1 else ''}, "
                       f"{agent.engine.scope_text(lp)})", err=True)
        stream(agent.pipeline, JsonLines(sys.stdout), -1)
        counters = {lp["name"]: lp["counters"] for lp in agent.engine.list()}
        drops = agent.sensors.drops()
    finally:
        agent.close()
    click.echo(f"bpfguard: stopped; policy counters {counters}, kernel drops {drops}", err=True)


@main.command(context_settings=_CTX)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def probe(as_json: bool) -> None:
    """Show what this kernel can do, by loading and attaching tiny programs.

    Each feature is tried for real (not guessed from the version); a refused
    one says why. Later features pick their backends from this: e.g. LSM or
    fmod_ret deny before an operation when available, otherwise SIGKILL after.
    """
    _require_root()
    from ..probe import probe_features, render_table

    t0 = time.monotonic()
    feats = probe_features()
    if as_json:
        click.echo(json.dumps(feats.to_dict(), indent=2))
        return
    from rich.console import Console

    Console().print(render_table(feats))
    click.echo(f"probed in {time.monotonic() - t0:.1f}s", err=True)


from .seccomp import seccomp  # noqa: E402 - registers after main exists

main.add_command(seccomp)

from .agent import agent, config  # noqa: E402
from .alerts import alerts  # noqa: E402

main.add_command(detect)
main.add_command(rules)
main.add_command(config)
main.add_command(agent)
main.add_command(alerts)
main.add_command(policy)
main.add_command(firewall)
main.add_command(egress)
