"""AtlasHook: Apache Atlas's REST v2 behind an Airflow http connection (`atlas_default`), over pyatlasclient.

Connection: host, port (21000), login, password; schema "https" for TLS; extra `verify` (default true).
pyatlasclient's model helpers lose answers (`entity_bulk.create` returns None) and turn 404/500 into None,
so this hook uses its raw calls, which return parsed JSON and raise on a status of 400 or more, and turns
those errors into `AtlasError`s that carry Atlas's own error code and message.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

from model_governance.exceptions import AtlasError, AtlasRefusedError
from model_governance.hooks._service import ServiceHook
from model_governance.retry import with_retries

API = "/api/atlas/v2"


def _is_transient(exc: BaseException) -> bool:
    import requests
    from atlasclient.exceptions import HttpError

    if isinstance(exc, HttpError):
        return exc.code >= 500
    return isinstance(exc, (requests.ConnectionError, requests.Timeout))


class AtlasHook(ServiceHook):
    conn_name_attr = "atlas_conn_id"
    default_conn_name = "atlas_default"
    conn_type = "http"
    hook_name = "Apache Atlas"
    default_timeout = 30.0

    def __init__(self, atlas_conn_id: str = default_conn_name, timeout: float | None = None, retry_backoff: float = 0.5):
        super().__init__(atlas_conn_id, timeout, retry_backoff)
        self.atlas_conn_id = atlas_conn_id

    @property
    def base_url(self) -> str:
        conn = self.connection
        return f"{conn.schema or 'http'}://{conn.host}:{conn.port or 21000}"

    @property
    def cluster_name(self) -> str:
        """Atlas's name for the Hadoop cluster (atlas.cluster.name), part of every hdfs_path's qualifiedName."""
        return self.connection.extra_dejson.get("cluster_name", "primary")

    def entity_url(self, guid: str) -> str:
        """The entity's page in Atlas's web UI."""
        return f"{self.base_url}/index.html#!/detailPage/{guid}"

    def get_conn(self):
        """The pyatlasclient client; retries are this hook's (with backoff), not the client's."""
        from atlasclient.client import Atlas

        conn = self.connection
        if not conn.host or not conn.login:
            raise AtlasError(f"connection {self.atlas_conn_id!r} needs a host, a login and a password")
        return Atlas(
            conn.host,
            port=conn.port or 21000,
            username=conn.login,
            password=conn.password,
            protocol=conn.schema or "http",
            validate_ssl=str(conn.extra_dejson.get("verify", True)).lower() not in ("false", "0", "no"),
            timeout=self.timeout,
            max_retries=0,
        )

    @cached_property
    def client(self):
        return self.get_conn()

    def call(self, method: str, path: str, data: Any = None, params: dict[str, Any] | None = None) -> Any:
        """One REST call; Atlas's errors raised as AtlasError, 5xx and connection errors retried."""
        import requests
        from atlasclient.exceptions import HttpError

        url = f"{self.base_url}{API}{path}"
        kwargs: dict[str, Any] = {}
        if data is not None:
            kwargs["data"] = data  # a dict or list: pyatlasclient encodes it once (a str it would encode twice)
        if params:
            kwargs["params"] = params

        def once() -> Any:
            return self.client.client.request(method.lower(), url, **kwargs)

        try:
            return with_retries(once, f"Atlas {method} {path}", backoff=self.retry_backoff, transient=_is_transient)
        except HttpError as exc:
            raise _atlas_error(exc, method, path) from None
        except requests.RequestException as exc:  # connection errors after the last retry
            raise AtlasError(f"Atlas at {self.base_url} cannot be reached: {exc}") from None

    # -- the calls this project makes -------------------------------------------------------------------
    def get_typedef(self, name: str) -> dict[str, Any] | None:
        try:
            return self.call("GET", f"/types/typedef/name/{name}")
        except AtlasError as exc:
            if exc.status == 404:
                return None
            raise

    def create_typedefs(self, typedefs: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", "/types/typedefs", typedefs)

    def update_typedefs(self, typedefs: dict[str, Any]) -> dict[str, Any]:
        return self.call("PUT", "/types/typedefs", typedefs)

    def upsert_entities(self, entities: list[dict[str, Any]], referred: dict[str, Any] | None = None) -> dict[str, Any]:
        """`POST /entity/bulk`: creates, or updates by unique attribute; the EntityMutationResponse back."""
        return self.call("POST", "/entity/bulk", {"entities": entities, "referredEntities": referred or {}})

    def get_entity(self, type_name: str, qualified_name: str) -> dict[str, Any] | None:
        try:
            return self.call("GET", f"/entity/uniqueAttribute/type/{type_name}", params={"attr:qualifiedName": qualified_name})
        except AtlasError as exc:
            if exc.status == 404:
                return None
            raise

    def get_entity_by_guid(self, guid: str) -> dict[str, Any]:
        return self.call("GET", f"/entity/guid/{guid}")

    def search_basic(self, query: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", "/search/basic", query)

    def search_all(self, query: dict[str, Any], page: int = 100) -> list[dict[str, Any]]:
        """Every entity header a basic search finds, page by page."""
        found: list[dict[str, Any]] = []
        while True:
            answer = self.search_basic({**query, "limit": page, "offset": len(found)})
            entities = answer.get("entities") or []
            found.extend(entities)
            if len(entities) < page:
                return found

    def supersede(self, target: str, current: str) -> list[str]:
        """Mark every other deployment still `deployed` at target as superseded by current; their qualifiedNames."""
        from model_governance.atlas_types import DEPLOYED, MODEL_TYPE, SUPERSEDED

        query = {
            "typeName": MODEL_TYPE,
            "excludeDeletedEntities": True,
            "entityFilters": {
                "condition": "AND",
                "criterion": [
                    {"attributeName": "deployTarget", "operator": "=", "attributeValue": target},
                    {"attributeName": "deployStatus", "operator": "=", "attributeValue": DEPLOYED},
                ],
            },
        }
        replaced = []
        for header in self.search_all(query):
            qualified_name = header["attributes"]["qualifiedName"]
            if qualified_name == current:
                continue
            # Re-post the whole entity with the new status: a bulk upsert of a subset could blank the rest.
            entity = self.get_entity_by_guid(header["guid"])["entity"]
            attributes = {**entity["attributes"], "deployStatus": SUPERSEDED, "supersededBy": current}
            self.upsert_entities([{"typeName": MODEL_TYPE, "attributes": attributes}])
            replaced.append(qualified_name)
        return replaced


def _atlas_error(exc: Any, method: str, path: str) -> AtlasError:
    """Atlas's error code and message, never the request (which may carry credentials in headers)."""
    code = message = None
    try:
        body = json.loads(exc.details or "")
        code, message = body.get("errorCode"), body.get("errorMessage")
    except (ValueError, AttributeError):
        pass
    if exc.code == 401:
        message = "authentication failed: check the Atlas connection's login and password"
    text = f"Atlas {method} {API}{path} answered {exc.code}"
    if code:
        text += f" {code}"
    text += f": {message or (exc.details or '').strip()[:500] or exc.message}"
    refused = exc.code is not None and 400 <= exc.code < 500  # an answer, not a failure: no retries
    return (AtlasRefusedError if refused else AtlasError)(text, status=exc.code, error_code=code)
