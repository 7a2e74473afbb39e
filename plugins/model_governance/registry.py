"""The model registry (step 2c): one immutable folder per model version, HDFS or a local folder alike.

    <root>/.pending/<run>/          the fetch step uploads the staged snapshot here
    <root>/<model slug>/<version>/  publish verifies the upload, writes MANIFEST.json, and renames it here

Tasks may run on different workers, so the pending area in the registry (shared storage) is how the
fetch step hands files to the later steps; no task reads a local file another task wrote. A version
appears whole or not at all: one verified rename puts it in place.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import posixpath
import re
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from model_governance.connections import WEBHDFS_CONN_ID
from model_governance.exceptions import RegistryConflictError, RegistryError
from model_governance.metadata import (
    DeploymentDocument,
    ManifestEntry,
    ModelMetadata,
    RegistryInfo,
    same_name,
)
from model_governance.retry import is_transient, with_retries

log = logging.getLogger(__name__)

MANIFEST_FILE = "MANIFEST.json"
PENDING_DIR = ".pending"
TRASH_DIR = ".trash"
LOCKS_DIR = ".locks"
SERVED_DIR = ".served"
T = TypeVar("T")

CHUNK = 1024 * 1024
UPLOAD_CHUNK = 64 * 1024  # a request body goes out in chunks of this size, as the hdfs client sends them
PROGRESS_EVERY_BYTES = 256 * 1024 * 1024
# A lock file read empty is being created by another run; one empty for this long lost its writer
# (HDFS lets another client recover a dead writer's lease after 60 s).
EMPTY_LOCK_GRACE = 120.0
BEING_WRITTEN: dict[str, Any] = {"run_id": None, "being_written": True}


class ByteStream(Protocol):
    """What a store writes from: read by size (a local copy) or iterated in chunks (a WebHDFS body)."""

    def read(self, n: int = -1, /) -> bytes: ...
    def __iter__(self) -> Iterator[bytes]: ...


class Store(Protocol):
    """The few file-system operations the registry needs; paths are absolute, `/`-separated."""

    def kind(self) -> str: ...
    def url(self, path: str) -> str: ...
    def is_dir(self, path: str) -> bool: ...
    def exists(self, path: str) -> bool: ...
    def makedirs(self, path: str) -> None: ...
    def list_files(self, folder: str) -> dict[str, int]: ...  # relative path -> size, recursive
    def summary(self, folder: str) -> tuple[int, int]: ...  # (files, bytes) under folder, recursive
    def read_small(self, path: str) -> bytes | None: ...  # a small file whole; None if there is none
    def write_file(self, path: str, stream: ByteStream, size: int) -> None: ...  # parents made, overwrite
    def create_exclusive(self, path: str, data: bytes) -> bool: ...  # atomically; False if it exists
    def open_chunks(self, path: str) -> AbstractContextManager[Iterator[bytes]]: ...
    def rename(self, src: str, dst: str) -> bool: ...  # the service's own answer, unverified
    def delete(self, path: str) -> bool: ...  # recursive


class LocalStore:
    """A registry on a local (or mounted) file system: the seed's dev mode, with the same guarantees."""

    def kind(self) -> str:
        return "local"

    def url(self, path: str) -> str:
        return Path(path).as_uri()

    def is_dir(self, path: str) -> bool:
        return Path(path).is_dir()

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def makedirs(self, path: str) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)

    def list_files(self, folder: str) -> dict[str, int]:
        base = Path(folder)
        if not base.is_dir():
            raise FileNotFoundError(folder)
        return {p.relative_to(base).as_posix(): p.stat().st_size for p in base.rglob("*") if p.is_file()}

    def summary(self, folder: str) -> tuple[int, int]:
        files = self.list_files(folder)
        return len(files), sum(files.values())

    def read_small(self, path: str) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None

    def write_file(self, path: str, stream: ByteStream, size: int) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            shutil.copyfileobj(stream, out, CHUNK)

    def create_exclusive(self, path: str, data: bytes) -> bool:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return True

    @contextmanager
    def open_chunks(self, path: str) -> Iterator[Iterator[bytes]]:
        with open(path, "rb") as handle:
            yield iter(lambda: handle.read(CHUNK), b"")

    def rename(self, src: str, dst: str) -> bool:
        try:
            os.rename(src, dst)  # on POSIX this replaces an empty folder: callers check the target first
        except OSError:
            return False
        return True

    def delete(self, path: str) -> bool:
        target = Path(path)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
            return True
        if os.path.lexists(target):
            target.unlink()
            return True
        return False


