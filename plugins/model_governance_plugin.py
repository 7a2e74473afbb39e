"""Registers model-governance with Airflow: the "Atlas entity" operator link and the "Model deployments"
view (a FastAPI app and its external views); the code is the `model_governance` package."""

from airflow.plugins_manager import AirflowPlugin

from model_governance import ui
from model_governance.links import AtlasEntityLink


class ModelGovernancePlugin(AirflowPlugin):
    name = "model_governance"
    operator_extra_links = [AtlasEntityLink()]  # noqa: RUF012 (AirflowPlugin declares it a list)
    fastapi_apps = ui.fastapi_apps()
    external_views = ui.external_views()
