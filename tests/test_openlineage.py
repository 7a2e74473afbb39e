"""OpenLineage from the operators: the mapping from a deployment document to datasets and the run facet
(unit), and the events the OpenLineage provider's own listener emits for a real deployment run with the
file transport configured (`dag.test()` in a fresh Python process: the provider decides at start-up,
once per process, whether its listener is on, so it cannot be switched on inside this test session)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.helpers import DAGS, EXAMPLE_STAGING, PLUGINS, PROJECT

BUNDLE_SHA256 = hashlib.sha256((EXAMPLE_STAGING / "executable/airbnb.model.lr.zip").read_bytes()).hexdigest()
TRAINING = "trainingdata/listings_sample.csv"
BUNDLE = "executable/airbnb.model.lr.zip"
FACET_SCHEMA = "urn:model-governance:openlineage:ModelDeploymentRunFacet:1-0-0"


def deployed_document(tmp_path, registry_url=None):
    """The example staged, archived in a local registry and deployed (facts as a spring-boot deploy
    records them); registry_url pretends the registry is on HDFS."""
    from dataclasses import replace

    from model_governance.metadata import ApprovalInfo, DeployFacts, DeploymentDocument
    from model_governance.registry import Registry
    from model_governance.staging import stage

    staged = stage(str(EXAMPLE_STAGING), tmp_path / "work")
    doc = DeploymentDocument(staged.metadata, staged.source, staged.manifest, staged.executable, "model_deployment", "manual__ol")
    registry = Registry.from_root(str(tmp_path / "registry"))
    registry.upload_pending(doc.run_id, staged.folder, staged.manifest)
    info = registry.publish(doc)
    if registry_url:
        info = replace(info, url=registry_url)
    facts = DeployFacts(host_type="microservice", host_port="mleap.example.com:65327", endpoint_url="http://mleap.example.com:65327/target",
                        serialized_object="airbnb.model.lr.zip", deployed_at="2026-12-01T10:00:00+00:00",
                        target="mleap.example.com:65327/models/target", scoring_url="http://mleap.example.com:65327/models/target/transform",
                        output_schema=[{"name": "price_prediction", "type": {"type": "basic", "base": "double"}}])
    approved = ApprovalInfo(by="olga", at="2026-12-01T09:59:00+00:00", comment="ok")
    return replace(doc.with_registry(info).with_deploy(facts), approval=approved)


def names(datasets):
    return [(d.namespace, d.name) for d in datasets]


def test_the_mapping_names_training_data_bundle_and_endpoint_by_openlineage_conventions(tmp_path):
    from openlineage.client.serde import Serde

    from model_governance.openlineage import ModelDeploymentRunFacet, dataset_name, step_lineage

    doc = deployed_document(tmp_path, registry_url="hdfs://namenode:8020/model-registry/rental-pricing-prediction/1.1")
    archived = [("hdfs://namenode:8020", f"/model-registry/rental-pricing-prediction/1.1/{p}") for p in (TRAINING, BUNDLE)]
    for step in ("deploy", "register"):
        lineage = step_lineage(step, doc)
        assert names(lineage.inputs) == archived
        assert names(lineage.outputs) == [("http://mleap.example.com:65327", "/models/target/transform")]
        schema = lineage.outputs[0].facets["schema"]
        assert [(f.name, f.type) for f in schema.fields] == [("price_prediction", "double")]
        facet = lineage.run_facets["modelDeployment"]
        assert isinstance(facet, ModelDeploymentRunFacet)
        as_json = json.loads(Serde.to_json(facet))
        assert as_json["_schemaURL"] == FACET_SCHEMA and as_json["_producer"]
        assert {k: as_json[k] for k in ("model", "version", "owner", "approver", "bundleSha256", "qualifiedName")} == {
            "model": "rental pricing prediction", "version": "1.1", "owner": "Greg Keys", "approver": "olga",
            "bundleSha256": BUNDLE_SHA256, "qualifiedName": "rental-pricing-prediction-v1.1@mleap.example.com:65327"}
    # the fetch step read the staged folder's files; publish archived them
    staged = [("file", f"{EXAMPLE_STAGING}/{p}") for p in (TRAINING, BUNDLE)]
    assert names(step_lineage("fetch", doc).inputs) == staged and step_lineage("fetch", doc).outputs == []
    assert names(step_lineage("publish", doc).outputs) == archived
    # a failed step reports what it read, and no output
    failed = step_lineage("deploy", doc, failed=True)
    assert names(failed.inputs) == archived and failed.outputs == []
    # approval not recorded, or not required: no approver
    from dataclasses import replace

    from model_governance.metadata import ApprovalInfo

    assert step_lineage("deploy", replace(doc, approval=None)).run_facets["modelDeployment"].approver is None
    skipped = ApprovalInfo(by="", at="2026-12-01T09:59:00+00:00", comment="low risk", required=False)
    assert step_lineage("deploy", replace(doc, approval=skipped)).run_facets["modelDeployment"].approver is None
    # other locations
    assert dataset_name("file:///srv/registry/m/1.0/x.csv") == ("file", "/srv/registry/m/1.0/x.csv")
    assert dataset_name("hdfs://mycluster/scores/rental") == ("hdfs://mycluster", "/scores/rental")
    assert dataset_name("hive:Sales.Listings") == ("hive", "sales.listings")
    assert dataset_name("git+https://git.example.com/pricing/rental.git@v1.1") == ("https://git.example.com", "/pricing/rental.git")
    assert dataset_name("https://mleap.example.com:8443/transform") == ("https://mleap.example.com:8443", "/transform")


def test_the_spark_steps_name_the_pipeline_and_the_batch_datasets(tmp_path):
    from dataclasses import replace

    from model_governance.openlineage import step_lineage

    doc = deployed_document(tmp_path)
    facts = replace(doc.deploy, host_type="spark", endpoint_url="hdfs://nn:8020/spark-models/rental-pricing-prediction/1.1",
                    scoring_url="", inputs=["hive:sales.listings", "/data/extra.csv"], outputs=["hdfs://nn:8020/scores/rental"])
    doc = doc.with_deploy(facts)
    archived = [("file", f"{doc.registry.path}/{p}") for p in (TRAINING, BUNDLE)]
    publish = step_lineage("spark_publish", doc)
    assert names(publish.inputs) == archived
    assert names(publish.outputs) == [("hdfs://nn:8020", "/spark-models/rental-pricing-prediction/1.1")]
    score = step_lineage("spark_score", doc)
    assert names(score.inputs) == [("hdfs://nn:8020", "/spark-models/rental-pricing-prediction/1.1"), ("hive", "sales.listings"), ("file", "/data/extra.csv")]
    assert names(score.outputs) == [("hdfs://nn:8020", "/scores/rental")]
    register = step_lineage("register", doc)
    assert names(register.inputs) == archived + [("hive", "sales.listings"), ("file", "/data/extra.csv")]
    assert names(register.outputs) == [("hdfs://nn:8020", "/scores/rental")]


def test_openlineage_is_off_unless_configured():
    """The test session configures no transport: the provider's listener is not installed."""
    from airflow.providers.openlineage import conf

    assert not any(k.startswith(("AIRFLOW__OPENLINEAGE__", "OPENLINEAGE_")) for k in os.environ)
    assert conf.is_disabled()


