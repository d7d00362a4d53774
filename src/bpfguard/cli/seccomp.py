"""`bpfguard seccomp`: record -> audit -> enforce, plus check and diff."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from ..containers.model import Container
from ..errors import BpfguardError, ConfigError
from ..files import check_writable as _check_writable
from ..files import write_atomically as _write_atomically
from ..seccomp.profile import Profile, ProfileError, load_profile
from . import _exit_code, _require_root, _which

__all__ = ["seccomp"]

_CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _say(msg: str) -> None:
    click.echo(f"bpfguard seccomp: {msg}", err=True)


def _spo_name(name: str | None, fmt: str, output: Path) -> str | None:
    """The SeccompProfile's metadata.name for --format spo (None for the other
    formats), checked before any work is done."""
    from ..seccomp.spo import check_name, name_from

    if fmt != "spo":
        if name is not None:
            raise ConfigError("--name is only for --format spo")
        return None
    if name is not None:
        try:
            return check_name(name)
        except ConfigError as exc:
            raise ConfigError(f"--name: {exc}") from None
    if (made := name_from(output.stem)) is None:
        raise ConfigError(f"-o {output}: {output.stem!r} has no letter or digit to name the "
                          "SeccompProfile after: give --name")
    return made


def _resolved(profile: Profile, fmt: str) -> Profile:
    """`profile` as OCI and SeccompProfiles can hold it: Docker's archMap and
    includes/excludes decided for this machine (where it was recorded)."""
    from ..seccomp import Target, resolve_for

    if fmt == "docker" or profile.format != "docker":
        return profile
    target = Target.current()
    profile = resolve_for(profile, target)
    if profile.metadata is not None:
        profile.metadata.setdefault("notes", []).append(
            f"Docker's archMap and includes/excludes were resolved for this machine "
            f"({target.machine}, kernel {'.'.join(map(str, target.kernel))}, the "
            f"capabilities of the recording user): "
            f"{'OCI' if fmt == 'oci' else 'a SeccompProfile'} has no such conditions")
    return profile


def _render(profile: Profile, fmt: str, spo_name: str | None) -> tuple[str, list[str]]:
    """The text to write, and notes on what the format left out. `spo_name` is
    set exactly when `fmt` is spo."""
    from ..seccomp.spo import to_spo

    if spo_name is None:
        return profile.dumps(fmt), []
    spo = to_spo(profile, name=spo_name)
    return spo.dumps(), spo.notes


@click.group(context_settings=_CTX)
def seccomp() -> None:
    """Seccomp profiles from what a workload really does.

    \b
    For containers (podman, CRI-O):
      bpfguard seccomp hook install                      once: the OCI hook
      podman run --annotation io.containers.trace-syscall=of:/tmp/web.json IMAGE CMD
      podman run --security-opt seccomp=/tmp/web.json IMAGE CMD
      bpfguard seccomp record --container web -o web.json   a running container

    \b
    For a command: learn, then audit, then enforce.
      bpfguard seccomp record -o app.json -- ./app       learn (in-kernel, no ptrace)
      bpfguard seccomp run --profile app.json --log -- ./app   audit: deny nothing, report
      bpfguard seccomp run --profile app.json -- ./app    enforce (libseccomp)
      bpfguard seccomp check app.json                    validate, show what applies here
      bpfguard seccomp diff old.json new.json            what changed
      bpfguard seccomp merge run1.json run2.json -o app.json   union of several recordings

    Profiles are OCI runtime-spec `linux.seccomp` JSON or Docker's format
    (archMap, includes/excludes); both are read and written. record and merge
    also write Kubernetes' SeccompProfile (Security Profiles Operator) as YAML.
    """


@seccomp.command(context_settings=_CTX)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the profile (replaced atomically; not written if "
                   "nothing was recorded).")
@click.option("--format", "fmt", type=click.Choice(["oci", "docker", "spo"]), default=None,
              help="oci: runtime-spec linux.seccomp with `architectures` (default); docker: "
                   "Docker's format with `archMap`; spo: the Security Profiles Operator's "
                   "SeccompProfile resource (YAML, for kubectl apply). With --base: the "
                   "base's format.")
@click.option("--name", metavar="NAME",
              help="With --format spo: the resource's metadata.name (default: the -o file's "
                   "name without extension, made a valid Kubernetes name).")
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
@click.option("--container", "containers", multiple=True, metavar="NAME|ID",
              help="Record this running container: every process in its mount namespace, "
                   "`exec`s included, until it stops (repeatable). Asked of podman, Docker "
                   "and containerd through their APIs (see --socket).")
@click.option("--socket", "sockets", multiple=True, metavar="RUNTIME=PATH",
              help="With --container: a runtime's API socket (podman, docker, containerd; "
                   "defaults as the agent's `containers` section; empty PATH: not asked).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Stop after S seconds (otherwise: when the recorded processes are all "
                   "gone, or at Ctrl-C).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def record(output: Path, fmt: str | None, name: str | None, base: Path | None, with_args: bool,
           pids: tuple[int, ...], cgroups: tuple[str, ...], containers: tuple[str, ...],
           sockets: tuple[str, ...], duration: float | None, command: tuple[str, ...]) -> None:
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
    profile's metadata. The profile denies everything else with EPERM; what
    runc and crun need after installing the filter, and what every process
    needs to exit, is allowed too (the runtime base, listed in the metadata).
    To record a container from its start, use the hook (`seccomp hook --help`).

    \b
    Examples:
      bpfguard seccomp record -o tar.json -- tar czf /tmp/x.tgz /etc
      bpfguard seccomp record --args --format docker -o app.json -- python3 app.py
      bpfguard seccomp record --pid 1234 --duration 60 -o svc.json
      bpfguard seccomp record --container web -o web.json
      bpfguard seccomp record --base docker-default.json -o mine.json -- ./app
      bpfguard seccomp record --format spo --name web -o web.yaml -- ./server
    """
    from ..seccomp import Recording, RecordingInfo, SeccompRecorder, profile_from_recording
    from ..seccomp import record as run_record

    argv = list(command)
    if argv and (pids or cgroups or containers):
        raise ConfigError("give a command, or --pid/--cgroup/--container, not both")
    if not argv and not pids and not cgroups and not containers:
        raise ConfigError("nothing to record: give `-- CMD ARGS...`, --pid, --cgroup or "
                          "--container")
    if sockets and not containers:
        raise ConfigError("--socket is for --container")
    base_profile = load_profile(base) if base else None
    out_fmt = fmt or (base_profile.format if base_profile else "oci")
    spo_name = _spo_name(name, out_fmt, output)
    if spo_name is not None:
        # What a SeccompProfile cannot hold (the base's defaultErrnoRet, this machine's
        # architecture) fails now, not after the command ran: convert an empty recording.
        now = dt.datetime.now(dt.UTC)
        _render(_resolved(profile_from_recording(Recording(), RecordingInfo({}, now, now),
                                                 base=base_profile), out_fmt),
                out_fmt, spo_name)
    exe = _which(argv) if argv else None
    _check_writable(output, "-o")
    _require_root()
    source: dict[str, Any]
    for pid in pids:
        if not os.path.exists(f"/proc/{pid}"):
            raise ConfigError(f"--pid {pid}: no such process")
    found = _running_containers(containers, sockets)
    # A container's mount namespace holds its processes, `exec`s included; its
    # first process in the pid scope ends the recording when the container stops.
    with SeccompRecorder(args=with_args) as rec:
        result = run_record(rec, argv=argv or None, exe=exe,
                            pids=[*pids, *(pid for _, pid, _ in found)], cgroups=cgroups,
                            mntns=[ns for _, _, ns in found], duration=duration,
                            on_status=_say)
    if argv:
        source = {"command": argv}
    else:
        source = {k: v for k, v in (
            ("pids", list(pids)), ("cgroups", list(cgroups)),
            ("containers", [{"id": c.id, "name": c.name, "image": c.image,
                             "runtime": c.runtime} for c, _, _ in found])) if v}
    names = result.recording.names()
    code = _exit_code(result.status) if result.status is not None else 0
    if not names:
        raise BpfguardError("nothing was recorded (did the command start?); no profile written")
    info = RecordingInfo(source, result.started, result.ended, str(base) if base else None)
    profile = profile_from_recording(result.recording, info, base=base_profile,
                                     with_args=with_args)
    profile = _resolved(profile, out_fmt)
    try:
        text, format_notes = _render(profile, out_fmt, spo_name)
    except ProfileError as exc:  # what the empty recording could not show: argument values
        kept = output.with_name(f"{output.stem}.recorded.json")
        _write_atomically(kept, profile.dumps("oci"))
        raise ConfigError(f"{exc}\nthe recording is kept in {kept}; once it is fixed: bpfguard "
                          f"seccomp merge {kept} --format spo --name {spo_name} -o {output}"
                          ) from None
    _write_atomically(output, text)
    per_arch = ", ".join(f"{a.removeprefix('SCMP_ARCH_')}: {len(n)}"
                         for a, n in sorted(result.recording.syscalls.items()))
    added = f", {len(profile.metadata['added'])} added to the base" \
        if base_profile and profile.metadata else ""
    _say(f"{len(names)} syscalls ({per_arch}){added} -> {output} ({out_fmt})")
    _kubelet_note(output, out_fmt)
    for note in [*(profile.metadata or {}).get("notes", []), *format_notes]:
        _say(f"note: {note}")
    if argv and code:
        _say(f"note: {argv[0]} exited with {code}; the profile covers what it did until then")
    sys.exit(code)


