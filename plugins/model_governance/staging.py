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
import re
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from model_governance.connections import STAGING_CONN_ID
from model_governance.exceptions import StagingError
from model_governance.metadata import METADATA_FILE, ManifestEntry, ModelMetadata, SourceInfo

log = logging.getLogger(__name__)

STAGING_ROOT_ENV = "MODEL_GOVERNANCE_STAGING_ROOT"
DEFAULT_STAGING_ROOT = Path("/srv/model-governance/staging")  # where owners stage models, unless configured
README_FILE = "README.md"
EXECUTABLE_DIR = "executable"
RECOMMENDED_DIRS = ("code", "trainingdata")
IGNORED_NAMES = {".git", ".DS_Store", "__pycache__"}
HASH_CHUNK = 1024 * 1024


def default_staging_root() -> Path:
    """Where relative `staging` params are looked up: $MODEL_GOVERNANCE_STAGING_ROOT, else
    /srv/model-governance/staging (never a folder of the source checkout: `make demo`, the tests set it)."""
    configured = os.environ.get(STAGING_ROOT_ENV)
    if configured:
        return Path(configured)
    return DEFAULT_STAGING_ROOT


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
    """Copy a local staged folder into workdir: nothing outside it is ever read.

    The tree is inspected first (links must stay inside the folder; only files and folders; limits on
    size and count; a folder without `modelMetadata.txt` is refused before anything is copied). Each file
    is then opened without following links, through folder descriptors opened the same way, and must be
    the very file that was inspected (same st_dev and st_ino): a link or file swapped in between is refused.
    """
    try:
        info = source.stat()
    except FileNotFoundError:
        raise StagingError(f"staging folder {source} does not exist") from None
    except OSError as exc:
        raise StagingError(f"staging {source}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISDIR(info.st_mode):
        raise StagingError(f"staging {source} is not a folder")
    if not os.path.lexists(source / METADATA_FILE):
        raise StagingError(
            f"staging {source}: no {METADATA_FILE}, so not a staged model (nothing was copied)"
        )
    target = workdir / "staged"
    target.mkdir(parents=True, exist_ok=True)
    root_fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY)
    try:
        entries = _inspect_tree(source, root_fd, info.st_uid)
        for dirpath, dirnames, _ in os.walk(source, followlinks=False):  # empty folders too (executable/)
            rel_dir = Path(dirpath).relative_to(source)
            dirnames[:] = [
                d for d in dirnames if d not in IGNORED_NAMES and not os.path.islink(os.path.join(dirpath, d))
            ]
            (target / rel_dir).mkdir(parents=True, exist_ok=True)
        for entry in entries:
            _copy_entry(source, root_fd, entry, target)
    finally:
        os.close(root_fd)
    return target


@dataclass(frozen=True)
class _Entry:
    """A file of the staged folder as inspected: where it is, where its bytes are (link target), its inode."""

    rel: str  # its path in the staged model
    real: str  # the path, inside the folder, of the file holding its bytes (itself, or a link's target)
    dev: int
    ino: int
    size: int


MAX_LINK_HOPS = 40  # as the kernel's ELOOP


