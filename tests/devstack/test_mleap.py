"""The MLeap serving stand-in over real HTTP: both APIs, real bundles, and the product's hook against it."""

from __future__ import annotations

import base64
import json
import shutil
import time
import zipfile
from pathlib import Path

import pytest
import requests

from model_governance_devstack.mleap import AKKA_500, MLeapStandIn
from tests.helpers import EXAMPLE_STAGING

BUNDLE = EXAMPLE_STAGING / "executable" / "airbnb.model.lr.zip"
SAMPLE = json.loads((EXAMPLE_STAGING / "samples" / "leapframe.json").read_text())
GOOD = "/models/rental/1.1/airbnb.model.lr.zip"
BROKEN = "/models/broken/1.0/airbnb.model.lr.zip"
EXPECTED_PRICE = 232.62463916840318  # worked out by hand from the bundle's JSON for the sample row
INPUTS = {"state", "bathrooms", "square_feet", "bedrooms", "security_deposit", "cleaning_fee", "extra_people",
          "number_of_reviews", "review_scores_rating", "room_type", "host_is_superhost", "cancellation_policy",
          "instant_bookable"}
JSON_HEADERS = {"Content-Type": "application/json"}


def rewrite(src: Path, dst: Path, drop: str = "", replace: dict[str, bytes] | None = None) -> None:
    """A copy of a bundle without the entries whose name contains `drop`, some entries replaced."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            if not drop or drop not in item.filename:
                zout.writestr(item, (replace or {}).get(item.filename, zin.read(item)))


def lr_bundle(dst: Path, op: str = "linear_regression") -> None:
    """A bundle like mleap's scikit-learn export: a, b, c assembled, then 0.5 + a + 2b + 3c (or `op`)."""
    def node(name, inputs, outputs):
        return json.dumps({"name": name, "shape": {"inputs": [{"port": p, "name": n} for p, n in inputs],
                                                   "outputs": [{"port": p, "name": n} for p, n in outputs]}})
    scalar = {"base": "scalar", "isNullable": False}
    files = {
        "bundle.json": json.dumps({"uid": "u-1", "name": "lr", "format": "json", "version": "0.25.3", "timestamp": "t"}),
        "root/model.json": json.dumps({"op": "pipeline", "attributes": {"nodes": {"type": "list", "string": ["va", "lr"]}}}),
        "root/node.json": node("lr_pipeline", [], []),
        "root/va.node/model.json": json.dumps({"op": "vector_assembler", "attributes": {"input_shapes": {"type": "list", "data_shape": [scalar] * 3}}}),
        "root/va.node/node.json": node("va", [("input0", "a"), ("input1", "b"), ("input2", "c")], [("output", "features")]),
        "root/lr.node/model.json": json.dumps({"op": op, "attributes": {"intercept": {"double": 0.5}, "coefficients": {"double": [1.0, 2.0, 3.0], "type": "tensor"}}}),
        "root/lr.node/node.json": node("lr", [("features", "features")], [("prediction", "prediction")]),
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dst, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)


@pytest.fixture
def models_dir(tmp_path):
    """The host folder the server mounts as /models: the example bundle, one missing its regression node."""
    folder = tmp_path / "models"
    (folder / "rental" / "1.1").mkdir(parents=True)
    shutil.copy(BUNDLE, folder / "rental" / "1.1" / BUNDLE.name)
    rewrite(BUNDLE, folder / "broken" / "1.0" / BUNDLE.name, drop="/linear_regression.node/")
    return folder


@pytest.fixture
def legacy(tmp_path, models_dir):
    server = MLeapStandIn(tmp_path / "state", api="legacy", mounts={"/models": models_dir}).start()
    yield server
    server.stop()


@pytest.fixture
def spring(tmp_path, models_dir):
    server = MLeapStandIn(tmp_path / "state", api="spring-boot", mounts={"/models": models_dir}, load_delay=0.3).start()
    yield server
    server.stop()


def prediction(frame):
    names = [f["name"] for f in frame["schema"]["fields"]]
    return frame["rows"][0][names.index("price_prediction")]


