"""`bpfguard detect` and `bpfguard rules`: Falco's rules, run on bpfguard's sensors."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import click

from ..errors import ConfigError
from ..outputs.alert import Alert
from ..rules import rule_files
from .policy import socket_option

__all__ = ["detect", "rules"]

_CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# -o keys, as in falco.yaml, with their types and defaults
_OPTIONS: dict[str, tuple[type, Any]] = {
    "priority": (str, "debug"),
    "rule_matching": (str, "first"),
    "json_output": (bool, False),
    "json_include_output_property": (bool, True),
    "json_include_tags_property": (bool, True),
    "buffered_outputs": (bool, False),
    "outputs_queue.capacity": (int, 1000),  # Falco's key; bpfguard's queues are bounded
    "stdout_output.enabled": (bool, True),
    "file_output.enabled": (bool, False),
    "file_output.filename": (str, "./events.txt"),
    "file_output.keep_alive": (bool, False),
    "syslog_output.enabled": (bool, False),
    "program_output.enabled": (bool, False),
    "program_output.program": (str, ""),
    "program_output.keep_alive": (bool, False),
    "http_output.enabled": (bool, False),
    "http_output.url": (str, ""),
    "http_output.insecure": (bool, False),
    "http_output.ca_cert": (str, ""),
    "http_output.user_agent": (str, "bpfguard"),
    "http_output.compress_uploads": (bool, False),
    "rate_limit.rate": (float, 0.0),  # bpfguard: alerts a second per rule; 0 = off
    "rate_limit.burst": (int, 10),
    "rate_limit.dedup_window": (float, 0.0),  # seconds; 0 = off
}


def _parse_options(items: Sequence[str], json_flag: bool | None) -> dict[str, Any]:
    opts = {k: default for k, (_t, default) in _OPTIONS.items()}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"-o {item}: expected KEY=VALUE")
        if key not in _OPTIONS:
            raise ConfigError(f"-o {key}: unknown option; known: {', '.join(_OPTIONS)}")
        typ = _OPTIONS[key][0]
        if typ is bool:
            if raw.lower() not in ("true", "false"):
                raise ConfigError(f"-o {key}={raw}: expected true or false")
            opts[key] = raw.lower() == "true"
        else:
            try:
                opts[key] = typ(raw)
            except ValueError:
                raise ConfigError(f"-o {key}={raw}: expected a {typ.__name__}") from None
            if typ in (int, float) and opts[key] < 0:
                raise ConfigError(f"-o {key}={raw}: must not be negative")
    if json_flag is not None:
        opts["json_output"] = json_flag
    return opts


def _load(paths: Sequence[str]) -> Any:
    from ..rules.loader import load_rules_or_raise

    result = load_rules_or_raise(rule_files(paths, what="-r "))
    for w in result.warnings:
        click.echo(f"bpfguard: warning: {w}", err=True)
    return result


def _engine(result: Any, opts: dict[str, Any], disable_rules: Sequence[str],
            disable_tags: Sequence[str], enable_tags: Sequence[str]) -> Any:
    from ..rules.engine import Engine
    from ..rules.model import Priority

    try:
        min_priority = Priority.parse(opts["priority"])
    except ValueError as exc:
        raise ConfigError(f"-o priority: {exc}") from None
    engine = Engine(result.rules, min_priority=min_priority,
                    rule_matching=opts["rule_matching"], disable_rules=disable_rules,
                    disable_tags=disable_tags, enable_tags=list(enable_tags) or None)
    if not engine.compiled:
        raise ConfigError("no rule is enabled: check -t/-T/-D, -o priority and the rules "
                          "files' `enabled` keys")
    return engine


def _channels(opts: dict[str, Any]) -> Any:
    from ..outputs.channels import (
        Channels,
        FileChannel,
        Format,
        HttpChannel,
        ProgramChannel,
        StdoutChannel,
        SyslogChannel,
    )
    from ..outputs.ratelimit import Limit, RateLimiter

    fmt = Format(json_output=opts["json_output"],
                 json_include_output_property=opts["json_include_output_property"],
                 json_include_tags_property=opts["json_include_tags_property"])
    buffered = opts["buffered_outputs"]
    cap = opts["outputs_queue.capacity"]
    if cap < 1:   # Falco's 0 is unbounded: bpfguard never lets a queue grow without bound
        raise ConfigError(f"-o outputs_queue.capacity={cap}: must be at least 1 "
                          "(bpfguard's output queues are bounded)")
    chans: list[Any] = []
    if opts["stdout_output.enabled"]:
        chans.append(StdoutChannel(fmt, buffered=buffered, capacity=cap))
    if opts["file_output.enabled"]:
        chans.append(FileChannel(opts["file_output.filename"], fmt, buffered=buffered,
                                 keep_alive=opts["file_output.keep_alive"], capacity=cap))
    if opts["syslog_output.enabled"]:
        chans.append(SyslogChannel(fmt, capacity=cap))
    if opts["program_output.enabled"]:
        if not opts["program_output.program"]:
            raise ConfigError("program_output.enabled needs -o program_output.program=CMD")
        chans.append(ProgramChannel(opts["program_output.program"], fmt,
                                    keep_alive=opts["program_output.keep_alive"], capacity=cap))
    if opts["http_output.enabled"]:
        if not opts["http_output.url"]:
            raise ConfigError("http_output.enabled needs -o http_output.url=URL")
        chans.append(HttpChannel(opts["http_output.url"],
                                 insecure=opts["http_output.insecure"],
                                 ca_cert=opts["http_output.ca_cert"] or None,
                                 user_agent=opts["http_output.user_agent"],
                                 compress=opts["http_output.compress_uploads"], capacity=cap))
    limiter = None
    if opts["rate_limit.rate"] > 0 or opts["rate_limit.dedup_window"] > 0:
        limit = Limit(opts["rate_limit.rate"], opts["rate_limit.burst"]) \
            if opts["rate_limit.rate"] > 0 else None
        limiter = RateLimiter(limit=limit, dedup_window=opts["rate_limit.dedup_window"] or None)
    return Channels(chans, limiter=limiter, install_sighup=True)


@click.command(context_settings=_CTX)
@click.option("-r", "--rules", "rule_paths", multiple=True, metavar="FILE|DIR|stock:NAME",
              help="Rules file or directory (repeatable; later files override earlier ones, "
                   "as in Falco), or a ruleset shipped with bpfguard: stock:stable, "
                   "stock:incubating, stock:sandbox (Falco's maturity levels; load stable "
                   "first, as Falco does). Default: stock:stable.")
@click.option("--json/--text", "json_flag", default=None,
              help="Alerts as Falco's JSON (json_output) or its text line (default).")
@click.option("-o", "options", multiple=True, metavar="KEY=VALUE",
              help="A falco.yaml setting: stdout_output.enabled, file_output.enabled/filename/"
                   "keep_alive, syslog_output.enabled, program_output.enabled/program/"
                   "keep_alive, http_output.enabled/url/insecure/ca_cert, json_output, "
                   "json_include_output_property, json_include_tags_property, priority, "
                   "rule_matching, buffered_outputs, outputs_queue.capacity (alerts each "
                   "output queues; what overflows is reported as Falco's drop alert); and "
                   "bpfguard's rate_limit.rate/burst/dedup_window (repeatable).")
@click.option("-D", "disable_rules", multiple=True, metavar="RULE", help="Disable a rule.")
@click.option("-T", "disable_tags", multiple=True, metavar="TAG",
              help="Disable the rules with this tag.")
@click.option("-t", "enable_tags", multiple=True, metavar="TAG",
              help="Run only the rules with this tag (repeatable).")
@click.option("--no-pushdown", is_flag=True,
              help="Trace the rules' syscalls without in-kernel filters (for comparison).")
@click.option("-p", "--pid", "pids", multiple=True, type=int, metavar="PID",
              help="Watch only this process and its descendants (repeatable).")
@click.option("-c", "--cgroup", "cgroups", multiple=True, metavar="PATH",
              help="Watch only this cgroup v2 directory and below (repeatable).")
@click.option("--containers/--no-containers", "ask_runtimes", default=True,
              help="Ask the container runtimes (podman, Docker, containerd, on their default "
                   "sockets; see the agent's `containers` settings) for container names, "
                   "images and pods (default: on).")
@click.option("--stats", is_flag=True, help="Print counters on stderr at exit.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def detect(rule_paths: tuple[str, ...], json_flag: bool | None, options: tuple[str, ...],
           disable_rules: tuple[str, ...], disable_tags: tuple[str, ...],
           enable_tags: tuple[str, ...], no_pushdown: bool, pids: tuple[int, ...],
           cgroups: tuple[str, ...], ask_runtimes: bool, stats: bool,
           command: tuple[str, ...]) -> None:
    """Run Falco rules on this host and print alerts as Falco does.

    \b
    Rules load unmodified (Falco's syntax, macros, lists, exceptions,
    append/override). Only the syscalls some enabled rule can match are
    traced, and what the kernel can check of the rules (result, open mode,
    process name, uid) is checked there: see `bpfguard rules explain`.

    \b
    Examples:
      bpfguard detect                                   stock rules, text alerts
      bpfguard detect --json -r my_rules.yaml           stock rules replaced by mine
      bpfguard detect -r /etc/falco/falco_rules.yaml -r /etc/falco/rules.d
      bpfguard detect -r stock:stable -r stock:incubating -r stock:sandbox
      bpfguard detect -o file_output.enabled=true -o file_output.filename=/var/log/alerts
      bpfguard detect -o http_output.enabled=true -o http_output.url=http://sidekick:2801
      bpfguard detect -- ./suspicious.sh                watch one command, exit with its code
    """
    from ..agent.config import AgentConfig, default_config
    from ..agent.detect import Detector, build_containers
    from ..agent.launch import spawn_waiting, stream
    from . import _exit_code, _require_root, _which

    opts = _parse_options(options, json_flag)
    argv = list(command)
    exe = _which(argv) if argv else None
    for pid in pids:
        if not os.path.exists(f"/proc/{pid}"):
            raise ConfigError(f"--pid {pid}: no such process")
    result = _load(rule_paths)
    engine = _engine(result, opts, disable_rules, disable_tags, enable_tags)
    _require_root()
    channels = _channels(opts)
    out = _ToChannels(channels)
    child, release, status = -1, -1, None
    try:
        # the reader thread hands alerts straight to the channels, which queue
        defaults = AgentConfig(default_config())
        containers = build_containers(defaults) if ask_runtimes else None
        with Detector(engine, pushdown=not no_pushdown, sink=out.write, containers=containers,
                      hold_ns=defaults["containers.hold_ms"] * 1_000_000) as det:
            for pid in pids:
                det.scope.add_pid(pid)
            for cg in cgroups:
                det.scope.add_cgroup(cg)
            if exe is not None:
                child, release = spawn_waiting(exe, argv)
                det.scope.add_pid(child, armed=True)
            det.start()
            if release >= 0:
                os.write(release, b"x")
                os.close(release)
                release = -1
            status = stream(det.pipeline, out, child)
            channels.report_drops()   # what the queues dropped up to the end, in the stream
            if stats:
                _print_stats(det, channels)
    finally:
        if release >= 0:
            os.close(release)
        channels.close()
    if child > 0 and status is not None:
        sys.exit(_exit_code(status))


class _ToChannels:
    """The detector's sink: alerts to the channels, loss records as Falco's drop
    alert. As stream()'s output, its flush() (when the reader is idle, at
    least every 0.1 s) reports what the channels' queues dropped."""

    def __init__(self, channels: Any) -> None:
        self._channels = channels
        self._next_tick = 0.0

    def write(self, item: Mapping[str, Any]) -> None:
        if isinstance(item, Alert):
            self._channels.send(item)
        else:
            self._channels.notice(item)    # {"type": "loss", ...}

    def flush(self) -> None:
        now = time.monotonic()
        if now >= self._next_tick:   # limiter summaries due, output drops: once a second
            self._next_tick = now + 1.0
            self._channels.tick()


