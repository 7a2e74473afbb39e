"""What served when, and the model's event log: `history`, `trace --at` and `verify-log` on deployments the
real DAG made (`dag.test()` on the stand-ins; the Atlas questions also on real Atlas), lifecycle endings
(rolled back, retired) as the lifecycle's entities record them, and validation as data in the fetch step."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import EXAMPLE_STAGING, load_dag, stage_variant

MODEL = "rental pricing prediction"


def cli(*argv: str) -> tuple[int, str, str]:
    """`model-governance ...` as a user runs it: exit status, stdout, stderr."""
    from model_governance.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def deploy(dag, staged, **conf):
    run = dag.test(run_conf={"staging": str(staged), **conf})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    return run.get_task_instance("register_in_atlas").xcom_pull(task_ids="register_in_atlas")


def registry():
    from model_governance.registry import Registry

    return Registry.from_root("hdfs:///model-registry")


def events(reg) -> list[dict]:
    from model_governance import eventlog
    from model_governance.metadata import model_slug

    return [json.loads(line) for line in eventlog.read_lines(reg, model_slug(MODEL))]


def write_log(reg, lines: list[bytes]) -> None:
    from model_governance import eventlog
    from model_governance.metadata import model_slug

    data = b"".join(line + b"\n" for line in lines)
    reg.store.write_file(eventlog.log_path(reg, model_slug(MODEL)), io.BytesIO(data), len(data))


def iso(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- the event log, written by the DAG ------------------------------------------------------------------------
def test_the_dag_writes_archived_and_deployed_events_under_the_lock_and_verify_log_finds_every_break(
    devstack, airflow_db, tmp_path, monkeypatch
):
    from model_governance import eventlog
    from model_governance.hooks.atlas import AtlasHook
    from model_governance.metadata import model_slug

    reg = registry()
    held = []  # the lock's holder each time the register step appends
    original = eventlog.record_deployed

    def watched(registry, doc):
        holder = json.loads(registry.read_bytes(registry.lock_path(doc.model.slug)))
        held.append((holder["run_id"], doc.run_key))
        return original(registry, doc)

    monkeypatch.setattr(eventlog, "record_deployed", watched)
    dag = load_dag("model_deployment")
    first = deploy(dag, stage_variant(tmp_path, MODEL, "1.0"))
    second = deploy(dag, EXAMPLE_STAGING)
    again = deploy(dag, EXAMPLE_STAGING)  # 1.1 is archived already: no second `archived`
    assert [run_id for run_id, _ in held] == [key for _, key in held] and len(held) == 3

    log = events(reg)
    assert [(e["event"], e["version"]) for e in log] == [
        ("archived", "1.0"), ("deployed", "1.0"), ("archived", "1.1"), ("deployed", "1.1"), ("deployed", "1.1"),
    ]
    bundle = reg.published_manifest(model_slug(MODEL), "1.1")
    sha256 = next(entry.sha256 for entry in bundle if entry.path.startswith("executable/"))
    deployed = log[4]  # the rerun's: the entity (one per qualifiedName) is its deployment now
    assert deployed["qualified_name"] == second["qualifiedName"] == again["qualifiedName"]
    hook = AtlasHook()
    entity = hook.get_entity("model", again["qualifiedName"])["entity"]["attributes"]
    assert deployed["sha256"] == sha256 == entity["serializedObjectSha256"]
    assert deployed["target"] == entity["deployTarget"] and deployed["run_key"] == entity["dagRunId"]
    assert deployed["requested_by"] == entity["requestedBy"] != ""
    assert "approved_by" not in deployed  # no approval step on main yet: no approver is claimed
    assert log[2]["url"] == entity["registryUrl"] and log[2]["sha256"] == sha256
    # the entity keeps the sha256 of the line that recorded it
    lines = eventlog.read_lines(reg, model_slug(MODEL))
    assert entity["eventLogHead"] == eventlog.line_hash(lines[4])
    assert hook.get_entity("model", first["qualifiedName"])["entity"]["attributes"]["eventLogHead"] == eventlog.line_hash(lines[1])

    code, out, err = cli("verify-log", MODEL)
    assert code == 0, err
    where = reg.store.url(eventlog.log_path(reg, model_slug(MODEL)))
    assert where.endswith("/model-registry/.events/rental-pricing-prediction.jsonl")
    assert out.splitlines()[0] == f"{MODEL} ({where}): intact, 5 events"
    assert f"Atlas: the latest deployment, {again['qualifiedName']}, is line 5, the log's last deployed line" in out

    # an edited line: the next line's prev no longer matches
    edited = list(lines)
    edited[1] = edited[1].replace(b'"version": "1.0"', b'"version": "0.9"')
    write_log(reg, edited)
    code, out, _ = cli("verify-log", MODEL)
    assert code == 1 and "broken at line 3: the line before it was edited or deleted" in out

    # a deleted line in the middle
    write_log(reg, lines[:2] + lines[3:])
    code, out, _ = cli("verify-log", MODEL, "--json")
    verdict = json.loads(out)
    assert code == 1 and (verdict["intact"], verdict["brokenAt"], verdict["events"]) == (False, 3, 4)

    # the last lines deleted: the chain is whole, but Atlas's eventLogHead is no line of it
    write_log(reg, lines[:3])
    code, out, _ = cli("verify-log", MODEL)
    assert code == 1, out
    assert "broken at its end (after line 3): Atlas records " + again["qualifiedName"] in out
    assert "no line of the log has that sha256" in out
    code, out, _ = cli("verify-log", MODEL, "--no-atlas")  # the chain alone cannot see it, and says so
    assert code == 0 and "intact, 3 events" in out
    assert "Atlas not checked: --no-atlas given; lines deleted from the end of the log cannot be detected" in out

    # the last line edited: only Atlas's head shows it
    write_log(reg, lines[:4] + [lines[4].replace(b'"deployed"', b'"deployed" ', 1)])
    code, out, _ = cli("verify-log", MODEL)
    assert code == 1 and "broken at its end (after line 5)" in out

    # Atlas unreachable: checked chain, and a plain statement that Atlas was not
    write_log(reg, lines)
    monkeypatch.setenv("AIRFLOW_CONN_ATLAS_DOWN", json.dumps({"conn_type": "atlas", "host": "127.0.0.1", "port": 9}))
    code, out, _ = cli("verify-log", MODEL, "--atlas-conn-id", "atlas_down")
    assert code == 0 and "intact, 5 events" in out and "Atlas not checked: connection 'atlas_down'" in out

    # a model that never recorded an event
    code, out, _ = cli("verify-log", "no such model")
    assert code == 1 and "no event log: no event was ever recorded for this model, or the log was deleted" in out


def test_a_retried_publish_or_register_writes_its_event_once(devstack, airflow_db, tmp_path):
    """A task retried after its event was appended (say Atlas failed after the append) appends nothing."""
    from airflow.models import DagRun
    from model_governance import eventlog
    from model_governance.hooks.atlas import AtlasHook
    from model_governance.metadata import DeploymentDocument

    dag = load_dag("model_deployment")
    done = deploy(dag, EXAMPLE_STAGING)
    reg = registry()
    log = events(reg)
    assert [e["event"] for e in log] == ["archived", "deployed"]
    run = DagRun.find(dag_id=dag.dag_id)[-1]
    doc = DeploymentDocument.from_json(run.get_task_instance("deploy_model").xcom_pull(task_ids="deploy_model"))
    stored = AtlasHook().get_entity("model", done["qualifiedName"])["entity"]["attributes"]
    assert eventlog.record_deployed(reg, doc) == stored["eventLogHead"]
    assert eventlog.record_archived(reg, doc) == eventlog.line_hash(eventlog.encode(log[0]))
    assert events(reg) == log
