"""Step 2d's logic: the `model` type made current, then one bulk call that upserts the archived files and
datasets, the deployment's entity (by its qualifiedName) and what it replaces at its target, marked
superseded; then the search waited for, so the registration is visible to `deployments` and `trace`."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from model_governance.atlas.entities import artifact_entities, dataset_reference, model_entity
from model_governance.atlas.queries import serving_at, settle_supersede, superseded_entity
from model_governance.atlas.schema import INPUTS, MODEL_TYPE, OUTPUTS, QUALIFIED_NAME, ensure_model_type
from model_governance.exceptions import AtlasError
from model_governance.metadata import DeploymentDocument

if TYPE_CHECKING:
    from model_governance.hooks.atlas import AtlasHook

log = logging.getLogger(__name__)


def register_deployment(hook: AtlasHook, doc: DeploymentDocument) -> dict[str, Any]:
    """Register an archived, serving deployment; its entity's guid, qualifiedName and web page."""
    if doc.deploy is None or doc.registry is None:
        raise AtlasError("only a model that is archived and serving is registered: deploy it first")
    qualified_name, target = doc.qualified_name, doc.deploy.target
    if doc.deploy.unchanged:  # a redeploy found it serving already: the entity stays as it is
        guid = _registered_guid(hook, doc)
        if guid is not None:
            log.info("%s already serves as registered: Atlas entity %s left as it is", qualified_name, guid)
            return {"guid": guid, "qualifiedName": qualified_name, "url": hook.entity_url(guid)}
    ensure_model_type(hook)
    # what serves at the target now, as the deploy step saw it (else asked here): superseded in the same call
    serving = doc.deploy.serving if doc.deploy.serving is not None else serving_at(hook, target)
    deployed_at = int(datetime.fromisoformat(doc.deploy.deployed_at).timestamp() * 1000)
    replaced = [
        superseded_entity(row, qualified_name, deployed_at)
        for row in serving
        if row.get(QUALIFIED_NAME) != qualified_name
    ]
    # One bulk call: the files (temporary negative guids, which the model entity refers to), the datasets,
    # the model entity, and the deployments it replaces. Atlas answers the guid each temporary one became.
    artifacts = artifact_entities(doc, hook.cluster_name)
    for number, artifact in enumerate(artifacts, start=2):
        artifact["guid"] = f"-{number}"
    locations = doc.deploy.inputs + doc.deploy.outputs
    datasets = [
        entity for _, entity in (dataset_reference(loc, hook.cluster_name) for loc in locations) if entity
    ]
    temporary = {}
    for number, dataset in enumerate(datasets, start=len(artifacts) + 2):
        dataset["guid"] = temporary[dataset["attributes"][QUALIFIED_NAME]] = f"-{number}"
    model = model_entity(doc, target, artifacts, cluster_name=hook.cluster_name)
    model["guid"] = "-1"
    for ref in model["attributes"].get(INPUTS, []) + model["attributes"].get(OUTPUTS, []):
        if ref["uniqueAttributes"][QUALIFIED_NAME] in temporary:
            ref["guid"] = temporary[ref["uniqueAttributes"][QUALIFIED_NAME]]
    answer = hook.upsert_entities(artifacts + datasets + [model] + replaced)
    guid = (answer.get("guidAssignments") or {}).get("-1")
    if guid is None:  # an Atlas that does not assign: read it back
        stored = hook.get_entity(MODEL_TYPE, qualified_name)
        if stored is None:
            raise AtlasError(f"Atlas accepted the entity {qualified_name!r} but does not return it")
        guid = stored["entity"]["guid"]
    done = frozenset(e["attributes"][QUALIFIED_NAME] for e in replaced)
    for previous in sorted(done):
        log.info("Marked %s superseded at %s", previous, target)
    for previous in settle_supersede(hook, target, qualified_name, deployed_at, done):
        log.info("Marked %s superseded at %s (registered meanwhile)", previous, target)
    url = hook.entity_url(guid)
    log.info("Atlas entity %s (%s): %s", qualified_name, guid, url)
    return {"guid": guid, "qualifiedName": qualified_name, "url": url}


def _registered_guid(hook: AtlasHook, doc: DeploymentDocument) -> str | None:
    """The guid of this deployment's entity: from what the deploy step saw serving, else read by its
    qualifiedName; None when Atlas has none (it is registered afresh)."""
    assert doc.deploy is not None
    for row in doc.deploy.serving or []:
        if row.get(QUALIFIED_NAME) == doc.qualified_name:
            return str(row["guid"])
    stored = hook.get_entity(MODEL_TYPE, doc.qualified_name)
    return None if stored is None else str(stored["entity"]["guid"])