# -- legacy mleap-serving ------------------------------------------------------------------------------------
def test_legacy_loads_reports_its_schema_and_scores_the_sample(legacy):
    nothing = requests.get(f"{legacy.url}/model", timeout=5)
    assert (nothing.status_code, nothing.text) == (500, AKKA_500)
    loaded = requests.put(f"{legacy.url}/model", json={"path": GOOD}, timeout=5)
    assert (loaded.status_code, loaded.json()) == (200, {})
    fields = {f["name"]: f["type"] for f in requests.get(f"{legacy.url}/model", timeout=5).json()["fields"]}
    assert INPUTS <= set(fields) and fields["state"] == "string" and fields["bathrooms"] == "double"
    assert fields["features_lr"] == {"type": "tensor", "base": "double", "dimensions": [27]}
    answer = requests.post(f"{legacy.url}/transform", json=SAMPLE, timeout=5)
    assert answer.status_code == 200
    scored = answer.json()
    names = [f["name"] for f in scored["schema"]["fields"]]
    assert names[:13] == [f["name"] for f in SAMPLE["schema"]["fields"]]  # the derived columns are appended
    assert {"state_index", "state_index_oh", "scaled_continuous_features", "features_lr"} <= set(names)
    assert scored["rows"][0][:13] == SAMPLE["rows"][0] and len(scored["rows"][0]) == len(names)
    assert prediction(scored) == pytest.approx(EXPECTED_PRICE)
    assert scored["rows"][0][names.index("state_index_oh")] == {"indices": [[1]], "values": [1.0], "dimensions": [9]}


def test_legacy_failed_loads_keep_the_previous_model(legacy, models_dir):
    assert requests.put(f"{legacy.url}/model", json={"path": GOOD}, timeout=5).status_code == 200
    schema = requests.get(f"{legacy.url}/model", timeout=5).json()
    outside = str(models_dir / "rental" / "1.1" / BUNDLE.name)  # on this host, but not on the server's
    for path in (BROKEN, "/models/rental/9.9/none.zip", outside, "/models/../" + outside, "models/rental/1.1/airbnb.model.lr.zip"):
        answer = requests.put(f"{legacy.url}/model", json={"path": path}, timeout=5)
        assert (answer.status_code, answer.text) == (500, AKKA_500), path
    assert requests.get(f"{legacy.url}/model", timeout=5).json() == schema
    assert requests.post(f"{legacy.url}/transform", json=SAMPLE, timeout=5).status_code == 200
    for _ in range(2):  # always 200
        assert requests.delete(f"{legacy.url}/model", timeout=5).json() == {}
    assert requests.get(f"{legacy.url}/model", timeout=5).status_code == 500


@pytest.mark.parametrize("damage", [
    {"replace": {"root/model.json": b"not json"}},
    {"drop": "bundle.json"},
    {"replace": {"bundle.json": json.dumps({"name": "x", "format": "json", "version": "0.8.0"}).encode()}},
    {"drop": "root/node.json"},
    {"drop": "string_indexer_state.node/"},  # a node of the nested feature pipeline
    {"drop": "feature_assembler_lr.node/node.json"},
])
def test_legacy_refuses_bundles_the_real_loader_cannot_read(legacy, models_dir, damage):
    rewrite(BUNDLE, models_dir / "bad.zip", **damage)
    assert requests.put(f"{legacy.url}/model", json={"path": "/models/bad.zip"}, timeout=5).status_code == 500
    (models_dir / "notazip.zip").write_text("PK? no")
    assert requests.put(f"{legacy.url}/model", json={"path": "/models/notazip.zip"}, timeout=5).status_code == 500


def test_legacy_rejections_are_akkas(legacy):
    wrong = requests.post(f"{legacy.url}/model", json={"path": GOOD}, timeout=5)
    assert (wrong.status_code, wrong.text) == (405, "HTTP method not allowed, supported methods: PUT, DELETE, GET")
    assert requests.get(f"{legacy.url}/transform", timeout=5).text == "HTTP method not allowed, supported methods: POST"
    assert requests.get(f"{legacy.url}/models", timeout=5).status_code == 404
    assert requests.put(f"{legacy.url}/model", data=json.dumps({"path": GOOD}), timeout=5).status_code == 415
    assert requests.put(f"{legacy.url}/model", data="{", headers=JSON_HEADERS, timeout=5).status_code == 400
    assert requests.put(f"{legacy.url}/model", json={}, timeout=5).status_code == 500  # request.path.get


