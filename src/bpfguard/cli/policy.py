"""`bpfguard policy`: Tetragon TracingPolicy files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from ..agent.control import DEFAULT_SOCKET, AgentNotListening, ControlError, request
from ..errors import BpfguardError

__all__ = ["policy", "socket_option"]

_CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

socket_option = click.option(
    "--socket", "socket_path", default=DEFAULT_SOCKET, show_default=True, metavar="PATH",
    help="The running agent's control socket (root-only), or tcp://HOST:PORT for its TCP "
         "endpoint (token in $BPFGUARD_CONTROL_TOKEN).")


@click.group(context_settings=_CTX)
def policy() -> None:
    """Tetragon TracingPolicy files (cilium.io/v1alpha1), unmodified.

    \b
    Check a policy, then manage the policies of the running agent:
      bpfguard policy check block-shadow.yaml      validate; what each hook needs here
      bpfguard run --policy block-shadow.yaml      start the agent with it
      bpfguard policy add more.yaml                load another one into the agent, live
      bpfguard policy list                         loaded policies, events, actions
      bpfguard policy mode block-shadow monitor    stop acting, keep reporting
      bpfguard policy disable block-shadow         detach it, keep it (enable: back)
      bpfguard policy delete block-shadow          unload it

    \b
    add, list, mode, enable, disable and delete talk to the agent started by `bpfguard run
    --policy ...` over its control socket (/run/bpfguard/control.sock, or
    --socket), which only root may use. `check` works without an agent.
    """


@policy.command(context_settings=_CTX)
@click.argument("files", nargs=-1, required=True, metavar="POLICY.yaml...",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
def check(files: tuple[Path, ...], as_json: bool) -> None:
    """Validate TracingPolicy files and show what each hook needs from this kernel.

    Every problem is reported with file:line:column, the field's path and why,
    and sorted by whose it is: the policy's own (a bad value, an unknown
    key), this machine's (POLICY_UNAVAILABLE: a kernel feature, function or
    binary it lacks) or bpfguard's (POLICY_UNSUPPORTED: not served yet). A
    kernel-function hook refused here for lack of kprobes or trampolines is
    still compiled for a kernel that has them, so what would remain there
    is named too ("on a kernel that has it, still refused: ..."). Exit code
    1 if any file has a problem, or (as root) needs what this kernel lacks.

    As root, the policy is also compiled as `policy add` would (kernel
    functions checked against BTF, tracepoint fields, uprobe binaries), and
    each hook and action is matched against what `bpfguard probe` finds
    this kernel can do (e.g. "fd_install needs kprobes or BPF trampolines
    (fentry); this kernel has neither").
    """
    from ..policy import PolicyError, load_policy, requirements
    from ..policy.compiler import compile_policy

    feats = None
    if os.geteuid() == 0:
        from ..probe import features

        feats = features()
    failed = False
    report = []
    for f in files:
        try:
            pol = load_policy(f)
        except PolicyError as exc:
            failed = True
            report.append({"file": str(f), "ok": False, "problems": _problems(exc)})
            if not as_json:
                click.echo(str(exc))
                click.echo(_tally(exc))
            continue
        compiled_error: PolicyError | None = None
        warnings = list(pol.warnings)
        if feats is not None:  # compiled as `policy add` would: this kernel's BTF, tracefs
            try:
                warnings += compile_policy(pol, features=feats).warnings
            except PolicyError as exc:
                failed = True
                compiled_error = exc
        reqs = requirements(pol, feats) if feats is not None else []
        servable = all(r.available for r in reqs)  # policy add refuses the rest too
        failed = failed or not servable
        entry: dict[str, Any] = {
            "file": str(f), "ok": compiled_error is None and servable, "name": pol.name,
            "mode": pol.mode, "warnings": [str(w) for w in warnings],
            "requirements": [{"hook": r.hook, "purpose": r.purpose, "backend": r.backend,
                              "available": r.available, "message": r.message}
                             for r in reqs]}
        if compiled_error is not None:
            entry["problems"] = _problems(compiled_error)
        report.append(entry)
        if as_json:
            continue
        if compiled_error is not None:
            click.echo(str(compiled_error))
            click.echo(_tally(compiled_error))
        elif not entry["ok"]:
            click.echo(f"{f}: policy {pol.name!r} cannot load on this kernel:")
        else:
            click.echo(f"{f}: ok: policy {pol.name!r} ({pol.mode} mode), "
                       f"{len(pol.hooks)} hook(s)")
        for w in warnings:
            click.echo(f"  warning: {w}")
        if feats is None:
            click.echo("  (not root: what this kernel provides is not probed)")
        for r in reqs:
            click.echo(f"  {'ok  ' if r.available else 'MISSING'} {r.message}")
    if as_json:
        click.echo(json.dumps(report, indent=2))
    if failed:
        sys.exit(1)


def _whose(code: str) -> str:
    """Whose problem a refusal is: this machine's (a kernel feature, function
    or binary it lacks), bpfguard's (what it does not serve yet), or the
    policy's own."""
    return {"POLICY_UNAVAILABLE": "machine", "POLICY_UNSUPPORTED": "bpfguard"}.get(code,
                                                                              "policy")


