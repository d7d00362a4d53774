"""An OCI runtime hook that records a container's seccomp profile.

The interface is oci-seccomp-bpf-hook's: a container started with the
annotation ``io.containers.trace-syscall=of:/out.json`` (optionally
``if:/base.json;of:/out.json``) is recorded, and its profile is written to the
``of:`` path when it exits. The recording differs where that hook's leaked:

- It starts at the entrypoint. At ``prestart`` the container's first process
  is still the runtime's (``runc init``, crun's child) with its setup ahead
  (pivot_root, mount, sethostname, keyctl). That process is put in scope
  *armed*: the kernel counts its syscalls from its next execve, the runtime's
  hand-over to the entrypoint, and those of everything it starts from then on.
- What the runtime itself makes after installing the filter, and what every
  process needs to exit, is the runtime base (:mod:`.runtime_base`), added to
  the profile and named in its metadata, so the profile starts the container
  every time.
- The ``poststop`` stage waits for the profile to be written, so the file is
  there when ``podman run`` returns (``--rm`` included).

The recorder runs in a process of its own, detached from the runtime (the
hook must return for the container to start): it loads the BPF programs and
arms the container's process before the hook returns, so nothing the
entrypoint does is missed. It holds a lock on ``<state dir>/<id>.lock`` while
it records and writes its messages to ``<id>.log``; the ``poststop`` hook
waits for the lock, reports the log, and removes both.

Podman and CRI-O read hooks from ``/usr/share/containers/oci/hooks.d`` (and
``/etc/containers/oci/hooks.d``). Processes that ``podman exec`` starts are not
recorded: they join the container through the runtime's own setup.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import select
import stat
import sys
import sysconfig
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BpfguardError, ConfigError
from ..files import write_atomically, write_in_dir
from ..inputs import InputError, check_json_nesting
from .generate import RecordingInfo, profile_from_recording
from .profile import Profile, loads_profile
from .recorder import SeccompRecorder
from .session import record

__all__ = [
    "ANNOTATION",
    "DEFAULT_HOOKS_DIR",
    "HOOK_FILE",
    "OCI_STATE_MAX",
    "STATE_DIR",
    "OciState",
    "TraceRequest",
    "finish_recording",
    "hook_config",
    "install",
    "parse_annotation",
    "start_recording",
    "uninstall",
]

ANNOTATION = "io.containers.trace-syscall"
DEFAULT_HOOKS_DIR = Path("/usr/share/containers/oci/hooks.d")
HOOK_FILE = "bpfguard-seccomp.json"
# oci-seccomp-bpf-hook's file: with both installed, both would record and write `of:`
_OTHER_HOOK_FILE = "oci-seccomp-bpf-hook.json"
STATE_DIR = Path("/run/bpfguard/seccomp-hook")
# Loading the BPF programs takes about a second here; the slow guest kernel
# (emulated, no KVM) takes far longer. The container waits this long at most.
READY_TIMEOUT_S = 120.0
# How long poststop waits for the profile once the container has exited.
FINISH_TIMEOUT_S = 30.0
# A base profile (`if:`) bigger than this is refused: Docker's default is 20 KiB.
MAX_BASE_BYTES = 1 << 20
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_POLL_S = 0.05


@dataclass(frozen=True)
class TraceRequest:
    """What the annotation asks for: where to write, and what to extend."""

    output: Path
    base: Path | None = None


def parse_annotation(text: str) -> TraceRequest:
    """``of:PATH`` with an optional ``if:PATH``, separated by ``;``, paths
    absolute (the hook does not run in the user's directory)."""
    parts = [p.strip() for p in text.split(";")]
    if len(parts) > 2:
        raise ConfigError(f"{ANNOTATION}={text!r}: more than one ';' (expected "
                          "'of:/out.json' or 'if:/base.json;of:/out.json')")
    found: dict[str, Path] = {}
    for part in parts:
        prefix, _, path = part.partition(":")
        if prefix not in ("of", "if") or not _:
            raise ConfigError(f"{ANNOTATION}={text!r}: {part!r} is neither 'of:PATH' "
                              "(the profile to write) nor 'if:PATH' (a base profile to extend)")
        if prefix in found:
            raise ConfigError(f"{ANNOTATION}={text!r}: '{prefix}:' is given twice")
        if not path.startswith("/"):
            raise ConfigError(f"{ANNOTATION}={text!r}: {prefix}:{path} is not an absolute path")
        found[prefix] = Path(path)
    if "of" not in found:
        raise ConfigError(f"{ANNOTATION}={text!r}: no 'of:PATH': where should the profile go?")
    return TraceRequest(found["of"], found.get("if"))


@dataclass(frozen=True)
class OciState:
    """The runtime-spec's state, which the runtime gives a hook on stdin."""

    id: str
    status: str
    pid: int | None
    bundle: str
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> OciState:
        try:
            check_json_nesting(text)  # (the decoder recurses a level a call)
            data = json.loads(text)
        except InputError as exc:
            raise ConfigError(f"OCI state on stdin: {exc} at {exc.line}:{exc.column}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"OCI state on stdin: invalid JSON at {exc.lineno}:{exc.colno}: "
                              f"{exc.msg} (this command is run by the container runtime)"
                              ) from None
        if not isinstance(data, dict):
            raise ConfigError("OCI state on stdin: expected an object")
        problems = [f"'{k}' is missing or not {what}" for k, kind, what in (
            ("id", str, "a string"), ("status", str, "a string"))
            if not isinstance(data.get(k), kind)]
        pid = data.get("pid")
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0):
            problems.append(f"'pid' is {pid!r}, not a process id")
        annotations = data.get("annotations")
        annotations = {} if annotations is None else annotations
        if not isinstance(annotations, dict):
            problems.append("'annotations' is not an object")
            annotations = {}
        if not problems and not _SAFE_ID.match(data["id"]):
            problems.append(f"'id' {data['id']!r} is not a container id")
        if problems:
            raise ConfigError("OCI state on stdin: " + "; ".join(problems))
        return cls(data["id"], data["status"], pid, str(data.get("bundle", "")),
                   {str(k): str(v) for k, v in annotations.items()})