_KUBELET_SECCOMP = Path("/var/lib/kubelet/seccomp")


def _kubelet_note(output: Path, fmt: str) -> None:
    """A profile in kubelet's seccomp directory is a Localhost profile: say how
    a pod names it (relative to that directory)."""
    try:
        rel = output.resolve().relative_to(_KUBELET_SECCOMP)
    except ValueError:
        return
    if fmt == "spo":
        _say(f"note: {output} is a SeccompProfile resource, not a kubelet profile: "
             "kubectl apply it (the operator writes the kubelet's file)")
        return
    _say(f"note: kubelet Localhost profile; in the pod: securityContext: {{seccompProfile: "
         f"{{type: Localhost, localhostProfile: {rel}}}}} (copy it to every node)")


def _running_containers(refs: tuple[str, ...], sockets: tuple[str, ...]
                        ) -> list[tuple[Container, int, int]]:
    """Each container `refs` names, with its first process's pid and the
    inode of its mount namespace."""
    if not refs:
        return []
    from ..agent.config import default_config
    from ..containers import engines_at, find_container

    runtimes = ("podman", "docker", "containerd")
    at: dict[str, str] = {r: default_config()["containers"][r] for r in runtimes}
    for item in sockets:
        runtime, sep, path = item.partition("=")
        if not sep or runtime not in runtimes:
            raise ConfigError(f"--socket {item}: expected RUNTIME=PATH, RUNTIME one of "
                              f"{', '.join(runtimes)}")
        at[runtime] = path
    engines = list(engines_at(at["podman"], at["docker"], at["containerd"]))
    out = []
    try:
        own_ns = os.stat("/proc/self/ns/mnt").st_ino
        for ref in refs:
            c = find_container(ref, engines)
            if c.pid is None:
                raise ConfigError(f"--container {ref}: {c.runtime} container {c.name or c.id} "
                                  "is not running")
            try:
                ns = os.stat(f"/proc/{c.pid}/ns/mnt").st_ino
            except OSError:
                raise ConfigError(f"--container {ref}: it stopped (pid {c.pid} is gone)"
                                  ) from None
            if ns == own_ns:
                raise ConfigError(f"--container {ref}: it shares this mount namespace with "
                                  f"the host, which would be recorded too; use --pid {c.pid}")
            out.append((c, c.pid, ns))
    finally:
        for e in engines:
            e.close()
    return out


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