def _print_stats(det: Any, channels: Any) -> None:
    drops = det.sensors.drops()
    click.echo(f"bpfguard: {det.pipeline.events} events from the kernel, "
               f"{det.sensors.pushed_down()} dropped there by the pushdown, "
               f"{det.evaluated} evaluated, {det.matched} alerts; kernel losses {drops}, "
               f"queue losses {det.pipeline.queue_drops}; channels "
               f"{ {k: vars(v) for k, v in channels.stats().items()} }", err=True)


@click.group(context_settings=_CTX)
def rules() -> None:
    """Falco rules files: validate, list, explain what the kernel checks; and
    the running agent's rules (`loaded`, `reload`), through its control socket."""


@rules.command(context_settings=_CTX)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@socket_option
def loaded(as_json: bool, socket_path: str) -> None:
    """The rules the running agent enforces, with their alert counts."""
    from ..agent.control import request

    result = request("rules", socket_path=socket_path)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for r in result:
        click.echo(f"{r['alerts']:>8} {r['priority']:<13} {r['name']}"
                   + (f"  ({r['errors']} evaluation errors)" if r["errors"] else ""))


@rules.command(context_settings=_CTX)
@socket_option
def reload(socket_path: str) -> None:
    """Make the running agent re-read its configuration and rules files, all or
    nothing: with a broken file the old rules keep running and this says why."""
    from .agent import reload_agent

    reload_agent(socket_path)


