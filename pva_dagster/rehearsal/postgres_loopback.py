"""A real PostgreSQL server on 127.0.0.1 for the cluster tests: Debian's server binaries (``make postgres-server``
installs the ``postgresql`` package as root where they are missing), a fresh data folder, password login over TCP
as the cluster's hosts use it, stopped and deleted on exit.

Why the system's binaries and not a server wheel from PyPI: they are the server a deployment runs, and they
listen on TCP; the ``pgserver`` wheel (last released 2024) serves a Unix socket only and, run as root, adds a
system user and changes the permissions of the folders above its data. PostgreSQL refuses to run as root, so
under root the server runs as the ``postgres`` user the Debian package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pva_dagster.rehearsal.dask_loopback import free_port

BIN_ENV = "PVA_POSTGRES_BIN"  # a folder holding initdb and pg_ctl, instead of the newest /usr/lib/postgresql/*/bin
SERVER_USER = "postgres"  # who runs the server when we are root
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class LocalPostgres:
    host: str
    port: int
    user: str
    password: str
    db_name: str

    def environment(self) -> dict[str, str]:
        """The settings cluster/postgres/dagster.yaml reads."""
        return {
            "PVA_POSTGRES_HOST": self.host, "PVA_POSTGRES_PORT": str(self.port), "PVA_POSTGRES_USER": self.user,
            "PVA_POSTGRES_PASSWORD": self.password, "PVA_POSTGRES_DB": self.db_name,
        }

    def connect(self) -> Any:
        import psycopg2  # dagster-postgres's driver

        return psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=self.db_name
        )


def server_bindir() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``: ``$PVA_POSTGRES_BIN``, else the newest Debian server's."""
    if os.environ.get(BIN_ENV):
        candidates = [Path(os.environ[BIN_ENV])]
    else:
        found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
        candidates = sorted((Path(p).parent for p in found), key=lambda p: int(p.parent.name), reverse=True)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise FileNotFoundError(
        "no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or $PVA_POSTGRES_BIN: "
        "`make postgres-server` installs Debian's postgresql (as root), or 'sudo apt-get install postgresql'"
    )


def _as_server_user() -> dict[str, Any]:
    """subprocess arguments that run a server command as an unprivileged user (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise RuntimeError(f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL") from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@contextmanager
def local_postgres(db_name: str = "dagster", user: str = "pva") -> Iterator[LocalPostgres]:
    """A server on 127.0.0.1 at a free port with one database; stopped, and its folder deleted, on exit."""
    bindir, as_user = server_bindir(), _as_server_user()
    folder = Path(tempfile.mkdtemp(prefix="pva-postgres-"))
    data, password = folder / "data", secrets.token_hex(12)
    (folder / "password").write_text(password)
    if as_user:
        for path in (folder, folder / "password"):
            os.chown(path, as_user["user"], as_user["group"])
    run = {"check": True, "capture_output": True, "text": True, "cwd": folder, **as_user}
    port = free_port()
    started = False
    try:
        subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", user, f"--pwfile={folder / 'password'}",
                        "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8"], **run)
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w",
                        "-t", str(START_TIMEOUT_S), "-o", f"-h 127.0.0.1 -p {port} -k {folder}", "start"], **run)
        started = True
        server = LocalPostgres("127.0.0.1", port, user, password, "postgres")
        connection = server.connect()
        try:
            connection.autocommit = True  # CREATE DATABASE runs outside a transaction
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{db_name}"')
        finally:
            connection.close()
        yield LocalPostgres("127.0.0.1", port, user, password, db_name)
    except subprocess.CalledProcessError as error:
        log = (folder / "server.log").read_text() if (folder / "server.log").exists() else ""
        raise RuntimeError(f"PostgreSQL: {' '.join(error.cmd)} failed:\n{error.stderr}\n{log[-2000:]}") from error
    finally:
        if started:
            subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                           **{**run, "check": False})
        shutil.rmtree(folder, ignore_errors=True)