def hook_config(python: str = sys.executable, allowed: Sequence[Path] = ()) -> dict[str, Any]:
    """The hooks.d entry: run `python -m bpfguard seccomp hook run` at
    prestart and poststop of every container with the annotation; with
    `allowed`, ``of:`` and ``if:`` must be in those directories."""
    limits = [arg for d in allowed for arg in ("--allow-dir", str(d))]
    return {
        "version": "1.0.0",
        "hook": {
            "path": python,
            # argv[0] whole: Python finds its venv (and bpfguard) from it
            # -I: root imports nothing from the working directory or the environment
            "args": [python, "-I", "-m", "bpfguard", "seccomp", "hook", "run", *limits],
            # runtimes run hooks with no environment at all
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        },
        "when": {"annotations": {f"^{re.escape(ANNOTATION)}$": ".*"}},
        "stages": ["prestart", "poststop"],
    }


def _writable_by_others(path: Path) -> Path | None:
    """`path` or the first of its parents someone other than root may change."""
    for p in (path, *path.parents):
        try:
            st = os.stat(p)
        except OSError:
            continue
        if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not (
                st.st_mode & stat.S_ISVTX):
            return p
    return None


def install(directory: Path = DEFAULT_HOOKS_DIR, allowed: Sequence[Path] = ()
            ) -> tuple[Path, list[str]]:
    """Writes the hooks.d entry; returns its path and notes for the user."""
    notes = []
    for d in allowed:
        if not d.is_absolute() or not d.is_dir():
            raise ConfigError(f"--allow-dir {d}: not an absolute path to a directory")
    # root runs this Python, its libraries and bpfguard's code at every
    # annotated container's start
    paths = sysconfig.get_paths()
    for what, path in (("the Python", Path(sys.executable)),
                       ("the Python", Path(sys.executable).resolve()),
                       ("the standard library", Path(paths["stdlib"])),
                       ("the installed packages", Path(paths["purelib"])),
                       ("the installed packages", Path(paths["platlib"])),
                       ("bpfguard's code", Path(__file__).resolve().parents[1])):
        if (open_to := _writable_by_others(path)) is not None:
            notes.append(f"{what} the hook runs as root is at {path}, and {open_to} can be "
                         f"changed by others than root: they could run code as root; install "
                         f"bpfguard where only root can write")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--dir {directory}: {exc.strerror}") from None
    path = directory / HOOK_FILE
    if path.exists():
        notes.append(f"replaced the {HOOK_FILE} that was there")
    if (directory / _OTHER_HOOK_FILE).exists():
        notes.append(f"{directory / _OTHER_HOOK_FILE} is installed too: it triggers on the same "
                     f"annotation and would write the same file; remove it")
    write_atomically(path, json.dumps(hook_config(allowed=allowed), indent=2) + "\n", "--dir")
    return path, notes


