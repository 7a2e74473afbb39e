"""Step 2a's inputs: where a staged model lives, copying it safely, and checking its layout.

A staged model is a folder holding `modelMetadata.txt`, `README.md`, `code/`, `trainingdata/` and
`executable/` with exactly one serialized model. It is copied into the task's own working folder before
anything reads it, so the run works on one consistent snapshot even if the owner edits the source.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from model_governance.exceptions import StagingError
from model_governance.metadata import METADATA_FILE, ManifestEntry, ModelMetadata, SourceInfo

log = logging.getLogger(__name__)

STAGING_ROOT_ENV = "MODEL_GOVERNANCE_STAGING_ROOT"
README_FILE = "README.md"
EXECUTABLE_DIR = "executable"
RECOMMENDED_DIRS = ("code", "trainingdata")
IGNORED_NAMES = {".git", ".DS_Store", "__pycache__"}
HASH_CHUNK = 1024 * 1024


def default_staging_root() -> Path:
    """Where relative `staging` params are looked up: $MODEL_GOVERNANCE_STAGING_ROOT, else the shipped examples."""
    configured = os.environ.get(STAGING_ROOT_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "examples" / "staging"


def resolve_source(staging: str, staging_root: Path | None = None) -> str:
    """An absolute path or URL as given; a relative path against the staging root, never the worker's cwd."""
    staging = staging.strip()
    if not staging:
        raise StagingError("the 'staging' parameter is empty: give a path or URL of the staged model")
    if "://" in staging:
        return staging
    path = Path(staging).expanduser()
    if not path.is_absolute():
        root = staging_root or default_staging_root()
        path = root / path
    return str(path)


def redact_url(location: str) -> str:
    """The location with any user:password@ removed, for logs, XCom, manifests and Atlas."""
    if "://" not in location:
        return location
    parts = urlsplit(location)
    if not (parts.username or parts.password):
        return location
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class StagedModel:
    """A verified snapshot of a staged model in the task's working folder."""

    folder: Path
    metadata: ModelMetadata
    executable: str  # relative path of the serialized model
    manifest: tuple[ManifestEntry, ...]
    source: SourceInfo


def fetch_local(source: Path, workdir: Path) -> Path:
    """Copy a local staged folder into workdir, refusing links that leave it and anything not a file or folder."""
    if not source.exists():
        raise StagingError(f"staging folder {source} does not exist")
    if not source.is_dir():
        raise StagingError(f"staging {source} is not a folder")
    target = workdir / "staged"
    root = source.resolve()
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_NAMES)
        rel_dir = Path(dirpath).relative_to(source)
        (target / rel_dir).mkdir(parents=True, exist_ok=True)
        for name in dirnames + sorted(filenames):
            if name in IGNORED_NAMES:
                continue
            entry = Path(dirpath) / name
            rel = rel_dir / name
            mode = entry.lstat().st_mode
            if stat.S_ISLNK(mode):
                resolved = entry.resolve()
                if not resolved.is_relative_to(root):
                    raise StagingError(f"staging {source}: {rel} is a link to {resolved}, outside the staged folder")
                mode = resolved.stat().st_mode
                if stat.S_ISDIR(mode):
                    raise StagingError(f"staging {source}: {rel} is a link to a folder; stage the folder itself")
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise StagingError(f"staging {source}: {rel} is not a regular file (device, socket or pipe)")
            shutil.copyfile(entry, target / rel)
    return target


def check_layout(folder: Path, require_endpoint: bool = True) -> tuple[ModelMetadata, str]:
    """Read the metadata and find the one serialized model; errors name the file or key at fault."""
    metadata = ModelMetadata.load(folder / METADATA_FILE, require_endpoint=require_endpoint)
    if not (folder / README_FILE).is_file():
        raise StagingError(f"{folder / README_FILE}: the staged model has no {README_FILE} describing the project")
    for name in RECOMMENDED_DIRS:
        if not (folder / name).is_dir():
            log.warning("The staged model has no %s/ folder: the deployment will not trace to its %s.", name, name)
    executable_dir = folder / EXECUTABLE_DIR
    if not executable_dir.is_dir():
        raise StagingError(f"{executable_dir}: the staged model has no {EXECUTABLE_DIR}/ folder holding the serialized model")
    candidates = sorted(p.name for p in executable_dir.iterdir() if p.name not in IGNORED_NAMES)
    if metadata.executable:
        name = metadata.executable.removeprefix(f"{EXECUTABLE_DIR}/")
        if name not in candidates:
            raise StagingError(
                f"{folder / METADATA_FILE}: model.executable {metadata.executable!r} is not in {EXECUTABLE_DIR}/ "
                f"(it holds: {', '.join(candidates) or 'nothing'})"
            )
    elif len(candidates) != 1:
        raise StagingError(
            f"{executable_dir}: must hold exactly one serialized model, found {len(candidates)}"
            + (f" ({', '.join(candidates)}); name the one to deploy with model.executable" if candidates else "")
        )
    else:
        name = candidates[0]
    if not (executable_dir / name).is_file():
        raise StagingError(f"{executable_dir / name}: the serialized model must be a file (an MLeap bundle .zip, PMML...)")
    return metadata, f"{EXECUTABLE_DIR}/{name}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(folder: Path) -> tuple[ManifestEntry, ...]:
    """Every file of the staged folder with its size and sha256, sorted by path."""
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        entries.append(ManifestEntry(path=rel, size=path.stat().st_size, sha256=sha256_file(path)))
    return tuple(entries)


def manifest_digest(manifest: tuple[ManifestEntry, ...]) -> str:
    """One sha256 over the whole manifest: a folder's revision when it has no commit or archive."""
    canonical = json.dumps([[e.path, e.size, e.sha256] for e in manifest], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def stage(staging: str, workdir: Path, require_endpoint: bool = True, staging_root: Path | None = None) -> StagedModel:
    """Fetch the staged model into workdir and verify it: step 2a up to, not including, the upload."""
    location = resolve_source(staging, staging_root)
    if "://" in location and not location.startswith("file://"):
        raise StagingError(f"staging {redact_url(location)!r}: only local folders are supported so far")
    folder = fetch_local(Path(location.removeprefix("file://")), workdir)
    metadata, executable = check_layout(folder, require_endpoint=require_endpoint)
    manifest = build_manifest(folder)
    source = SourceInfo(location=redact_url(location), kind="local", revision=f"sha256:{manifest_digest(manifest)}")
    return StagedModel(folder=folder, metadata=metadata, executable=executable, manifest=manifest, source=source)
