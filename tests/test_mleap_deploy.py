"""Step 2b over HTTP, both MLeap serving APIs: a good deploy, an invalid bundle refused before deploying,
a load failure and a failed sample scoring each rolled back with the old model still serving, and
transient server errors retried. The served model is told apart by what it predicts."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests

from tests import helpers
from tests.real_services import unload_named
from tests.helpers import NO_APPROVAL, EXAMPLE_STAGING, atlas_search, load_dag, rebundle, stage_variant

SAMPLE = json.loads((EXAMPLE_STAGING / "samples/leapframe.json").read_text())
BUNDLE = EXAMPLE_STAGING / "executable/airbnb.model.lr.zip"
TARGET = "target"  # the example's endpoint name: the model's name on spring-boot serving
SHIFT = 1000.0  # version 1.0's intercept is moved by this much: its predictions differ from 1.1's


@pytest.fixture(scope="module")
def dag():
    return load_dag("model_deployment")


@pytest.fixture(params=["legacy", "spring-boot", "spring-boot-real"])
def serving(request, devstack, tmp_path, monkeypatch):
    """(api, conn_id, base URL, server) for one serving API: legacy and spring-boot on the stand-in, and
    spring-boot on the real MLeap runtime host (the session's, its models unloaded after the test)."""
    if request.param == "legacy":
        conn = devstack.connections["mleap_default"]
        yield "legacy", "mleap_default", f"http://127.0.0.1:{conn['port']}", devstack.mleap
        return
    if request.param == "spring-boot-real":
        host = request.getfixturevalue("real_mleap")
        monkeypatch.setenv("AIRFLOW_CONN_MLEAP_SPRING", json.dumps(host.connection()))
        try:
            yield "spring-boot", "mleap_spring", host.url, host
        finally:
            unload_named(host, TARGET)
        return
    from model_governance_devstack.mleap import MLeapStandIn

    models_dir = tmp_path / "spring-models"
    models_dir.mkdir()
    with MLeapStandIn(tmp_path / "spring", api="spring-boot", mounts={"/models": models_dir}) as spring:
        monkeypatch.setenv("AIRFLOW_CONN_MLEAP_SPRING", json.dumps({
            "conn_type": "http", "host": "127.0.0.1", "port": spring.port,
            "extra": {"api": "spring-boot", "models_dir": str(models_dir), "models_mount": "/models"},
        }))
        yield "spring-boot", "mleap_spring", spring.url, spring


def predict(serving) -> float | None:
    """What the endpoint predicts for the sample now; None when it serves nothing."""
    api, _, url, _ = serving
    return helpers.predict_at(helpers.scoring_url(url, api, TARGET), SAMPLE)


def candidate_gone(serving, run) -> bool:
    """The temporary name the spring-boot deploy verified the bundle under is unloaded again."""
    doc = run.get_task_instance("fetch_staging").xcom_pull(task_ids="fetch_staging")
    key = doc.get("run_key") or run.run_id
    candidate = f"{TARGET}-candidate-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    return requests.get(f"{serving[2]}/models/{candidate}", timeout=10).status_code == 404


def deploy(dag, serving, staged):
    run = dag.test(run_conf={**NO_APPROVAL, "staging": str(staged), "mleap_conn_id": serving[1]})
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}


def deployments(devstack):
    found = atlas_search(devstack.connections["atlas_default"], attributes=["modelVersion", "deployStatus"])
    return {e["attributes"]["modelVersion"]: e["attributes"]["deployStatus"] for e in found}


@pytest.fixture
def first_version(dag, serving, tmp_path, airflow_db):
    """Version 1.0 (its own intercept) deployed and serving; returns what it predicts."""
    staged = stage_variant(tmp_path / "staging", version="1.0")
    rebundle(BUNDLE, staged / "executable/airbnb.model.lr.zip", intercept_shift=SHIFT)
    run, states = deploy(dag, serving, staged)
    assert run.state == "success", states
    return predict(serving)


def test_a_good_deploy_serves_verifies_and_records_the_schemas(dag, serving, first_version, devstack):
    api, _, url, _ = serving
    before = first_version
    run, states = deploy(dag, serving, EXAMPLE_STAGING)
    assert run.state == "success", states
    assert predict(serving) == pytest.approx(before - SHIFT)  # 1.1 serves now
    facts = run.get_task_instance("deploy_model").xcom_pull(task_ids="deploy_model")["deploy"]
    assert facts["scoring_url"] == (f"{url}/transform" if api == "legacy" else f"{url}/models/target/transform")
    inputs = {f["name"] for f in facts["input_schema"]}
    assert inputs >= {f["name"] for f in SAMPLE["schema"]["fields"]} and "price_prediction" not in inputs
    assert "price_prediction" in {f["name"] for f in facts["output_schema"]}
    assert deployments(devstack) == {"1.0": "superseded", "1.1": "deployed"}
    if api == "spring-boot":  # the candidate name used for verification is gone
        assert candidate_gone(serving, run)
        sha256 = hashlib.sha256(BUNDLE.read_bytes()).hexdigest()  # the path names the content it holds
        assert requests.get(f"{url}/models/{TARGET}", timeout=10).json()["uri"].endswith(f"/1.1/{sha256[:16]}/airbnb.model.lr.zip")


