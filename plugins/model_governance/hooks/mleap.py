"""MLeapServingHook: the MLeap serving microservice behind an Airflow http connection (`mleap_default`).

Connection extras:
    api           "legacy" (mleap-serving, `PUT /model`, one model per server; the seed's) or "spring-boot"
    models_dir    the folder, as this worker sees it, that the server mounts (the seed's `-v /tmp/models:/models`)
    models_mount  the same folder as the server sees it; default "/models"
"""

from __future__ import annotations

import json
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import requests

from model_governance.exceptions import DeployError, ModelLoadError, ModelVerificationError
from model_governance.hooks._service import ServiceHook
from model_governance.retry import TRANSIENT_STATUSES, TransientHTTPError, with_retries

APIS = ("legacy", "spring-boot")


class MLeapServingHook(ServiceHook):
    conn_name_attr = "mleap_conn_id"
    default_conn_name = "mleap_default"
    conn_type = "http"
    hook_name = "MLeap serving"
    default_timeout = 60.0

    def __init__(self, mleap_conn_id: str = default_conn_name, timeout: float | None = None, retry_backoff: float = 0.5):
        super().__init__(mleap_conn_id, timeout, retry_backoff)
        self.mleap_conn_id = mleap_conn_id

    @property
    def host_port(self) -> str:
        conn = self.connection
        if not conn.host:
            raise DeployError(f"connection {self.mleap_conn_id!r} has no host")
        return f"{conn.host}:{conn.port}" if conn.port else conn.host

    @property
    def base_url(self) -> str:
        return f"{self.connection.schema or 'http'}://{self.host_port}"

    @property
    def api(self) -> str:
        api = self.connection.extra_dejson.get("api", "legacy")
        if api not in APIS:
            raise DeployError(f"connection {self.mleap_conn_id!r}: extra api {api!r} must be one of {', '.join(APIS)}")
        return api

    @property
    def models_dir(self) -> Path:
        folder = self.connection.extra_dejson.get("models_dir")
        if not folder:
            raise DeployError(
                f"connection {self.mleap_conn_id!r} has no extra models_dir: the folder the serving host mounts as "
                f"{self.models_mount}, where the deploy step puts the bundle"
            )
        return Path(folder)

    @property
    def delivery(self) -> str:
        """How the bundle reaches the server: `models_dir` (copied to the folder it mounts) or `webhdfs`."""
        delivery = self.connection.extra_dejson.get("delivery", "models_dir")
        if delivery not in ("models_dir", "webhdfs"):
            raise DeployError(f"connection {self.mleap_conn_id!r}: extra delivery {delivery!r} must be models_dir or webhdfs")
        return delivery

    @property
    def models_mount(self) -> str:
        return self.connection.extra_dejson.get("models_mount", "/models").rstrip("/")

    @cached_property
    def session(self) -> requests.Session:
        session = requests.Session()
        conn = self.connection
        if conn.login:
            session.auth = (conn.login, conn.password or "")
        return session

    def get_conn(self) -> requests.Session:
        return self.session

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One call with retries on connection errors and 502/503/504; every other answer is returned."""
        url = f"{self.base_url}{path}"

        def call() -> requests.Response:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            if response.status_code in TRANSIENT_STATUSES:
                raise TransientHTTPError(response)
            return response

        try:
            return with_retries(call, f"{method} {url}", backoff=self.retry_backoff)
        except TransientHTTPError as exc:
            raise DeployError(f"MLeap serving at {self.base_url} kept answering {exc}") from exc
        except requests.RequestException as exc:
            raise DeployError(f"MLeap serving at {self.base_url} cannot be reached: {exc}") from exc

    # -- the legacy mleap-serving API (the seed's) --------------------------------------------------------
    def load_model(self, server_path: str) -> None:
        """`PUT /model {"path": …}`: the server reads the bundle from its own file system and swaps on success."""
        response = self.request("PUT", "/model", json={"path": server_path})
        if response.status_code != 200:
            raise ModelLoadError(
                f"MLeap serving at {self.base_url} did not load {server_path}: {response.status_code} "
                f"{_text(response)} (is the bundle valid, and is {self.models_mount} mounted on the server?)"
            )

    def model_schema(self) -> dict[str, Any] | None:
        """`GET /model`: the loaded model's input schema, or None when no model is loaded (a 500)."""
        response = self.request("GET", "/model")
        if response.status_code == 200:
            return response.json()
        if response.status_code == 500:
            return None
        raise DeployError(f"GET {self.base_url}/model answered {response.status_code} {_text(response)}")

    def transform(self, frame: dict[str, Any]) -> dict[str, Any]:
        """`POST /transform` with a LeapFrame; the scored LeapFrame back."""
        response = self.request("POST", "/transform", json=frame, headers={"Accept": "application/json"})
        if response.status_code != 200:
            # transient answers were retried in request(): what is left is the model failing to score
            raise ModelVerificationError(f"POST {self.base_url}/transform answered {response.status_code} {_text(response)}")
        return response.json()

    # -- the mleap-spring-boot API (named models, asynchronous load) ---------------------------------------
    def submit_model(self, name: str, uri: str) -> None:
        """`POST /models`: 202 means only that the load started; `wait_loaded` says whether it worked."""
        body = {"modelName": name, "uri": uri, "config": {"memoryTimeout": 900000, "diskTimeout": 900000}, "force": False}
        response = self.request("POST", "/models", json=body)
        if response.status_code != 202:
            raise ModelLoadError(
                f"MLeap serving at {self.base_url} refused to load {uri} as {name!r}: {response.status_code} "
                f"{_text(response) or '(empty body: a model of that name exists, or the request is malformed)'}"
            )

    def wait_loaded(self, name: str, timeout: float = 120.0, poll: float = 0.5) -> dict[str, Any]:
        """Poll `GET /models/{name}/meta`, the real loaded signal, until it answers or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            remaining_ms = max(int((deadline - time.monotonic()) * 1000), 1)
            response = self.request("GET", f"/models/{name}/meta", headers={"timeout": str(min(remaining_ms, 10000))})
            if response.status_code == 200:
                return response.json()
            if response.status_code == 404:
                raise ModelLoadError(f"MLeap serving at {self.base_url} dropped model {name!r}: its load failed")
            if response.status_code == 500 and response.content.strip():
                raise ModelLoadError(f"MLeap serving at {self.base_url} failed to load model {name!r}: {_text(response)}")
            if response.status_code != 500:  # an empty 500 is the server's own ask timeout: still loading
                raise DeployError(f"GET {self.base_url}/models/{name}/meta answered {response.status_code} {_text(response)}")
            if time.monotonic() >= deadline:
                raise DeployError(f"MLeap serving at {self.base_url} did not finish loading {name!r} within {timeout:.0f} s")
            time.sleep(poll)

    def get_model(self, name: str) -> dict[str, Any] | None:
        """`GET /models/{name}`: the model as registered (with its uri), or None."""
        response = self.request("GET", f"/models/{name}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise DeployError(f"GET {self.base_url}/models/{name} answered {response.status_code} {_text(response)}")
        return response.json()

    def unload_model(self, name: str) -> bool:
        """`DELETE /models/{name}`; False when no such model was loaded."""
        response = self.request("DELETE", f"/models/{name}", headers={"Content-Type": "application/json"})
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise DeployError(f"DELETE {self.base_url}/models/{name} answered {response.status_code} {_text(response)}")
        return True

    def transform_named(self, name: str, frame: dict[str, Any]) -> dict[str, Any]:
        """`POST /models/{name}/transform`; spring-boot reports scoring errors as 200 with STATUS_ERROR."""
        response = self.request("POST", f"/models/{name}/transform", json=frame, headers={"Accept": "application/json"})
        body = response.json() if response.content else {}
        if response.status_code != 200 or body.get("status") == "STATUS_ERROR":
            raise ModelVerificationError(f"scoring with {name!r} failed: {response.status_code} {body.get('error') or _text(response)}")
        return body

    def unload_legacy(self) -> None:
        """`DELETE /model`: the legacy server then serves nothing."""
        self.request("DELETE", "/model")


def _text(response: requests.Response) -> str:
    try:
        return json.dumps(response.json())[:500]
    except ValueError:
        return response.text[:500]
