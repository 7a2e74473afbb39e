"""The "Model deployments" view inside Airflow's UI: a FastAPI app (`app.py`) mounted by the plugin,
server-rendered pages (`pages.py`), Airflow's own authentication on every page (`auth.py`)."""

from __future__ import annotations

from typing import Any

from model_governance.ui.app import URL_PREFIX, create_app

NAV_ROUTE = "model-deployments"
RUN_ROUTE = "model-deployment"


def fastapi_apps() -> list[dict[str, Any]]:
    """The app, as `AirflowPlugin.fastapi_apps` takes it."""
    return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Model deployments"}]


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
