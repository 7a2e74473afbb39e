"""
### Retire: take the deployment serving at a target out of service

An operator action with a required reason. One run:

1. **plan_retire**: find what serves at `target` (Atlas) and take the model's lock; nothing serving
   there is a clear error, and nothing changes;
2. **unload_model**: legacy MLeap serving unloads its model (`DELETE /model`), spring-boot deletes the
   named model (`DELETE /models/<name>`), a Spark deployment's published pipeline is removed; confirmed;
3. **record_event**: `retired` in the model's event log;
4. **mark_retired**: Atlas marks the deployment `retired` (endedAt, endedBy, endReason) — only once it
   no longer serves. The archived version stays in the registry; **clean_up** releases the lock.

Trigger from the UI form, the REST API (`conf`) or
`airflow dags trigger model_retire --conf '{"target": "mleap.example.com:65327", "reason": "..."}'`.
"""

from __future__ import annotations

from airflow.sdk import DAG

from model_governance.connections import MLEAP_CONN_ID, SPARK_CONN_ID
from model_governance.dag_steps import DEFAULT_ARGS
from model_governance.operators.lifecycle import (
    AtlasRetireOperator,
    PlanRetireOperator,
    RecordEventOperator,
    UnloadDeploymentOperator,
)
from model_governance.operators.registry import CleanUpRunOperator
from model_governance.params import action_arguments, action_params, action_registry_params, conn_param

with DAG(
    dag_id="model_retire",
    description="Take the deployment serving at a target out of service, and record its retirement",
    schedule=None,
    catchup=False,
    doc_md=__doc__,
    tags=["model-governance"],
    render_template_as_native_obj=True,
    default_args=DEFAULT_ARGS,
    params={
        **action_params("retire"),
        "mleap_conn_id": conn_param(
            MLEAP_CONN_ID,
            "MLeap serving connection",
            "For an MLeap target: the Airflow connection of its serving host.",
        ),
        "spark_conn_id": conn_param(
            SPARK_CONN_ID,
            "Spark connection",
            "For a spark target: the Spark connection whose extra models_root holds the published pipeline.",
        ),
        **action_registry_params(),
    },
) as dag:
    plan = PlanRetireOperator(task_id="plan_retire", **action_arguments())
    unload = UnloadDeploymentOperator(
        task_id="unload_model",
        retirement=plan.output,
        mleap_conn_id="{{ params.mleap_conn_id }}",
        spark_conn_id="{{ params.spark_conn_id }}",
        webhdfs_conn_id="{{ params.webhdfs_conn_id }}",
    )
    record = RecordEventOperator(
        task_id="record_event",
        event="retired",
        document=unload.output,
        registry_root="{{ params.registry_root }}",
        webhdfs_conn_id="{{ params.webhdfs_conn_id }}",
    )
    mark = AtlasRetireOperator(
        task_id="mark_retired", retirement=unload.output, atlas_conn_id="{{ params.atlas_conn_id }}"
    )
    record >> mark
    clean_up = CleanUpRunOperator(
        task_id="clean_up",
        registry_root="{{ params.registry_root }}",
        webhdfs_conn_id="{{ params.webhdfs_conn_id }}",
    )
    clean_up.as_teardown(setups=plan)
    [unload, record, mark] >> clean_up
