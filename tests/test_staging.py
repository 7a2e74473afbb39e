"""Fetching a local staged folder: layout checks, path safety, manifests, and source resolution."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from model_governance.exceptions import BundleError, MetadataError, StagingError
from model_governance.staging import build_manifest, redact_url, resolve_source, sha256_file, stage
from model_governance.bundle import validate_mleap_bundle

from tests.helpers import EXAMPLE_STAGING


@pytest.fixture
def staged(tmp_path):
    folder = tmp_path / "src"
    shutil.copytree(EXAMPLE_STAGING, folder)
    return folder


def test_example_stages_with_manifest(staged, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    result = stage(str(staged), work)
    assert result.metadata.name == "rental pricing prediction"
    assert result.executable == "executable/airbnb.model.lr.zip"
    paths = [e.path for e in result.manifest]
    assert paths == sorted(paths)
    assert {"modelMetadata.txt", "README.md", "code/train_model.py", "trainingdata/listings_sample.csv", "executable/airbnb.model.lr.zip"} <= set(paths)
    for entry in result.manifest:
        assert entry.sha256 == sha256_file(staged / entry.path)
        assert entry.size == (staged / entry.path).stat().st_size
    assert result.source.kind == "local"
    assert result.source.revision.startswith("sha256:")
    # the snapshot is a copy in the working folder, not the source
    assert result.folder.is_relative_to(work)


def test_revision_changes_with_content(staged, tmp_path):
    (tmp_path / "w1").mkdir()
    (tmp_path / "w2").mkdir()
    first = stage(str(staged), tmp_path / "w1").source.revision
    (staged / "README.md").write_text("changed")
    assert stage(str(staged), tmp_path / "w2").source.revision != first


def test_relative_staging_resolves_against_root_not_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_source("m1", staging_root=tmp_path / "root") == str(tmp_path / "root" / "m1")
    monkeypatch.setenv("MODEL_GOVERNANCE_STAGING_ROOT", "/srv/staging")
    assert resolve_source("m1") == "/srv/staging/m1"
    assert resolve_source("/abs/m1") == "/abs/m1"
    with pytest.raises(StagingError, match="empty"):
        resolve_source("  ")


def test_credentials_are_removed_from_urls():
    assert redact_url("https://user:s3cret@git.example.com:8443/o/r.zip?x=1") == "https://git.example.com:8443/o/r.zip?x=1"
    assert redact_url("https://git.example.com/o/r") == "https://git.example.com/o/r"
    assert redact_url("/local/path") == "/local/path"


def test_missing_folder(tmp_path):
    with pytest.raises(StagingError, match="does not exist"):
        stage(str(tmp_path / "nope"), tmp_path)


def test_missing_metadata(staged, tmp_path):
    (staged / "modelMetadata.txt").unlink()
    with pytest.raises(StagingError, match="no modelMetadata.txt, so not a staged model"):  # refused before copying
        stage(str(staged), tmp_path)


def test_missing_readme(staged, tmp_path):
    (staged / "README.md").unlink()
    with pytest.raises(StagingError, match="README.md"):
        stage(str(staged), tmp_path)


def test_missing_code_and_data_are_warnings(staged, tmp_path, caplog):
    shutil.rmtree(staged / "code")
    shutil.rmtree(staged / "trainingdata")
    stage(str(staged), tmp_path)
    assert "no code/ folder" in caplog.text and "no trainingdata/ folder" in caplog.text


def test_two_model_files(staged, tmp_path):
    shutil.copy(staged / "executable/airbnb.model.lr.zip", staged / "executable/other.zip")
    with pytest.raises(StagingError, match=r"exactly one serialized model, found 2 \(airbnb.model.lr.zip, other.zip\)"):
        stage(str(staged), tmp_path)


def test_model_executable_picks_one(staged, tmp_path):
    shutil.copy(staged / "executable/airbnb.model.lr.zip", staged / "executable/other.zip")
    with (staged / "modelMetadata.txt").open("a") as handle:
        handle.write("model.executable = other.zip\n")
    assert stage(str(staged), tmp_path).executable == "executable/other.zip"


def test_model_executable_must_exist(staged, tmp_path):
    with (staged / "modelMetadata.txt").open("a") as handle:
        handle.write("model.executable = missing.zip\n")
    with pytest.raises(StagingError, match="model.executable 'missing.zip' is not in executable/"):
        stage(str(staged), tmp_path)


def test_no_model_file(staged, tmp_path):
    (staged / "executable/airbnb.model.lr.zip").unlink()
    with pytest.raises(StagingError, match="exactly one serialized model, found 0"):
        stage(str(staged), tmp_path)


def test_no_executable_folder(staged, tmp_path):
    shutil.rmtree(staged / "executable")
    with pytest.raises(StagingError, match="no executable/ folder"):
        stage(str(staged), tmp_path)


def test_link_out_of_the_folder_is_refused(staged, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy")
    os.symlink(secret, staged / "code" / "leak.txt")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(StagingError, match="leak.txt is a link to .*outside the staged folder"):
        stage(str(staged), work)


def test_link_inside_the_folder_is_copied_as_a_file(staged, tmp_path):
    os.symlink(staged / "README.md", staged / "code" / "README-link.md")
    result = stage(str(staged), tmp_path)
    copied = result.folder / "code" / "README-link.md"
    assert copied.is_file() and not copied.is_symlink()


def test_fifo_is_refused(staged, tmp_path):
    os.mkfifo(staged / "trainingdata" / "pipe")
    with pytest.raises(StagingError, match="pipe is not a regular file"):
        stage(str(staged), tmp_path)


def test_manifest_skips_git_metadata(staged, tmp_path):
    (staged / ".git").mkdir()
    (staged / ".git" / "HEAD").write_text("ref")
    result = stage(str(staged), tmp_path)
    assert not any(e.path.startswith(".git") for e in result.manifest)
    assert build_manifest(result.folder) == result.manifest


def test_the_example_bundle_is_valid():
    assert validate_mleap_bundle(EXAMPLE_STAGING / "executable/airbnb.model.lr.zip").format == "json"


@pytest.mark.parametrize(
    "entries, refusal",
    [
        (None, "not a readable zip"),
        ({"root/model.json": "{}"}, "no bundle.json"),
        ({"bundle.json": '{"uid":"u","name":"n","format":"json","version":"0.8","timestamp":"t"}'}, "root/model.json is missing"),
        ({"bundle.json": '{"name":"n","format":"json","version":"0.8","timestamp":"t"}'}, "bundle.json lacks uid"),
    ],
    ids=["not-a-zip", "no-bundle-json", "no-root-model", "no-uid"],
)
def test_a_broken_bundle_is_refused_saying_why(tmp_path, entries, refusal):
    import zipfile

    bundle = tmp_path / "model.zip"
    if entries is None:
        bundle.write_text("hello")
    else:
        with zipfile.ZipFile(bundle, "w") as archive:
            for name, text in entries.items():
                archive.writestr(name, text)
    with pytest.raises(BundleError, match=refusal):
        validate_mleap_bundle(bundle)


def test_no_product_default_points_into_the_checkout(monkeypatch):
    """Relative staging values resolve under a system path unless configured; the batch DAG's datasets are
    the run's own (no example paths, no /tmp)."""
    from model_governance.staging import DEFAULT_STAGING_ROOT, default_staging_root
    from tests.helpers import PROJECT, load_dag

    monkeypatch.delenv("MODEL_GOVERNANCE_STAGING_ROOT", raising=False)
    assert default_staging_root() == DEFAULT_STAGING_ROOT == Path("/srv/model-governance/staging")
    assert resolve_source("m1") == "/srv/model-governance/staging/m1"
    params = load_dag("model_batch_deployment").params
    for name in ("inputs", "output"):
        assert not params.get_param(name).has_value, name
    for dag_id in ("model_deployment", "model_batch_deployment"):
        for name, value in load_dag(dag_id).params.dump().items():
            assert str(PROJECT) not in str(value) and "/tmp" not in str(value), (dag_id, name, value)
