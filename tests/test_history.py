"""What served when, and the model's event log: `history`, `trace --at` and `verify-log` on deployments the
real DAG made (`dag.test()` on the stand-ins; the Atlas questions also on real Atlas), lifecycle endings
(rolled back, retired) as the lifecycle's entities record them, and validation as data in the fetch step."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import EXAMPLE_STAGING, NO_APPROVAL, load_dag, stage_variant

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
    run = dag.test(run_conf={"staging": str(staged), **NO_APPROVAL, **conf})
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

    def watched(registry, doc, *args):
        holder = json.loads(registry.read_bytes(registry.lock_path(doc.model.slug)))
        held.append((holder["run_id"], doc.run_key))
        return original(registry, doc, *args)

    monkeypatch.setattr(eventlog, "record_deployed", watched)
    dag = load_dag("model_deployment")
    first = deploy(dag, stage_variant(tmp_path, MODEL, "1.0"))
    second = deploy(dag, EXAMPLE_STAGING)
    again = deploy(dag, EXAMPLE_STAGING)  # 1.1 archived and serving already: no event at all
    assert [run_id for run_id, _ in held] == [key for _, key in held] and len(held) == 2

    log = events(reg)
    # each run waives approval (approval_required false under dag.test()), which the log records too
    assert [(e["event"], e["version"]) for e in log] == [
        ("archived", "1.0"), ("approved", "1.0"), ("deployed", "1.0"),
        ("archived", "1.1"), ("approved", "1.1"), ("deployed", "1.1"),
        ("approved", "1.1"),  # the unchanged third run: its waiver is recorded, nothing is deployed
    ]
    assert log[1]["required"] is False and log[4]["required"] is False
    bundle = reg.published_manifest(model_slug(MODEL), "1.1")
    sha256 = next(entry.sha256 for entry in bundle if entry.path.startswith("executable/"))
    deployed = log[5]
    assert deployed["qualified_name"] == second["qualifiedName"] == again["qualifiedName"]
    hook = AtlasHook()
    entity = hook.get_entity("model", again["qualifiedName"])["entity"]["attributes"]
    assert deployed["sha256"] == sha256 == entity["serializedObjectSha256"]
    assert deployed["target"] == entity["deployTarget"] and deployed["run_key"] == entity["dagRunId"]
    assert deployed["requested_by"] == entity["requestedBy"] != ""
    assert deployed["approved_by"] == "not required"  # waived, never claimed as a person's approval
    assert log[3]["url"] == entity["registryUrl"] and log[3]["sha256"] == sha256
    # the entity keeps the sha256 of the line that recorded it
    lines = eventlog.read_lines(reg, model_slug(MODEL))
    assert entity["eventLogHead"] == eventlog.line_hash(lines[5])
    assert hook.get_entity("model", first["qualifiedName"])["entity"]["attributes"]["eventLogHead"] == eventlog.line_hash(lines[2])

    code, out, err = cli("verify-log", MODEL)
    assert code == 0, err
    where = reg.store.url(eventlog.log_path(reg, model_slug(MODEL)))
    assert where.endswith("/model-registry/.events/rental-pricing-prediction.jsonl")
    assert out.splitlines()[0] == f"{MODEL} ({where}): intact, 7 events"
    assert f"Atlas: the latest deployment, {again['qualifiedName']}, is line 6, the log's last deployed line" in out

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
    assert code == 1 and (verdict["intact"], verdict["brokenAt"], verdict["events"]) == (False, 3, 6)

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
    write_log(reg, lines[:5] + [lines[5].replace(b'"deployed"', b'"deployed" ', 1)])
    code, out, _ = cli("verify-log", MODEL)
    assert code == 1 and "broken at its end (after line 6)" in out

    # Atlas unreachable: checked chain, and a plain statement that Atlas was not
    write_log(reg, lines)
    monkeypatch.setenv("AIRFLOW_CONN_ATLAS_DOWN", json.dumps({"conn_type": "atlas", "host": "127.0.0.1", "port": 9}))
    code, out, _ = cli("verify-log", MODEL, "--atlas-conn-id", "atlas_down")
    assert code == 0 and "intact, 7 events" in out and "Atlas not checked: connection 'atlas_down'" in out

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
    assert [e["event"] for e in log] == ["archived", "approved", "deployed"]
    run = DagRun.find(dag_id=dag.dag_id)[-1]
    doc = DeploymentDocument.from_json(run.get_task_instance("deploy_model").xcom_pull(task_ids="deploy_model"))
    stored = AtlasHook().get_entity("model", done["qualifiedName"])["entity"]["attributes"]
    assert eventlog.record_deployed(reg, doc) == stored["eventLogHead"]
    assert eventlog.record_archived(reg, doc) == eventlog.line_hash(eventlog.encode(log[0]))
    assert events(reg) == log


# -- what served when -----------------------------------------------------------------------------------------
def end_as(hook, qualified_name: str, **changes) -> None:
    """Re-post a deployment with its lifecycle attributes changed, as the rollback and retire DAGs record
    an ending (the whole entity: a bulk upsert of a subset could blank the rest)."""
    entity = hook.get_entity("model", qualified_name)["entity"]
    hook.upsert_entities([{"typeName": "model", "attributes": {**entity["attributes"], **changes}}])


def at(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="milliseconds")


@pytest.mark.real_twin("atlas")
def test_history_and_trace_at_say_what_served_when_through_rollback_and_retirement(devstack, airflow_db, tmp_path):
    from model_governance.atlas import schema as s
    from model_governance.atlas.queries import search_until_seen
    from model_governance.hooks.atlas import AtlasHook

    dag = load_dag("model_deployment")
    first = deploy(dag, stage_variant(tmp_path, MODEL, "1.0"))
    second = deploy(dag, EXAMPLE_STAGING)
    hook = AtlasHook()
    old = hook.get_entity("model", first["qualifiedName"])["entity"]["attributes"]
    new = hook.get_entity("model", second["qualifiedName"])["entity"]["attributes"]
    target, t1, t2 = new[s.DEPLOY_TARGET], old[s.DEPLOY_TIME], new[s.DEPLOY_TIME]
    assert (old[s.DEPLOY_STATUS], old[s.ENDED_AT]) == (s.SUPERSEDED, t2) and t1 < t2

    # the lifecycle DAGs are not on main yet: their endings, written with the hook as they will write them.
    # 1.1 is rolled back to 1.0 a minute later (a new deployment of 1.0's archived bytes), which is retired later
    t3, t4 = t2 + 60_000, t2 + 120_000
    rollback = f"{first['qualifiedName']}#rollback-{t3}"
    end_as(hook, second["qualifiedName"], **{s.DEPLOY_STATUS: s.ROLLED_BACK, s.ENDED_AT: t3, s.ENDED_BY: "ana", s.END_REASON: "prices drift"})
    end_as(hook, first["qualifiedName"], **{
        s.QUALIFIED_NAME: rollback, s.DEPLOY_STATUS: s.RETIRED, s.DEPLOY_TIME: t3, s.ENDED_AT: t4, s.SUPERSEDED_BY: None,
        s.ROLLBACK_OF: second["qualifiedName"], s.DEPLOY_REASON: "prices drift", s.REQUESTED_BY: "ana", s.APPROVED_BY: "omar",
        s.ENDED_BY: "greg", s.END_REASON: "listing service closed", s.DAG_RUN_ID: "manual__rollback",
    })
    search_until_seen(hook, [(s.DEPLOY_TARGET, "=", target)], {rollback})  # the last write: the others show too

    code, out, err = cli("history", target, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["qualifiedName"], r["version"], r["from"], r["to"], r["ended"]) for r in rows] == [
        (first["qualifiedName"], "1.0", iso(t1), iso(t2), "superseded"),
        (second["qualifiedName"], "1.1", iso(t2), iso(t3), "rolled back"),
        (rollback, "1.0", iso(t3), iso(t4), "retired"),
    ]
    requester = old[s.REQUESTED_BY]
    assert requester and [r["requestedBy"] for r in rows] == [requester, requester, "ana"]
    assert [r["approvedBy"] for r in rows] == ["not required", "not required", "omar"]
    assert (rows[1]["endedBy"], rows[1]["endReason"], rows[2]["rollbackOf"]) == ("ana", "prices drift", second["qualifiedName"])
    # the scoring URL names the same target
    code, out, _ = cli("history", new[s.ENDPOINT_URL], "--json")
    assert [r["qualifiedName"] for r in json.loads(out)] == [r["qualifiedName"] for r in rows]

    code, out, _ = cli("history", target)
    lines = out.splitlines()
    assert lines[0].split() == ["FROM", "(UTC)", "TO", "(UTC)", "VERSION", "REQUESTED", "BY", "APPROVED", "BY", "HOW", "IT", "ENDED", "NOTE"]
    waived = ["not", "required"]  # dag.test() runs ask no approval, and the history says so
    assert lines[1].split() == [iso(t1), iso(t2), "1.0", *requester.split(), *waived, "superseded"]
    assert lines[2].split() == [iso(t2), iso(t3), "1.1", *requester.split(), *waived, "rolled", "back", "by", "ana", "prices", "drift"]
    assert lines[3].split() == [iso(t3), iso(t4), "1.0", "ana", "omar", "retired", "rollback", "of", f"{second['qualifiedName']}:",
                                "prices", "drift;", "by", "greg", "listing", "service", "closed"]
    assert len(lines) == 4

    # what served at a moment: the period holds its start, not its end
    for moment, expected in [(t1, first), ((t1 + t2) // 2, first), (t2, second), (t3 - 1, second)]:
        code, out, err = cli("trace", "--at", at(moment), target, "--json")
        assert code == 0, err
        assert json.loads(out)["deployment"]["qualifiedName"] == expected["qualifiedName"], moment
    code, out, _ = cli("trace", "--at", at(t3 + 1000), target)
    assert code == 0 and out.splitlines()[:2] == [f"served at {target} at {at(t3 + 1000)}:", f"{rollback}  (retired)"]
    assert "  rollback of:       " + second["qualifiedName"] in out and "  end reason:        listing service closed" in out
    assert f"  ended:             {iso(t4)}" in out and "  approved by:       omar" in out
    assert "serialized model" in out  # the trace's usual content: the archived artifacts with sha256

    code, _, err = cli("trace", "--at", at(t4), target)
    assert code == 1 and f"nothing served at {target} at {iso(t4)}: {rollback} had ended at {iso(t4)} (retired)" in err
    code, _, err = cli("trace", "--at", at(t1 - 86_400_000), target)
    assert code == 1 and f"the first deployment there, {first['qualifiedName']}, started at {iso(t1)}" in err
    code, _, err = cli("trace", "--at", "last tuesday", target)
    assert code == 2 and "'last tuesday' is not an ISO-8601 date or time" in err
    code, _, err = cli("trace", "--at", at(t2), "nowhere:1")
    assert code == 1 and "no deployment at nowhere:1 is registered in Atlas" in err
    code, out, err = cli("history", "nowhere:1")
    assert code == 0 and out.split() == ["FROM", "(UTC)", "TO", "(UTC)", "VERSION", "REQUESTED", "BY", "APPROVED", "BY", "HOW", "IT", "ENDED", "NOTE"]
    assert "no deployment at nowhere:1 is registered in Atlas" in err

    # `deployments --status` knows the lifecycle's endings
    for status, expected in [("rolled_back", second["qualifiedName"]), ("retired", rollback), ("superseded", first["qualifiedName"])]:
        code, out, _ = cli("deployments", "--status", status, "--json")
        assert [r["qualifiedName"] for r in json.loads(out)] == [expected], status


def test_history_reads_atlas_a_page_at_a_time_oldest_first(devstack):
    """2,000 deployments at one target: the first row comes after one search call, every call asks for one
    page, and the rows come oldest first with none lost or repeated across pages."""
    from model_governance.atlas import queries, schema as s
    from model_governance.hooks.atlas import AtlasHook

    hook = AtlasHook()
    s.ensure_model_type(hook)
    target, base, count = "fleet:65327", 1_764_000_000_000, 2000
    seed = {a: "x" for a in s.SEED_ATTRIBUTES}
    for start in range(0, count, 500):
        hook.upsert_entities([
            {"typeName": "model", "attributes": {
                **seed, s.QUALIFIED_NAME: f"m-v{i}@{target}", s.NAME: f"m v{i}", s.MODEL_VERSION: str(i),
                s.DEPLOY_TARGET: target, s.DEPLOY_TIME: base + i * 1000,
                s.DEPLOY_STATUS: s.DEPLOYED if i == count - 1 else s.SUPERSEDED,
                # the older half was superseded before endedAt existed: it ends when the next one starts
                **({s.ENDED_AT: base + (i + 1) * 1000} if i >= count // 2 and i < count - 1 else {}),
            }} for i in range(start, min(start + 500, count))
        ])
    asked = []
    search = hook.search_basic

    def counted(body):
        asked.append(body["limit"])
        return search(body)

    hook.search_basic = counted
    rows = queries.history(hook, target)
    first = next(rows)
    assert len(asked) == 1 and first["version"] == "0"
    rest = list(rows)
    assert asked == [queries.HISTORY_PAGE] * (count // queries.HISTORY_PAGE + 1)
    every = [first, *rest]
    assert [r["version"] for r in every] == [str(i) for i in range(count)]
    assert all(r["to"] == every[i + 1]["from"] for i, r in enumerate(every[:-1]))
    assert (every[-1]["to"], every[-1]["ended"]) == (None, "serving")

    code, out, err = cli("history", target, "--json")
    assert code == 0, err
    assert [r["version"] for r in json.loads(out)] == [str(i) for i in range(count)]


# -- validation as data ---------------------------------------------------------------------------------------
def test_a_refused_validation_leaves_nothing_and_an_approved_one_is_recorded_and_traced(devstack, airflow_db, tmp_path):
    from model_governance import eventlog
    from model_governance.atlas.queries import list_deployments
    from model_governance.hooks.atlas import AtlasHook
    from model_governance.metadata import model_slug

    dag = load_dag("model_deployment")
    expired = stage_variant(tmp_path / "expired", MODEL, "1.2", validation_status="approved", validation_by="MRO",
                            validation_valid_until="2020-01-31", risk_tier="2")
    run = dag.test(run_conf={"staging": str(expired), **NO_APPROVAL})
    fetch = run.get_task_instance("fetch_staging")
    assert run.state == "failed" and (fetch.state, fetch.try_number) == ("failed", 1)  # no retries: bad input
    assert {ti.task_id: ti.state for ti in run.get_task_instances()}["push_to_registry"] == "upstream_failed"
    reg = registry()
    slug = model_slug(MODEL)
    for path in (reg.version_path(slug, "1.2"), reg.lock_path(slug), eventlog.log_path(reg, slug), f"{reg.root}/.pending"):
        assert not reg.store.exists(path) or not reg.store.list_files(path), path
    assert list_deployments(AtlasHook()) == []  # no entity: nothing served

    approved = stage_variant(tmp_path / "approved", MODEL, "1.2", validation_status="approved",
                             validation_by="Model Risk Office (J. Doe)", validation_valid_until="2099-06-30", risk_tier="2")
    done = deploy(dag, approved)
    attributes = AtlasHook().get_entity("model", done["qualifiedName"])["entity"]["attributes"]
    assert (attributes["validationStatus"], attributes["validatedBy"], attributes["validUntil"], attributes["riskTier"]) == (
        "approved", "Model Risk Office (J. Doe)", "2099-06-30", "2")
    code, out, _ = cli("trace", done["qualifiedName"])
    assert code == 0
    assert "  validation:        approved\n  validated by:      Model Risk Office (J. Doe)\n  valid until:       2099-06-30\n  risk tier:         2\n" in out

    plain = deploy(dag, EXAMPLE_STAGING)  # no validation keys: deploys as before, and trace says so
    code, out, _ = cli("trace", plain["qualifiedName"])
    assert "  validation:        not recorded (modelMetadata.txt has no model.validation.* keys)" in out
    assert "ended:" not in out  # Atlas's 0 for an unset date is no moment


def test_the_fetch_step_warns_when_no_validation_is_recorded(tmp_path):
    from model_governance.operators.fetch import recorded_validation

    class Log:
        def __init__(self):
            self.lines = []

        def warning(self, message, *args):
            self.lines.append(("warning", message % args))

        def info(self, message, *args):
            self.lines.append(("info", message % args))

    log = Log()
    assert recorded_validation(EXAMPLE_STAGING, log) is None
    assert log.lines == [("warning", "modelMetadata.txt records no validation (model.validation.status, model.validation.by, "
                                     "model.validation.valid.until): deploying without a recorded validation")]
    staged = stage_variant(tmp_path, MODEL, "1.2", validation_status="Approved", validation_by="MRO", validation_valid_until="2099-01-01")
    log = Log()
    assert recorded_validation(staged, log).by == "MRO"
    assert log.lines == [("info", "Validation: approved by MRO, valid until 2099-01-01")]
