"""`bpfguard config` (the agent's configuration) and `bpfguard agent` (the
running agent, through its control socket)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import BpfguardError, ConfigError
from .policy import socket_option

__all__ = ["agent", "config", "reload_agent"]

_CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=_CTX)
def config() -> None:
    """The agent's YAML configuration: print the reference, check a file.

    \b
      bpfguard config default > /etc/bpfguard/config.yaml
      bpfguard config check -c /etc/bpfguard/config.yaml
    """


@config.command(context_settings=_CTX)
def default() -> None:
    """Print every key with its default and what it does: a valid config file,
    and exactly what `bpfguard run` runs without -c."""
    from ..agent.config import render_reference

    click.echo(render_reference(), nl=False)


@config.command(context_settings=_CTX)
@click.option("-c", "--config", "config_path", metavar="FILE", required=True,
              type=click.Path(dir_okay=False))
def check(config_path: str) -> None:
    """Validate a configuration as `bpfguard run -c` would, short of the kernel.

    \b
    Reports every unknown key and wrong type with FILE:LINE and the key's
    path (e.g. `outputs.file.max_bytes`), then loads and compiles the rules
    files, parses the TracingPolicies and firewall configs it names. Exit
    status 1 when anything is wrong. Policies' kernel needs (kprobes, LSM)
    are checked when the agent loads them.
    """
    from ..agent.config import load_config
    from ..agent.detect import build_engine
    from ..agent.policy import read_policies
    from ..files import check_output_path
    from ..firewall import Firewall
    from ..firewall.config import load_firewall_config

    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    problems: list[str] = []
    summary: list[str] = []
    if cfg["rules.enabled"]:
        try:
            engine = build_engine(cfg)
            summary.append(f"{len(engine.compiled)} rules")
        except BpfguardError as exc:
            problems.append(f"rules: {exc}")
    try:
        pols = read_policies(cfg)
        summary.append(f"{len(pols)} policies")
    except BpfguardError as exc:
        problems.append(f"policies: {exc}")
    for i, fw in enumerate(cfg["firewall.interfaces"]):
        if fw["config"]:
            try:
                Firewall.check_fits(load_firewall_config(fw["config"]))
            except BpfguardError as exc:
                problems.append(f"firewall.interfaces[{i}].config: {exc}")
    token_file = cfg["control.tcp_token_file"]
    if token_file:
        try:
            if len(Path(token_file).read_text().strip()) < 16:
                problems.append(f"control.tcp_token_file {token_file}: the token must have "
                                "at least 16 characters")
        except OSError as exc:
            problems.append(f"control.tcp_token_file {token_file}: {exc.strerror}")
    cgroup = cfg["policies.cgroup"]
    if cfg["policies.enabled"] and cgroup:
        from ..sensors.sensorset import cgroup2_problem

        why = cgroup2_problem(cgroup)
        if why is not None:
            problems.append(f"policies.cgroup {cgroup}: {why}")
    if cfg["policies.enabled"] and cfg["policies.pin_dir"]:
        from ..agent.pins import check_pin_dir

        try:
            check_pin_dir(Path(cfg["policies.pin_dir"]))
        except ConfigError as exc:
            problems.append(str(exc))
    for key in ("outputs.file", "outputs.sqlite"):
        if cfg[f"{key}.enabled"]:
            path = cfg[f"{key}.path"]
            try:  # (SQLite makes its -wal and -shm by name: not in a shared directory)
                check_output_path(path, f"{key}.path {path}", missing="allow",
                                  shared=key == "outputs.file")
            except ConfigError as exc:
                problems.append(str(exc))
    if problems:
        click.echo("\n".join(f"{config_path}: {p}" for p in problems), err=True)
        sys.exit(1)
    click.echo(f"{config_path}: ok: {', '.join(summary) or 'nothing enabled'}")


@click.group(context_settings=_CTX)
def agent() -> None:
    """The running agent (`bpfguard run`), through its root-only control socket.

    \b
      bpfguard agent status      health, what runs, the last reload error
      bpfguard agent reload      re-read the configuration (as SIGHUP does)
    """


def _call(op: str, socket_path: str) -> Any:
    from ..agent.control import request

    return request(op, socket_path=socket_path)


@agent.command(context_settings=_CTX)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@socket_option
def status(as_json: bool, socket_path: str) -> None:
    """Is the agent healthy, what does it run, did the last reload fail."""
    st = _call("status", socket_path)
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    click.echo(f"{'healthy' if st['healthy'] else 'UNHEALTHY'}: {st['running']}")
    click.echo(f"config: {st['config']}")
    for p in st.get("problems", []):
        click.echo(f"problem: {p}")
    if st.get("last_reload_error"):
        click.echo(f"last reload failed (the previous configuration runs): "
                   f"{st['last_reload_error']}")
    if not st["healthy"]:
        sys.exit(1)


@agent.command(context_settings=_CTX)
@socket_option
def reload(socket_path: str) -> None:
    """Re-read the configuration; rules and policies are replaced all or nothing.
    On failure the running configuration stays, and this says why (exit 1)."""
    reload_agent(socket_path)


def reload_agent(socket_path: str) -> None:
    """Asks the agent to reload; ConfigError with its reason when it could not."""
    res = _call("reload", socket_path)
    if not res["ok"]:
        raise ConfigError(f"reload failed; the running configuration stays:\n{res['error']}")
    click.echo("reloaded")
    if res.get("needs_restart"):
        click.echo(f"changes to {', '.join(res['needs_restart'])} take effect at the next "
                   "start", err=True)
