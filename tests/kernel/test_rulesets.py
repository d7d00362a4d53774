"""Falco's three stock rulesets together on the real kernel: every syscall
action of Falco's event generator (falcosecurity/event-generator,
events/syscall/*.go) whose rule is in them, done here with the same
syscalls and paths, raises that rule.

The actions run in two detector sessions, so the file stays fast: one
scoped to a driver process on the host, which runs the host actions one
after another (each in its own process, as the generator spawns them);
one over the whole host while two podman containers, an unprivileged and
a privileged one, run the container actions. An alert belongs to an
action by its rule, and for containers by the container's id.

Where the generator runs itself under a program name a rule looks for
(``SpawnAsWithSymlink("httpd", ...)``), so does this file: a symbolic link
with that name to a harmless program, in a directory of its own. The same
for programs Debian has but this machine need not (nmap, sudoedit, pkexec,
lua), when the rule looks only at the program's name, and for binaries
whose real run would change the host (vipw edits /etc/passwd): each such
step says so. Rules Falco ships disabled are enabled with an override, as
a Falco user enables them.

Two actions cannot raise their rule in bpfguard; the closing test says why
for each (:data:`NOT_COVERED`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bpfguard.agent.detect import Detector
from bpfguard.containers.cache import ContainerCache, engines_at
from bpfguard.rules import stock_rules_path
from bpfguard.rules.engine import Engine
from bpfguard.rules.loader import load_rules_or_raise

from .helpers import start_watched
from .test_containers import IMAGE, runtimes  # noqa: F401  (the podman service fixture)
from .test_detect import PTRACE

# Each action is a few processes; together they are the file's cost, which
# the 6.1 guest under TCG cannot afford: the host runs them.
pytestmark = [pytest.mark.kernel, pytest.mark.host_covers]

PY = sys.executable
SYS_PY = "/usr/bin/python3"   # for steps run as daemon, who may not reach the venv
AS_DAEMON = ["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups"]
BUSYBOX = os.path.realpath(shutil.which("busybox") or "/bin/busybox")
PODMAN_LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
# TEST-NET-1 (RFC 5737): routable here, in no private range, so the stock
# outbound macro counts it; the host's default route leads there
PUBLIC = "192.0.2.1"

# The sandbox rules that Falco ships disabled and an action targets.
ENABLE = ["Container Drift Detected (chmod)", "Container Drift Detected (open+create)",
          "Create Hidden Files or Directories", "Interpreted procs inbound network activity",
          "Interpreted procs outbound network activity", "Read Shell Configuration File"]
ENABLE_YAML = "".join(f"- rule: {name}\n  enabled: true\n  override:\n    enabled: replace\n"
                      for name in ENABLE)


@pytest.fixture(scope="module")
def engine() -> Engine:
    files: list[Any] = [str(stock_rules_path(n)) for n in ("stable", "incubating", "sandbox")]
    result = load_rules_or_raise([*files, ("enable.yaml", ENABLE_YAML)])
    return Engine(result.rules, rule_matching="all")


# -- the actions ----------------------------------------------------------------

@dataclass
class Step:
    """One action: the generator's name for it, the rule it targets, and
    what the driver runs (argv, as a process of its own)."""

    action: str
    rule: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    background: bool = False   # runs beside the others (it waits, or times out)
    loginuid: int | None = None  # written to /proc/self/loginuid before the exec
    where: str = "host"        # host, container, privileged (container)
    # where other steps raise the same rule: an output field and a part of
    # its value that only this step's alert has
    mark: tuple[str, str] | None = None


def _py(code: str) -> list[str]:
    return [PY, "-I", "-S", "-c", textwrap.dedent(code)]


def _mkstemp_in(directory: str) -> list[str]:
    # the generator's os.CreateTemp: O_RDWR|O_CREAT|O_EXCL, then removed;
    # the argument names the directory in proc.cmdline (see _in)
    return _py(f"""
        import os, tempfile
        fd, p = tempfile.mkstemp(dir={directory!r}, prefix="falco-event-generator-")
        os.close(fd)
        os.unlink(p)
    """)


def _in(directory: str) -> tuple[str, str]:
    return ("proc.cmdline", f"dir={directory!r}")


def host_steps(t: str, names: str, home_ssh: str, shm: str, local_ip: str) -> list[Step]:
    """The host actions. `t` is a scratch directory, `names` holds the links
    that give programs the names rules look for, `home_ssh` a .ssh directory
    under /home, `shm` a script in /dev/shm, `local_ip` this host's
    non-loopback address."""
    n = f"{names}/"
    return [
        # background: they wait (a server reading after its start-up) or time out
        Step("ReadSensitiveFileTrustedAfterStartup", "Read sensitive file trusted after startup",
             [n + "httpd", "-I", "-S", "-c",
              "import time; time.sleep(5.3); open('/etc/shadow').close()"], background=True),
        Step("DisallowedSSHConnectionNonStandardPort",
             "Disallowed SSH Connection Non Standard Port",
             ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=1", "-o",
              "StrictHostKeyChecking=no", "-p", "443", f"user@{PUBLIC}"], background=True),
        Step("ProgramRunWithDisallowedHttpProxyEnv", "Program run with disallowed http proxy env",
             ["curl", "-s", "--max-time", "1", f"http://{PUBLIC}/"],
             env={"HTTP_PROXY": "http://my.http.proxy.com "}, background=True),
        # the generator's nc -u: a UDP socket connected to port 22
        Step("UnexpectedUDPTraffic", "Unexpected UDP Traffic",
             _py(f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                 f".connect(('{PUBLIC}', 22))"), mark=("fd.name", f"->{PUBLIC}:22")),
        # the stable rules
        Step("ReadSensitiveFileUntrusted", "Read sensitive file untrusted",
             _py("open('/etc/shadow').close()"), mark=("proc.cmdline", "open('/etc/shadow')")),
        Step("DirectoryTraversalMonitoredFileRead", "Directory traversal monitored file read",
             _py("open('/etc/../etc/../etc/shadow').close()")),
        Step("ClearLogActivities", "Clear Log Activities", _py(f"open('{t}/syslog', 'w')")),
        Step("CreateHardlinkOverSensitiveFiles", "Create Hardlink Over Sensitive Files",
             ["sh", "-c", f"ln -v /etc/shadow {t}/shadow_link && cat {t}/shadow_link"]),
        Step("CreateSymlinkOverSensitiveFiles", "Create Symlink Over Sensitive Files",
             ["sh", "-c", f"ln -s /etc {t}/etc_link && ls {t}/etc_link/"]),
        Step("PtraceAttachedToProcess", "PTRACE attached to process",
             [PY, "-I", "-S", "-c", PTRACE, "attach"]),
        Step("PtraceAntiDebugAttempt", "PTRACE anti-debug attempt",
             [PY, "-I", "-S", "-c", PTRACE, "traceme"]),
        Step("FilelessExecutionViaMemfdCreate", "Fileless execution via memfd_create", _py("""
            import os
            fd = os.memfd_create("program", 0)
            os.write(fd, open("/bin/true", "rb").read())
            os.execv(f"/proc/self/fd/{fd}", ["program"])
        """)),
        Step("ExecutionFromDevShm", "Execution from /dev/shm", ["sh", "-c", shm]),
        Step("FindAwsCredentials", "Find AWS Credentials",
             ["find", t, "-maxdepth", "1", "-iname", ".aws/credentials"]),
        Step("SearchPrivateKeysOrPasswords", "Search Private Keys or Passwords",
             ["find", t, "-maxdepth", "1", "-iname", "id_rsa"]),
        Step("RemoveBulkDataFromDisk", "Remove Bulk Data from Disk",
             ["sh", "-c", f"echo 'bulk data content' > {t}/bulk && shred -u {t}/bulk"]),
        # httpd: a link to this Python, which starts the shell as the generator's helper does
        Step("RunShellUntrusted", "Run shell untrusted",
             [n + "httpd", "-I", "-S", "-c",
              "import subprocess; subprocess.run(['sh', '-c', 'ls > /dev/null'])"]),
        Step("SystemUserInteractive", "System user interactive", [*AS_DAEMON, "/bin/login"]),
        # incubating
        Step("AddingSshKeysToAuthorizedKeys", "Adding ssh keys to authorized_keys",
             _py(f"open('{home_ssh}/authorized_keys', 'w').write('ssh-rsa <ssh_public_key>\\n')")),
        Step("ReadSshInformation", "Read ssh information",
             _py(f"open('{home_ssh}/known_hosts', 'w+').close()")),   # Go's os.Create: O_RDWR
        # setns with bogus arguments, as the generator's: the attempt is what counts
        Step("ChangeThreadNamespace", "Change thread namespace",
             _py("import ctypes; ctypes.CDLL(None).setns(0, 0)")),
        Step("CreateFilesBelowDev", "Create files below dev", _mkstemp_in("/dev"),
             mark=_in("/dev")),
        Step("DbProgramSpawnedProcess", "DB program spawned process",
             [n + "mysqld", "-I", "-S", "-c",
              "import subprocess; subprocess.run(['/bin/ls'], stdout=subprocess.DEVNULL)"]),
        Step("DeleteOrRenameShellHistory", "Delete or rename shell history", _py(f"""
            import os
            open('{t}/ash_history', 'w').close()
            os.remove('{t}/ash_history')
        """), mark=("proc.cmdline", "ash_history")),
        # nmap is not installed; the rule looks at the name only
        Step("LaunchSuspiciousNetworkToolOnHost", "Launch Suspicious Network Tool on Host",
             [n + "nmap", "-sn", "172.17.0.1/32"], mark=("proc.name", "nmap")),
        Step("ModifyShellConfigurationFile", "Modify Shell Configuration File",
             _py(f"open('{t}/.bashrc', 'w').write('# written by falco-event-generator\\n')"),
             mark=("proc.cmdline", "written by")),
        Step("NonSudoSetuid", "Non sudo setuid", mark=("proc.name", "child"), argv=[
            n + "child", "-I", "-S", "-c", """
