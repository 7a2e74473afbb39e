"""The Asset events a deployment adds (through `dag.test()`, read back from Airflow's database), and the
example smoke test's scoring of the endpoint an event names. The scheduler running the consumer DAGs on
these events is tested on real Airflow processes (`tests/test_deployment_events.py`)."""

from __future__ import annotations

import hashlib

import pytest
import requests

from tests.helpers import EXAMPLE_STAGING, NO_APPROVAL, load_dag, mleap_base

SHA256 = hashlib.sha256((EXAMPLE_STAGING / "executable/airbnb.model.lr.zip").read_bytes()).hexdigest()


def asset_events(run_id):
    """(asset name, asset uri, extra) of every Asset event a DAG run's tasks added."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.name, AssetModel.uri, AssetEvent.extra, AssetEvent.source_task_id)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_run_id == run_id)
        ).all()
    return sorted((name, uri, extra, task) for name, uri, extra, task in rows)


def test_a_deployment_adds_its_events_and_the_smoke_test_scores_its_endpoint(devstack, airflow_db):
    from model_governance.assets import smoke_test
    from model_governance.exceptions import InvalidInputError, ModelVerificationError

    dag = load_dag("model_deployment")
    run = dag.test(run_conf={"staging": str(EXAMPLE_STAGING), **NO_APPROVAL})
    assert run.state == "success"
    registered = run.get_task_instance("register_in_atlas").xcom_pull(task_ids="register_in_atlas")
    events = asset_events(run.run_id)
    assert [(name, uri, task) for name, uri, _, task in events] == [
        ("model-governance-deployments", "x-model-governance://deployments", "register_in_atlas"),
        ("model-governance-deployments/rental-pricing-prediction", "x-model-governance://deployments/rental-pricing-prediction", "register_in_atlas"),
    ]
    extra = events[0][2]
    assert events[1][2] == extra
    base = mleap_base(devstack.connections["mleap_default"])
    assert {k: extra[k] for k in ("model", "version", "sha256", "qualifiedName", "endpoint", "host_type", "conn_id", "atlas_guid", "run_id", "registry_root")} == {
        "model": "rental pricing prediction", "version": "1.1", "sha256": SHA256, "qualifiedName": registered["qualifiedName"],
        "endpoint": f"{base}/transform", "host_type": "microservice", "conn_id": "mleap_default", "atlas_guid": registered["guid"],
        "run_id": run.run_id, "registry_root": "hdfs:///model-registry"}

    # the smoke test reads the archived sample and scores it at the event's endpoint
    scored = smoke_test(extra, "webhdfs_default")
    assert (scored["qualifiedName"], scored["sha256"], scored["rows"]) == (registered["qualifiedName"], SHA256, 1)
    assert "price_prediction" in scored["outputs"]  # legacy serving answers every field the pipeline adds
    # an endpoint the connection does not reach is refused, naming both
    with pytest.raises(InvalidInputError, match="is not served by connection 'mleap_default'"):
        smoke_test({**extra, "endpoint": "http://elsewhere.example:65327/transform"}, "webhdfs_default")
    # a model that no longer serves fails the smoke test
    assert requests.delete(f"{base}/model", timeout=10).status_code < 300
    with pytest.raises(ModelVerificationError, match=registered["qualifiedName"]):
        smoke_test(extra, "webhdfs_default")
    # a batch deployment has no endpoint to score
    assert smoke_test({**extra, "host_type": "spark"}, "webhdfs_default")["skipped"]
