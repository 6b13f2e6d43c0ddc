"""``fmnist warm start|stop|status|serve``: the warm server that later commands hand themselves to.

Why: see :mod:`fmnist.commands.warm_client` (the client side). The server imports every verb's work module once
(torch, Lightning, Captum, scikit-learn, Optuna ...), listens on a Unix socket of this user's, and for each
command forks a small waiter, which forks the verb's process. That process takes the client's standard file
descriptors, working directory, environment, thread count and signal defaults, runs the verb exactly as
``fmnist VERB ...`` would, and the waiter sends the client its exit status (or the signal that killed it). This
is the preloader of Spring (Rails) and nailgun (JVM); forking a process that has loaded torch but run no
parallel region and touched no GPU is safe.

Only processes of the server's own user are served (SO_PEERCRED), the socket's folder must be this user's
alone, and a client whose package files differ from what the server imported is refused (it then runs cold).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from fmnist.commands import VERBS, call, guarded
from fmnist.commands.warm_client import (
    code_fingerprint,
    private_folder_problem,
    receive_message,
    send_message,
    socket_path,
)
from fmnist.errors import FmnistError

PRELOADED = tuple(verb.work for verb in VERBS if verb.name != "warm")


def run(args: argparse.Namespace) -> int:
    path = socket_path()
    if args.action == "serve":
        return serve(path)
    if args.action == "start":
        return start(path, args.timeout)
    if args.action == "stop":
        return stop(path)
    return status(path)


def _pid_of(path: Path) -> int | None:
    """The pid of the server behind ``path`` (asked over the socket), or None when none answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            send_message(sock, {"ping": True})
            reply, _ = receive_message(sock)
            return int(reply["server_pid"])
    except (OSError, ValueError, KeyError):
        return None


def status(path: Path) -> int:
    pid = _pid_of(path)
    if pid is None:
        print(f"no warm server at {path} (`fmnist warm start` starts one)")
        return 1
    print(f"warm server pid {pid} at {path}")
    return 0


def stop(path: Path) -> int:
    pid = _pid_of(path)
    if pid is None:
        print(f"no warm server at {path}")
        return 0
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not path.exists():
            break
        time.sleep(0.05)
    print(f"stopped the warm server (pid {pid})")
    return 0


def private_folder(path: Path, doing: str) -> None:
    """Make the socket's folder (mode 0700) if it is missing; refuse one that others own or can write in."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if problem := private_folder_problem(path.parent):
        raise FmnistError(f"{doing}: {problem}.")


def start(path: Path, timeout: float) -> int:
    """Launch ``serve`` in its own session, detached from this terminal; wait until it answers."""
    if (pid := _pid_of(path)) is not None:
        print(f"a warm server is running already (pid {pid}, {path}); `fmnist warm stop` first to restart it")
        return 0
    private_folder(path, "cannot start the warm server")
    log = path.with_suffix(".log")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # each command brings its own
    started = time.perf_counter()
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "fmnist.commands", "warm", "serve"], stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    while time.perf_counter() - started < timeout:
        if server.poll() is not None:
            raise FmnistError(f"the warm server exited {server.returncode} while starting; its log: {log}.")
        if _pid_of(path) is not None:
            print(f"warm server ready in {time.perf_counter() - started:.1f} s (pid {server.pid}, {path}); "
                  f"`fmnist`, `train.py` and `evaluate.py` commands now start in it")
            return 0
        time.sleep(0.1)
    server.terminate()
    raise FmnistError(f"the warm server did not answer within {timeout:.0f} s; its log: {log}.")


def serve(path: Path) -> int:
    """Import every verb, then serve commands until SIGTERM; the socket is removed on the way out."""
    for module in PRELOADED:
        importlib.import_module(module)
    torch = sys.modules.get("torch")
    default_threads = torch.get_num_threads() if torch is not None else 0
    private_folder(path, "cannot serve")
    fingerprint = code_fingerprint()
    server_pid = os.getpid()
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(16)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the waiters are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    print(f"warm server {server_pid} serving {path} (code {fingerprint}, {default_threads} threads)", flush=True)
    try:
        while True:
            conn, _ = listener.accept()
            if _peer_uid(conn) != os.getuid():
                conn.close()
                continue
            if os.fork() == 0:  # the waiter: never returns into this loop
                listener.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # it waits for its verb itself
                os._exit(_wait_for_command(conn, fingerprint, server_pid, default_threads))
            conn.close()
    finally:
        if os.getpid() == server_pid:
            listener.close()
            path.unlink(missing_ok=True)


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _wait_for_command(conn: socket.socket, fingerprint: str, server_pid: int, default_threads: int) -> int:
    """In the waiter: read the request, fork the verb's process, send its pid, then its exit status."""
    try:
        request, fds = receive_message(conn, max_fds=3)
        refusal = None
        if request.get("fingerprint") != fingerprint:
            refusal = ("the package's files changed since the server started (restart it: `fmnist warm stop && "
                       "fmnist warm start`)")
        elif len(fds) != 3:
            refusal = "stdin, stdout and stderr did not arrive"
        if request.get("ping") or refusal:
            for fd in fds:  # not used: closed here, not left open in whoever called
                os.close(fd)
            send_message(conn, {"server_pid": server_pid} if request.get("ping") else {"refused": refusal})
            return 0
        pid = os.fork()
        if pid == 0:
            conn.close()
            _run_command(request, fds, default_threads)  # never returns
        for fd in fds:
            os.close(fd)
        send_message(conn, {"pid": pid})
        _, wait_status = os.waitpid(pid, 0)
        send_message(conn, {"status": os.waitstatus_to_exitcode(wait_status)})
        return 0
    except (OSError, ValueError, KeyError):
        return 1


def _run_command(request: dict[str, Any], fds: list[int], default_threads: int) -> None:
    """In the verb's process: become the client's command, run the verb, exit with its status (never returns)."""
    status = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 -- the client's stdin, for the life of this process
        sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["FMNIST_WARM"] = "0"  # the verb runs here; it must not hand itself off again
        os.environ["FMNIST_WARM_SERVED"] = "1"  # metrics.json says the run started warm (its wall time has no imports)
        torch = sys.modules.get("torch")
        if torch is not None and default_threads:
            threads = os.environ.get("OMP_NUM_THREADS", "")
            torch.set_num_threads(int(threads) if threads.isdigit() and int(threads) > 0 else default_threads)
        prog = request["prog"]
        sys.argv = [prog, *request["argv"]]
        status = guarded(lambda: call(request["verb"], list(request["argv"]), prog=prog))
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # what Python prints for an uncaught exception, then status 1
        traceback.print_exc()
        status = 1
    # Exit as a process started for this command would: atexit handlers (loggers, writers) run and streams
    # flush. Nothing above this frame acts on SystemExit but the server's cleanup, which checks its pid.
    raise SystemExit(status)