def test_legacy_transform_failures_answer_500(legacy):
    assert requests.post(f"{legacy.url}/transform", json=SAMPLE, timeout=5).status_code == 500  # no model
    requests.put(f"{legacy.url}/model", json={"path": GOOD}, timeout=5)
    no_state = {"schema": {"fields": SAMPLE["schema"]["fields"][1:]}, "rows": [SAMPLE["rows"][0][1:]]}
    assert requests.post(f"{legacy.url}/transform", json=no_state, timeout=5).text == AKKA_500
    unseen = {"schema": SAMPLE["schema"], "rows": [["Mars"] + SAMPLE["rows"][0][1:]]}
    assert requests.post(f"{legacy.url}/transform", json=unseen, timeout=5).status_code == 500
    assert requests.post(f"{legacy.url}/transform", json={"rows": []}, timeout=5).status_code == 400
    legacy.fail_transform_next(1)
    assert requests.post(f"{legacy.url}/transform", json=SAMPLE, timeout=5).status_code == 500
    assert requests.post(f"{legacy.url}/transform", json=SAMPLE, timeout=5).status_code == 200


def test_fault_switches(legacy):
    legacy.fail_next(2, status=503)
    assert [(r.status_code, r.content) for r in (requests.get(f"{legacy.url}/model", timeout=5) for _ in range(3))] == [
        (503, b""), (503, b""), (500, AKKA_500.encode())]
    legacy.hang(0.4)
    started = time.monotonic()
    requests.get(f"{legacy.url}/model", timeout=5)
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    requests.get(f"{legacy.url}/model", timeout=5)
    assert time.monotonic() - started < 0.4  # only the next request hangs


def test_other_bundles_score_or_load_without_scoring(legacy, models_dir):
    lr_bundle(models_dir / "lr.zip")
    lr_bundle(models_dir / "forest.zip", op="random_forest_regression")
    frame = {"schema": {"fields": [{"name": n, "type": "double"} for n in "abc"]}, "rows": [[1.0, 2.0, 3.0], [0, 0, 0]]}
    assert requests.put(f"{legacy.url}/model", json={"path": "/models/lr.zip"}, timeout=5).status_code == 200
    rows = requests.post(f"{legacy.url}/transform", json=frame, timeout=5).json()["rows"]
    assert [row[-1] for row in rows] == pytest.approx([14.5, 0.5])
    assert requests.put(f"{legacy.url}/model", json={"path": "/models/forest.zip"}, timeout=5).status_code == 200
    assert [f["name"] for f in requests.get(f"{legacy.url}/model", timeout=5).json()["fields"]] == ["a", "b", "c", "features", "prediction"]
    assert requests.post(f"{legacy.url}/transform", json=frame, timeout=5).status_code == 500


REFERENCE = Path(__file__).resolve().parents[1] / "data" / "mleap-bundles"  # copies of the shared reference bundles


@pytest.mark.parametrize("name, inputs, expected", [("demo.zip", ["demo:a", "demo:c", "demo:d"], None),
                                                    ("sklearn_lr_pipeline.zip", ["a", "b", "c"], 14.5)])
def test_reference_bundles(tmp_path, name, inputs, expected):
    with MLeapStandIn(tmp_path / "state", mounts={"/models": REFERENCE}) as server:
        assert requests.put(f"{server.url}/model", json={"path": f"/models/{name}"}, timeout=5).status_code == 200
        fields = requests.get(f"{server.url}/model", timeout=5).json()["fields"]
        assert [f["name"] for f in fields][:3] == inputs
        frame = {"schema": {"fields": fields[:3]}, "rows": [[1.0, 2.0, 3.0]]}
        answer = requests.post(f"{server.url}/transform", json=frame, timeout=5)
        assert answer.status_code == 200
        if expected is not None:
            assert answer.json()["rows"][0][-1] == pytest.approx(expected)


