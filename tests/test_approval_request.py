"""The approval gate's rules and wiring, without a running Airflow: whose answer counts, what the request
says, and where the step sits in every deployment DAG (tests/test_approval.py drives it for real)."""

from __future__ import annotations

import pytest

from model_governance import approval
from model_governance.metadata import DeploymentDocument, ManifestEntry, ModelMetadata, RegistryInfo, SourceInfo
from tests.helpers import load_dag


def document(requested_by: str = "alice", description: str = "predicts rents") -> DeploymentDocument:
    model = ModelMetadata(owner="Greg Keys", owner_lob="pricing", name="rental | pricing", type="linear regression",
                          version="1.1", description=description, endpoint="target")
    return DeploymentDocument(
        model=model,
        source=SourceInfo(location="/srv/staging/rental", kind="local", revision="sha256:abc"),
        manifest=(ManifestEntry("executable/model.zip", 15259, "73cd" * 16), ManifestEntry("README.md", 10, "00" * 32)),
        executable="executable/model.zip",
        dag_id="model_deployment",
        run_id="manual__1",
        registry=RegistryInfo(root="hdfs:///model-registry", path="/model-registry/rental-pricing/1.1",
                              url="hdfs://nn:8020/model-registry/rental-pricing/1.1"),
        requested_by=requested_by,
    )


@pytest.mark.parametrize(
    ("requested_by", "responder", "chosen", "refused"),
    [
        ("alice", "alice", ["Approve"], "alice triggered this run and cannot approve it (separation of duties)"),
        ("alice", "bob", ["Approve"], None),
        ("alice", "alice", ["Reject"], None),  # a requester may withdraw their own run
        ("scheduler", "alice", ["Approve"], None),  # no person asked: anyone allowed to respond may approve
        ("unknown", "unknown", ["Approve"], None),
        ("alice", None, ["Approve"], "an approval must name its approver"),
    ],
)
def test_whose_answer_counts(requested_by, responder, chosen, refused):
    why = approval.refusal(requested_by, responder, chosen)
    assert (why is None) if refused is None else (refused in why)


def test_the_request_shows_what_is_approved():
    doc = document()
    target = approval.Target("mleap:65327", "MLeap serving (legacy API) at http://mleap:65327")
    body = approval.body(doc, target, "hdfs://nn:8020/model-registry/rental-pricing/1.1", "http://nn:9870/webhdfs/v1/x?op=OPEN")
    assert approval.subject(doc, target) == "Approve deployment: rental | pricing v1.1 to mleap:65327"
    for shown in ("| Model | rental \\| pricing |", "| Version | 1.1 |", "| Owner | Greg Keys (pricing) |",
                  "| Target | `mleap:65327`: MLeap serving (legacy API) at http://mleap:65327 |",
                  f"| Bundle sha256 | `{'73cd' * 16}` |",
                  "| Archived version | [hdfs://nn:8020/model-registry/rental-pricing/1.1](http://nn:9870/webhdfs/v1/x?op=OPEN) |",
                  "| Requested by | alice |", "alice triggered this run and cannot approve it"):
        assert shown in body, shown
    assert "any user allowed to respond may approve" in approval.body(document("scheduler"), target, "u", "l")


@pytest.mark.parametrize("dag_id", ["model_deployment", "model_batch_deployment", "model_redeploy"])
def test_every_deployment_dag_asks_between_publish_and_deploy(dag_id):
    dag = load_dag(dag_id)
    prefix = "redeploy." if dag_id == "model_redeploy" else ""
    approve = dag.get_task(f"{prefix}approve_deployment")
    steps = lambda ids: set(ids) - {"read_manifest"}  # noqa: E731 - the redeploy's groups map over the manifest
    assert steps(approve.upstream_task_ids) == {f"{prefix}push_to_registry"}
    assert steps(dag.get_task(f"{prefix}deploy_model").upstream_task_ids) == {approve.task_id}
    assert f"{prefix}clean_up" in approve.downstream_task_ids
    assert approve.options == ["Approve", "Reject"] and list(approve.serialized_params) == ["comment"]
    assert dag.params["approval_required"] is True  # required unless a run says otherwise
    assert approve.required == "{{ params.approval_required }}"
    assert approve.skip_unchanged is (dag_id == "model_redeploy")  # only the scheduled redeploy skips a current version


@pytest.mark.parametrize("try_number", [1, 2])
def test_a_retry_says_it_asks_again(try_number, monkeypatch):
    """Airflow 3.3 keeps one answer per task instance and a retry's request clears it (the worker's task
    process cannot read it first): the request a retry writes tells the approver to answer again."""
    from types import SimpleNamespace

    from airflow.providers.standard.operators.hitl import HITLOperator

    from model_governance.operators.approval import DeploymentApprovalOperator
    from model_governance.registry import Registry

    asked = []
    monkeypatch.setattr(Registry, "from_root", staticmethod(lambda root, conn_id: None))
    monkeypatch.setattr(approval, "archive_links", lambda registry, path: ("hdfs://nn/archived", "http://nn/MANIFEST.json"))
    monkeypatch.setattr(HITLOperator, "execute", lambda self, context: asked.append(self.body))
    step = DeploymentApprovalOperator(task_id="approve_deployment", document={})
    target = approval.Target("mleap:65327", "MLeap serving")
    step._ask({"ti": SimpleNamespace(try_number=try_number)}, document(), target)
    [body] = asked
    again = body.startswith(f"**Asked again** (try {try_number}): Airflow restarted the approval step")
    assert again is (try_number > 1) and "| Bundle sha256 |" in body
