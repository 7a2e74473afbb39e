"""Staging sources: git repositories (real git, local repos), archives over HTTP (with a token), safe extraction."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from model_governance_devstack.base import StandInHandler, StandInServer
from model_governance.exceptions import StagingError
from model_governance.staging import archive_url, parse_git_source, safe_extract, stage

from tests.helpers import EXAMPLE_STAGING

TOKEN = "ghp_test-token-123"


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A git repository holding the example at tag v1.1, then a commit that changes the README on main."""
    path = tmp_path / "model-repo"
    shutil.copytree(EXAMPLE_STAGING, path)
    git("init", "--quiet", "--initial-branch=main", cwd=path)
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "add", ".", cwd=path)
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-m", "model 1.1", cwd=path)
    git("tag", "v1.1", cwd=path)
    first = git("rev-parse", "HEAD", cwd=path)
    (path / "README.md").write_text("# newer README\n")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-am", "newer readme", cwd=path)
    git("checkout", "--quiet", "-b", "experiment", cwd=path)
    (path / "README.md").write_text("# experiment\n")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-am", "experiment", cwd=path)
    git("checkout", "--quiet", "main", cwd=path)
    return path, first, git("rev-parse", "main", cwd=path), git("rev-parse", "experiment", cwd=path)


@pytest.mark.parametrize("ref", ["tag", "sha", "main", "branch", "default"])
def test_git_source_checks_out_the_ref_and_records_the_commit(repo, tmp_path, ref):
    path, first, main, experiment = repo
    suffix, sha, readme = {
        "tag": ("@v1.1", first, (EXAMPLE_STAGING / "README.md").read_text()),
        "sha": (f"@{first}", first, (EXAMPLE_STAGING / "README.md").read_text()),
        "main": ("@main", main, "# newer README\n"),
        "branch": ("@experiment", experiment, "# experiment\n"),
        "default": ("", main, "# newer README\n"),
    }[ref]
    work = tmp_path / "work"
    work.mkdir()
    staged = stage(f"git+file://{path}{suffix}", work)
    assert staged.source.kind == "git" and staged.source.revision == sha
    assert (staged.folder / "README.md").read_text() == readme
    assert not (staged.folder / ".git").exists()
    assert not any(e.path.startswith(".git") for e in staged.manifest)


def test_git_unknown_ref_is_a_clear_error(repo, tmp_path):
    path, *_ = repo
    with pytest.raises(StagingError, match=r"git fetch of file://.*@no-such-tag failed"):
        stage(f"git+file://{path}@no-such-tag", tmp_path)


def test_git_source_parsing():
    assert parse_git_source("git+https://git.example.com/team/model.git@v1.1") == ("https://git.example.com/team/model.git", "v1.1")
    assert parse_git_source("git+https://git.example.com/team/model.git") == ("https://git.example.com/team/model.git", None)
    assert parse_git_source("git+file:///srv/repo@abc123") == ("file:///srv/repo", "abc123")


def test_shorthand_sources_are_not_taken_for_relative_folders():
    from model_governance.staging import resolve_source

    for source in ("github:owner/model@v1", "gitlab:group/model@main", "git+ssh://git@host/model.git@v2"):
        assert resolve_source(source, Path("/staging-root")) == source
    assert resolve_source("model", Path("/staging-root")) == "/staging-root/model"


def test_archive_url_shorthands():
    assert archive_url("github:gregkeysquest/Staging-ModelDeploy-v1.0@master") == "https://github.com/gregkeysquest/Staging-ModelDeploy-v1.0/zipball/master"
    assert archive_url("gitlab:team/model@v1") == "https://gitlab.com/team/model/-/archive/v1/model-v1.zip"
    assert archive_url("https://example.com/m.tar.gz") == "https://example.com/m.tar.gz"