# -- mleap-spring-boot ---------------------------------------------------------------------------------------
def load(server, name, uri):
    body = {"modelName": name, "uri": uri, "config": {"memoryTimeout": 900000, "diskTimeout": 900000}, "force": False}
    return requests.post(f"{server.url}/models", json=body, timeout=5)


def test_spring_boot_loads_asynchronously_and_scores(spring):
    accepted = load(spring, "rental", f"file:{GOOD}")
    assert accepted.status_code == 202
    assert accepted.json() == {"name": "rental", "uri": f"file:{GOOD}", "config": {"memoryTimeout": 900000, "diskTimeout": 900000}}
    assert requests.get(f"{spring.url}/models/rental", timeout=5).json() == accepted.json()  # before the load ends
    meta = requests.get(f"{spring.url}/models/rental/meta", timeout=5)  # waits for the load
    assert meta.status_code == 200
    meta = meta.json()
    assert meta["bundle"] == {"uid": "4b73a01f-5ea9-4967-8bed-7f27213d04d0", "name": "pipeline_ed5135e9ca49", "format": "JSON",
                              "version": "0.8.0-SNAPSHOT", "timestamp": "2017-09-22T00:59:02.941"}
    assert {f["name"] for f in meta["inputSchema"]["fields"]} == INPUTS
    by_name = {f["name"]: f["dataType"] for f in meta["outputSchema"]["fields"]}
    assert by_name["price_prediction"] == {"base": "DOUBLE", "shape": {"base": "SCALAR", "isNullable": False}}
    scored = requests.post(f"{spring.url}/models/rental/transform", json=SAMPLE, timeout=5)
    assert prediction(scored.json()) == pytest.approx(EXPECTED_PRICE)
    frame = base64.b64encode(json.dumps(SAMPLE).encode()).decode()
    body = {"modelName": "rental", "format": "ml.combust.mleap.json", "tag": 7, "frame": frame, "options": {}}
    answer = requests.post(f"{spring.url}/models/transform", json=body, timeout=5).json()
    assert (answer["tag"], answer["status"]) == (7, "STATUS_OK")
    assert prediction(json.loads(base64.b64decode(answer["frame"]))) == pytest.approx(EXPECTED_PRICE)


def test_spring_boot_refuses_bad_load_requests(spring):
    assert load(spring, "rental", f"file:{GOOD}").status_code == 202
    for answer in (load(spring, "rental", f"file:{GOOD}"), load(spring, "", f"file:{GOOD}"),
                   requests.post(f"{spring.url}/models", data="{", headers=JSON_HEADERS, timeout=5),
                   requests.post(f"{spring.url}/models", json={"modelName": "x", "uri": "file:/a", "colour": 1}, timeout=5)):
        assert (answer.status_code, answer.content) == (400, b"")
    assert requests.post(f"{spring.url}/models", data="{}", timeout=5).status_code == 415
    assert requests.put(f"{spring.url}/models/rental", timeout=5).status_code == 405


def test_spring_boot_failed_load_drops_the_model(spring):
    for name, uri in (("broken", f"file:{BROKEN}"), ("absent", "file:/models/none.zip"), ("remote", "s3://bucket/x.zip")):
        assert load(spring, name, uri).status_code == 202  # the load has only started
        meta = requests.get(f"{spring.url}/models/{name}/meta", timeout=5)
        assert meta.status_code == 500 and meta.json()["error"] == "Internal Server Error"
        assert requests.get(f"{spring.url}/models/{name}", timeout=5).status_code == 404
        assert requests.get(f"{spring.url}/models/{name}/meta", timeout=5).status_code == 404
    assert load(spring, "broken", f"file:{GOOD}").status_code == 202  # the name is free again


