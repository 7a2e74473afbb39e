"""Hostile and careless inputs, as an attacker or a hurried user would give them to `model_deployment`.

Each input goes where it would in a real run: the trigger's param validation (REST `conf`, UI form, CLI),
then the fetch step (`FetchStagingOperator`, the step every input reaches first), or the CLI. Each must be
refused at once (an input error: no retries) with one line naming the value, or deployed when it is a
legitimate input; afterwards nothing may be left behind: no lock, no pending upload, no registry version
of a refused input, no marker of a command that ran, no working folder. A table row per input, and a total
line, are printed at the end of the session (see conftest.py).
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest

from tests.helpers import DAGS, EXAMPLE_STAGING

VALIDATED = {"model.validation.status": "approved", "model.validation.by": "MRO", "model.validation.valid.until": "2099-12-31"}
RESULTS: list[tuple[str, str, str, str, str]] = []  # (input, task, outcome, message, left behind): read by conftest


@dataclass
class World:
    tmp: Path
    root: Path  # the dev-mode registry
    marker: Path  # created only if an injected command ran
    repo: Path
    http: str  # archives served on loopback
    archives: dict[str, bytes]

    def variant(self, edit: Callable[[Path], Any] | None = None, **props: str) -> str:
        """A copy of the example staged model, with metadata keys replaced or added, then `edit` applied."""
        folder = Path(tempfile.mkdtemp(dir=self.tmp, prefix="staged-")) / "model"
        shutil.copytree(EXAMPLE_STAGING, folder)
        if props:
            lines = (folder / "modelMetadata.txt").read_text().splitlines()
            kept = [line for line in lines if line.split("=", 1)[0].strip() not in props]
            (folder / "modelMetadata.txt").write_text("\n".join(kept + [f"{k} = {v}" for k, v in props.items()]) + "\n")
        if edit:
            edit(folder)
        return str(folder)

    def archive(self, name: str, data: bytes) -> str:
        self.archives[name] = data
        return f"{self.http}/{name}"


def metadata_text(folder: Path, text: str | bytes) -> None:
    target = folder / "modelMetadata.txt"
    target.write_bytes(text if isinstance(text, bytes) else text.encode())


def seed_metadata(**changes: str) -> str:
    lines = (EXAMPLE_STAGING / "modelMetadata.txt").read_text().splitlines()
    out = []
    for line in lines:
        key = line.split("=", 1)[0].strip()
        out.append(f"{key} = {changes.pop(key)}" if key in changes else line)
    return "\n".join(out + [f"{k} = {v}" for k, v in changes.items()]) + "\n"


def zip_bytes(entries: list[tuple[str, bytes]], mode: int | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode:
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def example_entries(prefix: str = "top/") -> list[tuple[str, bytes]]:
    return [(prefix + p.relative_to(EXAMPLE_STAGING).as_posix(), p.read_bytes()) for p in EXAMPLE_STAGING.rglob("*") if p.is_file()]


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def tar_info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def bomb_bundle() -> bytes:
    """A valid-looking MLeap bundle with one entry that inflates 1000:1 (a zip bomb, kept small here)."""
    good = zipfile.ZipFile(EXAMPLE_STAGING / "executable/airbnb.model.lr.zip")
    entries = [(i.filename, good.read(i)) for i in good.infolist()]
    return zip_bytes(entries + [("root/padding.bin", b"\0" * (64 * 1024**2))])


def put(relpath: str, data: bytes | str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        target = folder / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data if isinstance(data, bytes) else data.encode())
    return edit


def link(relpath: str, target: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        os.symlink(target, folder / relpath)
    return edit


def remove(relpath: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / relpath
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return edit


# (label, what is given, expected: a text the refusal must hold, or "accepted")
Case = tuple[str, Callable[[World], dict[str, Any]], str]
CASES: list[Case] = [
    # -- the staging value ----------------------------------------------------------------------------
    ("staging: empty", lambda w: {"staging": ""}, "staging"),
    ("staging: blanks", lambda w: {"staging": "   "}, "the 'staging' parameter is empty"),
    ("staging: a folder that does not exist", lambda w: {"staging": "no-such-model"}, "no-such-model does not exist"),
    ("staging: /etc (not a staged model)", lambda w: {"staging": "/etc"}, "/etc: no modelMetadata.txt"),
    ("staging: a device (/dev/null)", lambda w: {"staging": "/dev/null"}, "/dev/null is not a folder"),
    ("staging: file URL with a host (file://tmp/x)", lambda w: {"staging": "file://tmp/x"}, "file://tmp/x"),
    ("staging: ftp:// URL", lambda w: {"staging": "ftp://example.com/m.zip"}, "ftp://example.com/m.zip"),
    ("staging: a newline in the path", lambda w: {"staging": "/srv/a\nFORGED LINE"}, "does not exist"),
    ("staging: URL with user:password@", lambda w: {"staging": "https://u:pw@example.com/m.zip"}, "staging"),
    ("staging: git URL with a token@", lambda w: {"staging": "git+https://ghp_x@git.example.com/a.git"}, "staging"),
    ("git: ref as --upload-pack", lambda w: {"staging": f"git+file://{w.repo}@--upload-pack=touch {w.marker};false"}, "not a branch, tag or commit id"),
    ("git: ref as -u<command>", lambda w: {"staging": f"git+file://{w.repo}@-utouch {w.marker}"}, "not a branch, tag or commit id"),
    ("git: ref with ; and a command", lambda w: {"staging": f"git+file://{w.repo}@main;touch {w.marker}"}, "not a branch, tag or commit id"),
    ("git: ext:: transport", lambda w: {"staging": f"git+ext::sh -c touch% {w.marker}"}, "git sources are git+https"),
    ("git: ssh with ProxyCommand", lambda w: {"staging": "git+ssh://-oProxyCommand=x/r.git"}, "git sources are git+https"),
    ("git: URL as an option", lambda w: {"staging": f"git+--upload-pack=touch {w.marker}"}, "git sources are git+https"),
    ("git: a tag that does not exist", lambda w: {"staging": f"git+file://{w.repo}@no-such-tag"}, "@no-such-tag failed"),
    ("git: plain http transport", lambda w: {"staging": "git+http://127.0.0.1:9/r.git"}, "git sources are git+https"),
    # -- archives ---------------------------------------------------------------------------------------
    ("archive: zip slip (../)", lambda w: {"staging": w.archive("slip.zip", zip_bytes([("top/../../evil.txt", b"x")]))}, "unsafe entry"),
    ("archive: absolute entry", lambda w: {"staging": w.archive("abs.zip", zip_bytes([("/tmp/evil.txt", b"x")]))}, "unsafe entry"),
    ("archive: symbolic link entry", lambda w: {"staging": w.archive("sym.zip", zip_bytes([("top/l", b"/etc/passwd")], mode=0o120777))}, "links are not staged"),
    ("archive: tar hard link to /etc/passwd", lambda w: {"staging": w.archive("hard.tar.gz", tar_bytes([(tar_info("top/h", tarfile.LNKTYPE, "/etc/passwd"), None)]))}, "is a link"),
    ("archive: tar device node", lambda w: {"staging": w.archive("dev.tar.gz", tar_bytes([(tar_info("top/d", tarfile.CHRTYPE), None)]))}, "device, FIFO"),
    ("archive: a 300-byte file name", lambda w: {"staging": w.archive("long.zip", zip_bytes(example_entries() + [("top/code/" + "n" * 300, b"x")]))}, "longer than 255 bytes"),
    ("archive: an HTML page, not an archive", lambda w: {"staging": w.archive("page.zip", b"<html>login</html>")}, "not a zip or tar archive"),
    ("archive: ':' in a file name", lambda w: {"staging": w.archive("colon.zip", zip_bytes(example_entries() + [("top/code/a:b.py", b"x")]))}, "has a ':' in its name"),
    # -- modelMetadata.txt ---------------------------------------------------------------------------------
    ("metadata: missing", lambda w: {"staging": w.variant(remove("modelMetadata.txt"))}, "no modelMetadata.txt"),
    ("metadata: a key set twice", lambda w: {"staging": w.variant(lambda f: metadata_text(f, seed_metadata() + "model.version = 9.9\n"))}, "key model.version is set again"),
    ("metadata: version ../../etc", lambda w: {"staging": w.variant(**{"model.version": "../../etc"})}, "model.version '../../etc'"),
    ("metadata: version with a slash", lambda w: {"staging": w.variant(**{"model.version": "1.0/x"})}, "model.version '1.0/x'"),
    ("metadata: name of punctuation only", lambda w: {"staging": w.variant(**{"model.name": "---"})}, "model.name '---'"),
    ("metadata: a newline escape in the name", lambda w: {"staging": w.variant(**{"model.name": "a\\nFORGED deployed"})}, "line break or control character"),
    ("metadata: a lone \\uD800 escape", lambda w: {"staging": w.variant(**{"model.owner": "x\\uD800"})}, "without its pair"),
    ("metadata: a malformed \\u escape", lambda w: {"staging": w.variant(**{"model.owner": "x\\u12"})}, "malformed \\uXXXX escape"),
    ("metadata: not UTF-8", lambda w: {"staging": w.variant(lambda f: metadata_text(f, seed_metadata(**{"model.owner": "Ana"}).encode() + b"model.type = caf\xe9\n"))}, "not UTF-8"),
    ("metadata: 100 KB", lambda w: {"staging": w.variant(lambda f: metadata_text(f, seed_metadata() + "#" * 100_000))}, "too large for a metadata file"),
    ("metadata: a folder", lambda w: {"staging": w.variant(lambda f: (remove("modelMetadata.txt")(f), (f / "modelMetadata.txt").mkdir()))}, "modelMetadata.txt"),
    ("metadata: endpoint ../admin", lambda w: {"staging": w.variant(**{"model.microservice.endpoint": "../admin"})}, "model.microservice.endpoint '../admin'"),
    ("metadata: model.executable ../modelMetadata.txt", lambda w: {"staging": w.variant(**{"model.executable": "../modelMetadata.txt"})}, "model.executable '../modelMetadata.txt'"),
    ("metadata: a name in Chinese (legitimate)", lambda w: {"staging": w.variant(**{"model.name": "模型"})}, "accepted"),
    ("metadata: a name with accents (legitimate)", lambda w: {"staging": w.variant(**{"model.name": "Prix été"})}, "accepted"),
    ("validation: status pending", lambda w: {"staging": w.variant(**{**VALIDATED, "model.validation.status": "pending"})}, "model.validation.status is 'pending'"),
    ("validation: expired", lambda w: {"staging": w.variant(**{**VALIDATED, "model.validation.valid.until": "2020-01-31"})}, "model.validation.valid.until 2020-01-31 has passed"),
    ("validation: valid.until 31/12/2099", lambda w: {"staging": w.variant(**{**VALIDATED, "model.validation.valid.until": "31/12/2099"})}, "model.validation.valid.until '31/12/2099' is not an ISO date"),
    ("validation: valid.until 2099-02-30", lambda w: {"staging": w.variant(**{**VALIDATED, "model.validation.valid.until": "2099-02-30"})}, "'2099-02-30' is not an ISO date"),
    ("validation: a risk tier alone", lambda w: {"staging": w.variant(**{"model.risk.tier": "1"})}, "validation is recorded in part"),
    ("validation: status empty", lambda w: {"staging": w.variant(**{**VALIDATED, "model.validation.status": ""})}, "set model.validation.status too"),
    ("validation: a newline escape in validation.by", lambda w: {"staging": w.variant(**{**VALIDATED, "model.validation.by": "MRO\\nFORGED approved"})}, "model.validation.by 'MRO\\nFORGED approved' holds a line break"),
    ("validation: 'Approved' in capitals (legitimate)", lambda w: {"staging": w.variant(**{**VALIDATED, "model.validation.status": "Approved"})}, "accepted"),
    # -- layout and files ---------------------------------------------------------------------------------
    ("layout: no README.md", lambda w: {"staging": w.variant(remove("README.md"))}, "README.md"),
    ("layout: no executable/", lambda w: {"staging": w.variant(remove("executable"))}, "executable"),
    ("layout: two serialized models", lambda w: {"staging": w.variant(put("executable/other.zip", b"x"))}, "exactly one serialized model"),
    ("layout: a MANIFEST.json of its own", lambda w: {"staging": w.variant(put("MANIFEST.json", "{}"))}, "registry's own manifest"),
    ("file: a link to /etc/passwd", lambda w: {"staging": w.variant(link("code/passwd", "/etc/passwd"))}, "outside the staged folder"),
    ("file: a dangling link", lambda w: {"staging": w.variant(link("code/gone.py", "nowhere.py"))}, "dangling link"),
    ("file: a looping link", lambda w: {"staging": w.variant(link("code/loop.py", "loop.py"))}, "looping link"),
    ("file: a link to a folder", lambda w: {"staging": w.variant(link("code/data", "../trainingdata"))}, "link to a folder"),
    ("file: a FIFO", lambda w: {"staging": w.variant(lambda f: os.mkfifo(f / "trainingdata" / "pipe"))}, "not a regular file"),
    ("file: ':' in a file name", lambda w: {"staging": w.variant(put("code/a:b.py", "x"))}, "has a ':' in its name"),
    ("file: a newline in a file name", lambda w: {"staging": w.variant(put("code/a\nb.py", "x"))}, "control character in its name"),
    ("sample: rows []", lambda w: {"staging": w.variant(put("samples/leapframe.json", json.dumps({"schema": {"fields": []}, "rows": []})))}, "rows is empty"),
    ("sample: not JSON", lambda w: {"staging": w.variant(put("samples/leapframe.json", "{oops"))}, "not a LeapFrame"),
    ("bundle: not a zip", lambda w: {"staging": w.variant(put("executable/airbnb.model.lr.zip", b"hello"))}, "not a readable zip"),
    ("bundle: a zip without bundle.json", lambda w: {"staging": w.variant(put("executable/airbnb.model.lr.zip", zip_bytes([("a.txt", b"x")])))}, "no bundle.json"),
    ("bundle: a zip bomb", lambda w: {"staging": w.variant(put("executable/airbnb.model.lr.zip", bomb_bundle()))}, "a zip bomb?"),
    ("bundle: a 2 MB bundle.json", lambda w: {"staging": w.variant(put("executable/airbnb.model.lr.zip", zip_bytes([("bundle.json", os.urandom(2 * 1024**2))])))}, "bundle.json is larger than 1 MiB"),
    # -- other params ------------------------------------------------------------------------------------------
    ("registry_root: relative", lambda w: {"registry_root": "relative/registry"}, "registry_root"),
    ("registry_root: with ..", lambda w: {"registry_root": f"{w.root}/../escape"}, "may not hold '.', '..'"),
    ("registry_root: file://tmp/x (redeploy manifest, no form)", lambda w: {"registry_root": "file://tmp/x", "_no_params": True}, "a file URL is file:///"),
    ("registry_root: hdfs://other-host/x", lambda w: {"registry_root": "hdfs://other-host:8020/x"}, "names the namenode other-host:8020"),
    ("force: 'yes please'", lambda w: {"force": "yes please"}, "force"),
    ("host_type: spark on model_deployment", lambda w: {"host_type": "spark"}, "host_type"),
    ("host_type: unknown (redeploy manifest, no form)", lambda w: {"host_type": "mainframe", "_no_params": True}, "host_type 'mainframe'"),
]

CLI_CASES = [
    ("cli: deployments --since yesterday", ["deployments", "--since", "yesterday"], "'yesterday' is not an ISO-8601"),
    ("cli: deployments --limit 0", ["deployments", "--limit", "0"], "'0' is not a whole number of 1 or more"),
    ("cli: deployments --limit -5", ["deployments", "--limit", "-5"], "not a whole number"),
    ("cli: trace ''", ["trace", ""], "is empty"),
    ("cli: trace --at yesterday", ["trace", "--at", "yesterday", "127.0.0.1:65327"], "'yesterday' is not an ISO-8601"),
    ("cli: history ''", ["history", " "], "is empty"),
    ("cli: verify-log --registry-root relative/path", ["verify-log", "m", "--registry-root", "relative/path"], "give hdfs:///<path> or an absolute local folder"),
    ("cli: verify-log --registry-root hdfs:///a/../b", ["verify-log", "m", "--registry-root", "hdfs:///a/../b"], "may not hold '.', '..'"),
    ("cli: verify-log with an unknown WebHDFS connection", ["verify-log", "m", "--webhdfs-conn-id", "no_such_conn"], "no_such_conn"),
    ("cli: deployments with an unknown connection", ["deployments", "--atlas-conn-id", "no_such_conn"], "no_such_conn"),
    ("cli: devstack --state-dir <a file>", ["devstack", "--state-dir", "{file}"], "is a file, not a folder"),
    ("cli: devstack on a busy port", ["devstack", "--state-dir", "{dir}", "--atlas-port", "{busy}", "--mleap-port", "0", "--webhdfs-port", "0"], "cannot start the stand-ins"),
]


class ArchiveHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        data = self.server.archives.get(self.path.lstrip("/"))
        self.send_response(200 if data is not None else 404)
        self.send_header("Content-Length", str(len(data or b"")))
        self.end_headers()
        self.wfile.write(data or b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    tmp = tmp_path_factory.mktemp("hostile")
    repo = tmp / "repo"
    shutil.copytree(EXAMPLE_STAGING, repo)
    for args in (["init", "--quiet", "--initial-branch=main"], ["add", "."],
                 ["-c", "user.name=t", "-c", "user.email=t@e", "commit", "--quiet", "-m", "m"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), ArchiveHandler)
    server.archives = {}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield World(tmp=tmp, root=tmp / "registry", marker=tmp / "pwned", repo=repo, http=f"http://127.0.0.1:{server.server_address[1]}",
                archives=server.archives)
    server.shutdown()


@pytest.fixture(scope="module")
def dag_params():
    """The deployment DAG's params, validated as a trigger validates a `conf` (REST, UI form, CLI)."""
    spec = importlib.util.spec_from_file_location("model_deployment_for_hostile_inputs", DAGS / "model_deployment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag.params


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path, monkeypatch):
    """The fetch step's working folders go to a folder of this test only, so that a working folder another
    run on the machine makes meanwhile (in the shared /tmp) is never taken for one this input left."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))


@pytest.fixture
def webhdfs(tmp_path, monkeypatch):
    from model_governance_devstack.webhdfs import WebHDFSStandIn

    with WebHDFSStandIn(tmp_path / "hdfs") as hdfs:
        monkeypatch.setenv("AIRFLOW_CONN_WEBHDFS_DEFAULT", json.dumps({"conn_type": "webhdfs", "host": "127.0.0.1", "port": hdfs.port, "login": "hdfs"}))
        monkeypatch.setenv("AIRFLOW_CONN_STAGING_DEFAULT", json.dumps({"conn_type": "http", "host": "git.example.com", "password": "s3cret"}))
        yield hdfs


def left_behind(world: World, workdirs_before: set[str]) -> str:
    """What a refused input left: locks, pending uploads, registry versions, a command's marker, working folders."""
    found = []
    if world.root.exists():
        for path in world.root.rglob("*"):
            if path.is_file():
                found.append(str(path.relative_to(world.root)))
    if world.marker.exists():
        found.append("MARKER: an injected command ran")
    workdirs = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("model-governance-")} - workdirs_before
    found += [f"working folder {w}" for w in workdirs]
    return ", ".join(found)


