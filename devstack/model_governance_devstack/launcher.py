"""Start the three stand-ins together and say how Airflow reaches them (`AIRFLOW_CONN_*` values)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ATLAS_PORT = 21000
DEFAULT_MLEAP_PORT = 65327
DEFAULT_WEBHDFS_PORT = 9870
ATLAS_USER = "admin"
REAL_SERVICES = ("atlas", "hdfs", "mleap")


@dataclass
class DevStack:
    """The running services by name ("atlas", "mleap", "webhdfs"), stand-ins or real servers, and
    `connections`: a connection id -> its Airflow connection JSON."""

    state_dir: Path
    services: dict[str, Any] = field(default_factory=dict)
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    real: frozenset[str] = frozenset()
    owned: set[str] = field(default_factory=set)  # the services this stack started, and so stops

    # the services by name, for tests that throw faults at one of them
    @property
    def atlas(self) -> Any:
        return self.services["atlas"]

    @property
    def mleap(self) -> Any:
        return self.services["mleap"]

    @property
    def webhdfs(self) -> Any:
        return self.services["webhdfs"]

    def env(self) -> dict[str, str]:
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn) for conn_id, conn in self.connections.items()}

    def stop(self) -> None:
        for name in reversed(list(self.services)):
            if name in self.owned:
                self.services[name].stop()
        self.services.clear()
        self.owned.clear()

    def __enter__(self) -> "DevStack":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def atlas_password(state_dir: Path) -> str:
    """A password made once per state folder, kept there: no well-known credentials, even in dev."""
    path = state_dir / "atlas-password"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(18))
        path.chmod(0o600)
    return path.read_text().strip()


def spark_local_connection(models_root: Path) -> dict[str, Any] | None:
    """Spark in local mode with pip's pyspark (its own spark-submit), when it is installed: batch deployments."""
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        return None
    spark_submit = Path(list(spec.submodule_search_locations)[0]) / "bin" / "spark-submit"
    models_root.mkdir(parents=True, exist_ok=True)
    return {"conn_type": "spark", "host": "local[1]", "extra": {"models_root": str(models_root), "spark_submit": str(spark_submit)}}


def parse_real(value: str | None) -> frozenset[str]:
    """`--real hdfs,mleap` -> {"hdfs", "mleap"}; an unknown name is a ValueError naming it."""
    names = frozenset(part.strip() for part in (value or "").split(",") if part.strip())
    unknown = names - set(REAL_SERVICES)
    if unknown:
        raise ValueError(f"--real: unknown service {', '.join(sorted(unknown))}; choose from {', '.join(REAL_SERVICES)}")
    return names


def start_devstack(
    state_dir: Path,
    host: str = "127.0.0.1",
    atlas_port: int = DEFAULT_ATLAS_PORT,
    mleap_port: int = DEFAULT_MLEAP_PORT,
    webhdfs_port: int = DEFAULT_WEBHDFS_PORT,
    verbose: bool = False,
    real: frozenset[str] | set[str] = frozenset(),
    running: dict[str, Any] | None = None,
) -> DevStack:
    """Start Atlas, MLeap serving and WebHDFS on loopback: the real servers named in `real` ("atlas",
    "hdfs", "mleap"), stand-ins for the rest; port 0 picks a free one. `running` hands in real servers
    that are already up (the tests share one per session): they are used, never stopped here."""
    state_dir = state_dir.resolve()
    stack = DevStack(state_dir, real=frozenset(real) | frozenset(running or ()))
    try:
        password = atlas_password(state_dir)
        for name, start in (("atlas", _atlas), ("mleap", _mleap), ("webhdfs", _webhdfs)):
            key = "hdfs" if name == "webhdfs" else name
            if running and key in running:
                stack.services[name] = running[key]
            else:
                port = {"atlas": atlas_port, "mleap": mleap_port, "webhdfs": webhdfs_port}[name]
                stack.services[name] = start(state_dir, host, port, key in real, verbose, password)
                stack.owned.add(name)
            stack.connections[f"{name}_default"] = connection(name, stack.services[name], host, password)
    except BaseException:
        stack.stop()
        raise
    spark = spark_local_connection(state_dir / "spark-models")
    if spark:
        stack.connections["spark_default"] = spark
    return stack


def _atlas(state_dir: Path, host: str, port: int, real: bool, verbose: bool, password: str) -> Any:
    if real:
        from model_governance_devstack.real.atlas import RealAtlas

        return RealAtlas(state_dir / "real-atlas", port=port).start()
    from model_governance_devstack.atlas import AtlasStandIn

    return AtlasStandIn(state_dir / "atlas", host=host, port=port, users={ATLAS_USER: password}, verbose=verbose).start()


def _mleap(state_dir: Path, host: str, port: int, real: bool, verbose: bool, password: str) -> Any:
    if real:
        from model_governance_devstack.real.mleap import MLeapRuntimeHost

        return MLeapRuntimeHost(state_dir / "real-mleap", port=port).start()
    from model_governance_devstack.mleap import MLeapStandIn

    models_dir = state_dir / "mleap" / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    return MLeapStandIn(
        state_dir / "mleap", host=host, port=port, api="legacy", mounts={"/models": models_dir}, verbose=verbose
    ).start()


def _webhdfs(state_dir: Path, host: str, port: int, real: bool, verbose: bool, password: str) -> Any:
    if real:
        from model_governance_devstack.real.hdfs import RealHDFS

        return RealHDFS(state_dir / "real-hdfs", http_ports=[port] if port else None).start()
    from model_governance_devstack.webhdfs import WebHDFSStandIn

    return WebHDFSStandIn(state_dir / "webhdfs", host=host, port=port, verbose=verbose).start()


def connection(name: str, service: Any, host: str, password: str) -> dict[str, Any]:
    """The Airflow connection that reaches `service`: a real server says it itself."""
    if hasattr(service, "connection"):
        return service.connection()
    if name == "atlas":
        return {"conn_type": "atlas", "host": host, "port": service.port, "login": ATLAS_USER, "password": password}
    if name == "mleap":
        return {
            "conn_type": "mleap",
            "host": host,
            "port": service.port,
            "extra": {"api": "legacy", "models_dir": str(service.mounts["/models"]), "models_mount": "/models"},
        }
    return {"conn_type": "webhdfs", "host": host, "port": service.port, "login": "hdfs"}
