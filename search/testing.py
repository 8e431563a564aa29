"""Real servers for tests and benchmarks: a throwaway PostgreSQL on loopback.

Debian's PostgreSQL binaries are used as installed (`.ci/run` installs them). PostgreSQL refuses
to run as root, so under root the server runs as the `postgres` system user the package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine (tests skip with this reason)."""


def postgres_bin_dir() -> Path:
    """The directory with initdb/pg_ctl: $PG_BIN, PATH, or Debian's /usr/lib/postgresql/N/bin."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    raise PostgresUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found; on Debian: apt-get install postgresql")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    if not shutil.which("runuser"):
        raise PostgresUnavailable("running as root and `runuser` is missing: PostgreSQL cannot run as root")
    return ["runuser", "-u", "postgres", "--", *command]


@contextlib.contextmanager
def postgres_server(*, password: str = "search", database: str = "search") -> Iterator[str]:
    """Starts a PostgreSQL server in a fresh temporary folder, listening on 127.0.0.1 only, and
    yields a SQLAlchemy URL (`postgresql+psycopg://search:PASSWORD@127.0.0.1:PORT/DATABASE`).
    The server is stopped (fast shutdown) and its folder removed when the block ends."""
    with restartable_postgres_server(password=password, database=database) as server:
        yield server.url


@dataclass
class PostgresServer:
    """A running throwaway server that a test may stop and start again (same port, same data):
    what a restart of the database looks like to a search."""

    url: str
    _control: Callable[[str], None]

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as in a restart or a crash of the server."""
        self._control("stop")

    def start(self) -> None:
        self._control("start")


@contextlib.contextmanager
def restartable_postgres_server(*, password: str = "search", database: str = "search") -> Iterator[PostgresServer]:
    """`postgres_server`, yielding a handle that can also stop and start the server."""
    bin_dir = postgres_bin_dir()
    # Its own folder in the system temp dir: under root the server runs as `postgres`, which
    # cannot enter pytest's private (0700) temp folders.
    with tempfile.TemporaryDirectory(prefix="search-pg-") as folder:
        yield from _serve(bin_dir, Path(folder), password, database)


def _serve(bin_dir: Path, root: Path, password: str, database: str) -> Iterator[PostgresServer]:
    data = root / "pgdata"
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(pwfile, "postgres")
        os.chmod(root, 0o700)
    port = _free_port()

    def run(command: list[str]) -> None:
        result = subprocess.run(_as_server_user(command), capture_output=True, text=True, cwd=root)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:2])} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")

    def control(action: str) -> None:
        if action == "start":
            run([
                str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
                "-o", f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200", "start",
            ])
        else:
            run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])

    run([str(bin_dir / "initdb"), "-D", str(data), "-U", "search", f"--pwfile={pwfile}", "-A", "scram-sha-256", "--no-sync", "-E", "UTF8"])
    control("start")
    try:
        url = f"postgresql+psycopg://search:{password}@127.0.0.1:{port}/postgres"
        _create_database(url, database)
        yield PostgresServer(url.rsplit("/", 1)[0] + f"/{database}", control)
    finally:
        subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True, cwd=root)


def _create_database(admin_url: str, database: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + 30
    while True:
        try:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text(f'CREATE DATABASE "{database}"'))
            break
        except sqlalchemy.exc.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    engine.dispose()
