"""Security: each class of defect of issue 11 with a test that would have caught it.

Command injection through every value that reaches git; where the staging credentials go; a link swapped
in while a staged folder is copied; two model names sharing a registry folder; locks left behind by any
failure of the fetch step; versions that never served.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from model_governance import staging
from model_governance.exceptions import InvalidInputError, RegistryConflictError, StagingError
from model_governance.metadata import model_slug, slugify
from model_governance.registry import Registry
from model_governance.staging import Credentials, git_environment, stage

from tests.helpers import EXAMPLE_STAGING, stage_variant

TOKEN = "tok-3c1f-secret"


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "model-repo"
    shutil.copytree(EXAMPLE_STAGING, path)
    git("init", "--quiet", "--initial-branch=main", cwd=path)
    git("add", ".", cwd=path)
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-m", "model", cwd=path)
    return path


# -- 1. command injection through git ------------------------------------------------------------------------
def injections(repo: Path, marker: Path) -> dict[str, str]:
    """Staging values that would run `touch <marker>` if a value reached git as an option or a transport."""
    cmd = f"touch {marker}"
    return {
        "ref as --upload-pack": f"git+file://{repo}@--upload-pack={cmd};false",
        "ref as -u (short upload-pack)": f"git+file://{repo}@-u{cmd};false",
        "ref as --output": f"git+file://{repo}@--output={marker}",
        "ref as checkout --orphan": f"git+file://{repo}@--orphan={marker.name}",
        "ref with shell metacharacters": f"git+file://{repo}@v1;{cmd}",
        "ref with a space": f"git+file://{repo}@main {cmd}",
        "ref as reflog @{-1}": f"git+file://{repo}@@{{-1}}",
        "URL as an option": f"git+--upload-pack={cmd}",
        "ext:: transport": f"git+ext::sh -c {cmd.replace(' ', '% ')}",
        "ssh transport with ProxyCommand": f"git+ssh://-oProxyCommand={cmd.replace(' ', '%20')}/x",
        "https host as an option": "git+https://-oProxyCommand=x/repo.git@main",
        "file path as an option": "git+file:///--upload-pack=x@main",
        "fd:: transport": "git+fd::17",
        "http (not https) transport": f"git+http://127.0.0.1:9/{marker.name}.git",
    }


def test_no_git_argument_becomes_an_option_or_a_command(repo, tmp_path):
    marker = tmp_path / "pwned"
    for label, value in injections(repo, marker).items():
        work = tmp_path / f"work-{abs(hash(label))}"
        work.mkdir()
        with pytest.raises(StagingError) as err:
            stage(value, work)
        assert not marker.exists(), label
        assert "\n" not in str(err.value), label
    assert not marker.exists()


def test_end_of_options_holds_even_without_the_ref_check(repo, tmp_path, monkeypatch):
    """Defence in depth: with the ref check switched off, git itself still takes the ref as a ref."""
    monkeypatch.setattr(staging, "check_git_ref", lambda ref, shown: None)
    marker = tmp_path / "pwned"
    for ref in (f"--upload-pack=touch {marker};false", f"-u touch {marker};false", f"--output={marker}"):
        work = tmp_path / f"w{abs(hash(ref))}"
        work.mkdir()
        with pytest.raises(StagingError):
            stage(f"git+file://{repo}@{ref}", work)
        assert not marker.exists(), ref


@pytest.mark.parametrize("ref", ["main", "v1.1", "release/2026-11", "feature_x+y", "a" * 40, "0123abc", "refs/heads/main"])
def test_ordinary_refs_are_accepted(ref):
    staging.check_git_ref(ref, "x")


@pytest.mark.parametrize("ref", ["-x", "a..b", "a/.b", "a.lock", "a/", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b", "@", "x@{1}", "a//b", ".a"])
def test_refs_git_would_refuse_are_refused(ref):
    with pytest.raises(StagingError, match="not a branch, tag or commit id"):
        staging.check_git_ref(ref, "x")


def test_git_environment_allows_only_https_and_file():
    env = git_environment("https://git.example.com/a.git", Credentials())
    assert env["GIT_ALLOW_PROTOCOL"] == "https:file" and env["GIT_CONFIG_NOSYSTEM"] == "1"
    config = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))}
    assert config["protocol.allow"] == "never" and config["http.followRedirects"] == "false"
    assert not any("extraHeader" in key for key in config)


# -- 2. where the staging credentials go ------------------------------------------------------------------------
def credentials(*hosts: str) -> Credentials:
    return Credentials(password=TOKEN, token=TOKEN, hosts=hosts, conn_id="staging_default")


def test_git_credentials_only_to_the_connection_host_over_https():
    def header(url: str, creds: Credentials) -> list[str]:
        env = git_environment(url, creds)
        return [env[f"GIT_CONFIG_KEY_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"])) if "extraHeader" in env[f"GIT_CONFIG_KEY_{i}"]]

    assert header("https://git.example.com/team/m.git", credentials("git.example.com")) == ["http.https://git.example.com/team/m.git.extraHeader"]
    assert header("https://evil.example.net/team/m.git", credentials("git.example.com")) == []
    assert header("file:///srv/m.git", credentials("git.example.com")) == []
    assert header("https://git.example.com/m.git", Credentials(password=TOKEN)) == []  # a connection naming no host


class Recorder(BaseHTTPRequestHandler):
    """Answers archives; records each request's credential headers; `/hop` redirects to the other server."""

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization"), self.headers.get("PRIVATE-TOKEN")))
        if self.path.startswith("/hop"):
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.server.archive
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def zipped_example() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in EXAMPLE_STAGING.rglob("*"):
            if path.is_file():
                archive.write(path, f"top/{path.relative_to(EXAMPLE_STAGING).as_posix()}")
    return buffer.getvalue()


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, made with `cryptography` (an Airflow dependency)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def servers(tmp_path, monkeypatch):
    """An HTTPS server and a plain HTTP one on loopback, both recording what they were sent."""
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    started = []
    for tls in (True, False):
        server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
        server.seen, server.archive, server.redirect_to = [], zipped_example(), ""
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
    yield started
    for server in started:
        server.shutdown()


