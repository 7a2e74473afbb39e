"""The spring-boot stand-in held to the real MLeap runtime: the product's requests sent to both.

The real side is `MLeapRuntimeHost` (model_governance_devstack.real.mleap): mleap-spring-boot's REST contract
over the real MLeap runtime 0.20.0, which loads every bundle and scores every frame. Each request goes to
both servers; the answers must have the same status and the same body shape (keys, types, status strings),
the same error texts where the runtime's are deterministic, and the same predictions to 1e-9.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from model_governance_devstack.mleap import MLeapStandIn
from model_governance_devstack.real.mleap import MLeapRuntimeHost
from tests.helpers import EXAMPLE_STAGING

DATA = Path(__file__).resolve().parents[1] / "data" / "mleap-bundles"
AIRBNB = EXAMPLE_STAGING / "executable" / "airbnb.model.lr.zip"
SAMPLE = json.loads((EXAMPLE_STAGING / "samples" / "leapframe.json").read_text())
JSON = {"Content-Type": "application/json"}
CONFIG = {"memoryTimeout": 900000, "diskTimeout": 900000}  # what the product's hook sends
LOAD_DELAY = 0.3  # every load waits this long on both servers: requests reach a model while it loads


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """One folder both servers read by the same absolute `file:` paths."""
    folder = tmp_path_factory.mktemp("models")
    for source in (AIRBNB, DATA / "demo.zip", DATA / "sklearn_lr_pipeline.zip"):
        shutil.copy(source, folder / source.name)
    (folder / "corrupt.zip").write_bytes(AIRBNB.read_bytes()[:4000])
    shutil.copy(AIRBNB, folder / "airbnb_nozip")  # a valid bundle whose name does not end in .zip
    return folder


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    host = MLeapRuntimeHost(tmp_path_factory.mktemp("mleap-real"), load_delay=LOAD_DELAY).start(timeout=180)
    group = host.pid
    yield host
    host.stop()
    with pytest.raises(ProcessLookupError):  # nothing of its process group is left
        os.killpg(group, 0)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory, models):
    server = MLeapStandIn(tmp_path_factory.mktemp("mleap-stand-in"), api="spring-boot", mounts={str(models): models},
                          load_delay=LOAD_DELAY).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bundle_site(models):
    """An http server on loopback serving the models folder, for `http:` bundle URIs."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(models))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class Pair:
    """The same request to both servers; the real answer first."""

    def __init__(self, real: MLeapRuntimeHost, stand_in: MLeapStandIn):
        self.urls = (real.url, stand_in.url)

    def __call__(self, method: str, path: str, **kwargs: Any) -> tuple[requests.Response, requests.Response]:
        """Sent to both at once, so that each server sees it at the same point of a load."""
        kwargs.setdefault("timeout", 120)
        with ThreadPoolExecutor(2) as pool:
            answers = [pool.submit(requests.request, method, url + path, **kwargs) for url in self.urls]
            return answers[0].result(), answers[1].result()

    def load(self, name: str, uri: str, config: dict[str, Any] | None = CONFIG):
        body = {"modelName": name, "uri": uri, "config": config, "force": False}
        return self("POST", "/models", json={k: v for k, v in body.items() if v is not None})

    def unload(self, name: str):
        return self("DELETE", f"/models/{name}", headers=JSON)


@pytest.fixture
def both(real, stand_in):
    pair = Pair(real, stand_in)
    yield pair
    for server in (real, stand_in):  # each test starts with no model loaded and no load running
        for name in ("rental", "demo", "sklearn", "broken", "nozip", "absent", "remote", "idle", "kept", "swap"):
            # a load still running would hold its zip open: MLeap's BundleFile opens a zip file system, and a
            # second load of the same file meanwhile fails with FileSystemAlreadyExistsException
            requests.get(f"{server.url}/models/{name}/meta", timeout=120)
            requests.delete(f"{server.url}/models/{name}", headers=JSON, timeout=10)


