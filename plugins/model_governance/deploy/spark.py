"""The `spark` host type: publish the archived Spark ML pipeline where batch jobs load it, and the
arguments of the scoring job that the next task submits.

The pipeline (a zip of the folder Spark saved) is unpacked into `<models_root>/<model slug>/<version>/`
as Spark saved it, nothing added: a temporary sibling folder is filled, checked (size and sha256 of every
file read back) and renamed into place, so a version appears whole or not at all. A rerun with the same
pipeline changes nothing; another pipeline under the same version replaces it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_governance.bundle import validate_spark_pipeline
from model_governance.exceptions import BundleError, InvalidInputError, RegistryError
from model_governance.metadata import DeploymentDocument, ManifestEntry
from model_governance.registry import Registry, run_path_segment
from model_governance.spark_jobs.score_batch import prediction_columns

if TYPE_CHECKING:
    from airflow.sdk import Connection

log = logging.getLogger(__name__)

SCORING_JOB = Path(__file__).resolve().parents[1] / "spark_jobs" / "score_batch.py"
MAX_PIPELINE_BYTES = 4 * 2**30  # a pipeline that unpacks past this is refused (a zip bomb, or a mistake)


def parse_datasets(value: list[str] | str | None) -> list[str]:
    """Dataset locations from a Param (a list) or a template (a comma-separated string)."""
    items = [value] if isinstance(value, str) else list(value or [])
    return [location.strip() for item in items for location in str(item).split(",") if location.strip()]


def submit_options(conn: Connection) -> dict[str, Any]:
    """SparkSubmitHook arguments: quiet and light, and for a local master the worker's own Python and
    `spark-submit` (the connection's extra `spark_submit` may name one; the provider takes only names on
    PATH)."""
    conf = {"spark.ui.enabled": "false", "spark.log.level": "WARN", "spark.sql.shuffle.partitions": "1"}
    options: dict[str, Any] = {"conf": conf}
    if (conn.host or "").startswith("local"):
        conf.update({"spark.pyspark.python": sys.executable, "spark.pyspark.driver.python": sys.executable})
    spark_submit = conn.extra_dejson.get("spark_submit")
    if spark_submit:
        options["spark_binary"] = spark_submit
    return options


def scoring_arguments(model: str, inputs: list[str], output: str, predictions: list[str]) -> list[str]:
    """The job's arguments; a rerun of a deployment rewrites its own output (`--overwrite`)."""
    arguments = ["--model", model]
    arguments += [a for location in inputs for a in ("--input", location)]
    arguments += [a for column in predictions for a in ("--prediction-column", column)]
    return [*arguments, "--output", output, "--overwrite"]


def _first_json_line(archive: zipfile.ZipFile, folder: str) -> dict[str, Any]:
    """The JSON metadata Spark saved for the pipeline (folder "") or one of its stages."""
    prefix = f"{folder}/metadata/part-" if folder else "metadata/part-"
    parts = sorted(n for n in archive.namelist() if n.startswith(prefix))
    if not parts:
        raise BundleError(f"{prefix}* is missing from the saved pipeline")
    try:
        value = json.loads(archive.read(parts[0]).splitlines()[0])
    except (ValueError, IndexError) as exc:
        raise BundleError(f"{parts[0]} is not Spark's JSON metadata ({exc})") from None
    if not isinstance(value, dict):
        raise BundleError(f"{parts[0]} is not Spark's JSON metadata")
    return value


def pipeline_stage_params(archive_path: Path) -> list[dict[str, Any]]:
    """Every stage's params (set over defaulted), in pipeline order, from the saved metadata."""
    with zipfile.ZipFile(archive_path) as archive:
        pipeline = _first_json_line(archive, "")
        stages = []
        for index, uid in enumerate(pipeline.get("paramMap", {}).get("stageUids", [])):
            metadata = _first_json_line(archive, f"stages/{index}_{uid}")
            stages.append({**metadata.get("defaultParamMap", {}), **metadata.get("paramMap", {})})
    return stages


