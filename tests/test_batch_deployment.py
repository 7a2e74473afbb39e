"""The `spark` host type end to end: `model_batch_deployment` with `dag.test()`, real Spark in local mode
submitted through the Spark provider, the stand-ins over HTTP; the lineage read back through Atlas's API."""

from __future__ import annotations

import json
import shutil

import pytest
import requests

from tests.helpers import DAGS, PROJECT

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs a Java runtime")
STAGING = PROJECT / "examples" / "staging" / "rental-pricing-batch"
INPUT = PROJECT / "examples" / "batch-input" / "listings_to_score.csv"


def atlas(devstack, path, **params):
    conn = devstack.connections["atlas_default"]
    return requests.get(f"http://127.0.0.1:{conn['port']}/api/atlas/v2{path}", params=params, auth=(conn["login"], conn["password"]), timeout=10).json()


def test_batch_deployment_scores_and_records_lineage(devstack, airflow_db, tmp_path):
    import pyarrow.parquet as pq
    from airflow.dag_processing.dagbag import DagBag

    assert "spark_default" in devstack.connections
    dag = DagBag(dag_folder=str(DAGS / "model_batch_deployment.py")).dags["model_batch_deployment"]
    output = tmp_path / "scores"
    run = dag.test(run_conf={"staging": str(STAGING), "inputs": [str(INPUT)], "output": str(output)})
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}

    # the job ran: one scored row per input row
    scored = pq.read_table(output).to_pydict()
    assert len(scored["price_prediction"]) == len(INPUT.read_text().strip().splitlines()) - 1
    assert all(isinstance(value, float) for value in scored["price_prediction"])
    # the pipeline is published where batch jobs load it
    models_root = devstack.connections["spark_default"]["extra"]["models_root"]
    published = tmp_path.parent / models_root if not models_root.startswith("/") else __import__("pathlib").Path(models_root)
    assert (published / "rental-pricing-batch" / "1.0" / "metadata").is_dir()

    # Atlas: a spark deployment whose inputs and outputs are the datasets, and the lineage shows them
    registered = run.get_task_instance("register_in_atlas").xcom_pull(task_ids="register_in_atlas")
    entity = atlas(devstack, f"/entity/guid/{registered['guid']}")["entity"]
    assert entity["attributes"]["deploy.host.type"] == "spark" and entity["attributes"]["hostType"] == "spark"
    names = lambda refs: [atlas(devstack, f"/entity/guid/{r['guid']}")["entity"]["attributes"]["qualifiedName"] for r in refs]  # noqa: E731
    assert names(entity["attributes"]["inputs"]) == [f"file://{INPUT}"]
    assert names(entity["attributes"]["outputs"]) == [f"file://{output}"]
    lineage = atlas(devstack, f"/lineage/{registered['guid']}", direction="BOTH", depth=3)
    by_guid = {guid: header["attributes"]["qualifiedName"] for guid, header in lineage["guidEntityMap"].items()}
    edges = {(by_guid[r["fromEntityId"]], by_guid[r["toEntityId"]]) for r in lineage["relations"]}
    model = entity["attributes"]["qualifiedName"]
    assert edges == {(f"file://{INPUT}", model), (model, f"file://{output}")}


def test_a_rerun_rewrites_the_output_and_keeps_one_entity(devstack, airflow_db, tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS / "model_batch_deployment.py")).dags["model_batch_deployment"]
    conf = {"staging": str(STAGING), "inputs": [str(INPUT)], "output": str(tmp_path / "scores")}
    first = dag.test(run_conf=conf)
    second = dag.test(run_conf=conf)
    assert (first.state, second.state) == ("success", "success")
    conn = devstack.connections["atlas_default"]
    found = requests.post(f"http://127.0.0.1:{conn['port']}/api/atlas/v2/search/basic", auth=(conn["login"], conn["password"]),
                          json={"typeName": "model", "limit": 10}, timeout=10).json()
    assert len(found["entities"]) == 1


def test_a_staged_mleap_bundle_is_refused_for_spark(devstack, airflow_db, tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS / "model_batch_deployment.py")).dags["model_batch_deployment"]
    run = dag.test(run_conf={"staging": str(PROJECT / "examples/staging/rental-pricing-prediction"), "inputs": [str(INPUT)], "output": str(tmp_path / "o")})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed" and states["fetch_staging"] == "failed" and states["deploy_model"] == "upstream_failed"


def test_hive_tables_are_lineage_ends_as_atlas_hive_hook_registered_them(devstack, tmp_path):
    """`hive:db.table` names a table Atlas's Hive hook registered: the deployment refers to it, never makes it."""
    from model_governance.metadata import DeployFacts
    from model_governance.operators.atlas import AtlasCreateModelEntityOperator

    conn = devstack.connections["atlas_default"]
    hive_db = {"typeName": "hive_db", "attributes": {"qualifiedName": "sales@primary", "name": "sales", "clusterName": "primary"}}
    table = {"typeName": "hive_table", "attributes": {"qualifiedName": "sales.listings@primary", "name": "listings",
                                                      "db": {"typeName": "hive_db", "uniqueAttributes": {"qualifiedName": "sales@primary"}}}}
    for entity in (hive_db, table):
        created = requests.post(f"http://127.0.0.1:{conn['port']}/api/atlas/v2/entity/bulk", auth=(conn["login"], conn["password"]),
                                json={"entities": [entity]}, timeout=10)
        assert created.status_code == 200, created.text

    from model_governance.metadata import DeploymentDocument
    from model_governance.registry import Registry
    from model_governance.staging import stage

    staged = stage(str(STAGING), tmp_path, require_endpoint=False)
    doc = DeploymentDocument(staged.metadata, staged.source, staged.manifest, staged.executable, "model_batch_deployment", "manual__hive")
    registry = Registry.from_root(str(tmp_path / "registry"))
    registry.upload_pending(doc.run_id, staged.folder, staged.manifest)
    info = registry.publish(doc)
    facts = DeployFacts(host_type="spark", host_port="yarn", endpoint_url="hdfs://nn:8020/spark-models/rental-pricing-batch/1.0",
                        serialized_object="rental_pricing_lr.spark.zip", deployed_at="2026-11-25T00:00:00+00:00",
                        target="spark:hdfs://nn:8020/spark-models/rental-pricing-batch", scoring_url="",
                        inputs=["hive:Sales.Listings"], outputs=["hdfs://nn:8020/scores/rental"])
    document = doc.with_registry(info).with_deploy(facts).to_json()
    registered = AtlasCreateModelEntityOperator(task_id="register", document=document).execute({})

    lineage = atlas(devstack, f"/lineage/{registered['guid']}", direction="BOTH", depth=3)
    by_guid = {guid: (header["typeName"], header["attributes"]["qualifiedName"]) for guid, header in lineage["guidEntityMap"].items()}
    edges = {(by_guid[r["fromEntityId"]], by_guid[r["toEntityId"]]) for r in lineage["relations"]}
    model = ("model", "rental-pricing-batch-v1.0@yarn")
    assert edges == {(("hive_table", "sales.listings@primary"), model), (model, ("hdfs_path", "hdfs://nn:8020/scores/rental@primary"))}

    # a table Atlas does not know is a clear error naming it
    facts = DeployFacts(**{**facts.__dict__, "inputs": ["hive:sales.unknown"]})
    with pytest.raises(Exception, match="sales.unknown@primary"):
        AtlasCreateModelEntityOperator(task_id="register", document=doc.with_registry(info).with_deploy(facts).to_json()).execute({})