def uninstall(directory: Path = DEFAULT_HOOKS_DIR) -> Path | None:
    """Removes the hooks.d entry; returns its path, or None if it was not there."""
    path = directory / HOOK_FILE
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    return path


def _paths(container_id: str) -> tuple[Path, Path]:
    return STATE_DIR / f"{container_id}.lock", STATE_DIR / f"{container_id}.log"


def _why(exc: OSError) -> str:
    # podman takes a hook's error ending in "No such file or directory" for a
    # hook that could not be run, and says only that
    return "does not exist" if exc.errno == errno.ENOENT else str(exc.strerror)


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def _inside(fd: int, where: str, allowed: Sequence[Path]) -> None:
    """What `fd` is open on must be below an allowed directory: checked on the
    open file, so a path changed after a check cannot lead elsewhere."""
    real = Path(_fd_path(fd))
    if allowed and not any(real.is_relative_to(os.path.realpath(d)) for d in allowed):
        raise ConfigError(f"{where}: outside the directories the hook was installed to "
                          f"write and read ({', '.join(map(str, allowed))})")


def _read_base(path: Path, allowed: Sequence[Path]) -> Profile:
    """The `if:` profile, read once from one open file: a regular file of a
    profile's size (a FIFO would hang the container's start, /dev/zero fill
    memory), below an allowed directory."""
    where = f"if:{path}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{where}: {_why(exc)}") from None
    try:
        _inside(fd, where, allowed)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{where}: not a regular file")
        if st.st_size > MAX_BASE_BYTES:
            raise ConfigError(f"{where}: {st.st_size} bytes; a base profile is at most "
                              f"{MAX_BASE_BYTES}")
        return loads_profile(os.read(fd, MAX_BASE_BYTES + 1), str(path))
    finally:
        os.close(fd)


#: The OCI state a runtime writes on the hook's stdin (an id, a pid, a
#: bundle path and the annotations): more is refused unread.
OCI_STATE_MAX = 1 << 20


@dataclass(frozen=True)
class _Output:
    """Where the profile goes: its directory, held open from the prestart
    check to the write (the path may be changed in between), and its name."""

    dir_fd: int
    name: str
    path: Path


def _open_output(path: Path, allowed: Sequence[Path]) -> _Output:
    where = f"of:{path}"
    try:
        fd = os.open(os.path.realpath(path.parent),
                     os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{where}: directory {path.parent}: {_why(exc)}") from None
    try:
        _inside(fd, where, allowed)
        out = _Output(fd, path.name, path)
        write_in_dir(fd, out.name, None, where)  # fails now, not when the container exits
        return out
    except BaseException:
        os.close(fd)
        raise


def start_recording(state: OciState, *, allowed: Sequence[Path] = (),
                    timeout: float = READY_TIMEOUT_S) -> TraceRequest:
    """The prestart stage: checks the request, starts the recorder and
    returns once it records (the container's process is armed), so the
    entrypoint's first syscall is counted. Raises with the reason if it
    cannot: the container then does not start, unrecorded. `allowed`: the
    directories ``of:`` and ``if:`` must be in (none: anywhere)."""
    if state.pid is None:
        raise ConfigError(f"OCI state of {state.id}: no pid (is this the prestart stage?)")
    request = parse_annotation(state.annotations.get(ANNOTATION, ""))
    base = _read_base(request.base, allowed) if request.base else None
    out = _open_output(request.output, allowed)
    try:
        try:
            STATE_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"{STATE_DIR}: {exc.strerror} (the hook runs as root)") from None
        ready_r, ready_w = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the detached recorder; tested end to end
            os.close(ready_r)
            code = 1
            try:
                os.setsid()  # out of the runtime's session: the recorder outlives the hook
                code = _record_container(state, request, out, base, ready_w) \
                    if os.fork() == 0 else 0
            finally:
                os._exit(code)
    finally:
        os.close(out.dir_fd)  # the recorder has its own
    os.close(ready_w)
    os.waitpid(child, 0)
    answer = _read_until_eof(ready_r, timeout)
    os.close(ready_r)
    if answer == b"ok":
        return request
    if answer is None:
        raise BpfguardError(f"the recorder did not start within {timeout:.0f} s")
    raise BpfguardError(answer.decode(errors="replace") or "the recorder ended at once")


