"""The real servers, started from published artifacts for the tests and `devstack --real`.

Maven resolves each service's `pom.xml` (kept in this package, beside its launcher) into a cache folder
once; the service then runs with `java -cp <classpath>`. No jar and no third-party source lives in the
repository. Each server runs in its own process group and is stopped by group, so nothing outlives it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVICES = ("atlas", "hdfs", "mleap")


def cache_root() -> Path:
    """Where resolved artifacts live: $MODEL_GOVERNANCE_CACHE, else ~/.cache/model-governance."""
    configured = os.environ.get("MODEL_GOVERNANCE_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "model-governance"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def require(tool: str, debian_package: str) -> str:
    """The tool's path, or a RuntimeError saying what to install (never a skip)."""
    path = shutil.which(tool)
    if not path:
        raise RuntimeError(
            f"{tool} not found: install the Debian package {debian_package} "
            f"(scripts/install-system-packages does), then run again"
        )
    return path


def java_home(java: str) -> Path:
    return Path(os.path.realpath(java)).parent.parent


def maven_classpath(pom: Path, cache: Path, timeout: float = 1800) -> str:
    """`mvn dependency:build-classpath` of `pom` into `cache/m2`, once: a stamp keyed by the pom's sha256
    makes later calls instant, and every jar is checked to still be there. A lock file lets parallel test
    processes share one resolution."""
    java = require("java", "openjdk-17-jdk-headless")
    mvn = require("mvn", "maven")
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    cache.mkdir(parents=True, exist_ok=True)
    stamp = cache / f"classpath-{digest}.txt"

    def cached() -> str | None:
        if stamp.exists():
            classpath = stamp.read_text().strip()
            if classpath and all(Path(jar).exists() for jar in classpath.split(os.pathsep) if jar):
                return classpath
        return None

    if (classpath := cached()) is not None:
        return classpath
    with open(cache / ".resolve.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may have resolved it while we waited
        if (classpath := cached()) is not None:
            return classpath
        output = cache / f"classpath-{digest}.tmp"
        proc = subprocess.run(
            [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(pom), f"-Dmaven.repo.local={cache / 'm2'}",
             "dependency:build-classpath", f"-Dmdep.outputFile={output}"],
            capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "JAVA_HOME": os.environ.get("JAVA_HOME", str(java_home(java)))},
        )
        if proc.returncode != 0 or not output.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            raise RuntimeError(f"Maven could not resolve {pom} (exit {proc.returncode}):\n{tail}")
        output.replace(stamp)
        return stamp.read_text().strip()


class ServerProcess:
    """One server in its own process group, its output in a log file."""

    def __init__(self, name: str, log: Path) -> None:
        self.name = name
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(
        self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None,
        stdin: int | None = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        if self.running:  # a second start would orphan the first server's process group
            raise RuntimeError(f"{self.name} is already running")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                list(argv), env={**os.environ, **(env or {})}, cwd=cwd, stdin=stdin, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,  # its own group: stopped whole
            )
        return self.process

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str, poll: float = 0.25) -> None:
        """Until `ready()` is true; the server's exit or the deadline raises with the log's tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise RuntimeError(f"{self.name} exited ({code}) before {what}:\n{self.log_tail()}")
            try:
                if ready():
                    return
            except Exception:  # not answering yet
                pass
            time.sleep(poll)
        raise TimeoutError(f"{self.name}: no {what} in {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, grace: float = 20.0, sig: int = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin:
            process.stdin.close()
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        try:  # whatever is left of the group
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()

    def kill(self) -> None:
        """SIGKILL the whole group at once: a crash, for the fault tests."""
        self.stop(grace=0.0, sig=signal.SIGKILL)
