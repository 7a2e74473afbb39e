"""
### Deploy a staged model and register the deployment in Apache Atlas

One run deploys one staged model version to one serving host, in four steps:

1. **fetch_staging** (2a): copy the staged model, check `modelMetadata.txt` and the layout, upload it to the
   registry's pending area;
2. **push_to_registry** (2c): verify the upload and publish it as `<registry>/<model>/<version>/`;
3. **deploy_model** (2b): load the archived bundle into MLeap serving and confirm it serves;
4. **register_in_atlas** (2d): create or update the `model` entity in Atlas.

Archiving comes before serving and serving before registering, so every model that serves is archived and
no Atlas entity exists for a model that does not serve. Trigger from the UI form, the REST API (`conf`) or
`airflow dags trigger model_deployment --conf '{"staging": "..."}'`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param

from model_governance.operators.atlas import AtlasCreateModelEntityOperator
from model_governance.operators.fetch import FetchStagingOperator
from model_governance.operators.mleap import MLeapDeployOperator
from model_governance.operators.registry import CleanUpRunOperator, PublishToRegistryOperator
from model_governance.params import registry_params, staging_param

with DAG(
    dag_id="model_deployment",
    description="Deploy a staged ML model to MLeap serving, archive it, and register it in Apache Atlas",
    schedule=None,
    catchup=False,
    doc_md=__doc__,
    tags=["model-governance"],
    render_template_as_native_obj=True,  # `force` stays a bool, the document a dict
    default_args={"retries": 2, "retry_delay": timedelta(seconds=20), "retry_exponential_backoff": 2.0},
    params={
        "staging": staging_param("rental-pricing-prediction"),
        "host_type": Param(
            "microservice",
            type="string",
            enum=["microservice"],
            title="Host type",
            description="Where the model serves: a microservice is MLeap serving (batch scoring in Spark: model_batch_deployment).",
        ),
        "mleap_conn_id": Param("mleap_default", type="string", minLength=1, title="MLeap serving connection", description="Airflow connection of the MLeap serving host (http)."),
        **registry_params(),
    },
) as dag:
    fetch = FetchStagingOperator(
        task_id="fetch_staging",
        staging="{{ params.staging }}",
        registry_root="{{ params.registry_root }}",
        webhdfs_conn_id="{{ params.webhdfs_conn_id }}",
        host_type="{{ params.host_type }}",
        force="{{ params.force }}",
    )
    publish = PublishToRegistryOperator(
        task_id="push_to_registry",
        document=fetch.output,
        registry_root="{{ params.registry_root }}",
        webhdfs_conn_id="{{ params.webhdfs_conn_id }}",
        force="{{ params.force }}",
    )
    deploy = MLeapDeployOperator(
        task_id="deploy_model",
        document=publish.output,
        mleap_conn_id="{{ params.mleap_conn_id }}",
        webhdfs_conn_id="{{ params.webhdfs_conn_id }}",
        atlas_conn_id="{{ params.atlas_conn_id }}",  # where the previous deployment is looked up for a rollback
    )
    register = AtlasCreateModelEntityOperator(
        task_id="register_in_atlas",
        document=deploy.output,
        atlas_conn_id="{{ params.atlas_conn_id }}",
    )
    # Runs once every step is done, whichever failed (fetch included: a teardown with no setup is all_done),
    # and does not decide the run's state: drops the pending upload and releases the model's lock.
    clean_up = CleanUpRunOperator(
        task_id="clean_up",
        registry_root="{{ params.registry_root }}",
        webhdfs_conn_id="{{ params.webhdfs_conn_id }}",
    ).as_teardown()
    [fetch, publish, deploy, register] >> clean_up
