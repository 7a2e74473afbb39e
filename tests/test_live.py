"""The same deployment against real services (the Compose stack, or a cluster): skipped unless given.

    MODEL_GOVERNANCE_LIVE_ATLAS=http://admin:PASSWORD@localhost:21000
    MODEL_GOVERNANCE_LIVE_MLEAP=http://localhost:65327          (legacy mleap-serving)
    MODEL_GOVERNANCE_LIVE_MLEAP_MODELS_DIR=/path/the/server/mounts/as/models
    MODEL_GOVERNANCE_LIVE_WEBHDFS=http://hdfs@localhost:9870    (login = the HDFS user)
    make test   # or: .venv/bin/python -m pytest -m live
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

import pytest
import requests

from tests.helpers import DAGS, EXAMPLE_STAGING

pytestmark = pytest.mark.live
NAMES = ("ATLAS", "MLEAP", "MLEAP_MODELS_DIR", "WEBHDFS")
LIVE = {name: os.environ.get(f"MODEL_GOVERNANCE_LIVE_{name}") for name in NAMES}


def connection(url: str, conn_type: str, **extra) -> str:
    parts = urlsplit(url)
    conn = {"conn_type": conn_type, "host": parts.hostname, "port": parts.port, "login": parts.username, "password": parts.password}
    return json.dumps({**{k: v for k, v in conn.items() if v}, "extra": extra})


@pytest.mark.skipif(not all(LIVE.values()), reason="set MODEL_GOVERNANCE_LIVE_{ATLAS,MLEAP,MLEAP_MODELS_DIR,WEBHDFS} to run against real services")
def test_the_example_deploys_on_real_services(airflow_db, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW_CONN_ATLAS_DEFAULT", connection(LIVE["ATLAS"], "http"))
    monkeypatch.setenv("AIRFLOW_CONN_MLEAP_DEFAULT", connection(LIVE["MLEAP"], "http", api="legacy", models_dir=LIVE["MLEAP_MODELS_DIR"]))
    monkeypatch.setenv("AIRFLOW_CONN_WEBHDFS_DEFAULT", connection(LIVE["WEBHDFS"], "webhdfs"))
    dag = DagBag(dag_folder=str(DAGS / "model_deployment.py")).dags["model_deployment"]
    run = dag.test(run_conf={"staging": str(EXAMPLE_STAGING)})
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    registered = run.get_task_instance("register_in_atlas").xcom_pull(task_ids="register_in_atlas")
    atlas = urlsplit(LIVE["ATLAS"])
    entity = requests.get(f"{atlas.scheme}://{atlas.hostname}:{atlas.port}/api/atlas/v2/entity/guid/{registered['guid']}",
                          auth=(atlas.username, atlas.password), timeout=30).json()["entity"]
    assert entity["attributes"]["model.version"] == "1.1" and entity["attributes"]["deployStatus"] == "deployed"
    assert requests.get(f"{LIVE['MLEAP'].rstrip('/')}/model", timeout=30).status_code == 200
