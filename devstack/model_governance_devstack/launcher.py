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


@dataclass
class DevStack:
    """The running stand-ins; `connections` maps a connection id to its Airflow connection JSON."""

    state_dir: Path
    servers: list[Any] = field(default_factory=list)
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)

    # the stand-ins by name, for tests that throw faults at one of them
    @property
    def atlas(self) -> Any:
        return self.servers[0]

    @property
    def mleap(self) -> Any:
        return self.servers[1]

    @property
    def webhdfs(self) -> Any:
        return self.servers[2]

    def env(self) -> dict[str, str]:
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn) for conn_id, conn in self.connections.items()}

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()

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


def start_devstack(
    state_dir: Path,
    host: str = "127.0.0.1",
    atlas_port: int = DEFAULT_ATLAS_PORT,
    mleap_port: int = DEFAULT_MLEAP_PORT,
    webhdfs_port: int = DEFAULT_WEBHDFS_PORT,
    verbose: bool = False,
) -> DevStack:
    """Start Atlas, MLeap serving (legacy API) and WebHDFS stand-ins on loopback; port 0 picks a free one."""
    from model_governance_devstack.atlas import AtlasStandIn
    from model_governance_devstack.mleap import MLeapStandIn
    from model_governance_devstack.webhdfs import WebHDFSStandIn

    state_dir = state_dir.resolve()
    stack = DevStack(state_dir)
    try:
        password = atlas_password(state_dir)
        atlas = AtlasStandIn(state_dir / "atlas", host=host, port=atlas_port, users={ATLAS_USER: password}, verbose=verbose)
        stack.servers.append(atlas.start())
        models_dir = state_dir / "mleap" / "models"
        models_dir.mkdir(parents=True, exist_ok=True)
        mleap = MLeapStandIn(state_dir / "mleap", host=host, port=mleap_port, api="legacy", mounts={"/models": models_dir}, verbose=verbose)
        stack.servers.append(mleap.start())
        webhdfs = WebHDFSStandIn(state_dir / "webhdfs", host=host, port=webhdfs_port, verbose=verbose)
        stack.servers.append(webhdfs.start())
    except BaseException:
        stack.stop()
        raise
    stack.connections = {
        "atlas_default": {"conn_type": "http", "host": host, "port": atlas.port, "login": ATLAS_USER, "password": password},
        "mleap_default": {
            "conn_type": "http",
            "host": host,
            "port": mleap.port,
            "extra": {"api": "legacy", "models_dir": str(models_dir), "models_mount": "/models"},
        },
        "webhdfs_default": {"conn_type": "webhdfs", "host": host, "port": webhdfs.port, "login": "hdfs"},
    }
    spark = spark_local_connection(state_dir / "spark-models")
    if spark:
        stack.connections["spark_default"] = spark
    return stack
