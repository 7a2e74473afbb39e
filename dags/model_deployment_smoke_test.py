"""
### Smoke-test each model deployment (an example consumer of the deployments' Asset events)

Scheduled on the Asset `model-governance-deployments` (`x-model-governance://deployments`), which the
`register_in_atlas` task of every deployment DAG updates once a deployment serves and is registered. For
each triggering event, the task reads the archived sample request (`samples/leapframe.json`) from the
registry and scores it at the scoring URL the event names (`extra["endpoint"]`), checking the answer as
the deploy step does. Spark batch deployments have no endpoint: they are listed as skipped.

To follow one model only, schedule on `model_deployments("<model.name>")` (the Asset
`model-governance-deployments/<model slug>`) from `model_governance.assets` instead.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG

# from its defining module, not `airflow.sdk`'s lazy name: the DAG processor's manager then imports the
# task-flow machinery once, instead of every parse process (see model_redeploy.py)
from airflow.sdk.definitions.decorators import task

from model_governance.assets import DEPLOYMENTS
from model_governance.connections import WEBHDFS_CONN_ID

with DAG(
    dag_id="model_deployment_smoke_test",
    description="Score each new model deployment's archived sample request at its serving endpoint",
    schedule=[DEPLOYMENTS],
    catchup=False,
    doc_md=__doc__,
    tags=["model-governance"],
) as dag:

    @task
    def score_deployments(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Every deployment that triggered this run, scored at its endpoint (several may share a run).
        Asked by the Asset: an event added through an alias is also listed under the alias."""
        from model_governance.assets import smoke_test

        events = triggering_asset_events[DEPLOYMENTS] if triggering_asset_events else []
        return [smoke_test(event.extra, WEBHDFS_CONN_ID) for event in events]

    score_deployments()
