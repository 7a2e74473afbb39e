"""
### Roll back: serve again the version that served before at a target

An operator action with a required reason. One run:

1. **plan_rollback**: find what serves at `target` now and the deployment it replaced there (Atlas), take
   the model's lock, and check the older version's archived bytes (sha256 of every file against its
   manifest, the manifest against the checksums Atlas recorded): a changed archive is refused before
   anything is served;
2. **deploy_model**: the ordinary MLeap deploy of that archived bundle, verified (schema, sample scoring),
   the current model put back if it fails;
3. **register_in_atlas**: a new deployment with `rollbackOf`, `deployReason` and `requestedBy`; the
   replaced one marked `rolled_back` (endedAt, endedBy, endReason);
4. **record_event**: `rolled_back` in the model's event log; **clean_up** releases the lock.

Trigger from the UI form, the REST API (`conf`) or
`airflow dags trigger model_rollback --conf '{"target": "mleap.example.com:65327", "reason": "..."}'`.
"""

from __future__ import annotations

from airflow.sdk import DAG

from model_governance.connections import MLEAP_CONN_ID
from model_governance.dag_steps import DEFAULT_ARGS
from model_governance.operators.atlas import AtlasCreateModelEntityOperator
from model_governance.operators.lifecycle import PlanRollbackOperator, RecordEventOperator
from model_governance.operators.mleap import MLeapDeployOperator
from model_governance.operators.registry import CleanUpRunOperator
from model_governance.params import action_arguments, action_params, action_registry_params, conn_param

with DAG(
    dag_id="model_rollback",
    description="Serve again the model version that served before at a target, and record the rollback",
    schedule=None,
    catchup=False,
    doc_md=__doc__,
    tags=["model-governance"],
    render_template_as_native_obj=True,
    default_args=DEFAULT_ARGS,
    params={
        **action_params("roll back"),
        "mleap_conn_id": conn_param(
            MLEAP_CONN_ID,
            "MLeap serving connection",
            "Airflow connection of the MLeap serving host of the target (type mleap, or http).",
        ),
        **action_registry_params(),
    },
) as dag:
    plan = PlanRollbackOperator(
        task_id="plan_rollback", mleap_conn_id="{{ params.mleap_conn_id }}", **action_arguments()
    )
    deploy = MLeapDeployOperator(
        task_id="deploy_model",
        document=plan.output,
        mleap_conn_id="{{ params.mleap_conn_id }}",
        webhdfs_conn_id="{{ params.webhdfs_conn_id }}",
        atlas_conn_id="{{ params.atlas_conn_id }}",  # the model serving now, put back if the deploy fails
    )
    register = AtlasCreateModelEntityOperator(
        task_id="register_in_atlas",
        document=deploy.output,
        atlas_conn_id="{{ params.atlas_conn_id }}",
        registry_root="{{ params.registry_root }}",  # the `deployed` event, its hash kept on the entity
        webhdfs_conn_id="{{ params.webhdfs_conn_id }}",
    )
    record = RecordEventOperator(
        task_id="record_event",
        event="rolled_back",
        document=deploy.output,
        registered=register.output,
        registry_root="{{ params.registry_root }}",
        webhdfs_conn_id="{{ params.webhdfs_conn_id }}",
    )
    clean_up = CleanUpRunOperator(
        task_id="clean_up",
        registry_root="{{ params.registry_root }}",
        webhdfs_conn_id="{{ params.webhdfs_conn_id }}",
    )
    clean_up.as_teardown(setups=plan)
    [deploy, register, record] >> clean_up
