"""Step 2d's logic: the `model` type made current, the archived files and datasets upserted, the
deployment's entity created or updated by its qualifiedName, and what it replaced marked superseded."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from model_governance.atlas.entities import artifact_entities, dataset_reference, model_entity
from model_governance.atlas.queries import supersede
from model_governance.atlas.schema import MODEL_TYPE, ensure_model_type
from model_governance.exceptions import AtlasError
from model_governance.metadata import DeploymentDocument

if TYPE_CHECKING:
    from model_governance.hooks.atlas import AtlasHook

log = logging.getLogger(__name__)


def register_deployment(
    hook: AtlasHook, doc: DeploymentDocument, record_event: Callable[[], str] | None = None
) -> dict[str, Any]:
    """Register an archived, serving deployment; its entity's guid, qualifiedName and web page.

    `record_event` appends the `deployed` event to the model's log and returns the line's sha256, kept on
    the entity as `eventLogHead`; it is called only when the entity is written (not for a deployment that
    already serves as registered), before it, so that Atlas never names a line the log lacks."""
    if doc.deploy is None or doc.registry is None:
        raise AtlasError("only a model that is archived and serving is registered: deploy it first")
    stored = hook.get_entity(MODEL_TYPE, doc.qualified_name) if doc.deploy.unchanged else None
    if stored is not None:  # a redeploy found it serving already: the entity stays as it is
        guid = stored["entity"]["guid"]
        log.info("%s already serves as registered: Atlas entity %s left as it is", doc.qualified_name, guid)
        return {"guid": guid, "qualifiedName": doc.qualified_name, "url": hook.entity_url(guid)}
    ensure_model_type(hook)
    # The files first: the entity refers to them by qualifiedName, so they must exist when it arrives.
    artifacts = artifact_entities(doc, hook.cluster_name)
    locations = doc.deploy.inputs + doc.deploy.outputs
    datasets = [
        entity for _, entity in (dataset_reference(loc, hook.cluster_name) for loc in locations) if entity
    ]
    hook.upsert_entities(artifacts + datasets)
    head = record_event() if record_event is not None else None
    entity = model_entity(
        doc, doc.deploy.target, artifacts, cluster_name=hook.cluster_name, event_log_head=head
    )
    hook.upsert_entities([entity])
    stored = hook.get_entity(MODEL_TYPE, doc.qualified_name)
    if stored is None:
        raise AtlasError(f"Atlas accepted the entity {doc.qualified_name!r} but does not return it")
    guid = stored["entity"]["guid"]
    deployed_at = int(datetime.fromisoformat(doc.deploy.deployed_at).timestamp() * 1000)
    for previous in supersede(hook, doc.deploy.target, doc.qualified_name, ended_at=deployed_at):
        log.info("Marked %s superseded at %s", previous, doc.deploy.target)
    url = hook.entity_url(guid)
    log.info("Atlas entity %s (%s): %s", doc.qualified_name, guid, url)
    return {"guid": guid, "qualifiedName": doc.qualified_name, "url": url}
