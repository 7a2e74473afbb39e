"""The `spark` host type end to end: `model_batch_deployment` with `dag.test()`, real Spark in local mode
submitted through the Spark provider, the stand-ins over HTTP; the lineage read back through Atlas's API.
The lineage tests run twice: on the Atlas stand-in and on the session's real Atlas (`real_twin("atlas")`)."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import NO_APPROVAL, PROJECT, atlas_call, atlas_search, load_dag

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs a Java runtime")
STAGING = PROJECT / "examples" / "staging" / "rental-pricing-batch"
INPUT = PROJECT / "examples" / "batch-input" / "listings_to_score.csv"


def atlas(devstack, path, **params):
    return atlas_call(devstack.connections["atlas_default"], "GET", path, params=params).json()


@pytest.mark.real_twin("atlas")
def test_batch_deployment_scores_and_records_lineage(devstack, airflow_db, tmp_path):
    import pyarrow.parquet as pq

    assert "spark_default" in devstack.connections
    dag = load_dag("model_batch_deployment")
    output = tmp_path / "scores"
    run = dag.test(run_conf={**NO_APPROVAL, "staging": str(STAGING), "inputs": [str(INPUT)], "output": str(output)})
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
    # the inputs: the archived training data, then the datasets the job read
    training = "hdfs://127.0.0.1:8020/model-registry/rental-pricing-batch/1.0/trainingdata/listings_sample.csv@primary"
    assert names(entity["attributes"]["inputs"]) == [training, f"file://{INPUT}"]
    assert names(entity["attributes"]["outputs"]) == [f"file://{output}"]
    lineage = atlas(devstack, f"/lineage/{registered['guid']}", direction="BOTH", depth=3)
    by_guid = {guid: header["attributes"]["qualifiedName"] for guid, header in lineage["guidEntityMap"].items()}
    edges = {(by_guid[r["fromEntityId"]], by_guid[r["toEntityId"]]) for r in lineage["relations"]}
    model = entity["attributes"]["qualifiedName"]
    assert edges == {(training, model), (f"file://{INPUT}", model), (model, f"file://{output}")}


def test_a_rerun_rewrites_the_output_and_keeps_one_entity(devstack, airflow_db, tmp_path):
    dag = load_dag("model_batch_deployment")
    conf = {"staging": str(STAGING), "inputs": [str(INPUT)], "output": str(tmp_path / "scores")}
    first = dag.test(run_conf={**NO_APPROVAL, **conf})
    second = dag.test(run_conf={**NO_APPROVAL, **conf})
    assert (first.state, second.state) == ("success", "success")
    assert len(atlas_search(devstack.connections["atlas_default"], limit=10)) == 1


def test_a_staged_mleap_bundle_is_refused_for_spark(devstack, airflow_db, tmp_path):
    dag = load_dag("model_batch_deployment")
    run = dag.test(run_conf={**NO_APPROVAL, "staging": str(PROJECT / "examples/staging/rental-pricing-prediction"), "inputs": [str(INPUT)], "output": str(tmp_path / "o")})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed" and states["fetch_staging"] == "failed" and states["deploy_model"] == "upstream_failed"


@pytest.mark.real_twin("atlas")
def test_hive_tables_are_lineage_ends_as_atlas_hive_hook_registered_them(devstack, tmp_path):
    """`hive:db.table` names a table Atlas's Hive hook registered: the deployment refers to it, never makes it."""
    from model_governance.metadata import DeployFacts
    from model_governance.operators.atlas import AtlasCreateModelEntityOperator

    conn = devstack.connections["atlas_default"]
    hive_db = {"typeName": "hive_db", "attributes": {"qualifiedName": "sales@primary", "name": "sales", "clusterName": "primary"}}
    table = {"typeName": "hive_table", "attributes": {"qualifiedName": "sales.listings@primary", "name": "listings",
                                                      "db": {"typeName": "hive_db", "uniqueAttributes": {"qualifiedName": "sales@primary"}}}}
    for entity in (hive_db, table):
        created = atlas_call(conn, "POST", "/entity/bulk", json={"entities": [entity]})
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
    training = ("fs_path", f"{info.url}/trainingdata/listings_sample.csv")  # a registry in a local folder: fs_path
    assert edges == {(training, model), (("hive_table", "sales.listings@primary"), model),
                     (model, ("hdfs_path", "hdfs://nn:8020/scores/rental@primary"))}

    # a table Atlas does not know is a clear error naming it
    facts = DeployFacts(**{**facts.__dict__, "inputs": ["hive:sales.unknown"]})
    with pytest.raises(Exception, match="sales.unknown@primary"):
        AtlasCreateModelEntityOperator(task_id="register", document=doc.with_registry(info).with_deploy(facts).to_json()).execute({})


def train_churn_classifier(folder):
    """A tiny classifier that is not the example: its own inputs, its own prediction column, saved and zipped."""
    import zipfile

    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master("local[1]").appName("churn-test").config("spark.ui.enabled", "false").getOrCreate()
    try:
        rows = [(float(m), float(c), 1.0 if m < 6 else 0.0) for m, c in [(1, 9), (2, 7), (3, 8), (12, 1), (24, 0), (36, 2), (4, 6), (30, 1)]]
        frame = spark.createDataFrame(rows, ["tenure_months", "support_calls", "churned"])
        pipeline = Pipeline(stages=[
            VectorAssembler(inputCols=["tenure_months", "support_calls"], outputCol="churn_features"),
            LogisticRegression(featuresCol="churn_features", labelCol="churned", predictionCol="churn_predicted", maxIter=20),
        ])
        saved = folder / "saved"
        pipeline.fit(frame).write().overwrite().save(str(saved))
    finally:
        spark.stop()
    archive = folder / "churn.spark.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(saved.rglob("*")):
            if path.is_file():
                out.write(path, path.relative_to(saved).as_posix())
    return archive


def test_a_second_spark_model_deploys_and_scores_with_its_own_prediction_column(devstack, airflow_db, tmp_path):
    import pyarrow.parquet as pq

    staged = tmp_path / "churn"
    shutil.copytree(STAGING, staged)
    (staged / "executable/rental_pricing_lr.spark.zip").unlink()
    shutil.move(train_churn_classifier(tmp_path), staged / "executable/churn.spark.zip")
    metadata = (staged / "modelMetadata.txt").read_text()
    metadata = metadata.replace("rental pricing batch", "churn batch").replace("linear regression", "logistic regression")
    (staged / "modelMetadata.txt").write_text(metadata)
    to_score = tmp_path / "customers.csv"
    to_score.write_text("customer_id,tenure_months,support_calls\nc1,2,8\nc2,40,0\nc3,5,5\n")

    dag = load_dag("model_batch_deployment")
    output = tmp_path / "churn-scores"
    run = dag.test(run_conf={**NO_APPROVAL, "staging": str(staged), "inputs": [str(to_score)], "output": str(output)})
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    scored = pq.read_table(output)
    assert scored.column_names == ["customer_id", "tenure_months", "support_calls", "churn_predicted"]
    assert scored.column("churn_predicted").to_pylist() == [1.0, 0.0, 1.0]
    facts = run.get_task_instance("deploy_model").xcom_pull(task_ids="deploy_model")["deploy"]
    assert facts["output_schema"] == [{"name": "churn_predicted"}]