@rules.command(context_settings=_CTX)
@click.argument("files", nargs=-1, required=True, metavar="FILE|DIR|stock:NAME...")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
def validate(files: tuple[str, ...], as_json: bool) -> None:
    """Load rules files as `detect` would and report every error and warning
    with file:line:column and the offending text, and each rule refused
    because it needs a field bpfguard cannot provide (the rest loads). Exit
    code 1 on errors.

    \b
    Examples:
      bpfguard rules validate my_rules.yaml
      bpfguard rules validate stock:stable stock:incubating stock:sandbox my_rules.yaml
    """
    from ..rules.engine import Engine
    from ..rules.loader import load_rules

    result = load_rules(rule_files(files))
    refused = [r for r in result.rules if r.unavailable]
    compile_error = None
    if result.ok:
        try:
            Engine(result.rules)
        except ConfigError as exc:
            compile_error = str(exc)
    if as_json:
        data = json.loads(result.render("json"))
        if compile_error:
            data.setdefault("errors", []).append({"message": compile_error})
        data["refused_rules"] = [
            {"rule": r.name, "fields": list(r.unavailable),
             "position": {"name": r.context.file, "line": r.context.line,
                          "column": r.context.column}} for r in refused]
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(result.render("text"))
        if compile_error:
            click.echo(compile_error)
        for r in refused:
            click.echo(f"{r.context}: refused: rule '{r.name}' needs "
                       f"{', '.join(r.unavailable)}, which bpfguard cannot provide")
        if result.ok and not compile_error:
            click.echo(f"{', '.join(files)}: ok: {len(result.rules) - len(refused)} rules"
                       + (f", {len(refused)} refused" if refused else ""))
    if not result.ok or compile_error:
        sys.exit(1)


