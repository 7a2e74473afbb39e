"""MLeapServingHook: an MLeap serving microservice behind an Airflow connection (`mleap_default`,
type `mleap`).

Connection: host, port; schema "https" for TLS; login/password if a proxy asks for them. Extras:
    api                "legacy" (mleap-serving, `PUT /model`, one model per server; the seed's)
                       or "spring-boot"
    models_dir         the folder, as this worker sees it, that the server mounts (the seed's
                       `-v /tmp/models:/models`)
    models_mount       the same folder as the server sees it; default "/models"
    delivery           "models_dir" (default); "webhdfs" is refused (see `deploy.delivery`)
    memory_timeout_ms  spring-boot: idle time before the server unloads a model; default 180 days
                       (never, in practice)
    disk_timeout_ms    spring-boot: the same for its disk cache; default as memory_timeout_ms
    timeout            seconds to wait for an answer
A connection of type `http` with the same fields works too.

REST calls only: how a deployment uses them (delivery, swap, rollback, checks) lives in
`model_governance.deploy`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar

import requests

from model_governance.connections import MLEAP_CONN_ID
from model_governance.exceptions import (
    DeployError,
    ModelLoadError,
    ModelVerificationError,
    ServingConfigError,
)
from model_governance.hooks._rest import RestHook, response_text

APIS = ("legacy", "spring-boot")
DELIVERIES = ("models_dir", "webhdfs")
# MLeap's executor turns the config's milliseconds into an akka receive timeout, after which the model's
# actor stops: "never" must still fit akka's scheduler (at most ~248 days with its 10 ms tick), so 180 days.
NEVER_MS = 180 * 24 * 3600 * 1000
EMPTY_400 = "(empty body: a model of that name exists, or the request is malformed)"


class MLeapServingHook(RestHook):
    """MLeap serving's two HTTP APIs: legacy mleap-serving (one model) and mleap-spring-boot (named models).

    Connection errors and 502/503/504 are retried with backoff, except for the legacy `PUT /model`, which
    is sent once (see `load_model`).

    :param mleap_conn_id: the Airflow connection of the serving host.
    :param timeout: seconds to wait for an answer (default: the connection's extra `timeout`, else 60).
    :param retry_backoff: seconds before the first retry; each later one waits twice as long.
    """

    conn_name_attr = "mleap_conn_id"
    default_conn_name = MLEAP_CONN_ID
    conn_type = "mleap"
    hook_name = "MLeap serving"
    own_extras = frozenset(
        {"api", "models_dir", "models_mount", "delivery", "memory_timeout_ms", "disk_timeout_ms", "timeout"}
    )
    default_timeout = 60.0

    ui_placeholders: ClassVar[dict[str, str]] = {
        "host": "mleap.example.com",
        "port": "65327",
        "extra": json.dumps({"api": "legacy", "models_dir": "/srv/mleap/models", "models_mount": "/models"}),
    }

    def __init__(self, mleap_conn_id: str = MLEAP_CONN_ID, **kwargs: Any) -> None:
        super().__init__(mleap_conn_id, **kwargs)
        self.mleap_conn_id = mleap_conn_id

    # -- the connection's settings ------------------------------------------------------------------------
    @property
    def host_port(self) -> str:
        conn = self.connection
        if not conn.host:
            raise ServingConfigError(f"connection {self.mleap_conn_id!r} has no host")
        return f"{conn.host}:{conn.port}" if conn.port else str(conn.host)

    @property
    def api(self) -> str:
        return self._choice("api", "legacy", APIS)

    @property
    def delivery(self) -> str:
        """How the bundle reaches the server: `models_dir` (copied to the folder it mounts) or `webhdfs`."""
        return self._choice("delivery", "models_dir", DELIVERIES)

    @property
    def models_dir(self) -> Path:
        folder = self.extras.get("models_dir")
        if not folder:
            raise ServingConfigError(
                f"connection {self.mleap_conn_id!r} has no extra models_dir: "
                "the folder the serving host mounts "
                f"as {self.models_mount}, where the deploy step puts the bundle"
            )
        return Path(folder)

    @property
    def models_mount(self) -> str:
        return str(self.extras.get("models_mount", "/models")).rstrip("/")

    @property
    def model_config(self) -> dict[str, int]:
        """spring-boot's load config: idle unload times in milliseconds (MLeap reads them as Longs)."""
        memory = self._millis("memory_timeout_ms", NEVER_MS)
        return {"memoryTimeout": memory, "diskTimeout": self._millis("disk_timeout_ms", memory)}

    def _choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = str(self.extras.get(key, default))
        if value not in allowed:
            raise ServingConfigError(
                f"connection {self.mleap_conn_id!r}: extra {key} {value!r} "
                f"must be one of {', '.join(allowed)}"
            )
        return value

    def _millis(self, key: str, default: int) -> int:
        value = self.extras.get(key, default)
        try:
            millis = int(value)
        except (TypeError, ValueError):
            millis = -1
        if not 0 < millis <= NEVER_MS:
            raise ServingConfigError(
                f"connection {self.mleap_conn_id!r}: extra {key} {value!r} "
                f"must be milliseconds between 1 and {NEVER_MS}"
            )
        return millis

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One call, retried on connection errors and 502/503/504; every other answer is returned.

        :param method: the HTTP method.
        :param path: the path after the connection's base URL.
        """
        try:
            response = self.call(method, path, **kwargs)
        except requests.RequestException as exc:
            raise DeployError(f"MLeap serving at {self.url} cannot be reached: {exc}") from exc
        if response.status_code in self.transient_statuses:
            raise DeployError(
                f"MLeap serving at {self.url} kept answering {response.status_code} {response.reason}"
            )
        return response

    def test_connection(self) -> tuple[bool, str]:
        """Legacy: `GET /model` answers (200 with a model, 500 without); spring-boot: `/actuator/health`."""
        try:
            if self.api == "legacy":
                status = self.request("GET", "/model").status_code
                return status in (200, 500), f"MLeap serving (legacy) answered {status}"
            response = self.request("GET", "/actuator/health")
            return (
                response.status_code == 200,
                f"MLeap serving (spring-boot) health: {response_text(response)}",
            )
        except Exception as exc:
            return False, str(exc)

    # -- the legacy mleap-serving API (the seed's) --------------------------------------------------------
    def load_model(self, server_path: str) -> bool:
        """`PUT /model {"path": …}`, sent once: the server reads the bundle from its own file system inside
        the request and swaps on success. True when it answered that the model loaded; False when the
        outcome is unknown: a 503 (akka-http's request timeout, 20 s by default) or no answer in time, while
        the load may go on and swap the model in later. Raises `ModelLoadError` when it refused the bundle.

        :param server_path: the bundle's path on the serving host.
        """
        try:
            response = self.call("PUT", "/model", json={"path": server_path}, retry=False)
        except requests.Timeout:
            return False
        except requests.RequestException as exc:
            raise DeployError(f"MLeap serving at {self.url} cannot be reached: {exc}") from exc
        if response.status_code in (503, 504):
            return False
        if response.status_code != 200:
            raise ModelLoadError(
                f"MLeap serving at {self.url} did not load {server_path}: {response.status_code} "
                f"{response_text(response)} "
                f"(is the bundle valid, and is {self.models_mount} mounted on the server?)"
            )
        return True

    def model_schema(self) -> dict[str, Any] | None:
        """`GET /model`: the loaded model's schema, or None when no model is loaded (a 500)."""
        response = self.request("GET", "/model")
        if response.status_code == 200:
            return response.json()
        if response.status_code == 500:
            return None
        raise DeployError(f"GET {self.url}/model answered {response.status_code} {response_text(response)}")

    def transform(self, frame: dict[str, Any]) -> dict[str, Any]:
        """`POST /transform` with a LeapFrame; the scored LeapFrame back.

        :param frame: the LeapFrame to score.
        """
        response = self.request("POST", "/transform", json=frame, headers={"Accept": "application/json"})
        if response.status_code != 200:
            # transient answers were retried in request(): what is left is the model failing to score
            raise ModelVerificationError(
                f"POST {self.url}/transform answered {response.status_code} {response_text(response)}"
            )
        return response.json()

    def unload_legacy(self) -> None:
        """`DELETE /model`: the legacy server then serves nothing."""
        self.request("DELETE", "/model")

    # -- the mleap-spring-boot API (named models, asynchronous load) ---------------------------------------
    def submit_model(self, name: str, uri: str, name_release: float = 0.0, poll: float = 0.1) -> None:
        """`POST /models`: 202 means only that the load started; `wait_loaded` says whether it worked.

        :param name: the model's name on the server.
        :param uri: the bundle's URI as the server reads it (`file:/models/…`).
        :param name_release: seconds to keep asking while the server answers 400, for a name unloaded just
            before: the executor stops a model's actor asynchronously, and its name stays taken until the
            stop is done (Akka's `InvalidActorNameException`, an empty 400).
        :param poll: seconds between two asks.
        """
        body = {"modelName": name, "uri": uri, "config": self.model_config, "force": False}
        deadline = time.monotonic() + name_release
        while True:
            response = self.request("POST", "/models", json=body)
            if response.status_code != 400 or time.monotonic() >= deadline:
                break
            time.sleep(poll)
        if response.status_code != 202:
            raise ModelLoadError(
                f"MLeap serving at {self.url} refused to load {uri} as {name!r}: {response.status_code} "
                f"{response_text(response) or EMPTY_400}"
            )

    def wait_loaded(self, name: str, timeout: float = 120.0, poll: float = 0.5) -> dict[str, Any]:
        """Poll `GET /models/{name}/meta`, the real loaded signal, until it answers or `timeout` passes.

        :param name: the model's name on the server.
        :param timeout: seconds to wait for the load.
        :param poll: seconds between two asks.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining_ms = max(int((deadline - time.monotonic()) * 1000), 1)
            headers = {"timeout": str(min(remaining_ms, 10000))}
            response = self.request("GET", f"/models/{name}/meta", headers=headers)
            if response.status_code == 200:
                return response.json()
            if response.status_code == 404:
                raise ModelLoadError(
                    f"MLeap serving at {self.url} dropped model {name!r}: "
                    "its load failed, or the server restarted"
                )
            if response.status_code == 500 and response.content.strip():
                raise ModelLoadError(
                    f"MLeap serving at {self.url} failed to load model {name!r}: {response_text(response)}"
                )
            if response.status_code != 500:  # an empty 500 is the server's own ask timeout: still loading
                raise DeployError(
                    f"GET {self.url}/models/{name}/meta answered "
                    f"{response.status_code} {response_text(response)}"
                )
            if time.monotonic() >= deadline:
                raise DeployError(
                    f"MLeap serving at {self.url} did not finish loading {name!r} within {timeout:.0f} s"
                )
            time.sleep(poll)

    def get_model(self, name: str) -> dict[str, Any] | None:
        """`GET /models/{name}`: the model as registered (with its uri), or None.

        :param name: the model's name on the server.
        """
        response = self.request("GET", f"/models/{name}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise DeployError(
                f"GET {self.url}/models/{name} answered {response.status_code} {response_text(response)}"
            )
        return response.json()

    def unload_model(self, name: str) -> bool:
        """`DELETE /models/{name}`; False when no such model was loaded.

        :param name: the model's name on the server.
        """
        response = self.request("DELETE", f"/models/{name}", headers={"Content-Type": "application/json"})
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise DeployError(
                f"DELETE {self.url}/models/{name} answered {response.status_code} {response_text(response)}"
            )
        return True

    def transform_named(self, name: str, frame: dict[str, Any]) -> dict[str, Any]:
        """`POST /models/{name}/transform`; spring-boot reports scoring errors as 200 with STATUS_ERROR.

        :param name: the model's name on the server.
        :param frame: the LeapFrame to score.
        """
        response = self.request(
            "POST", f"/models/{name}/transform", json=frame, headers={"Accept": "application/json"}
        )
        body = response.json() if response.content else {}
        if response.status_code != 200 or body.get("status") == "STATUS_ERROR":
            error = body.get("error") or response_text(response)
            raise ModelVerificationError(f"scoring with {name!r} failed: {response.status_code} {error}")
        return body