def shape(value: Any) -> Any:
    """A JSON value's shape: keys kept, leaves reduced to their type."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def body(response: requests.Response) -> Any:
    return response.json() if response.content else None


def same(pair: tuple[requests.Response, requests.Response], status: int) -> tuple[Any, Any]:
    """Both answered `status` with bodies of the same shape; the bodies back."""
    real, stand_in = pair
    assert (real.status_code, stand_in.status_code) == (status, status), (real.text[:300], stand_in.text[:300])
    bodies = body(real), body(stand_in)
    assert shape(bodies[0]) == shape(bodies[1]), bodies
    return bodies


def error(pair) -> tuple[str, str]:
    """Both answered a transform failure (200 STATUS_ERROR): the two error texts."""
    real, stand_in = same(pair, 200)
    assert real["status"] == stand_in["status"] == "STATUS_ERROR"
    return real["error"], stand_in["error"]


def column(frame: dict[str, Any], name: str) -> list[Any]:
    index = [f["name"] for f in frame["schema"]["fields"]].index(name)
    return [row[index] for row in frame["rows"]]


def close(a: Any, b: Any) -> bool:
    """Equal JSON values, doubles to 1e-9."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= 1e-9
    return a == b


def uri(models: Path, name: str) -> str:
    return f"file:{models / name}"


# -- the tests ------------------------------------------------------------------------------------------------
def test_health(both):
    assert same(both("GET", "/actuator/health"), 200) == ({"status": "UP"}, {"status": "UP"})


@pytest.mark.parametrize("name, bundle, frame, prediction", [
    ("rental", "airbnb.model.lr.zip", SAMPLE, "price_prediction"),
    ("demo", "demo.zip", json.loads((DATA / "frame.demo.json").read_text()), "demo:prediction"),
    ("sklearn", "sklearn_lr_pipeline.zip", json.loads((DATA / "frame.sklearn.json").read_text()), "prediction"),
])
def test_load_meta_and_transform(both, models, name, bundle, frame, prediction):
    accepted = same(both.load(name, uri(models, bundle)), 202)
    assert accepted[0] == accepted[1] == {"name": name, "uri": uri(models, bundle), "config": CONFIG}
    got = same(both("GET", f"/models/{name}"), 200)
    assert got[0] == got[1] == accepted[0]
    real, stand_in = same(both("GET", f"/models/{name}/meta"), 200)
    assert real["bundle"] == stand_in["bundle"]
    for schema in ("inputSchema", "outputSchema"):
        assert real[schema] == stand_in[schema], schema
    real, stand_in = same(both("POST", f"/models/{name}/transform", json=frame), 200)
    assert [f["name"] for f in real["schema"]["fields"]] == [f["name"] for f in stand_in["schema"]["fields"]]
    assert real["schema"] == stand_in["schema"]
    assert close(column(real, prediction), column(stand_in, prediction))
    assert close(real["rows"], stand_in["rows"])


def test_the_example_scores_as_recorded(both, models):
    """The runtime's answer for the example's sample request, as recorded from MLeap 0.20.0."""
    both.load("rental", uri(models, "airbnb.model.lr.zip"))
    real, stand_in = same(both("POST", "/models/rental/transform", json=SAMPLE), 200)
    assert column(real, "price_prediction") == [232.62463916840318]
    assert abs(column(stand_in, "price_prediction")[0] - 232.62463916840318) <= 1e-9


@pytest.mark.parametrize("name, bundle, message", [
    ("broken", "corrupt.zip", "ExecutorException: zip END header not found"),
    ("nozip", "airbnb_nozip", "ExecutorException: {models}/airbnb_nozip/bundle.json: Not a directory"),
    ("absent", "none.zip", "ExecutorException: file does not exist {models}/none.zip"),
])
def test_failed_loads(both, models, name, bundle, message):
    same(both.load(name, uri(models, bundle)), 202)  # the load has only started
    real, stand_in = both("GET", f"/models/{name}/meta")
    assert (real.status_code, stand_in.status_code) == (500, 500)
    assert real.json().keys() == stand_in.json().keys() == {"timestamp", "status", "error", "path"}
    assert real.headers["X-MLeap-Load-Error"] == stand_in.headers["X-MLeap-Load-Error"] == message.format(models=models)
    assert same(both("GET", f"/models/{name}"), 404) == (None, None)  # the model is dropped
    assert same(both("GET", f"/models/{name}/meta"), 404) == (None, None)
    real, stand_in = error(both("POST", f"/models/{name}/transform", json=SAMPLE))
    assert real == stand_in == f"NotFoundException: no model with name {name}"
    same(both.load(name, uri(models, "airbnb.model.lr.zip")), 202)  # the name is free again