def test_archive_credentials_go_only_to_the_named_host_over_https(servers, tmp_path):
    secure, plain = servers
    https = f"https://127.0.0.1:{secure.server_address[1]}"
    http = f"http://127.0.0.1:{plain.server_address[1]}"
    # the named host, over https: sent
    staging.download(f"{https}/a.zip", tmp_path / "a", credentials("127.0.0.1"))
    assert secure.seen[-1][1] == f"token {TOKEN}"
    # another host (localhost is another name for the same machine: not the host the connection names)
    staging.download(f"https://localhost:{secure.server_address[1]}/b.zip", tmp_path / "b", credentials("127.0.0.1"))
    assert secure.seen[-1][1:] == (None, None)
    # the named host over plain http: never
    staging.download(f"{http}/c.zip", tmp_path / "c", credentials("127.0.0.1"))
    assert plain.seen[-1][1:] == (None, None)
    # a redirect from the named host to another host: followed without the credentials
    secure.redirect_to = f"https://localhost:{secure.server_address[1]}/landed.zip"
    staging.download(f"{https}/hop", tmp_path / "d", credentials("127.0.0.1"))
    assert secure.seen[-2][0] == "/hop" and secure.seen[-2][1] == f"token {TOKEN}"
    assert secure.seen[-1][0] == "/landed.zip" and secure.seen[-1][1:] == (None, None)
    # ... and a redirect to plain http on the same host: without them too
    secure.redirect_to = f"{http}/down.zip"
    staging.download(f"{https}/hop", tmp_path / "e", credentials("127.0.0.1"))
    assert plain.seen[-1][0] == "/down.zip" and plain.seen[-1][1:] == (None, None)
    # a GitLab-style token header follows the same rule
    gitlab = Credentials(token=TOKEN, hosts=("127.0.0.1",))
    secure.redirect_to = f"https://localhost:{secure.server_address[1]}/gl.zip"
    staging.download(f"{https}/hop", tmp_path / "f", gitlab)
    assert all(TOKEN not in str(seen) for seen in secure.seen[-1:])


