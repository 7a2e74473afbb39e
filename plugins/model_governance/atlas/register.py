"""Step 2d's logic: the `model` type made current, then one bulk call that upserts the archived files and
datasets, the deployment's entity (by its qualifiedName) and what it replaces at its target, marked
superseded (or rolled back, for a rollback); then the search waited for, so the registration is visible to
`deployments` and `trace`. Also the deployment's identity rule.

**A deployment's identity** (`deployment_qualified_name`): the first deployment of a version at a
target keeps the seed's qualifiedName, `<name>-v<version>@<host:port>`. When the entity of that name
has ended (superseded, rolled back, retired) and the version is deployed there again (a rollback, or an
ordinary redeploy of an older version), the new deployment is `<seed name>#<run key>`: history keeps
both serving periods, and a rerun of the same run updates its own entity, never a second one. A version
that already serves (`unchanged`) keeps the entity that records it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from model_governance.atlas import schema as s
from model_governance.atlas.entities import artifact_entities, dataset_reference, model_entity
from model_governance.atlas.queries import end_deployment, serving_at, settle_supersede, superseded_entity
from model_governance.atlas.schema import (
    INPUTS,
    MODEL_TYPE,
    OUTPUTS,
    QUALIFIED_NAME,
    ensure_model_type,
    recheck_model_type,
)
from model_governance.exceptions import AtlasError
from model_governance.metadata import DeploymentDocument

if TYPE_CHECKING:
    from model_governance.hooks.atlas import AtlasHook

log = logging.getLogger(__name__)


def deployment_qualified_name(
    hook: AtlasHook, doc: DeploymentDocument, serving: list[dict[str, Any]] | None = None
) -> str:
    """The qualifiedName this deployment is registered under (the rule in the module's docstring).
    `serving`: what serves at the target, as the deploy step saw it (else asked here when needed)."""
    if doc.deploy is None:
        raise AtlasError("only a model that serves has a deployment identity: deploy it first")
    seed = doc.qualified_name
    rows = serving if serving is not None else doc.deploy.serving
    if doc.deploy.unchanged:  # already serving as registered: the entity that records it
        for row in rows if rows is not None else serving_at(hook, doc.deploy.target):
            name = row.get(s.MODEL_NAME) or row.get(s.MODEL_NAME_SEED)
            version = row.get(s.MODEL_VERSION) or row.get(s.MODEL_VERSION_SEED)
            if (name, version) == (doc.model.name, doc.model.version):
                return str(row[QUALIFIED_NAME])
    if rows is not None and any(row.get(QUALIFIED_NAME) == seed for row in rows):
        return seed  # serving under the seed's name: updated in place
    if doc.registry is not None and doc.registry.first_archived:
        return seed  # archived by this run for the first time: no deployment of it can have ended
    stored = hook.get_entity(MODEL_TYPE, seed)
    if stored is None or stored["entity"]["attributes"].get(s.DEPLOY_STATUS) not in s.ENDED_STATUSES:
        return seed
    return f"{seed}#{doc.run_key}"


def register_deployment(
    hook: AtlasHook, doc: DeploymentDocument, record_event: Callable[[str], str] | None = None
) -> dict[str, Any]:
    """Register an archived, serving deployment; its entity's guid, qualifiedName and web page.

    `record_event(qualified_name)` appends the `deployed` event to the model's log and returns the line's
    sha256, kept on the entity as `eventLogHead`; it is called only when the entity is written (not for a
    deployment that already serves as registered), before it, so that Atlas never names a line the log
    lacks."""
    try:
        return _register(hook, doc, record_event)
    except AtlasError as exc:  # the type noted current by another process may be gone since (Atlas reset)
        if exc.status not in (400, 404) or not recheck_model_type(hook):
            raise
        log.info("Atlas's %r type was not as noted: checked it again, registering again", MODEL_TYPE)
        return _register(hook, doc, record_event)  # the event is appended once per run key


def _register(
    hook: AtlasHook, doc: DeploymentDocument, record_event: Callable[[str], str] | None
) -> dict[str, Any]:
    if doc.deploy is None or doc.registry is None:
        raise AtlasError("only a model that is archived and serving is registered: deploy it first")
    target = doc.deploy.target
    if doc.deploy.unchanged:  # a redeploy found it serving already: the entity stays as it is
        qualified_name = deployment_qualified_name(hook, doc)
        guid = _registered_guid(hook, doc, qualified_name)
        if guid is not None:
            log.info("%s already serves as registered: Atlas entity %s left as it is", qualified_name, guid)
            return {"guid": guid, "qualifiedName": qualified_name, "url": hook.entity_url(guid)}
    ensure_model_type(hook)
    # what serves at the target now, as the deploy step saw it (else asked here): superseded in the same call
    serving = doc.deploy.serving if doc.deploy.serving is not None else serving_at(hook, target)
    qualified_name = deployment_qualified_name(hook, doc, serving)
    if qualified_name != doc.qualified_name:
        log.info("%s served here before and ended: registered as %s", doc.qualified_name, qualified_name)
    deployed_at = int(datetime.fromisoformat(doc.deploy.deployed_at).timestamp() * 1000)
    replaced = [
        superseded_entity(row, qualified_name, deployed_at)
        for row in serving
        if row.get(QUALIFIED_NAME) != qualified_name
    ]
    rolled_back = {s.DEPLOY_STATUS: s.ROLLED_BACK, s.ENDED_BY: doc.requested_by, s.END_REASON: doc.reason}
    for entity in replaced:  # a rollback ended the one it replaced: rolled back, not superseded
        if doc.rollback_of and entity["attributes"][QUALIFIED_NAME] == doc.rollback_of:
            entity["attributes"].update(rolled_back)
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
    head = record_event(qualified_name) if record_event is not None else None  # before the entity naming it
    model = model_entity(doc, target, artifacts, cluster_name=hook.cluster_name, event_log_head=head)
    model["attributes"][QUALIFIED_NAME] = qualified_name
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
        log.info(
            "Marked %s %s at %s",
            previous,
            "rolled back" if previous == doc.rollback_of else "superseded",
            target,
        )
    # the search had not shown it serving (or a rerun): marked on its own, before anything supersedes it
    unmarked = bool(doc.rollback_of) and doc.rollback_of not in done | {qualified_name}
    if unmarked and end_deployment(
        hook,
        doc.rollback_of,
        s.ROLLED_BACK,
        ended_at=deployed_at,
        ended_by=doc.requested_by,
        reason=doc.reason,
        replaced_by=qualified_name,
    ):
        log.info("Marked %s rolled back at %s", doc.rollback_of, target)
    for previous in settle_supersede(hook, target, qualified_name, deployed_at, done):
        log.info("Marked %s superseded at %s (registered meanwhile)", previous, target)
    url = hook.entity_url(guid)
    log.info("Atlas entity %s (%s): %s", qualified_name, guid, url)
    return {"guid": guid, "qualifiedName": qualified_name, "url": url}


def _registered_guid(hook: AtlasHook, doc: DeploymentDocument, qualified_name: str) -> str | None:
    """The guid of this deployment's entity: from what the deploy step saw serving, else read by its
    qualifiedName; None when Atlas has none (it is registered afresh)."""
    assert doc.deploy is not None
    for row in doc.deploy.serving or []:
        if row.get(QUALIFIED_NAME) == qualified_name:
            return str(row["guid"])
    stored = hook.get_entity(MODEL_TYPE, qualified_name)
    return None if stored is None else str(stored["entity"]["guid"])