def _open_inside(root_fd: int, rel: str, source: Path, shown: str) -> tuple[int, str]:
    """Open `rel` under the folder `root_fd` without ever leaving it: every component is opened with
    O_NOFOLLOW, links are resolved here (relative to the folder; absolute ones only if they point inside
    it). Returns the descriptor and the real relative path; StagingError for a link out, a dangling or a
    looping link."""
    root_real = os.path.realpath(source)
    todo = [p for p in rel.split("/") if p not in ("", ".")]
    done: list[str] = []
    fds = [os.dup(root_fd)]
    hops = 0
    try:
        while todo:
            name = todo.pop(0)
            if name == "..":
                if not done:
                    raise StagingError(
                        f"staging {source}: {shown} is a link to a path outside the staged folder"
                    )
                done.pop()
                os.close(fds.pop())
                continue
            try:
                st = os.stat(name, dir_fd=fds[-1], follow_symlinks=False)
            except FileNotFoundError:
                raise StagingError(
                    f"staging {source}: {shown} is a dangling link, or vanished while being copied"
                ) from None
            except OSError as exc:
                raise StagingError(f"staging {source}: {shown} cannot be read ({exc.strerror})") from None
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise StagingError(f"staging {source}: {shown} is a looping link")
                link = os.readlink(name, dir_fd=fds[-1])
                if link.startswith("/"):
                    inside = os.path.relpath(os.path.normpath(link), root_real)
                    if inside == ".." or inside.startswith("../"):
                        raise StagingError(
                            f"staging {source}: {shown} is a link to {link}, outside the staged folder"
                        )
                    while len(fds) > 1:
                        os.close(fds.pop())
                    done = []
                    link = inside
                todo = [p for p in link.split("/") if p not in ("", ".")] + todo
                continue
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                raise StagingError(
                    f"staging {source}: {shown} is not a regular file (device, socket or pipe)"
                )
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fds[-1])
            except OSError as exc:  # ELOOP: it became a link since the stat
                raise StagingError(
                    f"staging {source}: {shown} changed while being copied ({exc.strerror})"
                ) from None
            if todo and not stat.S_ISDIR(os.fstat(fd).st_mode):
                os.close(fd)
                raise StagingError(f"staging {source}: {shown} passes through a file that is not a folder")
            fds.append(fd)
            done.append(name)
        return fds.pop(), "/".join(done)
    finally:
        for fd in fds:
            os.close(fd)


def _inspect_tree(source: Path, root_fd: int, owner: int) -> list[_Entry]:
    """Every file to copy, checked: regular, inside the folder, within the limits, hard links only of files
    the folder's owner owns (a hard link to someone else's file could carry a file the owner cannot read)."""
    entries: list[_Entry] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_NAMES)
        rel_dir = Path(dirpath).relative_to(source)
        for name in dirnames + sorted(filenames):
            if name in IGNORED_NAMES:
                continue
            rel = (rel_dir / name).as_posix()
            check_entry_name(rel, f"staging {source}")
            if name in dirnames and not os.path.islink(os.path.join(dirpath, name)):
                continue
            fd, real = _open_inside(root_fd, rel, source, rel)
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if stat.S_ISDIR(st.st_mode):
                if os.path.islink(os.path.join(dirpath, name)):
                    raise StagingError(
                        f"staging {source}: {rel} is a link to a folder; stage the folder itself"
                    )
                continue
            if not stat.S_ISREG(st.st_mode):
                raise StagingError(f"staging {source}: {rel} is not a regular file (device, socket or pipe)")
            if st.st_nlink > 1 and st.st_uid != owner:
                raise StagingError(
                    f"staging {source}: {rel} is a hard link to a file of another user (uid {st.st_uid}); "
                    "copy the file instead"
                )
            total += st.st_size
            entries.append(_Entry(rel=rel, real=real, dev=st.st_dev, ino=st.st_ino, size=st.st_size))
            if len(entries) > MAX_ARCHIVE_FILES or total > MAX_ARCHIVE_BYTES:
                raise StagingError(
                    f"staging {source}: more than {MAX_ARCHIVE_FILES} files or {MAX_ARCHIVE_BYTES} bytes; "
                    "not a staged model?"
                )
    return entries


def _copy_entry(source: Path, root_fd: int, entry: _Entry, target: Path) -> None:
    """Copy one inspected file, opened without following links, after checking it is the inspected inode."""
    fd, _ = _open_inside(root_fd, entry.real, source, entry.rel)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (entry.dev, entry.ino) or not stat.S_ISREG(st.st_mode):
            raise StagingError(
                f"staging {source}: {entry.rel} changed while it was being copied (a link or file swapped in)"
            )
        out_path = target / entry.rel
        out_path.parent.mkdir(parents=True, exist_ok=True)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle, out_path.open("wb") as out:
            shutil.copyfileobj(handle, out, HASH_CHUNK)
    except OSError as exc:
        raise StagingError(f"staging {source}: {entry.rel} cannot be copied ({exc.strerror})") from None
    finally:
        os.close(fd)


# HDFS refuses ':' in a path component (DFSUtil.isValidName); a name is one component of at most 255 bytes.
MAX_NAME_BYTES = 255


