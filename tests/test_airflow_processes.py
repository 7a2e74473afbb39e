"""A real Airflow 3.3 (api-server, scheduler, dag-processor) on PostgreSQL: REST triggers and scheduled redeploys."""

from __future__ import annotations

import json

import pytest
import requests

from tests.airflow_processes import AirflowStack
from tests.helpers import EXAMPLE_STAGING, NO_APPROVAL

pytestmark = pytest.mark.airflow_processes


def atlas_entities(devstack, **filters):
    conn = devstack.connections["atlas_default"]
    criteria = [{"attributeName": k, "operator": "=", "attributeValue": v} for k, v in filters.items()]
    query = {"typeName": "model", "excludeDeletedEntities": True, "attributes": ["dagRunId", "deployStatus", "deploy.datetime", "approvalComment", "requestedBy"], "limit": 100}
    if criteria:
        query["entityFilters"] = {"condition": "AND", "criterion": criteria}
    answer = requests.post(f"http://{conn['host']}:{conn['port']}/api/atlas/v2/search/basic", json=query, auth=(conn["login"], conn["password"]), timeout=10)
    answer.raise_for_status()
    return answer.json().get("entities", [])


@pytest.fixture
def airflow(devstack, postgres, tmp_path):
    with AirflowStack(tmp_path / "airflow", devstack.env(), postgres) as stack:
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

    # no second person here: tests/test_approval.py drives the approval; this run turns it off, visibly
    answer = airflow.api("POST", "/dags/model_deployment/dagRuns", json={"logical_date": None, "conf": {**NO_APPROVAL, "staging": str(EXAMPLE_STAGING)}})
    assert answer.status_code == 200, answer.text
    run_id = answer.json()["dag_run_id"]
    run = airflow.wait_run("model_deployment", run_id)
    assert run["state"] == "success", (airflow.task_states("model_deployment", run_id), airflow.logs())

    entities = atlas_entities(devstack, dagRunId=run_id)
    assert len(entities) == 1 and entities[0]["attributes"]["deployStatus"] == "deployed"
    xcom = airflow.api("GET", f"/dags/model_deployment/dagRuns/{run_id}/taskInstances/register_in_atlas/xcomEntries/return_value").json()
    assert xcom["value"]["guid"] == entities[0]["guid"]
    # the register task's extra link opens the entity's page in Atlas
    links = airflow.api("GET", f"/dags/model_deployment/dagRuns/{run_id}/taskInstances/register_in_atlas/links").json()
    assert links["extra_links"] == {"Atlas entity": xcom["value"]["url"]} and entities[0]["guid"] in xcom["value"]["url"]
    # the secret never reaches the task logs
    password = devstack.connections["atlas_default"]["password"]
    expected = {"fetch_staging": "Staged rental pricing prediction", "push_to_registry": "Model registry:",
                "approve_deployment": "NO APPROVAL ASKED for rental pricing prediction v1.1: approval not required",
                "deploy_model": "Serving rental pricing prediction v1.1", "register_in_atlas": "Atlas entity"}
    for task_id, line in expected.items():
        log = airflow.task_log("model_deployment", run_id, task_id)
        assert line in log, log[-2000:]
        assert password not in log


