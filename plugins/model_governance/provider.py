"""model-governance as an Airflow provider: its connection types (with names and form fields in the UI)
and its operator link, found by Airflow through the `apache_airflow_provider` entry point."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "model-governance",
        "name": "Model governance",
        "description": (
            "Deploy ML models to MLeap serving or Spark, archive them on HDFS, register them in Apache Atlas."
        ),
        "versions": ["0.1.0"],
        "connection-types": [
            {"hook-class-name": "model_governance.hooks.atlas.AtlasHook", "connection-type": "atlas"},
            {"hook-class-name": "model_governance.hooks.mleap.MLeapServingHook", "connection-type": "mleap"},
        ],
        "extra-links": ["model_governance.links.AtlasEntityLink"],
    }
