"""
### Deploy a staged Spark ML model for batch scoring, with data lineage in Atlas

The same framework steps as `model_deployment`, for the `spark` host type:

1. **fetch_staging** (2a): fetch and check the staged model (a zipped, saved Spark ML pipeline in
   `executable/`), upload it to the registry's pending area;
2. **push_to_registry** (2c): verify the upload and publish it as `<registry>/<model>/<version>/`;
   **approve_deployment**: a person other than the one who triggered the run approves or rejects it
   (`approval_required` false: no one is asked, a warning says so);
3. **deploy_model** (2b): publish the pipeline where batch jobs load it (the Spark connection's
   `models_root`), and **score_batch**: submit the scoring job (`spark-submit`, through the Spark
   provider) that reads the input datasets and writes the pipeline's predictions;
4. **register_in_atlas** (2d): the `model` entity with `deploy.host.type` spark and the datasets as its
   inputs and outputs, so Atlas's lineage shows input → model → output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import DAG, Param

from model_governance.connections import SPARK_CONN_ID
from model_governance.dag_steps import DEFAULT_ARGS, deployment_steps
from model_governance.operators.spark import SparkBatchScoreOperator, SparkPublishPipelineOperator
from model_governance.params import (
    approval_params,
    conn_param,
    registry_params,
    staging_param,
    step_arguments,
)

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.definitions.xcom_arg import XComArg

DATASET_HELP = (
    "hdfs://<namenode>/<path>, a path the Spark job reads (local mode), "
    "or hive:<db>.<table> (a table Atlas's Hive hook registered)"
)


def publish_and_score(document: XComArg) -> tuple[BaseOperator, BaseOperator]:
    publish = SparkPublishPipelineOperator(
        task_id="deploy_model",
        document=document,
        input_datasets="{{ params.inputs }}",
        output_dataset="{{ params.output }}",
        spark_conn_id="{{ params.spark_conn_id }}",
        webhdfs_conn_id="{{ params.webhdfs_conn_id }}",
    )
    score = SparkBatchScoreOperator(
        task_id="score_batch", document=publish.output, spark_conn_id="{{ params.spark_conn_id }}"
    )
    return publish, score


with DAG(
    dag_id="model_batch_deployment",
    description=(
        "Deploy a staged Spark ML model for batch scoring, archive it, "
        "and register it with its lineage in Apache Atlas"
    ),
    schedule=None,
    catchup=False,
    doc_md=__doc__,
    tags=["model-governance"],
    render_template_as_native_obj=True,
    default_args=DEFAULT_ARGS,
    params={
        "staging": staging_param(
            "rental-pricing-batch", " (executable/ holds the saved Spark ML pipeline, zipped)"
        ),
        # no defaults: the datasets are the run's own (the form asks for them)
        "inputs": Param(
            type="array",
            items={"type": "string", "minLength": 1},
            minItems=1,
            title="Input datasets",
            description=f"What the scoring job reads: {DATASET_HELP}.",
        ),
        "output": Param(
            type="string",
            minLength=1,
            title="Output dataset",
            description=f"Where the scoring job writes its predictions (parquet): {DATASET_HELP}.",
        ),
        "spark_conn_id": conn_param(
            SPARK_CONN_ID,
            "Spark connection",
            "The Spark provider's connection (master, deploy mode…); "
            "its extra models_root is where batch jobs load models.",
        ),
        **registry_params(),
        **approval_params(),
    },
) as dag:
    deployment_steps(
        **step_arguments(),
        host_type="spark",
        serving_conn_id="{{ params.spark_conn_id }}",
        deploy=publish_and_score,
    )
