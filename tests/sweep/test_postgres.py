"""The many-machine path: two worker processes on a real PostgreSQL server (a throwaway cluster this test starts).

Skipped, with the reason, where Debian's PostgreSQL binaries, psycopg2 or a user the server accepts
(it refuses to run as root) are missing, or the server does not start -- except on CI (``CI=true``), which
installs all of them: there each of these is a failure, so a broken sweep-on-PostgreSQL cannot show green.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import skip_or_fail
from optuna.trial import TrialState

from fmnist.sweep.runner import make_sweep, open_study, run_sweep
from fmnist.sweep.space import load_sweep


def _bin_dir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        skip_or_fail("psycopg2 is not installed (pip install psycopg2-binary, in the dev extra)")
    bin_dir = _bin_dir()
    if bin_dir is None:
        skip_or_fail("PostgreSQL's initdb/pg_ctl not found (Debian: apt-get install postgresql)")
    user = None
    if os.geteuid() == 0:  # the server refuses root: run it as postgres (Debian's package) or nobody
        if shutil.which("runuser") is None:
            skip_or_fail("running as root and runuser is missing, so PostgreSQL cannot be started as another user")
        names = {p.pw_name for p in pwd.getpwall()}
        user = next((u for u in ("postgres", "nobody") if u in names), None)
        if user is None:
            skip_or_fail("running as root with neither a postgres nor a nobody user to start PostgreSQL as")
    root = Path(tempfile.mkdtemp(prefix="fmnist-pg-"))  # not tmp_path: the server's user must reach it
    data, port = root / "data", _free_port()

    def run(*command: str | Path) -> subprocess.CompletedProcess:
        argv = [str(c) for c in command]
        return subprocess.run(["runuser", "-u", user, "--", *argv] if user else argv, capture_output=True,
                              text=True, timeout=180, cwd=root)

    try:
        if user:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        init = run(bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "sweep", "-E", "UTF8", "--no-sync")
        if init.returncode != 0:
            skip_or_fail(f"initdb failed: {(init.stderr or init.stdout).strip().splitlines()[-1:]}")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        start = run(bin_dir / "pg_ctl", "-D", data, "-l", root / "server.log", "-w", "-t", "120", "-o", options,
                    "start")
        if start.returncode != 0:
            log = (root / "server.log").read_text() if (root / "server.log").is_file() else start.stderr
            skip_or_fail(f"PostgreSQL did not start: {log.strip().splitlines()[-1:]}")
        try:
            yield f"postgresql+psycopg2://sweep@127.0.0.1:{port}/postgres"
        finally:
            run(bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_on_postgresql_share_one_study(postgres_url: str, write_sweep, sweep_dirs) -> None:
    sweep = make_sweep(load_sweep(write_sweep(trials=3)), storage=postgres_url, **sweep_dirs)
    assert not (sweep_dirs["out_dir"] / "study.db").exists()
    result = run_sweep(sweep, workers=2)
    trials = open_study(sweep, create=False).get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == [0, 1, 2]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 2
    for t in trials:
        metrics = json.loads((Path(t.user_attrs["run_dir"]) / "metrics.json").read_text())
        assert metrics["trial"] == t.number and metrics["params"] == t.params
    assert result.summary["storage"] == postgres_url and "postgresql" in result.report["markdown"].read_text()
    assert not (sweep_dirs["out_dir"] / "study.db").exists()  # everything went to the server
