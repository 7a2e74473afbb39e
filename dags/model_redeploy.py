"""
### Redeploy every model of a manifest, on a schedule

For each model listed in the manifest, the same four steps as `model_deployment` run in a mapped task
group (one group per model, in parallel). A model that already serves exactly its archived bundle is
verified (schema, sample scoring) by the fetch step and left alone: no lock, upload, load or approval,
and its group's other tasks are skipped.

The manifest is the Airflow Variable `model_redeploy_manifest` (JSON) when it exists, else the JSON or
YAML file named by `$MODEL_GOVERNANCE_REDEPLOY_MANIFEST` (see `examples/redeploy.yaml`):

```yaml
defaults:                     # optional: values every model takes unless it sets its own
  registry_root: hdfs:///model-registry
models:
  - staging: rental-pricing-prediction
  - staging: git+https://git.example.com/pricing/churn-model.git@v2.0
    mleap_conn_id: mleap_churn
```

**Approval:** a model that already serves exactly its archived bundle asks no one (the run's log says so
with a warning: it was approved when first deployed). A changed version waits for a person's approval in
Browse → Required Actions like any deployment (the run was started by the scheduler, so any user allowed
to respond may approve it); the run stays open until someone answers, and a rejection fails that model's
group only. Trigger with `approval_required` false to deploy changed versions without asking (a warning).

Two deployments of one model never run at once, here or in `model_deployment`: each holds the model's
lock in the registry from fetch to clean-up.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG

# From their defining module rather than `airflow.sdk`'s lazy names, so that the DAG processor imports the
# task-flow machinery once, in its manager (`[dag_processor] parsing_pre_import_modules` imports the
# `airflow.*` modules a DAG file names), and not again in every parse process: 30 ms a parse.
from airflow.sdk.definitions.decorators import task, task_group

from model_governance.dag_steps import DEFAULT_ARGS, deployment_steps, mleap_deploy
from model_governance.params import approval_params

with DAG(
    dag_id="model_redeploy",
    description=(
        "Redeploy the models of a manifest; "
        "models already serving their archived bundle are verified and left alone"
    ),
    schedule=os.environ.get("MODEL_GOVERNANCE_REDEPLOY_SCHEDULE", "0 3 * * *"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["model-governance"],
    render_template_as_native_obj=True,
    default_args=DEFAULT_ARGS,
    params=approval_params(),
) as dag:

    @task
    def read_manifest() -> list[dict[str, str]]:
        """The manifest's models, each completed with the defaults: one mapped group per entry."""
        from model_governance.redeploy import load_manifest

        return load_manifest()

    @task_group
    def redeploy(
        staging: str, registry_root: str, mleap_conn_id: str, webhdfs_conn_id: str, atlas_conn_id: str
    ) -> None:
        deployment_steps(
            staging=staging,
            registry_root=registry_root,
            webhdfs_conn_id=webhdfs_conn_id,
            atlas_conn_id=atlas_conn_id,
            approval_required="{{ params.approval_required }}",
            serving_conn_id=mleap_conn_id,
            skip_unchanged=True,  # already serving this exact bundle: approved when first deployed
            skip_if_serving=True,  # ... and verified at the server: nothing else to do, the group is skipped
            deploy=mleap_deploy(
                mleap_conn_id=mleap_conn_id,
                webhdfs_conn_id=webhdfs_conn_id,
                atlas_conn_id=atlas_conn_id,
                skip_current=True,
            ),
        )

    redeploy.expand_kwargs(read_manifest())