def _read_until_eof(fd: int, timeout: float) -> bytes | None:
    """Everything written to `fd` until its writer closes it; None on timeout."""
    deadline = time.monotonic() + timeout
    out = b""
    while (left := deadline - time.monotonic()) > 0:
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                return out
            out += chunk
    return None


def _take_lock(path: Path) -> int:
    """Opens and locks `path`, the file that is there once it is locked: a
    poststop of an earlier container of the same id removes its lock file
    after it got the lock, and a lock on that removed file would hold nothing."""
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _record_container(state: OciState, request: TraceRequest, out: _Output,
                      base: Profile | None, ready_w: int) -> int:  # pragma: no cover - detached
    lock_path, log_path = _paths(state.id)
    ready = False

    def on_ready() -> None:
        nonlocal ready
        os.write(ready_w, b"ok")
        os.close(ready_w)
        ready = True

    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        _take_lock(lock_path)  # held until this process exits
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        assert state.pid is not None
        with SeccompRecorder() as rec:
            result = record(rec, armed=[state.pid], on_ready=on_ready)
        if result.interrupted:
            print(f"error: stopped by a signal while container {state.id[:12]} ran: "
                  f"{request.output} not written (it would lack what the container does "
                  f"later)", flush=True)
            return 1
        names = result.recording.names()
        if not names:
            print(f"error: nothing was recorded (the container ended before its entrypoint "
                  f"ran); {request.output} not written", flush=True)
            return 1
        source = {"container": {"id": state.id, "annotation": state.annotations[ANNOTATION]}}
        info = RecordingInfo(source, result.started, result.ended,
                             str(request.base) if request.base else None)
        profile = profile_from_recording(result.recording, info, base=base)
        write_in_dir(out.dir_fd, out.name, profile.dumps(base.format if base else "oci"),
                     f"of:{out.path}")
        print(f"recorded {len(names)} syscalls of container {state.id[:12]} -> "
              f"{request.output}", flush=True)
        return 0
    except BaseException as exc:  # noqa: BLE001 - reported to whoever waits, then exit
        message = str(exc) or type(exc).__name__
        if ready:
            print("error: " + message.replace("\n", "\n  "), flush=True)
        else:
            # the prestart hook reports it (the container does not start): leave nothing
            with contextlib.suppress(OSError):
                os.write(ready_w, message.encode())
            log_path.unlink(missing_ok=True)
            lock_path.unlink(missing_ok=True)
        return 1


def finish_recording(state: OciState, *, timeout: float = FINISH_TIMEOUT_S) -> str | None:
    """The poststop stage: waits for the container's recorder to write the
    profile and returns what it said (a line starting ``error:`` if it could
    not); None if no recorder ran for it."""
    lock_path, log_path = _paths(state.id)
    try:
        lock = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            if time.monotonic() >= deadline:
                raise BpfguardError(f"container {state.id}: still recording {timeout:.0f} s "
                                    f"after it stopped; it writes when done (see {log_path})")
            time.sleep(_POLL_S)
        try:
            said = log_path.read_text().strip()
        except FileNotFoundError:
            said = ""
        if not said:  # it always says something when it ends by itself
            said = f"error: container {state.id}: the recorder ended without a word (killed?)"
        log_path.unlink(missing_ok=True)
        lock_path.unlink(missing_ok=True)
        return said
    finally:
        os.close(lock)
