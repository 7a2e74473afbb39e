"""Step 2d: register the deployment as a `model` entity in Apache Atlas."""

from __future__ import annotations

from typing import Any, Sequence

from airflow.sdk import BaseOperator

from model_governance.links import AtlasEntityLink
from model_governance.operators._args import as_document


class AtlasCreateModelEntityOperator(BaseOperator):
    """Make sure the `model` type exists (create or upgrade it), then create or update the deployment's entity.

    The entity's identity is its qualifiedName (`<name>-v<version>@<host:port>`): Atlas's bulk API updates
    an entity with the same qualifiedName, so a rerun never makes a second one. The archived files are
    registered as `hdfs_path` entities linked from it, and the deployment it replaces at the same target
    is marked superseded. Returns the entity's guid, qualifiedName and web page.
    """

    template_fields: Sequence[str] = ("document", "atlas_conn_id")
    operator_extra_links = (AtlasEntityLink(),)
    ui_color = "#f3e8fa"

    def __init__(self, *, document: Any, atlas_conn_id: str = "atlas_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.document = document
        self.atlas_conn_id = atlas_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from model_governance.atlas_types import MODEL_TYPE, artifact_entities, dataset_reference, ensure_model_type, model_entity
        from model_governance.exceptions import AtlasError
        from model_governance.hooks.atlas import AtlasHook

        doc = as_document(self.document)
        if doc.deploy is None or doc.registry is None:
            raise AtlasError("only a model that is archived and serving is registered: deploy it first")
        hook = AtlasHook(self.atlas_conn_id)
        stored = hook.get_entity(MODEL_TYPE, doc.qualified_name) if doc.deploy.unchanged else None
        if stored is not None:  # a redeploy found it serving already: the entity stays as it is
            guid = stored["entity"]["guid"]
            self.log.info("%s already serves as registered: Atlas entity %s left as it is", doc.qualified_name, guid)
            return {"guid": guid, "qualifiedName": doc.qualified_name, "url": hook.entity_url(guid)}
        ensure_model_type(hook)
        # The files first: the entity refers to them by qualifiedName, so they must exist when it arrives.
        artifacts = artifact_entities(doc, hook.cluster_name)
        datasets = [dataset_reference(location, hook.cluster_name)[1] for location in doc.deploy.inputs + doc.deploy.outputs]
        hook.upsert_entities(artifacts + [entity for entity in datasets if entity])
        hook.upsert_entities([model_entity(doc, doc.deploy.target, artifacts, cluster_name=hook.cluster_name)])
        stored = hook.get_entity(MODEL_TYPE, doc.qualified_name)
        if stored is None:
            raise AtlasError(f"Atlas accepted the entity {doc.qualified_name!r} but does not return it")
        guid = stored["entity"]["guid"]
        for previous in hook.supersede(doc.deploy.target, doc.qualified_name):
            self.log.info("Marked %s superseded at %s", previous, doc.deploy.target)
        url = hook.entity_url(guid)
        self.log.info("Atlas entity %s (%s): %s", doc.qualified_name, guid, url)
        return {"guid": guid, "qualifiedName": doc.qualified_name, "url": url}