def test_connection_host_comes_from_the_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_STAGING_DEFAULT", json.dumps(
        {"conn_type": "http", "host": "git.example.com", "password": TOKEN, "extra": {"hosts": ["codeload.example.com"]}}))
    creds = Credentials.from_connection("staging_default")
    assert creds.hosts == ("git.example.com", "codeload.example.com")
    assert creds.allowed("https://git.example.com/x.zip") and creds.allowed("https://codeload.example.com/y")
    assert not creds.allowed("http://git.example.com/x.zip") and not creds.allowed("https://git.example.com.evil.net/x")


@pytest.mark.parametrize("value", [
    "https://user:pw@example.com/m.zip", "https://tok@example.com/m.zip",
    "git+https://user:pw@git.example.com/m.git@v1", "git+https://ghp_xyz@github.com/a/b.git",
])
def test_credentials_inside_the_staging_value_are_refused(value, tmp_path):
    with pytest.raises(StagingError, match="credentials in the URL are refused") as err:
        stage(value, tmp_path)
    assert "pw" not in str(err.value).replace("password", "") and "ghp_xyz" not in str(err.value)


def test_the_trigger_form_refuses_credentials_in_urls():
    from airflow.sdk.definitions.param import ParamsDict
    from model_governance.params import staging_param

    params = ParamsDict({"staging": staging_param("rental-pricing-prediction")})
    for ok in ("rental-pricing-prediction", "/srv/m", "git+https://git.example.com/a.git@v1", "github:a/b@v1",
               "https://example.com/a@b.zip"):
        params["staging"] = ok
        params.validate()
    for bad in ("https://u:p@example.com/a.zip", "git+https://tok@git.example.com/a.git@v1"):
        with pytest.raises(Exception, match="staging"):
            params["staging"] = bad
            params.validate()


# -- 3. a link swapped in while the staged folder is copied -------------------------------------------------
@pytest.fixture
def staged(tmp_path: Path) -> Path:
    folder = tmp_path / "staged"
    shutil.copytree(EXAMPLE_STAGING, folder)
    return folder


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir()
    path.write_text("SECRET-OUTSIDE-THE-STAGED-FOLDER")
    return path


def swap_after_inspection(monkeypatch, swap) -> None:
    inspect = staging._inspect_tree

    def inspect_then_swap(*args):
        entries = inspect(*args)
        swap()
        return entries

    monkeypatch.setattr(staging, "_inspect_tree", inspect_then_swap)


def leaked(work: Path) -> bool:
    return any(b"SECRET-OUTSIDE" in p.read_bytes() for p in work.rglob("*") if p.is_file() and not p.is_symlink())


def swap_file_for_link(staged: Path, secret: Path) -> None:
    (staged / "code" / "train_model.py").unlink()
    os.symlink(secret, staged / "code" / "train_model.py")


def swap_folder_for_link(staged: Path, secret: Path) -> None:
    shutil.rmtree(staged / "code")
    os.symlink(secret.parent, staged / "code")
    (secret.parent / "train_model.py").write_text("SECRET-OUTSIDE too")


@pytest.mark.parametrize(
    "swap, refusal",
    [(swap_file_for_link, "train_model.py"), (swap_folder_for_link, "outside the staged folder|changed while")],
    ids=["file", "folder"],
)
def test_a_path_swapped_for_a_link_during_the_copy_is_refused(staged, secret, tmp_path, monkeypatch, swap, refusal):
    swap_after_inspection(monkeypatch, lambda: swap(staged, secret))
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(StagingError, match=refusal):
        stage(str(staged), work)
    assert not leaked(work)


def test_an_in_folder_link_retargeted_outside_during_the_copy_reads_nothing_outside(staged, secret, tmp_path, monkeypatch):
    link = staged / "code" / "readme-link.md"
    os.symlink("../README.md", link)

    def swap():
        link.unlink()
        os.symlink(secret, link)

    swap_after_inspection(monkeypatch, swap)
    work = tmp_path / "work"
    work.mkdir()
    result = stage(str(staged), work)  # the copy reads the inspected target, not whatever the link says now
    assert (result.folder / "code" / "readme-link.md").read_bytes() == (staged / "README.md").read_bytes()
    assert not leaked(work)


