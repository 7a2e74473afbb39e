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
import time
from pathlib import Path

PG_BIN_ROOT = Path("/usr/lib/postgresql")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_group(process: subprocess.Popen, sig: int, grace: float = 20.0) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


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
        self.process: subprocess.Popen | None = None
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
        log = (self.folder / "postgres.log").open("ab")
        self.process = subprocess.Popen(
            [*self.as_user, str(bin_dir / "postgres"), "-D", str(data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.folder}",
             "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.folder / 'postgres.log').read_text()[-2000:]}")
            ready = subprocess.run(
                [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
            )
            if ready.returncode == 0:
                return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError("postgres did not accept connections in 60 s")

    def psql(self, sql: str) -> None:
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
             "-v", "ON_ERROR_STOP=1", "-qc", sql],
            check=True, capture_output=True,
        )

    def stop(self) -> None:
        if self.process is not None:
            _stop_group(self.process, signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
            self.process = None
        shutil.rmtree(self.folder, ignore_errors=True)


class RedisServer:
    """A Redis on 127.0.0.1:<free port>, nothing saved to disk."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="mg-redis-"))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(server).exists():
            raise RuntimeError("redis-server not found: install Debian's `redis-server`")
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self.folder)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis exited: {(self.folder / 'redis.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError("redis did not answer PING in 30 s")

    def stop(self) -> None:
        if self.process is not None:
            _stop_group(self.process, signal.SIGTERM)
            self.process = None
        shutil.rmtree(self.folder, ignore_errors=True)