def test_spring_boot_load_errors_are_mleaps(spring, models_dir):
    (models_dir / "rental" / "1.1" / "bundle").write_bytes(BUNDLE.read_bytes())  # not named *.zip: a folder
    for name, uri, error in (("nozip", "file:/models/rental/1.1/bundle", "FileSystemException"),
                             ("corrupt", f"file:{BROKEN}", None), ("absent", "file:/models/none.zip", None),
                             ("remote", "http://127.0.0.1:9/x.zip", None), ("s3", "s3://bucket/x.zip", None)):
        load(spring, name, uri)
        meta = requests.get(f"{spring.url}/models/{name}/meta", timeout=5)
        assert meta.status_code == 500 and meta.headers["X-MLeap-Load-Error"].startswith("ExecutorException: ")
    assert requests.get(f"{spring.url}/models/nozip/meta", timeout=5).status_code == 404
    load(spring, "absent", "file:/models/none.zip")
    meta = requests.get(f"{spring.url}/models/absent/meta", timeout=5)
    assert meta.headers["X-MLeap-Load-Error"] == "ExecutorException: file does not exist /models/none.zip"
    load(spring, "nozip", "file:/models/rental/1.1/bundle")
    meta = requests.get(f"{spring.url}/models/nozip/meta", timeout=5)
    assert meta.headers["X-MLeap-Load-Error"] == "ExecutorException: /models/rental/1.1/bundle/bundle.json: Not a directory"


def test_spring_boot_http_uris_fail_as_mleaps_http_repository(spring):
    """combust/mleap#513: the temporary file exists before the copy, so every http(s) load fails."""
    import http.server
    import threading

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        load(spring, "remote", f"http://127.0.0.1:{site.server_address[1]}/x.zip")
        meta = requests.get(f"{spring.url}/models/remote/meta", timeout=5)
    finally:
        site.shutdown()
        site.server_close()
    assert meta.status_code == 500
    assert meta.headers["X-MLeap-Load-Error"] == f"ExecutorException: http://127.0.0.1:{site.server_address[1]}/x.zip"  # 404
    assert list((spring.state_dir / "tmp").glob("mleap*.bundle.zip"))  # left behind, as MLeap leaves them


def test_spring_boot_memory_timeout(spring):
    load_body = {"modelName": "idle", "uri": f"file:{GOOD}", "config": {"memoryTimeout": 600}}
    assert requests.post(f"{spring.url}/models", json=load_body, timeout=5).status_code == 202
    assert requests.get(f"{spring.url}/models/idle/meta", timeout=5).status_code == 200
    for _ in range(4):  # any request restarts the idle clock
        time.sleep(0.3)
        assert requests.get(f"{spring.url}/models/idle", timeout=5).status_code == 200
    time.sleep(0.9)
    assert requests.get(f"{spring.url}/models/idle", timeout=5).status_code == 404
    answer = requests.post(f"{spring.url}/models/idle/transform", json=SAMPLE, timeout=5).json()
    assert answer["error"] == "NotFoundException: no model with name idle"


def test_spring_boot_meta_times_out_empty_then_answers(spring):
    load(spring, "rental", f"file:{GOOD}")
    early = requests.get(f"{spring.url}/models/rental/meta", headers={"timeout": "50"}, timeout=5)
    assert (early.status_code, early.content) == (500, b"")
    assert requests.get(f"{spring.url}/models/rental/meta", timeout=5).status_code == 200


def test_spring_boot_unload_and_scoring_errors(spring):
    load(spring, "rental", f"file:{GOOD}")
    no_bathrooms = {"schema": {"fields": SAMPLE["schema"]["fields"][:1] + SAMPLE["schema"]["fields"][2:]},
                    "rows": [SAMPLE["rows"][0][:1] + SAMPLE["rows"][0][2:]]}
    missing = requests.post(f"{spring.url}/models/rental/transform", json=no_bathrooms, timeout=5)
    assert missing.status_code == 200
    assert missing.json()["status"] == "STATUS_ERROR" and "bathrooms" in missing.json()["error"]
    spring.fail_transform_next(1)
    assert requests.post(f"{spring.url}/models/rental/transform", json=SAMPLE, timeout=5).json()["status"] == "STATUS_ERROR"
    unknown = requests.post(f"{spring.url}/models/other/transform", json=SAMPLE, timeout=5).json()
    assert unknown["status"] == "STATUS_ERROR" and "other" in unknown["error"]
    assert requests.delete(f"{spring.url}/models/rental", timeout=5).status_code == 415  # consumes JSON only
    gone = requests.delete(f"{spring.url}/models/rental", headers=JSON_HEADERS, timeout=5)
    assert (gone.status_code, gone.json()["name"]) == (200, "rental")
    assert requests.delete(f"{spring.url}/models/rental", headers=JSON_HEADERS, timeout=5).status_code == 404
    assert requests.get(f"{spring.url}/models/rental", timeout=5).status_code == 404


