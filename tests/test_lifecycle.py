"""Rollback and retire (issue 15 items 2 and 3) through the real DAGs with `dag.test()`: what predicts at
the endpoint, what Atlas records, that the registry is untouched, and the model's event log. The main
paths run twice (`real_twin`): on the stand-ins (legacy MLeap API) and on the real Atlas, HDFS and MLeap
runtime host (spring-boot API)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
import requests
from airflow.sdk.exceptions import ParamValidationError

from tests.helpers import EXAMPLE_STAGING, NO_APPROVAL, atlas_call, atlas_search, load_dag, mleap_api, predict, rebundle, stage_variant

BUNDLE = EXAMPLE_STAGING / "executable/airbnb.model.lr.zip"
SHIFT = 1000.0  # version 1.0's intercept is moved by this much: what predicts tells the versions apart
MODEL = "/model-registry/rental-pricing-prediction"
REASON = "1.1 overprices studios (INC-42)"


@pytest.fixture(scope="module")
def dags():
    return {dag_id: load_dag(dag_id) for dag_id in ("model_deployment", "model_rollback", "model_retire")}


def run(dag, **kwargs):
    if "approval_required" in dag.params:  # a deployment DAG: no one to approve under dag.test()
        kwargs["run_conf"] = {**NO_APPROVAL, **kwargs.get("run_conf", {})}
    dr = dag.test(**kwargs)
    return dr, {ti.task_id: ti.state for ti in dr.get_task_instances()}


def hdfs(devstack):
    from hdfs import InsecureClient

    conn = devstack.connections["webhdfs_default"]
    return InsecureClient(f"http://{conn['host']}:{conn['port']}", user="hdfs")


def target(devstack) -> str:
    host_port = f"127.0.0.1:{devstack.connections['mleap_default']['port']}"
    return host_port if mleap_api(devstack) == "legacy" else f"{host_port}/models/target"


def seed_name(devstack, version: str) -> str:
    return f"rental-pricing-prediction-v{version}@127.0.0.1:{devstack.connections['mleap_default']['port']}"


def entities(devstack) -> dict[str, dict]:
    """Every model deployment Atlas holds: qualifiedName -> attributes (read by guid)."""
    conn = devstack.connections["atlas_default"]
    found = {}
    for header in atlas_search(conn, excludeDeletedEntities=True):
        entity = atlas_call(conn, "GET", f"/entity/guid/{header['guid']}").json()["entity"]
        found[entity["attributes"]["qualifiedName"]] = entity["attributes"]
    return found


def snapshot(devstack, version: str) -> dict[str, str]:
    """Every file of an archived version: path -> sha256 of its bytes."""
    client = hdfs(devstack)
    files = {}
    for root, _, names in client.walk(f"{MODEL}/{version}"):
        for name in names:
            with client.read(f"{root}/{name}") as reader:
                files[f"{root}/{name}".removeprefix(f"{MODEL}/{version}/")] = hashlib.sha256(reader.read()).hexdigest()
    return files


def events(devstack) -> list[dict]:
    client = hdfs(devstack)
    path = "/model-registry/.events/rental-pricing-prediction.jsonl"
    if client.status(path, strict=False) is None:
        return []
    with client.read(path) as reader:
        return [json.loads(line) for line in reader.read().splitlines()]


def locks(devstack) -> list[str]:
    return hdfs(devstack).list("/model-registry/.locks")


def task_errors(capsys) -> str:
    """The lines of the task errors printed since the last call (`dag.test()` logs them to stdout)."""
    out = capsys.readouterr().out
    return "\n".join(line for line in out.splitlines() if "Error:" in line or "Exception:" in line)


@pytest.fixture
def two_versions(dags, devstack, airflow_db, tmp_path):
    """1.0 (its own intercept) deployed, then 1.1 (the example) replacing it; what each predicts."""
    staged = stage_variant(tmp_path / "staging", version="1.0")
    rebundle(BUNDLE, staged / "executable/airbnb.model.lr.zip", intercept_shift=SHIFT)
    first, states = run(dags["model_deployment"], run_conf={"staging": str(staged)})
    assert first.state == "success", states
    v10 = predict(devstack)
    second, states = run(dags["model_deployment"], run_conf={"staging": str(EXAMPLE_STAGING)})
    assert second.state == "success", states
    v11 = predict(devstack)
    assert v11 == pytest.approx(v10 - SHIFT)
    return v10, v11


@pytest.mark.real_twin
def test_rollback_serves_the_previous_version_and_records_it(dags, devstack, two_versions):
    v10, v11 = two_versions
    archived = {version: snapshot(devstack, version) for version in ("1.0", "1.1")}
    before = datetime.now(UTC)
    dr, states = run(dags["model_rollback"], run_conf={"target": target(devstack), "reason": REASON})
    assert dr.state == "success", states
    assert states == dict.fromkeys(["plan_rollback", "deploy_model", "register_in_atlas", "record_event", "clean_up"], "success")

    # the endpoint predicts with 1.0 again
    assert predict(devstack) == pytest.approx(v10)

    # Atlas: 1.0's first serving period kept, 1.1 rolled back, a new deployment of 1.0 marked as a rollback
    found = entities(devstack)
    again = f"{seed_name(devstack, '1.0')}#{dr.run_id}"
    assert set(found) == {seed_name(devstack, "1.0"), seed_name(devstack, "1.1"), again}
    assert found[seed_name(devstack, "1.0")]["deployStatus"] == "superseded"
    assert found[seed_name(devstack, "1.0")]["supersededBy"] == seed_name(devstack, "1.1")
    replaced = found[seed_name(devstack, "1.1")]
    requester = replaced["endedBy"]
    assert requester == "dag_test"  # who asked: the triggering user (`dag.test()` names its runs' user so)
    assert {k: replaced.get(k) for k in ("deployStatus", "endReason", "supersededBy")} == {
        "deployStatus": "rolled_back", "endReason": REASON, "supersededBy": again}
    assert replaced["endedAt"] >= int(before.timestamp()) * 1000 - 1000
    new = found[again]
    assert {k: new.get(k) for k in ("deployStatus", "rollbackOf", "deployReason", "requestedBy", "modelVersion", "deployTarget", "dagId", "dagRunId")} == {
        "deployStatus": "deployed", "rollbackOf": seed_name(devstack, "1.1"), "deployReason": REASON,
        "requestedBy": requester, "modelVersion": "1.0", "deployTarget": target(devstack),
        "dagId": "model_rollback", "dagRunId": dr.run_id}
    assert new["serializedObjectSha256"] == found[seed_name(devstack, "1.0")]["serializedObjectSha256"]
    assert new["artifactChecksums"] == found[seed_name(devstack, "1.0")]["artifactChecksums"]

    # the registry: both versions exactly as archived, no pending upload, no lock left
    assert {version: snapshot(devstack, version) for version in ("1.0", "1.1")} == archived
    assert hdfs(devstack).list("/model-registry/.pending") == [] and locks(devstack) == []

    # the event log: the rollback, chained to the line before it
    log = events(devstack)
    assert log[-1]["event"] == "rolled_back" and log[-1]["version"] == "1.0"
    assert {k: log[-1][k] for k in ("deployment", "rollback_of", "target", "by", "reason", "run_key")} == {
        "deployment": again, "rollback_of": seed_name(devstack, "1.1"), "target": target(devstack),
        "by": requester, "reason": REASON, "run_key": dr.run_id}
    from model_governance import eventlog

    client = hdfs(devstack)
    with client.read("/model-registry/.events/rental-pricing-prediction.jsonl") as reader:
        assert eventlog.verify(reader.read().splitlines()).intact

    # a rerun of the same run serves and records nothing new: one entity for it, one event
    rerun, states = run(dags["model_rollback"], logical_date=dr.logical_date, run_after=dr.run_after,
                        run_conf={"target": target(devstack), "reason": REASON})
    assert rerun.run_id == dr.run_id and rerun.state == "success", states
    assert predict(devstack) == pytest.approx(v10)
    assert set(entities(devstack)) == set(found) and entities(devstack)[again]["deployStatus"] == "deployed"
    assert [e["event"] for e in events(devstack)].count("rolled_back") == 1

    # rolling back the rollback serves 1.1 again, as a new deployment of its own
    back, states = run(dags["model_rollback"], run_conf={"target": target(devstack), "reason": "the studios fix was wrong"})
    assert back.state == "success", states
    assert predict(devstack) == pytest.approx(v11)
    found = entities(devstack)
    assert found[again]["deployStatus"] == "rolled_back"
    assert found[f"{seed_name(devstack, '1.1')}#{back.run_id}"]["rollbackOf"] == again
    assert [e["deployStatus"] for e in found.values()].count("deployed") == 1


@pytest.mark.real_twin
def test_retire_unloads_and_records_then_refuses_a_second_time(dags, devstack, two_versions):
    archived = snapshot(devstack, "1.1")
    conf = {"target": target(devstack), "reason": "pricing moves to the new engine"}
    dr, states = run(dags["model_retire"], run_conf=conf)
    assert dr.state == "success", states
    assert states == dict.fromkeys(["plan_retire", "unload_model", "record_event", "mark_retired", "clean_up"], "success")

    # nothing predicts at the endpoint any more
    assert predict(devstack) is None
    # Atlas: retired, with when, who and why; the earlier deployment untouched
    found = entities(devstack)
    retired = found[seed_name(devstack, "1.1")]
    assert retired["deployStatus"] == "retired" and retired["endReason"] == conf["reason"]
    assert retired["endedBy"] == "dag_test" and retired["endedAt"] > 0
    assert found[seed_name(devstack, "1.0")]["deployStatus"] == "superseded"
    assert "deployed" not in {e["deployStatus"] for e in found.values()}
    # the archived version stays; the lock is released
    assert snapshot(devstack, "1.1") == archived and locks(devstack) == []
    log = events(devstack)
    assert log[-1]["event"] == "retired" and log[-1]["deployment"] == seed_name(devstack, "1.1")
    assert log[-1]["reason"] == conf["reason"] and log[-1]["by"] == retired["endedBy"]

    # a rerun of the same run: success, nothing more changed
    rerun, states = run(dags["model_retire"], logical_date=dr.logical_date, run_after=dr.run_after, run_conf=conf)
    assert rerun.run_id == dr.run_id and rerun.state == "success", states
    assert entities(devstack) == found and events(devstack) == log

    # a new run: nothing serves there now, a clear refusal, nothing changed
    again, states = run(dags["model_retire"], run_conf=conf)
    assert again.state == "failed" and states["plan_retire"] == "failed"
    assert {states[t] for t in ("unload_model", "record_event", "mark_retired")} == {"upstream_failed"}
    assert entities(devstack) == found and events(devstack) == log and locks(devstack) == []

    # and a rollback from there: nothing serves, nothing to roll back
    back, states = run(dags["model_rollback"], run_conf={"target": target(devstack), "reason": "undo"})
    assert back.state == "failed" and states["plan_rollback"] == "failed"
    assert predict(devstack) is None and entities(devstack) == found


@pytest.mark.real_twin("atlas")
def test_rollback_refuses_bad_inputs_and_changes_nothing(dags, devstack, two_versions, capsys, monkeypatch):
    v10, v11 = two_versions
    before = entities(devstack)
    rollback = dags["model_rollback"]

    def refused(conf, message):
        capsys.readouterr()
        # every param given: dag.test() keeps the conf of an earlier call as the DAG's params
        dr, states = run(rollback, run_conf={"mleap_conn_id": "mleap_default", **conf})
        assert dr.state == "failed" and states["plan_rollback"] == "failed", states
        assert {states[t] for t in ("deploy_model", "register_in_atlas", "record_event")} == {"upstream_failed"}
        assert message in task_errors(capsys), task_errors(capsys)
        assert predict(devstack) == pytest.approx(v11) and entities(devstack) == before and locks(devstack) == []

    # an unknown target
    refused({"target": "127.0.0.1:1", "reason": REASON}, "target '127.0.0.1:1': Atlas records nothing serving there")
    # a connection that does not reach the target's host
    monkeypatch.setenv("AIRFLOW_CONN_MLEAP_OTHER", json.dumps({"conn_type": "mleap", "host": "127.0.0.1", "port": 1}))
    refused({"target": target(devstack), "reason": REASON, "mleap_conn_id": "mleap_other"},
            "is not served by connection 'mleap_other' (127.0.0.1:1)")
    # a reason of blanks passes no param check
    for reason in ("", "   "):
        with pytest.raises(ParamValidationError):
            rollback.test(run_conf={"target": target(devstack), "reason": reason})
    with pytest.raises(ParamValidationError):
        rollback.test(run_conf={"target": target(devstack)})

    # tampered archived bytes: one byte of 1.0's bundle changed in the registry (same size)
    client = hdfs(devstack)
    bundle = f"{MODEL}/1.0/executable/airbnb.model.lr.zip"
    with client.read(bundle) as reader:
        original = bytearray(reader.read())
    tampered = original.copy()
    tampered[len(tampered) // 2] ^= 0xFF
    client.write(bundle, data=bytes(tampered), overwrite=True)
    refused({"target": target(devstack), "reason": REASON}, "sha256 differs from the staged files for executable/airbnb.model.lr.zip")
    # other bytes altogether
    client.write(bundle, data=BUNDLE.read_bytes(), overwrite=True)
    refused({"target": target(devstack), "reason": REASON}, "1.0 does not match the manifest: executable/airbnb.model.lr.zip")
    # ... and the manifest edited to match them: Atlas's checksums still tell
    with client.read(f"{MODEL}/1.0/MANIFEST.json") as reader:
        manifest = json.load(reader)
    for entry in manifest["files"]:
        if entry["path"] == "executable/airbnb.model.lr.zip":
            entry["sha256"] = hashlib.sha256(BUNDLE.read_bytes()).hexdigest()
            entry["size"] = BUNDLE.stat().st_size
    client.write(f"{MODEL}/1.0/MANIFEST.json", data=json.dumps(manifest), overwrite=True)
    refused({"target": target(devstack), "reason": REASON},
            "MANIFEST.json does not match the checksums Atlas recorded for rental-pricing-prediction-v1.0")
    assert [e["event"] for e in events(devstack)].count("rolled_back") == 0


@pytest.mark.real_twin("atlas")
def test_nothing_to_roll_back_to_after_a_first_deployment(dags, devstack, airflow_db, capsys):
    dr, states = run(dags["model_deployment"], run_conf={"staging": str(EXAMPLE_STAGING)})
    assert dr.state == "success", states
    before = entities(devstack)
    capsys.readouterr()
    dr, states = run(dags["model_rollback"], run_conf={"target": target(devstack), "reason": REASON})
    assert dr.state == "failed" and states["plan_rollback"] == "failed"
    assert f"{seed_name(devstack, '1.1')} replaced no earlier deployment there: nothing to roll back to" in task_errors(capsys)
    assert entities(devstack) == before and locks(devstack) == []
    assert predict(devstack) == pytest.approx(232.62463916840318)


def test_retiring_a_spark_deployment_withdraws_its_pipeline(dags, devstack, airflow_db, tmp_path):
    """Spark batch scoring: the published pipeline is removed where batch jobs load it; the archive stays."""
    from pathlib import Path
    from urllib.parse import urlsplit

    from tests.helpers import PROJECT

    batch = load_dag("model_batch_deployment")
    conf = {"staging": str(PROJECT / "examples/staging/rental-pricing-batch"),
            "inputs": [str(PROJECT / "examples/batch-input/listings_to_score.csv")], "output": str(tmp_path / "scores")}
    dr, states = run(batch, run_conf=conf)
    assert dr.state == "success", states
    registered = dr.get_task_instance("register_in_atlas").xcom_pull(task_ids="register_in_atlas")
    qualified_name = registered["qualifiedName"]
    deployed = entities(devstack)[qualified_name]
    published = Path(urlsplit(deployed["deploy.host.detail"]).path)
    assert (published / "metadata").is_dir()
    archived_before = hdfs(devstack).list("/model-registry/rental-pricing-batch/1.0")

    dr, states = run(dags["model_retire"], run_conf={"target": deployed["deployTarget"], "reason": "batch scoring moves to v2",
                                                       "mleap_conn_id": "mleap_default", "spark_conn_id": "spark_default"})
    assert dr.state == "success", states
    assert not published.exists()  # no batch job can load it any more
    retired = entities(devstack)[qualified_name]
    assert retired["deployStatus"] == "retired" and retired["endReason"] == "batch scoring moves to v2"
    assert hdfs(devstack).list("/model-registry/rental-pricing-batch/1.0") == archived_before
    client = hdfs(devstack)
    with client.read("/model-registry/.events/rental-pricing-batch.jsonl") as reader:
        last = json.loads(reader.read().splitlines()[-1])
    assert (last["event"], last["deployment"], last["host_type"]) == ("retired", qualified_name, "spark")


@pytest.mark.real_twin("atlas")
def test_an_older_version_deployed_again_keeps_both_serving_periods(dags, devstack, two_versions, tmp_path, monkeypatch):
    """The identity rule for an ordinary deploy: 1.0 deployed again after 1.1 gets an entity of its own;
    a scheduled redeploy then finds it serving and leaves it alone."""
    v10, _ = two_versions
    staged = tmp_path / "staging" / "rental-pricing-prediction-1.0"  # what the fixture deployed first
    dr, states = run(dags["model_deployment"], run_conf={"staging": str(staged)})
    assert dr.state == "success", states
    assert predict(devstack) == pytest.approx(v10)
    again = f"{seed_name(devstack, '1.0')}#{dr.run_id}"
    found = entities(devstack)
    assert set(found) == {seed_name(devstack, "1.0"), seed_name(devstack, "1.1"), again}
    assert found[seed_name(devstack, "1.0")]["supersededBy"] == seed_name(devstack, "1.1")  # its first period
    assert found[seed_name(devstack, "1.1")]["supersededBy"] == again
    assert found[again]["deployStatus"] == "deployed" and found[again]["dagRunId"] == dr.run_id

    # a rerun of that run updates its own entity
    rerun, states = run(dags["model_deployment"], logical_date=dr.logical_date, run_after=dr.run_after, run_conf={"staging": str(staged)})
    assert rerun.run_id == dr.run_id and rerun.state == "success", states
    assert set(entities(devstack)) == set(found)

    # the scheduled redeploy finds 1.0 serving as registered (under its per-run name): left alone
    manifest = tmp_path / "redeploy.json"
    manifest.write_text(json.dumps({"models": [{"staging": str(staged)}]}))
    monkeypatch.setenv("MODEL_GOVERNANCE_REDEPLOY_MANIFEST", str(manifest))
    redeploy = load_dag("model_redeploy")
    scheduled = redeploy.test()
    assert scheduled.state == "success"
    group = {ti.task_id: ti.state for ti in scheduled.get_task_instances() if ti.task_id.startswith("redeploy.")}
    assert set(group.values()) == {"skipped"} and "redeploy.fetch_staging" in group, group  # found serving
    assert entities(devstack)[again]["dagRunId"] == dr.run_id and set(entities(devstack)) == set(found)


@pytest.mark.parametrize("reason", ["", "   ", "two\nlines", "tab\tinside", "x" * 1001, None])
def test_a_reason_must_be_one_readable_line(reason):
    from model_governance.exceptions import InvalidInputError
    from model_governance.lifecycle import check_reason

    with pytest.raises(InvalidInputError, match="reason"):
        check_reason(reason)
    assert check_reason("  1.1 overprices studios  ") == "1.1 overprices studios"
