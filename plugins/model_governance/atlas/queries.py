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
    "dag_id": (s.DAG_ID, "="),
    "run_id": (s.DAG_RUN_ID, "="),
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
    status: str = ""  # deployStatus
    target: str = ""  # deployTarget
    host_type: str = ""
    host_detail: str = ""  # deploy.host.detail: for spark, where the pipeline was published
    dag_run_id: str = ""  # the run that deployed it
    rollback_of: str = ""

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
            status=row.get(s.DEPLOY_STATUS) or "",
            target=row.get(s.DEPLOY_TARGET) or "",
            host_type=row.get(s.HOST_TYPE) or row.get(s.DEPLOY_HOST_TYPE) or "",
            host_detail=row.get(s.DEPLOY_HOST_DETAIL) or "",
            dag_run_id=row.get(s.DAG_RUN_ID) or "",
            rollback_of=row.get(s.ROLLBACK_OF) or "",
        )

    def serves(self, model_name: str, version: str, sha256: str) -> bool:
        """Whether this deployment is that model version with exactly that bundle. By model and version, not
        by qualifiedName: a version served again after it ended is registered under a per-run name
        (`atlas.register.deployment_qualified_name`)."""
        return (
            self.model_name == model_name
            and self.model_version == version
            and self.serialized_object_sha256 == sha256
        )

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> DeploymentRecord:
        """From an entity read by guid or qualifiedName (its `entity` part)."""
        return cls.from_row({"guid": entity["guid"], **entity["attributes"]})


def current_deployment(hook: AtlasHook, target: str) -> DeploymentRecord | None:
    """The deployment Atlas says serves at target now, or None."""
    found = list_deployments(hook, limit=1, status=s.DEPLOYED, target=target)
    return DeploymentRecord.from_row(found[0]) if found else None


def deployments_at(hook: AtlasHook, target: str, **filters: str) -> list[DeploymentRecord]:
    """Every deployment Atlas records at target (with `status=...`: in that status), newest first; each
    re-read by guid, since the search index may be behind the graph."""
    criteria = [(s.DEPLOY_TARGET, "=", target)]
    criteria += [(FILTERS[key][0], FILTERS[key][1], value) for key, value in filters.items()]
    try:
        headers = search_all(hook, criteria)
    except AtlasError as exc:
        if exc.error_code == UNKNOWN_TYPENAME:  # no `model` type yet: nothing was ever registered
            return []
        raise
    records = []
    for header in headers:
        entity = hook.get_entity_by_guid(header["guid"])["entity"]
        if entity.get("status") != "ACTIVE" or entity["attributes"].get(s.DEPLOY_TARGET) != target:
            continue
        record = DeploymentRecord.from_entity(entity)
        if "status" in filters and record.status != filters["status"]:
            continue
        records.append(record)
    return records


def replaced_by(hook: AtlasHook, current: DeploymentRecord) -> DeploymentRecord | None:
    """The deployment current replaced at its target (superseded or rolled back by it), or None: what
    served there just before it."""
    criteria = [(s.DEPLOY_TARGET, "=", current.target), (s.SUPERSEDED_BY, "=", current.qualified_name)]
    for header in search_all(hook, criteria):  # newest first
        entity = hook.get_entity_by_guid(header["guid"])["entity"]
        attributes = entity["attributes"]
        if (
            entity.get("status") == "ACTIVE"
            and attributes.get(s.SUPERSEDED_BY) == current.qualified_name
            and attributes.get(s.DEPLOY_STATUS) in s.ENDED_STATUSES
        ):
            return DeploymentRecord.from_entity(entity)
    return None