def release(world: World) -> None:
    """What the clean-up task does after an accepted fetch, and a fresh registry for the next input."""
    shutil.rmtree(world.root, ignore_errors=True)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_input(case, world, dag_params, webhdfs):
    from airflow.sdk.exceptions import AirflowFailException
    from model_governance.operators.fetch import FetchStagingOperator

    label, build, expected = case
    conf = {"staging": str(EXAMPLE_STAGING), "registry_root": str(world.root), **build(world)}
    skip_params = conf.pop("_no_params", False)
    shown = json.dumps({k: v for k, v in conf.items() if k != "registry_root" or "registry_root" in build(world)})[:80]
    before = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("model-governance-")}
    task, outcome, message = "fetch_staging", "", ""
    try:
        if not skip_params:
            try:
                params = copy.deepcopy(dag_params)
                for key, value in conf.items():
                    params[key] = value
                params.validate()
            except Exception as exc:  # the trigger refuses it: no run starts
                task, outcome, message = "trigger (params)", "refused", str(exc).splitlines()[0]
        if not outcome:
            op = FetchStagingOperator(task_id="fetch_staging", staging=conf["staging"], registry_root=conf["registry_root"],
                                      host_type=conf.get("host_type", "microservice"), force=conf.get("force", False))
            context = {"dag": SimpleNamespace(dag_id="model_deployment"), "run_id": "manual__hostile", "ti": SimpleNamespace(map_index=-1)}
            try:
                op.execute(context)
                outcome, message = "accepted", ""
                release(world)
            except AirflowFailException as exc:
                text = str(exc)
                outcome = "refused" if "\n" not in text else "refused (several lines)"
                message = text
            except BaseException as exc:  # a raw exception would be retried, and its message is not the user's
                outcome, message = f"UNCLEAR {type(exc).__name__}", str(exc)
        behind = left_behind(world, before)
    finally:
        shutil.rmtree(world.root, ignore_errors=True)
    wanted = "accepted" if expected == "accepted" else "refused"
    clear = outcome == wanted and (expected == "accepted" or expected in message)
    RESULTS.append((label, task, "refused clearly" if clear and wanted == "refused" else ("accepted" if clear else outcome or "?"),
                    message.replace("\n", "\\n")[:150], behind or "nothing"))
    assert outcome == wanted, (shown, outcome, message)
    assert expected == "accepted" or expected in message, message
    assert "model-governance-" not in message, "the message names the task's working copy, not the user's input"
    assert not behind, behind


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_hostile_cli_argument(case, tmp_path, capsys, monkeypatch):
    from model_governance.cli import main

    label, argv, expected = case
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    a_file = tmp_path / "state-file"
    a_file.write_text("x")
    argv = [a.format(file=a_file, dir=tmp_path / "state", busy=busy.getsockname()[1]) for a in argv]
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_CONN", raising=False)
    try:
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage error: exit status 2, one message
            code = exc.code
    finally:
        busy.close()
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("usage:") and not line.startswith(" ")]
    message = lines[-1] if lines else ""
    clear = code in (1, 2) and "Traceback" not in err + out and expected in err
    RESULTS.append((label, "cli", "refused clearly" if clear else f"exit {code}", message[:150], "nothing"))
    assert code in (1, 2) and "Traceback" not in err + out, err
    assert expected in err, err
