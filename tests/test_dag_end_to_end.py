"""The real DAG, run with `dag.test()` against the stand-ins over HTTP, checked through each service's API.
The main deploy test also runs on the real Atlas, HDFS and MLeap (`real_twin`); the other tests that check
Atlas run with the session's real Atlas in place of the Atlas stand-in (`real_twin("atlas")`: the legacy
MLeap API they check is served only by the stand-in)."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile

import pytest
import requests

from tests.helpers import (
    NO_APPROVAL,
    EXAMPLE_STAGING,
    atlas_call,
    atlas_search,
    load_dag,
    mleap_api,
    predict,
    scoring_url,
    serving_inputs,
)

TASKS = ["fetch_staging", "push_to_registry", "approve_deployment", "deploy_model", "register_in_atlas"]


@pytest.fixture(scope="module")
def dag():
    for dag_id in ("model_batch_deployment", "model_redeploy", "model_deployment_smoke_test"):  # every DAG file loads
        load_dag(dag_id)
    return load_dag("model_deployment")


def test_dagbag_has_the_four_steps_in_order(dag):
    assert dag.params["staging"] == "rental-pricing-prediction"
    assert dag.params["approval_required"] is True  # a person approves unless the run says otherwise
    for upstream, downstream in zip(TASKS, TASKS[1:]):
        assert dag.get_task(upstream).downstream_task_ids >= {downstream}
        assert dag.get_task(downstream).upstream_task_ids == {upstream}
    teardown = dag.get_task("clean_up")
    # it runs after every step once the fetch took the lock, whichever step failed (a failing fetch releases
    # what it took itself; a fetch that finds the version serving takes nothing and is skipped, and so is it)
    assert teardown.is_teardown and teardown.upstream_task_ids == set(TASKS)
    assert teardown.trigger_rule == "all_done_setup_success"
    # the params reach the tasks: the connection ids are templated, not frozen at parse time
    assert {"mleap_conn_id", "webhdfs_conn_id", "atlas_conn_id"} <= set(dag.get_task("deploy_model").template_fields)
    assert dag.get_task("deploy_model").mleap_conn_id == "{{ params.mleap_conn_id }}"


def run(dag, **conf):
    dr = dag.test(run_conf={**NO_APPROVAL, **conf})
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    return dr, states


def atlas_get(devstack, path, **params):
    return atlas_call(devstack.connections["atlas_default"], "GET", path, params=params)


def hdfs_client(devstack):
    from hdfs import InsecureClient

    conn = devstack.connections["webhdfs_default"]
    return InsecureClient(f"http://{conn['host']}:{conn['port']}", user="hdfs")


def registry_fs(devstack):
    """The file system registry URLs name: the real NameNode's RPC address, or the WebHDFS default."""
    conn = devstack.connections["webhdfs_default"]
    return (conn.get("extra") or {}).get("default_fs") or "hdfs://127.0.0.1:8020"


def mleap_url(devstack):
    conn = devstack.connections["mleap_default"]
    return f"http://{conn['host']}:{conn['port']}"


