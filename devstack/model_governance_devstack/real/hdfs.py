"""A real HDFS for tests: Hadoop's MiniDFSCluster (NameNode(s) + one DataNode in one JVM) from Maven Central.

Needs `java` (a JDK: the launcher is started as a single-file source program) and `mvn` on PATH, and
`pom.xml` + `HdfsLauncher.java` next to this module (or pass their paths). Standard library only.

    from real_hdfs import RealHDFS
    with RealHDFS(tmp_path / "hdfs") as hdfs:                    # one NameNode + one DataNode
        client = hdfs.InsecureClient(user="hdfs")               # or hdfs.client.InsecureClient(hdfs.webhdfs_url, ...)
    with RealHDFS(tmp_path / "ha", ha=True) as hdfs:             # nn0 on 127.0.0.1, nn1 on 127.0.0.2, same HTTP port
        hdfs.failover()                                          # nn0 standby, nn1 active

`prepare()` resolves the classpath once into a cache folder (a stamp keyed on the POM makes later calls instant).
The JVM exits when its stdin closes, so a test process that dies never leaves it behind; `stop()` closes stdin,
then SIGTERMs and finally SIGKILLs the JVM's process group.
"""
from __future__ import annotations

import atexit
import errno
import hashlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from model_governance_devstack.real import cache_root, maven_classpath, require

