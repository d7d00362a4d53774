"""`bpfguard policy`: Tetragon TracingPolicy files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from ..agent.control import DEFAULT_SOCKET, AgentNotListening, ControlError, request

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
      bpfguard policy delete block-shadow          unload it

    \b
    add, list, mode and delete talk to the agent started by `bpfguard run
    --policy ...` over its control socket (/run/bpfguard/control.sock, or
    --socket), which only root may use. `check` works without an agent.
    """


@policy.command(context_settings=_CTX)
@click.argument("files", nargs=-1, required=True, metavar="POLICY.yaml...",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
def check(files: tuple[Path, ...], as_json: bool) -> None:
    """Validate TracingPolicy files and show what each hook needs from this kernel.

    Every problem is reported with file:line:column, the field's path and why;
    exit code 1 if any file has one, or (as root) needs what this kernel
    lacks. As root, the policy is also compiled as
    `policy add` would (kernel functions checked against BTF, tracepoint
    fields, uprobe binaries), and each hook and action is matched against
    what `bpfguard probe` finds this kernel can do (e.g. "fd_install needs
    kprobes or BPF trampolines (fentry); this kernel has neither").
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
            report.append({"file": str(f), "ok": False, "problems": str(exc)})
            if not as_json:
                click.echo(str(exc))
            continue
        problems = ""
        if feats is not None:  # compiled as `policy add` would: this kernel's BTF, tracefs
            try:
                compile_policy(pol, features=feats)
            except PolicyError as exc:
                failed = True
                problems = str(exc)
        reqs = requirements(pol, feats) if feats is not None else []
        servable = all(r.available for r in reqs)  # policy add refuses the rest too
        failed = failed or not servable
        entry = {"file": str(f), "ok": not problems and servable, "name": pol.name,
                 "mode": pol.mode,
                 "warnings": [str(w) for w in pol.warnings],
                 "requirements": [{"hook": r.hook, "purpose": r.purpose, "backend": r.backend,
                                   "available": r.available, "message": r.message}
                                  for r in reqs]}
        if problems:
            entry["problems"] = problems
        report.append(entry)
        if as_json:
            continue
        if problems:
            click.echo(problems)
        elif not entry["ok"]:
            click.echo(f"{f}: policy {pol.name!r} cannot load on this kernel:")
        else:
            click.echo(f"{f}: ok: policy {pol.name!r} ({pol.mode} mode), "
                       f"{len(pol.hooks)} hook(s)")
        for w in pol.warnings:
            click.echo(f"  warning: {w}")
        if feats is None:
            click.echo("  (not root: what this kernel provides is not probed)")
        for r in reqs:
            click.echo(f"  {'ok  ' if r.available else 'MISSING'} {r.message}")
    if as_json:
        click.echo(json.dumps(report, indent=2))
    if failed:
        sys.exit(1)



def _say_error(msg: str) -> None:
    click.echo(f"bpfguard: error: {msg}", err=True)


@policy.command(context_settings=_CTX)
@click.argument("files", nargs=-1, required=True, metavar="POLICY.yaml...",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@socket_option
def add(files: tuple[Path, ...], socket_path: str) -> None:
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
      sudo bpfguard policy add --socket /run/other/control.sock p.yaml

    Needs an agent started with `bpfguard run --policy FILE`; the control
    socket is root-only.
    """
    failed = False
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            _say_error(f"{f}: {getattr(exc, 'strerror', None) or exc}")
            failed = True
            continue
        try:
            summary: Any = request("add", socket_path=socket_path, text=text, source=str(f))
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


_COLUMNS = ("NAME", "MODE", "HOOKS", "SCOPE", "EVENTS", "ACTIONS", "WOULD-ACT", "RATE-LIMITED",
            "FILE")


def _row(p: dict[str, Any]) -> tuple[str, ...]:
    counters = p.get("counters")
    c: dict[str, Any] = counters if isinstance(counters, dict) else {}

    def cell(v: Any) -> str:
        return "-" if v is None else str(v)

    return (cell(p.get("name")), cell(p.get("mode")), cell(p.get("hooks")), cell(p.get("scope")),
            cell(c.get("posted")), cell(c.get("actions")), cell(c.get("would_act")),
            cell(c.get("rate_limited")), cell(p.get("file")))


@policy.command(name="list", context_settings=_CTX)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@socket_option
def list_policies(as_json: bool, socket_path: str) -> None:
    """Show the policies loaded in the running agent, with their counters.

    \b
    Columns:
      SCOPE         where it applies: the host and every container, or the
                    containers its podSelector, containerSelector or
                    namespace (TracingPolicyNamespaced) select, with how
                    many of them run now
      EVENTS        events the policy's hooks reported
      ACTIONS       actions taken (enforce mode): Sigkill, Override, ...
      WOULD-ACT     actions a monitor-mode policy would have taken
      RATE-LIMITED  events not reported because of a rateLimit

    
    --json also gives agent_actions: the GetUrl and DnsLookup requests the
    agent made for the policy ("GetUrl ok", "... failed", and "... skipped":
    one target is requested at most once a second, 64 at most wait).

    \b
    Examples:
      sudo bpfguard policy list
      sudo bpfguard policy list --json | jq '.[].counters'

    Needs an agent started with `bpfguard run --policy FILE`; the control
    socket is root-only.
    """
    result = request("list", socket_path=socket_path)
    policies: list[Any] = result if isinstance(result, list) else []
    if as_json:
        click.echo(json.dumps(policies, indent=2))
        return
    if not policies:
        click.echo("no policies loaded (add one with `bpfguard policy add FILE`)", err=True)
        return
    rows = [_COLUMNS] + [_row(p) for p in policies if isinstance(p, dict)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    numeric = {2, 4, 5, 6, 7}   # HOOKS and the counters; SCOPE is text
    for r in rows:
        cells = [v.rjust(w) if i in numeric else v.ljust(w)
                 for i, (v, w) in enumerate(zip(r, widths, strict=True))]
        click.echo("  ".join(cells).rstrip())


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