def end_deployment(
    hook: AtlasHook,
    qualified_name: str,
    status: str,
    *,
    ended_at: int,
    ended_by: str,
    reason: str,
    replaced_by: str | None = None,
) -> bool:
    """Mark one deployment ended (rolled back or retired): status, endedAt (epoch millis), endedBy,
    endReason, and `supersededBy` when another deployment replaced it. False when it had already ended
    so (a rerun): its entity is left as it is. Returns once the change is searchable."""
    if status not in s.ENDED_STATUSES:
        raise ValueError(f"{status!r} is not an ended status ({', '.join(s.ENDED_STATUSES)})")
    stored = hook.get_entity(s.MODEL_TYPE, qualified_name)
    if stored is None:
        raise AtlasError(f"Atlas has no model deployment {qualified_name!r}")
    entity = stored["entity"]
    changes: dict[str, Any] = {
        s.DEPLOY_STATUS: status,
        s.ENDED_AT: ended_at,
        s.ENDED_BY: ended_by,
        s.END_REASON: reason,
    }
    if replaced_by:
        changes[s.SUPERSEDED_BY] = replaced_by
    if entity["attributes"].get(s.DEPLOY_STATUS) == status:
        return False
    # the whole entity re-posted with the changes: a bulk upsert of a subset could blank the rest
    hook.upsert_entities([{"typeName": s.MODEL_TYPE, "attributes": {**entity["attributes"], **changes}}])
    search_until_seen(
        hook, [(s.DEPLOY_STATUS, "=", status), (s.QUALIFIED_NAME, "=", qualified_name)], {qualified_name}
    )
    return True


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
    lineage_inputs: list[dict[str, Any]]  # guid, typeName, qualifiedName: Atlas lineage's inputs

    def to_json(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "artifacts": self.artifacts,
            "superseded": self.superseded,
            "lineage_inputs": self.lineage_inputs,
        }


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
                raise AtlasError(
                    f"no model deployment in Atlas has the guid, qualifiedName or name {ref!r}", status=404
                )
    if entity.get("typeName") != s.MODEL_TYPE:
        raise AtlasError(f"{ref!r} is a {entity.get('typeName')}, not a model deployment", status=404)
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
    return Trace(deployment, artifacts, superseded, lineage_inputs(hook, entity["guid"]))


# -- what served when: a target's deployments in time order ----------------------------------------------
HISTORY_PAGE = 100  # entities per search call; the CLI holds one page at a time
HISTORY_ATTRIBUTES = [
    s.QUALIFIED_NAME,
    s.MODEL_NAME,
    s.MODEL_VERSION,
    s.DEPLOY_TARGET,
    s.ENDPOINT_URL,
    s.DEPLOY_TIME,
    s.ENDED_AT,
    s.DEPLOY_STATUS,
    s.REQUESTED_BY,
    s.APPROVED_BY,
    s.APPROVED_AT,
    s.ENDED_BY,
    s.END_REASON,
    s.ROLLBACK_OF,
    s.DEPLOY_REASON,
    s.SUPERSEDED_BY,
    s.SERIALIZED_OBJECT_SHA256,
    s.DAG_RUN_ID,
]
# how a deployment's period ended, as people say it
ENDINGS = {
    s.DEPLOYED: "serving",
    s.SUPERSEDED: "superseded",
    s.ROLLED_BACK: "rolled back",
    s.RETIRED: "retired",
}


