"""`bpfguard seccomp`: record -> audit -> enforce, plus check and diff."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from ..errors import BpfguardError, ConfigError
from ..seccomp.profile import Profile, load_profile
from . import _exit_code, _require_root, _which

__all__ = ["seccomp"]

_CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _say(msg: str) -> None:
    click.echo(f"bpfguard seccomp: {msg}", err=True)


def _write_atomically(path: Path, text: str, what: str = "-o") -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.")
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None
    except BaseException:
        os.unlink(tmp)
        raise


def _check_writable(path: Path, what: str) -> None:
    """Fails now, not after the command ran, when `path` cannot be written."""
    if not path.parent.is_dir():
        raise ConfigError(f"{what} {path}: directory {path.parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None
    os.close(fd)
    os.unlink(tmp)


@click.group(context_settings=_CTX)
def seccomp() -> None:
    """Seccomp profiles from what a workload really does.

    \b
    The workflow: learn, then audit, then enforce.
      bpfguard seccomp record -o app.json -- ./app       learn (in-kernel, no ptrace)
      bpfguard seccomp run --profile app.json --log -- ./app   audit: deny nothing, report
      bpfguard seccomp run --profile app.json -- ./app    enforce (libseccomp)
      bpfguard seccomp check app.json                    validate, show what applies here
      bpfguard seccomp diff old.json new.json            what changed

    Profiles are OCI runtime-spec `linux.seccomp` JSON or Docker's format
    (archMap, includes/excludes); both are read and written.
    """


@seccomp.command(context_settings=_CTX)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the profile (replaced atomically; not written if "
                   "nothing was recorded).")
@click.option("--format", "fmt", type=click.Choice(["oci", "docker"]), default=None,
              help="oci: runtime-spec linux.seccomp with `architectures` (default); docker: "
                   "Docker's format with `archMap`. With --base: the base's format.")
@click.option("--base", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Merge into this profile: syscalls it names keep their rules, new ones "
                   "are appended as ALLOW.")
@click.option("--args", "with_args", is_flag=True,
              help="Argument rules instead of a blanket allow for socket (family), clone "
                   "(namespace flags), personality and prctl (operation): only the values "
                   "seen are allowed. clone3 then gets ENOSYS so libc falls back to clone.")
@click.option("-p", "--pid", "pids", multiple=True, type=int, metavar="PID",
              help="Record this running process, its threads and descendants, "
                   "including future children (repeatable).")
@click.option("-c", "--cgroup", "cgroups", multiple=True, metavar="PATH",
              help="Record every process in this cgroup v2 directory and below (repeatable).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Stop after S seconds (otherwise: when the recorded processes are all "
                   "gone, or at Ctrl-C).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def record(output: Path, fmt: str | None, base: Path | None, with_args: bool,
           pids: tuple[int, ...], cgroups: tuple[str, ...], duration: float | None,
           command: tuple[str, ...]) -> None:
    """Record the syscalls of a command (or running processes) into a profile.

    \b
    With `-- CMD ARGS...`: runs CMD and records every syscall of it, its
    threads and all its descendants, from its execve to the exit of the last
    of them; then exits with CMD's exit code. Nothing of bpfguard's own or
    the launcher's syscalls is in the profile.

    \b
    The syscall set is kept in the kernel (one byte per syscall, no event per
    call), so recording costs the workload about one map lookup per syscall.
    32-bit (compat) syscalls are recorded under their own architecture in the
    profile's metadata. The profile denies everything else with EPERM.

    \b
    Examples:
      bpfguard seccomp record -o tar.json -- tar czf /tmp/x.tgz /etc
      bpfguard seccomp record --args --format docker -o app.json -- python3 app.py
      bpfguard seccomp record --pid 1234 --duration 60 -o svc.json
      bpfguard seccomp record --base docker-default.json -o mine.json -- ./app
    """
    from ..seccomp import (
        RecordingInfo,
        SeccompRecorder,
        Target,
        profile_from_recording,
        resolve_for,
    )
    from ..seccomp import record as run_record

    argv = list(command)
    if argv and (pids or cgroups):
        raise ConfigError("give a command, or --pid/--cgroup, not both")
    if not argv and not pids and not cgroups:
        raise ConfigError("nothing to record: give `-- CMD ARGS...`, --pid or --cgroup")
    base_profile = load_profile(base) if base else None
    exe = _which(argv) if argv else None
    _check_writable(output, "-o")
    _require_root()
    source: dict[str, Any]
    for pid in pids:
        if not os.path.exists(f"/proc/{pid}"):
            raise ConfigError(f"--pid {pid}: no such process")
    with SeccompRecorder(args=with_args) as rec:
        result = run_record(rec, argv=argv or None, exe=exe, pids=pids, cgroups=cgroups,
                            duration=duration, on_status=_say)
    if argv:
        source = {"command": argv}
    else:
        source = {k: v for k, v in (("pids", list(pids)), ("cgroups", list(cgroups))) if v}
    names = result.recording.names()
    code = _exit_code(result.status) if result.status is not None else 0
    if not names:
        raise BpfguardError("nothing was recorded (did the command start?); no profile written")
    info = RecordingInfo(source, result.started, result.ended, str(base) if base else None)
    profile = profile_from_recording(result.recording, info, base=base_profile,
                                     with_args=with_args)
    out_fmt = fmt or (base_profile.format if base_profile else "oci")
    if out_fmt == "oci" and profile.format == "docker":
        target = Target.current()
        profile = resolve_for(profile, target)
        if profile.metadata is not None:
            profile.metadata.setdefault("notes", []).append(
                f"Docker's archMap and includes/excludes were resolved for this machine "
                f"({target.machine}, kernel {'.'.join(map(str, target.kernel))}, the "
                f"capabilities of the recording user): OCI has no such conditions")
    _write_atomically(output, profile.dumps(out_fmt))
    per_arch = ", ".join(f"{a.removeprefix('SCMP_ARCH_')}: {len(n)}"
                         for a, n in sorted(result.recording.syscalls.items()))
    added = f", {len(profile.metadata['added'])} added to the base" \
        if base_profile and profile.metadata else ""
    _say(f"{len(names)} syscalls ({per_arch}){added} -> {output} ({out_fmt})")
    for note in (profile.metadata or {}).get("notes", []):
        _say(f"note: {note}")
    if argv and code:
        _say(f"note: {argv[0]} exited with {code}; the profile covers what it did until then")
    sys.exit(code)


_ACTIONS_LOGGED = Path("/proc/sys/kernel/seccomp/actions_logged")


def _warn_unlogged(audit: bool) -> None:
    """The kernel logs only the actions in kernel.seccomp.actions_logged."""
    try:
        logged = set(_ACTIONS_LOGGED.read_text().split())
    except OSError:
        return
    needed = {"log"} if audit else {"errno", "kill_process", "kill_thread", "trap", "trace"}
    if missing := sorted(needed - logged):
        _say(f"warning: kernel.seccomp.actions_logged lacks {', '.join(missing)}: "
             "those actions are applied but cannot be reported")


def _load_or_explain(path: Path) -> Profile:
    profile = load_profile(path)
    for w in profile.warnings:
        _say(f"warning: {path}: {w}")
    return profile


@seccomp.command(context_settings=_CTX)
@click.option("--profile", "profile_path", required=True, metavar="PROFILE.json",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The profile to apply (OCI or Docker format).")
@click.option("--log", "audit", is_flag=True,
              help="Audit mode: every action but ALLOW becomes SCMP_ACT_LOG. Nothing is "
                   "denied; what the profile would have denied is reported.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the (would-be) denials as JSON to this file.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(profile_path: Path, audit: bool, report: Path | None, command: tuple[str, ...]) -> None:
    """Run a command confined by a profile, and report what the kernel denied.

    \b
    The profile is applied through libseccomp right before CMD's execve and
    inherited by everything CMD starts. Denied syscalls are reported after CMD
    exits with the process that made them (read from the kernel's audit
    records: seccomp's own verdicts). Exits with CMD's exit code.

    \b
    Examples:
      bpfguard seccomp run --profile tar.json -- tar czf /tmp/y.tgz /etc
      bpfguard seccomp run --profile app.json --log --report would.json -- ./app
      bpfguard seccomp run --profile docker-default.json -- sh
    """
    from ..seccomp import plan_filter, run_confined

    argv = list(command)
    profile = _load_or_explain(profile_path)
    plan = plan_filter(profile, audit=audit)
    verdicts = plan_filter(profile) if audit else plan
    exe = _which(argv)
    if report:
        _check_writable(report, "--report")
    track = os.geteuid() == 0
    if not track:
        _say("not root: enforcing without reports (recording the process tree and reading "
             "the audit log need root)")
    else:
        _warn_unlogged(audit)
    result = run_confined(plan, exe, argv, track=track)
    if result.tracking_error:
        _say(f"warning: enforced, but nothing can be reported: {result.tracking_error}")
    elif track and not result.audit_available:
        _say("warning: the kernel delivered no audit records (audit disabled?): "
             "denials cannot be reported")
    if result.lost:
        _say(f"warning: {result.lost} audit records were lost (socket overflow or the "
             "kernel's audit backlog): the counts below are low")
    if result.unattributed:
        _say(f"warning: {result.unattributed} processes of the tree could not be tracked: "
             "their denials are not reported")
    rows = []
    for d in result.denials:
        row = d.to_dict()
        row["profile_action"], row["rule_comment"] = verdicts.action_for(d.syscall)
        rows.append(row)
    # a LOG rule allows (and logs): not a denial
    denied = [r for r in rows if audit or r["action"] != "SCMP_ACT_LOG"]
    logged = [r for r in rows if not audit and r["action"] == "SCMP_ACT_LOG"]
    for title, group in ((f"the profile {'would have denied' if audit else 'denied'}", denied),
                         ("allowed and logged by SCMP_ACT_LOG rules", logged)):
        if not group:
            continue
        _say(f"{title} {sum(r['count'] for r in group)} call(s) of "
             f"{len({r['syscall'] for r in group})} syscall(s):")
        for row in group:
            procs = row["processes"]
            who = ", ".join(f"pid {p['pid']} {p['comm']} ({p['exe']})" for p in procs[:3])
            more = f" and {len(procs) - 3} more processes" if len(procs) > 3 else ""
            why = f" [{row['rule_comment']}]" if row["rule_comment"] else ""
            click.echo(f"  {row['syscall']} ({row['arch'].removeprefix('SCMP_ARCH_')}) "
                       f"x{row['count']}: {row['profile_action']}{why} - {who}{more}", err=True)
    if not rows and track and result.audit_available and not result.tracking_error:
        _say("audit mode: nothing would have been denied" if audit else "nothing was denied")
    if report:
        _write_atomically(report, json.dumps({"audit": audit, "profile": str(profile_path),
                                              "command": argv, "denials": rows}, indent=2) + "\n",
                          "--report")
    sys.exit(_exit_code(result.status))


@seccomp.command(context_settings=_CTX)
@click.argument("profile_path", metavar="PROFILE.json",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-v", "--verbose", is_flag=True, help="List every rule left out on this machine.")
def check(profile_path: Path, verbose: bool) -> None:
    """Validate a profile and show what it becomes on this machine.

    Every problem is listed with its JSON path ($.syscalls[3].action) and the
    exit code is 1; an unknown key is a problem too (runc would ignore it). The
    filter is then built with libseccomp (not loaded), so what passes here also
    applies.

    Warnings (exit code 0) say what runc, crun and libseccomp really do where a
    profile reads otherwise: a key given twice, a syscall in two rules with
    different actions, two conditions on one argument in a rule.
    """
    from ..seccomp import build_filter, plan_filter

    profile = _load_or_explain(profile_path)
    plan = plan_filter(profile)
    build_filter(plan)
    names = profile.named()
    default = profile.default_action + (
        f"({profile.default_errno_ret})" if profile.default_errno_ret is not None else "")
    warned = f"; {len(profile.warnings)} warning(s) above" if profile.warnings else ""
    click.echo(f"{profile_path}: ok ({profile.format} format): {len(profile.syscalls)} rules "
               f"naming {len(names)} syscalls, default {default}{warned}")
    click.echo(f"on this machine: {len(plan.rules)} libseccomp rules for "
               f"{', '.join(a.removeprefix('SCMP_ARCH_') for a in plan.arches)}; "
               f"{len(plan.skipped)} rule(s) or name(s) left out")
    for s in plan.skipped if verbose else plan.skipped[:5]:
        click.echo(f"  left out: {s}")
    if not verbose and len(plan.skipped) > 5:
        click.echo(f"  ... {len(plan.skipped) - 5} more (-v lists them)")


@seccomp.command(context_settings=_CTX)
@click.argument("a", metavar="A.json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("b", metavar="B.json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def diff(a: Path, b: Path, as_json: bool) -> None:
    """Show what B changes from A: default action, architectures, syscalls
    (+ added, - removed, ~ rules changed) and rules.

    Compares meaning, not text (format, rule order, comments and metadata do
    not count). Exit code: 0 same, 1 different, 2 trouble (like diff(1)).
    """
    from ..seccomp import diff_profiles

    try:
        pa, pb = load_profile(a), load_profile(b)
    except ConfigError as exc:
        click.echo(f"bpfguard: error: {exc}", err=True)
        sys.exit(2)
    d = diff_profiles(pa, pb)
    if as_json:
        click.echo(json.dumps(d.to_json(), indent=2))
    elif d:
        click.echo(d.render())
    sys.exit(1 if d else 0)
