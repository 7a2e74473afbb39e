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
    if "://" in staging or staging.startswith(("github:", "gitlab:", "git+")):
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
    if (folder / "MANIFEST.json").exists():
        raise StagingError(f"{folder / 'MANIFEST.json'}: the name is the registry's own manifest; rename the file")
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


# -- remote sources ------------------------------------------------------------------------------------
MAX_ARCHIVE_BYTES = 4 * 1024**3  # what an archive may expand to
MAX_ARCHIVE_FILES = 20_000
DOWNLOAD_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Credentials:
    """What the staging connection holds: a token, or a login and password. Never logged or returned."""

    login: str | None = None
    password: str | None = None
    token: str | None = None

    @classmethod
    def from_connection(cls, conn_id: str | None) -> "Credentials":
        if not conn_id:
            return cls()
        from airflow.sdk import BaseHook

        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception:  # no such connection: public sources need none
            log.info("No connection %r: fetching without credentials", conn_id)
            return cls()
        token = conn.extra_dejson.get("token") or (conn.password if not conn.login else None)
        return cls(login=conn.login or None, password=conn.password or None, token=token)


def parse_git_source(location: str) -> tuple[str, str | None]:
    """`git+<url>[@<ref>]` -> (url, ref): a branch, tag or commit SHA; None means the default branch."""
    url = location.removeprefix("git+")
    parts = urlsplit(url)
    path, ref = parts.path, None
    if "@" in path:
        path, ref = path.rsplit("@", 1)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment)), ref or None


def fetch_git(location: str, workdir: Path, credentials: Credentials) -> tuple[Path, str]:
    """Clone with the real `git` and check out the ref; the folder and the exact commit SHA.

    Credentials go to git through the environment (an http.extraHeader), never its arguments.
    """
    import base64
    import subprocess

    url, ref = parse_git_source(location)
    target = workdir / "staged"
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
    secret = credentials.token if credentials.token and not credentials.login else credentials.password
    if secret and url.startswith("https://"):
        user = credentials.login or "x-access-token"
        header = base64.b64encode(f"{user}:{secret}".encode()).decode()
        env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader", "GIT_CONFIG_VALUE_0": f"Authorization: Basic {header}"})

    def git(*args: str, cwd: Path | None = None) -> str:
        result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            message = result.stderr.strip()
            if secret:
                message = message.replace(secret, "***")
            raise StagingError(f"git {args[0]} of {redact_url(url)}{'@' + ref if ref else ''} failed: {message}")
        return result.stdout.strip()

    git("clone", "--quiet", "--no-checkout", "--", url, str(target))
    if ref:
        try:
            git("checkout", "--quiet", "--detach", ref, cwd=target)
        except StagingError:
            # a branch that exists only on the remote, or a SHA not reachable from the default refs
            git("fetch", "--quiet", "origin", ref, cwd=target)
            git("checkout", "--quiet", "--detach", "FETCH_HEAD", cwd=target)
    else:
        git("checkout", "--quiet", cwd=target)
    sha = git("rev-parse", "HEAD", cwd=target)
    shutil.rmtree(target / ".git")
    return target, sha


def archive_url(location: str) -> str:
    """`github:owner/repo@ref` and `gitlab:owner/repo@ref` as their hosts' archive URLs; other URLs as given."""
    for prefix, template in (
        ("github:", "https://github.com/{repo}/zipball/{ref}"),  # the seed's: /{owner}/{repo}/zipball/{ref}
        ("gitlab:", "https://gitlab.com/{repo}/-/archive/{ref}/{name}-{ref}.zip"),
    ):
        if location.startswith(prefix):
            repo, _, ref = location.removeprefix(prefix).partition("@")
            return template.format(repo=repo.strip("/"), ref=ref or "HEAD", name=repo.rsplit("/", 1)[-1])
    return location


def download(url: str, target: Path, credentials: Credentials) -> str:
    """Stream url to target; its sha256. GitHub takes `Authorization: token`, GitLab `PRIVATE-TOKEN`, others basic."""
    import hashlib

    import requests

    headers, auth = {}, None
    host = urlsplit(url).hostname or ""
    if credentials.token and not credentials.login:
        if "gitlab" in host:
            headers["PRIVATE-TOKEN"] = credentials.token
        else:
            headers["Authorization"] = f"token {credentials.token}"
    elif credentials.login:
        auth = (credentials.login, credentials.password or credentials.token or "")
    digest = hashlib.sha256()
    size = 0
    try:
        with requests.get(url, headers=headers, auth=auth, stream=True, timeout=60, allow_redirects=True) as response:
            if response.status_code != 200:
                raise StagingError(f"downloading {redact_url(url)} answered {response.status_code} {response.reason}")
            with target.open("wb") as out:
                for chunk in response.iter_content(DOWNLOAD_CHUNK):
                    size += len(chunk)
                    if size > MAX_ARCHIVE_BYTES:
                        raise StagingError(f"{redact_url(url)} is larger than {MAX_ARCHIVE_BYTES} bytes")
                    digest.update(chunk)
                    out.write(chunk)
    except requests.RequestException as exc:
        raise StagingError(f"downloading {redact_url(url)} failed: {type(exc).__name__}") from None
    return digest.hexdigest()