@pytest.mark.parametrize("path, message", [
    ("/airbnb.model.lr.zip", "ExecutorException: {tmp}"),  # downloaded, then thrown away (combust/mleap#513)
    ("/missing.zip", "ExecutorException: {site}/missing.zip"),
])
def test_http_uris_fail_as_mleaps_http_repository_does(both, bundle_site, path, message):
    same(both.load("remote", bundle_site + path), 202)
    real, stand_in = both("GET", "/models/remote/meta")
    assert (real.status_code, stand_in.status_code) == (500, 500)
    errors = real.headers["X-MLeap-Load-Error"], stand_in.headers["X-MLeap-Load-Error"]
    if "{tmp}" in message:  # FileAlreadyExistsException: <a fresh temporary file>
        assert all(e.startswith("ExecutorException: /") and e.endswith(".bundle.zip") for e in errors), errors
    else:  # FileNotFoundException: <the url>
        assert errors[0] == errors[1] == message.format(site=bundle_site)
    assert same(both("GET", "/models/remote"), 404) == (None, None)


def test_unknown_model(both):
    assert same(both("GET", "/models/nothing"), 404) == (None, None)
    assert same(both("GET", "/models/nothing/meta"), 404) == (None, None)
    assert same(both("DELETE", "/models/nothing", headers=JSON), 404) == (None, None)
    real, stand_in = error(both("POST", "/models/nothing/transform", json=SAMPLE))
    assert real == stand_in == "NotFoundException: no model with name nothing"


def test_request_rejections(both, models):
    good = uri(models, "airbnb.model.lr.zip")
    same(both.load("rental", good), 202)
    assert same(both.load("rental", good), 400) == (None, None)  # the name is taken (loading or loaded)
    assert same(both.load("", good), 400) == (None, None)  # not an actor name
    assert same(both("POST", "/models", data="{", headers=JSON), 400) == (None, None)
    assert same(both("POST", "/models", data=json.dumps({"modelName": "x", "uri": good})), 415) == (None, None)
    assert same(both("DELETE", "/models/rental"), 415) == (None, None)  # DELETE consumes JSON only
    assert same(both("POST", "/models/rental/transform", data=json.dumps(SAMPLE)), 415) == (None, None)
    assert same(both("GET", "/models/rental/meta", headers={"timeout": "soon"}), 400) == (None, None)
    assert same(both("PUT", "/models/rental"), 405) == (None, None)
    gone = same(both.unload("rental"), 200)
    assert gone[0] == gone[1] == {"name": "rental", "uri": good, "config": CONFIG}
    assert same(both.unload("rental"), 404) == (None, None)


def test_a_load_without_config_echoes_an_empty_config(both, models):
    real, stand_in = same(both.load("rental", uri(models, "airbnb.model.lr.zip"), config=None), 202)
    assert real["config"] == stand_in["config"] == {}


def missing(*names: str) -> dict[str, Any]:
    keep = [i for i, f in enumerate(SAMPLE["schema"]["fields"]) if f["name"] not in names]
    return {"schema": {"fields": [SAMPLE["schema"]["fields"][i] for i in keep]}, "rows": [[SAMPLE["rows"][0][i] for i in keep]]}


@pytest.mark.parametrize("frame", [
    missing("bathrooms"), missing("state"), missing("bathrooms", "bedrooms", "room_type"),
    {"rows": []}, {"schema": {"fields": []}},
    {"schema": SAMPLE["schema"], "rows": [["Mars"] + SAMPLE["rows"][0][1:]]},  # a label the indexer never saw
])
def test_scoring_errors(both, models, frame):
    both.load("rental", uri(models, "airbnb.model.lr.zip"))
    same(both("GET", "/models/rental/meta"), 200)
    real, stand_in = error(both("POST", "/models/rental/transform", json=frame))
    assert real == stand_in