# Hadoop's own "ask again" answers (a namenode busy or failing over); the hdfs client keeps only their name.
TRANSIENT_HDFS_EXCEPTIONS = frozenset({"RetriableException", "StandbyException", "SafeModeException"})
# What a CREATE without overwrite answers when the file is someone else's (done, or still being written).
CREATE_LOST_EXCEPTIONS = frozenset({"FileAlreadyExistsException", "AlreadyBeingCreatedException"})


def is_transient_hdfs(exc: BaseException) -> bool:
    name = getattr(exc, "exception", None)
    # a DataNode whose connection to a restarted NameNode broke relays the RPC's EOFException once
    rpc_cut = name == "EOFException" and "End of File Exception between" in str(exc)
    return is_transient(exc) or name in TRANSIENT_HDFS_EXCEPTIONS or rpc_cut


class WebHDFSStore:
    """A registry on HDFS through the `hdfs` client that Airflow's WebHDFSHook builds from its connection.

    Every call is retried with backoff on connection errors and Hadoop's transient exceptions; a write
    is retried whole, by the registry, which can reopen the file."""

    def __init__(
        self,
        client: Any,
        default_fs: str,
        user: str | None = None,
        namenodes: tuple[str, ...] = (),
        reconnect: Callable[[], Any] | None = None,
    ):
        self.client = client
        self.default_fs = default_fs.rstrip("/")
        self.user = user
        self.namenodes = namenodes
        self.reconnect = reconnect  # finds the active namenode again (the hook tries each in turn)

    @classmethod
    def from_connection(cls, conn_id: str) -> WebHDFSStore:
        from airflow.providers.apache.hdfs.hooks.webhdfs import WebHDFSHook

        hook = WebHDFSHook(webhdfs_conn_id=conn_id)
        conn = hook.get_connection(conn_id)
        # Stakeholders follow hdfs:// URLs, not WebHDFS ones: the cluster's fs.defaultFS if the connection
        # names it, else the first namenode on HDFS's usual RPC port.
        default_fs = (
            conn.extra_dejson.get("default_fs") or f"hdfs://{(conn.host or 'localhost').split(',')[0]}:8020"
        )
        namenodes = tuple(h.strip() for h in (conn.host or "localhost").split(",") if h.strip())
        return cls(
            _client(hook, conn, namenodes),
            default_fs,
            conn.login,
            namenodes,
            lambda: WebHDFSHook(webhdfs_conn_id=conn_id).get_conn(),
        )

    def kind(self) -> str:
        return "hdfs"

    def names_cluster(self, netloc: str) -> bool:
        """Whether `hdfs://<netloc>/` is the cluster this connection reaches (fs.defaultFS or a namenode)."""
        host = (urlsplit(f"//{netloc}").hostname or "").lower()
        default = urlsplit(self.default_fs)
        return netloc.lower() == default.netloc.lower() or host in {
            (default.hostname or "").lower(),
            *(h.lower() for h in self.namenodes),
        }

    def open_url(self, path: str) -> str:
        """The WebHDFS OPEN URL of a file on the namenode in use: what a server fetches, no credentials."""
        from urllib.parse import quote

        query = "op=OPEN" + (f"&user.name={quote(self.user)}" if self.user else "")
        return f"{self.client.url.rstrip('/')}/webhdfs/v1{quote(path)}?{query}"

    def transient(self, exc: BaseException) -> bool:
        """Worth asking again. A namenode that went standby (a fail-over during the run), or, with several
        namenodes, one gone: the next attempt goes to the one that is active now."""
        failed_over = getattr(exc, "exception", None) == "StandbyException"
        if self.reconnect and (failed_over or (len(self.namenodes) > 1 and is_transient(exc))):
            try:
                self.client = self.reconnect()
            except Exception as why:  # none answers yet: the next attempt tries again
                log.warning("No active namenode found (%s)", why)
        return is_transient_hdfs(exc)

    def _retry(self, call: Callable[[], T], what: str) -> T:
        return with_retries(call, f"WebHDFS {what}", transient=self.transient)

    def url(self, path: str) -> str:
        return f"{self.default_fs}{path}"

    def _status(self, path: str) -> dict | None:
        return self._retry(lambda: self.client.status(path, strict=False), f"status of {path}")

    def is_dir(self, path: str) -> bool:
        status = self._status(path)
        return bool(status and status["type"] == "DIRECTORY")

    def exists(self, path: str) -> bool:
        return self._status(path) is not None

    def makedirs(self, path: str) -> None:
        self._retry(lambda: self.client.makedirs(path), f"mkdirs {path}")

    def list_files(self, folder: str) -> dict[str, int]:
        # One LISTSTATUS a folder: the client's walk asks GETFILESTATUS of every folder besides.
        from hdfs.util import HdfsError

        files: dict[str, int] = {}

        def walk(path: str, prefix: str) -> None:
            statuses = self._retry(
                lambda: self.client._list_status(path).json()["FileStatuses"]["FileStatus"],
                f"listing of {path}",
            )
            for status in statuses:
                name = status["pathSuffix"]
                if not name:  # LISTSTATUS of a file answers the file itself
                    raise HdfsError("%r is not a directory.", path)
                if status["type"] == "DIRECTORY":
                    walk(posixpath.join(path, name), f"{prefix}{name}/")
                else:
                    files[f"{prefix}{name}"] = status["length"]

        walk(folder, "")
        return files

    def summary(self, folder: str) -> tuple[int, int]:
        content = self._retry(lambda: self.client.content(folder), f"content summary of {folder}")
        return int(content["fileCount"]), int(content["length"])

    def read_small(self, path: str) -> bytes | None:
        from hdfs.util import HdfsError

        def read() -> bytes | None:
            try:
                with self.client.read(path) as reader:
                    return bytes(reader.read())
            except HdfsError as exc:
                if getattr(exc, "exception", None) == "FileNotFoundException":
                    return None
                raise

        return self._retry(read, f"read of {path}")

    def write_file(self, path: str, stream: ByteStream, size: int) -> None:
        # iterated in UPLOAD_CHUNK (64 KiB) pieces, sent chunked: a file object would be sent by
        # http.client in 8 KiB reads, half as fast
        self.client.write(path, data=iter(stream), overwrite=True)

    def create_exclusive(self, path: str, data: bytes) -> bool:
        from hdfs.util import HdfsError

        try:
            self.client.write(path, data=data, overwrite=False)  # the namenode refuses an existing file
        except HdfsError as exc:
            # another writer's file: closed (FileAlreadyExists), or still being written, its lease held
            # (AlreadyBeingCreated: two runs creating the same lock at once)
            if getattr(exc, "exception", None) in CREATE_LOST_EXCEPTIONS or "already exists" in str(exc):
                return False
            raise
        return True

    @contextmanager
    def open_chunks(self, path: str) -> Iterator[Iterator[bytes]]:
        with self.client.read(path, chunk_size=CHUNK) as chunks:
            yield chunks

    def rename(self, src: str, dst: str) -> bool:
        from hdfs.util import HdfsError

        try:
            self._retry(lambda: self.client.rename(src, dst), f"rename {src}")
        except HdfsError:
            return False  # WebHDFS answered {"boolean": false}
        return True

    def delete(self, path: str) -> bool:
        return self._retry(lambda: self.client.delete(path, recursive=True), f"delete {path}")


