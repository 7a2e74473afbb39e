"""The operator actions on a deployment: roll back (`model_rollback`) and retire (`model_retire`).

The rollback's deploy and register steps are the ordinary `MLeapDeployOperator` and
`AtlasCreateModelEntityOperator`; these operators plan the action, unload, mark a retirement in Atlas, and
append the action's event to the model's event log. The logic is in `model_governance.rollback` and
`model_governance.retire`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from model_governance.connections import ATLAS_CONN_ID, MLEAP_CONN_ID, SPARK_CONN_ID, WEBHDFS_CONN_ID
from model_governance.links import AtlasEntityLink
from model_governance.operators._args import as_document, run_key

if TYPE_CHECKING:
    from model_governance.hooks.atlas import AtlasHook

EVENTS = ("rolled_back", "retired")


class _PlanOperator(BaseOperator):
    """What planning a rollback and a retirement share: the target and the reason, the registry that
    holds the model's lock, Atlas, and the run's facts every plan records."""

    template_fields: Sequence[str] = ("target", "reason", "registry_root", "webhdfs_conn_id", "atlas_conn_id")
    ui_color = "#fbeee6"

    def __init__(
        self,
        *,
        target: str,
        reason: str,
        registry_root: str,
        webhdfs_conn_id: str = WEBHDFS_CONN_ID,
        atlas_conn_id: str = ATLAS_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.reason = reason
        self.registry_root = registry_root
        self.webhdfs_conn_id = webhdfs_conn_id
        self.atlas_conn_id = atlas_conn_id

    @cached_property
    def hook(self) -> AtlasHook:
        from model_governance.hooks.atlas import AtlasHook

        return AtlasHook(self.atlas_conn_id)

    def plan_arguments(self, context: Any) -> dict[str, Any]:
        """The keyword arguments `rollback.plan` and `retire.plan` both take, for this run."""
        from model_governance.lifecycle import requested_by
        from model_governance.operators.fetch import dag_run_is_running
        from model_governance.registry import Registry

        return {
            "registry": Registry.from_root(self.registry_root, self.webhdfs_conn_id),
            "target": str(self.target).strip(),
            "reason": self.reason,
            "dag_id": context["dag"].dag_id,
            "run_id": context["run_id"],
            "run_key": run_key(context),
            "requested_by": requested_by(context),
            "is_running": dag_run_is_running,
        }


class PlanRollbackOperator(_PlanOperator):
    """Find what serves at `target` and the deployment it replaced there (Atlas), take the model's lock,
    and check the older version's archived bytes (sha256 of every file against its manifest, the manifest
    against Atlas's checksums). Returns the deployment document that serves it again, marked as a
    rollback with the reason and who asked.

    :param target: the deployment target as Atlas records it (`deployTarget`) (templated).
    :param reason: why; required (templated).
    :param registry_root: the registry that archived the version (templated).
    :param mleap_conn_id: the MLeap serving connection of the target's host (templated).
    :param webhdfs_conn_id: the WebHDFS connection, when the registry is on HDFS (templated).
    :param atlas_conn_id: the Atlas connection (templated).
    """

    template_fields: Sequence[str] = (*_PlanOperator.template_fields, "mleap_conn_id")

    def __init__(self, *, mleap_conn_id: str = MLEAP_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mleap_conn_id = mleap_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from model_governance import rollback
        from model_governance.hooks.mleap import MLeapServingHook

        args = self.plan_arguments(context)
        doc = rollback.plan(self.hook, MLeapServingHook(self.mleap_conn_id), args.pop("registry"), **args)
        return doc.to_json()


class PlanRetireOperator(_PlanOperator):
    """Find what serves at `target` (Atlas) and take the model's lock. Returns the retirement for the next
    steps; a rerun of a run that already unloaded it returns it with nothing left to unload.

    :param target: the deployment target as Atlas records it (`deployTarget`) (templated).
    :param reason: why; required (templated).
    :param registry_root: the registry holding the model's lock and event log (templated).
    :param webhdfs_conn_id: the WebHDFS connection, when the registry is on HDFS (templated).
    :param atlas_conn_id: the Atlas connection (templated).
    """

    def execute(self, context: Any) -> dict[str, Any]:
        from model_governance import retire

        args = self.plan_arguments(context)
        return retire.plan(self.hook, args.pop("registry"), **args).to_json()


class UnloadDeploymentOperator(BaseOperator):
    """Take the retired deployment off its host and confirm it: MLeap legacy `DELETE /model`, spring-boot
    `DELETE /models/<name>`, or the Spark pipeline removed from `models_root`. Returns the retirement with
    the time it stopped serving.

    :param retirement: what the plan step returned (XCom).
    :param mleap_conn_id: the MLeap serving connection, for a microservice deployment (templated).
    :param spark_conn_id: the Spark connection (its extra `models_root`), for a spark one (templated).
    :param webhdfs_conn_id: the WebHDFS connection, for a models_root on HDFS (templated).
    """

    template_fields: Sequence[str] = ("retirement", "mleap_conn_id", "spark_conn_id", "webhdfs_conn_id")
    ui_color = "#f6e3e3"

    def __init__(
        self,
        *,
        retirement: Any,
        mleap_conn_id: str = MLEAP_CONN_ID,
        spark_conn_id: str = SPARK_CONN_ID,
        webhdfs_conn_id: str = WEBHDFS_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.retirement = retirement
        self.mleap_conn_id = mleap_conn_id
        self.spark_conn_id = spark_conn_id
        self.webhdfs_conn_id = webhdfs_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk import BaseHook

        from model_governance import retire
        from model_governance.exceptions import InvalidInputError
        from model_governance.hooks.mleap import MLeapServingHook
        from model_governance.registry import Registry

        retirement = retire.Retirement.from_json(self.retirement)
        if retirement.host_type == "spark":
            models_root = BaseHook.get_connection(self.spark_conn_id).extra_dejson.get("models_root")
            if not models_root:
                raise InvalidInputError(f"connection {self.spark_conn_id!r} has no extra models_root")
            ended = retire.withdraw_spark(Registry.from_root(models_root, self.webhdfs_conn_id), retirement)
        else:
            ended = retire.unload_microservice(MLeapServingHook(self.mleap_conn_id), retirement)
        return ended.to_json()


class AtlasRetireOperator(BaseOperator):
    """Mark the unloaded deployment `retired` in Atlas, with endedAt, endedBy and endReason. Returns its
    guid, qualifiedName and web page.

    :param retirement: what the unload step returned (XCom).
    :param atlas_conn_id: the Atlas connection (templated).
    """

    template_fields: Sequence[str] = ("retirement", "atlas_conn_id")
    operator_extra_links = (AtlasEntityLink(),)
    ui_color = "#f3e8fa"

    def __init__(self, *, retirement: Any, atlas_conn_id: str = ATLAS_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retirement = retirement
        self.atlas_conn_id = atlas_conn_id

    @cached_property
    def hook(self) -> AtlasHook:
        from model_governance.hooks.atlas import AtlasHook

        return AtlasHook(self.atlas_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        from model_governance import retire

        return retire.mark_retired(self.hook, retire.Retirement.from_json(self.retirement))


class RecordEventOperator(BaseOperator):
    """Append the action's event (`rolled_back` or `retired`) to the model's event log in the registry,
    once per run (a retry finds its own line). Returns the record.

    :param event: `rolled_back` or `retired`.
    :param document: the rollback's deployment document, or the retirement (XCom).
    :param registered: for a rollback, what the register step returned (its qualifiedName) (XCom).
    :param registry_root: the registry holding the event log (templated).
    :param webhdfs_conn_id: the WebHDFS connection, when the registry is on HDFS (templated).
    """

    template_fields: Sequence[str] = ("document", "registered", "registry_root", "webhdfs_conn_id")
    ui_color = "#eef3e6"

    def __init__(
        self,
        *,
        event: str,
        document: Any,
        registry_root: str,
        registered: Any = None,
        webhdfs_conn_id: str = WEBHDFS_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if event not in EVENTS:
            raise ValueError(f"event must be one of {', '.join(EVENTS)}, not {event!r}")
        self.event = event
        self.document = document
        self.registered = registered
        self.registry_root = registry_root
        self.webhdfs_conn_id = webhdfs_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from model_governance import retire, rollback
        from model_governance.eventlog import append_once
        from model_governance.registry import Registry

        registry = Registry.from_root(self.registry_root, self.webhdfs_conn_id)
        if self.event == "rolled_back":
            doc = as_document(self.document)
            slug, version, facts = (
                doc.model.slug,
                doc.model.version,
                rollback.event_facts(doc, self.registered),
            )
        else:
            retirement = retire.Retirement.from_json(self.document)
            slug, version, facts = retirement.slug, retirement.version, retire.event_facts(retirement)
        record, _ = append_once(registry, slug, self.event, version, run_key(context), **facts)
        self.log.info("Event log of %s: #%s %s %s", slug, record["seq"], self.event, version)
        return record