def _problems(exc: Any) -> list[dict[str, Any]]:
    return [{"line": p.context.line, "column": p.context.column, "path": p.context.name,
             "code": str(p.code), "whose": _whose(str(p.code)), "message": p.message}
            for p in exc.problems]


def _tally(exc: Any) -> str:
    """One line that sorts a policy's problems by whose they are."""
    n = {"machine": 0, "bpfguard": 0, "policy": 0}
    for p in exc.problems:
        n[_whose(str(p.code))] += 1
    parts = [f"{n['policy']} in the policy itself"] if n["policy"] else []
    if n["machine"]:
        parts.append(f"{n['machine']} for what this machine lacks (POLICY_UNAVAILABLE)")
    if n["bpfguard"]:
        parts.append(f"{n['bpfguard']} bpfguard does not serve yet (POLICY_UNSUPPORTED)")
    return "  " + "; ".join(parts)


def _say_error(msg: str) -> None:
    click.echo(f"bpfguard: error: {msg}", err=True)


@policy.command(context_settings=_CTX)
@click.argument("files", nargs=-1, required=True, metavar="POLICY.yaml...",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True,
              help="Replace a loaded policy of the same name, make before break: its new "
                   "version is attached before the old one is detached, so enforcement "
                   "never lapses (delete then add leaves a gap). It keeps the old one's id and "
                   "counters.")
@socket_option
def add(files: tuple[Path, ...], socket_path: str, replace: bool) -> None:
    """Load TracingPolicy files into the running agent.

    \b
    Each file is loaded whole or not at all: if the policy is invalid, or this
    kernel cannot provide one of its hooks, nothing of it is attached and the
    reason is printed (the other files are still tried). Exit code 1 if any
    file failed. A policy with the option `policy-mode: monitor` only reports
    what it would have done; switch it later with `bpfguard policy mode`.

    \b
    Examples:
      sudo bpfguard policy add block-shadow.yaml
      sudo bpfguard policy add policies/*.yaml
      sudo bpfguard policy add --replace block-shadow.yaml   a new version, no gap
      sudo bpfguard policy add --socket /run/other/control.sock p.yaml

    Needs an agent started with `bpfguard run --policy FILE`; the control
    socket is root-only.
    """
    from ..inputs import InputError, read_text
    from ..policy.loader import MAX_POLICY_BYTES

    failed = False
    for f in files:
        try:
            text = read_text(f, MAX_POLICY_BYTES)
        except InputError as exc:
            _say_error(f"{f}:{exc.line}:{exc.column}: {exc}" if exc.line else f"{f}: {exc}")
            failed = True
            continue
        except OSError as exc:
            _say_error(f"{f}: {exc.strerror}")
            failed = True
            continue
        try:
            summary: Any = request("add", socket_path=socket_path, text=text, source=str(f),
                                   replace=replace)
        except AgentNotListening:
            raise
        except ControlError as exc:
            msg = str(exc)
            _say_error(msg if msg.startswith(str(f)) else f"{f}: {msg}")
            failed = True
            continue
        if not isinstance(summary, dict):
            summary = {}
        hooks = summary.get("hooks")
        nhooks = f", {hooks} hook{'s' if hooks != 1 else ''}" if isinstance(hooks, int) else ""
        click.echo(f"added policy {summary.get('name', '?')!r} "
                   f"({summary.get('mode', '?')} mode{nhooks}) from {f}")
    if failed:
        sys.exit(1)


# tetra tracingpolicy list's columns, in its order, then bpfguard's own
_COLUMNS = ("ID", "NAME", "DOMAIN", "STATE", "FILTERID", "NAMESPACE", "SENSORS", "KERNELMEMORY",
            "MODE", "NPOST", "NENFORCE", "NMONITOR", "HOOKS", "SCOPE", "RATE-LIMITED", "FILE")
_NUMERIC = {"ID", "FILTERID", "NPOST", "NENFORCE", "NMONITOR", "HOOKS", "RATE-LIMITED"}
# Tetragon's domain for policies not from Kubernetes (its gRPC API and files)
_DOMAIN = "grpc"


def _counts(p: dict[str, Any]) -> dict[str, int]:
    counters = p.get("counters")
    return {k: v for k, v in counters.items() if isinstance(v, int)} \
        if isinstance(counters, dict) else {}