def _client(hook: Any, conn: Any, namenodes: tuple[str, ...]) -> Any:
    """The hook's client. With one namenode there is nothing to choose: built as the hook builds it, without
    the GETFILESTATUS of `/` with which `get_conn` picks the active one of several (one request a task)."""
    if len(namenodes) != 1 or not hasattr(hook, "_get_client"):
        return hook.get_conn()
    return hook._get_client(
        namenodes[0], conn.port, conn.login, conn.password, conn.schema, conn.extra_dejson
    )


def check_root_path(path: str, given: str) -> None:
    """A registry root is a plain absolute path: no `.`/`..` (HDFS refuses them), no ':' or control chars."""
    from model_governance.exceptions import InvalidInputError

    parts = path.split("/")
    if (
        any(p in (".", "..") for p in parts)
        or any(":" in p for p in parts)
        or re.search(r"[\x00-\x1f\x7f]", path)
    ):
        raise InvalidInputError(
            f"registry_root {given!r}: the path may not hold '.', '..', ':' or control characters"
        )


class ProgressReader:
    """A file wrapper that logs bytes sent and rate for large files; requests streams it by its `len`."""

    def __init__(self, handle: ByteStream, size: int, label: str) -> None:
        self.handle, self.len, self.label = handle, size, label
        self.sent = 0
        self.started = time.monotonic()
        self.next_report = PROGRESS_EVERY_BYTES

    def read(self, n: int = -1) -> bytes:
        data = self.handle.read(n if n and n > 0 else CHUNK)
        self.sent += len(data)
        if self.sent >= self.next_report:
            self.next_report += PROGRESS_EVERY_BYTES
            elapsed = max(time.monotonic() - self.started, 1e-6)
            log.info(
                "%s: %d of %d MiB sent, %.1f MiB/s",
                self.label,
                self.sent >> 20,
                self.len >> 20,
                self.sent / elapsed / 2**20,
            )
        return data

    def __iter__(self) -> Iterator[bytes]:
        return iter(lambda: self.read(UPLOAD_CHUNK), b"")