# -- the product's hook against the stand-in -----------------------------------------------------------------
def use_connection(monkeypatch, server, models_dir):
    conn = {"conn_type": "http", "host": server.host, "port": server.port,
            "extra": {"api": server.api, "models_dir": str(models_dir), "models_mount": "/models"}}
    monkeypatch.setenv("AIRFLOW_CONN_MLEAP_TEST", json.dumps(conn))
    from model_governance.hooks.mleap import MLeapServingHook

    return MLeapServingHook("mleap_test", timeout=1.0, retry_backoff=0.01)


def test_the_hook_drives_the_legacy_api(legacy, models_dir, monkeypatch):
    from model_governance.exceptions import DeployError, ModelLoadError, ModelVerificationError
    from model_governance.deploy.verify import check_scoring

    hook = use_connection(monkeypatch, legacy, models_dir)
    assert (hook.api, hook.models_dir, hook.host_port) == ("legacy", models_dir, f"127.0.0.1:{legacy.port}")
    assert hook.model_schema() is None
    hook.load_model(GOOD)
    schema = hook.model_schema()
    assert INPUTS <= {f["name"] for f in schema["fields"]}
    scored = hook.transform(SAMPLE)
    assert prediction(scored) == pytest.approx(EXPECTED_PRICE)
    added = check_scoring(scored, SAMPLE, None)
    assert "price_prediction" in {f["name"] for f in added} and not INPUTS & {f["name"] for f in added}
    with pytest.raises(ModelLoadError):
        hook.load_model(BROKEN)
    assert hook.model_schema() == schema  # the failed load left the old model serving
    legacy.fail_next(2, status=503)  # retried
    assert hook.model_schema() == schema
    legacy.fail_next(4, status=503)  # retried until the attempts run out
    with pytest.raises(DeployError, match="kept answering"):
        hook.model_schema()
    legacy.hang(1.5)  # longer than the hook's timeout: the retry gets the answer
    assert hook.model_schema() == schema
    legacy.fail_transform_next(1)
    with pytest.raises(ModelVerificationError, match="500"):
        hook.transform(SAMPLE)
    hook.unload_legacy()
    assert hook.model_schema() is None


def test_the_hook_drives_the_spring_boot_api(spring, models_dir, monkeypatch):
    from model_governance.exceptions import DeployError, ModelLoadError, ModelVerificationError
    from model_governance.deploy.verify import check_scoring

    hook = use_connection(monkeypatch, spring, models_dir)
    hook.submit_model("rental", f"file:{GOOD}")
    meta = hook.wait_loaded("rental", timeout=10, poll=0.05)
    assert {f["name"] for f in meta["inputSchema"]["fields"]} == INPUTS
    assert hook.get_model("rental")["uri"] == f"file:{GOOD}"
    scored = hook.transform_named("rental", SAMPLE)
    assert prediction(scored) == pytest.approx(EXPECTED_PRICE)
    check_scoring(scored, SAMPLE, [f["name"] for f in meta["outputSchema"]["fields"]])
    with pytest.raises(ModelLoadError):
        hook.submit_model("rental", f"file:{GOOD}")  # taken
    hook.submit_model("broken", f"file:{BROKEN}")
    with pytest.raises(ModelLoadError):
        hook.wait_loaded("broken", timeout=10, poll=0.05)
    assert hook.get_model("broken") is None
    with pytest.raises(ModelVerificationError, match="invalid fields: bedrooms,security_deposit,"):  # as MLeap's StructType
        hook.transform_named("rental", {"schema": {"fields": SAMPLE["schema"]["fields"][:2]}, "rows": [SAMPLE["rows"][0][:2]]})
    assert hook.unload_model("rental") is True
    assert hook.unload_model("rental") is False
    assert hook.get_model("rental") is None