def test_an_invalid_bundle_is_refused_before_anything_is_deployed(dag, serving, first_version, devstack, tmp_path):
    staged = stage_variant(tmp_path / "bad", version="1.1")
    info = json.loads(__import__("zipfile").ZipFile(BUNDLE).read("bundle.json"))
    del info["uid"]
    rebundle(BUNDLE, staged / "executable/airbnb.model.lr.zip", bundle_json=info)
    run, states = deploy(dag, serving, staged)
    assert run.state == "failed" and states["fetch_staging"] == "failed" and states["deploy_model"] == "upstream_failed"
    assert predict(serving) == pytest.approx(first_version)
    assert deployments(devstack) == {"1.0": "deployed"}


def test_a_load_failure_leaves_the_old_model_serving(dag, serving, first_version, devstack, tmp_path):
    staged = stage_variant(tmp_path / "broken", version="1.1")
    rebundle(BUNDLE, staged / "executable/airbnb.model.lr.zip", drop="root/linear_regression.node/")
    run, states = deploy(dag, serving, staged)
    assert run.state == "failed" and states["deploy_model"] == "failed" and states["register_in_atlas"] == "upstream_failed"
    assert predict(serving) == pytest.approx(first_version)
    assert deployments(devstack) == {"1.0": "deployed"}


def test_a_failed_sample_scoring_is_rolled_back(dag, serving, first_version, devstack, tmp_path):
    """1.1 loads, but its staged sample request does not score (it lacks an input field): 1.0 serves again."""
    staged = stage_variant(tmp_path / "unscorable", version="1.1")
    sample = json.loads(json.dumps(SAMPLE))
    position = [f["name"] for f in sample["schema"]["fields"]].index("bedrooms")
    del sample["schema"]["fields"][position]
    for row in sample["rows"]:
        del row[position]
    (staged / "samples/leapframe.json").write_text(json.dumps(sample))
    run, states = deploy(dag, serving, staged)
    assert run.state == "failed" and states["deploy_model"] == "failed" and states["register_in_atlas"] == "upstream_failed"
    assert predict(serving) == pytest.approx(first_version)
    assert deployments(devstack) == {"1.0": "deployed"}


@pytest.mark.parametrize("serving", ["spring-boot"], indirect=True)  # the stand-in counts the loads it receives
def test_a_bundle_serving_that_atlas_does_not_record_is_verified_and_registered_without_a_reload(dag, serving, first_version, devstack, monkeypatch):
    """An earlier run swapped 1.1 in and stopped before recording it (here: the served marker's write
    fails; a killed worker or Atlas down end the same way). The next run finds the server serving 1.1's
    exact bundle (its URI names the content), verifies it (schema, sample) and registers it without
    loading it again."""
    from airflow.sdk.exceptions import AirflowFailException
    from model_governance.registry import Registry

    server = serving[3]
    mark_served = Registry.mark_served

    def stopped(*args, **kwargs):
        raise AirflowFailException("stopped after the swap")  # no retry: the next run is the subject

    monkeypatch.setattr(Registry, "mark_served", stopped)
    run, states = deploy(dag, serving, EXAMPLE_STAGING)
    assert run.state == "failed" and states["deploy_model"] == "failed", states
    assert predict(serving) == pytest.approx(first_version - SHIFT)  # 1.1 serves, recorded nowhere
    assert deployments(devstack) == {"1.0": "deployed"}
    loads = server.loads_by_name[TARGET]
    monkeypatch.setattr(Registry, "mark_served", mark_served)
    run, states = deploy(dag, serving, EXAMPLE_STAGING)
    assert run.state == "success", states
    assert server.loads_by_name[TARGET] == loads  # verified where it serves, not loaded again
    facts = run.get_task_instance("deploy_model").xcom_pull(task_ids="deploy_model")["deploy"]
    assert not facts["unchanged"] and facts["output_schema"]  # recorded as this run's deployment
    assert deployments(devstack) == {"1.0": "superseded", "1.1": "deployed"}