def iso_millis(value: Any) -> str | None:
    """Atlas's epoch milliseconds (a `date` attribute) as ISO-8601 UTC to the second; None when unset."""
    if value in (None, "", 0):
        return None
    return datetime.fromtimestamp(int(value) / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def target_criterion(target: str) -> tuple[str, str, str]:
    """A target as users give it: the `deployTarget` (host:port, or host:port/models/<name>), or the
    scoring URL predictions are asked for (`endpointUrl`, one per target)."""
    if target.startswith(("http://", "https://")):
        return (s.ENDPOINT_URL, "=", target)
    return (s.DEPLOY_TARGET, "=", target)


def history_row(header: dict[str, Any]) -> dict[str, Any]:
    """One deployment's period at its target, from a search hit (attributes `HISTORY_ATTRIBUTES`)."""
    a = header.get("attributes") or {}
    status = a.get(s.DEPLOY_STATUS) or s.DEPLOYED
    return {
        "guid": header.get("guid"),
        "qualifiedName": a.get(s.QUALIFIED_NAME),
        "model": a.get(s.MODEL_NAME),
        "version": a.get(s.MODEL_VERSION),
        "target": a.get(s.DEPLOY_TARGET),
        "from": iso_millis(a.get(s.DEPLOY_TIME)),
        "to": iso_millis(a.get(s.ENDED_AT)),
        "status": status,
        "ended": ENDINGS.get(status, status),
        "requestedBy": a.get(s.REQUESTED_BY),
        "approvedBy": a.get(s.APPROVED_BY),
        "endedBy": a.get(s.ENDED_BY),
        "endReason": a.get(s.END_REASON),
        "rollbackOf": a.get(s.ROLLBACK_OF),
        "deployReason": a.get(s.DEPLOY_REASON),
        "supersededBy": a.get(s.SUPERSEDED_BY),
        "serializedObjectSha256": a.get(s.SERIALIZED_OBJECT_SHA256),
        "dagRunId": a.get(s.DAG_RUN_ID),
    }


def history(hook: AtlasHook, target: str, page: int = HISTORY_PAGE) -> Iterator[dict[str, Any]]:
    """Every deployment at a target, oldest first, one search page at a time (memory stays flat however
    many there are). A superseded deployment registered before `endedAt` existed ends when the next one
    starts: one row is held back to say so."""
    if page < 1:
        raise ValueError(f"page must be 1 or more, not {page}")
    held: dict[str, Any] | None = None
    offset = 0
    while True:
        body = search_body([target_criterion(target)], limit=page, offset=offset, attributes=False)
        body.update(sortOrder="ASCENDING", attributes=HISTORY_ATTRIBUTES)
        try:
            entities = hook.search_basic(body).get("entities") or []
        except AtlasError as exc:
            if exc.error_code != UNKNOWN_TYPENAME:  # no `model` type yet: nothing was ever deployed
                raise
            entities = []
        for header in entities:
            row = history_row(header)
            if held is not None:
                if held["to"] is None and held["status"] != s.DEPLOYED:
                    held["to"] = row["from"]
                yield held
            held = row
        if len(entities) < page:
            break
        offset += page
    if held is not None:
        yield held


def served_at(hook: AtlasHook, target: str, at: str) -> str:
    """The guid of the deployment that served at target at the moment `at` (ISO-8601, UTC when no zone):
    the last one that started at or before it, unless it had ended by then. A period includes its start,
    not its end: at the moment of a switch, the new deployment serves."""
    moment = epoch_millis(at)
    shown = iso_millis(moment)
    criteria = [target_criterion(target), (s.DEPLOY_TIME, "<=", str(moment))]
    try:
        hits = hook.search_basic(
            search_body(criteria, limit=1, attributes=False) | {"attributes": HISTORY_ATTRIBUTES}
        )
    except AtlasError as exc:
        if exc.error_code != UNKNOWN_TYPENAME:
            raise
        hits = {}
    found = hits.get("entities") or []
    if not found:
        first = next(history(hook, target, page=1), None)
        if first is None:
            raise AtlasError(
                f"no deployment at {target} is registered in Atlas (a target is host:port, "
                "host:port/models/<name>, or the scoring URL)"
            )
        raise AtlasError(
            f"nothing served at {target} at {shown}: the first deployment there, {first['qualifiedName']}, "
            f"started at {first['from']}"
        )
    row = history_row(found[0])
    ended = found[0].get("attributes", {}).get(s.ENDED_AT)
    if row["status"] != s.DEPLOYED and ended not in (None, "", 0) and int(ended) <= moment:
        raise AtlasError(
            f"nothing served at {target} at {shown}: {row['qualifiedName']} had ended at {row['to']} "
            f"({row['ended']}), and no deployment there started between then and {shown}"
        )
    return str(row["guid"])


def latest_event_log_head(hook: AtlasHook, model_name: str) -> tuple[str, str] | None:
    """The newest deployment of a model that records an event-log line: (qualifiedName, eventLogHead)."""
    offset = 0
    while True:
        body = search_body(
            [(s.MODEL_NAME, "=", model_name)], limit=HISTORY_PAGE, offset=offset, attributes=False
        )
        body["attributes"] = [s.QUALIFIED_NAME, s.DEPLOY_TIME, s.EVENT_LOG_HEAD]
        try:
            entities = hook.search_basic(body).get("entities") or []
        except AtlasError as exc:
            if exc.error_code != UNKNOWN_TYPENAME:
                raise
            return None
        for header in entities:
            attributes = header.get("attributes") or {}
            if attributes.get(s.EVENT_LOG_HEAD):
                return attributes[s.QUALIFIED_NAME], attributes[s.EVENT_LOG_HEAD]
        if len(entities) < HISTORY_PAGE:
            return None
        offset += HISTORY_PAGE


def lineage_inputs(hook: AtlasHook, guid: str) -> list[dict[str, Any]]:
    """The datasets Atlas's lineage graph shows as a deployment's inputs (training data; a batch job's
    inputs), asked of Atlas's lineage API: what its UI draws, not what the entity was sent."""
    graph = hook.get_lineage(guid, direction="INPUT", depth=1)
    headers = graph.get("guidEntityMap") or {}
    found = []
    for relation in graph.get("relations") or []:
        if relation.get("toEntityId") != guid or relation.get("fromEntityId") not in headers:
            continue
        header = headers[relation["fromEntityId"]]
        found.append(
            {
                "guid": header.get("guid", relation["fromEntityId"]),
                "typeName": header.get("typeName"),
                s.QUALIFIED_NAME: (header.get("attributes") or {}).get(s.QUALIFIED_NAME),
            }
        )
    return sorted(found, key=lambda item: str(item[s.QUALIFIED_NAME]))
