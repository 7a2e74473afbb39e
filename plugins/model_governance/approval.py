"""The approval gate between archiving and serving: what the approver is shown, and whose answer counts.

A person approves or rejects each deployment in Airflow's own human-in-the-loop step (the standard
provider's `ApprovalOperator`, see `operators/approval.py`). Separation of duties: the user who triggered
the run cannot approve it. Airflow's HITL can only *allow* named users (`assigned_users`, checked by the
auth manager against user ids whose form differs per auth manager), not exclude one, so the rule is
checked on the answer itself, by user name (what Airflow records as `triggering_user_name` and as the
responder's name, whichever auth manager): a refused answer is logged and the request re-opened for
another approver.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model_governance.lifecycle import SCHEDULER

if TYPE_CHECKING:
    from model_governance.metadata import DeploymentDocument
    from model_governance.registry import Registry

APPROVE, REJECT = "Approve", "Reject"  # the ApprovalOperator's two options
COMMENT = "comment"  # the one field of the approval form
NO_PERSON = (SCHEDULER, "unknown", "")  # requesters no approver can be


@dataclass(frozen=True)
class Target:
    """Where the deployment will serve, as the deploy step names it (`target`) and as a person reads it."""

    target: str
    description: str


def refusal(requested_by: str, responder: str | None, chosen: list[str]) -> str | None:
    """Why an answer cannot stand, or None. The requester may reject (withdraw) their own deployment."""
    if chosen == [APPROVE] and not responder:
        return "an approval must name its approver (the answer has no user)"
    if chosen == [APPROVE] and requested_by not in NO_PERSON and responder == requested_by:
        return (
            f"{responder} triggered this run and cannot approve it (separation of duties): "
            "another user must approve it"
        )
    return None


def resolve_target(host_type: str, serving_conn_id: str, doc: DeploymentDocument) -> Target:
    """The target the deploy step will serve at, from the serving connection (MLeap serving or Spark)."""
    if host_type == "spark":
        from airflow.sdk import Connection

        conn = Connection.get(serving_conn_id)
        models_root = str(conn.extra_dejson.get("models_root") or "(the connection has no models_root)")
        folder = f"{models_root.rstrip('/')}/{doc.model.slug}"
        return Target(
            f"spark:{folder}",
            f"the pipeline published to {folder}/{doc.model.version} for batch scoring "
            f"(Spark connection {serving_conn_id}, master {conn.host or 'local'})",
        )
    from model_governance.deploy.microservice import serving_target
    from model_governance.hooks.mleap import MLeapServingHook

    hook = MLeapServingHook(serving_conn_id)
    name, target = serving_target(hook, doc)
    return Target(
        target,
        f"MLeap serving ({hook.api} API) at {hook.url} as model {name}, "
        f"endpoint {hook.url}/{doc.model.endpoint or name} (connection {serving_conn_id})",
    )


def archive_links(registry: Registry, path: str) -> tuple[str, str]:
    """(the archived version's URL, a link a browser opens: its MANIFEST.json, names and sha256 of every
    file). On HDFS the manifest is read through WebHDFS, with no credentials in the link."""
    from model_governance.registry import WebHDFSStore

    manifest = posixpath.join(path, "MANIFEST.json")
    store = registry.store
    link = store.open_url(manifest) if isinstance(store, WebHDFSStore) else store.url(manifest)
    return store.url(path), link


def subject(doc: DeploymentDocument, target: Target) -> str:
    return f"Approve deployment: {doc.model.name} v{doc.model.version} to {target.target}"


# Shown above a request a retry writes. Airflow 3.3 keeps one answer per task instance and clears it when a
# new try asks; a task process cannot read it back first (the worker's supervisor does not serve that call).
ASKED_AGAIN = (
    "**Asked again** (try {try_number}): Airflow restarted the approval step, and an answer given to an "
    "earlier try is not kept. Please answer again."
)


def body(doc: DeploymentDocument, target: Target, archived: str, manifest_link: str) -> str:
    """The request in Markdown, as the Required Actions page shows it."""
    entry = doc.executable_entry
    rows = [
        ("Model", doc.model.name),
        ("Version", doc.model.version),
        ("Owner", f"{doc.model.owner} ({doc.model.owner_lob})"),
        ("Target", f"`{target.target}`: {target.description}"),
        ("Bundle", f"`{entry.path}`, {entry.size} bytes"),
        ("Bundle sha256", f"`{entry.sha256}`"),
        ("Archived version", f"[{archived}]({manifest_link})"),
        ("Source", f"{doc.source.location} @ `{doc.source.revision}`"),
        ("Requested by", doc.requested_by or "unknown"),
        ("Run", f"{doc.dag_id} / {doc.run_id}"),
    ]
    table = "\n".join(f"| {name} | {_cell(value)} |" for name, value in rows)
    rule = (
        f"**Separation of duties:** {doc.requested_by} triggered this run and cannot approve it; "
        "an approval by them is refused and the request stays open for another approver."
        if doc.requested_by not in NO_PERSON
        else "No person triggered this run: any user allowed to respond may approve it."
    )
    return (
        f"{doc.model.description}\n\n| | |\n|---|---|\n{table}\n\n{rule}\n\n"
        f"**Approve** serves this archived bundle at the target and records you as its approver in Atlas. "
        f"**Reject** ends the run as failed with your comment as the reason; nothing is deployed."
    )


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")
