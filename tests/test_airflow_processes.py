"""A real Airflow 3.3 (api-server, scheduler, dag-processor) on PostgreSQL: REST triggers and scheduled redeploys."""

from __future__ import annotations

import json

import pytest
import requests

from tests.airflow_processes import AirflowStack
from tests.helpers import EXAMPLE_STAGING

pytestmark = pytest.mark.airflow_processes


def atlas_entities(devstack, **filters):
    conn = devstack.connections["atlas_default"]
    criteria = [{"attributeName": k, "operator": "=", "attributeValue": v} for k, v in filters.items()]
    query = {"typeName": "model", "excludeDeletedEntities": True, "attributes": ["dagRunId", "deployStatus", "deploy.datetime"], "limit": 100}
    if criteria:
        query["entityFilters"] = {"condition": "AND", "criterion": criteria}
    answer = requests.post(f"http://{conn['host']}:{conn['port']}/api/atlas/v2/search/basic", json=query, auth=(conn["login"], conn["password"]), timeout=10)
    answer.raise_for_status()
    return answer.json().get("entities", [])


@pytest.fixture
def airflow(devstack, tmp_path):
    with AirflowStack(tmp_path / "airflow", devstack.env()) as stack:
        stack.wait_dag("model_deployment")
        yield stack


def test_rest_trigger_deploys_and_bad_conf_starts_no_run(airflow, devstack):
    runs = lambda: airflow.api("GET", "/dags/model_deployment/dagRuns").json()["total_entries"]  # noqa: E731

    bad = airflow.api("POST", "/dags/model_deployment/dagRuns", json={"logical_date": None, "conf": {"force": "yes please"}})
    assert bad.status_code == 400, bad.text
    assert "force" in bad.text and "boolean" in bad.text
    missing_date = airflow.api("POST", "/dags/model_deployment/dagRuns", json={"conf": {}})
    assert missing_date.status_code == 422
    assert runs() == 0

    answer = airflow.api("POST", "/dags/model_deployment/dagRuns", json={"logical_date": None, "conf": {"staging": str(EXAMPLE_STAGING)}})
    assert answer.status_code == 200, answer.text
    run_id = answer.json()["dag_run_id"]
    run = airflow.wait_run("model_deployment", run_id)
    assert run["state"] == "success", (airflow.task_states("model_deployment", run_id), airflow.logs())

    entities = atlas_entities(devstack, dagRunId=run_id)
    assert len(entities) == 1 and entities[0]["attributes"]["deployStatus"] == "deployed"
    xcom = airflow.api("GET", f"/dags/model_deployment/dagRuns/{run_id}/taskInstances/register_in_atlas/xcomEntries/return_value").json()
    assert xcom["value"]["guid"] == entities[0]["guid"]
    # the secret never reaches the task logs
    password = devstack.connections["atlas_default"]["password"]
    expected = {"fetch_staging": "Staged rental pricing prediction", "push_to_registry": "Model registry:",
                "deploy_model": "Serving rental pricing prediction v1.1", "register_in_atlas": "Atlas entity"}
    for task_id, line in expected.items():
        log = airflow.api("GET", f"/dags/model_deployment/dagRuns/{run_id}/taskInstances/{task_id}/logs/1", headers={"Accept": "text/plain"})
        assert log.status_code == 200 and line in log.text, log.text[-2000:]
        assert password not in log.text


def test_scheduled_redeploy_maps_models_and_leaves_current_ones_alone(devstack, tmp_path):
    manifest = tmp_path / "redeploy.yaml"
    manifest.write_text(json.dumps({"models": [{"staging": str(EXAMPLE_STAGING)}]}))
    env = {**devstack.env(), "MODEL_GOVERNANCE_REDEPLOY_MANIFEST": str(manifest), "MODEL_GOVERNANCE_REDEPLOY_SCHEDULE": "* * * * *"}
    with AirflowStack(tmp_path / "airflow", env) as airflow:
        airflow.wait_dag("model_redeploy")
        # the schedule starts runs by itself (every minute): wait for two of them
        import time

        deadline = time.monotonic() + 200
        finished = []
        while time.monotonic() < deadline and len(finished) < 2:
            answer = airflow.api("GET", "/dags/model_redeploy/dagRuns", params={"order_by": "run_after"}).json()
            finished = [r for r in answer["dag_runs"] if r["state"] in ("success", "failed")]
            time.sleep(2)
        assert len(finished) >= 2, airflow.logs()
        first, second = finished[:2]
        assert first["run_type"] == "scheduled" and first["state"] == "success", airflow.task_states("model_redeploy", first["dag_run_id"])
        assert second["state"] == "success", airflow.task_states("model_redeploy", second["dag_run_id"])
        states = airflow.task_states("model_redeploy", second["dag_run_id"])
        assert states["redeploy.deploy_model[0]"] == "success"
        deploy = airflow.api("GET", f"/dags/model_redeploy/dagRuns/{second['dag_run_id']}/taskInstances/redeploy.deploy_model/0/xcomEntries/return_value").json()
        entities = atlas_entities(devstack)
        assert len(entities) == 1
        # the second run found the model current: verified and left alone, still registered by the first run
        assert deploy["value"]["deploy"]["unchanged"] is True
        assert entities[0]["attributes"]["dagRunId"] == first["dag_run_id"]
