"""
### Deploy a staged model and register the deployment in Apache Atlas

One run deploys one staged model version to one serving host, in four steps and an approval:

1. **fetch_staging** (2a): copy the staged model, check `modelMetadata.txt` and the layout, upload it to the
   registry's pending area;
2. **push_to_registry** (2c): verify the upload and publish it as `<registry>/<model>/<version>/`;
   **approve_deployment**: a person other than the one who triggered the run approves or rejects it
   (Browse → Required Actions, or the REST API); with `approval_required` false no one is asked (a warning);
3. **deploy_model** (2b): load the archived bundle into MLeap serving and confirm it serves;
4. **register_in_atlas** (2d): create or update the `model` entity in Atlas.

Archiving comes before serving and serving before registering, so every model that serves is archived and
no Atlas entity exists for a model that does not serve. Trigger from the UI form, the REST API (`conf`) or
`airflow dags trigger model_deployment --conf '{"staging": "..."}'`.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from model_governance.connections import MLEAP_CONN_ID
from model_governance.dag_steps import DEFAULT_ARGS, deployment_steps, mleap_deploy
from model_governance.params import (
    approval_params,
    conn_param,
    registry_params,
    staging_param,
    step_arguments,
)

with DAG(
    dag_id="model_deployment",
    description="Deploy a staged ML model to MLeap serving, archive it, and register it in Apache Atlas",
    schedule=None,
    catchup=False,
    doc_md=__doc__,
    tags=["model-governance"],
    render_template_as_native_obj=True,  # `force` stays a bool, the document a dict
    default_args=DEFAULT_ARGS,
    params={
        "staging": staging_param("rental-pricing-prediction"),
        "host_type": Param(
            "microservice",
            type="string",
            enum=["microservice"],
            title="Host type",
            description=(
                "Where the model serves: a microservice is MLeap serving "
                "(batch scoring in Spark: model_batch_deployment)."
            ),
        ),
        "mleap_conn_id": conn_param(
            MLEAP_CONN_ID,
            "MLeap serving connection",
            "Airflow connection of the MLeap serving host (type mleap, or http).",
        ),
        **registry_params(),
        **approval_params(),
    },
) as dag:
    deployment_steps(
        **step_arguments(),
        host_type="{{ params.host_type }}",
        serving_conn_id="{{ params.mleap_conn_id }}",
        deploy=mleap_deploy(
            mleap_conn_id="{{ params.mleap_conn_id }}",
            webhdfs_conn_id="{{ params.webhdfs_conn_id }}",
            atlas_conn_id="{{ params.atlas_conn_id }}",  # where the previous deployment is, for a rollback
        ),
    )
