"""model-governance: deploy machine-learning models with Airflow and make every deployment answerable in Atlas."""

__version__ = "0.1.0"
