"""Where a sweep's study lives: an SQLite file by default, any Optuna RDB URL (PostgreSQL, MySQL) for many machines.

Why SQLite through Optuna's ``RDBStorage`` rather than its ``JournalFileBackend``: the RDB storage is the
one with heartbeats (a trial whose process died is found stale and re-queued, on any machine), and it is
the same code path as PostgreSQL, so the single-machine default tests the many-machine one. SQLite is made
safe for a handful of local worker processes in two ways: the database is switched to write-ahead logging
(readers never block the writer, a property stored in the file), and every connection waits up to
:data:`SQLITE_TIMEOUT` seconds for a lock instead of failing with "database is locked". A trial writes a
few rows per epoch, so contention is rare. SQLite on a network file system (NFS) is not safe at all:
use a PostgreSQL URL there.

Everything that can fail is found before the sweep writes anything: a server is given
:data:`CONNECT_TIMEOUT` seconds to answer (one that accepts and never answers used to hang the sweep
forever), an SQLite file's folder must exist (a typo'd ``sqlite:////nonexistent/dir/s.db`` used to create
folders at the filesystem root), and ``postgresql://`` without a driver names the installed one
(SQLAlchemy 2.1 picks psycopg 3 for it, even where only psycopg2 is installed).
"""

from __future__ import annotations

import importlib.util
import sqlite3
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

from fmnist.errors import FmnistError

SQLITE_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10  # seconds a database server gets to answer a connection
POSTGRES_DRIVERS = (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2"))
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


def _backend(url: str) -> str | None:
    try:
        return make_url(url).get_backend_name()
    except sqlalchemy.exc.ArgumentError:
        return None


def with_driver(url: str) -> str:
    """``postgresql://...`` -> ``postgresql+psycopg2://...`` where psycopg2 (not psycopg 3) is installed."""
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return url
    if parsed.drivername != "postgresql":
        return url
    for module, driver in POSTGRES_DRIVERS:
        if importlib.util.find_spec(module) is not None:
            return parsed.set(drivername=driver).render_as_string(hide_password=False)
    return url


def _prepare_sqlite(path: Path, url: str, own_folder: Path | None) -> None:
    if not path.parent.is_dir():
        if own_folder is None or path.parent.resolve() != own_folder.resolve():
            raise FmnistError(f"the folder {path.parent} of --storage {url} does not exist; create it first "
                              f"(mkdir -p {path.parent}) or pass a path in an existing folder.")
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with sqlite3.connect(path, timeout=SQLITE_TIMEOUT) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        raise FmnistError(f"cannot open the sweep database {path} ({exc}); pass a writable --storage "
                          f"sqlite:///PATH or a PostgreSQL URL.") from None


def open_storage(url: str, heartbeat: int = DEFAULT_HEARTBEAT,
                 own_folder: Path | None = None) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage with heartbeats and stale-trial retries; one sentence when it cannot be opened.

    ``own_folder``: the sweep's output folder, which an SQLite database there may create; any other missing
    folder is named, not created.
    """
    if heartbeat < 1:
        raise FmnistError(f"--heartbeat must be at least 1 second, got {heartbeat}.")
    given, path = url, sqlite_path(url)
    if path is not None:
        _prepare_sqlite(path, url, own_folder)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT}}
    else:
        url = with_driver(url)
        engine_kwargs = {"pool_pre_ping": True}
        if _backend(url) in ("postgresql", "mysql", "mariadb"):
            engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna's words
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
    except sqlalchemy.exc.ArgumentError:
        raise FmnistError(f"--storage {given!r} is not a database URL; write e.g. sqlite:///runs/sweeps/x.db or "
                          f"postgresql://user@host/db.") from None
    except (ImportError, sqlalchemy.exc.NoSuchModuleError) as exc:
        raise FmnistError(f"--storage {display_url(given)} needs a database driver that is not installed ({exc}); "
                          f"for PostgreSQL: pip install psycopg2-binary.") from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:200]
        raise FmnistError(f"cannot reach the sweep storage {display_url(given)} ({reason}); check that the server "
                          f"runs and the URL is right.") from None
