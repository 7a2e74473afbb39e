"""The approval gate on a real Airflow 3.3 (api-server, scheduler, dag-processor, triggerer on PostgreSQL),
with two SimpleAuthManager users: alice triggers, bob approves or rejects, through the REST API and once
in the browser. One Airflow and one set of stand-ins serve the whole module; each test deploys its own model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.airflow_processes import AirflowStack
from tests.helpers import EXAMPLE_STAGING, atlas_search, predict, stage_variant

pytestmark = pytest.mark.airflow_processes

DAG = "model_deployment"
TASK = "approve_deployment"


@pytest.fixture(scope="module")
def world(postgres, tmp_path_factory):
    """(devstack, airflow): the stand-ins and one Airflow for the module, alice and bob as plain users."""
    from model_governance_devstack.launcher import start_devstack

    home = tmp_path_factory.mktemp("approval")
    with start_devstack(home / "devstack", atlas_port=0, mleap_port=0, webhdfs_port=0) as devstack:
        env = devstack.env()
        with AirflowStack(home / "airflow", env, postgres, users={"alice": "user", "bob": "user"}, triggerer=True) as airflow:
            airflow.wait_dag(DAG)
            yield devstack, airflow


def trigger(airflow, staged: Path, user: str = "alice") -> str:
    answer = airflow.api("POST", f"/dags/{DAG}/dagRuns", user=user, json={"logical_date": None, "conf": {"staging": str(staged)}})
    assert answer.status_code == 200, answer.text
    return answer.json()["dag_run_id"]


def hitl(airflow, run_id: str, user: str = "bob"):
    return airflow.api("GET", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/{TASK}/-1/hitlDetails", user=user)


def answer(airflow, run_id: str, user: str, option: str, comment: str):
    """What the approver's "Approve"/"Reject" button sends."""
    return airflow.api("PATCH", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/{TASK}/-1/hitlDetails", user=user,
                       json={"chosen_options": [option], "params_input": {"comment": comment}})


def wait_for_request(airflow, run_id: str, timeout: float = 300) -> dict:
    """The open request, once the approval task waits for an answer (and the scheduler has seen it park)."""
    return airflow.wait_for_answerable(DAG, run_id, TASK, timeout=timeout)


def event_lines(devstack, slug: str) -> list[bytes]:
    from hdfs import InsecureClient

    client = InsecureClient(f"http://127.0.0.1:{devstack.webhdfs.port}", user="hdfs")
    with client.read(f"/model-registry/.events/{slug}.jsonl") as reader:
        return reader.read().splitlines()


def events(devstack, slug: str) -> list[dict]:
    return [json.loads(line) for line in event_lines(devstack, slug)]


def model_entities(devstack, name: str) -> list[dict]:
    criteria = {"attributeName": "model.name", "operator": "=", "attributeValue": name}
    attributes = ["approvedBy", "approvedAt", "approvalComment", "requestedBy", "dagRunId", "deployStatus"]
    return atlas_search(devstack.connections["atlas_default"], excludeDeletedEntities=True, entityFilters=criteria, attributes=attributes)