@seccomp.command(context_settings=_CTX)
@click.argument("inputs", nargs=-1, required=True, metavar="PROFILE.json...",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the merged profile (replaced atomically).")
@click.option("--format", "fmt", type=click.Choice(["oci", "docker", "spo"]), default=None,
              help="oci, docker, or spo (Kubernetes' SeccompProfile, YAML); default: the "
                   "first input's format.")
@click.option("--name", metavar="NAME",
              help="With --format spo: the resource's metadata.name (default: the -o file's "
                   "name without extension, made a valid Kubernetes name).")
def merge(inputs: tuple[Path, ...], output: Path, fmt: str | None, name: str | None) -> None:
    """Union the profiles of several runs or replicas into one.

    \b
    What any input allows is allowed:
      - all inputs must have the same defaultAction and defaultErrnoRet;
      - architectures (and archMap entries) are unioned, in first-seen order;
      - a syscall some input allows unconditionally is allowed unconditionally
        (ALLOW rules with conditions from other inputs are then dropped);
      - ALLOW rules with argument conditions are unioned;
      - rules with other actions are kept. A syscall that gets two different
        non-ALLOW actions, or ALLOW in one input and another action in
        another, is a conflict: each is listed with file and JSON path, and
        nothing is written (exit 1). Inputs whose rules for it are all the
        same do not conflict. The exception is clone3's ENOSYS rule that
        `record --args` writes: where an input allows clone3 unconditionally,
        the allow wins (and the profile's notes say so).
    The bpfguard block records the inputs (merged_from), the earliest start
    and latest end of their recordings, and the union of what they recorded.
    Inputs with Docker's includes/excludes merge only to --format docker.

    \b
    Examples:
      bpfguard seccomp merge run1.json run2.json run3.json -o app.json
      bpfguard seccomp merge replica-*.json --format spo --name web -o web.yaml
      bpfguard seccomp merge app.json --format spo -o app.yaml   (one input: convert)
    """
    from ..seccomp.merge import merge_profiles

    profiles = [_load_or_explain(p) for p in inputs]
    out_fmt = fmt or profiles[0].format
    spo_name = _spo_name(name, out_fmt, output)
    _check_writable(output, "-o")
    merged = merge_profiles(profiles, [str(p) for p in inputs])
    if out_fmt != "docker" and merged.has_conditions():
        # record resolves them for the machine it ran on; files may be for any machine
        having = [str(p) for p, prof in zip(inputs, profiles, strict=True)
                  if prof.has_conditions()]
        raise ConfigError(f"{', '.join(having)}: Docker's includes/excludes cannot be "
                          f"written as {out_fmt}, and which of them hold depends on the "
                          "machine the profile is for: merge to --format docker")
    text, format_notes = _render(merged, out_fmt, spo_name)
    _write_atomically(output, text)
    _say(f"{len(inputs)} profiles, {len(merged.named())} syscalls -> {output} ({out_fmt})")
    _kubelet_note(output, out_fmt)
    for note in [*(merged.metadata or {}).get("notes", []), *format_notes]:
        _say(f"note: {note}")


@seccomp.group(context_settings=_CTX)
def hook() -> None:
    """Record containers' profiles with an OCI runtime hook (podman, CRI-O).

    \b
    oci-seccomp-bpf-hook's interface: once the hook is installed, a container
    started with the annotation io.containers.trace-syscall is recorded, and
    its profile is written when it exits:
      bpfguard seccomp hook install
      podman run --annotation io.containers.trace-syscall=of:/tmp/app.json IMAGE CMD
      podman run --security-opt seccomp=/tmp/app.json IMAGE CMD
    The annotation's value is `of:PATH` (the profile to write) or
    `if:BASE;of:PATH` (extend BASE: a syscall it names keeps its rule, even a
    denying one). Paths are absolute and on the host.

    \b
    Recording starts at the runtime's hand-over to the entrypoint (its
    execve): runc's and crun's own setup (pivot_root, mount, sethostname,
    keyctl) is not in the profile. What the runtimes make after installing
    the filter, and what every process needs to exit, is added as the
    runtime base (listed in the profile's metadata). Processes started with
    `podman exec` are not recorded. podman returns once the profile is written.
    """


@hook.command(context_settings=_CTX)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="The runtime's hooks directory (default: /usr/share/containers/oci/hooks.d, "
                   "where podman and CRI-O look; they also read /etc/containers/oci/hooks.d).")
