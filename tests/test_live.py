"""The example deployed on real services, never skipped: the ones given by MODEL_GOVERNANCE_LIVE_* (the
Compose stack, a cluster), and, for any not given, the session's real servers (Atlas 2.1.0, Hadoop's
MiniDFSCluster, the MLeap runtime behind the spring-boot API). A missing Java or Maven fails the run with
the Debian package to install.

    MODEL_GOVERNANCE_LIVE_ATLAS=http://admin:PASSWORD@localhost:21000
    MODEL_GOVERNANCE_LIVE_MLEAP=http://localhost:65327
    MODEL_GOVERNANCE_LIVE_MLEAP_MODELS_DIR=/path/the/server/mounts/as/models
    MODEL_GOVERNANCE_LIVE_MLEAP_API=legacy                      (or spring-boot; default legacy)
    MODEL_GOVERNANCE_LIVE_WEBHDFS=http://hdfs@localhost:9870    (login = the HDFS user)
    make test   # or: .venv/bin/python -m pytest -m live
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

import pytest
import requests

from tests.helpers import NO_APPROVAL, DAGS, EXAMPLE_STAGING, predict_at

pytestmark = pytest.mark.live
NAMES = ("ATLAS", "MLEAP", "MLEAP_MODELS_DIR", "MLEAP_API", "WEBHDFS")
LIVE = {name: os.environ.get(f"MODEL_GOVERNANCE_LIVE_{name}") for name in NAMES}


def from_url(url: str, conn_type: str, **extra) -> dict:
    parts = urlsplit(url)
    conn = {"conn_type": conn_type, "host": parts.hostname, "port": parts.port, "login": parts.username, "password": parts.password}
    return {**{k: v for k, v in conn.items() if v}, "extra": {k: v for k, v in extra.items() if v}}


@pytest.fixture
def live(request, monkeypatch):
    """The three connections: from MODEL_GOVERNANCE_LIVE_* where given, else the session's real servers
    (left as found: the deployed model unloaded, HDFS emptied, Atlas purged)."""
    from tests.real_services import empty_hdfs, purge_atlas, unload_named

    conns, used = {}, {}
    if LIVE["ATLAS"]:
        conns["atlas_default"] = from_url(LIVE["ATLAS"], "http")
    else:
        used["atlas"] = request.getfixturevalue("real_atlas")
        conns["atlas_default"] = used["atlas"].connection()
    if LIVE["MLEAP"]:
        api = LIVE["MLEAP_API"] or "legacy"
        conns["mleap_default"] = from_url(LIVE["MLEAP"], "http", api=api, models_dir=LIVE["MLEAP_MODELS_DIR"])
    else:
        used["mleap"] = request.getfixturevalue("real_mleap")
        conns["mleap_default"] = used["mleap"].connection()
    if LIVE["WEBHDFS"]:
        conns["webhdfs_default"] = from_url(LIVE["WEBHDFS"], "webhdfs")
    else:
        used["hdfs"] = request.getfixturevalue("real_hdfs")
        conns["webhdfs_default"] = used["hdfs"].connection()
    for conn_id, conn in conns.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    try:
        yield conns
    finally:
        if "mleap" in used:
            unload_named(used["mleap"], "target")
        if "hdfs" in used:
            empty_hdfs(used["hdfs"])
        if "atlas" in used:
            purge_atlas(used["atlas"])


def test_the_example_deploys_on_real_services(airflow_db, live):
    from airflow.dag_processing.dagbag import DagBag
    from hdfs import InsecureClient

    dag = DagBag(dag_folder=str(DAGS / "model_deployment.py")).dags["model_deployment"]
    run = dag.test(run_conf={**NO_APPROVAL, "staging": str(EXAMPLE_STAGING)})
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}

    # Atlas: the entity the run registered, read back by its guid
    registered = run.get_task_instance("register_in_atlas").xcom_pull(task_ids="register_in_atlas")
    atlas = live["atlas_default"]
    entity = requests.get(f"http://{atlas['host']}:{atlas['port']}/api/atlas/v2/entity/guid/{registered['guid']}",
                          auth=(atlas["login"], atlas["password"]), timeout=30).json()["entity"]
    assert entity["attributes"]["model.version"] == "1.1" and entity["attributes"]["deployStatus"] == "deployed"

    # serving: the sample scores at the URL the run recorded, whichever API the server speaks
    facts = run.get_task_instance("deploy_model").xcom_pull(task_ids="deploy_model")["deploy"]
    sample = json.loads((EXAMPLE_STAGING / "samples/leapframe.json").read_text())
    assert predict_at(facts["scoring_url"], sample) == pytest.approx(232.62463916840318)

    # registry: the version folder, listed by the NameNode
    hdfs = live["webhdfs_default"]
    client = InsecureClient(f"http://{hdfs['host'].split(',')[0]}:{hdfs['port']}", user=hdfs.get("login") or "hdfs")
    assert "MANIFEST.json" in client.list("/model-registry/rental-pricing-prediction/1.1")