# -- archives over HTTP ------------------------------------------------------------------------------------
def zipball(top="owner-model-1a2b3c4"):
    """The example as GitHub's zipball lays it out: one top folder named after the commit."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(EXAMPLE_STAGING.rglob("*")):
            if path.is_file():
                archive.write(path, f"{top}/{path.relative_to(EXAMPLE_STAGING)}")
    return buffer.getvalue()


class ArchiveHandler(StandInHandler):
    """Like GitHub: `/{owner}/{repo}/zipball/{ref}` redirects to a codeload URL; private repos answer 404 without a token."""

    routes = [("GET", r"/(?P<owner>[^/]+)/(?P<repo>[^/]+)/zipball/(?P<ref>[^/]+)", "zipball"), ("GET", r"/codeload/(?P<name>.+)", "codeload")]

    def zipball(self, owner, repo, ref):
        if repo == "private" and self.headers.get("Authorization") != f"token {TOKEN}":
            self.send_json(404, {"message": "Not Found"})
            return
        self.send_bytes(302, b"", None, {"Location": f"/codeload/{owner}-{repo}-{ref}.zip"})

    def codeload(self, name):
        self.send_bytes(200, self.server.archives[name], "application/zip")


@pytest.fixture
def archive_server():
    server = StandInServer(ArchiveHandler)
    server.archives = {"owner-model-v1.zip": zipball(), "owner-private-v1.zip": zipball("owner-private-9f8e7d")}
    with server:
        yield server


def test_archive_source_is_fetched_extracted_and_recorded(archive_server, tmp_path):
    import hashlib

    staged = stage(f"{archive_server.url}/owner/model/zipball/v1", tmp_path)
    assert staged.source.kind == "archive"
    assert staged.source.revision == "sha256:" + hashlib.sha256(archive_server.archives["owner-model-v1.zip"]).hexdigest()
    assert staged.metadata.name == "rental pricing prediction"
    assert {e.path for e in staged.manifest} == {p.relative_to(EXAMPLE_STAGING).as_posix() for p in EXAMPLE_STAGING.rglob("*") if p.is_file()}


def test_private_archive_needs_the_connection_token(archive_server, tmp_path, monkeypatch):
    url = f"{archive_server.url}/owner/private/zipball/v1"
    monkeypatch.delenv("AIRFLOW_CONN_STAGING_DEFAULT", raising=False)
    with pytest.raises(StagingError, match=r"answered 404"):
        stage(url, tmp_path)
    # the token goes only over https to the host the connection names (tests/test_security.py): not here
    monkeypatch.setenv("AIRFLOW_CONN_STAGING_DEFAULT", json.dumps({"conn_type": "http", "host": "127.0.0.1", "password": TOKEN}))
    with pytest.raises(StagingError, match=r"answered 404"):
        stage(url, tmp_path)


def test_credentials_in_the_url_are_refused(archive_server, tmp_path):
    url = archive_server.url.replace("http://", "http://user:pw-secret@") + "/owner/model/zipball/v1"
    with pytest.raises(StagingError, match="credentials in the URL are refused") as err:
        stage(url, tmp_path)
    assert "pw-secret" not in str(err.value)


# -- unsafe archives ---------------------------------------------------------------------------------------
def make_zip(path, entries):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode:
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return path


def make_tar(path, members):
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def write(path, data):
    path.write_bytes(data)
    return path


def tar_member(name, kind=tarfile.REGTYPE, data=b"x", linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.linkname = linkname
    return info, data if kind == tarfile.REGTYPE else None


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda p: make_zip(p / "a.zip", [("../evil.txt", b"x", 0)]), "unsafe entry '../evil.txt'"),
        (lambda p: make_zip(p / "a.zip", [("/etc/evil.txt", b"x", 0)]), "unsafe entry '/etc/evil.txt'"),
        (lambda p: make_zip(p / "a.zip", [("top/a/../../../evil.txt", b"x", 0)]), "unsafe entry"),
        (lambda p: make_zip(p / "a.zip", [("top/link", b"/etc/passwd", 0o120777)]), "is a symbolic link"),
        (lambda p: make_tar(p / "a.tgz", [tar_member("top/link", tarfile.SYMTYPE, linkname="/etc/passwd")]), "is a link"),
        (lambda p: make_tar(p / "a.tgz", [tar_member("top/hard", tarfile.LNKTYPE, linkname="/etc/passwd")]), "is a link"),
        (lambda p: make_tar(p / "a.tgz", [tar_member("top/dev", tarfile.CHRTYPE)]), "special file"),
        (lambda p: make_tar(p / "a.tgz", [tar_member("top/fifo", tarfile.FIFOTYPE)]), "special file"),
        (lambda p: make_tar(p / "a.tgz", [tar_member("../../evil.txt")]), "unsafe entry"),
        (lambda p: write(p / "a.zip", b"not an archive"), "not a zip or tar"),
    ],
)
def test_unsafe_archives_are_refused_and_write_nothing_outside(tmp_path, build, message):
    source = tmp_path / "in"
    source.mkdir()
    archive = build(source)
    work = tmp_path / "work"
    before = set(tmp_path.rglob("*"))
    with pytest.raises(StagingError, match=message):
        safe_extract(archive, work / "staged")
    outside = {p for p in set(tmp_path.rglob("*")) - before if not p.is_relative_to(work)}
    assert outside == set()
    assert not (tmp_path / "evil.txt").exists()


def test_zip_bomb_is_stopped_while_writing(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", [("top/zeros.bin", b"\0" * 5_000_000, 0)])
    assert archive.stat().st_size < 100_000  # highly compressed
    with pytest.raises(StagingError, match="expands past 1000000 bytes"):
        safe_extract(archive, tmp_path / "work", max_bytes=1_000_000)


def test_too_many_files(tmp_path):
    archive = make_zip(tmp_path / "many.zip", [(f"top/f{i}", b"x", 0) for i in range(30)])
    with pytest.raises(StagingError, match="more than 20 files"):
        safe_extract(archive, tmp_path / "work", max_files=20)


def test_registry_manifest_name_is_reserved(tmp_path):
    staged = tmp_path / "s"
    shutil.copytree(EXAMPLE_STAGING, staged)
    (staged / "MANIFEST.json").write_text("{}")
    with pytest.raises(StagingError, match="registry's own manifest"):
        stage(str(staged), tmp_path)