def pipeline_files(archive_path: Path) -> tuple[ManifestEntry, ...]:
    """The saved pipeline's files (path, size, sha256), refusing names that could land outside its folder."""
    entries, total = [], 0
    with zipfile.ZipFile(archive_path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            name = info.filename
            parts = name.split("/")
            if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
                raise BundleError(f"{archive_path.name}: unsafe entry {name!r} in the saved pipeline")
            digest, size = hashlib.sha256(), 0
            with archive.open(info) as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
                    total += len(chunk)
                    if total > MAX_PIPELINE_BYTES:
                        raise BundleError(f"{archive_path.name}: unpacks past {MAX_PIPELINE_BYTES} bytes")
            entries.append(ManifestEntry(path=name, size=size, sha256=digest.hexdigest()))
    return tuple(sorted(entries, key=lambda e: e.path))


def publish_pipeline(
    registry: Registry, models: Registry, doc: DeploymentDocument, run_key: str, workdir: Path
) -> tuple[str, list[str]]:
    """Put the archived pipeline in `<models_root>/<slug>/<version>/`; its location and prediction columns."""
    if doc.registry is None:
        raise InvalidInputError("the model is not archived yet: publish it to the registry before deploying")
    archive = workdir / "pipeline.zip"
    registry.download(posixpath.join(doc.registry.path, doc.executable), archive, doc.executable_entry.sha256)
    validate_spark_pipeline(archive)
    predictions = prediction_columns(pipeline_stage_params(archive))
    if not predictions:
        raise BundleError(f"{doc.executable}: no stage of the pipeline names a prediction or output column")
    files = pipeline_files(archive)
    target = models.version_path(doc.model.slug, doc.model.version)
    location = models.store.url(target)
    if models.store.exists(target) and _holds(models, target, files):
        log.info("%s already holds this pipeline", location)
        return location, predictions
    segment = run_path_segment(run_key)
    partial = posixpath.join(posixpath.dirname(target), f".{doc.model.version}.{segment}.part")
    models.store.delete(partial)  # left by an interrupted attempt
    try:
        with zipfile.ZipFile(archive) as opened:
            for entry in files:
                with opened.open(entry.path) as stream:
                    models.store.write_file(posixpath.join(partial, entry.path), stream, entry.size)
        models.verify(partial, files)
        _swap_in(models, partial, target, segment)
    finally:
        models.store.delete(partial)
    models.verify(target, files)
    log.info("Published the pipeline to %s (predicts %s)", location, ", ".join(predictions))
    return location, predictions


def _holds(models: Registry, folder: str, files: tuple[ManifestEntry, ...]) -> bool:
    try:
        models.verify(folder, files)
        return True
    except RegistryError:
        return False


def _swap_in(models: Registry, partial: str, target: str, segment: str) -> None:
    """Rename partial to target; an older pipeline there is moved aside first and dropped after."""
    store = models.store
    aside = posixpath.join(posixpath.dirname(target), f".{posixpath.basename(target)}.{segment}.old")
    if store.exists(target):
        store.delete(aside)
        if not store.rename(target, aside):
            raise RegistryError(f"could not move the older pipeline {store.url(target)} aside")
    store.makedirs(posixpath.dirname(target))
    if not store.rename(partial, target) or store.exists(posixpath.join(target, posixpath.basename(partial))):
        if store.exists(aside) and not store.exists(target):
            store.rename(aside, target)
        raise RegistryError(f"could not rename {store.url(partial)} to {store.url(target)}")
    store.delete(aside)


def withdraw_pipeline(models: Registry, slug: str, version: str, published_at: str) -> bool:
    """Remove a published pipeline from `<models_root>/<slug>/<version>/`, so that no batch job loads it
    again; False when it was not there (a rerun). `published_at` is where Atlas says it was published: a
    models_root that does not hold it is refused, nothing removed."""
    folder = models.version_path(slug, version)
    if models.store.url(folder) != published_at:
        raise InvalidInputError(
            f"the pipeline was published to {published_at}, not under this Spark connection's models_root "
            f"({models.store.url(models.root)}): pick the connection batch jobs load it from"
        )
    if not models.store.exists(folder):
        log.info("%s holds no pipeline: nothing to withdraw", published_at)
        return False
    if not models.store.delete(folder) or models.store.exists(folder):
        raise RegistryError(f"could not remove the published pipeline {published_at}")
    log.info("Withdrew the published pipeline %s", published_at)
    return True
