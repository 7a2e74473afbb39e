"""Step 2d's logic: the `model` type made current, the archived files and datasets upserted, the
deployment's entity created or updated by its qualifiedName, and what it replaced marked superseded (or
rolled back, for a rollback). Also the deployment's identity rule and a retirement's record.

**A deployment's identity** (`deployment_qualified_name`): the first deployment of a version at a
target keeps the seed's qualifiedName, `<name>-v<version>@<host:port>`. When the entity of that name
has ended (superseded, rolled back, retired) and the version is deployed there again (a rollback, or an
ordinary redeploy of an older version), the new deployment is `<seed name>#<run key>`: history keeps
both serving periods, and a rerun of the same run updates its own entity, never a second one. A version
that already serves (`unchanged`) keeps the entity that records it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from model_governance.atlas import schema as s
from model_governance.atlas.entities import artifact_entities, dataset_reference, model_entity
from model_governance.atlas.queries import current_deployment, end_deployment, supersede
from model_governance.atlas.schema import MODEL_TYPE, ensure_model_type
from model_governance.exceptions import AtlasError
from model_governance.metadata import DeploymentDocument

if TYPE_CHECKING:
    from model_governance.hooks.atlas import AtlasHook

log = logging.getLogger(__name__)


def deployment_qualified_name(hook: AtlasHook, doc: DeploymentDocument) -> str:
    """The qualifiedName this deployment is registered under (the rule in the module's docstring)."""
    if doc.deploy is None:
        raise AtlasError("only a model that serves has a deployment identity: deploy it first")
    seed = doc.qualified_name
    if doc.deploy.unchanged:  # already serving as registered: the entity that records it
        current = current_deployment(hook, doc.deploy.target)
        if (
            current is not None
            and current.model_name == doc.model.name
            and current.model_version == doc.model.version
        ):
            return current.qualified_name
    stored = hook.get_entity(MODEL_TYPE, seed)
    if stored is None or stored["entity"]["attributes"].get(s.DEPLOY_STATUS) not in s.ENDED_STATUSES:
        return seed
    return f"{seed}#{doc.run_key}"


def register_deployment(hook: AtlasHook, doc: DeploymentDocument) -> dict[str, Any]:
    """Register an archived, serving deployment; its entity's guid, qualifiedName and web page."""
    if doc.deploy is None or doc.registry is None:
        raise AtlasError("only a model that is archived and serving is registered: deploy it first")
    if doc.deploy.unchanged:  # a redeploy found it serving already: the entity stays as it is
        qualified_name = deployment_qualified_name(hook, doc)
        stored = hook.get_entity(MODEL_TYPE, qualified_name)
        if stored is not None:
            guid = stored["entity"]["guid"]
            log.info("%s already serves as registered: Atlas entity %s left as it is", qualified_name, guid)
            return {"guid": guid, "qualifiedName": qualified_name, "url": hook.entity_url(guid)}
    ensure_model_type(hook)
    qualified_name = deployment_qualified_name(hook, doc)
    if qualified_name != doc.qualified_name:
        log.info(
            "%s served here before and ended: this deployment is registered as %s",
            doc.qualified_name,
            qualified_name,
        )
    # The files first: the entity refers to them by qualifiedName, so they must exist when it arrives.
    artifacts = artifact_entities(doc, hook.cluster_name)
    locations = doc.deploy.inputs + doc.deploy.outputs
    datasets = [
        entity for _, entity in (dataset_reference(loc, hook.cluster_name) for loc in locations) if entity
    ]
    hook.upsert_entities(artifacts + datasets)
    entity = model_entity(doc, doc.deploy.target, artifacts, cluster_name=hook.cluster_name)
    entity["attributes"][s.QUALIFIED_NAME] = qualified_name
    hook.upsert_entities([entity])
    stored = hook.get_entity(MODEL_TYPE, qualified_name)
    if stored is None:
        raise AtlasError(f"Atlas accepted the entity {qualified_name!r} but does not return it")
    guid = stored["entity"]["guid"]
    deployed_at = int(datetime.fromisoformat(doc.deploy.deployed_at).timestamp() * 1000)
    # a rollback ended the one it replaced: marked before `supersede`, which would mark it superseded
    if (
        doc.rollback_of
        and doc.rollback_of != qualified_name
        and end_deployment(
            hook,
            doc.rollback_of,
            s.ROLLED_BACK,
            ended_at=deployed_at,
            ended_by=doc.requested_by,
            reason=doc.reason,
            replaced_by=qualified_name,
        )
    ):
        log.info("Marked %s rolled back by %s", doc.rollback_of, qualified_name)
    for previous in supersede(hook, doc.deploy.target, qualified_name, ended_at=deployed_at):
        log.info("Marked %s superseded at %s", previous, doc.deploy.target)
    url = hook.entity_url(guid)
    log.info("Atlas entity %s (%s): %s", qualified_name, guid, url)
    return {"guid": guid, "qualifiedName": qualified_name, "url": url}