@rules.command(name="list", context_settings=_CTX)
@click.option("-r", "--rules", "rule_paths", multiple=True, metavar="FILE|DIR|stock:NAME",
              help="Rules files, or stock:stable, stock:incubating, stock:sandbox "
                   "(default: stock:stable).")
def list_rules(rule_paths: tuple[str, ...]) -> None:
    """List the loaded rules: priority, enabled, event types, tags."""
    from ..rules.compiler import ALL_TYPES, event_types

    result = _load(rule_paths)
    for r in result.rules:
        types = event_types(r.condition) if r.condition is not None else ALL_TYPES
        t = "all event types" if types is ALL_TYPES else ",".join(sorted(types))
        state = f"refused (needs {', '.join(r.unavailable)})" if r.unavailable \
            else "enabled" if r.enabled else "disabled"
        click.echo(f"{r.name}\n    {r.priority}, {state}, {t}; tags: "
                   f"{', '.join(r.tags) or '-'}")


@rules.command(context_settings=_CTX)
@click.option("-r", "--rules", "rule_paths", multiple=True, metavar="FILE|DIR|stock:NAME",
              help="Rules files, or stock:stable, stock:incubating, stock:sandbox "
                   "(default: stock:stable).")
@click.option("--no-pushdown", is_flag=True, help="Show the plan without in-kernel filters.")
def explain(rule_paths: tuple[str, ...], no_pushdown: bool) -> None:
    """Show, per rule, the syscalls it needs and what of its condition the kernel
    checks before an event reaches user space; then the per-syscall filters."""
    from ..rules.pushdown import plan_pushdown

    t0 = time.monotonic()
    result = _load(rule_paths)
    engine = _engine(result, _parse_options([], None), (), (), ())
    plan = plan_pushdown(engine, enabled=not no_pushdown)
    click.echo(plan.explain())
    click.echo(f"({len(engine.compiled)} rules, {len(plan.syscalls)} syscalls traced, "
               f"{len(plan.filters)} with kernel filters; planned in "
               f"{time.monotonic() - t0:.2f}s)", err=True)