def check_entry_name(rel: str, where: str) -> None:
    """A staged file's path must be one HDFS and every worker's file system accept."""
    for part in rel.split("/"):
        if ":" in part:
            raise StagingError(f"{where}: {rel!r} has a ':' in its name, which HDFS refuses; rename it")
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise StagingError(
                f"{where}: {rel[:80]!r}… has a name longer than {MAX_NAME_BYTES} bytes; shorten it"
            )
        if any(ord(c) < 32 or ord(c) == 127 for c in part):
            raise StagingError(f"{where}: {rel!r} has a control character in its name; rename it")


def check_layout(folder: Path, require_endpoint: bool = True) -> tuple[ModelMetadata, str]:
    """Read the metadata and find the one serialized model; errors name the file or key at fault."""
    metadata = ModelMetadata.load(folder / METADATA_FILE, require_endpoint=require_endpoint)
    if (folder / "MANIFEST.json").exists():
        raise StagingError(
            f"{folder / 'MANIFEST.json'}: the name is the registry's own manifest; rename the file"
        )
    if not (folder / README_FILE).is_file():
        raise StagingError(
            f"{folder / README_FILE}: the staged model has no {README_FILE} describing the project"
        )
    for name in RECOMMENDED_DIRS:
        if not (folder / name).is_dir():
            log.warning(
                "The staged model has no %s/ folder: the deployment will not trace to its %s.", name, name
            )
    executable_dir = folder / EXECUTABLE_DIR
    if not executable_dir.is_dir():
        raise StagingError(
            f"{executable_dir}: the staged model has no {EXECUTABLE_DIR}/ folder holding the serialized model"
        )
    candidates = sorted(p.name for p in executable_dir.iterdir() if p.name not in IGNORED_NAMES)
    if metadata.executable:
        name = metadata.executable.removeprefix(f"{EXECUTABLE_DIR}/")
        if name not in candidates:
            raise StagingError(
                f"{folder / METADATA_FILE}: model.executable {metadata.executable!r} "
                f"is not in {EXECUTABLE_DIR}/ (it holds: {', '.join(candidates) or 'nothing'})"
            )
    elif len(candidates) != 1:
        raise StagingError(
            f"{executable_dir}: must hold exactly one serialized model, found {len(candidates)}"
            + (
                f" ({', '.join(candidates)}); name the one to deploy with model.executable"
                if candidates
                else ""
            )
        )
    else:
        name = candidates[0]
    if not (executable_dir / name).is_file():
        raise StagingError(
            f"{executable_dir / name}: the serialized model must be a file (an MLeap bundle .zip, PMML...)"
        )
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
    """What the staging connection holds: a token, or a login and password, and the host(s) they belong to.

    They are sent only to those hosts (the connection's host, comma-separated, and its extra `hosts`),
    only over HTTPS, and never after a redirect to another host. Never logged or returned."""

    login: str | None = None
    password: str | None = None
    token: str | None = None
    hosts: tuple[str, ...] = ()
    conn_id: str = ""

    @classmethod
    def from_connection(cls, conn_id: str | None) -> Credentials:
        if not conn_id:
            return cls()
        from airflow.sdk import BaseHook

        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception:  # no such connection: public sources need none
            log.info("No connection %r: fetching without credentials", conn_id)
            return cls()
        extra = conn.extra_dejson
        token = extra.get("token") or (conn.password if not conn.login else None)
        hosts = [h.strip().lower() for h in (conn.host or "").split(",") if h.strip()]
        listed = extra.get("hosts") or []
        hosts += [
            h.strip().lower() for h in (listed.split(",") if isinstance(listed, str) else listed) if h.strip()
        ]
        return cls(
            login=conn.login or None,
            password=conn.password or None,
            token=token,
            hosts=tuple(_host_of(h) for h in hosts),
            conn_id=conn_id,
        )

    @property
    def present(self) -> bool:
        return bool(self.token or self.password)

    def allowed(self, url: str) -> bool:
        """True when this URL may receive the credentials: HTTPS, to a host the connection names."""
        parts = urlsplit(url)
        return self.present and parts.scheme == "https" and (parts.hostname or "").lower() in self.hosts

    def explain(self, url: str) -> None:
        if self.present and not self.allowed(url):
            log.info(
                "Credentials of connection %r not sent to %s: only over https to %s",
                self.conn_id,
                redact_url(url),
                ", ".join(self.hosts) or "the host(s) the connection names (none named)",
            )


def _host_of(value: str) -> str:
    """`git.example.com`, `https://git.example.com:443/x` or `host:port` -> the bare host name."""
    return (urlsplit(value if "//" in value else f"//{value}").hostname or value).lower()


