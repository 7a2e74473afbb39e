"""Who a run acts for (the lifecycle records it on every event and Atlas entity, issue 15), the model's
lock every run that changes a model holds, and what rollback and retire share."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model_governance.hooks.atlas import AtlasHook
    from model_governance.registry import Registry

log = logging.getLogger(__name__)

SCHEDULER = "scheduler"  # a run the schedule (or an asset event) started: no person asked for it


def requested_by(context: Any) -> str:
    """The Airflow user who triggered the run (UI, REST API, CLI), or "scheduler" for scheduled runs."""
    dag_run = context.get("dag_run") if hasattr(context, "get") else None
    user = getattr(dag_run, "triggering_user_name", None)
    if user:
        return str(user)
    run_type = getattr(dag_run, "run_type", None)
    run_type = str(getattr(run_type, "value", run_type) or "")
    return SCHEDULER if run_type.endswith(("scheduled", "asset_triggered", "backfill")) else "unknown"


# -- the model's lock: the fetch step, rollback and retire take it; clean_up releases it -------------------
@contextmanager
def holding_model_lock(
    registry: Registry,
    model_name: str,
    slug: str,
    *,
    dag_id: str,
    run_id: str,
    run_key: str,
    is_running: Callable[[dict[str, Any]], bool | None] | None = None,
) -> Iterator[None]:
    """Take the model's deployment lock for this run; if the block fails, the run's lock and pending upload
    are released again (`release_run`), kept when it succeeds (the run's clean-up task releases them)."""
    holder = {"dag_id": dag_id, "dag_run_id": run_id, "model": model_name}
    registry.acquire_lock(slug, run_key, holder_info=holder, is_running=is_running)
    try:
        yield
    except BaseException:
        release_run(registry, run_key)
        raise


def release_run(registry: Registry, run_key: str) -> None:
    """Drop the run's pending upload and release its model lock; never raises over the error being handled
    (the clean-up task, or the next run's take-over, releases what this could not)."""
    try:
        if registry.discard_pending(run_key):
            log.info("Removed %s", registry.store.url(registry.pending_path(run_key)))
        for slug in registry.release_locks(run_key):
            log.info("Released the deployment lock of %s", slug)
    except Exception as exc:
        log.warning("Could not release the run's lock and pending upload now (%s)", exc)


# -- what rollback and retire share -----------------------------------------------------------------------
def check_reason(reason: Any) -> str:
    """An operator action's reason: required, one line (it goes to Atlas, the event log and the CLI)."""
    from model_governance.exceptions import InvalidInputError

    text = "" if reason is None else str(reason).strip()
    if not text:
        raise InvalidInputError("reason is empty: say why (it is recorded in Atlas and the event log)")
    if any(ord(c) < 32 or c in "\x7f\u2028\u2029" for c in text):
        raise InvalidInputError(f"reason {text[:60]!r} holds a line break or control character: one line")
    if len(text) > 1000:
        raise InvalidInputError(f"reason {text[:40]!r}… is longer than 1000 characters")
    return text


def check_in_registry(registry: Registry, registry_url: str, slug: str, version: str) -> str:
    """The version's folder in `registry`, which must be where Atlas says the version was archived."""
    from urllib.parse import urlsplit

    from model_governance.exceptions import InvalidInputError

    folder = registry.version_path(slug, version)
    if urlsplit(registry_url).path.rstrip("/") != folder:
        raise InvalidInputError(
            f"{slug} {version} was archived in {registry_url}, not in the registry "
            f"{registry.store.url(registry.root)}: set registry_root to the registry that holds it"
        )
    return folder


def check_unchanged(atlas: AtlasHook, target: str, qualified_name: str | None) -> None:
    """After the model's lock was taken (another deployment of the model may have held it): what serves
    at target must still be what the action was planned on."""
    from model_governance.atlas.queries import current_deployment
    from model_governance.exceptions import InvalidInputError

    current = current_deployment(atlas, target)
    now = current.qualified_name if current else None
    if now != qualified_name:
        raise InvalidInputError(
            f"target {target!r} changed while this run waited for the model's lock: {now or 'nothing'} "
            f"serves there now, not {qualified_name}; trigger again if it still applies"
        )
