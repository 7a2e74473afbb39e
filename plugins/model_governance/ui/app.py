"""The "Model deployments" FastAPI app, mounted by Airflow's api-server under `URL_PREFIX`.

Pages (HTML, server-rendered; every one needs a signed-in Airflow user, see `auth.py`):

- `/deployments?owner=&lob=&name=&version=&host_type=&endpoint=&status=&since=&until=&limit=`: the
  deployments table, with the same filters as `model-governance deployments`;
- `/deployments/<guid, qualifiedName or name>`: one deployment's trace;
- `/runs/<dag_id>/<run_id>`: what one DAG run deployed (the tab on a DAG run's page).

Atlas is asked through `AtlasHook` and `model_governance.atlas.queries`, as the CLI asks it; the
connection is `[model_governance] atlas_conn_id` in Airflow's configuration (default `atlas_default`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.exceptions import AirflowNotFoundException
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from model_governance.atlas import schema as s
from model_governance.atlas.queries import epoch_millis, list_deployments, trace
from model_governance.connections import ATLAS_CONN_ID
from model_governance.exceptions import AtlasError
from model_governance.ui import URL_PREFIX, pages
from model_governance.ui.auth import NotAllowed, NotSignedIn, login_url, signed_in_user

if TYPE_CHECKING:
    from model_governance.hooks.atlas import AtlasHook

FILTER_KEYS = ("owner", "lob", "name", "version", "host_type", "endpoint", "status", "since", "until")
MAX_LIMIT = 1000
HISTORY_LIMIT = 1000
# Atlas's answers when the `model` type does not exist yet (search, read by unique attribute)
NO_MODEL_TYPE = ("ATLAS-400-00-00A", "ATLAS-400-00-014")
ATLAS_TIMEOUT = 15.0  # seconds: a page should say Atlas is down, not hang

ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="#0b63a6" '
    'stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><path d="M12 2 3 7l9 5 9-5-9-5z"/>'
    '<path d="m3 12 9 5 9-5"/><path d="m3 17 9 5 9-5"/></svg>'
)


class BadFilter(ValueError):
    """A filter value the view cannot use: 400, naming the filter and the value."""


def atlas_hook() -> AtlasHook:
    from airflow.configuration import conf

    from model_governance.hooks.atlas import AtlasHook

    conn_id = conf.get("model_governance", "atlas_conn_id", fallback=ATLAS_CONN_ID)
    return AtlasHook(conn_id, timeout=ATLAS_TIMEOUT)


def urls(request: Request, hook: AtlasHook) -> pages.Urls:
    from airflow.configuration import conf

    airflow_root = urlsplit(conf.get("api", "base_url", fallback="/") or "/").path
    # root_path: where Airflow mounted this app (the prefix, behind Airflow's own base path if any)
    return pages.Urls(request.scope.get("root_path", "") or URL_PREFIX, airflow_root, hook.entity_url)


def html(text: str, status_code: int = 200) -> HTMLResponse:
    # the pages show governance data: never cached by a browser or a proxy
    return HTMLResponse(text, status_code=status_code, headers={"Cache-Control": "no-store"})


def read_filters(request: Request) -> tuple[dict[str, str | None], int]:
    """The filters and limit from the query string, checked; `BadFilter` names a wrong one."""
    query = request.query_params
    filters: dict[str, str | None] = {key: (query.get(key) or "").strip() or None for key in FILTER_KEYS}
    if filters["status"] not in (None, *pages.STATUSES):
        raise BadFilter(f"status: {filters['status']!r} is not one of {', '.join(pages.STATUSES)}")
    for key in ("since", "until"):
        value = filters[key]
        if value is not None:
            try:
                epoch_millis(value)
            except ValueError:
                raise BadFilter(
                    f"{key}: {value!r} is not an ISO-8601 date or time (e.g. 2026-11-25 or 2026-11-25T17:00)"
                ) from None
    raw_limit = query.get("limit") or "100"
    try:
        limit = int(raw_limit)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise BadFilter(f"limit: {raw_limit!r} is not a whole number from 1 to {MAX_LIMIT}")
    return filters, limit


def target_history(hook: AtlasHook, deployment: dict[str, Any]) -> list[dict[str, Any]]:
    """Every deployment at this one's target, newest first, this one included."""
    target = deployment.get(s.DEPLOY_TARGET)
    rows = list_deployments(hook, limit=HISTORY_LIMIT, target=target) if target else []
    if deployment["guid"] not in {row["guid"] for row in rows}:  # the search index may be behind
        rows.append(deployment)
    return sorted(rows, key=lambda row: str(row.get(s.DEPLOY_DATETIME) or ""), reverse=True)


