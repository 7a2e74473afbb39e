"""Legacy mleap-serving (`PUT /model`, one model per server): load, confirm, score the sample, roll back.

The server loads inside the `PUT` request and swaps only on success, so a failed load leaves the old
model serving. A slow load outlives akka-http's request timeout (20 s): the server answers 503 while the
load goes on and swaps the model in later. So the `PUT` is never sent twice: on a 503 or no answer, the
step watches `GET /model` (and the sample's scores) until the new model shows or `load_timeout` passes,
and then treats the outcome as unknown: it rolls back and fails.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from model_governance.deploy.verify import check_scoring, legacy_facts
from model_governance.exceptions import DeployError, ModelVerificationError

if TYPE_CHECKING:
    from model_governance.hooks.mleap import MLeapServingHook

log = logging.getLogger(__name__)
POLL = 0.5  # seconds between two looks at what the server serves


def deploy(
    hook: MLeapServingHook,
    bundle: str,
    previous: str | None,
    sample: dict[str, Any] | None,
    load_timeout: float,
) -> dict[str, Any]:
    """Load `bundle`, confirm it serves and scores the sample; else put `previous` back (or unload). The
    deploy facts (scoring URL, schemas) back."""
    before = serving_now(hook, sample)
    log.info(
        "Loading %s into MLeap serving at %s (previous: %s)", bundle, hook.url, previous or "none recorded"
    )
    if not hook.load_model(bundle):  # a refused load raises, and the server still serves the old model
        log.warning("MLeap serving did not confirm the load in time: watching for the new model to show")
        if not _shows_up(hook, sample, before, load_timeout):
            cause = DeployError(
                f"MLeap serving at {hook.url} did not confirm loading {bundle}, "
                "and the new model did not show "
                f"within {load_timeout:.0f} s: the outcome is unknown, so the previous model was put back"
            )
            rollback(hook, previous, cause)
            raise cause
    try:
        schema = hook.model_schema()
        if schema is None:
            raise ModelVerificationError(f"MLeap serving at {hook.url} accepted {bundle} but serves no model")
        outputs = check_scoring(hook.transform(sample), sample, None) if sample else []
    except Exception as exc:
        rollback(hook, previous, exc)
        raise
    return legacy_facts(hook.url, schema, outputs)


def verify_current(hook: MLeapServingHook, sample: dict[str, Any] | None) -> dict[str, Any] | None:
    """Facts for the model serving now if it passes its checks; None when nothing serves."""
    schema = hook.model_schema()
    if schema is None:
        return None
    outputs = check_scoring(hook.transform(sample), sample, None) if sample else []
    return legacy_facts(hook.url, schema, outputs)


def unload(hook: MLeapServingHook) -> bool:
    """Unload the server's one model (`DELETE /model`) and confirm nothing serves; False when nothing
    did."""
    if hook.model_schema() is None:
        log.info("MLeap serving at %s serves no model: nothing to unload", hook.url)
        return False
    hook.unload_legacy()
    if hook.model_schema() is not None:
        raise DeployError(f"MLeap serving at {hook.url} still serves a model after DELETE /model")
    log.info("Unloaded the model from MLeap serving at %s", hook.url)
    return True


def serving_now(hook: MLeapServingHook, sample: dict[str, Any] | None) -> str:
    """What the server serves, as far as its API shows it: the schema and what the sample scores."""
    schema = hook.model_schema()
    scored: Any = None
    if schema is not None and sample is not None:
        try:
            scored = hook.transform(sample)
        except ModelVerificationError as exc:
            scored = str(exc)
    return json.dumps([schema, scored], sort_keys=True)


def _shows_up(hook: MLeapServingHook, sample: dict[str, Any] | None, before: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(POLL)
        if serving_now(hook, sample) != before:
            return True
    return False


def rollback(hook: MLeapServingHook, previous: str | None, cause: BaseException) -> None:
    if previous:
        log.error("The deployment failed (%s): loading the previous bundle %s again", cause, previous)
        if not hook.load_model(previous):
            log.error(
                "MLeap serving did not confirm loading %s in time either: check what it serves", previous
            )
    else:
        log.error(
            "The deployment failed (%s): no previous deployment recorded; unloading the new model", cause
        )
        hook.unload_legacy()
