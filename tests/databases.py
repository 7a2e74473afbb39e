"""PostgreSQL and Redis for the real-Airflow tests, started by the tests themselves.

The machines start neither, so each test session makes a throw-away PostgreSQL cluster in a temporary
folder (run as the unprivileged `postgres` user when the tests run as root: PostgreSQL refuses root) and a
Redis on a free port, each in its own process group, and stops both at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from model_governance_devstack.real import ServerProcess, free_port

PG_BIN_ROOT = Path("/usr/lib/postgresql")


def postgres_bin() -> Path:
    """The newest installed PostgreSQL server's bin folder (Debian keeps them out of PATH)."""
    versions = sorted(PG_BIN_ROOT.glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise RuntimeError(
            "PostgreSQL server not found under /usr/lib/postgresql: install Debian's `postgresql` "
            "(scripts/install-system-packages does)"
        )
    return versions[-1].parent


class PostgresServer:
    """A private PostgreSQL cluster on 127.0.0.1:<free port>, trust authentication, user `postgres`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="mg-postgres-"))
        self.server = ServerProcess("postgres", self.folder / "postgres.log")
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL will not run as root
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.folder, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}"

    def start(self) -> PostgresServer:
        bin_dir = postgres_bin()
        data = self.folder / "data"
        subprocess.run(
            [*self.as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
            check=True, capture_output=True,
        )
        self.server.start(
            [*self.as_user, str(bin_dir / "postgres"), "-D", str(data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.folder}",
             "-c", "fsync=off", "-c", "max_connections=200"],
        )
        ready = [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)]
        try:
            self.server.wait_until(
                lambda: subprocess.run(ready, capture_output=True).returncode == 0, 60, "accepted connections", 0.2
            )
        except BaseException:
            self.stop()
            raise
        return self

    def psql(self, sql: str) -> None:
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
             "-v", "ON_ERROR_STOP=1", "-qc", sql],
            check=True, capture_output=True,
        )

    def stop(self) -> None:
        self.server.stop(sig=signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
        shutil.rmtree(self.folder, ignore_errors=True)


class RedisServer:
    """A Redis on 127.0.0.1:<free port>, nothing saved to disk."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="mg-redis-"))
        self.server = ServerProcess("redis", self.folder / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(server).exists():
            raise RuntimeError("redis-server not found: install Debian's `redis-server`")
        self.server.start(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self.folder)],
        )
        try:
            self.server.wait_until(self._pong, 30, "an answer to PING", 0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def _pong(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
