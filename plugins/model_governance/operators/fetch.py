"""Step 2a: fetch the staged model, check it, and upload it to the registry's pending area."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from model_governance.connections import ATLAS_CONN_ID, MLEAP_CONN_ID, WEBHDFS_CONN_ID
from model_governance.exceptions import InvalidInputError
from model_governance.operators._args import as_bool, run_key
from model_governance.operators._lineage import FETCH, DeploymentLineageMixin

HOST_TYPES = ("microservice", "spark")

if TYPE_CHECKING:
    from airflow.sdk.types import Logger

    from model_governance.metadata import DeploymentDocument
    from model_governance.registry import Registry
    from model_governance.validation import Validation


class FetchStagingOperator(DeploymentLineageMixin, BaseOperator):
    """Fetch `staging` into a private working folder, validate it, upload it to `<registry>/.pending/<run>/`.

    Returns the deployment document (model metadata, source, manifest) for the next steps. Nothing of the
    working folder outlives the task: later tasks may run on other workers and read the registry instead.
    When the registry already holds this version with the same content nothing is uploaded; with other
    content the run stops here, before anything changed, unless `force` is set.

    With `skip_unchanged`, a version that already serves exactly as staged (Atlas records its bundle at the
    target, the registry archives the same content, the server serves it and scores the sample) ends the
    step as skipped before any lock or upload, and the rest of the run is skipped with it.

    :param staging: where the owner staged the model: a folder, an archive, or a git URL (templated).
    :param registry_root: the registry, `hdfs:///<path>` or a local folder (templated).
    :param webhdfs_conn_id: the WebHDFS connection, for a registry on HDFS (templated).
    :param host_type: `microservice` or `spark`: what the serialized model is checked for (templated).
    :param force: replace a registry version that holds other content (templated).
    :param skip_unchanged: skip the run when the target already serves this exact version (templated;
        `microservice` only, never with `force`).
    :param serving_conn_id: the MLeap serving connection asked for `skip_unchanged` (templated).
    :param atlas_conn_id: the Atlas connection asked for `skip_unchanged` (templated).
    """

    template_fields: Sequence[str] = (
        "staging",
        "registry_root",
        "webhdfs_conn_id",
        "host_type",
        "force",
        "skip_unchanged",
        "serving_conn_id",
        "atlas_conn_id",
    )
    ui_color = "#e8f4fa"
    lineage_step = FETCH

    def __init__(
        self,
        *,
        staging: str,
        registry_root: str,
        webhdfs_conn_id: str = WEBHDFS_CONN_ID,
        host_type: str = "microservice",
        force: bool | str = False,
        skip_unchanged: bool | str = False,
        serving_conn_id: str = MLEAP_CONN_ID,
        atlas_conn_id: str = ATLAS_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.staging = staging
        self.registry_root = registry_root
        self.webhdfs_conn_id = webhdfs_conn_id
        self.host_type = host_type
        self.force = force
        self.skip_unchanged = skip_unchanged
        self.serving_conn_id = serving_conn_id
        self.atlas_conn_id = atlas_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from model_governance.bundle import validate_mleap_bundle, validate_spark_pipeline
        from model_governance.lifecycle import holding_model_lock, requested_by
        from model_governance.metadata import DeploymentDocument
        from model_governance.registry import Registry
        from model_governance.staging import stage, users_paths

        if self.host_type not in HOST_TYPES:
            raise InvalidInputError(f"host_type {self.host_type!r} must be one of {', '.join(HOST_TYPES)}")
        force = as_bool(self.force, "force")
        registry = Registry.from_root(self.registry_root, self.webhdfs_conn_id)
        key = run_key(context)
        dag_id = context["dag"].dag_id
        with tempfile.TemporaryDirectory(prefix="model-governance-") as workdir, one_line_errors():
            staged = stage(self.staging, Path(workdir), require_endpoint=self.host_type == "microservice")
            self.log.info(
                "Staged %s %s from %s (%s): %d files, %d bytes; serialized model %s",
                staged.metadata.name,
                staged.metadata.version,
                staged.source.location,
                staged.source.revision,
                len(staged.manifest),
                sum(e.size for e in staged.manifest),
                staged.executable,
            )
            with users_paths(staged.folder, staged.source.location):
                validation = recorded_validation(staged.folder, self.log)  # refused: nothing uploaded
            registry.check_owner(staged.metadata)  # another model's folder: refused before the lock is taken
            doc = DeploymentDocument(
                model=staged.metadata,
                source=staged.source,
                manifest=staged.manifest,
                executable=staged.executable,
                dag_id=dag_id,
                run_id=context["run_id"],
                run_key=key,
                requested_by=requested_by(context),  # the approval step refuses this user's approval
                validation=validation,
            )
            skip = as_bool(self.skip_unchanged, "skip_unchanged") and self.host_type == "microservice"
            unchanged = self._unchanged(registry, doc, staged.folder) if skip and not force else None
            if unchanged is not None:  # nothing taken, uploaded or asked: the rest of the run is skipped
                self.log.info("Unchanged, nothing to do: %s", unchanged)
                raise AirflowSkipException(f"unchanged: {unchanged}")
            lock = holding_model_lock(  # released here if this step fails; by the clean-up task otherwise
                registry,
                staged.metadata.name,
                staged.metadata.slug,
                dag_id=dag_id,
                run_id=context["run_id"],
                run_key=key,
                is_running=dag_run_is_running,
            )
            with lock:
                with users_paths(staged.folder, staged.source.location):
                    if self.host_type == "microservice":
                        bundle = validate_mleap_bundle(staged.folder / staged.executable)
                        self.log.info(
                            "MLeap bundle %s: %s format, MLeap %s", bundle.name, bundle.format, bundle.version
                        )
                    else:
                        self.log.info(
                            "Spark pipeline: %s", validate_spark_pipeline(staged.folder / staged.executable)
                        )
                if registry.already_published(staged.metadata, staged.manifest, force):
                    self.log.info("The registry already holds this exact version: nothing to upload")
                else:
                    registry.upload_pending(key, staged.folder, staged.manifest)
        return self.lineage_output(doc.to_json())

    def _unchanged(self, registry: Registry, doc: DeploymentDocument, folder: Path) -> str | None:
        """Why the target needs nothing (`deploy.microservice.unchanged_at_target`); None to deploy. Any
        doubt deploys: the steps that follow report what is wrong."""
        from model_governance.deploy.microservice import unchanged_at_target
        from model_governance.deploy.verify import SAMPLE_REQUEST, parse_sample
        from model_governance.hooks.atlas import AtlasHook
        from model_governance.hooks.mleap import MLeapServingHook

        try:
            staged_sample = any(entry.path == SAMPLE_REQUEST for entry in doc.manifest)
            sample = parse_sample((folder / SAMPLE_REQUEST).read_bytes()) if staged_sample else None
            mleap, atlas = MLeapServingHook(self.serving_conn_id), AtlasHook(self.atlas_conn_id)
            return unchanged_at_target(mleap, atlas, registry, doc, sample)
        except Exception as exc:
            self.log.warning(
                "Could not tell whether the target serves this version already (%s): deploying", exc
            )
            return None


def recorded_validation(folder: Path, log: Logger) -> Validation | None:
    """The owner's recorded validation (`model.validation.*`, `model.risk.tier`), checked against today's
    date (UTC); a MetadataError naming the key and value when it forbids deploying, None (and a warning)
    when the staged model records none."""
    from datetime import UTC, datetime

    from model_governance.metadata import METADATA_FILE, read_properties_file
    from model_governance.validation import BY_KEY, STATUS_KEY, VALID_UNTIL_KEY, check_validation

    path = folder / METADATA_FILE
    validation = check_validation(read_properties_file(path), str(path), datetime.now(UTC).date())
    if validation is None:
        log.warning(
            "%s records no validation (%s, %s, %s): deploying without a recorded validation",
            METADATA_FILE,
            STATUS_KEY,
            BY_KEY,
            VALID_UNTIL_KEY,
        )
    else:
        log.info(
            "Validation: %s by %s, valid until %s%s",
            validation.status,
            validation.by,
            validation.valid_until,
            f", risk tier {validation.risk_tier}" if validation.risk_tier else "",
        )
    return validation


@contextmanager
def one_line_errors() -> Iterator[None]:
    """An input error is one line in the task log: a newline in a user's value cannot forge log lines."""
    try:
        yield
    except InvalidInputError as exc:
        text = str(exc)
        if "\n" not in text and "\r" not in text:
            raise
        raise type(exc)(text.replace("\r", "\\r").replace("\n", "\\n")) from None


def dag_run_is_running(holder: dict[str, Any]) -> bool | None:
    """Whether the DAG run holding a lock is still queued or running, asked through Airflow's task SDK;
    None when the lock does not say which run, or Airflow cannot answer."""
    dag_id, run_id = holder.get("dag_id"), holder.get("dag_run_id")
    if not dag_id or not run_id:
        return None
    try:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        state = RuntimeTaskInstance.get_dagrun_state(dag_id, run_id)
    except Exception as exc:  # AirflowRuntimeError carries the API server's answer
        detail = getattr(getattr(exc, "error", None), "detail", None)
        status = (
            detail.get("status_code")
            if isinstance(detail, dict)
            else getattr(getattr(exc, "response", None), "status_code", None)
        )
        if status == 404 or "was not found" in str(exc):
            return False  # the run was deleted: it will never release the lock
        return None
    return str(getattr(state, "value", state)) in ("queued", "running")
