"""mleap-spring-boot (named models, asynchronous loads): the new bundle is loaded and scored under a
temporary name first, then swapped in under the endpoint's name and scored again; if that fails, the
previous bundle is loaded back.

During the swap (from the unload until the new load finishes) the endpoint's transform answers 200 with
`STATUS_ERROR` ("no model with name …"), as the real server does; requests that arrive while the new
bundle loads wait for the load (measured: `make bench`, swap).
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

from model_governance.deploy.verify import check_scoring, output_names, spring_boot_facts
from model_governance.exceptions import DeployError

if TYPE_CHECKING:
    from model_governance.hooks.mleap import MLeapServingHook

log = logging.getLogger(__name__)
# a name just unloaded stays taken until the server's actor has stopped (asynchronously): POSTs answering
# 400 are repeated for this long after an unload
NAME_RELEASE = 5.0


def deploy(
    hook: MLeapServingHook,
    uri: str,
    name: str,
    run_key: str,
    sample: dict[str, Any] | None,
    load_timeout: float,
) -> dict[str, Any]:
    """Verify `uri` under a candidate name, then serve it as `name`; the deploy facts back."""
    candidate = f"{name}-candidate-{hashlib.sha256(run_key.encode()).hexdigest()[:8]}"
    left_over = hook.unload_model(candidate)  # left over by an interrupted attempt of this run
    hook.submit_model(candidate, uri, name_release=NAME_RELEASE if left_over else 0.0)
    try:
        expected = output_names(
            spring_boot_facts(hook.url, candidate, hook.wait_loaded(candidate, load_timeout))
        )
        if sample:
            check_scoring(hook.transform_named(candidate, sample), sample, expected)
    finally:
        hook.unload_model(candidate)
    previous = hook.get_model(name)
    previous_uri = previous.get("uri") if previous else None
    if previous_uri == uri:
        log.info("%r already serves %s: reloading it", name, uri)
    unloaded = hook.unload_model(name)  # the swap's unserved window starts here
    try:
        hook.submit_model(name, uri, name_release=NAME_RELEASE if unloaded else 0.0)
        facts = spring_boot_facts(hook.url, name, hook.wait_loaded(name, load_timeout))
        if sample:
            check_scoring(hook.transform_named(name, sample), sample, expected)
    except Exception as exc:
        log.error("The swap failed (%s): restoring %s", exc, previous_uri or "nothing")
        hook.unload_model(name)
        if previous_uri:
            hook.submit_model(name, previous_uri, name_release=NAME_RELEASE)
            hook.wait_loaded(name, load_timeout)
        raise
    return facts


def verify_current(
    hook: MLeapServingHook, name: str, uri: str, sample: dict[str, Any] | None, load_timeout: float
) -> dict[str, Any] | None:
    """Facts for `name` if it serves `uri` and passes its checks; None when it serves something else."""
    model = hook.get_model(name)
    if model is None or model.get("uri") != uri:
        return None
    facts = spring_boot_facts(hook.url, name, hook.wait_loaded(name, load_timeout))
    if sample:
        check_scoring(hook.transform_named(name, sample), sample, output_names(facts))
    return facts


def unload(hook: MLeapServingHook, name: str) -> bool:
    """Delete the named model (`DELETE /models/<name>`) and confirm it is gone; False when it was not
    loaded."""
    if not hook.unload_model(name):
        log.info("MLeap serving at %s has no model %r: nothing to unload", hook.url, name)
        return False
    if hook.get_model(name) is not None:
        raise DeployError(f"MLeap serving at {hook.url} still lists {name!r} after DELETE /models/{name}")
    log.info("Unloaded %r from MLeap serving at %s", name, hook.url)
    return True
