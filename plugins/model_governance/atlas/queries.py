"""The stakeholders' questions, answered from Atlas, and the one status change this project makes.

Every search is an Atlas basic search with attribute filters, built by `search_body` (the DSL splits
attribute names on `.`, so it cannot filter on the seed's dotted attributes): they work against any Atlas,
the stand-in included.

Atlas's search index is eventually consistent (the distribution sets `solr.wait-searcher=false`): a search
may not yet see an entity written a moment ago, while reads by guid or unique attribute always do. So
`supersede` waits until the search shows the deployment just written (every earlier write then shows too),
re-reads each hit by guid before changing it, and returns only once its own changes are searchable: a
registration is finished when `deployments`, `trace` and the next deployment's search can see it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from model_governance.atlas import schema as s
from model_governance.exceptions import AtlasError

if TYPE_CHECKING:
    from model_governance.hooks.atlas import AtlasHook

log = logging.getLogger(__name__)

UNKNOWN_TYPENAME = "ATLAS-400-00-00A"
SEARCH_WAIT = 30.0  # seconds a write may take to reach Atlas's search index before we go on without it
_GUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# CLI filter -> the attribute it compares, and Atlas's operator
FILTERS = {
    "owner": (s.OWNER, "="),
    "lob": (s.OWNER_LOB, "="),
    "name": (s.MODEL_NAME, "="),
    "version": (s.MODEL_VERSION, "="),
    "host_type": (s.HOST_TYPE, "="),
    "endpoint": (s.ENDPOINT_URL, "="),
    "status": (s.DEPLOY_STATUS, "="),
    "target": (s.DEPLOY_TARGET, "="),
    "since": (s.DEPLOY_TIME, ">="),
    "until": (s.DEPLOY_TIME, "<="),
}


def search_body(
    criteria: list[tuple[str, str, str]], limit: int = 100, offset: int = 0, attributes: bool = True
) -> dict[str, Any]:
    """The one basic-search body: `model` entities matching every (attribute, operator, value), not deleted,
    newest first, with every attribute of a deployment returned."""
    body: dict[str, Any] = {
        "typeName": s.MODEL_TYPE,
        "excludeDeletedEntities": True,
        "sortBy": s.DEPLOY_TIME,
        "sortOrder": "DESCENDING",
        "limit": limit,
        "offset": offset,
    }
    if attributes:
        body["attributes"] = s.RETURNED_ATTRIBUTES
    if criteria:
        body["entityFilters"] = {
            "condition": "AND",
            "criterion": [{"attributeName": a, "operator": op, "attributeValue": v} for a, op, v in criteria],
        }
    return body


def search_all(
    hook: AtlasHook, criteria: list[tuple[str, str, str]], page: int = 100
) -> list[dict[str, Any]]:
    """Every entity header a basic search finds, page by page."""
    found: list[dict[str, Any]] = []
    while True:
        answer = hook.search_basic(search_body(criteria, limit=page, offset=len(found)))
        entities = answer.get("entities") or []
        found.extend(entities)
        if len(entities) < page:
            return found


def search_until_seen(
    hook: AtlasHook, criteria: list[tuple[str, str, str]], expected: set[str], timeout: float = SEARCH_WAIT
) -> list[dict[str, Any]]:
    """`search_all`, repeated (backing off) until every qualifiedName in `expected` is among the hits, or
    `timeout` seconds have passed; the last hits."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        found = search_all(hook, criteria)
        missing = expected - {h.get("attributes", {}).get(s.QUALIFIED_NAME) for h in found}
        if not missing:
            return found
        if time.monotonic() >= deadline:
            log.warning(
                "Atlas's search does not show %s after %.0f s: going on without", sorted(missing), timeout
            )
            return found
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def epoch_millis(value: str) -> int:
    """An ISO-8601 date or time (UTC when no zone is given) as Atlas's epoch milliseconds."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


DEPLOYMENTS_PAGE = 250  # entities per search call when listing: about 5 MiB of rows (measured: `make bench`)


def iter_deployments(
    hook: AtlasHook, limit: int = 100, page: int = DEPLOYMENTS_PAGE, **filters: str | None
) -> Iterator[dict[str, Any]]:
    """Deployments matching every given filter, newest first: guid, qualifiedName, status, every attribute.

    One search call per `page` entities, asked for as they are read: however many there are, one page of
    them is in memory. A deployment registered while the pages are read shifts the later pages; the rows
    of the page before that come round again are skipped.
    """
    if limit < 1:  # Atlas takes 0 as "no limit"
        raise ValueError(f"limit must be 1 or more, not {limit}")
    if page < 1:
        raise ValueError(f"page must be 1 or more, not {page}")
    criteria = []
    for key, value in filters.items():
        if value is None:
            continue
        attribute, operator = FILTERS[key]
        criteria.append(
            (attribute, operator, str(epoch_millis(value)) if key in ("since", "until") else value)
        )
    given, offset, previous = 0, 0, set[str]()
    while given < limit:
        asked = min(page, limit - given)
        try:
            answer = hook.search_basic(search_body(criteria, limit=asked, offset=offset))
        except AtlasError as exc:
            if exc.error_code == UNKNOWN_TYPENAME:  # no `model` type yet: nothing was ever registered
                return
            raise
        entities = answer.get("entities") or []
        for e in entities:
            if e["guid"] in previous or given >= limit:
                continue
            given += 1
            yield {"guid": e["guid"], "status": e.get("status"), **e.get("attributes", {})}
        if len(entities) < asked:
            return
        offset += len(entities)
        previous = {e["guid"] for e in entities}


def list_deployments(hook: AtlasHook, limit: int = 100, **filters: str | None) -> list[dict[str, Any]]:
    """`iter_deployments` as a list, for callers that want them all at once (`current_deployment`: one)."""
    return list(iter_deployments(hook, limit=limit, page=DEPLOYMENTS_PAGE, **filters))


@dataclass(frozen=True)
class DeploymentRecord:
    """What Atlas says of one deployment, as the deploy step needs it (a redeploy check, a rollback)."""

    guid: str
    qualified_name: str
    model_name: str
    model_version: str
    deployed_at: str
    registry_url: str
    serialized_object: str  # the bundle's file name in the version's executable/ folder
    serialized_object_sha256: str | None
    artifact_checksums: dict[str, str]  # registry path -> sha256

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DeploymentRecord:
        return cls(
            guid=row["guid"],
            qualified_name=row[s.QUALIFIED_NAME],
            model_name=row.get(s.MODEL_NAME) or row.get(s.MODEL_NAME_SEED) or "",
            model_version=row.get(s.MODEL_VERSION) or row.get(s.MODEL_VERSION_SEED) or "",
            deployed_at=row.get(s.DEPLOY_DATETIME) or "",
            registry_url=row.get(s.REGISTRY_URL) or row.get(s.MODEL_REGISTRY_URL) or "",
            serialized_object=row.get(s.DEPLOY_OBJ_SOURCE) or "",
            serialized_object_sha256=row.get(s.SERIALIZED_OBJECT_SHA256),
            artifact_checksums=row.get(s.ARTIFACT_CHECKSUMS) or {},
        )


def current_deployment(hook: AtlasHook, target: str) -> DeploymentRecord | None:
    """The deployment Atlas says serves at target now, or None."""
    found = list_deployments(hook, limit=1, status=s.DEPLOYED, target=target)
    return DeploymentRecord.from_row(found[0]) if found else None


def serving_at(hook: AtlasHook, target: str) -> list[dict[str, Any]]:
    """Every deployment Atlas says serves at target now, newest first: guid, status, every attribute (one
    search; normally one row)."""
    return list_deployments(hook, limit=100, status=s.DEPLOYED, target=target)


def superseded_entity(row: dict[str, Any], current: str, ended_at: int) -> dict[str, Any]:
    """A serving deployment (a search row: the attributes Atlas reads from its graph) re-posted whole as
    superseded by current, for the bulk call that registers current."""
    attributes = {name: row[name] for name in s.RETURNED_ATTRIBUTES if row.get(name) is not None}
    attributes.update({s.DEPLOY_STATUS: s.SUPERSEDED, s.SUPERSEDED_BY: current, s.ENDED_AT: ended_at})
    return {"typeName": s.MODEL_TYPE, "guid": row["guid"], "attributes": attributes}


def supersede(hook: AtlasHook, target: str, current: str, ended_at: int | None = None) -> list[str]:
    """Mark every other deployment still `deployed` at target superseded by current; their qualifiedNames.
    `ended_at` (epoch millis, default now) is when they stopped serving: current's deployment time.

    Current was written just before: once the search shows it, it shows every deployment written earlier.
    """
    return settle_supersede(hook, target, current, int(time.time() * 1000) if ended_at is None else ended_at)


def settle_supersede(
    hook: AtlasHook, target: str, current: str, ended_at: int, done: frozenset[str] = frozenset()
) -> list[str]:
    """Wait until the search shows current at target, then supersede whatever else it shows still deployed
    there that is not in `done` (superseded in the call that wrote current); their qualifiedNames.

    Writes made in one bulk call become searchable together, so when current shows, so does what that call
    superseded: nothing more is needed unless a deployment the caller did not know of shows up.
    """
    serving = [(s.DEPLOY_TARGET, "=", target), (s.DEPLOY_STATUS, "=", s.DEPLOYED)]
    replaced = []
    for header in search_until_seen(hook, serving, {current}):
        attributes = header.get("attributes", {})
        qualified_name = attributes[s.QUALIFIED_NAME]
        # the index may lag behind the graph, whose attributes a search returns: done, or no longer deployed
        still_deployed = attributes.get(s.DEPLOY_STATUS, s.DEPLOYED) == s.DEPLOYED
        if qualified_name == current or qualified_name in done or not still_deployed:
            continue
        # Read it by guid (the index may be behind the graph), then re-post the whole entity with the new
        # status: a bulk upsert must carry every mandatory attribute.
        entity = hook.get_entity_by_guid(header["guid"])["entity"]
        if entity.get("status") != "ACTIVE" or entity["attributes"].get(s.DEPLOY_STATUS) != s.DEPLOYED:
            continue
        attributes = {
            **entity["attributes"],
            s.DEPLOY_STATUS: s.SUPERSEDED,
            s.SUPERSEDED_BY: current,
            s.ENDED_AT: ended_at,
        }
        hook.upsert_entities([{"typeName": s.MODEL_TYPE, "attributes": attributes}])
        replaced.append(qualified_name)
    if replaced:  # done once `trace` and `deployments` can see it
        search_until_seen(hook, [(s.SUPERSEDED_BY, "=", current)], set(replaced))
    return replaced


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
    folders = {
        "code": "code",
        "trainingdata": "training data",
        "executable": "serialized model",
        "samples": "sample request",
    }
    return folders.get(path.split("/", 1)[0], "other")


def find_deployment(hook: AtlasHook, ref: str) -> dict[str, Any]:
    """A deployment by guid, qualifiedName, or name (`<model> v<version>` or the model name: the newest)."""
    if _GUID_RE.fullmatch(ref.lower()):  # guids are lower-case hex; one pasted in capitals is the same guid
        entity = hook.get_entity_by_guid(ref.lower())["entity"]
    else:
        found = hook.get_entity(s.MODEL_TYPE, ref)
        if found is not None:
            entity = found["entity"]
        else:
            for attribute in (s.NAME, s.MODEL_NAME):
                hits = hook.search_basic(search_body([(attribute, "=", ref)], limit=1)).get("entities")
                if hits:
                    entity = hook.get_entity_by_guid(hits[0]["guid"])["entity"]
                    break
            else:
                raise AtlasError(f"no model deployment in Atlas has the guid, qualifiedName or name {ref!r}")
    if entity.get("typeName") != s.MODEL_TYPE:
        raise AtlasError(f"{ref!r} is a {entity.get('typeName')}, not a model deployment")
    return entity


def trace(hook: AtlasHook, ref: str) -> Trace:
    """One deployment, its owner and project, its archived artifacts with sha256, and what it superseded."""
    entity = find_deployment(hook, ref)
    attributes = entity["attributes"]
    registry_url = attributes.get(s.REGISTRY_URL) or attributes.get(s.MODEL_REGISTRY_URL) or ""
    checksums: dict[str, str] = attributes.get(s.ARTIFACT_CHECKSUMS) or {}
    prefix = urlsplit(registry_url).path.rstrip("/") + "/"  # checksums are keyed by path in the registry
    artifacts: list[dict[str, Any]] = []
    for path, sha256 in sorted(checksums.items()):
        rel = path.removeprefix(prefix)
        artifacts.append(
            {"role": artifact_role(rel), "path": rel, "location": f"{registry_url}/{rel}", "sha256": sha256}
        )
    relationships = entity.get("relationshipAttributes") or {}
    linked = {link.get("displayText") for link in relationships.get(s.ARTIFACTS) or []}
    for artifact in artifacts:
        artifact["linked_in_atlas"] = artifact["path"] in linked
    answer = hook.search_basic(
        search_body([(s.SUPERSEDED_BY, "=", attributes[s.QUALIFIED_NAME])], limit=1000)
    )
    superseded = [{"guid": e["guid"], **e.get("attributes", {})} for e in answer.get("entities") or []]
    deployment = {"guid": entity["guid"], "status": entity.get("status"), **attributes}
    return Trace(deployment, artifacts, superseded)
