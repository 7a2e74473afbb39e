"""Retries with exponential backoff for calls to remote services, written once for every hook.

Only transient failures are retried: a connection that failed or timed out, and 502/503/504 from a proxy
or a service starting up. A 4xx, or a 500 that reports a real failure (a model that did not load), is an
answer, and asking again would only repeat it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import requests

log = logging.getLogger(__name__)

T = TypeVar("T")
TRANSIENT_STATUSES = frozenset({502, 503, 504})


class TransientHTTPError(Exception):
    """A response worth asking again for; raised inside a retried call."""

    def __init__(self, response: requests.Response):
        super().__init__(f"{response.status_code} {response.reason} from {response.url}")
        self.response = response


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, TransientHTTPError))


def with_retries(
    call: Callable[[], T],
    what: str,
    attempts: int = 4,
    backoff: float = 0.5,
    transient: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run call(); on a transient failure wait backoff, 2*backoff, ... and try again (attempts in all)."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts or not transient(exc):
                raise
            delay = backoff * 2 ** (attempt - 1)
            log.warning("%s failed (%s); attempt %d of %d in %.1f s", what, exc, attempt + 1, attempts, delay)
            sleep(delay)
    raise AssertionError("unreachable")
