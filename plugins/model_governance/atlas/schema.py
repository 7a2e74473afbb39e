"""The Atlas `model` entity type (superType `Process`): its name, every attribute name, and its upgrades.

The seed's typedef redeclared `qualifiedName`, `name`, `inputs` and `outputs`, which `Process` already
has; Atlas 2.3+ refuses that (ATLAS-400-00-09E), so they are inherited here. The seed's dotted attribute
names (`model.version`…) stay for existing users; every later attribute has a name without dots, because
Atlas's DSL splits names on `.` and could not filter on them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_governance.exceptions import AtlasError

if TYPE_CHECKING:
    from model_governance.hooks.atlas import AtlasHook

log = logging.getLogger(__name__)

# -- type names -----------------------------------------------------------------------------------------
MODEL_TYPE = "model"
TYPE_VERSION = "3.0"
ARTIFACTS_RELATIONSHIP = "model_artifacts"
HDFS_PATH, FS_PATH, HIVE_TABLE, PROCESS = "hdfs_path", "fs_path", "hive_table", "Process"
# deployStatus: serving now, or how a deployment ended (replaced by another, by a rollback, or retired)
DEPLOYED, SUPERSEDED, ROLLED_BACK, RETIRED = "deployed", "superseded", "rolled_back", "retired"
ENDED_STATUSES = (SUPERSEDED, ROLLED_BACK, RETIRED)

# -- attributes `model` inherits (Referenceable, Asset, Process) ------------------------------------------
QUALIFIED_NAME, NAME, DESCRIPTION, OWNER = "qualifiedName", "name", "description", "owner"
INPUTS, OUTPUTS = "inputs", "outputs"
# the `fs_path`/`hdfs_path` attributes this project sets
PATH, IS_FILE, FILE_SIZE, CLUSTER_NAME = "path", "isFile", "fileSize", "clusterName"
# the relationship's ends: model.artifacts <-> fs_path.modelDeployments
ARTIFACTS, MODEL_DEPLOYMENTS = "artifacts", "modelDeployments"

# -- the seed's attributes (dotted names, kept for existing users) ----------------------------------------
DEPLOY_DATETIME = "deploy.datetime"
DEPLOY_HOST_TYPE = "deploy.host.type"
DEPLOY_HOST_DETAIL = "deploy.host.detail"
DEPLOY_OBJ_SOURCE = "deploy.obj.source"
MODEL_NAME_SEED = "model.name"
MODEL_VERSION_SEED = "model.version"
MODEL_TYPE_SEED = "model.type"
MODEL_DESCRIPTION = "model.description"
MODEL_OWNER = "model.owner"
MODEL_OWNER_LOB = "model.owner.lob"
MODEL_REGISTRY_URL = "model.registry.url"
SEED_ATTRIBUTES = (
    DEPLOY_DATETIME,
    DEPLOY_HOST_TYPE,
    DEPLOY_HOST_DETAIL,
    DEPLOY_OBJ_SOURCE,
    MODEL_NAME_SEED,
    MODEL_VERSION_SEED,
    MODEL_TYPE_SEED,
    MODEL_DESCRIPTION,
    MODEL_OWNER,
    MODEL_OWNER_LOB,
    MODEL_REGISTRY_URL,
)

# -- added after the seed: optional, so that an existing `model` type takes them with a plain update ------
DEPLOY_STATUS = "deployStatus"  # deployed | superseded | rolled_back | retired
DEPLOY_TIME = "deployTime"  # deploy.datetime as a date, for time-range searches
HOST_TYPE = "hostType"
ENDPOINT_URL = "endpointUrl"  # the scoring URL: legacy /transform, spring-boot /models/<name>/transform
MODEL_NAME = "modelName"
MODEL_VERSION = "modelVersion"
MODEL_KIND = "modelType"
OWNER_LOB = "ownerLob"
SOURCE_LOCATION = "sourceLocation"
SOURCE_KIND = "sourceKind"
SOURCE_REVISION = "sourceRevision"  # commit SHA, archive sha256, or the folder manifest's sha256
SERIALIZED_OBJECT_SHA256 = "serializedObjectSha256"
REGISTRY_URL = "registryUrl"
DAG_ID = "dagId"
DAG_RUN_ID = "dagRunId"
DEPLOY_TARGET = "deployTarget"  # what one deployment replaces: the serving host (legacy) or host + model name
SUPERSEDED_BY = "supersededBy"  # qualifiedName of the deployment that replaced this one at its target
ARTIFACT_CHECKSUMS = "artifactChecksums"  # registry path -> sha256, for every archived file
# the lifecycle (type version 3.0): who asked and who approved, how a deployment ended, its validation
REQUESTED_BY = "requestedBy"  # the Airflow user who triggered the run, or "scheduler"
APPROVED_BY = "approvedBy"  # the approver's user name, or "not required: <why>" when approval was skipped
APPROVED_AT = "approvedAt"
APPROVAL_COMMENT = "approvalComment"
ROLLBACK_OF = "rollbackOf"  # qualifiedName of the deployment a rollback replaced
DEPLOY_REASON = "deployReason"  # the reason given for a rollback
ENDED_AT = "endedAt"  # when it stopped serving: superseded, rolled back or retired
ENDED_BY = "endedBy"  # the user who rolled it back or retired it, or the run that superseded it
END_REASON = "endReason"
VALIDATION_STATUS = "validationStatus"  # model.validation.status, when the owner recorded a validation
VALIDATED_BY = "validatedBy"
VALID_UNTIL = "validUntil"  # ISO date
RISK_TIER = "riskTier"
EVENT_LOG_HEAD = "eventLogHead"  # sha256 of the model's event-log line that recorded this deployment
ADDED_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    (DEPLOY_STATUS, "string"),
    (DEPLOY_TIME, "date"),
    (HOST_TYPE, "string"),
    (ENDPOINT_URL, "string"),
    (MODEL_NAME, "string"),
    (MODEL_VERSION, "string"),
    (MODEL_KIND, "string"),
    (OWNER_LOB, "string"),
    (SOURCE_LOCATION, "string"),
    (SOURCE_KIND, "string"),
    (SOURCE_REVISION, "string"),
    (SERIALIZED_OBJECT_SHA256, "string"),
    (REGISTRY_URL, "string"),
    (DAG_ID, "string"),
    (DAG_RUN_ID, "string"),
    (DEPLOY_TARGET, "string"),
    (SUPERSEDED_BY, "string"),
    (ARTIFACT_CHECKSUMS, "map<string,string>"),
    (REQUESTED_BY, "string"),
    (APPROVED_BY, "string"),
    (APPROVED_AT, "date"),
    (APPROVAL_COMMENT, "string"),
    (ROLLBACK_OF, "string"),
    (DEPLOY_REASON, "string"),
    (ENDED_AT, "date"),
    (ENDED_BY, "string"),
    (END_REASON, "string"),
    (VALIDATION_STATUS, "string"),
    (VALIDATED_BY, "string"),
    (VALID_UNTIL, "string"),
    (RISK_TIER, "string"),
    (EVENT_LOG_HEAD, "string"),
)
# what searches ask Atlas to return: every attribute of a deployment
RETURNED_ATTRIBUTES = [
    QUALIFIED_NAME,
    NAME,
    OWNER,
    DESCRIPTION,
    *SEED_ATTRIBUTES,
    *(n for n, _ in ADDED_ATTRIBUTES),
]


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
        "superTypes": [PROCESS],
        "attributeDefs": [_attribute(name) for name in SEED_ATTRIBUTES]
        + [_attribute(name, type_name, optional=True) for name, type_name in ADDED_ATTRIBUTES],
    }


def artifacts_relationshipdef() -> dict[str, Any]:
    """model.artifacts <-> fs_path.modelDeployments: click from a deployment to its archived files."""
    end = {"isContainer": False, "cardinality": "SET", "isLegacyAttribute": False}
    return {
        "category": "RELATIONSHIP",
        "name": ARTIFACTS_RELATIONSHIP,
        "description": (
            "The archived artifacts (registry folder, README, code, training data, serialized model) "
            "of a model deployment"
        ),
        "typeVersion": "1.0",
        "relationshipCategory": "ASSOCIATION",
        "propagateTags": "NONE",
        "endDef1": {"type": MODEL_TYPE, "name": ARTIFACTS, **end},
        "endDef2": {"type": FS_PATH, "name": MODEL_DEPLOYMENTS, **end},
    }


# Atlas servers (by URL) whose types this process has seen current: a type is checked once per process.
_CURRENT_AT: set[str] = set()
# ... and once an hour per machine: each task of a real executor is a new process, which would otherwise
# ask again on every deployment. A note names the server and the type version it found there; a write the
# type turns out not to fit re-checks at once (`recheck_model_type`), so a stale note costs one retry.
TYPE_NOTE_SECONDS = 3600


def type_notes_dir() -> Path:
    """Where the notes live: `$MODEL_GOVERNANCE_CACHE/atlas-types`, else `~/.cache/model-governance/...`."""
    root = os.environ.get("MODEL_GOVERNANCE_CACHE") or Path.home() / ".cache" / "model-governance"
    return Path(root) / "atlas-types"


def _note_path(url: str) -> Path:
    return type_notes_dir() / f"{hashlib.sha256(url.encode()).hexdigest()[:24]}.json"


def _noted_current(url: str) -> bool:
    try:
        note = json.loads(_note_path(url).read_text())
    except (OSError, ValueError):
        return False
    fresh = 0 <= time.time() - float(note.get("checkedAt", 0)) < TYPE_NOTE_SECONDS
    return fresh and note.get("url") == url and note.get("typeVersion") == TYPE_VERSION


def _note_current(url: str) -> None:
    _CURRENT_AT.add(url)
    path = _note_path(url)
    try:  # written whole under another name, then renamed: a reader never sees half a note
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps({"url": url, "typeVersion": TYPE_VERSION, "checkedAt": time.time()}))
        os.replace(partial, path)
    except OSError as exc:  # a read-only home: every process checks for itself
        log.debug("Could not note the checked Atlas type at %s: %s", path, exc)


def forget_model_type(url: str) -> None:
    """Check the type again at the next deployment (this process's memory and the machine's note)."""
    _CURRENT_AT.discard(url)
    with contextlib.suppress(OSError):
        _note_path(url).unlink(missing_ok=True)


def recheck_model_type(hook: AtlasHook) -> bool:
    """After Atlas refused a write: check the type afresh; True when that created or upgraded it (the write
    is worth one retry), False when the type was current and the refusal is about something else."""
    forget_model_type(hook.url)
    return ensure_model_type(hook) != "current"


def ensure_model_type(hook: AtlasHook) -> str:
    """Create the `model` type, or add what an older one lacks; returns "created", "upgraded" or "current".

    Once per process and Atlas server, and once an hour per machine (a note): types are only ever added
    to, so a current type stays current. One GET when the type is current (Atlas lists the `artifacts`
    relationship among the entity def's relationshipAttributeDefs), one POST for both defs when neither
    exists."""
    if hook.url in _CURRENT_AT:
        return "current"
    if _noted_current(hook.url):
        _CURRENT_AT.add(hook.url)
        return "current"
    existing = hook.get_typedef(MODEL_TYPE)
    if existing is None:
        try:
            hook.create_typedefs(
                {"entityDefs": [model_typedef()], "relationshipDefs": [artifacts_relationshipdef()]}
            )
            log.info("Created the Atlas type %r version %s", MODEL_TYPE, TYPE_VERSION)
            _note_current(hook.url)
            return "created"
        except AtlasError as exc:
            if exc.status != 409:  # another run created it meanwhile: check it like any existing one
                raise
            existing = hook.get_typedef(MODEL_TYPE)
            if existing is None:
                raise
    result = _ensure_entity_def(hook, existing)
    if not _has_artifacts_relationship(existing) and hook.get_typedef(ARTIFACTS_RELATIONSHIP) is None:
        try:
            hook.create_typedefs({"relationshipDefs": [artifacts_relationshipdef()]})
        except AtlasError as exc:
            if exc.status != 409:
                raise
        result = "upgraded"
    _note_current(hook.url)
    return result


def _has_artifacts_relationship(entity_def: dict[str, Any]) -> bool:
    return any(
        d.get("name") == ARTIFACTS and d.get("relationshipTypeName") == ARTIFACTS_RELATIONSHIP
        for d in entity_def.get("relationshipAttributeDefs") or []
    )


def _ensure_entity_def(hook: AtlasHook, existing: dict[str, Any]) -> str:
    wanted = model_typedef()
    if existing.get("category", "ENTITY") != "ENTITY" or PROCESS not in existing.get("superTypes", []):
        raise AtlasError(
            f"Atlas already has a type {MODEL_TYPE!r} that is not an entity type with superType Process; "
            "it cannot be upgraded"
        )
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
    log.info(
        "Upgraded the Atlas type %r from %s to %s: added %s",
        MODEL_TYPE,
        existing.get("typeVersion"),
        TYPE_VERSION,
        ", ".join(a["name"] for a in missing),
    )
    return "upgraded"