import os
os.setuid(1)   # daemon, then back to root, which fails
try:
    os.setuid(0)
except PermissionError:
    pass
"""]),
        Step("PotentialLocalPrivilegeEscalationViaEnvironmentVariablesMisuse",
             "Potential Local Privilege Escalation via Environment Variables Misuse",
             ["sh", "-c", "id"],
             env={"GLIBC_TUNABLES": "glibc.tune.hwcaps=-WAITED,glibc.tune.secrets=2"}),
        # busybox's crontab (Debian's cron is not installed here)
        Step("ScheduleCronJobs", "Schedule Cron Jobs", [n + "crontab", "-l"]),
        Step("SetSetuidOrSetgidBit", "Set Setuid or Setgid bit",
             ["sh", "-c", f"touch {t}/suid && chmod u+s {t}/suid && rm {t}/suid"]),
        Step("SystemProcsNetworkActivity", "System procs network activity",
             [n + "sha1sum", "-I", "-S", "-c",
              "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
              ".connect(('10.2.3.4', 8192))"]),
        # vipw would edit /etc/passwd: the generator's own stand-in, a harmless program
        Step("UserMgmtBinaries", "User mgmt binaries", [n + "vipw"], mark=("proc.name", "vipw")),
        # sandbox
        Step("CreateHiddenFilesOrDirectories", "Create Hidden Files or Directories",
             _py(f"import os; os.mkdir('{t}/.falco-event-generator-hidden')"),
             mark=("proc.cmdline", "os.mkdir")),
        Step("DetectCryptoMinersUsingTheStratumProtocol",
             "Detect crypto miners using the Stratum protocol",
             ["echo", "-o stratum+tcp", "-u user", "-p pass"]),
        # lua is not installed; python is in the same interpreted_binaries list
        Step("InterpretedProcsInboundNetworkActivity",
             "Interpreted procs inbound network activity", _py(f"""
            import socket
            s = socket.socket()
            s.bind(('{local_ip}', 0))
            s.listen()
        """), mark=("proc.cmdline", "listen")),
        Step("InterpretedProcsOutboundNetworkActivity",
             "Interpreted procs outbound network activity",
             _py(f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                 f".connect(('{PUBLIC}', 53))")),
        Step("MkdirBinaryDirs", "Mkdir binary dirs", _py("""
            import os, tempfile
            os.rmdir(tempfile.mkdtemp(dir="/bin", prefix="falco-event-generator-"))
        """), mark=("proc.cmdline", "mkdtemp")),
        # renaming /bin/true would break the host for a moment: the generator
        # counts the attempt (EACCES as daemon) as enough, and so does the rule
        Step("ModifyBinaryDirs", "Modify binary dirs",
             [*AS_DAEMON, SYS_PY, "-I", "-S", "-c",
              "import os\ntry:\n    os.rename('/bin/true', '/bin/true.falco-event-generator')\n"
              "except PermissionError:\n    pass\n"], mark=("proc.cmdline", "os.rename")),
        Step("ReadShellConfigurationFile", "Read Shell Configuration File", _py(f"""
            import os
            os.mkdir('{t}/rc')
            open('{t}/rc/.bashrc', 'w+').close()
            open('{t}/rc/.bashrc').close()
        """), mark=("proc.cmdline", "/rc/.bashrc")),
        # sudoedit and pkexec are not installed; the rules look at the name and
        # arguments, run by a user who logged in (loginuid) as daemon
        Step("SudoPotentialPrivilegeEscalation", "Sudo Potential Privilege Escalation",
             [*AS_DAEMON, n + "sudoedit", "-u", "daemon", "-s", "ls\\"], loginuid=1),
        Step("PolkitLocalPrivilegeEscalationVulnerabilityCVE20214034",
             "Polkit Local Privilege Escalation Vulnerability (CVE-2021-4034)",
             [*AS_DAEMON, n + "pkexec"], loginuid=1),
        Step("UnprivilegedDelegationOfPageFaultsHandlingToAUserspaceProcess",
             "Unprivileged Delegation of Page Faults Handling to a Userspace Process",
             [*AS_DAEMON, SYS_PY, "-I", "-S", "-c",
              "import ctypes; ctypes.CDLL(None).syscall(323, 0)"]),   # userfaultfd (x86_64)
        Step("WriteBelowBinaryDir", "Write below binary dir", _mkstemp_in("/bin"),
             mark=_in("/bin")),
        Step("WriteBelowEtc", "Write below etc", _mkstemp_in("/etc"),
             mark=_in("/etc")),
        Step("WriteBelowMonitoredDir", "Write below monitored dir", _mkstemp_in("/lib"),
             mark=_in("/lib")),
        Step("WriteBelowRoot", "Write below root", _mkstemp_in("/root"),
             mark=_in("/root")),
        Step("WriteBelowRpmDatabase", "Write below rpm database", _mkstemp_in("/var/lib/rpm"),
             mark=_in("/var/lib/rpm")),
    ]


# The container actions: busybox's applets in the test image, and bgact
# (below) for the bare syscalls the generator makes itself. The image's
# shell runs an applet named bare without an execve of its name (in
# itself, or as /proc/self/exe), so a program the rule knows by name is run
# through a link to busybox in /tmp/names: an execve under that name, as the
# generator's exec.Command makes. The same link stands in for the programs
# the image lacks (apk, scp, nmap): those rules look at the name.
CONTAINER_STEPS = [
    Step("ChangeNamespacePrivilegesViaUnshare", "Change namespace privileges via unshare",
         ["unshare"], where="container"),   # no arguments: unshare(0), as util-linux's
    Step("ContactEC2InstanceMetadataServiceFromContainer",
         "Contact EC2 Instance Metadata Service From Container",
         ["/bgact", "connect", "169.254.169.254", "80"], where="container"),
    Step("ContainerDriftDetectedChmod", "Container Drift Detected (chmod)",
         ["sh", "-c", "touch /tmp/drift && chmod 755 /tmp/drift"], where="container",
         mark=("proc.cmdline", "/tmp/drift")),
    Step("ContainerDriftDetectedOpenCreate", "Container Drift Detected (open+create)",
         ["/bgact", "create", "/tmp/falco-event-generator-drift"], where="container",
         mark=("proc.name", "bgact")),
    Step("DecodingPayloadInContainer", "Decoding Payload in Container",
         ["sh", "-c", "echo ZGVjb2RlZF9ieV9ldmVudC1nZW5lcmF0b3I= | base64 -d"],
         where="container"),
    Step("DropAndExecuteNewBinaryInContainer", "Drop and execute new binary in container",
         ["sh", "-c", "cp /bin/ls /bin/falco-event-generator-dropped && "
                      "/bin/falco-event-generator-dropped"], where="container"),
    Step("KubernetesClientToolLaunchedInContainer",
         "Kubernetes Client Tool Launched in Container",
         ["sh", "-c", "mkdir -p /tmp/k && printf '#!/bin/sh\\necho hello world\\n' "
                      "> /tmp/k/kubectl && chmod +x /tmp/k/kubectl && /tmp/k/kubectl"],
         where="container"),
    Step("LaunchIngressRemoteFileCopyToolsInContainer",
         "Launch Ingress Remote File Copy Tools in Container", ["/tmp/names/wget", "-V"],
         where="container"),
    Step("LaunchPackageManagementProcessInContainer",
         "Launch Package Management Process in Container", ["/tmp/names/apk", "version"],
         where="container"),
    Step("LaunchRemoteFileCopyToolsInContainer", "Launch Remote File Copy Tools in Container",
         ["/tmp/names/scp"], where="container"),
    Step("LaunchSuspiciousNetworkToolInContainer",
         "Launch Suspicious Network Tool in Container",
         ["/tmp/names/nmap", "-sn", "192.168.1.0/24"], where="container"),
    Step("NetcatRemoteCodeExecutionInContainer", "Netcat Remote Code Execution in Container",
         ["/tmp/names/nc", "-e", "/bin/sh", "127.0.0.1", "1"], where="container"),
    Step("PacketSocketCreatedInContainer", "Packet socket created in container",
         ["/bgact", "packet"], where="container"),
    Step("ReadEnvironmentVariableFromProcFiles", "Read environment variable from /proc files",
         ["cat", "/proc/self/environ"], where="container"),
    # privileged
    Step("DebugfsLaunchedInPrivilegedContainer", "Debugfs Launched in Privileged Container",
         ["/usr/sbin/debugfs", "-V"], where="privileged"),   # busybox bound in as debugfs
    Step("MountLaunchedInPrivilegedContainer", "Mount Launched in Privileged Container",
         ["/tmp/names/mount", "-o"], where="privileged"),
    Step("DetectReleaseAgentFileContainerEscapes", "Detect release_agent File Container Escapes",
         ["sh", "-c", "cd /tmp && echo 'hello world' > release_agent"], where="privileged"),
]

# The generator's actions whose rule cannot fire in bpfguard, and why.
NOT_COVERED = {
    "JavaProcessClassFileDownload": (
        "Java Process Class File Download",
        "the rule tests evt.buffer (the bytes a recvfrom read), which bpfguard does not "
        "capture; it is refused at load (rules validate names it)"),
    "ModifyContainerEntrypoint": (
        "Modify Container Entrypoint",
        "the rule tests fd.name startswith /proc/self/fd/, Falco's path as passed; bpfguard's "
        "fd.name is the file the kernel opened, the magic link resolved (a pipe or the file "
        "fd 1 names), so it never starts with /proc/self/fd/"),
}

# The actions test_detect.py / test_containers.py also run with the stable rules alone.
ALSO_COVERED_ELSEWHERE = {"DropAndExecuteNewBinaryInContainer",
                          "DebugfsLaunchedInPrivilegedContainer"}


BGACT = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The bare syscalls event-generator actions make from Go, for a busybox
   container that has no interpreter: connect (non-blocking: EINPROGRESS,
   as the generator's nc before its timeout), a packet socket, a file
   created executable. */
int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "connect")) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
        inet_pton(AF_INET, argv[2], &a.sin_addr);
        int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(s, (struct sockaddr *)&a, sizeof(a));
        return close(s);
    }
    if (argc == 2 && !strcmp(argv[1], "packet"))
        return close(socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL))) ? 0 : 0;
    if (argc == 3 && !strcmp(argv[1], "create")) {
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
        close(fd);
        return unlink(argv[2]);
    }
    return 2;
}
"""