def _row(p: dict[str, Any]) -> tuple[str, ...]:
    c = _counts(p)

    def cell(v: Any) -> str:
        return "-" if v is None or v == "" else str(v)

    enforced = (c.get("signals", 0) + c.get("overrides", 0) + c.get("notify_enforcer", 0)
                + c.get("sets", 0))
    monitored = (c.get("would_signal", 0) + c.get("would_override", 0)
                 + c.get("would_notify_enforcer", 0) + c.get("would_set", 0))
    return (cell(p.get("id")), cell(p.get("name")), _DOMAIN, cell(p.get("state")),
            cell(p.get("filter_id")), p.get("namespace") or "(global)",
            ",".join(p.get("sensors") or ()), "0 B", cell(p.get("mode")),
            cell(c.get("posted")), str(enforced), str(monitored), cell(p.get("hooks")),
            cell(p.get("scope")), cell(c.get("rate_limited")), cell(p.get("file")))


def _u64(v: Any) -> str:
    return str(int(v))  # protojson writes 64-bit integers as strings


def tetragon_list_json(policies: list[dict[str, Any]]) -> dict[str, Any]:
    """The agent's policies as Tetragon's ListTracingPoliciesResponse in
    protojson (tetra tracingpolicy list -o json): proto field names, enums
    by name, 64-bit integers as strings, zero values left out."""
    out = []
    for p in policies:
        c = _counts(p)
        enabled = p.get("state") == "enabled"
        entry: dict[str, Any] = {"id": _u64(p.get("id", 0)), "name": p.get("name", "")}
        if p.get("namespace"):
            entry["namespace"] = p["namespace"]
        if p.get("sensors"):
            entry["sensors"] = list(p["sensors"])
        if enabled:
            entry["enabled"] = True
        if p.get("filter_id"):
            entry["filter_id"] = _u64(p["filter_id"])
        entry["state"] = "TP_STATE_ENABLED" if enabled else "TP_STATE_DISABLED"
        entry["mode"] = "TP_MODE_MONITOR" if p.get("mode") == "monitor" else "TP_MODE_ENFORCE"
        counters = {k: _u64(c[src]) for k, src in (
            ("post", "posted"), ("signal", "signals"), ("monitor_signal", "would_signal"),
            ("override", "overrides"), ("monitor_override", "would_override"),
            ("notify_enforcer", "notify_enforcer"),
            ("monitor_notify_enforcer", "would_notify_enforcer"),
            ("set", "sets"), ("monitor_set", "would_set"),
            ("nopost", "nopost")) if c.get(src)}
        entry["stats"] = {"action_counters": counters} if counters else {}
        entry["domain"] = _DOMAIN
        out.append(entry)
    return {"policies": out} if out else {}


def _pinned_policies(pin_dir: Path | None) -> list[dict[str, Any]] | None:
    """The policies dead agents left pinned (see bpfguard.agent.pins), with a
    note on stderr; None when there are none."""
    from ..agent.pins import POLICY_PINS, pinned_agents

    try:
        agents = [a for a in pinned_agents(pin_dir or POLICY_PINS) if not a.alive]
    except (OSError, BpfguardError):   # not root, say: the socket's error is the one to show
        return None
    if not agents:
        return None
    for a in agents:
        what = f"{len(a.policies)} policies" if a.policies else "pins of unknown policies " \
            "(their state is unreadable)"
        click.echo(f"no agent answers; agent pid {a.pid} died and left {what} enforced by the "
                   f"kernel, pinned at {a.path} (the next agent adopts them; `rm -r {a.path}` "
                   "ends them)", err=True)
    return [{k: v for k, v in p.items() if k not in ("origin", "text")}
            for a in agents for p in a.policies]


@policy.command(name="list", context_settings=_CTX)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True,
              help="json: Tetragon's ListTracingPoliciesResponse, as `tetra tracingpolicy "
                   "list -o json` prints it.")
@click.option("--json", "as_json", is_flag=True,
              help="bpfguard's own JSON: every counter, the scope, the GetUrl/DnsLookup "
                   "requests.")
@click.option("--pin-dir", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="Where agents pin their enforcement (the agent's policies.pin_dir; "
                   "default /sys/fs/bpf/bpfguard/policies), read when no agent answers.")