def test_the_requester_cannot_approve_and_another_user_can(world, tmp_path):
    devstack, airflow = world
    staged = stage_variant(tmp_path, "approval model", "1.0", microservice_endpoint="approval")
    run_id = trigger(airflow, staged, user="alice")
    request = wait_for_request(airflow, run_id)

    # what the approver is shown: model, version, owner, target, the bundle's sha256, the archived version
    import hashlib

    sha256 = hashlib.sha256((staged / "executable/airbnb.model.lr.zip").read_bytes()).hexdigest()
    mleap = devstack.connections["mleap_default"]
    assert request["subject"] == f"Approve deployment: approval model v1.0 to 127.0.0.1:{mleap['port']}"
    body = request["body"]
    for shown in ("| Model | approval model |", "| Version | 1.0 |", "| Owner | Greg Keys (pricing) |", f"`127.0.0.1:{mleap['port']}`",
                  f"`{sha256}`", "hdfs://127.0.0.1:8020/model-registry/approval-model/1.0", "/webhdfs/v1/model-registry/approval-model/1.0/MANIFEST.json?op=OPEN",
                  "| Requested by | alice |", "alice triggered this run and cannot approve it"):
        assert shown in body, (shown, body)
    assert request["options"] == ["Approve", "Reject"] and request["assigned_users"] == []

    # alice's own approval: Airflow stores it, the step refuses it, and the request is open again
    assert answer(airflow, run_id, "alice", "Approve", "looks good to me").status_code == 200
    refused = "REFUSED ['Approve'] by alice: alice triggered this run and cannot approve it (separation of duties)"
    airflow.wait_until(lambda: True if refused in airflow.task_log(DAG, run_id, TASK) else None, 300, "the self-approval was not refused")
    wait_for_request(airflow, run_id)  # open again, for another approver
    states = airflow.task_states(DAG, run_id)
    assert states[TASK] == "awaiting_input" and states["deploy_model"] in (None, "none", "no_status")
    assert airflow.api("GET", f"/dags/{DAG}/dagRuns/{run_id}").json()["state"] == "running"
    assert model_entities(devstack, "approval model") == []

    # bob approves: the model serves, and Atlas records who asked, who approved, when and why
    assert answer(airflow, run_id, "bob", "Approve", "validation report VR-7 reviewed").status_code == 200
    run = airflow.wait_run(DAG, run_id)
    assert run["state"] == "success", airflow.task_states(DAG, run_id)
    assert predict(devstack) == pytest.approx(232.62463916840318)
    [entity] = model_entities(devstack, "approval model")
    attrs = entity["attributes"]
    assert (attrs["approvedBy"], attrs["approvalComment"], attrs["requestedBy"]) == ("bob", "validation report VR-7 reviewed", "alice")
    assert attrs["approvedAt"] > 0 and attrs["dagRunId"] == run_id
    detail = hitl(airflow, run_id).json()
    assert detail["responded_by_user"]["name"] == "bob" and detail["chosen_options"] == ["Approve"]
    approved = [e for e in events(devstack, "approval-model") if e["event"] == "approved"]
    assert len(approved) == 1
    assert (approved[0]["by"], approved[0]["comment"], approved[0]["requested_by"]) == ("bob", "validation report VR-7 reviewed", "alice")


def test_a_rejection_fails_the_run_with_the_reason_and_deploys_nothing(world, tmp_path):
    devstack, airflow = world
    staged = stage_variant(tmp_path, "rejected model", "2.0", microservice_endpoint="rejected")
    run_id = trigger(airflow, staged, user="alice")
    wait_for_request(airflow, run_id)

    assert answer(airflow, run_id, "bob", "Reject", "no validation report for 2.0").status_code == 200
    run = airflow.wait_run(DAG, run_id)
    assert run["state"] == "failed"
    states = airflow.task_states(DAG, run_id)
    assert states[TASK] == "failed" and states["deploy_model"] == "upstream_failed" and states["register_in_atlas"] == "upstream_failed"
    assert states["clean_up"] == "success"  # the lock is released
    assert "Rejected by bob: no validation report for 2.0 (rejected model v2.0 is not deployed)" in airflow.task_log(DAG, run_id, TASK)

    # nothing deployed: no bundle delivered to the server, no served marker, no Atlas entity
    models_dir = Path(devstack.connections["mleap_default"]["extra"]["models_dir"])
    assert not (models_dir / "rejected-model").exists()
    from hdfs import InsecureClient

    client = InsecureClient(f"http://127.0.0.1:{devstack.webhdfs.port}", user="hdfs")
    assert client.status("/model-registry/.served/rejected-model", strict=False) is None
    assert [name for name in client.list("/model-registry/.locks") if "rejected-model" in name] == []
    assert model_entities(devstack, "rejected model") == []
    # the version stays archived, and the model's event log holds the rejection
    assert client.status("/model-registry/rejected-model/2.0/MANIFEST.json", strict=False) is not None
    [rejected] = [e for e in events(devstack, "rejected-model") if e["event"] == "rejected"]
    assert (rejected["by"], rejected["comment"], rejected["requested_by"], rejected["version"]) == ("bob", "no validation report for 2.0", "alice", "2.0")
    from model_governance import eventlog

    assert eventlog.verify(event_lines(devstack, "rejected-model")).intact


