"""The `microservice` host type: deploy the archived bundle to MLeap serving, whichever API the server
speaks, and never leave the endpoint worse than it was.

- legacy mleap-serving swaps models only on a successful load; a model that loads but fails its checks
  is replaced by the previous bundle again (its location comes from Atlas: the deployment registered at
  this server) — see `legacy`;
- mleap-spring-boot: verified under a temporary name, then swapped in — see `spring_boot`.
"""

from __future__ import annotations

import logging
import posixpath
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from model_governance.deploy import legacy, spring_boot
from model_governance.deploy.delivery import deliver, deliver_previous, delivered_uri
from model_governance.deploy.verify import SAMPLE_REQUEST, parse_sample
from model_governance.exceptions import DeployError, ServingConfigError
from model_governance.metadata import DeployFacts, DeploymentDocument
from model_governance.registry import Registry

if TYPE_CHECKING:
    from model_governance.hooks.atlas import AtlasHook
    from model_governance.hooks.mleap import MLeapServingHook

log = logging.getLogger(__name__)


def serving_target(hook: MLeapServingHook, doc: DeploymentDocument) -> tuple[str, str]:
    """(the model's name on the server, the target one deployment replaces). The legacy server holds one
    model, so any deployment there replaces it; spring-boot serves by name."""
    name = doc.model.endpoint or doc.model.slug
    return name, hook.host_port if hook.api == "legacy" else f"{hook.host_port}/models/{name}"


def read_sample(registry: Registry, doc: DeploymentDocument) -> dict[str, Any] | None:
    """The staged sample request, read back from the registry; None when none was staged."""
    if doc.registry is None or not any(e.path == SAMPLE_REQUEST for e in doc.manifest):
        log.info("No %s staged: the model is checked by its schema only", SAMPLE_REQUEST)
        return None
    return parse_sample(registry.read_bytes(posixpath.join(doc.registry.path, SAMPLE_REQUEST)))


def deploy_microservice(
    hook: MLeapServingHook,
    doc: DeploymentDocument,
    *,
    webhdfs_conn_id: str,
    atlas: AtlasHook | None,
    skip_current: bool,
    load_timeout: float,
) -> DeployFacts:
    """Deliver the archived bundle, load it, confirm it serves and scores the sample; the deploy facts.

    With `skip_current`, a model that already serves this exact bundle (as Atlas records it) is verified
    and left alone (`unchanged`).
    """
    from model_governance.atlas.queries import DeploymentRecord, serving_at

    if doc.registry is None:
        raise DeployError("the model is not archived yet: publish it to the registry before deploying")
    registry = Registry.from_root(doc.registry.root, webhdfs_conn_id)
    name, target = serving_target(hook, doc)
    # one search: what serves here now, for a rollback, for skip_current, and for the register step
    serving = serving_at(atlas, target) if atlas is not None else None
    current = DeploymentRecord.from_row(serving[0]) if serving else None
    entry = doc.executable_entry
    bundle = deliver(
        hook, registry, doc.registry.path, doc.model.slug, doc.model.version, doc.executable, entry.sha256
    )
    sample = read_sample(registry, doc)
    facts = None
    recorded = current is not None and current.serves(doc.model.name, doc.model.version, entry.sha256)
    # spring-boot names what it serves, and the delivered URI names the bundle's content, so the server
    # also shows this bundle serving where Atlas has no record of it: an earlier try of this run stopped
    # after its swap, or the run's registration failed. Verified, it is recorded without a re-load.
    if skip_current and (recorded or hook.api == "spring-boot"):
        facts = _verify_current(hook, name, bundle, sample, load_timeout)
        if facts is not None and current is not None and recorded:
            facts.update(unchanged=True, deployed_at=current.deployed_at)
        elif facts is not None:
            log.info("%r already serves %s, unrecorded in Atlas: verified, not loaded again", name, bundle)
    if facts is None and hook.api == "legacy":
        previous = deliver_previous(hook, registry, current, webhdfs_conn_id)
        facts = legacy.deploy(hook, bundle, previous, sample, load_timeout)
    elif facts is None:
        facts = spring_boot.deploy(hook, bundle, name, doc.run_key, sample, load_timeout)
    if not facts.get("unchanged"):  # a version found serving has its marker already
        registry.mark_served(doc, facts["scoring_url"])  # from now on it is immutable unless forced
    return DeployFacts(
        host_type="microservice",
        host_port=hook.host_port,
        endpoint_url=f"{hook.url}/{doc.model.endpoint}",
        serialized_object=posixpath.basename(doc.executable),
        target=target,
        serving=serving,
        **{"deployed_at": datetime.now(UTC).isoformat(timespec="seconds"), **facts},
    )


def unchanged_at_target(
    hook: MLeapServingHook,
    atlas: AtlasHook,
    registry: Registry,
    doc: DeploymentDocument,
    sample: dict[str, Any] | None,
    load_timeout: float = 60.0,
) -> str | None:
    """Why a staged version needs nothing done: Atlas records its exact bundle serving at its target, the
    registry archives that version with the same content, and the server serves it and scores the sample.
    None when any of these is not so (it is deployed as usual). Reads only: no lock is needed to decide to
    do nothing."""
    from model_governance.atlas.queries import current_deployment
    from model_governance.registry import differences

    # cheapest first: the fetch step reads the version's manifest anyway, and a new version ends it here
    published = registry.published_manifest(doc.model.slug, doc.model.version)
    if published is None or differences(doc.manifest, published):
        return None
    name, target = serving_target(hook, doc)
    current = current_deployment(atlas, target)
    sha256 = doc.executable_entry.sha256
    if current is None or not current.serves(doc.model.name, doc.model.version, sha256):
        return None
    uri = delivered_uri(hook, doc.model.slug, doc.model.version, doc.executable, sha256)
    if _verify_current(hook, name, uri, sample, load_timeout) is None:
        return None
    checks = "schema and sample scored" if sample else "schema"
    return (
        f"{current.qualified_name} already serves this exact bundle (sha256 {sha256}) at {target}, "
        f"archived at {registry.store.url(registry.version_path(doc.model.slug, doc.model.version))}; "
        f"verified at the server ({checks})"
    )


def unload(hook: MLeapServingHook, qualified_name: str, target: str) -> bool:
    """Take a deployment out of service at its target: legacy serving unloads its one model, spring-boot
    deletes the named model (the target's last segment). False when it was not loaded (a rerun); raises
    when the server still serves it."""
    prefix = f"{hook.host_port}/models/"
    if target != hook.host_port if hook.api == "legacy" else not target.startswith(prefix):
        raise ServingConfigError(
            f"{qualified_name} serves at {target}, which connection {hook.mleap_conn_id!r} "
            f"({hook.api} at {hook.host_port}) does not serve: pick the connection of that host"
        )
    if hook.api == "legacy":
        return legacy.unload(hook)
    return spring_boot.unload(hook, target.removeprefix(prefix))


def _verify_current(
    hook: MLeapServingHook, name: str, bundle: str, sample: dict[str, Any] | None, load_timeout: float
) -> dict[str, Any] | None:
    """Facts for a model that already serves this bundle and passes its checks; None to deploy it again."""
    try:
        if hook.api == "legacy":
            return legacy.verify_current(hook, sample)
        return spring_boot.verify_current(hook, name, bundle, sample, load_timeout)
    except Exception as exc:  # whatever is wrong, a fresh deployment puts it right
        log.warning("The current deployment does not verify (%s): deploying again", exc)
        return None
