"""The Atlas `model` entity type (superType `Process`), its upgrades, and the entity built from a deployment.

The seed's typedef redeclared `qualifiedName`, `name`, `inputs` and `outputs`, which `Process` already
has; Atlas 2.3+ refuses that (ATLAS-400-00-09E), so they are inherited here. The seed's dotted attribute
names (`model.version`…) stay for existing users; every later attribute has a name without dots, because
Atlas's DSL splits names on `.` and could not filter on them.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from model_governance.exceptions import AtlasError
from model_governance.metadata import DeploymentDocument

log = logging.getLogger(__name__)

MODEL_TYPE = "model"
TYPE_VERSION = "2.0"
ARTIFACTS_RELATIONSHIP = "model_artifacts"
DEPLOYED, SUPERSEDED, RETIRED = "deployed", "superseded", "retired"

SEED_ATTRIBUTES = (
    "deploy.datetime",
    "deploy.host.type",
    "deploy.host.detail",
    "deploy.obj.source",
    "model.name",
    "model.version",
    "model.type",
    "model.description",
    "model.owner",
    "model.owner.lob",
    "model.registry.url",
)

# Added after the seed: optional, so that an existing `model` type takes them with a plain update.
ADDED_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("deployStatus", "string"),  # deployed | superseded | retired
    ("deployTime", "date"),  # deploy.datetime as a date, for time-range searches
    ("hostType", "string"),
    ("endpointUrl", "string"),  # the scoring URL: legacy /transform, spring-boot /models/<name>/transform
    ("modelName", "string"),
    ("modelVersion", "string"),
    ("modelType", "string"),
    ("ownerLob", "string"),
    ("sourceLocation", "string"),
    ("sourceKind", "string"),
    ("sourceRevision", "string"),  # commit SHA, archive sha256, or the folder manifest's sha256
    ("serializedObjectSha256", "string"),
    ("registryUrl", "string"),
    ("dagId", "string"),
    ("dagRunId", "string"),
    ("deployTarget", "string"),  # what one deployment replaces: the serving host (legacy) or host + model name
    ("supersededBy", "string"),  # qualifiedName of the deployment that replaced this one at its target
    ("artifactChecksums", "map<string,string>"),  # registry path -> sha256, for every archived file
)


def _attribute(name: str, type_name: str = "string", optional: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "typeName": type_name,
        "cardinality": "SINGLE",
        "isUnique": False,
        "isOptional": optional,
        "isIndexable": True,
    }


def model_typedef() -> dict[str, Any]:
    """The current `model` entity def."""
    return {
        "category": "ENTITY",
        "name": MODEL_TYPE,
        "description": "A deployment of a machine-learning model, registered by model-governance",
        "typeVersion": TYPE_VERSION,
        "superTypes": ["Process"],
        "attributeDefs": [_attribute(name) for name in SEED_ATTRIBUTES]
        + [_attribute(name, type_name, optional=True) for name, type_name in ADDED_ATTRIBUTES],
    }


def artifacts_relationshipdef() -> dict[str, Any]:
    """model.artifacts <-> fs_path.modelDeployments: click from a deployment to its archived files."""
    return {
        "category": "RELATIONSHIP",
        "name": ARTIFACTS_RELATIONSHIP,
        "description": "The archived artifacts (registry folder, README, code, training data, serialized model) of a model deployment",
        "typeVersion": "1.0",
        "relationshipCategory": "ASSOCIATION",
        "propagateTags": "NONE",
        "endDef1": {"type": MODEL_TYPE, "name": "artifacts", "isContainer": False, "cardinality": "SET", "isLegacyAttribute": False},
        "endDef2": {"type": "fs_path", "name": "modelDeployments", "isContainer": False, "cardinality": "SET", "isLegacyAttribute": False},
    }


def ensure_model_type(hook: Any) -> str:
    """Create the `model` type, or add what an older one lacks; returns "created", "upgraded" or "current"."""
    result = _ensure_entity_def(hook)
    if hook.get_typedef(ARTIFACTS_RELATIONSHIP) is None:
        try:
            hook.create_typedefs({"relationshipDefs": [artifacts_relationshipdef()]})
        except AtlasError as exc:
            if exc.status != 409:
                raise
        result = "created" if result == "created" else "upgraded"
    return result


def _ensure_entity_def(hook: Any) -> str:
    wanted = model_typedef()
    existing = hook.get_typedef(MODEL_TYPE)
    if existing is None:
        try:
            hook.create_typedefs({"entityDefs": [wanted]})
            log.info("Created the Atlas type %r version %s", MODEL_TYPE, TYPE_VERSION)
            return "created"
        except AtlasError as exc:
            if exc.status != 409:  # another run created it meanwhile: check it like any existing one
                raise
            existing = hook.get_typedef(MODEL_TYPE)
    if existing.get("category", "ENTITY") != "ENTITY" or "Process" not in existing.get("superTypes", []):
        raise AtlasError(f"Atlas already has a type {MODEL_TYPE!r} that is not an entity type with superType Process; it cannot be upgraded")
    have = {a["name"]: a for a in existing.get("attributeDefs", [])}
    missing = []
    for attr in wanted["attributeDefs"]:
        current = have.get(attr["name"])
        if current is None:
            missing.append(attr)
        elif current.get("typeName") != attr["typeName"]:
            raise AtlasError(
                f"Atlas type {MODEL_TYPE!r} attribute {attr['name']!r} is {current.get('typeName')}, "
                f"this version needs {attr['typeName']}: it cannot be upgraded in place"
            )
    if not missing:
        return "current"
    upgraded = dict(existing)
    # New attributes must be optional: Atlas refuses to add a mandatory one to a type that has entities.
    upgraded["attributeDefs"] = existing["attributeDefs"] + [dict(a, isOptional=True) for a in missing]
    upgraded["typeVersion"] = TYPE_VERSION
    hook.update_typedefs({"entityDefs": [upgraded]})
    log.info("Upgraded the Atlas type %r from %s to %s: added %s", MODEL_TYPE, existing.get("typeVersion"), TYPE_VERSION, ", ".join(a["name"] for a in missing))
    return "upgraded"


def artifact_entities(doc: DeploymentDocument, cluster_name: str) -> list[dict[str, Any]]:
    """The registry folder and every archived file, as Atlas's own `hdfs_path` (or `fs_path` in dev mode)."""
    registry = doc.registry
    assert registry is not None
    on_hdfs = registry.url.startswith("hdfs://")
    entities = []
    for rel, size in [("", None)] + [(e.path, e.size) for e in doc.manifest]:
        url = f"{registry.url}/{rel}" if rel else registry.url
        path = f"{registry.path}/{rel}" if rel else registry.path
        attributes: dict[str, Any] = {
            "qualifiedName": f"{url}@{cluster_name}" if on_hdfs else url,
            "name": rel or f"{doc.model.slug}/{doc.model.version}",
            "path": url if on_hdfs else path,
            "isFile": bool(rel),
        }
        if size is not None:
            attributes["fileSize"] = size
        if on_hdfs:
            attributes["clusterName"] = cluster_name
        entities.append({"typeName": "hdfs_path" if on_hdfs else "fs_path", "attributes": attributes})
    return entities


