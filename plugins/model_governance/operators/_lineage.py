"""OpenLineage for the deployment operators: the provider's listener calls these methods after a step;
what a deployment means to OpenLineage is `model_governance.openlineage`, imported only then (so nothing
changes when the provider is absent or OpenLineage is off)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

# the steps whose lineage differs (see `model_governance.openlineage.step_lineage`)
FETCH, PUBLISH, DEPLOY, SPARK_PUBLISH, SPARK_SCORE, REGISTER = (
    "fetch",
    "publish",
    "deploy",
    "spark_publish",
    "spark_score",
    "register",
)


class DeploymentLineageMixin:
    """`get_openlineage_facets_on_complete`/`_on_failure` from the deployment document: the one the step
    returned, or after a failure the one it was given (`document`), whose outputs it did not make."""

    lineage_step: ClassVar[str]  # FETCH, PUBLISH, DEPLOY, SPARK_PUBLISH, SPARK_SCORE or REGISTER
    _lineage_document: Any = None

    def lineage_output(self, document: dict[str, Any]) -> dict[str, Any]:
        """Keep the document this step returns for the listener, which runs after `execute`; returns it."""
        self._lineage_document = document
        return document

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        # a step that returns no document (register) reports the one it was given
        document = self._lineage_document
        if document is None:
            document = getattr(self, "document", None)
        return self._step_lineage(document, failed=False)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage | None:
        return self._step_lineage(getattr(self, "document", None), failed=True)

    def _step_lineage(self, document: Any, failed: bool) -> OperatorLineage | None:
        if document is None:  # the fetch step failed: it has no document yet
            return None
        from model_governance.openlineage import step_lineage
        from model_governance.operators._args import as_document

        return step_lineage(self.lineage_step, as_document(document), failed=failed)
