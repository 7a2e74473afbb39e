"""Step 2b: deploy the archived serialized model to MLeap serving, verify it, and roll back if it fails.

A deployment never leaves the endpoint worse than it was:
- legacy mleap-serving swaps models only on a successful load, so a failed load leaves the old model; a
  model that loads but fails its sample scoring is replaced by the previous bundle again (its location
  comes from Atlas: the deployment currently registered at this server);
- mleap-spring-boot: the new bundle is loaded and scored under a temporary name first, then swapped in
  under the endpoint's name and scored again; if that fails, the previous bundle is loaded back.
"""

from __future__ import annotations

import json
import posixpath
from datetime import datetime, timezone
from typing import Any, Sequence
from urllib.parse import urlsplit

from airflow.sdk import BaseOperator

from model_governance.operators._args import as_document

SAMPLE_REQUEST = "samples/leapframe.json"  # optional: a LeapFrame the deploy step scores to verify the model


class MLeapDeployOperator(BaseOperator):
    """Put the published bundle where the server reads it, load it, confirm it serves, and score the sample.

    The bundle comes from the registry (the archived bytes, checked against the manifest's sha256), not
    from the staging source: what serves is exactly what was archived. Returns the deployment document
    with the deploy facts added (host, endpoint, scoring URL, time in UTC, input and output schemas).
    `atlas_conn_id` is where the previous deployment is looked up for a legacy rollback. With
    `skip_current`, a model that already serves this exact bundle is verified (schema, sample) and left alone.
    """

    template_fields: Sequence[str] = ("document", "mleap_conn_id", "webhdfs_conn_id", "atlas_conn_id")
    ui_color = "#e9f7ec"

    def __init__(
        self,
        *,
        document: Any,
        mleap_conn_id: str = "mleap_default",
        webhdfs_conn_id: str = "webhdfs_default",
        atlas_conn_id: str | None = "atlas_default",
        load_timeout: float = 120.0,
        skip_current: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.skip_current = skip_current
        self.document = document
        self.mleap_conn_id = mleap_conn_id
        self.webhdfs_conn_id = webhdfs_conn_id
        self.atlas_conn_id = atlas_conn_id
        self.load_timeout = load_timeout

    def execute(self, context: Any) -> dict[str, Any]:
        from model_governance.exceptions import DeployError
        from model_governance.hooks.mleap import MLeapServingHook
        from model_governance.metadata import DeployFacts
        from model_governance.registry import Registry

        doc = as_document(self.document)
        if doc.registry is None:
            raise DeployError("the model is not archived yet: publish it to the registry before deploying")
        hook = MLeapServingHook(self.mleap_conn_id)
        registry = Registry.from_root(doc.registry.root, self.webhdfs_conn_id)
        name = doc.model.endpoint or doc.model.slug
        # The legacy server holds one model, so any deployment there replaces it; spring-boot serves by name.
        target = hook.host_port if hook.api == "legacy" else f"{hook.host_port}/models/{name}"
        current = self._current_deployment(target)
        bundle = self._deliver(hook, registry, doc.registry.path, doc.model.slug, doc.model.version, doc.executable, doc.executable_entry.sha256)
        sample = self._sample(registry, doc)
        facts: dict[str, Any] | None = None
        if self.skip_current and current and current.get("qualifiedName") == doc.model.qualified_name(hook.host_port) \
                and current.get("serializedObjectSha256") == doc.executable_entry.sha256:
            facts = self._verify_current(hook, name, bundle, sample)
            if facts is not None:
                facts.update(unchanged=True, deployed_at=current["deploy.datetime"])
        if facts is None and hook.api == "legacy":
            facts = self._deploy_legacy(hook, bundle, self._previous_bundle(hook, registry, current), sample)
        elif facts is None:
            facts = self._deploy_spring_boot(hook, bundle, name, doc.work_key, sample)
        deploy = DeployFacts(
            host_type="microservice",
            host_port=hook.host_port,
            endpoint_url=f"{hook.base_url}/{doc.model.endpoint}",
            serialized_object=posixpath.basename(doc.executable),
            target=target,
            **{"deployed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **facts},
        )
        self.log.info(
            "%s %s at %s (scoring: %s)", "Already serving, verified:" if deploy.unchanged else "Serving",
            doc.deploy_name, deploy.endpoint_url, deploy.scoring_url,
        )
        registry.mark_served(doc, deploy.scoring_url)  # from now on this version is immutable unless forced
        return doc.with_deploy(deploy).to_json()

    def _current_deployment(self, target: str) -> dict[str, Any] | None:
        """What Atlas says serves at target now: the record a rollback or a redeploy check starts from."""
        if not self.atlas_conn_id:
            return None
        from model_governance.governance import list_deployments
        from model_governance.hooks.atlas import AtlasHook

        found = list_deployments(AtlasHook(self.atlas_conn_id), limit=1, status="deployed", target=target)
        return found[0] if found else None

    def _verify_current(self, hook: Any, name: str, bundle: str, sample: dict[str, Any] | None) -> dict[str, Any] | None:
        """Facts for a model that already serves this bundle and passes its checks; None to deploy it again."""
        try:
            if hook.api == "legacy":
                schema = hook.model_schema()
                if schema is None:
                    return None
                outputs = check_scoring(hook.transform(sample), sample, None) if sample else []
                return legacy_facts(hook, schema, outputs)
            model = hook.get_model(name)
            if model is None or model.get("uri") != bundle:
                return None
            facts = spring_boot_facts(hook, name, hook.wait_loaded(name, self.load_timeout))
            if sample:
                check_scoring(hook.transform_named(name, sample), sample, output_names(facts))
            return facts
        except Exception as exc:  # whatever is wrong, a fresh deployment puts it right
            self.log.warning("The current deployment does not verify (%s): deploying again", exc)
            return None

    # -- getting the bundle to the server -------------------------------------------------------------------
    def _deliver(self, hook: Any, registry: Any, version_path: str, slug: str, version: str, executable: str, sha256: str) -> str:
        """Where the server reads the archived bundle: a path (legacy) or a URI (spring-boot).

        The models folder: copied there (sha256 checked), `/models/<slug>/<version>/<file>` as the server
        sees it. Spring-boot with the connection's extra `delivery` = `webhdfs`: the registry's WebHDFS
        OPEN URL, which MLeap fetches itself (no credentials, redirect followed: an insecure cluster only).
        """
        from model_governance.bundle import validate_mleap_bundle
        from model_governance.exceptions import DeployError

        if hook.delivery == "webhdfs":
            if hook.api != "spring-boot" or registry.store.kind() != "hdfs":
                raise DeployError(f"connection {hook.mleap_conn_id!r}: delivery webhdfs needs the spring-boot API and a registry on HDFS")
            return registry.store.open_url(posixpath.join(version_path, executable))
        # One folder per model version on the server's volume: older versions stay loadable for a rollback.
        relative = posixpath.join(slug, version, posixpath.basename(executable))
        local = hook.models_dir / relative
        registry.download(posixpath.join(version_path, executable), local, sha256)
        validate_mleap_bundle(local)
        path = f"{hook.models_mount}/{relative}"
        return path if hook.api == "legacy" else f"file:{path}"

    def _sample(self, registry: Any, doc: Any) -> dict[str, Any] | None:
        from model_governance.exceptions import BundleError

        if not any(e.path == SAMPLE_REQUEST for e in doc.manifest):
            self.log.info("No %s staged: the model is checked by its schema only", SAMPLE_REQUEST)
            return None
        raw = registry.read_bytes(posixpath.join(doc.registry.path, SAMPLE_REQUEST))
        try:
            frame = json.loads(raw)
            assert isinstance(frame["schema"]["fields"], list) and isinstance(frame["rows"], list)
        except (ValueError, KeyError, TypeError, AssertionError):
            raise BundleError(f"{SAMPLE_REQUEST}: not a LeapFrame ({{\"schema\": {{\"fields\": [...]}}, \"rows\": [...]}})") from None
        if not frame["rows"]:  # nothing to score would verify nothing
            raise BundleError(f"{SAMPLE_REQUEST}: rows is empty; give at least one row to score")
        return frame

    # -- legacy mleap-serving ---------------------------------------------------------------------------------
    def _deploy_legacy(self, hook: Any, bundle: str, previous: str | None, sample: dict[str, Any] | None) -> dict[str, Any]:
        from model_governance.exceptions import ModelVerificationError

        self.log.info("Loading %s into MLeap serving at %s (previous: %s)", bundle, hook.base_url, previous or "none recorded")
        hook.load_model(bundle)  # a failed load raises, and the server still serves the old model
        try:
            schema = hook.model_schema()
            if schema is None:
                raise ModelVerificationError(f"MLeap serving at {hook.base_url} accepted {bundle} but serves no model")
            outputs = check_scoring(hook.transform(sample), sample, None) if sample else []
        except Exception as exc:
            self._rollback_legacy(hook, previous, exc)
            raise
        return legacy_facts(hook, schema, outputs)

    def _previous_bundle(self, hook: Any, registry: Any, record: dict[str, Any] | None) -> str | None:
        """The bundle of the deployment Atlas says serves here, put back in the models folder for a rollback."""
        if record is None:
            return None
        from model_governance.metadata import model_slug
        from model_governance.registry import Registry

        version_path = urlsplit(record["registryUrl"]).path
        executable = f"executable/{record['deploy.obj.source']}"
        sha256 = (record.get("artifactChecksums") or {}).get(posixpath.join(version_path, executable))
        if not sha256:
            return None
        on_hdfs = record["registryUrl"].startswith("hdfs://")
        if on_hdfs != (registry.store.kind() == "hdfs"):  # the previous version lives in another kind of registry
            registry = Registry.from_root("hdfs:///" if on_hdfs else "/", self.webhdfs_conn_id)
        return self._deliver(hook, registry, version_path, model_slug(record["modelName"]), record["modelVersion"], executable, sha256)

    def _rollback_legacy(self, hook: Any, previous: str | None, cause: BaseException) -> None:
        if previous:
            self.log.error("Verification failed (%s): loading the previous bundle %s again", cause, previous)
            hook.load_model(previous)
        else:
            self.log.error("Verification failed (%s): no previous deployment recorded; unloading the new model", cause)
            hook.unload_legacy()

    # -- mleap-spring-boot -------------------------------------------------------------------------------------
    def _deploy_spring_boot(self, hook: Any, uri: str, name: str, run_id: str, sample: dict[str, Any] | None) -> dict[str, Any]:
        import hashlib

        candidate = f"{name}-candidate-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"
        hook.unload_model(candidate)  # left over by an interrupted attempt of this run
        hook.submit_model(candidate, uri)
        try:
            expected = output_names(spring_boot_facts(hook, candidate, hook.wait_loaded(candidate, self.load_timeout)))
            if sample:
                check_scoring(hook.transform_named(candidate, sample), sample, expected)
        finally:
            hook.unload_model(candidate)
        previous = hook.get_model(name)
        previous_uri = previous.get("uri") if previous else None
        if previous_uri == uri:
            self.log.info("%r already serves %s: reloading it", name, uri)
        # From this unload until the submit below, `name` answers 404: the swap's unserved window. Requests
        # that arrive while the new bundle loads wait for the load (measured: `make bench`, swap).
        hook.unload_model(name)
        try:
            hook.submit_model(name, uri)
            facts = spring_boot_facts(hook, name, hook.wait_loaded(name, self.load_timeout))
            if sample:
                check_scoring(hook.transform_named(name, sample), sample, expected)
        except Exception as exc:
            self.log.error("The swap failed (%s): restoring %s", exc, previous_uri or "nothing")
            hook.unload_model(name)
            if previous_uri:
                hook.submit_model(name, previous_uri)
                hook.wait_loaded(name, self.load_timeout)
            raise
        return facts


def legacy_facts(hook: Any, schema: dict[str, Any], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """Scoring URL and schemas on legacy serving. `GET /model` answers the transformer's whole schema,
    inputs and outputs together: the fields the sample scoring added are the outputs; without a sample,
    all of them stand as the input schema."""
    produced = {f["name"] for f in outputs}
    inputs = [f for f in schema.get("fields", []) if f["name"] not in produced]
    return {"scoring_url": f"{hook.base_url}/transform", "input_schema": inputs, "output_schema": outputs}


def spring_boot_facts(hook: Any, name: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Scoring URL and schemas of a model named `name` on spring-boot serving, from its `/meta` answer."""
    return {
        "scoring_url": f"{hook.base_url}/models/{name}/transform",
        "input_schema": list(meta.get("inputSchema", {}).get("fields", [])),
        "output_schema": list(meta.get("outputSchema", {}).get("fields", [])),
    }


def output_names(facts: dict[str, Any]) -> list[str]:
    return [f["name"] for f in facts["output_schema"]]


def check_scoring(answer: dict[str, Any], sample: dict[str, Any], expected: list[str] | None) -> list[dict[str, Any]]:
    """The answer must be a LeapFrame with a row per sample row and the expected output fields; returns the
    fields scoring added (the output schema)."""
    from model_governance.exceptions import ModelVerificationError

    try:
        fields = answer["schema"]["fields"]
        names = [f["name"] for f in fields]
        rows = answer["rows"]
    except (KeyError, TypeError):
        raise ModelVerificationError(f"scoring the sample returned no LeapFrame: {json.dumps(answer)[:300]}") from None
    if not rows or len(rows) != len(sample["rows"]):
        raise ModelVerificationError(f"scoring {len(sample['rows'])} sample rows returned {len(rows)}")
    inputs = {f["name"] for f in sample["schema"]["fields"]}
    wanted = expected if expected is not None else []
    missing = [name for name in wanted if name not in names]
    if missing:
        raise ModelVerificationError(f"scoring the sample returned no field(s) {', '.join(missing)}")
    added = [f for f in fields if f["name"] not in inputs]
    if not added:
        raise ModelVerificationError("scoring the sample added no output field to the LeapFrame")
    return added