def run_path_segment(run_key: str) -> str:
    """A run key as one path segment HDFS accepts (no `:`), still unique: Airflow run ids hold `:` and `+`."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", run_key)
    return f"{safe}-{hashlib.sha256(run_key.encode()).hexdigest()[:8]}"


def describe_holder(holder: dict[str, Any]) -> str:
    """`run <run id> of <dag>` (with the model's name when recorded), for wait messages and warnings."""
    text = f"run {holder.get('run_id', '?')}"
    if holder.get("dag_id"):
        text += f" of {holder['dag_id']}"
    return text


def differences(
    expected: list[ManifestEntry] | tuple[ManifestEntry, ...], actual: list[ManifestEntry]
) -> list[str]:
    """How two manifests differ, one line per file: what a conflicting version error shows."""
    want = {e.path: e for e in expected}
    have = {e.path: e for e in actual}
    lines = []
    for path in sorted(want.keys() | have.keys()):
        a, b = want.get(path), have.get(path)
        if a is None:
            lines.append(f"{path}: only in the registry")
        elif b is None:
            lines.append(f"{path}: only in the staged model")
        elif (a.size, a.sha256) != (b.size, b.sha256):
            lines.append(
                f"{path}: staged {a.size} bytes sha256 {a.sha256[:12]}…, "
                f"registry {b.size} bytes sha256 {b.sha256[:12]}…"
            )
    return lines


class Registry:
    """The registry's rules, written once over any `Store`."""

    def __init__(self, store: Store, root: str, parallelism: int = 4, location: str | None = None):
        if not root.startswith("/"):
            raise ValueError(f"registry root {root!r} must be an absolute path")
        self.store = store
        self.root = root.rstrip("/") or "/"
        self.parallelism = parallelism
        self.location = location or root  # the root as the run was given it: hdfs:///… or a folder
        # published versions' manifests as this object last read them (None: no such version), forgotten
        # when it writes one. Each task makes its own Registry, and publish decides on its own read.
        self._records: dict[tuple[str, str], dict[str, Any] | None] = {}

    @classmethod
    def from_root(
        cls, registry_root: str, webhdfs_conn_id: str = WEBHDFS_CONN_ID, parallelism: int = 4
    ) -> Registry:
        """`hdfs:///path` (the namenode comes from the WebHDFS connection; `hdfs://<that namenode>/path`
        too), `file:///path` or `/path` (dev mode). Anything else is refused, never guessed."""
        from model_governance.exceptions import InvalidInputError

        text = str(registry_root).strip()
        parts = urlsplit(text)
        if parts.scheme == "hdfs":
            path = parts.path or "/"
            check_root_path(path, text)
            store = WebHDFSStore.from_connection(webhdfs_conn_id)
            if parts.netloc and not store.names_cluster(parts.netloc):
                raise InvalidInputError(
                    f"registry_root {text!r}: names the namenode {parts.netloc}, "
                    f"but connection {webhdfs_conn_id!r} reaches {store.default_fs}; "
                    f"use hdfs:///{path.lstrip('/')} or another connection"
                )
            return cls(store, path, parallelism, text)
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise InvalidInputError(
                    f"registry_root {text!r}: a file URL is file:///<absolute path> "
                    f"({parts.netloc!r} would be a host)"
                )
            path = parts.path
        elif parts.scheme:
            raise InvalidInputError(
                f"registry_root {text!r}: give hdfs:///<path>, file:///<path> or an absolute local folder"
            )
        else:
            path = text
        if not path.startswith("/"):
            raise RegistryError(f"registry root {text!r}: give hdfs:///<path> or an absolute local folder")
        check_root_path(path, text)
        return cls(LocalStore(), path, parallelism, text)

    # -- where things are ------------------------------------------------------------------------------
    def version_path(self, slug: str, version: str) -> str:
        return posixpath.join(self.root, slug, version)

    def pending_path(self, run_key: str) -> str:
        return posixpath.join(self.root, PENDING_DIR, run_path_segment(run_key))

    def published_manifest(self, slug: str, version: str) -> list[ManifestEntry] | None:
        """The files of a published version, or None if the version is not there."""
        record = self.published_record(slug, version)
        return None if record is None else [ManifestEntry(**entry) for entry in record["files"]]

    def published_record(self, slug: str, version: str) -> dict[str, Any] | None:
        """A published version's MANIFEST.json, or None if the version is not there. A folder without one,
        or with one that is not a manifest, is refused at once (no retry can mend it)."""
        if (slug, version) not in self._records:
            self._records[slug, version] = self._read_record(slug, version)
        return self._records[slug, version]

    def _read_record(self, slug: str, version: str) -> dict[str, Any] | None:
        folder = self.version_path(slug, version)
        path = posixpath.join(folder, MANIFEST_FILE)
        content = self.store.read_small(path)  # read at once: asking whether it exists first costs a request
        if content is None:
            if self.store.exists(folder):
                raise RegistryConflictError(
                    f"{self.store.url(folder)} exists without {MANIFEST_FILE}: "
                    "not a registry version; move it away"
                )
            return None
        try:
            record = json.loads(content)
            [ManifestEntry(**entry) for entry in record["files"]]
            record["model"]["name"]
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryConflictError(
                f"{self.store.url(path)} is not a registry manifest "
                f"({type(exc).__name__}: {str(exc)[:100]}); "
                "move the version away or repair it"
            ) from None
        return record

    def published_by(self, doc: DeploymentDocument) -> str | None:
        """The run id that published the document's version, from its manifest; None if not published."""
        record = self.published_record(doc.model.slug, doc.model.version)
        return None if record is None else (record.get("published_by") or {}).get("run_id")

    def check_owner(self, model: ModelMetadata) -> None:
        """The version's folder must belong to this very model: a different name never shares it."""
        record = self.published_record(model.slug, model.version)
        if record is not None and not same_name(record["model"]["name"], model.name):
            raise RegistryConflictError(
                f"{self.store.url(self.version_path(model.slug, model.version))} "
                f"holds model {record['model']['name']!r}, "
                f"not {model.name!r}: nothing was written"
            )

    # -- served versions: immutable unless forced --------------------------------------------------------
    def served_marker(self, slug: str, version: str) -> str:
        return posixpath.join(self.root, SERVED_DIR, slug, f"{version}.json")

    def mark_served(self, doc: DeploymentDocument, where: str) -> None:
        """Record that this version served (after a successful deploy): immutable from now, unless forced."""
        data = json.dumps(
            {
                "model": doc.model.name,
                "version": doc.model.version,
                "where": where,
                "run_id": doc.run_id,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        ).encode()
        self.store.write_file(
            self.served_marker(doc.model.slug, doc.model.version), io.BytesIO(data), len(data)
        )

    def has_served(self, slug: str, version: str, record: dict[str, Any]) -> bool:
        """A version published before served markers (no `serving_recorded` in its manifest): served."""
        return not record.get("serving_recorded") or self.store.exists(self.served_marker(slug, version))

    # -- fetch: upload to the pending area ---------------------------------------------------------------
    def upload_pending(self, run_key: str, folder: Path, manifest: tuple[ManifestEntry, ...]) -> int:
        """Upload the staged snapshot to the run's pending folder; returns bytes uploaded."""
        pending = self.pending_path(run_key)
        self.store.delete(pending)  # a retry starts clean
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(max_workers=self.parallelism) as pool:
                list(pool.map(lambda e: self._upload_one(folder, pending, e), manifest))
        except Exception as exc:
            self.store.delete(pending)
            raise RegistryError(
                f"upload of the staged model to {self.store.url(pending)} failed: {exc}"
            ) from exc
        total = sum(e.size for e in manifest)
        elapsed = max(time.monotonic() - started, 1e-6)
        log.info(
            "Uploaded %d files, %d bytes to %s in %.1f s (%.1f MiB/s)",
            len(manifest),
            total,
            self.store.url(pending),
            elapsed,
            total / elapsed / 2**20,
        )
        return total

    def _upload_one(self, folder: Path, pending: str, entry: ManifestEntry) -> None:
        def upload() -> None:  # reopens the file, so a retry sends it whole again
            with (folder / entry.path).open("rb") as handle:
                self.store.write_file(
                    posixpath.join(pending, entry.path),
                    ProgressReader(handle, entry.size, entry.path),
                    entry.size,
                )

        with_retries(
            upload, f"upload of {entry.path}", transient=getattr(self.store, "transient", is_transient_hdfs)
        )

    def discard_pending(self, run_key: str) -> bool:
        return self.store.delete(self.pending_path(run_key))

    # -- one deployment of a model at a time ---------------------------------------------------------------
    def lock_path(self, slug: str) -> str:
        return posixpath.join(self.root, LOCKS_DIR, f"{slug}.lock")

    def acquire_lock(
        self,
        slug: str,
        run_key: str,
        wait: float = 900.0,
        stale_after: float = 6 * 3600,
        poll: float = 5.0,
        holder_info: dict[str, str] | None = None,
        is_running: Callable[[dict[str, Any]], bool | None] | None = None,
    ) -> None:
        """Hold the model's deployment lock (a file created atomically in the registry, seen by every worker).

        A run that already holds it (a retry) goes on. A lock whose run is no longer running (`is_running`
        answers False: the run ended without its clean-up) is taken over at once, with a warning naming it;
        otherwise this run waits up to `wait` seconds, saying who holds the lock. A lock older than
        `stale_after` whose run cannot be asked about is broken with a warning.
        """
        path = self.lock_path(slug)
        # the lock file's "run_id" holds the run key: the stored name stays, so earlier locks still match
        claim = json.dumps({"run_id": run_key, "since": time.time(), **(holder_info or {})}).encode()
        deadline = time.monotonic() + wait
        empty_since: float | None = None
        while not self.store.create_exclusive(path, claim):
            holder = self._lock_holder(path)
            if holder is None:  # released between our two calls, or unreadable just now
                if time.monotonic() >= deadline:
                    raise RegistryError(f"could not take the deployment lock {self.store.url(path)}")
                time.sleep(min(poll, 0.5))
                continue
            if holder is BEING_WRITTEN:  # another run is creating it right now: read it again shortly
                empty_since = empty_since or time.monotonic()
                if time.monotonic() - empty_since > EMPTY_LOCK_GRACE:  # its writer died mid-create
                    log.warning(
                        "Breaking the deployment lock of %s: empty for %.0f s", slug, EMPTY_LOCK_GRACE
                    )
                    self._break_lock(path, holder)
                    empty_since = None
                    continue
                if time.monotonic() >= deadline:
                    raise RegistryError(
                        f"{slug} is being deployed by another run (its lock is being taken); "
                        "try again when it ends"
                    )
                time.sleep(min(poll, 0.5))
                continue
            empty_since = None
            if holder.get("run_id") == run_key:
                self._note_held(slug, run_key)
                return
            age = time.time() - float(holder.get("since", 0))
            who = describe_holder(holder)
            running = is_running(holder) if is_running else None
            if running is False:
                log.warning(
                    "Taking over the deployment lock of %s from %s, which is no longer running", slug, who
                )
                self._break_lock(path, holder)
                continue
            if running is None and age > stale_after:
                log.warning("Breaking the deployment lock of %s held by %s for %.0f s", slug, who, age)
                self._break_lock(path, holder)
                continue
            if time.monotonic() >= deadline:
                raise RegistryError(
                    f"{slug} is being deployed by {who} (for {age:.0f} s); try again when it ends"
                )
            log.info("Waiting for %s, which holds the deployment lock of %s (for %.0f s)", who, slug, age)
            time.sleep(poll)
        self._note_held(slug, run_key)

    def _break_lock(self, path: str, holder: dict[str, Any]) -> None:
        """Delete a lock, unless it changed hands since it was read (then the next loop looks again)."""
        if self._lock_holder(path) == holder:
            self.store.delete(path)

    def _held_note(self, run_key: str, slug: str = "") -> str:
        return posixpath.join(self.root, LOCKS_DIR, f".held.{run_path_segment(run_key)}.{slug}")

    def _note_held(self, slug: str, run_key: str) -> None:
        """An empty file naming the run and the model next to the lock: the clean-up finds the run's locks
        by listing, so it releases them even when the registry cannot be read (WebHDFS OPEN failing)."""
        try:
            self.store.write_file(self._held_note(run_key, slug), io.BytesIO(b""), 0)
        except Exception as exc:  # the lock's own content still names the run
            log.warning("Could not note the lock of %s for run %s (%s)", slug, run_key, exc)

    def release_locks(self, run_key: str) -> list[str]:
        """Release every model lock this run holds (the clean-up knows the run, not always the model).

        A lock is this run's if its content says so; if its content cannot be read, if the run noted it
        when taking it (the run is still running, so no other run can have taken it over)."""
        folder = posixpath.join(self.root, LOCKS_DIR)
        try:
            names = list(self.store.list_files(folder))
        except Exception:
            if self.store.is_dir(folder):
                raise
            return []  # no lock was ever taken here
        prefix = posixpath.basename(self._held_note(run_key))
        held = {name[len(prefix) :] for name in names if name.startswith(prefix)}
        released = []
        for name in names:
            if "/" in name or not name.endswith(".lock"):
                continue
            path, slug = posixpath.join(folder, name), name.removesuffix(".lock")
            try:
                holder = json.loads(self.read_bytes(path))
                mine = isinstance(holder, dict) and holder.get("run_id") == run_key
            except ValueError:
                mine = slug in held
            except Exception:
                if not self.store.exists(path):
                    continue
                mine = slug in held
            if mine and self.store.delete(path):
                released.append(slug)
        for slug in held:
            self.store.delete(self._held_note(run_key, slug))
        return released

    def _lock_holder(self, path: str) -> dict[str, Any] | None:
        """The lock's content; None if there is none; BEING_WRITTEN while it is empty (HDFS shows a file
        whose writer has not closed it with length 0 and no bytes: it is held, not stale)."""
        if not self.store.exists(path):
            return None
        try:
            content = self.read_bytes(path)
            if not content.strip():
                return BEING_WRITTEN
            return json.loads(content)
        except ValueError:
            return {"run_id": "?", "since": 0}  # unreadable: treated as held, and broken once stale
        except Exception:
            return None  # gone between the two calls

    # -- publish: verify and rename into place -------------------------------------------------------------
    def verify(self, folder: str, manifest: tuple[ManifestEntry, ...]) -> None:
        """Check that folder holds exactly the manifest's files, sizes and sha256, reading every byte back.

        The count and total size come in one request; each file is then read whole (a missing one fails),
        so only a mismatch needs the listing folder by folder, to name the files that differ."""
        if self.store.summary(folder) != (len(manifest), sum(e.size for e in manifest)):
            found = self.store.list_files(folder)
            found.pop(MANIFEST_FILE, None)  # written by an earlier try of this publish
            expected = {e.path: e.size for e in manifest}
            if found != expected:
                wrong = sorted(p for p in expected.keys() | found.keys() if expected.get(p) != found.get(p))
                raise RegistryError(
                    f"{self.store.url(folder)} does not match the manifest: {', '.join(wrong)}"
                )

        def check(entry: ManifestEntry) -> str | None:
            digest = hashlib.sha256()
            with self.store.open_chunks(posixpath.join(folder, entry.path)) as chunks:
                for chunk in chunks:
                    digest.update(chunk)
            return None if digest.hexdigest() == entry.sha256 else entry.path

        with ThreadPoolExecutor(max_workers=self.parallelism) as pool:
            corrupt = [p for p in pool.map(check, manifest) if p]
        if corrupt:
            raise RegistryError(
                f"{self.store.url(folder)}: sha256 differs from the staged files for {', '.join(corrupt)}"
            )

    def already_published(
        self, model: ModelMetadata, manifest: tuple[ManifestEntry, ...], force: bool
    ) -> bool:
        """True when the version is in place with exactly this content. Different content replaces a version
        that never served (logged); one that served is refused unless force. Another model's folder: refused.
        """
        self.check_owner(model)
        record = self.published_record(model.slug, model.version)
        if record is None:
            return False
        published = [ManifestEntry(**entry) for entry in record["files"]]
        diff = differences(manifest, published)
        if not diff:
            return True
        where = self.store.url(self.version_path(model.slug, model.version))
        if force:
            log.warning(
                "%s holds %s %s with different content: replacing it (force)",
                where,
                model.name,
                model.version,
            )
        elif not self.has_served(model.slug, model.version, record):
            log.warning(
                "%s holds %s %s with different content that never served: "
                "replacing it (Atlas has no entity for it)",
                where,
                model.name,
                model.version,
            )
        else:
            shown = "; ".join(diff[:5]) + (f"; and {len(diff) - 5} more" if len(diff) > 5 else "")
            raise RegistryConflictError(
                f"{where} already holds {model.name} {model.version}, which served, with different content "
                f"(bump model.version, or set force to replace it): {shown}"
            )
        return False

    def publish(self, doc: DeploymentDocument, force: bool = False) -> RegistryInfo:
        """Put the run's pending upload in place as the model version, or confirm that version is there."""
        target = self.version_path(doc.model.slug, doc.model.version)
        pending = self.pending_path(doc.run_key)
        if self.already_published(doc.model, doc.manifest, force):
            # the fetch step uploaded nothing; the clean-up removes the pending folder in any case
            log.info("%s already holds this exact content: nothing to publish", self.store.url(target))
            return self._info(target, uploaded=0)
        existed = self.published_record(doc.model.slug, doc.model.version) is not None
        try:
            self.verify(pending, doc.manifest)
        except Exception:
            if not self.store.is_dir(pending):
                raise RegistryError(
                    f"nothing to publish: {self.store.url(pending)} is missing; run the fetch step again"
                ) from None
            raise
        self._write_manifest(pending, doc)
        self._records.clear()
        if existed:  # the old content differs, and force or it never served
            self._replace(pending, target, doc.run_key)
            # this content has not served yet
            self.store.delete(self.served_marker(doc.model.slug, doc.model.version))
        else:
            self._rename_into_place(pending, target)
        # what was verified is what is in place: a rename moves the same files, and the listing
        # after it proved where they landed
        log.info("Published %s", self.store.url(target))
        return self._info(target, uploaded=sum(e.size for e in doc.manifest), first=not existed)

    def _info(self, target: str, uploaded: int, first: bool = False) -> RegistryInfo:
        return RegistryInfo(
            root=self.location,
            path=target,
            url=self.store.url(target),
            uploaded_bytes=uploaded,
            first_archived=first,
        )

    def _write_manifest(self, folder: str, doc: DeploymentDocument) -> None:
        manifest = {
            "model": {"name": doc.model.name, "slug": doc.model.slug, "version": doc.model.version},
            "files": [{"path": e.path, "size": e.size, "sha256": e.sha256} for e in doc.manifest],
            "executable": doc.executable,
            "source": {
                "location": doc.source.location,
                "kind": doc.source.kind,
                "revision": doc.source.revision,
            },
            "published_by": {"dag_id": doc.dag_id, "run_id": doc.run_id},
            "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "serving_recorded": True,  # a served marker under .served/ says whether this version ever served
        }
        data = json.dumps(manifest, indent=2).encode()
        self.store.write_file(posixpath.join(folder, MANIFEST_FILE), io.BytesIO(data), len(data))

    def _rename_into_place(self, src: str, dst: str) -> None:
        """Rename src to dst and prove it: WebHDFS's rename onto an existing folder nests src inside it."""
        if self.store.exists(dst):
            raise RegistryError(
                f"{self.store.url(dst)} appeared while publishing; another run is publishing this version"
            )
        answered = self.store.rename(src, dst)
        if not answered:  # HDFS renames into existing folders only: the model's first version makes its own
            self.store.makedirs(posixpath.dirname(dst))
            answered = self.store.rename(src, dst)
        nested = posixpath.join(dst, posixpath.basename(src))
        if self.store.exists(nested):
            raise RegistryError(
                f"rename of {src} landed inside {self.store.url(dst)}, which another run created meanwhile"
            )
        # src is gone once dst holds the manifest: a rename moves the folder, it does not copy it
        if not answered or not self.store.exists(posixpath.join(dst, MANIFEST_FILE)):
            raise RegistryError(f"rename of {self.store.url(src)} to {self.store.url(dst)} failed")

    def _replace(self, pending: str, target: str, run_key: str) -> None:
        """`force`: move the old version aside, rename the new one in, then drop the old (or restore it)."""
        aside = posixpath.join(self.root, TRASH_DIR, run_path_segment(run_key))
        self.store.makedirs(posixpath.dirname(aside))
        self.store.delete(aside)
        if not self.store.rename(target, aside):
            raise RegistryError(f"could not move the old {self.store.url(target)} aside to replace it")
        try:
            self._rename_into_place(pending, target)
        except RegistryError:
            if not self.store.exists(target):
                self.store.rename(aside, target)
            raise
        self.store.delete(aside)
        log.warning("Replaced %s with different content", self.store.url(target))

    def read_bytes(self, path: str) -> bytes:
        """A small file (a manifest, a sample request) whole."""
        with self.store.open_chunks(path) as chunks:
            return b"".join(chunks)

    def read_optional(self, path: str) -> bytes | None:
        """A small file whole, or None when there is none: one request, no status call before it."""
        from hdfs.util import HdfsError

        try:
            return self.read_bytes(path)
        except FileNotFoundError:
            return None
        except HdfsError as exc:
            if getattr(exc, "exception", None) == "FileNotFoundException":
                return None
            raise

    # -- deploy: bring an artifact to where the server reads it ------------------------------------------
    def download(self, path: str, local: Path, sha256: str) -> None:
        """Stream a registry file to local (atomically, via a temp name), checking its sha256; nothing is
        read from the registry when local already holds exactly these bytes (a redeploy, a rollback)."""
        if local.is_file() and file_sha256(local) == sha256:
            return
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.part")
        digest = hashlib.sha256()
        with self.store.open_chunks(path) as chunks, tmp.open("wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            tmp.unlink()
            raise RegistryError(
                f"{self.store.url(path)}: sha256 {digest.hexdigest()} is not the published {sha256}"
            )
        os.replace(tmp, local)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