@socket_option
def list_policies(output: str, as_json: bool, socket_path: str, pin_dir: Path | None) -> None:
    """Show the policies of the running agent, with their counters.

    \b
    The first columns are `tetra tracingpolicy list`'s, so scripts written
    for tetra read them the same:
      ID            in load order
      DOMAIN        grpc (Tetragon's name for policies not from Kubernetes)
      STATE         enabled, or disabled (`bpfguard policy disable`)
      FILTERID      the policy's container filter (0: host and all containers)
      NAMESPACE     a TracingPolicyNamespaced's, else (global)
      SENSORS       Tetragon's sensor names for its hooks (generic_kprobe, ...)
      KERNELMEMORY  maps of its own: none (every policy shares the engine's)
      NPOST         events reported
      NENFORCE      signals sent and return values overridden
      NMONITOR      the same not done because the policy is in monitor mode
    and bpfguard's:
      HOOKS         hooks attached (0 while disabled)
      SCOPE         where it applies: the host and every container, or the
                    containers its podSelector, containerSelector or
                    namespace select, with how many run now
      RATE-LIMITED  events not reported because of a rateLimit

    --json gives every counter and agent_actions: the GetUrl and DnsLookup
    requests the agent made ("GetUrl ok", "... failed", and "... skipped":
    one target is requested at most once a second, 64 at most wait).

    With no agent listening, the policies an agent pinned (it died with an
    enforce-mode policy loaded, and the kernel still enforces them) are
    listed from the pins, with their counters, and a note on stderr says
    so; `rm -r` of the directory it names ends their enforcement.

    \b
    Examples:
      sudo bpfguard policy list
      sudo bpfguard policy list -o json | jq '.policies[].stats'
      sudo bpfguard policy list --json | jq '.[].counters'

    Needs an agent started with `bpfguard run --policy FILE`; the control
    socket is root-only.
    """
    if as_json and output == "json":
        raise click.UsageError("--json (bpfguard's) and -o json (Tetragon's) are two formats; "
                               "give one")
    try:
        result = request("list", socket_path=socket_path)
    except AgentNotListening:
        result = _pinned_policies(pin_dir)
        if result is None:
            raise
    policies: list[Any] = [p for p in result if isinstance(p, dict)] \
        if isinstance(result, list) else []
    if as_json:
        click.echo(json.dumps(policies, indent=2))
        return
    if output == "json":
        click.echo(json.dumps(tetragon_list_json(policies)))
        return
    if not policies:
        click.echo("no policies loaded (add one with `bpfguard policy add FILE`)", err=True)
        return
    rows = [_COLUMNS] + [_row(p) for p in policies]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    for r in rows:
        cells = [v.rjust(w) if _COLUMNS[i] in _NUMERIC else v.ljust(w)
                 for i, (v, w) in enumerate(zip(r, widths, strict=True))]
        click.echo("   ".join(cells).rstrip())


@policy.command(context_settings=_CTX)
@click.argument("name")
@socket_option
def enable(name: str, socket_path: str) -> None:
    """Load a disabled policy's hooks again (as `tetra tracingpolicy enable`).

    The policy is compiled afresh for this kernel and keeps its mode and
    counters; if it no longer loads, it stays disabled and the reason is
    shown.

    \b
    Example:
      sudo bpfguard policy enable block-shadow
    """
    request("enable", socket_path=socket_path, name=name)
    click.echo(f"tracing policy {name!r} enabled")


@policy.command(context_settings=_CTX)
@click.argument("name")
@socket_option
def disable(name: str, socket_path: str) -> None:
    """Detach a policy's hooks but keep it loaded (as `tetra tracingpolicy
    disable`): it stops reporting and acting at once, stays in `policy
    list` as disabled with its counters, and `policy enable` brings it back.

    \b
    Example:
      sudo bpfguard policy disable block-shadow
    """
    request("disable", socket_path=socket_path, name=name)
    click.echo(f"tracing policy {name!r} disabled")


@policy.command(context_settings=_CTX)
@click.argument("name")
@socket_option
def delete(name: str, socket_path: str) -> None:
    """Unload a policy from the running agent: its hooks are detached and its
    actions stop at once.

    \b
    Example:
      sudo bpfguard policy delete block-shadow

    NAME is the policy's metadata.name, as `bpfguard policy list` shows it.
    Needs an agent started with `bpfguard run --policy FILE`; the control
    socket is root-only.
    """
    request("delete", socket_path=socket_path, name=name)
    click.echo(f"deleted policy {name!r}")


@policy.command(name="mode", context_settings=_CTX)
@click.argument("name")
@click.argument("mode", type=click.Choice(["enforce", "monitor"]))
@socket_option
def set_mode(name: str, mode: str, socket_path: str) -> None:
    """Switch a loaded policy between enforce and monitor mode, live.

    \b
    enforce: the policy's actions (Sigkill, Override, ...) are carried out.
    monitor: nothing is done to the process; events are still reported and
             what would have been done is counted (WOULD-ACT in `policy list`).

    \b
    Examples:
      sudo bpfguard policy mode block-shadow monitor     try a policy safely
      sudo bpfguard policy mode block-shadow enforce     then enforce it

    Needs an agent started with `bpfguard run --policy FILE`; the control
    socket is root-only.
    """
    request("mode", socket_path=socket_path, name=name, mode=mode)
    click.echo(f"policy {name!r} is now in {mode} mode")