HERE = Path(__file__).resolve().parent / "hdfs"
DEFAULT_POM = HERE / "pom.xml"
DEFAULT_LAUNCHER = HERE / "HdfsLauncher.java"
DEFAULT_CACHE = cache_root() / "hdfs"
DEFAULT_JVM_OPTS = ("-Xmx512m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


def prepare(cache_dir: Path | None = None, pom: Path = DEFAULT_POM) -> str:
    """The classpath of the pom's dependencies, resolved with Maven into `cache_dir` once."""
    return maven_classpath(Path(pom), Path(cache_dir or DEFAULT_CACHE))


def _free_port(hosts: tuple[str, ...], avoid: set[int]) -> int:
    """A port that is free on every host (bound briefly to each; a race with other processes stays possible)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        if port in avoid:
            continue
        try:
            for h in hosts:
                with socket.socket() as s:
                    s.bind((h, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no free port on {hosts}")


class RealHDFS:
    """One MiniDFSCluster JVM. `ha=True`: nameservice `ns1` with nn0 (active) and nn1 (standby).

    By default HA NameNodes listen on 127.0.0.1 and 127.0.0.2 with the same HTTP port (what Airflow's WebHDFS
    hook needs: several hosts, one port) and distinct RPC ports. Ports default to free ephemeral ones.
    """

    def __init__(self, state_dir: Path, ha: bool = False, cache_dir: Path | None = None, *,
                 rpc_ports: list[int] | None = None, http_ports: list[int] | None = None,
                 hosts: list[str] | None = None, jvm_opts: tuple[str, ...] = DEFAULT_JVM_OPTS,
                 launcher: Path = DEFAULT_LAUNCHER, pom: Path = DEFAULT_POM, log_level: str = "info",
                 class_data_sharing: bool = True):
        self.state_dir = Path(state_dir).resolve()
        self.ha = ha
        self.cache_dir = Path(cache_dir) if cache_dir else None
        n = 2 if ha else 1
        self.hosts = list(hosts or (["127.0.0.1", "127.0.0.2"] if ha else ["127.0.0.1"]))
        self._rpc_ports, self._http_ports = rpc_ports, http_ports
        if len(self.hosts) != n or (rpc_ports and len(rpc_ports) != n) or (http_ports and len(http_ports) != n):
            raise ValueError(f"give {n} hosts/ports")
        self.jvm_opts, self.launcher, self.pom, self.log_level = tuple(jvm_opts), Path(launcher), Path(pom), log_level
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}
        self.startup_seconds: float | None = None
        self._lines: queue.Queue = queue.Queue()
        self._cmd_lock = threading.Lock()
        self.log_path = self.state_dir / "hdfs.log"
        self.class_data_sharing = class_data_sharing
        self._cds_pending: tuple[Path, Path] | None = None

    # -- life cycle ---------------------------------------------------------------------------------------------
    def start(self, timeout: float = 120) -> "RealHDFS":
        if self.proc is not None:
            raise RuntimeError("already started")
        classpath = prepare(self.cache_dir, self.pom)
        attempts = 1 if (self._rpc_ports and self._http_ports) else 3
        for attempt in range(attempts):
            try:
                return self._start_once(classpath, timeout)
            except RuntimeError as e:
                if attempt + 1 < attempts and "BindException" in str(e):
                    continue   # an auto-picked port was taken in between: pick again
                raise
        raise AssertionError("unreachable")

    def _ports(self) -> tuple[list[int], list[int]]:
        used: set[int] = set()
        if self._http_ports:
            http = list(self._http_ports)
        else:   # one HTTP port shared by all hosts when they differ, else one per NameNode
            shared = len(set(self.hosts)) == len(self.hosts)
            p = _free_port(tuple(set(self.hosts)), used)
            http = [p] * len(self.hosts) if shared else [p] + [_free_port(("127.0.0.1",), {p}) for _ in self.hosts[1:]]
        used |= set(http)
        rpc = list(self._rpc_ports) if self._rpc_ports else []
        while len(rpc) < len(self.hosts):
            rpc.append(_free_port(("127.0.0.1",), used))
            used.add(rpc[-1])
        return rpc, http

    def _start_once(self, classpath: str, timeout: float) -> "RealHDFS":
        java = require("java", "openjdk-17-jdk-headless")
        rpc, http = self._ports()
        base = self.state_dir / "dfs"
        shutil.rmtree(base, ignore_errors=True)   # MiniDFSCluster formats anyway
        tmp = self.state_dir / "tmp"              # Jetty unpacks its webapps under java.io.tmpdir
        tmp.mkdir(parents=True, exist_ok=True)
        cmd = [java, *self.jvm_opts, *self._cds_opts(java, classpath), f"-Djava.io.tmpdir={tmp}",
               f"-Dorg.slf4j.simpleLogger.defaultLogLevel={self.log_level}",
               "-Dorg.slf4j.simpleLogger.showDateTime=true",
               "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
               "-cp", classpath, str(self.launcher), "--base-dir", str(base),
               "--nn-ports", ",".join(map(str, rpc)), "--http-ports", ",".join(map(str, http)),
               "--hosts", ",".join(self.hosts)]
        if self.ha:
            cmd.append("--ha")
        self._lines = queue.Queue()
        log = open(self.log_path, "ab")
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                     cwd=self.state_dir, start_new_session=True, text=True, bufsize=1)
        log.close()
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()
        atexit.register(self.stop)
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        info = self._parse(line)
        if not info or not info.get("ready"):
            why = "did not become ready within %ss" % timeout if line is None else f"answered {line!r}"
            self.stop()
            raise RuntimeError(f"HDFS {why}; the end of {self.log_path}:\n{self.log_tail()}")
        self.startup_seconds = time.monotonic() - t0
        self.info = info
        return self

    def _cds_opts(self, java: str, classpath: str) -> list[str]:
        """AppCDS: the first run dumps the loaded classes at exit, later runs map them (about 5 s less to start).

        The archive is keyed on the classpath and the JVM; a stale or unusable one is ignored by the JVM.
        """
        self._cds_pending = None
        if not self.class_data_sharing:
            return []
        cache = Path(self.cache_dir or DEFAULT_CACHE)
        key = hashlib.sha256(f"{os.path.realpath(java)}\0{classpath}".encode()).hexdigest()[:16]
        archive = cache / f"hdfs-{key}.jsa"
        if archive.is_file():
            return [f"-XX:SharedArchiveFile={archive}"]
        partial = cache / f".hdfs-{key}.{os.getpid()}.{id(self)}.jsa"
        self._cds_pending = (partial, archive)
        return [f"-XX:ArchiveClassesAtExit={partial}"]

    def _pump(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)   # EOF: the JVM is gone

    @staticmethod
    def _parse(line: str | None) -> dict | None:
        if not line:
            return None
        try:
            return json.loads(line)
        except ValueError:
            return None

    def stop(self, grace: float = 20) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        try:
            if proc.stdin:
                proc.stdin.close()   # the launcher shuts the cluster down and exits
        except OSError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            self._signal(proc, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._signal(proc, signal.SIGKILL)   # anything left in the group
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if self._cds_pending:
            partial, archive = self._cds_pending
            self._cds_pending = None
            if proc.returncode == 0 and partial.is_file() and partial.stat().st_size > 0:
                os.replace(partial, archive)
            else:
                partial.unlink(missing_ok=True)

    @staticmethod
    def _signal(proc: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        except OSError as e:
            if e.errno != errno.ESRCH:
                raise

    def __enter__(self) -> "RealHDFS":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- commands ------------------------------------------------------------------------------------------------
    def command(self, cmd: str, timeout: float = 120) -> dict:
        """Send one launcher command; returns its JSON answer (raises RuntimeError when it says ok: false)."""
        with self._cmd_lock:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"HDFS is not running; the end of {self.log_path}:\n{self.log_tail()}")
            self.proc.stdin.write(cmd + "\n")
            self.proc.stdin.flush()
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise RuntimeError(f"no answer to {cmd!r} within {timeout}s") from None
            answer = self._parse(line)
            if answer is None:
                raise RuntimeError(f"{cmd!r}: the launcher answered {line!r}; log:\n{self.log_tail()}")
            if "namenodes" in answer:
                self.info.update({k: v for k, v in answer.items() if k not in ("cmd", "ok", "error")})
            if not answer.get("ok"):
                raise RuntimeError(f"{cmd!r} failed: {answer.get('error')}")
            return answer

    def status(self) -> dict:
        return self.command("status")

    def failover(self) -> dict:
        """nn0 → standby (if it is up), nn1 → active."""
        return self.command("failover")

    def failback(self) -> dict:
        return self.command("failback")

    def transition_to_active(self, i: int) -> dict:
        return self.command(f"transition-to-active {i}")

    def transition_to_standby(self, i: int) -> dict:
        return self.command(f"transition-to-standby {i}")

    def kill_namenode(self, i: int = 0) -> dict:
        return self.command(f"shutdown-namenode {i}")

    def restart_namenode(self, i: int = 0) -> dict:
        """Restarts NameNode i on its ports; in HA it comes back as standby."""
        return self.command(f"restart-namenode {i}")

    def stop_datanode(self) -> dict:
        return self.command("stop-datanode")

    def restart_datanode(self) -> dict:
        return self.command("restart-datanode")

    # -- addresses -----------------------------------------------------------------------------------------------
    @property
    def namenodes(self) -> list[tuple[str, int]]:
        """(host, http_port) of each NameNode, nn0 first."""
        return [(n["host"], n["http"]) for n in self.info.get("namenodes", [])]

    @property
    def namenode_states(self) -> list[str]:
        return [n["state"] for n in self.info.get("namenodes", [])]

    @property
    def rpc_addresses(self) -> list[tuple[str, int]]:
        """(host, port) of each NameNode's RPC server (always 127.0.0.1: MiniDFSCluster binds RPC there)."""
        return [("127.0.0.1", n["rpc"]) for n in self.info.get("namenodes", [])]

    @property
    def http_port(self) -> int:
        return self.namenodes[0][1]

    @property
    def webhdfs_url(self) -> str:
        """`http://host:port`; in HA the `;`-separated list HdfsCLI accepts (it tries each in turn)."""
        return ";".join(f"http://{h}:{p}" for h, p in self.namenodes)

    @property
    def datanode_http(self) -> int | None:
        return self.info.get("datanode_http")

    def connection(self) -> dict[str, Any]:
        """The Airflow WebHDFS connection: every NameNode's host, one HTTP port, and the nameservice (HA)
        or the NameNode's RPC address as `default_fs`, so registry URLs name the file system."""
        hosts = ",".join(host for host, _ in self.namenodes)
        default_fs = "hdfs://ns1" if self.ha else "hdfs://{}:{}".format(*self.rpc_addresses[0])
        return {"conn_type": "webhdfs", "host": hosts, "port": self.http_port, "login": "hdfs",
                "extra": {"default_fs": default_fs}}

    def InsecureClient(self, user: str = "hdfs", **kwargs):
        from hdfs import InsecureClient
        return InsecureClient(self.webhdfs_url, user=user, **kwargs)
