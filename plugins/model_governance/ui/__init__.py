"""The "Model deployments" view inside Airflow's UI: a FastAPI app (`app.py`) mounted by the plugin,
server-rendered pages (`pages.py`), Airflow's own authentication on every page (`auth.py`).

Every Airflow process loads plugins (scheduler, DAG processor, each task), and only the api-server serves
the app: this module imports neither FastAPI nor the app, which is built on its first request.
"""

from __future__ import annotations

from typing import Any

URL_PREFIX = "/model-governance"
NAV_ROUTE = "model-deployments"
RUN_ROUTE = "model-deployment"


class LazyApp:
    """An ASGI app that builds the view's FastAPI app (`app.create_app`) when the first request comes."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._app is None:
            from model_governance.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)

    def __repr__(self) -> str:
        return "model_governance.ui.app.create_app()"


def fastapi_apps() -> list[dict[str, Any]]:
    """The app, as `AirflowPlugin.fastapi_apps` takes it."""
    return [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Model deployments"}]


def external_views() -> list[dict[str, Any]]:
    """The view's two places in Airflow's UI (each embedded in Airflow's page at `/plugin/<url_route>`):
    a button on the navigation bar, and a tab on every DAG run's page (what that run deployed)."""
    icon = f"{URL_PREFIX}/icon.svg"
    return [
        {
            "name": "Model deployments",
            "href": f"{URL_PREFIX}/deployments",
            "url_route": NAV_ROUTE,
            "destination": "nav",
            "nav_top_level": True,
            "icon": icon,
        },
        {
            "name": "Model deployment",
            "href": f"{URL_PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}",
            "url_route": RUN_ROUTE,
            "destination": "dag_run",
            "icon": icon,
        },
    ]
