"""The registry's guarantees, on a local folder and on HDFS: the WebHDFS stand-in and a real NameNode
(Hadoop's MiniDFSCluster, the session's `real_hdfs`), through the real clients."""

from __future__ import annotations

import json
import posixpath
import re
import shutil
import time

import pytest

from model_governance.exceptions import RegistryConflictError, RegistryError
from model_governance.metadata import DeploymentDocument
from model_governance.registry import MANIFEST_FILE, Registry, run_path_segment
from model_governance.staging import stage

from tests.helpers import EXAMPLE_STAGING


@pytest.fixture(params=["local", "hdfs", "real-hdfs"])
def registry(request, tmp_path, monkeypatch):
    if request.param == "local":
        yield Registry.from_root(str(tmp_path / "registry"))
        return
    if request.param == "real-hdfs":
        from tests.real_services import empty_hdfs

        real = request.getfixturevalue("real_hdfs")
        monkeypatch.setenv("AIRFLOW_CONN_WEBHDFS_DEFAULT", json.dumps(real.connection()))
        try:
            yield Registry.from_root("hdfs:///model-registry")
        finally:
            empty_hdfs(real)
        return
    from model_governance_devstack.webhdfs import WebHDFSStandIn

    with WebHDFSStandIn(tmp_path / "hdfs") as hdfs:
        monkeypatch.setenv("AIRFLOW_CONN_WEBHDFS_DEFAULT", json.dumps({"conn_type": "webhdfs", "host": "127.0.0.1", "port": hdfs.port, "login": "hdfs"}))
        yield Registry.from_root("hdfs:///model-registry")


def staged_document(tmp_path, run_id="manual__2026-11-25T00:00:00+00:00", source=EXAMPLE_STAGING, name="work"):
    work = tmp_path / name
    work.mkdir(exist_ok=True)
    staged = stage(str(source), work)
    doc = DeploymentDocument(staged.metadata, staged.source, staged.manifest, staged.executable, "model_deployment", run_id)
    return staged, doc


def publish_run(registry, tmp_path, run_id, source=EXAMPLE_STAGING, force=False):
    staged, doc = staged_document(tmp_path, run_id, source, name=run_path_segment(run_id))
    uploaded = 0
    if not registry.already_published(staged.metadata, staged.manifest, force):
        uploaded = registry.upload_pending(run_id, staged.folder, staged.manifest)
    return uploaded, registry.publish(doc, force=force), doc


def test_publish_puts_every_file_in_place_with_a_manifest(registry, tmp_path):
    uploaded, info, doc = publish_run(registry, tmp_path, "run-1")
    assert uploaded == sum(e.size for e in doc.manifest) > 0
    assert info.path == registry.version_path("rental-pricing-prediction", "1.1")
    files = registry.store.list_files(info.path)
    assert files.pop(MANIFEST_FILE) > 0
    assert files == {e.path: e.size for e in doc.manifest}
    registry.verify(info.path, doc.manifest)  # reads every byte back and checks sha256
    assert registry.published_manifest("rental-pricing-prediction", "1.1") == list(doc.manifest)
    with registry.store.open_chunks(f"{info.path}/{MANIFEST_FILE}") as chunks:
        manifest = json.loads(b"".join(chunks))
    assert manifest["source"]["revision"] == doc.source.revision
    assert manifest["published_by"] == {"dag_id": "model_deployment", "run_id": "run-1"}
    assert not registry.store.exists(registry.pending_path("run-1"))
    assert info.url.startswith(f"{registry.store.default_fs}/model-registry/" if registry.store.kind() == "hdfs" else "file://")
    if registry.store.kind() == "hdfs":
        assert registry.store.default_fs.startswith("hdfs://127.0.0.1:")


def test_rerun_with_same_content_uploads_nothing(registry, tmp_path):
    publish_run(registry, tmp_path, "run-1")
    uploaded, info, _ = publish_run(registry, tmp_path, "run-2")
    assert uploaded == 0 and info.uploaded_bytes == 0
    assert not registry.store.exists(registry.pending_path("run-2"))


