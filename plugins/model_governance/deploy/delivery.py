"""The bundle's way to the serving host: copied from the registry (sha256 checked) into the folder the
server mounts, one folder per model version and content, so that older versions stay loadable for a
rollback and a URI the server serves names the bytes it loaded: a version republished with other content
(`force`) is delivered to another path."""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from model_governance.bundle import validate_mleap_bundle
from model_governance.deploy.verify import require_zip_name
from model_governance.exceptions import ServingConfigError
from model_governance.metadata import model_slug
from model_governance.registry import Registry

if TYPE_CHECKING:
    from model_governance.atlas.queries import DeploymentRecord
    from model_governance.hooks.mleap import MLeapServingHook

# MLeap's HttpRepository copies a download onto the temp file it has just created (`Files.copy` without
# REPLACE_EXISTING), so every http(s) bundle URI fails on a real spring-boot server (combust/mleap#513).
WEBHDFS_REFUSED = (
    "connection {conn!r}: delivery webhdfs does not work with MLeap serving: its HTTP repository cannot "
    "save a downloaded bundle (combust/mleap#513); use delivery models_dir (the default) and set models_dir"
)


def deliver(
    hook: MLeapServingHook,
    registry: Registry,
    version_path: str,
    slug: str,
    version: str,
    executable: str,
    sha256: str,
) -> str:
    """Where the server reads the archived bundle: a path (legacy) or a `file:` URI (spring-boot).

    The bundle is copied to `<models_dir>/<slug>/<version>/<sha256 prefix>/<file>`, the same under
    `<models_mount>` as the server sees it, and checked there (sha256 and bundle layout).
    """
    uri = delivered_uri(hook, slug, version, executable, sha256)
    local = hook.models_dir / _relative(slug, version, executable, sha256)
    registry.download(posixpath.join(version_path, executable), local, sha256)
    validate_mleap_bundle(local)
    return uri


def delivered_uri(hook: MLeapServingHook, slug: str, version: str, executable: str, sha256: str) -> str:
    """Where the server reads a version's bundle once delivered: a path (legacy) or a `file:` URI."""
    require_zip_name(executable)
    if hook.delivery == "webhdfs":
        raise ServingConfigError(WEBHDFS_REFUSED.format(conn=hook.mleap_conn_id))
    path = f"{hook.models_mount}/{_relative(slug, version, executable, sha256)}"
    return path if hook.api == "legacy" else f"file:{path}"


def _relative(slug: str, version: str, executable: str, sha256: str) -> str:
    # 16 hex digits (64 bits) of the sha256 tell two contents of one version apart
    return posixpath.join(slug, version, sha256[:16], posixpath.basename(executable))


def deliver_previous(
    hook: MLeapServingHook, registry: Registry, record: DeploymentRecord | None, webhdfs_conn_id: str
) -> str | None:
    """The bundle of the deployment Atlas says serves here, put back in the models folder for a rollback;
    None when there is none, or its checksum was not recorded."""
    if record is None:
        return None
    version_path = urlsplit(record.registry_url).path
    executable = f"executable/{record.serialized_object}"
    sha256 = record.artifact_checksums.get(posixpath.join(version_path, executable))
    if not sha256:
        return None
    on_hdfs = record.registry_url.startswith("hdfs://")
    if on_hdfs != (registry.store.kind() == "hdfs"):  # the previous version lives in another kind of registry
        registry = Registry.from_root("hdfs:///" if on_hdfs else "/", webhdfs_conn_id)
    slug = model_slug(record.model_name)
    return deliver(hook, registry, version_path, slug, record.model_version, executable, sha256)
