"""Registers model-governance with Airflow (its operator links); the code lives in the `model_governance` package."""

from airflow.plugins_manager import AirflowPlugin

from model_governance.links import AtlasEntityLink


class ModelGovernancePlugin(AirflowPlugin):
    name = "model_governance"
    operator_extra_links = [AtlasEntityLink()]
