"""What other systems and DAGs hear of a deployment, through a real Airflow (api-server, scheduler,
dag-processor on PostgreSQL): the Asset events the scheduler turns into runs of the consumer DAGs, and the
OpenLineage events the provider's listener emits from the task processes (file transport)."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from tests.airflow_processes import AirflowStack
from tests.helpers import DAGS, EXAMPLE_STAGING, NO_APPROVAL

pytestmark = pytest.mark.airflow_processes

# Two one-model consumers, as a user would write them: only the deployed model's runs.
WATCHERS = '''
from airflow.sdk import DAG, task

from model_governance.assets import model_deployments

for dag_id, model in (("watch_rental_pricing", "rental pricing prediction"), ("watch_churn", "churn model")):
    with DAG(dag_id=dag_id, schedule=[model_deployments(model)], catchup=False) as dag:

        @task
        def seen(triggering_asset_events=None, model=model):
            asset = model_deployments(model)
            return [{"asset": asset.name, **event.extra} for event in triggering_asset_events[asset]]

        seen()
    globals()[dag_id] = dag
'''


def test_a_deployment_triggers_the_consumers_and_emits_openlineage(devstack, postgres, tmp_path):
    dags = tmp_path / "dags"
    shutil.copytree(DAGS, dags, ignore=shutil.ignore_patterns("__pycache__"))
    (dags / "deployment_watchers.py").write_text(WATCHERS)
    events_file = tmp_path / "openlineage.jsonl"
    env = {
        **devstack.env(),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events_file), "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "model-governance-test",
    }
    stack = AirflowStack(tmp_path / "airflow", env, postgres)
    stack.env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    with stack as airflow:
        for dag_id in ("model_deployment", "model_deployment_smoke_test", "watch_rental_pricing", "watch_churn"):
            airflow.wait_dag(dag_id)
        answer = airflow.api("POST", "/dags/model_deployment/dagRuns", json={"logical_date": None, "conf": {"staging": str(EXAMPLE_STAGING), **NO_APPROVAL}})
        assert answer.status_code == 200, answer.text
        run_id = answer.json()["dag_run_id"]
        run = airflow.wait_run("model_deployment", run_id)
        assert run["state"] == "success", (airflow.task_states("model_deployment", run_id), airflow.logs())
        registered = airflow.api("GET", f"/dags/model_deployment/dagRuns/{run_id}/taskInstances/register_in_atlas/xcomEntries/return_value").json()["value"]
        conn = devstack.connections["mleap_default"]
        endpoint = f"http://127.0.0.1:{conn['port']}/transform"
        sha256 = hashlib.sha256((EXAMPLE_STAGING / "executable/airbnb.model.lr.zip").read_bytes()).hexdigest()

        # the scheduler queued the smoke test on the deployment's Asset event, and it scored the model
        smoke_id = airflow.wait_new_run("model_deployment_smoke_test", "asset_triggered", timeout=180)
        smoke = airflow.wait_run("model_deployment_smoke_test", smoke_id)
        assert smoke["state"] == "success", airflow.task_log("model_deployment_smoke_test", smoke_id, "score_deployments")[-4000:]
        scored = airflow.api("GET", f"/dags/model_deployment_smoke_test/dagRuns/{smoke_id}/taskInstances/score_deployments/xcomEntries/return_value").json()["value"]
        assert [(s["qualifiedName"], s["sha256"], s["rows"]) for s in scored] == [(registered["qualifiedName"], sha256, 1)]
        assert "price_prediction" in scored[0]["outputs"]

        # the one-model consumer of this model ran with the event's extra; the other model's did not
        watch_id = airflow.wait_new_run("watch_rental_pricing", "asset_triggered", timeout=180)
        assert airflow.wait_run("watch_rental_pricing", watch_id)["state"] == "success"
        seen = airflow.api("GET", f"/dags/watch_rental_pricing/dagRuns/{watch_id}/taskInstances/seen/xcomEntries/return_value").json()["value"]
        assert len(seen) == 1
        extra = seen[0]
        assert extra["asset"] == "model-governance-deployments/rental-pricing-prediction"
        assert {k: extra[k] for k in ("model", "version", "sha256", "qualifiedName", "endpoint", "host_type", "atlas_guid", "run_id")} == {
            "model": "rental pricing prediction", "version": "1.1", "sha256": sha256, "qualifiedName": registered["qualifiedName"],
            "endpoint": endpoint, "host_type": "microservice", "atlas_guid": registered["guid"], "run_id": run_id}
        assert airflow.api("GET", "/dags/watch_churn/dagRuns").json()["total_entries"] == 0

        # the Asset events as Airflow's API lists them: one per Asset, produced by the register task
        listed = airflow.api("GET", "/assets/events", params={"source_dag_id": "model_deployment"}).json()["asset_events"]
        by_asset = {event["uri"]: event for event in listed}
        assert set(by_asset) == {"x-model-governance://deployments", "x-model-governance://deployments/rental-pricing-prediction"}
        for event in by_asset.values():
            assert event["source_task_id"] == "register_in_atlas" and event["source_run_id"] == run_id
            assert event["extra"]["sha256"] == sha256 and event["extra"]["version"] == "1.1"

    # OpenLineage: the task processes' listener wrote each step's lineage (Atlas stays the system of record)
    emitted = [json.loads(line) for line in events_file.read_text().splitlines()]
    complete = {e["job"]["name"]: e for e in emitted if e["eventType"] == "COMPLETE" and e["job"]["name"].startswith("model_deployment.")}
    assert {"model_deployment.deploy_model", "model_deployment.register_in_atlas"} <= set(complete), sorted(complete)
    register = complete["model_deployment.register_in_atlas"]
    assert [(d["namespace"], d["name"]) for d in register["inputs"]] == [
        ("hdfs://127.0.0.1:8020", f"/model-registry/rental-pricing-prediction/1.1/{p}")
        for p in ("trainingdata/listings_sample.csv", "executable/airbnb.model.lr.zip")]
    assert [(d["namespace"], d["name"]) for d in register["outputs"]] == [(f"http://127.0.0.1:{conn['port']}", "/transform")]
    facet = register["run"]["facets"]["modelDeployment"]
    assert (facet["model"], facet["version"], facet["bundleSha256"], facet["qualifiedName"]) == (
        "rental pricing prediction", "1.1", sha256, registered["qualifiedName"])
