"""Step 2c: publish the pending upload as the model version in the registry (and clean up after a run)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from model_governance.connections import WEBHDFS_CONN_ID
from model_governance.operators._args import as_bool, as_document, run_key
from model_governance.operators._lineage import PUBLISH, DeploymentLineageMixin


class PublishToRegistryOperator(DeploymentLineageMixin, BaseOperator):
    """Verify the run's pending upload; rename it to `<registry>/<model slug>/<version>/` with MANIFEST.json.

    Returns the deployment document with the registry location added.
    """

    template_fields: Sequence[str] = ("document", "registry_root", "webhdfs_conn_id", "force")
    ui_color = "#fdf3e1"
    lineage_step = PUBLISH

    def __init__(
        self,
        *,
        document: Any,
        registry_root: str,
        webhdfs_conn_id: str = WEBHDFS_CONN_ID,
        force: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.document = document
        self.registry_root = registry_root
        self.webhdfs_conn_id = webhdfs_conn_id
        self.force = force

    def execute(self, context: Any) -> dict[str, Any]:
        from model_governance import eventlog
        from model_governance.registry import Registry

        doc = as_document(self.document)
        registry = Registry.from_root(self.registry_root, self.webhdfs_conn_id)
        info = registry.publish(doc, force=as_bool(self.force, "force"))
        self.log.info("Model registry: %s (%d bytes published by this run)", info.url, info.uploaded_bytes)
        doc = doc.with_registry(info)
        # `archived` only when this run put the version there: now, or in an earlier try of this task that
        # failed before the event was written (one more read, on retries only)
        retried = getattr(context.get("ti"), "try_number", 1) > 1
        if info.uploaded_bytes or (retried and registry.published_by(doc) == doc.run_id):
            eventlog.record_archived(registry, doc)
            self.log.info("Event log: archived %s %s", doc.model.name, doc.model.version)
        return self.lineage_output(doc.to_json())


class CleanUpRunOperator(BaseOperator):
    """Teardown after every step: remove the run's pending upload and release its model lock, whichever
    step failed (the DAGs put it downstream of all of them, with no setup, so it runs once they are done)."""

    template_fields: Sequence[str] = ("registry_root", "webhdfs_conn_id")
    ui_color = "#eeeeee"

    def __init__(self, *, registry_root: str, webhdfs_conn_id: str = WEBHDFS_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registry_root = registry_root
        self.webhdfs_conn_id = webhdfs_conn_id

    def execute(self, context: Any) -> None:
        from model_governance.exceptions import InvalidInputError
        from model_governance.lifecycle import release_run
        from model_governance.registry import Registry

        try:
            registry = Registry.from_root(self.registry_root, self.webhdfs_conn_id)
        except InvalidInputError as exc:  # the fetch step refused the same root: it holds nothing there
            self.log.info("Nothing to clean up: %s", exc)
            return
        release_run(registry, run_key(context))