RUNNER = r"""
import json, os, sys
from airflow.utils.db import resetdb
resetdb()
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder=os.environ["MG_DAG_FILE"]).dags["model_deployment"]
results = []
for staging in sys.argv[1:]:
    run = dag.test(run_conf={"staging": staging, "approval_required": False})
    results.append({"run_id": run.run_id, "state": str(run.state),
                    "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}})
print("RESULTS " + json.dumps(results))
"""


def run_with_openlineage(tmp_path, devstack, *stagings):
    """`dag.test()` of model_deployment for each staging, in a fresh process with the OpenLineage provider's
    file transport configured; (the runs, the events the listener wrote)."""
    home = tmp_path / "ol-airflow"
    home.mkdir()
    events = tmp_path / "openlineage-events.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(devstack.env())
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events), "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "model-governance-test",
        "MG_DAG_FILE": str(DAGS / "model_deployment.py"),
        "PYTHONPATH": os.pathsep.join([str(PLUGINS), str(PROJECT / "devstack"), str(PROJECT)]),
    })
    done = subprocess.run([sys.executable, "-c", RUNNER, *map(str, stagings)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULTS ")]
    assert done.returncode == 0 and lines, (done.stdout[-3000:], done.stderr[-5000:])
    emitted = [json.loads(line) for line in events.read_text().splitlines()] if events.exists() else []
    return json.loads(lines[-1].removeprefix("RESULTS ")), emitted


def task_events(emitted, run_id, event_type):
    """The events of one DAG run's tasks of a type (COMPLETE, FAIL), by task id."""
    found = {}
    for event in emitted:
        facets = event["run"]["facets"]
        if event["eventType"] == event_type and "airflow" in facets and facets["airflow"]["dagRun"]["run_id"] == run_id:
            found[event["job"]["name"].split(".", 1)[1]] = event
    return found


def dataset_names(datasets):
    return [(d["namespace"], d["name"]) for d in datasets]


def test_the_listener_emits_the_deployment_lineage_of_each_step(devstack, tmp_path):
    broken = tmp_path / "broken-model"
    shutil.copytree(EXAMPLE_STAGING, broken)
    metadata = broken / "modelMetadata.txt"
    metadata.write_text(metadata.read_text().replace("rental pricing prediction", "broken model"))
    with zipfile.ZipFile(EXAMPLE_STAGING / BUNDLE) as src, zipfile.ZipFile(broken / BUNDLE, "w") as dst:
        for item in src.infolist():
            if "/linear_regression.node/" not in item.filename:  # MLeap cannot load it: the deploy step fails
                dst.writestr(item, src.read(item))

    (good, bad), emitted = run_with_openlineage(tmp_path, devstack, EXAMPLE_STAGING, broken)
    assert good["state"] == "success", good
    assert bad["state"] == "failed" and bad["tasks"]["deploy_model"] == "failed", bad

    complete = task_events(emitted, good["run_id"], "COMPLETE")
    assert {"fetch_staging", "push_to_registry", "deploy_model", "register_in_atlas"} <= set(complete)
    hdfs = "hdfs://127.0.0.1:8020"  # the WebHDFS stand-in's file system
    version = "/model-registry/rental-pricing-prediction/1.1"
    archived = [(hdfs, f"{version}/{TRAINING}"), (hdfs, f"{version}/{BUNDLE}")]
    conn = devstack.connections["mleap_default"]
    endpoint = [(f"http://127.0.0.1:{conn['port']}", "/transform")]  # legacy serving's scoring URL
    assert dataset_names(complete["fetch_staging"]["inputs"]) == [("file", f"{EXAMPLE_STAGING}/{p}") for p in (TRAINING, BUNDLE)]
    assert dataset_names(complete["push_to_registry"]["outputs"]) == archived
    for task in ("deploy_model", "register_in_atlas"):
        event = complete[task]
        assert event["job"]["namespace"] == "model-governance-test"
        assert dataset_names(event["inputs"]) == archived, task
        assert dataset_names(event["outputs"]) == endpoint, task
        assert "price_prediction" in [f["name"] for f in event["outputs"][0]["facets"]["schema"]["fields"]]
    for task, event in complete.items():
        if task in ("clean_up", "approve_deployment"):  # the provider's own operators: no model facet
            continue
        facet = event["run"]["facets"]["modelDeployment"]
        assert facet["_schemaURL"] == FACET_SCHEMA, task
        assert (facet["model"], facet["version"], facet["owner"], facet["bundleSha256"]) == (
            "rental pricing prediction", "1.1", "Greg Keys", BUNDLE_SHA256), task
        assert facet.get("approver") is None  # no approval step recorded one
    assert complete["register_in_atlas"]["run"]["facets"]["modelDeployment"]["qualifiedName"] == f"rental-pricing-prediction-v1.1@127.0.0.1:{conn['port']}"

    # the failed deploy: a FAIL event naming what it read, no output, the model's facet
    failed = task_events(emitted, bad["run_id"], "FAIL")
    assert "deploy_model" in failed, sorted(failed)
    event = failed["deploy_model"]
    assert dataset_names(event["inputs"]) == [(hdfs, f"/model-registry/broken-model/1.1/{p}") for p in (TRAINING, BUNDLE)]
    assert event["outputs"] == []
    assert event["run"]["facets"]["modelDeployment"]["model"] == "broken model"
    assert "errorMessage" in event["run"]["facets"]


BLOCKED = r"""
import importlib.abc, sys

# the OpenLineage client and the provider's lineage machinery; the provider's own metadata stays
# importable, since Airflow's provider discovery reads it for every installed provider
BLOCKED_PREFIXES = ("openlineage.", "airflow.providers.openlineage.extractors",
                    "airflow.providers.openlineage.plugins.listener", "airflow.providers.openlineage.plugins.adapter")

class NoOpenLineage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "openlineage" or name.startswith(BLOCKED_PREFIXES):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
        return None

sys.meta_path.insert(0, NoOpenLineage())
from airflow.utils.db import resetdb
resetdb()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert bag.import_errors == {}, bag.import_errors
import model_governance.operators.fetch, model_governance.operators.mleap, model_governance.operators.spark
import model_governance.operators.atlas, model_governance.operators.registry, model_governance.assets
assert not any(m == "openlineage" or m.startswith(BLOCKED_PREFIXES) for m in sys.modules)
print("DAGS " + " ".join(sorted(bag.dag_ids)))
"""


def test_without_the_provider_every_dag_parses(tmp_path):
    """The OpenLineage client and the provider's extractors and listener made unimportable (as when the
    provider is absent): every DAG file and operator module still loads, and none of them imports them."""
    home = tmp_path / "airflow"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "PYTHONPATH": os.pathsep.join([str(PLUGINS), str(PROJECT / "devstack")]),
    })
    done = subprocess.run([sys.executable, "-c", BLOCKED, str(DAGS)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "model_deployment model_deployment_smoke_test" in done.stdout, done.stdout[-2000:]
