"""What every stand-in shares: a threaded HTTP server on loopback with small request helpers."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

Route = tuple[str, re.Pattern[str], Callable[..., None]]


class StandInHandler(BaseHTTPRequestHandler):
    """Dispatches on (method, path regex) to methods of the handler; subclasses list their `routes`.

    A route is `("GET", r"/api/thing/(?P<name>[^/]+)", "get_thing")`; the named groups become keyword
    arguments. An unmatched path answers 404, a matched path with another method 405.
    """

    routes: list[tuple[str, str, str]] = []
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small answers on kept-alive connections would wait ~40 ms each otherwise
    server: "StandInServer"

    # -- request helpers -------------------------------------------------------------------------------
    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query, keep_blank_values=True)

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def parse_request(self) -> bool:
        self.__dict__.pop("_body", None)  # one handler serves every request of a keep-alive connection
        return super().parse_request()

    def body(self) -> bytes:
        if "_body" not in self.__dict__:
            length = int(self.headers.get("Content-Length") or 0)
            self.__dict__["_body"] = self.rfile.read(length) if length else b""
        return self.__dict__["_body"]

    def json_body(self) -> Any:
        """The request body as JSON; raises ValueError on an empty or malformed body."""
        raw = self.body()
        if not raw.strip():
            raise ValueError("empty body")
        return json.loads(raw)

    # -- answers ---------------------------------------------------------------------------------------
    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

    def send_text(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, text.encode(), "text/plain; charset=UTF-8", headers)

    def send_bytes(self, status: int, data: bytes, content_type: str | None, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        if content_type and data:
            self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    # -- dispatch --------------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        allowed = []
        for method, pattern, name in self.compiled_routes():
            match = pattern.fullmatch(path)
            if not match:
                continue
            if method != self.command:
                allowed.append(method)
                continue
            self.body()  # drain the request before answering so keep-alive stays in step
            getattr(self, name)(**match.groupdict())
            return
        self.body()
        if allowed:
            self.method_not_allowed(sorted(set(allowed)))
        else:
            self.not_found()

    @classmethod
    def compiled_routes(cls) -> list[tuple[str, re.Pattern[str], str]]:
        cache = cls.__dict__.get("_compiled")
        if cache is None:
            cache = [(m, re.compile(p), n) for m, p, n in cls.routes]
            setattr(cls, "_compiled", cache)
        return cache

    def not_found(self) -> None:
        self.send_bytes(404, b"", None)

    def method_not_allowed(self, allowed: list[str]) -> None:
        self.send_bytes(405, b"", None, {"Allow": ", ".join(allowed)})

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        if self.server.verbose:
            super().log_message(format, *args)


class StandInServer(ThreadingHTTPServer):
    """A stand-in bound to loopback, serving in a daemon thread between `start()` and `stop()`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type[StandInHandler], host: str = "127.0.0.1", port: int = 0, verbose: bool = False):
        if not (host.startswith("127.") or host in ("localhost", "::1")):
            raise ValueError(f"stand-ins listen on loopback only, not {host!r}")
        self.verbose = verbose
        self._thread: threading.Thread | None = None
        super().__init__((host, port), handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):  # the client went away (a timeout, a test's fault)
            return
        super().handle_error(request, client_address)

    @property
    def host(self) -> str:
        return self.server_address[0]

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "StandInServer":
        # a short poll interval: stop() waits for the next poll, and tests stop many servers
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> "StandInServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