def test_scheduled_redeploy_maps_models_and_leaves_current_ones_alone(devstack, postgres, tmp_path):
    """The scheduler's run of a changed version waits for a person's approval (no person triggered it, so
    any user may approve); the next run finds the model serving exactly its bundle and asks no one."""
    manifest = tmp_path / "redeploy.yaml"
    manifest.write_text(json.dumps({"models": [{"staging": str(EXAMPLE_STAGING)}]}))
    env = {**devstack.env(), "MODEL_GOVERNANCE_REDEPLOY_MANIFEST": str(manifest), "MODEL_GOVERNANCE_REDEPLOY_SCHEDULE": "* * * * *"}
    approve = "/dags/model_redeploy/dagRuns/{run}/taskInstances/redeploy.approve_deployment/0/hitlDetails"
    with AirflowStack(tmp_path / "airflow", env, postgres) as airflow:
        airflow.wait_dag("model_redeploy")
        # the schedule starts a run by itself at the next minute: taken as soon as the API lists it
        first_id = airflow.wait_new_run("model_redeploy", "scheduled", timeout=120)
        request = airflow.wait_for_answerable("model_redeploy", first_id, "redeploy.approve_deployment", map_index=0)
        assert "No person triggered this run" in request["body"] and "| Requested by | scheduler |" in request["body"]
        answer = airflow.api("PATCH", approve.format(run=first_id), json={"chosen_options": ["Approve"], "params_input": {"comment": "nightly change reviewed"}})
        assert answer.status_code == 200, answer.text
        first = airflow.wait_run("model_redeploy", first_id)
        assert first["run_type"] == "scheduled" and first["state"] == "success", airflow.task_states("model_redeploy", first_id)
        # the next run, triggered now rather than waited for a minute (max_active_runs=1 queues a scheduled one)
        answer = airflow.api("POST", "/dags/model_redeploy/dagRuns", json={"logical_date": None})
        assert answer.status_code == 200, answer.text
        second = airflow.wait_run("model_redeploy", answer.json()["dag_run_id"])
        assert second["state"] == "success", airflow.task_states("model_redeploy", second["dag_run_id"])
        states = airflow.task_states("model_redeploy", second["dag_run_id"])
        # approval required (the default), yet no one was asked: the fetch step found the model serving
        # exactly this bundle, verified it at the server, and skipped its group before any lock or upload
        assert {task: state for task, state in states.items() if task.startswith("redeploy.")} == dict.fromkeys(
            [f"redeploy.{task}[0]" for task in ("fetch_staging", "push_to_registry", "approve_deployment", "deploy_model", "register_in_atlas", "clean_up")],
            "skipped"), states
        log = airflow.task_log("model_redeploy", second["dag_run_id"], "redeploy.fetch_staging", map_index=0)
        assert "Unchanged, nothing to do: " in log and "already serves this exact bundle" in log and "verified at the server" in log, log[-2000:]
        assert airflow.api("GET", approve.format(run=second["dag_run_id"])).status_code == 404  # no request written
        entities = atlas_entities(devstack)
        assert len(entities) == 1
        # still registered by the first run
        assert entities[0]["attributes"]["dagRunId"] == first["dag_run_id"]
        [approved] = atlas_entities(devstack, approvedBy="admin")
        assert approved["attributes"]["approvalComment"] == "nightly change reviewed" and approved["attributes"]["requestedBy"] == "scheduler"


def test_celery_workers_with_separate_folders_run_deployments_at_once(devstack, postgres, redis_server, tmp_path):
    """CeleryExecutor, Redis broker, PostgreSQL result backend, two workers in different folders: three
    models deployed at once all succeed, so no task leans on another task's local files."""
    import redis

    from tests.helpers import stage_variant

    redis_db = 7
    redis.Redis(host="127.0.0.1", port=redis_server.port, db=redis_db).flushdb()
    env = {
        **devstack.env(),
        "AIRFLOW__CELERY__BROKER_URL": f"{redis_server.url}/{redis_db}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
    }
    staged = [stage_variant(tmp_path / "staging", f"celery model {i}", "1.0", microservice_endpoint=f"celery{i}") for i in range(3)]
    try:
        with AirflowStack(tmp_path / "airflow", env, postgres, executor="CeleryExecutor", workers=2) as airflow:
            airflow.wait_dag("model_deployment")
            run_ids = []
            for folder in staged:
                answer = airflow.api("POST", "/dags/model_deployment/dagRuns", json={"logical_date": None, "conf": {**NO_APPROVAL, "staging": str(folder)}})
                assert answer.status_code == 200, answer.text
                run_ids.append(answer.json()["dag_run_id"])
            for run_id in run_ids:
                run = airflow.wait_run("model_deployment", run_id)
                assert run["state"] == "success", (airflow.task_states("model_deployment", run_id), airflow.logs())
            # both workers took tasks: each logs the workloads it received
            for index in range(2):
                assert "received" in (airflow.home / f"worker-{index}.log").read_text(), airflow.logs()
            assert len(atlas_entities(devstack)) == 3
    finally:
        redis.Redis(host="127.0.0.1", port=redis_server.port, db=redis_db).flushdb()