@pytest.fixture(scope="module")
def bgact(tmp_path_factory: pytest.TempPathFactory) -> str:
    """BGACT, static: the image has no C library."""
    d = tmp_path_factory.mktemp("bgact")
    (d / "bgact.c").write_text(BGACT)
    subprocess.run(["gcc", "-O2", "-static", "-o", str(d / "bgact"), str(d / "bgact.c")],
                   check=True)
    return str(d / "bgact")


# -- the sessions ---------------------------------------------------------------

DRIVER = textwrap.dedent("""
    import json, os, subprocess, sys

    def run(steps):
        procs = []
        for s in steps:
            def prepare(loginuid=s["loginuid"]):
                if loginuid is not None:
                    with open("/proc/self/loginuid", "w") as f:
                        f.write(str(loginuid))
            procs.append((s, subprocess.Popen(
                s["argv"], env={**os.environ, **s["env"]}, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=prepare)))
            if not s["background"]:
                wait(procs[-1][1])
        for _, p in procs:
            wait(p)

    def wait(p):
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    run(json.loads(sys.argv[1]))
""")


def _collect(det: Detector, until: Any, drain: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not until():
        out += det.alerts(timeout=0.05)
    end = time.monotonic() + drain
    while time.monotonic() < end:
        out += det.alerts(timeout=0.05)
    out += det.stop()
    return [dict(a) for a in out if a.get("type") != "loss"]


def _local_ip() -> str:
    """This host's address toward PUBLIC (a UDP connect sends nothing)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((PUBLIC, 9))
        return str(s.getsockname()[0])


@pytest.fixture(scope="module")
def host_alerts(engine: Engine) -> Iterator[list[dict[str, Any]]]:
    """The host actions, each in its own process under one driver, in one
    detector session scoped to the driver; every alert of the session."""
    with contextlib.ExitStack() as stack:
        t = tempfile.mkdtemp(prefix="bgtest-rulesets-")
        stack.callback(shutil.rmtree, t, True)
        names = os.path.join(t, "names")
        os.mkdir(names)
        os.chmod(t, 0o755)   # daemon runs some of the names
        for name, target in (("httpd", PY), ("mysqld", PY), ("child", PY), ("sha1sum", PY),
                             ("crontab", BUSYBOX), ("nmap", "/bin/true"),
                             ("vipw", "/bin/true"), ("sudoedit", "/bin/true"),
                             ("pkexec", "/bin/true")):
            os.symlink(target, os.path.join(names, name))
        home = tempfile.mkdtemp(dir="/home", prefix="falco-event-generator-syscall-")
        stack.callback(shutil.rmtree, home, True)
        os.mkdir(os.path.join(home, ".ssh"))
        shm = Path(tempfile.mkstemp(dir="/dev/shm", prefix="falco-event-generator-",
                                    suffix=".sh")[1])
        stack.callback(shm.unlink)
        shm.write_text("#!/bin/sh\n\necho 'hello world'\n")
        shm.chmod(0o755)
        if not os.path.isdir("/var/lib/rpm"):
            os.makedirs("/var/lib/rpm")
            stack.callback(os.rmdir, "/var/lib/rpm")
        steps = host_steps(t, names, os.path.join(home, ".ssh"), str(shm), _local_ip())
        wire = json.dumps([{"argv": s.argv, "env": s.env, "background": s.background,
                            "loginuid": s.loginuid} for s in steps])
        with Detector(engine) as det:
            child = start_watched(det, PY, [PY, "-I", "-S", "-c", DRIVER, wire])
            status: list[int] = []

            def done() -> bool:
                if not status and os.waitpid(child, os.WNOHANG)[0]:
                    status.append(1)
                return bool(status)

            yield _collect(det, done, drain=1.0)


@pytest.fixture(scope="module")
def container_alerts(engine: Engine, runtimes: dict[str, str],  # noqa: F811
                     bgact: str) -> dict[str, list[dict[str, Any]]]:
    """The container actions in an unprivileged and a privileged podman
    container, run at once, in one detector session over the host (a
    container's processes descend from the runtime, not from this test);
    the alerts of each container, by its id."""
    kinds = {"container": [], "privileged": ["--privileged", "-v",
                                             f"{BUSYBOX}:/usr/sbin/debugfs:ro"]}
    cache = ContainerCache(list(engines_at(runtimes["podman"], None, None)))
    with tempfile.TemporaryDirectory() as d, \
            Detector(engine, containers=cache, hold_ns=500_000_000) as det:
        det.start()
        procs, cids = [], {}
        for kind, extra in kinds.items():
            script = ("mkdir /tmp/names && for n in apk scp nmap nc wget mount; do "
                      "ln -s /bin/busybox /tmp/names/$n; done; "
                      + "; ".join(" ".join(_quote(a) for a in s.argv)
                                  for s in CONTAINER_STEPS if s.where == kind)
                      + "; sleep 1")   # so the runtime still knows it when asked
            cids[kind] = Path(d, kind)
            procs.append(subprocess.Popen(
                ["podman", "run", "--rm", "--cidfile", str(cids[kind]), *PODMAN_LIMITS,
                 "--name", f"bgrs{uuid.uuid4().hex[:8]}", "-v", f"{bgact}:/bgact:ro", *extra,
                 IMAGE, "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True))
        alerts = _collect(det, lambda: all(p.poll() is not None for p in procs), drain=1.0)
        for p in procs:
            err = p.communicate()[1]
            assert p.returncode == 0, err[-2000:]
        ids = {kind: path.read_text().strip()[:12] for kind, path in cids.items()}
    return {kind: [a for a in alerts if a["output_fields"].get("container.id") == cid]
            for kind, cid in ids.items()}


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


# -- the tests ------------------------------------------------------------------

def _rules(alerts: list[dict[str, Any]]) -> set[str]:
    return {a["rule"] for a in alerts}


def _raised(step: Step, alerts: list[dict[str, Any]]) -> bool:
    mine = [a["output_fields"] for a in alerts if a["rule"] == step.rule]
    if step.mark is None:
        return bool(mine)
    name, part = step.mark
    return any(part in str(f.get(name)) for f in mine)


@pytest.mark.parametrize("step", host_steps("T", "N", "H", "S", "L"), ids=lambda s: s.action)
def test_host_action_raises_its_rule(step: Step, host_alerts: list[dict[str, Any]]) -> None:
    assert _raised(step, host_alerts), sorted(_rules(host_alerts))


@pytest.mark.parametrize("step", CONTAINER_STEPS, ids=lambda s: s.action)
def test_container_action_raises_its_rule(
        step: Step, container_alerts: dict[str, list[dict[str, Any]]]) -> None:
    alerts = container_alerts[step.where]
    assert _raised(step, alerts), sorted(_rules(alerts))


def test_a_privileged_containers_first_process_is_found_by_its_vpid(
        container_alerts: dict[str, list[dict[str, Any]]]) -> None:
    """incubating's container_started macro: spawned_process and proc.vpid=1
    (the container's init, as its own pid namespace numbers it)."""
    started = [a["output_fields"] for a in container_alerts["privileged"]
               if a["rule"] == "Launch Privileged Container"]
    assert started and started[0]["proc.name"] == "sh", sorted(_rules(
        container_alerts["privileged"]))
    assert "Launch Privileged Container" not in _rules(container_alerts["container"])


def test_every_event_generator_syscall_action_is_covered_or_explained(engine: Engine) -> None:
    """The closing list: the generator's 66 syscall actions (events/syscall
    at 09fdcda0121907680a6550bc49bcee172aa257c5, 68 files with utils.go and
    utils_linux.go) are the steps above and the two that cannot fire, each
    with its rule in the three rulesets."""
    listed = {s.action: s.rule for s in [*host_steps("T", "N", "H", "S", "L"), *CONTAINER_STEPS]}
    listed.update({a: rule for a, (rule, _) in NOT_COVERED.items()})
    assert len(listed) == 66
    assert set(listed) >= ALSO_COVERED_ELSEWHERE
    rules = {r.rule.name for r in engine.compiled}
    refused = {r.name for r in load_rules_or_raise([str(stock_rules_path("sandbox"))]).rules
               if r.unavailable}
    for action, rule in listed.items():
        assert rule in rules or action in NOT_COVERED, (action, rule)
    assert "Java Process Class File Download" in refused


# -- benign work ------------------------------------------------------------------

BENIGN = r"""
set -e
cd "$1"
cat > hello.c <<'C'
#include <stdio.h>
int main(void) { puts("hello"); return 0; }
C
printf 'hello: hello.c\n\tcc -O2 -o hello hello.c\n' > Makefile
make -s && ./hello > /dev/null
mkdir pkg && printf 'def f():\n    return 1\n' > pkg/mod.py
python3 -m compileall -q pkg
dpkg -l > /dev/null
apt-cache policy bash > /dev/null
ls -la /etc > /dev/null; cat /etc/os-release > /dev/null; grep -c root /etc/passwd > /dev/null
echo "$HOME $PATH" | tr ':' '\n' | sort | uniq > paths.txt; wc -l paths.txt > /dev/null
git init -q repo && cd repo
git config user.email t@example.org && git config user.name t
echo text > file && git add file && git commit -qm first && git log --oneline > /dev/null
"""


# The sandbox rules benign work raises, and why (README, "Stock rulesets").
SANDBOX_ON_BENIGN_WORK = {
    "Create Hidden Files or Directories":
        "git init and commit create .git and its files; Falco ships the rule disabled",
}


def test_benign_work_raises_no_incubating_rule_and_few_sandbox_ones(
        engine: Engine, tmp_path: Path) -> None:
    """A small C and Python build, package queries, shell use and git, with
    the three rulesets and the sandbox rules Falco ships disabled enabled
    (ENABLE): nothing from stable or incubating, from sandbox only
    SANDBOX_ON_BENIGN_WORK, all of which are disabled as shipped; so the
    rulesets as shipped raise nothing. (With rule_matching "all" each rule
    is decided alone: the enabled ones cannot hide another's alert.)"""
    with Detector(engine) as det:
        child = start_watched(det, "/bin/sh", ["sh", "-c", BENIGN, "sh", str(tmp_path)],
                              cwd=str(tmp_path))
        status: list[int] = []

        def done() -> bool:
            if not status:
                pid, st = os.waitpid(child, os.WNOHANG)
                if pid:
                    status.append(os.waitstatus_to_exitcode(st))
            return bool(status)

        alerts = _collect(det, done, drain=0.5)
        assert det.evaluated > 1000   # the work was seen
    assert status == [0]
    origin = {c.name: Path(c.rule.context.file).name for c in engine.compiled}
    by_file: dict[str, set[str]] = {}
    for a in alerts:
        by_file.setdefault(origin[a["rule"]], set()).add(a["rule"])
    assert set(by_file) <= {"falco-sandbox_rules.yaml"}, by_file
    assert by_file.get("falco-sandbox_rules.yaml", set()) <= set(SANDBOX_ON_BENIGN_WORK), by_file
    assert set(SANDBOX_ON_BENIGN_WORK) <= set(ENABLE)
