"""The entities a deployment is registered as: the `model` entity, its archived files, its datasets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from model_governance.atlas import schema as s
from model_governance.metadata import DeploymentDocument


def reference(entity: dict[str, Any]) -> dict[str, Any]:
    """An entity as Atlas's references name it: its type and unique qualifiedName, and its guid when it has
    one (a temporary negative guid names an entity of the same request)."""
    ref = {
        "typeName": entity["typeName"],
        "uniqueAttributes": {s.QUALIFIED_NAME: entity["attributes"][s.QUALIFIED_NAME]},
    }
    if entity.get("guid"):
        ref["guid"] = entity["guid"]
    return ref


def artifact_entities(doc: DeploymentDocument, cluster_name: str) -> list[dict[str, Any]]:
    """The registry folder and every archived file, as Atlas's own `hdfs_path` (or `fs_path` in dev mode)."""
    registry = doc.registry
    if registry is None:
        raise ValueError("artifacts are registered only once the model is archived")
    on_hdfs = registry.url.startswith("hdfs://")
    entities = []
    for rel, size in [("", None)] + [(e.path, e.size) for e in doc.manifest]:
        url = f"{registry.url}/{rel}" if rel else registry.url
        path = f"{registry.path}/{rel}" if rel else registry.path
        attributes: dict[str, Any] = {
            s.QUALIFIED_NAME: f"{url}@{cluster_name}" if on_hdfs else url,
            s.NAME: rel or f"{doc.model.slug}/{doc.model.version}",
            s.PATH: url if on_hdfs else path,
            s.IS_FILE: bool(rel),
        }
        if size is not None:
            attributes[s.FILE_SIZE] = size
        if on_hdfs:
            attributes[s.CLUSTER_NAME] = cluster_name
        entities.append({"typeName": s.HDFS_PATH if on_hdfs else s.FS_PATH, "attributes": attributes})
    return entities


def dataset_reference(location: str, cluster_name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A batch job's input or output as an Atlas DataSet: (the reference, the entity to upsert or None).

    `hive:db.table` names a table that Atlas's Hive hook registered (`db.table@cluster`): referenced, never
    created here. `hdfs://…` is an `hdfs_path`, a local path or `file://…` an `fs_path`, both upserted.
    """
    if location.startswith("hive:"):
        table = location.removeprefix("hive:").lower()
        return {
            "typeName": s.HIVE_TABLE,
            "uniqueAttributes": {s.QUALIFIED_NAME: f"{table}@{cluster_name}"},
        }, None
    if location.startswith("hdfs://"):
        name = location.rsplit("/", 1)[-1]
        attributes = {
            s.QUALIFIED_NAME: f"{location}@{cluster_name}",
            s.NAME: name,
            s.PATH: location,
            s.CLUSTER_NAME: cluster_name,
        }
        entity = {"typeName": s.HDFS_PATH, "attributes": attributes}
    else:
        path = location.removeprefix("file://")
        name = path.rsplit("/", 1)[-1]
        entity = {
            "typeName": s.FS_PATH,
            "attributes": {s.QUALIFIED_NAME: f"file://{path}", s.NAME: name, s.PATH: path},
        }
    return reference(entity), entity


def model_entity(
    doc: DeploymentDocument,
    deploy_target: str,
    artifacts: list[dict[str, Any]] | None = None,
    status: str = s.DEPLOYED,
    cluster_name: str = "primary",
) -> dict[str, Any]:
    """The `model` entity for a deployed, archived model: every attribute from the deployment document."""
    if doc.deploy is None or doc.registry is None:
        raise ValueError("a model entity needs a deployment that is archived and serving")
    model, deploy = doc.model, doc.deploy
    attributes: dict[str, Any] = {
        s.QUALIFIED_NAME: doc.qualified_name,
        s.NAME: doc.deploy_name,
        s.DESCRIPTION: model.description,
        s.OWNER: model.owner,
        s.DEPLOY_DATETIME: deploy.deployed_at,
        s.DEPLOY_HOST_TYPE: deploy.host_type,
        s.DEPLOY_HOST_DETAIL: deploy.endpoint_url,
        s.DEPLOY_OBJ_SOURCE: deploy.serialized_object,
        s.MODEL_NAME_SEED: model.name,
        s.MODEL_VERSION_SEED: model.version,
        s.MODEL_TYPE_SEED: model.type,
        s.MODEL_DESCRIPTION: model.description,
        s.MODEL_OWNER: model.owner,
        s.MODEL_OWNER_LOB: model.owner_lob,
        s.MODEL_REGISTRY_URL: doc.registry.url,
        s.DEPLOY_STATUS: status,
        s.DEPLOY_TIME: int(datetime.fromisoformat(deploy.deployed_at).timestamp() * 1000),
        s.HOST_TYPE: deploy.host_type,
        s.ENDPOINT_URL: deploy.scoring_url,  # the exact URL predictions are asked for
        s.MODEL_NAME: model.name,
        s.MODEL_VERSION: model.version,
        s.MODEL_KIND: model.type,
        s.OWNER_LOB: model.owner_lob,
        s.SOURCE_LOCATION: doc.source.location,
        s.SOURCE_KIND: doc.source.kind,
        s.SOURCE_REVISION: doc.source.revision,
        s.SERIALIZED_OBJECT_SHA256: doc.executable_entry.sha256,
        s.REGISTRY_URL: doc.registry.url,
        s.DAG_ID: doc.dag_id,
        s.DAG_RUN_ID: doc.run_id,
        s.DEPLOY_TARGET: deploy_target,
        s.ARTIFACT_CHECKSUMS: {f"{doc.registry.path}/{e.path}": e.sha256 for e in doc.manifest},
    }
    attributes.update(lifecycle_attributes(doc))
    if deploy.inputs or deploy.outputs:  # batch scoring: lineage input -> model -> output
        attributes[s.INPUTS] = [dataset_reference(location, cluster_name)[0] for location in deploy.inputs]
        attributes[s.OUTPUTS] = [dataset_reference(location, cluster_name)[0] for location in deploy.outputs]
    entity: dict[str, Any] = {"typeName": s.MODEL_TYPE, "attributes": attributes}
    if artifacts:
        entity["relationshipAttributes"] = {s.ARTIFACTS: [reference(a) for a in artifacts]}
    return entity


def lifecycle_attributes(doc: DeploymentDocument) -> dict[str, Any]:
    """Who asked, who approved, what it rolled back, the owner's validation: only what the run recorded."""
    attributes: dict[str, Any] = {}
    if doc.requested_by:
        attributes[s.REQUESTED_BY] = doc.requested_by
    if doc.approval is not None:
        approval = doc.approval
        attributes[s.APPROVED_BY] = approval.by if approval.required else "not required"
        attributes[s.APPROVED_AT] = int(datetime.fromisoformat(approval.at).timestamp() * 1000)
        if approval.comment:
            attributes[s.APPROVAL_COMMENT] = approval.comment
    if doc.rollback_of:
        attributes[s.ROLLBACK_OF] = doc.rollback_of
    if doc.reason:
        attributes[s.DEPLOY_REASON] = doc.reason
    if doc.validation is not None:
        validation = doc.validation
        attributes[s.VALIDATION_STATUS] = validation.status
        attributes[s.VALIDATED_BY] = validation.by
        attributes[s.VALID_UNTIL] = validation.valid_until
        if validation.risk_tier:
            attributes[s.RISK_TIER] = validation.risk_tier
    return attributes