def test_conflicting_version_is_refused_and_names_the_files(registry, tmp_path):
    _, _, doc = publish_run(registry, tmp_path, "run-1")
    registry.mark_served(doc, "http://serving/transform")  # a version that never served may be replaced
    changed = tmp_path / "changed"
    shutil.copytree(EXAMPLE_STAGING, changed)
    (changed / "README.md").write_text("a different README")
    with pytest.raises(RegistryConflictError, match=r"which served, with different content.*: README.md: staged \d+ bytes"):
        publish_run(registry, tmp_path, "run-2", source=changed)
    assert not registry.store.exists(registry.pending_path("run-2"))


def test_force_replaces_a_conflicting_version(registry, tmp_path):
    publish_run(registry, tmp_path, "run-1")
    changed = tmp_path / "changed"
    shutil.copytree(EXAMPLE_STAGING, changed)
    (changed / "README.md").write_text("a different README")
    _, info, doc = publish_run(registry, tmp_path, "run-2", source=changed, force=True)
    assert registry.published_manifest("rental-pricing-prediction", "1.1") == list(doc.manifest)
    registry.verify(info.path, doc.manifest)
    assert registry.store.list_files(registry.root).keys() >= {"rental-pricing-prediction/1.1/README.md"}
    assert not any(path.startswith(".trash/") for path in registry.store.list_files(registry.root))


def test_corrupted_upload_is_not_published(registry, tmp_path):
    staged, doc = staged_document(tmp_path, "run-1")
    registry.upload_pending("run-1", staged.folder, staged.manifest)
    # the same size, other bytes: only the sha256 read-back can tell
    readme = next(e for e in doc.manifest if e.path == "README.md")
    import io

    registry.store.write_file(f"{registry.pending_path('run-1')}/README.md", io.BytesIO(b"x" * readme.size), readme.size)
    with pytest.raises(RegistryError, match="sha256 differs .* README.md"):
        registry.publish(doc)
    assert registry.published_manifest("rental-pricing-prediction", "1.1") is None
    assert not registry.store.exists(registry.version_path("rental-pricing-prediction", "1.1"))


def test_missing_file_in_upload_is_not_published(registry, tmp_path):
    staged, doc = staged_document(tmp_path, "run-1")
    registry.upload_pending("run-1", staged.folder, staged.manifest)
    registry.store.delete(f"{registry.pending_path('run-1')}/code/train_model.py")
    with pytest.raises(RegistryError, match="does not match the manifest: code/train_model.py"):
        registry.publish(doc)
    assert not registry.store.exists(registry.version_path("rental-pricing-prediction", "1.1"))


def test_publish_without_upload_says_to_fetch_again(registry, tmp_path):
    _, doc = staged_document(tmp_path, "run-1")
    with pytest.raises(RegistryError, match="is missing; run the fetch step again"):
        registry.publish(doc)


def test_rename_onto_a_folder_that_appeared_is_caught(registry, tmp_path):
    """WebHDFS RENAME onto an existing folder nests the source inside it and answers true: publish must notice."""
    staged, doc = staged_document(tmp_path, "run-1")
    registry.upload_pending("run-1", staged.folder, staged.manifest)
    target = registry.version_path("rental-pricing-prediction", "1.1")
    pending = registry.pending_path("run-1")
    registry._write_manifest(pending, doc)
    registry.store.makedirs(target)  # another writer got there between our check and our rename
    with pytest.raises(RegistryError, match="appeared while publishing"):
        registry._rename_into_place(pending, target)


