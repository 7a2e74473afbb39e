"""model-governance: deploy machine-learning models with Airflow; every deployment is answerable in Atlas."""

__version__ = "0.1.0"