@click.option("--allow-dir", "allowed", multiple=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Only write (of:) and read (if:) profiles below this directory "
                   "(repeatable; default: anywhere).")
def install(directory: Path | None, allowed: tuple[Path, ...]) -> None:
    """Write the hook's entry into the runtime's hooks directory.

    \b
    The entry runs this Python (its absolute path) with `-m bpfguard seccomp
    hook run` at the prestart and poststop stages of every container with
    the annotation. Reinstall after moving bpfguard's environment.

    \b
    The hook writes the `of:` file as root, so whoever may set a container's
    annotations chooses a file root replaces (only a regular file or a new
    one; never a device or a symbolic link). With podman that is whoever runs
    it as root already; where pod authors may set annotations (CRI-O with
    the annotation allowed), give --allow-dir.
    """
    from ..seccomp.hook import DEFAULT_HOOKS_DIR
    from ..seccomp.hook import install as write_entry

    path, notes = write_entry(directory or DEFAULT_HOOKS_DIR, allowed)
    _say(f"installed: {path}")
    for note in notes:
        _say(f"note: {note}")


@hook.command(context_settings=_CTX)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="The runtime's hooks directory (default: /usr/share/containers/oci/hooks.d).")
def uninstall(directory: Path | None) -> None:
    """Remove the hook's entry from the runtime's hooks directory."""
    from ..seccomp.hook import DEFAULT_HOOKS_DIR, HOOK_FILE
    from ..seccomp.hook import uninstall as remove_entry

    directory = directory or DEFAULT_HOOKS_DIR
    path = remove_entry(directory)
    _say(f"removed: {path}" if path else f"not installed: no {directory / HOOK_FILE}")