def test_unparseable_frame(both, models):
    both.load("rental", uri(models, "airbnb.model.lr.zip"))
    real, stand_in = error(both("POST", "/models/rental/transform", data="{", headers=JSON))
    assert real.split(":")[0] == stand_in.split(":")[0] == "JsonParser.ParsingException"


def test_swap_window_answers_status_error_then_waits_for_the_new_load(both, models):
    """The product's swap: DELETE then POST of the same name. Between them a transform is a 200 STATUS_ERROR
    (not a 404); once the POST is accepted, a transform waits for the load and scores."""
    good = uri(models, "airbnb.model.lr.zip")
    both.load("swap", good)
    same(both("GET", "/models/swap/meta"), 200)
    same(both.unload("swap"), 200)
    real, stand_in = error(both("POST", "/models/swap/transform", json=SAMPLE))
    assert real == stand_in == "NotFoundException: no model with name swap"
    same(both.load("swap", good), 202)
    real, stand_in = same(both("POST", "/models/swap/transform", json=SAMPLE), 200)
    assert close(column(real, "price_prediction"), column(stand_in, "price_prediction"))


def test_memory_timeout_unloads_an_idle_model_and_any_request_keeps_it(both, models):
    good = uri(models, "airbnb.model.lr.zip")
    for name in ("idle", "kept"):
        same(both.load(name, good, config={"memoryTimeout": 1500, "diskTimeout": 1500}), 202)
        same(both("GET", f"/models/{name}/meta"), 200)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:  # a poller of GET /models/kept keeps it loaded
        same(both("GET", "/models/kept"), 200)
        time.sleep(0.4)
    assert same(both("GET", "/models/idle"), 404) == (None, None)
    real, stand_in = error(both("POST", "/models/idle/transform", json=SAMPLE))
    assert real == stand_in == "NotFoundException: no model with name idle"
    same(both("GET", "/models/kept/meta"), 200)
    same(both.load("idle", good), 202)  # the name is free again


# -- the product's hook against the real runtime --------------------------------------------------------------
def test_the_hook_drives_the_real_runtime(real, monkeypatch):
    from model_governance.exceptions import ModelLoadError, ModelVerificationError
    from model_governance.hooks.mleap import MLeapServingHook
    from model_governance.deploy.verify import check_scoring

    connection = real.connection()
    monkeypatch.setenv("AIRFLOW_CONN_MLEAP_REAL", json.dumps(connection))
    hook = MLeapServingHook("mleap_real", timeout=60, retry_backoff=0.01)
    folder = Path(connection["extra"]["models_dir"])
    target = folder / "rental" / "1.1" / AIRBNB.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(AIRBNB, target)
    uri = f"file:{hook.models_mount}/rental/1.1/{AIRBNB.name}"  # as the deploy step builds it
    assert hook.models_dir / "rental" / "1.1" / AIRBNB.name == target
    hook.submit_model("rental", uri)
    try:
        meta = hook.wait_loaded("rental", timeout=120, poll=0.1)
        scored = hook.transform_named("rental", SAMPLE)
        assert column(scored, "price_prediction") == [232.62463916840318]
        check_scoring(scored, SAMPLE, [f["name"] for f in meta["outputSchema"]["fields"]])
        with pytest.raises(ModelLoadError):
            hook.submit_model("rental", uri)
        with pytest.raises(ModelVerificationError, match="invalid fields"):
            hook.transform_named("rental", missing("bathrooms"))
        hook.submit_model("broken", f"file:{folder}/none.zip")
        with pytest.raises(ModelLoadError, match="failed to load"):
            hook.wait_loaded("broken", timeout=60, poll=0.1)
        assert hook.get_model("broken") is None
    finally:
        assert hook.unload_model("rental") is True
    assert hook.unload_model("rental") is False
