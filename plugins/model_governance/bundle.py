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


# A bundle is checked by reading every entry (CRC): bound that work before it starts (zip bombs).
MAX_BUNDLE_BYTES = 2 * 1024**3  # uncompressed, as the entries' headers declare (reads stop there)
MAX_BUNDLE_ENTRIES = 20_000
MAX_RATIO = 200  # uncompressed / compressed, for entries over 1 MiB: JSON models compress ~10x


def open_zip(path: Path, meaning: str) -> zipfile.ZipFile:
    """The serialized model as a zip, or a BundleError saying it is missing, not a zip, or a zip bomb."""
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise BundleError(f"{path}: the serialized model is missing") from None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a readable zip, {meaning} ({exc})") from None
    infos = archive.infolist()
    total = sum(info.file_size for info in infos)
    bombs = [
        i.filename
        for i in infos
        if i.file_size > 1024**2 and i.file_size > MAX_RATIO * max(i.compress_size, 1)
    ]
    if len(infos) > MAX_BUNDLE_ENTRIES or total > MAX_BUNDLE_BYTES or bombs:
        archive.close()
        raise BundleError(
            f"{path}: expands to {total} bytes in {len(infos)} entries"
            + (f", {bombs[0]!r} compressed more than {MAX_RATIO}:1" if bombs else "")
            + f" (limits: {MAX_BUNDLE_BYTES} bytes, {MAX_BUNDLE_ENTRIES} entries): a zip bomb?"
        )
    return archive


def check_crc(archive: zipfile.ZipFile, path: Path) -> str | None:
    """`ZipFile.testzip`, a broken entry (bad data, lying header) as a BundleError, not a raw exception."""
    try:
        return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise BundleError(f"{path}: not a readable zip ({type(exc).__name__}: {exc})") from None


def validate_mleap_bundle(path: Path) -> BundleInfo:
    """Open the bundle and check what MLeap needs to load it; BundleError says what is wrong."""
    with open_zip(path, "so not an MLeap bundle") as archive:
        names = set(archive.namelist())
        if "bundle.json" not in names:
            raise BundleError(f"{path}: no bundle.json at the zip's root: not an MLeap bundle")
        if archive.getinfo("bundle.json").file_size > 1024**2:
            raise BundleError(f"{path}: bundle.json is larger than 1 MiB: not an MLeap bundle")
        try:
            manifest = json.loads(archive.read("bundle.json"))
        except Exception as exc:  # bad JSON, or an entry zipfile cannot inflate: either way not loadable
            raise BundleError(
                f"{path}: bundle.json is not readable JSON ({type(exc).__name__}: {exc})"
            ) from None
        if not isinstance(manifest, dict):
            raise BundleError(f"{path}: bundle.json is not a JSON object")
        missing = [key for key in BUNDLE_KEYS if not manifest.get(key)]
        if missing:
            raise BundleError(f"{path}: bundle.json lacks {', '.join(missing)}")
        extension = FORMAT_EXTENSIONS.get(manifest["format"])
        if extension is None:
            raise BundleError(f"{path}: bundle.json format {manifest['format']!r} is not json or protobuf")
        for required in (f"root/model.{extension}", f"root/node.{extension}"):
            if required not in names:
                raise BundleError(f"{path}: {required} is missing for a {manifest['format']} bundle")
        corrupt = check_crc(archive, path)
        if corrupt:
            raise BundleError(f"{path}: {corrupt} is corrupt (CRC mismatch)")
    return BundleInfo(**{key: str(manifest[key]) for key in BUNDLE_KEYS})


def validate_spark_pipeline(path: Path) -> str:
    """A zipped Spark ML PipelineModel (the folder Spark saved): `metadata/part-*` naming the class and
    `stages/`. Returns the class (e.g. org.apache.spark.ml.PipelineModel)."""
    with open_zip(path, "so not a saved Spark pipeline") as archive:
        names = archive.namelist()
        parts = [n for n in names if n.startswith("metadata/part-")]
        if not parts or not any(n.startswith("stages/") for n in names):
            raise BundleError(
                f"{path}: no metadata/part-* and stages/ at the zip's root: not a saved Spark ML pipeline"
            )
        try:
            metadata = json.loads(archive.read(parts[0]).splitlines()[0])
        except (ValueError, IndexError) as exc:
            raise BundleError(f"{path}: {parts[0]} is not Spark's JSON metadata ({exc})") from None
        corrupt = check_crc(archive, path)
        if corrupt:
            raise BundleError(f"{path}: {corrupt} is corrupt (CRC mismatch)")
    if "class" not in metadata:
        raise BundleError(f"{path}: {parts[0]} names no class")
    return str(metadata["class"])
