"""`bpfguard policy`: Tetragon TracingPolicy files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

__all__ = ["policy"]

_CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=_CTX)
def policy() -> None:
    """Tetragon TracingPolicy files (cilium.io/v1alpha1), unmodified.

    \b
    For now: `check` validates a policy as Tetragon would and says, hook by
    hook, which kernel feature bpfguard would use on this machine, or which
    one is missing. Loading policies into the kernel is the next step.
    """


@policy.command(context_settings=_CTX)
@click.argument("files", nargs=-1, required=True, metavar="POLICY.yaml...",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
def check(files: tuple[Path, ...], as_json: bool) -> None:
    """Validate TracingPolicy files and show what each hook needs from this kernel.

    Every problem is reported with file:line:column, the field's path and why;
    exit code 1 if any file has one. As root, each hook and action is matched
    against what `bpfguard probe` finds this kernel can do (e.g. "fd_install
    needs kprobes or BPF trampolines (fentry); this kernel has neither").
    """
    from ..policy import PolicyError, load_policy, requirements

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
        reqs = requirements(pol, feats) if feats is not None else []
        entry = {"file": str(f), "ok": True, "name": pol.name, "mode": pol.mode,
                 "warnings": [str(w) for w in pol.warnings],
                 "requirements": [{"hook": r.hook, "purpose": r.purpose, "backend": r.backend,
                                   "available": r.available, "message": r.message}
                                  for r in reqs]}
        report.append(entry)
        if as_json:
            continue
        click.echo(f"{f}: ok: policy {pol.name!r} ({pol.mode} mode), {len(pol.hooks)} hook(s)")
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

