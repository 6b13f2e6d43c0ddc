"""Where a sweep's study lives: an SQLite file by default, any Optuna RDB URL (PostgreSQL, MySQL) for many machines.

Why SQLite through Optuna's ``RDBStorage`` rather than its ``JournalFileBackend``: the RDB storage is the
one with heartbeats (a trial whose process died is found stale and re-queued, on any machine), and it is
the same code path as PostgreSQL, so the single-machine default tests the many-machine one. SQLite is made
safe for a handful of local worker processes in two ways: the database is switched to write-ahead logging
(readers never block the writer, a property stored in the file), and every connection waits up to
:data:`SQLITE_TIMEOUT` seconds for a lock instead of failing with "database is locked". A trial writes a
few rows per epoch, so contention is rare. SQLite on a network file system (NFS) is not safe at all:
use a PostgreSQL URL there.
"""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

from fmnist.errors import FmnistError

SQLITE_TIMEOUT = 60.0
MAX_RETRY = 3  # a trial whose process died is run again at most this many times
DEFAULT_HEARTBEAT = 60  # seconds; a RUNNING trial without a heartbeat for 2x this long is stale


def default_storage(out_dir: Path) -> str:
    return f"sqlite:///{(Path(out_dir) / 'study.db').resolve()}"


def display_url(url: str) -> str:
    """The URL without its password (for reports and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def sqlite_path(url: str) -> Path | None:
    """The database file of an ``sqlite:///`` URL (None for other URLs and in-memory SQLite)."""
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _prepare_sqlite(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with sqlite3.connect(path, timeout=SQLITE_TIMEOUT) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        raise FmnistError(f"cannot open the sweep database {path} ({exc}); pass a writable --storage "
                          f"sqlite:///PATH or a PostgreSQL URL.") from None


def open_storage(url: str, heartbeat: int = DEFAULT_HEARTBEAT) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage with heartbeats and stale-trial retries; one sentence when it cannot be opened."""
    if heartbeat < 1:
        raise FmnistError(f"--heartbeat must be at least 1 second, got {heartbeat}.")
    path = sqlite_path(url)
    if path is not None:
        _prepare_sqlite(path)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna's words
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
    except sqlalchemy.exc.ArgumentError:
        raise FmnistError(f"--storage {url!r} is not a database URL; write e.g. sqlite:///runs/sweeps/x.db or "
                          f"postgresql://user@host/db.") from None
    except (ImportError, sqlalchemy.exc.NoSuchModuleError) as exc:
        raise FmnistError(f"--storage {display_url(url)} needs a database driver that is not installed ({exc}); "
                          f"for PostgreSQL: pip install psycopg2-binary.") from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:200]
        raise FmnistError(f"cannot reach the sweep storage {display_url(url)} ({reason}); check that the server "
                          f"runs and the URL is right.") from None
