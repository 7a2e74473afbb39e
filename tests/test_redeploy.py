"""`model_redeploy` in-process (`dag.test()`): several models in one run, one mapped task group each, and
a second run that finds every model current and leaves it alone."""

from __future__ import annotations

import json
import signal


from tests.helpers import NO_APPROVAL, atlas_search, load_dag, stage_variant


def test_several_models_in_one_run_then_all_left_alone(devstack, airflow_db, tmp_path, monkeypatch):
    from hdfs import InsecureClient

    from model_governance_devstack.mleap import MLeapStandIn

    models_dir = tmp_path / "spring-models"
    models_dir.mkdir()
    with MLeapStandIn(tmp_path / "spring", api="spring-boot", mounts={"/models": models_dir}) as spring:
        monkeypatch.setenv("AIRFLOW_CONN_MLEAP_SPRING", json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": spring.port, "extra": {"api": "spring-boot", "models_dir": str(models_dir)}}))
        models = [{"staging": str(stage_variant(tmp_path / "staging", f"model {i}", "1.0", microservice_endpoint=f"m{i}"))} for i in range(3)]
        manifest = tmp_path / "redeploy.yaml"
        manifest.write_text(json.dumps({"defaults": {"mleap_conn_id": "mleap_spring"}, "models": models}))
        monkeypatch.setenv("MODEL_GOVERNANCE_REDEPLOY_MANIFEST", str(manifest))
        dag = load_dag("model_redeploy")

        first = dag.test(run_conf=NO_APPROVAL)  # three new versions: no second person here to approve them
        assert first.state == "success", {(ti.task_id, ti.map_index): ti.state for ti in first.get_task_instances()}
        assert sorted(spring.models) == ["m0", "m1", "m2"]
        hdfs = InsecureClient(f"http://127.0.0.1:{devstack.webhdfs.port}", user="hdfs")
        assert sorted(hdfs.list("/model-registry")) == [".events", ".locks", ".pending", ".served", "model-0", "model-1", "model-2"]
        assert hdfs.list("/model-registry/.pending") == [] and hdfs.list("/model-registry/.locks") == []

        # model 2 lost by its server since (a restart): Atlas still records it serving
        import requests

        lost = requests.delete(f"http://127.0.0.1:{spring.port}/models/m2", headers={"Content-Type": "application/json"}, timeout=10)
        assert lost.status_code == 200, lost.text
        # approval required (the default), and not asked: every model was approved when first deployed.
        # Were one asked, dag.test() would wait for an answer forever: the alarm turns that into a failure.
        previous = signal.signal(signal.SIGALRM, no_answer)
        signal.alarm(1200)
        try:
            second = dag.test()
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        assert second.state == "success"
        states = {(ti.task_id.removeprefix("redeploy."), ti.map_index): ti.state for ti in second.get_task_instances()}
        # models 0 and 1 serve exactly their bundles, verified at the server by the fetch step: their groups
        # are skipped whole (no lock, upload, approval, load or registration)
        for i in (0, 1):
            assert {task: state for (task, index), state in states.items() if index == i} == {
                "fetch_staging": "skipped", "push_to_registry": "skipped", "approve_deployment": "skipped",
                "deploy_model": "skipped", "register_in_atlas": "skipped", "clean_up": "skipped"}, states
        # model 2 no longer serves: deployed again from its archive, approved when first deployed
        assert states[("deploy_model", 2)] == "success" and sorted(spring.models) == ["m0", "m1", "m2"]
        approval = second.get_task_instance("redeploy.approve_deployment", map_index=2).xcom_pull(
            task_ids="redeploy.approve_deployment", map_indexes=2)["approval"]
        assert not approval["required"] and approval["comment"].startswith("unchanged: ")
        redeployed = second.get_task_instance("redeploy.deploy_model", map_index=2).xcom_pull(task_ids="redeploy.deploy_model", map_indexes=2)
        assert redeployed["registry"]["uploaded_bytes"] == 0 and not redeployed["deploy"].get("unchanged")
        assert hdfs.list("/model-registry/.locks") == []

    found = atlas_search(devstack.connections["atlas_default"], attributes=["dagRunId"], limit=10)
    runs = {e["attributes"]["qualifiedName"]: e["attributes"]["dagRunId"] for e in found}
    assert len(found) == 3 and sorted(runs.values()) == sorted([first.run_id, first.run_id, second.run_id]), runs


def no_answer(*_):
    raise TimeoutError("the redeploy of unchanged models waited for an approval")
