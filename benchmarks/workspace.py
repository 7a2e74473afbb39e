"""Where the benches run: a private temporary folder and Airflow home, set before anything imports Airflow.

Every bench module imports this first. Benches against `dag.test()` use the SQLite home set here; the
real-scheduler benches start their own PostgreSQL (`tests/databases.py`) and Airflow processes.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
WORK = Path(tempfile.mkdtemp(prefix="mg-bench-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(WORK / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{WORK}/airflow/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
)
(WORK / "airflow").mkdir()
# this checkout's product and development package before an editable install's (which may be another checkout)
sys.path[:0] = [str(PROJECT), str(PROJECT / "plugins"), str(PROJECT / "devstack")]
atexit.register(shutil.rmtree, WORK, ignore_errors=True)

MIB = 1024 * 1024
