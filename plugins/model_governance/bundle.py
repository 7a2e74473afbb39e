"""Checking a serialized model before it is deployed: an MLeap bundle must be one MLeap can load.

A bundle is a zip whose root holds `bundle.json` (uid, name, format, version, timestamp) and `root/` with
`model.json` and `node.json` (`model.pb`/`node.pb` for the protobuf format). Failing here, with the reason,
beats a serving host's bare 500.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from model_governance.exceptions import BundleError

BUNDLE_KEYS = ("uid", "name", "format", "version", "timestamp")
FORMAT_EXTENSIONS = {"json": "json", "protobuf": "pb"}


@dataclass(frozen=True)
class BundleInfo:
    uid: str
    name: str
    format: str
    version: str
    timestamp: str


def open_zip(path: Path, meaning: str) -> zipfile.ZipFile:
    """The serialized model as a zip, or a BundleError saying it is missing or not a zip (and what that means)."""
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise BundleError(f"{path}: the serialized model is missing") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(f"{path.name}: not a readable zip, {meaning} ({exc})") from None


def validate_mleap_bundle(path: Path) -> BundleInfo:
    """Open the bundle and check what MLeap needs to load it; BundleError says what is wrong."""
    with open_zip(path, "so not an MLeap bundle") as archive:
        names = set(archive.namelist())
        if "bundle.json" not in names:
            raise BundleError(f"{path.name}: no bundle.json at the zip's root: not an MLeap bundle")
        try:
            manifest = json.loads(archive.read("bundle.json"))
        except (ValueError, zipfile.BadZipFile) as exc:
            raise BundleError(f"{path.name}: bundle.json is not valid JSON ({exc})") from None
        if not isinstance(manifest, dict):
            raise BundleError(f"{path.name}: bundle.json is not a JSON object")
        missing = [key for key in BUNDLE_KEYS if not manifest.get(key)]
        if missing:
            raise BundleError(f"{path.name}: bundle.json lacks {', '.join(missing)}")
        extension = FORMAT_EXTENSIONS.get(manifest["format"])
        if extension is None:
            raise BundleError(f"{path.name}: bundle.json format {manifest['format']!r} is not json or protobuf")
        for required in (f"root/model.{extension}", f"root/node.{extension}"):
            if required not in names:
                raise BundleError(f"{path.name}: {required} is missing for a {manifest['format']} bundle")
        corrupt = archive.testzip()
        if corrupt:
            raise BundleError(f"{path.name}: {corrupt} is corrupt (CRC mismatch)")
    return BundleInfo(**{key: str(manifest[key]) for key in BUNDLE_KEYS})


def validate_spark_pipeline(path: Path) -> str:
    """A zipped Spark ML PipelineModel (the folder Spark saved): `metadata/part-*` naming the class and
    `stages/`. Returns the class (e.g. org.apache.spark.ml.PipelineModel)."""
    with open_zip(path, "so not a saved Spark pipeline") as archive:
        names = archive.namelist()
        parts = [n for n in names if n.startswith("metadata/part-")]
        if not parts or not any(n.startswith("stages/") for n in names):
            raise BundleError(f"{path.name}: no metadata/part-* and stages/ at the zip's root: not a saved Spark ML pipeline")
        try:
            metadata = json.loads(archive.read(parts[0]).splitlines()[0])
        except (ValueError, IndexError) as exc:
            raise BundleError(f"{path.name}: {parts[0]} is not Spark's JSON metadata ({exc})") from None
        corrupt = archive.testzip()
        if corrupt:
            raise BundleError(f"{path.name}: {corrupt} is corrupt (CRC mismatch)")
    if "class" not in metadata:
        raise BundleError(f"{path.name}: {parts[0]} names no class")
    return str(metadata["class"])