@pytest.mark.real_twin
def test_deploys_archives_and_registers_the_example(dag, airflow_db, devstack):
    dr, states = run(dag, staging=str(EXAMPLE_STAGING))
    assert dr.state == "success", states
    assert states == {**dict.fromkeys(TASKS, "success"), "clean_up": "success"}

    # serving: the model is loaded, answers with its schema, and scores the sample (legacy `/transform` on
    # the stand-in, spring-boot `/models/target/transform` on the real MLeap runtime)
    assert serving_inputs(devstack) >= {"bathrooms", "square_feet", "room_type", "state"}
    assert predict(devstack) == pytest.approx(232.62463916840318)

    # registry: every staged file, byte for byte, plus the manifest; no pending upload left
    client = hdfs_client(devstack)
    version = "/model-registry/rental-pricing-prediction/1.1"
    staged = sorted(p for p in EXAMPLE_STAGING.rglob("*") if p.is_file())
    for path in staged:
        rel = path.relative_to(EXAMPLE_STAGING).as_posix()
        with client.read(f"{version}/{rel}") as reader:
            assert hashlib.sha256(reader.read()).hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest(), rel
    with client.read(f"{version}/MANIFEST.json") as reader:
        manifest = json.load(reader)
    assert len(manifest["files"]) == len(staged)
    # listed by the NameNode (the real one in the real twin): the staged top level and the manifest
    assert set(client.list(version)) >= {p.name for p in EXAMPLE_STAGING.iterdir()} | {"MANIFEST.json"}
    assert client.list("/model-registry/.pending") == []

    # Atlas: the entity, read back through Atlas's API, with every attribute from the metadata
    host_port = f"127.0.0.1:{devstack.connections['mleap_default']['port']}"
    api = mleap_api(devstack)
    qualified_name = f"rental-pricing-prediction-v1.1@{host_port}"
    answer = atlas_get(devstack, "/entity/uniqueAttribute/type/model", **{"attr:qualifiedName": qualified_name})
    assert answer.status_code == 200, answer.text
    entity = answer.json()["entity"]
    attrs = entity["attributes"]
    assert entity["typeName"] == "model" and entity["status"] == "ACTIVE"
    expected = {
        "qualifiedName": qualified_name,
        "name": "rental pricing prediction v1.1",
        "deploy.host.type": "microservice",
        "deploy.host.detail": f"http://{host_port}/target",
        "deploy.obj.source": "airbnb.model.lr.zip",
        "model.name": "rental pricing prediction",
        "model.version": "1.1",
        "model.type": "linear regression",
        "model.description": "model predicts monthly price of rental if property is purchased",
        "model.owner": "Greg Keys",
        "model.owner.lob": "pricing",
        "model.registry.url": f"{registry_fs(devstack)}{version}",
        "owner": "Greg Keys",
        "deployStatus": "deployed",
        "endpointUrl": scoring_url(f"http://{host_port}", api),
        "hostType": "microservice",
        "deployTarget": host_port if api == "legacy" else f"{host_port}/models/target",
        "dagId": "model_deployment",
        "dagRunId": dr.run_id,
        "serializedObjectSha256": hashlib.sha256((EXAMPLE_STAGING / "executable/airbnb.model.lr.zip").read_bytes()).hexdigest(),
    }
    assert {key: attrs.get(key) for key in expected} == expected
    # ISO-8601 in UTC, not the seed's local 'yyyy-MM-dd_HH:mm:ssEST'
    assert attrs["deploy.datetime"].endswith("+00:00")
    assert attrs["deployTime"] > 0
    # Atlas's lineage: the archived training data -> the deployment
    lineage = atlas_get(devstack, f"/lineage/{entity['guid']}", direction="BOTH", depth=3).json()
    names = {guid: header["attributes"]["qualifiedName"] for guid, header in lineage["guidEntityMap"].items()}
    training = f"{registry_fs(devstack)}{version}/trainingdata/listings_sample.csv@primary"
    assert {(names[r["fromEntityId"]], names[r["toEntityId"]]) for r in lineage["relations"]} == {(training, qualified_name)}
    # the run asked no approval (approval_required false): recorded as such, with why, never as approved
    assert attrs["approvedBy"] == "not required" and attrs["approvedAt"] > 0
    assert "approval_required is false" in attrs["approvalComment"]
    assert attrs["requestedBy"]  # who triggered the run (dag.test(): no user, "unknown")
    with client.read("/model-registry/.events/rental-pricing-prediction.jsonl") as reader:
        events = [json.loads(line) for line in reader.read().splitlines()]
    waived = [e for e in events if e["event"] == "approved"]
    assert len(waived) == 1 and waived[0]["required"] is False and waived[0]["version"] == "1.1"

    # XCom carries the document as plain JSON, and no secret
    xcom = dr.get_task_instance("deploy_model").xcom_pull(task_ids="deploy_model")
    assert xcom["deploy"]["endpoint_url"] == f"http://{host_port}/target"
    assert devstack.connections["atlas_default"]["password"] not in json.dumps(xcom)


@pytest.mark.real_twin("atlas")
def test_rerun_changes_nothing_and_leaves_one_entity(dag, airflow_db, devstack):
    first, _ = run(dag, staging=str(EXAMPLE_STAGING))
    second, states = run(dag, staging=str(EXAMPLE_STAGING))
    assert second.state == "success", states
    doc = second.get_task_instance("push_to_registry").xcom_pull(task_ids="push_to_registry")
    assert doc["registry"]["uploaded_bytes"] == 0
    assert len(atlas_search(devstack.connections["atlas_default"], excludeDeletedEntities=True)) == 1


@pytest.mark.real_twin("atlas")
def test_failed_deploy_creates_no_atlas_entity(dag, airflow_db, devstack, tmp_path):
    """A bundle that passes our checks but that MLeap cannot load: the run fails, nothing registered."""
    staged = tmp_path / "broken-model"
    shutil.copytree(EXAMPLE_STAGING, staged)
    (staged / "modelMetadata.txt").write_text(
        (staged / "modelMetadata.txt").read_text().replace("rental pricing prediction", "broken model")
    )
    bundle = staged / "executable" / "airbnb.model.lr.zip"
    with zipfile.ZipFile(EXAMPLE_STAGING / "executable/airbnb.model.lr.zip") as src, zipfile.ZipFile(bundle, "w") as dst:
        for item in src.infolist():
            if "/linear_regression.node/" not in item.filename:  # the pipeline names a node that is gone
                dst.writestr(item, src.read(item))
    dr, states = run(dag, staging=str(staged))
    assert dr.state == "failed"
    assert states["deploy_model"] == "failed"
    assert states["register_in_atlas"] == "upstream_failed"
    assert atlas_search(devstack.connections["atlas_default"], excludeDeletedEntities=True) == []


def test_bad_metadata_fails_before_anything_happens(dag, airflow_db, devstack, tmp_path):
    staged = tmp_path / "no-version"
    shutil.copytree(EXAMPLE_STAGING, staged)
    text = (staged / "modelMetadata.txt").read_text()
    (staged / "modelMetadata.txt").write_text("\n".join(l for l in text.splitlines() if not l.startswith("model.version")))
    dr, states = run(dag, staging=str(staged))
    assert dr.state == "failed"
    assert states["fetch_staging"] == "failed"
    assert {states[t] for t in TASKS[1:]} == {"upstream_failed"}
    client = hdfs_client(devstack)
    exists = client.status("/model-registry", strict=False) is not None
    written = [f"{root}/{name}" for root, _, names in client.walk("/model-registry") for name in names] if exists else []
    assert written == []  # no version, no pending upload, no lock left
    assert requests.get(f"{mleap_url(devstack)}/model", timeout=10).status_code == 500  # nothing loaded