def test_a_file_replaced_by_another_file_during_the_copy_is_refused(staged, tmp_path, monkeypatch):
    target = staged / "README.md"

    def swap():
        replacement = staged / "README.new"
        replacement.write_text("other content")
        os.replace(replacement, target)

    swap_after_inspection(monkeypatch, swap)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(StagingError, match="README.md changed while it was being copied"):
        stage(str(staged), work)


@pytest.mark.parametrize("kind", ["dangling", "loop", "absolute outside", "relative outside"])
def test_bad_links_are_clear_input_errors(staged, secret, tmp_path, kind):
    link = staged / "trainingdata" / "extra.csv"
    target = {"dangling": "missing.csv", "loop": "extra.csv", "absolute outside": str(secret),
              "relative outside": "../../outside/secret.txt"}[kind]
    os.symlink(target, link)
    with pytest.raises(StagingError, match="extra.csv") as err:
        stage(str(staged), tmp_path / "w")
    assert str(staged) in str(err.value) and "model-governance-" not in str(err.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file of another user needs root")
def test_hard_links_to_another_users_file_are_refused(staged, secret, tmp_path):
    os.chown(secret, 4242, 4242)
    os.link(secret, staged / "trainingdata" / "hard.csv")
    with pytest.raises(StagingError, match="hard link to a file of another user"):
        stage(str(staged), tmp_path / "w")


def test_hard_links_to_the_owners_own_files_are_copied(staged, tmp_path):
    os.link(staged / "README.md", staged / "code" / "README-copy.md")
    result = stage(str(staged), tmp_path / "w")
    assert (result.folder / "code" / "README-copy.md").read_bytes() == (staged / "README.md").read_bytes()


def test_a_big_folder_that_is_not_a_staged_model_is_not_copied(tmp_path, monkeypatch):
    folder = tmp_path / "home"
    folder.mkdir()
    (folder / "big.bin").write_bytes(b"x" * 4096)
    copied = []
    monkeypatch.setattr(staging, "_copy_entry", lambda *a: copied.append(a))
    with pytest.raises(StagingError, match="no modelMetadata.txt, so not a staged model"):
        stage(str(folder), tmp_path / "w")
    assert copied == []


def test_folder_limits_are_checked_before_copying(staged, tmp_path, monkeypatch):
    monkeypatch.setattr(staging, "MAX_ARCHIVE_FILES", 3)
    copied = []
    monkeypatch.setattr(staging, "_copy_entry", lambda *a: copied.append(a))
    with pytest.raises(StagingError, match="more than 3 files"):
        stage(str(staged), tmp_path / "w")
    assert copied == []


# -- 4. model identity in the registry ------------------------------------------------------------------------
NAMES = ["rental pricing prediction", "Rental Pricing Prediction", "rental-pricing-prediction", "rental_pricing_prediction",
         "Prix été", "Prix ete", "prix ete", "PRIX ÉTÉ", "Prix e\u0301te\u0301 (decomposed)", "模型", "模形", "Модель", "модель",
         "نموذج", "a b", "a-b", "a--b", "a  b", "ab", "---x", "x" * 300]


def test_registry_slugs_are_injective_and_readable():
    exact = {n for n in NAMES}
    slugs = {model_slug(n) for n in exact}
    assert len(slugs) == len(exact)
    assert model_slug("rental pricing prediction") == "rental-pricing-prediction"
    assert model_slug("Prix été").startswith("prix-ete--") and model_slug("模型").startswith("model--")
    assert model_slug("Prix e\u0301te\u0301") == model_slug("Prix été")  # the same name in NFD is the same model
    assert all(len(s) <= 80 and s.isascii() and "/" not in s and not s.startswith(("-", ".")) for s in slugs)
    assert slugify("Prix été") == "prix-ete"


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry.from_root(str(tmp_path / "registry"))


def publish(registry: Registry, tmp_path: Path, name: str, version: str = "1.0", force: bool = False, readme: str | None = None,
            run: str = "run"):
    from model_governance.metadata import DeploymentDocument

    folder = stage_variant(tmp_path / f"src-{abs(hash((name, readme, run)))}", name=name, version=version)
    if readme is not None:
        (folder / "README.md").write_text(readme)
    work = tmp_path / f"work-{abs(hash((name, readme, run)))}"
    work.mkdir()
    staged = stage(str(folder), work)
    doc = DeploymentDocument(model=staged.metadata, source=staged.source, manifest=staged.manifest, executable=staged.executable,
                             dag_id="model_deployment", run_id=run)
    if not registry.already_published(staged.metadata, staged.manifest, force):
        registry.upload_pending(run, staged.folder, staged.manifest)
    return registry.publish(doc, force=force), doc


def test_names_that_slugified_alike_get_their_own_folders(registry, tmp_path):
    first, _ = publish(registry, tmp_path, "Prix été")
    second, _ = publish(registry, tmp_path, "Prix ete", readme="# another model\n")
    third, _ = publish(registry, tmp_path, "模型", readme="# a third\n")
    assert len({first.path, second.path, third.path}) == 3
    publish(registry, tmp_path, "Prix ete", readme="# changed\n", force=True, run="r2")
    manifest = json.loads(Path(first.path, "MANIFEST.json").read_text())
    assert manifest["model"]["name"] == "Prix été"  # the other model's version is untouched
    assert (Path(first.path) / "README.md").read_text() == (EXAMPLE_STAGING / "README.md").read_text()


def test_a_folder_holding_another_model_is_never_written(registry, tmp_path, monkeypatch):
    """Even if two names met in one folder (a hash collision), the recorded exact name stops the write."""
    first, _ = publish(registry, tmp_path, "model one")
    monkeypatch.setattr("model_governance.metadata.model_slug", lambda name: "model-one")
    for force in (False, True):
        with pytest.raises(RegistryConflictError, match="holds model 'model one', not 'Model One'"):
            publish(registry, tmp_path, "Model One", readme=f"# other {force}\n", force=force, run=f"r{force}")
    assert json.loads(Path(first.path, "MANIFEST.json").read_text())["model"]["name"] == "model one"


# -- 6. versions that never served ----------------------------------------------------------------------------
def test_a_version_that_never_served_is_replaced_and_a_served_one_is_not(registry, tmp_path, caplog):
    publish(registry, tmp_path, "churn model", readme="# first\n", run="r1")
    info, doc = publish(registry, tmp_path, "churn model", readme="# second\n", run="r2")  # never served: replaced
    assert "never served: replacing it" in caplog.text
    assert (Path(info.path) / "README.md").read_text() == "# second\n"
    registry.mark_served(doc, "http://serving/transform")
    with pytest.raises(RegistryConflictError, match="which served, with different content"):
        publish(registry, tmp_path, "churn model", readme="# third\n", run="r3")
    info, _ = publish(registry, tmp_path, "churn model", readme="# third\n", force=True, run="r4")
    assert (Path(info.path) / "README.md").read_text() == "# third\n"
    assert not Path(registry.served_marker(doc.model.slug, "1.0")).exists()  # the new content has not served yet


def test_versions_from_before_served_markers_count_as_served(registry, tmp_path):
    info, _ = publish(registry, tmp_path, "old model", readme="# one\n")
    manifest = Path(info.path, "MANIFEST.json")
    record = json.loads(manifest.read_text())
    del record["serving_recorded"]
    manifest.write_text(json.dumps(record))
    with pytest.raises(RegistryConflictError, match="which served"):
        publish(registry, tmp_path, "old model", readme="# two\n", run="r2")


@pytest.mark.parametrize("content", ["{not json", "[]", '{"files": "x"}', '{"files": [], "model": {}}'])
def test_a_corrupt_manifest_is_an_input_error_not_a_retry(registry, tmp_path, content):
    info, _ = publish(registry, tmp_path, "m", readme="# a\n")
    Path(info.path, "MANIFEST.json").write_text(content)
    with pytest.raises(RegistryConflictError, match="MANIFEST.json is not a registry manifest"):
        publish(registry, tmp_path, "m", readme="# b\n", run="r2")


# -- 5. locks: released by every failure of the fetch step --------------------------------------------------
def fetch_context(run_id: str) -> dict:
    return {"dag": SimpleNamespace(dag_id="model_deployment"), "run_id": run_id, "ti": SimpleNamespace(map_index=-1)}


def run_fetch(registry_root: str, staging_value: str, run_id: str, force: bool = False):
    from model_governance.operators.fetch import FetchStagingOperator

    op = FetchStagingOperator(task_id="fetch_staging", staging=staging_value, registry_root=registry_root, force=force)
    return op.execute(fetch_context(run_id))


def lock_state(root: Path) -> tuple[list[str], list[str]]:
    locks = sorted(p.name for p in (root / ".locks").glob("*")) if (root / ".locks").is_dir() else []
    pending = sorted(p.name for p in (root / ".pending").glob("*")) if (root / ".pending").is_dir() else []
    return locks, pending


def not_a_bundle(folder: Path) -> None:
    import zipfile

    with zipfile.ZipFile(folder / "executable" / "airbnb.model.lr.zip", "w") as archive:
        archive.writestr("hello.txt", "not a bundle")


FETCH_FAILURES = {
    "bundle is not an MLeap bundle": (lambda folder, root: not_a_bundle(folder), "not an MLeap bundle"),
    "content conflict with a served version": (None, "which served, with different content"),
    "corrupt MANIFEST.json in the registry": (None, "not a registry manifest"),
    "upload fails": (None, "upload of the staged model"),
    "interrupted (KeyboardInterrupt) during the upload": (None, None),
}


@pytest.mark.parametrize("failure", list(FETCH_FAILURES))
def test_every_failure_of_fetch_releases_the_lock(failure, tmp_path, monkeypatch):
    root = tmp_path / "registry"
    registry = Registry.from_root(str(root))
    first = stage_variant(tmp_path / "a", version="1.0")
    run_fetch(str(root), str(first), "run-0")
    if failure in ("content conflict with a served version", "corrupt MANIFEST.json in the registry"):
        info, doc = publish(registry, tmp_path, "rental pricing prediction", version="1.0", run="run-0")
        registry.mark_served(doc, "x")
        if failure.startswith("corrupt"):
            good = Path(info.path, "MANIFEST.json").read_text()
            Path(info.path, "MANIFEST.json").write_text("{")
    registry.release_locks("run-0")  # what run-0's clean-up does
    registry.discard_pending("run-0")
    changed = stage_variant(tmp_path / "b", version="1.0")
    (changed / "README.md").write_text("# changed\n")
    mutate, message = FETCH_FAILURES[failure]
    if mutate:
        mutate(changed, root)
    if failure == "upload fails":
        monkeypatch.setattr(registry.store.__class__, "write_file", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left")))
    if failure.startswith("interrupted"):
        monkeypatch.setattr(Registry, "upload_pending", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(BaseException) as err:
        run_fetch(str(root), str(changed), "run-1")
    if message:
        assert message in str(err.value)
    assert lock_state(root) == ([], []), failure
    monkeypatch.undo()
    if failure.startswith("corrupt"):
        Path(info.path, "MANIFEST.json").write_text(good)  # repaired by the operator
    run_fetch(str(root), str(first), "run-2")  # the next run of the model goes on at once
    assert f"{model_slug('rental pricing prediction')}.lock" in lock_state(root)[0]


def test_locks_are_released_even_when_the_registry_cannot_be_read(registry, monkeypatch):
    """The clean-up of a run whose registry answers no reads (WebHDFS OPEN failing) still releases its lock."""
    registry.acquire_lock("m", "run-1")
    registry.acquire_lock("other", "run-2")
    monkeypatch.setattr(Registry, "read_bytes", lambda self, path: (_ for _ in ()).throw(OSError("OPEN refused")))
    assert registry.release_locks("run-1") == ["m"]
    monkeypatch.undo()
    assert registry.release_locks("run-2") == ["other"]


def test_a_lock_of_a_run_that_ended_is_taken_over_at_once(registry, caplog):
    registry.acquire_lock("m", "ended-run", holder_info={"dag_id": "model_deployment", "dag_run_id": "ended-run"})
    registry.acquire_lock("m", "new-run", wait=0, is_running=lambda holder: False)
    assert "Taking over the deployment lock of m from run ended-run of model_deployment" in caplog.text
    assert registry.release_locks("new-run") == ["m"]


def test_the_wait_message_names_the_holder(registry, caplog):
    import logging

    caplog.set_level(logging.INFO)
    registry.acquire_lock("m", "busy-run", holder_info={"dag_id": "model_redeploy", "dag_run_id": "busy-run"})
    with pytest.raises(Exception, match="m is being deployed by run busy-run of model_redeploy"):
        registry.acquire_lock("m", "new-run", wait=0.2, poll=0.1, is_running=lambda holder: True)
    assert "Waiting for run busy-run of model_redeploy" in caplog.text


def test_input_errors_do_not_retry():
    assert issubclass(StagingError, InvalidInputError) and issubclass(RegistryConflictError, InvalidInputError)


# -- smaller wrong results (issue 11, items 7 and 8) ----------------------------------------------------------
def test_the_webhdfs_stand_in_refuses_dot_segments_as_hdfs_does(tmp_path):
    """Hadoop's DFSUtil.isValidName refuses '.', '..' and ':' components of a path written: 400
    InvalidPathException; a RENAME destination is normalised inside the namespace, as a real NameNode
    does it (tests/devstack/test_webhdfs_parity.py); nothing ever lands outside the stand-in's folder."""
    import http.client

    from model_governance_devstack.webhdfs import WebHDFSStandIn

    def put(path):
        conn = http.client.HTTPConnection("127.0.0.1", hdfs.port)
        conn.request("PUT", path + "&user.name=hdfs")
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read())

    with WebHDFSStandIn(tmp_path / "hdfs") as hdfs:
        for path in ("/webhdfs/v1/a/../b?op=MKDIRS", "/webhdfs/v1/a/%2E%2E/b?op=MKDIRS", "/webhdfs/v1/a/./b?op=MKDIRS",
                     "/webhdfs/v1/a/../../b?op=CREATE"):
            status, body = put(path)
            assert status == 400 and body["RemoteException"]["exception"] == "InvalidPathException", path
            assert body["RemoteException"]["message"].startswith("Invalid path name ")
        assert put("/webhdfs/v1/ok?op=MKDIRS")[0] == 200
        assert put("/webhdfs/v1/ok?op=RENAME&destination=/ok/../../../escape") == (200, {"boolean": True})
        assert (tmp_path / "hdfs" / "fs" / "escape").is_dir()  # /escape in the namespace
        assert not (tmp_path / "escape").exists() and not (tmp_path / "hdfs" / "b").exists()


@pytest.mark.parametrize("root", ["/srv/registry/../etc", "file:///srv/./r", "/srv/a:b", "file://tmp/x", "s3://bucket/x"])
def test_registry_roots_are_never_guessed(root):
    with pytest.raises(InvalidInputError, match="registry_root"):
        Registry.from_root(root)


def test_cli_output_cannot_be_forged_by_a_value(capsys):
    from model_governance.cli import print_table, printable

    assert printable("rental\nFORGED  deployed") == "rental\\nFORGED  deployed"
    print_table([["a\r\nb", "x\u2028y"]], ["NAME", "OTHER"])
    out = capsys.readouterr().out
    assert out.count("\n") == 2 and "a\\r\\nb" in out and "x\\u2028y" in out


def test_a_guid_in_capitals_is_the_same_guid():
    from model_governance.atlas.queries import find_deployment

    asked = []

    class Hook:
        def get_entity_by_guid(self, guid):
            asked.append(guid)
            return {"entity": {"typeName": "model", "guid": guid}}

    find_deployment(Hook(), "2C40219E-2E0E-4FC4-A5DB-11D01AEC1FFC")
    assert asked == ["2c40219e-2e0e-4fc4-a5db-11d01aec1ffc"]