def refuse_embedded_credentials(location: str) -> None:
    """A user:password@ (or token@) in the staging value would end up in rendered fields and logs: refused."""
    url = location.removeprefix("git+")
    if "://" in url and "@" in urlsplit(url).netloc:
        raise StagingError(
            f"staging {redact_url(url)!r}: credentials in the URL are refused; "
            "put them in the staging_default connection (host, login, password or token)"
        )


# A commit id (abbreviated or whole), or a branch/tag name by `git check-ref-format`'s rules.
_HEX_RE = re.compile(r"[0-9a-fA-F]{7,64}")
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")
GIT_TRANSPORTS = ("https", "file")


def check_git_ref(ref: str, shown: str) -> None:
    """Refuse anything git could take for an option or that is not a valid branch, tag or commit id."""
    if _HEX_RE.fullmatch(ref):
        return
    bad = (
        ref.startswith(("-", "/", "."))
        or ref.endswith(("/", ".", ".lock"))
        or ref == "@"
        or len(ref) > 255
        or _REF_FORBIDDEN.search(ref) is not None
        or any(part.startswith(".") or part.endswith(".lock") for part in ref.split("/"))
    )
    if bad:
        raise StagingError(f"staging {shown!r}: ref {ref!r} is not a branch, tag or commit id")


def parse_git_source(location: str) -> tuple[str, str | None]:
    """`git+<url>[@<ref>]` -> (url, ref): a branch, tag or commit SHA; None means the default branch.

    Only https and file URLs; the ref is checked by git's own naming rules, so neither can become an option.
    """
    url = location.removeprefix("git+")
    refuse_embedded_credentials(location)
    parts = urlsplit(url)
    if parts.scheme not in GIT_TRANSPORTS:
        raise StagingError(
            f"staging {redact_url(location)!r}: git sources are git+https://… or git+file:///…"
        )
    path, ref = parts.path, None
    if "@" in path:
        path, ref = path.rsplit("@", 1)
    clean = urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))
    if (
        not path.startswith("/")
        or path.startswith("/-")
        or (parts.hostname or "").startswith("-")
        or parts.fragment
    ):
        raise StagingError(f"staging {redact_url(location)!r}: not a repository URL")
    if ref is not None:
        check_git_ref(ref, redact_url(location))
    return clean, ref or None


def git_environment(url: str, credentials: Credentials) -> dict[str, str]:
    """git's environment: no prompts, no system or user config, only the transports we mean, and the
    credentials (if they may go to this URL) as a header scoped to that URL, with redirects not followed."""
    import base64

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ALLOW_PROTOCOL": ":".join(GIT_TRANSPORTS),
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
    }
    config = [
        ("protocol.allow", "never"),
        ("protocol.https.allow", "always"),
        ("protocol.file.allow", "always"),
        ("core.hooksPath", os.devnull),
        ("http.followRedirects", "false"),
    ]
    credentials.explain(url)
    if credentials.allowed(url):
        secret = credentials.token if credentials.token and not credentials.login else credentials.password
        user = credentials.login or "x-access-token"
        header = base64.b64encode(f"{user}:{secret}".encode()).decode()
        config.append((f"http.{url}.extraHeader", f"Authorization: Basic {header}"))
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for i, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    return env


def fetch_git(location: str, workdir: Path, credentials: Credentials) -> tuple[Path, str]:
    """Clone with the real `git` and check out the ref; the folder and the exact commit SHA.

    Credentials go to git through the environment (an http.extraHeader), never its arguments; every value
    that reaches git comes after `--end-of-options` or `--`.
    """
    import subprocess

    url, ref = parse_git_source(location)
    shown = f"{redact_url(url)}{'@' + ref if ref else ''}"
    target = workdir / "staged"
    env = git_environment(url, credentials)
    secret = credentials.token or credentials.password

    def git(*args: str, cwd: Path | None = None) -> str:
        command = [
            "git",
            "-c",
            "protocol.allow=never",
            "-c",
            "protocol.https.allow=always",
            "-c",
            "protocol.file.allow=always",
            *args,
        ]
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            message = " ".join(result.stderr.split())
            if secret:
                message = message.replace(secret, "***")
            raise StagingError(f"git {args[0]} of {shown} failed: {message}")
        return result.stdout.strip()

    git("clone", "--quiet", "--no-checkout", "--no-local", "--", url, str(target))
    if ref:
        try:
            sha = git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", cwd=target)
        except StagingError:
            # a branch that exists only on the remote, or a SHA not reachable from the default refs
            git("fetch", "--quiet", "--end-of-options", "origin", ref, cwd=target)
            sha = git("rev-parse", "--verify", "--end-of-options", "FETCH_HEAD^{commit}", cwd=target)
        git("checkout", "--quiet", "--detach", sha, "--", cwd=target)
    else:
        git("checkout", "--quiet", cwd=target)
    sha = git("rev-parse", "--verify", "HEAD", cwd=target)
    shutil.rmtree(target / ".git")
    return target, sha