@pytest.mark.parametrize("serving", ["legacy", "spring-boot"], indirect=True)  # the stand-ins' fault switch
def test_transient_server_errors_are_retried(dag, serving, first_version, devstack):
    serving[3].fail_next(2, 503)
    run, states = deploy(dag, serving, EXAMPLE_STAGING)
    assert run.state == "success", states
    assert {ti.task_id: ti.try_number for ti in run.get_task_instances()}["deploy_model"] == 1  # retried inside the hook
    assert predict(serving) == pytest.approx(first_version - SHIFT)


def test_spring_boot_delivery_webhdfs_is_refused_with_the_reason(dag, devstack, tmp_path, monkeypatch, airflow_db):
    """`delivery: webhdfs` cannot work on a real spring-boot server (its HttpRepository cannot save a download,
    combust/mleap#513): the deploy step refuses it before loading anything, and says why."""
    from model_governance_devstack.mleap import MLeapStandIn

    with MLeapStandIn(tmp_path / "spring", api="spring-boot") as spring:
        monkeypatch.setenv("AIRFLOW_CONN_MLEAP_SPRING", json.dumps(
            {"conn_type": "mleap", "host": "127.0.0.1", "port": spring.port, "extra": {"api": "spring-boot", "delivery": "webhdfs"}}))
        run, states = deploy(dag, ("spring-boot", "mleap_spring", spring.url, spring), EXAMPLE_STAGING)
        assert run.state == "failed" and states["deploy_model"] == "failed", states
        assert spring.models == {}
    assert deployments(devstack) == {}


def test_a_legacy_load_slower_than_the_request_timeout_is_sent_once_and_verified(dag, devstack, tmp_path, monkeypatch, airflow_db):
    """Legacy serving answers 503 when a load outlives its request timeout, and swaps the model in later:
    the deploy step never sends the load again, it watches the model show up and verifies it."""
    from model_governance_devstack.mleap import MLeapStandIn

    models_dir = tmp_path / "models"
    with MLeapStandIn(tmp_path / "slow", mounts={"/models": models_dir}, load_delay=1.5, request_timeout=0.3) as slow:
        monkeypatch.setenv("AIRFLOW_CONN_MLEAP_SLOW", json.dumps(
            {"conn_type": "mleap", "host": "127.0.0.1", "port": slow.port, "extra": {"api": "legacy", "models_dir": str(models_dir)}}))
        run = dag.test(run_conf={**NO_APPROVAL, "staging": str(EXAMPLE_STAGING), "mleap_conn_id": "mleap_slow"})
        assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
        assert slow.loads_requested == 1
        assert predict(("legacy", "mleap_slow", slow.url, slow)) is not None
    assert deployments(devstack) == {"1.1": "deployed"}


def test_a_legacy_load_with_an_unknown_outcome_is_rolled_back(dag, devstack, tmp_path, monkeypatch, airflow_db):
    """A 503 on `PUT /model`, and the new model never shows (its load failed later): the step gives up at its
    load timeout, unloads what it may have loaded, registers nothing, and sent the load once."""
    from model_governance_devstack.mleap import MLeapStandIn

    staged = stage_variant(tmp_path / "broken", version="1.1")
    rebundle(BUNDLE, staged / "executable/airbnb.model.lr.zip", drop="root/linear_regression.node/")
    models_dir = tmp_path / "models"
    with MLeapStandIn(tmp_path / "slow", mounts={"/models": models_dir}, load_delay=0.6, request_timeout=0.3) as slow:
        monkeypatch.setenv("AIRFLOW_CONN_MLEAP_SLOW", json.dumps(
            {"conn_type": "mleap", "host": "127.0.0.1", "port": slow.port, "extra": {"api": "legacy", "models_dir": str(models_dir)}}))
        dag.get_task("deploy_model").load_timeout = 2.0
        dag.get_task("deploy_model").retries = 0
        try:
            run = dag.test(run_conf={**NO_APPROVAL, "staging": str(staged), "mleap_conn_id": "mleap_slow"})
        finally:
            dag.get_task("deploy_model").load_timeout = 120.0
            dag.get_task("deploy_model").retries = 2
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        assert run.state == "failed" and states["deploy_model"] == "failed", states
        assert slow.loads_requested == 1  # the failed load only: nothing to roll back to, so an unload
        assert slow.model is None
    assert deployments(devstack) == {}


def test_a_bundle_not_named_zip_is_refused_with_its_name(dag, serving, first_version, devstack, tmp_path):
    """MLeap opens a bundle as a zip only when its name ends in .zip: another name is refused, named."""
    staged = stage_variant(tmp_path / "named", version="1.1")
    (staged / "executable/airbnb.model.lr.zip").rename(staged / "executable/airbnb.model.lr.bundle")
    run, states = deploy(dag, serving, staged)
    assert run.state == "failed", states
    assert predict(serving) == pytest.approx(first_version)
    assert deployments(devstack) == {"1.0": "deployed"}
