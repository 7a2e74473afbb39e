"""What a deployment means to OpenLineage: its datasets and its run facet, from the deployment document.

OpenLineage is an additional stream beside Atlas (the system of record), off unless the OpenLineage provider
is configured (`[openlineage] transport`). Only the provider's listener calls this module, through the
operators' `get_openlineage_facets_on_complete`/`_on_failure` (`operators/_lineage.py`), so the OpenLineage
packages are imported here and nowhere else: without the provider, DAGs parse and run as before.

Dataset names follow OpenLineage's naming conventions: HDFS `hdfs://<namenode>:<port>` (or the
nameservice) + path, a local file `file` + absolute path, the serving host `http(s)://<host>:<port>` + the
scoring path, a Hive table `hive` + `db.table` (the metastore's address is not known here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import attrs
from airflow.providers.openlineage.extractors import OperatorLineage
from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.facet_v2 import RunFacet, schema_dataset

from model_governance.metadata import DeploymentDocument, ManifestEntry
from model_governance.operators._lineage import FETCH, PUBLISH, SPARK_PUBLISH, SPARK_SCORE

if TYPE_CHECKING:
    from collections.abc import Iterable

# The run facet's key in an event's `run.facets`, and its schema's identifier: the `$id` of
# docs/openlineage/ModelDeploymentRunFacet.json (a URN: the project publishes no web site to host it).
FACET_KEY = "modelDeployment"
FACET_SCHEMA_URL = "urn:model-governance:openlineage:ModelDeploymentRunFacet:1-0-0"


@attrs.define
class ModelDeploymentRunFacet(RunFacet):
    """Which model version a run deployed, whose it is, who approved it, and the exact bundle (sha256).

    :param model: the model's name (`model.name`).
    :param version: its version (`model.version`).
    :param owner: its owner (`model.owner`).
    :param approver: who approved the deployment; None when no approval was recorded or none was required.
    :param bundleSha256: sha256 of the serialized model (the MLeap bundle or the zipped Spark pipeline).
    :param qualifiedName: the deployment's identity in Atlas (`<name>-v<version>@<host:port>`), once it has
        a host.
    :param registryUrl: the version's folder in the registry, once it is archived.
    """

    model: str
    version: str
    owner: str
    approver: str | None = None
    # OpenLineage facets name their fields in camelCase
    bundleSha256: str = ""
    qualifiedName: str | None = None
    registryUrl: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return FACET_SCHEMA_URL


def run_facet(doc: DeploymentDocument) -> ModelDeploymentRunFacet:
    approval = doc.approval
    return ModelDeploymentRunFacet(
        model=doc.model.name,
        version=doc.model.version,
        owner=doc.model.owner,
        approver=(approval.by or None) if approval is not None and approval.required else None,
        bundleSha256=doc.executable_entry.sha256,
        qualifiedName=doc.qualified_name if doc.deploy is not None else None,
        registryUrl=doc.registry.url if doc.registry is not None else None,
    )


def dataset_name(location: str) -> tuple[str, str]:
    """(namespace, name) of a location by OpenLineage's naming conventions."""
    if location.startswith("hive:"):
        return "hive", location.removeprefix("hive:").lower()
    if location.startswith("git+"):
        location = location.removeprefix("git+").rsplit("@", 1)[0]
    if "://" not in location:  # a local path
        return "file", location
    parts = urlsplit(location)
    if parts.scheme == "file":
        return "file", unquote(parts.path)
    return f"{parts.scheme}://{parts.netloc}", unquote(parts.path) or "/"


def _inputs(locations: Iterable[str]) -> list[InputDataset]:
    return [InputDataset(*dataset_name(location)) for location in dict.fromkeys(locations)]


def _outputs(locations: Iterable[str], facets: dict[str, Any] | None = None) -> list[OutputDataset]:
    return [OutputDataset(*dataset_name(location), facets=facets or {}) for location in locations]


def _lineage_files(doc: DeploymentDocument) -> list[ManifestEntry]:
    """The files lineage names: the training data, then the serialized model."""
    return [*doc.training_data, doc.executable_entry]


def staged_locations(doc: DeploymentDocument) -> list[str]:
    """Where the training data and the serialized model came from: the files of a staged folder, or the
    git repository or archive as a whole (their files have no address of their own)."""
    if doc.source.kind == "local":
        folder = dataset_name(doc.source.location)[1].rstrip("/")
        return [f"{folder}/{entry.path}" for entry in _lineage_files(doc)]
    return [doc.source.location]


def archived_locations(doc: DeploymentDocument) -> list[str]:
    """The archived training data and serialized model in the registry (what Atlas registers as files)."""
    if doc.registry is None:
        return []
    return [f"{doc.registry.url}/{entry.path}" for entry in _lineage_files(doc)]


def _schema_facet(fields: list[dict[str, Any]]) -> dict[str, Any]:
    """The served model's output fields as a dataset schema (MLeap types: a name, or a dict with `base`)."""
    if not fields:
        return {}

    def type_of(field: dict[str, Any]) -> str | None:
        kind = field.get("type")
        if isinstance(kind, dict):
            return str(kind.get("base") or kind.get("type") or "") or None
        return str(kind) if kind else None

    schema = schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=f["name"], type=type_of(f)) for f in fields]
    )
    return {"schema": schema}


def deployed_outputs(doc: DeploymentDocument) -> list[OutputDataset]:
    """Where the deployment serves: the scoring endpoint (microservice), or the batch job's outputs."""
    deploy = doc.deploy
    if deploy is None:
        return []
    if deploy.outputs:
        return _outputs(deploy.outputs)
    return _outputs([deploy.scoring_url or deploy.endpoint_url], _schema_facet(deploy.output_schema))


def step_lineage(step: str, doc: DeploymentDocument, failed: bool = False) -> OperatorLineage:
    """The inputs, outputs and run facet of one step, from the document it ended with; after a failure,
    from the one it started with: what it read, and no outputs.

    fetch: the staged training data and model → (the pending upload, not a dataset); publish: the same →
    the archived files; deploy and register: the archived training data and model → the serving endpoint
    (or the batch job's output); the Spark publish step: → the published pipeline; the scoring job: the
    pipeline and its input datasets → its output.
    """
    inputs: list[InputDataset]
    outputs: list[OutputDataset] = []
    deploy = doc.deploy
    if step in (FETCH, PUBLISH):
        inputs = _inputs(staged_locations(doc))
        if step == PUBLISH:
            outputs = _outputs(archived_locations(doc))
    elif step == SPARK_SCORE and deploy is not None:
        inputs = _inputs([deploy.endpoint_url, *deploy.inputs])
        outputs = _outputs(deploy.outputs)
    elif step == SPARK_PUBLISH:
        inputs = _inputs(archived_locations(doc))
        outputs = _outputs([deploy.endpoint_url]) if deploy is not None else []
    else:  # DEPLOY, REGISTER
        inputs = _inputs(archived_locations(doc) + (deploy.inputs if deploy is not None else []))
        outputs = deployed_outputs(doc)
    return OperatorLineage(
        inputs=inputs, outputs=[] if failed else outputs, run_facets={FACET_KEY: run_facet(doc)}
    )