def archive_url(location: str) -> str:
    """`github:owner/repo@ref`, `gitlab:owner/repo@ref` as their hosts' archive URLs; other URLs as given."""
    for prefix, template in (
        ("github:", "https://github.com/{repo}/zipball/{ref}"),  # the seed's: /{owner}/{repo}/zipball/{ref}
        ("gitlab:", "https://gitlab.com/{repo}/-/archive/{ref}/{name}-{ref}.zip"),
    ):
        if location.startswith(prefix):
            repo, _, ref = location.removeprefix(prefix).partition("@")
            return template.format(repo=repo.strip("/"), ref=ref or "HEAD", name=repo.rsplit("/", 1)[-1])
    return location


MAX_REDIRECTS = 5


def download(url: str, target: Path, credentials: Credentials) -> str:
    """Stream url to target; its sha256. GitHub takes `Authorization: token`, GitLab `PRIVATE-TOKEN`, others
    basic.

    Redirects are followed here, one by one, so that the credentials go only where `Credentials.allowed`
    says (GitHub's zipball redirects to codeload.github.com with a signed URL: no credentials needed)."""
    import requests

    digest = hashlib.sha256()
    size = 0
    current = url
    try:
        for _ in range(MAX_REDIRECTS + 1):
            headers, auth = {}, None
            credentials.explain(current)
            if credentials.allowed(current):
                host = urlsplit(current).hostname or ""
                if credentials.token and not credentials.login:
                    headers["PRIVATE-TOKEN" if "gitlab" in host else "Authorization"] = (
                        credentials.token if "gitlab" in host else f"token {credentials.token}"
                    )
                elif credentials.login:
                    auth = (credentials.login, credentials.password or credentials.token or "")
            with requests.get(
                current, headers=headers, auth=auth, stream=True, timeout=60, allow_redirects=False
            ) as response:
                if response.is_redirect:
                    following = requests.compat.urljoin(current, response.headers["Location"])
                    if urlsplit(following).scheme not in ("http", "https"):
                        raise StagingError(f"downloading {redact_url(url)}: redirected to a non-HTTP URL")
                    current = following
                    continue
                if response.status_code != 200:
                    raise StagingError(
                        f"downloading {redact_url(url)} answered {response.status_code} {response.reason}"
                    )
                with target.open("wb") as out:
                    for chunk in response.iter_content(DOWNLOAD_CHUNK):
                        size += len(chunk)
                        if size > MAX_ARCHIVE_BYTES:
                            raise StagingError(f"{redact_url(url)} is larger than {MAX_ARCHIVE_BYTES} bytes")
                        digest.update(chunk)
                        out.write(chunk)
                return digest.hexdigest()
        raise StagingError(f"downloading {redact_url(url)}: more than {MAX_REDIRECTS} redirects")
    except requests.RequestException as exc:
        raise StagingError(f"downloading {redact_url(url)} failed: {type(exc).__name__}") from None