def dataset_reference(location: str, cluster_name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A batch job's input or output as an Atlas DataSet: (the reference, the entity to upsert or None).

    `hive:db.table` names a table that Atlas's Hive hook registered (`db.table@cluster`): referenced, never
    created here. `hdfs://…` is an `hdfs_path`, a local path or `file://…` an `fs_path`, both upserted.
    """
    if location.startswith("hive:"):
        table = location.removeprefix("hive:").lower()
        return {"typeName": "hive_table", "uniqueAttributes": {"qualifiedName": f"{table}@{cluster_name}"}}, None
    if location.startswith("hdfs://"):
        entity = {"typeName": "hdfs_path", "attributes": {"qualifiedName": f"{location}@{cluster_name}", "name": location.rsplit("/", 1)[-1],
                                                          "path": location, "clusterName": cluster_name}}
    else:
        path = location.removeprefix("file://")
        entity = {"typeName": "fs_path", "attributes": {"qualifiedName": f"file://{path}", "name": path.rsplit("/", 1)[-1], "path": path}}
    return reference(entity), entity


def reference(entity: dict[str, Any]) -> dict[str, Any]:
    """An entity as Atlas's references name it: its type and unique qualifiedName."""
    return {"typeName": entity["typeName"], "uniqueAttributes": {"qualifiedName": entity["attributes"]["qualifiedName"]}}


def model_entity(doc: DeploymentDocument, deploy_target: str, artifacts: list[dict[str, Any]] | None = None, status: str = DEPLOYED,
                 cluster_name: str = "primary") -> dict[str, Any]:
    """The `model` entity for a deployed, archived model: every attribute from the deployment document."""
    if doc.deploy is None or doc.registry is None:
        raise ValueError("a model entity needs a deployment that is archived and serving")
    model, deploy = doc.model, doc.deploy
    attributes: dict[str, Any] = {
        "qualifiedName": doc.qualified_name,
        "name": doc.deploy_name,
        "description": model.description,
        "owner": model.owner,
        "deploy.datetime": deploy.deployed_at,
        "deploy.host.type": deploy.host_type,
        "deploy.host.detail": deploy.endpoint_url,
        "deploy.obj.source": deploy.serialized_object,
        "model.name": model.name,
        "model.version": model.version,
        "model.type": model.type,
        "model.description": model.description,
        "model.owner": model.owner,
        "model.owner.lob": model.owner_lob,
        "model.registry.url": doc.registry.url,
        "deployStatus": status,
        "deployTime": int(datetime.fromisoformat(deploy.deployed_at).timestamp() * 1000),
        "hostType": deploy.host_type,
        "endpointUrl": deploy.scoring_url,  # the exact URL predictions are asked for
        "modelName": model.name,
        "modelVersion": model.version,
        "modelType": model.type,
        "ownerLob": model.owner_lob,
        "sourceLocation": doc.source.location,
        "sourceKind": doc.source.kind,
        "sourceRevision": doc.source.revision,
        "serializedObjectSha256": doc.executable_entry.sha256,
        "registryUrl": doc.registry.url,
        "dagId": doc.dag_id,
        "dagRunId": doc.run_id,
        "deployTarget": deploy_target,
        "artifactChecksums": {f"{doc.registry.path}/{e.path}": e.sha256 for e in doc.manifest},
    }
    if deploy.inputs or deploy.outputs:  # batch scoring: lineage input -> model -> output
        attributes["inputs"] = [dataset_reference(location, cluster_name)[0] for location in deploy.inputs]
        attributes["outputs"] = [dataset_reference(location, cluster_name)[0] for location in deploy.outputs]
    entity: dict[str, Any] = {"typeName": MODEL_TYPE, "attributes": attributes}
    if artifacts:
        entity["relationshipAttributes"] = {"artifacts": [reference(a) for a in artifacts]}
    return entity
