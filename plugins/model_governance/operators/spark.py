"""Step 2b for the `spark` host type, in two tasks: publish the Spark ML pipeline where batch jobs load it
(`SparkPublishPipelineOperator`), then run the batch scoring job with it (`SparkBatchScoreOperator`)."""

from __future__ import annotations

import posixpath
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from model_governance.connections import SPARK_CONN_ID, WEBHDFS_CONN_ID
from model_governance.operators._args import as_document, run_key
from model_governance.operators._lineage import SPARK_PUBLISH, SPARK_SCORE, DeploymentLineageMixin

if TYPE_CHECKING:
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook


class SparkPublishPipelineOperator(DeploymentLineageMixin, BaseOperator):
    """Publish the archived Spark ML pipeline, verified, to `<models_root>/<model slug>/<version>/`, where
    batch jobs load it (the Spark connection's extra `models_root`: `hdfs:///<path>` through the WebHDFS
    connection, or a folder the cluster reads). Returns the deployment document with the deploy facts:
    the pipeline's location, its prediction columns (as the output schema), and the datasets the scoring
    task reads and writes, which Atlas records as the deployment's lineage.

    :param document: the deployment document the publish step returned (XCom).
    :param input_datasets: what the scoring job reads: a list, or comma-separated (templated).
    :param output_dataset: where the scoring job writes its predictions (templated).
    :param spark_conn_id: the Spark provider's connection, with the extra `models_root` (templated).
    :param webhdfs_conn_id: the WebHDFS connection, for a registry or models_root on HDFS (templated).
    """

    template_fields: Sequence[str] = (
        "document",
        "input_datasets",
        "output_dataset",
        "spark_conn_id",
        "webhdfs_conn_id",
    )
    ui_color = "#fdf0e0"
    lineage_step = SPARK_PUBLISH

    def __init__(
        self,
        *,
        document: Any,
        input_datasets: list[str] | str,
        output_dataset: str,
        spark_conn_id: str = SPARK_CONN_ID,
        webhdfs_conn_id: str = WEBHDFS_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.document = document
        self.input_datasets = input_datasets
        self.output_dataset = output_dataset
        self.spark_conn_id = spark_conn_id
        self.webhdfs_conn_id = webhdfs_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk import BaseHook

        from model_governance.deploy.spark import parse_datasets, publish_pipeline
        from model_governance.exceptions import InvalidInputError
        from model_governance.metadata import DeployFacts
        from model_governance.registry import Registry

        doc = as_document(self.document)
        inputs, output = parse_datasets(self.input_datasets), str(self.output_dataset or "").strip()
        if not inputs or not output or doc.registry is None:
            raise InvalidInputError(
                "a spark deployment needs an archived model, its input dataset(s) and its output"
            )
        conn = BaseHook.get_connection(self.spark_conn_id)
        models_root = conn.extra_dejson.get("models_root")
        if not models_root:
            raise InvalidInputError(
                f"connection {self.spark_conn_id!r} has no extra models_root: "
                "where batch jobs load models from"
            )
        registry = Registry.from_root(doc.registry.root, self.webhdfs_conn_id)
        models = Registry.from_root(models_root, self.webhdfs_conn_id)
        with tempfile.TemporaryDirectory(prefix="model-governance-spark-") as workdir:
            location, predictions = publish_pipeline(registry, models, doc, run_key(context), Path(workdir))
        registry.mark_served(doc, location)  # from now on this version is immutable unless forced
        version = models.version_path(doc.model.slug, doc.model.version)
        deploy = DeployFacts(
            host_type="spark",
            host_port=conn.host or "local",
            endpoint_url=location,
            serialized_object=Path(doc.executable).name,
            deployed_at=datetime.now(UTC).isoformat(timespec="seconds"),
            target=f"spark:{models.store.url(posixpath.dirname(version))}",
            scoring_url="",
            output_schema=[{"name": column} for column in predictions],
            inputs=inputs,
            outputs=[output],
        )
        return self.lineage_output(doc.with_deploy(deploy).to_json())


class SparkBatchScoreOperator(DeploymentLineageMixin, BaseOperator):
    """Score the deployment's input datasets with its published pipeline: the scoring job submitted the
    standard way, with the Spark provider's `SparkSubmitHook` on the Spark connection. A rerun rewrites
    the deployment's own output. Returns the deployment document unchanged, for the register step.

    :param document: the deployment document the Spark publish step returned (XCom).
    :param spark_conn_id: the Spark provider's connection (master, deploy mode…) (templated).
    """

    template_fields: Sequence[str] = ("document", "spark_conn_id")
    ui_color = "#fde6cf"
    lineage_step = SPARK_SCORE

    def __init__(self, *, document: Any, spark_conn_id: str = SPARK_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.document = document
        self.spark_conn_id = spark_conn_id

    @cached_property
    def hook(self) -> SparkSubmitHook:
        from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

        from model_governance.deploy.spark import scoring_arguments, submit_options

        doc = as_document(self.document)
        if doc.deploy is None:
            raise ValueError("the pipeline is not published yet: run the Spark publish step first")
        deploy = doc.deploy
        predictions = [field["name"] for field in deploy.output_schema]
        arguments = scoring_arguments(deploy.endpoint_url, deploy.inputs, deploy.outputs[0], predictions)
        conn = SparkSubmitHook.get_connection(self.spark_conn_id)
        return SparkSubmitHook(
            conn_id=self.spark_conn_id,
            name=f"score {doc.deploy_name}",
            application_args=arguments,
            **submit_options(conn),
        )

    def execute(self, context: Any) -> dict[str, Any]:
        from model_governance.deploy.spark import SCORING_JOB

        doc = as_document(self.document)
        self.hook.submit(str(SCORING_JOB))
        if doc.deploy is not None:
            self.log.info(
                "Scored %s with %s into %s",
                ", ".join(doc.deploy.inputs),
                doc.deploy_name,
                doc.deploy.outputs[0],
            )
        return self.lineage_output(doc.to_json())
