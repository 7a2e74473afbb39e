"""The Airflow Assets a successful deployment updates, so that other DAGs (a smoke test, a monitoring job)
can be scheduled on deployments.

Which model a run deploys is known only when it runs, so the register step declares one `AssetAlias` as its
outlet and, once the deployment is registered, adds an event to two Assets through it:

- `DEPLOYMENTS` (`model-governance-deployments`, URI `x-model-governance://deployments`): every deployment;
- `model_deployments(name)` (`model-governance-deployments/<model slug>`, URI
  `x-model-governance://deployments/<model slug>`): one model's deployments, whatever their target.

A consumer schedules on either Asset (known when its DAG is parsed); the event's extra says which version
serves where (`deployment_extra`). A redeploy that found the model serving already deploys nothing, and
adds no event.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias

from model_governance.connections import MLEAP_CONN_ID

if TYPE_CHECKING:
    from collections.abc import Collection

    from model_governance.metadata import DeploymentDocument

ASSET_GROUP = "model-governance"
URI_SCHEME = "x-model-governance"  # x-: a scheme of this project's own, which Airflow leaves as it is
DEPLOYMENTS = Asset(name="model-governance-deployments", uri=f"{URI_SCHEME}://deployments", group=ASSET_GROUP)
DEPLOYMENTS_ALIAS = AssetAlias(name="model-governance-deployment", group=ASSET_GROUP)


def model_deployments(model_name: str) -> Asset:
    """The Asset of one model's deployments: `model_deployments("rental pricing prediction")`.

    :param model_name: the model's `model.name` (its registry slug names the Asset).
    """
    from model_governance.metadata import model_slug  # at run time: DAG files import this module to parse

    slug = model_slug(model_name)
    return Asset(name=f"{DEPLOYMENTS.name}/{slug}", uri=f"{DEPLOYMENTS.uri}/{slug}", group=ASSET_GROUP)


def deployment_extra(doc: DeploymentDocument, registered: dict[str, Any]) -> dict[str, Any]:
    """What an asset event says of a deployment: which version serves where, and its exact bundle."""
    if doc.deploy is None or doc.registry is None:
        raise ValueError("only a deployment that is archived and serving is announced")
    deploy = doc.deploy
    return {
        "model": doc.model.name,
        "version": doc.model.version,
        "sha256": doc.executable_entry.sha256,
        "qualifiedName": doc.qualified_name,
        "endpoint": deploy.scoring_url or deploy.endpoint_url,  # spark: where the pipeline is published
        "host_type": deploy.host_type,
        "conn_id": deploy.conn_id,  # the serving connection (microservice)
        "target": deploy.target,
        "deployed_at": deploy.deployed_at,
        "outputs": list(deploy.outputs),
        "registry_root": doc.registry.root,
        "registry_path": doc.registry.path,
        "registry_url": doc.registry.url,
        "atlas_guid": registered.get("guid"),
        "dag_id": doc.dag_id,
        "run_id": doc.run_id,
    }


def announce_deployment(
    context: Any, outlets: Collection[Any], doc: DeploymentDocument, registered: dict[str, Any]
) -> bool:
    """Add the deployment's events through `DEPLOYMENTS_ALIAS`, when the task declares it as an outlet;
    whether it did. A deployment left as it was (already serving) is not announced."""
    if DEPLOYMENTS_ALIAS not in outlets or doc.deploy is None or doc.deploy.unchanged:
        return False
    extra = deployment_extra(doc, registered)
    events = context["outlet_events"][DEPLOYMENTS_ALIAS]
    for asset in (DEPLOYMENTS, model_deployments(doc.model.name)):
        events.add(asset, extra=extra)
    return True


def smoke_test(extra: dict[str, Any], webhdfs_conn_id: str) -> dict[str, Any]:
    """Score the archived sample request (`samples/leapframe.json`) at the endpoint an asset event names,
    through the serving connection the event names, and check the answer as the deploy step does; what it
    scored, or why there was nothing to score (a Spark batch deployment, no sample archived).
    `ModelVerificationError` when the endpoint fails it.

    :param extra: an asset event's extra (`deployment_extra`).
    :param webhdfs_conn_id: the WebHDFS connection, when the registry is on HDFS.
    """
    from model_governance.deploy.verify import SAMPLE_REQUEST, check_scoring, parse_sample
    from model_governance.exceptions import InvalidInputError, ModelVerificationError
    from model_governance.hooks.mleap import MLeapServingHook
    from model_governance.registry import Registry

    if extra.get("host_type") != "microservice":
        return {"qualifiedName": extra.get("qualifiedName"), "skipped": "no endpoint to score (batch)"}
    registry = Registry.from_root(extra["registry_root"], webhdfs_conn_id)
    sample_path = posixpath.join(extra["registry_path"], SAMPLE_REQUEST)
    if not registry.store.exists(sample_path):
        return {"qualifiedName": extra["qualifiedName"], "skipped": f"no {SAMPLE_REQUEST} archived"}
    sample = parse_sample(registry.read_bytes(sample_path))
    hook = MLeapServingHook(extra.get("conn_id") or MLEAP_CONN_ID)
    endpoint = extra["endpoint"]
    if not endpoint.startswith(f"{hook.url}/"):  # the connection was pointed elsewhere since
        raise InvalidInputError(
            f"{extra['qualifiedName']}: {endpoint} is not served by connection {hook.mleap_conn_id!r} "
            f"({hook.url})"
        )
    answer = hook.request(
        "POST", endpoint.removeprefix(hook.url), json=sample, headers={"Accept": "application/json"}
    )
    if answer.status_code != 200:
        raise ModelVerificationError(
            f"{extra['qualifiedName']}: {extra['endpoint']} answered {answer.status_code}: "
            f"{answer.text[:300]}"
        )
    body = answer.json()
    if body.get("status") == "STATUS_ERROR":  # spring-boot: 200, but no model of that name serves
        raise ModelVerificationError(f"{extra['qualifiedName']}: {extra['endpoint']}: {body.get('error')}")
    outputs = check_scoring(body, sample, None)
    return {
        "qualifiedName": extra["qualifiedName"],
        "sha256": extra["sha256"],
        "rows": len(body["rows"]),
        "outputs": [field["name"] for field in outputs],
    }