def safe_extract(archive: Path, target: Path, max_bytes: int = MAX_ARCHIVE_BYTES, max_files: int = MAX_ARCHIVE_FILES) -> Path:
    """Extract a zip or tar into target, refusing anything that could write outside it or exhaust the disk.

    Refused: absolute paths and `..`, links (a staged model has no need of them), devices and FIFOs, and
    archives that expand past max_bytes or max_files (zip bombs). One top folder (as GitHub's and GitLab's
    archives have) is stripped. Sizes are counted while writing, not trusted from the headers.
    """
    import tarfile
    import zipfile

    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    written = 0
    count = 0

    def destination(name: str) -> Path:
        if name.startswith("/") or "\\" in name or any(part == ".." for part in name.split("/")):
            raise StagingError(f"{archive.name}: unsafe entry {name!r} (absolute, or with ..)")
        path = (target / name).resolve()
        if not path.is_relative_to(root):
            raise StagingError(f"{archive.name}: entry {name!r} would be written outside the working folder")
        return path

    def copy(stream, path: Path, name: str) -> None:
        nonlocal written, count
        count += 1
        if count > max_files:
            raise StagingError(f"{archive.name}: more than {max_files} files")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            while chunk := stream.read(DOWNLOAD_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise StagingError(f"{archive.name}: expands past {max_bytes} bytes (a zip bomb?) at {name!r}")
                out.write(chunk)

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise StagingError(f"{archive.name}: {info.filename!r} is a symbolic link; links are not staged")
                path = destination(info.filename)
                if info.is_dir():
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                with zf.open(info) as stream:
                    copy(stream, path, info.filename)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for member in tf:
                path = destination(member.name)
                if member.isdir():
                    path.mkdir(parents=True, exist_ok=True)
                elif member.issym() or member.islnk():
                    raise StagingError(f"{archive.name}: {member.name!r} is a link; links are not staged")
                elif not member.isfile():
                    raise StagingError(f"{archive.name}: {member.name!r} is a device, FIFO or other special file")
                else:
                    copy(tf.extractfile(member), path, member.name)
    else:
        raise StagingError(f"{archive.name}: not a zip or tar archive")
    entries = [p for p in target.iterdir() if p.name not in IGNORED_NAMES]
    if len(entries) == 1 and entries[0].is_dir() and not (target / "modelMetadata.txt").exists():
        return entries[0]
    return target


def stage(
    staging: str,
    workdir: Path,
    require_endpoint: bool = True,
    staging_root: Path | None = None,
    conn_id: str | None = "staging_default",
) -> StagedModel:
    """Fetch the staged model into workdir and verify it: step 2a up to, not including, the upload.

    `staging` is a local folder (absolute, or relative to the staging root), `git+<url>[@<ref>]`, an
    archive URL (`https://…/zipball/<ref>`, `…/archive/….zip`, `….tar.gz`) or `github:`/`gitlab:owner/repo@ref`.
    """
    location = resolve_source(staging, staging_root)
    shown = redact_url(location)
    if location.startswith("git+"):
        folder, sha = fetch_git(location, workdir, Credentials.from_connection(conn_id))
        kind, revision = "git", sha
    elif location.startswith(("http://", "https://", "github:", "gitlab:")):
        url = archive_url(location)
        archive = workdir / "staging-archive"
        digest = download(url, archive, Credentials.from_connection(conn_id))
        folder = safe_extract(archive, workdir / "staged")
        archive.unlink()
        kind, revision = "archive", f"sha256:{digest}"
        shown = redact_url(url)
    elif location.startswith("file://") or location.startswith("/"):
        folder = fetch_local(Path(location.removeprefix("file://")), workdir)
        kind, revision = "local", ""
    else:
        raise StagingError(f"staging {shown!r}: not a folder, git+<url>, archive URL, github: or gitlab: source")
    metadata, executable = check_layout(folder, require_endpoint=require_endpoint)
    manifest = build_manifest(folder)
    source = SourceInfo(location=shown, kind=kind, revision=revision or f"sha256:{manifest_digest(manifest)}")
    return StagedModel(folder=folder, metadata=metadata, executable=executable, manifest=manifest, source=source)
