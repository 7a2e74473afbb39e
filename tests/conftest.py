"""Test set-up: a private AIRFLOW_HOME (set before anything imports Airflow) and the stand-in stack."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tests.helpers import DAGS, PLUGINS

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


@pytest.fixture
def devstack(tmp_path, monkeypatch):
    """The three stand-ins on free loopback ports, with AIRFLOW_CONN_* set for them; stopped after the test."""
    from model_governance_devstack.launcher import start_devstack

    with start_devstack(tmp_path / "devstack", atlas_port=0, mleap_port=0, webhdfs_port=0) as stack:
        for name, value in stack.env().items():
            monkeypatch.setenv(name, value)
        yield stack


def pytest_terminal_summary(terminalreporter):
    """The fault-injection figures, when that suite ran."""
    import sys

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
