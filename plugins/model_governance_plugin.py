"""Registers model-governance with Airflow (operator links); the code is the `model_governance` package."""

from airflow.plugins_manager import AirflowPlugin

from model_governance.links import AtlasEntityLink


class ModelGovernancePlugin(AirflowPlugin):
    name = "model_governance"
    operator_extra_links = [AtlasEntityLink()]  # noqa: RUF012 (AirflowPlugin declares it a list)
