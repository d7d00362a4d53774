"""The agent's control socket: live policy management, root only.

The running agent listens on a Unix stream socket (default
:data:`DEFAULT_SOCKET`, mode 0600 in a 0700 directory). A client connects,
sends one JSON request line and reads one JSON response line::

    -> {"op": "add", "text": "<TracingPolicy YAML>", "source": "file.yaml"}
    <- {"ok": true, "result": {"name": "...", "mode": "enforce", "hooks": 2}}
       ("replace": true: in place of the loaded one of its name, make before break)

    -> {"op": "list"}                              <- {"ok": true, "result": [...]}
    -> {"op": "delete", "name": "NAME"}            <- {"ok": true, "result": null}
    -> {"op": "mode", "name": "NAME", "mode": "monitor"}
    <- {"ok": false, "error": "no policy named 'NAME'; ..."}
    -> {"op": "disable", "name": "NAME"}   detach its hooks, keep it (and "enable")

    -> {"op": "reload"}    the agent re-reads its configuration (as on SIGHUP)
    -> {"op": "status"}    health, what runs, the last reload error
    -> {"op": "rules"}     the Falco rules in force, with their alert counts

    -> {"op": "firewall", "action": "rule-add", "iface": "eth0", "netns": null,
        "rule": {"src": "198.18.7.0/24", "action": "drop"}}
    <- {"ok": true, "result": {"iface": "eth0", "netns": null,
                               "message": "rule 3: --src 198.18.7.0/24 --action drop"}}

``firewall`` makes a live change to an XDP firewall, as `bpfguard firewall`
does: the actions load, unload, mode, limits, rule-add, rule-del,
allow-add, allow-del, ban-add and ban-del, with the arguments
:mod:`bpfguard.firewall.changes` lists (load takes the config file's
``text`` and its name as ``source``, not a path). The agent keeps its
firewalls (and their metrics) in step with what it changes.

The last four are served by the full agent (`bpfguard run`), not by
`bpfguard run --policy`; a server answers a request it does not serve at
all with ``"unsupported": true`` next to the error, which :func:`request`
raises as :class:`NotServed`.

The server hands requests to a :class:`PolicyControl` (the agent's policy
manager), one at a time: it mutates kernel maps. Bad input and kernel
refusals come back to the client as error responses; the server keeps
serving. Peers are checked with SO_PEERCRED (uid 0 only) on top of the
socket's mode; requests are capped in size and each connection has a
deadline, so a stuck client never holds the agent.

:class:`TcpControlServer` serves the same requests on TCP, only when the
configuration asks for it, and only to requests that carry its token
(``"token": "..."``, compared in constant time).

:func:`request` is the client the `bpfguard policy`, `agent`, `rules` and
`firewall` commands use.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import json
import logging
import os
import selectors
import socket
import stat
import struct
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from ..errors import BpfguardError, ConfigError
from ..files import check_trusted_dir
from ..inputs import InputError, check_json_nesting

__all__ = [
    "DEFAULT_SOCKET",
    "MAX_REQUEST",
    "AgentNotListening",
    "ControlError",
    "ControlServer",
    "NotServed",
    "PolicyControl",
    "TcpControlServer",
    "peer_uid",
    "request",
]

DEFAULT_SOCKET = "/run/bpfguard/bpfguard.sock"
MAX_REQUEST = 4 * 1024 * 1024
"""Largest request accepted, in bytes (a policy's YAML is a few KiB)."""
_MAX_RESPONSE = 64 * 1024 * 1024
_MAX_CONNECTIONS = 8
_MODES = ("enforce", "monitor")
_OPS = ("add", "list", "delete", "mode", "enable", "disable", "reload", "status", "rules",
        "firewall")
# requests only the full agent serves, and its method for each
_AGENT_OPS = {"reload": "reload", "status": "status", "rules": "list_rules",
              "firewall": "change_firewall"}

log = logging.getLogger("bpfguard.control")


class ControlError(BpfguardError):
    """A control request failed: the agent's error message, or why it could not
    be reached."""


class AgentNotListening(ControlError):
    """Nothing listens on the control socket (no agent running there)."""


class NotServed(ControlError):
    """The agent there does not serve this request at all (a `bpfguard run
    --policy` agent asked for what only the full agent does)."""


class PolicyControl(Protocol):
    """What the control server dispatches to: the agent's live policies.

    Errors meant for the user are raised as :class:`BpfguardError` (e.g.
    ``bpfguard.policy.PolicyError``, ``ConfigError``, ``UnsupportedError``);
    unknown names as KeyError, a bad mode as ValueError.
    """

    def add_policy(self, text: str, source: str, replace: bool = False) -> dict[str, Any]:
        """Load the TracingPolicy in YAML `text` (from file `source`, for
        messages), all or nothing; a summary such as {"name", "mode", "hooks"}.
        With `replace`, one loaded of its name is replaced, make before break
        (its new version attached before the old one is detached)."""
        ...

    def list_policies(self) -> list[dict[str, Any]]:
        """The loaded policies: name, mode, hooks, file, counters."""
        ...

    def delete_policy(self, name: str) -> None:
        """Unload a policy; KeyError if there is none of that name."""
        ...

    def set_policy_mode(self, name: str, mode: str) -> None:
        """Switch a policy to "enforce" or "monitor"; KeyError for an unknown
        name, ValueError for a bad mode."""
        ...

    def set_policy_enabled(self, name: str, enabled: bool) -> None:
        """Enable or disable a policy (disabled: loaded, no hooks); KeyError
        for an unknown name."""
        ...


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a connected Unix socket
    (SO_PEERCRED: the credentials it had when it connected)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def _not_listening(path: str) -> AgentNotListening:
    return AgentNotListening(
        f"no bpfguard agent is listening on {path}; start one with "
        "`bpfguard run --policy FILE` (or pass --socket)")


def _is_listening(path: str) -> bool:
    """True if something accepts connections on the socket at `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError as exc:
        # EAGAIN (backlog full), a timeout, ...: someone is there
        return exc.errno not in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK)
    finally:
        probe.close()
    return True


def _read_line(conn: socket.socket, limit: int, deadline: float) -> bytes:
    """Bytes up to the first newline (or EOF), read before `deadline`.
    Raises TimeoutError, or ValueError when more than `limit` bytes come
    without a newline."""
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        conn.settimeout(left)
        chunk = conn.recv(min(65536, limit + 1 - len(buf)))
        if not chunk:
            return bytes(buf)
        nl = chunk.find(b"\n")
        if nl >= 0:
            buf += chunk[:nl]
            if len(buf) > limit:
                raise ValueError
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise ValueError


class _BadRequest(Exception):
    """A request the server cannot act on; the message goes to the client.
    `unsupported`: this server does not serve such requests at all."""

    def __init__(self, message: str, *, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


def _param(req: dict[str, Any], key: str) -> str:
    value = req.get(key)
    if not isinstance(value, str):
        raise _BadRequest(f"bad request: {key!r} must be a string")
    return value


class ControlServer:
    """Serves the control socket at `path` for `handler`, in a daemon thread.

    Args:
        path: the socket's path; its directory is created (0700) if missing.
        handler: the agent's policies.
        timeout: seconds a client has to send its request and take the answer.
        max_request: the largest request accepted, in bytes.

    Use as a context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str], handler: PolicyControl, *,
                 timeout: float = 10.0, max_request: int = MAX_REQUEST) -> None:
        self.path = os.fspath(path)
        self.handler = handler
        self.timeout = timeout
        self.max_request = max_request
        self._lock = threading.Lock()         # serializes handler calls
        self._conns_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        self._slots = threading.BoundedSemaphore(_MAX_CONNECTIONS)
        self._sock: socket.socket | None = None
        self._ino: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1
        self._stopping = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Bind the socket (0600) and start serving.

        Raises ControlError if another agent listens on the path, or the path
        is something other than a socket, or it cannot be bound.
        """
        if self._sock is not None:
            raise ControlError(f"control socket {self.path}: already started")
        if self._closed:
            raise ControlError(f"control socket {self.path}: closed")
        sock = self._bind()
        try:
            self._wake_r, self._wake_w = os.pipe()
        except OSError as exc:
            sock.close()
            raise ControlError(f"control socket {self.path}: {exc.strerror or exc}") from None
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="bpfguard-control",
                                        daemon=True)
        self._thread.start()
        log.info("control socket listening on %s", self.path)

    def _bind(self) -> socket.socket:
        """A listening, non-blocking socket at :attr:`path`, mode 0600."""
        # a directory only root can change: bind, chmod and the stale-socket
        # removal below go by path
        try:
            check_trusted_dir(Path(self.path).parent, f"control socket {self.path}",
                              create=True, dir_mode=0o700)
        except ConfigError as exc:
            raise ControlError(str(exc)) from None
        try:
            self._remove_stale()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:
            raise ControlError(f"control socket {self.path}: {exc.strerror or exc}") from None
        try:
            # On Linux the socket file takes the mode of the socket's inode
            # (minus the umask) at bind: no window with a wider mode.
            with contextlib.suppress(OSError):
                os.fchmod(sock.fileno(), 0o600)
            sock.bind(self.path)
            os.chmod(self.path, 0o600)
            st = os.stat(self.path)
            self._ino = (st.st_dev, st.st_ino)
            sock.listen(16)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ControlError(f"control socket {self.path}: {exc.strerror or exc}") from None
        return sock

    def _remove_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(f"control socket {self.path}: exists and is not a socket; "
                               "remove it or pass another path")
        if _is_listening(self.path):
            raise ControlError(f"another bpfguard agent is listening on {self.path}; stop it "
                               "first, or give this one another control socket")
        os.unlink(self.path)
        log.info("removed stale control socket %s", self.path)

    def close(self) -> None:
        """Stop serving and remove the socket. Returns once no handler call is
        in progress; later requests are not served. Idempotent."""
        with self._conns_lock:
            if self._stopping:
                return
            self._stopping = True
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join()
        with self._conns_lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RD)   # wakes a read; an answer still goes
            workers = list(self._workers)
        for w in workers:
            w.join(timeout=self.timeout)
        with self._lock:                      # waits for a handler call in progress
            self._closed = True
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._unlink_ours()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _unlink_ours(self) -> None:
        """Remove the socket file unless it is no longer ours (replaced)."""
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._ino:
                os.unlink(self.path)
        except OSError:
            pass

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- serving -----------------------------------------------------------

    def _serve(self) -> None:
        assert self._sock is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self._sock, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping:
                for key, _ in sel.select():
                    if key.fd == self._wake_r or self._stopping:
                        return
                    try:
                        conn, _addr = self._sock.accept()
                    except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                        continue
                    except OSError as exc:
                        log.warning("control socket: accept: %s", exc)
                        time.sleep(0.1)             # e.g. EMFILE: do not spin
                        continue
                    self._spawn(conn)

    def _spawn(self, conn: socket.socket) -> None:
        if not self._slots.acquire(blocking=False):
            conn.settimeout(1.0)
            with contextlib.suppress(OSError):
                self._send(conn, {"ok": False, "error": "the agent is busy with other control "
                                                         "requests; try again"})
            conn.close()
            return
        worker = threading.Thread(target=self._connection, args=(conn,),
                                  name="bpfguard-control-conn", daemon=True)
        with self._conns_lock:
            self._conns.add(conn)
            self._workers.add(worker)
        worker.start()

    def _connection(self, conn: socket.socket) -> None:
        try:
            deadline = time.monotonic() + self.timeout
            response = self._respond(conn, deadline)
            if response is not None:
                # a short grace to tell a client that ran out of time why
                conn.settimeout(max(deadline - time.monotonic(), 1.0))
                self._send(conn, response)
        except OSError as exc:
            log.debug("control socket: client: %s", exc)
        except Exception:                     # keep serving whatever happened
            log.exception("control socket: unexpected error")
        finally:
            conn.close()
            with self._conns_lock:
                self._conns.discard(conn)
                self._workers.discard(threading.current_thread())
            self._slots.release()

    @staticmethod
    def _send(conn: socket.socket, response: dict[str, Any]) -> None:
        try:
            data = json.dumps(response)
        except (TypeError, ValueError) as exc:
            log.error("control socket: response not serializable: %s", exc)
            data = json.dumps({"ok": False, "error": f"internal error: the agent's answer "
                                                     f"could not be encoded ({exc})"})
        conn.sendall(data.encode() + b"\n")

    def _respond(self, conn: socket.socket, deadline: float) -> dict[str, Any] | None:
        """The response to the request on `conn` (None: nothing to answer)."""
        refused = self._check_peer(conn)
        if refused is not None:
            return {"ok": False, "error": refused}
        try:
            line = _read_line(conn, self.max_request, deadline)
        except ValueError:
            return {"ok": False, "error": f"request too large (the limit is "
                                          f"{self.max_request} bytes)"}
        except TimeoutError:
            log.warning("control socket: a client sent no complete request in %gs",
                        self.timeout)
            return {"ok": False, "error": f"no complete request within {self.timeout:g}s"}
        if not line.strip():
            return None
        try:
            check_json_nesting(line)  # (the decoder recurses a level a call)
            req = json.loads(line)
        except InputError as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        except (ValueError, UnicodeDecodeError) as exc:
            return {"ok": False, "error": f"bad request: not JSON ({exc})"}
        if not isinstance(req, dict):
            return {"ok": False, "error": "bad request: expected a JSON object"}
        refused = self._check_request(req)
        if refused is not None:
            return {"ok": False, "error": refused}
        try:
            return {"ok": True, "result": self._dispatch(req)}
        except _BadRequest as exc:
            if exc.unsupported:
                return {"ok": False, "error": str(exc), "unsupported": True}
            return {"ok": False, "error": str(exc)}

    def _check_peer(self, conn: socket.socket) -> str | None:
        """Why the peer may not make requests (None: it may): root only."""
        uid = peer_uid(conn)
        if uid != 0:
            log.warning("control socket: refused a request from uid %d", uid)
            return (f"permission denied: only root may manage the agent's policies "
                    f"(you are uid {uid})")
        return None

    def _check_request(self, req: dict[str, Any]) -> str | None:
        """Why this request is refused before it is dispatched (None: it is not)."""
        return None

    def _dispatch(self, req: dict[str, Any]) -> Any:
        op = req.get("op")
        if op not in _OPS:
            raise _BadRequest(f"unknown op {op!r} (expected one of: {', '.join(_OPS)})",
                              unsupported=True)
        method = None
        args: tuple[Any, ...] = ()
        if op in _AGENT_OPS:
            method = getattr(self.handler, _AGENT_OPS[op], None)
            if method is None:
                raise _BadRequest(f"{op!r} is served by the full agent (`bpfguard run`), "
                                  "not by `bpfguard run --policy`", unsupported=True)
        # validate before taking the lock
        text = source = name = mode = ""
        replace = False
        if op == "add":
            text = _param(req, "text")
            if not isinstance(req.get("replace", False), bool):
                raise _BadRequest("bad request: 'replace' must be true or false")
            replace = bool(req.get("replace", False))
            src = req.get("source") or "<control socket>"
            if not isinstance(src, str):
                raise _BadRequest("bad request: 'source' must be a string")
            source = src
        elif op in ("delete", "mode", "enable", "disable"):
            name = _param(req, "name")
            if op == "mode":
                mode = _param(req, "mode")
                if mode not in _MODES:
                    raise _BadRequest(f"mode must be 'enforce' or 'monitor', not {mode!r}")
        elif op == "firewall":
            from ..firewall.changes import parse_change

            try:
                args = (parse_change(req),)
            except BpfguardError as exc:
                raise _BadRequest(str(exc)) from None
        with self._lock:
            if self._closed or self._stopping:
                raise _BadRequest("the agent is shutting down")
            try:
                if method is not None:
                    return method(*args)
                if op == "add":
                    return self.handler.add_policy(text, source, replace)
                if op == "list":
                    return self.handler.list_policies()
                if op == "delete":
                    self.handler.delete_policy(name)
                    return None
                if op in ("enable", "disable"):
                    self.handler.set_policy_enabled(name, op == "enable")
                    return None
                self.handler.set_policy_mode(name, mode)
                return None
            except BpfguardError as exc:
                raise _BadRequest(str(exc)) from None
            except KeyError as exc:
                if op not in ("delete", "mode", "enable", "disable"):
                    log.exception("control socket: %s failed", op)
                    raise _BadRequest(f"internal error in the agent: KeyError: {exc}") \
                        from None
                raise _BadRequest(f"no policy named {name!r}; `bpfguard policy list` shows "
                                  "the loaded ones") from None
            except ValueError as exc:
                raise _BadRequest(str(exc)) from None
            except Exception as exc:
                log.exception("control socket: %s failed", op)
                raise _BadRequest(f"internal error in the agent: {type(exc).__name__}: "
                                  f"{exc}") from None


class TcpControlServer(ControlServer):
    """The control requests on TCP at `listen` (``HOST:PORT``), for callers
    that cannot reach the Unix socket. Only requests carrying `token` are
    served; there is no TLS, so bind it to localhost or a private network.
    """

    def __init__(self, listen: str, handler: PolicyControl, *, token: str,
                 timeout: float = 10.0, max_request: int = MAX_REQUEST) -> None:
        if len(token) < 16:
            raise ControlError("a TCP control endpoint needs a token of at least 16 characters")
        super().__init__(f"tcp://{listen}", handler, timeout=timeout, max_request=max_request)
        self.listen = listen
        self._token = token.encode()

    def _bind(self) -> socket.socket:
        from .config import parse_listen

        try:
            host, port = parse_listen(self.listen)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
        except (ValueError, OSError) as exc:
            raise ControlError(f"control endpoint {self.listen}: {exc}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(16)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ControlError(f"control endpoint {self.listen}: {exc.strerror or exc}") \
                from None
        self.address = sock.getsockname()
        return sock

    def _unlink_ours(self) -> None:
        """Nothing on the filesystem to remove."""

    def _check_peer(self, conn: socket.socket) -> str | None:
        return None  # anyone may connect; the token decides

    def _check_request(self, req: dict[str, Any]) -> str | None:
        token = req.pop("token", None)
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self._token):
            log.warning("control endpoint %s: refused a request without the right token",
                        self.listen)
            return "permission denied: a valid token is required"
        return None


def request(op: str, *, socket_path: str | os.PathLike[str] = DEFAULT_SOCKET,
            timeout: float = 30.0, **params: Any) -> Any:
    """Send one request to the agent and return its result.

    Raises ControlError with the agent's message when it refuses,
    AgentNotListening (a ControlError) when no agent listens on the socket,
    and NotServed (a ControlError) when the agent there does not serve `op`.

    `socket_path` may also be ``tcp://HOST:PORT``, the agent's TCP endpoint;
    its token comes from $BPFGUARD_CONTROL_TOKEN unless `params` has one.

    Example::

        request("mode", name="block-shadow", mode="monitor")
    """
    path = os.fspath(socket_path)
    target: Any = path
    if path.startswith("tcp://"):
        from .config import parse_listen

        try:
            target = parse_listen(path.removeprefix("tcp://"))
        except ValueError as exc:
            raise ControlError(f"{path}: {exc}") from None
        params.setdefault("token", os.environ.get("BPFGUARD_CONTROL_TOKEN", ""))
        sock = socket.socket(socket.AF_INET6 if ":" in target[0] else socket.AF_INET,
                             socket.SOCK_STREAM)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    data = json.dumps({**params, "op": op}).encode() + b"\n"
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(target)
        except (FileNotFoundError, ConnectionRefusedError):
            raise _not_listening(path) from None
        except PermissionError:
            raise ControlError(f"{path}: permission denied: the control socket is root-only; "
                               "run this as root (e.g. with sudo)") from None
        except TimeoutError:
            raise ControlError(f"{path}: the agent did not accept the connection within "
                               f"{timeout:g}s") from None
        except OSError as exc:
            if exc.errno in (errno.ENOTSOCK, errno.ECONNREFUSED):
                raise _not_listening(path) from None
            raise ControlError(f"{path}: {exc.strerror or exc}") from None
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass                                # the agent refused early: read why
        except TimeoutError:
            raise ControlError(f"{path}: the agent did not take the request within "
                               f"{timeout:g}s") from None
        try:
            line = _read_line(sock, _MAX_RESPONSE, time.monotonic() + timeout)
        except TimeoutError:
            raise ControlError(f"{path}: no answer from the agent within {timeout:g}s") \
                from None
        except ValueError:
            raise ControlError(f"{path}: the agent's answer is too large") from None
        except OSError as exc:
            raise ControlError(f"{path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    if not line:
        raise ControlError(f"{path}: the agent closed the connection without an answer")
    try:
        check_json_nesting(line)
        resp = json.loads(line)
    except InputError as exc:
        raise ControlError(f"{path}: the agent's answer is {exc}") from None
    except ValueError:
        raise ControlError(f"{path}: the agent's answer is not JSON") from None
    if not isinstance(resp, dict) or "ok" not in resp:
        raise ControlError(f"{path}: the agent's answer is malformed")
    if not resp["ok"]:
        why = str(resp.get("error") or "the agent refused, without a reason")
        raise NotServed(why) if resp.get("unsupported") is True else ControlError(why)
    return resp.get("result")


def read_token(path: str) -> str:
    """The TCP control token in `path`: root's own file, unreadable by anyone
    else (whoever can read it holds root's control of the agent)."""
    where = f"control.tcp_token_file {path}"
    try:
        st = os.stat(path)
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror}") from None
    if st.st_uid != 0 or st.st_mode & 0o077:
        raise ConfigError(f"{where}: must belong to root with no access for group or others "
                          f"(chmod 600); it is mode {st.st_mode & 0o777:o}, uid {st.st_uid}")
    if len(token) < 16:
        raise ConfigError(f"{where}: the token must have at least 16 characters")
    return token
