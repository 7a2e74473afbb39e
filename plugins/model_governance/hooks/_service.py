"""What the project's HTTP service hooks share: their connection, a timeout, and a retry backoff."""

from __future__ import annotations

from functools import cached_property

from airflow.sdk import BaseHook


class ServiceHook(BaseHook):
    default_timeout = 30.0  # seconds

    def __init__(self, conn_id: str, timeout: float | None = None, retry_backoff: float = 0.5):
        super().__init__()
        self.conn_id = conn_id
        self._timeout = timeout
        self.retry_backoff = retry_backoff

    @property
    def timeout(self) -> float:
        """Seconds to wait for an answer: the argument, else the connection's extra `timeout`, else the default."""
        if self._timeout is not None:
            return self._timeout
        return float(self.connection.extra_dejson.get("timeout", self.default_timeout))

    @cached_property
    def connection(self):
        return self.get_connection(self.conn_id)