def test_download_checks_sha256(registry, tmp_path):
    _, info, doc = publish_run(registry, tmp_path, "run-1")
    entry = doc.executable_entry
    local = tmp_path / "models" / "m.zip"
    registry.download(f"{info.path}/{entry.path}", local, entry.sha256)
    assert local.read_bytes() == (EXAMPLE_STAGING / entry.path).read_bytes()
    with pytest.raises(RegistryError, match="is not the published"):
        registry.download(f"{info.path}/{entry.path}", tmp_path / "other.zip", "0" * 64)
    assert not (tmp_path / "other.zip").exists()


def test_run_ids_become_safe_unique_segments():
    a = run_path_segment("manual__2026-11-25T00:00:00.123+00:00")
    b = run_path_segment("manual__2026-11-25T00_00_00.123_00_00")
    assert ":" not in a and "+" not in a and "/" not in a
    assert a != b


def test_registry_root_forms(tmp_path):
    assert Registry.from_root(f"file://{tmp_path}/r").root == f"{tmp_path}/r"
    assert Registry.from_root(f"{tmp_path}/r").store.kind() == "local"
    with pytest.raises(RegistryError, match="absolute"):
        Registry.from_root("relative/registry")


def test_one_deployment_of_a_model_at_a_time(registry):
    registry.acquire_lock("m", "run-1")
    registry.acquire_lock("m", "run-1")  # a retry of the same run goes on
    with pytest.raises(RegistryError, match="m is being deployed by run run-1"):
        registry.acquire_lock("m", "run-2", wait=0.3, poll=0.1)
    registry.acquire_lock("other-model", "run-2", wait=0)  # other models are not held up
    assert registry.release_locks("run-2") == ["other-model"]
    assert registry.release_locks("run-1") == ["m"]
    registry.acquire_lock("m", "run-2", wait=0)
    assert registry.release_locks("run-2") == ["m"]


def test_a_stale_lock_is_broken(registry):
    registry.acquire_lock("m", "run-1")
    registry.acquire_lock("m", "run-2", wait=0, stale_after=-1)
    assert registry.release_locks("run-1") == []
    assert registry.release_locks("run-2") == ["m"]


# -- HDFS only: high availability and interrupted uploads --------------------------------------------------
def test_ha_namenodes_fail_over_to_the_active_one(tmp_path, monkeypatch):
    """WebHDFSHook tries each host of the connection: the standby on 127.0.0.2 answers StandbyException."""
    from hdfs import InsecureClient

    from model_governance_devstack.webhdfs import WebHDFSStandIn

    with WebHDFSStandIn(tmp_path / "hdfs", standby_hosts=("127.0.0.2",)) as hdfs:
        conn = {"conn_type": "webhdfs", "host": "127.0.0.2,127.0.0.1", "port": hdfs.port, "login": "hdfs"}
        monkeypatch.setenv("AIRFLOW_CONN_WEBHDFS_DEFAULT", json.dumps(conn))
        registry = Registry.from_root("hdfs:///model-registry")
        uploaded, info, doc = publish_run(registry, tmp_path, "manual__ha")
        assert uploaded == sum(e.size for e in doc.manifest) and info.url == "hdfs://127.0.0.2:8020/model-registry/rental-pricing-prediction/1.1"
        active = InsecureClient(f"http://127.0.0.1:{hdfs.port}", user="hdfs")
        assert MANIFEST_FILE in active.list(info.path)


