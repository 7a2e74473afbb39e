"""Rollback (`model_rollback`): serve again, at a target, the version that served there before.

What serves at the target now and what it replaced there come from Atlas (`deployTarget`,
`supersededBy`). The older version is served from its archived bytes only: every file of the registry
version is read back and its sha256 checked against the archived manifest, and the manifest against the
checksums Atlas recorded when the version served, before anything is loaded. The deploy itself is the
ordinary MLeap deploy (`deploy.microservice`, verified and rolled back like any deploy); the register step
records a new deployment with `rollbackOf` and marks the replaced one `rolled_back`
(`atlas.register.register_deployment`).
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from model_governance.atlas.queries import DeploymentRecord, current_deployment, replaced_by
from model_governance.deploy.microservice import serving_target
from model_governance.exceptions import InvalidInputError, RegistryError, TamperedArchiveError
from model_governance.lifecycle import check_in_registry, check_reason, check_unchanged, holding_model_lock
from model_governance.metadata import (
    METADATA_FILE,
    DeploymentDocument,
    ManifestEntry,
    ModelMetadata,
    RegistryInfo,
    SourceInfo,
    model_slug,
    parse_properties,
)
from model_governance.registry import Registry

if TYPE_CHECKING:
    from model_governance.hooks.atlas import AtlasHook
    from model_governance.hooks.mleap import MLeapServingHook

log = logging.getLogger(__name__)


def plan(
    atlas: AtlasHook,
    mleap: MLeapServingHook,
    registry: Registry,
    *,
    target: str,
    reason: str,
    dag_id: str,
    run_id: str,
    run_key: str,
    requested_by: str,
    is_running: Callable[[dict[str, Any]], bool | None] | None = None,
) -> DeploymentDocument:
    """The deployment document that serves the previous version at target again, from its verified
    archive; the model's lock is held when it returns (released here if anything fails)."""
    reason = check_reason(reason)
    current = current_deployment(atlas, target)
    if current is None:
        raise InvalidInputError(
            f"target {target!r}: Atlas records nothing serving there (deployTarget, status deployed): "
            "nothing to roll back"
        )
    if current.dag_run_id == run_id and current.rollback_of:  # a rerun of this very rollback
        log.info(
            "This run's rollback already serves at %s (%s): checking it again", target, current.qualified_name
        )
        previous, replaced = current, current.rollback_of
    else:
        found = replaced_by(atlas, current)
        if found is None:
            raise InvalidInputError(
                f"target {target!r}: {current.qualified_name} replaced no earlier deployment there: "
                "nothing to roll back to"
            )
        previous, replaced = found, current.qualified_name
    if previous.host_type != "microservice":
        raise InvalidInputError(
            f"target {target!r} is a {previous.host_type or 'unknown'} deployment: rollback serves MLeap "
            "models; for a Spark pipeline, run model_batch_deployment with the older version"
        )
    if target != mleap.host_port and not target.startswith(f"{mleap.host_port}/models/"):
        raise InvalidInputError(
            f"target {target!r} is not served by connection {mleap.mleap_conn_id!r} ({mleap.host_port}): "
            "set mleap_conn_id to the connection of that host"
        )
    slug = model_slug(previous.model_name)
    folder = check_in_registry(registry, previous.registry_url, slug, previous.model_version)
    lock = holding_model_lock(
        registry,
        previous.model_name,
        slug,
        dag_id=dag_id,
        run_id=run_id,
        run_key=run_key,
        is_running=is_running,
    )
    with lock:
        check_unchanged(atlas, target, current.qualified_name)
        doc = replace(
            archived_document(registry, folder, previous),
            dag_id=dag_id,
            run_id=run_id,
            run_key=run_key,
            requested_by=requested_by,
            rollback_of=replaced,
            reason=reason,
        )
        if serving_target(mleap, doc)[1] != target:
            raise InvalidInputError(
                f"{previous.qualified_name}'s archived metadata serves at {serving_target(mleap, doc)[1]}, "
                f"not at {target!r}: not rolled back"
            )
    log.info(
        "Rolling back %s at %s to %s %s (%s), archived at %s: %s",
        replaced,
        target,
        doc.model.name,
        doc.model.version,
        previous.qualified_name,
        previous.registry_url,
        reason,
    )
    return doc


def archived_document(registry: Registry, folder: str, record: DeploymentRecord) -> DeploymentDocument:
    """The document of an archived version, every byte checked: the files against the manifest
    (`MANIFEST.json`), the manifest against the checksums Atlas recorded, and the serialized model against
    the one Atlas says served. `TamperedArchiveError` names what differs; nothing is served then."""
    url = registry.store.url(folder)
    slug, version = posixpath.basename(posixpath.dirname(folder)), posixpath.basename(folder)
    manifest = registry.published_record(slug, version)
    if manifest is None:
        raise TamperedArchiveError(
            f"{url} is gone from the registry: {record.qualified_name} cannot serve again"
        )
    entries = tuple(ManifestEntry(**entry) for entry in manifest["files"])
    recorded = {posixpath.join(folder, e.path): e.sha256 for e in entries}
    if record.artifact_checksums and recorded != record.artifact_checksums:
        differ = sorted(
            p.removeprefix(folder + "/")
            for p in recorded.keys() | record.artifact_checksums.keys()
            if recorded.get(p) != record.artifact_checksums.get(p)
        )
        raise TamperedArchiveError(
            f"{url}/MANIFEST.json does not match the checksums Atlas recorded for {record.qualified_name}: "
            f"{', '.join(differ)}; not served"
        )
    try:
        registry.verify(folder, entries)  # every byte read back
    except RegistryError as exc:
        raise TamperedArchiveError(f"{exc}; the archived version was changed, not served") from None
    executable = manifest["executable"]
    sha256 = recorded.get(posixpath.join(folder, executable))
    if record.serialized_object_sha256 and sha256 != record.serialized_object_sha256:
        raise TamperedArchiveError(
            f"{url}/{executable}: sha256 {sha256} is not the {record.serialized_object_sha256} that served "
            f"as {record.qualified_name}; not served"
        )
    text = registry.read_bytes(posixpath.join(folder, METADATA_FILE)).decode("utf-8-sig")
    model = ModelMetadata.from_properties(
        parse_properties(text, f"{url}/{METADATA_FILE}"), f"{url}/{METADATA_FILE}"
    )
    if (model.name, model.version) != (record.model_name, record.model_version):
        raise TamperedArchiveError(
            f"{url}/{METADATA_FILE} names {model.name} {model.version}, "
            f"not {record.model_name} {record.model_version}; not served"
        )
    log.info("Verified %s: %d files, sha256 as archived and as Atlas recorded", url, len(entries))
    return DeploymentDocument(
        model=model,
        source=SourceInfo(**manifest["source"]),
        manifest=entries,
        executable=executable,
        dag_id="",
        run_id="",
        registry=RegistryInfo(root=registry.location, path=folder, url=url, uploaded_bytes=0),
    )


def event_facts(doc: DeploymentDocument, registered: dict[str, Any]) -> dict[str, Any]:
    """What the `rolled_back` event records."""
    return {
        "model": doc.model.name,
        "deployment": registered["qualifiedName"],
        "rollback_of": doc.rollback_of,
        "target": doc.deploy.target if doc.deploy else None,
        "by": doc.requested_by,
        "reason": doc.reason,
        "sha256": doc.executable_entry.sha256,
        "registry_url": doc.registry.url if doc.registry else None,
    }
