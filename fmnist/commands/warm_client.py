"""Handing a verb to the warm server (``fmnist warm start``): the client side, light enough for every command.

Why: a verb that trains spends most of ten seconds importing torch, Lightning, torchmetrics and torchvision
before its first step, on every run. When a warm server of this user is running, the dispatcher sends it the
command line, working directory, environment and the three standard file descriptors (so the verb writes to
this terminal or pipe, and reads its stdin), the server forks a copy of itself that has the libraries loaded,
and this process waits and exits with the verb's status. Ctrl-C and SIGTERM sent here are forwarded to the verb.

Nothing is handed off unless a server was started (``fmnist warm start``); ``FMNIST_WARM=0`` never hands off.
A server that cannot serve this command (other code or another Python since it started, a dead server's
socket) is said in one line on stderr, and the verb then runs here as it would without a server.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import stat
import struct
import sys
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[1]  # fmnist/
HEADER = struct.Struct("!I")
MAX_REQUEST = 4 * 2**20  # a command line and an environment: kilobytes
# Verbs a server does not run: `warm` itself, the light model table, and multi-process launches (DDP re-executes
# the command line as new processes, which a forked copy cannot stand in for).
LIGHT_VERBS = ("warm", "models")
MULTI_PROCESS_WORDS = ("ddp", "num_nodes", "devices")  # any --trainer.devices: kept out, whatever its value


def socket_path() -> Path:
    """This user's server socket: ``$FMNIST_WARM_SOCKET``, else in ``$XDG_RUNTIME_DIR``, else in a folder of /tmp."""
    if explicit := os.environ.get("FMNIST_WARM_SOCKET"):
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime else Path("/tmp") / f"fmnist-warm-{os.getuid()}"
    return base / "fmnist-warm.sock"


def private_folder_problem(folder: Path) -> str | None:
    """Why ``folder`` may not hold the socket (another owner, or others may write in it), or None.

    Why: whoever can replace the socket receives the next command's terminal and environment.
    """
    try:
        info = folder.stat()
    except OSError as exc:
        return f"{folder} cannot be read ({exc.strerror})"
    if info.st_uid != os.getuid():
        return f"{folder} belongs to another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{folder} can be written by others (mode {stat.S_IMODE(info.st_mode):o}); make it 0700"
    return None


def code_fingerprint() -> str:
    """The package's files as they are now (names, sizes, modification times) and the Python that runs them.

    A server serves only the code it imported: a client whose files differ (an edit, a checkout) runs cold.
    """
    digest = hashlib.sha256(sys.executable.encode())
    for path in sorted(PACKAGE.rglob("*.py")):
        info = path.stat()
        digest.update(f"{path.relative_to(PACKAGE)}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def send_message(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    """One JSON message, length-prefixed; ``fds`` travel with its first bytes (SCM_RIGHTS)."""
    body = json.dumps(message).encode()
    head = HEADER.pack(len(body))
    if fds:
        socket.send_fds(sock, [head], fds)
    else:
        sock.sendall(head)
    sock.sendall(body)


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 65536))
        if not chunk:
            raise ConnectionError("the other side closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def receive_message(sock: socket.socket, max_fds: int = 0) -> tuple[dict[str, Any], list[int]]:
    """The next message and the file descriptors that came with it."""
    if max_fds:
        head, fds, _, _ = socket.recv_fds(sock, HEADER.size, max_fds)
        head += _read_exactly(sock, HEADER.size - len(head)) if head and len(head) < HEADER.size else b""
    else:
        head, fds = sock.recv(HEADER.size, socket.MSG_WAITALL), []
    if len(head) < HEADER.size:
        raise ConnectionError("the other side closed the connection")
    (size,) = HEADER.unpack(head)
    if size > MAX_REQUEST:
        raise ConnectionError(f"a message of {size} bytes is over the {MAX_REQUEST} a request can be")
    return json.loads(_read_exactly(sock, size)), list(fds)


def wanted(verb: str, argv: list[str]) -> bool:
    """Whether this command may be handed to a server at all (see :data:`LIGHT_VERBS`)."""
    if verb in LIGHT_VERBS or os.environ.get("FMNIST_WARM") == "0":
        return False
    if any(word in arg for arg in argv for word in MULTI_PROCESS_WORDS):
        return False
    gpus = next((argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--gpus"), None)
    return gpus is None or gpus in ("0", "1")


def handoff(verb: str, argv: list[str], prog: str) -> int | None:
    """Run ``verb`` in this user's warm server; its exit status, or None when it ran nowhere (run it here)."""
    if not wanted(verb, argv):
        return None
    path = socket_path()
    if not path.exists():
        return None
    if problem := private_folder_problem(path.parent):
        print(f"note: not using the warm server: {problem}; running here.", file=sys.stderr)
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        print(f"note: the warm server's socket {path} has no server behind it (`fmnist warm start` starts one); "
              f"running here.", file=sys.stderr)
        return None
    with sock:
        return _served(sock, verb, argv, prog)


def _served(sock: socket.socket, verb: str, argv: list[str], prog: str) -> int | None:
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    send_message(sock, {"verb": verb, "argv": argv, "prog": prog, "cwd": os.getcwd(), "env": dict(os.environ),
                        "fingerprint": code_fingerprint()}, fds=[0, 1, 2])
    reply, _ = receive_message(sock)
    if "refused" in reply:
        print(f"note: the warm server did not take this command: {reply['refused']}; running here.", file=sys.stderr)
        return None
    pid = int(reply["pid"])
    forwarded = {sig: signal.signal(sig, lambda signum, frame: _forward(pid, signum))
                 for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                done, _ = receive_message(sock)
                break
            except InterruptedError:
                continue
    except ConnectionError:
        print(f"error: the warm server's copy running this command (pid {pid}) vanished without a status.",
              file=sys.stderr)
        return 1
    finally:
        for sig, previous in forwarded.items():
            signal.signal(sig, previous)
    status = int(done["status"])
    return status if status >= 0 else 128 - status  # killed by signal N: 128 + N, as a shell says


def _forward(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