def test_an_interrupted_upload_leaves_no_version_and_no_pending_files(tmp_path, monkeypatch):
    from hdfs import InsecureClient

    from model_governance_devstack.webhdfs import WebHDFSStandIn

    with WebHDFSStandIn(tmp_path / "hdfs") as hdfs:
        monkeypatch.setenv("AIRFLOW_CONN_WEBHDFS_DEFAULT", json.dumps({"conn_type": "webhdfs", "host": "127.0.0.1", "port": hdfs.port, "login": "hdfs"}))
        registry = Registry.from_root("hdfs:///model-registry")
        staged, doc = staged_document(tmp_path, "manual__broken")
        hdfs.break_upload_after(10_000)  # a connection drops mid-file, then the namenode refuses every write
        hdfs.fail_next(1000, 503, op="CREATE")
        with pytest.raises(RegistryError, match="upload of the staged model"):
            registry.upload_pending(doc.run_id, staged.folder, staged.manifest)
        hdfs.fail_next(0)
        client = InsecureClient(f"http://127.0.0.1:{hdfs.port}", user="hdfs")
        assert client.status(registry.pending_path(doc.run_id), strict=False) is None
        assert client.status(registry.version_path("rental-pricing-prediction", "1.1"), strict=False) is None
        with pytest.raises(RegistryError, match="run the fetch step again"):
            registry.publish(doc)
        # the retry of the step completes it
        registry.upload_pending(doc.run_id, staged.folder, staged.manifest)
        assert registry.publish(doc).uploaded_bytes == sum(e.size for e in staged.manifest)


# -- the lock while another run creates it (issue 12: what a real NameNode answers) ---------------------------
def test_an_empty_lock_is_being_written_not_stale(registry, monkeypatch):
    """A lock whose writer has not closed it reads empty on HDFS: it is held (waited for), never broken as
    stale; only one empty for longer than any create takes (its writer died) is broken."""
    import io

    from model_governance import registry as registry_module

    path = registry.lock_path("m")
    registry.store.write_file(path, io.BytesIO(b""), 0)
    with pytest.raises(RegistryError, match="m is being deployed by another run"):
        registry.acquire_lock("m", "run-2", wait=0.3, poll=0.1, stale_after=-1)
    assert registry.store.exists(path)
    monkeypatch.setattr(registry_module, "EMPTY_LOCK_GRACE", 0.2)
    registry.acquire_lock("m", "run-2", wait=5, poll=0.1)
    assert registry.release_locks("run-2") == ["m"]


class SlowCreate:
    """A WebHDFS CREATE (overwrite=false) whose body stalls: the file exists, empty, its lease held."""

    def __init__(self, base_url: str, path: str):
        import http.client
        from urllib.parse import urlsplit

        import requests

        answer = requests.put(f"{base_url}/webhdfs/v1{path}", params={"op": "CREATE", "overwrite": "false", "user.name": "hdfs"}, allow_redirects=False, timeout=30)
        assert answer.status_code == 307, answer.text
        location = urlsplit(answer.headers["Location"])
        self.conn = http.client.HTTPConnection(location.hostname, location.port, timeout=60)
        self.conn.putrequest("PUT", f"{location.path}?{location.query}")
        self.conn.putheader("Transfer-Encoding", "chunked")
        self.conn.putheader("Content-Type", "application/octet-stream")
        self.conn.endheaders()

    def send(self, data: bytes) -> None:
        self.conn.send(b"%x\r\n%s\r\n" % (len(data), data))

    def finish(self) -> int:
        self.conn.send(b"0\r\n\r\n")
        status = self.conn.getresponse().status
        self.conn.close()
        return status


def _namenode_url(registry) -> str:
    return registry.store.client.url.split(";")[0].rstrip("/")


def test_a_lock_another_run_is_creating_is_held_by_it(registry):
    """Two runs creating the same lock at once: the NameNode answers the second AlreadyBeingCreatedException
    (not FileAlreadyExists) while the first writes; the second waits for it, then sees who holds it."""
    if registry.store.kind() != "hdfs":
        pytest.skip("a WebHDFS lease")
    path = registry.lock_path("m")
    registry.store.makedirs(posixpath.dirname(path))
    writer = SlowCreate(_namenode_url(registry), path)
    try:
        writer.send(b'{"run_id": "run-1", ')
        deadline = time.monotonic() + 10
        while not registry.store.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert registry.store.list_files(posixpath.dirname(path)) == {"m.lock": 0}  # length 0 while written
        assert registry.store.create_exclusive(path, b'{"run_id": "run-2"}') is False
        with pytest.raises(RegistryError, match="m is being deployed by another run"):
            registry.acquire_lock("m", "run-2", wait=0.5, poll=0.1, stale_after=-1)
        writer.send(b'"since": %f}' % time.time())
    finally:
        assert writer.finish() == 201
    with pytest.raises(RegistryError, match="m is being deployed by run run-1"):
        registry.acquire_lock("m", "run-2", wait=0.2, poll=0.1)
    assert registry.release_locks("run-1") == ["m"]


