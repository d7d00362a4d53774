"""Seccomp profile advisor: record a workload's syscalls in the kernel, write a
profile (OCI or Docker format), confine a command with it through libseccomp,
and report what the kernel denied or, in audit mode, would have denied.

Example::

    with SeccompRecorder() as rec:
        result = record(rec, argv=["/usr/bin/tar", "cf", "x.tar", "src"], exe="/usr/bin/tar")
    profile = profile_from_recording(result.recording, RecordingInfo(...))
    Path("tar.json").write_text(profile.dumps("oci"))

    plan = plan_filter(load_profile("tar.json"))
    outcome = run_confined(plan, "/usr/bin/tar", ["tar", "cf", "y.tar", "src"])
"""

from .audit import AuditReader, SeccompRecord
from .diff import ProfileDiff, diff_profiles
from .enforce import FilterPlan, Target, build_filter, plan_filter, resolve_for
from .generate import RecordingInfo, profile_from_recording
from .merge import merge_profiles
from .profile import Profile, ProfileError, SyscallRule, load_profile, parse_profile
from .recorder import ARG_WATCHES, Recording, SeccompRecorder
from .session import Denial, RecordResult, RunResult, record, run_confined
from .spo import SpoProfile, to_spo

__all__ = [
    "ARG_WATCHES",
    "AuditReader",
    "Denial",
    "FilterPlan",
    "Profile",
    "ProfileDiff",
    "ProfileError",
    "RecordResult",
    "Recording",
    "RecordingInfo",
    "RunResult",
    "SeccompRecord",
    "SeccompRecorder",
    "SpoProfile",
    "SyscallRule",
    "Target",
    "build_filter",
    "diff_profiles",
    "load_profile",
    "merge_profiles",
    "parse_profile",
    "plan_filter",
    "profile_from_recording",
    "record",
    "resolve_for",
    "run_confined",
    "to_spo",
]
