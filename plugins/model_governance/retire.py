"""Retire (`model_retire`): take the deployment serving at a target out of service, and record it.

In order, so that nothing is left inconsistent: plan (what serves there, per Atlas; the model's lock) →
unload from the host (legacy MLeap: `DELETE /model`; spring-boot: `DELETE /models/<name>`; Spark: the
published pipeline removed), confirmed → the `retired` event in the model's event log (what happened,
in the order it happened) → Atlas marks the deployment `retired` (endedAt, endedBy, endReason). Atlas
never says retired while the model still serves. The archived version stays in the registry.

A rerun of the same run changes nothing more: the plan finds the event that names this run, unloads
nothing (a newer deployment at the target is never touched) and completes Atlas's record if it stopped
before it; each step is idempotent on a retry too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from model_governance import eventlog
from model_governance.atlas import schema as s
from model_governance.atlas.queries import (
    DeploymentRecord,
    current_deployment,
    deployments_at,
    end_deployment,
)
from model_governance.exceptions import InvalidInputError
from model_governance.lifecycle import check_in_registry, check_reason, check_unchanged, holding_model_lock
from model_governance.metadata import model_slug
from model_governance.registry import Registry

if TYPE_CHECKING:
    from model_governance.hooks.atlas import AtlasHook
    from model_governance.hooks.mleap import MLeapServingHook

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retirement:
    """One retirement, as the tasks hand it on (XCom JSON)."""

    qualified_name: str
    model_name: str
    version: str
    host_type: str  # microservice | spark
    target: str
    host_detail: str  # spark: where the pipeline was published
    registry_url: str
    requested_by: str
    reason: str
    run_key: str
    unload: bool = True  # False when the model no longer serves (a rerun, or a retirement being completed)
    ended_at: str = ""  # ISO-8601 UTC: when it stopped serving (set by the unload step)

    @property
    def slug(self) -> str:
        return model_slug(self.model_name)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> Retirement:
        return cls(**(json.loads(value) if isinstance(value, str) else value))


def plan(
    atlas: AtlasHook,
    registry: Registry,
    *,
    target: str,
    reason: str,
    dag_id: str,
    run_id: str,
    run_key: str,
    requested_by: str,
    is_running: Callable[[dict[str, Any]], bool | None] | None = None,
) -> Retirement:
    """What to retire at target; the model's lock is held when it returns (released here on failure)."""
    reason = check_reason(reason)
    record, event = _retired_by_this_run(atlas, registry, target, run_key)
    if record is None:
        record = current_deployment(atlas, target)
    if record is None:
        raise InvalidInputError(
            f"target {target!r}: Atlas records nothing serving there (deployTarget, status deployed): "
            "nothing to retire, nothing changed"
        )
    slug = model_slug(record.model_name)
    check_in_registry(registry, record.registry_url, slug, record.model_version)
    lock = holding_model_lock(
        registry,
        record.model_name,
        slug,
        dag_id=dag_id,
        run_id=run_id,
        run_key=run_key,
        is_running=is_running,
    )
    with lock:
        if event is None:
            check_unchanged(atlas, target, record.qualified_name)
    retirement = Retirement(
        qualified_name=record.qualified_name,
        model_name=record.model_name,
        version=record.model_version,
        host_type=record.host_type,
        target=target,
        host_detail=record.host_detail,
        registry_url=record.registry_url,
        requested_by=requested_by,
        reason=reason,
        run_key=run_key,
        unload=event is None,
        ended_at=str(event.get("ended_at") or "") if event else "",
    )
    if event is not None:
        log.info("This run already retired %s at %s: completing its record", record.qualified_name, target)
    log.info(
        "Retiring %s (%s %s, %s) at %s: %s",
        record.qualified_name,
        record.model_name,
        record.model_version,
        record.host_type,
        target,
        reason,
    )
    return retirement


def _retired_by_this_run(
    atlas: AtlasHook, registry: Registry, target: str, run_key: str
) -> tuple[DeploymentRecord | None, dict[str, Any] | None]:
    """The deployment at target that this run already unloaded (its `retired` event names the run), and
    that event; (None, None) when this run retired nothing there yet."""
    records = deployments_at(atlas, target)
    for slug in dict.fromkeys(model_slug(record.model_name) for record in records):
        for entry in _events(registry, slug):
            if (
                entry.get("event") == "retired"
                and entry.get("run_key") == run_key
                and entry.get("target") == target
            ):
                for record in records:
                    if record.qualified_name == entry.get("deployment"):
                        return record, entry
    return None, None


def _events(registry: Registry, slug: str) -> list[dict[str, Any]]:
    events = []
    for line in eventlog.read_lines(registry, slug):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            events.append(entry)
    return events


def unload_microservice(hook: MLeapServingHook, retirement: Retirement) -> Retirement:
    """Unload the model from its MLeap host (when it still serves); the retirement with its end time."""
    from model_governance.deploy.microservice import unload

    if retirement.unload:
        unload(hook, retirement.qualified_name, retirement.target)
    return _ended(retirement)


def withdraw_spark(models: Registry, retirement: Retirement) -> Retirement:
    """Remove the published pipeline (when it is still there); the retirement with its end time."""
    from model_governance.deploy.spark import withdraw_pipeline

    if retirement.unload:
        withdraw_pipeline(
            models, model_slug(retirement.model_name), retirement.version, retirement.host_detail
        )
    return _ended(retirement)


def _ended(retirement: Retirement) -> Retirement:
    return replace(
        retirement, ended_at=retirement.ended_at or datetime.now(UTC).isoformat(timespec="seconds")
    )


def mark_retired(atlas: AtlasHook, retirement: Retirement) -> dict[str, Any]:
    """Atlas records the deployment retired (once it no longer serves); its guid, qualifiedName, page."""
    if not retirement.ended_at:
        raise InvalidInputError("the deployment is marked retired only after it was unloaded")
    ended_at = int(datetime.fromisoformat(retirement.ended_at).timestamp() * 1000)
    changed = end_deployment(
        atlas,
        retirement.qualified_name,
        s.RETIRED,
        ended_at=ended_at,
        ended_by=retirement.requested_by,
        reason=retirement.reason,
    )
    stored = atlas.get_entity(s.MODEL_TYPE, retirement.qualified_name)
    guid = stored["entity"]["guid"] if stored else ""
    log.info("%s %s retired in Atlas", retirement.qualified_name, "marked" if changed else "already")
    return {"guid": guid, "qualifiedName": retirement.qualified_name, "url": atlas.entity_url(guid)}


def event_facts(retirement: Retirement) -> dict[str, Any]:
    """What the `retired` event records."""
    return {
        "model": retirement.model_name,
        "deployment": retirement.qualified_name,
        "target": retirement.target,
        "host_type": retirement.host_type,
        "by": retirement.requested_by,
        "reason": retirement.reason,
        "ended_at": retirement.ended_at,
        "registry_url": retirement.registry_url,
    }
