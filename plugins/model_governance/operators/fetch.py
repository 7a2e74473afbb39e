"""Step 2a: fetch the staged model, check it, and upload it to the registry's pending area."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

from airflow.sdk import BaseOperator

from model_governance.exceptions import InvalidInputError
from model_governance.operators._args import as_bool, run_key

HOST_TYPES = ("microservice", "spark")


class FetchStagingOperator(BaseOperator):
    """Fetch `staging` into a private working folder, validate it, and upload it to `<registry>/.pending/<run>/`.

    Returns the deployment document (model metadata, source, manifest) for the next steps. Nothing of the
    working folder outlives the task: later tasks may run on other workers and read the registry instead.
    When the registry already holds this version with the same content nothing is uploaded; with other
    content the run stops here, before anything changed, unless `force` is set.
    """

    template_fields: Sequence[str] = ("staging", "registry_root", "webhdfs_conn_id", "host_type", "force")
    ui_color = "#e8f4fa"

    def __init__(
        self,
        *,
        staging: str,
        registry_root: str,
        webhdfs_conn_id: str = "webhdfs_default",
        host_type: str = "microservice",
        force: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.staging = staging
        self.registry_root = registry_root
        self.webhdfs_conn_id = webhdfs_conn_id
        self.host_type = host_type
        self.force = force

    def execute(self, context: Any) -> dict[str, Any]:
        from model_governance.bundle import validate_mleap_bundle, validate_spark_pipeline
        from model_governance.metadata import DeploymentDocument
        from model_governance.registry import Registry
        from model_governance.staging import stage

        if self.host_type not in HOST_TYPES:
            raise InvalidInputError(f"host_type {self.host_type!r} must be one of {', '.join(HOST_TYPES)}")
        force = as_bool(self.force, "force")
        registry = Registry.from_root(self.registry_root, self.webhdfs_conn_id)
        with tempfile.TemporaryDirectory(prefix="model-governance-") as workdir:
            staged = stage(self.staging, Path(workdir), require_endpoint=self.host_type == "microservice")
            self.log.info(
                "Staged %s %s from %s (%s): %d files, %d bytes; serialized model %s",
                staged.metadata.name, staged.metadata.version, staged.source.location, staged.source.revision,
                len(staged.manifest), sum(e.size for e in staged.manifest), staged.executable,
            )
            key = run_key(context)
            registry.acquire_lock(staged.metadata.slug, key)  # released by the clean-up task
            if self.host_type == "microservice":
                bundle = validate_mleap_bundle(staged.folder / staged.executable)
                self.log.info("MLeap bundle %s: %s format, MLeap %s", bundle.name, bundle.format, bundle.version)
            else:
                self.log.info("Spark pipeline: %s", validate_spark_pipeline(staged.folder / staged.executable))
            if registry.already_published(staged.metadata, staged.manifest, force):
                self.log.info("The registry already holds this exact version: nothing to upload")
            else:
                registry.upload_pending(key, staged.folder, staged.manifest)
        doc = DeploymentDocument(
            model=staged.metadata,
            source=staged.source,
            manifest=staged.manifest,
            executable=staged.executable,
            dag_id=context["dag"].dag_id,
            run_id=context["run_id"],
            run_key=key,
        )
        return doc.to_json()
