"""Real MLeap for the tests and `devstack --real mleap`: the real MLeap runtime behind the spring-boot API.

The mleap-spring-boot server is not served by this machine's Maven registry (every version answers 404),
so the real server cannot run here. What runs instead is `mleap/MLeapRuntimeHost.java`, a small first-party
host that answers mleap-spring-boot's REST contract and hands every bundle load and every transform to the
real MLeap runtime (`ml.combust.mleap:mleap-runtime_2.12:0.20.0`, resolved by `mleap/pom.xml`). The
bundle loading, its errors, the schemas and the predictions are MLeap's; only the HTTP layer is ours.

The host's source is compiled once into the cache (a single-file source launch compiles it at every start:
14-18 s here, against 3.7 s for the compiled class).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from model_governance_devstack.real import HERE, ServerProcess, cache_root, free_port, maven_classpath, require

SOURCE = HERE / "mleap" / "MLeapRuntimeHost.java"
POM = HERE / "mleap" / "pom.xml"
MAIN = "MLeapRuntimeHost"


def compiled_host(classpath: str, cache: Path) -> Path:
    """The folder holding MLeapRuntimeHost.class, compiled once per (source, classpath)."""
    javac = require("javac", "openjdk-17-jdk-headless")
    digest = hashlib.sha256(SOURCE.read_bytes() + classpath.encode()).hexdigest()[:16]
    classes = cache / f"host-{digest}"
    if (classes / f"{MAIN}.class").exists():
        return classes
    building = cache / f"host-{digest}.{os.getpid()}.tmp"
    building.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([javac, "-nowarn", "-encoding", "UTF-8", "-cp", classpath, "-d", str(building), str(SOURCE)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"javac could not compile {SOURCE}:\n{proc.stderr[-3000:]}")
    try:
        building.rename(classes)
    except OSError:  # another process compiled it first
        pass
    return classes


class MLeapRuntimeHost:
    """The real MLeap runtime serving the spring-boot API on 127.0.0.1:`port`, its own process group."""

    def __init__(self, state_dir: Path, port: int = 0, cache_dir: Path | None = None, heap: str = "512m",
                 load_delay: float = 0.0, stop_delay: float = 0.0):
        self.state_dir = Path(state_dir)
        self.load_delay = load_delay  # not MLeap's: a pause before each load, to reach a model while it loads
        # how long an unloaded model's name stays taken (Akka stops its actor asynchronously): a POST of the
        # same name in that window answers 400, as a real server's can right after a DELETE
        self.stop_delay = stop_delay
        self.port = port or free_port()
        self.cache_dir = Path(cache_dir) if cache_dir else cache_root() / "mleap"
        self.heap = heap
        self.models_dir = self.state_dir / "models"  # where deployments put bundles; read with file: URIs
        self.server = ServerProcess("MLeap runtime host", self.state_dir / "mleap-runtime-host.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.server.process.pid if self.server.process else None

    def connection(self) -> dict[str, Any]:
        """The Airflow connection the product's MLeap hook reads: spring-boot API, `file:` URIs of bundles in
        `models_dir`. The host runs on this machine, so the folder it reads is the folder the deploy writes."""
        folder = str(self.models_dir)
        return {"conn_type": "mleap", "host": "127.0.0.1", "port": self.port,
                "extra": {"api": "spring-boot", "models_dir": folder, "models_mount": folder}}

    def start(self, timeout: float = 120) -> "MLeapRuntimeHost":
        java = require("java", "openjdk-17-jdk-headless")
        classpath = maven_classpath(POM, self.cache_dir)
        classes = compiled_host(classpath, self.cache_dir)
        tmp = self.state_dir / "tmp"  # HttpRepository's temp files (never deleted, as in MLeap) stay in here
        for folder in (tmp, self.models_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.server.start(
            [java, f"-Xmx{self.heap}", "-XX:+UseSerialGC", f"-Djava.io.tmpdir={tmp}",
             f"-Dmleap.host.loadDelayMs={int(self.load_delay * 1000)}",
             f"-Dmleap.host.stopDelayMs={int(self.stop_delay * 1000)}",
             "-cp", os.pathsep.join([str(classes), classpath]), MAIN, str(self.port)],
            cwd=self.state_dir,
        )
        try:
            self.server.wait_until(self.healthy, timeout, "a healthy /actuator/health")
        except Exception:
            self.server.stop(grace=5)
            raise
        return self

    def healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/actuator/health", timeout=2) as answer:
            return answer.status == 200 and json.loads(answer.read()).get("status") == "UP"

    def stop(self) -> None:
        self.server.stop()

    def kill(self) -> None:
        self.server.kill()

    def __enter__(self) -> "MLeapRuntimeHost":
        return self if self.server.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
