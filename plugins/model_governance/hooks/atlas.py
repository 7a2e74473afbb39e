"""AtlasHook: Apache Atlas's REST API v2 behind an Airflow connection (`atlas_default`, type `atlas`).

Connection: host, port (default 21000), login, password; schema "https" for TLS; extras `verify` (TLS
certificate check, default true), `cluster_name` (Atlas's atlas.cluster.name, default "primary"),
`timeout` (seconds). A connection of type `http` with the same fields works too.

REST calls only: what the calls mean to this project (the `model` type, the searches, supersede) lives
in `model_governance.atlas`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

import requests

from model_governance.connections import ATLAS_CONN_ID
from model_governance.exceptions import AtlasError, AtlasRefusedError
from model_governance.hooks._rest import RestHook, response_text

if TYPE_CHECKING:
    from airflow.sdk import Connection

API = "/api/atlas/v2"
DEFAULT_PORT = 21000


class AtlasHook(RestHook):
    """Apache Atlas's REST API v2; errors raised as `AtlasError` with Atlas's own error code and message.

    A 5xx or a failed connection is retried (with backoff); a 4xx is an answer: `AtlasRefusedError`, which
    fails the task without Airflow's retries.

    :param atlas_conn_id: the Airflow connection of Atlas.
    :param timeout: seconds to wait for an answer (default: the connection's extra `timeout`, else 30).
    :param retry_backoff: seconds before the first retry; each later one waits twice as long.
    """

    conn_name_attr = "atlas_conn_id"
    default_conn_name = ATLAS_CONN_ID
    conn_type = "atlas"
    hook_name = "Apache Atlas"
    own_extras = frozenset({"cluster_name", "timeout"})
    transient_statuses = frozenset(range(500, 600))  # a 5xx from Atlas is its own failure: worth another try
    default_timeout = 30.0

    ui_relabeling: ClassVar[dict[str, str]] = {"login": "User"}
    ui_placeholders: ClassVar[dict[str, str]] = {
        "host": "atlas.example.com",
        "port": str(DEFAULT_PORT),
        "login": "admin",
        "extra": json.dumps({"verify": True, "cluster_name": "primary", "timeout": 30}),
    }

    def __init__(self, atlas_conn_id: str = ATLAS_CONN_ID, **kwargs: Any) -> None:
        super().__init__(atlas_conn_id, **kwargs)
        self.atlas_conn_id = atlas_conn_id

    def _set_base_url(self, connection: Connection) -> None:
        super()._set_base_url(connection)
        if not connection.port and "://" not in (connection.host or ""):
            self.base_url = f"{self.base_url}:{DEFAULT_PORT}"  # Atlas's own port

    @property
    def cluster_name(self) -> str:
        """Atlas's name for the Hadoop cluster (atlas.cluster.name), in every hdfs_path's qualifiedName."""
        return str(self.extras.get("cluster_name", "primary"))

    def entity_url(self, guid: str) -> str:
        """The entity's page in Atlas's web UI.

        :param guid: the entity's guid.
        """
        return f"{self.url}/index.html#!/detailPage/{guid}"

    def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        """One call to `/api/atlas/v2<path>`; the parsed JSON answer, or `AtlasError` with Atlas's message.

        :param method: the HTTP method.
        :param path: the path after `/api/atlas/v2`.
        :param body: the JSON body.
        :param params: the query string.
        """
        conn = self.connection
        if not conn.host or not conn.login:
            raise AtlasError(f"connection {self.atlas_conn_id!r} needs a host, a login and a password")
        headers = {"Accept": "application/json"}
        try:
            response = self.call(method, f"{API}{path}", json=body, params=params, headers=headers)
        except requests.RequestException as exc:  # connection errors after the last retry
            raise AtlasError(f"Atlas at {self.url} cannot be reached: {exc}") from None
        if response.status_code >= 400:
            raise _atlas_error(response, method, path)
        return response.json() if response.content else {}

    def test_connection(self) -> tuple[bool, str]:
        """Ask Atlas for its version: a wrong host, port or password shows here."""
        try:
            return True, f"Connected to Apache Atlas {self._version()}"
        except Exception as exc:
            return False, str(exc)

    def _version(self) -> str:
        response = self.call("GET", "/api/atlas/admin/version", headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise _atlas_error(response, "GET", "/admin/version", prefix="/api/atlas")
        return str((response.json() if response.content else {}).get("Version", "(version not given)"))

    # -- the calls this project makes -------------------------------------------------------------------
    def get_typedef(self, name: str) -> dict[str, Any] | None:
        """`GET /types/typedef/name/{name}`; None when Atlas has no such type.

        :param name: the type's name.
        """
        try:
            return self.request("GET", f"/types/typedef/name/{name}")
        except AtlasError as exc:
            if exc.status == 404:
                return None
            raise

    def create_typedefs(self, typedefs: dict[str, Any]) -> dict[str, Any]:
        """`POST /types/typedefs`.

        :param typedefs: an AtlasTypesDef (`entityDefs`, `relationshipDefs`…).
        """
        return self.request("POST", "/types/typedefs", typedefs)

    def update_typedefs(self, typedefs: dict[str, Any]) -> dict[str, Any]:
        """`PUT /types/typedefs`.

        :param typedefs: an AtlasTypesDef with the types' new definitions.
        """
        return self.request("PUT", "/types/typedefs", typedefs)

    def upsert_entities(
        self, entities: list[dict[str, Any]], referred: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """`POST /entity/bulk`: creates, or updates by unique attribute; the EntityMutationResponse back.

        :param entities: the entities (typeName, attributes, relationshipAttributes).
        :param referred: referred entities by guid, if any.
        """
        return self.request(
            "POST", "/entity/bulk", {"entities": entities, "referredEntities": referred or {}}
        )

    def get_entity(self, type_name: str, qualified_name: str) -> dict[str, Any] | None:
        """`GET /entity/uniqueAttribute/type/{type}?attr:qualifiedName=…`; None when there is none.

        :param type_name: the entity's type.
        :param qualified_name: its unique qualifiedName.
        """
        try:
            params = {"attr:qualifiedName": qualified_name}
            return self.request("GET", f"/entity/uniqueAttribute/type/{type_name}", params=params)
        except AtlasError as exc:
            if exc.status == 404:
                return None
            raise

    def get_entity_by_guid(self, guid: str) -> dict[str, Any]:
        """`GET /entity/guid/{guid}`.

        :param guid: the entity's guid.
        """
        return self.request("GET", f"/entity/guid/{guid}")

    def get_lineage(self, guid: str, direction: str = "BOTH", depth: int = 3) -> dict[str, Any]:
        """`GET /lineage/{guid}`: the entities (`guidEntityMap`) and edges (`relations`) around an entity.

        :param guid: the DataSet's or Process's guid.
        :param direction: INPUT, OUTPUT or BOTH.
        :param depth: how many processes away to walk.
        """
        return self.request("GET", f"/lineage/{guid}", params={"direction": direction, "depth": depth})

    def search_basic(self, query: dict[str, Any]) -> dict[str, Any]:
        """`POST /search/basic`.

        :param query: a SearchParameters body (see `model_governance.atlas.queries.search_body`).
        """
        return self.request("POST", "/search/basic", query)


def _atlas_error(response: requests.Response, method: str, path: str, prefix: str = API) -> AtlasError:
    """Atlas's error code and message, never the request (which may carry credentials in headers)."""
    code = message = None
    try:
        body = response.json()
        code, message = body.get("errorCode"), body.get("errorMessage")
    except (ValueError, AttributeError):
        pass
    status = response.status_code
    if status == 401:
        message = "authentication failed: check the Atlas connection's login and password"
    text = f"Atlas {method} {prefix}{path} answered {status}"
    if code:
        text += f" {code}"
    text += f": {message or response_text(response).strip() or response.reason}"
    refused = 400 <= status < 500  # an answer, not a failure: no retries
    return (AtlasRefusedError if refused else AtlasError)(text, status=status, error_code=code)