def safe_extract(
    archive: Path, target: Path, max_bytes: int = MAX_ARCHIVE_BYTES, max_files: int = MAX_ARCHIVE_FILES
) -> Path:
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

    def copy(stream: IO[bytes], path: Path, name: str) -> None:
        nonlocal written, count
        count += 1
        if count > max_files:
            raise StagingError(f"{archive.name}: more than {max_files} files")
        check_entry_name(name.strip("/"), archive.name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as out:
                while chunk := stream.read(DOWNLOAD_CHUNK):
                    written += len(chunk)
                    if written > max_bytes:
                        raise StagingError(
                            f"{archive.name}: expands past {max_bytes} bytes (a zip bomb?) at {name!r}"
                        )
                    out.write(chunk)
        except OSError as exc:
            raise StagingError(
                f"{archive.name}: entry {name[:80]!r} cannot be extracted ({exc.strerror})"
            ) from None

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise StagingError(
                        f"{archive.name}: {info.filename!r} is a symbolic link; links are not staged"
                    )
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
                    raise StagingError(
                        f"{archive.name}: {member.name!r} is a device, FIFO or other special file"
                    )
                else:
                    content = tf.extractfile(member)
                    if content is None:  # tarfile has no stream for anything but a regular file
                        raise StagingError(f"{archive.name}: {member.name!r} cannot be read")
                    copy(content, path, member.name)
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
    conn_id: str | None = STAGING_CONN_ID,
) -> StagedModel:
    """Fetch the staged model into workdir and verify it: step 2a up to, not including, the upload.

    `staging` is a local folder (absolute, or relative to the staging root), `git+<url>[@<ref>]`, an archive
    URL (`https://…/zipball/<ref>`, `…/archive/….zip`, `….tar.gz`) or `github:`/`gitlab:owner/repo@ref`.
    Errors name the user's own folder or URL, never the task's working copy.
    """
    location = resolve_source(staging, staging_root)
    shown = redact_url(location)
    if "://" in location:
        refuse_embedded_credentials(location)
    if location.startswith("git+"):
        folder, sha = fetch_git(location, workdir, Credentials.from_connection(conn_id))
        kind, revision = "git", sha
    elif location.startswith(("http://", "https://", "github:", "gitlab:")):
        url = archive_url(location)
        archive = workdir / "staging-archive"
        digest = download(url, archive, Credentials.from_connection(conn_id))
        with users_paths(Path(archive.name), redact_url(url)):  # name the URL, not the downloaded file
            folder = safe_extract(archive, workdir / "staged")
        archive.unlink()
        kind, revision = "archive", f"sha256:{digest}"
        shown = redact_url(url)
    elif location.startswith(("/", "file:")):
        folder = fetch_local(Path(local_path(location)), workdir)
        kind, revision = "local", ""
    else:
        raise StagingError(
            f"staging {shown!r}: not a folder, git+<url>, archive URL, github: or gitlab: source"
        )
    with users_paths(folder, shown):
        for path in sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")):
            check_entry_name(path, f"staging {shown}")
        metadata, executable = check_layout(folder, require_endpoint=require_endpoint)
        check_sample(folder)
    manifest = build_manifest(folder)
    source = SourceInfo(location=shown, kind=kind, revision=revision or f"sha256:{manifest_digest(manifest)}")
    return StagedModel(
        folder=folder, metadata=metadata, executable=executable, manifest=manifest, source=source
    )


def local_path(location: str) -> str:
    """`/path`, or a `file:` URL (`file:///path`, `file://localhost/path`); never relative to a cwd."""
    if location.startswith("/"):
        return location
    parts = urlsplit(location)
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise StagingError(f"staging {location!r}: a file URL is file:///<absolute path>")
    from urllib.parse import unquote

    return unquote(parts.path)


@contextmanager
def users_paths(folder: Path, shown: str) -> Iterator[None]:
    """Errors raised inside name the user's folder or URL instead of the working copy they were read from."""
    from model_governance.exceptions import InvalidInputError

    try:
        yield
    except InvalidInputError as exc:
        message = str(exc).replace(str(folder), shown)
        raise type(exc)(message) from None


SAMPLE_REQUEST = "samples/leapframe.json"


def check_sample(folder: Path) -> None:
    """The staged sample request, when there is one, must be a LeapFrame with at least one row to score."""
    path = folder / SAMPLE_REQUEST
    if not path.exists():
        return
    try:
        frame = json.loads(path.read_bytes())
        fields, rows = frame["schema"]["fields"], frame["rows"]
        ok = isinstance(fields, list) and isinstance(rows, list)
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise StagingError(f'{path}: not a LeapFrame ({{"schema": {{"fields": [...]}}, "rows": [...]}})')
    if not rows:
        raise StagingError(
            f"{path}: rows is empty; give at least one row, "
            "so that the deploy step can verify the model scores"
        )