def test_concurrent_creators_of_one_lock_end_with_one_holder(registry):
    import threading

    for round_ in range(3):
        runs = [f"run-{round_}-{i}" for i in range(4)]
        barrier, outcomes = threading.Barrier(len(runs)), {}

        def take(run_id):
            barrier.wait()
            try:
                registry.acquire_lock("m", run_id, wait=1.0, poll=0.1)
                outcomes[run_id] = "held"
            except RegistryError as exc:
                outcomes[run_id] = str(exc)

        threads = [threading.Thread(target=take, args=(run,)) for run in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        holders = [run for run, outcome in outcomes.items() if outcome == "held"]
        assert len(holders) == 1, outcomes
        assert all(re.search(r"m is being deployed by (run run-|another run)", o) for r, o in outcomes.items() if r not in holders), outcomes
        assert json.loads(registry.read_bytes(registry.lock_path("m")))["run_id"] == holders[0]
        assert registry.release_locks(holders[0]) == ["m"]


# -- a real HA pair (the session's real_hdfs_ha: nn0 on 127.0.0.1 active, nn1 on 127.0.0.2 standby) ----------
@pytest.fixture
def real_ha(real_hdfs_ha, monkeypatch):
    """The real HA pair with nn0 active, emptied and failed back after the test."""
    from tests.real_services import empty_hdfs

    if real_hdfs_ha.namenode_states != ["active", "standby"]:
        real_hdfs_ha.failback()
    yield real_hdfs_ha
    if real_hdfs_ha.namenode_states != ["active", "standby"]:
        real_hdfs_ha.failback()
    empty_hdfs(real_hdfs_ha)


def _use(monkeypatch, conn):
    monkeypatch.setenv("AIRFLOW_CONN_WEBHDFS_DEFAULT", json.dumps(conn))
    return Registry.from_root("hdfs:///model-registry")


def test_real_ha_with_the_standby_listed_first(real_ha, tmp_path, monkeypatch):
    conn = real_ha.connection()
    conn["host"] = "127.0.0.2,127.0.0.1"  # nn1, the standby, first: the hook's probe answers StandbyException
    registry = _use(monkeypatch, conn)
    uploaded, info, doc = publish_run(registry, tmp_path, "manual__ha")
    assert uploaded == sum(e.size for e in doc.manifest)
    assert info.url == "hdfs://ns1/model-registry/rental-pricing-prediction/1.1"
    registry.verify(info.path, doc.manifest)


def test_real_ha_fail_over_during_the_upload(real_ha, tmp_path, monkeypatch):
    """nn0 goes standby after the first file: the rest goes to nn1, which the store finds again."""
    registry = _use(monkeypatch, real_ha.connection())
    assert registry.store.client.url == f"http://127.0.0.1:{real_ha.http_port}"
    write_file, failed_over = registry.store.write_file, []

    def write_then_fail_over(path, stream, size):
        write_file(path, stream, size)
        if not failed_over:
            failed_over.append(real_ha.failover())

    monkeypatch.setattr(registry.store, "write_file", write_then_fail_over)
    uploaded, info, doc = publish_run(registry, tmp_path, "manual__failover")
    assert failed_over and real_ha.namenode_states == ["standby", "active"]
    assert registry.store.client.url == f"http://127.0.0.2:{real_ha.http_port}"
    assert uploaded == sum(e.size for e in doc.manifest)
    registry.verify(info.path, doc.manifest)  # every byte, read back from nn1
    assert not registry.store.exists(registry.pending_path("manual__failover"))
