"""Step 2b for the `spark` host type: publish the Spark ML pipeline where batch jobs load it, run the scoring job."""

from __future__ import annotations

import dataclasses
import posixpath
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from airflow.sdk import BaseOperator

from model_governance.operators._args import as_document

SCORING_JOB = Path(__file__).resolve().parents[1] / "spark_jobs" / "score_batch.py"


def submit_options(conn: Any) -> dict[str, Any]:
    """SparkSubmitHook arguments: quiet and light, and for a local master the worker's own Python and
    `spark-submit` (the connection's extra `spark_submit` may name one; the provider takes only names on PATH)."""
    import sys

    conf = {"spark.ui.enabled": "false", "spark.log.level": "WARN", "spark.sql.shuffle.partitions": "1"}
    options: dict[str, Any] = {"conf": conf}
    if (conn.host or "").startswith("local"):
        conf.update({"spark.pyspark.python": sys.executable, "spark.pyspark.driver.python": sys.executable})
    spark_submit = conn.extra_dejson.get("spark_submit")
    if spark_submit:
        options["spark_binary"] = spark_submit
    return options


class SparkBatchDeployOperator(BaseOperator):
    """Deploy a staged Spark ML pipeline model for batch scoring, and score the given datasets with it.

    The archived pipeline (a zip of the folder Spark saved) is unpacked and published, verified, to
    `<models_root>/<model slug>/<version>/`, where batch jobs load it (the Spark connection's extra
    `models_root`: `hdfs:///<path>` through the WebHDFS connection, or a folder the cluster reads). The
    scoring job is then submitted the standard way, with the Spark provider's `SparkSubmitHook` on the
    Spark connection: it reads `input_datasets` and writes `output_dataset`, which Atlas records as the
    deployment's lineage.
    """

    template_fields: Sequence[str] = ("document", "input_datasets", "output_dataset", "spark_conn_id", "webhdfs_conn_id")
    ui_color = "#fdf0e0"

    def __init__(
        self,
        *,
        document: Any,
        input_datasets: list[str] | str,
        output_dataset: str,
        spark_conn_id: str = "spark_default",
        webhdfs_conn_id: str = "webhdfs_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.document = document
        self.input_datasets = input_datasets
        self.output_dataset = output_dataset
        self.spark_conn_id = spark_conn_id
        self.webhdfs_conn_id = webhdfs_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

        from model_governance.bundle import validate_spark_pipeline
        from model_governance.exceptions import DeployError, InvalidInputError
        from model_governance.metadata import DeployFacts
        from model_governance.registry import Registry
        from model_governance.staging import build_manifest, safe_extract

        doc = as_document(self.document)
        if doc.registry is None:
            raise DeployError("the model is not archived yet: publish it to the registry before deploying")
        inputs = [self.input_datasets] if isinstance(self.input_datasets, str) else list(self.input_datasets or [])
        inputs = [location.strip() for item in inputs for location in item.split(",") if location.strip()]
        if not inputs or not str(self.output_dataset or "").strip():
            raise InvalidInputError("a spark deployment needs its input dataset(s) and its output location")
        conn = SparkSubmitHook.get_connection(self.spark_conn_id)
        models_root = conn.extra_dejson.get("models_root")
        if not models_root:
            raise InvalidInputError(f"connection {self.spark_conn_id!r} has no extra models_root: where batch jobs load models from")

        registry = Registry.from_root(doc.registry.root, self.webhdfs_conn_id)
        models = Registry.from_root(models_root, self.webhdfs_conn_id)
        target = models.version_path(doc.model.slug, doc.model.version)
        with tempfile.TemporaryDirectory(prefix="model-governance-spark-") as workdir:
            archive = Path(workdir) / "model.zip"
            registry.download(posixpath.join(doc.registry.path, doc.executable), archive, doc.executable_entry.sha256)
            validate_spark_pipeline(archive)  # metadata/ and stages/ at the zip's root, as safe_extract keeps them
            folder = safe_extract(archive, Path(workdir) / "pipeline")
            manifest = build_manifest(folder)
            if models.already_published(doc.model, manifest, force=True):
                self.log.info("%s already holds this pipeline", models.store.url(target))
            else:
                models.upload_pending(doc.work_key, folder, manifest)
                models.publish(dataclasses.replace(doc, manifest=manifest), force=True)
        model_location = models.store.url(target)
        output = self.output_dataset.strip()
        # a rerun of this deployment rewrites its own output
        arguments = ["--model", model_location, *[a for i in inputs for a in ("--input", i)], "--output", output, "--overwrite"]
        hook = SparkSubmitHook(conn_id=self.spark_conn_id, name=f"score {doc.deploy_name}", application_args=arguments, **submit_options(conn))
        started = datetime.now(timezone.utc)
        hook.submit(str(SCORING_JOB))
        self.log.info("Scored %s with %s into %s", ", ".join(inputs), doc.deploy_name, output)
        registry.mark_served(doc, model_location)  # from now on this version is immutable unless forced
        deploy = DeployFacts(
            host_type="spark",
            host_port=conn.host or "local",
            endpoint_url=model_location,
            serialized_object=posixpath.basename(doc.executable),
            deployed_at=started.isoformat(timespec="seconds"),
            target=f"spark:{models.store.url(posixpath.dirname(target))}",
            scoring_url="",
            inputs=inputs,
            outputs=[output],
        )
        return doc.with_deploy(deploy).to_json()