@hook.command("run", context_settings=_CTX)
@click.option("--allow-dir", "allowed", multiple=True, type=click.Path(path_type=Path),
              help="Only write and read profiles below this directory (set by install).")
def hook_run(allowed: tuple[Path, ...]) -> None:
    """What the container runtime runs (reads the OCI state on stdin).

    \b
    At prestart: starts recording the container, armed at its entrypoint,
    and returns once recording has begun (a failure stops the container,
    unrecorded). At poststop: waits for the profile to be written and
    reports it; exits 1 if the recording failed.
    """
    from ..inputs import InputError, decode_text
    from ..seccomp.hook import OCI_STATE_MAX, OciState, finish_recording, start_recording

    raw = sys.stdin.buffer.read(OCI_STATE_MAX + 1)
    if len(raw) > OCI_STATE_MAX:
        raise ConfigError(f"OCI state on stdin: more than {OCI_STATE_MAX:,} bytes")
    try:
        state = OciState.parse(decode_text(raw))
    except InputError as exc:
        raise ConfigError(f"OCI state on stdin: {exc} at {exc.line}:{exc.column}") from None
    if state.status == "stopped":
        said = finish_recording(state)
        if said:
            _say(said)
        # the recorder starts a line with "error:" when it failed
        failed = said is not None and any(ln.startswith("error:") for ln in said.splitlines())
        sys.exit(1 if failed else 0)
    _require_root()
    request = start_recording(state, allowed=allowed)
    _say(f"recording container {state.id[:12]} -> {request.output}")