def test_alice_triggers_from_the_form_and_bob_approves_in_the_browser(world, tmp_path):
    """Headless Chromium: alice signs in and triggers from the DAG's form (every param shown with its title,
    description and default); bob signs in, finds the request in Browse → Required Actions, reads it, and
    approves with a comment; the run succeeds and Atlas records bob."""
    from playwright.sync_api import sync_playwright

    from tests.helpers import load_dag

    devstack, airflow = world
    staged = stage_variant(tmp_path, "browser model", "1.0", microservice_endpoint="browser")
    params = load_dag(DAG).params
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        try:
            alice = sign_in(browser, airflow, "alice")
            alice.goto(f"{airflow.url}/dags/{DAG}")
            alice.get_by_role("button", name="Trigger").first.click()
            dialog = alice.get_by_role("dialog")
            dialog.get_by_text("Run Parameters").wait_for()
            shown = dialog.inner_text()
            for name in params:
                param = params.get_param(name)
                assert param.schema["title"] in shown and param.description in shown, name
            assert dialog.locator("#element_staging").input_value() == "rental-pricing-prediction"
            assert dialog.locator("#element_registry_root").input_value() == "hdfs:///model-registry"
            dialog.locator("#element_staging").fill(str(staged))
            dialog.get_by_role("button", name="Trigger").click()
            alice.get_by_text("Dag Run Triggered").first.wait_for(state="visible", timeout=30_000)
            [run] = [r for r in airflow.api("GET", f"/dags/{DAG}/dagRuns").json()["dag_runs"] if r["conf"].get("staging") == str(staged)]
            run_id = run["dag_run_id"]
            assert run["triggering_user_name"] == "alice" and run["conf"].get("approval_required", True) is True
            wait_for_request(airflow, run_id)

            bob = sign_in(browser, airflow, "bob")
            bob.goto(f"{airflow.url}/required_actions?response_received=false")
            bob.get_by_role("link", name="Approve deployment: browser model v1.0").click()
            bob.get_by_text("Bundle sha256").wait_for(timeout=30_000)
            page = bob.inner_text("body")
            for shown in ("Awaiting Input", "browser model", "Greg Keys (pricing)", "Requested by", "alice triggered this run and cannot approve it"):
                assert shown in page, shown
            bob.locator("#element_comment").fill("reviewed in the browser")
            bob.get_by_role("button", name="Approve", exact=True).click()
            bob.get_by_text(f"{TASK} response successful").wait_for(timeout=30_000)
        finally:
            browser.close()
    run = airflow.wait_run(DAG, run_id)
    assert run["state"] == "success", airflow.task_states(DAG, run_id)
    [entity] = model_entities(devstack, "browser model")
    attrs = entity["attributes"]
    assert (attrs["approvedBy"], attrs["approvalComment"], attrs["requestedBy"]) == ("bob", "reviewed in the browser", "alice")


def sign_in(browser, airflow, user: str):
    """A page of a fresh browser context, signed in through the simple auth manager's login form."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(120_000)  # Airflow's UI loads slowly on a busy 2-core machine
    page = context.new_page()
    page.goto(f"{airflow.url}/")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(airflow.passwords[user])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{airflow.url}/", timeout=60_000)
    return page
