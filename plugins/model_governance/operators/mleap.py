"""Step 2b: deploy the archived serialized model to an MLeap serving microservice."""

from __future__ import annotations

import posixpath
from datetime import datetime, timezone
from typing import Any, Sequence

from airflow.sdk import BaseOperator

from model_governance.operators._args import as_document


class MLeapDeployOperator(BaseOperator):
    """Put the published bundle where the server reads it, load it, and confirm it serves.

    The bundle comes from the registry (the archived bytes, checked against the manifest's sha256), not
    from the staging source: what serves is exactly what was archived. Returns the deployment document
    with the deploy facts added (host, endpoint, time in UTC, the model's input schema).
    """

    template_fields: Sequence[str] = ("document", "mleap_conn_id", "webhdfs_conn_id")
    ui_color = "#e9f7ec"

    def __init__(
        self,
        *,
        document: Any,
        mleap_conn_id: str = "mleap_default",
        webhdfs_conn_id: str = "webhdfs_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.document = document
        self.mleap_conn_id = mleap_conn_id
        self.webhdfs_conn_id = webhdfs_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from model_governance.bundle import validate_mleap_bundle
        from model_governance.exceptions import DeployError
        from model_governance.hooks.mleap import MLeapServingHook
        from model_governance.metadata import DeployFacts
        from model_governance.registry import Registry

        doc = as_document(self.document)
        if doc.registry is None:
            raise DeployError("the model is not archived yet: publish it to the registry before deploying")
        hook = MLeapServingHook(self.mleap_conn_id)
        file_name = posixpath.basename(doc.executable)
        # One folder per model version on the server's volume: an older version stays loadable for a rollback.
        relative = posixpath.join(doc.model.slug, doc.model.version, file_name)
        local = hook.models_dir / relative
        registry = Registry.from_root(doc.registry.root, self.webhdfs_conn_id)
        registry.download(posixpath.join(doc.registry.path, doc.executable), local, doc.executable_entry.sha256)
        validate_mleap_bundle(local)
        server_path = f"{hook.models_mount}/{relative}"
        self.log.info("Loading %s into MLeap serving at %s", server_path, hook.base_url)
        hook.load_model(server_path)
        schema = hook.model_schema()
        if schema is None:
            raise DeployError(f"MLeap serving at {hook.base_url} accepted {server_path} but serves no model")
        facts = DeployFacts(
            host_type="microservice",
            host_port=hook.host_port,
            endpoint_url=f"{hook.base_url}/{doc.model.endpoint}",
            serialized_object=file_name,
            deployed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            input_schema=list(schema.get("fields", [])),
        )
        self.log.info("Serving %s at %s", doc.deploy_name, facts.endpoint_url)
        return doc.with_deploy(facts).to_json()
