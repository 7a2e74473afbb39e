"""The deployment steps as every DAG wires them, written once: fetch → publish → approve → deploy →
register, and clean_up after all of them, whatever happened. Also the `default_args` the DAGs share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from model_governance.connections import ATLAS_CONN_ID, MLEAP_CONN_ID, WEBHDFS_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.definitions.xcom_arg import XComArg

# a service that is down for a minute does not fail the deployment; bad input fails at once anyway
DEFAULT_ARGS: dict[str, Any] = {
    "retries": 2,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": 2.0,
}

# Builds the deploy step on the published document; returns its first and its last task.
DeployBuilder = Callable[["XComArg"], "tuple[BaseOperator, BaseOperator]"]


def mleap_deploy(
    *,
    mleap_conn_id: Any = MLEAP_CONN_ID,
    webhdfs_conn_id: Any = WEBHDFS_CONN_ID,
    atlas_conn_id: Any = ATLAS_CONN_ID,
    skip_current: Any = True,
) -> DeployBuilder:
    """The deploy step of the `microservice` DAGs: one `MLeapDeployOperator`, task id `deploy_model`.

    :param mleap_conn_id: the MLeap serving connection.
    :param webhdfs_conn_id: the WebHDFS connection, when the registry is on HDFS.
    :param atlas_conn_id: where the deployment serving now is found, for a rollback.
    :param skip_current: leave alone (verified) a model that already serves this exact bundle: no upload,
        no re-load (every DAG; False re-loads it).
    """

    def build(document: XComArg) -> tuple[BaseOperator, BaseOperator]:
        from model_governance.operators.mleap import MLeapDeployOperator

        deploy = MLeapDeployOperator(
            task_id="deploy_model",
            document=document,
            mleap_conn_id=mleap_conn_id,
            webhdfs_conn_id=webhdfs_conn_id,
            atlas_conn_id=atlas_conn_id,
            skip_current=skip_current,
        )
        return deploy, deploy

    return build


@dataclass(frozen=True)
class DeploymentSteps:
    fetch: BaseOperator
    publish: BaseOperator
    approve: BaseOperator
    deploy: BaseOperator  # the deploy step's last task
    register: BaseOperator
    clean_up: BaseOperator


def deployment_steps(
    *,
    staging: Any,
    registry_root: Any,
    deploy: DeployBuilder,
    host_type: Any = "microservice",
    force: Any = False,
    webhdfs_conn_id: Any = WEBHDFS_CONN_ID,
    atlas_conn_id: Any = ATLAS_CONN_ID,
    approval_required: Any = True,
    serving_conn_id: Any = MLEAP_CONN_ID,
    skip_unchanged: Any = False,
    skip_if_serving: Any = False,
) -> DeploymentSteps:
    """Add the steps to the DAG or task group being defined; every argument may be a template or an XComArg.

    :param staging: where the owner staged the model.
    :param registry_root: the registry, `hdfs:///<path>` or a local folder.
    :param deploy: builds the deploy step (task id `deploy_model` first) on the published document.
    :param host_type: `microservice` or `spark`: what the fetch step checks the serialized model for.
    :param force: replace a registry version that holds other content.
    :param webhdfs_conn_id: the WebHDFS connection.
    :param atlas_conn_id: the Atlas connection.
    :param approval_required: whether a person approves the deployment before it serves.
    :param serving_conn_id: the deploy step's MLeap serving or Spark connection (the request's target).
    :param skip_unchanged: ask no approval for a version that already serves this exact bundle.
    :param skip_if_serving: end the run skipped, before any lock or upload, when the target already serves
        this exact version, verified at the server (`microservice` only).
    """
    from model_governance.assets import DEPLOYMENTS_ALIAS
    from model_governance.operators.approval import DeploymentApprovalOperator
    from model_governance.operators.atlas import AtlasCreateModelEntityOperator
    from model_governance.operators.fetch import FetchStagingOperator
    from model_governance.operators.registry import CleanUpRunOperator, PublishToRegistryOperator

    fetch = FetchStagingOperator(
        task_id="fetch_staging",
        staging=staging,
        registry_root=registry_root,
        webhdfs_conn_id=webhdfs_conn_id,
        host_type=host_type,
        force=force,
        skip_unchanged=skip_if_serving,
        serving_conn_id=serving_conn_id,
        atlas_conn_id=atlas_conn_id,
    )
    publish = PublishToRegistryOperator(
        task_id="push_to_registry",
        document=fetch.output,
        registry_root=registry_root,
        webhdfs_conn_id=webhdfs_conn_id,
        force=force,
    )
    # Between archiving and serving: what a person approves is the archived bundle the deploy step serves.
    approve = DeploymentApprovalOperator(
        task_id="approve_deployment",
        document=publish.output,
        required=approval_required,
        host_type=host_type,
        serving_conn_id=serving_conn_id,
        webhdfs_conn_id=webhdfs_conn_id,
        atlas_conn_id=atlas_conn_id,
        skip_unchanged=skip_unchanged,
    )
    first, last = deploy(approve.output)
    register = AtlasCreateModelEntityOperator(
        task_id="register_in_atlas",
        document=last.output,
        atlas_conn_id=atlas_conn_id,
        registry_root=registry_root,  # the `deployed` event, written while the run holds the model's lock
        webhdfs_conn_id=webhdfs_conn_id,
        outlets=[DEPLOYMENTS_ALIAS],  # the deployment's Asset events (model_governance.assets)
    )
    # Drops the pending upload and releases the model's deployment lock after every step, whichever failed.
    # Airflow's teardown rule (ALL_DONE_SETUP_SUCCESS): it runs once fetch_staging (its setup) has taken the
    # lock; a fetch that fails releases what it took itself, and a fetch that finds the version serving
    # takes nothing and is skipped, which skips this too. As a teardown it does not turn a failed run into a
    # success, and clearing a step re-runs fetch_staging with it, which uploads nothing when archived.
    clean_up = CleanUpRunOperator(
        task_id="clean_up", registry_root=registry_root, webhdfs_conn_id=webhdfs_conn_id
    )
    clean_up.as_teardown(setups=fetch)
    [publish, approve, first, last, register] >> clean_up
    return DeploymentSteps(fetch, publish, approve, last, register, clean_up)
