"""``fmnist warm start|stop|status``: options."""

from __future__ import annotations

import argparse


def build_parser(prog: str = "fmnist warm") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="A preloaded server that starts every later `fmnist`/`train.py` command of this user "
                               "in a fraction of a second instead of ~10 s of imports. Socket: $FMNIST_WARM_SOCKET, "
                               "else $XDG_RUNTIME_DIR/fmnist-warm.sock, else /tmp/fmnist-warm-UID/. FMNIST_WARM=0 "
                               "runs a command without it.")
    parser.add_argument("action", choices=("start", "stop", "status", "serve"),
                        help="start (in the background, waits until ready), stop, status; serve runs it in the "
                             "foreground (what start launches)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds `start` waits for the server (120)")
    return parser
