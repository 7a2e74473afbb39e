"""Paths and small helpers the tests share."""

from __future__ import annotations

from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
EXAMPLE_STAGING = PROJECT / "examples" / "staging" / "rental-pricing-prediction"
DAGS = PROJECT / "dags"
PLUGINS = PROJECT / "plugins"
# `dag.test()` runs have no second person to approve them: the approval step is turned off, and logs a
# warning and records why (tests/test_approval.py drives the approval itself through real Airflow).
NO_APPROVAL = {"approval_required": False}


def stage_variant(folder: Path, name: str = "rental pricing prediction", version: str = "1.1", **keys: str) -> Path:
    """A copy of the example staged model under `folder` with its metadata changed (`owner_lob="x"` sets
    `model.owner.lob`); the bundle, code and data stay the example's."""
    import shutil

    staged = folder / f"{name}-{version}".replace(" ", "-")
    shutil.copytree(EXAMPLE_STAGING, staged)
    values = {"model.name": name, "model.version": version, **{"model." + k.replace("_", "."): v for k, v in keys.items()}}
    lines = []
    for line in (staged / "modelMetadata.txt").read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        lines.append(f"{key} = {values.pop(key)}" if key in values else line)
    lines += [f"{k} = {v}" for k, v in values.items()]
    (staged / "modelMetadata.txt").write_text("\n".join(lines) + "\n")
    return staged


def rebundle(source: Path, target: Path, drop: str | None = None, intercept_shift: float = 0.0, bundle_json: dict | None = None) -> Path:
    """A copy of an MLeap bundle zip with an entry prefix dropped, the linear regression's intercept moved
    (a different model that scores differently), or bundle.json replaced."""
    import json
    import zipfile

    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for item in src.infolist():
            if drop and item.filename.startswith(drop):
                continue
            data = src.read(item)
            if intercept_shift and item.filename == "root/linear_regression.node/model.json":
                model = json.loads(data)
                model["attributes"]["intercept"]["double"] += intercept_shift
                data = json.dumps(model).encode()
            if bundle_json is not None and item.filename == "bundle.json":
                data = json.dumps(bundle_json).encode()
            dst.writestr(item, data)
    return target


def load_dag(dag_id: str):
    """A DAG from dags/<dag_id>.py, loaded the way Airflow's DagBag loads it, with no import error."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / f"{dag_id}.py"))
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags[dag_id]


def atlas_call(conn: dict, method: str, path: str, **kwargs):
    """One call to the Atlas REST API v2 of a connection dict (as `devstack.connections` holds them)."""
    import requests

    url = f"http://{conn['host']}:{conn['port']}/api/atlas/v2{path}"
    return requests.request(method, url, auth=(conn["login"], conn["password"]), timeout=10, **kwargs)


def atlas_search(conn: dict, type_name: str = "model", **body) -> list[dict]:
    """The entity headers a basic search finds (`attributes=[...]`, `limit=...` go into the body)."""
    answer = atlas_call(conn, "POST", "/search/basic", json={"typeName": type_name, "limit": 100, **body})
    if answer.status_code == 400 and answer.json().get("errorCode") == "ATLAS-400-00-00A":
        return []  # the type does not exist yet: nothing was ever registered
    answer.raise_for_status()
    return answer.json().get("entities") or []


def atlas_entity(conn: dict, guid: str) -> dict:
    """An entity by guid, as Atlas returns it (its `entity` part)."""
    answer = atlas_call(conn, "GET", f"/entity/guid/{guid}")
    answer.raise_for_status()
    return answer.json()["entity"]


def mleap_base(conn: dict) -> str:
    """The base URL of an MLeap serving connection dict."""
    return f"http://{conn['host']}:{conn['port']}"


def scoring_url(base: str, api: str, name: str = "target") -> str:
    """Where a model scores: legacy serving's one `/transform`, or spring-boot's `/models/<name>/transform`."""
    return f"{base}/transform" if api == "legacy" else f"{base}/models/{name}/transform"


def score_at(url: str, frame: dict) -> dict | None:
    """The LeapFrame `url` answers for `frame`; None when nothing scores there (an error status, or
    spring-boot's 200 STATUS_ERROR)."""
    import requests

    answer = requests.post(url, json=frame, timeout=30)
    if answer.status_code != 200:
        return None
    body = answer.json()
    return None if body.get("status") == "STATUS_ERROR" else body


def predict_at(url: str, frame: dict, field: str = "price_prediction") -> float | None:
    """The first row's `field` scored at `url`; None when nothing serves there."""
    scored = score_at(url, frame)
    if scored is None:
        return None
    return scored["rows"][0][[f["name"] for f in scored["schema"]["fields"]].index(field)]


def mleap_api(devstack, conn_id: str = "mleap_default") -> str:
    """The API the stack's MLeap serving speaks: "legacy" (the stand-in) or "spring-boot" (the real host)."""
    return (devstack.connections[conn_id].get("extra") or {}).get("api", "legacy")


def serving_inputs(devstack, name: str = "target", conn_id: str = "mleap_default") -> set[str]:
    """The field names the served model reports: legacy `GET /model` (the transformer's whole schema), or
    spring-boot `GET /models/<name>/meta` (its input schema). Empty when nothing serves."""
    import requests

    base = mleap_base(devstack.connections[conn_id])
    if mleap_api(devstack, conn_id) == "legacy":
        answer = requests.get(f"{base}/model", timeout=30)
        return {f["name"] for f in answer.json()["fields"]} if answer.status_code == 200 else set()
    answer = requests.get(f"{base}/models/{name}/meta", timeout=30)
    return {f["name"] for f in answer.json()["inputSchema"]["fields"]} if answer.status_code == 200 else set()


def predict(devstack, frame: dict | None = None, name: str = "target", conn_id: str = "mleap_default") -> float | None:
    """What the stack's MLeap serving predicts for `frame` (the example's sample request by default), through
    its connection's API: the legacy stand-in, or spring-boot (the real MLeap runtime host)."""
    import json

    conn = devstack.connections[conn_id]
    api = mleap_api(devstack, conn_id)
    frame = frame or json.loads((EXAMPLE_STAGING / "samples/leapframe.json").read_text())
    return predict_at(scoring_url(mleap_base(conn), api, name), frame)