def test_secrets_reach_no_log_xcom_rendered_field_atlas_manifest_or_process_arguments(devstack, postgres, tmp_path):
    """A deployment from a private archive (token in `staging_default`), Atlas basic auth and a WebHDFS
    password, all known values: none of them appears anywhere a user or another process can read."""
    import ssl
    import subprocess
    import threading

    from model_governance_devstack.base import StandInServer
    from tests.test_security import self_signed
    from tests.test_sources import TOKEN, ArchiveHandler, zipball

    webhdfs_password = "webhdfs-pw-" + "7c1d9e"
    webhdfs = {**devstack.connections["webhdfs_default"], "password": webhdfs_password}
    secrets_ = {TOKEN, webhdfs_password, devstack.connections["atlas_default"]["password"]}
    # the token goes only over https to the host staging_default names: a private archive host with TLS
    cert, key = self_signed(tmp_path)
    archives = StandInServer(ArchiveHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    archives.socket = context.wrap_socket(archives.socket, server_side=True)
    archives.archives = {"owner-private-v1.zip": zipball("owner-private-9f8e7d")}
    env = {**devstack.env(), "AIRFLOW_CONN_WEBHDFS_DEFAULT": json.dumps(webhdfs), "REQUESTS_CA_BUNDLE": str(cert),
           "AIRFLOW_CONN_STAGING_DEFAULT": json.dumps({"conn_type": "http", "host": "127.0.0.1", "password": TOKEN})}
    arguments: set[str] = set()
    done = threading.Event()

    def watch_process_arguments():  # every process's command line, sampled all through the run
        while not done.is_set():
            arguments.update(subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True).stdout.splitlines())
            done.wait(0.2)

    with archives, AirflowStack(tmp_path / "airflow", env, postgres) as airflow:
        watcher = threading.Thread(target=watch_process_arguments, daemon=True)
        watcher.start()
        try:
            airflow.wait_dag("model_deployment")
            staging = f"https://127.0.0.1:{archives.port}/owner/private/zipball/v1"
            answer = airflow.api("POST", "/dags/model_deployment/dagRuns", json={"logical_date": None, "conf": {**NO_APPROVAL, "staging": staging}})
            run_id = answer.json()["dag_run_id"]
            run = airflow.wait_run("model_deployment", run_id)
            assert run["state"] == "success", (airflow.task_states("model_deployment", run_id), airflow.logs())
        finally:
            done.set()
            watcher.join()
        places: dict[str, str] = {"process arguments": "\n".join(arguments)}
        base = f"/dags/model_deployment/dagRuns/{run_id}/taskInstances"
        for ti in airflow.api("GET", base).json()["task_instances"]:
            task = ti["task_id"]
            places[f"{task} log"] = airflow.task_log("model_deployment", run_id, task)
            places[f"{task} rendered fields"] = json.dumps(ti["rendered_fields"])
            entries = airflow.api("GET", f"{base}/{task}/xcomEntries").json()["xcom_entries"]
            places[f"{task} XCom"] = json.dumps([airflow.api("GET", f"{base}/{task}/xcomEntries/{e['key']}", params={"map_index": e["map_index"]}).json() for e in entries])
        places["Airflow component logs"] = airflow.logs()
        places["run conf"] = json.dumps(run["conf"])
        conn = devstack.connections["atlas_default"]
        for type_name in ("model", "hdfs_path"):
            found = requests.post(f"http://{conn['host']}:{conn['port']}/api/atlas/v2/search/basic", auth=(conn["login"], conn["password"]),
                                  json={"typeName": type_name, "limit": 1000}, timeout=10).json()
            for header in found.get("entities", []):
                entity = requests.get(f"http://{conn['host']}:{conn['port']}/api/atlas/v2/entity/guid/{header['guid']}", auth=(conn["login"], conn["password"]), timeout=10)
                places[f"Atlas {header['guid']}"] = entity.text
        registry = devstack.state_dir / "webhdfs"
        for path in registry.rglob("*"):
            if path.is_file() and path.suffix in (".json", ".txt", ".md", ""):
                places[f"registry {path.name}"] = path.read_text(errors="replace")
        assert any("MANIFEST.json" in place for place in places)
        assert "fetch_staging XCom" in places and '"manifest"' in places["fetch_staging XCom"]  # the search did read the XCom values
        assert "sourceLocation" in "".join(places.values())  # the search did read the entities
        leaks = [(place, secret[:4] + "…") for place, text in places.items() for secret in secrets_ if secret in text]
        assert leaks == []
