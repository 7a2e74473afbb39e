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


@pytest.fixture
def devstack(tmp_path, monkeypatch):
    """The three stand-ins on free loopback ports, with AIRFLOW_CONN_* set for them; stopped after the test."""
    from model_governance.devstack.launcher import start_devstack

    with start_devstack(tmp_path / "devstack", atlas_port=0, mleap_port=0, webhdfs_port=0) as stack:
        for name, value in stack.env().items():
            monkeypatch.setenv(name, value)
        yield stack


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
