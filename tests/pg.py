"""A throwaway PostgreSQL cluster for tests and benchmarks.

initdb refuses to run as root, so as root the cluster runs as the ``postgres`` user in a
directory that user owns; as any other user it runs as that user. Data is not fsynced
(``fsync=off``): these clusters hold nothing worth keeping.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

PG_BIN_CANDIDATES = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


class PostgresUnavailable(Exception):
    """PostgreSQL binaries (or the postgres user, when root) are missing here."""


def _pg_bin() -> Path:
    env = os.environ.get("CERTGATE_PG_BIN")
    candidates = [Path(env)] if env else PG_BIN_CANDIDATES
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise PostgresUnavailable("PostgreSQL server binaries not found (apt-get install postgresql)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PostgresCluster:
    directory: Path
    port: int
    run_as: list[str]
    bin_dir: Path
    _counter: int = 0

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _psql(self, sql: str) -> None:
        subprocess.run(
            [*self.run_as, str(self.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.port),
             "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
            check=True, capture_output=True,
        )

    def create_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [*self.run_as, str(self.bin_dir / "pg_ctl"), "-D", str(self.directory / "data"),
             "-m", "immediate", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


def start_cluster(*, fsync: bool = False) -> PostgresCluster:
    """Start a cluster; ``fsync=True`` makes commits durable (for benchmarks that claim so)."""
    bin_dir = _pg_bin()
    directory = Path(tempfile.mkdtemp(prefix="certgate-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            postgres = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise PostgresUnavailable("running as root but there is no postgres user") from exc
        os.chown(directory, postgres.pw_uid, postgres.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = directory / "data"
    port = _free_port()
    try:
        subprocess.run(
            [*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
             "--no-sync", "-E", "UTF8"],
            check=True, capture_output=True, cwd=directory,
        )
        subprocess.run(
            [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l",
             str(directory / "log"), "-o",
             f"-c listen_addresses=127.0.0.1 -p {port} -k {directory} "
             f"-c fsync={'on' if fsync else 'off'} -c max_connections=200",
             "start"],
            check=True, capture_output=True, cwd=directory,
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(directory, ignore_errors=True)
        raise PostgresUnavailable(
            f"could not start PostgreSQL: {exc.stderr.decode(errors='replace').strip()}"
        ) from exc
    return PostgresCluster(directory, port, run_as, bin_dir)
