"""The approval step between publish (2c) and deploy (2b): a person approves or rejects the deployment in
Airflow's own human-in-the-loop UI or REST API, and the answer goes on the deployment document."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk import Param
from airflow.sdk.exceptions import AirflowFailException

from model_governance import approval
from model_governance.connections import ATLAS_CONN_ID, MLEAP_CONN_ID, WEBHDFS_CONN_ID
from model_governance.exceptions import DeploymentRejectedError
from model_governance.operators._args import as_bool, as_document

if TYPE_CHECKING:
    from model_governance.metadata import DeploymentDocument


class DeploymentApprovalOperator(ApprovalOperator):
    """Wait for a person to approve or reject serving the archived version; return the document with the
    approval (`ApprovalInfo`) added, which the register step writes onto the Atlas entity.

    The request shows the model, version, owner, target, the bundle's sha256 and a link to the archived
    version. An approval by the user who triggered the run is refused (logged, and the request is opened
    again for another approver); so is an answer the form cannot hold. A rejection fails the run with the
    approver's comment as its reason. Approvals and rejections are appended to the model's event log (the
    run holds the model's lock). On Airflow 3.3 the task waits in the `awaiting_input` state and resumes
    when the answer is recorded.

    :param document: the deployment document the publish step returned (XCom).
    :param required: whether a person must approve; false records why none was asked and logs a warning
        (templated).
    :param host_type: `microservice` or `spark`: which kind of connection `serving_conn_id` is (templated).
    :param serving_conn_id: the MLeap serving or Spark connection the deploy step uses: the request's
        target (templated).
    :param webhdfs_conn_id: the WebHDFS connection, for a registry on HDFS (templated).
    :param atlas_conn_id: where the deployment serving now is found, for `skip_unchanged` (templated).
    :param skip_unchanged: ask nobody when the target already serves this exact version and bundle, as
        Atlas records it (the scheduled redeploy): it was approved when it was first deployed (templated).
    """

    template_fields: Sequence[str] = (
        "document",
        "required",
        "host_type",
        "serving_conn_id",
        "webhdfs_conn_id",
        "atlas_conn_id",
        "skip_unchanged",
    )
    ui_color = "#fff4d6"

    def __init__(
        self,
        *,
        document: Any,
        required: bool | str = True,
        host_type: str = "microservice",
        serving_conn_id: str = MLEAP_CONN_ID,
        webhdfs_conn_id: str = WEBHDFS_CONN_ID,
        atlas_conn_id: str = ATLAS_CONN_ID,
        skip_unchanged: bool | str = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("subject", "Approve the deployment")  # the real subject is written at run time
        # The form's one field. Set, not defaulted: Airflow passes the DAG's params in `params`, and the
        # provider keeps only the task's own (the run's params still reach the templates).
        kwargs["params"] = {
            approval.COMMENT: Param(
                "",
                type=["string", "null"],
                title="Comment",
                description="Why you approve, or the reason you reject (it ends the run).",
            )
        }
        super().__init__(**kwargs)
        self.document = document
        self.required = required
        self.host_type = host_type
        self.serving_conn_id = serving_conn_id
        self.webhdfs_conn_id = webhdfs_conn_id
        self.atlas_conn_id = atlas_conn_id
        self.skip_unchanged = skip_unchanged

    def execute(self, context: Any) -> Any:
        from model_governance.lifecycle import requested_by

        doc = as_document(self.document)
        target = approval.resolve_target(str(self.host_type), self.serving_conn_id, doc)
        # an unchanged version first: nothing happens to it, so nothing goes into the event log either
        unchanged = self._unchanged(doc, target) if as_bool(self.skip_unchanged, "skip_unchanged") else None
        if unchanged is not None:
            return self._not_asked(doc, unchanged)
        if not as_bool(self.required, "approval_required"):
            why = (
                f"approval not required: the run's param approval_required is false "
                f"(run {doc.run_id}, requested by {doc.requested_by or requested_by(context)})"
            )
            self._append(doc, "approved", required=False, comment=why)
            return self._not_asked(doc, why)
        return self._ask(context, doc, target)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if "error" in event:
            return HITLOperator.execute_complete(self, context=context, event=event)  # raises it
        doc = as_document(self.document)
        chosen = list(event.get("chosen_options") or [])
        responder = (event.get("responded_by_user") or {}).get("name")
        why = approval.refusal(doc.requested_by, responder, chosen)
        if why is None:
            try:  # the provider's own checks of the answer (options, form fields)
                HITLOperator.execute_complete(self, context=context, event=event)
            except ValueError as exc:  # ParamValidationError is one too
                why = f"the answer does not fit the request: {exc}"
        if why is not None:
            self.log.error("REFUSED %s by %s: %s. Waiting for another answer.", chosen, responder, why)
            target = approval.resolve_target(str(self.host_type), self.serving_conn_id, doc)
            return self._ask(context, doc, target)
        comment = str((event.get("params_input") or {}).get(approval.COMMENT) or "").strip()
        if chosen == [approval.REJECT]:
            reason = comment or "no reason given"
            self._append(doc, "rejected", by=responder, comment=reason)
            raise DeploymentRejectedError(
                f"Rejected by {responder}: {reason} ({doc.model.name} v{doc.model.version} is not deployed)"
            )
        at: datetime = event["responded_at"]
        self._append(doc, "approved", by=responder, comment=comment)
        self.log.info("Approved by %s at %s: %s", responder, at.isoformat(), comment or "(no comment)")
        return self._approved(doc, by=str(responder), at=at, comment=comment, required=True)

    def _ask(self, context: Any, doc: DeploymentDocument, target: approval.Target) -> Any:
        """Write the request (an answer stored before is dropped: one answer per task instance) and wait."""
        from model_governance.registry import Registry

        if doc.registry is None:
            raise AirflowFailException("the model is not archived yet: publish it before asking for approval")
        registry = Registry.from_root(doc.registry.root, self.webhdfs_conn_id)
        archived, manifest = approval.archive_links(registry, doc.registry.path)
        self.subject = approval.subject(doc, target)
        self.body = approval.body(doc, target, archived, manifest)
        try_number = int(getattr(context.get("ti"), "try_number", 1) or 1)
        if try_number > 1:  # Airflow keeps one answer per task instance, and a new try's request drops it
            self.body = f"{approval.ASKED_AGAIN.format(try_number=try_number)}\n\n{self.body}"
            self.log.warning(
                "Asking again (try %d): an answer given to an earlier try is not kept", try_number
            )
        self.log.info("Approval requested: %s (requested by %s)", self.subject, doc.requested_by or "unknown")
        return HITLOperator.execute(self, context)

    def _not_asked(self, doc: DeploymentDocument, why: str) -> Any:
        self.log.warning("NO APPROVAL ASKED for %s v%s: %s", doc.model.name, doc.model.version, why)
        return self._approved(doc, by="", at=datetime.now(UTC), comment=why, required=False)

    def _unchanged(self, doc: DeploymentDocument, target: approval.Target) -> str | None:
        """Why no approval is needed when the target serves this exact version and bundle; else None."""
        from model_governance.atlas.queries import current_deployment
        from model_governance.hooks.atlas import AtlasHook

        if doc.registry is not None and doc.registry.first_archived:
            return None  # archived by this run for the first time: it serves nowhere yet
        current = current_deployment(AtlasHook(self.atlas_conn_id), target.target)
        sha256 = doc.executable_entry.sha256
        if current is None or not current.serves(doc.model.name, doc.model.version, sha256):
            return None
        return (
            f"unchanged: {current.qualified_name} already serves this exact bundle (sha256 {sha256}) at "
            f"{target.target}; its approval was recorded when it was first deployed"
        )

    def _append(self, doc: DeploymentDocument, event: str, **facts: Any) -> None:
        from model_governance import eventlog
        from model_governance.registry import Registry

        if doc.registry is None:
            return
        registry = Registry.from_root(doc.registry.root, self.webhdfs_conn_id)
        eventlog.append(
            registry, doc.model.slug, event, doc.model.version, requested_by=doc.requested_by, **facts
        )

    @staticmethod
    def _approved(doc: DeploymentDocument, *, by: str, at: datetime, comment: str, required: bool) -> Any:
        from dataclasses import replace

        from model_governance.metadata import ApprovalInfo

        stamp = at.astimezone(UTC).isoformat(timespec="seconds")
        info = ApprovalInfo(by=by, at=stamp, comment=comment, required=required)
        return replace(doc, approval=info).to_json()
