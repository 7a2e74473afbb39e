"""What the project's REST hooks take from Airflow's `HttpHook`, written once: the session (base URL from
the connection, basic auth from login/password, TLS and proxies from the extras), a timeout, and retries
with tenacity through `run_with_advanced_retry`.

Only transient failures are retried: a connection that failed or timed out, and the statuses a hook names
(a proxy's 502/503/504, or a service starting up). Anything else is an answer, and asking again would
only repeat it.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

import requests
import tenacity
from airflow.providers.http.hooks.http import HttpHook

if TYPE_CHECKING:
    from airflow.sdk import Connection

log = logging.getLogger(__name__)

TRANSIENT_STATUSES = frozenset({502, 503, 504})
FALSE_WORDS = ("false", "0", "no")


class RestHook(HttpHook):
    """An `HttpHook` for one JSON REST service; subclasses add the service's calls.

    :param conn_id: the Airflow connection of the service.
    :param timeout: seconds to wait for an answer; default the connection's extra `timeout`, else
        `default_timeout`.
    :param retry_backoff: seconds before the first retry; each later one waits twice as long.
    """

    own_extras: frozenset[str] = frozenset()  # the hook's settings: never sent as HTTP headers
    ui_relabeling: ClassVar[dict[str, str]] = {}  # the connection form's labels, beyond the common ones
    ui_placeholders: ClassVar[dict[str, str]] = {}  # and its placeholders: the service's defaults
    default_timeout = 30.0
    retry_attempts = 4
    transient_statuses: frozenset[int] = TRANSIENT_STATUSES

    def __init__(self, conn_id: str, timeout: float | None = None, retry_backoff: float = 0.5) -> None:
        super().__init__(method="GET", http_conn_id=conn_id)
        self._timeout = timeout
        self.retry_backoff = retry_backoff

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form: the service's fields, its defaults and an example extra as placeholders."""
        return {
            "hidden_fields": [],
            "relabeling": {
                "schema": "Protocol (http or https)",
                "extra": "Extra (JSON)",
                **cls.ui_relabeling,
            },
            "placeholders": {"schema": "http", **cls.ui_placeholders},
        }

    @cached_property
    def connection(self) -> Connection:
        return self.get_connection(self.http_conn_id)

    @property
    def extras(self) -> dict[str, Any]:
        return self.connection.extra_dejson

    @property
    def url(self) -> str:
        """The service's base URL, as HttpHook builds it from the connection (schema, host, port)."""
        if not self.base_url:
            self._set_base_url(self.connection)
        return self.base_url

    @property
    def timeout(self) -> float:
        """Seconds to wait for an answer: the argument, else the extra `timeout`, else the default."""
        if self._timeout is not None:
            return self._timeout
        return float(self.extras.get("timeout", self.default_timeout))

    def _configure_session_from_extra(
        self, session: requests.Session, connection: Connection, extra_options: dict[str, Any]
    ) -> requests.Session:
        # HttpHook sends every extra it does not know as a header: not this hook's own settings.
        session = super()._configure_session_from_extra(session, connection, extra_options)
        for key in self.own_extras:
            session.headers.pop(key, None)
        if isinstance(session.verify, str) and session.verify.strip().lower() in FALSE_WORDS:
            session.verify = False  # "false" from a UI form, not a CA bundle's path
        return session

    def _is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, (requests.ConnectionError, requests.Timeout))

    def retry_args(self) -> dict[str, Any]:
        """tenacity's arguments: `retry_attempts` tries, exponential backoff, the last answer returned."""
        return {
            "stop": tenacity.stop_after_attempt(self.retry_attempts),
            "wait": tenacity.wait_exponential(multiplier=self.retry_backoff),
            "retry": tenacity.retry_if_exception(self._is_transient)
            | tenacity.retry_if_result(lambda response: response.status_code in self.transient_statuses),
            "before_sleep": tenacity.before_sleep_log(log, logging.WARNING),
            # after the last try: its answer back (the caller reports it), or its exception raised
            "retry_error_callback": lambda state: state.outcome.result() if state.outcome else None,
        }

    def call(
        self,
        method: str,
        endpoint: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        retry: bool = True,
    ) -> requests.Response:
        """One REST call; every answer is returned (no status check), transient failures retried first.

        :param method: the HTTP method.
        :param endpoint: the path after the connection's base URL, e.g. `/model`.
        :param json: the body, sent as JSON.
        :param params: the query string.
        :param headers: headers for this call only.
        :param retry: False for a call that must never be sent twice (it may have acted already).
        """
        self.method = method.upper()  # HttpHook.run sends self.method
        options: dict[str, Any] = {"check_response": False, "timeout": self.timeout}
        kwargs: dict[str, Any] = {}
        if json is not None:
            kwargs["json"] = json
        if params and self.method != "GET":
            kwargs["params"] = params
        data = params if self.method == "GET" else None  # HttpHook sends a GET's data as its query string
        if not retry:
            return self.run(endpoint, data, headers, options, **kwargs)
        return self.run_with_advanced_retry(self.retry_args(), endpoint, data, headers, options, **kwargs)


def response_text(response: requests.Response, limit: int = 500) -> str:
    """A response body for an error message: compact JSON, else the start of the text."""
    import json

    try:
        return json.dumps(response.json())[:limit]
    except ValueError:
        return response.text[:limit]