def create_app() -> FastAPI:
    app = FastAPI(title=pages.TITLE, docs_url=None, redoc_url=None, openapi_url=None)
    signed_in = [Depends(signed_in_user)]

    @app.exception_handler(NotSignedIn)
    def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        if "text/html" in request.headers.get("accept", ""):  # a browser: Airflow's login page, then back
            return RedirectResponse(login_url(request), status_code=307)
        return JSONResponse({"detail": exc.reason}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(NotAllowed)
    def not_allowed(request: Request, exc: NotAllowed) -> Response:
        message = f"The Airflow user {exc.user!r} may not read DAG runs, so not the deployments they made."
        return html(pages.error_page("Not allowed", message), 403)

    @app.exception_handler(BadFilter)
    def bad_filter(request: Request, exc: BadFilter) -> Response:
        return html(pages.error_page("Bad filter", str(exc)), 400)

    @app.exception_handler(AtlasError)
    def atlas_error(request: Request, exc: AtlasError) -> Response:
        if exc.status == 404:
            return html(pages.error_page("No such deployment", str(exc)), 404)
        if exc.error_code in NO_MODEL_TYPE:
            message = "Atlas has no `model` type yet: no deployment was ever registered there."
            return html(pages.error_page("No such deployment", message), 404)
        hint = (
            "The view asks Apache Atlas through the Airflow connection "
            f"{atlas_hook().atlas_conn_id!r}: check that Atlas is up and that the connection's host, port, "
            "login and password are right."
        )
        return html(pages.error_page("Apache Atlas cannot answer", str(exc), hint), 502)

    @app.exception_handler(AirflowNotFoundException)
    def connection_missing(request: Request, exc: AirflowNotFoundException) -> Response:
        conn_id = atlas_hook().atlas_conn_id
        message = f"Airflow has no connection {conn_id!r} to reach Apache Atlas ({exc})."
        hint = f"Define it: Admin → Connections in the UI, or the variable AIRFLOW_CONN_{conn_id.upper()}."
        return html(pages.error_page("Apache Atlas is not configured", message, hint), 503)

    @app.get("/icon.svg", include_in_schema=False)
    def icon() -> Response:  # public: the navigation bar shows it before any page is asked for
        return Response(ICON, media_type="image/svg+xml")

    @app.get("/", dependencies=signed_in)
    def index(request: Request) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/deployments", status_code=307)

    @app.get("/deployments", dependencies=signed_in)
    def deployments(request: Request) -> HTMLResponse:
        filters, limit = read_filters(request)
        hook = atlas_hook()
        rows = list_deployments(hook, limit=limit, **filters)
        return html(pages.deployments_page(urls(request, hook), rows, filters, limit))

    @app.get("/deployments/{ref:path}", dependencies=signed_in)
    def deployment(request: Request, ref: str) -> HTMLResponse:
        hook = atlas_hook()
        found = trace(hook, ref)
        history = target_history(hook, found.deployment)
        return html(pages.trace_page(urls(request, hook), found.deployment, found.artifacts, history))

    @app.get("/runs/{dag_id}/{run_id}", dependencies=signed_in)
    def run(request: Request, dag_id: str, run_id: str) -> HTMLResponse:
        hook = atlas_hook()
        rows = list_deployments(hook, limit=MAX_LIMIT, dag_id=dag_id, run_id=run_id)
        if len(rows) == 1:  # the usual case: one run, one deployment, shown whole
            found = trace(hook, rows[0]["guid"])
            history = target_history(hook, found.deployment)
            return html(pages.trace_page(urls(request, hook), found.deployment, found.artifacts, history))
        return html(pages.run_page(urls(request, hook), dag_id, run_id, rows))

    return app
