"""The stakeholders' questions, answered from Atlas: which deployments, and what one deployment is made of.

Both use Atlas basic search with attribute filters (the DSL splits attribute names on `.`, so it cannot
filter on the seed's dotted attributes): they work against any Atlas, the stand-in included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from model_governance.atlas_types import ADDED_ATTRIBUTES, MODEL_TYPE, SEED_ATTRIBUTES
from model_governance.exceptions import AtlasError

RETURNED_ATTRIBUTES = ["qualifiedName", "name", "owner", "description", *SEED_ATTRIBUTES, *(name for name, _ in ADDED_ATTRIBUTES)]
UNKNOWN_TYPENAME = "ATLAS-400-00-00A"
_GUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# CLI filter -> the attribute it compares, and Atlas's operator
FILTERS = {
    "owner": ("owner", "="),
    "lob": ("ownerLob", "="),
    "name": ("modelName", "="),
    "version": ("modelVersion", "="),
    "host_type": ("hostType", "="),
    "endpoint": ("endpointUrl", "="),
    "status": ("deployStatus", "="),
    "target": ("deployTarget", "="),
    "since": ("deployTime", ">="),
    "until": ("deployTime", "<="),
}


def epoch_millis(value: str) -> int:
    """An ISO-8601 date or time (UTC when no zone is given) as Atlas's epoch milliseconds."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def list_deployments(hook: Any, limit: int = 100, **filters: str | None) -> list[dict[str, Any]]:
    """Deployments matching every given filter, newest first: guid, qualifiedName, status and every attribute."""
    if limit < 1:  # Atlas takes 0 as "no limit"
        raise ValueError(f"limit must be 1 or more, not {limit}")
    criteria = []
    for key, value in filters.items():
        if value is None:
            continue
        attribute, operator = FILTERS[key]
        if key in ("since", "until"):
            value = str(epoch_millis(value))
        criteria.append({"attributeName": attribute, "operator": operator, "attributeValue": value})
    query: dict[str, Any] = {
        "typeName": MODEL_TYPE,
        "excludeDeletedEntities": True,
        "attributes": RETURNED_ATTRIBUTES,
        "sortBy": "deployTime",
        "sortOrder": "DESCENDING",
        "limit": limit,
        "offset": 0,
    }
    if criteria:
        query["entityFilters"] = {"condition": "AND", "criterion": criteria}
    try:
        answer = hook.search_basic(query)
    except AtlasError as exc:
        if exc.error_code == UNKNOWN_TYPENAME:  # no `model` type yet: nothing was ever registered
            return []
        raise
    return [{"guid": e["guid"], "status": e.get("status"), **e.get("attributes", {})} for e in answer.get("entities") or []]


@dataclass
class Trace:
    deployment: dict[str, Any]
    artifacts: list[dict[str, Any]]  # role, path, location, sha256
    superseded: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "artifacts": self.artifacts, "superseded": self.superseded}


def artifact_role(path: str) -> str:
    if path == "README.md":
        return "readme"
    if path == "modelMetadata.txt":
        return "metadata"
    folders = {"code": "code", "trainingdata": "training data", "executable": "serialized model", "samples": "sample request"}
    return folders.get(path.split("/", 1)[0], "other")


def find_deployment(hook: Any, ref: str) -> dict[str, Any]:
    """A deployment by guid, qualifiedName, or name (`<model> v<version>` or the model name: the newest)."""
    if _GUID_RE.fullmatch(ref.lower()):  # guids are lower-case hex; one pasted in capitals is the same guid
        entity = hook.get_entity_by_guid(ref.lower())["entity"]
    else:
        found = hook.get_entity(MODEL_TYPE, ref)
        if found is not None:
            entity = found["entity"]
        else:
            for attribute in ("name", "modelName"):
                hits = hook.search_basic(
                    {
                        "typeName": MODEL_TYPE,
                        "excludeDeletedEntities": True,
                        "entityFilters": {"attributeName": attribute, "operator": "=", "attributeValue": ref},
                        "sortBy": "deployTime",
                        "sortOrder": "DESCENDING",
                        "limit": 1,
                    }
                ).get("entities")
                if hits:
                    entity = hook.get_entity_by_guid(hits[0]["guid"])["entity"]
                    break
            else:
                raise AtlasError(f"no model deployment in Atlas has the guid, qualifiedName or name {ref!r}")
    if entity.get("typeName") != MODEL_TYPE:
        raise AtlasError(f"{ref!r} is a {entity.get('typeName')}, not a model deployment")
    return entity


def trace(hook: Any, ref: str) -> Trace:
    """One deployment, its owner and project, its archived artifacts with sha256, and what it superseded."""
    entity = find_deployment(hook, ref)
    attributes = entity["attributes"]
    registry_url = attributes.get("registryUrl") or attributes.get("model.registry.url") or ""
    checksums: dict[str, str] = attributes.get("artifactChecksums") or {}
    prefix = urlsplit(registry_url).path.rstrip("/") + "/"  # checksums are keyed by path in the registry
    artifacts = []
    for path, sha256 in sorted(checksums.items()):
        rel = path.removeprefix(prefix)
        artifacts.append({"role": artifact_role(rel), "path": rel, "location": f"{registry_url}/{rel}", "sha256": sha256})
    linked = {ref.get("displayText") for ref in (entity.get("relationshipAttributes") or {}).get("artifacts") or []}
    for artifact in artifacts:
        artifact["linked_in_atlas"] = artifact["path"] in linked
    superseded = _superseded_by(hook, attributes["qualifiedName"])
    deployment = {"guid": entity["guid"], "status": entity.get("status"), **attributes}
    return Trace(deployment, artifacts, superseded)


def _superseded_by(hook: Any, qualified_name: str) -> list[dict[str, Any]]:
    answer = hook.search_basic(
        {
            "typeName": MODEL_TYPE,
            "excludeDeletedEntities": True,
            "entityFilters": {"attributeName": "supersededBy", "operator": "=", "attributeValue": qualified_name},
            "attributes": RETURNED_ATTRIBUTES,
            "sortBy": "deployTime",
            "sortOrder": "DESCENDING",
            "limit": 1000,
        }
    )
    return [{"guid": e["guid"], **e.get("attributes", {})} for e in answer.get("entities") or []]
